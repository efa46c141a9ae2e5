#!/usr/bin/env bash
# GBT training vs LightGBM on identical synthetic rows (2M × 28, 200 trees, 255 leaves,
# 2 threads). Usage: benches/gbt/run.sh [train_rows] [threads] [score_rows]
set -euo pipefail
cd "$(dirname "$0")"
ROWS="${1:-2000000}"; THREADS="${2:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nightjar-bench-target}"
cargo build --release --quiet --offline
[ -x ../.venv/bin/python ] || python3 -m venv ../.venv
../.venv/bin/pip install --quiet lightgbm==4.7.0 scikit-learn numpy onnxruntime==1.32.0 onnxmltools==1.16.0 onnx==1.23.2
SCORED="${3:-$((ROWS / 4))}"
"$CARGO_TARGET_DIR/release/gbt-bench" "$ROWS" "$THREADS" "$SCORED"
# Passive OpenMP waits: with active spinning, LightGBM on a shared 2-core machine ran 3x slower.
OMP_WAIT_POLICY=passive ../.venv/bin/python lightgbm_bench.py "$ROWS" "$THREADS" "$SCORED"
