//! The demo project: every pipeline file validates, and the nightly pipeline runs end to end
//! on a tempdir store, idempotently, with resume and `--select`.

use datafusion::arrow::array::{Array, Int64Array};
use serde_json::Value;

use crate::{delta_versions, demo_copy, nightjar, read_parquet, repo_root};

#[test]
fn every_pipeline_file_in_the_repo_validates() {
    let out = nightjar(&repo_root(), &["validate", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let value: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let files: Vec<String> = value["pipelines"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["file"].as_str().unwrap().to_string())
        .collect();
    let mut on_disk: Vec<String> = std::fs::read_dir(repo_root().join("pipelines"))
        .unwrap()
        .flatten()
        .filter(|e| e.path().extension().is_some_and(|x| x == "yaml"))
        .map(|e| format!("pipelines/{}", e.file_name().to_string_lossy()))
        .collect();
    on_disk.sort();
    assert_eq!(files, on_disk);
    assert_eq!(
        value["contracts"],
        serde_json::json!(["contracts/raw.yaml"])
    );
    let views: Vec<&str> = value["feature_views"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        views,
        ["campaign_exposure", "customer_engagement", "customer_rfm"]
    );
}

fn scalar_i64(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> i64 {
    batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("int64")
        .value(0)
}

#[test]
fn demo_pipeline_runs_end_to_end_and_reruns_idempotently() {
    let dir = demo_copy();
    let out = nightjar(
        dir.path(),
        &[
            "run",
            "marketing_nightly",
            "--ds",
            "2025-05-01",
            "--var",
            "customers=300",
            "--var",
            "days=60",
            "--var",
            "min_churn_auc=0",
            "--var",
            "min_ltv_r2=-1e9",
            "--json",
        ],
    );
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let state: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(state["status"], "succeeded");
    let statuses: Vec<&str> = state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["succeeded"; 18]);
    let generate = &state["tasks"][0];
    let customers = generate["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["table"] == "raw.customers")
        .unwrap();
    assert_eq!(customers["rows"], 300);

    // contracts/raw.yaml gated the three raw tables it describes, and every rule passed.
    let checks = generate["checks"].as_array().expect("generate has checks");
    let checked: Vec<&str> = checks
        .iter()
        .map(|c| c["report"]["table"].as_str().unwrap())
        .collect();
    assert_eq!(checked, vec!["raw.customers", "raw.events", "raw.orders"]);
    for check in checks {
        assert_eq!(check["violated"], false);
        assert_eq!(check["report"]["contract_id"], "raw-marketing");
        let failed: Vec<&Value> = check["report"]["results"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| r["passed"] != true)
            .collect();
        assert!(failed.is_empty(), "{failed:#?}");
    }
    assert_eq!(checks[0]["report"]["rows"], 300);

    // The export has one row per customer, and its totals match the staging tables' rows.
    let export = dir
        .path()
        .join("exports/customer_activity_20250501.parquet");
    let n = scalar_i64(&read_parquet(&export, "SELECT COUNT(*) FROM t"));
    assert_eq!(n, 300);
    let distinct = scalar_i64(&read_parquet(
        &export,
        "SELECT COUNT(DISTINCT customer_id) FROM t",
    ));
    assert_eq!(distinct, 300);
    let orders_rows = state["tasks"][1]["outputs"][0]["rows"].as_i64().unwrap();
    let exported_orders = scalar_i64(&read_parquet(
        &export,
        "SELECT CAST(SUM(n_orders) AS BIGINT) FROM t",
    ));
    assert_eq!(
        exported_orders, orders_rows,
        "every staged order is counted once in the activity table"
    );

    let warehouse = dir.path().join("warehouse");
    assert_eq!(delta_versions(&warehouse, "staging.orders"), vec![0]);

    // The three feature views and the churn training set: one row per customer and label
    // snapshot, both label values present, features filled from the views.
    let training = crate::query_table(
        &warehouse,
        "training.churn",
        "SELECT CAST(count(*) AS BIGINT), CAST(count(DISTINCT label_ts) AS BIGINT), \
         CAST(sum(churned) AS BIGINT), CAST(count(orders_90d) AS BIGINT), \
         CAST(count(sessions_28d) AS BIGINT), CAST(count(exposures_30d) AS BIGINT) FROM t",
    );
    let column = |i: usize| {
        training[0]
            .column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("int64")
            .value(0)
    };
    let (rows, snapshots, churned) = (column(0), column(1), column(2));
    assert!(
        rows > 0 && snapshots >= 1,
        "{rows} rows, {snapshots} label snapshots"
    );
    assert!(churned > 0 && churned < rows, "{churned} of {rows} churned");
    assert_eq!(
        (column(3), column(4), column(5)),
        (rows, rows, rows),
        "every row has its features"
    );

    // Resuming a finished run publishes nothing again.
    let run_id = state["run_id"].as_str().unwrap();
    let again = nightjar(
        dir.path(),
        &["run", "marketing_nightly", "--resume", run_id, "--json"],
    );
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(delta_versions(&warehouse, "staging.orders"), vec![0]);
    assert_eq!(delta_versions(&warehouse, "raw.events"), vec![0]);
    let registered = |model: &str| -> Vec<String> {
        let dir = warehouse.join("registry").join(model).join("versions");
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        registered("churn"),
        vec!["1"],
        "a resumed run registers nothing again"
    );

    // A new run overwrites: one new version per table, same row counts (same seed), no duplicates.
    let second = nightjar(
        dir.path(),
        &[
            "run",
            "marketing_nightly",
            "--ds",
            "2025-05-01",
            "--var",
            "customers=300",
            "--var",
            "days=60",
            "--var",
            "min_churn_auc=0",
            "--var",
            "min_ltv_r2=-1e9",
            "--json",
        ],
    );
    assert_eq!(second.code, 0, "{}", second.stderr);
    let second_state: serde_json::Value = serde_json::from_str(&second.stdout).unwrap();
    assert_eq!(
        second_state["tasks"][1]["outputs"][0]["rows"],
        state["tasks"][1]["outputs"][0]["rows"]
    );
    assert_eq!(delta_versions(&warehouse, "staging.orders"), vec![0, 1]);
    // The second run registered version 2 of each model, and the same rows with the same
    // seed gave a byte-identical artefact.
    assert_eq!(registered("churn"), vec!["1", "2"]);
    let artefact = |v: &str| {
        std::fs::read(warehouse.join(format!("registry/churn/versions/{v}/model.json"))).unwrap()
    };
    assert_eq!(artefact("1"), artefact("2"));

    // `runs list` shows both runs, newest first.
    let list = nightjar(dir.path(), &["runs", "list", "--json"]);
    assert_eq!(list.code, 0, "{}", list.stderr);
    let runs: serde_json::Value = serde_json::from_str(&list.stdout).unwrap();
    assert_eq!(runs.as_array().unwrap().len(), 2);
    assert_eq!(runs[0]["run_id"], second_state["run_id"]);
}

#[test]
fn same_seed_same_bytes() {
    let a = demo_copy();
    let b = demo_copy();
    for dir in [&a, &b] {
        let out = nightjar(
            dir.path(),
            &[
                "run",
                "marketing_nightly",
                "--ds",
                "2025-05-01",
                "--var",
                "customers=120",
                "--var",
                "days=30",
                "--select",
                "+export_activity",
                "--select",
                "+churn_training_set",
            ],
        );
        assert_eq!(out.code, 0, "{}", out.stderr);
    }
    let read = |d: &tempfile::TempDir| {
        read_parquet(
            &d.path().join("exports/customer_activity_20250501.parquet"),
            "SELECT * FROM t ORDER BY customer_id",
        )
    };
    let (x, y) = (read(&a), read(&b));
    assert_eq!(x, y);
    let training = |d: &tempfile::TempDir| {
        crate::query_table(
            &d.path().join("warehouse"),
            "training.churn",
            "SELECT * FROM t ORDER BY label_ts, customer_id",
        )
    };
    let (ta, tb) = (training(&a), training(&b));
    assert!(ta.iter().map(|b| b.num_rows()).sum::<usize>() > 0);
    assert_eq!(ta, tb, "same seed, same training set");
    assert!(x.iter().map(|b| b.num_rows()).sum::<usize>() == 120);
    let _ = x[0].column(0).len();
}

#[test]
fn plan_shows_order_and_select() {
    let out = nightjar(
        &repo_root(),
        &[
            "plan",
            "marketing_nightly",
            "--select",
            "customer_activity+",
            "--json",
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["customer_activity", "export_activity"]);
    let out = nightjar(
        &repo_root(),
        &[
            "plan",
            "marketing_nightly",
            "--select",
            "+customer_activity",
            "--json",
        ],
    );
    let plan: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let ids: Vec<&str> = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        vec![
            "generate",
            "staging_orders",
            "staging_sessions",
            "customer_activity"
        ]
    );
    let reads = &plan["tasks"][3]["reads"];
    assert_eq!(
        reads,
        &serde_json::json!(["raw.customers", "staging.orders", "staging.sessions"])
    );
}

/// SIGTERM (what a scheduler or Kubernetes sends) cancels the running task, records the run as
/// cancelled and publishes nothing.
#[test]
fn sigterm_cancels_the_run_and_publishes_nothing() {
    use std::process::{Command, Stdio};
    let pipeline = "version: 1
tasks:
  - id: generate
    kind: synthetic
    customers: 400000
    days: 60
    ground_truth: false
";
    let dir = crate::project(&[
        ("nightjar.yaml", crate::PROJECT_YAML),
        ("pipelines/p.yaml", pipeline),
    ]);
    let child = Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .arg("--project")
        .arg(dir.path())
        .args(["run", "p", "--ds", "2025-03-01", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    let runs_dir = dir.path().join("warehouse/runs/p");
    crate::sigterm_once_running(&child, &runs_dir);
    let output = child.wait_with_output().expect("wait");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted"), "{stderr}");
    let state: serde_json::Value = serde_json::from_slice(&output.stdout).expect("run state json");
    assert_eq!(state["status"], "cancelled");
    assert_eq!(state["tasks"][0]["status"], "cancelled");
    let wh = dir.path().join("warehouse");
    assert!(
        crate::delta_versions(&wh, "raw.events").is_empty(),
        "a cancelled task published"
    );

    // The saved state agrees (resume after a failure is covered in ingest_export.rs).
    let run_id = state["run_id"].as_str().expect("run id").to_string();
    let saved =
        std::fs::read_to_string(runs_dir.join(format!("{run_id}.json"))).expect("saved state");
    let saved: serde_json::Value = serde_json::from_str(&saved).expect("json");
    assert_eq!(saved["status"], "cancelled");
    assert_eq!(saved["tasks"][0]["status"], "cancelled");

    // The audit log says so too: the task and the run were aborted, in valid OpenLineage.
    let log = nightjar(dir.path(), &["audit", "log", "--json"]);
    let events: Vec<serde_json::Value> = serde_json::from_str(&log.stdout).expect("events");
    let kinds: Vec<(&str, &str)> = events
        .iter()
        .map(|e| {
            (
                e["eventType"].as_str().unwrap_or_default(),
                e["job"]["name"].as_str().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("START", "p"),
            ("START", "p.generate"),
            ("ABORT", "p.generate"),
            ("ABORT", "p")
        ]
    );
    crate::audit::assert_valid_openlineage(&events);
}
