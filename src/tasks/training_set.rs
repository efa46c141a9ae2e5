//! `training_set`: label rows (a query) joined point-in-time to feature views into a table.
//! Each label row gets, per view, the newest row of its entity with timestamp <= the label's
//! and within the view's ttl (see `features::pit`); the exact view versions and Delta
//! versions read are recorded with the task's output.
//!
//! ```yaml
//! - id: churn_training
//!   kind: training_set
//!   output: training.churn
//!   label_timestamp: label_ts
//!   labels: |
//!     SELECT customer_id, label_ts, churned FROM staging.churn_labels
//!   features:
//!     - customer_rfm                    # the current definition's latest materialization
//!     - customer_engagement@1f0c9a2be3d45a67   # a pinned definition version
//!   defaults:
//!     orders_90d: 0
//! ```

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::features::{feature_columns, view_table_name};
use super::gate::{self, NewRows};
use super::sql::{ResolvedSql, resolve_query};
use super::{SpecCx, TaskCx, TaskOutput, register_tables};
use crate::diag::Diagnostic;
use crate::exec::TaskError;
use crate::features::FeatureView;
use crate::features::pit::{AsofView, asof_join};
use crate::spec::{is_identifier, is_table_name};
use crate::stores::tables::{WriteMode, feature_table};
use datafusion::common::ScalarValue;

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainingSetTask {
    /// The table written, `zone.name`.
    pub output: String,
    /// The label query: entity column(s), the label timestamp, label columns.
    #[serde(default)]
    pub labels: Option<String>,
    /// The label query in a `.sql` file, relative to the project. Exactly one of the two.
    #[serde(default)]
    pub labels_file: Option<String>,
    /// The column of the label query holding each row's point in time.
    pub label_timestamp: String,
    /// Feature views, `view` (the current definition) or `view@version` (pinned).
    pub features: Vec<String>,
    /// Values for features a label row has no match for (otherwise null).
    #[serde(default)]
    pub defaults: BTreeMap<String, serde_json::Value>,
    /// Filled at load time.
    #[serde(skip)]
    #[schemars(skip)]
    pub resolved: Option<ResolvedSql>,
    /// Filled at load time: each entry of `features`, with its view and the version to read.
    #[serde(skip)]
    #[schemars(skip)]
    pub views: Vec<(Arc<FeatureView>, String)>,
}

impl TrainingSetTask {
    pub(super) fn check_spec(&mut self, cx: &SpecCx<'_>, diags: &mut Vec<Diagnostic>) {
        if !is_table_name(&self.output) {
            diags.push(
                cx.error("output", format!("invalid table name `{}`", self.output))
                    .with_hint("tables are named `zone.name`, e.g. `training.churn`"),
            );
        }
        if !is_identifier(&self.label_timestamp) {
            diags.push(cx.error(
                "label_timestamp",
                format!("`{}` is not a column name", self.label_timestamp),
            ));
        }
        if self.features.is_empty() {
            diags.push(cx.error("features", "list at least one feature view"));
        }
        for (name, value) in &self.defaults {
            if default_value(value).is_none() {
                diags.push(cx.error(
                    "defaults",
                    format!("default for `{name}` must be a number, a string or a boolean"),
                ));
            }
        }
        self.resolved = resolve_query(
            cx,
            (self.labels.as_ref(), "labels"),
            (self.labels_file.as_ref(), "labels_file"),
            diags,
        );
    }

    /// `view` or `view@version` → (view, pinned version).
    pub fn parse_ref(text: &str) -> (&str, Option<&str>) {
        match text.split_once('@') {
            Some((v, version)) => (v, Some(version)),
            None => (text, None),
        }
    }

    pub fn inputs(&self) -> Vec<String> {
        let mut inputs: Vec<String> = self
            .resolved
            .as_ref()
            .map(|r| r.tables.clone())
            .unwrap_or_default();
        for f in &self.features {
            inputs.push(view_table_name(Self::parse_ref(f).0));
        }
        inputs.sort();
        inputs.dedup();
        inputs
    }

    pub(super) async fn run(&self, cx: &TaskCx<'_>) -> Result<TaskOutput, TaskError> {
        let resolved = self.resolved.as_ref().ok_or_else(|| {
            cx.fail(
                "labels were not resolved at load time (this is a bug)",
                false,
            )
        })?;
        if let Some(done) = cx.already_published(&self.output).await? {
            return Ok(done);
        }
        let ctx = cx.run.engine.session().map_err(|e| cx.df_error(e))?;
        let mut read = register_tables(cx, &ctx, &resolved.tables).await?;
        let labels = ctx
            .sql(&resolved.text)
            .await
            .map_err(|e| cx.fail(format!("label query at {}: {e}", resolved.origin), false))?;
        let label_columns: Vec<String> = labels
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        if !label_columns.contains(&self.label_timestamp) {
            return Err(cx.fail(
                format!(
                    "the label query returns no column `{}` (label_timestamp); it returns {}",
                    self.label_timestamp,
                    label_columns.join(", ")
                ),
                false,
            ));
        }
        let label_batches = labels.collect().await.map_err(|e| cx.df_error(e))?;

        let mut taken: HashSet<String> = label_columns.iter().cloned().collect();
        let mut tables = Vec::new();
        let mut columns = Vec::new();
        for (view, version) in &self.views {
            for key in &view.entity {
                if !label_columns.contains(key) {
                    return Err(cx.fail(
                        format!(
                            "the label query returns no column `{key}`, the entity of view `{}`",
                            view.name
                        ),
                        false,
                    ));
                }
            }
            let name = feature_table(&view.name, version);
            let (provider, delta_version) = match cx.run.tables.provider(&name).await {
                Ok(found) => found,
                Err(crate::stores::StoreError::NoSuchTable { .. }) => {
                    return Err(cx.fail(super::no_materialization(&view.name, &name), false));
                }
                Err(e) => return Err(cx.store_error(e)),
            };
            let schema = provider.schema();
            read.push((name, delta_version));
            let names = feature_columns(view, Some(schema.as_ref()));
            let mut features = Vec::new();
            for f in names {
                if !taken.insert(f.clone()) {
                    return Err(cx.fail(
                        format!(
                            "column `{f}` of view `{}` is already a label column or a feature of an earlier view; rename one of them",
                            view.name
                        ),
                        false,
                    ));
                }
                let default = self.defaults.get(&f).and_then(default_value);
                features.push((f, default));
            }
            // Only the columns the join needs are read.
            let wanted: Vec<&str> = view
                .entity
                .iter()
                .map(|s| s.as_str())
                .chain([view.spec.timestamp.as_str()])
                .chain(features.iter().map(|(f, _)| f.as_str()))
                .collect();
            let rows = ctx
                .read_table(provider)
                .and_then(|df| df.select_columns(&wanted))
                .map_err(|e| cx.fail(format!("view `{}`: {e}", view.name), false))?
                .collect()
                .await
                .map_err(|e| cx.df_error(e))?;
            tables.push(rows);
            columns.push(features);
        }
        for name in self.defaults.keys() {
            if !columns.iter().flatten().any(|(f, _)| f == name) {
                return Err(cx.fail(
                    format!("`defaults` names `{name}`, which no listed view provides"),
                    false,
                ));
            }
        }
        let views: Vec<AsofView<'_>> = self
            .views
            .iter()
            .zip(&tables)
            .zip(columns)
            .map(|(((view, _), batches), features)| AsofView {
                batches,
                entity: &view.entity,
                timestamp: &view.spec.timestamp,
                ttl: view.ttl(),
                features,
            })
            .collect();
        // As many threads as the engine gives a query.
        let threads = ctx.state().config().target_partitions();
        let joined = asof_join(&label_batches, &self.label_timestamp, &views, threads)
            .map_err(|m| cx.fail(format!("point-in-time join: {m}"), false))?;
        // Slices share the joined arrays; the writer gets batches of a usual size.
        const CHUNK: usize = 65_536;
        let chunks: Vec<_> = (0..joined.num_rows())
            .step_by(CHUNK)
            .map(|at| joined.slice(at, CHUNK.min(joined.num_rows() - at)))
            .collect();
        let written = gate::publish(
            cx,
            &self.output,
            NewRows::Batches(chunks),
            WriteMode::Overwrite,
        )
        .await?;
        Ok(TaskOutput::published(vec![written], read))
    }
}

/// A YAML default as a value (cast to the feature's type at join time).
fn default_value(value: &serde_json::Value) -> Option<ScalarValue> {
    match value {
        serde_json::Value::Number(n) => Some(match n.as_i64() {
            Some(i) => ScalarValue::Int64(Some(i)),
            None => ScalarValue::Float64(n.as_f64()),
        }),
        serde_json::Value::Bool(b) => Some(ScalarValue::Boolean(Some(*b))),
        serde_json::Value::String(s) => Some(ScalarValue::Utf8(Some(s.clone()))),
        _ => None,
    }
}
