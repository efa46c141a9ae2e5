//! `audit verify`, `audit log` and `lineage`, and opening a run's audit writer.

use std::path::Path;

use chrono::NaiveDate;
use serde_json::Value;

use super::{Exit, Failure, load, open_storage, print_table, today};
use crate::audit::lineage::{Direction, Graph};
use crate::audit::{Endpoint, RunAudit};
use crate::cli::{AuditCommand, LineageFormat};
use crate::spec::{LoadOptions, Project};
use crate::stores::Storage;
use crate::stores::audit::{self as log, RecordedHead};
use crate::stores::runs;

fn load_project(dir: &Path) -> Result<Project, Failure> {
    load(dir, &LoadOptions::for_day(today()))
}

pub(super) async fn open_witness(project: &Project) -> Result<Option<Storage>, Failure> {
    let Some(witness) = &project.config.audit.witness else {
        return Ok(None);
    };
    Storage::open(witness, &Default::default(), &project.dir)
        .await
        .map(Some)
        .map_err(|e| Failure::usage(format!("audit witness: {e}")))
}

/// The audit writer of one run (forwarding to `OPENLINEAGE_URL` if it is set).
pub(super) async fn start_run_audit(
    project: &Project,
    storage: &Storage,
    pipeline: &str,
    run_id: &str,
    ds: NaiveDate,
) -> Result<RunAudit, Failure> {
    let witness = open_witness(project).await?;
    let info = RunAudit::run_info(
        &project.config.name,
        pipeline,
        run_id,
        ds,
        storage,
        &project.dir,
    );
    Ok(RunAudit::start(
        storage.clone(),
        witness,
        info,
        &project.dir,
        Endpoint::from_env(),
    ))
}

pub(super) async fn command(
    dir: &Path,
    command: &AuditCommand,
    json: bool,
) -> Result<Exit, Failure> {
    let project = load_project(dir)?;
    let storage = open_storage(&project).await?;
    match command {
        AuditCommand::Verify => verify(&project, &storage, json).await,
        AuditCommand::Log { since, run } => {
            list(&storage, since.as_deref(), run.as_deref(), json).await
        }
    }
}

async fn verify(project: &Project, storage: &Storage, json: bool) -> Result<Exit, Failure> {
    let mut heads = log::recorded_heads(storage, false)
        .await
        .map_err(Failure::store)?;
    if let Some(witness) = open_witness(project).await? {
        heads.extend(
            log::recorded_heads(&witness, true)
                .await
                .map_err(Failure::store)?,
        );
    }
    for run in runs::list(storage).await.map_err(Failure::store)? {
        if let Some(head) = run.audit_head {
            heads.push(RecordedHead {
                source: format!(
                    "run {} (`{}`)",
                    run.run_id,
                    runs::RunState::rel_path(&run.pipeline, &run.run_id)
                ),
                head,
            });
        }
    }
    let report = log::verify(storage, &heads).await.map_err(Failure::store)?;
    if json {
        let value = serde_json::json!({"ok": report.ok(), "report": report});
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    }
    if report.ok() {
        if !json {
            let head = report.head.as_ref().map_or("empty".to_string(), |h| {
                format!("head segment {} {}", h.sequence, h.hash)
            });
            println!(
                "ok: audit log intact: {} segments, {} events, {head}; {} recorded heads match",
                report.segments, report.events, report.heads_checked
            );
        }
        return Ok(Exit::Success);
    }
    let mut err = std::io::stderr().lock();
    use std::io::Write;
    let _ = writeln!(
        err,
        "error: audit log broken; first broken link: {}",
        report.problems[0]
    );
    for p in &report.problems[1..] {
        let _ = writeln!(err, "  also: {p}");
    }
    Ok(Exit::RunFailed)
}

/// Every event of the log with the segment it is in, oldest first.
async fn all_events(storage: &Storage) -> Result<Vec<(u64, Value)>, Failure> {
    let segments = log::read_all(storage).await.map_err(Failure::store)?;
    Ok(segments
        .into_iter()
        .flat_map(|s| s.events.into_iter().map(move |e| (s.sequence, e)))
        .collect())
}

fn parse_since(text: &str) -> Result<chrono::DateTime<chrono::Utc>, Failure> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.to_utc());
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|d| d.and_hms_opt(0, 0, 0))
        .map(|t| t.and_utc())
        .ok_or_else(|| {
            Failure::usage(format!(
                "`--since {text}` is not a time (RFC 3339, e.g. 2025-05-01T02:30:00Z, or YYYY-MM-DD)"
            ))
        })
}

fn text<'a>(v: &'a Value, pointer: &str) -> &'a str {
    v.pointer(pointer).and_then(Value::as_str).unwrap_or("")
}

async fn list(
    storage: &Storage,
    since: Option<&str>,
    run: Option<&str>,
    json: bool,
) -> Result<Exit, Failure> {
    let since = since.map(parse_since).transpose()?;
    let events: Vec<(u64, Value)> = all_events(storage)
        .await?
        .into_iter()
        .filter(|(_, e)| {
            since.is_none_or(|since| {
                chrono::DateTime::parse_from_rfc3339(text(e, "/eventTime"))
                    .is_ok_and(|t| t.to_utc() >= since)
            })
        })
        .filter(|(_, e)| {
            run.is_none_or(|run| {
                text(e, "/run/facets/nightjar/runId") == run || text(e, "/run/runId") == run
            })
        })
        .collect();
    if json {
        let list: Vec<&Value> = events.iter().map(|(_, e)| e).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&list).unwrap_or_default()
        );
        return Ok(Exit::Success);
    }
    let names = |e: &Value, key: &str| -> String {
        e.get(key)
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .map(|d| {
                        let name = text(d, "/name").to_string();
                        match d.pointer("/facets/nightjar/deltaVersion") {
                            Some(v) => format!("{name}@{v}"),
                            None => name,
                        }
                    })
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|(seq, e)| {
            vec![
                seq.to_string(),
                text(e, "/eventTime").to_string(),
                text(e, "/eventType").to_string(),
                text(e, "/job/name").to_string(),
                text(e, "/run/facets/nightjar/runId").to_string(),
                names(e, "inputs"),
                names(e, "outputs"),
            ]
        })
        .collect();
    print_table(
        &[
            "segment", "time", "event", "job", "run", "inputs", "outputs",
        ],
        &rows,
    );
    Ok(Exit::Success)
}

pub(super) async fn lineage(
    dir: &Path,
    name: &str,
    downstream: bool,
    depth: Option<usize>,
    format: LineageFormat,
    json: bool,
) -> Result<Exit, Failure> {
    let project = load_project(dir)?;
    let storage = open_storage(&project).await?;
    let events = all_events(&storage).await?;
    let graph = Graph::from_events(events.iter().map(|(_, e)| e));
    // A model reference (`churn@champion`, `models:/churn/3`) names the version it selects now.
    let resolved;
    let name = if !graph.contains(name)
        && let Ok(reference) = crate::stores::registry::ModelRef::parse(name)
        && (name.contains('@') || name.starts_with("models:/"))
    {
        let registry = crate::stores::registry::Registry::new(storage.clone());
        let version = registry
            .resolve(&reference)
            .await
            .map_err(|e| Failure::usage(e.to_string()))?;
        resolved = crate::stores::registry::dataset_name(&reference.name, version);
        resolved.as_str()
    } else {
        name
    };
    if !graph.contains(name) {
        return Err(Failure::usage(format!(
            "no dataset `{name}` in the audit log (no completed task read or wrote it)"
        )));
    }
    let direction = if downstream {
        Direction::Downstream
    } else {
        Direction::Upstream
    };
    let lineage = graph.walk(name, direction, depth);
    let format = if json { LineageFormat::Json } else { format };
    let out = match format {
        LineageFormat::Text => lineage.to_text(),
        LineageFormat::Json => serde_json::to_string_pretty(&lineage).unwrap_or_default() + "\n",
        LineageFormat::Dot => lineage.to_dot(),
        LineageFormat::Mermaid => lineage.to_mermaid(),
    };
    print!("{out}");
    Ok(Exit::Success)
}
