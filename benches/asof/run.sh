#!/usr/bin/env bash
# The as-of join benchmark (BENCHMARKS.md): training_set's point-in-time query vs DuckDB's
# ASOF JOIN on the same Parquet files, interleaved, with the checksums compared.
# Usage: benches/asof/run.sh [ENTITIES SNAPSHOTS LABELS RUNS]
#   default 1000000 50 10000000 3 (50M feature rows, 10M labels)
# ASOF_BIN=path times a bench binary already built (e.g. the dev profile at opt-level 2:
#   CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo build --profile dev --bench asof).
set -euo pipefail
cd "$(dirname "$0")/../.."
ENTITIES=${1:-1000000}; SNAPSHOTS=${2:-50}; LABELS=${3:-10000000}; RUNS=${4:-3}
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nightjar-bench-target}"
if [ -n "${ASOF_BIN:-}" ]; then
  BIN=$ASOF_BIN
else
  cargo build --release --quiet --bench asof
  BIN=$(ls -t "$CARGO_TARGET_DIR"/release/deps/asof-* | grep -v '\.d$' | head -1)
fi
[ -x benches/.venv/bin/python ] || python3 -m venv benches/.venv
benches/.venv/bin/pip install --quiet --disable-pip-version-check duckdb==1.4.2
PY=benches/.venv/bin/python
DATA="benches/asof/data/${ENTITIES}x${SNAPSHOTS}_${LABELS}"
if [ ! -f "$DATA/labels.parquet" ]; then
  mkdir -p "$DATA"
  $PY benches/asof/make_data.py "$DATA" "$ENTITIES" "$SNAPSHOTS" "$LABELS"
fi
echo "nproc $(nproc); load $(cut -d' ' -f1-3 /proc/loadavg); git $(git rev-parse --short HEAD)"
for r in $(seq "$RUNS"); do
  /usr/bin/time -f "peak_rss_kb=%M" "$BIN" "$DATA/labels.parquet" "$DATA/features.parquet" 1 arrow 2>&1 | sed "s/run=0/run=$r/"
  /usr/bin/time -f "peak_rss_kb=%M" "$BIN" "$DATA/labels.parquet" "$DATA/features.parquet" 1 sql 2>&1 | sed "s/run=0/run=$r/"
  /usr/bin/time -f "peak_rss_kb=%M" $PY benches/asof/duckdb_asof.py "$DATA/labels.parquet" "$DATA/features.parquet" 1 2>&1 | sed "s/run=0/run=$r/"
done
