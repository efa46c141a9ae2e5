//! `features`: materializes a feature view's current definition version into
//! `features/<view>/<version>/`, one Delta commit per run, computing only the as-of snapshots
//! that are missing (plus the run's own when its inputs changed).
//!
//! ```yaml
//! - id: rfm
//!   kind: features
//!   view: customer_rfm
//! ```

use std::collections::HashSet;
use std::sync::Arc;

use arrow::array::{Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, TimeUnit};
use chrono::{DateTime, SecondsFormat, Utc};
use datafusion::common::ScalarValue;
use datafusion::datasource::MemTable;
use datafusion::prelude::{Expr, col, lit};
use serde::{Deserialize, Serialize};

use super::{SpecCx, TaskCx, TaskOutput, register_tables};
use crate::diag::Diagnostic;
use crate::exec::TaskError;
use crate::features::store::{Materialization, materializations, present_snapshots};
use crate::features::{FeatureView, run_as_of, stats};
use crate::spec::is_identifier;
use crate::stores::tables::{Written, feature_table};

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FeaturesTask {
    /// The feature view (`features/<view>.yaml`).
    pub view: String,
    /// Filled at load time: the view's definition.
    #[serde(skip)]
    #[schemars(skip)]
    pub resolved: Option<Arc<FeatureView>>,
}

/// The name other tasks use for a view's latest materialization (`features.<view>`).
pub fn view_table_name(view: &str) -> String {
    format!("features.{view}")
}

impl FeaturesTask {
    pub(super) fn check_spec(&mut self, cx: &SpecCx<'_>, diags: &mut Vec<Diagnostic>) {
        if !is_identifier(&self.view) {
            diags.push(cx.error("view", format!("`{}` is not a view name", self.view)));
        }
    }

    pub fn inputs(&self) -> Vec<String> {
        self.resolved
            .as_ref()
            .map(|v| v.inputs.clone())
            .unwrap_or_default()
    }

    pub(super) async fn run(&self, cx: &TaskCx<'_>) -> Result<TaskOutput, TaskError> {
        let view = self
            .resolved
            .as_ref()
            .ok_or_else(|| cx.fail("view was not resolved at load time (this is a bug)", false))?;
        let table = feature_table(&view.name, &view.version);
        let history = materializations(&cx.run.tables, &view.name, &view.version)
            .await
            .map_err(|e| cx.store_error(e))?;
        // An earlier attempt of this run already committed: its record says what it wrote and
        // read (the history is read anyway, so no second look at the log).
        if let Some(done) = history.iter().rev().find(|c| {
            c.record.run_id == cx.run.run_id
                && c.record.pipeline == cx.run.pipeline
                && c.record.task == cx.task.id
        }) {
            return Ok(TaskOutput::published(
                vec![Written {
                    table,
                    version: done.delta_version,
                    rows: done.record.rows,
                    reused: true,
                    facts: None,
                }],
                done.record.inputs.clone(),
            ));
        }
        let present = present_snapshots(&history);
        let ctx = cx.run.engine.session().map_err(|e| cx.df_error(e))?;
        let read = register_tables(cx, &ctx, &view.inputs).await?;

        let own = run_as_of(cx.run.ds);
        let own_text = rfc3339(own);
        // The run's own snapshot is recomputed when the inputs it was computed from changed
        // (an upstream re-run for the same day); older snapshots are history and stay.
        let own_stale = history
            .iter()
            .rev()
            .find(|c| c.record.snapshots.contains(&own_text))
            .is_some_and(|c| c.record.inputs != read);
        let todo: Vec<DateTime<Utc>> = view
            .snapshots_for(cx.run.ds)
            .into_iter()
            .filter(|s| !present.contains(&rfc3339(*s)) || (*s == own && own_stale))
            .collect();
        if todo.is_empty() {
            tracing::info!(view = %view.name, version = %view.version, "feature view up to date");
            let latest = history.last().map_or(0, |c| c.delta_version);
            return Ok(TaskOutput::published(
                vec![Written {
                    table,
                    version: latest,
                    rows: 0,
                    reused: true,
                    facts: None,
                }],
                read,
            ));
        }

        let mut batches: Vec<RecordBatch> = Vec::new();
        // Every snapshot runs the same query but for its date: one plan gives the lineage.
        let mut column_lineage = None;
        for as_of in &todo {
            let sql = view.sql_as_of(*as_of);
            let df = ctx
                .sql(&sql)
                .await
                .map_err(|e| cx.fail(format!("view `{}`: {e}", view.name), false))?;
            if column_lineage.is_none() {
                column_lineage = Some(crate::audit::columns::column_lineage(df.logical_plan()));
            }
            let found = df.collect().await.map_err(|e| cx.df_error(e))?;
            for batch in &found {
                check_snapshot(view, batch, *as_of).map_err(|m| cx.fail(m, false))?;
            }
            check_unique_entities(&ctx, view, &found, *as_of)
                .await
                .map_err(|m| cx.fail(m, false))?;
            batches.extend(found.into_iter().filter(|b| b.num_rows() > 0));
        }
        let feature_columns =
            feature_columns(view, batches.first().map(|b| b.schema_ref().as_ref()));
        let stats = stats::compute(&batches, &feature_columns).map_err(|m| cx.fail(m, false))?;
        let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
        let record = Materialization {
            run_id: cx.run.run_id.clone(),
            pipeline: cx.run.pipeline.clone(),
            task: cx.task.id.clone(),
            ds: cx.run.ds.format("%Y-%m-%d").to_string(),
            inputs: read.clone(),
            snapshots: todo.iter().map(|s| rfc3339(*s)).collect(),
            rows,
            time_range: (rows > 0).then(|| {
                (
                    rfc3339(*todo.first().expect("non-empty")),
                    rfc3339(*todo.last().expect("non-empty")),
                )
            }),
            stats,
        };
        let mut meta = cx.commit_meta();
        meta.details = Some(serde_json::to_value(&record).map_err(|e| cx.fail(e, false))?);
        let timestamp_type = batches.first().map(|b| {
            let schema = b.schema();
            schema
                .field_with_name(&view.spec.timestamp)
                .map(|f| f.data_type().clone())
                .unwrap_or(DataType::Null)
        });
        let predicate = snapshot_predicate(&view.spec.timestamp, &todo, timestamp_type);
        let written = cx
            .run
            .tables
            .replace_where(&table, batches, predicate, &meta)
            .await
            .map_err(|e| cx.store_error(e))?;
        let mut output = TaskOutput::published(vec![written], read);
        output.column_lineage = column_lineage;
        Ok(output)
    }
}

pub(super) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// The view's feature columns: declared ones, or every column of `schema` but the keys and
/// timestamp.
pub fn feature_columns(
    view: &FeatureView,
    schema: Option<&arrow::datatypes::Schema>,
) -> Vec<String> {
    if !view.spec.features.is_empty() {
        return view.spec.features.iter().map(|f| f.name.clone()).collect();
    }
    let Some(schema) = schema else {
        return vec![];
    };
    schema
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .filter(|n| !view.entity.contains(n) && n != &view.spec.timestamp)
        .collect()
}

/// A snapshot's rows: the declared columns exactly, and every timestamp equal to `as_of` (a
/// row stamped later would let a training set see the future; earlier would hide it).
fn check_snapshot(
    view: &FeatureView,
    batch: &RecordBatch,
    as_of: DateTime<Utc>,
) -> Result<(), String> {
    let schema = batch.schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let at = format!("view `{}` ({})", view.name, view.sql.path.display());
    for key in view.entity.iter().chain([&view.spec.timestamp]) {
        if !names.contains(&key.as_str()) {
            return Err(format!(
                "{at}: the query returns no column `{key}` (declared in {})",
                view.yaml.path.display()
            ));
        }
    }
    if !view.spec.features.is_empty() {
        let declared: HashSet<&str> = view
            .spec
            .features
            .iter()
            .map(|f| f.name.as_str())
            .chain(view.entity.iter().map(|s| s.as_str()))
            .chain([view.spec.timestamp.as_str()])
            .collect();
        for n in &names {
            if !declared.contains(n) {
                return Err(format!(
                    "{at}: the query returns column `{n}`, which `features:` does not declare"
                ));
            }
        }
        for f in &view.spec.features {
            if !names.contains(&f.name.as_str()) {
                return Err(format!(
                    "{at}: declared feature `{}` is not returned by the query",
                    f.name
                ));
            }
        }
    }
    let ts = batch.column(
        schema
            .index_of(&view.spec.timestamp)
            .map_err(|e| e.to_string())?,
    );
    let micros = cast(
        ts,
        &DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
    )
    .map_err(|e| format!("{at}: timestamp column `{}`: {e}", view.spec.timestamp))?;
    let micros = micros
        .as_any()
        .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
        .ok_or_else(|| format!("{at}: timestamp column is not a timestamp"))?;
    let expected = as_of.timestamp_micros();
    let wrong = (0..micros.len())
        .filter(|&i| micros.is_null(i) || micros.value(i) != expected)
        .count();
    if wrong > 0 {
        return Err(format!(
            "{at}: {wrong} row(s) of the snapshot as of {} have `{}` null or different from it; \
             select `{{{{ as_of }}}} AS {}`",
            rfc3339(as_of),
            view.spec.timestamp,
            view.spec.timestamp
        ));
    }
    Ok(())
}

/// One row per entity per snapshot: duplicates would make point-in-time lookups ambiguous.
async fn check_unique_entities(
    ctx: &datafusion::prelude::SessionContext,
    view: &FeatureView,
    batches: &[RecordBatch],
    as_of: DateTime<Utc>,
) -> Result<(), String> {
    let Some(first) = batches.first() else {
        return Ok(());
    };
    let table =
        MemTable::try_new(first.schema(), vec![batches.to_vec()]).map_err(|e| e.to_string())?;
    let name = "__nightjar_snapshot";
    ctx.register_table(name, Arc::new(table))
        .map_err(|e| e.to_string())?;
    let keys = view
        .entity
        .iter()
        .map(|c| crate::contracts::quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let sql = format!(
        "SELECT {keys}, count(*) AS n FROM \"{name}\" GROUP BY {keys} HAVING count(*) > 1 ORDER BY {keys} LIMIT 1"
    );
    let result = async { ctx.sql(&sql).await?.collect().await }.await;
    let _ = ctx.deregister_table(name);
    let found = result.map_err(|e| e.to_string())?;
    if let Some(batch) = found.iter().find(|b| b.num_rows() > 0) {
        let key: Vec<String> = (0..view.entity.len())
            .map(|i| {
                arrow::util::display::array_value_to_string(batch.column(i), 0).unwrap_or_default()
            })
            .collect();
        return Err(format!(
            "view `{}` ({}): entity {} = {} appears more than once in the snapshot as of {}",
            view.name,
            view.sql.path.display(),
            view.entity.join(", "),
            key.join(", "),
            rfc3339(as_of)
        ));
    }
    Ok(())
}

/// `timestamp IN (snapshots)`, typed like the column so Delta can match the rows it replaces.
fn snapshot_predicate(
    column: &str,
    snapshots: &[DateTime<Utc>],
    column_type: Option<DataType>,
) -> Expr {
    let values: Vec<Expr> = snapshots
        .iter()
        .map(|s| {
            let value = lit(ScalarValue::TimestampMicrosecond(
                Some(s.timestamp_micros()),
                Some("UTC".into()),
            ));
            match &column_type {
                Some(t) if !matches!(t, DataType::Null) => Expr::Cast(
                    datafusion::logical_expr::Cast::new(Box::new(value), t.clone()),
                ),
                _ => value,
            }
        })
        .collect();
    col(column).in_list(values, false)
}
