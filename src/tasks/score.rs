//! `score`: applies a registered model version to every row of a table and writes
//! `entity, score, model, version, scored_at` to a scores table. The model reference is
//! resolved once, when the task starts: `name` or `name@latest` (the latest version: in a
//! pipeline that also trains `name`, the one trained in this run, since the plan orders the
//! `train` task first), `name@<n>`, `name@<alias>` (e.g. `churn@champion`, after this run's
//! promotion gate if it has one) or MLflow's `models:/name@alias`. Every file of the version
//! is checked against the sha256 its metadata lists before use, every feature of the model's
//! signature must be a column of the table, and the version used is in the scores table and
//! in the task's lineage event.
//!
//! The rows to score come from one of two places:
//! - `table`: a table whose columns hold the model's features.
//! - `entities` (or `entities_file`): a query naming whom to score. Their features are built
//!   by the training set's own point-in-time join (`training_set::join_views`), repeated as
//!   the model's metadata records it: the same view definition versions (their latest
//!   materialization), ttls and defaults, at the run's point in time (the end of ds). So a
//!   model never scores on features computed differently from the ones it learned on. A view
//!   version whose newest snapshot is older than its ttl fails the task rather than scoring
//!   every row on defaults.
//!
//! ```yaml
//! - id: churn_scores
//!   kind: score
//!   model: churn@champion            # or churn, churn@3, models:/churn@champion
//!   entities: SELECT customer_id, country FROM raw.customers
//!   output: scores.churn
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};

use super::gate::{self, NewRows};
use super::sql::{ResolvedSql, resolve_query};
use super::train::{is_numeric, to_f64};
use super::training_set::{Labels, TrainingSetRecord, ViewColumns, ViewToJoin, join_views};
use super::{ModelUse, SpecCx, TaskCx, TaskOutput, register_tables};
use crate::diag::Diagnostic;
use crate::exec::TaskError;
use crate::features::run_as_of;
use crate::models::{Matrix, Model};
use crate::spec::is_table_name;
use crate::stores::registry::{Loaded, ModelRef, Registry, Selector};
use crate::stores::tables::WriteMode;

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreTask {
    /// `name` or `name@latest` (the latest registered version), `name@<n>`, `name@<alias>`,
    /// `models:/name@<alias>` or `models:/name/<n>`.
    pub model: String,
    /// The table to score, `zone.name` (or `features.<view>`). Exactly one of `table`,
    /// `entities` and `entities_file`.
    #[serde(default)]
    pub table: Option<String>,
    /// A query for whom to score: the model's entity column(s), plus any columns of its
    /// training labels it uses as features. The rest of the features come from the view
    /// versions the model was trained on, joined point in time at the end of ds.
    #[serde(default)]
    pub entities: Option<String>,
    /// The entities query in a `.sql` file, relative to the project.
    #[serde(default)]
    pub entities_file: Option<String>,
    /// The scores table written (replaced at each run).
    pub output: String,
    /// The entity column of `table` (default: the model's training entity).
    #[serde(default)]
    pub entity: Option<String>,
    /// Filled at load time from `entities` / `entities_file`.
    #[serde(skip)]
    #[schemars(skip)]
    pub resolved: Option<ResolvedSql>,
}

impl ScoreTask {
    pub(super) fn check_spec(&mut self, cx: &SpecCx<'_>, diags: &mut Vec<Diagnostic>) {
        if let Err(e) = ModelRef::parse(&self.model) {
            diags.push(cx.error("model", e));
        }
        if !is_table_name(&self.output) {
            diags.push(cx.error("output", format!("invalid table name `{}`", self.output)));
        }
        match (&self.table, &self.entities, &self.entities_file) {
            (Some(table), None, None) => {
                if !is_table_name(table) {
                    diags.push(cx.error("table", format!("invalid table name `{table}`")));
                }
            }
            (None, Some(_), None) | (None, None, Some(_)) => {
                self.resolved = resolve_query(
                    cx,
                    (self.entities.as_ref(), "entities"),
                    (self.entities_file.as_ref(), "entities_file"),
                    diags,
                );
            }
            (None, None, None) => diags.push(
                cx.error(
                    "model",
                    "say what to score: `table` (rows holding the features) or `entities` (a query; features come from the model's views)",
                ),
            ),
            _ => {
                let key = if self.table.is_some() { "table" } else { "entities" };
                diags.push(cx.error(
                    key,
                    "give exactly one of `table`, `entities` and `entities_file`",
                ));
            }
        }
    }

    /// Tables the task reads that the plan can see (the views an `entities` task joins are
    /// known only from the model, when it runs).
    pub fn inputs(&self) -> Vec<String> {
        match (&self.table, &self.resolved) {
            (Some(table), _) => vec![table.clone()],
            (None, Some(resolved)) => resolved.tables.clone(),
            (None, None) => Vec::new(),
        }
    }

    /// The model this task reads, unless it pins a version (for the plan's edge to a `train`
    /// task of the same model, which may register a version or move an alias).
    pub fn follows(&self) -> Option<String> {
        ModelRef::parse(&self.model)
            .ok()
            .filter(|r| !matches!(r.selector, Selector::Version(_)))
            .map(|r| r.name)
    }

    pub(super) async fn run(&self, cx: &TaskCx<'_>) -> Result<TaskOutput, TaskError> {
        let reference = ModelRef::parse(&self.model).map_err(|e| cx.fail(e, false))?;
        if let Some(mut done) = cx.already_published(&self.output).await? {
            // Resumed after the write: the version used is in the scores table.
            if let Some(version) = self.version_scored(cx).await? {
                done.models.push(self.model_use(&reference, version, None));
            }
            return Ok(done);
        }
        let registry = Registry::new(cx.run.engine.storage().clone());
        let loaded = async {
            let version = registry.resolve(&reference).await?;
            registry.load(&reference.name, version).await
        }
        .await
        .map_err(|e| cx.fail(format!("model `{}`: {e}", self.model), false))?;
        let model = Model::from_bytes(&loaded.artefact).map_err(|e| {
            cx.fail(
                format!("model `{}` version {}: {e}", reference.name, loaded.version),
                false,
            )
        })?;
        let entity = match &self.entity {
            Some(e) => e.clone(),
            None => loaded.metadata["entity"]
                .as_str()
                .map(str::to_string)
                .ok_or_else(|| {
                    cx.fail(
                        "the model's metadata names no entity column; set `entity:`",
                        false,
                    )
                })?,
        };

        let ctx = cx.run.engine.session().map_err(|e| cx.df_error(e))?;
        let (data, read, source) = match &self.table {
            Some(table) => {
                let read = register_tables(cx, &ctx, std::slice::from_ref(table)).await?;
                let frame = ctx
                    .sql(&format!("SELECT * FROM {table}"))
                    .await
                    .map_err(|e| cx.df_error(e))?;
                let schema: Arc<Schema> = Arc::new(frame.schema().as_arrow().clone());
                let batches = frame.collect().await.map_err(|e| cx.df_error(e))?;
                let data = concat_batches(&schema, &batches).map_err(|e| cx.fail(e, false))?;
                (data, read, format!("table `{table}`"))
            }
            None => {
                let (data, read) = self.rows_from_views(cx, &ctx, &reference, &loaded).await?;
                (
                    data,
                    read,
                    "the entities query joined to the model's views".to_string(),
                )
            }
        };
        let entity_values: ArrayRef = data
            .column_by_name(&entity)
            .cloned()
            .ok_or_else(|| cx.fail(format!("{source} has no entity column `{entity}`"), false))?;
        let mut columns = Vec::new();
        for name in &model.features {
            let array = data.column_by_name(name).ok_or_else(|| {
                cx.fail(
                    format!(
                        "{source} has no column `{name}`, a feature of model `{}` version {}",
                        reference.name, loaded.version
                    ),
                    false,
                )
            })?;
            if !is_numeric(array.data_type()) {
                return Err(cx.fail(
                    format!(
                        "column `{name}` of {source} is {}, but model `{}` was trained on a numeric feature",
                        array.data_type(),
                        reference.name
                    ),
                    false,
                ));
            }
            columns.push(to_f64(array).map_err(|e| cx.fail(e, false))?);
        }
        let x = Matrix::from_columns(columns);
        let scores = tokio::task::spawn_blocking(move || model.predict(&x))
            .await
            .map_err(|e| cx.fail(format!("scoring panicked (this is a bug): {e}"), false))?;
        let n = scores.len();
        let scored_at = chrono::Utc::now().timestamp_micros();
        let batch = RecordBatch::try_new(
            Arc::new(Schema::new(vec![
                Field::new(&entity, entity_values.data_type().clone(), true),
                Field::new("score", DataType::Float64, false),
                Field::new("model", DataType::Utf8, false),
                Field::new("version", DataType::UInt64, false),
                Field::new(
                    "scored_at",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
            ])),
            vec![
                entity_values,
                Arc::new(Float64Array::from(scores)),
                Arc::new(StringArray::from(vec![reference.name.as_str(); n])),
                Arc::new(UInt64Array::from(vec![loaded.version; n])),
                Arc::new(TimestampMicrosecondArray::from(vec![scored_at; n]).with_timezone("UTC")),
            ],
        )
        .map_err(|e| cx.fail(e, false))?;
        let written = gate::publish(
            cx,
            &self.output,
            NewRows::Batches(vec![batch]),
            WriteMode::Overwrite,
        )
        .await?;
        tracing::info!(task = %cx.task.id, model = %reference.name, version = loaded.version, rows = n, "scored");
        let mut output = TaskOutput::published(vec![written], read);
        output.models.push(self.model_use(
            &reference,
            loaded.version,
            Some(loaded.metadata_sha256),
        ));
        Ok(output)
    }

    /// The rows to score when `entities` names them: the entities query, with the scoring
    /// time as the label time, joined to the model's recorded views exactly as its training
    /// set was.
    async fn rows_from_views(
        &self,
        cx: &TaskCx<'_>,
        ctx: &datafusion::prelude::SessionContext,
        reference: &ModelRef,
        loaded: &Loaded,
    ) -> Result<(RecordBatch, Vec<(String, i64)>), TaskError> {
        let model = format!("model `{}` version {}", reference.name, loaded.version);
        let record: TrainingSetRecord = loaded.metadata["training"]
            .get("point_in_time")
            .and_then(|v| serde_json::from_value(v.clone()).ok())
            .ok_or_else(|| {
                cx.fail(
                    format!(
                        "{model} was not trained on a training set (its metadata records no point-in-time join), so `entities` cannot rebuild its features; score a table with `table:`"
                    ),
                    false,
                )
            })?;
        let resolved = self.resolved.as_ref().ok_or_else(|| {
            cx.fail(
                "the entities query was not resolved at load time (this is a bug)",
                false,
            )
        })?;
        let mut read = register_tables(cx, ctx, &resolved.tables).await?;
        let frame = ctx
            .sql(&resolved.text)
            .await
            .map_err(|e| cx.fail(format!("entities query at {}: {e}", resolved.origin), false))?;
        let label_ts = record.label_timestamp.as_str();
        let mut label_columns: Vec<String> = frame
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if label_columns.iter().any(|c| c == label_ts) {
            return Err(cx.fail(
                format!(
                    "the entities query returns a column `{label_ts}`, the label time of {model}'s training set; the scoring time takes that name, so leave it out"
                ),
                false,
            ));
        }
        // Every entity is scored as of the run's point in time, the instant the run's own
        // feature snapshots describe.
        let as_of = run_as_of(cx.run.ds);
        let batches = frame
            .select(
                label_columns
                    .iter()
                    .map(|c| datafusion::logical_expr::ident(c))
                    .chain([
                        datafusion::logical_expr::lit(ScalarValue::TimestampMicrosecond(
                            Some(as_of.timestamp_micros()),
                            Some("UTC".into()),
                        ))
                        .alias(label_ts),
                    ])
                    .collect::<Vec<_>>(),
            )
            .map_err(|e| cx.df_error(e))?
            .collect()
            .await
            .map_err(|e| cx.df_error(e))?;
        label_columns.push(label_ts.to_string());
        let mut defaults = BTreeMap::new();
        for view in &record.views {
            defaults.extend(view.defaults.clone());
        }
        let joins: Vec<ViewToJoin<'_>> = record
            .views
            .iter()
            .map(|v| ViewToJoin {
                view: &v.view,
                version: &v.version,
                entity: &v.entity,
                timestamp: &v.timestamp,
                ttl: v.ttl_micros.map(std::time::Duration::from_micros),
                features: ViewColumns::Exactly(&v.features),
            })
            .collect();
        let missing = |view: &str, stored: &str| {
            let version = stored.rsplit('@').next().unwrap_or_default();
            format!(
                "{model} was trained on feature view `{view}` version {version}, which has no materialization; materialize that version or retrain the model"
            )
        };
        if batches.is_empty() {
            return Err(cx.fail("the entities query returned no batches", false));
        }
        let labels = Labels {
            batches: &batches,
            columns: &label_columns,
            timestamp: label_ts,
        };
        let (joined, views_read, joined_views) =
            join_views(cx, ctx, labels, &joins, &defaults, &missing).await?;
        // A view version that is no longer materialized (its definition changed since the
        // model was trained) would score every row on defaults: say so instead.
        for view in &joined_views {
            let (Some(ttl), Some(newest)) = (view.ttl_micros, view.newest_micros) else {
                continue;
            };
            if newest < as_of.timestamp_micros() - ttl as i64 {
                let current = cx
                    .run
                    .features
                    .get(&view.view)
                    .map(|v| v.version.clone())
                    .unwrap_or_else(|| "none (the view is gone from features/)".into());
                return Err(cx.fail(
                    format!(
                        "{model} was trained on feature view `{}` version {}, whose newest snapshot ({}) is older than its ttl before the scoring time ({}); the project's definition is now version {current}: retrain the model, or materialize version {}",
                        view.view,
                        view.version,
                        micros_rfc3339(newest),
                        micros_rfc3339(as_of.timestamp_micros()),
                        view.version
                    ),
                    false,
                ));
            }
        }
        read.extend(views_read);
        Ok((joined, read))
    }

    fn model_use(
        &self,
        reference: &ModelRef,
        version: u64,
        metadata_sha256: Option<String>,
    ) -> ModelUse {
        ModelUse {
            model: reference.name.clone(),
            version,
            registered: false,
            reference: Some(self.model.clone()),
            promoted_to: Vec::new(),
            metadata_sha256,
        }
    }

    /// The model version recorded in the scores table this run published.
    async fn version_scored(&self, cx: &TaskCx<'_>) -> Result<Option<u64>, TaskError> {
        let ctx = cx.run.engine.session().map_err(|e| cx.df_error(e))?;
        register_tables(cx, &ctx, std::slice::from_ref(&self.output)).await?;
        let batches = ctx
            .sql(&format!("SELECT version FROM {} LIMIT 1", self.output))
            .await
            .map_err(|e| cx.df_error(e))?
            .collect()
            .await
            .map_err(|e| cx.df_error(e))?;
        Ok(batches
            .iter()
            .find(|b| b.num_rows() > 0)
            .and_then(|b| b.column(0).as_any().downcast_ref::<UInt64Array>())
            .filter(|a| !a.is_null(0))
            .map(|a| a.value(0)))
    }
}

/// A UTC instant in microseconds, for messages.
fn micros_rfc3339(micros: i64) -> String {
    chrono::DateTime::from_timestamp_micros(micros)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        .unwrap_or_else(|| micros.to_string())
}
