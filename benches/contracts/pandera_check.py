"""pandera peer: the 20 rules of events.odcs.yaml as one pandera DataFrameSchema, validated
lazily (every failure collected) on the Parquet file.

    pandera_check.py FILE.parquet [--backend polars|pandas] [--out verdicts.json]

Backends: `polars` (default; pandera.polars on a polars DataFrame from pl.read_parquet, the
fastest pandera backend here, multi-threaded) or `pandas` (pandera.pandas on pd.read_parquet
with pyarrow; pandas' checks run on one core). Timed from reading the file to the last
verdict; importing pandera is reported separately as import_seconds.

Mapping: `required` -> `nullable=False`; `unique` -> `unique=True`; ranges, validValues,
pattern and maxLength -> the built-in checks in_range, ge, isin, str_matches, str_length (nulls
ignored, as nightjar); rules with a percent limit, the 3-column duplicate share (nightjar's
count: rows beyond the first of each non-null key), row count and freshness -> custom checks
returning one boolean (pandera has no tolerance or row-count check); missingValues -> a custom
element-wise check (null or blank fails); the `sql` rule -> a dataframe-level element-wise
check. No column types are checked (none of the 20 rules is about types). A rule passes when
pandera reports no failure case for it; `observed` is the number of failure cases of an
element-wise rule (pandera reports every row of a repeated value for `unique`), and empty
for the one-boolean checks.
"""
import sys
import time

T_IMPORT = time.perf_counter()
BACKEND = sys.argv[sys.argv.index("--backend") + 1] if "--backend" in sys.argv else "polars"
if BACKEND == "polars":
    import pandera.polars as pa  # noqa: E402
    import polars as pl  # noqa: E402
elif BACKEND == "pandas":
    import pandas as pd  # noqa: E402
    import pandera.pandas as pa  # noqa: E402
else:
    raise SystemExit(f"unknown backend {BACKEND}")
import pandera  # noqa: E402

import rules as R  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - T_IMPORT

C = pa.Check


def polars_schema():
    """(schema, {(column or None, check_number): rule id})."""

    def scalar(expr):
        # One boolean as a one-row LazyFrame (a Python bool does not mix with the other
        # failure cases in pandera 0.35's polars backend).
        return lambda d: d.lazyframe.select(expr)

    col = pl.col
    key_ok = pl.all_horizontal([col(c).is_not_null() for c in R.DOUBLE_ACTION_KEY])
    duplicates = key_ok.sum() - pl.struct(R.DOUBLE_ACTION_KEY).filter(key_ok).n_unique()
    newest_min = R.FRESHNESS_REFERENCE.timestamp() - R.FRESHNESS_MAX_DAYS * 86_400
    blank = col("page").is_null() | (col("page").str.strip_chars() == "")
    bad_device = col("device").is_not_null() & ~col("device").is_in(R.DEVICES)
    columns = {
        "event_id": pa.Column(nullable=False, unique=True),
        "customer_id": pa.Column(
            nullable=False,
            checks=[C.in_range(R.CUSTOMER_ID_MIN, R.CUSTOMER_ID_MAX)],
        ),
        "session_id": pa.Column(nullable=False),
        "event_ts": pa.Column(
            nullable=False,
            checks=[
                C.ge(R.EVENT_TS_MIN),
                C(
                    scalar(col("event_ts").max().dt.epoch("us") >= newest_min * 1e6),
                    name="freshness",
                ),
            ],
        ),
        "event_type": pa.Column(nullable=False, checks=[C.isin(R.EVENT_TYPES)]),
        "page": pa.Column(
            nullable=False,
            checks=[
                C.str_length(max_value=R.PAGE_MAX_LENGTH),
                C.str_matches(R.PAGE_PATTERN),
                C(
                    scalar(blank.sum() * 100.0 / pl.len() <= R.PAGE_MISSING_MAX_PERCENT),
                    name="missing_percent",
                ),
            ],
        ),
        "device": pa.Column(
            nullable=False,
            checks=[
                C(
                    scalar(bad_device.sum() * 100.0 / pl.len() <= R.DEVICE_INVALID_MAX_PERCENT),
                    name="invalid_percent",
                ),
                C(
                    lambda d: d.lazyframe.select(
                        col(d.key).is_not_null() & (col(d.key).str.strip_chars() != "")
                    ),
                    ignore_na=False,
                    name="not_missing",
                ),
            ],
        ),
    }
    frame_checks = [
        C(scalar(duplicates * 100.0 / pl.len() <= R.DOUBLE_ACTION_MAX_PERCENT), name="dups"),
        C(scalar(pl.len() >= R.ROW_COUNT_MIN), name="row_count"),
        C(
            lambda d: d.lazyframe.select(
                ~((col("event_type") == "checkout") & (col("page") != "/checkout"))
            ),
            name="checkout_page",
        ),
    ]
    return pa.DataFrameSchema(columns, checks=frame_checks), check_ids()


def pandas_schema():
    newest_min = pd.Timestamp(R.FRESHNESS_REFERENCE) - pd.Timedelta(days=R.FRESHNESS_MAX_DAYS)

    def blank_share(s):
        return 100.0 * (s.isna() | (s.str.strip() == "")).sum() / len(s) if len(s) else 0.0

    def invalid_share(s):
        return 100.0 * (s.notna() & ~s.isin(R.DEVICES)).sum() / len(s) if len(s) else 0.0

    def duplicate_share(df):
        keys = df[R.DOUBLE_ACTION_KEY].dropna()
        return 100.0 * keys.duplicated().sum() / len(df) if len(df) else 0.0

    columns = {
        "event_id": pa.Column(nullable=False, unique=True),
        "customer_id": pa.Column(
            nullable=False, checks=[C.in_range(R.CUSTOMER_ID_MIN, R.CUSTOMER_ID_MAX)]
        ),
        "session_id": pa.Column(nullable=False),
        "event_ts": pa.Column(
            nullable=False,
            checks=[
                C.ge(pd.Timestamp(R.EVENT_TS_MIN)),
                C(lambda s: s.max() >= newest_min, name="freshness"),
            ],
        ),
        "event_type": pa.Column(nullable=False, checks=[C.isin(R.EVENT_TYPES)]),
        "page": pa.Column(
            nullable=False,
            checks=[
                C.str_length(max_value=R.PAGE_MAX_LENGTH),
                C.str_matches(R.PAGE_PATTERN),
                C(
                    lambda s: blank_share(s) <= R.PAGE_MISSING_MAX_PERCENT,
                    ignore_na=False,
                    name="missing_percent",
                ),
            ],
        ),
        "device": pa.Column(
            nullable=False,
            checks=[
                C(
                    lambda s: invalid_share(s) <= R.DEVICE_INVALID_MAX_PERCENT,
                    ignore_na=False,
                    name="invalid_percent",
                ),
                C(lambda s: s.notna() & (s.str.strip() != ""), ignore_na=False, name="not_missing"),
            ],
        ),
    }
    frame_checks = [
        C(lambda df: duplicate_share(df) <= R.DOUBLE_ACTION_MAX_PERCENT, name="dups"),
        C(lambda df: len(df) >= R.ROW_COUNT_MIN, name="row_count"),
        C(
            lambda df: ~((df["event_type"] == "checkout") & (df["page"] != "/checkout")),
            name="checkout_page",
        ),
    ]
    return pa.DataFrameSchema(columns, checks=frame_checks), check_ids()


def check_ids():
    """Rule ids by (column, check number); `not_nullable` and `field_uniqueness` by column."""
    return {
        ("customer_id", 0): "events.customer_id.range",
        ("event_ts", 0): "events.event_ts.range",
        ("event_ts", 1): "events.event_ts.freshness",
        ("event_type", 0): "events_type_known",
        ("page", 0): "events.page.length",
        ("page", 1): "events.page.pattern",
        ("page", 2): "events_page_missing",
        ("device", 0): "events_device_known",
        ("device", 1): "events_device_missing",
        (None, 0): "events_no_double_action",
        (None, 1): "events_row_count",
        (None, 2): "events_checkout_on_checkout_page",
    }


SCALAR_RULES = {
    "events.event_ts.freshness",
    "events_page_missing",
    "events_device_known",
    "events_no_double_action",
    "events_row_count",
}


def failure_counts(failure_cases, ids) -> dict:
    """Failure cases per rule id."""
    if BACKEND == "polars":
        records = failure_cases.select(["column", "check", "check_number"]).rows()
    else:
        records = list(
            failure_cases[["column", "check", "check_number"]].itertuples(index=False, name=None)
        )
    counts = {}
    for column, check, number in records:
        column = column if isinstance(column, str) else None
        if check == "not_nullable":
            rule = f"events.{column}.required"
        elif check == "field_uniqueness":
            rule = f"events.{column}.unique"
        else:
            rule = ids.get((column, int(number)))
        if rule is None:
            raise SystemExit(f"pandera: failure of unmapped check {column!r} {check!r} #{number}")
        counts[rule] = counts.get(rule, 0) + 1
    return counts


def main() -> None:
    path = sys.argv[1]
    start = time.perf_counter()
    if BACKEND == "polars":
        df = pl.read_parquet(path)
        schema, ids = polars_schema()
    else:
        df = pd.read_parquet(path, engine="pyarrow")
        schema, ids = pandas_schema()
    read_seconds = time.perf_counter() - start
    try:
        schema.validate(df, lazy=True)
        counts = {}
    except pa.errors.SchemaErrors as e:
        counts = failure_counts(e.failure_cases, ids)
    seconds = time.perf_counter() - start

    out = {}
    for rule in R.RULES:
        n = counts.get(rule, 0)
        out[rule] = R.verdict(n == 0, None if rule in SCALAR_RULES else n)
    extra = {"polars": pl.__version__} if BACKEND == "polars" else {"pandas": pd.__version__}
    R.report(
        "pandera" if BACKEND == "polars" else "pandera_pandas",
        seconds,
        len(df),
        out,
        read_seconds=f"{read_seconds:.3f}",
        import_seconds=f"{IMPORT_SECONDS:.3f}",
        version=pandera.__version__,
        backend=BACKEND,
        **extra,
    )


if __name__ == "__main__":
    main()
