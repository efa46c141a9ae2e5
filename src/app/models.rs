//! `nightjar models …`: the registry from the command line: list, show (with every file
//! checked against its sha256), promote and rollback (compare-and-swap alias moves), alias
//! history, model cards, and gc. Alias moves and deletions go into the audit log as
//! OpenLineage events of job `registry.<action>`, with the model version as input dataset.

use std::path::Path;

use serde_json::{Value, json};

use super::{Exit, Failure, load, open_storage, print_table, today};
use crate::audit::RunAudit;
use crate::audit::event::{self, DatasetFacts, EventType, JobInfo};
use crate::cli::{CardFormat, ModelsCommand};
use crate::models::card;
use crate::spec::{LoadOptions, Project};
use crate::stores::audit::AuditLog;
use crate::stores::registry::{
    AliasMove, AliasRecord, ModelRef, Moved, Registry, check_alias, dataset_name,
};
use crate::stores::{Storage, StoreError};

fn print_json(value: &Value) {
    println!(
        "{}",
        serde_json::to_string_pretty(value).unwrap_or_default()
    );
}

/// `user <name>`: from `--by`, else `NIGHTJAR_USER`, else `USER`.
fn who(by: &Option<String>) -> String {
    let name = by
        .clone()
        .or_else(|| std::env::var("NIGHTJAR_USER").ok())
        .or_else(|| std::env::var("USER").ok())
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| "unknown".into());
    format!("user {name}")
}

struct Cx {
    project: Project,
    storage: Storage,
    registry: Registry,
}

impl Cx {
    /// A model reference that must name a model with versions; `(name, version)` it selects.
    async fn resolve(&self, text: &str) -> Result<(String, u64), Failure> {
        let reference = ModelRef::parse(text).map_err(Failure::usage)?;
        self.known(&reference.name).await?;
        let version = self
            .registry
            .resolve(&reference)
            .await
            .map_err(|e| Failure::usage(e.to_string()))?;
        Ok((reference.name, version))
    }

    async fn known(&self, model: &str) -> Result<(), Failure> {
        let models = self.registry.models().await.map_err(Failure::store)?;
        if models.iter().any(|m| m == model) {
            return Ok(());
        }
        Err(Failure::usage(format!(
            "no model `{model}` in the registry at {} (models: {})",
            self.storage.display(),
            if models.is_empty() {
                "none".to_string()
            } else {
                models.join(", ")
            }
        )))
    }

    /// Appends one registry action to the audit log (and records the new chain head).
    async fn audit(&self, action: &str, inputs: Vec<DatasetFacts>) -> Result<(), Failure> {
        let run_id = crate::stores::runs::new_run_id();
        let info = RunAudit::run_info(
            &self.project.config.name,
            "registry",
            &run_id,
            today(),
            &self.storage,
            &self.project.dir,
        );
        let job = JobInfo {
            task: Some(action.to_string()),
            kind: "registry".into(),
            location: String::new(),
            sql: None,
        };
        let event = event::run_event(
            &info,
            &job,
            EventType::Complete,
            chrono::Utc::now(),
            &inputs,
            &[],
            None,
        );
        let witness = super::audit::open_witness(&self.project).await?;
        let mut log = AuditLog::new(self.storage.clone(), witness);
        let failed = |e: StoreError| {
            Failure::run_failed(format!(
                "the registry change is done, but its audit event could not be written: {e}"
            ))
        };
        let head = log.append(vec![event]).await.map_err(failed)?;
        log.record_head(&head).await.map_err(failed)
    }
}

fn alias_dataset(model: &str, record: &AliasRecord, version: u64) -> DatasetFacts {
    DatasetFacts {
        name: dataset_name(model, version),
        model: Some(json!({
            "name": model,
            "version": version,
            "alias": {
                "name": record.alias,
                "generation": record.generation,
                "from": record.previous_version,
                "to": record.version,
                "by": record.by,
                "reason": record.reason,
            },
        })),
        ..Default::default()
    }
}

pub(super) async fn command(
    dir: &Path,
    command: &ModelsCommand,
    json: bool,
) -> Result<Exit, Failure> {
    let project = load(dir, &LoadOptions::for_day(today()))?;
    let storage = open_storage(&project).await?;
    let cx = Cx {
        registry: Registry::new(storage.clone()),
        project,
        storage,
    };
    match command {
        ModelsCommand::List => list(&cx, json).await,
        ModelsCommand::Show { model } => show(&cx, model, json).await,
        ModelsCommand::Promote {
            model,
            version,
            alias,
            reason,
            by,
        } => {
            cx.known(model).await?;
            move_alias(
                &cx,
                model,
                alias,
                Some(*version),
                reason,
                who(by),
                "promote",
                json,
            )
            .await
        }
        ModelsCommand::Rollback {
            model,
            alias,
            reason,
            by,
        } => {
            cx.known(model).await?;
            let current = cx
                .registry
                .alias(model, alias)
                .await
                .map_err(Failure::store)?
                .ok_or_else(|| Failure::usage(format!("model `{model}` has no alias `{alias}`")))?;
            let Some(back) = current.previous_version else {
                return Err(Failure::usage(format!(
                    "alias `{alias}` of model `{model}` has no earlier version to roll back to (generation {} is its first)",
                    current.generation
                )));
            };
            move_alias(
                &cx,
                model,
                alias,
                Some(back),
                reason,
                who(by),
                "rollback",
                json,
            )
            .await
        }
        ModelsCommand::History { model, alias } => {
            history(&cx, model, alias.as_deref(), json).await
        }
        ModelsCommand::Card { model, format } => {
            let (name, version) = cx.resolve(model).await?;
            let (metadata, history) = checked_version(&cx, &name, version).await?;
            match if json { CardFormat::Json } else { *format } {
                CardFormat::Json => print_json(&card::card_json(&metadata, &history)),
                CardFormat::Md => print!("{}", card::card_markdown(&metadata, &history)),
            }
            Ok(Exit::Success)
        }
        ModelsCommand::Gc { model, keep, by } => {
            cx.known(model).await?;
            let deleted = cx
                .registry
                .gc(model, *keep, &who(by))
                .await
                .map_err(Failure::store)?;
            if !deleted.is_empty() {
                let inputs = deleted
                    .iter()
                    .map(|v| DatasetFacts {
                        name: dataset_name(model, *v),
                        model: Some(json!({"name": model, "version": v, "deleted": true})),
                        ..Default::default()
                    })
                    .collect();
                cx.audit("gc", inputs).await?;
            }
            if json {
                print_json(&json!({"model": model, "deleted": deleted, "keep": keep}));
            } else if deleted.is_empty() {
                println!("nothing to delete: model `{model}` keeps every version");
            } else {
                let list: Vec<String> = deleted.iter().map(u64::to_string).collect();
                println!("deleted versions {} of model `{model}`", list.join(", "));
            }
            Ok(Exit::Success)
        }
    }
}

/// A version's metadata, after checking every file against it, and the model's alias history.
async fn checked_version(
    cx: &Cx,
    model: &str,
    version: u64,
) -> Result<(Value, Vec<Value>), Failure> {
    let loaded = cx
        .registry
        .load(model, version)
        .await
        .map_err(|e| Failure::run_failed(format!("model `{model}` version {version}: {e}")))?;
    let history = cx
        .registry
        .history(model)
        .await
        .map_err(Failure::store)?
        .iter()
        .filter_map(|r| serde_json::to_value(r).ok())
        .collect();
    Ok((loaded.metadata, history))
}

async fn list(cx: &Cx, json: bool) -> Result<Exit, Failure> {
    let mut items = Vec::new();
    let mut rows = Vec::new();
    for model in cx.registry.models().await.map_err(Failure::store)? {
        let versions = cx.registry.versions(&model).await.map_err(Failure::store)?;
        let aliases = cx.registry.aliases(&model).await.map_err(Failure::store)?;
        let latest = versions.last().copied();
        let latest_meta = match latest {
            Some(v) => cx
                .registry
                .metadata(&model, v)
                .await
                .map_err(Failure::store)?,
            None => None,
        };
        let alias_map: serde_json::Map<String, Value> = aliases
            .iter()
            .map(|(a, r)| (a.clone(), json!(r.version)))
            .collect();
        rows.push(vec![
            model.clone(),
            versions.len().to_string(),
            latest.map_or("-".into(), |v| v.to_string()),
            latest_meta
                .as_ref()
                .and_then(|m| m["algorithm"].as_str())
                .unwrap_or("-")
                .to_string(),
            aliases
                .iter()
                .map(|(a, r)| format!("{a}→{}", r.version.unwrap_or_default()))
                .collect::<Vec<_>>()
                .join(" "),
        ]);
        items.push(json!({
            "name": model,
            "versions": versions,
            "latest": latest,
            "algorithm": latest_meta.as_ref().map(|m| m["algorithm"].clone()),
            "aliases": alias_map,
        }));
    }
    if json {
        print_json(&Value::Array(items));
    } else if rows.is_empty() {
        println!("no models in the registry at {}", cx.storage.display());
    } else {
        print_table(
            &["model", "versions", "latest", "algorithm", "aliases"],
            &rows,
        );
    }
    Ok(Exit::Success)
}

async fn show(cx: &Cx, text: &str, json: bool) -> Result<Exit, Failure> {
    let (model, version) = cx.resolve(text).await?;
    let (metadata, _) = checked_version(cx, &model, version).await?;
    let aliases: Vec<String> = cx
        .registry
        .aliases(&model)
        .await
        .map_err(Failure::store)?
        .into_iter()
        .filter(|(_, r)| r.version == Some(version))
        .map(|(a, _)| a)
        .collect();
    if json {
        print_json(&json!({
            "model": model,
            "version": version,
            "aliases": aliases,
            "files_verified": true,
            "metadata": metadata,
        }));
        return Ok(Exit::Success);
    }
    let s = |v: &Value| match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        other => other.to_string(),
    };
    println!("{model}@{version}  ({})", s(&metadata["algorithm"]));
    println!(
        "  aliases:    {}",
        if aliases.is_empty() {
            "-".into()
        } else {
            aliases.join(", ")
        }
    );
    println!(
        "  created:    {} by run {} ({}.{})",
        s(&metadata["created_at"]),
        s(&metadata["run_id"]),
        s(&metadata["pipeline"]),
        s(&metadata["task"])
    );
    println!(
        "  trained on: {} ({} rows: {} train, {} holdout)",
        s(&metadata["training"]["table"]),
        s(&metadata["training"]["rows"]),
        s(&metadata["training"]["train_rows"]),
        s(&metadata["training"]["holdout_rows"])
    );
    println!(
        "  code:       nightjar {}, project commit {}",
        s(&metadata["code"]["nightjar_version"]),
        s(&metadata["code"]["git_commit"])
    );
    if let Some(metrics) = metadata["metrics"].as_object() {
        let scalars: Vec<String> = metrics
            .iter()
            .filter(|(_, v)| v.is_number())
            .map(|(k, v)| {
                format!(
                    "{k}={}",
                    crate::models::promotion::format_value(v.as_f64().unwrap_or(f64::NAN))
                )
            })
            .collect();
        println!("  metrics:    {}", scalars.join(" "));
    }
    if let Some(p) = metadata.get("promotion").filter(|p| !p.is_null()) {
        println!(
            "  gate:       {} → {} ({})",
            s(&p["when"]),
            s(&p["verdict"]),
            s(&p["reason"])
        );
    }
    println!("  files (sha256 checked):");
    for f in metadata["files"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
    {
        println!(
            "    {:<14} {:>10} bytes  {}",
            s(&f["path"]),
            s(&f["bytes"]),
            s(&f["sha256"])
        );
    }
    Ok(Exit::Success)
}

#[allow(clippy::too_many_arguments)]
async fn move_alias(
    cx: &Cx,
    model: &str,
    alias: &str,
    to: Option<u64>,
    reason: &str,
    by: String,
    action: &str,
    json: bool,
) -> Result<Exit, Failure> {
    check_alias(alias).map_err(Failure::usage)?;
    if let Some(v) = to {
        // Only a version whose files check out can take an alias.
        cx.registry
            .load(model, v)
            .await
            .map_err(|e| Failure::run_failed(format!("model `{model}` version {v}: {e}")))?;
    }
    let current = cx
        .registry
        .alias(model, alias)
        .await
        .map_err(Failure::store)?;
    let expected = current.as_ref().map_or(0, |r| r.generation);
    let request = AliasMove {
        to,
        by,
        reason: reason.to_string(),
        gate: None,
        run_id: None,
    };
    let record = match cx
        .registry
        .move_alias(model, alias, expected, request)
        .await
        .map_err(Failure::store)?
    {
        Moved::Done(record) => record,
        Moved::Conflict(now) => {
            return Err(Failure::run_failed(format!(
                "conflict: alias `{alias}` of model `{model}` was moved by someone else (to {}) while this {action} ran; nothing changed: check `nightjar models history {model} --alias {alias}` and try again",
                now.map_or("unset".into(), |r| format!(
                    "version {} at generation {} by {}",
                    r.version.map_or("none".into(), |v| v.to_string()),
                    r.generation,
                    r.by
                ))
            )));
        }
    };
    if let Some(v) = to {
        cx.audit(action, vec![alias_dataset(model, &record, v)])
            .await?;
    }
    if json {
        print_json(&serde_json::to_value(&record).unwrap_or_default());
    } else {
        println!(
            "{model}@{alias}: {} → {} (generation {})",
            record
                .previous_version
                .map_or("none".into(), |v| v.to_string()),
            record.version.map_or("none".into(), |v| v.to_string()),
            record.generation
        );
    }
    Ok(Exit::Success)
}

async fn history(cx: &Cx, model: &str, alias: Option<&str>, json: bool) -> Result<Exit, Failure> {
    cx.known(model).await?;
    let records = match alias {
        Some(a) => {
            check_alias(a).map_err(Failure::usage)?;
            cx.registry.alias_history(model, a).await
        }
        None => cx.registry.history(model).await,
    }
    .map_err(Failure::store)?;
    if json {
        print_json(&serde_json::to_value(&records).unwrap_or_default());
        return Ok(Exit::Success);
    }
    if records.is_empty() {
        println!("model `{model}` has no alias moves");
        return Ok(Exit::Success);
    }
    let v = |v: Option<u64>| v.map_or("-".into(), |v| v.to_string());
    let rows: Vec<Vec<String>> = records
        .iter()
        .map(|r| {
            vec![
                r.at.clone(),
                r.alias.clone(),
                r.generation.to_string(),
                v(r.previous_version),
                v(r.version),
                r.by.clone(),
                r.reason.clone(),
            ]
        })
        .collect();
    print_table(&["at", "alias", "gen", "from", "to", "by", "reason"], &rows);
    Ok(Exit::Success)
}
