#!/usr/bin/env bash
# GBT training and prediction (BENCHMARKS.md): nightjar's booster vs LightGBM and XGBoost
# (`hist`) on identical generated rows (2M × 28, 200 trees, 255 leaves, 2 threads), and
# prediction also vs ONNX Runtime on the converted LightGBM booster; rounds interleaved.
# Usage: benches/gbt/run.sh [train_rows] [threads] [score_rows] [--runs N] [--quick] [--peers]
#   --quick: 10,000 rows, 1 round; checks that every tool runs on the same rows and that the
#   AUCs are within 0.01 of each other.
# --peers also times the pure-Rust candidate forust-ml on the same rows: part of the
# measurement behind building our own booster (BENCHMARKS.md, "Choosing the GBT").
# perpetual is left out of the script: at 200k rows it had not finished after 20 min (6 GB);
# run it alone with `gbt-peers ROWS THREADS SCORED perpetual`.
#   GBT_BIN: a gbt-bench binary already built.
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
PEERS=0; QUICK=0; RUNS=1; ARGS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --peers) PEERS=1 ;;
    --quick) QUICK=1 ;;
    --runs) RUNS=$2; shift ;;
    *) ARGS+=("$1") ;;
  esac
  shift
done
ROWS="${ARGS[0]:-2000000}"; THREADS="${ARGS[1]:-2}"
[ $QUICK = 1 ] && ROWS=10000
SCORED="${ARGS[2]:-$((ROWS / 4))}"
[ $QUICK = 1 ] && SCORED=10000
bench_venv
if [ -n "${GBT_BIN:-}" ]; then
  GBT=$GBT_BIN
else
  # The bench crate has its own lock file and target dir: it builds without DataFusion.
  (cd benches/gbt && if [ $PEERS = 1 ]; then cargo build --release --quiet --features peers; else cargo build --release --quiet; fi)
  GBT="$CARGO_TARGET_DIR/release/gbt-bench"
fi
LOG=$(mktemp)
trap 'rm -f "$LOG"' EXIT
echo "== gbt: $ROWS rows, $SCORED scored, $THREADS threads, $RUNS rounds; $(bench_machine)"
for r in $(seq "$RUNS"); do
  /usr/bin/time -f "BENCH name=gbt_nightjar_rss run=$r peak_rss_kb=%M" "$GBT" "$ROWS" "$THREADS" "$SCORED" 2>&1 \
    | sed "s/^nightjar /BENCH name=gbt_nightjar run=$r scored=$SCORED /"
  # Passive OpenMP waits: with active spinning, LightGBM on a shared 2-core machine ran 3x slower.
  (cd benches/gbt && OMP_WAIT_POLICY=passive /usr/bin/time -f "BENCH name=gbt_lightgbm_rss run=$r peak_rss_kb=%M" \
    "$PY" lightgbm_bench.py "$ROWS" "$THREADS" "$SCORED" "$r" 2>&1 | grep -v VerifyOutputSizes)
  (cd benches/gbt && OMP_WAIT_POLICY=passive /usr/bin/time -f "BENCH name=gbt_xgboost_rss run=$r peak_rss_kb=%M" \
    "$PY" xgboost_bench.py "$ROWS" "$THREADS" "$SCORED" "$r" 2>&1)
  if [ $PEERS = 1 ]; then "$CARGO_TARGET_DIR/release/gbt-peers" "$ROWS" "$THREADS" "$SCORED" forust; fi
done | tee "$LOG"
"$PY" benches/report.py agree "$LOG" gbt base_rate scored
"$PY" benches/report.py close "$LOG" gbt auc 0.01
