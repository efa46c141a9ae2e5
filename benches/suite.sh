#!/usr/bin/env bash
# The side-by-side benchmark suite (BENCHMARKS.md): every benchmark against the tools users
# would pick instead, on the same data in the same run, then BENCHMARKS.md's generated section
# (medians, ratios nightjar / peer, peak memory, versions, the goal next to each figure).
#
# Usage: benches/suite.sh [--quick] [--only gbt,features,...] [--no-render]
#   default  the full sizes (59.5 min on 2 cores on 2026-12-07, against a goal of 20); rewrites BENCHMARKS.md's tables
#   --quick  small sizes, one round each: checks that every benchmark runs and that the tools'
#            results agree (CI runs this); prints the tables, leaves BENCHMARKS.md alone
# Binaries: NIGHTJAR_BIN, FEATURES_BIN, ASOF_BIN, ORCH_BIN and GBT_BIN use binaries already
# built. Otherwise the suite builds nightjar and its bench targets once: with --quick in the
# plain dev profile (what `cargo test` already built), else the dev profile with nightjar at
# opt-level 2 (dependencies are at opt-level 2 in dev anyway). That keeps a cold suite inside
# the time budget; a release build is faster still, so the ratios never flatter nightjar.
set -euo pipefail
cd "$(dirname "$0")/.."
QUICK=0; RENDER=1; ONLY="gbt,features,contracts,asof,orchestration,e2e,spill"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --only) ONLY=$2; shift ;;
    --no-render) RENDER=0 ;;
    *) echo "unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
MODE=full; FLAG=""
[ $QUICK = 1 ] && { MODE=quick; FLAG=--quick; }
OUT="benches/results/$(date -u +%Y%m%dT%H%M%SZ)-$MODE"
mkdir -p "$OUT/bin"

# The main crate's binaries share the test build's target dir (warm in CI); the GBT bench
# crate builds into its own (lib.sh's default), as it always has.
MAIN_TARGET="${CARGO_TARGET_DIR:-$HOME/.cache/nightjar-target}"
bench_bin() {  # the newest binary of a bench target
  ls -t "$MAIN_TARGET"/debug/deps/"$1"-* | grep -v '\.d$' | head -1
}
if [ -z "${NIGHTJAR_BIN:-}" ]; then
  OPT=""; [ $QUICK = 0 ] && OPT=2
  echo "== building nightjar and the bench targets (dev profile${OPT:+, nightjar at opt-level $OPT})"
  env CARGO_TARGET_DIR="$MAIN_TARGET" ${OPT:+CARGO_PROFILE_DEV_OPT_LEVEL=$OPT} \
    cargo build --locked --quiet --profile dev --bin nightjar --bench features --bench asof --bench orchestration
  # Copies: a later `cargo test` rebuilds nightjar at opt-level 0 over the same paths.
  cp "$MAIN_TARGET/debug/nightjar" "$OUT/bin/nightjar"
  for b in features asof orchestration; do cp "$(bench_bin $b)" "$OUT/bin/$b"; done
  export NIGHTJAR_BIN="$PWD/$OUT/bin/nightjar" FEATURES_BIN="$PWD/$OUT/bin/features"
  export ASOF_BIN="$PWD/$OUT/bin/asof" ORCH_BIN="$PWD/$OUT/bin/orchestration"
  echo "build dev profile${OPT:+, nightjar at opt-level $OPT}" > "$OUT/build.txt"
else
  echo "build given: ${NIGHTJAR_BUILD:-NIGHTJAR_BIN=$NIGHTJAR_BIN}" > "$OUT/build.txt"
fi

source benches/lib.sh
bench_venv
{
  echo "date $(date -u +%Y-%m-%dT%H:%M:%SZ)"
  echo "git $(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src benches Cargo.toml || echo ' (uncommitted changes)')"
  echo "machine $(bench_machine)"
  echo "nightjar $("$NIGHTJAR_BIN" --version)"
  echo "rustc $(rustc --version)"
  echo "python $("$PY" --version 2>&1)"
  echo "peers $("$PY" -m pip freeze --disable-pip-version-check | grep -iE "^($(grep -vE '^(#|$)' benches/requirements.txt | cut -d= -f1 | paste -sd'|'))==" | paste -sd' ')"
} > "$OUT/machine.txt"
cat "$OUT/machine.txt"

# Each benchmark in turn (never two at once: they would share the 2 cores), its output kept.
FAILED=""
for bench in ${ONLY//,/ }; do
  case "$bench" in
    gbt) cmd=(benches/gbt/run.sh $FLAG --runs 2) ;;
    features) cmd=(benches/features/run.sh $FLAG) ;;
    contracts) cmd=(benches/contracts/run.sh $FLAG --rounds 3) ;;
    asof) cmd=(benches/asof/run.sh $FLAG) ;;
    orchestration) cmd=(benches/orchestration/run.sh $FLAG) ;;
    e2e) cmd=(benches/e2e/run.sh $FLAG) ;;
    spill) cmd=(benches/spill/run.sh $FLAG) ;;
    *) echo "unknown benchmark $bench" >&2; exit 2 ;;
  esac
  # Quick: one round everywhere (each script's --quick size), whatever the full run's rounds.
  [ $QUICK = 1 ] && [ "$bench" = contracts ] && cmd=(benches/contracts/run.sh --quick)
  [ $QUICK = 1 ] && [ "$bench" = gbt ] && cmd=(benches/gbt/run.sh --quick)
  echo; echo "==== $bench: ${cmd[*]}"
  s=$(date +%s)
  code=0
  "${cmd[@]}" > "$OUT/$bench.log" 2>&1 || code=$?
  e=$(date +%s)
  grep '^BENCH' "$OUT/$bench.log" | tail -n 40 || true
  echo "BENCH name=suite_section bench=$bench seconds=$((e - s)) exit=$code" | tee -a "$OUT/suite.log"
  [ $code = 0 ] || { FAILED="$FAILED $bench"; echo "!! $bench failed (exit $code); its log: $OUT/$bench.log"; tail -n 20 "$OUT/$bench.log"; }
done

if [ $RENDER = 1 ]; then
  if [ $QUICK = 1 ]; then
    "$PY" benches/report.py render "$OUT" - --quick
  else
    "$PY" benches/report.py render "$OUT" BENCHMARKS.md
    echo "BENCHMARKS.md: generated section rewritten from $OUT"
  fi
fi
if [ -n "$FAILED" ]; then
  echo "benchmarks failed:$FAILED" >&2
  exit 1
fi
