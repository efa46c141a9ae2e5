//! Delta tables named `zone.name`, stored under `tables/<zone>/<name>/` of the storage root.
//!
//! Every write is one Delta commit, published with put-if-absent on the commit file, so
//! readers see the previous version or the new one. Each commit is tagged with the run id,
//! pipeline, task and ds; a task re-run in the same run finds its own commit and does not
//! publish again (idempotence).

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use deltalake_core::DeltaTable;
use deltalake_core::kernel::transaction::CommitProperties;
use deltalake_core::logstore::{LogStoreRef, StorageConfig, default_logstore};
use deltalake_core::protocol::SaveMode;
use futures::StreamExt;
use object_store::prefix::PrefixStore;

use sha2::Digest;

use super::{Result, Storage, StoreError};
use crate::spec::is_table_name;

/// Commit tags: who published this version.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct CommitMeta {
    pub run_id: String,
    pub pipeline: String,
    pub task: String,
    pub ds: String,
    /// What the writer wants kept with the version (a feature materialization's record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub details: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// The table becomes exactly the new rows.
    Overwrite,
    /// The new rows are added.
    Append,
}

/// One Delta commit as `Tables` reads it back.
struct Commit {
    version: i64,
    rows: u64,
    tag: Option<CommitMeta>,
}

/// A published table version.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Written {
    pub table: String,
    pub version: i64,
    pub rows: u64,
    /// True when this run had already published this version (re-run of a finished write).
    #[serde(default)]
    pub reused: bool,
    /// Columns, size and fingerprint, known for free right after a commit (lineage events use
    /// them; not kept in the run state).
    #[serde(skip)]
    pub facts: Option<TableFacts>,
}

/// What lineage records about one table version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableFacts {
    /// `(column, Arrow type)` in table order.
    pub columns: Vec<(String, String)>,
    pub size_bytes: u64,
    pub files: u64,
    /// sha256 over the sorted `path\tsize` lines of the version's data files.
    pub fingerprint: String,
}

#[derive(Clone, Debug)]
pub struct Tables {
    storage: Storage,
}

const META_KEY: &str = "nightjar";

impl Tables {
    pub fn new(storage: Storage) -> Tables {
        Tables { storage }
    }

    fn rel_dir(name: &str) -> Result<String> {
        if let Some((view, version)) = feature_table_parts(name) {
            return Ok(format!("features/{view}/{version}/"));
        }
        let (zone, table) = name
            .split_once('.')
            .filter(|_| is_table_name(name))
            .ok_or_else(|| StoreError::BadTableName(name.to_string()))?;
        Ok(format!("tables/{zone}/{table}/"))
    }

    /// The Delta log store of a table, over the project's own object store (so wrappers such as
    /// fault injection apply to table IO too).
    pub fn log_store(&self, name: &str) -> Result<LogStoreRef> {
        let rel = Self::rel_dir(name)?;
        let root = self.storage.store();
        let prefixed = Arc::new(PrefixStore::new(root.clone(), self.storage.path(&rel)));
        let url = self.storage.url_of(&rel);
        Ok(default_logstore(
            prefixed,
            root,
            &url,
            &StorageConfig::default(),
        ))
    }

    /// The latest version of a table, or `None` if it has never been written.
    pub async fn open(&self, name: &str) -> Result<Option<DeltaTable>> {
        // A table exists once its log has a commit; asking delta-rs to load a missing table
        // is an error (logged at ERROR level by delta-rs), so look first.
        let log_dir = format!("{}_delta_log", Self::rel_dir(name)?);
        let log_prefix = self.storage.path(&log_dir);
        let mut listing = self.storage.store().list(Some(&log_prefix));
        match listing.next().await {
            None => return Ok(None),
            Some(Err(source)) => {
                return Err(StoreError::Object {
                    path: log_prefix.to_string(),
                    source,
                });
            }
            Some(Ok(_)) => {}
        }
        drop(listing);
        let mut table = DeltaTable::new(self.log_store(name)?);
        match table.load().await {
            Ok(()) => Ok(Some(table)),
            Err(deltalake_core::DeltaTableError::NotATable(_)) => Ok(None),
            Err(source) => Err(StoreError::Delta {
                table: name.to_string(),
                source,
            }),
        }
    }

    pub async fn open_existing(&self, name: &str) -> Result<DeltaTable> {
        self.open(name)
            .await?
            .ok_or_else(|| StoreError::NoSuchTable {
                table: name.to_string(),
            })
    }

    /// A DataFusion provider for the table's latest version, and that version.
    pub async fn provider(&self, name: &str) -> Result<(Arc<dyn TableProvider>, i64)> {
        let table = self.open_existing(name).await?;
        let version = table.version().unwrap_or(0);
        let provider = table
            .table_provider()
            .await
            .map_err(|e| StoreError::Delta {
                table: name.to_string(),
                source: deltalake_core::DeltaTableError::from(e),
            })?;
        Ok((provider, version as i64))
    }

    /// The version a given run and task already published, if any (looks at the newest commits).
    pub async fn published_by(&self, name: &str, meta: &CommitMeta) -> Result<Option<Written>> {
        let commits = self.commits(name, Some(8)).await?;
        Ok(commits.into_iter().rev().find_map(|c| {
            let tag = c.tag?;
            (tag.run_id == meta.run_id && tag.task == meta.task && tag.pipeline == meta.pipeline)
                .then(|| Written {
                    table: name.to_string(),
                    version: c.version,
                    rows: c.rows,
                    reused: true,
                    facts: None,
                })
        }))
    }

    /// The newest `limit` commits (all if `None`), oldest first, with their nightjar tags.
    async fn commits(&self, name: &str, limit: Option<usize>) -> Result<Vec<Commit>> {
        let Some(table) = self.open(name).await? else {
            return Ok(Vec::new());
        };
        // `history` yields the newest commit first; commitInfo's readVersion is not always
        // written, so versions count down from the table's own.
        let mut version = table.version().unwrap_or(0) as i64 + 1;
        let mut history = table.history(limit);
        let mut out = Vec::new();
        while let Some(info) = history.next().await {
            version -= 1;
            let info = info.map_err(|source| StoreError::Delta {
                table: name.to_string(),
                source,
            })?;
            out.push(Commit {
                version,
                rows: added_rows(info.info.get("operationMetrics")).unwrap_or_default(),
                tag: info
                    .info
                    .get(META_KEY)
                    .and_then(|v| serde_json::from_value::<CommitMeta>(v.clone()).ok()),
            });
        }
        out.reverse();
        Ok(out)
    }

    /// Writes the result of a logical plan as one commit, streaming (the plan runs inside
    /// the write, under the session's memory limit).
    pub async fn write_plan(
        &self,
        name: &str,
        session: &SessionContext,
        plan: LogicalPlan,
        mode: WriteMode,
        meta: &CommitMeta,
    ) -> Result<Written> {
        let (builder, _) = self.write_builder(name).await?;
        let builder = builder
            .with_input_plan(plan)
            .with_session_state(Arc::new(session.state()));
        self.finish_write(name, builder, mode, meta).await
    }

    /// Replaces the rows matching `predicate` with `batches` (every new row must match it), as
    /// one commit: a re-materialized snapshot swaps its rows atomically.
    pub async fn replace_where(
        &self,
        name: &str,
        batches: Vec<datafusion::arrow::record_batch::RecordBatch>,
        predicate: datafusion::prelude::Expr,
        meta: &CommitMeta,
    ) -> Result<Written> {
        let (builder, exists) = self.write_builder(name).await?;
        let builder = builder.with_input_batches(batches);
        let builder = if exists {
            builder.with_replace_where(predicate)
        } else {
            builder
        };
        self.finish_write(name, builder, WriteMode::Append, meta)
            .await
    }

    /// The nightjar tag of one version's commit (`None` for a commit written by another tool),
    /// read from that commit file alone: one GET, whatever the history's length.
    pub async fn tag_at(&self, name: &str, version: i64) -> Result<Option<CommitMeta>> {
        let info = commit_info(&self.log_store(name)?, name, version).await?;
        Ok(info
            .and_then(|i| i.get(META_KEY).cloned())
            .and_then(|tag| serde_json::from_value::<CommitMeta>(tag).ok()))
    }

    /// Every commit's version and nightjar tag (commits written by others have none), oldest
    /// first.
    pub async fn tagged_history(&self, name: &str) -> Result<Vec<(i64, Option<CommitMeta>)>> {
        let commits = self.commits(name, None).await?;
        Ok(commits.into_iter().map(|c| (c.version, c.tag)).collect())
    }

    /// Writes record batches as one commit.
    pub async fn write_batches(
        &self,
        name: &str,
        batches: Vec<datafusion::arrow::record_batch::RecordBatch>,
        mode: WriteMode,
        meta: &CommitMeta,
    ) -> Result<Written> {
        let (builder, _) = self.write_builder(name).await?;
        let builder = builder.with_input_batches(batches);
        self.finish_write(name, builder, mode, meta).await
    }

    /// A write of the next version of `name` (the first if the table does not exist yet, the
    /// `bool` says which).
    async fn write_builder(
        &self,
        name: &str,
    ) -> Result<(deltalake_core::operations::write::WriteBuilder, bool)> {
        let log_store = self.log_store(name)?;
        let existing = self.open(name).await?;
        let snapshot = existing
            .as_ref()
            .and_then(|t| t.snapshot().ok().map(|s| s.snapshot().clone()));
        let builder = deltalake_core::operations::write::WriteBuilder::new(log_store, snapshot);
        Ok((builder, existing.is_some()))
    }

    async fn finish_write(
        &self,
        name: &str,
        builder: deltalake_core::operations::write::WriteBuilder,
        mode: WriteMode,
        meta: &CommitMeta,
    ) -> Result<Written> {
        let delta_err = |source| StoreError::Delta {
            table: name.to_string(),
            source,
        };
        let tag = serde_json::to_value(meta).map_err(|e| StoreError::Other(e.to_string()))?;
        let commit = CommitProperties::default().with_metadata([(META_KEY.to_string(), tag)]);
        // Overwrite replaces the schema with the query's (a changed SQL task is a new table
        // shape); append must match the existing schema, or the write fails.
        let builder = match mode {
            WriteMode::Overwrite => builder
                .with_save_mode(SaveMode::Overwrite)
                .with_schema_mode(deltalake_core::operations::write::SchemaMode::Overwrite),
            WriteMode::Append => builder.with_save_mode(SaveMode::Append),
        };
        let table = builder
            .with_commit_properties(commit)
            .await
            .map_err(delta_err)?;
        let version = table.version().unwrap_or(0);
        // The commit just written, read back by its name: `history` would list the whole log
        // directory first, which grows by one file per run.
        let rows = commit_info(&table.log_store(), name, version as i64)
            .await?
            .and_then(|info| added_rows(info.get("operationMetrics")))
            .unwrap_or_default();
        let facts = table.snapshot().ok().map(facts_of);
        Ok(Written {
            table: name.to_string(),
            version: version as i64,
            rows,
            reused: false,
            facts,
        })
    }

    /// Columns, size, file count and a fingerprint of one version, for lineage events.
    pub async fn describe(&self, name: &str, version: i64) -> Result<TableFacts> {
        let delta_err = |source| StoreError::Delta {
            table: name.to_string(),
            source,
        };
        let mut table = DeltaTable::new(self.log_store(name)?);
        table
            .load_version(version.max(0) as u64)
            .await
            .map_err(delta_err)?;
        Ok(facts_of(table.snapshot().map_err(delta_err)?))
    }

    /// Names of every table under the root (`zone.name`), sorted.
    pub async fn list(&self) -> Result<Vec<String>> {
        let mut names: Vec<String> = self
            .storage
            .list("tables")
            .await?
            .into_iter()
            .filter_map(|p| {
                let mut parts = p.split('/');
                let (_, zone, table, log) =
                    (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
                (log == "_delta_log").then(|| format!("{zone}.{table}"))
            })
            .collect();
        names.dedup();
        Ok(names)
    }
}

/// The Delta table of one feature-view definition version, as `Tables` names it.
pub fn feature_table(view: &str, version: &str) -> String {
    format!("features.{view}@{version}")
}

/// `features.<view>@<version>` → (view, version), both plain identifiers / hex.
fn feature_table_parts(name: &str) -> Option<(&str, &str)> {
    let (view, version) = name.strip_prefix("features.")?.split_once('@')?;
    (crate::spec::is_identifier(view)
        && !version.is_empty()
        && version.chars().all(|c| c.is_ascii_alphanumeric()))
    .then_some((view, version))
}

/// What lineage records about a loaded version (no IO: the snapshot has the file list).
fn facts_of(state: &deltalake_core::table::state::DeltaTableState) -> TableFacts {
    let columns = state
        .snapshot()
        .arrow_schema()
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().to_string()))
        .collect();
    let mut files: Vec<(String, u64)> = state
        .log_data()
        .iter()
        .map(|f| (f.path().into_owned(), f.size().max(0) as u64))
        .collect();
    files.sort();
    // The data files make the version: same paths and sizes, same rows (Delta files are
    // immutable and named uniquely).
    let mut hasher = sha2::Sha256::new();
    for (path, size) in &files {
        hasher.update(format!("{path}\t{size}\n").as_bytes());
    }
    TableFacts {
        columns,
        size_bytes: files.iter().map(|(_, s)| s).sum(),
        files: files.len() as u64,
        fingerprint: hex::encode(hasher.finalize()),
    }
}

/// The commitInfo action of one version's commit file, as JSON (one GET, no listing).
async fn commit_info(
    log_store: &LogStoreRef,
    name: &str,
    version: i64,
) -> Result<Option<serde_json::Value>> {
    let entry = log_store
        .read_commit_entry(version.max(0) as u64)
        .await
        .map_err(|source| StoreError::Delta {
            table: name.to_string(),
            source,
        })?
        .ok_or_else(|| StoreError::Other(format!("table `{name}` has no version {version}")))?;
    // A commit file is one action per line.
    Ok(String::from_utf8_lossy(&entry)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .find_map(|mut action| action.get_mut("commitInfo").map(serde_json::Value::take)))
}

/// Rows added by a commit, from the operation metrics delta-rs writes into commitInfo.
fn added_rows(metrics: Option<&serde_json::Value>) -> Option<u64> {
    let value = metrics?.get("num_added_rows")?;
    value.as_u64().or_else(|| value.as_str()?.parse().ok())
}
