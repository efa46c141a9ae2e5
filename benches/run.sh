#!/usr/bin/env bash
# Benchmarks for the foundation: orchestration overhead, CLI cold start, synthetic generation
# rate, and the per-customer GROUP BY vs DuckDB on the same Parquet in the same run.
# Usage: benches/run.sh [--quick]     (quick: small data, checks that everything runs)
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0; [ "${1:-}" = "--quick" ] && QUICK=1
# ~1.2 events per customer-day: 1M customers over 42 days is ~50M events.
CUSTOMERS=1000000; DAYS=42; RUNS=5
[ $QUICK = 1 ] && { CUSTOMERS=5000; DAYS=120; RUNS=2; }

export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nightjar-bench-target}"
cargo build --release --quiet --bin nightjar --bench groupby --bench orchestration
BIN="$CARGO_TARGET_DIR/release/nightjar"
GROUPBY=$(ls -t "$CARGO_TARGET_DIR"/release/deps/groupby-* | grep -v '\.d$' | head -1)
ORCH=$(ls -t "$CARGO_TARGET_DIR"/release/deps/orchestration-* | grep -v '\.d$' | head -1)

python3 -m venv benches/.venv
benches/.venv/bin/pip install --quiet duckdb==1.4.2 pyarrow
PY=benches/.venv/bin/python

echo "== machine"; nproc; uname -m; "$BIN" --version; rustc --version
$PY -c 'import duckdb; print("duckdb", duckdb.__version__)'

echo "== orchestration"; "$ORCH"

echo "== 500 trivial SQL tasks end to end (10 layers of 50; each reads one table of the layer before), $RUNS runs"
DAG=$(mktemp -d)
mkdir -p "$DAG/pipelines"
printf 'version: 1\nname: dag500\nstorage:\n  root: file://./warehouse\nlimits:\n  max_parallel_tasks: 2\n' > "$DAG/nightjar.yaml"
$PY - "$DAG/pipelines/dag500.yaml" <<'PY'
import sys
lines = ["version: 1", "tasks:"]
for layer in range(10):
    for i in range(50):
        src = "SELECT 1 AS x" if layer == 0 else f"SELECT x + 1 AS x FROM bench.t{layer-1}_{(i * 7) % 50}"
        lines += [f"  - id: t{layer}_{i}", "    kind: sql", f"    output: bench.t{layer}_{i}", f"    sql: {src}"]
open(sys.argv[1], "w").write("\n".join(lines) + "\n")
PY
for r in $(seq $RUNS); do
  rm -rf "$DAG/warehouse"
  s=$(date +%s%N); "$BIN" --project "$DAG" run dag500 --json > "$DAG/run.json"; e=$(date +%s%N)
  $PY -c "import json,sys; r=json.load(open('$DAG/run.json')); ok=sum(t['status']=='succeeded' for t in r['tasks']); print(f'BENCH name=dag500_sql tasks={len(r[\"tasks\"])} succeeded={ok} wall_ms={($e-$s)/1e6:.0f} ms_per_task={($e-$s)/1e6/len(r[\"tasks\"]):.2f}')"
done
rm -rf "$DAG"

echo "== cli cold start (validate demo project), 20 runs"
for i in $(seq 20); do
  s=$(date +%s%N); "$BIN" --project . validate >/dev/null; e=$(date +%s%N)
  echo "BENCH name=cold_start_validate ms=$(( (e - s) / 1000000 ))"
done

echo "== synthetic generation + export ($CUSTOMERS customers, $DAYS days)"
rm -rf benches/project/data
s=$(date +%s%N)
"$BIN" --project benches/project run bench_data --var customers=$CUSTOMERS --var days=$DAYS --json > benches/data.run.json
e=$(date +%s%N)
$PY - <<PY
import json
run = json.load(open("benches/data.run.json"))
gen = run["tasks"][0]
rows = sum(o["rows"] for o in gen["outputs"])
events = [o["rows"] for o in gen["outputs"] if o["table"] == "raw.events"][0]
print(f"BENCH name=synthetic rows={rows} events={events} task_seconds={gen['duration_ms']/1000:.2f} rows_per_s={rows/(gen['duration_ms']/1000):.0f}")
PY
mv benches/data.run.json benches/project/data/

echo "== group by per customer: nightjar vs duckdb, interleaved, $RUNS runs each"
for r in $(seq $RUNS); do
  "$GROUPBY" benches/project/data/events.parquet 1 2
  $PY benches/peers/duckdb_groupby.py benches/project/data/events.parquet 1
done
