"""DuckDB's ASOF LEFT JOIN on the benchmark files: the same checksum as `benches/asof.rs`.
Usage: duckdb_asof.py LABELS FEATURES RUNS"""
import sys
import time
import duckdb

labels, features, runs = sys.argv[1], sys.argv[2], int(sys.argv[3])
for run in range(runs):
    con = duckdb.connect()
    con.execute("SET threads = 2")
    start = time.perf_counter()
    n, matched, s1, s2 = con.execute(f"""
      SELECT count(*), count(f.f1), sum(f.f1), sum(f.f2)
      FROM '{labels}' l ASOF LEFT JOIN '{features}' f
        ON l.entity = f.entity AND l.label_ts >= f.feature_ts
    """).fetchone()
    seconds = time.perf_counter() - start
    print(f"BENCH name=asof_duckdb run={run} seconds={seconds:.3f} rows={n} matched={matched} "
          f"sum_f1={s1} sum_f2={s2} version={duckdb.__version__}")
