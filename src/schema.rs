//! The JSON Schema of the project files (`nightjar schema`), for editors' YAML language
//! servers. A committed copy (`schema/nightjar.schema.json`) is kept current by a test.

use schemars::generate::SchemaSettings;
use serde_json::{Value, json};

use crate::spec::{COMMON_KEYS, PipelineHeader, ProjectConfig, TaskCommon};
use crate::tasks::TaskKind;

/// One schema document with `nightjar.yaml` and pipeline files under `$defs`, and a task as
/// its common fields plus one kind's own fields (a `oneOf` on `kind`).
pub fn project_schema() -> Value {
    let generator = SchemaSettings::draft2020_12().into_generator();
    let mut generator = generator;
    let project = generator.root_schema_for::<ProjectConfig>().to_value();
    let mut pipeline = generator.root_schema_for::<PipelineHeader>().to_value();
    let common = generator.root_schema_for::<TaskCommon>().to_value();
    let kinds = generator.root_schema_for::<TaskKind>().to_value();
    let view = generator
        .root_schema_for::<crate::features::ViewSpec>()
        .to_value();

    let mut defs = serde_json::Map::new();
    for schema in [&project, &pipeline, &common, &kinds, &view] {
        if let Some(Value::Object(d)) = schema.get("$defs") {
            defs.extend(d.clone());
        }
    }
    // Each externally tagged variant `{ kind_name: Config }` becomes `kind: const` + Config's
    // properties + the common ones, closed with additionalProperties: false.
    let mut variants = Vec::new();
    for variant in kinds
        .get("oneOf")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
    {
        let Some(props) = variant.get("properties").and_then(Value::as_object) else {
            continue;
        };
        for (kind_name, config_ref) in props {
            let config = resolve(config_ref, &defs);
            let mut properties = config
                .get("properties")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            let mut required: Vec<Value> = config
                .get("required")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default();
            if let Some(Value::Object(common_props)) = common.get("properties") {
                for (k, v) in common_props {
                    properties.insert(k.clone(), v.clone());
                }
            }
            properties.insert("kind".into(), json!({"const": kind_name, "description": variant.get("description").cloned().unwrap_or(Value::Null)}));
            required.push(json!("id"));
            required.push(json!("kind"));
            variants.push(json!({"type": "object", "properties": properties, "required": required, "additionalProperties": false}));
        }
    }
    let _ = COMMON_KEYS;
    if let Some(Value::Object(props)) = pipeline.get_mut("properties") {
        props.insert("tasks".into(), json!({"type": "array", "description": "The tasks of this pipeline.", "items": {"$ref": "#/$defs/Task"}}));
    }
    defs.insert("Task".into(), json!({"oneOf": variants}));
    let strip = |mut v: Value| {
        if let Value::Object(m) = &mut v {
            m.remove("$defs");
            m.remove("$schema");
        }
        v
    };
    defs.insert("Project".into(), strip(project));
    defs.insert("Pipeline".into(), strip(pipeline));
    defs.insert("FeatureView".into(), strip(view));
    json!({
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://nightjar.dev/schema/nightjar.schema.json",
        "title": "nightjar project files",
        "description": "nightjar.yaml is `#/$defs/Project`; pipelines/*.yaml are `#/$defs/Pipeline`; features/*.yaml are `#/$defs/FeatureView`.",
        "anyOf": [{"$ref": "#/$defs/Project"}, {"$ref": "#/$defs/Pipeline"}, {"$ref": "#/$defs/FeatureView"}],
        "$defs": defs,
    })
}

fn resolve(schema: &Value, defs: &serde_json::Map<String, Value>) -> Value {
    match schema
        .get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
    {
        Some(name) => defs.get(name).cloned().unwrap_or(Value::Null),
        None => schema.clone(),
    }
}

pub fn project_schema_json() -> String {
    serde_json::to_string_pretty(&project_schema()).unwrap_or_default()
}
