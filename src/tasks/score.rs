//! `score`: applies a registered model version to rows of entities and writes `entity,
//! score, model, version, scored_at` to a scores table (every key column, for a composite
//! key). The model reference is resolved once, when the task starts: `name` or `name@latest`
//! (the latest version: in a pipeline that also trains `name`, the one trained in this run,
//! since the plan orders the `train` task first), `name@<n>`, `name@<alias>` (e.g.
//! `churn@champion`, after this run's promotion gate if it has one) or MLflow's
//! `models:/name@alias`. Every file of the version is checked against the sha256 its metadata
//! lists before use, every feature of the model's signature must be among the rows' columns,
//! and the version used is in the scores table and in the task's lineage event.
//!
//! The rows to score come from one of two places:
//! - `table`: a table whose columns hold the model's features.
//! - `entities` (or `entities_file`): a query naming whom to score. Their features are built
//!   by the training set's own point-in-time join (`training_set::join_views`), repeated as
//!   the model's metadata records it: the same view definition versions (their latest
//!   materialization), ttls and defaults, at the run's point in time (the end of ds). So a
//!   model never scores on features computed differently from the ones it learned on. The
//!   task runs after every `features` task of its pipeline. It fails, publishing nothing, when
//!   the query returns no rows or an entity twice, and when a view version has no snapshot
//!   within its ttl of the scoring time (rather than scoring every row on defaults).
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

use super::features::rfc3339;
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
    /// The entity column of `table` (default: the model's training entity); not allowed with
    /// `entities`, whose key is the model's views' entity column(s).
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
                if self.entity.is_some() {
                    diags.push(cx.error(
                        "entity",
                        "`entity` names the key column of `table`; with `entities` the key is the entity of the model's views",
                    ));
                }
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
        let ctx = cx.run.engine.session().map_err(|e| cx.df_error(e))?;
        let (data, read, source, keys) = match &self.table {
            Some(table) => {
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
                let read = register_tables(cx, &ctx, std::slice::from_ref(table)).await?;
                let frame = ctx
                    .sql(&format!("SELECT * FROM {table}"))
                    .await
                    .map_err(|e| cx.df_error(e))?;
                let schema: Arc<Schema> = Arc::new(frame.schema().as_arrow().clone());
                let batches = frame.collect().await.map_err(|e| cx.df_error(e))?;
                let data = concat_batches(&schema, &batches).map_err(|e| cx.fail(e, false))?;
                (data, read, format!("table `{table}`"), vec![entity])
            }
            None => {
                let (data, read, keys) =
                    self.rows_from_views(cx, &ctx, &reference, &loaded).await?;
                (
                    data,
                    read,
                    "the entities query joined to the model's views".to_string(),
                    keys,
                )
            }
        };
        // The scores table's key: the entity column, or every key column of the model's views
        // (a composite key keeps all its parts, so rows stay distinguishable).
        let mut key_fields = Vec::new();
        let mut key_values: Vec<ArrayRef> = Vec::new();
        for key in &keys {
            let values = data
                .column_by_name(key)
                .cloned()
                .ok_or_else(|| cx.fail(format!("{source} has no entity column `{key}`"), false))?;
            key_fields.push(Field::new(key, values.data_type().clone(), true));
            key_values.push(values);
        }
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
        let mut fields = key_fields;
        fields.extend([
            Field::new("score", DataType::Float64, false),
            Field::new("model", DataType::Utf8, false),
            Field::new("version", DataType::UInt64, false),
            Field::new(
                "scored_at",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
        ]);
        let mut values = key_values;
        values.extend([
            Arc::new(Float64Array::from(scores)) as ArrayRef,
            Arc::new(StringArray::from(vec![reference.name.as_str(); n])),
            Arc::new(UInt64Array::from(vec![loaded.version; n])),
            Arc::new(TimestampMicrosecondArray::from(vec![scored_at; n]).with_timezone("UTC")),
        ]);
        let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), values)
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
    ) -> Result<(RecordBatch, Vec<(String, i64)>, Vec<String>), TaskError> {
        let model = format!("model `{}` version {}", reference.name, loaded.version);
        let record: TrainingSetRecord = match loaded.metadata["training"].get("point_in_time") {
            None => {
                return Err(cx.fail(
                    format!(
                        "{model} was not trained on a training set (its metadata records no point-in-time join), so `entities` cannot rebuild its features; score a table with `table:`"
                    ),
                    false,
                ));
            }
            Some(value) => serde_json::from_value(value.clone()).map_err(|e| {
                cx.fail(
                    format!("{model}: its metadata's `training.point_in_time` cannot be read: {e}"),
                    false,
                )
            })?,
        };
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
        // The entity key of the model's views: every part of a composite key.
        let mut keys: Vec<String> = Vec::new();
        for view in &record.views {
            for k in &view.entity {
                if !keys.contains(k) {
                    keys.push(k.clone());
                }
            }
        }
        self.check_entities(cx, ctx, &batches, &keys, &resolved.origin)
            .await?;
        let labels = Labels {
            batches: &batches,
            columns: &label_columns,
            timestamp: label_ts,
            query: "the entities query",
        };
        let (joined, views_read, joined_views) =
            join_views(cx, ctx, labels, &joins, &defaults, &missing).await?;
        // With no view row within the ttl of the scoring time (the newest one at or before it
        // is older, or there is none), every entity would be scored on defaults: say so
        // instead. That happens when the view's definition changed since the model was
        // trained (nothing materializes the old version any more), or when this version
        // was not materialized for the day scored.
        let scoring = as_of.timestamp_micros();
        for view in &joined_views {
            let Some(ttl) = view.ttl_micros else { continue };
            if view
                .newest_micros
                .is_some_and(|n| n >= scoring - ttl as i64)
            {
                continue;
            }
            let newest = view.newest_micros.map_or_else(
                || "it has none at or before it".to_string(),
                |n| {
                    let at = chrono::DateTime::from_timestamp_micros(n)
                        .map_or_else(|| n.to_string(), rfc3339);
                    format!("its newest at or before it is {at}")
                },
            );
            let why = match cx.run.features.get(&view.view) {
                Some(current) if current.version == view.version => format!(
                    "that version is the project's current definition, but it was not materialized for this day: run its `features` task for ds {}",
                    cx.run.ds
                ),
                Some(current) => format!(
                    "the project's definition is now version {}: retrain the model, or materialize version {}",
                    current.version, view.version
                ),
                None => "the view is gone from features/: retrain the model".to_string(),
            };
            return Err(cx.fail(
                format!(
                    "{model} was trained on feature view `{}` version {}, which has no snapshot within its ttl before the scoring time ({}): {newest}; {why}",
                    view.view,
                    view.version,
                    rfc3339(as_of),
                ),
                false,
            ));
        }
        read.extend(views_read);
        Ok((joined, read, keys))
    }

    /// The entities query must return rows, and each entity once: a scores table with an
    /// entity twice (or empty, replacing the last one) is not what anyone wants published.
    async fn check_entities(
        &self,
        cx: &TaskCx<'_>,
        ctx: &datafusion::prelude::SessionContext,
        batches: &[RecordBatch],
        keys: &[String],
        origin: &str,
    ) -> Result<(), TaskError> {
        use datafusion::functions_aggregate::expr_fn::count;
        use datafusion::logical_expr::{col, lit};
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows == 0 {
            return Err(cx.fail(
                format!("the entities query at {origin} returned no rows; nothing to score"),
                false,
            ));
        }
        let twice = ctx
            .read_batches(batches.to_vec())
            .and_then(|df| {
                df.aggregate(
                    keys.iter()
                        .map(|k| datafusion::logical_expr::ident(k))
                        .collect(),
                    vec![count(lit(1)).alias("__n")],
                )
            })
            .and_then(|df| df.filter(col("__n").gt(lit(1i64))))
            .and_then(|df| df.limit(0, Some(1)))
            .map_err(|e| cx.df_error(e))?
            .collect()
            .await
            .map_err(|e| cx.df_error(e))?;
        if let Some(b) = twice.iter().find(|b| b.num_rows() > 0) {
            let cell = |i: usize| {
                datafusion::arrow::util::display::array_value_to_string(b.column(i), 0)
                    .unwrap_or_default()
            };
            let entity: Vec<String> = keys
                .iter()
                .enumerate()
                .map(|(i, k)| format!("{k} = {}", cell(i)))
                .collect();
            return Err(cx.fail(
                format!(
                    "the entities query at {origin} returns {} {} times; each entity is scored once, so make the query return distinct entities",
                    entity.join(", "),
                    cell(keys.len())
                ),
                false,
            ));
        }
        Ok(())
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
