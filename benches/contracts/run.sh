#!/usr/bin/env bash
# The data-contract benchmark (BENCHMARKS.md): the same 20 rules (events.odcs.yaml) on the same
# ~10M-row Parquet file, checked by nightjar, Great Expectations, pandera (polars and pandas
# backends) and one hand-written DuckDB query, interleaved for 5 rounds; prints per-rule
# verdicts (they must agree), medians and the ratios against nightjar.
# Usage: benches/contracts/run.sh [--quick] [--rounds N]   (quick: ~290k rows, 1 round; checks that all runs)
#        NIGHTJAR_BIN=path uses a binary already built instead of the release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
# ~143.5 events per customer (120 days): 70,000 customers give 10,043,473 events.
CUSTOMERS=70000; ROUNDS=5
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) CUSTOMERS=2000; ROUNDS=1 ;;
    --rounds) ROUNDS=$2; shift ;;
  esac
  shift
done
QUICK=0; [ $CUSTOMERS = 2000 ] && QUICK=1
DS=2025-05-01
HERE="$PWD/benches/contracts"
DATA="$HERE/data"

source benches/lib.sh
bench_nightjar
bench_venv

# The data, once per size: nightjar's synthetic events exported to Parquet, then faults planted
# with DuckDB (make_data.py). In a folder of its own: nightjar is given the folder (see below).
FILE="$DATA/events_$CUSTOMERS/events.parquet"
if [ ! -f "$FILE" ]; then
  GEN="$DATA/gen_$CUSTOMERS"
  rm -rf "$GEN"; mkdir -p "$GEN/pipelines" "$(dirname "$FILE")"
  cp benches/project/nightjar.yaml "$GEN/"
  cp benches/project/pipelines/bench_data.yaml "$GEN/pipelines/"
  s=$(date +%s%N)
  "$BIN" --project "$GEN" run bench_data --var customers=$CUSTOMERS --json > "$GEN/run.json"
  e=$(date +%s%N)
  echo "generated $CUSTOMERS customers in $(( (e - s) / 1000000 )) ms"
  $PY "$HERE/make_data.py" "$GEN/data/events.parquet" "$FILE.tmp"
  mv "$FILE.tmp" "$FILE"
  rm -rf "$GEN"
fi
# `contract check` needs a project; a tiny one (no pipelines). 4GiB as benches/project: with
# the default 2GiB the 3-column duplicate query spills to disk at 10M rows.
PROJECT="$DATA/project"
mkdir -p "$PROJECT"
printf 'version: 1\nname: contracts_bench\nstorage:\n  root: file://./warehouse\nlimits:\n  memory: 4GiB\n' \
  > "$PROJECT/nightjar.yaml"

echo "== machine"
bench_machine
"$BIN" --version; rustc --version
echo "git $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src Cargo.toml Cargo.lock || echo ' +uncommitted changes in src/')"
$PY -c 'import sys, great_expectations as gx, pandera, pandas, polars, pyarrow, duckdb
print("python", sys.version.split()[0], "great_expectations", gx.__version__, "pandera", pandera.__version__,
      "pandas", pandas.__version__, "polars", polars.__version__, "pyarrow", pyarrow.__version__, "duckdb", duckdb.__version__)'
$PY - "$FILE" <<'PY'
import os, sys, pyarrow.parquet as pq
m = pq.ParquetFile(sys.argv[1]).metadata
print(f"data {sys.argv[1]}: {m.num_rows} rows, {m.num_row_groups} row groups, {os.path.getsize(sys.argv[1]) / 2**20:.0f} MiB")
PY

RESULTS="$DATA/results-$(date -u +%Y%m%dT%H%M%SZ)"; [ $QUICK = 1 ] && RESULTS="$RESULTS-quick"
mkdir -p "$RESULTS"
cat "$FILE" > /dev/null   # every tool reads it from the page cache

# One tool run: its process wall time goes to wall.tsv; its verdicts to <tool>.<round>.json.
run_tool() {
  local tool=$1 round=$2; shift 2
  local s e code=0
  s=$(date +%s%N)
  "$@" || code=$?
  e=$(date +%s%N)
  printf '%s\t%s\t%s\t%s\n' "$tool" "$round" "$(awk "BEGIN {printf \"%.3f\", ($e - $s) / 1e9}")" "$code" \
    >> "$RESULTS/wall.tsv"
  echo "$(( (e - s) / 1000000 ))" > "$RESULTS/.last_ms"
  return 0
}

echo "== $ROUNDS rounds, tools interleaved (results in ${RESULTS#$PWD/})"
for r in $(seq "$ROUNDS"); do
  # nightjar: the CLI's process wall time. Exit 3 is expected (blocking rules fail). It is
  # given the file's folder: that works whether or not this build reads a lone file path.
  run_tool nightjar "$r" "$BIN" contract check "$HERE/events.odcs.yaml" --data "$(dirname "$FILE")" \
    --ds $DS -C "$PROJECT" --json > "$RESULTS/nightjar.$r.report"
  $PY "$HERE/compare.py" nightjar "$RESULTS/nightjar.$r.report" \
    "$(awk "BEGIN {print $(cat "$RESULTS/.last_ms") / 1000}")" --out "$RESULTS/nightjar.$r.json"
  run_tool ge "$r" $PY "$HERE/ge_check.py" "$FILE" --out "$RESULTS/ge.$r.json"
  run_tool pandera "$r" $PY "$HERE/pandera_check.py" "$FILE" --backend polars --out "$RESULTS/pandera.$r.json"
  run_tool pandera_pandas "$r" $PY "$HERE/pandera_check.py" "$FILE" --backend pandas \
    --out "$RESULTS/pandera_pandas.$r.json"
  run_tool duckdb "$r" $PY "$HERE/duckdb_check.py" "$FILE" --out "$RESULTS/duckdb.$r.json"
done
echo "load after the rounds: $(cut -d' ' -f1-3 /proc/loadavg)"

echo
$PY "$HERE/compare.py" summary "$RESULTS"
