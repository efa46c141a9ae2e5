//! `sql`: a DataFusion query (inline or a `.sql` file) materialized into a table. The tables
//! it reads are found by parsing the query, and make the task depend on their writers.
//!
//! ```yaml
//! - id: staging_orders
//!   kind: sql
//!   output: staging.orders
//!   sql: |
//!     SELECT order_id, customer_id, amount FROM raw.orders WHERE NOT returned
//! ```

use datafusion::sql::parser::DFParser;
use datafusion::sql::resolve::resolve_table_references;
use serde::{Deserialize, Serialize};

use super::gate::{self, NewRows};
use super::{SpecCx, TaskCx, TaskOutput, register_tables};
use crate::diag::Diagnostic;
use crate::exec::TaskError;
use crate::spec::template::{self, Context};
use crate::spec::yaml::{NodeKind, Pos, ScalarStyle};
use crate::spec::{SourceFile, is_table_name};
use crate::stores::tables::WriteMode;

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SqlTask {
    /// The table written, `zone.name`.
    pub output: String,
    /// The query, inline. Exactly one of `sql` and `sql_file`.
    #[serde(default)]
    pub sql: Option<String>,
    /// Path of a `.sql` file, relative to the project directory.
    #[serde(default)]
    pub sql_file: Option<String>,
    /// `overwrite` (default): the table becomes the query's result; `append`: rows are added.
    #[serde(default)]
    pub mode: SqlMode,
    /// Filled at load time: the rendered query and the tables it reads.
    #[serde(skip)]
    #[schemars(skip)]
    pub resolved: Option<ResolvedSql>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum SqlMode {
    #[default]
    Overwrite,
    Append,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResolvedSql {
    pub text: String,
    /// Where the query is written, e.g. `pipelines/x.yaml:12:7` or `features/rfm.sql`.
    pub origin: String,
    /// `zone.name` tables it reads, sorted.
    pub tables: Vec<String>,
}

/// Where a query's text starts in its file, to turn a parser's `Line/Column` into a file
/// position.
struct SqlOrigin<'a> {
    file: SourceFile,
    line_offset: u32,
    col_offset: u32,
    _marker: std::marker::PhantomData<&'a ()>,
}

impl SqlTask {
    pub(super) fn check_spec(&mut self, cx: &SpecCx<'_>, diags: &mut Vec<Diagnostic>) {
        if !is_table_name(&self.output) {
            diags.push(
                cx.error("output", format!("invalid table name `{}`", self.output))
                    .with_hint("tables are named `zone.name`, e.g. `staging.orders`"),
            );
        }
        self.resolved = resolve_query(
            cx,
            (self.sql.as_ref(), "sql"),
            (self.sql_file.as_ref(), "sql_file"),
            diags,
        );
    }

    pub(super) async fn run(&self, cx: &TaskCx<'_>) -> Result<TaskOutput, TaskError> {
        let resolved = self
            .resolved
            .as_ref()
            .ok_or_else(|| cx.fail("SQL was not resolved at load time (this is a bug)", false))?;
        if let Some(done) = cx.already_published(&self.output).await? {
            return Ok(done);
        }
        let ctx = cx.run.engine.session().map_err(|e| cx.df_error(e))?;
        let read = register_tables(cx, &ctx, &resolved.tables).await?;
        let df = ctx
            .sql(&resolved.text)
            .await
            .map_err(|e| cx.fail(format!("query at {}: {e}", resolved.origin), false))?;
        let mode = match self.mode {
            SqlMode::Overwrite => WriteMode::Overwrite,
            SqlMode::Append => WriteMode::Append,
        };
        let column_lineage = crate::audit::columns::column_lineage(df.logical_plan());
        let plan = df.into_optimized_plan().map_err(|e| cx.df_error(e))?;
        let written = gate::publish(cx, &self.output, NewRows::Plan(ctx, plan), mode).await?;
        let mut output = TaskOutput::published(vec![written], read);
        output.column_lineage = Some(column_lineage);
        Ok(output)
    }
}

/// Resolves a query given inline (`inline_key`) or as a file (`file_key`): renders its
/// templates, parses it, and finds the tables it reads; every problem points into the YAML
/// or the `.sql` file.
pub(super) fn resolve_query(
    cx: &SpecCx<'_>,
    (inline, inline_key): (Option<&String>, &str),
    (sql_file, file_key): (Option<&String>, &str),
    diags: &mut Vec<Diagnostic>,
) -> Option<ResolvedSql> {
    let (raw, origin) = match (inline, sql_file) {
        (Some(sql), None) => {
            let entry = cx.node.entry(inline_key);
            let node = entry.map(|(_, v)| v);
            let key_line = entry.map_or(0, |(k, _)| k.pos.line);
            let (line_offset, col_offset) = match node.map(|n| (&n.kind, n.pos)) {
                // A `|` block's text starts on the line after its key.
                Some((NodeKind::Scalar(_, ScalarStyle::Block), _)) => {
                    (key_line, block_indent(&cx.file.text, key_line))
                }
                Some((NodeKind::Scalar(_, ScalarStyle::Quoted), pos)) => (pos.line - 1, pos.col),
                Some((_, pos)) => (pos.line - 1, pos.col - 1),
                None => (0, 0),
            };
            (
                sql.clone(),
                SqlOrigin {
                    file: cx.file.clone(),
                    line_offset,
                    col_offset,
                    _marker: Default::default(),
                },
            )
        }
        (None, Some(path)) => {
            if path.contains("..") || std::path::Path::new(path).is_absolute() {
                diags.push(cx.error(
                    "sql_file",
                    format!("`{path}` must be a path inside the project"),
                ));
                return None;
            }
            match crate::diag::read_source(&cx.dir.join(path)) {
                Ok(text) => (
                    text.clone(),
                    SqlOrigin {
                        file: SourceFile {
                            path: path.into(),
                            text,
                        },
                        line_offset: 0,
                        col_offset: 0,
                        _marker: Default::default(),
                    },
                ),
                Err(e) => {
                    diags.push(cx.error(file_key, format!("cannot read `{path}`: {e}")));
                    return None;
                }
            }
        }
        (Some(_), Some(_)) => {
            diags.push(cx.error(
                file_key,
                format!("give either `{inline_key}` or `{file_key}`, not both"),
            ));
            return None;
        }
        (None, None) => {
            diags.push(cx.error(
                "kind",
                format!("this task needs `{inline_key}` or `{file_key}`"),
            ));
            return None;
        }
    };
    let text = match template::render(&raw, cx.vars, Context::Sql) {
        Ok(t) => t,
        Err(e) => {
            let pos = origin.position_of_offset(&raw, e.offset);
            let mut d = origin.file.diag(pos, e.message);
            if let Some(h) = e.hint {
                d = d.with_hint(h);
            }
            diags.push(d);
            return None;
        }
    };
    match parse_tables(&text) {
        Ok(tables) => {
            let mut bad = false;
            for t in &tables {
                if !is_table_name(t) {
                    bad = true;
                    diags.push(
                        origin
                            .file
                            .diag(
                                origin.first_mention(&raw, t),
                                format!("table `{t}` is not named `zone.name`"),
                            )
                            .with_hint(
                                "every table nightjar manages is `zone.name`, e.g. `raw.events`",
                            ),
                    );
                }
            }
            if !bad {
                let origin_text =
                    format!("{}:{}", origin.file.path.display(), origin.line_offset + 1);
                return Some(ResolvedSql {
                    text,
                    origin: origin_text,
                    tables,
                });
            }
        }
        Err((line, col, message)) => {
            let pos = Pos {
                line: origin.line_offset + line,
                col: if line == 1 {
                    origin.col_offset + col
                } else {
                    block_col(&origin, col)
                },
            };
            diags.push(
                origin
                    .file
                    .diag(pos, format!("SQL does not parse: {message}")),
            );
        }
    }
    None
}

impl SqlOrigin<'_> {
    fn position_of_offset(&self, raw: &str, offset: usize) -> Pos {
        let before = &raw[..offset.min(raw.len())];
        let line = before.matches('\n').count() as u32 + 1;
        let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
        Pos {
            line: self.line_offset + line,
            col: if line == 1 {
                self.col_offset + col
            } else {
                block_col(self, col)
            },
        }
    }

    fn first_mention(&self, raw: &str, table: &str) -> Pos {
        let offset = raw.to_lowercase().find(&table.to_lowercase()).unwrap_or(0);
        self.position_of_offset(raw, offset)
    }
}

/// Columns on lines after the first keep the block's indentation.
fn block_col(origin: &SqlOrigin<'_>, col: u32) -> u32 {
    if origin.line_offset == 0 {
        col
    } else {
        origin.col_offset + col
    }
}

/// The indentation of a block scalar's first content line (the line after `sql: |`).
fn block_indent(text: &str, indicator_line: u32) -> u32 {
    text.lines()
        .skip(indicator_line as usize)
        .find(|l| !l.trim().is_empty())
        .map_or(0, |l| (l.len() - l.trim_start().len()) as u32)
}

/// The `zone.name` tables a query reads (CTE names excluded), or the parse error's
/// 1-based line, column and message.
pub fn parse_tables(sql: &str) -> Result<Vec<String>, (u32, u32, String)> {
    let statements = DFParser::parse_sql(sql).map_err(|e| {
        let message = e
            .strip_backtrace()
            .trim_start_matches("SQL error: ")
            .to_string();
        let (line, col) = parser_location(&message).unwrap_or((1, 1));
        (line, col, tidy_parser_message(&message))
    })?;
    if statements.len() != 1 {
        return Err((
            1,
            1,
            format!("expected exactly one statement, found {}", statements.len()),
        ));
    }
    let (relations, _ctes) =
        resolve_table_references(&statements[0], true).map_err(|e| (1, 1, e.strip_backtrace()))?;
    let mut tables: Vec<String> = relations.iter().map(|r| r.to_string()).collect();
    tables.sort();
    tables.dedup();
    Ok(tables)
}

/// `ParserError("Expected: x, found: y at Line: 2, Column: 12")` → `expected x, found y`:
/// the diagnostic already points at the place, so the wrapper and location are noise.
fn tidy_parser_message(message: &str) -> String {
    let inner = message
        .strip_prefix("ParserError(\"")
        .and_then(|m| m.strip_suffix("\")"))
        .unwrap_or(message);
    let inner = inner.rfind(" at Line: ").map_or(inner, |i| &inner[..i]);
    let inner = inner.replace("\\\"", "\"");
    match inner.strip_prefix("Expected: ") {
        Some(rest) => format!("expected {rest}"),
        None => inner,
    }
}

/// sqlparser reports "… at Line: 3, Column: 14".
fn parser_location(message: &str) -> Option<(u32, u32)> {
    let rest = &message[message.rfind("Line: ")? + 6..];
    let (line, rest) = rest.split_once(", Column: ")?;
    let col: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
    Some((line.trim().parse().ok()?, col.parse().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_tables_but_not_ctes() {
        let sql = "WITH recent AS (SELECT * FROM raw.events) SELECT * FROM recent JOIN raw.customers c USING (customer_id)";
        assert_eq!(
            parse_tables(sql).unwrap(),
            vec!["raw.customers".to_string(), "raw.events".to_string()]
        );
    }

    #[test]
    fn parse_errors_carry_line_and_column() {
        let (line, col, message) = parse_tables("SELECT a,\n  FROM FROM raw.events").unwrap_err();
        assert_eq!(line, 2, "{message}");
        assert!(col > 1, "{message}");
    }
}
