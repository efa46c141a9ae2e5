"""Data for the as-of join benchmark (BENCHMARKS.md): a feature history with one row per
entity per weekly snapshot, and label rows at random times, written with DuckDB at a fixed
seed. Usage: make_data.py OUT_DIR ENTITIES SNAPSHOTS LABELS"""
import sys
import duckdb

out, entities, snapshots, labels = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
con = duckdb.connect()
con.execute("SET threads = 2")
con.execute("SELECT setseed(0.42)")
con.execute("SET TimeZone = 'UTC'")
# Snapshots every 7 days from 2024-01-01; values encode (entity, snapshot) so a wrong match
# changes the checksum.
con.execute(f"""
COPY (
  SELECT e AS entity,
         (TIMESTAMPTZ '2024-01-01 00:00:00+00' + INTERVAL (7 * s) DAY) AS feature_ts,
         CAST(e % 1000 AS DOUBLE) + s / 1000.0 AS f1,
         CAST(s AS BIGINT) AS f2
  FROM range({entities}) AS t(e), range({snapshots}) AS u(s)
  ORDER BY entity, feature_ts
) TO '{out}/features.parquet' (FORMAT parquet, ROW_GROUP_SIZE 1000000)
""")
# Labels: random entities (some unknown), random instants from a week before the first
# snapshot to a week after the last (some before any feature row).
span = 7 * (snapshots + 1) * 86400
con.execute(f"""
COPY (
  SELECT i AS id,
         CAST(floor(random() * {int(entities * 1.01)}) AS BIGINT) AS entity,
         TIMESTAMPTZ '2023-12-25 00:00:00+00' + to_seconds(CAST(floor(random() * {span}) AS BIGINT)) AS label_ts
  FROM range({labels}) AS t(i)
) TO '{out}/labels.parquet' (FORMAT parquet, ROW_GROUP_SIZE 1000000)
""")
for name in ("features", "labels"):
    n = con.execute(f"SELECT count(*) FROM '{out}/{name}.parquet'").fetchone()[0]
    print(f"{name}: {n} rows")
