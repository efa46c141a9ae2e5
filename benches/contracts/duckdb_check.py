"""The practical floor: the 20 rules of events.odcs.yaml as hand-written DuckDB SQL on the
Parquet file, with nightjar's metric definitions (src/contracts/sql.rs).

    duckdb_check.py FILE.parquet [--dups separate|inline] [--threads N] [--out verdicts.json]

One aggregate scan computes the row count, every row-level count, the `sql` rule's count and
the newest event_ts. The two duplicate metrics (rows beyond the first of each non-null key) are
computed `--dups separate` (default): one GROUP BY query per key, as nightjar does; or
`--dups inline`: as `count - count(DISTINCT key)` inside the same single scan. No example rows
are fetched. Timed from connecting to the last verdict (the file is read inside the queries).
"""
import datetime as dt
import sys
import time

T_IMPORT = time.perf_counter()
import duckdb  # noqa: E402

import rules as R  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - T_IMPORT


def lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def in_list(values) -> str:
    return ", ".join(lit(v) for v in values)


KEY_NOT_NULL = " AND ".join(f"{c} IS NOT NULL" for c in R.DOUBLE_ACTION_KEY)
KEY = ", ".join(R.DOUBLE_ACTION_KEY)

# Every row-level metric of the contract, as `name: predicate` (true when the row violates).
ROW_COUNTS = {
    **{f"events.{c}.required": f"{c} IS NULL" for c in R.REQUIRED},
    "events.customer_id.range": (
        f"customer_id < {R.CUSTOMER_ID_MIN} OR customer_id > {R.CUSTOMER_ID_MAX}"
    ),
    "events.event_ts.range": f"event_ts < TIMESTAMPTZ {lit(R.EVENT_TS_MIN.isoformat())}",
    "events_type_known": f"event_type NOT IN ({in_list(R.EVENT_TYPES)})",
    "events.page.length": f"length(page) > {R.PAGE_MAX_LENGTH}",
    "events.page.pattern": f"NOT regexp_matches(page, {lit(R.PAGE_PATTERN)})",
    "events_page_missing": "page IS NULL OR trim(page) = ''",
    "events_device_known": f"device NOT IN ({in_list(R.DEVICES)})",
    "events_device_missing": "device IS NULL OR trim(device) = ''",
    "events_checkout_on_checkout_page": "event_type = 'checkout' AND page <> '/checkout'",
}


def scan_sql(path: str, inline_dups: bool) -> tuple[str, list[str]]:
    names = list(ROW_COUNTS)
    select = ["count(*)"]
    # count(*) FILTER counts rows where the predicate is true; NULL (a null column) is not.
    select += [f"count(*) FILTER (WHERE {ROW_COUNTS[n]})" for n in names]
    select.append("epoch(max(event_ts))")  # seconds, as a double (no pytz needed)
    if inline_dups:
        select.append("count(event_id) - count(DISTINCT event_id)")
        select.append(
            f"count(*) FILTER (WHERE {KEY_NOT_NULL}) - "
            f"count(DISTINCT ({KEY})) FILTER (WHERE {KEY_NOT_NULL})"
        )
    return f"SELECT {', '.join(select)} FROM read_parquet({lit(path)})", names


def dup_sql(path: str, key: str, not_null: str) -> str:
    return (
        f"SELECT coalesce(sum(n - 1), 0) FROM (SELECT count(*) AS n FROM read_parquet({lit(path)}) "
        f"WHERE {not_null} GROUP BY {key} HAVING count(*) > 1)"
    )


def main() -> None:
    path = sys.argv[1]
    inline = "--dups" in sys.argv and sys.argv[sys.argv.index("--dups") + 1] == "inline"
    threads = int(sys.argv[sys.argv.index("--threads") + 1]) if "--threads" in sys.argv else None

    start = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    if threads:
        con.execute(f"SET threads TO {threads}")
    sql, names = scan_sql(path, inline)
    row = con.execute(sql).fetchone()
    rows = int(row[0])
    counts = dict(zip(names, row[1 : 1 + len(names)]))
    newest = row[1 + len(names)]
    newest = None if newest is None else dt.datetime.fromtimestamp(newest, dt.timezone.utc)
    if inline:
        dup_id, dup_key = row[2 + len(names)], row[3 + len(names)]
    else:
        dup_id = con.execute(dup_sql(path, "event_id", "event_id IS NOT NULL")).fetchone()[0]
        dup_key = con.execute(dup_sql(path, KEY, KEY_NOT_NULL)).fetchone()[0]
    seconds = time.perf_counter() - start

    def pct(n):
        return 100.0 * n / rows if rows else 0.0

    v = R.verdict
    out = {name: v(counts[name] == 0, counts[name]) for name in names}
    out["events_page_missing"] = v(
        pct(counts["events_page_missing"]) <= R.PAGE_MISSING_MAX_PERCENT,
        pct(counts["events_page_missing"]),
    )
    out["events_device_known"] = v(
        pct(counts["events_device_known"]) <= R.DEVICE_INVALID_MAX_PERCENT,
        pct(counts["events_device_known"]),
    )
    out["events.event_id.unique"] = v(dup_id == 0, dup_id)
    out["events_no_double_action"] = v(
        pct(dup_key) <= R.DOUBLE_ACTION_MAX_PERCENT, pct(dup_key)
    )
    out["events_row_count"] = v(rows >= R.ROW_COUNT_MIN, rows)
    age = R.age_days(newest)
    out["events.event_ts.freshness"] = v(age is not None and age <= R.FRESHNESS_MAX_DAYS, age)
    R.report(
        "duckdb",
        seconds,
        rows,
        out,
        import_seconds=f"{IMPORT_SECONDS:.3f}",
        version=duckdb.__version__,
        dups="inline" if inline else "separate",
    )


if __name__ == "__main__":
    main()
