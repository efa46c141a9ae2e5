//! `train`: fits a model on a table (usually a training set), evaluates it on a holdout,
//! registers it as the next version of `registry/<model>/versions/<n>/` (artefact, `MLmodel`,
//! model card as Markdown and JSON, `metadata.json` with the sha256 of each) and publishes
//! the holdout predictions as a table, so anyone can recompute the metrics. With `promote:`
//! its gate decides whether the new version takes an alias (see `register.rs`).
//!
//! The holdout is, by default, the latest rows by the timestamp column (whole timestamps, so
//! one snapshot is never split between train and holdout); `split: {by: random}` draws it
//! with the seed; `split: {by: dates, ...}` takes explicit, inclusive UTC date ranges (rows
//! outside both are not used). `class_weights` weighs a classifier's rows by class. Every check on the data (target present, not constant, two classes in each
//! part, finite features, rows on both sides) runs before anything is written: a failed task
//! registers nothing and publishes nothing.
//!
//! ```yaml
//! - id: churn_model
//!   kind: train
//!   model: churn
//!   algorithm: gbt_classifier        # gbt_regressor, logistic, linear, ridge,
//!                                    # decision_tree_classifier/_regressor,
//!                                    # random_forest_classifier/_regressor
//!   table: training.churn
//!   target: churned
//!   entity: customer_id              # default: the table's first column
//!   timestamp: label_ts              # default: `label_ts` when the table has it
//!   exclude: [revenue_365d]          # or `features: [...]`; default every numeric column
//!   split: { by: time, holdout: 0.2 }
//!   # or: { by: dates, train_from: 2024-01-01, train_to: 2024-05-31,
//!   #       holdout_from: 2024-06-01, holdout_to: 2024-06-30 }
//!   class_weights: balanced          # or {0: 1, 1: 4}; classifiers only
//!   params: { n_trees: 200, learning_rate: 0.05, num_leaves: 15, early_stopping_rounds: 20 }
//!   seed: 7
//!   segments: [country]              # holdout metrics by value, in the model card
//!   promote: { alias: champion, when: "auc >= 0.70 and auc >= champion.auc - 0.005" }
//!   card: { owner: crm-analytics, intended_use: "...", risk_category: minimal }
//! ```

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, Float64Array, RecordBatch, StringArray, UInt32Array, UInt64Array,
};
use datafusion::arrow::compute::{cast, concat_batches, take};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use serde::{Deserialize, Serialize};

use super::gate::{self, NewRows};
use super::register::{self, CardSpec, PromoteSpec, Promotion};
use super::training_set::TrainingSetRecord;
use super::{ModelUse, SpecCx, TaskCx, TaskOutput, register_tables};
use crate::diag::Diagnostic;
use crate::exec::TaskError;
use crate::models::{self, Algorithm, Importance, Matrix, Model, Params, card, metrics, promotion};
use crate::spec::{is_identifier, is_table_name};
use crate::stores::registry::{self, FileSig, Registry};
use crate::stores::tables::WriteMode;

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TrainTask {
    /// The registered model's name (versions go to `registry/<model>/versions/<n>/`).
    pub model: String,
    pub algorithm: Algorithm,
    /// The table to learn from, `zone.name` (a training set or any table).
    pub table: String,
    /// The label column (0/1 for classifiers).
    pub target: String,
    /// The entity column, kept with each holdout prediction (default: the first column).
    #[serde(default)]
    pub entity: Option<String>,
    /// The timestamp column of a time split (default: `label_ts` when the table has it).
    #[serde(default)]
    pub timestamp: Option<String>,
    /// The feature columns, in order (default: every numeric or boolean column except the
    /// entity, timestamp, target and `exclude`).
    #[serde(default)]
    pub features: Option<Vec<String>>,
    /// Columns left out of the default feature list.
    #[serde(default)]
    pub exclude: Vec<String>,
    #[serde(default)]
    pub split: SplitSpec,
    /// Hyperparameters of the algorithm (LightGBM's names for trees: `n_trees`,
    /// `learning_rate`, `num_leaves`, `max_depth`, `min_data_in_leaf`, `l2`,
    /// `row_subsample`, `feature_subsample`, `early_stopping_rounds`, …; `alpha` for linear
    /// models).
    #[serde(default)]
    pub params: BTreeMap<String, serde_json::Value>,
    /// Seed of every random draw (split, subsampling).
    #[serde(default)]
    pub seed: u64,
    /// A classifier's class weights: `balanced` (n / (2 · n_class) over the training rows,
    /// as sklearn's) or `{0: w0, 1: w1}` (a class left out weighs 1). Each row counts its
    /// weight times in the loss; the holdout metrics stay unweighted.
    #[serde(default)]
    pub class_weights: Option<ClassWeights>,
    /// Classification threshold for precision, recall and F1.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// The table of holdout predictions (default `models.<model>_holdout`).
    #[serde(default)]
    pub holdout_table: Option<String>,
    /// Columns of `table` (any type) whose values slice the holdout metrics in the model
    /// card, e.g. `[country, age_band]`; they need not be features.
    #[serde(default)]
    pub segments: Vec<String>,
    /// Move an alias to the new version when its gate passes.
    #[serde(default)]
    pub promote: Option<PromoteSpec>,
    /// Model card fields only people can declare (owner, intended use, risk, …).
    #[serde(default)]
    pub card: CardSpec,
    /// Filled at load time: `params` checked against the algorithm, with defaults.
    #[serde(skip)]
    #[schemars(skip)]
    pub resolved: Option<Params>,
    /// Filled at load time: the parsed `promote.when`.
    #[serde(skip)]
    #[schemars(skip)]
    pub gate: Option<promotion::Expr>,
}

fn default_threshold() -> f64 {
    0.5
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ClassWeights {
    Rule(BalancedRule),
    /// Weight per class, `0` and `1`.
    Given(BTreeMap<u8, f64>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum BalancedRule {
    Balanced,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitSpec {
    #[serde(default)]
    pub by: SplitBy,
    /// Share of rows held out for evaluation (`time` and `random`; default 0.2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout: Option<f64>,
    /// `by: dates`: the first training day (inclusive, UTC; default: the earliest row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_from: Option<String>,
    /// `by: dates`: the last training day (inclusive).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub train_to: Option<String>,
    /// `by: dates`: the first holdout day (inclusive; after `train_to`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_from: Option<String>,
    /// `by: dates`: the last holdout day (inclusive; default: the latest row).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub holdout_to: Option<String>,
    /// Filled at load time by `resolve`: the `by: dates` ranges in days.
    #[serde(skip)]
    #[schemars(skip)]
    ranges: Option<DateRanges>,
}

const DEFAULT_HOLDOUT: f64 = 0.2;

/// `by: dates` bounds as days since 1970-01-01: [train_from, train_to], [holdout_from,
/// holdout_to], open where `None`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DateRanges {
    train: (Option<i64>, i64),
    holdout: (i64, Option<i64>),
}

impl SplitSpec {
    /// Checks the fields against `by` and fills the default holdout share; the date ranges
    /// of `by: dates`, or a message naming the field.
    fn resolve(&mut self) -> Result<Option<DateRanges>, (&'static str, String)> {
        let dates = [
            ("train_from", &self.train_from),
            ("train_to", &self.train_to),
            ("holdout_from", &self.holdout_from),
            ("holdout_to", &self.holdout_to),
        ];
        if self.by != SplitBy::Dates {
            if let Some((field, _)) = dates.iter().find(|(_, v)| v.is_some()) {
                return Err((
                    "split",
                    format!(
                        "`{field}` applies to `by: dates`, not `by: {}`",
                        self.by.name()
                    ),
                ));
            }
            let holdout = *self.holdout.get_or_insert(DEFAULT_HOLDOUT);
            if !(holdout > 0.0 && holdout < 1.0) {
                return Err((
                    "split",
                    "`holdout` must be between 0 and 1 (exclusive)".into(),
                ));
            }
            return Ok(None);
        }
        if self.holdout.is_some() {
            return Err((
                "split",
                "`holdout` is a share for `by: time` or `by: random`; `by: dates` takes `holdout_from` and `holdout_to`".into(),
            ));
        }
        let mut days = [None; 4];
        for (slot, (field, value)) in days.iter_mut().zip(dates) {
            if let Some(text) = value {
                let date = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
                    (
                        "split",
                        format!("`{field}`: `{text}` is not a date (YYYY-MM-DD)"),
                    )
                })?;
                *slot = Some((date - chrono::DateTime::UNIX_EPOCH.date_naive()).num_days());
            }
        }
        let [train_from, train_to, holdout_from, holdout_to] = days;
        let (Some(train_to), Some(holdout_from)) = (train_to, holdout_from) else {
            return Err((
                "split",
                "`by: dates` needs `train_to` and `holdout_from` (and optionally `train_from`, `holdout_to`)".into(),
            ));
        };
        if train_from.is_some_and(|f| f > train_to) || holdout_to.is_some_and(|t| t < holdout_from)
        {
            return Err(("split", "a date range ends before it starts".into()));
        }
        if holdout_from <= train_to {
            return Err((
                "split",
                "`holdout_from` must be after `train_to`: the holdout may not overlap the training days".into(),
            ));
        }
        self.ranges = Some(DateRanges {
            train: (train_from, train_to),
            holdout: (holdout_from, holdout_to),
        });
        Ok(self.ranges)
    }
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SplitBy {
    /// The latest rows by the timestamp column.
    #[default]
    Time,
    /// Rows drawn with the seed.
    Random,
    /// Explicit date ranges (`train_from`…`train_to`, `holdout_from`…`holdout_to`).
    Dates,
}

impl SplitBy {
    fn name(self) -> &'static str {
        match self {
            SplitBy::Time => "time",
            SplitBy::Random => "random",
            SplitBy::Dates => "dates",
        }
    }
}

/// What `metadata.json` holds (fields in this order, so equal inputs give equal text apart
/// from the run and time).
#[derive(Debug, Serialize)]
struct Metadata<'a> {
    model: &'a str,
    version: u64,
    description: Option<&'a str>,
    algorithm: Algorithm,
    objective: &'static str,
    params: &'a Params,
    seed: u64,
    /// Class weights used, `{"0": w0, "1": w1}` (absent without `class_weights`).
    #[serde(skip_serializing_if = "Option::is_none")]
    class_weights: Option<BTreeMap<String, f64>>,
    target: &'a str,
    entity: &'a str,
    timestamp: Option<&'a str>,
    /// The model signature: feature names and Arrow types, in the order the model reads them.
    features: Vec<FeatureSig>,
    training: Training<'a>,
    metrics: serde_json::Value,
    importance: Vec<Importance>,
    /// Holdout metrics by the values of each `segments` column.
    segments: Vec<serde_json::Value>,
    holdout_table: &'a str,
    card: &'a CardSpec,
    /// The gate's evaluation (`None` without `promote:`).
    promotion: Option<Promotion>,
    code: CodeVersion,
    created_at: String,
    run_id: &'a str,
    pipeline: &'a str,
    task: &'a str,
    /// Every other file of the version with its sha256 (filled last).
    files: Vec<FileSig>,
}

#[derive(Debug, Serialize)]
struct CodeVersion {
    nightjar_version: &'static str,
    /// The project's git commit, when the project is a git checkout.
    git_commit: Option<String>,
}

#[derive(Debug, Serialize)]
struct TableRead {
    table: String,
    delta_version: i64,
}

#[derive(Debug, Serialize)]
struct TimeRange {
    column: String,
    min: serde_json::Value,
    max: serde_json::Value,
    holdout_from: serde_json::Value,
}

#[derive(Debug, Serialize)]
struct FeatureSig {
    name: String,
    #[serde(rename = "type")]
    data_type: String,
    nullable: bool,
}

#[derive(Debug, Serialize)]
struct Training<'a> {
    table: &'a str,
    /// The Delta versions read (the stored name for a `features.<view>` table).
    read: Vec<TableRead>,
    /// The label definition (the target column; `card.label` says it in words).
    label: &'a str,
    time_range: Option<TimeRange>,
    rows: usize,
    train_rows: usize,
    holdout_rows: usize,
    split: &'a SplitSpec,
    /// With a time split: holdout rows have timestamp >= this (raw units of the column).
    holdout_from: Option<i64>,
    /// When the table is a training set: its point-in-time join (view versions, ttls,
    /// defaults), which `score` with `entities:` repeats.
    #[serde(skip_serializing_if = "Option::is_none")]
    point_in_time: Option<TrainingSetRecord>,
}

impl TrainTask {
    pub(super) fn check_spec(&mut self, cx: &SpecCx<'_>, diags: &mut Vec<Diagnostic>) {
        if !is_identifier(&self.model) {
            diags.push(cx.error(
                "model",
                format!(
                    "`{}` is not a valid model name (letters, digits, `_`)",
                    self.model
                ),
            ));
        }
        if !is_table_name(&self.table) {
            diags.push(cx.error("table", format!("invalid table name `{}`", self.table)));
        }
        let holdout = self.holdout_table();
        if !is_table_name(&holdout) {
            diags.push(cx.error("holdout_table", format!("invalid table name `{holdout}`")));
        }
        if let Err((field, message)) = self.split.resolve() {
            diags.push(cx.error(field, message));
        }
        if let Some(weights) = &self.class_weights {
            if self.algorithm.objective() != models::Objective::Binary {
                diags.push(cx.error(
                    "class_weights",
                    format!(
                        "`class_weights` apply to classifiers, not `{}`",
                        self.algorithm.name()
                    ),
                ));
            }
            if let ClassWeights::Given(map) = weights {
                if let Some(class) = map.keys().find(|c| **c > 1) {
                    diags.push(cx.error(
                        "class_weights",
                        format!("class `{class}`: a classifier's classes are 0 and 1"),
                    ));
                }
                if let Some((class, w)) = map.iter().find(|(_, w)| !(**w > 0.0 && w.is_finite())) {
                    diags.push(cx.error(
                        "class_weights",
                        format!("class {class} weighs {w}: a weight is a positive number"),
                    ));
                }
            }
        }
        if !(self.threshold > 0.0 && self.threshold < 1.0) {
            diags.push(cx.error(
                "threshold",
                "`threshold` must be between 0 and 1 (exclusive)",
            ));
        }
        if self.features.as_ref().is_some_and(|f| f.is_empty()) {
            diags.push(cx.error(
                "features",
                "list at least one feature (or leave `features` out for all)",
            ));
        }
        if self.features.is_some() && !self.exclude.is_empty() {
            diags.push(cx.error("exclude", "`exclude` applies to the default feature list; with `features`, leave the column out there"));
        }
        for segment in &self.segments {
            if !is_identifier(segment) {
                diags.push(cx.error("segments", format!("`{segment}` is not a column name")));
            }
        }
        if let Some(promote) = &self.promote {
            match register::check_promote(promote, self.algorithm.objective()) {
                Ok(gate) => self.gate = gate,
                Err((message, offset)) => diags.push(promote_error(cx, message, offset)),
            }
        }
        let params = serde_json::Value::Object(self.params.clone().into_iter().collect());
        match self.algorithm.params(params) {
            Ok(p) => self.resolved = Some(p),
            Err(e) => diags.push(cx.error(
                "params",
                format!("`params` for `{}`: {e}", self.algorithm.name()),
            )),
        }
    }

    /// The model card's JSON and Markdown and the MLmodel file for `metadata`.
    /// A new version has no alias history yet, so its stored card has none; `nightjar models
    /// card` renders the history as it grows.
    fn documents(metadata: &serde_json::Value) -> Vec<(&'static str, Vec<u8>)> {
        let history: &[serde_json::Value] = &[];
        let model_uuid = crate::audit::event::derived_uuid(
            metadata["run_id"].as_str().unwrap_or_default(),
            &format!(
                "{}@{}",
                metadata["model"].as_str().unwrap_or_default(),
                metadata["version"]
            ),
        );
        let mut card_json =
            serde_json::to_vec_pretty(&card::card_json(metadata, history)).unwrap_or_default();
        card_json.push(b'\n');
        vec![
            (
                registry::MLMODEL,
                register::mlmodel_yaml(metadata, &model_uuid.to_string(), registry::ARTEFACT)
                    .into_bytes(),
            ),
            (registry::CARD_JSON, card_json),
            (
                registry::CARD_MARKDOWN,
                card::card_markdown(metadata, history).into_bytes(),
            ),
        ]
    }

    pub fn holdout_table(&self) -> String {
        self.holdout_table
            .clone()
            .unwrap_or_else(|| format!("models.{}_holdout", self.model))
    }

    pub(super) async fn run(&self, cx: &TaskCx<'_>) -> Result<TaskOutput, TaskError> {
        let params = self.resolved.as_ref().ok_or_else(|| {
            cx.fail(
                "`params` were not resolved at load time (this is a bug)",
                false,
            )
        })?;
        let holdout_table = self.holdout_table();
        let registry = Registry::new(cx.run.engine.storage().clone());
        // A retry or `--resume` after the registration: the version exists, do not add one.
        if let Some(done) = self
            .registered_by_this_run(cx, &registry, &holdout_table)
            .await?
        {
            return Ok(done);
        }

        let ctx = cx.run.engine.session().map_err(|e| cx.df_error(e))?;
        let read = register_tables(cx, &ctx, std::slice::from_ref(&self.table)).await?;
        // A training set's commit says how its features were joined; the model keeps that,
        // so scoring from views repeats the same join.
        let point_in_time = match read.first() {
            Some((stored, version)) => cx
                .run
                .tables
                .tag_at(stored, *version)
                .await
                .map_err(|e| cx.store_error(e))?
                .and_then(|tag| tag.details)
                .and_then(|d| serde_json::from_value::<TrainingSetRecord>(d).ok()),
            None => None,
        };
        // Rows in a total order (every column), since a parallel scan returns them in any
        // order and the split, the bins and the float sums depend on it.
        let frame = ctx
            .table(self.table.as_str())
            .await
            .map_err(|e| cx.df_error(e))?;
        let order: Vec<_> = frame
            .schema()
            .columns()
            .into_iter()
            .map(|c| datafusion::prelude::col(c).sort(true, true))
            .collect();
        let batches = frame
            .sort(order)
            .map_err(|e| cx.df_error(e))?
            .collect()
            .await
            .map_err(|e| cx.df_error(e))?;
        let schema = match batches.first() {
            Some(b) => b.schema(),
            None => return Err(cx.fail(format!("table `{}` has no rows", self.table), false)),
        };
        let data = concat_batches(&schema, &batches).map_err(|e| cx.fail(e, false))?;
        let data_error = |m: String| cx.fail(m, false);

        let column = |name: &str, key: &str| -> Result<ArrayRef, TaskError> {
            data.column_by_name(name).cloned().ok_or_else(|| {
                data_error(format!(
                    "table `{}` has no column `{name}` ({key})",
                    self.table
                ))
            })
        };
        let entity = match &self.entity {
            Some(e) => e.clone(),
            None => schema.field(0).name().clone(),
        };
        let timestamp = match &self.timestamp {
            Some(t) => Some(t.clone()),
            None => schema
                .column_with_name("label_ts")
                .map(|_| "label_ts".to_string()),
        };
        let entity_col = column(&entity, "entity")?;
        let target_col = column(&self.target, "target")?;
        let ts_col = match &timestamp {
            Some(t) => Some(column(t, "timestamp")?),
            None => None,
        };

        let feature_names: Vec<String> = match &self.features {
            Some(list) => list.clone(),
            None => schema
                .fields()
                .iter()
                .filter(|f| is_numeric(f.data_type()))
                .map(|f| f.name().clone())
                .filter(|n| {
                    n != &entity
                        && n != &self.target
                        && Some(n) != timestamp.as_ref()
                        && !self.exclude.contains(n)
                })
                .collect(),
        };
        if feature_names.is_empty() {
            return Err(data_error(format!(
                "table `{}` has no numeric feature columns besides the entity, timestamp and target",
                self.table
            )));
        }
        let mut signature = Vec::new();
        let mut columns = Vec::new();
        for name in &feature_names {
            let array = column(name, "features")?;
            if !is_numeric(array.data_type()) {
                return Err(data_error(format!(
                    "feature `{name}` is {}, not numeric or boolean",
                    array.data_type()
                )));
            }
            let values = to_f64(&array).map_err(|e| cx.fail(e, false))?;
            if let Some(bad) = values.iter().find(|v| v.is_infinite()) {
                return Err(data_error(format!(
                    "feature `{name}` holds {bad}; use null for a missing value"
                )));
            }
            // A NaN stored in the column (not a null) is a data error, not a missing value.
            let nulls = array.logical_null_count();
            if values.iter().filter(|v| v.is_nan()).count() > nulls {
                return Err(data_error(format!(
                    "feature `{name}` holds NaN; use null for a missing value"
                )));
            }
            signature.push(FeatureSig {
                name: name.clone(),
                data_type: array.data_type().to_string(),
                nullable: schema.field_with_name(name).is_ok_and(|f| f.is_nullable()),
            });
            columns.push(values);
        }
        let objective = self.algorithm.objective();
        let y = target_values(&target_col, &self.target, objective).map_err(data_error)?;

        let holdout_share = self.split.holdout.unwrap_or(DEFAULT_HOLDOUT);
        let (train_idx, holdout_idx, holdout_from) = match (self.split.by, &ts_col) {
            (SplitBy::Time | SplitBy::Dates, None) => {
                return Err(data_error(format!(
                    "a `by: {}` split needs a timestamp column: table `{}` has no `label_ts`; set `timestamp:` or `split: {{by: random}}`",
                    self.split.by.name(),
                    self.table
                )));
            }
            (SplitBy::Time | SplitBy::Dates, Some(ts)) => {
                let name = timestamp.as_deref().unwrap_or_default();
                let raw = cast(ts, &DataType::Int64).map_err(|e| cx.fail(e, false))?;
                let raw = raw
                    .as_any()
                    .downcast_ref::<datafusion::arrow::array::Int64Array>()
                    .ok_or_else(|| data_error("timestamp is not castable to Int64".into()))?;
                if raw.null_count() > 0 {
                    return Err(data_error(format!("timestamp column `{name}` has nulls")));
                }
                match self.split.ranges {
                    None => time_split(raw.values(), holdout_share),
                    Some(ranges) => {
                        let per_day = units_per_day(ts.data_type()).ok_or_else(|| {
                            data_error(format!(
                                "a `by: dates` split needs a date or timestamp column; `{name}` is {}",
                                ts.data_type()
                            ))
                        })?;
                        date_split(raw.values(), ranges, per_day)
                    }
                }
            }
            (SplitBy::Random, _) => random_split(data.num_rows(), holdout_share, self.seed),
        };
        if train_idx.is_empty() || holdout_idx.is_empty() {
            let how = match self.split.by {
                SplitBy::Dates => "the `split` date ranges".to_string(),
                _ => format!("`split.holdout` {holdout_share}"),
            };
            return Err(data_error(format!(
                "the split leaves {} training and {} holdout rows of {} ({how}); each side needs rows",
                train_idx.len(),
                holdout_idx.len(),
                data.num_rows(),
            )));
        }
        let x = Matrix::from_columns(columns);
        let (x_train, x_holdout) = (x.take(&train_idx), x.take(&holdout_idx));
        let y_train: Vec<f64> = train_idx.iter().map(|&i| y[i]).collect();
        let y_holdout: Vec<f64> = holdout_idx.iter().map(|&i| y[i]).collect();
        if objective == models::Objective::Binary {
            for (part, ys) in [("training", &y_train), ("holdout", &y_holdout)] {
                if ys.iter().all(|&v| v == ys[0]) {
                    return Err(data_error(format!(
                        "target `{}` has only class {} in the {part} rows; a classifier needs both",
                        self.target, ys[0]
                    )));
                }
            }
        }

        let class_weights = self
            .class_weights
            .as_ref()
            .map(|c| class_weight_values(c, &y_train));
        let row_weights: Option<Vec<f64>> = class_weights.map(|[w0, w1]| {
            y_train
                .iter()
                .map(|&y| if y == 1.0 { w1 } else { w0 })
                .collect()
        });

        let started = std::time::Instant::now();
        let algorithm = self.algorithm;
        let (seed, model_params, names) = (self.seed, params.clone(), feature_names.clone());
        let fitted = tokio::task::spawn_blocking(move || {
            models::train(
                algorithm,
                &model_params,
                names,
                &x_train,
                &y_train,
                row_weights.as_deref(),
                seed,
            )
            .map(|m| (m, x_train))
        })
        .await
        .map_err(|e| cx.fail(format!("training panicked (this is a bug): {e}"), false))?;
        let (model, x_train) =
            fitted.map_err(|e| data_error(format!("model `{}`: {e}", self.model)))?;
        let artefact = model.to_bytes().map_err(|e| data_error(e.to_string()))?;
        // Score the holdout with the model as read back from its artefact: exactly what a
        // `score` task will compute.
        let model = Model::from_bytes(&artefact).map_err(|e| data_error(e.to_string()))?;
        let predictions = model.predict(&x_holdout);
        let metrics = match objective {
            models::Objective::Binary => serde_json::to_value(
                metrics::classification(&y_holdout, &predictions, self.threshold).ok_or_else(
                    || data_error("the holdout has one class (this is a bug)".into()),
                )?,
            ),
            models::Objective::Regression => {
                serde_json::to_value(metrics::regression(&y_holdout, &predictions))
            }
        }
        .map_err(|e| cx.fail(e, false))?;
        let importance = model.importance(&x_train);
        tracing::info!(
            task = %cx.task.id,
            model = %self.model,
            seconds = started.elapsed().as_secs_f64(),
            "trained"
        );
        let holdout_take = indices(&holdout_idx);
        let mut segments = Vec::new();
        for name in &self.segments {
            let values = cast(
                &take(column(name, "segments")?.as_ref(), &holdout_take, None)
                    .map_err(|e| cx.fail(e, false))?,
                &DataType::Utf8,
            )
            .map_err(|e| data_error(format!("segment column `{name}`: {e}")))?;
            let values = values
                .as_any()
                .downcast_ref::<StringArray>()
                .ok_or_else(|| data_error(format!("segment column `{name}` is not text")))?;
            let values: Vec<Option<String>> =
                values.iter().map(|v| v.map(str::to_string)).collect();
            segments.push(
                register::segment_metrics(
                    name,
                    &values,
                    &y_holdout,
                    &predictions,
                    objective,
                    self.threshold,
                )
                .map_err(data_error)?,
            );
        }
        let time_range = match (&timestamp, &ts_col) {
            (Some(name), Some(ts)) => {
                Some(time_range(name, ts, holdout_from).map_err(|e| cx.fail(e, false))?)
            }
            _ => None,
        };
        // The gate reads the aliases before anything is written: its verdict goes into the
        // metadata, and the alias moves only from the generation it saw.
        let promotion = match &self.promote {
            Some(spec) => Some(
                register::evaluate(&registry, &self.model, spec, self.gate.as_ref(), &metrics)
                    .await
                    .map_err(|e| cx.store_error(e))?,
            ),
            None => None,
        };
        // Claim the version, publish the holdout predictions, write the documents, then
        // register (metadata last: until it exists, the version is not visible).
        let mut files = vec![FileSig::of(registry::ARTEFACT, &artefact)];
        let owner = format!("run {} task {}", cx.run.run_id, cx.task.id);
        let (version, taken_back) = registry
            .claim(&self.model, artefact.into(), &owner)
            .await
            .map_err(|e| cx.store_error(e))?;
        let holdout_batch = holdout_rows(
            &entity,
            &take(entity_col.as_ref(), &holdout_take, None).map_err(|e| cx.fail(e, false))?,
            timestamp.as_deref().zip(
                ts_col
                    .as_ref()
                    .map(|t| take(t.as_ref(), &holdout_take, None))
                    .transpose()
                    .map_err(|e| cx.fail(e, false))?,
            ),
            &self.target,
            &y_holdout,
            &predictions,
            &self.model,
            version,
        )
        .map_err(|e| cx.fail(e, false))?;
        // An earlier attempt that claimed this version may have published its holdout too.
        let earlier = match taken_back {
            true => cx.already_published(&holdout_table).await?,
            false => None,
        };
        let written = match earlier.and_then(|mut done| done.written.pop()) {
            Some(written) => written,
            None => {
                gate::publish(
                    cx,
                    &holdout_table,
                    NewRows::Batches(vec![holdout_batch]),
                    WriteMode::Overwrite,
                )
                .await?
            }
        };
        let mut metadata = Metadata {
            model: &self.model,
            version,
            description: cx.task.description.as_deref(),
            algorithm: self.algorithm,
            objective: match objective {
                models::Objective::Binary => "binary",
                models::Objective::Regression => "regression",
            },
            params,
            seed: self.seed,
            class_weights: class_weights
                .map(|[w0, w1]| BTreeMap::from([("0".to_string(), w0), ("1".to_string(), w1)])),
            target: &self.target,
            entity: &entity,
            timestamp: timestamp.as_deref(),
            features: signature,
            training: Training {
                table: &self.table,
                read: read
                    .iter()
                    .map(|(table, v)| TableRead {
                        table: table.clone(),
                        delta_version: *v,
                    })
                    .collect(),
                label: &self.target,
                time_range,
                rows: data.num_rows(),
                train_rows: train_idx.len(),
                holdout_rows: holdout_idx.len(),
                split: &self.split,
                holdout_from,
                point_in_time,
            },
            metrics,
            importance,
            segments,
            holdout_table: &holdout_table,
            card: &self.card,
            promotion,
            code: CodeVersion {
                nightjar_version: env!("CARGO_PKG_VERSION"),
                git_commit: register::git_commit(&cx.run.project_dir),
            },
            created_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            run_id: &cx.run.run_id,
            pipeline: &cx.run.pipeline,
            task: &cx.task.id,
            files: Vec::new(),
        };
        let value = serde_json::to_value(&metadata).map_err(|e| cx.fail(e, false))?;
        for (name, bytes) in Self::documents(&value) {
            files.push(FileSig::of(name, &bytes));
            registry
                .put_file(&self.model, version, name, bytes.into())
                .await
                .map_err(|e| cx.store_error(e))?;
        }
        metadata.files = files;
        let mut text = serde_json::to_vec_pretty(&metadata).map_err(|e| cx.fail(e, false))?;
        text.push(b'\n');
        let metadata_sha256 = registry::sha256_hex(&text);
        registry
            .commit(&self.model, version, text.into())
            .await
            .map_err(|e| cx.store_error(e))?;
        let promoted_to = match &metadata.promotion {
            Some(p) if p.passed() => self.promote_registered(cx, &registry, version, p).await?,
            _ => Vec::new(),
        };
        let mut output = TaskOutput::published(vec![written], read);
        output.models.push(ModelUse {
            model: self.model.clone(),
            version,
            registered: true,
            reference: None,
            promoted_to,
            metadata_sha256: Some(metadata_sha256),
        });
        Ok(output)
    }

    /// Moves the alias per the gate's evaluation; a conflict fails the task.
    async fn promote_registered(
        &self,
        cx: &TaskCx<'_>,
        registry: &Registry,
        version: u64,
        promotion: &Promotion,
    ) -> Result<Vec<String>, TaskError> {
        let by = format!("run {} ({}.{})", cx.run.run_id, cx.run.pipeline, cx.task.id);
        match register::apply(
            registry,
            &self.model,
            version,
            promotion,
            by,
            &cx.run.run_id,
        )
        .await
        .map_err(|e| cx.store_error(e))?
        {
            Ok(record) => {
                tracing::info!(task = %cx.task.id, model = %self.model, version, alias = %record.alias, "promoted");
                Ok(vec![record.alias])
            }
            Err(conflict) => Err(cx.fail(conflict, false)),
        }
    }

    /// This run's earlier attempt registered a version: its output (holdout table, read
    /// versions, the version), so the task neither registers nor publishes twice. A
    /// promotion the attempt did not finish is evaluated again against the alias as it is now.
    async fn registered_by_this_run(
        &self,
        cx: &TaskCx<'_>,
        registry: &Registry,
        holdout_table: &str,
    ) -> Result<Option<TaskOutput>, TaskError> {
        let versions = registry
            .versions(&self.model)
            .await
            .map_err(|e| cx.store_error(e))?;
        // Only versions registered since this run started can be its own: newest first, stop
        // at the first older one, so a fresh run reads one metadata file, not the history.
        // (Run ids start with the run's start time; an hour of slack covers a resume on a
        // machine whose clock is behind.)
        let started = chrono::NaiveDateTime::parse_from_str(
            cx.run.run_id.get(..16).unwrap_or_default(),
            "%Y%m%dT%H%M%SZ",
        )
        .ok()
        .map(|t| t.and_utc() - chrono::Duration::hours(1));
        for v in versions.iter().rev() {
            let Some((meta, metadata_sha256)) = registry
                .signed_metadata(&self.model, *v)
                .await
                .map_err(|e| cx.store_error(e))?
            else {
                continue;
            };
            let created = meta["created_at"]
                .as_str()
                .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
            if let (Some(started), Some(created)) = (started, created)
                && created < started
            {
                break;
            }
            if meta["run_id"] != cx.run.run_id.as_str() || meta["task"] != cx.task.id.as_str() {
                continue;
            }
            let mut done = cx
                .already_published(holdout_table)
                .await?
                .unwrap_or_default();
            done.read = meta["training"]["read"]
                .as_array()
                .map(Vec::as_slice)
                .unwrap_or_default()
                .iter()
                .filter_map(|r| {
                    Some((
                        r["table"].as_str()?.to_string(),
                        r["delta_version"].as_i64()?,
                    ))
                })
                .collect();
            let mut promoted_to = Vec::new();
            if let Some(spec) = &self.promote {
                let history = registry
                    .alias_history(&self.model, &spec.alias)
                    .await
                    .map_err(|e| cx.store_error(e))?;
                let moved = history.iter().any(|r| {
                    r.version == Some(*v) && r.run_id.as_deref() == Some(cx.run.run_id.as_str())
                });
                if moved {
                    promoted_to.push(spec.alias.clone());
                } else {
                    let promotion = register::evaluate(
                        registry,
                        &self.model,
                        spec,
                        self.gate.as_ref(),
                        &meta["metrics"],
                    )
                    .await
                    .map_err(|e| cx.store_error(e))?;
                    if promotion.passed() {
                        promoted_to = self
                            .promote_registered(cx, registry, *v, &promotion)
                            .await?;
                    }
                }
            }
            done.models.push(ModelUse {
                model: self.model.clone(),
                version: *v,
                registered: true,
                reference: None,
                promoted_to,
                metadata_sha256: Some(metadata_sha256),
            });
            return Ok(Some(done));
        }
        Ok(None)
    }
}

/// Where a `promote:` problem is: the gate's character in `when` when the scalar is on one
/// line, else the field.
fn promote_error(cx: &SpecCx<'_>, message: String, offset: Option<usize>) -> Diagnostic {
    use crate::spec::yaml::{NodeKind, ScalarStyle};
    let promote = cx.node.get("promote");
    let field = if offset.is_some() { "when" } else { "alias" };
    let node = promote.and_then(|p| p.get(field));
    let mut pos = node.or(promote).map_or(cx.node.pos, |n| n.pos);
    if let (Some(offset), Some(node)) = (offset, node) {
        let shift = match &node.kind {
            NodeKind::Scalar(_, ScalarStyle::Plain) => Some(0),
            NodeKind::Scalar(s, ScalarStyle::Quoted) if !s.contains(['\\', '\'', '"']) => Some(1),
            _ => None,
        };
        if let Some(shift) = shift {
            pos.col += (offset + shift) as u32;
        }
        return cx.file.diag(pos, format!("`promote.when`: {message}"));
    }
    cx.file.diag(pos, format!("`promote.{field}`: {message}"))
}

/// The label timestamps' range, as the column displays them.
fn time_range(
    name: &str,
    ts: &ArrayRef,
    holdout_from: Option<i64>,
) -> Result<TimeRange, datafusion::arrow::error::ArrowError> {
    use datafusion::arrow::util::display::array_value_to_string;
    let raw = cast(ts, &DataType::Int64)?;
    let raw = raw
        .as_any()
        .downcast_ref::<datafusion::arrow::array::Int64Array>()
        .ok_or_else(|| datafusion::arrow::error::ArrowError::CastError("not Int64".into()))?;
    let at = |pick: &dyn Fn(i64, i64) -> bool| -> Option<usize> {
        let mut best: Option<usize> = None;
        for i in 0..raw.len() {
            if raw.is_valid(i) && best.is_none_or(|b| pick(raw.value(i), raw.value(b))) {
                best = Some(i);
            }
        }
        best
    };
    let show =
        |i: Option<usize>| -> Result<serde_json::Value, datafusion::arrow::error::ArrowError> {
            Ok(match i {
                Some(i) => serde_json::Value::String(array_value_to_string(ts, i)?),
                None => serde_json::Value::Null,
            })
        };
    let from =
        holdout_from.and_then(|c| (0..raw.len()).find(|&i| raw.is_valid(i) && raw.value(i) == c));
    Ok(TimeRange {
        column: name.to_string(),
        min: show(at(&|a, b| a < b))?,
        max: show(at(&|a, b| a > b))?,
        holdout_from: show(from)?,
    })
}

/// Integer, float, decimal and boolean columns.
pub fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean)
}

/// A numeric or boolean column as f64, nulls as NaN.
pub fn to_f64(array: &ArrayRef) -> Result<Vec<f64>, datafusion::arrow::error::ArrowError> {
    let array = match array.data_type() {
        // Arrow casts booleans to floats directly; go through UInt8 for older kernels' sake.
        DataType::Boolean => cast(&cast(array, &DataType::UInt8)?, &DataType::Float64)?,
        _ => cast(array, &DataType::Float64)?,
    };
    let floats = array
        .as_any()
        .downcast_ref::<Float64Array>()
        .ok_or_else(|| datafusion::arrow::error::ArrowError::CastError("not Float64".into()))?;
    Ok((0..floats.len())
        .map(|i| {
            if floats.is_null(i) {
                f64::NAN
            } else {
                floats.value(i)
            }
        })
        .collect())
}

/// The target as f64: no nulls, 0/1 for a classifier, and not constant.
fn target_values(
    array: &ArrayRef,
    name: &str,
    objective: models::Objective,
) -> Result<Vec<f64>, String> {
    if !is_numeric(array.data_type()) {
        return Err(format!(
            "target `{name}` is {}, not numeric or boolean",
            array.data_type()
        ));
    }
    if array.logical_null_count() > 0 {
        return Err(format!(
            "target `{name}` has {} null values",
            array.logical_null_count()
        ));
    }
    let y = to_f64(array).map_err(|e| e.to_string())?;
    if let Some(bad) = y.iter().find(|v| !v.is_finite()) {
        return Err(format!("target `{name}` holds {bad}"));
    }
    if objective == models::Objective::Binary
        && let Some(bad) = y.iter().find(|&&v| v != 0.0 && v != 1.0)
    {
        return Err(format!(
            "target `{name}` holds {bad}; a classifier's target is 0/1 (or boolean)"
        ));
    }
    if y.iter().all(|&v| v == y[0]) {
        return Err(format!(
            "target `{name}` is constant ({}) in every row",
            y[0]
        ));
    }
    Ok(y)
}

/// Rows with timestamp >= a cutoff form the holdout: the cutoff is the timestamp at the
/// `1 − holdout` quantile of the rows, so rows sharing a timestamp stay together.
fn time_split(ts: &[i64], holdout: f64) -> (Vec<usize>, Vec<usize>, Option<i64>) {
    let mut sorted = ts.to_vec();
    sorted.sort_unstable();
    let at = ((sorted.len() as f64) * (1.0 - holdout)).floor() as usize;
    let Some(&cutoff) = sorted.get(at.min(sorted.len().saturating_sub(1))) else {
        return (vec![], vec![], None);
    };
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, &t) in ts.iter().enumerate() {
        if t >= cutoff {
            test.push(i)
        } else {
            train.push(i)
        }
    }
    (train, test, Some(cutoff))
}

/// Raw units of a date or timestamp column per day (`None` for other types).
fn units_per_day(t: &DataType) -> Option<i64> {
    use datafusion::arrow::datatypes::TimeUnit;
    Some(match t {
        DataType::Date32 => 1,
        DataType::Date64 => 86_400_000,
        DataType::Timestamp(unit, _) => {
            86_400
                * match unit {
                    TimeUnit::Second => 1,
                    TimeUnit::Millisecond => 1_000,
                    TimeUnit::Microsecond => 1_000_000,
                    TimeUnit::Nanosecond => 1_000_000_000,
                }
        }
        _ => return None,
    })
}

/// Rows whose day falls in the training or the holdout range (inclusive days; rows in
/// neither are left out); the earliest holdout row's raw value is the cutoff.
fn date_split(
    ts: &[i64],
    ranges: DateRanges,
    per_day: i64,
) -> (Vec<usize>, Vec<usize>, Option<i64>) {
    let start = |day: i64| day.saturating_mul(per_day);
    let in_range = |t: i64, from: Option<i64>, to: Option<i64>| {
        from.is_none_or(|f| t >= start(f)) && to.is_none_or(|d| t < start(d + 1))
    };
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for (i, &t) in ts.iter().enumerate() {
        if in_range(t, ranges.train.0, Some(ranges.train.1)) {
            train.push(i);
        } else if in_range(t, Some(ranges.holdout.0), ranges.holdout.1) {
            test.push(i);
        }
    }
    // The first holdout row's own value, so the card can show it as the column displays it.
    let cutoff = test.iter().map(|&i| ts[i]).min();
    (train, test, cutoff)
}

/// `[w0, w1]`: `balanced` is n / (2 · n_class) over the training labels `y`.
fn class_weight_values(spec: &ClassWeights, y: &[f64]) -> [f64; 2] {
    match spec {
        ClassWeights::Rule(BalancedRule::Balanced) => {
            let n1 = y.iter().filter(|&&v| v == 1.0).count() as f64;
            let n = y.len() as f64;
            // Both classes are present (checked before training).
            [n / (2.0 * (n - n1)), n / (2.0 * n1)]
        }
        ClassWeights::Given(map) => [
            map.get(&0).copied().unwrap_or(1.0),
            map.get(&1).copied().unwrap_or(1.0),
        ],
    }
}

fn random_split(n: usize, holdout: f64, seed: u64) -> (Vec<usize>, Vec<usize>, Option<i64>) {
    use rand::SeedableRng;
    use rand::seq::SliceRandom;
    let mut rows: Vec<usize> = (0..n).collect();
    rows.shuffle(&mut rand_chacha::ChaCha8Rng::seed_from_u64(seed));
    let n_holdout = ((n as f64) * holdout).round() as usize;
    let mut test = rows.split_off(n - n_holdout.min(n));
    rows.sort_unstable();
    test.sort_unstable();
    (rows, test, None)
}

fn indices(rows: &[usize]) -> UInt32Array {
    UInt32Array::from_iter_values(rows.iter().map(|&r| r as u32))
}

/// `entity, [timestamp], target, score, model, version`.
#[allow(clippy::too_many_arguments)]
fn holdout_rows(
    entity: &str,
    entity_values: &ArrayRef,
    timestamp: Option<(&str, ArrayRef)>,
    target: &str,
    y: &[f64],
    score: &[f64],
    model: &str,
    version: u64,
) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
    let n = y.len();
    let mut fields = vec![Field::new(entity, entity_values.data_type().clone(), true)];
    let mut columns: Vec<ArrayRef> = vec![entity_values.clone()];
    if let Some((name, values)) = timestamp {
        fields.push(Field::new(name, values.data_type().clone(), true));
        columns.push(values);
    }
    fields.push(Field::new(target, DataType::Float64, false));
    columns.push(Arc::new(Float64Array::from(y.to_vec())));
    fields.push(Field::new("score", DataType::Float64, false));
    columns.push(Arc::new(Float64Array::from(score.to_vec())));
    fields.push(Field::new("model", DataType::Utf8, false));
    columns.push(Arc::new(StringArray::from(vec![model; n])));
    fields.push(Field::new("version", DataType::UInt64, false));
    columns.push(Arc::new(UInt64Array::from(vec![version; n])));
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_time_split_keeps_each_timestamp_on_one_side() {
        let ts = [1, 1, 2, 2, 3, 3, 3, 4, 4, 4];
        let (train, test, cutoff) = time_split(&ts, 0.3);
        assert_eq!(cutoff, Some(4));
        assert_eq!(test, vec![7, 8, 9]);
        assert_eq!(train.len(), 7);
        // 0.45 → the 6th sorted row (3) is the cutoff: all three 3s go to the holdout.
        let (_, test, cutoff) = time_split(&ts, 0.45);
        assert_eq!((cutoff, test.len()), (Some(3), 6));
    }

    #[test]
    fn a_random_split_depends_on_the_seed_only() {
        let (a_train, a_test, _) = random_split(100, 0.2, 5);
        let (b_train, b_test, _) = random_split(100, 0.2, 5);
        assert_eq!((a_train.len(), a_test.len()), (80, 20));
        assert_eq!((&a_train, &a_test), (&b_train, &b_test));
        assert_ne!(random_split(100, 0.2, 6).1, a_test);
    }
}

#[cfg(test)]
mod split_tests {
    use super::*;

    fn dates(by: SplitBy, fields: [Option<&str>; 4]) -> SplitSpec {
        let [train_from, train_to, holdout_from, holdout_to] = fields.map(|f| f.map(String::from));
        SplitSpec {
            by,
            holdout: None,
            train_from,
            train_to,
            holdout_from,
            holdout_to,
            ranges: None,
        }
    }

    #[test]
    fn date_ranges_are_inclusive_days_and_leave_other_rows_out() {
        let mut spec = dates(
            SplitBy::Dates,
            [
                None,
                Some("1970-01-03"),
                Some("1970-01-05"),
                Some("1970-01-05"),
            ],
        );
        let ranges = spec.resolve().unwrap().unwrap();
        assert_eq!(ranges.train, (None, 2));
        assert_eq!(ranges.holdout, (4, Some(4)));
        // Hourly microsecond timestamps over 6 days.
        let per_day = units_per_day(&DataType::Timestamp(
            datafusion::arrow::datatypes::TimeUnit::Microsecond,
            None,
        ))
        .unwrap();
        let ts: Vec<i64> = (0..6 * 24).map(|h| h * 3_600_000_000).collect();
        let (train, test, cutoff) = date_split(&ts, ranges, per_day);
        // Days 0..=2 train (72 hours), day 4 holdout (24), days 3 and 5 unused.
        assert_eq!(train, (0..72).collect::<Vec<_>>());
        assert_eq!(test, (96..120).collect::<Vec<_>>());
        assert_eq!(cutoff, Some(ts[96]));
        assert_eq!(units_per_day(&DataType::Date32), Some(1));
        assert_eq!(units_per_day(&DataType::Int64), None);
    }

    #[test]
    fn split_fields_are_checked_against_by() {
        let err = |mut s: SplitSpec| s.resolve().unwrap_err().1;
        assert!(
            err(dates(SplitBy::Time, [None, Some("2024-01-01"), None, None]))
                .contains("`train_to` applies to `by: dates`, not `by: time`")
        );
        assert!(
            err(dates(
                SplitBy::Dates,
                [None, Some("2024-02-01"), Some("2024-01-31"), None]
            ))
            .contains("may not overlap")
        );
        assert!(
            err(dates(
                SplitBy::Dates,
                [None, Some("2024-02-30"), Some("2024-03-01"), None]
            ))
            .contains("`train_to`: `2024-02-30` is not a date")
        );
        assert!(
            err(dates(
                SplitBy::Dates,
                [None, None, Some("2024-03-01"), None]
            ))
            .contains("needs `train_to`")
        );
        let mut with_share = dates(
            SplitBy::Dates,
            [None, Some("2024-01-01"), Some("2024-01-02"), None],
        );
        with_share.holdout = Some(0.3);
        assert!(err(with_share).contains("`by: dates` takes `holdout_from`"));
        // time and random get the default share, recorded.
        let mut time = SplitSpec::default();
        assert_eq!(time.resolve().unwrap(), None);
        assert_eq!(time.holdout, Some(DEFAULT_HOLDOUT));
    }

    #[test]
    fn balanced_class_weights_follow_sklearn() {
        // 1 positive in 4: n / (2 · n_class) = 4/6 and 4/2.
        let y = [1.0, 0.0, 0.0, 0.0];
        let w = class_weight_values(&ClassWeights::Rule(BalancedRule::Balanced), &y);
        assert_eq!(w, [4.0 / 6.0, 2.0]);
        let given = ClassWeights::Given(BTreeMap::from([(1, 5.0)]));
        assert_eq!(class_weight_values(&given, &y), [1.0, 5.0]);
    }
}
