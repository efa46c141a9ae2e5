//! What the scheduler remembers across restarts, on the object store next to the run state:
//! one record per interval it started (`schedule/<pipeline>/intervals/<start>.json`: status
//! and run id), and the latest finished interval (`schedule/<pipeline>/last.json`), which
//! bounds how far back a restarted scheduler looks for missed intervals.
//!
//! The interval records are the truth; `last.json` is only a bound. Two schedulers may write
//! it in either order (it is a plain put), and a stale value only makes the next pass re-read
//! records it then skips.

use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use super::Interval;
use crate::stores::{Result, Storage, StoreError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IntervalStatus {
    /// Started; if no live lease covers it, its process died and it is resumed.
    Running,
    Succeeded,
    Failed,
    /// Stopped by a shutdown; resumed by the next scheduler or backfill.
    Cancelled,
}

impl IntervalStatus {
    /// The scheduler does not start a finished interval again (a failed one is retried with
    /// `nightjar backfill`, which resumes its run).
    pub fn is_finished(self) -> bool {
        matches!(self, IntervalStatus::Succeeded | IntervalStatus::Failed)
    }
}

/// Why an interval ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Schedule,
    Backfill,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IntervalRecord {
    pub pipeline: String,
    pub ds: NaiveDate,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub status: IntervalStatus,
    pub run_id: String,
    pub trigger: Trigger,
    pub updated_at: DateTime<Utc>,
}

impl IntervalRecord {
    pub fn interval(&self) -> Interval {
        Interval {
            start: self.start,
            end: self.end,
            ds: self.ds,
        }
    }
}

fn record_path(pipeline: &str, interval: &Interval) -> String {
    format!("schedule/{pipeline}/intervals/{}.json", interval.key())
}

fn last_path(pipeline: &str) -> String {
    format!("schedule/{pipeline}/last.json")
}

async fn get_json<T: serde::de::DeserializeOwned>(
    storage: &Storage,
    path: String,
) -> Result<Option<T>> {
    match storage.get(&path).await? {
        Some(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|source| StoreError::Json { path, source }),
        None => Ok(None),
    }
}

async fn put_json<T: Serialize>(storage: &Storage, path: String, value: &T) -> Result<()> {
    let json = serde_json::to_vec_pretty(value).map_err(|source| StoreError::Json {
        path: path.clone(),
        source,
    })?;
    storage.put(&path, Bytes::from(json)).await
}

pub async fn load(
    storage: &Storage,
    pipeline: &str,
    interval: &Interval,
) -> Result<Option<IntervalRecord>> {
    get_json(storage, record_path(pipeline, interval)).await
}

/// Saves a record; a finished one also moves `last.json` forward.
pub async fn save(storage: &Storage, record: &IntervalRecord) -> Result<()> {
    put_json(
        storage,
        record_path(&record.pipeline, &record.interval()),
        record,
    )
    .await?;
    if record.status.is_finished() {
        let last = last_finished(storage, &record.pipeline).await?;
        if last.is_none_or(|l| l.end < record.end) {
            put_json(storage, last_path(&record.pipeline), record).await?;
        }
    }
    Ok(())
}

/// The latest finished interval of a pipeline (what a restarted scheduler continues from).
pub async fn last_finished(storage: &Storage, pipeline: &str) -> Result<Option<IntervalRecord>> {
    get_json(storage, last_path(pipeline)).await
}
