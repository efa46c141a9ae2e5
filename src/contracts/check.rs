//! Runs a contract object's rules against a table registered in a DataFusion session: schema
//! drift first, then one aggregate scan for every row-level rule, row count and freshness, one
//! pass of hashing per distinct duplicate key (`dups.rs`; a GROUP BY when the hashes do not fit
//! the memory pool), one query per `sql` rule, and example rows for failed rules only.
//!
//! A failed rule is data, not an error: `check` returns `Err` only when the engine cannot run
//! (e.g. the table cannot be read); the caller decides to fail, warn or quarantine.

use std::collections::HashSet;

use arrow::array::{Array, ArrayRef, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};
use chrono::NaiveDate;
use datafusion::common::ScalarValue;
use datafusion::common::TableReference;
use datafusion::error::Result;
use datafusion::prelude::{SessionContext, lit};
use serde::Serialize;
use serde_json::{Map, Value};

use super::drift::{Drift, expected_schema_drift};
use super::model::{Contract, ContractObject, Rule, RuleKind, Severity, Unit};
use super::sql::{
    DUPLICATES_COLUMN, Slot, aggregate_query, duplicate_examples_query, duplicates_query,
    example_columns, quote_table, row_examples_query, row_predicate,
};

/// What replaces the values of PII-classified columns in example rows.
pub const MASK: &str = "***";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckOptions {
    /// The run's logical date. Freshness is measured at the end of this day (00:00 UTC of the
    /// next day), the end of a nightly run's data interval.
    pub ds: NaiveDate,
    /// Example failing rows kept per failed rule (0: fetch none).
    pub max_examples: usize,
}

impl CheckOptions {
    pub fn new(ds: NaiveDate) -> CheckOptions {
        CheckOptions {
            ds,
            max_examples: 5,
        }
    }
}

/// The outcome of checking one object; stored as JSON in the run state.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckReport {
    pub contract_id: String,
    pub contract_version: String,
    pub text_sha256: String,
    pub object: String,
    /// The table checked, as given to `check`.
    pub table: String,
    pub ds: NaiveDate,
    pub rows: u64,
    /// `<object>.schema` first, then every rule in contract order.
    pub results: Vec<RuleResult>,
    pub drift: Vec<Drift>,
    /// Every query `check` ran, in order, so a result can be reproduced by hand.
    pub queries: Vec<IssuedQuery>,
}

impl CheckReport {
    /// Failed rules of severity `error`: any one stops the data.
    pub fn blocking_failures(&self) -> Vec<&RuleResult> {
        self.results
            .iter()
            .filter(|r| !r.passed && r.severity.is_blocking())
            .collect()
    }

    /// Failed rules of severity `warning` or `info`.
    pub fn warnings(&self) -> Vec<&RuleResult> {
        self.results
            .iter()
            .filter(|r| !r.passed && !r.severity.is_blocking())
            .collect()
    }

    pub fn result(&self, rule_id: &str) -> Option<&RuleResult> {
        self.results.iter().find(|r| r.rule_id == rule_id)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuleResult {
    pub rule_id: String,
    /// The property's name, for property-level rules.
    pub column: Option<String>,
    pub metric: String,
    /// The measured value in `unit`; NaN (JSON `null`) when nothing could be measured, in
    /// which case `note` says why.
    pub observed: f64,
    /// For people: `= 0`, `<= 1%`, `between 100 and 200`, `<= 4 days`.
    pub threshold: String,
    pub unit: Unit,
    pub passed: bool,
    pub severity: Severity,
    /// Up to `max_examples` failing rows, PII columns masked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub examples: Vec<Map<String, Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct IssuedQuery {
    pub purpose: QueryPurpose,
    pub sql: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QueryPurpose {
    /// The one scan for row counts, row-level rules and freshness.
    Aggregate,
    /// One per distinct duplicate key.
    Duplicates,
    /// One per `type: sql` rule.
    Sql,
    /// One per failed rule with example rows.
    Examples,
}

/// Checks `object` of `contract` against `table`, a name registered in `ctx` (`raw.events`).
pub async fn check(
    ctx: &SessionContext,
    table: &str,
    object: &ContractObject,
    contract: &Contract,
    opts: &CheckOptions,
) -> Result<CheckReport> {
    let table_sql = quote_table(table);
    let frame = ctx.table(TableReference::parse_str(table)).await?;
    let schema = frame.schema().as_arrow().clone();
    let drift = expected_schema_drift(object, &schema);
    let present: HashSet<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let mut run = Run {
        ctx,
        sequential: None,
        queries: Vec::new(),
    };

    let rules: Vec<&Rule> = object.rules.iter().collect();
    let mut results: Vec<RuleResult> = rules.iter().map(|r| pending(r)).collect();

    // Rules over columns the table lacks cannot be compiled, and comparisons with a typed
    // value (ranges, multiples, freshness) would not plan on a retyped column: drift already
    // reports those columns, and the other rules still run.
    let retyped: Vec<(&str, &str)> = drift
        .iter()
        .filter_map(|d| match d {
            Drift::Retyped {
                column,
                actual_type,
                ..
            } => Some((column.as_str(), actual_type.as_str())),
            _ => None,
        })
        .collect();
    let mut runnable = Vec::new();
    for (i, rule) in rules.iter().enumerate() {
        let columns = rule.kind.columns();
        let absent: Vec<&str> = columns
            .iter()
            .copied()
            .filter(|c| !present.contains(c))
            .collect();
        let typed = matches!(
            rule.kind,
            RuleKind::Range { .. } | RuleKind::MultipleOf { .. } | RuleKind::Freshness { .. }
        );
        let wrong_type = retyped.iter().find(|(c, _)| typed && columns.contains(c));
        if !absent.is_empty() {
            results[i].note = Some(format!(
                "not checked: the table has no column {}",
                list(&absent)
            ));
        } else if let Some((column, actual)) = wrong_type {
            results[i].note = Some(format!(
                "not checked: column `{column}` is `{actual}`, not the declared type"
            ));
        } else {
            runnable.push(i);
        }
    }

    // 1. One scan: row count, every row-level rule, every freshness maximum.
    let (sql, slots) = aggregate_query(&table_sql, &rules, &runnable);
    let batches = run.query(QueryPurpose::Aggregate, sql).await?;
    let row = single_row(&batches);
    let rows = row.as_ref().and_then(|r| number_at(r, 0)).unwrap_or(0.0) as u64;
    for (k, slot) in slots.iter().enumerate() {
        let column = row.as_ref().map(|r| r.column(k + 1).clone());
        match *slot {
            Slot::Count(i) => {
                let count = column.as_ref().and_then(number).unwrap_or(0.0);
                evaluate(&mut results[i], rules[i], scale(count, rules[i].unit, rows));
            }
            Slot::Newest(i) => freshness(&mut results[i], rules[i], column.as_ref(), opts.ds),
        }
    }
    for &i in &runnable {
        if rules[i].kind == RuleKind::RowCount {
            evaluate(&mut results[i], rules[i], rows as f64);
        }
    }

    // 2. One query per distinct duplicate key, shared by every rule over that key.
    let mut keys: Vec<(&[String], Vec<usize>)> = Vec::new();
    for &i in &runnable {
        if let RuleKind::DuplicateValues { columns } = &rules[i].kind {
            match keys.iter_mut().find(|(k, _)| *k == columns.as_slice()) {
                Some((_, users)) => users.push(i),
                None => keys.push((columns, vec![i])),
            }
        }
    }
    // The sampled duplicated keys, as SQL literals, for the example rows of failed rules.
    let mut sampled: Vec<(&[String], Vec<Vec<String>>)> = Vec::new();
    for (columns, users) in &keys {
        let (duplicates, batches) = match run
            .hashed_duplicates(&table_sql, columns, opts.max_examples)
            .await?
        {
            Some(found) => (found.total as f64, found.sampled),
            // The memory pool could not hold the hashes: the GROUP BY, which spills.
            None => {
                let batches = run
                    .query(
                        QueryPurpose::Duplicates,
                        duplicates_query(&table_sql, columns, opts.max_examples),
                    )
                    .await?;
                let total = single_row(&batches)
                    .and_then(|r| {
                        let total = r.schema().index_of(DUPLICATES_COLUMN).ok()?;
                        number_at(&r, total)
                    })
                    .unwrap_or(0.0);
                (total, batches)
            }
        };
        for &i in users {
            evaluate(
                &mut results[i],
                rules[i],
                scale(duplicates, rules[i].unit, rows),
            );
        }
        sampled.push((columns, key_literals(&batches, columns.len())?));
    }

    // 3. One query per `sql` rule. A query that fails (it names a missing table, or compares a
    //    retyped column) fails its rule with the engine's message rather than aborting the
    //    other checks; the rule still blocks, so the data is not let through.
    for &i in &runnable {
        if let RuleKind::Sql { query } = &rules[i].kind {
            let sql = query.replace("{object}", &table_sql);
            match run.sql_value(sql).await {
                Ok(value) => evaluate(&mut results[i], rules[i], value),
                Err(note) => results[i].note = Some(note),
            }
        }
    }

    // 4. Example rows, for failed rules only.
    if opts.max_examples > 0 {
        let columns: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let masked: Vec<&str> = object
            .properties
            .iter()
            .filter(|p| p.is_pii())
            .map(|p| p.column())
            .filter(|c| present.contains(c))
            .collect();
        for &i in &runnable {
            if results[i].passed {
                continue;
            }
            let sql = if let Some(predicate) = row_predicate(&rules[i].kind) {
                let select = example_columns(&columns, &masked, MASK);
                row_examples_query(&table_sql, &select, &predicate, opts.max_examples)
            } else if let RuleKind::DuplicateValues { columns: key } = &rules[i].kind {
                let Some((_, values)) = sampled.iter().find(|(k, _)| *k == key.as_slice()) else {
                    continue;
                };
                if values.is_empty() {
                    continue;
                }
                let select = example_columns(&columns, &masked, MASK);
                duplicate_examples_query(
                    &table_sql,
                    &select,
                    key,
                    &columns,
                    values,
                    opts.max_examples,
                )
            } else {
                continue;
            };
            let batches = run.query(QueryPurpose::Examples, sql).await?;
            results[i].examples = rows_as_json(&batches);
        }
    }

    let mut all = Vec::with_capacity(results.len() + 1);
    all.push(schema_result(object, &drift));
    all.extend(results);
    Ok(CheckReport {
        contract_id: contract.id.clone(),
        contract_version: contract.version.clone(),
        text_sha256: contract.text_sha256.clone(),
        object: object.name.clone(),
        table: table.to_string(),
        ds: opts.ds,
        rows,
        results: all,
        drift,
        queries: run.queries,
    })
}

/// The session and the log of queries run through it.
struct Run<'a> {
    ctx: &'a SessionContext,
    /// The same catalog on one partition, made on first use: for example rows (see `query`).
    sequential: Option<SessionContext>,
    queries: Vec<IssuedQuery>,
}

impl Run<'_> {
    async fn query(&mut self, purpose: QueryPurpose, sql: String) -> Result<Vec<RecordBatch>> {
        tracing::debug!(?purpose, %sql, "contract check query");
        self.queries.push(IssuedQuery {
            purpose,
            sql: sql.clone(),
        });
        // A LIMIT over a parallel scan keeps whichever partition answers first; on one
        // partition the example rows are the first in table order, so the same data gives the
        // same report bytes. The early stop keeps this cheap when failures are common.
        let ctx = match purpose {
            QueryPurpose::Examples => self
                .sequential
                .get_or_insert_with(|| crate::engine::Engine::single_partition(self.ctx)),
            _ => self.ctx,
        };
        let started = std::time::Instant::now();
        let batches = ctx.sql(&sql).await?.collect().await;
        // Timings go to the log only: the report itself stays the same bytes for the same data.
        tracing::debug!(
            ?purpose,
            ms = started.elapsed().as_millis() as u64,
            "contract query done"
        );
        batches
    }

    /// A key's duplicates by hashing (`dups::count`), recorded like a query.
    async fn hashed_duplicates(
        &mut self,
        table: &str,
        columns: &[String],
        sample: usize,
    ) -> Result<Option<super::dups::Duplicates>> {
        let sql = super::dups::key_scan(table, columns);
        tracing::debug!(%sql, "contract duplicates by hashing");
        self.queries.push(IssuedQuery {
            purpose: QueryPurpose::Duplicates,
            sql: sql.clone(),
        });
        let started = std::time::Instant::now();
        let found = super::dups::count(self.ctx, &sql, sample).await?;
        tracing::debug!(
            ?columns,
            hashed = found.is_some(),
            ms = started.elapsed().as_millis() as u64,
            "contract duplicates done"
        );
        Ok(found)
    }

    /// The one number an `sql` rule's query returns, or why there is none.
    async fn sql_value(&mut self, sql: String) -> std::result::Result<f64, String> {
        tracing::debug!(%sql, "contract sql rule");
        self.queries.push(IssuedQuery {
            purpose: QueryPurpose::Sql,
            sql: sql.clone(),
        });
        let started = std::time::Instant::now();
        let batches = match self.ctx.sql(&sql).await {
            Ok(frame) => frame.collect().await,
            Err(e) => Err(e),
        };
        tracing::debug!(
            ms = started.elapsed().as_millis() as u64,
            "contract sql rule done"
        );
        let batches =
            batches.map_err(|e| format!("query does not run: {}", e.strip_backtrace()))?;
        let n_rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        if n_rows != 1 {
            return Err(format!(
                "query returned {n_rows} rows; it must return one number"
            ));
        }
        single_row(&batches)
            .and_then(|r| number_at(&r, 0))
            .ok_or_else(|| "query returned no number (NULL or not numeric)".to_string())
    }
}

/// The first `width` columns of every row, each value as a SQL literal of its own type
/// (DataFusion's unparser: strings quoted and escaped, timestamps cast), so the example query
/// in the report can be run by hand.
fn key_literals(batches: &[RecordBatch], width: usize) -> Result<Vec<Vec<String>>> {
    let unparser = datafusion::sql::unparser::Unparser::default();
    let mut keys = Vec::new();
    for batch in batches {
        for row in 0..batch.num_rows() {
            let mut key = Vec::with_capacity(width);
            for column in batch.columns().iter().take(width) {
                let value = ScalarValue::try_from_array(column, row)?;
                key.push(unparser.expr_to_sql(&lit(value))?.to_string());
            }
            keys.push(key);
        }
    }
    Ok(keys)
}

/// A result that has not been measured yet: fails unless a measurement passes it.
fn pending(rule: &Rule) -> RuleResult {
    RuleResult {
        rule_id: rule.id.clone(),
        column: rule.column.clone(),
        metric: rule.kind.metric().to_string(),
        observed: f64::NAN,
        threshold: rule.op.describe(rule.unit),
        unit: rule.unit,
        passed: false,
        severity: rule.severity,
        examples: Vec::new(),
        note: None,
    }
}

fn evaluate(result: &mut RuleResult, rule: &Rule, observed: f64) {
    result.observed = observed;
    result.passed = rule.op.passes(observed);
}

/// Rows as counted, or as a percentage of all rows (0 for an empty table).
fn scale(count: f64, unit: Unit, rows: u64) -> f64 {
    match unit {
        Unit::Percent if rows == 0 => 0.0,
        Unit::Percent => 100.0 * count / rows as f64,
        _ => count,
    }
}

/// Freshness: the age of the newest value at the end of the `ds` day, in the rule's unit.
fn freshness(result: &mut RuleResult, rule: &Rule, newest: Option<&ArrayRef>, ds: NaiveDate) {
    let reference = ds
        .succ_opt()
        .unwrap_or(ds)
        .and_hms_opt(0, 0, 0)
        .map_or(0, |t| t.and_utc().timestamp()) as f64;
    let unit_seconds = rule.unit.seconds().unwrap_or(86_400.0);
    match newest.map(epoch_seconds) {
        Some(Ok(Some(newest))) => evaluate(result, rule, (reference - newest) / unit_seconds),
        Some(Ok(None)) | None => result.note = Some("the column has no values".to_string()),
        Some(Err(data_type)) => {
            result.note = Some(format!(
                "the column is `{data_type}`, not a date or timestamp"
            ))
        }
    }
}

/// Seconds since the epoch (UTC) of the first value: `Ok(None)` when it is null, `Err(type)`
/// for a non-temporal column.
fn epoch_seconds(array: &ArrayRef) -> std::result::Result<Option<f64>, String> {
    let value = ScalarValue::try_from_array(array, 0).map_err(|_| array.data_type().to_string())?;
    let seconds = match value {
        ScalarValue::Date32(v) => v.map(|d| d as f64 * 86_400.0),
        ScalarValue::Date64(v) => v.map(|ms| ms as f64 / 1e3),
        ScalarValue::TimestampSecond(v, _) => v.map(|s| s as f64),
        ScalarValue::TimestampMillisecond(v, _) => v.map(|s| s as f64 / 1e3),
        ScalarValue::TimestampMicrosecond(v, _) => v.map(|s| s as f64 / 1e6),
        ScalarValue::TimestampNanosecond(v, _) => v.map(|s| s as f64 / 1e9),
        _ => return Err(array.data_type().to_string()),
    };
    Ok(seconds)
}

/// The first row of a result as a one-row batch.
fn single_row(batches: &[RecordBatch]) -> Option<RecordBatch> {
    batches
        .iter()
        .find(|b| b.num_rows() > 0)
        .map(|b| b.slice(0, 1))
}

fn number_at(batch: &RecordBatch, column: usize) -> Option<f64> {
    (column < batch.num_columns())
        .then(|| number(batch.column(column)))
        .flatten()
}

/// The first value of a numeric (or boolean) array as f64.
fn number(array: &ArrayRef) -> Option<f64> {
    if array.is_empty() || array.is_null(0) {
        return None;
    }
    let numeric = array.data_type().is_numeric() || matches!(array.data_type(), DataType::Boolean);
    if !numeric {
        return None;
    }
    let cast = arrow::compute::cast(array, &DataType::Float64).ok()?;
    let values = cast.as_primitive::<Float64Type>();
    (!values.is_null(0)).then(|| values.value(0))
}

/// `<object>.schema`: passes when the table has exactly the declared columns, of the declared
/// type families.
fn schema_result(object: &ContractObject, drift: &[Drift]) -> RuleResult {
    RuleResult {
        rule_id: format!("{}.schema", object.name),
        column: None,
        metric: "schema".to_string(),
        observed: drift.len() as f64,
        threshold: "= 0".to_string(),
        unit: Unit::Rows,
        passed: drift.is_empty(),
        severity: Severity::Error,
        examples: Vec::new(),
        note: (!drift.is_empty()).then(|| {
            drift
                .iter()
                .map(Drift::describe)
                .collect::<Vec<_>>()
                .join("; ")
        }),
    }
}

fn list(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("`{n}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Result rows as JSON objects: numbers and booleans as JSON values, everything else as the
/// text Arrow displays.
fn rows_as_json(batches: &[RecordBatch]) -> Vec<Map<String, Value>> {
    let options = FormatOptions::default();
    let mut rows = Vec::new();
    for batch in batches {
        let schema = batch.schema();
        let formatters: Vec<Option<ArrayFormatter<'_>>> = batch
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &options).ok())
            .collect();
        for row in 0..batch.num_rows() {
            let mut object = Map::new();
            for (k, field) in schema.fields().iter().enumerate() {
                let array = batch.column(k);
                let value = if array.is_null(row) {
                    Value::Null
                } else {
                    let text = formatters[k]
                        .as_ref()
                        .map(|f| f.value(row).to_string())
                        .unwrap_or_default();
                    json_value(array.data_type(), text)
                };
                object.insert(field.name().clone(), value);
            }
            rows.push(object);
        }
    }
    rows
}

fn json_value(data_type: &DataType, text: String) -> Value {
    if matches!(data_type, DataType::Boolean) {
        return Value::Bool(text == "true");
    }
    if data_type.is_integer()
        && let Ok(i) = text.parse::<i64>()
    {
        return Value::from(i);
    }
    if data_type.is_floating()
        && let Some(n) = text
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
    {
        return Value::Number(n);
    }
    Value::String(text)
}
