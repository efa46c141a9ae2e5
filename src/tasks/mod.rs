//! Task kinds: one visible enum lists them all; each kind's file owns its config (serde),
//! its checks at load time and its `run`.

pub mod contract;
pub mod export;
pub mod features;
pub mod gate;
pub mod ingest;
pub mod register;
pub mod score;
pub mod sql;
pub mod synthetic;
pub mod train;
pub mod training_set;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::NaiveDate;
use serde::Deserialize;
use tokio_util::sync::CancellationToken;

use crate::diag::Diagnostic;
use crate::engine::Engine;
use crate::exec::TaskError;
use crate::plan::PlannedTask;
use crate::spec::SourceFile;
use crate::spec::template::TemplateVars;
use crate::spec::yaml::Node;
use crate::stores::StoreError;
use crate::stores::tables::{CommitMeta, Tables, Written};

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
    /// Check a table another task wrote against the task's `contract:`.
    Contract(contract::ContractTask),
    /// Materialize a feature view (`features/<view>.yaml`) at its current definition version.
    Features(features::FeaturesTask),
    /// Label rows joined point-in-time to feature views.
    TrainingSet(training_set::TrainingSetTask),
    /// Train a model on a table, evaluate it on a holdout and register a version.
    Train(Box<train::TrainTask>),
    /// Score every row of a table with a registered model version.
    Score(score::ScoreTask),
}

impl TaskKind {
    pub const NAMES: &'static [&'static str] = &[
        "synthetic",
        "ingest",
        "sql",
        "export",
        "contract",
        "features",
        "training_set",
        "train",
        "score",
    ];

    pub fn name(&self) -> &'static str {
        match self {
            TaskKind::Synthetic(_) => "synthetic",
            TaskKind::Ingest(_) => "ingest",
            TaskKind::Sql(_) => "sql",
            TaskKind::Export(_) => "export",
            TaskKind::Contract(_) => "contract",
            TaskKind::Features(_) => "features",
            TaskKind::TrainingSet(_) => "training_set",
            TaskKind::Train(_) => "train",
            TaskKind::Score(_) => "score",
        }
    }

    /// The tables a task's `contract:` applies to: those it writes, or for a `contract` task
    /// the table it checks.
    pub fn contract_tables(&self) -> Vec<String> {
        match self {
            TaskKind::Contract(t) => vec![t.table.clone()],
            other => other.outputs(),
        }
    }

    /// The key that names the tables a task reads, for messages about them.
    pub fn input_key(&self) -> &'static str {
        match self {
            TaskKind::Score(t) if t.entities_file.is_some() => "entities_file",
            TaskKind::Score(t) if t.entities.is_some() => "entities",
            TaskKind::Export(_)
            | TaskKind::Contract(_)
            | TaskKind::Train(_)
            | TaskKind::Score(_) => "table",
            TaskKind::Features(_) => "view",
            TaskKind::TrainingSet(t) if t.labels_file.is_some() => "labels_file",
            TaskKind::TrainingSet(_) => "labels",
            _ => "sql",
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
            TaskKind::Contract(t) => t.check_spec(cx, diags),
            TaskKind::Features(t) => t.check_spec(cx, diags),
            TaskKind::TrainingSet(t) => t.check_spec(cx, diags),
            TaskKind::Train(t) => t.check_spec(cx, diags),
            TaskKind::Score(t) => t.check_spec(cx, diags),
        }
    }

    /// Tables this task writes.
    pub fn outputs(&self) -> Vec<String> {
        match self {
            TaskKind::Synthetic(t) => t.outputs(),
            TaskKind::Ingest(t) => vec![t.output.clone()],
            TaskKind::Sql(t) => vec![t.output.clone()],
            TaskKind::TrainingSet(t) => vec![t.output.clone()],
            TaskKind::Train(t) => vec![t.holdout_table()],
            TaskKind::Score(t) => vec![t.output.clone()],
            TaskKind::Features(t) => vec![features::view_table_name(&t.view)],
            TaskKind::Export(_) | TaskKind::Contract(_) => vec![],
        }
    }

    /// The query a task runs, for lineage (`None` for kinds that run none).
    pub fn query(&self) -> Option<&str> {
        match self {
            TaskKind::Sql(t) => t.resolved.as_ref().map(|r| r.text.as_str()),
            _ => None,
        }
    }

    /// Tables this task reads (inferred from SQL for `sql`).
    pub fn inputs(&self) -> Vec<String> {
        match self {
            TaskKind::Synthetic(_) | TaskKind::Ingest(_) => vec![],
            TaskKind::Sql(t) => t
                .resolved
                .as_ref()
                .map(|r| r.tables.clone())
                .unwrap_or_default(),
            TaskKind::Export(t) => vec![t.table.clone()],
            TaskKind::Contract(t) => vec![t.table.clone()],
            TaskKind::Features(t) => t.inputs(),
            TaskKind::TrainingSet(t) => t.inputs(),
            TaskKind::Train(t) => vec![t.table.clone()],
            TaskKind::Score(t) => t.inputs(),
        }
    }

    /// The model a `train` task registers versions of.
    pub fn model_trained(&self) -> Option<&str> {
        match self {
            TaskKind::Train(t) => Some(&t.model),
            _ => None,
        }
    }

    /// A `score` task with `entities:`, whose features come from the views its model names.
    pub fn scores_from_views(&self) -> bool {
        matches!(self, TaskKind::Score(t) if t.table.is_none())
    }

    /// The model a `score` task reads by its latest version or an alias (it runs after a
    /// `train` task of that model in the same pipeline, which may add a version or move one).
    pub fn model_followed(&self) -> Option<String> {
        match self {
            TaskKind::Score(t) => t.follows(),
            _ => None,
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
    /// The project's feature views (SQL reading `features.<view>` gets the current
    /// definition's table).
    pub features: Arc<crate::features::Views>,
    /// Contract reports of this run, in the order they were made.
    pub checks: std::sync::Mutex<Vec<TaskCheck>>,
    /// The run id was minted by this process for a new run (not resumed, not given by a
    /// scheduler), so no commit can carry it yet: a first attempt need not look for its own
    /// earlier publishes.
    pub fresh_id: bool,
}

/// One contract check made by a task.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TaskCheck {
    pub task: String,
    /// True when the check stopped the task (a blocking violation).
    pub violated: bool,
    pub report: crate::contracts::CheckReport,
}

impl RunContext {
    pub fn record_check(&self, task: &str, report: crate::contracts::CheckReport, violated: bool) {
        let mut checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.push(TaskCheck {
            task: task.to_string(),
            violated,
            report,
        });
    }

    /// The checks recorded so far for one task.
    pub fn checks_of(&self, task: &str) -> Vec<TaskCheck> {
        let checks = self.checks.lock().unwrap_or_else(|p| p.into_inner());
        checks.iter().filter(|c| c.task == task).cloned().collect()
    }
}

/// One attempt of one task.
pub struct TaskCx<'a> {
    pub run: &'a RunContext,
    pub task: &'a PlannedTask,
    pub cancel: CancellationToken,
    /// 1 for the first attempt of the task in this process.
    pub attempt: u32,
}

/// What a task published.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct TaskOutput {
    pub written: Vec<Written>,
    /// Table versions read, for lineage and reproducibility.
    pub read: Vec<(String, i64)>,
    /// Files written outside the tables (exports).
    pub exported: Vec<Exported>,
    /// Files read from outside the tables (an ingest's sources), for lineage down to them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceObject>,
    /// Model versions used (`score`) or registered (`train`), for lineage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<ModelUse>,
    /// The query's column lineage (`sql`, `features`), for the output's lineage event; not kept in the
    /// run state, so a resumed run's event of an already published version lacks it.
    #[serde(skip)]
    pub column_lineage: Option<crate::audit::columns::ColumnLineage>,
}

/// A model version a task read or registered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ModelUse {
    pub model: String,
    pub version: u64,
    /// Registered by the task (an output) rather than read (an input).
    pub registered: bool,
    /// The reference as the task wrote it (`churn@champion`), for a version it read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Aliases the task moved to this version (a promotion gate that passed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub promoted_to: Vec<String>,
    /// sha256 of the version's metadata.json, which lists the sha256 of every other file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata_sha256: Option<String>,
}

/// A file an ingest read, as the object store described it when it was listed.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SourceObject {
    pub url: String,
    pub size: u64,
    pub etag: Option<String>,
    /// RFC 3339.
    pub last_modified: String,
}

#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Exported {
    pub target: String,
    pub rows: u64,
}

impl TaskOutput {
    /// Tables written and table versions read, nothing else.
    pub fn published(written: Vec<Written>, read: Vec<(String, i64)>) -> TaskOutput {
        TaskOutput {
            written,
            read,
            ..TaskOutput::default()
        }
    }

    pub fn rows_written(&self) -> u64 {
        self.written.iter().map(|w| w.rows).sum::<u64>()
            + self.exported.iter().map(|e| e.rows).sum::<u64>()
    }
}

impl TaskCx<'_> {
    pub fn commit_meta(&self) -> CommitMeta {
        CommitMeta {
            run_id: self.run.run_id.clone(),
            pipeline: self.run.pipeline.clone(),
            task: self.task.id.clone(),
            ds: self.run.ds.format("%Y-%m-%d").to_string(),
            details: None,
        }
    }

    /// This run's earlier attempt already published `table` (a retry or `--resume` after the
    /// commit): its output, so the task does not publish twice.
    pub async fn already_published(&self, table: &str) -> Result<Option<TaskOutput>, TaskError> {
        // Nothing can be tagged with a run id minted moments ago; skipping the look saves a
        // table load and a history read per task.
        if self.attempt == 1 && self.run.fresh_id {
            return Ok(None);
        }
        let published = self
            .run
            .tables
            .published_by(table, &self.commit_meta())
            .await
            .map_err(|e| self.store_error(e))?;
        Ok(published.map(|w| TaskOutput::published(vec![w], vec![])))
    }

    /// Fails with a message that names the task and where it is declared.
    pub fn fail(&self, message: impl std::fmt::Display, retryable: bool) -> TaskError {
        TaskError {
            message: format!(
                "task `{}` ({}): {message}",
                self.task.id, self.task.location
            ),
            retryable,
        }
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
        TaskKind::Contract(t) => t.run(cx).await,
        TaskKind::Features(t) => t.run(cx).await,
        TaskKind::TrainingSet(t) => t.run(cx).await,
        TaskKind::Train(t) => t.run(cx).await,
        TaskKind::Score(t) => t.run(cx).await,
    }
}

/// Registers tables in a session under their `zone.name`, at their latest versions; returns
/// the versions read.
pub async fn register_tables(
    cx: &TaskCx<'_>,
    ctx: &datafusion::prelude::SessionContext,
    names: &[String],
) -> Result<Vec<(String, i64)>, TaskError> {
    let mut read = Vec::new();
    for name in names {
        // `features.<view>`: the current definition version's table, registered under the
        // name the SQL uses; the versioned name goes into `read`.
        let stored = match name.strip_prefix("features.") {
            Some(view) => match cx.run.features.get(view) {
                Some(v) => crate::stores::tables::feature_table(&v.name, &v.version),
                None => {
                    return Err(cx.fail(
                        format!("`{name}`: no feature view `{view}` in features/"),
                        false,
                    ));
                }
            },
            None => name.clone(),
        };
        let (provider, version) = match cx.run.tables.provider(&stored).await {
            Ok(found) => found,
            Err(StoreError::NoSuchTable { .. }) if stored != *name => {
                return Err(cx.fail(no_materialization(name, &stored), false));
            }
            Err(e) => return Err(cx.store_error(e)),
        };
        register_provider(ctx, name, provider).map_err(|e| cx.df_error(e))?;
        read.push((stored, version));
    }
    Ok(read)
}

/// The error for a feature view version nothing has written yet.
pub fn no_materialization(view_name: &str, stored: &str) -> String {
    let view = view_name.trim_start_matches("features.");
    let version = stored.rsplit('@').next().unwrap_or_default();
    format!(
        "feature view `{view}` version {version} has no materialization; run a `features` task for it first"
    )
}

/// Registers one provider as `zone.name` (the zone is a schema of the default catalog).
pub fn register_provider(
    ctx: &datafusion::prelude::SessionContext,
    name: &str,
    provider: std::sync::Arc<dyn datafusion::catalog::TableProvider>,
) -> datafusion::error::Result<()> {
    use datafusion::catalog::{MemorySchemaProvider, SchemaProvider};
    use datafusion::error::DataFusionError;
    use std::sync::Arc;
    let (zone, table) = name
        .split_once('.')
        .ok_or_else(|| DataFusionError::Plan(format!("invalid table name `{name}`")))?;
    let catalog = ctx
        .catalog("datafusion")
        .ok_or_else(|| DataFusionError::Internal("the default catalog is missing".into()))?;
    let schema = match catalog.schema(zone) {
        Some(s) => s,
        None => {
            let s: Arc<dyn SchemaProvider> = Arc::new(MemorySchemaProvider::new());
            catalog.register_schema(zone, s.clone())?;
            s
        }
    };
    schema.register_table(table.to_string(), provider)?;
    Ok(())
}
