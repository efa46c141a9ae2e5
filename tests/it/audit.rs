//! The audit trail end to end: OpenLineage events valid against the official schema, the hash
//! chain's verify on every kind of tampering, concurrent runs, lineage answers, HTTP
//! forwarding to a real loopback server, and secrets kept out of everything a run writes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::{PROJECT_YAML, demo_copy, nightjar, nightjar_env, normalize, project, repo_root};

/// Four tables from SQL and an export: two sources, a union, a summary.
const SMALL_PIPELINE: &str = "version: 1
tasks:
  - id: load_a
    kind: sql
    output: raw.a
    sql: SELECT 1 AS id, 'x' AS label
  - id: load_b
    kind: sql
    output: raw.b
    sql: SELECT 2 AS id, 'y' AS label
  - id: combine
    kind: sql
    output: staging.ab
    sql: SELECT id, label FROM raw.a UNION ALL SELECT id, label FROM raw.b
  - id: summary
    kind: sql
    output: mart.summary
    sql: SELECT count(*) AS n FROM staging.ab
  - id: export_summary
    kind: export
    table: mart.summary
    target: exports/summary.csv
    format: csv
";

/// Events of a run of SMALL_PIPELINE: the pipeline's START and COMPLETE, and two per task.
const SMALL_RUN_EVENTS: usize = 2 + 5 * 2;

fn small_project() -> tempfile::TempDir {
    project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/small.yaml", SMALL_PIPELINE),
    ])
}

fn run_small(dir: &Path) -> Value {
    let out = nightjar(dir, &["run", "small", "--ds", "2025-05-01", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("run state json")
}

pub(crate) fn events(dir: &Path) -> Vec<Value> {
    let out = nightjar(dir, &["audit", "log", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str(&out.stdout).expect("audit log json")
}

/// Validates events with Python's `jsonschema` against tests/fixtures/openlineage (and
/// nightjar's facet schema); returns the validator's exit code and output.
fn validate_openlineage(events: &[Value]) -> (i32, String) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), serde_json::to_vec(events).expect("json")).expect("write");
    let out = std::process::Command::new("python3")
        .arg(repo_root().join("tests/it/validate_openlineage.py"))
        .arg(repo_root())
        .arg(file.path())
        .output()
        .expect("python3 is needed to validate OpenLineage events (with `pip install jsonschema`)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        !text.contains("ModuleNotFoundError"),
        "install Python's jsonschema (`pip install jsonschema`, as .ci/run does): {text}"
    );
    (out.status.code().unwrap_or(-1), text)
}

/// Asserts every event validates; used by other modules too (SIGTERM's ABORT events).
pub fn assert_valid_openlineage(events: &[Value]) {
    let (code, text) = validate_openlineage(events);
    assert_eq!(code, 0, "{text}");
    assert!(
        text.starts_with(&format!("ok: {} events", events.len())),
        "{text}"
    );
}

/// `table.column TYPE SUBTYPE` of each input field of one column in a columnLineage facet.
fn input_fields(lineage: &Value, column: &str) -> Vec<String> {
    lineage["fields"][column]["inputFields"]
        .as_array()
        .unwrap_or_else(|| panic!("no lineage for `{column}`: {lineage}"))
        .iter()
        .map(|i| {
            let t = &i["transformations"][0];
            format!(
                "{}.{} {} {}",
                i["name"].as_str().unwrap(),
                i["field"].as_str().unwrap(),
                t["type"].as_str().unwrap(),
                t["subtype"].as_str().unwrap()
            )
        })
        .collect()
}

fn event_of<'a>(events: &'a [Value], event_type: &str, job: &str) -> &'a Value {
    events
        .iter()
        .find(|e| e["eventType"] == event_type && e["job"]["name"] == job)
        .unwrap_or_else(|| panic!("no {event_type} event of `{job}`"))
}

fn output<'a>(event: &'a Value, name: &str) -> &'a Value {
    event["outputs"]
        .as_array()
        .and_then(|l| l.iter().find(|d| d["name"] == name))
        .unwrap_or_else(|| panic!("no output `{name}`"))
}

#[test]
fn demo_events_validate_against_the_openlineage_schema() {
    let dir = demo_copy();
    let args = [
        "run",
        "marketing_nightly",
        "--ds",
        "2025-05-01",
        "--var",
        "days=60",
        "--var",
        "min_churn_auc=0",
        "--var",
        "min_ltv_r2=-1e9",
    ];
    let ok = nightjar(
        dir.path(),
        &[&args[..], &["--var", "customers=300"]].concat(),
    );
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    // Too few customers for contracts/raw.yaml: the generate task fails on its contract.
    let violated = nightjar(
        dir.path(),
        &[&args[..], &["--var", "customers=50"]].concat(),
    );
    assert_eq!(violated.code, 3, "{}", violated.stderr);

    let events = events(dir.path());
    let mut kinds: Vec<(String, String)> = events
        .iter()
        .map(|e| {
            let job = e["job"]["name"].as_str().unwrap_or_default();
            let kind = if job.contains('.') {
                "task"
            } else {
                "pipeline"
            };
            (
                e["eventType"].as_str().unwrap_or_default().into(),
                kind.into(),
            )
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    let s = |a: &str, b: &str| (a.to_string(), b.to_string());
    assert_eq!(
        kinds,
        vec![
            s("COMPLETE", "pipeline"),
            s("COMPLETE", "task"),
            s("FAIL", "pipeline"),
            s("FAIL", "task"),
            s("START", "pipeline"),
            s("START", "task"),
        ]
    );
    // First run: 2 + 18 tasks × 2; second: 2 + START and FAIL of generate.
    assert_eq!(events.len(), 2 + 18 * 2 + 4);
    assert_valid_openlineage(&events);

    // The mapping, on the first run's COMPLETE of the SQL task that reads three tables.
    let complete = event_of(&events, "COMPLETE", "marketing_nightly.customer_activity");
    assert_eq!(complete["job"]["namespace"], "nightjar_demo");
    assert_eq!(
        complete["schemaURL"],
        "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
    );
    assert_eq!(complete["job"]["facets"]["jobType"]["jobType"], "SQL");
    assert!(
        complete["job"]["facets"]["sql"]["query"]
            .as_str()
            .unwrap()
            .contains("FROM raw.customers c")
    );
    assert_eq!(
        complete["run"]["facets"]["nominalTime"]["nominalStartTime"],
        "2025-05-01T00:00:00.000Z"
    );
    let start = event_of(&events, "START", "marketing_nightly.customer_activity");
    assert_eq!(start["run"]["runId"], complete["run"]["runId"]);
    let pipeline = event_of(&events, "START", "marketing_nightly");
    assert_eq!(
        complete["run"]["facets"]["parent"]["run"]["runId"],
        pipeline["run"]["runId"]
    );
    let inputs: Vec<(&str, i64)> = complete["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| {
            (
                d["name"].as_str().unwrap(),
                d["facets"]["nightjar"]["deltaVersion"].as_i64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        inputs,
        vec![
            ("raw.customers", 0),
            ("staging.orders", 0),
            ("staging.sessions", 0)
        ]
    );
    // Column lineage from the SQL task's plan: a computed column, a copied one, the filter.
    let orders = event_of(&events, "COMPLETE", "marketing_nightly.staging_orders");
    let lineage = &output(orders, "staging.orders")["facets"]["columnLineage"];
    assert_eq!(
        input_fields(lineage, "order_id"),
        ["raw.orders.order_id DIRECT IDENTITY"]
    );
    assert_eq!(
        input_fields(lineage, "order_date"),
        ["raw.orders.order_ts DIRECT TRANSFORMATION"]
    );
    assert_eq!(
        lineage["dataset"],
        serde_json::json!([{
            "namespace": orders["outputs"][0]["namespace"],
            "name": "raw.orders", "field": "returned",
            "transformations": [{"type": "INDIRECT", "subtype": "FILTER"}],
        }])
    );
    // A feature view's lineage: revenue from order amounts (aggregated), tenure from signup.
    let rfm = event_of(&events, "COMPLETE", "marketing_nightly.rfm_features");
    let rfm_lineage = &rfm["outputs"][0]["facets"]["columnLineage"];
    let sources = |name: &str| input_fields(rfm_lineage, name);
    assert_eq!(
        sources("revenue_365d"),
        ["staging.orders.amount DIRECT AGGREGATION"]
    );
    assert_eq!(
        sources("tenure_days"),
        ["raw.customers.signup_date DIRECT TRANSFORMATION"]
    );
    assert_eq!(
        sources("customer_id"),
        ["raw.customers.customer_id DIRECT IDENTITY"]
    );
    let activity = output(complete, "staging.customer_activity");
    let warehouse =
        url::Url::from_directory_path(dir.path().canonicalize().unwrap().join("warehouse"))
            .unwrap()
            .to_string();
    assert_eq!(activity["namespace"], warehouse.trim_end_matches('/'));
    assert_eq!(
        activity["outputFacets"]["outputStatistics"]["rowCount"],
        300
    );
    assert_eq!(
        activity["facets"]["schema"]["fields"][0]["name"],
        "customer_id"
    );

    // The contract results ride on the gated outputs: passed on the first run…
    let generated = event_of(&events, "COMPLETE", "marketing_nightly.generate");
    let customers = output(generated, "raw.customers");
    assert_eq!(
        customers["facets"]["nightjar"]["contracts"][0]["passed"],
        true
    );
    assert_eq!(
        customers["facets"]["nightjar"]["contracts"][0]["path"],
        "contracts/raw.yaml"
    );
    // …and the failed rule on the second run's FAIL, with the error message.
    let failed = event_of(&events, "FAIL", "marketing_nightly.generate");
    assert!(
        failed["run"]["facets"]["errorMessage"]["message"]
            .as_str()
            .unwrap()
            .contains("customers.rowCount")
    );
    let customers = output(failed, "raw.customers");
    let row_count = customers["facets"]["dataQualityAssertions"]["assertions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "customers.rowCount")
        .expect("rowCount assertion");
    assert_eq!(row_count["success"], false);
    assert_eq!(row_count["actual"], "50");
    assert_eq!(
        customers["facets"]["nightjar"]["contracts"][0]["passed"],
        false
    );

    // The chain verifies, and each run state records the head its run reached.
    let verify = nightjar(dir.path(), &["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    assert!(
        verify.stdout.starts_with("ok: audit log intact:"),
        "{}",
        verify.stdout
    );
    let runs: Value =
        serde_json::from_str(&nightjar(dir.path(), &["runs", "list", "--json"]).stdout).unwrap();
    let newest = runs[0]["run_id"].as_str().unwrap();
    let state: Value =
        serde_json::from_str(&nightjar(dir.path(), &["runs", "show", newest, "--json"]).stdout)
            .unwrap();
    assert!(state["audit_head"]["sequence"].as_u64().unwrap() >= 2);

    // The lineage of the demo's activity table, from the first run (the second published nothing).
    let lineage = nightjar(
        dir.path(),
        &[
            "lineage",
            "staging.customer_activity",
            "--format",
            "mermaid",
        ],
    );
    assert_eq!(lineage.code, 0, "{}", lineage.stderr);
    assert_eq!(
        lineage.stdout,
        "flowchart LR
  n0[\"raw.customers v0\"]
  n1[\"raw.events v0\"]
  n2[\"raw.orders v0\"]
  n3[\"staging.customer_activity v0\"]
  n4[\"staging.orders v0\"]
  n5[\"staging.sessions v0\"]
  n0 -->|\"marketing_nightly.customer_activity\"| n3
  n1 -->|\"marketing_nightly.staging_sessions\"| n5
  n2 -->|\"marketing_nightly.staging_orders\"| n4
  n4 -->|\"marketing_nightly.customer_activity\"| n3
  n5 -->|\"marketing_nightly.customer_activity\"| n3
"
    );
}

/// The validator rejects what the schema rejects: the schema test above can fail.
#[test]
fn the_openlineage_validator_rejects_invalid_events() {
    let dir = small_project();
    run_small(dir.path());
    let mut events = events(dir.path());
    assert_valid_openlineage(&events);
    events[1]["run"]["runId"] = "not-a-uuid".into();
    events[2]["job"]
        .as_object_mut()
        .unwrap()
        .remove("namespace");
    events[3]["run"]["facets"]["nightjar"]["unknown"] = 1.into();
    events[4]["eventType"] = "FINISHED".into();
    let (code, text) = validate_openlineage(&events);
    assert_eq!(code, 1, "{text}");
    for needle in [
        "event 1 (",
        "event 2 (",
        "event 3 (",
        "'unknown' was unexpected",
        "event 4 (",
    ] {
        assert!(text.contains(needle), "{needle} not in:\n{text}");
    }
}

#[test]
fn lineage_of_a_small_pipeline_is_exact() {
    let dir = small_project();
    let state = run_small(dir.path());
    let run_id = state["run_id"].as_str().unwrap();

    let up = nightjar(dir.path(), &["lineage", "mart.summary", "--upstream"]);
    assert_eq!(up.code, 0, "{}", up.stderr);
    assert_eq!(
        normalize(&up.stdout, dir.path()),
        "mart.summary v0  [1 rows, by small.summary, run [RUN_ID]]
└── staging.ab v0  [2 rows, by small.combine, run [RUN_ID]]
    ├── raw.a v0  [1 rows, by small.load_a, run [RUN_ID]]
    └── raw.b v0  [1 rows, by small.load_b, run [RUN_ID]]
"
    );

    let depth = nightjar(
        dir.path(),
        &["lineage", "mart.summary", "--depth", "1", "--format", "dot"],
    );
    assert_eq!(
        depth.stdout,
        "digraph lineage {
  rankdir=LR;
  node [shape=box];
  \"mart.summary\" [label=\"mart.summary v0\"];
  \"staging.ab\" [label=\"staging.ab v0\"];
  \"staging.ab\" -> \"mart.summary\" [label=\"small.summary\"];
}
"
    );

    let down = nightjar(dir.path(), &["lineage", "raw.a", "--downstream", "--json"]);
    assert_eq!(down.code, 0, "{}", down.stderr);
    let down: Value = serde_json::from_str(&down.stdout).unwrap();
    assert_eq!(down["direction"], "downstream");
    let edges: Vec<(&str, &str, &str)> = down["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"].as_str().unwrap(),
                e["to"].as_str().unwrap(),
                e["job"].as_str().unwrap(),
            )
        })
        .collect();
    let export = dir
        .path()
        .canonicalize()
        .unwrap()
        .join("exports/summary.csv");
    let export = export.to_str().unwrap();
    assert_eq!(
        edges,
        vec![
            ("mart.summary", export, "small.export_summary"),
            ("raw.a", "staging.ab", "small.combine"),
            ("staging.ab", "mart.summary", "small.summary"),
        ]
    );
    let summary = down["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == "mart.summary")
        .unwrap();
    assert_eq!(summary["run_id"], run_id);
    assert_eq!(summary["version"], 0);
    assert_eq!(summary["rows"], 1);

    let missing = nightjar(dir.path(), &["lineage", "raw.nope"]);
    assert_eq!(missing.code, 2);
    assert!(
        missing
            .stderr
            .contains("no dataset `raw.nope` in the audit log"),
        "{}",
        missing.stderr
    );
}

// ---- tampering ----

fn audit_dir(dir: &Path) -> PathBuf {
    dir.join("warehouse/audit")
}

fn segment_file(dir: &Path, sequence: u64) -> PathBuf {
    audit_dir(dir).join(format!("{sequence:012}.json"))
}

fn read_segment(dir: &Path, sequence: u64) -> nightjar::stores::audit::Segment {
    serde_json::from_slice(&std::fs::read(segment_file(dir, sequence)).expect("segment"))
        .expect("segment json")
}

fn write_segment(dir: &Path, file_sequence: u64, segment: &nightjar::stores::audit::Segment) {
    std::fs::write(
        segment_file(dir, file_sequence),
        serde_json::to_vec_pretty(segment).unwrap(),
    )
    .unwrap();
}

fn last_sequence(dir: &Path) -> u64 {
    (1..)
        .take_while(|&s| segment_file(dir, s).exists())
        .last()
        .unwrap_or(0)
}

/// Runs SMALL_PIPELINE twice, applies `tamper`, and returns verify's exit code and stderr.
fn verify_after(tamper: impl FnOnce(&Path)) -> (i32, String) {
    let dir = small_project();
    run_small(dir.path());
    run_small(dir.path());
    let before = nightjar(dir.path(), &["audit", "verify"]);
    assert_eq!(before.code, 0, "{}", before.stderr);
    tamper(dir.path());
    let after = nightjar(dir.path(), &["audit", "verify"]);
    (after.code, normalize(&after.stderr, dir.path()))
}

fn first_broken_link(stderr: &str) -> &str {
    stderr
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("error: audit log broken; first broken link: "))
        .unwrap_or_else(|| panic!("no broken link reported:\n{stderr}"))
}

#[test]
fn verify_detects_an_edited_event() {
    let (code, stderr) = verify_after(|dir| {
        let mut segment = read_segment(dir, 3);
        segment.events[0]["eventTime"] = "2020-01-01T00:00:00.000Z".into();
        write_segment(dir, 3, &segment);
    });
    assert_eq!(code, 1);
    assert!(
        first_broken_link(&stderr)
            .starts_with("`audit/000000000003.json` was edited: its content hashes to "),
        "{stderr}"
    );
}

#[test]
fn verify_detects_an_event_inserted_into_a_segment() {
    let (code, stderr) = verify_after(|dir| {
        let mut segment = read_segment(dir, 4);
        let copy = segment.events[0].clone();
        segment.events.push(copy);
        write_segment(dir, 4, &segment);
    });
    assert_eq!(code, 1);
    assert!(
        first_broken_link(&stderr).starts_with("`audit/000000000004.json` was edited"),
        "{stderr}"
    );
}

#[test]
fn verify_detects_a_deleted_segment() {
    let (code, stderr) = verify_after(|dir| {
        std::fs::remove_file(segment_file(dir, 5)).unwrap();
    });
    assert_eq!(code, 1);
    assert_eq!(
        first_broken_link(&stderr),
        "`audit/000000000005.json` is missing: segment 5 was deleted"
    );
}

#[test]
fn verify_detects_a_segment_inserted_into_the_chain() {
    let (code, stderr) = verify_after(|dir| {
        // A forged segment 3 that links correctly to segment 2; the old 3.. move up by one.
        for s in (3..=last_sequence(dir)).rev() {
            std::fs::rename(segment_file(dir, s), segment_file(dir, s + 1)).unwrap();
        }
        let mut forged = read_segment(dir, 2);
        forged.sequence = 3;
        forged.previous_hash = forged.hash.clone();
        forged.hash = forged.computed_hash();
        write_segment(dir, 3, &forged);
    });
    assert_eq!(code, 1);
    assert_eq!(
        first_broken_link(&stderr),
        "`audit/000000000004.json` holds segment 3 instead of 4: segments were reordered or one was inserted"
    );
}

#[test]
fn verify_detects_reordered_segments() {
    let (code, stderr) = verify_after(|dir| {
        let (a, b) = (segment_file(dir, 3), segment_file(dir, 4));
        let tmp = audit_dir(dir).join("swap");
        std::fs::rename(&a, &tmp).unwrap();
        std::fs::rename(&b, &a).unwrap();
        std::fs::rename(&tmp, &b).unwrap();
    });
    assert_eq!(code, 1);
    assert_eq!(
        first_broken_link(&stderr),
        "`audit/000000000003.json` holds segment 4 instead of 3: segments were reordered or one was inserted"
    );
}

#[test]
fn verify_detects_truncation_through_the_run_state() {
    let (code, stderr) = verify_after(|dir| {
        // The newest segments and their head records go: only the run state still knows.
        let last = last_sequence(dir);
        for s in [last, last - 1] {
            std::fs::remove_file(segment_file(dir, s)).unwrap();
            let _ = std::fs::remove_file(audit_dir(dir).join(format!("head/{s:012}.json")));
        }
    });
    assert_eq!(code, 1);
    let link = first_broken_link(&stderr);
    assert!(
        link.starts_with("run [RUN_ID] (`runs/small/[RUN_ID].json`) records segment "),
        "{stderr}"
    );
    assert!(link.ends_with(": the log was truncated"), "{stderr}");
}

#[test]
fn verify_detects_a_consistently_rewritten_chain() {
    let (code, stderr) = verify_after(|dir| {
        // Edit segment 2 and recompute every hash after it: the chain itself is consistent.
        let mut previous = read_segment(dir, 1).hash;
        for s in 2..=last_sequence(dir) {
            let mut segment = read_segment(dir, s);
            if s == 2 {
                segment.events[0]["job"]["name"] = "small.forged".into();
            }
            segment.previous_hash = previous;
            segment.hash = segment.computed_hash();
            previous = segment.hash.clone();
            write_segment(dir, s, &segment);
        }
    });
    assert_eq!(code, 1);
    let link = first_broken_link(&stderr);
    assert!(link.starts_with("head `audit/head/0000000000"), "{stderr}");
    assert!(link.ends_with(": the log was rewritten"), "{stderr}");
}

#[test]
fn verify_reports_foreign_objects_and_passes_an_intact_log() {
    let (code, stderr) = verify_after(|dir| {
        std::fs::write(audit_dir(dir).join("000000000099.json.bak"), "{}").unwrap();
    });
    assert_eq!(code, 1);
    assert_eq!(
        first_broken_link(&stderr),
        "`audit/000000000099.json.bak` is not a segment (audit/<12 digits>.json) or a head: inserted?"
    );
}

#[test]
fn the_witness_catches_what_the_storage_root_no_longer_shows() {
    let witness = tempfile::tempdir().unwrap();
    let config = format!(
        "{PROJECT_YAML}audit:\n  witness: {}\n",
        witness.path().display()
    );
    let dir = project(&[
        ("nightjar.yaml", &config),
        ("pipelines/small.yaml", SMALL_PIPELINE),
    ]);
    run_small(dir.path());
    let last = last_sequence(dir.path());
    assert!(
        witness
            .path()
            .join(format!("audit/head/{last:012}.json"))
            .exists()
    );
    // Delete the newest segment, every head under the root and the run states.
    std::fs::remove_file(segment_file(dir.path(), last)).unwrap();
    std::fs::remove_dir_all(audit_dir(dir.path()).join("head")).unwrap();
    std::fs::remove_dir_all(dir.path().join("warehouse/runs")).unwrap();
    let out = nightjar(dir.path(), &["audit", "verify"]);
    assert_eq!(out.code, 1, "{}", out.stdout);
    let witness_url =
        url::Url::from_directory_path(witness.path().canonicalize().unwrap()).unwrap();
    assert_eq!(
        first_broken_link(&out.stderr),
        format!(
            "witness `{witness_url}audit/head/{last:012}.json` records segment {last}, but the chain ends at {}: the log was truncated",
            last - 1
        )
    );
}

// ---- concurrency ----

#[test]
fn concurrent_runs_append_without_gaps_or_duplicates() {
    const RUNS: usize = 4;
    let pipeline = |n: usize| {
        format!(
            "version: 1\ntasks:\n{}",
            (0..3)
                .map(|t| format!(
                    "  - id: t{t}\n    kind: sql\n    output: p{n}.t{t}\n    sql: SELECT {t} AS x\n"
                ))
                .collect::<String>()
        )
    };
    let files: Vec<(String, String)> = (0..RUNS)
        .map(|n| (format!("pipelines/p{n}.yaml"), pipeline(n)))
        .collect();
    let mut all: Vec<(&str, &str)> = vec![("nightjar.yaml", PROJECT_YAML)];
    all.extend(files.iter().map(|(p, t)| (p.as_str(), t.as_str())));
    let dir = project(&all);
    let children: Vec<_> = (0..RUNS)
        .map(|n| {
            std::process::Command::new(env!("CARGO_BIN_EXE_nightjar"))
                .arg("--project")
                .arg(dir.path())
                .args(["run", &format!("p{n}"), "--ds", "2025-05-01"])
                .env_remove("OPENLINEAGE_URL")
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let verify = nightjar(dir.path(), &["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}", verify.stderr);
    let events = events(dir.path());
    // Per run: the pipeline's START and COMPLETE, and START and COMPLETE of three tasks.
    assert_eq!(events.len(), RUNS * 8);
    let mut keys: Vec<(String, String)> = events
        .iter()
        .map(|e| (e["run"]["runId"].to_string(), e["eventType"].to_string()))
        .collect();
    keys.sort();
    keys.dedup();
    assert_eq!(keys.len(), RUNS * 8, "duplicate events");
    let mut per_pipeline = std::collections::BTreeMap::new();
    for e in &events {
        *per_pipeline
            .entry(
                e["run"]["facets"]["nightjar"]["pipeline"]
                    .as_str()
                    .unwrap()
                    .to_string(),
            )
            .or_insert(0) += 1;
    }
    assert_eq!(
        per_pipeline.values().copied().collect::<Vec<_>>(),
        vec![8; RUNS]
    );
    // Segments are numbered 1..=n with no gap (verify checked the links).
    let n = last_sequence(dir.path());
    let files = std::fs::read_dir(audit_dir(dir.path()))
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .path()
                .extension()
                .is_some_and(|x| x == "json")
        })
        .count() as u64;
    assert_eq!(files, n);
}

// ---- forwarding ----

/// A tiny HTTP/1.1 server on loopback: answers `statuses` in turn (then 200), records each
/// request's path and body.
fn lineage_server(statuses: Vec<u16>) -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let received = Arc::new(Mutex::new(Vec::new()));
    let log = received.clone();
    std::thread::spawn(move || {
        let mut statuses = statuses.into_iter();
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { break };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            // One request per connection is enough: reqwest reuses or reopens as needed.
            loop {
                let mut request_line = String::new();
                if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
                    break;
                }
                let path = request_line
                    .split_whitespace()
                    .nth(1)
                    .unwrap_or("")
                    .to_string();
                let mut length = 0;
                loop {
                    let mut header = String::new();
                    reader.read_line(&mut header).unwrap();
                    if header.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = header.split_once(':')
                        && k.eq_ignore_ascii_case("content-length")
                    {
                        length = v.trim().parse().unwrap();
                    }
                }
                let mut body = vec![0; length];
                reader.read_exact(&mut body).unwrap();
                let status = statuses.next().unwrap_or(200);
                if status == 200 {
                    log.lock()
                        .unwrap()
                        .push((path, serde_json::from_slice(&body).unwrap()));
                }
                let reply = format!("HTTP/1.1 {status} X\r\ncontent-length: 0\r\n\r\n");
                if stream.write_all(reply.as_bytes()).is_err() {
                    break;
                }
            }
        }
    });
    (url, received)
}

#[test]
fn events_are_forwarded_over_http_with_retries() {
    let (url, received) = lineage_server(vec![503, 500]);
    let dir = small_project();
    let out = nightjar_env(
        dir.path(),
        &["run", "small", "--ds", "2025-05-01"],
        &[("OPENLINEAGE_URL", &url)],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let local = events(dir.path());
    let received = received.lock().unwrap().clone();
    // Every local event arrived once, in log order, at Marquez's path, despite two errors.
    assert_eq!(received.len(), SMALL_RUN_EVENTS);
    assert!(received.iter().all(|(path, _)| path == "/api/v1/lineage"));
    let bodies: Vec<Value> = received.into_iter().map(|(_, b)| b).collect();
    assert_eq!(bodies, local);
}

#[test]
fn a_dead_endpoint_never_fails_the_run_nor_loses_events() {
    // A port that was just free: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dir = small_project();
    let started = std::time::Instant::now();
    let out = nightjar_env(
        dir.path(),
        &["run", "small", "--ds", "2025-05-01"],
        &[("OPENLINEAGE_URL", &format!("http://127.0.0.1:{port}"))],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("not forwarded (it is in the local audit log)"),
        "{}",
        out.stderr
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    assert_eq!(events(dir.path()).len(), SMALL_RUN_EVENTS);
    assert_eq!(nightjar(dir.path(), &["audit", "verify"]).code, 0);
}

// ---- secrets ----

#[test]
fn an_environment_secret_appears_nowhere_a_run_writes() {
    const SECRET: &str = "nj-test-secret-5f0c1d7e9a";
    let config = PROJECT_YAML.replace(
        "  root: file://./warehouse\n",
        "  root: file://./warehouse\n  options:\n    aws_secret_access_key: { env: NJ_TEST_SECRET }\n",
    );
    let dir = project(&[
        ("nightjar.yaml", &config),
        ("pipelines/small.yaml", SMALL_PIPELINE),
    ]);
    let env = [("NJ_TEST_SECRET", SECRET), ("NIGHTJAR_LOG", "debug")];
    let mut printed = String::new();
    for args in [
        &["run", "small", "--ds", "2025-05-01", "-vv"][..],
        &["audit", "log", "--json"],
        &["audit", "verify", "--json"],
        &["runs", "list", "--json"],
        &["lineage", "mart.summary", "--format", "json"],
    ] {
        let out = nightjar_env(dir.path(), args, &env);
        assert_eq!(out.code, 0, "{args:?}: {}", out.stderr);
        printed.push_str(&out.stdout);
        printed.push_str(&out.stderr);
    }
    assert!(
        printed.contains("small.summary"),
        "the commands printed nothing useful"
    );
    assert!(!printed.contains(SECRET), "the secret was printed");
    let mut files = crate::files_under(&dir.path().join("warehouse"));
    files.extend(crate::files_under(&dir.path().join("exports")));
    assert!(
        files
            .iter()
            .any(|f| f.to_string_lossy().contains("audit/0000"))
    );
    for file in files {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
            "the secret is in {}",
            file.display()
        );
    }
}

/// Upstream lineage ends at the raw files an ingest read, with the size, ETag and
/// modification time the object store gave when they were listed; the events stay valid.
#[test]
fn lineage_reaches_the_source_files_an_ingest_read() {
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        (
            "pipelines/p.yaml",
            "version: 1
tasks:
  - id: load
    kind: ingest
    source: data/*.csv
    format: csv
    output: raw.amounts
  - id: total
    kind: sql
    output: staging.total
    sql: SELECT sum(amount) AS s FROM raw.amounts
",
        ),
        ("data/a.csv", "id,amount\n1,2.5\n2,3.5\n"),
        ("data/b.csv", "id,amount\n3,1.0\n"),
    ]);
    let out = nightjar(dir.path(), &["run", "p", "--ds", "2025-05-01"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let events = events(dir.path());
    assert_valid_openlineage(&events);
    let complete = event_of(&events, "COMPLETE", "p.load");
    let sources: Vec<(&str, u64)> = complete["inputs"]
        .as_array()
        .expect("inputs")
        .iter()
        .map(|d| {
            let facet = &d["facets"]["nightjar"];
            assert!(
                facet["lastModified"]
                    .as_str()
                    .is_some_and(|t| t.ends_with('Z')),
                "{d}"
            );
            assert!(facet["etag"].as_str().is_some_and(|e| !e.is_empty()), "{d}");
            (
                d["name"]
                    .as_str()
                    .expect("name")
                    .rsplit('/')
                    .next()
                    .unwrap(),
                facet["sizeBytes"].as_u64().expect("size"),
            )
        })
        .collect();
    assert_eq!(sources, [("a.csv", 22), ("b.csv", 16)]);

    let lineage = nightjar(
        dir.path(),
        &["lineage", "staging.total", "--upstream", "--format", "json"],
    );
    assert_eq!(lineage.code, 0, "{}", lineage.stderr);
    let graph: Value = serde_json::from_str(&lineage.stdout).expect("json");
    let files: Vec<(String, u64)> = graph["nodes"]
        .as_array()
        .expect("nodes")
        .iter()
        .filter(|n| n["last_modified"].is_string())
        .map(|n| {
            (
                n["name"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                n["size_bytes"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        files,
        [("a.csv".to_string(), 22), ("b.csv".to_string(), 16)]
    );
    let edges: Vec<(String, String)> = graph["edges"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["from"]
                    .as_str()
                    .unwrap()
                    .rsplit('/')
                    .next()
                    .unwrap()
                    .to_string(),
                e["to"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        edges,
        [
            ("a.csv".to_string(), "raw.amounts".to_string()),
            ("b.csv".to_string(), "raw.amounts".to_string()),
            ("raw.amounts".to_string(), "staging.total".to_string()),
        ]
    );
}
