//! Where feature views live on the object store: `features/<view>/<version>/` is one Delta
//! table per definition version; each materialization is one commit whose nightjar tag
//! carries a `Materialization` record (run, inputs, snapshots, rows, time range, statistics).

use std::collections::BTreeSet;

use serde::{Deserialize, Serialize};

use super::stats::FeatureStats;
use crate::stores::tables::{Tables, feature_table};
use crate::stores::{Result, Storage};

/// What one commit of a feature version holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Materialization {
    pub run_id: String,
    pub pipeline: String,
    pub task: String,
    pub ds: String,
    /// The Delta versions of the tables the SQL read.
    pub inputs: Vec<(String, i64)>,
    /// The as-of instants computed by this commit (RFC 3339), sorted.
    pub snapshots: Vec<String>,
    pub rows: u64,
    /// Oldest and newest timestamp of the rows written.
    pub time_range: Option<(String, String)>,
    pub stats: Vec<FeatureStats>,
}

/// A commit of a feature version with its record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Committed {
    pub delta_version: i64,
    #[serde(flatten)]
    pub record: Materialization,
}

/// Every materialization of `view` at `version`, oldest first.
pub async fn materializations(
    tables: &Tables,
    view: &str,
    version: &str,
) -> Result<Vec<Committed>> {
    let history = tables.tagged_history(&feature_table(view, version)).await?;
    Ok(history
        .into_iter()
        .filter_map(|(delta_version, tag)| {
            let record = serde_json::from_value(tag?.details?).ok()?;
            Some(Committed {
                delta_version,
                record,
            })
        })
        .collect())
}

/// The as-of instants present in a version (union over its materializations).
pub fn present_snapshots(history: &[Committed]) -> BTreeSet<String> {
    history
        .iter()
        .flat_map(|c| c.record.snapshots.iter().cloned())
        .collect()
}

/// The definition versions of `view` found under the storage root, sorted.
pub async fn stored_versions(storage: &Storage, view: &str) -> Result<Vec<String>> {
    let prefix = format!("features/{view}");
    let mut versions: Vec<String> = storage
        .list(&prefix)
        .await?
        .into_iter()
        .filter_map(|p| {
            let mut parts = p.split('/');
            let (_, _, version, log) = (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
            (log == "_delta_log").then(|| version.to_string())
        })
        .collect();
    versions.sort();
    versions.dedup();
    Ok(versions)
}
