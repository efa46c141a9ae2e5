//! Rules compiled to DataFusion SQL text: one row predicate per row-level rule, the single
//! aggregate query that counts them all in one scan, one duplicate query per distinct key, and
//! the example-row queries. Pure string building: no session, no IO.
//!
//! Identifiers are always double-quoted (a contract's `Air_Quality` must not be lowercased the
//! way DataFusion folds unquoted names) and literals single-quoted with quotes doubled, so no
//! contract value can change a query's structure.

use datafusion::common::TableReference;

use super::model::{Bound, BoundValue, ContractObject, Rule, RuleKind, fmt_number};

/// `"name"`, with inner quotes doubled.
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// `'text'`, with inner quotes doubled.
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A table name as registered in a session (`raw.events`, `events`), quoted part by part. It
/// is parsed the way `SessionContext::table` parses it, so both name the same table.
pub fn quote_table(table: &str) -> String {
    let reference = TableReference::parse_str(table);
    [
        reference.catalog(),
        reference.schema(),
        Some(reference.table()),
    ]
    .into_iter()
    .flatten()
    .map(quote_ident)
    .collect::<Vec<_>>()
    .join(".")
}

/// A boolean SQL expression over one row, true when the row violates the rule; `None` for
/// rules that are not decided row by row (duplicates, row count, sql, freshness). Nulls are
/// handled inside: the expression is never NULL for a row.
pub fn row_predicate(kind: &RuleKind) -> Option<String> {
    let column = |c: &str| quote_ident(c);
    let text = |c: &str| format!("CAST({} AS VARCHAR)", quote_ident(c));
    let predicate = match kind {
        RuleKind::NullValues { column: c } => format!("{} IS NULL", column(c)),
        // Blank: empty, or spaces only (what `trim` removes). Only values that start with a
        // space can be blank and not empty, so only those are trimmed: `trim` builds a new
        // string per row, which made this rule the costliest of a 10M-row scan.
        RuleKind::MissingValues { column: c, missing } if missing.is_empty() => {
            let t = text(c);
            format!(
                "({} IS NULL OR (CASE WHEN starts_with({t}, ' ') THEN trim({t}) = '' ELSE {t} = '' END))",
                column(c)
            )
        }
        RuleKind::MissingValues { column: c, missing } => {
            format!(
                "({} IS NULL OR {} IN ({}))",
                column(c),
                text(c),
                literal_list(missing)
            )
        }
        RuleKind::InvalidValues {
            column: c,
            valid_values,
            pattern,
        } => {
            let mut failures = Vec::new();
            match valid_values {
                // `validValues: []` allows nothing but null.
                Some(values) if values.is_empty() => failures.push("TRUE".to_string()),
                Some(values) => {
                    failures.push(format!("{} NOT IN ({})", text(c), literal_list(values)))
                }
                None => {}
            }
            if let Some(pattern) = pattern {
                failures.push(format!(
                    "NOT regexp_like({}, {})",
                    text(c),
                    quote_literal(pattern)
                ));
            }
            present_and_any(&column(c), &failures)
        }
        RuleKind::Range {
            column: c,
            min,
            max,
        } => {
            let mut failures = Vec::new();
            if let Some(Bound { value, inclusive }) = min {
                failures.push(format!(
                    "{} {} {}",
                    column(c),
                    if *inclusive { "<" } else { "<=" },
                    bound_literal(value)
                ));
            }
            if let Some(Bound { value, inclusive }) = max {
                failures.push(format!(
                    "{} {} {}",
                    column(c),
                    if *inclusive { ">" } else { ">=" },
                    bound_literal(value)
                ));
            }
            present_and_any(&column(c), &failures)
        }
        RuleKind::Length {
            column: c,
            min,
            max,
        } => {
            // Counting characters walks the UTF-8; the byte length is at hand. A character is
            // 1 to 4 bytes, so only values whose byte length leaves the answer open are
            // counted: more than `max` bytes may be too long, fewer than 4 * `min` too short.
            let t = text(c);
            let length = format!("character_length({t})");
            let bytes = format!("octet_length({t})");
            let mut failures = Vec::new();
            if let Some(min) = min {
                failures.push(format!(
                    "(CASE WHEN {bytes} >= {} THEN FALSE ELSE {length} < {min} END)",
                    min.saturating_mul(4)
                ));
            }
            if let Some(max) = max {
                failures.push(format!(
                    "(CASE WHEN {bytes} > {max} THEN {length} > {max} ELSE FALSE END)"
                ));
            }
            present_and_any(&column(c), &failures)
        }
        RuleKind::MultipleOf { column: c, factor } => {
            // A tolerance, because 0.3 / 0.1 is not exactly 3 in binary floating point.
            let quotient = format!("(CAST({} AS DOUBLE) / {})", column(c), fmt_number(*factor));
            format!(
                "({} IS NOT NULL AND abs({quotient} - round({quotient})) > 1e-9)",
                column(c)
            )
        }
        RuleKind::DuplicateValues { .. }
        | RuleKind::RowCount
        | RuleKind::Sql { .. }
        | RuleKind::Freshness { .. } => {
            return None;
        }
    };
    Some(predicate)
}

/// A non-null value of `column` failing any of `failures` (none: never).
fn present_and_any(column: &str, failures: &[String]) -> String {
    let any = if failures.is_empty() {
        "FALSE".to_string()
    } else {
        failures.join(" OR ")
    };
    format!("({column} IS NOT NULL AND ({any}))")
}

fn literal_list(values: &[String]) -> String {
    values
        .iter()
        .map(|v| quote_literal(v))
        .collect::<Vec<_>>()
        .join(", ")
}

fn bound_literal(value: &BoundValue) -> String {
    match value {
        BoundValue::Number(x) => fmt_number(*x),
        BoundValue::Date(d) => format!("CAST({} AS DATE)", quote_literal(d)),
        BoundValue::Timestamp(t) => format!("CAST({} AS TIMESTAMP)", quote_literal(t)),
        BoundValue::Time(t) => format!("CAST({} AS TIME)", quote_literal(t)),
    }
}

/// `(rule id, predicate)` for every blocking row-level rule of the object: a row for which a
/// predicate is true violates that rule, and can be routed to quarantine tagged with its id.
/// Only rules whose counted rows are bad are included, i.e. rules a table with none of them
/// would pass (`mustBe: 0`, `mustBeLessThan: 5`, …, not `mustBeGreaterThan: 0`). Each
/// predicate is wrapped in `coalesce(…, false)` so `NOT` of it selects exactly the other rows.
pub fn row_rule_predicates(object: &ContractObject) -> Vec<(String, String)> {
    object
        .rules
        .iter()
        .filter(|rule| rule.severity.is_blocking() && rule.op.passes(0.0))
        .filter_map(|rule| {
            row_predicate(&rule.kind).map(|p| (rule.id.clone(), format!("coalesce({p}, false)")))
        })
        .collect()
}

/// True for rows that violate any blocking row-level rule (nulls, missing, invalid values,
/// ranges, lengths); `None` when the object has no such rule.
pub fn row_failure_predicate(object: &ContractObject) -> Option<String> {
    let predicates = row_rule_predicates(object);
    if predicates.is_empty() {
        return None;
    }
    Some(
        predicates
            .into_iter()
            .map(|(_, p)| p)
            .collect::<Vec<_>>()
            .join(" OR "),
    )
}

/// What one output column of the aggregate query holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Slot {
    /// How many rows violate the rule at this index of `rules`.
    Count(usize),
    /// The newest value of the freshness rule at this index.
    Newest(usize),
}

/// The one aggregate query: `count(*)` first, then one column per slot.
pub(crate) fn aggregate_query(
    table: &str,
    rules: &[&Rule],
    indices: &[usize],
) -> (String, Vec<Slot>) {
    let mut select = vec!["count(*) AS \"n_rows\"".to_string()];
    let mut slots = Vec::new();
    for &i in indices {
        let rule = rules[i];
        if let RuleKind::NullValues { column } = &rule.kind {
            // A count of non-null values reads each batch's null count instead of testing
            // every row (and Parquet statistics can answer it alone).
            select.push(format!(
                "count(*) - count({}) AS \"r{i}\"",
                quote_ident(column)
            ));
            slots.push(Slot::Count(i));
        } else if let Some(predicate) = row_predicate(&rule.kind) {
            select.push(format!(
                "sum(CASE WHEN {predicate} THEN 1 ELSE 0 END) AS \"r{i}\""
            ));
            slots.push(Slot::Count(i));
        } else if let RuleKind::Freshness { column } = &rule.kind {
            select.push(format!("max({}) AS \"r{i}\"", quote_ident(column)));
            slots.push(Slot::Newest(i));
        }
    }
    (format!("SELECT {} FROM {table}", select.join(", ")), slots)
}

/// The duplicate count of a key and its first `sample` duplicated key values, in one GROUP BY:
/// one row per duplicated key (ordered by key, at most `sample`), each carrying the total in
/// `DUPLICATES_COLUMN`; no rows means no duplicates. The total counts rows beyond the first of
/// each distinct key; rows with a null key column are not keys (as in SQL `UNIQUE`).
pub(crate) fn duplicates_query(table: &str, columns: &[String], sample: usize) -> String {
    let keys = ident_list(columns);
    let not_null = keys_not_null(columns);
    format!(
        "SELECT {keys}, CAST(sum(\"n\" - 1) OVER () AS BIGINT) AS {total} FROM \
         (SELECT {keys}, count(*) AS \"n\" FROM {table} WHERE {not_null} GROUP BY {keys} \
         HAVING count(*) > 1) AS \"groups\" ORDER BY {keys} LIMIT {limit}",
        total = quote_ident(DUPLICATES_COLUMN),
        limit = sample.max(1),
    )
}

/// The column of `duplicates_query` that carries the total.
pub(crate) const DUPLICATES_COLUMN: &str = "__duplicates";

/// The predicate that makes a row's `columns` a key: none of them null (as in SQL `UNIQUE`).
pub(crate) fn keys_not_null(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| format!("{} IS NOT NULL", quote_ident(c)))
        .collect::<Vec<_>>()
        .join(" AND ")
}

/// `columns` quoted, comma-separated.
pub(crate) fn ident_list(columns: &[String]) -> String {
    columns
        .iter()
        .map(|c| quote_ident(c))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The select list for example rows: every column, the values of `masked` ones replaced by
/// `mask` (nulls stay null: whether a value is there is often what the rule is about).
pub(crate) fn example_columns(columns: &[String], masked: &[&str], mask: &str) -> String {
    columns
        .iter()
        .map(|c| {
            let reference = quote_ident(c);
            if masked.contains(&c.as_str()) {
                format!(
                    "CASE WHEN {reference} IS NULL THEN NULL ELSE {} END AS {}",
                    quote_literal(mask),
                    quote_ident(c)
                )
            } else {
                reference
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn row_examples_query(
    table: &str,
    select: &str,
    predicate: &str,
    limit: usize,
) -> String {
    format!("SELECT {select} FROM {table} WHERE {predicate} LIMIT {limit}")
}

/// The rows of the duplicated keys `duplicates_query` sampled, ordered by key and then by every
/// column (`all`) so ties come back in the same order on every run. `keys` holds each key's
/// values as SQL literals, in `columns` order. A filter on known values rather than
/// a join against a second GROUP BY: the expensive pass is not repeated for the examples.
pub(crate) fn duplicate_examples_query(
    table: &str,
    select: &str,
    columns: &[String],
    all: &[String],
    keys: &[Vec<String>],
    limit: usize,
) -> String {
    let predicate = if columns.len() == 1 {
        let values: Vec<&str> = keys.iter().map(|k| k[0].as_str()).collect();
        format!("{} IN ({})", quote_ident(&columns[0]), values.join(", "))
    } else {
        keys.iter()
            .map(|key| {
                let parts: Vec<String> = columns
                    .iter()
                    .zip(key)
                    .map(|(c, v)| format!("{} = {v}", quote_ident(c)))
                    .collect();
                format!("({})", parts.join(" AND "))
            })
            .collect::<Vec<_>>()
            .join(" OR ")
    };
    format!(
        "SELECT {select} FROM {table} WHERE {predicate} ORDER BY {}, {} LIMIT {limit}",
        ident_list(columns),
        ident_list(all)
    )
}
