//! `nightjar features list` and `nightjar features show VIEW`: the views declared under
//! `features/`, the definition versions stored under the root, and each materialization's
//! record (run, inputs, snapshots, rows, statistics).

use std::path::Path;

use serde_json::{Value, json};

use super::{Exit, Failure, load, open_storage, print_table, today};
use crate::features::store::{Committed, materializations, stored_versions};
use crate::features::{FeatureView, stats::FeatureStats};
use crate::spec::LoadOptions;
use crate::stores::tables::Tables;

/// Every stored version of a view with its materializations (current version first).
async fn versions_of(
    tables: &Tables,
    storage: &crate::stores::Storage,
    view: &FeatureView,
) -> Result<Vec<(String, Vec<Committed>)>, Failure> {
    let mut names = stored_versions(storage, &view.name)
        .await
        .map_err(|e| Failure::usage(e.to_string()))?;
    names.retain(|v| v != &view.version);
    names.insert(0, view.version.clone());
    let mut out = Vec::new();
    for version in names {
        let history = materializations(tables, &view.name, &version)
            .await
            .map_err(|e| Failure::usage(e.to_string()))?;
        out.push((version, history));
    }
    Ok(out)
}

pub(super) async fn list(dir: &Path, json: bool) -> Result<Exit, Failure> {
    let project = load(dir, &LoadOptions::for_day(today()))?;
    let storage = open_storage(&project).await?;
    let tables = Tables::new(storage.clone());
    let mut rows = Vec::new();
    let mut items = Vec::new();
    for view in project.features.values() {
        let versions = versions_of(&tables, &storage, view).await?;
        let current = &versions[0].1;
        let latest = current.last();
        let snapshots: usize = crate::features::store::present_snapshots(current).len();
        items.push(json!({
            "name": view.name,
            "version": view.version,
            "entity": view.entity,
            "timestamp": view.spec.timestamp,
            "ttl_seconds": view.ttl().map(|d| d.as_secs()),
            "owner": view.spec.owner,
            "description": view.spec.description,
            "inputs": view.inputs,
            "stored_versions": versions.iter().filter(|(_, h)| !h.is_empty()).map(|(v, _)| v).collect::<Vec<_>>(),
            "materializations": current.len(),
            "snapshots": snapshots,
            "latest": latest.map(|c| json!({"delta_version": c.delta_version, "run_id": c.record.run_id, "ds": c.record.ds})),
        }));
        rows.push(vec![
            view.name.clone(),
            view.version.clone(),
            view.entity.join(", "),
            latest.map_or("never".into(), |c| c.record.ds.clone()),
            snapshots.to_string(),
            versions
                .iter()
                .filter(|(_, h)| !h.is_empty())
                .count()
                .to_string(),
        ]);
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&Value::Array(items)).unwrap_or_default()
        );
    } else if rows.is_empty() {
        println!("no feature views (add features/<name>.yaml and <name>.sql)");
    } else {
        print_table(
            &[
                "view",
                "version",
                "entity",
                "materialized (ds)",
                "snapshots",
                "stored versions",
            ],
            &rows,
        );
    }
    Ok(Exit::Success)
}

pub(super) async fn show(dir: &Path, name: &str, json: bool) -> Result<Exit, Failure> {
    let project = load(dir, &LoadOptions::for_day(today()))?;
    let Some(view) = project.features.get(name) else {
        let known: Vec<&str> = project.features.keys().map(|s| s.as_str()).collect();
        let hint = crate::diag::did_you_mean(name, known.iter().copied())
            .map_or(format!("views: {}", known.join(", ")), |s| {
                format!("did you mean `{s}`?")
            });
        return Err(Failure::usage(format!("no feature view `{name}` ({hint})")));
    };
    let storage = open_storage(&project).await?;
    let tables = Tables::new(storage.clone());
    let versions = versions_of(&tables, &storage, view).await?;
    if json {
        let out = json!({
            "name": view.name,
            "version": view.version,
            "definition": view.spec,
            "yaml": view.yaml.path,
            "sql_file": view.sql.path,
            "sql": view.sql.text,
            "inputs": view.inputs,
            "versions": versions.iter().map(|(v, h)| json!({
                "version": v,
                "current": v == &view.version,
                "materializations": h,
            })).collect::<Vec<_>>(),
        });
        println!("{}", serde_json::to_string_pretty(&out).unwrap_or_default());
        return Ok(Exit::Success);
    }
    println!("feature view {} (version {})", view.name, view.version);
    if let Some(d) = &view.spec.description {
        println!("  {d}");
    }
    println!(
        "  entity {}; timestamp {}; ttl {}; owner {}",
        view.entity.join(", "),
        view.spec.timestamp,
        view.ttl()
            .map_or("none".into(), |d| format!("{}s", d.as_secs())),
        view.spec.owner.as_deref().unwrap_or("(not declared)")
    );
    println!("  reads {}", view.inputs.join(", "));
    for (version, history) in &versions {
        let current = if version == &view.version {
            " (current)"
        } else {
            ""
        };
        println!();
        println!(
            "version {version}{current}: {} materialization(s)",
            history.len()
        );
        let rows: Vec<Vec<String>> = history
            .iter()
            .map(|c| {
                vec![
                    c.delta_version.to_string(),
                    c.record.ds.clone(),
                    c.record.run_id.clone(),
                    c.record.snapshots.len().to_string(),
                    c.record.rows.to_string(),
                    c.record
                        .inputs
                        .iter()
                        .map(|(t, v)| format!("{t}@{v}"))
                        .collect::<Vec<_>>()
                        .join(" "),
                ]
            })
            .collect();
        if !rows.is_empty() {
            print_table(
                &["delta", "ds", "run", "snapshots", "rows", "inputs"],
                &rows,
            );
        }
        if let Some(last) = history.last() {
            println!(
                "statistics of the latest materialization (delta version {}):",
                last.delta_version
            );
            print_table(
                &[
                    "feature", "type", "count", "nulls", "min", "mean", "max", "stddev", "p50",
                ],
                &last.record.stats.iter().map(stats_row).collect::<Vec<_>>(),
            );
        }
    }
    println!();
    println!("-- {}", view.sql.path.display());
    print!("{}", view.sql.text);
    Ok(Exit::Success)
}

fn stats_row(s: &FeatureStats) -> Vec<String> {
    let n = |v: Option<f64>| v.map_or("-".into(), |v| format!("{v:.4}"));
    let p50 = s.quantiles.iter().find(|q| q[0] == 0.5).map(|q| q[1]);
    vec![
        s.name.clone(),
        s.data_type.clone(),
        s.count.to_string(),
        s.nulls.to_string(),
        n(s.min),
        n(s.mean),
        n(s.max),
        n(s.stddev),
        s.distinct.map_or(n(p50), |d| format!("{d} distinct")),
    ]
}
