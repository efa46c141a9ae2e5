//! Ingest from files, failures that name the task, file and line, and nothing partial published.

use crate::{PROJECT_YAML, delta_versions, nightjar, project, read_parquet};
use datafusion::arrow::array::Int64Array;

const INGEST_PIPELINE: &str = "version: 1
tasks:
  - id: load
    kind: ingest
    source: data/*.csv
    format: csv
    output: raw.contacts
    schema:
      - { name: contact_id, type: int64 }
      - { name: country, type: string }
      - { name: spend, type: float64 }
  - id: by_country
    kind: sql
    output: staging.by_country
    sql: |
      SELECT country, COUNT(*) AS n, SUM(spend) AS spend
      FROM raw.contacts GROUP BY country
  - id: out
    kind: export
    table: staging.by_country
    target: out/by_country.csv
    format: csv
";

#[test]
fn csv_glob_ingest_checks_schema_and_exports() {
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", INGEST_PIPELINE),
        (
            "data/a.csv",
            "contact_id,country,spend\n1,DE,10.5\n2,FR,3\n",
        ),
        ("data/b.csv", "contact_id,country,spend\n3,DE,1.5\n"),
        ("data/ignored.txt", "not csv"),
    ]);
    let out = nightjar(dir.path(), &["run", "p", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let state: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(state["tasks"][0]["outputs"][0]["rows"], 3);
    let csv = std::fs::read_to_string(dir.path().join("out/by_country.csv")).unwrap();
    let mut lines: Vec<&str> = csv.lines().collect();
    assert_eq!(lines.remove(0), "country,n,spend");
    lines.sort();
    assert_eq!(lines, vec!["DE,2,12.0", "FR,1,3.0"]);
}

#[test]
fn bad_csv_row_names_file_and_line_and_publishes_nothing() {
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", INGEST_PIPELINE),
        ("data/a.csv", "contact_id,country,spend\n1,DE,10.5\n"),
        (
            "data/b.csv",
            "contact_id,country,spend\n3,DE,1.5\n4,FR,lots\n",
        ),
    ]);
    let out = nightjar(dir.path(), &["run", "p"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("task `load` (pipelines/p.yaml:3:5)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("data/b.csv"), "{}", out.stderr);
    assert!(
        out.stderr.contains("at line 3."),
        "line 3 of b.csv holds `lots`: {}",
        out.stderr
    );
    assert!(out.stdout.contains("upstream_failed"), "{}", out.stdout);
    assert!(delta_versions(&dir.path().join("warehouse"), "raw.contacts").is_empty());
    assert!(!dir.path().join("out/by_country.csv").exists());
}

#[test]
fn missing_input_file_and_schema_mismatch_fail_clearly() {
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", INGEST_PIPELINE),
    ]);
    let out = nightjar(dir.path(), &["run", "p"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("no files match `data/*.csv`"),
        "{}",
        out.stderr
    );

    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        (
            "pipelines/p.yaml",
            &INGEST_PIPELINE.replace(
                "    format: csv\n    output",
                "    format: csv\n    has_header: true\n    output",
            ),
        ),
        ("data/a.csv", "contact_id,country\n1,DE\n"),
    ]);
    let out = nightjar(dir.path(), &["run", "p"]);
    assert_eq!(out.code, 1);
    assert!(out.stderr.contains("task `load`"), "{}", out.stderr);
}

#[test]
fn unknown_column_fails_the_task_keeps_the_old_version_and_resume_finishes() {
    let good = "version: 1
tasks:
  - id: base
    kind: sql
    output: s.base
    sql: SELECT 1 AS id, 'a' AS name
  - id: derived
    kind: sql
    output: s.derived
    sql: SELECT id, nmae FROM s.base
  - id: other
    kind: sql
    output: s.other
    sql: SELECT 42 AS answer
";
    let dir = project(&[("nightjar.yaml", PROJECT_YAML), ("pipelines/p.yaml", good)]);
    let out = nightjar(dir.path(), &["run", "p", "--json"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("task `derived` (pipelines/p.yaml:7:5)"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nmae"), "{}", out.stderr);
    let state: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(state["status"], "failed");
    assert_eq!(
        state["tasks"][1]["attempts"], 1,
        "a SQL error is not retried"
    );
    assert_eq!(
        state["tasks"][2]["status"], "succeeded",
        "independent branches finish"
    );
    let wh = dir.path().join("warehouse");
    assert_eq!(delta_versions(&wh, "s.base"), vec![0]);
    assert!(delta_versions(&wh, "s.derived").is_empty());

    // Fix the query and resume: the finished tasks are skipped, only `derived` runs.
    std::fs::write(
        dir.path().join("pipelines/p.yaml"),
        good.replace("nmae", "name"),
    )
    .unwrap();
    let run_id = state["run_id"].as_str().unwrap();
    let resumed = nightjar(dir.path(), &["run", "p", "--resume", run_id, "--json"]);
    assert_eq!(resumed.code, 0, "{}", resumed.stderr);
    let state: serde_json::Value = serde_json::from_str(&resumed.stdout).unwrap();
    assert_eq!(state["run_id"], run_id);
    let statuses: Vec<&str> = state["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, vec!["succeeded", "succeeded", "succeeded"]);
    assert_eq!(
        delta_versions(&wh, "s.base"),
        vec![0],
        "resume did not rewrite `base`"
    );
    assert_eq!(delta_versions(&wh, "s.derived"), vec![0]);

    let show = nightjar(dir.path(), &["runs", "show", run_id]);
    assert_eq!(show.code, 0);
    assert!(
        show.stdout
            .contains("derived wrote s.derived version 0 (1 rows)"),
        "{}",
        show.stdout
    );
}

#[test]
fn sql_param_injection_stays_a_literal() {
    let pipeline = "version: 1
params:
  country: DE
tasks:
  - id: a
    kind: sql
    output: s.a
    sql: SELECT {{ params.country }} AS country
  - id: out
    kind: export
    table: s.a
    target: out/a.parquet
    format: parquet
";
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", pipeline),
    ]);
    let evil = "x' AS country, 1 AS pwned --";
    let out = nightjar(
        dir.path(),
        &["run", "p", "--var", &format!("country={evil}")],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let batches = read_parquet(
        &dir.path().join("out/a.parquet"),
        "SELECT COUNT(*) AS n FROM t WHERE country = 'x'' AS country, 1 AS pwned --'",
    );
    let n = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .unwrap()
        .value(0);
    assert_eq!(n, 1);
    let cols = read_parquet(&dir.path().join("out/a.parquet"), "SELECT * FROM t");
    assert_eq!(cols[0].num_columns(), 1, "no injected column");
}
