//! The session factory: the only place that creates a DataFusion `SessionContext`.
//!
//! `engine: local` in nightjar.yaml selects in-process DataFusion. A future `ballista` engine
//! changes this file only: every task asks `Engine::session` for its context.

use std::sync::{Arc, OnceLock};

use datafusion::catalog::{CatalogProviderList, MemoryCatalogProviderList};
use datafusion::execution::SessionStateDefaults;
use datafusion::execution::disk_manager::{DiskManagerBuilder, DiskManagerMode};
use datafusion::execution::memory_pool::FairSpillPool;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::{SessionConfig, SessionContext};
use deltalake_core::delta_datafusion::planner::DeltaPlanner;

use crate::spec::{EngineKind, Limits};
use crate::stores::object::Located;
use crate::stores::{Storage, StoreError};

#[derive(Clone, Debug)]
pub struct Engine {
    kind: EngineKind,
    limits: Limits,
    spill_dir: Option<std::path::PathBuf>,
    storage: Storage,
    /// The state every session starts from, built on first use and shared by clones of the
    /// engine: building one registers every built-in function and rule, which was a
    /// noticeable part of a trivial SQL task. Sharing it also means one runtime (memory
    /// pool, spill files) for the whole process, so `limits.memory` bounds the tasks
    /// running at once together rather than each of them.
    base: Arc<OnceLock<SessionState>>,
}

impl Engine {
    pub fn new(
        kind: EngineKind,
        limits: Limits,
        project_dir: &std::path::Path,
        storage: Storage,
    ) -> Engine {
        let spill_dir = limits.spill_dir.as_ref().map(|d| project_dir.join(d));
        Engine {
            kind,
            limits,
            spill_dir,
            storage,
            base: Arc::new(OnceLock::new()),
        }
    }

    /// A fresh session under the project's memory limit, spilling to disk, with the storage
    /// root's object store registered so Delta scans read through it. Its catalog is its own
    /// (a task registers its inputs at the versions it read); the functions, rules, planner
    /// and runtime are the shared base's.
    pub fn session(&self) -> Result<SessionContext, datafusion::error::DataFusionError> {
        let base = match self.base.get() {
            Some(base) => base,
            None => {
                let built = self.base_state()?;
                // Two tasks may race to build it; either result is the same.
                let _ = self.base.set(built);
                self.base.get().expect("just set")
            }
        };
        let mut state = base.clone();
        let catalogs = MemoryCatalogProviderList::new();
        catalogs.register_catalog(
            state.config().options().catalog.default_catalog.clone(),
            Arc::new(SessionStateDefaults::default_catalog(
                state.config(),
                state.table_factories(),
                state.runtime_env(),
            )),
        );
        state.register_catalog_list(Arc::new(catalogs));
        Ok(SessionContext::new_with_state(state))
    }

    fn base_state(&self) -> Result<SessionState, datafusion::error::DataFusionError> {
        match self.kind {
            EngineKind::Local => {}
        }
        let target_partitions = self
            .limits
            .target_partitions
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(2, |n| n.get()));
        let config = SessionConfig::new()
            .with_target_partitions(target_partitions)
            .with_batch_size(self.limits.batch_size.unwrap_or(8192))
            .with_information_schema(true)
            // Table names are `zone.name`: zone is the schema of the default catalog.
            .with_create_default_catalog_and_schema(true);
        let disk = match &self.spill_dir {
            Some(dir) => {
                std::fs::create_dir_all(dir)?;
                DiskManagerBuilder::default()
                    .with_mode(DiskManagerMode::Directories(vec![dir.clone()]))
            }
            None => DiskManagerBuilder::default(),
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(Arc::new(FairSpillPool::new(self.limits.memory.0 as usize)))
            .with_disk_manager_builder(disk)
            .build_arc()?;
        runtime.register_object_store(
            &self.storage.root.store_url,
            self.storage.root.store.clone(),
        );
        // delta-rs writes plan through its own extension nodes; its planner must be the
        // session's query planner, or streaming a query into a Delta commit fails to plan.
        Ok(SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_query_planner(DeltaPlanner::new())
            .build())
    }

    /// The same catalog, memory pool and stores as `ctx`, planning on one partition: a scan
    /// then returns rows in table order, so a `LIMIT` without `ORDER BY` is deterministic.
    /// A free function because a contract check receives a session, not an engine.
    pub fn single_partition(ctx: &SessionContext) -> SessionContext {
        let mut state = ctx.state();
        state.config_mut().options_mut().execution.target_partitions = 1;
        SessionContext::new_with_state(state)
    }

    /// Makes a store reachable from SQL (ingest sources, export targets).
    pub fn register(&self, ctx: &SessionContext, located: &Located) {
        ctx.runtime_env()
            .register_object_store(&located.store_url, located.store.clone());
    }

    pub fn storage(&self) -> &Storage {
        &self.storage
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }
}

impl From<StoreError> for datafusion::error::DataFusionError {
    fn from(e: StoreError) -> Self {
        datafusion::error::DataFusionError::External(Box::new(e))
    }
}
