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
//! ```yaml
//! - id: churn_scores
//!   kind: score
//!   model: churn@champion            # or churn, churn@3, models:/churn@champion
//!   table: scoring.customer_features
//!   output: scores.churn
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};

use super::gate::{self, NewRows};
use super::train::{is_numeric, to_f64};
use super::{ModelUse, SpecCx, TaskCx, TaskOutput, register_tables};
use crate::diag::Diagnostic;
use crate::exec::TaskError;
use crate::models::{Matrix, Model};
use crate::spec::is_table_name;
use crate::stores::registry::{ModelRef, Registry, Selector};
use crate::stores::tables::WriteMode;

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreTask {
    /// `name` or `name@latest` (the latest registered version), `name@<n>`, `name@<alias>`,
    /// `models:/name@<alias>` or `models:/name/<n>`.
    pub model: String,
    /// The table to score, `zone.name` (or `features.<view>`).
    pub table: String,
    /// The scores table written (replaced at each run).
    pub output: String,
    /// The entity column of `table` (default: the model's training entity).
    #[serde(default)]
    pub entity: Option<String>,
}

impl ScoreTask {
    pub(super) fn check_spec(&mut self, cx: &SpecCx<'_>, diags: &mut Vec<Diagnostic>) {
        if let Err(e) = ModelRef::parse(&self.model) {
            diags.push(cx.error("model", e));
        }
        for (key, name) in [("table", &self.table), ("output", &self.output)] {
            if !is_table_name(name) {
                diags.push(cx.error(key, format!("invalid table name `{name}`")));
            }
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
        let read = register_tables(cx, &ctx, std::slice::from_ref(&self.table)).await?;
        let frame = ctx
            .sql(&format!("SELECT * FROM {}", self.table))
            .await
            .map_err(|e| cx.df_error(e))?;
        let schema: Arc<Schema> = Arc::new(frame.schema().as_arrow().clone());
        let batches = frame.collect().await.map_err(|e| cx.df_error(e))?;
        let data = concat_batches(&schema, &batches).map_err(|e| cx.fail(e, false))?;
        let entity_values: ArrayRef = data.column_by_name(&entity).cloned().ok_or_else(|| {
            cx.fail(
                format!("table `{}` has no entity column `{entity}`", self.table),
                false,
            )
        })?;
        let mut columns = Vec::new();
        for name in &model.features {
            let array = data.column_by_name(name).ok_or_else(|| {
                cx.fail(
                    format!(
                        "table `{}` has no column `{name}`, a feature of model `{}` version {}",
                        self.table, reference.name, loaded.version
                    ),
                    false,
                )
            })?;
            if !is_numeric(array.data_type()) {
                return Err(cx.fail(
                    format!(
                        "column `{name}` of table `{}` is {}, but model `{}` was trained on a numeric feature",
                        self.table,
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
