//! The committed JSON Schema is current, and the demo files conform to it.

use crate::{nightjar, repo_root};

#[test]
fn committed_schema_is_current() {
    let out = nightjar(&repo_root(), &["schema"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let path = repo_root().join("schema/nightjar.schema.json");
    let committed = std::fs::read_to_string(&path).unwrap_or_default();
    if committed != out.stdout {
        if std::env::var_os("NIGHTJAR_UPDATE_SCHEMA").is_some() {
            std::fs::write(&path, &out.stdout).unwrap();
        } else {
            panic!(
                "schema/nightjar.schema.json is stale: run `NIGHTJAR_UPDATE_SCHEMA=1 cargo test --test it schema` and commit it"
            );
        }
    }
    let schema: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let task = &schema["$defs"]["Task"]["oneOf"];
    let kinds: Vec<&str> = task
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["properties"]["kind"]["const"].as_str().unwrap())
        .collect();
    // Every task kind, in the order `TaskKind` lists them.
    assert_eq!(kinds, nightjar::tasks::TaskKind::NAMES);
    assert!(schema["$defs"]["Project"]["properties"]["storage"].is_object());
    let view = &schema["$defs"]["FeatureView"];
    assert_eq!(view["required"], serde_json::json!(["entity", "timestamp"]));
    assert_eq!(view["additionalProperties"], false);
}
