//! Bad projects: every problem reported in one pass, at file:line:column, exit code 2.

use crate::{PROJECT_YAML, nightjar, project};

fn validate_snapshot(name: &str, pipeline: &str) -> (i32, String) {
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", pipeline),
    ]);
    let out = nightjar(dir.path(), &["validate"]);
    let text = out.normalized(dir.path());
    insta::assert_snapshot!(name, text);
    (out.code, out.stderr)
}

#[test]
fn unknown_key_with_suggestion() {
    let (code, stderr) = validate_snapshot(
        "unknown_key",
        "version: 1\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    retires: 3\n    sql: SELECT 1 AS x\n",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("pipelines/p.yaml:6:5"), "{stderr}");
    assert!(stderr.contains("did you mean `retries`?"), "{stderr}");
}

#[test]
fn many_problems_in_one_pass() {
    let pipeline = "version: 1
tasks:
  - id: a
    kind: sqll
    output: s.a
  - id: b
    kind: sql
    output: s.b
    retries: many
    sql: SELECT 1 AS x
  - id: c
    kind: export
    table: s.nothere
    target: out.parquet
    format: parquet
    depends_on: [zz]
  - id: c
    kind: sql
    output: s.c
    sql: SELECT * FROM s.b
";
    let (code, stderr) = validate_snapshot("many_problems", pipeline);
    assert_eq!(code, 2);
    for needle in [
        "unknown task kind `sqll`",
        "pipelines/p.yaml:9:14",
        "expected a non-negative integer",
    ] {
        assert!(stderr.contains(needle), "missing {needle:?} in {stderr}");
    }
}

#[test]
fn semantic_errors_point_at_lines() {
    let pipeline = "version: 1
tasks:
  - id: c
    kind: export
    table: s.nothere
    target: out.parquet
    format: parquet
    depends_on: [zz]
  - id: c
    kind: sql
    output: s.c
    sql: SELECT 1 AS x
";
    let (code, stderr) = validate_snapshot("semantic_errors", pipeline);
    assert_eq!(code, 2);
    assert!(stderr.contains("duplicate task id `c`"), "{stderr}");
    assert!(
        stderr.contains("unknown task `zz` in `depends_on`"),
        "{stderr}"
    );
    assert!(stderr.contains("pipelines/p.yaml:8:18"), "{stderr}");
    assert!(stderr.contains("unknown table `s.nothere`"), "{stderr}");
}

#[test]
fn cycle_names_the_whole_chain() {
    let pipeline = "version: 1
tasks:
  - id: a
    kind: sql
    output: s.a
    sql: SELECT * FROM s.c
  - id: b
    kind: sql
    output: s.b
    sql: SELECT * FROM s.a
  - id: c
    kind: sql
    output: s.c
    sql: SELECT * FROM s.b
";
    let (code, stderr) = validate_snapshot("cycle", pipeline);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("dependency cycle: a -> b -> c -> a")
            || stderr.contains("dependency cycle: b -> c -> a -> b")
            || stderr.contains("dependency cycle: c -> a -> b -> c"),
        "{stderr}"
    );
}

#[test]
fn sql_parse_error_points_into_the_block() {
    let pipeline = "version: 1
tasks:
  - id: a
    kind: sql
    output: s.a
    sql: |
      SELECT x,
      FROM FROM t.y
";
    let (code, stderr) = validate_snapshot("sql_parse_error", pipeline);
    assert_eq!(code, 2);
    assert!(stderr.contains("SQL does not parse"), "{stderr}");
    assert!(stderr.contains("pipelines/p.yaml:8:"), "{stderr}");
}

#[test]
fn malformed_yaml() {
    let (code, stderr) = validate_snapshot(
        "malformed_yaml",
        "version: 1\ntasks:\n  - id: a\n   kind: sql\n",
    );
    assert_eq!(code, 2);
    assert!(stderr.contains("pipelines/p.yaml:4:"), "{stderr}");
}

#[test]
fn unknown_template_variable() {
    let pipeline = "version: 1
params:
  days: 30
tasks:
  - id: a
    kind: sql
    output: s.a
    sql: SELECT {{ params.dayz }} AS x
";
    let (code, stderr) = validate_snapshot("unknown_template_variable", pipeline);
    assert_eq!(code, 2);
    assert!(
        stderr.contains("unknown template variable `params.dayz`"),
        "{stderr}"
    );
    assert!(stderr.contains("did you mean `params.days`?"), "{stderr}");
}

#[test]
fn secret_in_yaml_is_refused() {
    let config = "version: 1\nname: t\nstorage:\n  root: s3://bucket/x\n  options:\n    secret_access_key: hunter2\n";
    let dir = project(&[
        ("nightjar.yaml", config),
        ("pipelines/p.yaml", "version: 1\ntasks: []\n"),
    ]);
    let out = nightjar(dir.path(), &["validate"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr
            .contains("storage option `secret_access_key` is a secret"),
        "{}",
        out.stderr
    );
    assert!(out.stderr.contains("nightjar.yaml:6:24"), "{}", out.stderr);
}

#[test]
fn unknown_url_scheme_is_a_usage_error() {
    let config = "version: 1\nname: t\nstorage:\n  root: ftp://host/x\n";
    let dir = project(&[
        ("nightjar.yaml", config),
        (
            "pipelines/p.yaml",
            "version: 1\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT 1 AS x\n",
        ),
    ]);
    let out = nightjar(dir.path(), &["run", "p"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("unsupported storage URL scheme `ftp`"),
        "{}",
        out.stderr
    );
}

#[test]
fn unwritable_root_is_a_usage_error() {
    let dir = project(&[(
        "pipelines/p.yaml",
        "version: 1\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT 1 AS x\n",
    )]);
    // A regular file where the root directory should be: not creatable, even as root.
    std::fs::write(dir.path().join("blocker"), "x").unwrap();
    let config = "version: 1\nname: t\nstorage:\n  root: file://./blocker/warehouse\n";
    std::fs::write(dir.path().join("nightjar.yaml"), config).unwrap();
    let out = nightjar(dir.path(), &["run", "p"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot use storage root"),
        "{}",
        out.stderr
    );
}

#[test]
fn unknown_var_and_bad_ds_are_usage_errors() {
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        (
            "pipelines/p.yaml",
            "version: 1\nparams:\n  n: 1\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT {{ params.n }} AS x\n",
        ),
    ]);
    let out = nightjar(dir.path(), &["run", "p", "--var", "m=2"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("`--var m=…` names no declared param"),
        "{}",
        out.stderr
    );
    let out = nightjar(dir.path(), &["run", "p", "--var", "n=two"]);
    assert_eq!(out.code, 2);
    assert!(
        out.stderr.contains("`two` is not an integer"),
        "{}",
        out.stderr
    );
    let out = nightjar(dir.path(), &["run", "p", "--ds", "2025-13-01"]);
    assert_eq!(out.code, 2);
    let out = nightjar(dir.path(), &["run", "nope"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("no pipeline `nope`"), "{}", out.stderr);
}
