//! `ingest`: CSV, Parquet or NDJSON files from any object-store URL or glob into a table,
//! with the expected schema checked and CSV problems reported with file and line.
//!
//! ```yaml
//! - id: load_crm
//!   kind: ingest
//!   source: data/crm/*.csv          # or s3://bucket/crm/{{ ds }}/*.parquet
//!   format: csv
//!   output: raw.crm_contacts
//!   mode: replace_ds                # overwrite | append | replace_ds
//!   schema:
//!     - { name: contact_id, type: int64 }
//!     - { name: email, type: string }
//! ```

use crate::stores::object::Located;
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::datasource::file_format::options::JsonReadOptions;
use datafusion::prelude::{
    CsvReadOptions, DataFrame, ParquetReadOptions, SessionContext, col, lit,
};
use futures::TryStreamExt;
use object_store::ObjectStoreExt;
use serde::{Deserialize, Serialize};

use super::gate::{self, NewRows};
use super::{SpecCx, TaskCx, TaskOutput};
use crate::diag::Diagnostic;
use crate::exec::TaskError;
use crate::spec::is_table_name;
use crate::stores::tables::WriteMode;

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct IngestTask {
    /// A file, directory or glob: a URL (`s3://…`, `file:///…`) or a path relative to the project.
    pub source: String,
    /// File format.
    pub format: FileFormat,
    /// The table written, `zone.name`.
    pub output: String,
    /// `overwrite` (default), `append`, or `replace_ds`: add a `ds` column with the run's date
    /// and replace only that date's rows.
    #[serde(default)]
    pub mode: IngestMode,
    /// Expected columns in order; a mismatch fails the task naming the column.
    #[serde(default)]
    pub schema: Option<Vec<ColumnSpec>>,
    /// CSV field delimiter (default `,`).
    #[serde(default)]
    pub delimiter: Option<char>,
    /// Whether CSV files have a header row (default true).
    #[serde(default)]
    pub has_header: Option<bool>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum FileFormat {
    Csv,
    Parquet,
    Ndjson,
}

impl FileFormat {
    pub fn extension(self) -> &'static str {
        match self {
            FileFormat::Csv => "csv",
            FileFormat::Parquet => "parquet",
            FileFormat::Ndjson => "json",
        }
    }
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum IngestMode {
    #[default]
    Overwrite,
    Append,
    ReplaceDs,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ColumnSpec {
    pub name: String,
    /// `string`, `int32`, `int64`, `float64`, `boolean`, `date`, `timestamp`.
    #[serde(rename = "type")]
    pub data_type: ColumnType,
    /// Whether the column may hold nulls (default true).
    #[serde(default = "yes")]
    pub nullable: bool,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ColumnType {
    String,
    Int32,
    Int64,
    Float64,
    Boolean,
    Date,
    Timestamp,
}

impl ColumnType {
    fn arrow(self) -> DataType {
        match self {
            ColumnType::String => DataType::Utf8,
            ColumnType::Int32 => DataType::Int32,
            ColumnType::Int64 => DataType::Int64,
            ColumnType::Float64 => DataType::Float64,
            ColumnType::Boolean => DataType::Boolean,
            ColumnType::Date => DataType::Date32,
            ColumnType::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// Types that read back as the same column (Parquet writers differ in string and time types).
    fn accepts(self, actual: &DataType) -> bool {
        match (self, actual) {
            (ColumnType::String, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View) => true,
            (ColumnType::Timestamp, DataType::Timestamp(..)) => true,
            (t, a) => &t.arrow() == a,
        }
    }
}

impl IngestTask {
    pub(super) fn check_spec(&mut self, cx: &SpecCx<'_>, diags: &mut Vec<Diagnostic>) {
        if !is_table_name(&self.output) {
            diags.push(
                cx.error("output", format!("invalid table name `{}`", self.output))
                    .with_hint("tables are named `zone.name`, e.g. `raw.crm_contacts`"),
            );
        }
        if self.source.split('/').any(|part| part == "..") {
            diags.push(cx.error("source", format!("`{}` must not contain `..`", self.source)));
        }
        if let Some(columns) = &self.schema {
            let mut seen = std::collections::HashSet::new();
            for c in columns {
                if !seen.insert(c.name.as_str()) {
                    diags
                        .push(cx.error("schema", format!("column `{}` is declared twice", c.name)));
                }
                if self.mode == IngestMode::ReplaceDs && c.name == "ds" {
                    diags
                        .push(cx.error("schema", "`mode: replace_ds` adds the `ds` column itself"));
                }
            }
        }
        if self.format != FileFormat::Csv && (self.delimiter.is_some() || self.has_header.is_some())
        {
            diags.push(cx.error(
                "delimiter",
                "`delimiter` and `has_header` apply to `format: csv` only",
            ));
        }
    }

    pub(super) async fn run(&self, cx: &TaskCx<'_>) -> Result<TaskOutput, TaskError> {
        if let Some(done) = cx.already_published(&self.output).await? {
            return Ok(done);
        }
        let engine = &cx.run.engine;
        let (files, sources, located) = self.list_files(cx).await?;
        let ctx = engine.session().map_err(|e| cx.df_error(e))?;
        engine.register(&ctx, &located);

        let mut df = match self.read(&ctx, &files).await {
            Ok(df) => df,
            Err(e) => {
                return Err(self
                    .explain_read_error(cx, &ctx, &files, e.strip_backtrace())
                    .await);
            }
        };
        self.check_schema(cx, df.schema().as_arrow())?;
        let mode = match self.mode {
            IngestMode::Overwrite => WriteMode::Overwrite,
            IngestMode::Append => WriteMode::Append,
            IngestMode::ReplaceDs => {
                df = df
                    .with_column("ds", date32_lit(cx.run.ds))
                    .map_err(|e| cx.df_error(e))?;
                let existing = cx
                    .run
                    .tables
                    .open(&self.output)
                    .await
                    .map_err(|e| cx.store_error(e))?;
                if existing.is_some() {
                    let mut output = self.replace_partition(cx, &ctx, df).await?;
                    output.sources = sources;
                    return Ok(output);
                }
                WriteMode::Overwrite
            }
        };
        let plan = df.into_optimized_plan().map_err(|e| cx.df_error(e))?;
        let written =
            match gate::publish(cx, &self.output, NewRows::Plan(ctx.clone(), plan), mode).await {
                Ok(w) => w,
                // Files are parsed while the commit (or the contract's staging) streams them: a
                // bad row surfaces here.
                Err(e) if is_parse_error(&e.message) => {
                    return Err(self.explain_read_error(cx, &ctx, &files, e.message).await);
                }
                Err(e) => return Err(e),
            };
        Ok(TaskOutput {
            sources,
            ..TaskOutput::published(vec![written], vec![])
        })
    }

    /// Replaces the run's `ds` rows: the table's other dates stay, in one commit.
    async fn replace_partition(
        &self,
        cx: &TaskCx<'_>,
        ctx: &SessionContext,
        new_rows: DataFrame,
    ) -> Result<TaskOutput, TaskError> {
        super::register_tables(cx, ctx, std::slice::from_ref(&self.output)).await?;
        let kept = ctx
            .table(self.output.as_str())
            .await
            .and_then(|t| t.filter(col("ds").not_eq(date32_lit(cx.run.ds))))
            .map_err(|e| cx.df_error(e))?;
        let combined = kept.union(new_rows).map_err(|e| {
            cx.fail(
                format!("new files do not match the table's columns: {e}"),
                false,
            )
        })?;
        // Materialize before overwriting: the query reads the table being replaced.
        let batches = combined.collect().await.map_err(|e| cx.df_error(e))?;
        let written = gate::publish(
            cx,
            &self.output,
            NewRows::Batches(batches),
            WriteMode::Overwrite,
        )
        .await?;
        Ok(TaskOutput::published(vec![written], vec![]))
    }

    /// Every file the source names, as full URLs, and what the store says of each (for
    /// lineage); an empty match is an error.
    async fn list_files(
        &self,
        cx: &TaskCx<'_>,
    ) -> Result<(Vec<String>, Vec<super::SourceObject>, Located), TaskError> {
        let storage = cx.run.engine.storage();
        let glob_at = self.source.find(['*', '?', '[', '{']);
        let (base, pattern) = match glob_at {
            Some(i) => {
                let cut = self.source[..i].rfind('/').map_or(0, |p| p + 1);
                (&self.source[..cut], Some(&self.source[cut..]))
            }
            None => (self.source.as_str(), None),
        };
        let located = storage
            .open_other(
                if base.is_empty() { "." } else { base },
                &cx.run.project_dir,
            )
            .map_err(|e| cx.store_error(e))?;
        let matcher = match pattern {
            Some(p) => Some(
                globset::Glob::new(p)
                    .map_err(|e| cx.fail(format!("invalid glob `{p}`: {e}"), false))?
                    .compile_matcher(),
            ),
            None => None,
        };
        let root_parts = located.path.parts().count();
        let mut files: Vec<(String, object_store::ObjectMeta)> = Vec::new();
        let head = located.store.head(&located.path).await;
        if let (None, Ok(meta)) = (pattern, head) {
            files.push((object_url(&located.store_url, &located.path), meta));
        } else {
            let metas: Vec<object_store::ObjectMeta> = located
                .store
                .list(Some(&located.path))
                .try_collect()
                .await
                .map_err(|e| cx.fail(format!("listing `{}`: {e}", self.source), true))?;
            for m in metas {
                let rel: Vec<String> = m
                    .location
                    .parts()
                    .skip(root_parts)
                    .map(|p| p.as_ref().to_string())
                    .collect();
                let rel = rel.join("/");
                let keep = match &matcher {
                    Some(g) => g.is_match(&rel),
                    None => !rel.starts_with('.') && !rel.starts_with('_'),
                };
                if keep {
                    files.push((object_url(&located.store_url, &m.location), m));
                }
            }
        }
        files.sort_by(|a, b| a.0.cmp(&b.0));
        if files.is_empty() {
            return Err(cx.fail(format!("no files match `{}`", self.source), false));
        }
        if self.format == FileFormat::Parquet {
            for (url, meta) in &files {
                check_parquet_footer(&located, meta)
                    .await
                    .map_err(|e| cx.fail(format!("`{url}` {e}"), false))?;
            }
        }
        let sources = files
            .iter()
            .map(|(url, meta)| super::SourceObject {
                url: url.clone(),
                size: meta.size,
                etag: meta.e_tag.clone(),
                last_modified: meta
                    .last_modified
                    .to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            })
            .collect();
        Ok((
            files.into_iter().map(|(url, _)| url).collect(),
            sources,
            located,
        ))
    }

    async fn read(
        &self,
        ctx: &SessionContext,
        files: &[String],
    ) -> datafusion::error::Result<DataFrame> {
        let schema = self.schema.as_ref().map(|cols| {
            Schema::new(
                cols.iter()
                    .map(|c| Field::new(&c.name, c.data_type.arrow(), c.nullable))
                    .collect::<Vec<_>>(),
            )
        });
        let ext = "";
        match self.format {
            FileFormat::Csv => {
                let mut opts = CsvReadOptions::new()
                    .has_header(self.has_header.unwrap_or(true))
                    .delimiter(self.delimiter.map_or(b',', |c| c as u8))
                    .file_extension(ext);
                if let Some(s) = &schema {
                    opts = opts.schema(s);
                }
                ctx.read_csv(files.to_vec(), opts).await
            }
            FileFormat::Parquet => {
                ctx.read_parquet(
                    files.to_vec(),
                    ParquetReadOptions::default().file_extension(ext),
                )
                .await
            }
            FileFormat::Ndjson => {
                let mut opts = JsonReadOptions::default().file_extension(ext);
                if let Some(s) = &schema {
                    opts = opts.schema(s);
                }
                ctx.read_json(files.to_vec(), opts).await
            }
        }
    }

    fn check_schema(&self, cx: &TaskCx<'_>, actual: &Schema) -> Result<(), TaskError> {
        let Some(expected) = &self.schema else {
            return Ok(());
        };
        for c in expected {
            match actual.field_with_name(&c.name) {
                Ok(f) if c.data_type.accepts(f.data_type()) => {}
                Ok(f) => {
                    return Err(cx.fail(
                        format!(
                            "column `{}` is {} in the files, expected {:?}",
                            c.name,
                            f.data_type(),
                            c.data_type
                        ),
                        false,
                    ));
                }
                Err(_) => {
                    return Err(cx.fail(
                        format!("column `{}` is missing from `{}`", c.name, self.source),
                        false,
                    ));
                }
            }
        }
        for f in actual.fields() {
            if !expected.iter().any(|c| &c.name == f.name()) {
                return Err(cx.fail(
                    format!(
                        "unexpected column `{}` in `{}` (not in `schema`)",
                        f.name(),
                        self.source
                    ),
                    false,
                ));
            }
        }
        Ok(())
    }

    /// Names the file behind a read error: with several files, each is read alone until one
    /// fails (only on the error path, so a good load reads each file once).
    async fn explain_read_error(
        &self,
        cx: &TaskCx<'_>,
        ctx: &SessionContext,
        files: &[String],
        error: String,
    ) -> TaskError {
        if files.len() > 1 {
            for file in files {
                let one = std::slice::from_ref(file);
                let result = match self.read(ctx, one).await {
                    Ok(df) => df.collect().await.map(|_| ()),
                    Err(e) => Err(e),
                };
                if let Err(e) = result {
                    return cx.fail(
                        format!(
                            "reading `{file}`: {}",
                            self.file_lines(&e.strip_backtrace())
                        ),
                        false,
                    );
                }
            }
        }
        let which = if files.len() == 1 {
            files[0].as_str()
        } else {
            self.source.as_str()
        };
        cx.fail(
            format!("reading `{which}`: {}", self.file_lines(&error)),
            false,
        )
    }

    /// Arrow's CSV reader counts data rows ("at line 2"); users open the file in an editor,
    /// where the header is line 1. Rewrites the number to the file's line.
    fn file_lines(&self, message: &str) -> String {
        let header = self.format == FileFormat::Csv && self.has_header.unwrap_or(true);
        let Some(at) = message.find(" at line ") else {
            return message.to_string();
        };
        let start = at + " at line ".len();
        let digits: String = message[start..]
            .chars()
            .take_while(|c| c.is_ascii_digit())
            .collect();
        match digits.parse::<u64>() {
            Ok(n) if header => format!(
                "{} at line {}{}",
                &message[..at],
                n + 1,
                &message[start + digits.len()..]
            ),
            _ => message.to_string(),
        }
    }
}

/// A Parquet file ends with its footer's length and `PAR1`. A length that does not fit in
/// the file made the parquet crate panic (an overflow in its metadata decoder) instead of
/// failing, so the last 8 bytes are checked before the file is handed to it.
async fn check_parquet_footer(
    located: &Located,
    meta: &object_store::ObjectMeta,
) -> Result<(), String> {
    const MAGIC: &[u8] = b"PAR1";
    // Header magic, footer length, footer magic.
    if meta.size < 12 {
        return Err(format!(
            "is not a Parquet file: {} bytes, fewer than the 12 of an empty one",
            meta.size
        ));
    }
    let tail = located
        .store
        .get_range(&meta.location, meta.size - 8..meta.size)
        .await
        .map_err(|e| format!("cannot be read: {e}"))?;
    if &tail[4..] != MAGIC {
        return Err("is not a Parquet file: it does not end with `PAR1`".into());
    }
    let footer = u64::from(u32::from_le_bytes([tail[0], tail[1], tail[2], tail[3]]));
    if footer + 12 > meta.size {
        return Err(format!(
            "is a corrupt Parquet file: its footer claims {footer} bytes of a {}-byte file",
            meta.size
        ));
    }
    Ok(())
}

fn is_parse_error(text: &str) -> bool {
    [
        "Csv error",
        "Parser error",
        "Json error",
        "Parquet error",
        "parsing",
    ]
    .iter()
    .any(|s| text.contains(s))
}

fn date32_lit(date: chrono::NaiveDate) -> datafusion::prelude::Expr {
    let epoch = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("the epoch is a date");
    lit(datafusion::scalar::ScalarValue::Date32(Some(
        (date - epoch).num_days() as i32,
    )))
}

fn object_url(store_url: &url::Url, path: &object_store::path::Path) -> String {
    format!(
        "{}{}",
        store_url.as_str().trim_end_matches('/'),
        if path.as_ref().is_empty() {
            String::new()
        } else {
            format!("/{}", path.as_ref())
        }
    )
}
