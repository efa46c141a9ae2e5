"""The feature SQL benchmark's peers: the query of nightjar.sql (RFM + 28-day engagement per
customer) in DuckDB's SQL and in Polars' lazy expression API, on the same Parquet files,
2 threads each. Each run collects the whole result (Arrow for DuckDB, a DataFrame for Polars);
the sums in checksum.sql are then computed outside the timing and printed for compare.py.

Usage: python peers.py duckdb|polars <checksum.sql> <as_of RFC 3339> <runs> <events.parquet> <orders.parquet>
"""
import os
import sys
import time
from datetime import datetime, timedelta

tool, checksum_sql, as_of_text, runs, events, orders = sys.argv[1:7]
runs = int(runs)
as_of = datetime.fromisoformat(as_of_text.replace("Z", "+00:00"))
THREADS = 2


def duckdb_runs():
    import duckdb

    lit = f"TIMESTAMPTZ '{as_of.isoformat()}'"
    # Recency in whole seconds as nightjar's to_unixtime gives them (epoch() keeps the fraction).
    query = f"""
    WITH activity AS (
      SELECT customer_id,
             MAX(CASE WHEN event_type = 'checkout' THEN event_ts END) AS last_purchase_ts,
             SUM(CASE WHEN event_type = 'checkout' THEN 1 ELSE 0 END) AS frequency,
             COUNT(DISTINCT CASE WHEN event_ts >= {lit} - INTERVAL 28 DAY THEN session_id END) AS sessions_28d,
             SUM(CASE WHEN event_ts >= {lit} - INTERVAL 28 DAY AND event_type = 'page_view' THEN 1 ELSE 0 END) AS page_views_28d,
             SUM(CASE WHEN event_ts >= {lit} - INTERVAL 28 DAY AND event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS add_to_cart_28d
      FROM read_parquet('{events}')
      WHERE event_ts < {lit}
      GROUP BY customer_id
    ),
    spend AS (
      SELECT customer_id, SUM(amount) AS monetary
      FROM read_parquet('{orders}')
      WHERE order_ts < {lit}
      GROUP BY customer_id
    )
    SELECT a.customer_id,
           (epoch({lit}) - floor(epoch(a.last_purchase_ts))) / 86400.0 AS recency_days,
           a.frequency,
           COALESCE(s.monetary, 0.0) AS monetary,
           a.sessions_28d,
           a.page_views_28d,
           a.add_to_cart_28d
    FROM activity a
    LEFT JOIN spend s ON s.customer_id = a.customer_id
    """
    con = duckdb.connect()
    con.execute(f"SET threads TO {THREADS}")
    for run in range(runs):
        start = time.perf_counter()
        result = con.execute(query).fetch_arrow_table()
        yield run, time.perf_counter() - start, result


def polars_runs():
    os.environ["POLARS_MAX_THREADS"] = str(THREADS)  # read once, at import
    import polars as pl

    recent = pl.col("event_ts") >= as_of - timedelta(days=28)
    kind = pl.col("event_type")
    checkout = kind == "checkout"
    as_of_s = int(as_of.timestamp())
    for run in range(runs):
        start = time.perf_counter()
        activity = (
            pl.scan_parquet(events)
            .filter(pl.col("event_ts") < as_of)
            .group_by("customer_id")
            .agg(
                pl.col("event_ts").filter(checkout).max().alias("last_purchase_ts"),
                checkout.sum().alias("frequency"),
                pl.col("session_id").filter(recent).n_unique().alias("sessions_28d"),
                (recent & (kind == "page_view")).sum().alias("page_views_28d"),
                (recent & (kind == "add_to_cart")).sum().alias("add_to_cart_28d"),
            )
        )
        spend = (
            pl.scan_parquet(orders)
            .filter(pl.col("order_ts") < as_of)
            .group_by("customer_id")
            .agg(pl.col("amount").sum().alias("monetary"))
        )
        result = (
            activity.join(spend, on="customer_id", how="left")
            .select(
                "customer_id",
                ((as_of_s - pl.col("last_purchase_ts").dt.epoch("s")) / 86400.0).alias("recency_days"),
                "frequency",
                pl.col("monetary").fill_null(0.0),
                "sessions_28d",
                "page_views_28d",
                "add_to_cart_28d",
            )
            .collect()
        )
        yield run, time.perf_counter() - start, result.to_arrow()


def checksum(result):
    """checksum.sql over the collected result, by DuckDB (the same text nightjar runs)."""
    import duckdb

    con = duckdb.connect()
    con.register("result", result)
    row = con.execute(open(checksum_sql).read()).fetchone()
    names = [d[0] for d in con.description]
    return " ".join(f"{n}={v!r}" if isinstance(v, float) else f"{n}={v}" for n, v in zip(names, row))


runner = {"duckdb": duckdb_runs, "polars": polars_runs}[tool]
for run, seconds, result in runner():
    print(f"BENCH name=features_{tool} run={run} seconds={seconds:.4f} {checksum(result)}", flush=True)
