#!/usr/bin/env bash
# Orchestration (BENCHMARKS.md): the executor's overhead per task transition (p50, p99) and a
# 2,000-task fan-out/fan-in DAG of no-op tasks, in process (benches/orchestration.rs); a
# 500-task DAG of trivial SQL tasks run by the CLI; CLI cold start. nightjar only: Airflow's
# figures are seconds per task, and there is no peer run here to take a ratio against.
# Usage: benches/orchestration/run.sh [--quick]   (quick: 1 DAG run, 3 cold starts)
#   NIGHTJAR_BIN / ORCH_BIN: binaries already built (ORCH_BIN is the `orchestration` bench)
set -euo pipefail
cd "$(dirname "$0")/../.."
source benches/lib.sh
QUICK=0; [ "${1:-}" = "--quick" ] && QUICK=1
RUNS=5; STARTS=20
[ $QUICK = 1 ] && { RUNS=1; STARTS=3; }
bench_nightjar
ORCH=$(bench_target orchestration "${ORCH_BIN:-}")
echo "== orchestration: $(bench_machine)"
"$ORCH"

echo "== 500 trivial SQL tasks end to end (10 layers of 50; each reads one table of the layer before), $RUNS runs"
DAG=$(mktemp -d)
trap 'rm -rf "$DAG"' EXIT
mkdir -p "$DAG/pipelines"
printf 'version: 1\nname: dag500\nstorage:\n  root: file://./warehouse\nlimits:\n  max_parallel_tasks: 2\n' > "$DAG/nightjar.yaml"
python3 - "$DAG/pipelines/dag500.yaml" <<'PY'
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
  python3 -c "import json; r=json.load(open('$DAG/run.json')); ok=sum(t['status']=='succeeded' for t in r['tasks']); print(f'BENCH name=dag500_sql run=$r tasks={len(r[\"tasks\"])} succeeded={ok} wall_ms={($e-$s)/1e6:.0f} ms_per_task={($e-$s)/1e6/len(r[\"tasks\"]):.2f}')"
done

echo "== cli cold start (validate the demo project), $STARTS runs"
for i in $(seq $STARTS); do
  s=$(date +%s%N); "$BIN" --project . validate >/dev/null; e=$(date +%s%N)
  echo "BENCH name=cold_start_validate run=$i ms=$(( (e - s) / 1000000 ))"
done
