//! `nightjar contract check` and the contract-results tables printed after runs.

use std::path::Path;

use datafusion::datasource::file_format::options::JsonReadOptions;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions};
use object_store::ObjectStoreExt;
use serde_json::Value;

use super::{Exit, Failure, load, open_storage, parse_ds, print_table};
use crate::contracts::{self, CheckOptions};
use crate::engine::Engine;
use crate::spec::{self, LoadOptions};
use crate::stores::tables::Tables;

pub(super) struct CheckArgs<'a> {
    pub contract: &'a Path,
    pub table: Option<&'a str>,
    pub data: Option<&'a str>,
    pub object: Option<&'a str>,
    pub ds: Option<&'a str>,
}

/// Checks one table (latest version) or one data file/folder against a contract, ad hoc.
/// Exit 3 on a blocking violation, 0 otherwise; nothing is written.
pub(super) async fn check(dir: &Path, args: &CheckArgs<'_>, json: bool) -> Result<Exit, Failure> {
    let ds = parse_ds(args.ds)?;
    let project = load(dir, &LoadOptions::for_day(ds))?;
    // Relative to the project, like `--data` and like `contract:` in pipelines.
    let path = if args.contract.is_absolute() {
        args.contract.to_path_buf()
    } else {
        project.dir.join(args.contract)
    };
    let text = crate::diag::read_source(&path).map_err(|e| {
        Failure::usage(format!(
            "cannot read contract `{}`: {e}",
            args.contract.display()
        ))
    })?;
    let contract = contracts::parse_contract(args.contract, &text).map_err(Failure::diags)?;

    let storage = open_storage(&project).await?;
    let engine = Engine::new(
        project.config.engine,
        project.config.limits.clone(),
        &project.dir,
        storage.clone(),
    );
    let session = engine
        .session()
        .map_err(|e| Failure::usage(e.to_string()))?;
    let (name, object) = match (args.table, args.data) {
        (Some(table), None) => {
            let object = match args.object {
                Some(o) => contract.object(o).ok_or_else(|| {
                    Failure::usage(format!("contract has no schema object `{o}`"))
                })?,
                None => spec::contract_object_for(&contract, table, true).ok_or_else(|| {
                    Failure::usage(format!(
                        "contract has no schema object for `{table}`; pass --object NAME"
                    ))
                })?,
            };
            let (provider, _) = Tables::new(storage.clone())
                .provider(table)
                .await
                .map_err(|e| Failure::usage(e.to_string()))?;
            crate::tasks::register_provider(&session, table, provider)
                .map_err(|e| Failure::usage(e.to_string()))?;
            (table.to_string(), object)
        }
        (None, Some(data)) => {
            let object = match args.object {
                Some(o) => contract.object(o).ok_or_else(|| {
                    Failure::usage(format!("contract has no schema object `{o}`"))
                })?,
                None if contract.objects.len() == 1 => &contract.objects[0],
                None => {
                    return Err(Failure::usage(
                        "the contract has several schema objects; pass --object NAME",
                    ));
                }
            };
            let located = storage
                .open_other(data, &project.dir)
                .map_err(|e| Failure::usage(e.to_string()))?;
            engine.register(&session, &located);
            // `located.url` names a folder (trailing `/`); a single file is read by its own URL.
            let is_file = located.store.head(&located.path).await.is_ok();
            let url = if is_file {
                format!(
                    "{}/{}",
                    located.store_url.as_str().trim_end_matches('/'),
                    located.path.as_ref()
                )
            } else {
                located.url.to_string()
            };
            let frame = if data.ends_with(".csv") {
                session.read_csv(&url, CsvReadOptions::new()).await
            } else if data.ends_with(".json") || data.ends_with(".ndjson") {
                session
                    .read_json(
                        &url,
                        JsonReadOptions::default().file_extension(if data.ends_with(".json") {
                            ".json"
                        } else {
                            ".ndjson"
                        }),
                    )
                    .await
            } else {
                session
                    .read_parquet(&url, ParquetReadOptions::default())
                    .await
            }
            .map_err(|e| {
                Failure::usage(format!("cannot read `{data}`: {}", e.strip_backtrace()))
            })?;
            let name = format!(
                "data.{}",
                object
                    .name
                    .to_ascii_lowercase()
                    .replace(|c: char| !c.is_ascii_alphanumeric(), "_")
            );
            crate::tasks::register_provider(&session, &name, frame.into_view())
                .map_err(|e| Failure::usage(e.to_string()))?;
            (name, object)
        }
        _ => {
            return Err(Failure::usage(
                "pass exactly one of --table NAME or --data URL",
            ));
        }
    };
    let report = contracts::check(&session, &name, object, &contract, &CheckOptions::new(ds))
        .await
        .map_err(|e| Failure::run_failed(e.strip_backtrace()))?;
    let violated = !report.blocking_failures().is_empty();
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&report).unwrap_or_default()
        );
    } else {
        let value = serde_json::to_value(&report).unwrap_or(Value::Null);
        print_report(&args.contract.display().to_string(), &value, true);
    }
    Ok(if violated {
        Exit::Contract
    } else {
        Exit::Success
    })
}

/// The checks of a run's tasks (`TaskState::checks`): failed and warned rules only, unless
/// `all`.
pub(super) fn print_task_checks(task: &str, checks: &[Value], all: bool) {
    for check in checks {
        if let Some(report) = check.get("report") {
            print_report(&format!("task {task}"), report, all);
        }
    }
}

fn print_report(label: &str, report: &Value, all: bool) {
    let s = |v: &Value, k: &str| v.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let results = report
        .get("results")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let failed = results
        .iter()
        .filter(|r| r.get("passed") == Some(&Value::Bool(false)))
        .count();
    println!(
        "contract {} {} on `{}` ({} rows, {label}): {}/{} rules passed",
        s(report, "contract_id"),
        s(report, "contract_version"),
        s(report, "table"),
        report.get("rows").and_then(Value::as_u64).unwrap_or(0),
        results.len() - failed,
        results.len()
    );
    let rows: Vec<Vec<String>> = results
        .iter()
        .filter(|r| all || r.get("passed") == Some(&Value::Bool(false)))
        .map(|r| {
            let passed = r.get("passed") == Some(&Value::Bool(true));
            let verdict = if passed {
                "pass"
            } else if s(r, "severity") == "error" {
                "FAIL"
            } else {
                "warn"
            };
            let unit = match s(r, "unit").as_str() {
                "percent" => "%".to_string(),
                "rows" => String::new(),
                other => format!(" {other}"),
            };
            // Not measured (JSON null): a dash, without a unit.
            let observed = match r.get("observed").and_then(Value::as_f64) {
                Some(x) if x.fract() == 0.0 => format!("{}{unit}", x as i64),
                Some(x) => format!("{x:.4}{unit}"),
                None => "-".into(),
            };
            vec![
                s(r, "rule_id"),
                r.get("column")
                    .and_then(Value::as_str)
                    .unwrap_or("-")
                    .to_string(),
                observed,
                s(r, "threshold"),
                verdict.to_string(),
            ]
        })
        .collect();
    if !rows.is_empty() {
        print_table(&["rule", "column", "observed", "expected", "result"], &rows);
    }
    for r in results
        .iter()
        .filter(|r| r.get("passed") == Some(&Value::Bool(false)))
    {
        // Why a rule was not measured (its column is missing or retyped); the schema rule's
        // note is the drift, listed below.
        if let Some(note) = r.get("note").and_then(Value::as_str)
            && s(r, "metric") != "schema"
        {
            println!("  `{}`: {note}", s(r, "rule_id"));
        }
        if let Some(examples) = r
            .get("examples")
            .and_then(Value::as_array)
            .filter(|e| !e.is_empty())
        {
            println!("  examples failing `{}`:", s(r, "rule_id"));
            for e in examples {
                println!("    {e}");
            }
        }
    }
    if let Some(drift) = report
        .get("drift")
        .and_then(Value::as_array)
        .filter(|d| !d.is_empty())
    {
        for d in drift {
            let column = s(d, "column");
            let line = match s(d, "change").as_str() {
                "missing" => format!("missing column `{column}`"),
                "added" => format!("added column `{column}` ({})", s(d, "actual_type")),
                "retyped" => format!(
                    "retyped column `{column}` (expected {}, found {})",
                    s(d, "expected_type"),
                    s(d, "actual_type")
                ),
                _ => d.to_string(),
            };
            println!("  schema drift: {line}");
        }
    }
}
