//! `export`: a table written to an object-store URL as one Parquet or CSV file.
//!
//! The file is streamed through a multipart upload that completes only at the end, so the
//! target shows the old file or the whole new one, never a part (local disk: a temp file
//! renamed into place).
//!
//! ```yaml
//! - id: export_scores
//!   kind: export
//!   table: staging.customer_daily
//!   target: exports/customer_daily_{{ ds_nodash }}.parquet   # or s3://bucket/…
//!   format: parquet
//! ```

use datafusion::arrow::csv::WriterBuilder;
use datafusion::parquet::arrow::AsyncArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use serde::{Deserialize, Serialize};
use tokio::io::AsyncWriteExt;

use super::{SpecCx, TaskCx, TaskOutput, register_tables};
use crate::diag::Diagnostic;
use crate::exec::TaskError;
use crate::spec::is_table_name;

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ExportTask {
    /// The table read, `zone.name`.
    pub table: String,
    /// The file written: a URL or a path relative to the project.
    pub target: String,
    /// `parquet` (zstd) or `csv` (with a header row).
    pub format: ExportFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    Parquet,
    Csv,
}

impl ExportTask {
    pub(super) fn check_spec(&mut self, cx: &SpecCx<'_>, diags: &mut Vec<Diagnostic>) {
        if !is_table_name(&self.table) {
            diags.push(cx.error("table", format!("invalid table name `{}`", self.table)));
        }
        if self.target.split('/').any(|p| p == "..") {
            diags.push(cx.error("target", format!("`{}` must not contain `..`", self.target)));
        }
        if self.target.ends_with('/') {
            diags.push(cx.error("target", "`target` names a file, not a directory"));
        }
    }

    pub(super) async fn run(&self, cx: &TaskCx<'_>) -> Result<TaskOutput, TaskError> {
        let engine = &cx.run.engine;
        let ctx = engine.session().map_err(|e| cx.df_error(e))?;
        let read = register_tables(cx, &ctx, std::slice::from_ref(&self.table)).await?;
        let target = engine
            .storage()
            .open_other(&self.target, &cx.run.project_dir)
            .map_err(|e| cx.store_error(e))?;
        let df = ctx
            .table(self.table.as_str())
            .await
            .map_err(|e| cx.df_error(e))?;
        let schema = df.schema().inner().clone();
        let column_names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let mut stream = df.execute_stream().await.map_err(|e| cx.df_error(e))?;
        let mut sink = BufWriter::new(target.store.clone(), target.path.clone());
        let io_err =
            |e: &dyn std::fmt::Display| cx.fail(format!("writing `{}`: {e}", self.target), true);
        let mut rows = 0u64;
        match self.format {
            ExportFormat::Parquet => {
                let props = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::default()))
                    .build();
                let mut writer = AsyncArrowWriter::try_new(&mut sink, schema, Some(props))
                    .map_err(|e| io_err(&e))?;
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(|e| cx.df_error(e))?;
                    rows += batch.num_rows() as u64;
                    writer.write(&batch).await.map_err(|e| io_err(&e))?;
                }
                // Closing the writer completes the upload: that is the publish step.
                writer.close().await.map_err(|e| io_err(&e))?;
            }
            ExportFormat::Csv => {
                let mut header = true;
                while let Some(batch) = stream.next().await {
                    let batch = batch.map_err(|e| cx.df_error(e))?;
                    rows += batch.num_rows() as u64;
                    let mut buf = Vec::new();
                    let mut writer = WriterBuilder::new().with_header(header).build(&mut buf);
                    writer.write(&batch).map_err(|e| io_err(&e))?;
                    drop(writer);
                    header = false;
                    sink.write_all(&buf).await.map_err(|e| io_err(&e))?;
                }
                if header {
                    // An empty table still exports its header row.
                    sink.write_all(format!("{}\n", column_names.join(",")).as_bytes())
                        .await
                        .map_err(|e| io_err(&e))?;
                }
                // Completing the upload is the publish step.
                sink.shutdown().await.map_err(|e| io_err(&e))?;
            }
        }
        let exported = vec![super::Exported {
            target: target.url.as_str().trim_end_matches('/').to_string(),
            rows,
        }];
        Ok(TaskOutput {
            read,
            exported,
            ..TaskOutput::default()
        })
    }
}
