//! What a `train` task adds around a fitted model to register it: the declared model-card
//! fields and promotion gate (YAML), holdout metrics by segment, the MLflow-shaped `MLmodel`
//! file, the code version, and the gate's evaluation against the current alias holders.
//!
//! The gate is evaluated before the version is registered, against the alias generation it
//! read, and recorded in `metadata.json`; the alias then moves compare-and-swap from exactly
//! that generation. If another promotion moved the alias meanwhile, the gate's inputs are
//! stale: the task fails with a conflict and the version stays registered, unpromoted. A
//! `--resume` evaluates the gate again against the alias as it is then (that evaluation is
//! recorded in the alias move).

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::models::{Objective, metrics, promotion};
use crate::stores::registry::{AliasMove, AliasRecord, Moved, Registry, check_alias};
use crate::stores::{Result as StoreResult, StoreError};

/// `promote:` on a train task.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteSpec {
    /// The alias the new version takes when the gate passes (e.g. `champion`).
    pub alias: String,
    /// The gate: a condition over the new version's holdout metrics (`auc`, `rmse`, …) and
    /// those of the versions aliases point to (`champion.auc`), e.g.
    /// `auc >= 0.70 and auc >= champion.auc - 0.005`. A comparison with an alias that points
    /// to no version passes (so the first version can become champion). Default: always.
    #[serde(default)]
    pub when: Option<String>,
}

/// EU AI Act risk tiers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RiskCategory {
    Unacceptable,
    High,
    Limited,
    Minimal,
}

/// `card:` on a train task: what only people can say about a model. Whatever is left out
/// appears in the card as not declared.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CardSpec {
    /// Who answers for the model (team or address).
    #[serde(default)]
    pub owner: Option<String>,
    #[serde(default)]
    pub intended_use: Option<String>,
    #[serde(default)]
    pub out_of_scope: Option<Vec<String>>,
    #[serde(default)]
    pub risk_category: Option<RiskCategory>,
    /// How people oversee the model's use (EU AI Act art. 14).
    #[serde(default)]
    pub human_oversight: Option<String>,
    #[serde(default)]
    pub limitations: Option<Vec<String>>,
    #[serde(default)]
    pub caveats: Option<Vec<String>>,
    /// The label's definition in words.
    #[serde(default)]
    pub label: Option<String>,
    #[serde(default)]
    pub references: Option<Vec<String>>,
}

/// The gate's evaluation, as stored in `metadata.json` and in the alias move it caused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Promotion {
    pub alias: String,
    pub when: Option<String>,
    /// The alias's generation and version the gate was evaluated against.
    pub alias_generation: u64,
    pub champion_version: Option<u64>,
    pub inputs: BTreeMap<String, Option<f64>>,
    /// `promote` or `reject`.
    pub verdict: String,
    pub reason: String,
}

impl Promotion {
    pub fn passed(&self) -> bool {
        self.verdict == "promote"
    }
}

/// The scalar metrics a gate may name, by objective.
pub fn gate_metrics(objective: Objective) -> &'static [&'static str] {
    match objective {
        Objective::Binary => metrics::CLASSIFICATION_SCALARS,
        Objective::Regression => metrics::REGRESSION_SCALARS,
    }
}

/// Checks a `promote:` at load time; the parsed gate, or a message and the character
/// offset in `when` it points at.
pub fn check_promote(
    spec: &PromoteSpec,
    objective: Objective,
) -> Result<Option<promotion::Expr>, (String, Option<usize>)> {
    check_alias(&spec.alias).map_err(|e| (e, None))?;
    let Some(when) = &spec.when else {
        return Ok(None);
    };
    let expr = promotion::parse(when).map_err(|e| (e.message.clone(), Some(e.offset)))?;
    expr.check_metrics(gate_metrics(objective))
        .map_err(|e| (e.message.clone(), Some(e.offset)))?;
    Ok(Some(expr))
}

/// Evaluates the gate for a new version with holdout `metrics`, against the versions the
/// aliases it names point to now.
pub async fn evaluate(
    registry: &Registry,
    model: &str,
    spec: &PromoteSpec,
    gate: Option<&promotion::Expr>,
    metrics: &Value,
) -> StoreResult<Promotion> {
    let current = registry.alias(model, &spec.alias).await?;
    let alias_generation = current.as_ref().map_or(0, |r| r.generation);
    let champion_version = current.and_then(|r| r.version);
    let Some(gate) = gate else {
        return Ok(Promotion {
            alias: spec.alias.clone(),
            when: None,
            alias_generation,
            champion_version,
            inputs: BTreeMap::new(),
            verdict: "promote".into(),
            reason: "no gate: every new version is promoted".into(),
        });
    };
    // The metrics of every alias the gate names, as they are now.
    let mut others: BTreeMap<String, Option<Value>> = BTreeMap::new();
    for (var, _) in gate.variables() {
        let Some(alias) = var.alias else { continue };
        if others.contains_key(&alias) {
            continue;
        }
        let version = if alias == spec.alias {
            champion_version
        } else {
            registry.alias(model, &alias).await?.and_then(|r| r.version)
        };
        let metrics = match version {
            Some(v) => registry
                .metadata(model, v)
                .await?
                .map(|m| m["metrics"].clone()),
            None => None,
        };
        others.insert(alias, metrics);
    }
    let lookup = |var: &promotion::Variable| -> Option<f64> {
        let source = match &var.alias {
            None => Some(metrics),
            Some(a) => others.get(a).and_then(Option::as_ref),
        };
        source
            .and_then(|m| m.get(&var.metric))
            .and_then(Value::as_f64)
    };
    let evaluation = gate.evaluate(&lookup);
    Ok(Promotion {
        alias: spec.alias.clone(),
        when: Some(gate.source().to_string()),
        alias_generation,
        champion_version,
        inputs: evaluation.inputs,
        verdict: if evaluation.passed {
            "promote"
        } else {
            "reject"
        }
        .into(),
        reason: evaluation.explanation,
    })
}

/// Moves the alias to `version` from the generation the gate saw. `Err` with a message on a
/// conflict.
pub async fn apply(
    registry: &Registry,
    model: &str,
    version: u64,
    promotion: &Promotion,
    by: String,
    run_id: &str,
) -> StoreResult<std::result::Result<AliasRecord, String>> {
    let request = AliasMove {
        to: Some(version),
        by,
        reason: match &promotion.when {
            Some(when) => format!("promotion gate passed: {when}"),
            None => "promoted on registration (no gate)".into(),
        },
        gate: Some(
            serde_json::to_value(promotion).map_err(|source| StoreError::Json {
                path: format!("promotion of {model}@{version}"),
                source,
            })?,
        ),
        run_id: Some(run_id.to_string()),
    };
    Ok(
        match registry
            .move_alias(model, &promotion.alias, promotion.alias_generation, request)
            .await?
        {
            Moved::Done(record) => Ok(record),
            Moved::Conflict(now) => Err(format!(
                "alias `{}` of model `{model}` moved while this task evaluated its gate (it was generation {} → version {}; it is now {}); version {version} stays registered, unpromoted: resume the run to evaluate the gate again, or promote it with `nightjar models promote {model} {version} --alias {}`",
                promotion.alias,
                promotion.alias_generation,
                promotion
                    .champion_version
                    .map_or("none".into(), |v| v.to_string()),
                now.map_or("unset".into(), |r| format!(
                    "generation {} → version {} by {}",
                    r.generation,
                    r.version.map_or("none".into(), |v| v.to_string()),
                    r.by
                )),
                promotion.alias
            )),
        },
    )
}

/// Holdout metrics by the values of one segment column, with the largest gap of the main
/// metric (AUC for classifiers, RMSE for regressors) between two segments.
pub fn segment_metrics(
    column: &str,
    values: &[Option<String>],
    y: &[f64],
    predictions: &[f64],
    objective: Objective,
    threshold: f64,
) -> Result<Value, String> {
    const MAX_SEGMENTS: usize = 50;
    let mut groups: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (i, v) in values.iter().enumerate() {
        groups
            .entry(v.clone().unwrap_or_else(|| "null".into()))
            .or_default()
            .push(i);
    }
    if groups.len() > MAX_SEGMENTS {
        return Err(format!(
            "segment column `{column}` has {} distinct values in the holdout; a model card compares at most {MAX_SEGMENTS}",
            groups.len()
        ));
    }
    let metric = match objective {
        Objective::Binary => "auc",
        Objective::Regression => "rmse",
    };
    let mut out = Vec::new();
    let mut scored: Vec<(f64, String)> = Vec::new();
    for (value, rows) in groups {
        let ys: Vec<f64> = rows.iter().map(|&i| y[i]).collect();
        let ps: Vec<f64> = rows.iter().map(|&i| predictions[i]).collect();
        let mut m = match objective {
            // A segment with one class has no AUC: its metrics are reported as absent.
            Objective::Binary => metrics::classification(&ys, &ps, threshold)
                .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
                .unwrap_or(Value::Null),
            Objective::Regression => {
                serde_json::to_value(metrics::regression(&ys, &ps)).unwrap_or(Value::Null)
            }
        };
        // The metrics that compare across segments (the group's size is `rows` beside them).
        let keep: &[&str] = match objective {
            Objective::Binary => &[
                "positives",
                "base_rate",
                "auc",
                "average_precision",
                "log_loss",
                "brier",
            ],
            Objective::Regression => &["rmse", "mae", "r2", "mean_actual"],
        };
        if let Value::Object(map) = &mut m {
            map.retain(|k, v| v.is_number() && keep.contains(&k.as_str()));
        }
        if let Some(x) = m.get(metric).and_then(Value::as_f64) {
            scored.push((x, value.clone()));
        }
        out.push(json!({"value": value, "rows": rows.len(), "metrics": m}));
    }
    // Best and worst by the main metric (higher AUC, lower RMSE is better).
    scored.sort_by(|a, b| a.0.total_cmp(&b.0).then_with(|| a.1.cmp(&b.1)));
    let largest_gap = match (scored.first(), scored.last()) {
        (Some(lo), Some(hi)) if scored.len() >= 2 => {
            let (best, worst) = match objective {
                Objective::Binary => (hi, lo),
                Objective::Regression => (lo, hi),
            };
            json!({"metric": metric, "best": best.1, "worst": worst.1, "gap": hi.0 - lo.0})
        }
        _ => Value::Null,
    };
    Ok(json!({"column": column, "metric": metric, "groups": out, "largest_gap": largest_gap}))
}

/// The project's git commit, read from `.git` without running git (`None` outside a
/// repository or when the ref cannot be read).
pub fn git_commit(project_dir: &Path) -> Option<String> {
    let mut dir = Some(project_dir);
    while let Some(d) = dir {
        let git = d.join(".git");
        if git.is_dir() {
            let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
            let head = head.trim();
            let Some(reference) = head.strip_prefix("ref: ") else {
                return is_hex_commit(head).then(|| head.to_string());
            };
            if let Ok(commit) = std::fs::read_to_string(git.join(reference)) {
                let commit = commit.trim();
                return is_hex_commit(commit).then(|| commit.to_string());
            }
            let packed = std::fs::read_to_string(git.join("packed-refs")).ok()?;
            return packed.lines().find_map(|line| {
                let (commit, name) = line.split_once(' ')?;
                (name == reference && is_hex_commit(commit)).then(|| commit.to_string())
            });
        }
        dir = d.parent();
    }
    None
}

fn is_hex_commit(s: &str) -> bool {
    s.len() >= 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// MLflow's column type for an Arrow type.
fn mlflow_type(arrow: &str) -> &'static str {
    match arrow {
        "Int64" | "UInt64" | "UInt32" => "long",
        "Int32" | "Int16" | "Int8" | "UInt16" | "UInt8" => "integer",
        "Float32" => "float",
        "Boolean" => "boolean",
        _ => "double",
    }
}

/// The `MLmodel` file: MLflow's description of a model directory, so MLflow users and tools
/// recognise the flavor, signature, run and creation time. Written by hand (every value is
/// a JSON-quoted string, which YAML reads as a double-quoted scalar) in a fixed order.
pub fn mlmodel_yaml(metadata: &Value, model_uuid: &str, artefact: &str) -> String {
    let q = |s: &str| Value::String(s.to_string()).to_string();
    let s = |v: &Value| q(v.as_str().unwrap_or_default());
    let inputs: Vec<Value> = metadata["features"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|f| {
            json!({
                "type": mlflow_type(f["type"].as_str().unwrap_or_default()),
                "name": f["name"],
                "required": f["nullable"].as_bool().is_none_or(|n| !n),
            })
        })
        .collect();
    let outputs = json!([{"type": "double", "name": "score", "required": true}]);
    let created =
        chrono::DateTime::parse_from_rfc3339(metadata["created_at"].as_str().unwrap_or(""))
            .map(|t| t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string())
            .unwrap_or_default();
    format!(
        "artifact_path: model\nflavors:\n  nightjar:\n    algorithm: {}\n    data: {}\n    objective: {}\n    nightjar_version: {}\nmodel_uuid: {}\nrun_id: {}\nsignature:\n  inputs: {}\n  outputs: {}\n  params: null\nutc_time_created: {}\n",
        s(&metadata["algorithm"]),
        q(artefact),
        s(&metadata["objective"]),
        s(&metadata["code"]["nightjar_version"]),
        q(model_uuid),
        s(&metadata["run_id"]),
        q(&Value::Array(inputs).to_string()),
        q(&outputs.to_string()),
        q(&created),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_report_each_value_and_flag_the_largest_gap() {
        // Segment a: perfectly ranked (AUC 1); b: inverted (AUC 0); c: one class (no AUC).
        let values: Vec<Option<String>> = ["a", "a", "a", "a", "b", "b", "b", "b", "c", "c"]
            .iter()
            .map(|s| Some(s.to_string()))
            .collect();
        let y = [0., 0., 1., 1., 0., 0., 1., 1., 1., 1.];
        let p = [0.1, 0.2, 0.8, 0.9, 0.9, 0.8, 0.2, 0.1, 0.5, 0.6];
        let s = segment_metrics("country", &values, &y, &p, Objective::Binary, 0.5).unwrap();
        assert_eq!(s["groups"][0]["metrics"]["auc"], 1.0);
        assert_eq!(s["groups"][1]["metrics"]["auc"], 0.0);
        assert_eq!(s["groups"][2]["metrics"], Value::Null);
        assert_eq!(s["groups"][2]["rows"], 2);
        assert_eq!(
            s["largest_gap"],
            json!({"metric": "auc", "best": "a", "worst": "b", "gap": 1.0})
        );
        // Regression: the worst segment has the highest RMSE.
        let y = [1., 2., 3., 4.];
        let p = [1., 2., 5., 8.];
        let v: Vec<Option<String>> = vec![None, None, Some("x".into()), Some("x".into())];
        let s = segment_metrics("c", &v, &y, &p, Objective::Regression, 0.5).unwrap();
        assert_eq!(s["largest_gap"]["best"], "null");
        assert_eq!(s["largest_gap"]["worst"], "x");
        assert!((s["largest_gap"]["gap"].as_f64().unwrap() - 10f64.sqrt()).abs() < 1e-12);
        let many: Vec<Option<String>> = (0..51).map(|i| Some(i.to_string())).collect();
        let err = segment_metrics(
            "id",
            &many,
            &[0.; 51],
            &[0.; 51],
            Objective::Regression,
            0.5,
        )
        .unwrap_err();
        assert!(err.contains("51 distinct values"), "{err}");
    }

    #[test]
    fn mlmodel_has_flavor_signature_and_time() {
        let meta = json!({
            "algorithm": "gbt_classifier", "objective": "binary", "run_id": "r1",
            "created_at": "2026-11-23T14:23:24.820Z", "code": {"nightjar_version": "0.1.0"},
            "features": [{"name": "tenure", "type": "Float64", "nullable": true},
                         {"name": "orders", "type": "Int64", "nullable": false}],
        });
        let text = mlmodel_yaml(&meta, "uuid-1", "model.json");
        let doc = &yaml_rust2::YamlLoader::load_from_str(&text).unwrap()[0];
        assert_eq!(
            doc["flavors"]["nightjar"]["algorithm"].as_str(),
            Some("gbt_classifier")
        );
        assert_eq!(
            doc["utc_time_created"].as_str(),
            Some("2026-11-23 14:23:24.820000")
        );
        assert!(doc["signature"]["params"].is_null());
        let inputs: Value =
            serde_json::from_str(doc["signature"]["inputs"].as_str().unwrap()).unwrap();
        assert_eq!(
            inputs,
            json!([{"type": "double", "name": "tenure", "required": false},
                   {"type": "long", "name": "orders", "required": true}])
        );
        assert_eq!(text, mlmodel_yaml(&meta, "uuid-1", "model.json"));
    }

    #[test]
    fn the_project_commit_is_read_from_git_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(git_commit(dir.path()), None);
        let git = dir.path().join(".git");
        std::fs::create_dir_all(git.join("refs/heads")).unwrap();
        std::fs::write(git.join("HEAD"), "ref: refs/heads/main\n").unwrap();
        let commit = "0123456789abcdef0123456789abcdef01234567";
        std::fs::write(
            git.join("packed-refs"),
            format!("# pack\n{commit} refs/heads/main\n"),
        )
        .unwrap();
        let sub = dir.path().join("pipelines");
        std::fs::create_dir_all(&sub).unwrap();
        assert_eq!(git_commit(&sub).as_deref(), Some(commit));
        let newer = "89abcdef0123456789abcdef0123456789abcdef";
        std::fs::write(git.join("refs/heads/main"), format!("{newer}\n")).unwrap();
        assert_eq!(git_commit(dir.path()).as_deref(), Some(newer));
    }
}
