# Sourced by the benchmark scripts: one virtualenv of pinned peers, the nightjar binary to time,
# and a machine line. Callers `cd` to the repository root first.
#   BENCH_VENV    where the peers' virtualenv lives (default benches/.venv)
#   NIGHTJAR_BIN  a nightjar binary already built; otherwise the release build is made
# shellcheck shell=bash

BENCH_VENV="${BENCH_VENV:-$PWD/benches/.venv}"
PY="$BENCH_VENV/bin/python"
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/nightjar-bench-target}"
# GX phones home by default; a benchmark must not.
export GX_ANALYTICS_ENABLED=false

# The peers, installed once per venv: suite.sh sets BENCH_VENV_READY so its sections skip pip.
bench_venv() {
  [ "${BENCH_VENV_READY:-0}" = 1 ] && return 0
  [ -x "$PY" ] || python3 -m venv "$BENCH_VENV"
  "$PY" -m pip install --quiet --disable-pip-version-check -r benches/requirements.txt
  export BENCH_VENV_READY=1
}

# Sets BIN to the nightjar CLI to time.
bench_nightjar() {
  if [ -n "${NIGHTJAR_BIN:-}" ]; then
    BIN=$NIGHTJAR_BIN
  else
    cargo build --release --locked --quiet --bin nightjar
    BIN="$CARGO_TARGET_DIR/release/nightjar"
  fi
}

bench_machine() {
  echo "nproc $(nproc); $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(uname -m);" \
    "mem $(free -g | awk '/Mem:/ {print $2}')GiB; load $(cut -d' ' -f1-3 /proc/loadavg)"
}

# Prints the path of bench target $1's binary: $2 when given, else its release build.
bench_target() {
  if [ -n "${2:-}" ]; then echo "$2"; return; fi
  cargo build --release --locked --quiet --bench "$1"
  ls -t "$CARGO_TARGET_DIR"/release/deps/"$1"-* | grep -v '\.d$' | head -1
}
