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
use crate::features::pit::{AsofView, asof_join, newest_micros};
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

        let joins: Vec<ViewToJoin<'_>> = self
            .views
            .iter()
            .map(|(view, version)| ViewToJoin {
                view: &view.name,
                version,
                entity: &view.entity,
                timestamp: &view.spec.timestamp,
                ttl: view.ttl(),
                features: ViewColumns::OfDefinition(view),
            })
            .collect();
        let (joined, views_read, record) = join_views(
            cx,
            &ctx,
            Labels {
                batches: &label_batches,
                columns: &label_columns,
                timestamp: &self.label_timestamp,
                query: "the label query",
            },
            &joins,
            &self.defaults,
            &|view, stored| super::no_materialization(view, stored),
        )
        .await?;
        read.extend(views_read);
        let record = TrainingSetRecord {
            label_timestamp: self.label_timestamp.clone(),
            views: record,
        };
        // Slices share the joined arrays; the writer gets batches of a usual size.
        const CHUNK: usize = 65_536;
        let chunks: Vec<_> = (0..joined.num_rows())
            .step_by(CHUNK)
            .map(|at| joined.slice(at, CHUNK.min(joined.num_rows() - at)))
            .collect();
        // The record goes into the commit's tag: a model trained on this version learns
        // from it which view versions, ttls and defaults to score with.
        let details = serde_json::to_value(&record).map_err(|e| cx.fail(e, false))?;
        let written = gate::publish_with_details(
            cx,
            &self.output,
            NewRows::Batches(chunks),
            WriteMode::Overwrite,
            Some(details),
        )
        .await?;
        Ok(TaskOutput::published(vec![written], read))
    }
}

/// What a training set's commit records of its point-in-time join.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainingSetRecord {
    pub label_timestamp: String,
    pub views: Vec<ViewJoin>,
}

/// How one view was joined: everything scoring must repeat to build the same features.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ViewJoin {
    pub view: String,
    /// The definition version.
    pub version: String,
    /// The Delta version of the view's table that was read.
    pub delta_version: i64,
    pub entity: Vec<String>,
    pub timestamp: String,
    /// The ttl in microseconds; kept here because a ttl change is not a new definition
    /// version.
    pub ttl_micros: Option<u64>,
    /// The feature columns taken, in order.
    pub features: Vec<String>,
    /// Defaults of these features for label rows without a match.
    #[serde(default)]
    pub defaults: BTreeMap<String, serde_json::Value>,
    /// The newest timestamp (UTC microseconds) among the version's rows at or before the
    /// latest label time: the freshest row the join could use.
    #[serde(default)]
    pub newest_micros: Option<i64>,
}

/// One view to join: from the project's definition (a training set) or from a record.
pub(super) struct ViewToJoin<'a> {
    pub view: &'a str,
    pub version: &'a str,
    pub entity: &'a [String],
    pub timestamp: &'a str,
    pub ttl: Option<std::time::Duration>,
    pub features: ViewColumns<'a>,
}

/// The label rows of a join: collected batches, their column names, the time column.
#[derive(Clone, Copy)]
pub(super) struct Labels<'a> {
    pub batches: &'a [datafusion::arrow::record_batch::RecordBatch],
    pub columns: &'a [String],
    pub timestamp: &'a str,
    /// What the rows come from, for messages: "the label query", "the entities query".
    pub query: &'a str,
}

/// The feature columns a join takes from a view.
pub(super) enum ViewColumns<'a> {
    /// Every declared feature of the definition that the table has (a training set).
    OfDefinition(&'a FeatureView),
    /// Exactly these, each required (scoring repeats a recorded join).
    Exactly(&'a [String]),
}

/// Reads the latest materialization of each view version and joins the labels to them point
/// in time (the one code path of training sets and of scoring from views). Returns the
/// joined batch, the versions read, and the record of each join.
pub(super) async fn join_views(
    cx: &TaskCx<'_>,
    ctx: &datafusion::prelude::SessionContext,
    labels: Labels<'_>,
    joins: &[ViewToJoin<'_>],
    defaults: &BTreeMap<String, serde_json::Value>,
    missing: &(dyn Fn(&str, &str) -> String + Sync),
) -> Result<
    (
        datafusion::arrow::record_batch::RecordBatch,
        Vec<(String, i64)>,
        Vec<ViewJoin>,
    ),
    TaskError,
> {
    let Labels {
        batches: label_batches,
        columns: label_columns,
        timestamp: label_timestamp,
        query: label_query,
    } = labels;
    // The newest view row a label could match is at or before the latest label time.
    let latest_label = newest_micros(label_batches, label_timestamp, None)
        .map_err(|m| cx.fail(format!("{label_query}: {m}"), false))?;
    let mut taken: HashSet<String> = label_columns.iter().cloned().collect();
    let mut read = Vec::new();
    let mut records = Vec::new();
    let mut tables = Vec::new();
    let mut columns = Vec::new();
    for join in joins {
        for key in join.entity {
            if !label_columns.iter().any(|c| c == key) {
                return Err(cx.fail(
                    format!(
                        "{label_query} returns no column `{key}`, the entity of view `{}`",
                        join.view
                    ),
                    false,
                ));
            }
        }
        let name = feature_table(join.view, join.version);
        let (provider, delta_version) = match cx.run.tables.provider(&name).await {
            Ok(found) => found,
            Err(crate::stores::StoreError::NoSuchTable { .. }) => {
                return Err(cx.fail(missing(join.view, &name), false));
            }
            Err(e) => return Err(cx.store_error(e)),
        };
        let schema = provider.schema();
        read.push((name, delta_version));
        let names = match join.features {
            ViewColumns::Exactly(list) => {
                for f in list {
                    if schema.field_with_name(f).is_err() {
                        return Err(cx.fail(
                            format!(
                                "view `{}` version {} has no column `{f}`",
                                join.view, join.version
                            ),
                            false,
                        ));
                    }
                }
                list.to_vec()
            }
            ViewColumns::OfDefinition(view) => feature_columns(view, Some(schema.as_ref())),
        };
        let mut features = Vec::new();
        let mut kept_defaults = BTreeMap::new();
        for f in &names {
            if !taken.insert(f.clone()) {
                return Err(cx.fail(
                    format!(
                        "column `{f}` of view `{}` is already a column of {label_query} or a feature of an earlier view; rename one of them",
                        join.view
                    ),
                    false,
                ));
            }
            let default = defaults.get(f);
            if let Some(value) = default {
                kept_defaults.insert(f.clone(), value.clone());
            }
            features.push((f.clone(), default.and_then(default_value)));
        }
        // Only the columns the join needs are read.
        let wanted: Vec<&str> = join
            .entity
            .iter()
            .map(|s| s.as_str())
            .chain([join.timestamp])
            .chain(features.iter().map(|(f, _)| f.as_str()))
            .collect();
        let rows = ctx
            .read_table(provider)
            .and_then(|df| df.select_columns(&wanted))
            .map_err(|e| cx.fail(format!("view `{}`: {e}", join.view), false))?
            .collect()
            .await
            .map_err(|e| cx.df_error(e))?;
        let newest_micros = newest_micros(&rows, join.timestamp, latest_label)
            .map_err(|m| cx.fail(format!("view `{}`: {m}", join.view), false))?;
        records.push(ViewJoin {
            view: join.view.to_string(),
            version: join.version.to_string(),
            delta_version,
            entity: join.entity.to_vec(),
            timestamp: join.timestamp.to_string(),
            ttl_micros: join.ttl.map(|d| d.as_micros() as u64),
            features: names,
            defaults: kept_defaults,
            newest_micros,
        });
        tables.push(rows);
        columns.push(features);
    }
    for name in defaults.keys() {
        if !columns.iter().flatten().any(|(f, _)| f == name) {
            return Err(cx.fail(
                format!("`defaults` names `{name}`, which no listed view provides"),
                false,
            ));
        }
    }
    let views: Vec<AsofView<'_>> = joins
        .iter()
        .zip(&tables)
        .zip(columns)
        .map(|((join, batches), features)| AsofView {
            batches,
            entity: join.entity,
            timestamp: join.timestamp,
            ttl: join.ttl,
            features,
        })
        .collect();
    // As many threads as the engine gives a query.
    let threads = ctx.state().config().target_partitions();
    let joined = asof_join(label_batches, label_timestamp, &views, threads)
        .map_err(|m| cx.fail(format!("point-in-time join: {m}"), false))?;
    Ok((joined, read, records))
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
