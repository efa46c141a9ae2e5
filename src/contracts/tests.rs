//! Tests of contract loading and checking: fixtures under `tests/fixtures/odcs/` (compiled in,
//! so nothing outside the crate is read at run time), small in-memory tables with planted
//! violations, and diagnostics with their positions.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{Array, AsArray, TimestampMicrosecondArray};
use arrow::array::{
    ArrayRef, Date32Array, Float64Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use arrow::datatypes::{DataType, Field, Schema};
use chrono::NaiveDate;
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use super::*;
use crate::diag::Diagnostic;

const ORDERS: &str = include_str!("../../tests/fixtures/odcs/orders.odcs.yaml");
const EVENTS: &str = include_str!("../../tests/fixtures/odcs/events.odcs.yaml");

/// The upstream ODCS examples (Apache-2.0, see tests/fixtures/odcs/upstream/README.md).
const UPSTREAM: [(&str, &str); 6] = [
    (
        "column-accuracy.odcs.yaml",
        include_str!("../../tests/fixtures/odcs/upstream/column-accuracy.odcs.yaml"),
    ),
    (
        "column-completeness.odcs.yaml",
        include_str!("../../tests/fixtures/odcs/upstream/column-completeness.odcs.yaml"),
    ),
    (
        "column-custom.odcs.yaml",
        include_str!("../../tests/fixtures/odcs/upstream/column-custom.odcs.yaml"),
    ),
    (
        "column-validity.odcs.yaml",
        include_str!("../../tests/fixtures/odcs/upstream/column-validity.odcs.yaml"),
    ),
    (
        "database-table-sla.odcs.yaml",
        include_str!("../../tests/fixtures/odcs/upstream/database-table-sla.odcs.yaml"),
    ),
    (
        "full-example.odcs.yaml",
        include_str!("../../tests/fixtures/odcs/upstream/full-example.odcs.yaml"),
    ),
];

fn load(name: &str, text: &str) -> Contract {
    parse_contract(Path::new(name), text)
        .unwrap_or_else(|diags| panic!("{name} does not load:\n{}", render(&diags)))
}

fn errors(text: &str) -> Vec<Diagnostic> {
    match parse_contract(Path::new("contracts/bad.yaml"), text) {
        Ok(_) => panic!("expected diagnostics, the contract loaded"),
        Err(diags) => diags,
    }
}

fn render(diags: &[Diagnostic]) -> String {
    diags
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>()
        .join("\n")
}

/// The diagnostic whose message contains `needle`.
fn find<'a>(diags: &'a [Diagnostic], needle: &str) -> &'a Diagnostic {
    diags
        .iter()
        .find(|d| d.message.contains(needle))
        .unwrap_or_else(|| panic!("no diagnostic containing {needle:?} in:\n{}", render(diags)))
}

fn micros(date: (i32, u32, u32), hour: u32) -> i64 {
    NaiveDate::from_ymd_opt(date.0, date.1, date.2)
        .and_then(|d| d.and_hms_opt(hour, 0, 0))
        .map(|t| t.and_utc().timestamp_micros())
        .unwrap_or_default()
}

fn ds(text: &str) -> NaiveDate {
    NaiveDate::parse_from_str(text, "%Y-%m-%d").unwrap_or_default()
}

/// 10 orders with planted violations; see the comments in tests/fixtures/odcs/orders.odcs.yaml.
fn orders_batch() -> RecordBatch {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "order_id",
            Arc::new(Int64Array::from(vec![
                Some(1),
                Some(2),
                Some(3),
                Some(4),
                Some(5),
                Some(5),
                Some(7),
                Some(8),
                Some(9),
                None,
            ])),
        ),
        (
            "customer_email",
            Arc::new(StringArray::from(vec![
                Some("a@x.com"),
                None,
                Some("  "),
                Some("d@x.com"),
                Some("e@x.com"),
                Some("f@x.com"),
                Some("g@x.com"),
                Some("h@x.com"),
                Some(""),
                Some("j@x.com"),
            ])),
        ),
        (
            "status",
            Arc::new(StringArray::from(vec![
                Some("new"),
                Some("shipped"),
                Some("shipped"),
                Some("lost"),
                Some("returned"),
                Some("new"),
                None,
                Some("n/a"),
                Some("new"),
                Some("shipped"),
            ])),
        ),
        (
            "country",
            Arc::new(StringArray::from(vec![
                "DE", "FR", "US", "usa", "GB", "DE", "DE", "FR", "NL", "D1",
            ])),
        ),
        (
            "amount",
            Arc::new(Float64Array::from(vec![
                10.0, 20.0, 30.0, -5.0, 2000.0, 15.0, 12.5, 8.0, 99.0, 50.0,
            ])),
        ),
        (
            "quantity",
            Arc::new(Int32Array::from(vec![1, 2, 1, 3, 1, 7, 2, 0, 4, 2])),
        ),
        (
            "created_at",
            Arc::new(TimestampMicrosecondArray::from(vec![
                micros((2025, 4, 30), 8),
                micros((2025, 4, 30), 9),
                micros((2025, 4, 30), 10),
                micros((2025, 4, 30), 11),
                micros((2025, 5, 1), 8),
                micros((2025, 5, 1), 9),
                micros((2025, 5, 1), 18),
                micros((2025, 5, 1), 10),
                micros((2025, 5, 1), 11),
                micros((2025, 5, 1), 12),
            ])),
        ),
    ];
    batch(columns)
}

fn batch(columns: Vec<(&str, ArrayRef)>) -> RecordBatch {
    let fields: Vec<Field> = columns
        .iter()
        .map(|(name, a)| Field::new(*name, a.data_type().clone(), true))
        .collect();
    let arrays: Vec<ArrayRef> = columns.into_iter().map(|(_, a)| a).collect();
    RecordBatch::try_new(Arc::new(Schema::new(fields)), arrays).expect("test batch")
}

fn session(table: &str, batch: RecordBatch) -> SessionContext {
    let ctx = SessionContext::new();
    let provider = MemTable::try_new(batch.schema(), vec![vec![batch]]).expect("mem table");
    ctx.register_table(table, Arc::new(provider))
        .expect("register");
    ctx
}

async fn check_orders(ctx: &SessionContext, table: &str, ds_text: &str) -> CheckReport {
    let contract = load("contracts/orders.yaml", ORDERS);
    let object = contract.object("orders").expect("orders object");
    check(
        ctx,
        table,
        object,
        &contract,
        &CheckOptions::new(ds(ds_text)),
    )
    .await
    .expect("check runs")
}

fn result<'a>(report: &'a CheckReport, id: &str) -> &'a RuleResult {
    report.result(id).unwrap_or_else(|| {
        let ids: Vec<&str> = report.results.iter().map(|r| r.rule_id.as_str()).collect();
        panic!("no result `{id}` in {ids:?}")
    })
}

fn count_queries(report: &CheckReport, purpose: QueryPurpose) -> usize {
    report
        .queries
        .iter()
        .filter(|q| q.purpose == purpose)
        .count()
}

// ---- loading ----------------------------------------------------------------------------

#[test]
fn orders_fixture_loads_with_stable_rule_ids() {
    let contract = load("contracts/orders.yaml", ORDERS);
    assert_eq!(contract.id, "orders-contract");
    assert_eq!(contract.version, "1.2.0");
    assert_eq!(contract.api_version, "v3.1.0");
    assert_eq!(contract.owner(), Some("ada"));
    assert_eq!(
        contract
            .description
            .as_ref()
            .and_then(|d| d.purpose.as_deref()),
        Some("Orders as received from the shop, before any cleaning.")
    );
    assert_eq!(contract.text_sha256.len(), 64);
    let object = contract.object("orders").expect("orders");
    let ids: Vec<&str> = object.rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(
        ids,
        [
            "orders.order_id.required",
            "orders.customer_email.unique",
            "orders.customer_email.missingValues",
            "orders.customer_email.nullValues",
            "orders.customer_email.duplicateValues",
            "orders.status.length",
            "status_valid",
            "orders.status.invalidValues",
            "orders.status.missingValues",
            "orders.country.pattern",
            "orders.country.invalidValues",
            "orders.amount.range",
            "orders.amount.nullValues",
            "orders.amount.sql",
            "orders.quantity.range",
            "orders.quantity.nullValues",
            "orders.rowCount",
            "orders.rowCount.2",
            "orders.rowCount.3",
            "orders.duplicateValues",
            "orders.sql",
            "orders.primaryKey",
            "orders.created_at.freshness",
        ]
    );
    let email = object.property("customer_email").expect("email");
    assert!(email.is_pii());
    assert!(!object.property("status").expect("status").is_pii());
    let rule = |id: &str| object.rules.iter().find(|r| r.id == id).expect("rule");
    assert_eq!(
        rule("orders.customer_email.missingValues").severity,
        Severity::Warning
    );
    assert_eq!(
        rule("orders.customer_email.missingValues").unit,
        Unit::Percent
    );
    assert_eq!(
        rule("orders.country.invalidValues").severity,
        Severity::Info
    );
    assert_eq!(
        rule("orders.rowCount.2").op,
        Comparison::Between(100.0, 200.0)
    );
    assert_eq!(rule("orders.created_at.freshness").op, Comparison::Le(1.0));
    assert_eq!(rule("orders.created_at.freshness").unit, Unit::Days);
    assert_eq!(
        rule("orders.primaryKey").kind,
        RuleKind::DuplicateValues {
            columns: vec!["order_id".into()]
        }
    );
    assert_eq!(
        rule("orders.duplicateValues").kind,
        RuleKind::DuplicateValues {
            columns: vec!["status".into(), "country".into()]
        }
    );
    // `{property}` is resolved at load time, `{object}` at check time.
    assert_eq!(
        rule("orders.amount.sql").kind,
        RuleKind::Sql {
            query: "SELECT max(\"amount\") FROM {object}".into()
        }
    );
    // Positions point at the rule in the file.
    assert_eq!(rule("status_valid").pos.line, 52);
}

#[test]
fn events_fixture_reads_v302_forms() {
    let contract = load("contracts/events.yaml", EVENTS);
    assert_eq!(contract.api_version, "v3.0.2");
    assert_eq!(
        contract.owner(),
        Some("ada"),
        "role matching is case-insensitive"
    );
    let object = contract.object("events").expect("events");
    let ids: Vec<&str> = object.rules.iter().map(|r| r.id.as_str()).collect();
    // The `type: text` rule is prose: nothing to run.
    assert_eq!(
        ids,
        [
            "events.event_id.required",
            "events.event_id.length",
            "events.event_date.range",
            "events.occurred_at.range",
            "events.price_cents.multipleOf",
            "events.occurred_at.freshness",
        ]
    );
    let freshness = &object.rules[5];
    assert_eq!(
        (freshness.op, freshness.unit),
        (Comparison::Le(36.0), Unit::Hours)
    );
    assert!(
        object.property("user_email").expect("email").is_pii(),
        "a `pii` tag marks PII"
    );
}

/// Every upstream example either loads or fails with a diagnostic that says what nightjar
/// does not support; none panics.
#[test]
fn upstream_examples_load_or_explain() {
    let mut outcomes = BTreeMap::new();
    for (name, text) in UPSTREAM {
        let outcome = parse_contract(Path::new(name), text);
        outcomes.insert(name, outcome);
    }

    let accuracy = outcomes["column-accuracy.odcs.yaml"]
        .as_ref()
        .expect("accuracy loads");
    let rules = &accuracy.objects[0].rules;
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].id, "Air_Quality.DataValue.sql");
    assert_eq!(rules[0].op, Comparison::Eq(0.0));

    let completeness = outcomes["column-completeness.odcs.yaml"]
        .as_ref()
        .expect("completeness loads");
    assert_eq!(completeness.api_version, "v3.0.2");
    let ids: Vec<&str> = completeness.objects[0]
        .rules
        .iter()
        .map(|r| r.id.as_str())
        .collect();
    assert_eq!(
        ids,
        ["Air_Quality.UniqueID.nullValues", "Air_Quality.primaryKey"]
    );

    let validity = outcomes["column-validity.odcs.yaml"]
        .as_ref()
        .expect("validity loads");
    let rule = &validity.objects[0].rules[0];
    assert_eq!(rule.id, "Air_Quality.air_quality_status.invalidValues");
    assert_eq!((rule.op, rule.unit), (Comparison::Le(5.0), Unit::Percent));
    assert_eq!(
        rule.kind,
        RuleKind::InvalidValues {
            column: "air_quality_status".into(),
            valid_values: Some(vec!["".into(), "n/a".into()]),
            pattern: None
        }
    );

    let custom = outcomes["column-custom.odcs.yaml"]
        .as_ref()
        .expect_err("custom rules are refused");
    assert_eq!(custom.len(), 2, "{}", render(custom));
    let d = find(
        custom,
        "`custom` quality rules (engine `soda`) are not run by nightjar",
    );
    assert_eq!((d.line, d.column), (22, 15));
    assert!(d.hint.as_deref().unwrap_or_default().contains("type: sql"));

    // Both SLA examples name `tab1`, an object neither file declares.
    let sla = outcomes["database-table-sla.odcs.yaml"]
        .as_ref()
        .expect_err("sla example names no object");
    let d = find(sla, "unknown object `tab1` in element `tab1.txn_ref_dt`");
    assert_eq!((d.line, d.column), (14, 14));
    let full = outcomes["full-example.odcs.yaml"]
        .as_ref()
        .expect_err("full example names `tab1`");
    assert_eq!(full.len(), 1, "{}", render(full));
    let d = find(full, "unknown object `tab1`");
    assert_eq!(
        d.hint.as_deref(),
        Some("expected one of `tbl`, `receivers`")
    );
}

#[test]
fn unknown_metric_operator_column_and_key_point_at_the_source() {
    let text = "\
apiVersion: v3.1.0
kind: DataContract
id: bad
version: 1.0.0
status: draft
schema:
  - name: orders
    properties:
      - name: order_id
        requried: true
        quality:
          - metric: nullValue
            mustBe: 0
          - metric: nullValues
            mustBeLessThen: 3
      - name: order_date
        logicalType: date
      - name: created_at
        logicalType: timestamp
    quality:
      - metric: duplicateValues
        arguments:
          properties: [order_id, ordr_date]
        mustBe: 0
slaProperties:
  - property: latency
    value: 1
    unit: d
    element: orders.created_a
";
    let diags = errors(text);
    assert_eq!(diags.len(), 5, "{}", render(&diags));

    let d = find(&diags, "unknown key `requried` in a property");
    assert_eq!(
        (d.line, d.column, d.hint.as_deref()),
        (10, 9, Some("did you mean `required`?"))
    );
    let d = find(&diags, "unknown metric `nullValue`");
    assert_eq!(
        (d.line, d.column, d.hint.as_deref()),
        (12, 21, Some("did you mean `nullValues`?"))
    );
    let d = find(&diags, "unknown operator `mustBeLessThen`");
    assert_eq!(
        (d.line, d.column, d.hint.as_deref()),
        (15, 13, Some("did you mean `mustBeLessThan`?"))
    );
    let d = find(&diags, "unknown property `ordr_date` in object `orders`");
    assert_eq!(
        (d.line, d.column, d.hint.as_deref()),
        (23, 34, Some("did you mean `order_date`?"))
    );
    let d = find(&diags, "unknown property `created_a` in object `orders`");
    assert_eq!(
        (d.line, d.column, d.hint.as_deref()),
        (29, 14, Some("did you mean `created_at`?"))
    );

    // Rendered like every nightjar diagnostic: location, source line, caret, hint.
    let shown = find(&diags, "unknown metric").to_string();
    assert_eq!(
        shown,
        "error: unknown metric `nullValue`\n  --> contracts/bad.yaml:12:21\n   |\n12 |           - metric: nullValue\n   |                     ^^^^^^^^^\n\nhint: did you mean `nullValues`?\n"
    );
}

#[test]
fn rule_shape_errors_are_reported() {
    let text = "\
apiVersion: v3.1.0
kind: DataContract
id: bad
version: 1.0.0
status: draft
schema:
  - name: t
    properties:
      - name: a
        logicalType: integer
        logicalTypeOptions:
          minimun: 0
        quality:
          - metric: rowCount
            mustBe: 1
          - metric: nullValues
            mustBeGreaterThan: 0
            mustBeLessThan: 5
          - metric: invalidValues
            mustBe: 0
          - metric: nullValues
            mustBeBetween: [5, 1]
          - metric: nullValues
            mustBe: 0
            unit: rowz
            severity: fatal
          - id: x
            metric: nullValues
            mustBe: 0
          - id: x
            type: sql
            query: SELEC 1
            mustBe: 0
    quality:
      - metric: nullValues
        mustBe: 0
      - metric: duplicateValues
        mustBe: 0
";
    let diags = errors(text);
    let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
    for expected in [
        "unknown key `minimun` in `logicalTypeOptions` of a `integer` property",
        "`rowCount` counts the rows of an object",
        "a quality rule takes exactly one operator",
        "`invalidValues` needs `arguments` with `validValues` or `pattern`",
        "`mustBeBetween` needs the smaller number first and two different numbers",
        "unknown `unit` `rowz`",
        "unknown `severity` `fatal`",
        "`query` does not parse",
        "`nullValues` counts the values of one property",
        "a schema-level `duplicateValues` needs `arguments.properties`",
    ] {
        assert!(
            messages.iter().any(|m| m.contains(expected)),
            "missing {expected:?} in:\n{}",
            render(&diags)
        );
    }
    assert_eq!(
        find(&diags, "unknown key `minimun`").hint.as_deref(),
        Some("did you mean `minimum`?")
    );
    assert_eq!(
        find(&diags, "unknown `unit`").hint.as_deref(),
        Some("did you mean `rows`?")
    );
    // Both `x` rules are otherwise fine until the second one's query: it fails to parse, so it
    // never reaches the id check; the id clash is caught when both rules are valid.
    let clash = "\
apiVersion: v3.1.0
kind: DataContract
id: bad
version: 1.0.0
status: draft
schema:
  - name: t
    properties:
      - name: a
        quality:
          - {id: x, metric: nullValues, mustBe: 0}
          - {id: x, metric: nullValues, mustBe: 1}
";
    let diags = errors(clash);
    assert_eq!(diags.len(), 1, "{}", render(&diags));
    assert_eq!(
        (diags[0].message.as_str(), diags[0].line),
        ("rule id `x` is used twice (first at line 11)", 12)
    );
}

#[test]
fn contract_header_errors_are_reported() {
    let diags = errors(
        "kind: DataContracts\napiVersion: v2.2.0\nid: x\nstatus: draft\ndescription: just a string\nowner: me\n",
    );
    let messages: Vec<&str> = diags.iter().map(|d| d.message.as_str()).collect();
    assert!(
        messages.contains(&"`kind` must be `DataContract`"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"unsupported ODCS `apiVersion` `v2.2.0`"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"a contract needs `version`"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"`description` must be a mapping"),
        "{messages:?}"
    );
    assert!(
        messages.contains(&"unknown key `owner` in a contract"),
        "{messages:?}"
    );
    let d = find(&diags, "a contract needs `version`");
    assert_eq!((d.line, d.column), (1, 1));
}

#[test]
fn comparisons_cover_every_operator() {
    let cases = [
        (
            Comparison::Eq(0.0),
            Unit::Rows,
            "= 0",
            [(0.0, true), (1.0, false)],
        ),
        (
            Comparison::Ne(0.0),
            Unit::Rows,
            "!= 0",
            [(1.0, true), (0.0, false)],
        ),
        (
            Comparison::Gt(5.0),
            Unit::Rows,
            "> 5",
            [(6.0, true), (5.0, false)],
        ),
        (
            Comparison::Ge(5.0),
            Unit::Rows,
            ">= 5",
            [(5.0, true), (4.0, false)],
        ),
        (
            Comparison::Lt(1.0),
            Unit::Percent,
            "< 1%",
            [(0.5, true), (1.0, false)],
        ),
        (
            Comparison::Le(1.0),
            Unit::Percent,
            "<= 1%",
            [(1.0, true), (1.5, false)],
        ),
        (
            Comparison::Between(100.0, 200.0),
            Unit::Rows,
            "between 100 and 200",
            [(100.0, true), (201.0, false)],
        ),
        (
            Comparison::NotBetween(1.0, 2.5),
            Unit::Rows,
            "not between 1 and 2.5",
            [(3.0, true), (2.5, false)],
        ),
    ];
    for (op, unit, text, observations) in cases {
        assert_eq!(op.describe(unit), text);
        for (observed, passes) in observations {
            assert_eq!(op.passes(observed), passes, "{text} with {observed}");
        }
        assert!(!op.passes(f64::NAN), "nothing measured never passes");
    }
    assert_eq!(Comparison::Le(4.0).describe(Unit::Days), "<= 4 days");
}

#[test]
fn table_names_and_values_are_quoted() {
    assert_eq!(quote_table("raw.events"), "\"raw\".\"events\"");
    // Unquoted names fold to lowercase exactly as `SessionContext::register_table` folds them.
    assert_eq!(quote_table("Air_Quality"), "\"air_quality\"");
    assert_eq!(quote_table("\"Air_Quality\""), "\"Air_Quality\"");
    assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    assert_eq!(quote_literal("it's"), "'it''s'");
}

// ---- checking ---------------------------------------------------------------------------

/// The blank and length predicates skip work by byte length and first character; row by
/// row, they must still say exactly what the definitions say (spaces trimmed; characters,
/// not bytes, counted), for ASCII and multi-byte values alike.
#[tokio::test]
async fn blank_and_length_predicates_match_their_definitions() {
    let values: Vec<Option<&str>> = vec![
        None,
        Some(""),
        Some(" "),
        Some("   "),
        Some(" a"),
        Some("a "),
        Some("\t"),
        Some("ab"),
        Some("abc"),
        Some("abcd"),
        Some("abcde"),
        Some("éé"),
        Some("ééé"),
        Some("éééé"),
        Some("ééééé"),
        Some("😀😀"),
        Some("😀😀😀"),
        Some("😀😀😀😀😀"),
        Some(" 😀 "),
    ];
    let ctx = session(
        "t",
        batch(vec![("s", Arc::new(StringArray::from(values.clone())))]),
    );
    let blank = row_predicate(&RuleKind::MissingValues {
        column: "s".into(),
        missing: vec![],
    })
    .expect("row rule");
    let length = row_predicate(&RuleKind::Length {
        column: "s".into(),
        min: Some(3),
        max: Some(4),
    })
    .expect("row rule");
    let sql = format!("SELECT {blank} AS blank, {length} AS bad_length FROM \"t\"");
    let out = ctx.sql(&sql).await.unwrap().collect().await.unwrap();
    let got: Vec<(bool, bool)> = out
        .iter()
        .flat_map(|b| {
            let blank = b.column(0).as_boolean().clone();
            let length = b.column(1).as_boolean().clone();
            assert_eq!((blank.null_count(), length.null_count()), (0, 0));
            (0..b.num_rows()).map(move |i| (blank.value(i), length.value(i)))
        })
        .collect();
    let want: Vec<(bool, bool)> = values
        .iter()
        .map(|v| match v {
            None => (true, false),
            Some(v) => {
                let chars = v.chars().count();
                (v.trim_matches(' ').is_empty(), !(3..=4).contains(&chars))
            }
        })
        .collect();
    assert_eq!(got, want);
}

#[tokio::test]
async fn orders_check_counts_every_rule_in_one_scan() {
    let ctx = session("orders", orders_batch());
    let report = check_orders(&ctx, "orders", "2025-05-01").await;
    assert_eq!(report.rows, 10);
    assert_eq!(report.contract_id, "orders-contract");
    assert_eq!(report.contract_version, "1.2.0");
    assert!(report.drift.is_empty(), "{:?}", report.drift);

    // (rule id, observed, passed)
    let expected: [(&str, f64, bool); 24] = [
        ("orders.schema", 0.0, true),
        ("orders.order_id.required", 1.0, false),
        ("orders.customer_email.unique", 0.0, true),
        ("orders.customer_email.missingValues", 30.0, false),
        ("orders.customer_email.nullValues", 1.0, false),
        ("orders.customer_email.duplicateValues", 0.0, true),
        ("orders.status.length", 0.0, true),
        ("status_valid", 2.0, false),
        ("orders.status.invalidValues", 20.0, true),
        ("orders.status.missingValues", 2.0, true),
        ("orders.country.pattern", 2.0, false),
        ("orders.country.invalidValues", 2.0, true),
        ("orders.amount.range", 2.0, false),
        ("orders.amount.nullValues", 0.0, true),
        ("orders.amount.sql", 2000.0, true),
        ("orders.quantity.range", 2.0, false),
        ("orders.quantity.nullValues", 0.0, true),
        ("orders.rowCount", 10.0, true),
        ("orders.rowCount.2", 10.0, false),
        ("orders.rowCount.3", 10.0, true),
        ("orders.duplicateValues", 10.0, true),
        ("orders.sql", 1.0, true),
        ("orders.primaryKey", 1.0, false),
        ("orders.created_at.freshness", 0.25, true),
    ];
    let actual: Vec<(&str, f64, bool)> = report
        .results
        .iter()
        .map(|r| (r.rule_id.as_str(), r.observed, r.passed))
        .collect();
    assert_eq!(actual, expected);

    // One aggregate scan for 23 rules, one query per distinct duplicate key (order_id,
    // customer_email, status+country), one per sql rule, and examples for failed rules only.
    assert_eq!(count_queries(&report, QueryPurpose::Aggregate), 1);
    assert_eq!(count_queries(&report, QueryPurpose::Duplicates), 3);
    assert_eq!(count_queries(&report, QueryPurpose::Sql), 2);
    assert_eq!(
        count_queries(&report, QueryPurpose::Examples),
        8,
        "rowCount has no example rows"
    );
    assert_eq!(report.queries.len(), 14);

    let blocking: Vec<&str> = report
        .blocking_failures()
        .iter()
        .map(|r| r.rule_id.as_str())
        .collect();
    assert_eq!(
        blocking,
        [
            "orders.order_id.required",
            "status_valid",
            "orders.country.pattern",
            "orders.amount.range",
            "orders.quantity.range",
            "orders.primaryKey",
        ]
    );
    let warnings: Vec<&str> = report
        .warnings()
        .iter()
        .map(|r| r.rule_id.as_str())
        .collect();
    assert_eq!(
        warnings,
        [
            "orders.customer_email.missingValues",
            "orders.customer_email.nullValues",
            "orders.rowCount.2"
        ]
    );

    let thresholds: Vec<(&str, &str)> = [
        "orders.customer_email.missingValues",
        "orders.rowCount.2",
        "orders.customer_email.duplicateValues",
        "orders.created_at.freshness",
        "status_valid",
    ]
    .iter()
    .map(|id| (*id, result(&report, id).threshold.as_str()))
    .collect();
    assert_eq!(
        thresholds,
        [
            ("orders.customer_email.missingValues", "<= 20%"),
            ("orders.rowCount.2", "between 100 and 200"),
            (
                "orders.customer_email.duplicateValues",
                "not between 1 and 100"
            ),
            ("orders.created_at.freshness", "<= 1 days"),
            ("status_valid", "= 0"),
        ]
    );

    // Example rows: the failing ones, PII masked.
    let required = result(&report, "orders.order_id.required");
    assert_eq!(required.examples.len(), 1);
    let row = &required.examples[0];
    assert_eq!(row["order_id"], serde_json::Value::Null);
    assert_eq!(row["customer_email"], serde_json::json!(MASK));
    assert_eq!(row["status"], serde_json::json!("shipped"));
    assert_eq!(row["amount"], serde_json::json!(50.0));
    let invalid: Vec<&serde_json::Value> = result(&report, "status_valid")
        .examples
        .iter()
        .map(|r| &r["status"])
        .collect();
    assert_eq!(
        invalid,
        [&serde_json::json!("lost"), &serde_json::json!("n/a")]
    );
    let duplicates: Vec<&serde_json::Value> = result(&report, "orders.primaryKey")
        .examples
        .iter()
        .map(|r| &r["order_id"])
        .collect();
    assert_eq!(duplicates, [&serde_json::json!(5), &serde_json::json!(5)]);
    // Masking keeps nulls: whether a value is there is what `missingValues` is about.
    let emails: Vec<&serde_json::Value> = result(&report, "orders.customer_email.missingValues")
        .examples
        .iter()
        .map(|r| &r["customer_email"])
        .collect();
    assert_eq!(
        emails,
        [
            &serde_json::Value::Null,
            &serde_json::json!(MASK),
            &serde_json::json!(MASK)
        ]
    );
    assert!(result(&report, "orders.rowCount.2").examples.is_empty());

    // The run state stores the report as JSON.
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(json["results"][1]["rule_id"], "orders.order_id.required");
    assert_eq!(json["results"][1]["severity"], "error");
    assert_eq!(json["results"][3]["unit"], "percent");
    assert_eq!(json["ds"], "2025-05-01");
}

#[tokio::test]
async fn stale_data_fails_freshness() {
    let ctx = session("orders", orders_batch());
    let report = check_orders(&ctx, "orders", "2025-05-05").await;
    let freshness = result(&report, "orders.created_at.freshness");
    // Newest row 2025-05-01 18:00; the end of ds 2025-05-05 is 2025-05-06 00:00.
    assert_eq!((freshness.observed, freshness.passed), (4.25, false));
    assert!(
        report
            .blocking_failures()
            .iter()
            .any(|r| r.rule_id == "orders.created_at.freshness")
    );
}

#[tokio::test]
async fn drift_reports_missing_added_and_retyped_columns() {
    let full = orders_batch();
    let column = |name: &str| full.column_by_name(name).expect("column").clone();
    // `quantity` dropped, `amount` now text, `order_id` Int32 (still an integer), `coupon` added.
    let order_id: ArrayRef =
        arrow::compute::cast(&column("order_id"), &DataType::Int32).expect("cast");
    let amount: ArrayRef = arrow::compute::cast(&column("amount"), &DataType::Utf8).expect("cast");
    let drifted = batch(vec![
        ("order_id", order_id),
        ("customer_email", column("customer_email")),
        ("status", column("status")),
        ("country", column("country")),
        ("amount", amount),
        ("created_at", column("created_at")),
        (
            "coupon",
            Arc::new(StringArray::from(vec![Some("SPRING"); 10])),
        ),
    ]);
    let contract = load("contracts/orders.yaml", ORDERS);
    let object = contract.object("orders").expect("orders");
    assert_eq!(
        expected_schema_drift(object, drifted.schema().as_ref()),
        [
            Drift::Retyped {
                column: "amount".into(),
                expected_type: "number (double)".into(),
                actual_type: "Utf8".into()
            },
            Drift::Missing {
                column: "quantity".into(),
                expected_type: Some("integer".into())
            },
            Drift::Added {
                column: "coupon".into(),
                actual_type: "Utf8".into()
            },
        ]
    );

    let ctx = session("orders", drifted);
    let report = check_orders(&ctx, "orders", "2025-05-01").await;
    let schema = result(&report, "orders.schema");
    assert!(!schema.passed);
    assert_eq!(schema.observed, 3.0);
    assert_eq!(
        schema.note.as_deref(),
        Some(
            "retyped `amount` (expected number (double), found Utf8); missing `quantity`; added `coupon` (Utf8)"
        )
    );
    assert!(
        report
            .blocking_failures()
            .iter()
            .any(|r| r.rule_id == "orders.schema")
    );
    let quantity = result(&report, "orders.quantity.range");
    assert!(!quantity.passed && quantity.observed.is_nan());
    assert_eq!(
        quantity.note.as_deref(),
        Some("not checked: the table has no column `quantity`")
    );
    let range = result(&report, "orders.amount.range");
    assert!(!range.passed && range.observed.is_nan());
    assert_eq!(
        range.note.as_deref(),
        Some("not checked: column `amount` is `Utf8`, not the declared type")
    );
    // The rest still ran, the null check on the retyped column too.
    assert_eq!(result(&report, "status_valid").observed, 2.0);
    assert_eq!(result(&report, "orders.amount.nullValues").observed, 0.0);
    assert!(result(&report, "orders.amount.nullValues").passed);
    let sql = result(&report, "orders.sql");
    assert!(!sql.passed);
    assert!(
        sql.note
            .as_deref()
            .unwrap_or_default()
            .starts_with("query does not run: "),
        "{:?}",
        sql.note
    );
    let json = serde_json::to_value(&report).expect("serializes");
    assert_eq!(
        json["drift"][1],
        serde_json::json!({"change": "missing", "column": "quantity", "expected_type": "integer"})
    );
}

#[tokio::test]
async fn schema_qualified_tables_are_found() {
    let ctx = SessionContext::new();
    let catalog = ctx.catalog("datafusion").expect("default catalog");
    catalog
        .register_schema("raw", Arc::new(MemorySchemaProvider::new()))
        .expect("schema");
    let data = orders_batch();
    let provider = MemTable::try_new(data.schema(), vec![vec![data]]).expect("mem table");
    ctx.register_table("raw.orders", Arc::new(provider))
        .expect("register");
    let report = check_orders(&ctx, "raw.orders", "2025-05-01").await;
    assert_eq!(report.rows, 10);
    assert_eq!(report.table, "raw.orders");
    assert!(
        report.queries[0].sql.ends_with("FROM \"raw\".\"orders\""),
        "{}",
        report.queries[0].sql
    );
    assert_eq!(result(&report, "orders.sql").observed, 1.0);
}

#[tokio::test]
async fn row_predicates_route_failing_rows_to_quarantine() {
    let contract = load("contracts/orders.yaml", ORDERS);
    let object = contract.object("orders").expect("orders");
    let ids: Vec<String> = row_rule_predicates(object)
        .into_iter()
        .map(|(id, _)| id)
        .collect();
    // Blocking row-level rules only: warnings, info, duplicates, counts and sql are not here.
    assert_eq!(
        ids,
        [
            "orders.order_id.required",
            "orders.status.length",
            "status_valid",
            "orders.status.invalidValues",
            "orders.status.missingValues",
            "orders.country.pattern",
            "orders.amount.range",
            "orders.amount.nullValues",
            "orders.quantity.range",
            "orders.quantity.nullValues",
        ]
    );
    let predicate = row_failure_predicate(object).expect("a predicate");
    let ctx = session("orders", orders_batch());
    let failing = order_ids_where(&ctx, &predicate).await;
    let passing = order_ids_where(&ctx, &format!("NOT ({predicate})")).await;
    // Row 10 (null id), 4 (`lost`, -5), 5 (2000), the second 5 (quantity 7), 7 (null status
    // is missing), 8 (`n/a`, quantity 0).
    assert_eq!(failing, [None, Some(4), Some(5), Some(5), Some(7), Some(8)]);
    assert_eq!(
        passing,
        [Some(1), Some(2), Some(3), Some(9)],
        "every row is routed exactly once"
    );
    // Per-rule predicates tag the quarantined rows.
    let status_valid = row_rule_predicates(object)
        .into_iter()
        .find(|(id, _)| id == "status_valid")
        .expect("rule")
        .1;
    assert_eq!(
        order_ids_where(&ctx, &status_valid).await,
        [Some(4), Some(8)]
    );
}

/// `order_id` of the rows matching `condition`, sorted (nulls first).
async fn order_ids_where(ctx: &SessionContext, condition: &str) -> Vec<Option<i64>> {
    let sql = format!("SELECT order_id FROM orders WHERE {condition}");
    let batches = ctx
        .sql(&sql)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    let mut ids = Vec::new();
    for b in &batches {
        let column = b
            .column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64");
        ids.extend((0..b.num_rows()).map(|i| column.is_valid(i).then(|| column.value(i))));
    }
    ids.sort();
    ids
}

#[tokio::test]
async fn events_check_dates_timestamps_lengths_and_multiples() {
    let date = |y, m, d| {
        NaiveDate::from_ymd_opt(y, m, d)
            .map(|d| (d - NaiveDate::default()).num_days() as i32)
            .unwrap_or_default()
    };
    let events = batch(vec![
        (
            "event_id",
            Arc::new(StringArray::from(vec![
                Some("evt00001"),
                Some("evt00002"),
                Some("evt3"),
                None,
            ])),
        ),
        (
            "event_date",
            Arc::new(Date32Array::from(vec![
                date(2025, 3, 1),
                date(2024, 12, 31),
                date(2026, 1, 1),
                date(2025, 6, 30),
            ])),
        ),
        (
            "occurred_at",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    micros((2025, 3, 1), 10),
                    micros((2024, 12, 31), 23),
                    micros((2025, 6, 30), 12),
                    micros((2025, 6, 30), 20),
                ])
                .with_timezone("UTC"),
            ),
        ),
        (
            "price_cents",
            Arc::new(Int64Array::from(vec![
                Some(100),
                Some(105),
                Some(101),
                None,
            ])),
        ),
        (
            "user_email",
            Arc::new(StringArray::from(vec!["a@x", "b@x", "c@x", "d@x"])),
        ),
    ]);
    let contract = load("contracts/events.yaml", EVENTS);
    let object = contract.object("events").expect("events");
    let ctx = session("events", events);
    let report = check(
        &ctx,
        "events",
        object,
        &contract,
        &CheckOptions::new(ds("2025-06-30")),
    )
    .await
    .expect("check");
    let actual: Vec<(&str, f64, bool)> = report
        .results
        .iter()
        .map(|r| (r.rule_id.as_str(), r.observed, r.passed))
        .collect();
    assert_eq!(
        actual,
        [
            ("events.schema", 0.0, true),
            ("events.event_id.required", 1.0, false),
            ("events.event_id.length", 1.0, false),
            ("events.event_date.range", 2.0, false),
            ("events.occurred_at.range", 1.0, false),
            ("events.price_cents.multipleOf", 1.0, false),
            // Newest 2025-06-30 20:00 UTC, 4 hours before the end of ds.
            ("events.occurred_at.freshness", 4.0, true),
        ]
    );
    let dates: Vec<&serde_json::Value> = result(&report, "events.event_date.range")
        .examples
        .iter()
        .map(|r| &r["event_date"])
        .collect();
    assert_eq!(
        dates,
        [
            &serde_json::json!("2024-12-31"),
            &serde_json::json!("2026-01-01")
        ]
    );
    assert!(
        result(&report, "events.event_id.length")
            .examples
            .iter()
            .all(|r| r["user_email"] == MASK)
    );
}

#[tokio::test]
async fn empty_table_counts_zero_percent_and_has_no_freshness() {
    let empty = orders_batch().slice(0, 0);
    let ctx = session("orders", empty);
    let report = check_orders(&ctx, "orders", "2025-05-01").await;
    assert_eq!(report.rows, 0);
    let missing = result(&report, "orders.customer_email.missingValues");
    assert_eq!((missing.observed, missing.passed), (0.0, true));
    assert!(!result(&report, "orders.rowCount").passed);
    let freshness = result(&report, "orders.created_at.freshness");
    assert!(!freshness.passed && freshness.observed.is_nan());
    assert_eq!(freshness.note.as_deref(), Some("the column has no values"));
    // `max(amount)` of no rows is NULL: the sql rule cannot be decided.
    let sql = result(&report, "orders.amount.sql");
    assert!(!sql.passed);
    assert_eq!(
        sql.note.as_deref(),
        Some("query returned no number (NULL or not numeric)")
    );
    // NaN is written as JSON null.
    let json = serde_json::to_value(&report).expect("serializes");
    let freshness_json = json["results"]
        .as_array()
        .and_then(|r| {
            r.iter()
                .find(|r| r["rule_id"] == "orders.created_at.freshness")
        })
        .cloned();
    assert_eq!(
        freshness_json.map(|r| r["observed"].clone()),
        Some(serde_json::Value::Null)
    );
}

#[tokio::test]
async fn a_sql_rule_that_does_not_plan_fails_with_a_note() {
    // The upstream accuracy example names its table literally instead of `{object}`.
    let (_, text) = UPSTREAM[0];
    let contract = load("column-accuracy.odcs.yaml", text);
    let object = &contract.objects[0];
    let data = batch(vec![(
        "DataValue",
        Arc::new(Float64Array::from(vec![1.0, 600.0])),
    )]);
    let ctx = session("measurements", data);
    let report = check(
        &ctx,
        "measurements",
        object,
        &contract,
        &CheckOptions::new(ds("2025-05-01")),
    )
    .await
    .expect("check");
    let rule = result(&report, "Air_Quality.DataValue.sql");
    assert!(!rule.passed);
    let note = rule.note.as_deref().unwrap_or_default();
    assert!(
        note.starts_with("query does not run:") && note.contains("air_quality"),
        "{note}"
    );

    // Registered under the name the query uses, it runs: `DataValue <= 0 or >= 500` is 1 row.
    let data = batch(vec![(
        "datavalue",
        Arc::new(Float64Array::from(vec![1.0, 600.0])),
    )]);
    let ctx = session("Air_Quality", data);
    let report = check(
        &ctx,
        "Air_Quality",
        object,
        &contract,
        &CheckOptions::new(ds("2025-05-01")),
    )
    .await
    .expect("check");
    let rule = result(&report, "Air_Quality.DataValue.sql");
    assert_eq!((rule.observed, rule.passed), (1.0, false));
    // The contract says `DataValue`, the table has `datavalue`: names are compared exactly.
    assert_eq!(report.drift.len(), 2);
}

/// Example rows of a duplicated multi-column key are fetched by the key values the duplicate
/// query sampled, written back as SQL literals: a quote in a string, a UTC timestamp and a date
/// must survive the round trip, or the examples come back empty.
#[tokio::test]
async fn duplicate_examples_round_trip_string_timestamp_and_date_keys() {
    let text = "apiVersion: v3.1.0
kind: DataContract
id: visits
version: 1.0.0
status: active
schema:
  - name: visits
    properties:
      - name: visitor
        logicalType: string
      - name: seen_at
        logicalType: timestamp
      - name: day
        logicalType: date
      - name: n
        logicalType: integer
    quality:
      - metric: duplicateValues
        arguments:
          properties: [visitor, seen_at, day]
        mustBe: 0
";
    let contract = load("contracts/visits.yaml", text);
    let object = contract.object("visits").expect("visits");
    let date = |d: u32| {
        (NaiveDate::from_ymd_opt(2025, 3, d).expect("date")
            - NaiveDate::from_ymd_opt(1970, 1, 1).expect("epoch"))
        .num_days() as i32
    };
    let visits = batch(vec![
        (
            "visitor",
            Arc::new(StringArray::from(vec![
                Some("o'brien"),
                Some("o'brien"),
                Some("o'brien"),
                Some("zed"),
                Some("zed"),
                None,
                None,
            ])),
        ),
        (
            "seen_at",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    micros((2025, 3, 1), 10),
                    micros((2025, 3, 1), 10),
                    micros((2025, 3, 1), 11),
                    micros((2025, 3, 2), 9),
                    micros((2025, 3, 2), 9),
                    micros((2025, 3, 2), 9),
                    micros((2025, 3, 2), 9),
                ])
                .with_timezone("UTC"),
            ),
        ),
        (
            "day",
            Arc::new(Date32Array::from(vec![
                date(1),
                date(1),
                date(1),
                date(2),
                date(2),
                date(2),
                date(2),
            ])),
        ),
        ("n", Arc::new(Int64Array::from(vec![1, 2, 3, 4, 5, 6, 7]))),
    ]);
    let ctx = session("visits", visits);
    let report = check(
        &ctx,
        "visits",
        object,
        &contract,
        &CheckOptions::new(ds("2025-03-02")),
    )
    .await
    .expect("check");
    // Two keys repeat once each; the null-visitor rows are not a key.
    let rule = result(&report, "visits.duplicateValues");
    assert_eq!((rule.observed, rule.passed), (2.0, false));
    let rows: Vec<i64> = rule
        .examples
        .iter()
        .map(|r| r["n"].as_i64().expect("n"))
        .collect();
    assert_eq!(rows, [1, 2, 4, 5], "both rows of both keys, ordered by key");
    assert_eq!(count_queries(&report, QueryPurpose::Duplicates), 1);

    // The example query in the report runs by hand and returns the same rows.
    let examples = report
        .queries
        .iter()
        .find(|q| q.purpose == QueryPurpose::Examples)
        .expect("an examples query");
    assert!(examples.sql.contains("'o''brien'"), "{}", examples.sql);
    let again = ctx
        .sql(&examples.sql)
        .await
        .expect("plans")
        .collect()
        .await
        .expect("runs");
    assert_eq!(again.iter().map(|b| b.num_rows()).sum::<usize>(), 4);

    // Without duplicates there is no example query at all.
    let ctx = session(
        "visits",
        batch(vec![
            ("visitor", Arc::new(StringArray::from(vec!["a", "b"]))),
            (
                "seen_at",
                Arc::new(
                    TimestampMicrosecondArray::from(vec![micros((2025, 3, 1), 1); 2])
                        .with_timezone("UTC"),
                ),
            ),
            ("day", Arc::new(Date32Array::from(vec![date(1); 2]))),
            ("n", Arc::new(Int64Array::from(vec![1, 2]))),
        ]),
    );
    let report = check(
        &ctx,
        "visits",
        object,
        &contract,
        &CheckOptions::new(ds("2025-03-02")),
    )
    .await
    .expect("check");
    let rule = result(&report, "visits.duplicateValues");
    assert_eq!((rule.observed, rule.passed), (0.0, true));
    assert_eq!(count_queries(&report, QueryPurpose::Examples), 0);
}

#[test]
fn no_examples_are_fetched_when_max_examples_is_zero() {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let ctx = session("orders", orders_batch());
        let contract = load("contracts/orders.yaml", ORDERS);
        let object = contract.object("orders").expect("orders");
        let opts = CheckOptions {
            ds: ds("2025-05-01"),
            max_examples: 0,
        };
        let report = check(&ctx, "orders", object, &contract, &opts)
            .await
            .expect("check");
        assert_eq!(count_queries(&report, QueryPurpose::Examples), 0);
        assert!(report.results.iter().all(|r| r.examples.is_empty()));
    });
}

// ---- the official schema ----------------------------------------------------------------

const ODCS_SCHEMA_V310: &str =
    include_str!("../../tests/fixtures/odcs/odcs-json-schema-v3.1.0.json");

/// The keys nightjar accepts at each level are exactly the ones the official ODCS v3.1.0 JSON
/// Schema allows there, and the metric, type and dimension names are its enums: a file nightjar
/// accepts does not fail the schema for an unknown key, and a valid key is never refused.
#[test]
fn accepted_keys_are_the_official_schema_keys() {
    use super::load::keys;
    use std::collections::BTreeSet;
    let schema: serde_json::Value = serde_json::from_str(ODCS_SCHEMA_V310).expect("schema is JSON");
    let defs = &schema["$defs"];
    let props = |v: &serde_json::Value| -> BTreeSet<String> {
        v["properties"]
            .as_object()
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    };
    let then_props = |v: &serde_json::Value| -> BTreeSet<String> {
        v["allOf"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|branch| props(&branch["then"]))
            .collect()
    };
    let ours = |lists: &[&[&str]]| -> BTreeSet<String> {
        lists
            .iter()
            .flat_map(|l| l.iter().map(|k| k.to_string()))
            .collect()
    };
    let union =
        |sets: Vec<BTreeSet<String>>| -> BTreeSet<String> { sets.into_iter().flatten().collect() };
    let enum_of = |v: &serde_json::Value| -> BTreeSet<String> {
        v["enum"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(String::from))
            .collect()
    };

    assert_eq!(ours(&[keys::CONTRACT]), props(&schema));
    assert_eq!(
        ours(&[keys::ELEMENT, keys::OBJECT]),
        union(vec![
            props(&defs["SchemaElement"]),
            props(&defs["SchemaObject"])
        ])
    );
    assert_eq!(
        ours(&[keys::ELEMENT, keys::PROPERTY]),
        union(vec![
            props(&defs["SchemaElement"]),
            props(&defs["SchemaBaseProperty"]),
            then_props(&defs["SchemaBaseProperty"])
        ])
    );
    let operators: BTreeSet<String> = defs["DataQualityOperators"]["oneOf"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(&props)
        .collect();
    assert_eq!(ours(&[&Comparison::OPERATORS]), operators);
    assert_eq!(
        ours(&[keys::QUALITY]),
        union(vec![
            props(&defs["DataQuality"]),
            props(&defs["DataQualityLibrary"]),
            props(&defs["DataQualitySql"]),
            props(&defs["DataQualityCustom"]),
        ])
    );
    assert_eq!(
        ours(&[keys::SLA]),
        props(&defs["ServiceLevelAgreementProperty"])
    );
    assert_eq!(
        ours(&[keys::METRICS]),
        enum_of(&defs["DataQualityLibrary"]["properties"]["metric"])
    );
    assert_eq!(
        ours(&[keys::QUALITY_TYPES]),
        enum_of(&defs["DataQuality"]["properties"]["type"])
    );
    assert_eq!(
        ours(&[keys::DIMENSIONS]),
        enum_of(&defs["DataQuality"]["properties"]["dimension"])
    );
    let logical: Vec<String> = LogicalType::ALL
        .iter()
        .map(|t| t.as_str().to_string())
        .collect();
    assert_eq!(
        logical.iter().cloned().collect::<BTreeSet<_>>(),
        enum_of(&defs["SchemaBaseProperty"]["properties"]["logicalType"])
    );

    // `logicalTypeOptions`: one `if logicalType is X then these options` branch per type.
    for branch in defs["SchemaBaseProperty"]["allOf"]
        .as_array()
        .into_iter()
        .flatten()
    {
        let condition = &branch["if"];
        let types: Vec<&str> = std::iter::once(condition)
            .chain(condition["anyOf"].as_array().into_iter().flatten())
            .filter_map(|c| c["properties"]["logicalType"]["const"].as_str())
            .collect();
        let options = props(&branch["then"]["properties"]["logicalTypeOptions"]);
        for name in types {
            let logical_type = LogicalType::parse(name).expect("a known logical type");
            assert_eq!(
                ours(&[keys::logical_type_options(logical_type)]),
                options,
                "options of `{name}`"
            );
        }
    }
}
