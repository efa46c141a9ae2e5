//! Loading `features/*.yaml` and their SQL: every problem found in one pass, each at its
//! file:line:column, and the definition version computed from the parsed SQL.

use std::path::{Path, PathBuf};

use chrono::{TimeZone, Utc};
use datafusion::sql::parser::DFParser;

use super::{FeatureView, ViewSpec, Views, as_of_literal, definition_version};
use crate::diag::Diagnostic;
use crate::spec::template::{TemplateError, render_with};
use crate::spec::yaml::Pos;
use crate::spec::{SourceFile, is_identifier, is_table_name, parse_file, read_yaml_files};
use crate::tasks::sql::parse_tables;

/// The one template variable of feature SQL.
const AS_OF: &str = "as_of";

/// Every view under `dir/features/`, checked. Problems go to `diags`; a view with any problem
/// is left out.
pub fn load_views(dir: &Path, diags: &mut Vec<Diagnostic>) -> Views {
    let mut views = Views::new();
    for file in read_yaml_files(dir, "features", diags) {
        if let Some(view) = load_view(dir, file, diags) {
            views.insert(view.name.clone(), view);
        }
    }
    views
}

fn load_view(dir: &Path, file: SourceFile, diags: &mut Vec<Diagnostic>) -> Option<FeatureView> {
    let (root, spec) = parse_file::<ViewSpec>(&file, diags)?;
    let at = |key: &str| root.get(key).map_or(root.pos, |n| n.pos);
    let before = diags.len();
    let stem = file
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    if !is_identifier(&stem) {
        diags.push(
            file.diag(
                Pos { line: 1, col: 1 },
                format!("feature view file name `{stem}` is not a valid view name"),
            )
            .with_hint("use lowercase letters, digits and `_`, starting with a letter"),
        );
    }
    if let Some(name) = &spec.name
        && name != &stem
    {
        diags.push(
            file.diag(
                at("name"),
                format!("view name `{name}` differs from its file name `{stem}`"),
            )
            .with_hint("a view is named after its file; remove `name:` or rename the file"),
        );
    }
    let entity = spec.entity.to_vec();
    if entity.is_empty() {
        diags.push(file.diag(at("entity"), "`entity` needs at least one column"));
    }
    let mut columns: Vec<(&str, &str)> = entity.iter().map(|c| (c.as_str(), "entity")).collect();
    columns.push((spec.timestamp.as_str(), "timestamp"));
    for f in &spec.features {
        columns.push((f.name.as_str(), "features"));
    }
    let mut seen = std::collections::HashSet::new();
    for (column, key) in &columns {
        if !is_identifier(column) {
            diags.push(file.diag(at(key), format!("`{column}` is not a valid column name")));
        } else if !seen.insert(*column) {
            diags.push(file.diag(at(key), format!("column `{column}` is declared twice")));
        }
    }
    if let Some(s) = &spec.snapshots {
        let pos = root.get("snapshots").map_or(root.pos, |n| n.pos);
        let every = s.every.0.as_secs();
        if every == 0 || every % 86_400 != 0 {
            diags.push(file.diag(
                pos,
                "`snapshots.every` must be a whole number of days, e.g. `7d`",
            ));
        }
        if s.history.0.as_secs() % 86_400 != 0 {
            diags.push(file.diag(pos, "`snapshots.history` must be a whole number of days"));
        }
    }
    if spec.ttl.as_ref().is_some_and(|t| t.0.is_zero()) {
        diags.push(file.diag(
            at("ttl"),
            "`ttl` must be positive (leave it out for no limit)",
        ));
    }

    let sql_rel = spec
        .sql_file
        .clone()
        .unwrap_or_else(|| format!("{stem}.sql"));
    if sql_rel.contains("..") || Path::new(&sql_rel).is_absolute() {
        diags.push(file.diag(
            at("sql_file"),
            format!("`{sql_rel}` must be a path inside `features/`"),
        ));
        return None;
    }
    let sql_path = PathBuf::from("features").join(&sql_rel);
    let sql_text = match crate::diag::read_source(&dir.join(&sql_path)) {
        Ok(t) => t,
        Err(e) => {
            diags.push(
                file.diag(
                    at("sql_file"),
                    format!("cannot read the view's SQL `{}`: {e}", sql_path.display()),
                )
                .with_hint("a view's SQL is `features/<name>.sql` unless `sql_file` names another"),
            );
            return None;
        }
    };
    let sql = SourceFile {
        path: sql_path,
        text: sql_text,
    };
    // Render with a fixed instant: the version must not depend on the run.
    let fixed = Utc
        .with_ymd_and_hms(2000, 1, 1, 0, 0, 0)
        .single()
        .expect("instant");
    let rendered = match render_as_of(&sql.text, &as_of_literal(fixed)) {
        Ok(r) => r,
        Err(e) => {
            let mut d = sql.diag(position_of(&sql.text, e.offset), e.message);
            if let Some(h) = e.hint {
                d = d.with_hint(h);
            }
            diags.push(d);
            return None;
        }
    };
    let inputs = match parse_tables(&rendered) {
        Ok(tables) => tables,
        Err((line, col, message)) => {
            diags.push(sql.diag(Pos { line, col }, format!("SQL does not parse: {message}")));
            return None;
        }
    };
    for t in &inputs {
        if !is_table_name(t) {
            let offset = sql.text.to_lowercase().find(&t.to_lowercase()).unwrap_or(0);
            diags.push(
                sql.diag(
                    position_of(&sql.text, offset),
                    format!("table `{t}` is not named `zone.name`"),
                )
                .with_hint("every table nightjar manages is `zone.name`, e.g. `raw.events`"),
            );
        }
    }
    if diags.len() > before {
        return None;
    }
    let normalized = DFParser::parse_sql(&rendered)
        .ok()
        .and_then(|s| s.front().map(|s| s.to_string()))
        .unwrap_or(rendered);
    let version = definition_version(&normalized, &entity, &spec);
    Some(FeatureView {
        name: stem,
        spec,
        yaml: file,
        sql,
        inputs,
        entity,
        version,
    })
}

/// Replaces `{{ as_of }}`; any other variable is an error (feature SQL sees nothing of the
/// run but the instant it describes).
pub(crate) fn render_as_of(text: &str, literal: &str) -> Result<String, TemplateError> {
    render_with(
        text,
        &|name| (name == AS_OF).then(|| literal.to_string()),
        &[AS_OF.to_string()],
        |_| "feature SQL sees only `as_of`".to_string(),
    )
}

fn position_of(text: &str, offset: usize) -> Pos {
    let before = &text[..offset.min(text.len())];
    Pos {
        line: before.matches('\n').count() as u32 + 1,
        col: before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1,
    }
}

/// Points every `features` and `training_set` task at its views; an unknown view is reported
/// at the task's `view`/`features` field.
pub fn bind_tasks(
    pipelines: &mut [crate::spec::PipelineSpec],
    views: &Views,
    diags: &mut Vec<Diagnostic>,
) {
    use crate::tasks::TaskKind;
    use crate::tasks::training_set::TrainingSetTask;
    for pipeline in pipelines.iter_mut() {
        let file = pipeline.file.clone();
        for task in pipeline.tasks.iter_mut() {
            let unknown = |name: &str, pos: Pos| {
                let mut d = file.diag(pos, format!("unknown feature view `{name}`"));
                d = d.with_hint(
                    match crate::diag::did_you_mean(name, views.keys().map(|s| s.as_str())) {
                        Some(s) => format!("did you mean `{s}`?"),
                        None => format!("no `features/{name}.yaml` in the project"),
                    },
                );
                d
            };
            let pos_view = task.pos_of("view");
            let pos_features = task.pos_of("features");
            match &mut task.kind {
                TaskKind::Features(t) => match views.get(&t.view) {
                    Some(v) => t.resolved = Some(std::sync::Arc::new(v.clone())),
                    None => diags.push(unknown(&t.view, pos_view)),
                },
                TaskKind::TrainingSet(t) => {
                    let mut bound = Vec::new();
                    for entry in &t.features {
                        let (name, pinned) = TrainingSetTask::parse_ref(entry);
                        match views.get(name) {
                            Some(v) => {
                                let version = pinned.unwrap_or(&v.version).to_string();
                                if version.is_empty()
                                    || !version.chars().all(|c| c.is_ascii_alphanumeric())
                                {
                                    diags.push(file.diag(
                                        pos_features,
                                        format!("`{entry}`: a version is the hex digits `nightjar features show {name}` lists"),
                                    ));
                                } else {
                                    bound.push((std::sync::Arc::new(v.clone()), version));
                                }
                            }
                            None => diags.push(unknown(name, pos_features)),
                        }
                    }
                    t.views = bound;
                }
                _ => {}
            }
        }
    }
}
