//! The bad-input corpus: one test per hostile or degenerate input, each named after its case.
//! Every case gets a clear error (or a defined result) and its designed exit code, never a
//! panic, and never a partially published table.

use std::path::Path;

use crate::{Out, PROJECT_YAML, delta_versions, nightjar, project};

/// Asserts the designed exit code, no panic, and that stderr names what went wrong.
fn expect(out: &Out, code: i32, needles: &[&str]) {
    assert!(
        !out.stderr.contains("panicked"),
        "a panic is never an answer:\n{}",
        out.stderr
    );
    assert_eq!(
        out.code, code,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    for needle in needles {
        assert!(
            out.stderr.contains(needle),
            "missing {needle:?} in:\n{}",
            out.stderr
        );
    }
}

fn pipeline_project(pipeline: &str) -> tempfile::TempDir {
    project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", pipeline),
    ])
}

fn validate(pipeline: &str) -> Out {
    let dir = pipeline_project(pipeline);
    nightjar(dir.path(), &["validate"])
}

/// Nothing at all was published under the warehouse (no table has a Delta version).
fn assert_nothing_published(dir: &Path, tables: &[&str]) {
    let warehouse = dir.join("warehouse");
    for table in tables {
        assert_eq!(
            delta_versions(&warehouse, table),
            Vec::<u64>::new(),
            "{table} was published"
        );
    }
}

#[test]
fn malformed_yaml() {
    let out = validate("version: 1\ntasks:\n  - id: a\n    kind: sql\n    sql: [unclosed, \n");
    expect(&out, 2, &["pipelines/p.yaml:"]);
}

/// Found by the fuzz targets (fuzz/regressions/*-bare-cr): YAML reads a lone CR as a line
/// break, so the reported line must be the one shown, not a line past the LF-counted end.
#[test]
fn bare_cr_line_endings() {
    let out = validate(
        "version: 1\rtasks:\r  - id: a\r    kind: sql\r    retires: 3\r    output: s.a\r    sql: SELECT 1 AS x\r",
    );
    expect(
        &out,
        2,
        &["pipelines/p.yaml:5:5", "5 |     retires: 3", "^^^^^^^"],
    );
}

#[test]
fn crlf_line_endings() {
    let pipeline = "version: 1\r\ntasks:\r\n  - id: a\r\n    kind: sql\r\n    output: s.a\r\n    sql: SELECT 1 AS x\r\n";
    expect(&validate(pipeline), 0, &[]);
    let bad = pipeline.replace("kind: sql", "kind: sql\r\n    retires: 3");
    expect(
        &validate(&bad),
        2,
        &["pipelines/p.yaml:5:5", "5 |     retires: 3"],
    );
}

/// A view's SQL saved with CR or CRLF endings: DataFusion's parser counts lines by LF, so the
/// file is read with its line breaks made LF and a parse error names the line the editor shows.
#[test]
fn sql_file_with_cr_line_endings() {
    for eol in ["\r", "\r\n"] {
        let sql = [
            "SELECT customer_id,",
            "  {{ as_of }} AS feature_ts,",
            "  1.0 AS value FROM FROM raw.customers",
            "",
        ]
        .join(eol);
        let dir = view_project(&sql);
        let out = nightjar(dir.path(), &["validate"]);
        expect(&out, 2, &["features/odd_view.sql:3:"]);
    }
}

#[test]
fn deeply_nested_yaml() {
    let deep = format!(
        "version: 1\ntasks: {}{}\n",
        "[".repeat(100_000),
        "]".repeat(100_000)
    );
    let out = validate(&deep);
    // yaml-rust2's scanner limits flow nesting itself, at the bracket that goes too deep.
    expect(
        &out,
        2,
        &["pipelines/p.yaml:2:", "recursion limit exceeded"],
    );
}

#[test]
fn deeply_nested_yaml_mappings() {
    let mut deep = String::from(
        "version: 1\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT 1 AS x\n    description:\n",
    );
    for level in 0..5_000 {
        deep.push_str(&" ".repeat(6 + level));
        deep.push_str("k:\n");
    }
    let out = validate(&deep);
    expect(&out, 2, &["pipelines/p.yaml:", "nesting deeper than"]);
}

#[test]
fn huge_yaml() {
    // 16 MiB of description, then a typo: the error still points at its exact line.
    let pipeline = format!(
        "version: 1\ndescription: {}\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    retires: 1\n    sql: SELECT 1 AS x\n",
        "x".repeat(16 << 20)
    );
    let out = validate(&pipeline);
    expect(
        &out,
        2,
        &["pipelines/p.yaml:7:5", "unknown field `retires`"],
    );
}

#[test]
fn huge_yaml_with_thousands_of_tasks() {
    let mut pipeline = String::from("version: 1\ntasks:\n");
    for i in 0..3_000 {
        pipeline.push_str(&format!(
            "  - id: t{i}\n    kind: sql\n    output: s.t{i}\n    sql: SELECT {i} AS x\n"
        ));
    }
    pipeline.push_str("  - id: t0\n    kind: sql\n    output: s.dup\n    sql: SELECT 1 AS x\n");
    let out = validate(&pipeline);
    expect(&out, 2, &["duplicate task id `t0`"]);
}

#[test]
fn unicode_names() {
    let out = validate(
        "version: 1\ntasks:\n  - id: données\n    kind: sql\n    output: raw.café\n    sql: SELECT 1 AS x\n",
    );
    expect(&out, 2, &["task id `données` is not valid", "`raw.café`"]);
}

#[test]
fn unicode_in_descriptions_and_values_is_fine() {
    let dir = pipeline_project(
        "version: 1\ndescription: Übersicht 日本語 🐦\ntasks:\n  - id: a\n    kind: sql\n    description: ça va\n    output: s.a\n    sql: SELECT 'naïve 🐦' AS label\n",
    );
    let out = nightjar(dir.path(), &["run", "p", "--json"]);
    expect(&out, 0, &[]);
    let rows = crate::query_table(&dir.path().join("warehouse"), "s.a", "SELECT label FROM t");
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string();
    assert!(text.contains("naïve 🐦"), "{text}");
}

#[test]
fn path_traversal_in_table_names() {
    let out = validate(
        "version: 1\ntasks:\n  - id: a\n    kind: sql\n    output: ../../etc.passwd\n    sql: SELECT 1 AS x\n",
    );
    expect(&out, 2, &["pipelines/p.yaml:5:", "`../../etc.passwd`"]);
}

#[test]
fn path_traversal_in_feature_view_names() {
    let out =
        validate("version: 1\ntasks:\n  - id: a\n    kind: features\n    view: ../../outside\n");
    expect(&out, 2, &["pipelines/p.yaml:5:", "../../outside"]);
}

#[test]
fn path_traversal_in_pipeline_names() {
    let dir = pipeline_project(
        "version: 1\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT 1 AS x\n",
    );
    let out = nightjar(dir.path(), &["run", "../../etc/passwd"]);
    expect(&out, 2, &["../../etc/passwd"]);
    assert!(
        !dir.path().join("warehouse/runs").exists()
            || walk_count(&dir.path().join("warehouse/runs")) == 0
    );
}

#[test]
fn path_traversal_in_resume_run_ids() {
    let dir = pipeline_project(
        "version: 1\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT 1 AS x\n",
    );
    // A run state planted outside runs/p/ must not be reachable through `..` in a run id.
    std::fs::create_dir_all(dir.path().join("warehouse")).unwrap();
    std::fs::write(dir.path().join("warehouse/planted.json"), "{}").unwrap();
    let out = nightjar(dir.path(), &["run", "p", "--resume", "../../planted"]);
    expect(&out, 2, &["no run `../../planted` of pipeline `p`"]);
}

#[test]
fn sql_metacharacters_in_names() {
    let out = validate(
        "version: 1\ntasks:\n  - id: \"a'; DROP TABLE x; --\"\n    kind: sql\n    output: \"s.a; DROP TABLE s.b\"\n    sql: SELECT 1 AS x\n",
    );
    expect(
        &out,
        2,
        &[
            "task id `a'; DROP TABLE x; --` is not valid",
            "`s.a; DROP TABLE s.b`",
        ],
    );
}

#[test]
fn template_injection_through_var() {
    let dir = pipeline_project(
        "version: 1\nparams:\n  who: nobody\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT {{ params.who }} AS who, 1 AS n\n",
    );
    let hostile = "x' AS who, 2 AS n UNION ALL SELECT '{{ ds }}";
    let out = nightjar(
        dir.path(),
        &["run", "p", "--var", &format!("who={hostile}"), "--json"],
    );
    expect(&out, 0, &[]);
    // One row, holding the value verbatim: neither the SQL nor the template was changed.
    let rows = crate::query_table(
        &dir.path().join("warehouse"),
        "s.a",
        "SELECT who, CAST(n AS BIGINT) AS n FROM t",
    );
    assert_eq!(rows.iter().map(|b| b.num_rows()).sum::<usize>(), 1);
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string();
    assert!(text.contains(hostile), "{text}");
}

#[test]
fn template_injection_through_var_into_a_path() {
    let dir = pipeline_project(
        "version: 1\nparams:\n  name: out\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT 1 AS x\n  - id: e\n    kind: export\n    table: s.a\n    target: exports/{{ params.name }}.csv\n    format: csv\n",
    );
    let out = nightjar(dir.path(), &["run", "p", "--var", "name=../../../escaped"]);
    // Refused before anything runs: the rendered path may not leave the project.
    expect(
        &out,
        2,
        &["`exports/../../../escaped.csv` must not contain `..`"],
    );
    assert!(!dir.path().join("../../escaped.csv").exists());
    assert_nothing_published(dir.path(), &["s.a"]);
}

const INGEST: &str = "version: 1
tasks:
  - id: load
    kind: ingest
    source: data/*.{ext}
    format: {ext}
    output: raw.contacts
";

const INGEST_WITH_SCHEMA: &str = "version: 1
tasks:
  - id: load
    kind: ingest
    source: data/*.csv
    format: csv
    output: raw.contacts
    schema:
      - { name: contact_id, type: int64 }
      - { name: country, type: string }
";

fn ingest_project(ext: &str, files: &[(&str, &[u8])]) -> tempfile::TempDir {
    let dir = pipeline_project(&INGEST.replace("{ext}", ext));
    for (name, bytes) in files {
        let path = dir.path().join("data").join(name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    }
    dir
}

#[test]
fn corrupt_parquet_ingest() {
    let mut bytes = b"PAR1".to_vec();
    bytes.extend(std::iter::repeat_n(0xA5u8, 300));
    bytes.extend(b"PAR1");
    let dir = ingest_project("parquet", &[("broken.parquet", &bytes)]);
    let out = nightjar(dir.path(), &["run", "p"]);
    // The footer length (0xA5A5A5A5) does not fit in the file: refused before the parquet
    // crate reads it (it panicked on this once).
    expect(
        &out,
        1,
        &["task `load`", "broken.parquet", "corrupt Parquet file"],
    );
    assert_nothing_published(dir.path(), &["raw.contacts"]);
}

#[test]
fn truncated_parquet_ingest() {
    let dir = ingest_project("parquet", &[("cut.parquet", b"PAR1\x15\x04")]);
    let out = nightjar(dir.path(), &["run", "p"]);
    expect(&out, 1, &["task `load`", "cut.parquet"]);
    assert_nothing_published(dir.path(), &["raw.contacts"]);
}

#[test]
fn csv_with_ragged_rows() {
    let dir = ingest_project(
        "csv",
        &[(
            "ragged.csv",
            b"contact_id,country\n1,DE\n2,FR,extra,fields\n3\n",
        )],
    );
    let out = nightjar(dir.path(), &["run", "p"]);
    expect(&out, 1, &["task `load`", "ragged.csv"]);
    assert_nothing_published(dir.path(), &["raw.contacts"]);
}

#[test]
fn csv_with_bad_encoding() {
    let dir = pipeline_project(INGEST_WITH_SCHEMA);
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(
        dir.path().join("data/latin1.csv"),
        b"contact_id,country\n1,DE\n2,Espa\xF1a\n3,\xFF\xFE\n",
    )
    .unwrap();
    let out = nightjar(dir.path(), &["run", "p"]);
    expect(&out, 1, &["task `load`", "latin1.csv"]);
    assert_nothing_published(dir.path(), &["raw.contacts"]);
}

#[test]
fn empty_table() {
    // A header and no rows is a valid, empty batch: published as an empty version.
    let dir = pipeline_project(&format!(
        "{INGEST_WITH_SCHEMA}  - id: count\n    kind: sql\n    output: s.count\n    sql: SELECT COUNT(*) AS n FROM raw.contacts\n"
    ));
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    std::fs::write(dir.path().join("data/empty.csv"), "contact_id,country\n").unwrap();
    let out = nightjar(dir.path(), &["run", "p", "--json"]);
    expect(&out, 0, &[]);
    let state: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(state["tasks"][0]["outputs"][0]["rows"], 0);
    let rows = crate::query_table(
        &dir.path().join("warehouse"),
        "s.count",
        "SELECT CAST(n AS BIGINT) FROM t",
    );
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string();
    assert!(text.contains("| 0 "), "{text}");
}

#[test]
fn empty_source_glob() {
    let dir = pipeline_project(INGEST_WITH_SCHEMA);
    std::fs::create_dir_all(dir.path().join("data")).unwrap();
    let out = nightjar(dir.path(), &["run", "p"]);
    expect(&out, 1, &["task `load`", "data/*.csv"]);
    assert_nothing_published(dir.path(), &["raw.contacts"]);
}

#[test]
fn all_null_columns() {
    let dir = pipeline_project(
        "version: 1\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT CAST(NULL AS BIGINT) AS n, CAST(NULL AS VARCHAR) AS s FROM (VALUES (1), (2)) AS v(x)\n",
    );
    let out = nightjar(dir.path(), &["run", "p", "--json"]);
    expect(&out, 0, &[]);
    let rows = crate::query_table(
        &dir.path().join("warehouse"),
        "s.a",
        "SELECT CAST(COUNT(*) AS BIGINT), CAST(COUNT(n) AS BIGINT), CAST(COUNT(s) AS BIGINT) FROM t",
    );
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string();
    assert!(text.contains("| 2 "), "{text}");
}

#[test]
fn untyped_null_column() {
    // `NULL` alone has Arrow type Null: published as such, and it reads back as nulls.
    let dir = pipeline_project(
        "version: 1\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT NULL AS nothing\n",
    );
    let out = nightjar(dir.path(), &["run", "p", "--json"]);
    expect(&out, 0, &[]);
    let rows = crate::query_table(
        &dir.path().join("warehouse"),
        "s.a",
        "SELECT CAST(COUNT(*) AS BIGINT), CAST(COUNT(nothing) AS BIGINT) FROM t",
    );
    assert_eq!(
        (crate::i64_column(&rows, 0), crate::i64_column(&rows, 1)),
        (vec![Some(1)], vec![Some(0)])
    );
}

#[test]
fn nan_and_inf() {
    let dir = pipeline_project(
        "version: 1\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT * FROM (VALUES (CAST('NaN' AS DOUBLE)), (CAST('inf' AS DOUBLE)), (CAST('-inf' AS DOUBLE)), (1.5)) AS v(x)\n",
    );
    let out = nightjar(dir.path(), &["run", "p", "--json"]);
    expect(&out, 0, &[]);
    let rows = crate::query_table(
        &dir.path().join("warehouse"),
        "s.a",
        "SELECT CAST(COUNT(*) AS BIGINT), CAST(SUM(CASE WHEN isnan(x) THEN 1 ELSE 0 END) AS BIGINT), CAST(SUM(CASE WHEN x = CAST('inf' AS DOUBLE) OR x = CAST('-inf' AS DOUBLE) THEN 1 ELSE 0 END) AS BIGINT) FROM t",
    );
    let text = datafusion::arrow::util::pretty::pretty_format_batches(&rows)
        .unwrap()
        .to_string();
    assert!(
        text.contains("| 4 ") && text.contains("| 1 ") && text.contains("| 2 "),
        "{text}"
    );
}

const VIEW_PIPELINE: &str = "version: 1
tasks:
  - id: generate
    kind: synthetic
    customers: 30
    days: 20
    end_date: \"{{ ds }}\"
    ground_truth: false
  - id: v
    kind: features
    view: odd_view
";

const VIEW_YAML: &str = "description: A hostile view.
entity: customer_id
timestamp: feature_ts
ttl: 8d
snapshots: { every: 7d, history: 14d }
features:
  - name: value
";

fn view_project(sql: &str) -> tempfile::TempDir {
    project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", VIEW_PIPELINE),
        ("features/odd_view.yaml", VIEW_YAML),
        ("features/odd_view.sql", sql),
    ])
}

fn feature_versions(dir: &Path) -> usize {
    walk_count(&dir.join("warehouse/features"))
}

fn walk_count(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        walk_count(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn duplicate_entity_keys_in_a_feature_view() {
    let dir = view_project(
        "SELECT customer_id, {{ as_of }} AS feature_ts, 1.0 AS value FROM raw.customers\nUNION ALL\nSELECT customer_id, {{ as_of }} AS feature_ts, 2.0 AS value FROM raw.customers\n",
    );
    let out = nightjar(dir.path(), &["run", "p", "--ds", "2025-03-01"]);
    expect(&out, 1, &["task `v`", "customer_id"]);
    assert_eq!(feature_versions(dir.path()), 0, "no snapshot was published");
}

#[test]
fn nan_and_inf_features() {
    // Statistics over NaN and infinity (quantiles, mean, stddev) must not panic.
    let dir = view_project(
        "SELECT customer_id, {{ as_of }} AS feature_ts,\n  CASE customer_id % 3 WHEN 0 THEN CAST('NaN' AS DOUBLE) WHEN 1 THEN CAST('inf' AS DOUBLE) ELSE CAST(customer_id AS DOUBLE) END AS value\nFROM raw.customers\n",
    );
    let out = nightjar(dir.path(), &["run", "p", "--ds", "2025-03-01", "--json"]);
    expect(&out, 0, &[]);
    assert!(feature_versions(dir.path()) > 0);
}

#[test]
fn all_null_feature_column() {
    let dir = view_project(
        "SELECT customer_id, {{ as_of }} AS feature_ts, CAST(NULL AS DOUBLE) AS value FROM raw.customers\n",
    );
    let out = nightjar(dir.path(), &["run", "p", "--ds", "2025-03-01", "--json"]);
    expect(&out, 0, &[]);
    let show = nightjar(dir.path(), &["features", "show", "odd_view", "--json"]);
    expect(&show, 0, &[]);
}

#[test]
fn zero_row_training_set() {
    let pipeline = format!(
        "{VIEW_PIPELINE}  - id: t\n    kind: training_set\n    output: training.none\n    label_timestamp: label_ts\n    labels: SELECT customer_id, CAST(NULL AS TIMESTAMP) AS label_ts, 1 AS label FROM raw.customers WHERE false\n    features: [odd_view]\n"
    );
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", pipeline.as_str()),
        ("features/odd_view.yaml", VIEW_YAML),
        (
            "features/odd_view.sql",
            "SELECT customer_id, {{ as_of }} AS feature_ts, 1.0 AS value FROM raw.customers\n",
        ),
    ]);
    let out = nightjar(dir.path(), &["run", "p", "--ds", "2025-03-01"]);
    expect(&out, 1, &["task `t`"]);
    assert_nothing_published(dir.path(), &["training.none"]);
}
