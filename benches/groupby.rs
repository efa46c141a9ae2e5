//! Benchmark: a high-cardinality GROUP BY (per customer) over the synthetic events Parquet,
//! through nightjar's own session factory (same tuning as pipelines). Run by benches/run.sh.
//!
//! Usage: groupby <events.parquet> <runs> <target_partitions>

use std::time::Instant;

use nightjar::engine::Engine;
use nightjar::spec::units::ByteSize;
use nightjar::spec::{EngineKind, Limits};
use nightjar::stores::Storage;

pub const QUERY: &str = "SELECT customer_id, COUNT(*) AS n_events, COUNT(DISTINCT session_id) AS n_sessions, \
     SUM(CASE WHEN event_type = 'add_to_cart' THEN 1 ELSE 0 END) AS n_cart, MAX(event_ts) AS last_ts \
     FROM events GROUP BY customer_id";

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args
        .get(1)
        .expect("usage: groupby <events.parquet> <runs> <target_partitions>");
    let runs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(5);
    let partitions: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let storage = Storage::open(
            "memory://bench",
            &Default::default(),
            std::path::Path::new("/"),
        )
        .await
        .expect("storage");
        let limits = Limits {
            memory: ByteSize(4 << 30),
            spill_dir: None,
            max_parallel_tasks: 2,
            target_partitions: Some(partitions),
            batch_size: Some(8192),
        };
        let engine = Engine::new(
            EngineKind::Local,
            limits,
            std::path::Path::new("/tmp"),
            storage,
        );
        for run in 0..runs {
            let ctx = engine.session().expect("session");
            ctx.register_parquet("events", path, Default::default())
                .await
                .expect("register");
            let start = Instant::now();
            let batches = ctx
                .sql(QUERY)
                .await
                .expect("plan")
                .collect()
                .await
                .expect("run");
            let secs = start.elapsed().as_secs_f64();
            let groups: usize = batches.iter().map(|b| b.num_rows()).sum();
            println!("BENCH name=groupby_nightjar run={run} seconds={secs:.4} groups={groups}");
        }
    });
}
