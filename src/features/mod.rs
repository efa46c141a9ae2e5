//! Feature views: a DataFusion SQL file plus YAML metadata under `features/`, versioned by a
//! content hash of what decides their rows, materialized per as-of snapshot into
//! `features/<view>/<version>/` (a Delta table), and joined point-in-time into training sets.
//!
//! ```yaml
//! # features/customer_rfm.yaml (the SQL is features/customer_rfm.sql unless `sql_file` says)
//! description: Recency, frequency and monetary value per customer.
//! owner: growth-data
//! entity: customer_id
//! timestamp: feature_ts
//! ttl: 35d
//! snapshots: { every: 7d, history: 112d }
//! features:
//!   - name: recency_days
//!     description: Days since the last order, as of the snapshot.
//! ```
//!
//! The SQL sees one template variable, `{{ as_of }}` (a UTC timestamp literal): the instant its
//! rows describe. It may read only data before that instant; the materializer refuses rows
//! whose timestamp is after it. Nothing else of the run (not `ds`) is visible, so a view's rows
//! for a snapshot depend on its definition and its inputs only.

pub mod load;
pub mod pit;
pub mod stats;
pub mod store;

use std::collections::BTreeMap;
use std::time::Duration;

use chrono::{DateTime, Days, NaiveDate, Utc};
use serde::{Deserialize, Serialize};

use crate::spec::SourceFile;
use crate::spec::units::DurationSpec;

pub use load::load_views;

/// A feature view as written in `features/<name>.yaml`.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ViewSpec {
    /// Must equal the file name (without `.yaml`) when given.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub owner: Option<String>,
    /// The entity key column(s): one name or a list.
    pub entity: OneOrMany,
    /// The column saying as of when a row's values hold.
    pub timestamp: String,
    /// How long a row stays valid for point-in-time lookups (e.g. `35d`); unlimited if absent.
    #[serde(default)]
    pub ttl: Option<DurationSpec>,
    /// A version label of your own; part of the definition hash.
    #[serde(default)]
    pub version: Option<String>,
    /// The SQL file, relative to `features/` (default `<name>.sql`).
    #[serde(default)]
    pub sql_file: Option<String>,
    /// Which as-of instants are materialized (default: only each run's).
    #[serde(default)]
    pub snapshots: Option<Snapshots>,
    /// The feature columns, documented. When given, the query must return exactly these
    /// besides the entity and timestamp columns.
    #[serde(default)]
    pub features: Vec<FeatureSpec>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            OneOrMany::One(s) => vec![s.clone()],
            OneOrMany::Many(v) => v.clone(),
        }
    }
}

/// The as-of grid: every `every` days (aligned to 1970-01-01, so consecutive runs share
/// snapshots), going back `history` from each run's own as-of instant.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Snapshots {
    /// Whole days, e.g. `1d` or `7d`.
    pub every: DurationSpec,
    /// How far back a first materialization goes, e.g. `112d`.
    pub history: DurationSpec,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeatureSpec {
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Free-form tags; `pii` marks personal data.
    #[serde(default)]
    pub tags: Vec<String>,
}

/// A loaded, checked feature view with its definition version.
#[derive(Debug, Clone)]
pub struct FeatureView {
    pub name: String,
    pub spec: ViewSpec,
    pub yaml: SourceFile,
    pub sql: SourceFile,
    /// The tables the SQL reads, sorted.
    pub inputs: Vec<String>,
    pub entity: Vec<String>,
    /// The definition version: 16 hex digits of a sha256 (see `definition_version`).
    pub version: String,
}

impl FeatureView {
    pub fn ttl(&self) -> Option<Duration> {
        self.spec.ttl.as_ref().map(|d| d.0)
    }

    /// The SQL with `{{ as_of }}` replaced by a timestamp literal.
    pub fn sql_as_of(&self, as_of: DateTime<Utc>) -> String {
        load::render_as_of(&self.sql.text, &as_of_literal(as_of))
            .expect("the template was checked at load time")
    }

    /// The as-of instants a run for `ds` materializes: its own (the end of `ds`), and the
    /// grid points within `history` before it.
    pub fn snapshots_for(&self, ds: NaiveDate) -> Vec<DateTime<Utc>> {
        let end = run_as_of(ds);
        let mut out = vec![end];
        if let Some(s) = &self.spec.snapshots {
            let every = (s.every.0.as_secs() / 86_400).max(1);
            let history = s.history.0.as_secs() / 86_400;
            let end_day = end.date_naive();
            let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch");
            let since_epoch = (end_day - epoch).num_days().max(0) as u64;
            // The newest grid day at or before the run's own as-of day.
            let mut day = end_day - Days::new(since_epoch % every);
            let oldest = end_day - Days::new(history);
            while day >= oldest {
                let instant = day.and_hms_opt(0, 0, 0).expect("midnight").and_utc();
                if instant != end {
                    out.push(instant);
                }
                day = day - Days::new(every);
            }
        }
        out.sort();
        out
    }
}

/// A run for `ds` describes the world at the end of that day (00:00 UTC of the next).
pub fn run_as_of(ds: NaiveDate) -> DateTime<Utc> {
    (ds + Days::new(1))
        .and_hms_opt(0, 0, 0)
        .expect("midnight")
        .and_utc()
}

/// `{{ as_of }}` in SQL: a UTC timestamp in microseconds, the type Delta stores (a
/// nanosecond literal would be truncated on write) and nightjar's tables use.
pub fn as_of_literal(as_of: DateTime<Utc>) -> String {
    format!(
        "arrow_cast('{}', 'Timestamp(Microsecond, Some(\"UTC\"))')",
        as_of.format("%Y-%m-%dT%H:%M:%SZ")
    )
}

/// The definition version: sha256 over the normalized SQL (parsed and printed back, so
/// whitespace and comments do not count), the entity and timestamp columns, the declared
/// feature names, the snapshot grid and the declared version. Descriptions, owner, tags and
/// ttl are not part of it: they change no row (ttl applies when reading).
pub fn definition_version(normalized_sql: &str, entity: &[String], spec: &ViewSpec) -> String {
    use sha2::{Digest, Sha256};
    let features: Vec<&str> = spec.features.iter().map(|f| f.name.as_str()).collect();
    let snapshots = spec
        .snapshots
        .as_ref()
        .map(|s| (s.every.0.as_secs(), s.history.0.as_secs()));
    let canonical = serde_json::json!({
        "sql": normalized_sql,
        "entity": entity,
        "timestamp": spec.timestamp,
        "features": features,
        "snapshots": snapshots,
        "version": spec.version,
    });
    let digest = Sha256::digest(canonical.to_string().as_bytes());
    hex::encode(&digest[..8])
}

/// The project's views by name.
pub type Views = BTreeMap<String, FeatureView>;
