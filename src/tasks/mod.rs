//! Task kinds: one visible enum lists them all; each kind's file owns its config (serde),
//! its checks at load time and its `run`.

pub mod export;
pub mod ingest;
pub mod sql;
pub mod synthetic;

use std::path::{Path, PathBuf};

use chrono::NaiveDate;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::diag::Diagnostic;
use crate::engine::Engine;
use crate::exec::TaskError;
use crate::plan::PlannedTask;
use crate::spec::template::TemplateVars;
use crate::spec::SourceFile;
use crate::spec::yaml::Node;
use crate::stores::tables::{CommitMeta, Tables, Written};
use crate::stores::StoreError;

/// Every task kind. In YAML, `kind:` names the variant and the kind's fields sit beside the
/// common ones (`id`, `depends_on`, `retries`, …).
#[derive(Debug, Clone, Deserialize, serde::Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TaskKind {
    /// Deterministic synthetic marketing data (customers, events, orders, campaigns, exposures).
    Synthetic(synthetic::SyntheticTask),
    /// Load CSV, Parquet or NDJSON files from any object-store URL or glob into a table.
    Ingest(ingest::IngestTask),
    /// A DataFusion SQL query materialized into a table.
    Sql(sql::SqlTask),
    /// Write a table to an object-store URL as Parquet or CSV.
    Export(export::ExportTask),
}

impl TaskKind {
    pub const NAMES: &'static [&'static str] = &["synthetic", "ingest", "sql", "export"];

    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Synthetic(_) => "synthetic",
            TaskKind::Ingest(_) => "ingest",
            TaskKind::Sql(_) => "sql",
            TaskKind::Export(_) => "export",
        }
    }

    /// Checks that need only the project files (SQL parses, names are valid, files exist);
    /// may resolve file contents (a `sql_file`) into the config.
    pub fn check_spec(&mut self, cx: &SpecCx<'_>, diags: &mut Vec<Diagnostic>) {
        match self {
            TaskKind::Synthetic(t) => t.check_spec(cx, diags),
            TaskKind::Ingest(t) => t.check_spec(cx, diags),
            TaskKind::Sql(t) => t.check_spec(cx, diags),
            TaskKind::Export(t) => t.check_spec(cx, diags),
        }
    }

    /// Tables this task writes.
    pub fn outputs(&self) -> Vec<String> {
        match self {
            TaskKind::Synthetic(t) => t.outputs(),
            TaskKind::Ingest(t) => vec![t.output.clone()],
            TaskKind::Sql(t) => vec![t.output.clone()],
            TaskKind::Export(_) => vec![],
        }
    }

    /// Tables this task reads (inferred from SQL for `sql`).
    pub fn inputs(&self) -> Vec<String> {
        match self {
            TaskKind::Synthetic(_) | TaskKind::Ingest(_) => vec![],
            TaskKind::Sql(t) => t.resolved.as_ref().map(|r| r.tables.clone()).unwrap_or_default(),
            TaskKind::Export(t) => vec![t.table.clone()],
        }
    }
}

/// What a kind's load-time checks may look at.
pub struct SpecCx<'a> {
    pub dir: &'a Path,
    pub file: &'a SourceFile,
    /// The task's mapping, for positions of its fields.
    pub node: &'a Node,
    pub vars: &'a TemplateVars,
}

impl SpecCx<'_> {
    /// An error at a field of the task (or at the task if the field is absent).
    pub fn error(&self, key: &str, message: impl Into<String>) -> Diagnostic {
        let pos = self.node.get(key).map_or(self.node.pos, |n| n.pos);
        self.file.diag(pos, message)
    }
}

/// Everything a run shares across its tasks.
pub struct RunContext {
    pub project_dir: PathBuf,
    pub project_name: String,
    pub engine: Engine,
    pub tables: Tables,
    pub pipeline: String,
    pub run_id: String,
    pub ds: NaiveDate,
}

/// One attempt of one task.
pub struct TaskCx<'a> {
    pub run: &'a RunContext,
    pub task: &'a PlannedTask,
    pub cancel: CancellationToken,
}

/// What a task published.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TaskOutput {
    pub written: Vec<Written>,
    /// Table versions read, for lineage and reproducibility.
    pub read: Vec<(String, i64)>,
    /// Files written outside the tables (exports).
    pub exported: Vec<Exported>,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exported {
    pub target: String,
    pub rows: u64,
}

impl TaskOutput {
    pub fn rows_written(&self) -> u64 {
        self.written.iter().map(|w| w.rows).sum::<u64>() + self.exported.iter().map(|e| e.rows).sum::<u64>()
    }
}

impl TaskCx<'_> {
    pub fn commit_meta(&self) -> CommitMeta {
        CommitMeta {
            run_id: self.run.run_id.clone(),
            pipeline: self.run.pipeline.clone(),
            task: self.task.id.clone(),
            ds: self.run.ds.format("%Y-%m-%d").to_string(),
        }
    }

    /// Fails with a message that names the task and where it is declared.
    pub fn fail(&self, message: impl std::fmt::Display, retryable: bool) -> TaskError {
        TaskError { message: format!("task `{}` ({}): {message}", self.task.id, self.task.location), retryable }
    }

    pub fn store_error(&self, e: StoreError) -> TaskError {
        let retryable = !e.is_usage() && !matches!(e, StoreError::NoSuchTable { .. });
        self.fail(e, retryable)
    }

    pub fn df_error(&self, e: datafusion::error::DataFusionError) -> TaskError {
        let retryable = is_transient(&e);
        self.fail(e, retryable)
    }
}

/// Object-store and IO faults are worth retrying; planning, SQL, schema and parse errors are not.
fn is_transient(e: &datafusion::error::DataFusionError) -> bool {
    use datafusion::error::DataFusionError as E;
    match e {
        E::ObjectStore(_) | E::IoError(_) => true,
        E::External(inner) => inner.downcast_ref::<object_store::Error>().is_some(),
        E::Context(_, inner) | E::Diagnostic(_, inner) => is_transient(inner),
        _ => false,
    }
}

/// Runs one attempt of a task.
pub async fn run(cx: &TaskCx<'_>) -> Result<TaskOutput, TaskError> {
    match &cx.task.kind {
        TaskKind::Synthetic(t) => t.run(cx).await,
        TaskKind::Ingest(t) => t.run(cx).await,
        TaskKind::Sql(t) => t.run(cx).await,
        TaskKind::Export(t) => t.run(cx).await,
    }
}

/// Registers tables in a session under their `zone.name`, at their latest versions; returns
/// the versions read.
pub async fn register_tables(cx: &TaskCx<'_>, ctx: &datafusion::prelude::SessionContext, names: &[String]) -> Result<Vec<(String, i64)>, TaskError> {
    use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
    use std::sync::Arc;
    let mut read = Vec::new();
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| cx.fail("the default catalog is missing (this is a bug)", false))?;
    for name in names {
        let (zone, table) = name.split_once('.').ok_or_else(|| cx.fail(format!("invalid table name `{name}`"), false))?;
        let (provider, version) = cx.run.tables.provider(name).await.map_err(|e| cx.store_error(e))?;
        let schema = match catalog.schema(zone) {
            Some(s) => s,
            None => {
                let s: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
                catalog.register_schema(zone, s.clone()).map_err(|e| cx.df_error(e))?;
                s
            }
        };
        schema.register_table(table.to_string(), provider).map_err(|e| cx.df_error(e))?;
        read.push((name.clone(), version));
    }
    Ok(read)
}
