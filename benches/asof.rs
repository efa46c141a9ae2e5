//! Benchmark: the point-in-time join of `training_set` (the Arrow as-of operator
//! `features::pit::asof_join`, after reading the Parquet label and feature files through
//! nightjar's session factory). Prints
//! the checksum (rows, matched rows, sum of a feature) that `benches/asof/run.sh` compares
//! with DuckDB's ASOF JOIN on the same files.
//!
//! Usage: asof <labels.parquet> <features.parquet> <runs>

use std::time::Instant;

use arrow::array::{Array, AsArray};
use arrow::compute::sum;
use arrow::datatypes::{Float64Type, Int64Type};
use nightjar::features::pit::{AsofView, PitView, asof_join, pit_query};

mod common;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let usage = "usage: asof <labels.parquet> <features.parquet> <runs>";
    let labels = args.get(1).expect(usage);
    let features = args.get(2).expect(usage);
    let runs: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(3);
    // `arrow`: the in-memory operator; `sql`: the same join as one DataFusion query.
    let mode = args.get(4).map_or("arrow", |s| s.as_str());
    let rt = common::runtime();
    rt.block_on(async {
        let engine = common::engine(8 << 30, 2).await;
        let entity = vec!["entity".to_string()];
        for run in 0..runs {
            let ctx = engine.session().expect("session");
            ctx.register_parquet("labels", labels, Default::default()).await.expect("labels");
            ctx.register_parquet("feats", features, Default::default()).await.expect("features");
            if mode == "sql" {
                let view = PitView {
                    table: "feats",
                    entity: &entity,
                    timestamp: "feature_ts",
                    ttl: None,
                    features: vec![("f1".into(), None), ("f2".into(), None)],
                };
                let sql = format!(
                    "SELECT count(*) AS n, count(f1) AS matched, sum(f1) AS s1, sum(f2) AS s2 FROM ({})",
                    pit_query("labels", "label_ts", &[view])
                );
                let start = Instant::now();
                let batches = ctx.sql(&sql).await.expect("plan").collect().await.expect("run");
                let seconds = start.elapsed().as_secs_f64();
                let b = &batches[0];
                let cell = |i: usize| arrow::util::display::array_value_to_string(b.column(i), 0).unwrap_or_default();
                println!(
                    "BENCH name=asof_nightjarsql run={run} seconds={seconds:.3} rows={} matched={} sum_f1={} sum_f2={}",
                    cell(0), cell(1), cell(2), cell(3)
                );
                continue;
            }
            let start = Instant::now();
            // What `training_set` does: collect the labels and the view's needed columns,
            // then the Arrow as-of operator.
            let label_batches = ctx.table("labels").await.expect("labels").collect().await.expect("read labels");
            let view_batches = ctx
                .table("feats")
                .await
                .expect("feats")
                .select_columns(&["entity", "feature_ts", "f1", "f2"])
                .expect("columns")
                .collect()
                .await
                .expect("read features");
            let read = start.elapsed().as_secs_f64();
            let joined = asof_join(
                &label_batches,
                "label_ts",
                &[AsofView {
                    batches: &view_batches,
                    entity: &entity,
                    timestamp: "feature_ts",
                    ttl: None,
                    features: vec![("f1".into(), None), ("f2".into(), None)],
                }],
                ctx.state().config().target_partitions(),
            )
            .expect("join");
            let seconds = start.elapsed().as_secs_f64();
            let f1 = joined.column_by_name("f1").expect("f1").as_primitive::<Float64Type>();
            let f2 = joined.column_by_name("f2").expect("f2").as_primitive::<Int64Type>();
            println!(
                "BENCH name=asof_nightjar run={run} seconds={seconds:.3} read_seconds={read:.3} rows={} matched={} sum_f1={} sum_f2={}",
                joined.num_rows(),
                f1.len() - f1.null_count(),
                sum(f1).unwrap_or_default(),
                sum(f2).unwrap_or_default()
            );
        }
    });
}
