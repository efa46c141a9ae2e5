"""Plants the benchmark's faults into nightjar's synthetic events and writes the Parquet file
every tool checks.

    make_data.py CLEAN.parquet OUT.parquet

Row `rn` (1-based position in the clean file) gets a fault by `k = rn % 10000`, so the faults are a
fixed share of the rows at any scale and no row gets two:

| k       | fault                                   | rule it breaks                                 |
|---------|-----------------------------------------|------------------------------------------------|
| 1       | session_id NULL                         | events.session_id.required                     |
| 2       | customer_id -1                          | events.customer_id.range                       |
| 3       | event_type 'purchase'                   | events_type_known                              |
| 4, 5, 9 | page '' (page_view rows only)           | events.page.pattern, events_page_missing (0.02%) |
| 6       | device 'smart_tv'                       | none: events_device_known allows 0.1%          |
| 7       | event_ts 1970-01-01                     | events.event_ts.range                          |
| 8       | the row is written twice                | events.event_id.unique; events_no_double_action allows 0.1% |

Written with DuckDB: zstd, row groups of 1,048,576 rows (as nightjar's own export), plain
UTF-8 strings, event_ts as a UTC-adjusted microsecond timestamp.
"""
import sys
import time

import duckdb

SQL = """
COPY (
  WITH src AS (
    SELECT * EXCLUDE (file_row_number), file_row_number + 1 AS rn
    FROM read_parquet({src}, file_row_number = true)
  ), planted AS (
    SELECT
      event_id,
      CASE WHEN rn % 10000 = 2 THEN -1 ELSE customer_id END AS customer_id,
      CASE WHEN rn % 10000 = 1 THEN NULL ELSE session_id END AS session_id,
      CASE WHEN rn % 10000 = 7 THEN TIMESTAMPTZ '1970-01-01 00:00:00+00' ELSE event_ts END
        AS event_ts,
      CASE WHEN rn % 10000 = 3 THEN 'purchase' ELSE CAST(event_type AS VARCHAR) END
        AS event_type,
      CASE WHEN rn % 10000 IN (4, 5, 9) AND event_type = 'page_view' THEN ''
           ELSE CAST(page AS VARCHAR) END AS page,
      CASE WHEN rn % 10000 = 6 THEN 'smart_tv' ELSE CAST(device AS VARCHAR) END AS device,
      rn
    FROM src
  )
  SELECT event_id, customer_id, session_id, event_ts, event_type, page, device
  FROM (
    SELECT *, 0 AS copy FROM planted
    UNION ALL
    SELECT *, 1 AS copy FROM planted WHERE rn % 10000 = 8
  )
  ORDER BY rn, copy
) TO {out} (FORMAT parquet, COMPRESSION zstd, ROW_GROUP_SIZE 1048576)
"""


def main() -> None:
    src, out = sys.argv[1], sys.argv[2]
    start = time.perf_counter()
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute("SET enable_progress_bar = false")
    con.execute(SQL.format(src=duckdb_literal(src), out=duckdb_literal(out)))
    rows = con.execute(f"SELECT count(*) FROM read_parquet({duckdb_literal(out)})").fetchone()[0]
    print(f"planted faults: {out} rows={rows} seconds={time.perf_counter() - start:.1f}")


def duckdb_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


if __name__ == "__main__":
    main()
