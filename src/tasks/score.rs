//! `score`: applies a registered model version to every row of a table and writes
//! `entity, score, model, version, scored_at` to a scores table. The model is `name`
//! (its latest version: in a pipeline that also trains `name`, the one trained in this run,
//! since the plan orders the `train` task first) or `name@<n>` / `name@latest`. The
//! artefact's sha256 is checked against its metadata before use, and every feature of the
//! model's signature must be a column of the table.
//!
//! ```yaml
//! - id: churn_scores
//!   kind: score
//!   model: churn                     # or churn@3
//!   table: scoring.customer_features
//!   output: scores.churn
//! ```

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampMicrosecondArray, UInt64Array,
};
use datafusion::arrow::compute::concat_batches;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use serde::{Deserialize, Serialize};

use super::gate::{self, NewRows};
use super::train::{is_numeric, to_f64};
use super::{SpecCx, TaskCx, TaskOutput, register_tables};
use crate::diag::Diagnostic;
use crate::exec::TaskError;
use crate::models::{Matrix, Model};
use crate::spec::{is_identifier, is_table_name};
use crate::stores::registry::Registry;
use crate::stores::tables::WriteMode;

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ScoreTask {
    /// `name` or `name@latest` (the latest registered version), or `name@<n>`.
    pub model: String,
    /// The table to score, `zone.name` (or `features.<view>`).
    pub table: String,
    /// The scores table written (replaced at each run).
    pub output: String,
    /// The entity column of `table` (default: the model's training entity).
    #[serde(default)]
    pub entity: Option<String>,
}

/// A parsed model reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub name: String,
    /// `None`: the latest registered version.
    pub version: Option<u64>,
}

impl ModelRef {
    pub fn parse(text: &str) -> Result<ModelRef, String> {
        let (name, version) = match text.split_once('@') {
            None => (text, None),
            Some((name, "latest")) => (name, None),
            Some((name, v)) => match v.parse::<u64>() {
                Ok(n) if n > 0 => (name, Some(n)),
                _ => {
                    return Err(format!(
                        "`{text}`: a model reference is `name`, `name@latest` or `name@<version>` (1, 2, …); aliases come with the registry"
                    ));
                }
            },
        };
        if !is_identifier(name) {
            return Err(format!("`{name}` is not a valid model name"));
        }
        Ok(ModelRef {
            name: name.to_string(),
            version,
        })
    }
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

    /// The model this task reads, when it follows the latest version (for the plan's edge
    /// to a `train` task of the same model).
    pub fn follows_latest(&self) -> Option<String> {
        ModelRef::parse(&self.model)
            .ok()
            .filter(|r| r.version.is_none())
            .map(|r| r.name)
    }

    pub(super) async fn run(&self, cx: &TaskCx<'_>) -> Result<TaskOutput, TaskError> {
        let reference = ModelRef::parse(&self.model).map_err(|e| cx.fail(e, false))?;
        if let Some(done) = cx.already_published(&self.output).await? {
            return Ok(done);
        }
        let registry = Registry::new(cx.run.engine.storage().clone());
        let loaded = registry
            .load(&reference.name, reference.version)
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
        Ok(TaskOutput::published(vec![written], read))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_references() {
        let r = |name: &str, version| ModelRef {
            name: name.into(),
            version,
        };
        assert_eq!(ModelRef::parse("churn"), Ok(r("churn", None)));
        assert_eq!(ModelRef::parse("churn@latest"), Ok(r("churn", None)));
        assert_eq!(ModelRef::parse("churn@3"), Ok(r("churn", Some(3))));
        assert!(ModelRef::parse("churn@0").is_err());
        assert!(
            ModelRef::parse("churn@champion")
                .unwrap_err()
                .contains("aliases")
        );
        assert!(ModelRef::parse("bad name").is_err());
    }
}
