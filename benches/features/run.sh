#!/usr/bin/env bash
# Feature SQL benchmark (BENCHMARKS.md): RFM + 28-day engagement per customer over ~50M
# synthetic events (1M customers, 42 days) and their orders, nightjar vs DuckDB vs Polars on
# the same Parquet files, 2 threads each, interleaved; the results' sums must agree.
# Usage: benches/features/run.sh [--quick]   (quick: 5,000 customers, 1 run)
#   NIGHTJAR_BIN / FEATURES_BIN: binaries already built (FEATURES_BIN is the `features` bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
QUICK=0; [ "${1:-}" = "--quick" ] && QUICK=1
# ~1.2 events per customer-day: 1M customers over 42 days is ~50M events.
CUSTOMERS=1000000; DAYS=42; RUNS=5
[ $QUICK = 1 ] && { CUSTOMERS=5000; DAYS=120; RUNS=1; }
# The synthetic window starts on 2025-01-01; the features are as of its end.
AS_OF="$(date -u -d "2025-01-01 + $DAYS days" +%Y-%m-%dT%H:%M:%SZ)"
bench_venv
bench_nightjar
FEAT=$(bench_target features "${FEATURES_BIN:-}")
HERE=benches/features
DATA="$HERE/data/${CUSTOMERS}x${DAYS}"
if [ ! -f "$DATA/orders.parquet" ]; then
  GEN="$HERE/data/gen"
  rm -rf "$GEN"; mkdir -p "$GEN/pipelines" "$DATA"
  cp benches/project/nightjar.yaml "$GEN/"
  cp benches/project/pipelines/bench_data.yaml "$GEN/pipelines/"
  s=$(date +%s%N)
  "$BIN" --project "$GEN" run bench_data --var customers=$CUSTOMERS --var days=$DAYS --json > "$GEN/run.json"
  e=$(date +%s%N)
  echo "generated $CUSTOMERS customers x $DAYS days in $(( (e - s) / 1000000 )) ms"
  mv "$GEN/data/events.parquet" "$GEN/data/orders.parquet" "$DATA/"
  rm -rf "$GEN"
fi
echo "== feature SQL: $(bench_machine)"
$PY - "$DATA" <<'PY'
import sys, pyarrow.parquet as pq
for t in ("events", "orders"):
    print(f"{t}: {pq.ParquetFile(f'{sys.argv[1]}/{t}.parquet').metadata.num_rows} rows")
PY
cat "$DATA"/*.parquet > /dev/null   # every tool reads from the page cache
for r in $(seq "$RUNS"); do
  /usr/bin/time -f "BENCH name=features_nightjar_rss run=$r peak_rss_kb=%M" \
    "$FEAT" $HERE/nightjar.sql $HERE/checksum.sql "$AS_OF" 1 2 "$DATA/events.parquet" "$DATA/orders.parquet" 2>&1 | sed "s/ run=0 / run=$r /"
  for tool in duckdb polars; do
    /usr/bin/time -f "BENCH name=features_${tool}_rss run=$r peak_rss_kb=%M" \
      $PY $HERE/peers.py $tool $HERE/checksum.sql "$AS_OF" 1 "$DATA/events.parquet" "$DATA/orders.parquet" 2>&1 | sed "s/ run=0 / run=$r /"
  done
done | tee "$DATA/bench.log"
$PY benches/report.py agree "$DATA/bench.log" features \
  groups recency_days frequency monetary sessions_28d page_views_28d add_to_cart_28d
