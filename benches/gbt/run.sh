#!/usr/bin/env bash
# GBT training vs LightGBM on identical synthetic rows (2M × 28, 200 trees, 255 leaves,
# 2 threads). Usage: benches/gbt/run.sh [train_rows] [threads] [score_rows] [--peers]
# --peers also times the pure-Rust candidate forust-ml on the same rows: part of the
# measurement behind building our own booster (BENCHMARKS.md, "Choosing the GBT").
# perpetual is left out of the script: at 200k rows it had not finished after 20 min (6 GB);
# run it alone with `gbt-peers ROWS THREADS SCORED perpetual`.
set -euo pipefail
cd "$(dirname "$0")"
PEERS=0; ARGS=()
for a in "$@"; do if [ "$a" = "--peers" ]; then PEERS=1; else ARGS+=("$a"); fi; done
ROWS="${ARGS[0]:-2000000}"; THREADS="${ARGS[1]:-2}"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nightjar-bench-target}"
if [ $PEERS = 1 ]; then cargo build --release --quiet --features peers; else cargo build --release --quiet; fi
[ -x ../.venv/bin/python ] || python3 -m venv ../.venv
../.venv/bin/pip install --quiet lightgbm==4.7.0 scikit-learn numpy onnxruntime==1.32.0 onnxmltools==1.16.0 onnx==1.23.2
SCORED="${ARGS[2]:-$((ROWS / 4))}"
"$CARGO_TARGET_DIR/release/gbt-bench" "$ROWS" "$THREADS" "$SCORED"
# Passive OpenMP waits: with active spinning, LightGBM on a shared 2-core machine ran 3x slower.
OMP_WAIT_POLICY=passive ../.venv/bin/python lightgbm_bench.py "$ROWS" "$THREADS" "$SCORED"
if [ $PEERS = 1 ]; then "$CARGO_TARGET_DIR/release/gbt-peers" "$ROWS" "$THREADS" "$SCORED" forust; fi
