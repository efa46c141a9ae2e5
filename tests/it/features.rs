//! Feature views and training sets through the CLI: snapshots materialized once, versions by
//! definition, statistics, point-in-time training sets checked against an independent query,
//! and load-time errors at their file:line:column.

use std::path::Path;

use chrono::{Days, NaiveDate};
use serde_json::Value;

use crate::{PROJECT_YAML, i64_column, nightjar, project, query_delta, query_table, string_column};

const PIPELINE: &str = "version: 1
tasks:
  - id: generate
    kind: synthetic
    customers: 200
    days: 40
    end_date: \"{{ ds }}\"
    ground_truth: false
  - id: order_features
    kind: features
    view: orders_view
  - id: training
    kind: training_set
    output: training.orders
    label_timestamp: label_ts
    labels: |
      SELECT customer_id, label_ts, CAST(customer_id % 2 AS INT) AS label
      FROM raw.customers
      CROSS JOIN (SELECT DISTINCT feature_ts + INTERVAL '1 day' AS label_ts
                  FROM features.orders_view) AS s
    features: [orders_view]
    defaults:
      n_orders: -1
";

const VIEW_YAML: &str = "description: Orders before the snapshot.
entity: customer_id
timestamp: feature_ts
ttl: 8d
snapshots: { every: 7d, history: 21d }
features:
  - name: n_orders
    description: Orders before the snapshot.
  - name: spend
    tags: [monetary]
";

const VIEW_SQL: &str = "-- orders strictly before {{ as_of }}
SELECT c.customer_id,
       {{ as_of }} AS feature_ts,
       COUNT(o.order_id) AS n_orders,
       COALESCE(SUM(o.amount), 0.0) AS spend
FROM raw.customers c
LEFT JOIN raw.orders o ON o.customer_id = c.customer_id AND o.order_ts < {{ as_of }}
GROUP BY c.customer_id
";

fn feature_project(sql: &str) -> tempfile::TempDir {
    project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", PIPELINE),
        ("features/orders_view.yaml", VIEW_YAML),
        ("features/orders_view.sql", sql),
    ])
}

fn run(dir: &Path, extra: &[&str]) -> Value {
    let mut args = vec!["run", "p", "--ds", "2025-03-01", "--json"];
    args.extend_from_slice(extra);
    let out = nightjar(dir, &args);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    serde_json::from_str(&out.stdout).expect("run json")
}

fn task<'a>(state: &'a Value, id: &str) -> &'a Value {
    state["tasks"]
        .as_array()
        .expect("tasks")
        .iter()
        .find(|t| t["id"] == id)
        .unwrap_or_else(|| panic!("no task {id} in {state}"))
}

fn list(dir: &Path) -> Value {
    let out = nightjar(dir, &["features", "list", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    serde_json::from_str::<Value>(&out.stdout).expect("json")[0].clone()
}

fn view_dir(dir: &Path, version: &str) -> std::path::PathBuf {
    dir.join("warehouse/features/orders_view").join(version)
}

/// The as-of instants a run for 2025-03-01 materializes with `every: 7d, history: 21d`: its
/// own (the end of the day) and the 7-day grid counted from 1970-01-01 within 21 days.
fn expected_snapshots() -> Vec<String> {
    let own = NaiveDate::from_ymd_opt(2025, 3, 2).unwrap();
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1).unwrap();
    let mut days = vec![own];
    let mut day = own - Days::new(((own - epoch).num_days() % 7) as u64);
    while day >= own - Days::new(21) {
        if day != own {
            days.push(day);
        }
        day = day - Days::new(7);
    }
    days.sort();
    days.iter().map(|d| format!("{d}T00:00:00Z")).collect()
}

#[test]
fn views_materialize_their_snapshots_once_and_version_by_definition() {
    let dir = feature_project(VIEW_SQL);
    let state = run(dir.path(), &[]);
    let version = list(dir.path())["version"]
        .as_str()
        .expect("version")
        .to_string();
    assert_eq!(version.len(), 16);
    let written = &task(&state, "order_features")["outputs"][0];
    assert_eq!(written["table"], format!("features.orders_view@{version}"));

    // The snapshots present are exactly the expected grid, each one row per customer.
    let location = view_dir(dir.path(), &version);
    let per_snapshot = query_delta(
        &location,
        "SELECT to_char(feature_ts, '%Y-%m-%dT%H:%M:%SZ') AS ts, count(*) AS n, count(DISTINCT customer_id) AS d FROM t GROUP BY 1 ORDER BY 1",
    );
    assert_eq!(string_column(&per_snapshot, 0), expected_snapshots());
    assert!(i64_column(&per_snapshot, 1).iter().all(|n| *n == Some(200)));
    assert_eq!(i64_column(&per_snapshot, 1), i64_column(&per_snapshot, 2));
    assert_eq!(written["rows"], 200 * expected_snapshots().len() as u64);

    // Values: the own snapshot equals an independent count over raw.orders before it.
    let ours = query_delta(
        &location,
        "SELECT customer_id, n_orders FROM t WHERE feature_ts = TIMESTAMP '2025-03-02T00:00:00Z' ORDER BY customer_id",
    );
    let theirs = query_table(
        &dir.path().join("warehouse"),
        "raw.orders",
        "SELECT customer_id, count(*) FROM t WHERE order_ts < TIMESTAMP '2025-03-02T00:00:00Z' GROUP BY customer_id ORDER BY customer_id",
    );
    let ours: Vec<(i64, i64)> = i64_column(&ours, 0)
        .into_iter()
        .zip(i64_column(&ours, 1))
        .map(|(a, b)| (a.unwrap(), b.unwrap()))
        .filter(|(_, n)| *n > 0)
        .collect();
    let theirs: Vec<(i64, i64)> = i64_column(&theirs, 0)
        .into_iter()
        .zip(i64_column(&theirs, 1))
        .map(|(a, b)| (a.unwrap(), b.unwrap()))
        .collect();
    assert!(!theirs.is_empty());
    assert_eq!(ours, theirs);

    // Statistics are kept with the materialization.
    let show = nightjar(dir.path(), &["features", "show", "orders_view", "--json"]);
    assert_eq!(show.code, 0, "{}", show.stderr);
    let show: Value = serde_json::from_str(&show.stdout).expect("json");
    let m = &show["versions"][0]["materializations"][0];
    assert_eq!(m["delta_version"], 0);
    assert_eq!(
        m["snapshots"].as_array().unwrap().len(),
        expected_snapshots().len()
    );
    let stats = m["stats"].as_array().expect("stats");
    assert_eq!(stats[0]["name"], "n_orders");
    assert_eq!(stats[0]["count"], 200 * expected_snapshots().len() as u64);
    assert_eq!(stats[0]["nulls"], 0);
    assert!(stats[0]["max"].as_f64().unwrap() >= stats[0]["mean"].as_f64().unwrap());
    assert_eq!(stats[0]["quantiles"].as_array().unwrap().len(), 7);
    assert_eq!(m["inputs"][0][0], "raw.customers");

    // Same definition, same inputs: up to date, nothing written.
    let before = delta_versions_of(&location);
    let again = run(dir.path(), &["--select", "order_features"]);
    let written = &task(&again, "order_features")["outputs"][0];
    assert_eq!(written["rows"], 0);
    assert_eq!(written["reused"], true);
    assert_eq!(delta_versions_of(&location), before);

    // A comment and whitespace do not change the definition version...
    let reformatted = format!("-- reformatted\n{}", VIEW_SQL.replace("       ", "  "));
    std::fs::write(dir.path().join("features/orders_view.sql"), reformatted).unwrap();
    assert_eq!(list(dir.path())["version"], version.as_str());
    // ...a changed query does; the old version stays readable.
    let changed = VIEW_SQL.replace(
        "o.order_ts < {{ as_of }}",
        "o.order_ts < {{ as_of }} AND o.amount > 50",
    );
    std::fs::write(dir.path().join("features/orders_view.sql"), changed).unwrap();
    let listed = list(dir.path());
    let new_version = listed["version"].as_str().unwrap().to_string();
    assert_ne!(new_version, version);
    run(dir.path(), &["--select", "order_features"]);
    let listed = list(dir.path());
    let mut stored: Vec<&str> = listed["stored_versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    stored.sort();
    let mut both = vec![version.as_str(), new_version.as_str()];
    both.sort();
    assert_eq!(stored, both);
    let old = query_delta(&location, "SELECT sum(n_orders) FROM t");
    let new = query_delta(
        &view_dir(dir.path(), &new_version),
        "SELECT sum(n_orders) FROM t",
    );
    assert!(i64_column(&new, 0)[0].unwrap() < i64_column(&old, 0)[0].unwrap());
}

fn delta_versions_of(location: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(location.join("_delta_log"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    v.sort();
    v
}

#[test]
fn training_set_rows_get_the_newest_snapshot_at_or_before_their_label_time() {
    let dir = feature_project(VIEW_SQL);
    let state = run(dir.path(), &[]);
    let version = list(dir.path())["version"].as_str().unwrap().to_string();
    let read = task(&state, "training")["inputs"].clone();
    assert!(
        read.as_array()
            .unwrap()
            .iter()
            .any(|r| r[0] == format!("features.orders_view@{version}") && r[1] == 0),
        "the training set records the view version and Delta version it read: {read}"
    );
    // The audit lineage runs from the training set through the view version to the raw tables.
    let lineage = nightjar(
        dir.path(),
        &[
            "lineage",
            "training.orders",
            "--upstream",
            "--format",
            "text",
        ],
    );
    assert_eq!(lineage.code, 0, "{}", lineage.stderr);
    let versioned = format!("features.orders_view@{version} v0");
    assert!(lineage.stdout.contains(&versioned), "{}", lineage.stdout);
    assert!(
        !lineage.stdout.contains("features.orders_view "),
        "{}",
        lineage.stdout
    );
    assert!(
        lineage.stdout.contains("raw.orders v0"),
        "{}",
        lineage.stdout
    );
    let wh = dir.path().join("warehouse");
    let snapshots = expected_snapshots().len() as i64;
    // Every label is a day after a snapshot (and before the next): it sees that snapshot.
    let rows = query_table(
        &wh,
        "training.orders",
        "SELECT count(*), count(n_orders), sum(CASE WHEN n_orders = -1 THEN 1 ELSE 0 END) FROM t",
    );
    assert_eq!(i64_column(&rows, 0)[0], Some(200 * snapshots));
    assert_eq!(
        i64_column(&rows, 2)[0],
        Some(0),
        "no label went without a match"
    );
    // Exactly the values of the snapshot 3 days before, per customer and label.
    let training = query_table(
        &wh,
        "training.orders",
        "SELECT customer_id, n_orders, to_char(label_ts - INTERVAL '1 day', '%Y-%m-%dT%H:%M:%SZ') FROM t ORDER BY 3, 1",
    );
    let view = query_delta(
        &view_dir(dir.path(), &version),
        "SELECT customer_id, n_orders, to_char(feature_ts, '%Y-%m-%dT%H:%M:%SZ') FROM t ORDER BY 3, 1",
    );
    assert_eq!(i64_column(&training, 0), i64_column(&view, 0));
    assert_eq!(i64_column(&training, 1), i64_column(&view, 1));
    assert_eq!(string_column(&training, 2), string_column(&view, 2));
}

#[test]
fn labels_past_the_ttl_get_the_default() {
    let pipeline = PIPELINE.replace("INTERVAL '1 day'", "INTERVAL '9 days'");
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", &pipeline),
        ("features/orders_view.yaml", VIEW_YAML),
        ("features/orders_view.sql", VIEW_SQL),
    ]);
    run(dir.path(), &[]);
    let wh = dir.path().join("warehouse");
    // 9 days after a weekly snapshot, the next one (7 days after) is the newest at or before
    // the label, 2 days old; except after the newest snapshots, where the nearest is 9 days
    // old, past the 8-day ttl: those rows get the default.
    let rows = query_table(
        &wh,
        "training.orders",
        "SELECT to_char(label_ts, '%Y-%m-%d'), count(*), sum(CASE WHEN n_orders = -1 THEN 1 ELSE 0 END) FROM t GROUP BY 1 ORDER BY 1",
    );
    let days = string_column(&rows, 0);
    assert!(i64_column(&rows, 1).iter().all(|c| *c == Some(200)));
    // A label gets the default exactly when the newest snapshot at or before it is more than
    // the 8-day ttl old.
    let snapshots: Vec<NaiveDate> = expected_snapshots()
        .iter()
        .map(|s| NaiveDate::parse_from_str(&s[..10], "%Y-%m-%d").unwrap())
        .collect();
    let expected: Vec<Option<i64>> = days
        .iter()
        .map(|d| {
            let label = NaiveDate::parse_from_str(d, "%Y-%m-%d").unwrap();
            let newest = snapshots.iter().filter(|s| **s <= label).max().unwrap();
            Some(if (label - *newest).num_days() > 8 {
                200
            } else {
                0
            })
        })
        .collect();
    assert_eq!(i64_column(&rows, 2), expected, "{days:?}");
    assert!(
        expected.contains(&Some(200)) && expected.contains(&Some(0)),
        "both cases occur"
    );
}

#[test]
fn view_problems_are_reported_at_their_file_line_and_column() {
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        (
            "pipelines/p.yaml",
            "version: 1\ntasks:\n  - id: f\n    kind: features\n    view: order_view\n",
        ),
        ("features/orders_view.yaml", VIEW_YAML),
        ("features/orders_view.sql", VIEW_SQL),
        ("features/templated.yaml", VIEW_YAML),
        (
            "features/templated.sql",
            "SELECT customer_id,\n  {{ ds }} AS feature_ts\nFROM raw.customers\n",
        ),
        (
            "features/broken.yaml",
            "entity: customer_id\ntimestamp: ts\nttl: 0d\nfeatures:\n  - name: x\n    unknown: 1\n",
        ),
        (
            "features/parse.yaml",
            "entity: customer_id\ntimestamp: ts\n",
        ),
        (
            "features/parse.sql",
            "SELECT customer_id,\n  FROM FROM raw.customers\n",
        ),
    ]);
    let out = nightjar(dir.path(), &["validate"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let err = &out.stderr;
    assert!(err.contains("features/templated.sql:2:3"), "{err}");
    assert!(err.contains("unknown template variable `ds`"), "{err}");
    assert!(
        err.contains("feature SQL sees only `as_of`") || err.contains("known variables: as_of"),
        "{err}"
    );
    assert!(err.contains("features/broken.yaml:6:5"), "{err}");
    assert!(err.contains("unknown field `unknown`"), "{err}");
    assert!(err.contains("features/parse.sql:2:"), "{err}");
    assert!(err.contains("SQL does not parse"), "{err}");
    assert!(err.contains("pipelines/p.yaml:5:11"), "{err}");
    assert!(err.contains("unknown feature view `order_view`"), "{err}");
    assert!(err.contains("did you mean `orders_view`?"), "{err}");
}

#[test]
fn a_view_with_duplicate_entities_or_a_wrong_timestamp_publishes_nothing() {
    for (sql, expected) in [
        (
            "SELECT customer_id % 10 AS customer_id, {{ as_of }} AS feature_ts, 1 AS n_orders, 1.0 AS spend FROM raw.customers",
            "appears more than once in the snapshot",
        ),
        (
            "SELECT customer_id, {{ as_of }} + INTERVAL '1 day' AS feature_ts, 1 AS n_orders, 1.0 AS spend FROM raw.customers",
            "null or different from it",
        ),
        (
            "SELECT customer_id, {{ as_of }} AS feature_ts, 1 AS n_orders FROM raw.customers",
            "declared feature `spend` is not returned by the query",
        ),
    ] {
        let dir = feature_project(sql);
        let out = nightjar(dir.path(), &["run", "p", "--ds", "2025-03-01"]);
        assert_eq!(out.code, 1, "{sql}\n{}", out.stderr);
        assert!(out.stderr.contains(expected), "{sql}\n{}", out.stderr);
        assert!(out.stderr.contains("orders_view"), "{}", out.stderr);
        let published = crate::files_under(&dir.path().join("warehouse/features"))
            .into_iter()
            .filter(|p| p.to_string_lossy().contains("_delta_log"))
            .count();
        assert_eq!(published, 0, "a failed view published nothing");
        assert!(
            !dir.path().join("warehouse/tables/training").exists(),
            "nothing downstream ran"
        );
    }
}

#[test]
fn a_training_set_over_a_view_never_materialized_says_so() {
    let dir = feature_project(VIEW_SQL);
    let out = nightjar(
        dir.path(),
        &[
            "run",
            "p",
            "--ds",
            "2025-03-01",
            "--select",
            "generate",
            "--select",
            "training",
        ],
    );
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("feature view `orders_view` version")
            && out
                .stderr
                .contains("has no materialization; run a `features` task for it first"),
        "{}",
        out.stderr
    );
    assert!(!dir.path().join("warehouse/tables/training").exists());
}

/// The parity pipeline: a model trained on the training set, scored twice with its version 1:
/// from a table a SQL task builds out of the view's newest snapshot, and from `entities`,
/// whose features the score task rebuilds from the model's recorded view versions.
const PARITY_TASKS: &str = "
  - id: fit
    kind: train
    model: m
    algorithm: linear
    table: training.orders
    target: label
    entity: customer_id
    features: [n_orders, spend]
    split: { by: random, holdout: 0.25 }
    seed: 3
  - id: latest
    kind: sql
    output: scoring.latest
    sql: |
      SELECT customer_id, n_orders, spend FROM features.orders_view
      WHERE feature_ts = (SELECT MAX(feature_ts) FROM features.orders_view)
  - id: by_table
    kind: score
    model: m@1
    table: scoring.latest
    output: scores.by_table
    depends_on: [fit]
  - id: by_views
    kind: score
    model: m@1
    entities: SELECT customer_id FROM raw.customers
    output: scores.by_views
    depends_on: [fit]
";

/// `(customer_id, score)` of a scores table, by customer.
fn scores(warehouse: &Path, table: &str) -> Vec<(i64, f64)> {
    let batches = query_table(
        warehouse,
        table,
        "SELECT customer_id, score FROM t ORDER BY customer_id",
    );
    let ids = i64_column(&batches, 0);
    let values: Vec<f64> = batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(1)
                .as_any()
                .downcast_ref::<datafusion::arrow::array::Float64Array>()
                .expect("f64 scores");
            (0..a.len()).map(|i| a.value(i)).collect::<Vec<_>>()
        })
        .collect();
    ids.into_iter()
        .map(|i| i.expect("id"))
        .zip(values)
        .collect()
}

#[test]
fn scoring_from_entities_rebuilds_the_features_from_the_models_own_view_versions() {
    let pipeline = format!("{PIPELINE}{PARITY_TASKS}");
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", &pipeline),
        ("features/orders_view.yaml", VIEW_YAML),
        ("features/orders_view.sql", VIEW_SQL),
    ]);
    let wh = dir.path().join("warehouse");
    // The entities score runs after the pipeline's `features` task (which view versions it
    // reads is known only from the model), though nothing it declares reads the view.
    let plan = nightjar(dir.path(), &["plan", "p", "--json"]);
    assert_eq!(plan.code, 0, "{}", plan.stderr);
    let plan: Value = serde_json::from_str(&plan.stdout).unwrap();
    let by_views = plan["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|t| t["id"] == "by_views")
        .unwrap();
    assert_eq!(
        by_views["depends_on"],
        serde_json::json!(["generate", "order_features", "fit"])
    );
    assert_eq!(by_views["reads"], serde_json::json!(["raw.customers"]));
    let state = run(dir.path(), &[]);
    let old = list(dir.path())["version"].as_str().unwrap().to_string();

    // The model keeps its training set's join: view version, Delta version, ttl, defaults.
    let meta: Value = serde_json::from_slice(
        &std::fs::read(wh.join("registry/m/versions/1/metadata.json")).unwrap(),
    )
    .unwrap();
    let joined = &meta["training"]["point_in_time"];
    assert_eq!(joined["label_timestamp"], "label_ts");
    assert_eq!(joined["views"][0]["view"], "orders_view");
    assert_eq!(joined["views"][0]["version"], old.as_str());
    assert_eq!(joined["views"][0]["delta_version"], 0);
    assert_eq!(joined["views"][0]["ttl_micros"], 8 * 86_400_000_000u64);
    assert_eq!(
        joined["views"][0]["features"],
        serde_json::json!(["n_orders", "spend"])
    );
    assert_eq!(joined["views"][0]["defaults"]["n_orders"], -1);
    let card = std::fs::read_to_string(wh.join("registry/m/versions/1/card.md")).unwrap();
    assert!(
        card.contains(&format!("| Feature view versions (scoring rebuilds features from these) | orders_view@{old} (ttl 691200s) |")),
        "{card}"
    );
    // The entities score read the view version it joined, for lineage.
    let inputs = task(&state, "by_views")["inputs"].to_string();
    assert!(
        inputs.contains(&format!("features.orders_view@{old}")) && inputs.contains("raw.customers"),
        "{inputs}"
    );

    // Same model, same features: the point-in-time rebuild gives every customer exactly the
    // score the hand-written newest-snapshot table gives.
    let first = scores(&wh, "scores.by_views");
    assert_eq!(first.len(), 200);
    assert_eq!(first, scores(&wh, "scores.by_table"));
    let distinct: std::collections::BTreeSet<u64> =
        first.iter().map(|(_, s)| s.to_bits()).collect();
    assert!(distinct.len() > 10, "the scores vary with the features");

    // An entities query that names a customer twice, or nobody, fails the task and leaves
    // the scores as they were.
    let scored = crate::delta_versions(&wh, "scores.by_views");
    for (query, expected) in [
        (
            "SELECT customer_id FROM raw.customers UNION ALL SELECT customer_id FROM raw.customers WHERE customer_id = 17",
            "returns customer_id = 17 2 times; each entity is scored once",
        ),
        (
            "SELECT customer_id FROM raw.customers WHERE customer_id < 0",
            "returned no rows; nothing to score",
        ),
    ] {
        let bad = pipeline.replace(
            "entities: SELECT customer_id FROM raw.customers",
            &format!("entities: {query}"),
        );
        std::fs::write(dir.path().join("pipelines/p.yaml"), bad).unwrap();
        let out = nightjar(dir.path(), &["run", "p", "--ds", "2025-03-01"]);
        assert_eq!(out.code, 1, "{}", out.stderr);
        assert!(
            out.stderr.contains("task `by_views`")
                && out
                    .stderr
                    .contains("the entities query at pipelines/p.yaml:")
                && out.stderr.contains(expected),
            "expected `{expected}` in:\n{}",
            out.stderr
        );
        assert_eq!(crate::delta_versions(&wh, "scores.by_views"), scored);
    }
    std::fs::write(dir.path().join("pipelines/p.yaml"), &pipeline).unwrap();

    // The view's definition changes (a new version). A day later, version 1 of the model still
    // scores on the version it was trained on, while the table built from the current
    // definition gives other features, so other scores.
    std::fs::write(
        dir.path().join("features/orders_view.sql"),
        VIEW_SQL.replace(
            "COUNT(o.order_id) AS n_orders",
            "COUNT(o.order_id) * 10 AS n_orders",
        ),
    )
    .unwrap();
    let out = nightjar(dir.path(), &["run", "p", "--ds", "2025-03-02", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let new = list(dir.path())["version"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert_eq!(scores(&wh, "scores.by_views"), first);
    let by_table = scores(&wh, "scores.by_table");
    let changed = by_table
        .iter()
        .zip(&first)
        .filter(|(a, b)| a.1 != b.1)
        .count();
    assert!(changed > 0, "no score moved with the new definition");

    // Ten days on, the old version's newest snapshot is past its 8-day ttl: scoring on it
    // would be defaults for everyone, so the task fails, naming both versions, and the
    // scores table keeps its last version.
    let before = crate::delta_versions(&wh, "scores.by_views");
    let out = nightjar(dir.path(), &["run", "p", "--ds", "2025-03-12"]);
    assert_eq!(out.code, 1, "{}\n{}", out.stdout, out.stderr);
    for expected in [
        "task `by_views`".to_string(),
        format!("model `m` version 1 was trained on feature view `orders_view` version {old}"),
        "which has no snapshot within its ttl before the scoring time (2025-03-13T00:00:00Z): its newest at or before it is 2025-03-02T00:00:00Z".to_string(),
        format!("the project's definition is now version {new}: retrain the model, or materialize version {old}"),
    ] {
        assert!(out.stderr.contains(&expected), "expected `{expected}` in:\n{}", out.stderr);
    }
    assert_eq!(crate::delta_versions(&wh, "scores.by_views"), before);
}

#[test]
fn scoring_from_entities_keeps_every_part_of_a_composite_key() {
    let pipeline = "version: 1
tasks:
  - id: events
    kind: sql
    output: data.events
    sql: |
      SELECT CAST(v % 3 AS BIGINT) AS shop, CAST(v % 7 AS BIGINT) AS customer,
             CAST(v AS DOUBLE) AS amount
      FROM (SELECT unnest(range(0, 210)) AS v)
  - id: pair_features
    kind: features
    view: pairs
  - id: training
    kind: training_set
    output: training.pairs
    label_timestamp: label_ts
    labels: |
      SELECT shop, customer, feature_ts + INTERVAL '1 hour' AS label_ts,
             CAST((shop + customer) % 2 AS INT) AS label
      FROM features.pairs
    features: [pairs]
  - id: fit
    kind: train
    model: m
    algorithm: linear
    table: training.pairs
    target: label
    entity: customer
    features: [spend, n]
    split: { by: random, holdout: 0.25 }
    seed: 3
  - id: score
    kind: score
    model: m
    entities: SELECT DISTINCT shop, customer FROM data.events
    output: scores.pairs
";
    let view_yaml = "description: Spend per shop and customer.
entity: [shop, customer]
timestamp: feature_ts
ttl: 8d
features:
  - name: spend
  - name: n
";
    let view_sql = "SELECT shop, customer, {{ as_of }} AS feature_ts,
       SUM(amount) + CAST(shop AS DOUBLE) * 1000.0 AS spend, COUNT(*) AS n
FROM data.events GROUP BY shop, customer
";
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/p.yaml", pipeline),
        ("features/pairs.yaml", view_yaml),
        ("features/pairs.sql", view_sql),
    ]);
    run(dir.path(), &[]);
    let wh = dir.path().join("warehouse");
    // 21 (shop, customer) pairs, each scored once, under both key columns; the same customer
    // in two shops has different features, so (mostly) a different score.
    let rows = query_table(
        &wh,
        "scores.pairs",
        "SELECT shop, customer, count(*) OVER (PARTITION BY shop, customer), \
         count(DISTINCT score) OVER () FROM t ORDER BY shop, customer",
    );
    assert_eq!(i64_column(&rows, 0).len(), 21);
    assert!(i64_column(&rows, 2).iter().all(|c| *c == Some(1)));
    let distinct = i64_column(&rows, 3)[0].unwrap();
    assert!(
        distinct > 7,
        "{distinct} distinct scores for 21 pairs of 7 customers"
    );
}
