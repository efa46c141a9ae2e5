#!/usr/bin/env bash
# The as-of join benchmark (BENCHMARKS.md): training_set's point-in-time query vs DuckDB's
# ASOF JOIN on the same Parquet files, interleaved, with the checksums compared.
# Usage: benches/asof/run.sh [--quick | ENTITIES SNAPSHOTS LABELS RUNS]
#   default 1000000 50 10000000 3 (50M feature rows, 10M labels); --quick 2000 10 20000 1
# ASOF_BIN=path times a bench binary already built (e.g. the dev profile at opt-level 2:
#   CARGO_PROFILE_DEV_OPT_LEVEL=2 cargo build --profile dev --bench asof).
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
if [ "${1:-}" = "--quick" ]; then set -- 2000 10 20000 1; fi
ENTITIES=${1:-1000000}; SNAPSHOTS=${2:-50}; LABELS=${3:-10000000}; RUNS=${4:-3}
BIN=$(bench_target asof "${ASOF_BIN:-}")
bench_venv
DATA="benches/asof/data/${ENTITIES}x${SNAPSHOTS}_${LABELS}"
if [ ! -f "$DATA/labels.parquet" ]; then
  mkdir -p "$DATA"
  $PY benches/asof/make_data.py "$DATA" "$ENTITIES" "$SNAPSHOTS" "$LABELS"
fi
echo "== as-of join: $ENTITIES entities x $SNAPSHOTS snapshots, $LABELS labels; $(bench_machine); git $(git rev-parse --short HEAD)"
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
for r in $(seq "$RUNS"); do
  /usr/bin/time -f "BENCH name=asof_nightjar_rss run=$r peak_rss_kb=%M" "$BIN" "$DATA/labels.parquet" "$DATA/features.parquet" 1 arrow 2>&1 | sed "s/ run=0 / run=$r /"
  # The SQL form is the tests' reference, 4x slower than the operator: only with ASOF_SQL=1.
  if [ "${ASOF_SQL:-0}" = 1 ]; then
    /usr/bin/time -f "BENCH name=asof_nightjarsql_rss run=$r peak_rss_kb=%M" "$BIN" "$DATA/labels.parquet" "$DATA/features.parquet" 1 sql 2>&1 | sed "s/ run=0 / run=$r /"
  fi
  /usr/bin/time -f "BENCH name=asof_duckdb_rss run=$r peak_rss_kb=%M" $PY benches/asof/duckdb_asof.py "$DATA/labels.parquet" "$DATA/features.parquet" 1 2>&1 | sed "s/ run=0 / run=$r /"
done | tee "$LOG"
$PY benches/report.py agree "$LOG" asof rows matched sum_f1 sum_f2
