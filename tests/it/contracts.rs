//! Data contracts end to end, through the real CLI: a contract on an `ingest` task gates the
//! table it writes (each kind of violation is planted in a CSV file and must be caught with its
//! rule id, exit code 3, the previous table version kept and nothing downstream run), the run
//! state records every rule, `on_violation: quarantine` routes bad rows, the standalone
//! `contract` task blocks its downstream, `nightjar contract check` checks tables and files,
//! and a bad contract or binding is a validation error (exit 2) at file:line:column.

use std::path::Path;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{
    Out, PROJECT_YAML, delta_versions, i64_column, nightjar, project, query_table, string_column,
};

/// The run's logical date: freshness is measured at its end, 2025-05-04T00:00 UTC.
const DS: &str = "2025-05-03";

const CONTRACT: &str = r#"apiVersion: v3.1.0
kind: DataContract
id: orders-test
name: orders
version: 2.1.0
status: active
schema:
  - name: orders
    physicalName: raw.orders
    properties:
      - name: order_id
        logicalType: integer
        primaryKey: true
        required: true
      - name: email
        logicalType: string
        classification: pii
        logicalTypeOptions:
          pattern: '^[a-z]+@example\.com$'
      - name: status
        logicalType: string
        quality:
          - id: status_valid
            metric: invalidValues
            arguments:
              validValues: [new, shipped, returned]
            mustBe: 0
          - metric: missingValues
            mustBeLessOrEqualTo: 20
            unit: percent
      - name: amount
        logicalType: number
        logicalTypeOptions:
          minimum: 0
          maximum: 1000
      - name: created_at
        logicalType: timestamp
        required: true
    quality:
      - metric: rowCount
        mustBeGreaterOrEqualTo: 5
slaProperties:
  - property: latency
    value: 2
    unit: d
    element: orders.created_at
"#;

/// Every rule of `CONTRACT`, in report order.
const RULES: [&str; 10] = [
    "orders.schema",
    "orders.order_id.required",
    "orders.email.pattern",
    "status_valid",
    "orders.status.missingValues",
    "orders.amount.range",
    "orders.created_at.required",
    "orders.rowCount",
    "orders.primaryKey",
    "orders.created_at.freshness",
];

/// `raw.orders` through the contract, and a table built from it.
const PIPELINE: &str = "version: 1
tasks:
  - id: load
    kind: ingest
    source: data/orders.csv
    format: csv
    output: raw.orders
    retries: 2
    contract: contracts/orders.yaml
  - id: stage
    kind: sql
    output: staging.orders
    sql: SELECT order_id, status, amount FROM raw.orders
";

const HEADER: &str = "order_id,email,status,amount,created_at\n";

/// Six orders that pass every rule.
const GOOD_ROWS: [&str; 6] = [
    "1,ada@example.com,new,10.50,2025-05-02T08:00:00",
    "2,bob@example.com,shipped,99.90,2025-05-02T09:30:00",
    "3,cy@example.com,shipped,5.00,2025-05-03T10:00:00",
    "4,di@example.com,returned,250.00,2025-05-03T11:00:00",
    "5,ed@example.com,new,0.99,2025-05-03T12:00:00",
    "6,fay@example.com,new,1000.00,2025-05-03T13:00:00",
];

fn csv(rows: &[&str]) -> String {
    let mut text = HEADER.to_string();
    for row in rows {
        text.push_str(row);
        text.push('\n');
    }
    text
}

/// The good rows with row `index` replaced.
fn good_with(index: usize, row: &str) -> String {
    let mut rows = GOOD_ROWS.to_vec();
    rows[index] = row;
    csv(&rows)
}

fn orders_project(pipeline: &str, data: &str) -> tempfile::TempDir {
    project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("contracts/orders.yaml", CONTRACT),
        ("pipelines/p.yaml", pipeline),
        ("data/orders.csv", data),
    ])
}

/// `nightjar run p --ds DS --json`: the output and the run state it printed.
fn run(dir: &Path) -> (Out, Value) {
    let out = nightjar(dir, &["run", "p", "--ds", DS, "--json"]);
    let state: Value = serde_json::from_str(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no run state on stdout ({e}):\n{}\nstderr:\n{}",
            out.stdout, out.stderr
        )
    });
    (out, state)
}

fn task<'a>(state: &'a Value, id: &str) -> &'a Value {
    state["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task `{id}` in {state:#}"))
}

/// The one contract check a task recorded.
fn only_check<'a>(state: &'a Value, id: &str) -> &'a Value {
    let checks = task(state, id)["checks"].as_array().expect("checks");
    assert_eq!(checks.len(), 1, "{checks:#?}");
    &checks[0]
}

fn result<'a>(check: &'a Value, rule: &str) -> &'a Value {
    check["report"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .find(|r| r["rule_id"] == rule)
        .unwrap_or_else(|| panic!("no result for `{rule}` in {check:#}"))
}

fn failed_rules(check: &Value) -> Vec<String> {
    check["report"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .filter(|r| r["passed"] == false)
        .map(|r| r["rule_id"].as_str().expect("rule_id").to_string())
        .collect()
}

/// Data files of a table (every version's), and files left anywhere under `tmp/`.
fn parquet_files(dir: &Path) -> Vec<String> {
    crate::files_under(dir)
        .into_iter()
        .filter(|p| p.extension().is_some_and(|x| x == "parquet"))
        .map(|p| p.display().to_string())
        .collect()
}

/// What a blocked run left behind.
struct Blocked {
    dir: tempfile::TempDir,
    out: Out,
    state: Value,
}

impl Blocked {
    fn check(&self) -> &Value {
        only_check(&self.state, "load")
    }
}

/// Publishes the good rows (version 0 of `raw.orders` and `staging.orders`), then plants `bad`
/// and runs again: exit 3, `rule` named in stderr and failed in the run state, the task not
/// retried, `stage` not run, and both tables still at version 0 with no new data files.
fn assert_blocked(pipeline: &str, bad: &str, rule: &str) -> Blocked {
    let dir = orders_project(pipeline, &csv(&GOOD_ROWS));
    let (first, state) = run(dir.path());
    assert_eq!(first.code, 0, "the good rows pass: {}", first.stderr);
    assert_eq!(task(&state, "stage")["status"], "succeeded");
    let wh = dir.path().join("warehouse");
    assert_eq!(delta_versions(&wh, "raw.orders"), vec![0]);
    assert_eq!(delta_versions(&wh, "staging.orders"), vec![0]);
    let files_before = parquet_files(&wh);

    std::fs::write(dir.path().join("data/orders.csv"), bad).expect("plant");
    let (out, state) = run(dir.path());
    assert_eq!(
        out.code, 3,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(
        out.stderr.contains(&format!("rule `{rule}`")),
        "stderr names `{rule}`:\n{}",
        out.stderr
    );
    assert!(
        out.stderr.contains(
            "task `load` (pipelines/p.yaml:3:5): contract `contracts/orders.yaml` (orders-test 2.1.0) violated by `raw.orders`"
        ),
        "{}",
        out.stderr
    );
    assert_eq!(state["status"], "failed");
    let load = task(&state, "load");
    assert_eq!(load["status"], "failed");
    assert_eq!(load["attempts"], 1, "a violation is not retried");
    assert!(load["outputs"].as_array().expect("outputs").is_empty());
    let stage = task(&state, "stage");
    assert_eq!(stage["status"], "upstream_failed");
    assert_eq!(stage["attempts"], 0);

    let check = only_check(&state, "load");
    assert_eq!(check["violated"], true);
    assert!(
        failed_rules(check).iter().any(|r| r == rule),
        "`{rule}` failed: {:?}",
        failed_rules(check)
    );
    assert_eq!(result(check, rule)["passed"], false);

    // Nothing published: no new version, not even a data file; staging is cleaned up.
    assert_eq!(delta_versions(&wh, "raw.orders"), vec![0]);
    assert_eq!(delta_versions(&wh, "staging.orders"), vec![0]);
    assert_eq!(parquet_files(&wh), files_before);
    assert!(parquet_files(&wh.join("tmp")).is_empty());
    let kept = query_table(&wh, "raw.orders", "SELECT count(*) FROM t");
    assert_eq!(
        i64_column(&kept, 0),
        vec![Some(6)],
        "the good version stays"
    );
    Blocked { dir, out, state }
}

#[test]
fn passing_contract_publishes_and_records_every_rule() {
    let dir = orders_project(PIPELINE, &csv(&GOOD_ROWS));
    let (out, state) = run(dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(state["status"], "succeeded");
    assert_eq!(task(&state, "load")["outputs"][0]["rows"], 6);
    assert_eq!(task(&state, "stage")["status"], "succeeded");
    let wh = dir.path().join("warehouse");
    assert_eq!(delta_versions(&wh, "raw.orders"), vec![0]);
    assert!(parquet_files(&wh.join("tmp")).is_empty());

    // The run state carries the check: contract id, version, the hash of its exact text, and
    // every rule's observed value and verdict.
    let check = only_check(&state, "load");
    assert_eq!(check["task"], "load");
    assert_eq!(check["violated"], false);
    let report = &check["report"];
    assert_eq!(report["contract_id"], "orders-test");
    assert_eq!(report["contract_version"], "2.1.0");
    let sha = format!("{:x}", Sha256::digest(CONTRACT.as_bytes()));
    assert_eq!(report["text_sha256"], sha.as_str());
    assert_eq!(report["table"], "raw.orders");
    assert_eq!(report["ds"], DS);
    assert_eq!(report["rows"], 6);
    let observed: Vec<(String, Value, Value)> = report["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| {
            (
                r["rule_id"].as_str().expect("id").to_string(),
                r["observed"].clone(),
                r["passed"].clone(),
            )
        })
        .collect();
    let ids: Vec<&str> = observed.iter().map(|(id, _, _)| id.as_str()).collect();
    assert_eq!(ids, RULES);
    for (id, value, passed) in &observed {
        assert_eq!(passed, &Value::Bool(true), "{id}");
        let expected = match id.as_str() {
            "orders.rowCount" => 6.0,
            // Newest order 2025-05-03T13:00, measured at 2025-05-04T00:00: 11 hours.
            "orders.created_at.freshness" => 11.0 / 24.0,
            _ => 0.0,
        };
        let value = value.as_f64().unwrap_or(f64::NAN);
        assert!(
            (value - expected).abs() < 1e-9,
            "{id}: {value} != {expected}"
        );
    }

    // The same state is on disk, and `runs show` prints every rule.
    let run_id = state["run_id"].as_str().expect("run_id");
    let on_disk: Value = serde_json::from_str(
        &std::fs::read_to_string(wh.join(format!("runs/p/{run_id}.json"))).expect("run state"),
    )
    .expect("json");
    assert_eq!(
        on_disk["tasks"][0]["checks"],
        task(&state, "load")["checks"]
    );
    let show = nightjar(dir.path(), &["runs", "show", run_id]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    assert!(
        show.stdout.contains(
            "contract orders-test 2.1.0 on `raw.orders` (6 rows, task load): 10/10 rules passed"
        ),
        "{}",
        show.stdout
    );
    for rule in RULES {
        assert!(show.stdout.contains(rule), "{rule} in:\n{}", show.stdout);
    }

    // A human run prints the contract line (failed rules only, so no table).
    let again = nightjar(dir.path(), &["run", "p", "--ds", DS]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert!(
        again.stdout.contains("10/10 rules passed"),
        "{}",
        again.stdout
    );
    assert!(!again.stdout.contains("FAIL"), "{}", again.stdout);
    assert_eq!(delta_versions(&wh, "raw.orders"), vec![0, 1]);
}

#[test]
fn nulls_are_caught() {
    let b = assert_blocked(
        PIPELINE,
        &good_with(2, ",cy@example.com,shipped,5.00,2025-05-03T10:00:00"),
        "orders.order_id.required",
    );
    let r = result(b.check(), "orders.order_id.required");
    assert_eq!(r["observed"], 1.0);
    assert_eq!(r["column"], "order_id");
    assert_eq!(r["threshold"], "= 0");
    assert_eq!(r["examples"][0]["order_id"], Value::Null);
    assert_eq!(r["examples"][0]["amount"], 5.0);
    // A null key is not a duplicate key; nothing else is wrong with the data.
    assert_eq!(failed_rules(b.check()), vec!["orders.order_id.required"]);
}

#[test]
fn duplicates_are_caught() {
    let b = assert_blocked(
        PIPELINE,
        &good_with(3, "2,di@example.com,returned,250.00,2025-05-03T11:00:00"),
        "orders.primaryKey",
    );
    assert_eq!(failed_rules(b.check()), vec!["orders.primaryKey"]);
    let r = result(b.check(), "orders.primaryKey");
    assert_eq!(r["observed"], 1.0);
    assert_eq!(r["column"], "order_id");
    let examples = r["examples"].as_array().expect("examples");
    assert_eq!(examples.len(), 2, "both rows of the duplicate key");
    assert!(examples.iter().all(|e| e["order_id"] == 2));
}

#[test]
fn invalid_values_are_caught() {
    let b = assert_blocked(
        PIPELINE,
        &good_with(1, "2,bob@example.com,lost,99.90,2025-05-02T09:30:00"),
        "status_valid",
    );
    assert_eq!(failed_rules(b.check()), vec!["status_valid"]);
    let r = result(b.check(), "status_valid");
    assert_eq!(r["observed"], 1.0);
    assert_eq!(r["metric"], "invalidValues");
    assert_eq!(r["examples"][0]["status"], "lost");
    // The human report on stdout: the failed rule, its column, observed and expected values.
    let human = nightjar(b.dir.path(), &["run", "p", "--ds", DS]);
    assert_eq!(human.code, 3);
    let line = human
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("status_valid"))
        .unwrap_or_else(|| panic!("no row for status_valid:\n{}", human.stdout));
    let cells: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(cells, vec!["status_valid", "status", "1", "=", "0", "FAIL"]);
    assert!(
        human.stdout.contains(
            "contract orders-test 2.1.0 on `raw.orders` (6 rows, task load): 9/10 rules passed"
        ),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("\"status\":\"lost\""),
        "{}",
        human.stdout
    );
}

#[test]
fn bad_pattern_is_caught_and_pii_examples_are_masked() {
    let secret = "Mallory.Secret@evil.test";
    let b = assert_blocked(
        PIPELINE,
        &good_with(4, &format!("5,{secret},new,0.99,2025-05-03T12:00:00")),
        "orders.email.pattern",
    );
    assert_eq!(failed_rules(b.check()), vec!["orders.email.pattern"]);
    let r = result(b.check(), "orders.email.pattern");
    assert_eq!(r["observed"], 1.0);
    assert_eq!(r["column"], "email");
    // `email` is classified pii: the example shows the row, but not the value.
    assert_eq!(r["examples"][0]["order_id"], 5);
    assert_eq!(r["examples"][0]["email"], "***");
    assert!(!b.out.stdout.contains(secret), "{}", b.out.stdout);
    assert!(!b.out.stderr.contains(secret), "{}", b.out.stderr);
    let human = nightjar(b.dir.path(), &["run", "p", "--ds", DS]);
    assert_eq!(human.code, 3);
    assert!(
        human
            .stdout
            .contains("examples failing `orders.email.pattern`"),
        "{}",
        human.stdout
    );
    assert!(
        human.stdout.contains("\"email\":\"***\""),
        "{}",
        human.stdout
    );
    assert!(!human.stdout.contains(secret), "{}", human.stdout);
    let run_id = b.state["run_id"].as_str().expect("run_id");
    let on_disk =
        std::fs::read_to_string(b.dir.path().join(format!("warehouse/runs/p/{run_id}.json")))
            .expect("run state");
    assert!(!on_disk.contains(secret), "the run state keeps no PII");
}

#[test]
fn out_of_range_is_caught() {
    let b = assert_blocked(
        PIPELINE,
        &good_with(5, "6,fay@example.com,new,1000.01,2025-05-03T13:00:00"),
        "orders.amount.range",
    );
    assert_eq!(failed_rules(b.check()), vec!["orders.amount.range"]);
    let r = result(b.check(), "orders.amount.range");
    assert_eq!(r["observed"], 1.0);
    assert_eq!(r["examples"][0]["amount"], 1000.01);
    assert!(
        b.out
            .stderr
            .contains("rule `orders.amount.range` column `amount`: range observed 1, expected = 0"),
        "{}",
        b.out.stderr
    );
}

/// A declared schema, so an empty file still has typed columns.
const TYPED_PIPELINE: &str = "version: 1
tasks:
  - id: load
    kind: ingest
    source: data/orders.csv
    format: csv
    output: raw.orders
    retries: 2
    contract: contracts/orders.yaml
    schema:
      - { name: order_id, type: int64 }
      - { name: email, type: string }
      - { name: status, type: string }
      - { name: amount, type: float64 }
      - { name: created_at, type: timestamp }
  - id: stage
    kind: sql
    output: staging.orders
    sql: SELECT order_id, status, amount FROM raw.orders
";

#[test]
fn row_count_drop_is_caught_and_the_previous_version_stays() {
    let b = assert_blocked(TYPED_PIPELINE, &csv(&GOOD_ROWS[..3]), "orders.rowCount");
    assert_eq!(failed_rules(b.check()), vec!["orders.rowCount"]);
    let r = result(b.check(), "orders.rowCount");
    assert_eq!(r["observed"], 3.0);
    assert_eq!(r["threshold"], ">= 5");
    assert_eq!(r["column"], Value::Null);

    // A drop to no rows at all is a violation too, not an engine error.
    std::fs::write(b.dir.path().join("data/orders.csv"), HEADER).expect("empty");
    let (out, state) = run(b.dir.path());
    assert_eq!(out.code, 3, "{}", out.stderr);
    let check = only_check(&state, "load");
    assert_eq!(check["report"]["rows"], 0);
    assert_eq!(result(check, "orders.rowCount")["observed"], 0.0);
    assert!(failed_rules(check).contains(&"orders.rowCount".to_string()));
    assert_eq!(result(check, "orders.schema")["passed"], true);
    assert_eq!(task(&state, "stage")["status"], "upstream_failed");
    let wh = b.dir.path().join("warehouse");
    assert_eq!(delta_versions(&wh, "raw.orders"), vec![0]);
    assert_eq!(delta_versions(&wh, "staging.orders"), vec![0]);
}

#[test]
fn stale_data_is_caught() {
    let stale: Vec<String> = GOOD_ROWS
        .iter()
        .map(|r| {
            r.replace("2025-05-02", "2025-04-19")
                .replace("2025-05-03", "2025-04-20")
        })
        .collect();
    let stale: Vec<&str> = stale.iter().map(String::as_str).collect();
    let b = assert_blocked(PIPELINE, &csv(&stale), "orders.created_at.freshness");
    assert_eq!(failed_rules(b.check()), vec!["orders.created_at.freshness"]);
    let r = result(b.check(), "orders.created_at.freshness");
    // Newest 2025-04-20T13:00, measured at 2025-05-04T00:00: 13 days and 11 hours.
    let observed = r["observed"].as_f64().expect("observed");
    assert!((observed - (13.0 + 11.0 / 24.0)).abs() < 1e-9, "{observed}");
    assert_eq!(r["unit"], "days");
    assert_eq!(r["threshold"], "<= 2 days");
}

/// No declared schema: the file's own columns reach the contract, which reports the drift.
const UNTYPED_PIPELINE: &str = PIPELINE;

#[test]
fn dropped_column_is_caught_by_name() {
    let rows: Vec<String> = GOOD_ROWS
        .iter()
        .map(|r| {
            let cells: Vec<&str> = r.split(',').collect();
            [cells[0], cells[1], cells[3], cells[4]].join(",")
        })
        .collect();
    let mut data = "order_id,email,amount,created_at\n".to_string();
    for r in &rows {
        data.push_str(r);
        data.push('\n');
    }
    let b = assert_blocked(UNTYPED_PIPELINE, &data, "orders.schema");
    let check = b.check();
    assert_eq!(
        check["report"]["drift"],
        serde_json::json!([{"change": "missing", "column": "status", "expected_type": "string"}])
    );
    let schema = result(check, "orders.schema");
    assert_eq!(schema["observed"], 1.0);
    assert_eq!(schema["note"], "missing `status`");
    // Rules on the missing column fail as not checked; the other rules still ran and passed.
    let mut failed = failed_rules(check);
    failed.sort();
    assert_eq!(
        failed,
        vec![
            "orders.schema",
            "orders.status.missingValues",
            "status_valid"
        ]
    );
    assert_eq!(
        result(check, "status_valid")["note"],
        "not checked: the table has no column `status`"
    );
    assert_eq!(result(check, "orders.amount.range")["passed"], true);
    let human = nightjar(b.dir.path(), &["run", "p", "--ds", DS]);
    assert_eq!(human.code, 3);
    assert!(
        human
            .stdout
            .contains("schema drift: missing column `status`"),
        "{}",
        human.stdout
    );
}

#[test]
fn retyped_column_is_caught_by_name() {
    let rows: Vec<String> = GOOD_ROWS
        .iter()
        .map(|r| {
            let mut cells: Vec<String> = r.split(',').map(str::to_string).collect();
            cells[3] = format!("{} EUR", cells[3]);
            cells.join(",")
        })
        .collect();
    let rows: Vec<&str> = rows.iter().map(String::as_str).collect();
    let b = assert_blocked(UNTYPED_PIPELINE, &csv(&rows), "orders.schema");
    let check = b.check();
    let drift = check["report"]["drift"].as_array().expect("drift");
    assert_eq!(drift.len(), 1, "{drift:?}");
    assert_eq!(drift[0]["change"], "retyped");
    assert_eq!(drift[0]["column"], "amount");
    assert_eq!(drift[0]["expected_type"], "number");
    let actual = drift[0]["actual_type"].as_str().expect("actual_type");
    assert!(actual.starts_with("Utf8"), "{actual}");
    assert!(
        b.out
            .stderr
            .contains("retyped `amount` (expected number, found Utf8"),
        "{}",
        b.out.stderr
    );
    let mut failed = failed_rules(check);
    failed.sort();
    assert_eq!(failed, vec!["orders.amount.range", "orders.schema"]);
}

#[test]
fn violation_on_the_first_run_publishes_no_table_at_all() {
    let dir = orders_project(
        PIPELINE,
        &good_with(0, "1,ada@example.com,new,-3.00,2025-05-02T08:00:00"),
    );
    let (out, state) = run(dir.path());
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(
        failed_rules(only_check(&state, "load")),
        vec!["orders.amount.range"]
    );
    assert_eq!(task(&state, "stage")["status"], "upstream_failed");
    let wh = dir.path().join("warehouse");
    assert!(delta_versions(&wh, "raw.orders").is_empty());
    assert!(delta_versions(&wh, "staging.orders").is_empty());
    assert!(!wh.join("tables").exists(), "no table directory at all");
    assert!(parquet_files(&wh).is_empty());
}

#[test]
fn warning_rules_report_without_blocking() {
    // One missing status in six is 16.7%: within the rule's 20%. Two in six (33%) fail it,
    // and it is of severity error, so it blocks; as a warning it only reports.
    let contract = CONTRACT.replace(
        "            mustBeLessOrEqualTo: 20\n            unit: percent\n",
        "            mustBeLessOrEqualTo: 20\n            unit: percent\n            severity: warning\n",
    );
    assert_ne!(contract, CONTRACT);
    let mut rows = GOOD_ROWS.to_vec();
    rows[0] = "1,ada@example.com,,10.50,2025-05-02T08:00:00";
    rows[1] = "2,bob@example.com,,99.90,2025-05-02T09:30:00";
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("contracts/orders.yaml", &contract),
        ("pipelines/p.yaml", PIPELINE),
        ("data/orders.csv", &csv(&rows)),
    ]);
    let (out, state) = run(dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let check = only_check(&state, "load");
    assert_eq!(check["violated"], false);
    let r = result(check, "orders.status.missingValues");
    assert_eq!(r["passed"], false);
    assert_eq!(r["severity"], "warning");
    let observed = r["observed"].as_f64().expect("observed");
    assert!((observed - 100.0 / 3.0).abs() < 1e-9, "{observed}");
    assert_eq!(
        delta_versions(&dir.path().join("warehouse"), "raw.orders"),
        vec![0]
    );
    assert_eq!(task(&state, "stage")["status"], "succeeded");
}

fn quarantine_pipeline(limit: &str) -> String {
    PIPELINE.replace(
        "    contract: contracts/orders.yaml\n",
        &format!(
            "    contract:\n      path: contracts/orders.yaml\n      on_violation: quarantine\n      max_quarantined: \"{limit}\"\n"
        ),
    )
}

/// Ten orders: #3 has an unknown status, #4 an amount out of range, and #5 no status (one in
/// ten is within the `missingValues` rule's 20%, so that row is fine).
fn quarantine_data() -> String {
    let mut rows = GOOD_ROWS.to_vec();
    rows[2] = "3,cy@example.com,lost,5.00,2025-05-03T10:00:00";
    rows[3] = "4,di@example.com,returned,5000.00,2025-05-03T11:00:00";
    rows[4] = "5,ed@example.com,,0.99,2025-05-03T12:00:00";
    rows.extend([
        "7,gus@example.com,new,1.00,2025-05-03T13:00:00",
        "8,hal@example.com,new,2.00,2025-05-03T13:00:00",
        "9,ivy@example.com,shipped,3.00,2025-05-03T13:00:00",
        "10,jo@example.com,new,4.00,2025-05-03T13:00:00",
    ]);
    csv(&rows)
}

#[test]
fn quarantine_routes_failing_rows_and_publishes_the_rest() {
    let pipeline = quarantine_pipeline("25%");
    assert_ne!(pipeline, PIPELINE);
    let dir = orders_project(&pipeline, &quarantine_data());
    let (out, state) = run(dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let run_id = state["run_id"].as_str().expect("run_id");
    assert_eq!(task(&state, "load")["outputs"][0]["rows"], 8);
    assert_eq!(task(&state, "stage")["status"], "succeeded");

    let check = only_check(&state, "load");
    assert_eq!(check["violated"], false);
    let mut failed = failed_rules(check);
    failed.sort();
    assert_eq!(failed, vec!["orders.amount.range", "status_valid"]);
    let q = result(check, "orders.quarantine");
    assert_eq!(q["passed"], true);
    assert_eq!(q["observed"], 20.0);
    assert_eq!(q["unit"], "percent");
    assert_eq!(q["threshold"], "<= 25%");
    assert_eq!(q["note"], "2 of 10 rows quarantined");

    let wh = dir.path().join("warehouse");
    assert_eq!(delta_versions(&wh, "raw.orders"), vec![0]);
    assert_eq!(delta_versions(&wh, "raw.orders__quarantine"), vec![0]);
    let good = query_table(
        &wh,
        "raw.orders",
        "SELECT order_id FROM t ORDER BY order_id",
    );
    let good: Vec<i64> = i64_column(&good, 0).into_iter().flatten().collect();
    assert_eq!(
        good,
        vec![1, 2, 5, 6, 7, 8, 9, 10],
        "order 5 breaks only a rule the version passes: published"
    );
    let staged = query_table(&wh, "staging.orders", "SELECT count(*) FROM t");
    assert_eq!(i64_column(&staged, 0), vec![Some(8)]);
    let bad = query_table(
        &wh,
        "raw.orders__quarantine",
        "SELECT order_id, status, _rule_id, _run_id FROM t ORDER BY order_id",
    );
    assert_eq!(
        i64_column(&bad, 0)
            .into_iter()
            .flatten()
            .collect::<Vec<_>>(),
        vec![3, 4]
    );
    assert_eq!(string_column(&bad, 1), vec!["lost", "returned"]);
    assert_eq!(
        string_column(&bad, 2),
        vec!["status_valid", "orders.amount.range"]
    );
    assert_eq!(string_column(&bad, 3), vec![run_id, run_id]);
}

#[test]
fn quarantine_over_its_limit_blocks_everything() {
    let dir = orders_project(&quarantine_pipeline("1"), &quarantine_data());
    let (out, state) = run(dir.path());
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("rule `orders.quarantine`"),
        "{}",
        out.stderr
    );
    let check = only_check(&state, "load");
    assert_eq!(check["violated"], true);
    let q = result(check, "orders.quarantine");
    assert_eq!(q["passed"], false);
    assert_eq!(q["observed"], 2.0);
    assert_eq!(q["unit"], "rows");
    assert_eq!(q["threshold"], "<= 1 rows");
    assert_eq!(task(&state, "stage")["status"], "upstream_failed");
    let wh = dir.path().join("warehouse");
    assert!(delta_versions(&wh, "raw.orders").is_empty());
    assert!(delta_versions(&wh, "raw.orders__quarantine").is_empty());
    assert!(delta_versions(&wh, "staging.orders").is_empty());
    assert!(parquet_files(&wh).is_empty());

    // The default limit is 1% of the rows: 2 of 10 is over it too.
    let dir = orders_project(
        &PIPELINE.replace(
            "    contract: contracts/orders.yaml\n",
            "    contract:\n      path: contracts/orders.yaml\n      on_violation: quarantine\n",
        ),
        &quarantine_data(),
    );
    let (out, state) = run(dir.path());
    assert_eq!(out.code, 3, "{}", out.stderr);
    let q = result(only_check(&state, "load"), "orders.quarantine");
    assert_eq!(q["observed"], 20.0);
    assert_eq!(q["threshold"], "<= 1%");
    assert!(delta_versions(&dir.path().join("warehouse"), "raw.orders").is_empty());
}

#[test]
fn quarantine_does_not_hide_table_level_violations() {
    // A duplicate key is not a row's fault: quarantine cannot fix it, so the version blocks.
    let dir = orders_project(
        &quarantine_pipeline("50%"),
        &good_with(3, "2,di@example.com,returned,250.00,2025-05-03T11:00:00"),
    );
    let (out, state) = run(dir.path());
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert_eq!(
        failed_rules(only_check(&state, "load")),
        vec!["orders.primaryKey"]
    );
    let wh = dir.path().join("warehouse");
    assert!(delta_versions(&wh, "raw.orders").is_empty());
    assert!(delta_versions(&wh, "raw.orders__quarantine").is_empty());
}

const CONTRACT_TASK_PIPELINE: &str = "version: 1
tasks:
  - id: load
    kind: ingest
    source: data/orders.csv
    format: csv
    output: raw.orders
  - id: check_orders
    kind: contract
    table: raw.orders
    contract: contracts/orders.yaml
  - id: stage
    kind: sql
    output: staging.orders
    depends_on: [check_orders]
    sql: SELECT order_id, status, amount FROM raw.orders
";

#[test]
fn contract_task_blocks_its_downstream() {
    let dir = orders_project(
        CONTRACT_TASK_PIPELINE,
        &good_with(1, "2,bob@example.com,lost,99.90,2025-05-02T09:30:00"),
    );
    let (out, state) = run(dir.path());
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains(
            "task `check_orders` (pipelines/p.yaml:8:5): contract `contracts/orders.yaml` (orders-test 2.1.0) violated by `raw.orders`"
        ),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("rule `status_valid`"), "{}", out.stderr);
    assert_eq!(task(&state, "load")["status"], "succeeded");
    assert_eq!(task(&state, "check_orders")["status"], "failed");
    assert_eq!(task(&state, "stage")["status"], "upstream_failed");
    let check = only_check(&state, "check_orders");
    assert_eq!(check["violated"], true);
    assert_eq!(failed_rules(check), vec!["status_valid"]);
    let wh = dir.path().join("warehouse");
    // The table was written by a task without a contract: only its readers are stopped.
    assert_eq!(delta_versions(&wh, "raw.orders"), vec![0]);
    assert!(delta_versions(&wh, "staging.orders").is_empty());

    // Fixed data: the check passes, records its report, and the reader runs.
    std::fs::write(dir.path().join("data/orders.csv"), csv(&GOOD_ROWS)).expect("fix");
    let (out, state) = run(dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert_eq!(task(&state, "check_orders")["status"], "succeeded");
    let check = only_check(&state, "check_orders");
    assert_eq!(check["violated"], false);
    assert_eq!(check["report"]["rows"], 6);
    assert!(failed_rules(check).is_empty());
    assert_eq!(delta_versions(&wh, "staging.orders"), vec![0]);
}

/// `export` of the raw table, so `contract check --data` has a Parquet file to read.
const EXPORT_PIPELINE: &str = "version: 1
tasks:
  - id: load
    kind: ingest
    source: data/orders.csv
    format: csv
    output: raw.orders
  - id: out
    kind: export
    table: raw.orders
    target: out/orders.parquet
    format: parquet
";

#[test]
fn contract_check_command_on_tables_and_files() {
    let dir = orders_project(EXPORT_PIPELINE, &csv(&GOOD_ROWS));
    std::fs::write(
        dir.path().join("data/bad.csv"),
        good_with(5, "6,fay@example.com,new,1000.01,2025-05-03T13:00:00"),
    )
    .expect("bad file");
    let (out, _) = run(dir.path());
    assert_eq!(out.code, 0, "{}", out.stderr);
    let p = dir.path();
    let contract = "contracts/orders.yaml";

    // A table, human: the summary line and every rule.
    let table = nightjar(
        p,
        &[
            "contract",
            "check",
            contract,
            "--table",
            "raw.orders",
            "--ds",
            DS,
        ],
    );
    assert_eq!(table.code, 0, "{}", table.stderr);
    assert!(
        table.stdout.contains(
            "contract orders-test 2.1.0 on `raw.orders` (6 rows, contracts/orders.yaml): 10/10 rules passed"
        ),
        "{}",
        table.stdout
    );
    let header = table.stdout.lines().nth(1).expect("table header");
    assert_eq!(
        header.split_whitespace().collect::<Vec<_>>(),
        vec!["rule", "column", "observed", "expected", "result"]
    );
    for rule in RULES {
        assert!(table.stdout.contains(rule), "{rule}: {}", table.stdout);
    }
    assert!(!table.stdout.contains("FAIL"), "{}", table.stdout);

    // The same, as JSON.
    let json = nightjar(
        p,
        &[
            "contract",
            "check",
            contract,
            "--table",
            "raw.orders",
            "--ds",
            DS,
            "--json",
        ],
    );
    assert_eq!(json.code, 0, "{}", json.stderr);
    let report: Value = serde_json::from_str(&json.stdout).expect("json report");
    assert_eq!(report["table"], "raw.orders");
    assert_eq!(report["rows"], 6);
    assert_eq!(report["contract_version"], "2.1.0");
    let results = report["results"].as_array().expect("results");
    assert_eq!(results.len(), RULES.len());
    assert!(results.iter().all(|r| r["passed"] == true));

    // Without `--ds` freshness is measured today: data of May 2025 is stale now.
    let today = nightjar(
        p,
        &[
            "contract",
            "check",
            contract,
            "--table",
            "raw.orders",
            "--json",
        ],
    );
    assert_eq!(today.code, 3, "{}", today.stderr);
    let report: Value = serde_json::from_str(&today.stdout).expect("json report");
    assert_eq!(
        failed_rules(&serde_json::json!({ "report": report })),
        vec!["orders.created_at.freshness"]
    );

    // A Parquet file (the export) passes; a CSV file with an amount out of range does not.
    let parquet = nightjar(
        p,
        &[
            "contract",
            "check",
            contract,
            "--data",
            "out/orders.parquet",
            "--ds",
            DS,
            "--json",
        ],
    );
    assert_eq!(parquet.code, 0, "{}", parquet.stderr);
    let report: Value = serde_json::from_str(&parquet.stdout).expect("json report");
    assert_eq!(report["rows"], 6);
    assert!(
        report["results"]
            .as_array()
            .expect("results")
            .iter()
            .all(|r| r["passed"] == true),
        "{report:#}"
    );

    let bad = nightjar(
        p,
        &[
            "contract",
            "check",
            contract,
            "--data",
            "data/bad.csv",
            "--ds",
            DS,
        ],
    );
    assert_eq!(bad.code, 3, "{}", bad.stderr);
    let line = bad
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("orders.amount.range"))
        .unwrap_or_else(|| panic!("no row for the range rule:\n{}", bad.stdout));
    assert_eq!(
        line.split_whitespace().collect::<Vec<_>>(),
        vec!["orders.amount.range", "amount", "1", "=", "0", "FAIL"]
    );
    assert!(bad.stdout.contains("9/10 rules passed"), "{}", bad.stdout);
    assert!(bad.stdout.contains("\"amount\":1000.01"), "{}", bad.stdout);
    let bad_json = nightjar(
        p,
        &[
            "contract",
            "check",
            contract,
            "--data",
            "data/bad.csv",
            "--ds",
            DS,
            "--json",
        ],
    );
    assert_eq!(bad_json.code, 3);
    let report: Value = serde_json::from_str(&bad_json.stdout).expect("json report");
    assert_eq!(
        failed_rules(&serde_json::json!({ "report": report })),
        vec!["orders.amount.range"]
    );
    assert_eq!(report["results"][5]["observed"], 1.0);

    // Usage errors: exit 2.
    let missing = nightjar(
        p,
        &[
            "contract",
            "check",
            "contracts/nope.yaml",
            "--table",
            "raw.orders",
        ],
    );
    assert_eq!(missing.code, 2, "{}", missing.stderr);
    assert!(
        missing
            .stderr
            .contains("cannot read contract `contracts/nope.yaml`"),
        "{}",
        missing.stderr
    );
    let no_table = nightjar(p, &["contract", "check", contract, "--table", "raw.nope"]);
    assert_eq!(no_table.code, 2, "{}", no_table.stderr);
    let neither = nightjar(p, &["contract", "check", contract]);
    assert_eq!(neither.code, 2, "{}", neither.stderr);
    // Nothing was written by any check.
    assert_eq!(delta_versions(&p.join("warehouse"), "raw.orders"), vec![0]);
}

/// `line:column` (1-based) of the first occurrence of `needle` in `text`.
fn position(text: &str, needle: &str) -> String {
    let (line, found) = text
        .lines()
        .enumerate()
        .find_map(|(i, l)| l.find(needle).map(|c| (i + 1, c + 1)))
        .unwrap_or_else(|| panic!("no {needle:?} in the text"));
    format!("{line}:{found}")
}

/// `nightjar validate` on the orders project with `contract` and `pipeline` edited.
fn validate(contract: &str, pipeline: &str) -> (tempfile::TempDir, Out) {
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("contracts/orders.yaml", contract),
        ("pipelines/p.yaml", pipeline),
        ("data/orders.csv", &csv(&GOOD_ROWS)),
    ]);
    let out = nightjar(dir.path(), &["validate"]);
    (dir, out)
}

#[test]
fn unknown_metric_in_a_contract_is_a_validation_error() {
    let contract = CONTRACT.replace("metric: missingValues", "metric: missingValue");
    assert_ne!(contract, CONTRACT);
    let (dir, out) = validate(&contract, PIPELINE);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let at = position(&contract, "missingValue");
    assert!(
        out.stderr.contains(&format!("contracts/orders.yaml:{at}")),
        "{at}: {}",
        out.stderr
    );
    insta::assert_snapshot!("contract_unknown_metric", out.normalized(dir.path()));

    // `run` refuses too, before anything runs.
    let run = nightjar(dir.path(), &["run", "p", "--ds", DS]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(!dir.path().join("warehouse").exists());
}

#[test]
fn unknown_column_in_a_contract_is_a_validation_error() {
    let contract = CONTRACT.replace("element: orders.created_at", "element: orders.created");
    assert_ne!(contract, CONTRACT);
    let (_dir, out) = validate(&contract, PIPELINE);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let at = position(&contract, "orders.created");
    assert!(
        out.stderr.contains(&format!("contracts/orders.yaml:{at}")),
        "{at}: {}",
        out.stderr
    );
    assert!(out.stderr.contains("created"), "{}", out.stderr);

    let contract = CONTRACT.replace(
        "      - metric: rowCount\n        mustBeGreaterOrEqualTo: 5\n",
        "      - metric: duplicateValues\n        arguments:\n          properties: [order_id, emial]\n        mustBe: 0\n",
    );
    assert_ne!(contract, CONTRACT);
    let (_dir, out) = validate(&contract, PIPELINE);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let at = position(&contract, "emial");
    assert!(
        out.stderr.contains(&format!("contracts/orders.yaml:{at}")),
        "{at}: {}",
        out.stderr
    );
    assert!(out.stderr.contains("emial"), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("expected one of `order_id`, `email`, `status`, `amount`, `created_at`"),
        "{}",
        out.stderr
    );
}

#[test]
fn bad_contract_bindings_are_validation_errors() {
    // A missing file, with a suggestion.
    let pipeline = PIPELINE.replace("contracts/orders.yaml", "contracts/order.yaml");
    let (_dir, out) = validate(CONTRACT, &pipeline);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("pipelines/p.yaml:9:15"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("no contract file `contracts/order.yaml`"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("did you mean `contracts/orders.yaml`?"),
        "{}",
        out.stderr
    );

    // `max_quarantined` without `on_violation: quarantine`.
    let pipeline = PIPELINE.replace(
        "    contract: contracts/orders.yaml\n",
        "    contract:\n      path: contracts/orders.yaml\n      max_quarantined: 5%\n",
    );
    let (_dir, out) = validate(CONTRACT, &pipeline);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("pipelines/p.yaml:11:24"),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr
            .contains("`max_quarantined` needs `on_violation: quarantine`"),
        "{}",
        out.stderr
    );

    // A table the contract has no object for, a task that writes no table, and a `contract`
    // task without a contract: all reported in one pass.
    let two_objects = CONTRACT.replace(
        "slaProperties:",
        "  - name: refunds\n    physicalName: raw.refunds\n    properties:\n      - name: refund_id\n        logicalType: integer\nslaProperties:",
    );
    assert_ne!(two_objects, CONTRACT);
    let pipeline = "version: 1
tasks:
  - id: load
    kind: ingest
    source: data/orders.csv
    format: csv
    output: raw.customers
    contract: contracts/orders.yaml
  - id: out
    kind: export
    table: raw.customers
    target: out/c.csv
    format: csv
    contract: contracts/orders.yaml
";
    let (_dir, out) = validate(&two_objects, pipeline);
    assert_eq!(out.code, 2, "{}", out.stderr);
    for needle in [
        "pipelines/p.yaml:8:15",
        "contract `contracts/orders.yaml` has no schema object for `raw.customers`",
        "its objects are orders, refunds",
        "pipelines/p.yaml:14:15",
        "task `out` writes no table for its contract to check",
        "2 problems found",
    ] {
        assert!(
            out.stderr.contains(needle),
            "{needle:?} in:\n{}",
            out.stderr
        );
    }
    let pipeline = format!("{PIPELINE}  - id: check\n    kind: contract\n    table: raw.orders\n");
    let (_dir, out) = validate(CONTRACT, &pipeline);
    assert_eq!(out.code, 2, "{}", out.stderr);
    for needle in [
        "pipelines/p.yaml:15:11",
        "a `contract` task needs `contract:`",
        "1 problem found",
    ] {
        assert!(
            out.stderr.contains(needle),
            "{needle:?} in:\n{}",
            out.stderr
        );
    }
}

/// A multi-table task: one violating table stops them all, so no half of the task's output
/// is published (customers without their events).
#[test]
fn a_violation_in_one_synthetic_table_publishes_none_of_them() {
    let contract = "apiVersion: v3.1.0
kind: DataContract
id: synth-test
version: 1.0.0
status: active
schema:
  - name: customers
    physicalName: raw.customers
    quality:
      - metric: rowCount
        mustBeGreaterThan: 0
  - name: events
    physicalName: raw.events
    quality:
      - id: too_many_events_expected
        metric: rowCount
        mustBeGreaterThan: 1000000000
";
    let pipeline = "version: 1
tasks:
  - id: generate
    kind: synthetic
    customers: 20
    days: 10
    ground_truth: false
    contract: contracts/synth.yaml
";
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", pipeline),
        ("contracts/synth.yaml", contract),
    ]);
    let out = nightjar(dir.path(), &["run", "p", "--ds", DS]);
    assert_eq!(out.code, 3, "{}", out.stderr);
    assert!(
        out.stderr.contains("rule `too_many_events_expected`"),
        "{}",
        out.stderr
    );
    let wh = dir.path().join("warehouse");
    for table in ["raw.customers", "raw.events", "raw.orders", "raw.campaigns"] {
        assert!(
            delta_versions(&wh, table).is_empty(),
            "{table} was published"
        );
    }
}
