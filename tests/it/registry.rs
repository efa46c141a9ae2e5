//! The model registry through the CLI: promotion gates on `train`, aliases and their
//! history, `models promote|rollback|show|card|gc|list`, scoring through `name@alias`,
//! tamper detection, concurrent promotions, the model card against the Model Card Toolkit
//! schema, and every registry action in the audit log.

use std::path::Path;

use serde_json::Value;

use crate::audit::{assert_valid_openlineage, events};
use crate::models::train_project;
use crate::{Out, nightjar, repo_root};

/// Rows with a segment column, a model trained on them with `promote`, and scores through
/// the champion alias.
fn registry_project(gate: &str) -> tempfile::TempDir {
    train_project(&format!(
        "
  - id: segmented
    kind: sql
    output: data.segmented
    sql: |
      SELECT *, CASE WHEN id % 3 = 0 THEN 'DE' ELSE 'FR' END AS country
      FROM data.rows WHERE id <> 77
  - id: fit
    kind: train
    description: A small classifier for registry tests.
    model: m
    algorithm: gbt_classifier
    table: data.segmented
    target: y
    timestamp: ts
    features: [x, z]
    params: {{ n_trees: 5, min_data_in_leaf: 5 }}
    segments: [country]
    promote: {{ alias: champion, when: \"{gate}\" }}
    card:
      owner: registry-tests
      intended_use: Exercising the registry.
      risk_category: minimal
  - id: score
    kind: score
    model: m@champion
    table: data.segmented
    output: scores.m
"
    ))
}

fn ok(out: Out) -> Out {
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
    out
}

fn json(dir: &Path, args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let out = ok(nightjar(dir, &all));
    serde_json::from_str(&out.stdout).unwrap_or_else(|e| panic!("{e}: {}", out.stdout))
}

fn metadata(dir: &Path, version: u64) -> Value {
    let path = dir.join(format!(
        "warehouse/registry/m/versions/{version}/metadata.json"
    ));
    serde_json::from_slice(&std::fs::read(path).expect("metadata.json")).expect("json")
}

fn scored_version(dir: &Path) -> i64 {
    let batches = crate::query_table(
        &dir.join("warehouse"),
        "scores.m",
        "SELECT CAST(min(version) AS BIGINT), CAST(max(version) AS BIGINT) FROM t",
    );
    let col = |i: usize| crate::i64_column(&batches, i)[0].expect("a version");
    assert_eq!(col(0), col(1), "one version scored every row");
    col(0)
}

/// The JSON card validated with Python's jsonschema against the Model Card Toolkit v0.0.2
/// schema kept in tests/fixtures/model-card.
fn assert_valid_model_card(card: &Value) {
    let file = tempfile::NamedTempFile::new().expect("temp file");
    std::fs::write(file.path(), serde_json::to_vec(card).expect("json")).expect("write");
    let schema = repo_root().join("tests/fixtures/model-card/model_card.schema.v0.0.2.json");
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import json,sys,jsonschema\n\
             s=json.load(open(sys.argv[1])); c=json.load(open(sys.argv[2]))\n\
             jsonschema.Draft7Validator(s, format_checker=jsonschema.FormatChecker()).validate(c)\n\
             print('ok')",
        ])
        .arg(&schema)
        .arg(file.path())
        .output()
        .expect("python3 with jsonschema is needed (`pip install jsonschema`)");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(text.trim(), "ok", "{text}");
}

#[test]
fn gates_aliases_history_rollback_cards_and_gc_through_the_cli() {
    let dir = registry_project("auc >= 0.0 and auc >= champion.auc - 0.001");
    let d = dir.path();
    // Run 1: no champion yet, so the comparison with it passes; v1 becomes champion and is
    // what the score task used.
    ok(nightjar(d, &["run", "p", "--ds", "2025-01-01"]));
    let v1 = metadata(d, 1);
    assert_eq!(v1["promotion"]["verdict"], "promote", "{}", v1["promotion"]);
    assert_eq!(v1["promotion"]["alias_generation"], 0);
    assert_eq!(v1["promotion"]["inputs"]["champion.auc"], Value::Null);
    assert_eq!(scored_version(d), 1);
    // Run 2 on the same rows: the same AUC, within 0.001 of the champion: v2 takes over.
    ok(nightjar(d, &["run", "p", "--ds", "2025-01-02"]));
    let v2 = metadata(d, 2);
    assert_eq!(v2["promotion"]["verdict"], "promote");
    assert_eq!(v2["promotion"]["champion_version"], 1);
    assert_eq!(
        v2["promotion"]["inputs"]["champion.auc"], v1["metrics"]["auc"],
        "the gate read the champion's metrics"
    );
    assert_eq!(scored_version(d), 2);

    // Every file of a version is listed with its sha256, and `show` checks them.
    let files: Vec<&str> = v2["files"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["path"].as_str().unwrap())
        .collect();
    assert_eq!(files, ["model.json", "MLmodel", "card.json", "card.md"]);
    let shown = json(d, &["models", "show", "models:/m@champion"]);
    assert_eq!(
        (shown["version"].as_u64(), shown["files_verified"].as_bool()),
        (Some(2), Some(true))
    );
    assert_eq!(shown["aliases"], serde_json::json!(["champion"]));

    // Manual promotion back to v1, then rollback to v2; the history has all four moves.
    let promoted = json(
        d,
        &[
            "models",
            "promote",
            "m",
            "1",
            "--alias",
            "champion",
            "--reason",
            "v2 misbehaves in prod",
            "--by",
            "alice",
        ],
    );
    assert_eq!(
        (
            promoted["generation"].as_u64(),
            promoted["previous_version"].as_u64(),
            promoted["version"].as_u64()
        ),
        (Some(3), Some(2), Some(1))
    );
    assert_eq!(json(d, &["models", "show", "m@champion"])["version"], 1);
    let rolled = json(
        d,
        &[
            "models", "rollback", "m", "--alias", "champion", "--by", "bob",
        ],
    );
    assert_eq!(rolled["version"], 2);
    let history = json(d, &["models", "history", "m", "--alias", "champion"]);
    let steps: Vec<(u64, Option<u64>, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["generation"].as_u64().unwrap(),
                r["version"].as_u64(),
                r["by"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(steps.len(), 4, "{history}");
    assert_eq!((steps[2].1, steps[2].2.as_str()), (Some(1), "user alice"));
    assert_eq!((steps[3].1, steps[3].2.as_str()), (Some(2), "user bob"));
    assert!(
        steps[0].2.starts_with("run ") && steps[0].2.ends_with("(p.fit)"),
        "{}",
        steps[0].2
    );
    assert_eq!(
        history[0]["gate"]["verdict"], "promote",
        "a gate's move keeps its evaluation"
    );
    assert_eq!(history[2]["reason"], "v2 misbehaves in prod");
    let text = ok(nightjar(d, &["models", "history", "m"])).stdout;
    assert!(
        text.contains("v2 misbehaves in prod") && text.contains("user alice"),
        "{text}"
    );

    // The card: MCT-valid JSON whose numbers are metadata.json's, and Markdown with every
    // section; the CLI's card of an unchanged version is the card stored at registration
    // plus the moves made since.
    let card = json(d, &["models", "card", "m@2", "--format", "json"]);
    assert_valid_model_card(&card);
    let metrics = card["quantitative_analysis"]["performance_metrics"]
        .as_array()
        .unwrap();
    let auc = metrics
        .iter()
        .find(|m| m["type"] == "auc" && m.get("slice").is_none())
        .expect("auc in the card");
    assert_eq!(
        auc["value"].as_str().unwrap().parse::<f64>().unwrap(),
        v2["metrics"]["auc"].as_f64().unwrap()
    );
    let stored: Value = serde_json::from_slice(
        &std::fs::read(d.join("warehouse/registry/m/versions/1/card.json")).unwrap(),
    )
    .unwrap();
    assert_valid_model_card(&stored);
    let md = ok(nightjar(d, &["models", "card", "m@2"])).stdout;
    for section in [
        "## Model details",
        "## Intended use",
        "## Risk and human oversight",
        "## Training data",
        "## Features",
        "## Evaluation metrics",
        "### Calibration",
        "### Lift by decile",
        "## Metrics by segment",
        "## Limitations and caveats",
        "## Lineage",
    ] {
        assert!(md.contains(section), "missing `{section}` in\n{md}");
    }
    assert!(
        md.contains("registry-tests") && md.contains("By country"),
        "{md}"
    );
    assert!(
        md.contains("v2 misbehaves in prod"),
        "the card shows the alias history: {md}"
    );
    let segments = &v2["segments"][0];
    assert_eq!(segments["column"], "country");
    let rows: u64 = segments["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["rows"].as_u64().unwrap())
        .sum();
    assert_eq!(rows, v2["training"]["holdout_rows"].as_u64().unwrap());
    // MLmodel: MLflow's flavor and signature, beside the artefact.
    let mlmodel =
        std::fs::read_to_string(d.join("warehouse/registry/m/versions/2/MLmodel")).unwrap();
    assert!(
        mlmodel.contains("flavors:\n  nightjar:\n    algorithm: \"gbt_classifier\""),
        "{mlmodel}"
    );
    assert!(
        mlmodel.contains(r#"\"name\":\"x\""#)
            && mlmodel.contains(&format!("run_id: \"{}\"", v2["run_id"].as_str().unwrap())),
        "{mlmodel}"
    );

    // gc keeps the newest version and every aliased one; its number is never reused.
    ok(nightjar(d, &["run", "p", "--ds", "2025-01-03"]));
    ok(nightjar(
        d,
        &[
            "models", "promote", "m", "1", "--alias", "stable", "--reason", "pin",
        ],
    ));
    let list = json(d, &["models", "list"]);
    assert_eq!(list[0]["versions"], serde_json::json!([1, 2, 3]));
    assert_eq!(
        list[0]["aliases"],
        serde_json::json!({"champion": 3, "stable": 1})
    );
    let gc = json(d, &["models", "gc", "m", "--keep", "1"]);
    assert_eq!(gc["deleted"], serde_json::json!([2]));
    let gone = nightjar(d, &["models", "show", "m@2"]);
    assert_eq!(gone.code, 1, "{}", gone.stderr);
    assert!(
        gone.stderr.contains("no registered version 2"),
        "{}",
        gone.stderr
    );
    ok(nightjar(d, &["run", "p", "--ds", "2025-01-04"]));
    assert_eq!(
        json(d, &["models", "list"])[0]["versions"],
        serde_json::json!([1, 3, 4])
    );

    // Every registry action is in the audit log, whose chain is intact, and every event
    // validates against the OpenLineage schema.
    ok(nightjar(d, &["audit", "verify"]));
    let all = events(d);
    assert_valid_openlineage(&all);
    let jobs: Vec<&str> = all
        .iter()
        .filter_map(|e| e["job"]["name"].as_str())
        .filter(|j| j.starts_with("registry."))
        .collect();
    assert_eq!(
        jobs,
        [
            "registry.promote",
            "registry.rollback",
            "registry.promote",
            "registry.gc"
        ]
    );
    let rollback = all
        .iter()
        .find(|e| e["job"]["name"] == "registry.rollback")
        .unwrap();
    let alias = &rollback["inputs"][0]["facets"]["nightjar"]["model"]["alias"];
    assert_eq!(
        (
            alias["from"].as_u64(),
            alias["to"].as_u64(),
            alias["by"].as_str()
        ),
        (Some(1), Some(2), Some("user bob"))
    );
    // The train task's COMPLETE has the model version as an output; the score task's, as input.
    let fit = all
        .iter()
        .rfind(|e| e["eventType"] == "COMPLETE" && e["job"]["name"] == "p.fit")
        .unwrap();
    let registered = fit["outputs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "m@4")
        .expect("m@4 output");
    assert_eq!(
        registered["facets"]["nightjar"]["model"]["promotedTo"],
        serde_json::json!(["champion"])
    );
    let sha = registered["facets"]["nightjar"]["model"]["metadataSha256"]
        .as_str()
        .unwrap();
    let bytes = std::fs::read(d.join("warehouse/registry/m/versions/4/metadata.json")).unwrap();
    assert_eq!(sha, sha256_hex(&bytes));
    // Lineage from the champion alias down to the rows it was trained on.
    let lineage = json(d, &["lineage", "m@champion", "--upstream"]);
    let text = lineage.to_string();
    assert!(
        text.contains("\"m@4\"") && text.contains("data.segmented") && text.contains("data.rows"),
        "{lineage}"
    );
    let downstream = json(d, &["lineage", "data.rows", "--downstream"]).to_string();
    assert!(
        downstream.contains("m@4") && downstream.contains("scores.m"),
        "{downstream}"
    );
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(bytes))
}

#[test]
fn a_failing_gate_registers_the_version_unpromoted() {
    let dir = registry_project("auc > 1");
    let d = dir.path();
    let out = nightjar(d, &["run", "p"]);
    // Training and registration succeed; scoring through an alias nobody holds fails clearly.
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("task `score`")
            && out.stderr.contains("model `m` has no alias `champion`"),
        "{}",
        out.stderr
    );
    let meta = metadata(d, 1);
    assert_eq!(meta["promotion"]["verdict"], "reject");
    assert!(
        meta["promotion"]["reason"]
            .as_str()
            .unwrap()
            .contains(": false"),
        "{}",
        meta["promotion"]
    );
    assert!(!d.join("warehouse/registry/m/aliases").exists());
    assert!(!d.join("warehouse/tables/scores").exists());
}

#[test]
fn a_bad_gate_is_reported_at_its_column_by_validate() {
    let dir = registry_project("auc >= 0.7 and aucc > champion.auc");
    let out = nightjar(dir.path(), &["validate"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let line = std::fs::read_to_string(dir.path().join("pipelines/p.yaml"))
        .unwrap()
        .lines()
        .position(|l| l.contains("aucc"))
        .unwrap()
        + 1;
    let text = out.normalized(dir.path());
    // `when: "` starts the value; `aucc` is its 16th character.
    let col = std::fs::read_to_string(dir.path().join("pipelines/p.yaml"))
        .unwrap()
        .lines()
        .nth(line - 1)
        .unwrap()
        .find("aucc")
        .unwrap()
        + 1;
    assert!(
        text.contains(&format!("pipelines/p.yaml:{line}:{col}"))
            && text.contains("did you mean `auc`"),
        "{text}"
    );
    let dir = registry_project("auc >= (0.7");
    let out = nightjar(dir.path(), &["validate"]);
    assert_eq!(out.code, 2);
    assert!(out.stderr.contains("promote.when"), "{}", out.stderr);
    // A classifier's gate cannot name a regressor's metric.
    let dir = registry_project("rmse < 1");
    let out = nightjar(dir.path(), &["validate"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(out.stderr.contains("rmse"), "{}", out.stderr);
}

#[test]
fn tampered_and_truncated_versions_are_refused() {
    let dir = registry_project("auc >= 0");
    let d = dir.path();
    ok(nightjar(d, &["run", "p"]));
    let version_dir = d.join("warehouse/registry/m/versions/1");
    let card = version_dir.join("card.md");
    let text = std::fs::read_to_string(&card).unwrap();
    std::fs::write(&card, text.replace("registry-tests", "someone-else")).unwrap();
    let out = nightjar(d, &["models", "show", "m@champion"]);
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("versions/1/card.md") && out.stderr.contains("changed or truncated"),
        "{}",
        out.stderr
    );
    std::fs::write(&card, text).unwrap();
    ok(nightjar(d, &["models", "show", "m@1"]));
    // A truncated artefact stops scoring and promotion alike.
    let artefact = version_dir.join("model.json");
    let bytes = std::fs::read(&artefact).unwrap();
    std::fs::write(&artefact, &bytes[..bytes.len() / 2]).unwrap();
    let out = nightjar(d, &["run", "p", "--select", "score"]);
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("versions/1/model.json"),
        "{}",
        out.stderr
    );
    let out = nightjar(
        d,
        &[
            "models", "promote", "m", "1", "--alias", "other", "--reason", "x",
        ],
    );
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.contains("changed or truncated"),
        "{}",
        out.stderr
    );
}

#[test]
fn concurrent_promotions_never_lose_a_move() {
    let dir = registry_project("auc >= 0");
    let d = dir.path().to_path_buf();
    ok(nightjar(&d, &["run", "p", "--ds", "2025-01-01"]));
    ok(nightjar(&d, &["run", "p", "--ds", "2025-01-02"]));
    // Six processes move `canary` at once, each from what it read. Each one either wins a
    // generation of its own or fails with a conflict; no move is lost or doubled.
    let children: Vec<_> = (0..6)
        .map(|i| {
            std::process::Command::new(env!("CARGO_BIN_EXE_nightjar"))
                .arg("--project")
                .arg(&d)
                .args([
                    "models",
                    "promote",
                    "m",
                    &(1 + i % 2).to_string(),
                    "--alias",
                    "canary",
                ])
                .args([
                    "--reason",
                    &format!("racer {i}"),
                    "--by",
                    &format!("racer{i}"),
                ])
                .env("NO_COLOR", "1")
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    let mut won = Vec::new();
    let mut conflicts = 0;
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        match out.status.code() {
            Some(0) => won.push(format!("racer {i}")),
            Some(1) => {
                assert!(stderr.contains("conflict: alias `canary`"), "{stderr}");
                conflicts += 1;
            }
            other => panic!("{other:?}: {stderr}"),
        }
    }
    assert!(!won.is_empty());
    assert_eq!(won.len() + conflicts, 6);
    let history = json(&d, &["models", "history", "m", "--alias", "canary"]);
    let history = history.as_array().unwrap();
    let generations: Vec<u64> = history
        .iter()
        .map(|r| r["generation"].as_u64().unwrap())
        .collect();
    assert_eq!(generations, (1..=won.len() as u64).collect::<Vec<_>>());
    let mut reasons: Vec<String> = history
        .iter()
        .map(|r| r["reason"].as_str().unwrap().to_string())
        .collect();
    reasons.sort();
    won.sort();
    assert_eq!(reasons, won, "exactly the winners' moves are recorded");
    // Each move records the version its predecessor pointed to.
    for pair in history.windows(2) {
        assert_eq!(pair[1]["previous_version"], pair[0]["version"]);
    }
}
