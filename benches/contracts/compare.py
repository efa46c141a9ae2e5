"""The runner's helper (benches/contracts/run.sh): nightjar's report in the common verdict
format, and the summary of a run (per-rule verdicts, medians, ratios, goals).

    compare.py nightjar REPORT.json SECONDS --out verdicts.json
    compare.py summary RESULTS_DIR

RESULTS_DIR holds `<tool>.<round>.json` (rules.py's format) and `wall.tsv` (tool, round,
process wall seconds, exit code) written by run.sh.
"""
import glob
import json
import os
import statistics
import sys

import rules as R

# The order of the table columns; the first is the one compared with all others.
TOOLS = ["nightjar", "ge", "pandera", "pandera_pandas", "duckdb"]
LABELS = {
    "nightjar": "nightjar",
    "ge": "Great Expectations",
    "pandera": "pandera (polars)",
    "pandera_pandas": "pandera (pandas)",
    "duckdb": "DuckDB SQL",
}


def nightjar(report_path: str, seconds: float) -> None:
    report = json.load(open(report_path))
    results = {r["rule_id"]: r for r in report["results"]}
    out = {}
    for rule in R.RULES:
        r = results[rule]
        out[rule] = R.verdict(r["passed"], r.get("observed"))
    schema = results.get("events.schema", {})
    R.report(
        "nightjar",
        seconds,
        report["rows"],
        out,
        schema_passed=schema.get("passed"),
        queries=len(report["queries"]),
    )


def fmt_observed(v) -> str:
    if v is None:
        return "-"
    if float(v).is_integer():
        return str(int(v))
    return f"{v:.4f}"


def summary(results_dir: str) -> int:
    runs: dict[str, list[dict]] = {}
    for path in sorted(glob.glob(os.path.join(results_dir, "*.json"))):
        data = json.load(open(path))
        runs.setdefault(data["tool"], []).append(data)
    walls: dict[str, list[float]] = {}
    wall_path = os.path.join(results_dir, "wall.tsv")
    if os.path.exists(wall_path):
        for line in open(wall_path):
            tool, rnd, wall, code = line.split()
            walls.setdefault(tool, []).append(float(wall))
            # nightjar exits 3 on a blocking violation (expected here); the scripts exit 0.
            if code != ("3" if tool == "nightjar" else "0"):
                print(f"WARNING: {tool} round {rnd} exited {code}")
    tools = [t for t in TOOLS if t in runs]

    # Verdicts: every run of every tool against nightjar's first run.
    base = runs["nightjar"][0]["rules"]
    print("== per-rule verdicts (observed as each tool reports it; percent rules in %)")
    width = max(len(r) for r in R.RULES)
    header = f"{'rule':<{width}}  " + "  ".join(f"{t:>16}" for t in tools) + "  agree"
    print(header)
    disagreements = 0
    for rule in R.RULES:
        cells = []
        agree = True
        for t in tools:
            first = runs[t][0]["rules"][rule]
            if any(run["rules"][rule]["passed"] != base[rule]["passed"] for run in runs[t]):
                agree = False
            mark = "pass" if first["passed"] else "FAIL"
            cells.append(f"{mark} {fmt_observed(first['observed']):>11}")
        disagreements += not agree
        print(f"{rule:<{width}}  " + "  ".join(f"{c:>16}" for c in cells) + f"  {'yes' if agree else 'NO'}")
    failed = sum(not base[r]["passed"] for r in R.RULES)
    rows = {t: {run["rows"] for run in runs[t]} for t in tools}
    same_rows = len(set().union(*rows.values())) == 1
    print(
        f"verdicts agree: {'yes' if disagreements == 0 else 'NO'} "
        f"({len(R.RULES) - failed} pass, {failed} fail; {disagreements} rules disagree); "
        f"rows read: {', '.join(f'{t}={sorted(v)}' for t, v in rows.items())}"
        f"{'' if same_rows else ' (ROW COUNTS DIFFER)'}"
    )
    schema = runs["nightjar"][0].get("schema_passed")
    print(f"(nightjar also ran its schema drift check events.schema: {'pass' if schema else 'FAIL'}; not one of the 20)")

    # Times.
    print("\n== seconds per round (check = in-process read + check; wall = whole process)")
    med_check, med_wall = {}, {}
    for t in tools:
        check = [run["seconds"] for run in runs[t]]
        wall = walls.get(t, [])
        med_check[t] = statistics.median(check)
        med_wall[t] = statistics.median(wall) if wall else float("nan")
        extra = ""
        if "import_seconds" in runs[t][0]:
            imports = [float(run["import_seconds"]) for run in runs[t]]
            extra += f" import_median={statistics.median(imports):.2f}"
        if "read_seconds" in runs[t][0]:
            reads = [float(run["read_seconds"]) for run in runs[t]]
            extra += f" read_median={statistics.median(reads):.2f}"
        print(
            f"BENCH name=contracts_{t}_median check_s={med_check[t]:.3f} wall_s={med_wall[t]:.3f} "
            f"rounds={len(check)} check_all=[{', '.join(f'{x:.2f}' for x in check)}] "
            f"wall_all=[{', '.join(f'{x:.2f}' for x in wall)}]{extra}"
        )

    # nightjar's time is its process wall time (start-up, reading and checking); the Python
    # tools' is their in-process time (interpreter start and imports excluded), and, second,
    # their whole process.
    nj = med_wall["nightjar"]
    print("\n== ratios (nightjar = process wall time of the CLI)")
    for t in tools[1:]:
        print(
            f"RATIO nightjar/{t}={nj / med_check[t]:.3f} (vs {t}'s in-process read+check; "
            f"{t} takes {med_check[t] / nj:.2f}x nightjar's time)  "
            f"nightjar/{t}_wall={nj / med_wall[t]:.3f} (vs {t}'s whole process)"
        )
    if "ge" in med_check:
        speedup = med_check["ge"] / nj
        ok = speedup >= 10
        print(f"GOAL >= 10x faster than Great Expectations: {speedup:.1f}x -> {'met' if ok else 'MISSED'}")
    if "duckdb" in med_check:
        ratio = nj / med_check["duckdb"]
        ok = ratio <= 1.3
        print(f"GOAL <= 1.3x the hand-written DuckDB scan: {ratio:.2f}x -> {'met' if ok else 'MISSED'}")
    ok = disagreements == 0 and same_rows
    print(f"BENCH name=contracts_agree ok={int(ok)} detail={disagreements}_rules_disagree,rows_equal={int(same_rows)}")
    return 0 if ok else 1


if __name__ == "__main__":
    if sys.argv[1] == "nightjar":
        nightjar(sys.argv[2], float(sys.argv[3]))
    elif sys.argv[1] == "summary":
        sys.exit(summary(sys.argv[2]))
    else:
        raise SystemExit(__doc__)
