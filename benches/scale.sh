#!/usr/bin/env bash
# Scale of definitions (issue 9; BENCHMARKS.md): a project of 100 pipelines (20 SQL tasks each,
# plus one pipeline of 2,000 tasks) validated end to end by the CLI, and the 2,000-task
# pipeline planned and run (one source task, 1,998 tasks reading it, one task after them all).
# Usage: benches/scale.sh [RUNS]   (default 10 validate runs, 3 runs of the big pipeline)
#        NIGHTJAR_BIN=path/to/nightjar benches/scale.sh   (time that binary, build nothing)
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-10}
if [ -n "${NIGHTJAR_BIN:-}" ]; then
  BIN="$NIGHTJAR_BIN"
else
  export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nightjar-bench-target}"
  cargo build --release --quiet --bin nightjar
  BIN="$CARGO_TARGET_DIR/release/nightjar"
fi

P=$(mktemp -d)
trap 'rm -rf "$P"' EXIT
mkdir -p "$P/pipelines"
printf 'version: 1\nname: scale\nstorage:\n  root: file://./warehouse\nlimits:\n  max_parallel_tasks: 2\n' > "$P/nightjar.yaml"
python3 - "$P/pipelines" <<'PY'
import sys
out = sys.argv[1]
# 99 pipelines of 20 SQL tasks: a chain of 4 layers of 5, each task reading one of the layer before.
for p in range(99):
    lines = ["version: 1", f"description: pipeline {p} of the scale benchmark", "tasks:"]
    for layer in range(4):
        for i in range(5):
            src = "SELECT 1 AS x" if layer == 0 else f"SELECT x + 1 AS x FROM p{p}.t{layer-1}_{(i * 3) % 5}"
            lines += [f"  - id: t{layer}_{i}", "    kind: sql", f"    output: p{p}.t{layer}_{i}",
                      f"    sql: {src}", "    retries: 1", "    timeout: 10m"]
    open(f"{out}/p{p:03}.yaml", "w").write("\n".join(lines) + "\n")
# The 2,000-task fan-out/fan-in pipeline.
lines = ["version: 1", "tasks:", "  - id: source", "    kind: sql", "    output: big.source", "    sql: SELECT 1 AS x"]
for i in range(1998):
    lines += [f"  - id: f{i}", "    kind: sql", f"    output: big.f{i}", "    sql: SELECT x + 1 AS x FROM big.source"]
lines += ["  - id: sink", "    kind: sql", "    output: big.sink", "    sql: SELECT 1 AS x",
          "    depends_on: [" + ", ".join(f"f{i}" for i in range(1998)) + "]"]
open(f"{out}/big.yaml", "w").write("\n".join(lines) + "\n")
PY
echo "machine: $(nproc) cores; load $(cut -d' ' -f1-3 /proc/loadavg); $("$BIN" --version)"
echo "project: $(ls "$P/pipelines" | wc -l) pipelines, $(cat "$P"/pipelines/*.yaml | grep -c '  - id:') tasks, $(cat "$P"/pipelines/*.yaml | wc -c) bytes of YAML"

echo "== validate the whole project, $RUNS runs"
for i in $(seq "$RUNS"); do
  s=$(date +%s%N); "$BIN" --project "$P" validate > /dev/null; e=$(date +%s%N)
  echo "BENCH name=validate_100_pipelines ms=$(( (e - s) / 1000000 ))"
done
echo "== plan the 2,000-task pipeline, $RUNS runs"
for i in $(seq "$RUNS"); do
  s=$(date +%s%N); "$BIN" --project "$P" plan big --json > "$P/plan.json"; e=$(date +%s%N)
  echo "BENCH name=plan_2000_tasks ms=$(( (e - s) / 1000000 ))"
done
echo "== run the 2,000-task pipeline (every task a Delta commit), 3 runs"
for i in 1 2 3; do
  rm -rf "$P/warehouse"
  s=$(date +%s%N); "$BIN" --project "$P" run big --json > "$P/run.json"; e=$(date +%s%N)
  python3 -c "
import json; r = json.load(open('$P/run.json'))
ok = sum(t['status'] == 'succeeded' for t in r['tasks'])
print(f'BENCH name=run_2000_tasks tasks={len(r[\"tasks\"])} succeeded={ok} status={r[\"status\"]} wall_ms={($e - $s) / 1e6:.0f} ms_per_task={($e - $s) / 1e6 / len(r[\"tasks\"]):.2f}')"
done
