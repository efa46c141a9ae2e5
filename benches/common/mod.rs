//! Shared by the bench binaries (`features`, `asof`): the runtime and the engine they time
//! nightjar's sessions on, tuned as a pipeline's (2 worker threads, 8,192-row batches).

use nightjar::engine::Engine;
use nightjar::spec::units::ByteSize;
use nightjar::spec::{EngineKind, Limits};
use nightjar::stores::Storage;

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime")
}

/// An engine over an in-memory store: the benches register their Parquet files by path.
pub async fn engine(memory: u64, target_partitions: usize) -> Engine {
    let storage = Storage::open(
        "memory://bench",
        &Default::default(),
        std::path::Path::new("/"),
    )
    .await
    .expect("storage");
    let limits = Limits {
        memory: ByteSize(memory),
        spill_dir: None,
        max_parallel_tasks: 2,
        target_partitions: Some(target_partitions),
        batch_size: Some(8192),
    };
    Engine::new(
        EngineKind::Local,
        limits,
        std::path::Path::new("/tmp"),
        storage,
    )
}
