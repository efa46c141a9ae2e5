//! Benchmark: the feature SQL (RFM + 28-day engagement per customer, benches/features/nightjar.sql)
//! over the synthetic events and orders Parquet, through nightjar's own session factory (the
//! same tuning as pipelines). Run by benches/features/run.sh against DuckDB and Polars.
//!
//! Usage: features <query.sql> <checksum.sql> <as_of RFC 3339> <runs> <target_partitions>
//!        <events.parquet> <orders.parquet>
//!
//! Each run collects the whole result, as the peers do; the checksum query then runs over the
//! collected batches, outside the timing, so every tool's result is compared by the same sums.
//! `FEATURES_EXPLAIN=1` first prints EXPLAIN ANALYZE (each operator's time and rows).

use std::sync::Arc;
use std::time::Instant;

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{DataType, Float64Type, Int64Type};
use datafusion::datasource::MemTable;
use nightjar::features::as_of_literal;

mod common;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, query, checksum, as_of, runs, partitions, events, orders] = &args[..] else {
        panic!(
            "usage: features <query.sql> <checksum.sql> <as_of> <runs> <target_partitions> <events.parquet> <orders.parquet>"
        );
    };
    let as_of = chrono::DateTime::parse_from_rfc3339(as_of)
        .expect("as_of: an RFC 3339 timestamp")
        .to_utc();
    let query = std::fs::read_to_string(query)
        .expect("query file")
        .replace("{{ as_of }}", &as_of_literal(as_of));
    let checksum = std::fs::read_to_string(checksum).expect("checksum file");
    let runs: usize = runs.parse().expect("runs");
    let partitions: usize = partitions.parse().expect("target_partitions");
    let rt = common::runtime();
    rt.block_on(async {
        let engine = common::engine(4 << 30, partitions).await;
        for run in 0..runs {
            let ctx = engine.session().expect("session");
            for (name, path) in [("events", events), ("orders", orders)] {
                ctx.register_parquet(name, path, Default::default())
                    .await
                    .expect("register");
            }
            if run == 0 && std::env::var_os("FEATURES_EXPLAIN").is_some() {
                // Profiling aid: the physical plan with each operator's time and rows.
                let plan = ctx
                    .sql(&format!("EXPLAIN ANALYZE {query}"))
                    .await
                    .expect("explain");
                plan.show().await.expect("explain");
            }
            let start = Instant::now();
            let batches = ctx
                .sql(&query)
                .await
                .expect("plan")
                .collect()
                .await
                .expect("run");
            let secs = start.elapsed().as_secs_f64();
            let schema = batches.first().expect("a result batch").schema();
            let table = MemTable::try_new(schema, vec![batches]).expect("result table");
            ctx.register_table("result", Arc::new(table))
                .expect("register result");
            let sums = ctx
                .sql(&checksum)
                .await
                .expect("checksum plan")
                .collect()
                .await
                .expect("checksum");
            let row = &sums[0];
            let fields: Vec<String> = (0..row.num_columns())
                .map(|c| {
                    let name = row.schema().field(c).name().clone();
                    let col = row.column(c);
                    // Integers print exactly; floats with every digit, for compare.py's tolerance.
                    let value = match col.data_type() {
                        DataType::Int64 => col.as_primitive::<Int64Type>().value(0).to_string(),
                        DataType::Float64 => {
                            format!("{:?}", col.as_primitive::<Float64Type>().value(0))
                        }
                        other => panic!("checksum column {name}: unexpected type {other}"),
                    };
                    format!("{name}={value}")
                })
                .collect();
            println!(
                "BENCH name=features_nightjar run={run} seconds={secs:.4} {}",
                fields.join(" ")
            );
        }
    });
}
