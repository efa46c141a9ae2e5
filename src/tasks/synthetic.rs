//! `synthetic`: writes deterministic, realistic marketing data (see `crate::synth` for the
//! tables and the planted ground truth) as one Delta commit per table.
//!
//! ```yaml
//! - id: generate
//!   kind: synthetic
//!   zone: raw            # tables raw.customers, raw.events, raw.orders, …
//!   customers: 2000
//!   days: 120
//!   end_date: "{{ ds }}"   # or start_date: 2025-01-01; the window is `days` days
//!   seed: 42
//! ```

use chrono::NaiveDate;
use datafusion::arrow::record_batch::RecordBatch;
use serde::{Deserialize, Serialize};

use super::gate::{self, NewRows};
use super::{SpecCx, TaskCx, TaskOutput};
use crate::diag::Diagnostic;
use crate::exec::TaskError;
use crate::spec::is_identifier;
use crate::stores::tables::WriteMode;
use crate::synth::{self, SynthParams, SynthTable};

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SyntheticTask {
    /// Zone of the tables written (`<zone>.customers`, `<zone>.events`, …).
    #[serde(default = "default_zone")]
    pub zone: String,
    /// Number of customers.
    #[serde(default = "default_customers")]
    pub customers: u64,
    /// Days of activity simulated.
    #[serde(default = "default_days")]
    pub days: u32,
    /// First simulated day (YYYY-MM-DD); default 2025-01-01. Excludes `end_date`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub start_date: Option<NaiveDate>,
    /// Last simulated day (YYYY-MM-DD), e.g. `"{{ ds }}"` so that a nightly run's data ends
    /// on its ds; the window is the `days` days up to and including it.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub end_date: Option<NaiveDate>,
    /// Seed of every random draw: same seed and sizes, same bytes.
    #[serde(default = "default_seed")]
    pub seed: u64,
    /// Also write `<zone>.ground_truth` (the latent drivers), for tests and demos.
    #[serde(default = "default_true")]
    pub ground_truth: bool,
}

fn default_zone() -> String {
    "raw".into()
}
fn default_customers() -> u64 {
    SynthParams::default().customers
}
fn default_days() -> u32 {
    SynthParams::default().days
}
fn default_seed() -> u64 {
    SynthParams::default().seed
}
fn default_true() -> bool {
    true
}

impl SyntheticTask {
    fn params(&self) -> SynthParams {
        SynthParams {
            customers: self.customers,
            days: self.days,
            start_date: match (self.start_date, self.end_date) {
                (_, Some(end)) => end - chrono::Days::new(u64::from(self.days.max(1) - 1)),
                (Some(start), None) => start,
                (None, None) => SynthParams::default().start_date,
            },
            seed: self.seed,
            ..SynthParams::default()
        }
    }

    fn tables(&self) -> Vec<SynthTable> {
        SynthTable::all()
            .iter()
            .copied()
            .filter(|t| self.ground_truth || *t != SynthTable::GroundTruth)
            .collect()
    }

    pub fn outputs(&self) -> Vec<String> {
        self.tables()
            .iter()
            .map(|t| format!("{}.{}", self.zone, t.name()))
            .collect()
    }

    pub(super) fn check_spec(&mut self, cx: &SpecCx<'_>, diags: &mut Vec<Diagnostic>) {
        if !is_identifier(&self.zone) {
            diags.push(
                cx.error("zone", format!("invalid zone `{}`", self.zone))
                    .with_hint("use lowercase letters, digits and `_`"),
            );
        }
        if self.start_date.is_some() && self.end_date.is_some() {
            diags.push(
                cx.error("end_date", "give `start_date` or `end_date`, not both")
                    .with_hint("the window is `days` days from `start_date`, or up to `end_date`"),
            );
        }
        if let Err(e) = synth::validate(&self.params()) {
            diags.push(cx.error("customers", e.to_string()));
        }
    }

    pub(super) async fn run(&self, cx: &TaskCx<'_>) -> Result<TaskOutput, TaskError> {
        let params = self.params();
        let meta = cx.commit_meta();
        let mut pending = Vec::new();
        let mut written = Vec::new();
        for table in self.tables() {
            let name = format!("{}.{}", self.zone, table.name());
            match cx
                .run
                .tables
                .published_by(&name, &meta)
                .await
                .map_err(|e| cx.store_error(e))?
            {
                Some(w) => written.push(w),
                None => pending.push(table),
            }
        }
        if pending.is_empty() {
            return Ok(TaskOutput::published(written, vec![]));
        }

        let mut batches = generate(&params, cx).await?;
        // All tables at once: with a contract, every one is checked before any is committed.
        let items = pending
            .into_iter()
            .map(|table| {
                let name = format!("{}.{}", self.zone, table.name());
                let table_batches = batches
                    .iter_mut()
                    .find(|(t, _)| *t == table)
                    .map(|(_, b)| std::mem::take(b))
                    .unwrap_or_default();
                (name, NewRows::Batches(table_batches), WriteMode::Overwrite)
            })
            .collect();
        written.extend(gate::publish_all(cx, items).await?);
        Ok(TaskOutput::published(written, vec![]))
    }
}

/// Generates every chunk on blocking threads, two at a time, and returns batches per table.
async fn generate(
    params: &SynthParams,
    cx: &TaskCx<'_>,
) -> Result<Vec<(SynthTable, Vec<RecordBatch>)>, TaskError> {
    let n_chunks = synth::n_chunks(params);
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .min(n_chunks.max(1) as usize) as u64;
    let mut handles = Vec::new();
    for worker in 0..workers {
        let params = params.clone();
        let cancel = cx.cancel.clone();
        handles.push(tokio::task::spawn_blocking(
            move || -> Result<Vec<(u64, synth::Chunk)>, String> {
                let mut chunks = Vec::new();
                let mut idx = worker;
                while idx < n_chunks {
                    if cancel.is_cancelled() {
                        return Err("cancelled".into());
                    }
                    chunks.push((
                        idx,
                        synth::generate_chunk(&params, idx).map_err(|e| e.to_string())?,
                    ));
                    idx += workers;
                }
                Ok(chunks)
            },
        ));
    }
    let mut chunks = Vec::new();
    for h in handles {
        let part = h
            .await
            .map_err(|e| cx.fail(format!("generator thread failed: {e}"), false))?
            .map_err(|e| cx.fail(e, false))?;
        chunks.extend(part);
    }
    // Chunk order, not thread finish order, decides the row order: same bytes every run.
    chunks.sort_by_key(|(idx, _)| *idx);
    let campaigns = synth::campaigns(params).map_err(|e| cx.fail(e, false))?;
    let mut out: Vec<(SynthTable, Vec<RecordBatch>)> =
        SynthTable::all().iter().map(|t| (*t, Vec::new())).collect();
    for (_, chunk) in chunks {
        for (table, batches) in out.iter_mut() {
            let batch = match table {
                SynthTable::Customers => &chunk.customers,
                SynthTable::Events => &chunk.events,
                SynthTable::Orders => &chunk.orders,
                SynthTable::Exposures => &chunk.exposures,
                SynthTable::GroundTruth => &chunk.ground_truth,
                SynthTable::Campaigns => continue,
            };
            if batch.num_rows() > 0 {
                batches.push(batch.clone());
            }
        }
    }
    for (table, batches) in out.iter_mut() {
        if *table == SynthTable::Campaigns {
            batches.push(campaigns.clone());
        }
        if batches.is_empty() {
            batches.push(RecordBatch::new_empty(synth::schema(*table)));
        }
    }
    Ok(out)
}
