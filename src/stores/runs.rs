//! Run state: `runs/<pipeline>/<run_id>.json` under the storage root, rewritten whole (one
//! atomic put) after every task transition, for `--resume` and `nightjar runs`.

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::tables::Written;
use super::{Result, Storage, StoreError};
use crate::exec::TaskStatus;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskState {
    pub id: String,
    pub kind: String,
    /// `pending` until the task finishes, then the executor's final status.
    pub status: TaskStateStatus,
    pub attempts: u32,
    pub started_at: Option<String>,
    pub finished_at: Option<String>,
    pub duration_ms: Option<u64>,
    pub error: Option<String>,
    #[serde(default)]
    pub outputs: Vec<Written>,
    /// The table versions the task read (`zone.name` or `features.<view>@<version>`, Delta
    /// version): what a result can be reproduced from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inputs: Vec<(String, i64)>,
    /// Data-contract reports (contract id, version, text hash, each rule's observed value and
    /// verdict), as the `contracts` module wrote them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub checks: Vec<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStateStatus {
    Pending,
    Running,
    Succeeded,
    Failed,
    UpstreamFailed,
    Cancelled,
    Skipped,
}

impl From<TaskStatus> for TaskStateStatus {
    fn from(s: TaskStatus) -> Self {
        match s {
            TaskStatus::Succeeded => TaskStateStatus::Succeeded,
            TaskStatus::Failed => TaskStateStatus::Failed,
            TaskStatus::UpstreamFailed => TaskStateStatus::UpstreamFailed,
            TaskStatus::Cancelled => TaskStateStatus::Cancelled,
            TaskStatus::Skipped => TaskStateStatus::Skipped,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: String,
    pub pipeline: String,
    pub ds: String,
    /// `--var` overrides the run was started with (resume reuses them).
    pub vars: Vec<(String, String)>,
    /// The logical interval a schedule or backfill gave the run (resume reuses it); absent
    /// for `nightjar run`, whose interval is the UTC day of `ds`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_interval: Option<crate::spec::template::DataInterval>,
    pub status: RunStatus,
    pub started_at: String,
    pub finished_at: Option<String>,
    /// Tasks selected for this run, in plan order.
    pub tasks: Vec<TaskState>,
    pub nightjar_version: String,
    /// The audit chain head this run's last event reached: one of the records outside the
    /// chain that `nightjar audit verify` checks it against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit_head: Option<super::audit::ChainHead>,
}

impl RunState {
    pub fn rel_path(pipeline: &str, run_id: &str) -> String {
        format!("runs/{pipeline}/{run_id}.json")
    }

    pub fn task_mut(&mut self, id: &str) -> Option<&mut TaskState> {
        self.tasks.iter_mut().find(|t| t.id == id)
    }
}

pub async fn save(storage: &Storage, state: &RunState) -> Result<()> {
    let rel = RunState::rel_path(&state.pipeline, &state.run_id);
    let json = serde_json::to_vec_pretty(state).map_err(|source| StoreError::Json {
        path: rel.clone(),
        source,
    })?;
    storage.put(&rel, Bytes::from(json)).await
}

pub async fn load(storage: &Storage, pipeline: &str, run_id: &str) -> Result<Option<RunState>> {
    let rel = RunState::rel_path(pipeline, run_id);
    match storage.get(&rel).await? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Json { path: rel, source }),
        None => Ok(None),
    }
}

/// Finds a run by id in any pipeline.
pub async fn find(storage: &Storage, run_id: &str) -> Result<Option<RunState>> {
    for path in storage.list("runs").await? {
        if path.ends_with(&format!("/{run_id}.json")) {
            let pipeline = path.split('/').nth(1).unwrap_or_default().to_string();
            return load(storage, &pipeline, run_id).await;
        }
    }
    Ok(None)
}

/// Every run, newest first (run ids sort by start time).
pub async fn list(storage: &Storage) -> Result<Vec<RunState>> {
    let mut runs = Vec::new();
    for path in storage.list("runs").await? {
        let Some(bytes) = storage.get(&path).await? else {
            continue;
        };
        match serde_json::from_slice::<RunState>(&bytes) {
            Ok(run) => runs.push(run),
            Err(source) => return Err(StoreError::Json { path, source }),
        }
    }
    // Start times have milliseconds; run ids only seconds.
    runs.sort_by(|a, b| (&b.started_at, &b.run_id).cmp(&(&a.started_at, &a.run_id)));
    Ok(runs)
}

/// A new run id: UTC start time (sortable) plus a random suffix.
pub fn new_run_id() -> String {
    let now = chrono::Utc::now();
    let suffix = &uuid::Uuid::new_v4().simple().to_string()[..8];
    format!("{}-{suffix}", now.format("%Y%m%dT%H%M%SZ"))
}
