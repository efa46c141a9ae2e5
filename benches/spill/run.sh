#!/usr/bin/env bash
# Benchmark 7 of the side-by-side suite, larger than memory (BENCHMARKS.md): a feature
# computation whose input is at least 3x `limits.memory` must finish by spilling, with peak
# RSS <= 1.2 x limit + 200 MB, and give the same result as DuckDB.
#
# The computation is the `sql` task of project/pipelines/spill_features.yaml through the
# nightjar CLI: per-customer session features over raw.events (sessionize with a GROUP BY of
# ~10M customer-sessions at the full size, order every customer's sessions for the gap since
# the previous one, roll up per customer), under `/usr/bin/time -f %M` for the peak RSS of the
# whole process (binary, runtime, allocator and DataFusion's pool).
#
# Sizes: the limit is 512MiB (--quick: 128MiB; --limit N for another), raw.events comes from
# benches/project/pipelines/bench_data.yaml (synthetic, seed 7) with 625 customers per MiB of
# limit over 120 days, ~143.7 events each. "Input size" is the Arrow in-memory size, in the
# plain layout, of the four columns the query reads (customer_id, session_id, event_ts: 8
# bytes a value; event_type: 4-byte offsets plus its bytes): 38 bytes an event, so 1,667 MiB
# = 3.26x at 512MiB (45,991,521 events; the Parquet file is 443 MiB, the Delta table 634 MiB).
# DataFusion reads event_type as Utf8View (16 bytes a value), more than that. The script
# fails if the input is under 3x.
# MB in the bound is read as MiB (limit_mb and bound_mb are MiB; peak_rss_kb is KiB).
#
# Checks, each failing the script: the result equals DuckDB's on the same exported Parquet
# (compare.py: every customer's row, floats to 1e-12 relative; rows and a checksum printed),
# the spill directory held files during the run (spill_peak_mb: the most it held at once,
# sampled every 0.1 s), and the peak RSS is within the bound. DuckDB runs under the same
# memory_limit first; when it runs out of memory there (it does at these limits: its window
# operator does not spill) it runs again without one, `limit_ok=0` in its line.
#
# Usage: benches/spill/run.sh [--quick] [--limit MiB] [--runs N]
#   NIGHTJAR_BIN: a nightjar binary already built (otherwise the release build, lib.sh)
# Prints, per run: BENCH name=spill_nightjar run= seconds= peak_rss_kb= limit_mb= input_mb=
#   bound_mb= within=0|1 rows= checksum= spill_peak_mb= task_seconds=
# then BENCH name=spill_duckdb ... and BENCH name=spill_agree ok=0|1.
set -euo pipefail
cd "$(dirname "$0")/../.."
LIMIT=512; RUNS=3
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) LIMIT=128; RUNS=1 ;;
    --limit) LIMIT=$2; shift ;;
    --runs) RUNS=$2; shift ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
CUSTOMERS=$((LIMIT * 625)); DAYS=120
BOUND_MB=$(( (LIMIT * 12 + 5) / 10 + 200 ))   # 1.2 x limit + 200, rounded
source benches/lib.sh
bench_venv
bench_nightjar
HERE=benches/spill

# The project, staged with this limit; its warehouse (the generated input) is kept between
# invocations of the same size.
PROJECT="$HERE/data/${LIMIT}MiB"
mkdir -p "$PROJECT/pipelines/sql" "$PROJECT/data"
sed "s/^  memory: .*/  memory: ${LIMIT}MiB/" "$HERE/project/nightjar.yaml" > "$PROJECT/nightjar.yaml"
cp "$HERE/project/pipelines/spill_features.yaml" benches/project/pipelines/bench_data.yaml "$PROJECT/pipelines/"
cp "$HERE/project/pipelines/sql/session_rollup.sql" "$PROJECT/pipelines/sql/"
EVENTS="$PROJECT/data/events.parquet"
MARK="$PROJECT/data/generated-${CUSTOMERS}x${DAYS}"
if [ ! -f "$MARK" ]; then
  rm -rf "$PROJECT/warehouse" "$PROJECT/data"/*
  s=$(date +%s%N)
  "$BIN" --project "$PROJECT" run bench_data --var customers=$CUSTOMERS --var days=$DAYS --json > "$PROJECT/data/generate.json"
  e=$(date +%s%N)
  echo "generated $CUSTOMERS customers x $DAYS days in $(( (e - s) / 1000000 )) ms"
  touch "$MARK"
fi

echo "== larger than memory: $(bench_machine)"
"$BIN" --version
read -r ROWS_IN INPUT_MB PARQUET_MB < <("$PY" $HERE/compare.py size "$EVENTS" | sed 's/[a-z_]*=//g')
echo "input: $ROWS_IN events, $INPUT_MB MiB (Arrow, the 4 columns read), Parquet $PARQUET_MB MiB; limit ${LIMIT}MiB, bound ${BOUND_MB} MiB"
if [ "$INPUT_MB" -lt $((3 * LIMIT)) ]; then
  echo "input $INPUT_MB MiB is under 3x the ${LIMIT}MiB limit" >&2
  exit 1
fi
cat "$EVENTS" "$PROJECT"/warehouse/tables/raw/events/*.parquet > /dev/null   # both read from the page cache

REF="$PROJECT/data/duckdb_rollup.parquet"
mkdir -p "$PROJECT/duckdb_tmp"
/usr/bin/time -f "BENCH name=spill_duckdb_rss run=1 peak_rss_kb=%M" \
  "$PY" $HERE/compare.py duckdb "$EVENTS" "$REF" "$LIMIT" "$PROJECT/duckdb_tmp" 1 2>&1
rm -rf "$PROJECT/duckdb_tmp"

FAIL=0; AGREE=1
REF_SUM=$("$PY" $HERE/compare.py check "$REF" "$REF")
for r in $(seq "$RUNS"); do
  # Every run computes the table from nothing, as a first run would.
  rm -rf "$PROJECT/warehouse/tables/staging" "$PROJECT/spill"
  mkdir -p "$PROJECT/spill"
  # The spill directory's size while the query runs (DataFusion deletes its files at the end).
  ( peak=0
    while :; do
      n=$(du -sb "$PROJECT/spill" 2>/dev/null | cut -f1) || n=0
      [ "${n:-0}" -gt $peak ] && { peak=$n; echo $peak > "$PROJECT/spill_peak"; }
      sleep 0.1
    done ) &
  WATCH=$!
  echo 0 > "$PROJECT/spill_peak"
  code=0
  s=$(date +%s%N)
  /usr/bin/time -f %M -o "$PROJECT/rss" \
    "$BIN" --project "$PROJECT" run spill_features --select session_rollup --json > "$PROJECT/run.json" || code=$?
  e=$(date +%s%N)
  kill $WATCH; wait $WATCH 2>/dev/null || true
  if [ $code != 0 ]; then
    # Its own messages went to stderr above; the run JSON says which task failed and why.
    echo "nightjar failed (exit $code):" >&2
    "$PY" -c 'import json,sys; [print(t["id"], t["status"], t.get("error","")) for t in json.load(open(sys.argv[1]))["tasks"]]' "$PROJECT/run.json" >&2 || true
    FAIL=1; AGREE=0; continue
  fi
  RSS=$(tail -n 1 "$PROJECT/rss")
  # The empty directory itself is 4 KiB.
  SPILL_MB=$(( ($(cat "$PROJECT/spill_peak") - 4096) / 1048576 ))
  TASK_S=$("$PY" -c 'import json,sys; print(json.load(open(sys.argv[1]))["tasks"][0]["duration_ms"] / 1000)' "$PROJECT/run.json")
  "$BIN" --project "$PROJECT" run spill_features --select export_rollup > /dev/null
  read -r ROWS SUM DIFF < <("$PY" $HERE/compare.py check "$PROJECT/data/session_rollup.parquet" "$REF" | sed 's/[a-z]*=//g')
  WITHIN=$(( RSS <= BOUND_MB * 1024 ))
  echo "BENCH name=spill_nightjar run=$r seconds=$(awk "BEGIN { printf \"%.2f\", ($e - $s) / 1e9 }") peak_rss_kb=$RSS limit_mb=$LIMIT input_mb=$INPUT_MB bound_mb=$BOUND_MB within=$WITHIN rows=$ROWS checksum=$SUM spill_peak_mb=$SPILL_MB task_seconds=$TASK_S differing=$DIFF"
  [ $WITHIN = 1 ] || { echo "peak RSS $RSS KiB is over the bound of $BOUND_MB MiB" >&2; FAIL=1; }
  [ "$SPILL_MB" -gt 0 ] || { echo "nothing was spilled: the limit did not bind" >&2; FAIL=1; }
  [ "$DIFF" = 0 ] && [ "rows=$ROWS checksum=$SUM differing=0" = "$REF_SUM" ] || { echo "result differs from DuckDB's: $DIFF customers" >&2; AGREE=0; }
done
rm -f "$PROJECT/spill_peak" "$PROJECT/rss"
echo "BENCH name=spill_agree ok=$AGREE runs=$RUNS"
[ $AGREE = 1 ] && [ $FAIL = 0 ]
