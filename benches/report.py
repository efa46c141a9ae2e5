"""The benchmark suite's bookkeeping: parses the `BENCH name=... key=value` lines the benchmark
scripts print, checks that the tools agree, and renders BENCHMARKS.md's generated section.

  report.py agree <log> <bench> <key>...   the lines `<bench>_<tool>` must agree on every key
                                           (integers exactly, floats to 1e-9 relative); prints
                                           `BENCH name=<bench>_agree ok=0|1` and exits 1 on a mismatch
  report.py close <log> <bench> <key> <tol>
                                           the lines `<bench>_<tool>` carrying <key> are within
                                           <tol> of each other (e.g. holdout AUCs of different
                                           boosters); prints `BENCH name=<bench>_close ok=0|1`
  report.py render <results dir> <BENCHMARKS.md> [--quick]
                                           replaces the part between the suite markers with one
                                           table per benchmark: medians, ratios and the goals
"""
import math
import re
import statistics
import sys

LINE = re.compile(r"^BENCH (.*)$")
# key=value, where a bracketed value may hold spaces (`check_all=[3.58, 3.75]`).
PAIR = re.compile(r"(\w+)=(\[[^\]]*\]|\S+)")


def parse(path):
    """Every BENCH line of a log as a dict of strings, in order."""
    rows = []
    with open(path) as f:
        for line in f:
            m = LINE.match(line.strip())
            if m:
                rows.append(dict(PAIR.findall(m.group(1))))
    return rows


def number(text):
    try:
        return int(text)
    except ValueError:
        return float(text)


def same(a, b):
    a, b = number(a), number(b)
    if isinstance(a, int) and isinstance(b, int):
        return a == b
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-9)


def agree(log, bench, keys):
    tools_ = tools(log, bench)
    problems = []
    if len({r["name"] for r in tools_}) < 2:
        problems.append(f"fewer_than_two_tools({len(tools_)}_lines)")
    first = tools_[0] if tools_ else {}
    for r in tools_:
        for k in keys:
            if k not in r:
                problems.append(f"{r['name']}_run{r.get('run')}_lacks_{k}")
            elif k in first and not same(r[k], first[k]):
                problems.append(f"{k}:{r['name']}={r[k]}!={first['name']}={first[k]}")
    ok = int(not problems)
    detail = ",".join(problems[:5]) or f"{len(tools_)}_results_equal_on_{len(keys)}_keys"
    print(f"BENCH name={bench}_agree ok={ok} detail={detail}")
    return ok


def tools(log, bench):
    """The per-tool result lines of one benchmark (not the _rss, _agree or _close lines)."""
    return [r for r in parse(log) if re.fullmatch(rf"{bench}_[a-z0-9]+", r.get("name", ""))
            and not r["name"].endswith(("_agree", "_close"))]


def close(log, bench, key, tol):
    values = [(r["name"], float(r[key])) for r in tools(log, bench) if key in r]
    spread = max(v for _, v in values) - min(v for _, v in values) if values else math.inf
    ok = int(len({n for n, _ in values}) >= 2 and spread <= tol)
    detail = ",".join(f"{n}={v}" for n, v in values[:6])
    print(f"BENCH name={bench}_close ok={ok} key={key} spread={spread:.5f} tol={tol} detail={detail}")
    return ok


if __name__ == "__main__":
    command = sys.argv[1] if len(sys.argv) > 1 else ""
    if command == "agree":
        sys.exit(0 if agree(sys.argv[2], sys.argv[3], sys.argv[4:]) else 1)
    if command == "close":
        sys.exit(0 if close(sys.argv[2], sys.argv[3], sys.argv[4], float(sys.argv[5])) else 1)
    if command == "render":
        import render  # noqa: E402  (benches/render.py: the tables; kept apart from the parsing)
        render.main(sys.argv[2], sys.argv[3], "--quick" in sys.argv[4:])
        sys.exit(0)
    sys.exit(__doc__)
