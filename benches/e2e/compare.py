"""Do nightjar's and the pandas script's outputs agree? For benches/e2e/run.sh.

Both sides' tables are read from Parquet (nightjar's exported by run.sh after its last timed
run, untimed) and summarised by the same code:
  - row counts of the three feature views, the three training sets and the three score tables
    (exact), and the distinct customers scored (exact);
  - per feature view and per training set, the sum and null count of every feature and label
    column (relative tolerance 1e-9: only the summation order may differ);
  - holdout metrics: the propensity and churn-baseline logistic AUCs (the same convex problem
    on the same rows) within 0.002, and the mean propensity score within 0.002 (the features
    at scoring time agree); the churn GBT AUC within max(0.005, 1/sqrt(holdout rows)) and
    the LTV R² within max(0.02, 2/sqrt(holdout rows)): two GBT implementations with their own
    random draws, on holdouts that are small in --quick. (At 100k customers nightjar's LTV
    R² was 0.695 against LightGBM's 0.705-0.711 over five validation draws: a real gap of
    ~0.013 that this tolerance admits and the report shows; the churn AUCs agreed to 1e-4.)
Prints one line per check, then `BENCH name=e2e_agree ok=<0|1> detail=...`; exits 1 unless ok.

Usage: compare.py NIGHTJAR_EXPORTS NIGHTJAR_REGISTRY PANDAS_OUT
"""

import json
import math
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

VIEWS = ["customer_rfm", "customer_engagement", "campaign_exposure"]
TRAINING = {"churn": "churned", "propensity": "purchased", "ltv": "revenue_60d"}
SCORES = ["churn", "propensity", "ltv"]
KEYS = {"customer_id", "feature_ts", "label_ts", "country", "age_band"}


def column_stats(path: Path) -> dict:
    """Rows, and each numeric non-key column's sum and null count."""
    table = pq.read_table(path)
    stats = {"rows": table.num_rows}
    for name in table.column_names:
        column = table[name]
        if name in KEYS or not (pa.types.is_integer(column.type) or
                                pa.types.is_floating(column.type)):
            continue
        stats[f"{name}.sum"] = pc.sum(column).as_py() or 0
        stats[f"{name}.nulls"] = column.null_count
    return stats


def main():
    nightjar, registry, pandas_out = map(Path, sys.argv[1:4])
    checks = []  # (name, nightjar value, pandas value, ok)

    def exact(name, a, b):
        checks.append((name, a, b, a == b))

    def close(name, a, b, tolerance):
        ok = a is not None and b is not None and abs(a - b) <= tolerance
        checks.append((f"{name}(tol={tolerance:.3g})", a, b, ok))

    for kind, names in (("features", VIEWS), ("training", list(TRAINING))):
        for name in names:
            ours = column_stats(nightjar / kind / f"{name}.parquet")
            theirs = column_stats(pandas_out / kind / f"{name}.parquet")
            for key in sorted(set(ours) | set(theirs)):
                a, b = ours.get(key), theirs.get(key)
                if key == "rows" or key.endswith(".nulls") or a is None or b is None:
                    exact(f"{kind}.{name}.{key}", a, b)
                else:
                    close(f"{kind}.{name}.{key}", a, b, 1e-9 * max(1.0, abs(a), abs(b)))
    means = {}
    for name in SCORES:
        sides = []
        for root in (nightjar, pandas_out):
            table = pq.read_table(root / "scores" / f"{name}.parquet",
                                  columns=["customer_id", "score"])
            sides.append(table)
        exact(f"scores.{name}.rows", sides[0].num_rows, sides[1].num_rows)
        exact(f"scores.{name}.customers", len(pc.unique(sides[0]["customer_id"])),
              len(pc.unique(sides[1]["customer_id"])))
        means[name] = [pc.mean(s["score"]).as_py() for s in sides]
    close("scores.propensity.mean", *means["propensity"], 0.002)

    pandas_metrics = json.loads((pandas_out / "metrics.json").read_text())["models"]
    for model, metric in (("churn", "auc"), ("churn_logistic", "auc"), ("propensity", "auc"),
                          ("ltv", "r2")):
        meta = json.loads((registry / model / "versions" / "1" / "metadata.json").read_text())
        ours, theirs = meta["metrics"][metric], pandas_metrics[model][metric]
        exact(f"{model}.holdout_rows", meta["training"]["holdout_rows"],
              pandas_metrics[model]["holdout_rows"])
        rows = meta["training"]["holdout_rows"]
        tolerance = {"churn": max(0.005, 1 / math.sqrt(rows)),
                     "ltv": max(0.02, 2 / math.sqrt(rows))}.get(model, 0.002)
        close(f"{model}.{metric}", ours, theirs, tolerance)

    # The column sums are many and uninteresting when they agree: counted, not listed.
    sums = [c for c in checks if c[0].split("(")[0].endswith((".sum", ".nulls"))]
    for name, a, b, ok in checks:
        if not ok or (name, a, b, ok) not in sums:
            print(f"  {'ok  ' if ok else 'FAIL'} {name}: nightjar={a} pandas={b}")
    print(f"  {sum(ok for *_, ok in sums)} of {len(sums)} column sums and null counts agree")
    for name in SCORES:
        print(f"  info scores.{name}.mean: nightjar={means[name][0]:.6g} pandas={means[name][1]:.6g}")
    failed = [name.split("(")[0] for name, _, _, ok in checks if not ok]
    detail = f"checks={len(checks)},failed={len(failed)}"
    if failed:
        detail += ":" + ",".join(failed[:4])
    print(f"BENCH name=e2e_agree ok={int(not failed)} detail={detail}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
