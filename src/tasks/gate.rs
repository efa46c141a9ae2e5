//! Publishing a table version through its data contract: stage, check, then commit.
//!
//! Without a contract a task's rows go straight into one Delta commit. With one, they are
//! first written as Parquet under `tmp/<run_id>/<task>/<table>/` (scratch space no reader
//! looks at), checked there, and only a passing version is committed, so a violating
//! version never becomes visible downstream. With `on_violation: quarantine`, rows failing a
//! row-level rule go to `<zone>.<name>__quarantine` tagged with the rule id and run id, and the
//! other rows are committed, as long as the quarantined share stays within its limit.

use std::sync::Arc;

use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::TableProvider;
use datafusion::dataframe::DataFrameWriteOptions;
use datafusion::datasource::MemTable;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{ParquetReadOptions, SessionContext};

use super::{TaskCx, register_provider};
use crate::contracts::{self, CheckOptions, CheckReport, RuleResult, Severity, Unit};
use crate::exec::TaskError;
use crate::plan::PlannedContract;
use crate::spec::{OnViolation, QuarantineLimit, contract_object_for};
use crate::stores::tables::{CommitMeta, WriteMode, Written};

/// The rows of a new table version.
pub enum NewRows {
    /// A query, planned in `session`; it runs inside the write (streaming).
    Plan(SessionContext, LogicalPlan),
    Batches(Vec<RecordBatch>),
}

/// Suffix of the table that keeps quarantined rows.
pub const QUARANTINE_SUFFIX: &str = "__quarantine";

/// Publishes `rows` as the next version of `table`, through the task's contract if it has one.
pub async fn publish(
    cx: &TaskCx<'_>,
    table: &str,
    rows: NewRows,
    mode: WriteMode,
) -> Result<Written, TaskError> {
    publish_with_details(cx, table, rows, mode, None).await
}

/// `publish`, with a record kept in the commit's tag beside the run id (what a reader of
/// that version needs to know about how it was made).
pub async fn publish_with_details(
    cx: &TaskCx<'_>,
    table: &str,
    rows: NewRows,
    mode: WriteMode,
    details: Option<serde_json::Value>,
) -> Result<Written, TaskError> {
    let mut meta = cx.commit_meta();
    meta.details = details;
    let mut written = publish_tagged(cx, vec![(table.to_string(), rows, mode)], &meta).await?;
    written
        .pop()
        .ok_or_else(|| cx.fail("nothing was written (this is a bug)", false))
}

/// Publishes several tables of one task: every contracted table is staged and checked
/// before any table is committed, so a violation in one publishes none of them.
pub async fn publish_all(
    cx: &TaskCx<'_>,
    items: Vec<(String, NewRows, WriteMode)>,
) -> Result<Vec<Written>, TaskError> {
    publish_tagged(cx, items, &cx.commit_meta()).await
}

async fn publish_tagged(
    cx: &TaskCx<'_>,
    items: Vec<(String, NewRows, WriteMode)>,
    meta: &CommitMeta,
) -> Result<Vec<Written>, TaskError> {
    // Only contracted tables are staged; without one there is no scratch space to clear (two
    // listings saved per task, which a DAG of many small tasks feels).
    if !items
        .iter()
        .any(|(table, _, _)| contract_for(cx, table).is_some())
    {
        return check_then_commit(cx, items, "", meta).await;
    }
    let storage = cx.run.engine.storage().clone();
    let staging_root = format!("tmp/{}/{}/", cx.run.run_id, cx.task.id);
    // A previous attempt may have left files; the staged versions must be exactly these.
    storage
        .delete_prefix(&staging_root)
        .await
        .map_err(|e| cx.store_error(e))?;
    let result = check_then_commit(cx, items, &staging_root, meta).await;
    if let Err(e) = storage.delete_prefix(&staging_root).await {
        tracing::warn!(task = %cx.task.id, "cannot remove staged files under {staging_root}: {e}");
    }
    result
}

/// A table's new version, waiting for its commit.
enum Ready {
    Direct(String, NewRows, WriteMode),
    Checked(Box<Checked>),
}

/// A staged version that passed its contract (possibly after quarantining rows).
struct Checked {
    session: SessionContext,
    table: String,
    mode: WriteMode,
    /// The rows to publish.
    good_sql: String,
    /// `(quarantine table, query of the quarantined rows)`.
    quarantine: Option<(String, String)>,
    report: CheckReport,
}

/// The task's contract, if it has an object for `table`.
fn contract_for<'a>(cx: &'a TaskCx<'_>, table: &str) -> Option<&'a PlannedContract> {
    let sole = cx.task.kind.contract_tables().len() == 1;
    cx.task
        .contract
        .as_ref()
        .filter(|p| contract_object_for(&p.contract, table, sole).is_some())
}

async fn check_then_commit(
    cx: &TaskCx<'_>,
    items: Vec<(String, NewRows, WriteMode)>,
    staging_root: &str,
    meta: &CommitMeta,
) -> Result<Vec<Written>, TaskError> {
    let mut ready = Vec::new();
    for (table, rows, mode) in items {
        match contract_for(cx, &table) {
            None => ready.push(Ready::Direct(table, rows, mode)),
            Some(planned) => {
                let staging = format!("{staging_root}{table}/");
                let checked = stage_and_check(cx, planned, &table, rows, mode, &staging).await?;
                ready.push(Ready::Checked(Box::new(checked)));
            }
        }
    }
    let tables = &cx.run.tables;
    let mut written = Vec::new();
    for item in ready {
        let w = match item {
            Ready::Direct(table, NewRows::Plan(session, plan), mode) => {
                tables.write_plan(&table, &session, plan, mode, meta).await
            }
            Ready::Direct(table, NewRows::Batches(batches), mode) => {
                tables.write_batches(&table, batches, mode, meta).await
            }
            Ready::Checked(checked) => {
                written.push(commit(cx, *checked, meta).await?);
                continue;
            }
        };
        written.push(w.map_err(|e| cx.store_error(e))?);
    }
    Ok(written)
}

/// Commits a checked version: quarantined rows first (append), then the table.
async fn commit(
    cx: &TaskCx<'_>,
    checked: Checked,
    meta: &CommitMeta,
) -> Result<Written, TaskError> {
    let Checked {
        session,
        table,
        mode,
        good_sql,
        quarantine,
        report,
    } = checked;
    if let Some((qtable, bad_sql)) = quarantine
        && cx
            .run
            .tables
            .published_by(&qtable, meta)
            .await
            .map_err(|e| cx.store_error(e))?
            .is_none()
    {
        let plan = session
            .sql(&bad_sql)
            .await
            .and_then(|df| df.into_optimized_plan())
            .map_err(|e| cx.df_error(e))?;
        cx.run
            .tables
            .write_plan(&qtable, &session, plan, WriteMode::Append, meta)
            .await
            .map_err(|e| cx.store_error(e))?;
    }
    let plan = session
        .sql(&good_sql)
        .await
        .and_then(|df| df.into_optimized_plan())
        .map_err(|e| cx.df_error(e))?;
    let written = cx
        .run
        .tables
        .write_plan(&table, &session, plan, mode, meta)
        .await
        .map_err(|e| cx.store_error(e))?;
    cx.run.record_check(&cx.task.id, report, false);
    Ok(written)
}

/// Stages `rows` as Parquet under `staging`, checks them, and decides what to publish; fails
/// the task on a blocking violation.
async fn stage_and_check(
    cx: &TaskCx<'_>,
    planned: &PlannedContract,
    table: &str,
    rows: NewRows,
    mode: WriteMode,
    staging: &str,
) -> Result<Checked, TaskError> {
    let url = cx.run.engine.storage().url_of(staging).to_string();
    let frame = match rows {
        NewRows::Plan(session, plan) => session.execute_logical_plan(plan).await,
        NewRows::Batches(batches) => {
            let session = cx.run.engine.session().map_err(|e| cx.df_error(e))?;
            let schema = match batches.first() {
                Some(b) => b.schema(),
                None => return Err(cx.fail(format!("no rows and no schema for `{table}`"), false)),
            };
            let mem = MemTable::try_new(schema, vec![batches]).map_err(|e| cx.df_error(e))?;
            session.read_table(Arc::new(mem))
        }
    }
    .map_err(|e| cx.df_error(e))?;
    let schema = frame.schema().inner().clone();
    let staged_rows = frame
        .write_parquet(&url, DataFrameWriteOptions::new(), None)
        .await
        .map_err(|e| cx.df_error(e))?;

    // The staged files under the table's own name, so `{object}` and messages read naturally.
    // No rows leave no file to read a schema from: an empty table of the same columns stands in,
    // so an empty version is checked (a `rowCount` rule fails it) rather than failing the task.
    let session = cx.run.engine.session().map_err(|e| cx.df_error(e))?;
    let staged: Arc<dyn TableProvider> = if written_count(&staged_rows) == Some(0) {
        Arc::new(MemTable::try_new(schema, vec![vec![]]).map_err(|e| cx.df_error(e))?)
    } else {
        session
            .read_parquet(&url, ParquetReadOptions::default())
            .await
            .map_err(|e| cx.df_error(e))?
            .into_view()
    };
    register_provider(&session, table, staged).map_err(|e| cx.df_error(e))?;

    let report = check_one(cx, planned, &session, table).await?;
    let quarantine = planned.on_violation == OnViolation::Quarantine;
    let sole = cx.task.kind.contract_tables().len() == 1;
    // Only the row-level rules that failed route rows: a row that breaks a rule the version
    // passes (e.g. within `mustBeLessThan: 5` percent) is published, not dropped.
    let row_rules: Vec<(String, String)> = match contract_object_for(&planned.contract, table, sole)
    {
        Some(object) if quarantine => contracts::row_rule_predicates(object)
            .into_iter()
            .filter(|(id, _)| report.result(id).is_some_and(|r| !r.passed))
            .collect(),
        _ => vec![],
    };
    let quarantinable = |r: &RuleResult| row_rules.iter().any(|(id, _)| *id == r.rule_id);
    let blocking: Vec<&RuleResult> = report
        .blocking_failures()
        .into_iter()
        .filter(|r| !quarantinable(r))
        .collect();
    if !blocking.is_empty() {
        let message = violation_message(planned, &report, &blocking);
        cx.run.record_check(&cx.task.id, report, true);
        return Err(cx.fail(message, false));
    }

    let source = format!("SELECT * FROM {}", contracts::quote_table(table));
    let any_fails = row_rules
        .iter()
        .map(|(_, p)| p.as_str())
        .collect::<Vec<_>>()
        .join(" OR ");
    let mut report = report;
    let mut quarantine = None;
    if !row_rules.is_empty() {
        // Each quarantined row carries the first rule it violates.
        let rule_case: String = row_rules
            .iter()
            .map(|(id, p)| format!("WHEN {p} THEN {}", contracts::quote_literal(id)))
            .collect::<Vec<_>>()
            .join(" ");
        let bad_sql = format!(
            "SELECT *, CASE {rule_case} END AS _rule_id, {} AS _run_id FROM {} WHERE {any_fails}",
            contracts::quote_literal(&cx.run.run_id),
            contracts::quote_table(table)
        );
        let count_sql = format!(
            "SELECT count(*) FROM {} WHERE {any_fails}",
            contracts::quote_table(table)
        );
        let quarantined = scalar_u64(&session, &count_sql)
            .await
            .map_err(|e| cx.df_error(e))?;
        let limit_ok = planned.max_quarantined.allows(quarantined, report.rows);
        // Observed in the limit's own unit, so the report compares like with like.
        let (observed, unit) = match planned.max_quarantined {
            QuarantineLimit::Rows(_) => (quarantined as f64, Unit::Rows),
            QuarantineLimit::Percent(_) if report.rows == 0 => (0.0, Unit::Percent),
            QuarantineLimit::Percent(_) => (
                quarantined as f64 * 100.0 / report.rows as f64,
                Unit::Percent,
            ),
        };
        report.results.push(RuleResult {
            rule_id: format!("{}.quarantine", report.object),
            column: None,
            metric: "quarantinedRows".into(),
            observed,
            threshold: planned.max_quarantined.describe(),
            unit,
            passed: limit_ok,
            severity: Severity::Error,
            examples: vec![],
            note: Some(format!("{quarantined} of {} rows quarantined", report.rows)),
        });
        if !limit_ok {
            let failed: Vec<&RuleResult> = report.blocking_failures();
            let message = violation_message(planned, &report, &failed);
            cx.run.record_check(&cx.task.id, report, true);
            return Err(cx.fail(message, false));
        }
        quarantine = Some((format!("{table}{QUARANTINE_SUFFIX}"), bad_sql));
        tracing::warn!(task = %cx.task.id, table, quarantined, "rows quarantined by contract {}", planned.path);
    }
    let good_sql = if row_rules.is_empty() {
        source
    } else {
        format!("{source} WHERE NOT ({any_fails})")
    };
    Ok(Checked {
        session,
        table: table.to_string(),
        mode,
        good_sql,
        quarantine,
        report,
    })
}

/// Runs the contract's object for `table` (registered in `session`) and logs the outcome.
pub async fn check_one(
    cx: &TaskCx<'_>,
    planned: &PlannedContract,
    session: &SessionContext,
    table: &str,
) -> Result<CheckReport, TaskError> {
    let sole = cx.task.kind.contract_tables().len() == 1;
    let object = contract_object_for(&planned.contract, table, sole).ok_or_else(|| {
        cx.fail(
            format!(
                "contract `{}` has no schema object for `{table}`",
                planned.path
            ),
            false,
        )
    })?;
    let options = CheckOptions::new(cx.run.ds);
    let report = contracts::check(session, table, object, &planned.contract, &options)
        .await
        .map_err(|e| cx.df_error(e))?;
    let failed = report.results.iter().filter(|r| !r.passed).count();
    tracing::info!(task = %cx.task.id, table, rules = report.results.len(), failed, "contract {} checked", planned.path);
    for w in report.warnings() {
        tracing::warn!(task = %cx.task.id, rule = %w.rule_id, "contract warning: observed {} (expected {})", fmt_observed(w), w.threshold);
    }
    Ok(report)
}

/// One message naming contract, version, and each failed rule with column, observed value
/// and threshold.
pub fn violation_message(
    planned: &PlannedContract,
    report: &CheckReport,
    failed: &[&RuleResult],
) -> String {
    let mut out = format!(
        "contract `{}` ({} {}) violated by `{}` ({} rows): {} blocking rule{} failed",
        planned.path,
        report.contract_id,
        report.contract_version,
        report.table,
        report.rows,
        failed.len(),
        if failed.len() == 1 { "" } else { "s" }
    );
    for r in failed {
        out.push_str(&format!("\n  - {}", describe_failure(r)));
    }
    out
}

pub fn describe_failure(r: &RuleResult) -> String {
    let column = r
        .column
        .as_deref()
        .map(|c| format!(" column `{c}`"))
        .unwrap_or_default();
    let note = r
        .note
        .as_deref()
        .map(|n| format!(" ({n})"))
        .unwrap_or_default();
    format!(
        "rule `{}`{column}: {} observed {}, expected {}{note}",
        r.rule_id,
        r.metric,
        fmt_observed(r),
        r.threshold
    )
}

fn fmt_observed(r: &RuleResult) -> String {
    if r.observed.is_nan() {
        return "nothing".into();
    }
    let n = if r.observed.fract() == 0.0 && r.observed.abs() < 1e15 {
        format!("{}", r.observed as i64)
    } else {
        format!("{:.4}", r.observed)
    };
    match r.unit {
        Unit::Percent => format!("{n}%"),
        Unit::Rows => n,
        Unit::Seconds => format!("{n} seconds"),
        Unit::Minutes => format!("{n} minutes"),
        Unit::Hours => format!("{n} hours"),
        Unit::Days => format!("{n} days"),
    }
}

/// Rows a `write_parquet` reports written (its one `count` value).
fn written_count(batches: &[RecordBatch]) -> Option<u64> {
    use datafusion::arrow::array::{Array, UInt64Array};
    let column = batches.iter().find(|b| b.num_rows() > 0)?.column(0).clone();
    let counts = column.as_any().downcast_ref::<UInt64Array>()?;
    (!counts.is_null(0)).then(|| counts.value(0))
}

async fn scalar_u64(session: &SessionContext, sql: &str) -> datafusion::error::Result<u64> {
    use datafusion::arrow::array::{Array, Int64Array};
    let batches = session.sql(sql).await?.collect().await?;
    let value = batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .and_then(|b| {
            b.column(0)
                .as_any()
                .downcast_ref::<Int64Array>()
                .filter(|a| !a.is_null(0))
                .map(|a| a.value(0))
        })
        .unwrap_or(0);
    Ok(value.max(0) as u64)
}
