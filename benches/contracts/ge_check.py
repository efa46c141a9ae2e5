"""Great Expectations (GX Core 1.x) peer: the 20 rules of events.odcs.yaml as one expectation
suite, validated with GX's pandas execution engine on the Parquet file.

    ge_check.py FILE.parquet [--result-format BASIC|SUMMARY] [--out verdicts.json]

Engine: pandas (pandas.read_parquet with pyarrow, then a GX pandas dataframe asset). It is
the fastest GX engine that reads a local file here: the Spark engine needs a JVM and a Spark
install, and GX's SQL engines read tables of a database (no DuckDB datasource in GX 1.x), not
a Parquet file. Timed from creating the GX context (reading the file included) to the last
verdict; importing great_expectations is reported separately as import_seconds.

Result format: SUMMARY (GX's default: counts plus up to 20 unexpected values per rule, the
counterpart of nightjar's example rows); BASIC skips the value lists.

Mapping (GX's meaning, where it differs from nightjar's):
- required -> expect_column_values_to_not_be_null
- unique -> expect_column_values_to_be_unique (GX counts every row of a repeated value)
- range -> expect_column_values_to_be_between (nulls ignored, as nightjar)
- invalidValues validValues -> expect_column_values_to_be_in_set (`mostly` for percent limits:
  GX's share is of the non-null rows, nightjar's of all rows; the same here: no nulls there)
- pattern -> expect_column_values_to_match_regex; maxLength -> expect_column_value_lengths_to_be_between
- missingValues (null or blank text) -> expect_column_values_to_not_match_regex `^\\s*$`;
  GX's column-map expectations skip nulls, so nulls count only in the `required` rule of the
  same column (this data has no nulls in page or device)
- duplicateValues over 3 columns -> expect_compound_columns_to_be_unique (every row of a
  repeated key, rows with a null key column ignored)
- rowCount -> expect_table_row_count_to_be_between
- the `sql` rule -> expect_column_values_to_be_in_set(page, ['/checkout']) with the row
  condition event_type == 'checkout'
- freshness -> expect_column_max_to_be_between(event_ts, min = end of ds - 2 days)
"""
import datetime as dt
import os
import sys
import time
import warnings

os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
warnings.filterwarnings("ignore")

T_IMPORT = time.perf_counter()
import great_expectations as gx  # noqa: E402
import great_expectations.expectations as gxe  # noqa: E402
import pandas as pd  # noqa: E402
from great_expectations.data_context.types.base import ProgressBarsConfig  # noqa: E402
from great_expectations.expectations.row_conditions import Column  # noqa: E402

import rules as R  # noqa: E402

IMPORT_SECONDS = time.perf_counter() - T_IMPORT


def suite_for() -> tuple[list[tuple[str, object]], "gx.ExpectationSuite"]:
    m_page_missing = 1 - R.PAGE_MISSING_MAX_PERCENT / 100
    m_device_known = 1 - R.DEVICE_INVALID_MAX_PERCENT / 100
    m_double_action = 1 - R.DOUBLE_ACTION_MAX_PERCENT / 100
    newest_min = R.FRESHNESS_REFERENCE - dt.timedelta(days=R.FRESHNESS_MAX_DAYS)
    by_rule = {
        **{
            f"events.{c}.required": gxe.ExpectColumnValuesToNotBeNull(column=c)
            for c in R.REQUIRED
        },
        "events.event_id.unique": gxe.ExpectColumnValuesToBeUnique(column="event_id"),
        "events.customer_id.range": gxe.ExpectColumnValuesToBeBetween(
            column="customer_id", min_value=R.CUSTOMER_ID_MIN, max_value=R.CUSTOMER_ID_MAX
        ),
        "events.event_ts.range": gxe.ExpectColumnValuesToBeBetween(
            column="event_ts", min_value=R.EVENT_TS_MIN
        ),
        "events_type_known": gxe.ExpectColumnValuesToBeInSet(
            column="event_type", value_set=R.EVENT_TYPES
        ),
        "events.page.length": gxe.ExpectColumnValueLengthsToBeBetween(
            column="page", max_value=R.PAGE_MAX_LENGTH
        ),
        "events.page.pattern": gxe.ExpectColumnValuesToMatchRegex(
            column="page", regex=R.PAGE_PATTERN
        ),
        "events_page_missing": gxe.ExpectColumnValuesToNotMatchRegex(
            column="page", regex=r"^\s*$", mostly=m_page_missing
        ),
        "events_device_known": gxe.ExpectColumnValuesToBeInSet(
            column="device", value_set=R.DEVICES, mostly=m_device_known
        ),
        "events_device_missing": gxe.ExpectColumnValuesToNotMatchRegex(
            column="device", regex=r"^\s*$"
        ),
        "events_no_double_action": gxe.ExpectCompoundColumnsToBeUnique(
            column_list=R.DOUBLE_ACTION_KEY,
            ignore_row_if="any_value_is_missing",
            mostly=m_double_action,
        ),
        "events_row_count": gxe.ExpectTableRowCountToBeBetween(min_value=R.ROW_COUNT_MIN),
        "events_checkout_on_checkout_page": gxe.ExpectColumnValuesToBeInSet(
            column="page",
            value_set=["/checkout"],
            row_condition=Column("event_type") == "checkout",
        ),
        "events.event_ts.freshness": gxe.ExpectColumnMaxToBeBetween(
            column="event_ts", min_value=newest_min
        ),
    }
    suite = gx.ExpectationSuite(name="events")
    pairs = []
    for rule in R.RULES:
        expectation = suite.add_expectation(by_rule[rule])
        pairs.append((rule, expectation))
    return pairs, suite


def main() -> None:
    path = sys.argv[1]
    result_format = "SUMMARY"
    if "--result-format" in sys.argv:
        result_format = sys.argv[sys.argv.index("--result-format") + 1]

    start = time.perf_counter()
    context = gx.get_context(mode="ephemeral")
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = context.data_sources.add_pandas("pandas")
    asset = source.add_dataframe_asset(name="events")
    batch_definition = asset.add_batch_definition_whole_dataframe("all")
    pairs, suite = suite_for()
    suite = context.suites.add(suite)
    t_read = time.perf_counter()
    df = pd.read_parquet(path, engine="pyarrow")
    read_seconds = time.perf_counter() - t_read
    batch = batch_definition.get_batch(batch_parameters={"dataframe": df})
    result = batch.validate(suite, result_format=result_format)
    seconds = time.perf_counter() - start

    rows = len(df)
    by_id = {str(r.expectation_config.id): r for r in result.results}
    out = {}
    for rule, expectation in pairs:
        r = by_id[str(expectation.id)]
        if r.exception_info and r.exception_info.get("raised_exception"):
            raise SystemExit(f"GX raised on {rule}: {r.exception_info['exception_message']}")
        res = r.result or {}
        if "unexpected_count" in res:
            observed = res["unexpected_count"]
            if rule in ("events_page_missing", "events_device_known", "events_no_double_action"):
                observed = 100.0 * observed / rows if rows else 0.0
        elif rule == "events.event_ts.freshness":
            newest = pd.Timestamp(res["observed_value"])
            observed = R.age_days(newest.to_pydatetime())
        else:
            observed = res.get("observed_value")
        out[rule] = R.verdict(r.success, observed)
    R.report(
        "ge",
        seconds,
        rows,
        out,
        read_seconds=f"{read_seconds:.3f}",
        import_seconds=f"{IMPORT_SECONDS:.3f}",
        version=gx.__version__,
        engine="pandas",
        pandas=pd.__version__,
        result_format=result_format,
    )


if __name__ == "__main__":
    main()
