"""DuckDB peer for the GROUP BY benchmark: the same query on the same Parquet file, 2 threads."""
import sys
import time

import duckdb

QUERY = (
    "SELECT customer_id, COUNT(*) AS n_events, COUNT(DISTINCT session_id) AS n_sessions, "
    "SUM(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS n_cart, MAX(event_ts) AS last_ts "
    "FROM read_parquet('{path}') GROUP BY customer_id"
)

path, runs = sys.argv[1], int(sys.argv[2])
con = duckdb.connect()
con.execute("SET threads TO 2")
for run in range(runs):
    start = time.perf_counter()
    # fetch the full result (Arrow), as nightjar collects its batches
    table = con.execute(QUERY.format(path=path)).fetch_arrow_table()
    secs = time.perf_counter() - start
    print(f"BENCH name=groupby_duckdb run={run} seconds={secs:.4f} groups={table.num_rows}")
