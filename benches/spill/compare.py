"""The larger-than-memory benchmark's reference side (benches/spill/run.sh), all in DuckDB:

  compare.py size <events.parquet>
      prints `rows=<n> input_mb=<MiB> parquet_mb=<MiB>`: the input size is the Arrow in-memory
      size of the four columns the query reads in the plain layout (8 bytes per Int64 and
      Timestamp value; the Utf8 column's 4-byte offsets plus its bytes; no nulls, so no
      validity bitmaps), computed from the exported Parquet without loading it
  compare.py duckdb <events.parquet> <out.parquet> <limit MiB> <temp dir> <run>
      runs the same query as project/pipelines/sql/session_rollup.sql on 2 threads under the
      same memory limit (without one if DuckDB runs out of memory: `limit_ok=0`), writes the
      result and prints `BENCH name=spill_duckdb ...` (seconds: the query and its write)
  compare.py check <result.parquet> <reference.parquet>
      prints `rows=<n> checksum=<hex> differing=<n>`: the result's row count and checksum,
      and how many customers differ from the reference (missing on either side, or any
      column unequal; the floats to 1e-12 relative)
"""
import os
import sys
import time

import duckdb

QUERY = """
WITH sessions AS (
  SELECT customer_id,
         session_id,
         COUNT(*) AS events,
         MIN(event_ts) AS started,
         MAX(event_ts) AS ended,
         SUM(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS carts,
         MAX(CASE WHEN event_type = 'checkout' THEN 1 ELSE 0 END) AS converted
  FROM read_parquet('{events}')
  GROUP BY customer_id, session_id
), gaps AS (
  SELECT customer_id, events, started, ended, carts, converted,
         epoch_us(ended) - epoch_us(started) AS duration_us,
         epoch_us(started)
           - LAG(epoch_us(ended)) OVER (PARTITION BY customer_id ORDER BY started, session_id)
           AS gap_us
  FROM sessions
)
SELECT customer_id,
       COUNT(*)::BIGINT AS sessions,
       SUM(events)::BIGINT AS events,
       SUM(carts)::BIGINT AS carts,
       SUM(converted)::BIGINT AS converting_sessions,
       SUM(converted)::DOUBLE / COUNT(*) AS conversion_rate,
       MIN(started) AS first_seen,
       MAX(ended) AS last_seen,
       SUM(duration_us)::DOUBLE / COUNT(*) / 1e6 AS mean_session_s,
       MAX(gap_us) / 1e6 AS longest_gap_s,
       MIN(gap_us) / 1e6 AS shortest_gap_s
FROM gaps
GROUP BY customer_id
"""

INTS = ["sessions", "events", "carts", "converting_sessions"]
TIMES = ["first_seen", "last_seen"]
FLOATS = ["conversion_rate", "mean_session_s", "longest_gap_s", "shortest_gap_s"]


def size(events):
    rows, text_bytes = duckdb.sql(
        f"SELECT count(*), sum(strlen(event_type)) FROM read_parquet('{events}')"
    ).fetchone()
    # customer_id, session_id, event_ts: 8 bytes each; event_type: offsets and bytes.
    arrow = rows * 3 * 8 + (rows + 1) * 4 + int(text_bytes)
    print(f"rows={rows} input_mb={arrow / 2**20:.0f} parquet_mb={os.path.getsize(events) / 2**20:.0f}")


def run_duckdb(events, out, limit_mib, temp, run):
    """The same query in DuckDB under the same limit; if DuckDB runs out of memory there, once
    more without a limit (its default, 80% of RAM), so that the check still has a reference."""
    limit_ok = 1
    try:
        seconds = timed_copy(events, out, f"{limit_mib}MiB", temp)
    except duckdb.OutOfMemoryException as e:
        print(f"duckdb at memory_limit {limit_mib}MiB: {str(e).splitlines()[0]}")
        limit_ok = 0
        seconds = timed_copy(events, out, None, temp)
    rows, checksum = summary(out)
    print(f"BENCH name=spill_duckdb run={run} limit_mb={limit_mib} limit_ok={limit_ok} "
          f"seconds={seconds:.2f} rows={rows} checksum={checksum}")


def timed_copy(events, out, memory_limit, temp):
    con = duckdb.connect()
    if memory_limit:
        con.execute(f"SET memory_limit = '{memory_limit}'")
    con.execute("SET threads = 2")
    con.execute(f"SET temp_directory = '{temp}'")
    start = time.perf_counter()
    con.execute(f"COPY ({QUERY.format(events=events)}) TO '{out}' (FORMAT parquet)")
    return time.perf_counter() - start


def summary(path):
    cols = ", ".join(["customer_id"] + INTS + [f"epoch_us({c})" for c in TIMES] + FLOATS)
    rows, checksum = duckdb.sql(f"SELECT count(*), bit_xor(hash({cols})) FROM read_parquet('{path}')").fetchone()
    return rows, f"{checksum or 0:016x}"


def check(result, reference):
    rows, checksum = summary(result)
    unequal = [f"a.{c} IS DISTINCT FROM b.{c}" for c in INTS + TIMES] + [
        f"(a.{c} IS NULL) <> (b.{c} IS NULL) OR abs(a.{c} - b.{c}) > 1e-12 * greatest(1, abs(b.{c}))"
        for c in FLOATS
    ]
    differing = duckdb.sql(
        f"""SELECT count(*) FROM read_parquet('{result}') a
            FULL OUTER JOIN read_parquet('{reference}') b ON a.customer_id = b.customer_id
            WHERE a.customer_id IS NULL OR b.customer_id IS NULL
               OR {' OR '.join(f'coalesce({u}, false)' for u in unequal)}"""
    ).fetchone()[0]
    print(f"rows={rows} checksum={checksum} differing={differing}")


if __name__ == "__main__":
    command, args = sys.argv[1], sys.argv[2:]
    if command == "size":
        size(*args)
    elif command == "duckdb":
        run_duckdb(args[0], args[1], int(args[2]), args[3], args[4])
    elif command == "check":
        check(*args)
    else:
        sys.exit(f"unknown command {command}")
