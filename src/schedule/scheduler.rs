//! The scheduler and backfills: which intervals are due, a lease per interval, one run each.
//!
//! What a run does is behind [`Launcher`] (the CLI runs the pipeline in this process), and
//! time is behind [`Clock`], so everything here is tested with a fake launcher and a clock
//! moved by hand. A pipeline's intervals run one after another, oldest first, never two at
//! once within one scheduler; leases keep other schedulers and backfills off them.

use std::sync::Arc;

use async_trait::async_trait;
use chrono::{DateTime, Duration, NaiveDate, Utc};
use futures::StreamExt;
use tokio::sync::mpsc::UnboundedSender;
use tokio_util::sync::CancellationToken;

use super::clock::Clock;
use super::lease::{self, Acquired, LeaseTiming};
use super::state::{self, IntervalRecord, IntervalStatus, Trigger};
use super::{Interval, PipelineSchedule};
use crate::stores::{Storage, StoreError};

/// One run the scheduler wants: a pipeline for an interval, as run `run_id`.
#[derive(Debug, Clone, PartialEq)]
pub struct LaunchRequest {
    pub pipeline: String,
    pub interval: Interval,
    pub run_id: String,
    /// Continue run `run_id` (it was interrupted or failed) rather than start it.
    pub resume: bool,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum RunOutcome {
    Succeeded,
    Failed {
        message: String,
        /// A blocking data contract stopped it (exit code 3).
        contract: bool,
    },
    Cancelled,
}

/// Runs a pipeline for an interval until it ends or `cancel` fires.
#[async_trait]
pub trait Launcher: Send + Sync {
    async fn launch(&self, request: &LaunchRequest, cancel: CancellationToken) -> RunOutcome;
}

/// What happened to one interval.
#[derive(Debug, Clone, PartialEq)]
pub struct IntervalResult {
    pub pipeline: String,
    pub interval: Interval,
    pub outcome: IntervalOutcome,
}

#[derive(Debug, Clone, PartialEq)]
pub enum IntervalOutcome {
    Ran {
        run_id: String,
        resumed: bool,
        outcome: RunOutcome,
    },
    /// Already finished (by an earlier pass, another scheduler or a backfill).
    Done {
        status: IntervalStatus,
        run_id: String,
    },
    /// Another process holds its lease.
    Held {
        holder: String,
        until: DateTime<Utc>,
    },
    /// A shutdown came before it started.
    NotStarted,
    /// The object store failed; the interval is tried again later.
    Error(String),
}

/// Which recorded intervals to leave alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Skip finished intervals (succeeded or failed).
    Schedule,
    /// Skip succeeded intervals unless `rerun`; resume failed and interrupted ones.
    Backfill { rerun: bool },
}

impl Mode {
    fn skips(self, status: IntervalStatus) -> bool {
        match self {
            Mode::Schedule => status.is_finished(),
            Mode::Backfill { rerun } => !rerun && status == IntervalStatus::Succeeded,
        }
    }

    fn trigger(self) -> Trigger {
        match self {
            Mode::Schedule => Trigger::Schedule,
            Mode::Backfill { .. } => Trigger::Backfill,
        }
    }
}

/// The scheduler's collaborators and its two stop signals.
pub struct Scheduler {
    pub storage: Storage,
    pub clock: Arc<dyn Clock>,
    pub launcher: Arc<dyn Launcher>,
    pub timing: LeaseTiming,
    /// Who holds the leases this process takes (host, pid and a random part).
    pub holder: String,
    /// Start no more runs (the first SIGTERM).
    pub stop: CancellationToken,
    /// Cancel the running runs (the grace period is over, or a second signal).
    pub cancel: CancellationToken,
    /// Every interval result, as it happens.
    pub report: Option<UnboundedSender<IntervalResult>>,
}

/// How long to wait before retrying after the object store failed.
const RETRY_AFTER_ERROR: Duration = Duration::seconds(60);

impl Scheduler {
    /// Intervals of `pipeline` due now, oldest first: those that ended after the latest
    /// finished one (all of them with `catchup`, up to `max_catchup`; else only the latest).
    /// The first time a pipeline is scheduled only its latest interval is due.
    pub async fn due(&self, pipeline: &PipelineSchedule) -> Result<Vec<Interval>, StoreError> {
        let now = self.clock.now();
        let last = state::last_finished(&self.storage, &pipeline.name).await?;
        Ok(match last {
            None => pipeline
                .timetable
                .latest_interval(now)
                .into_iter()
                .collect(),
            Some(last) => {
                let limit = if pipeline.catchup {
                    pipeline.max_catchup
                } else {
                    1
                };
                pipeline
                    .timetable
                    .intervals_ending_between(last.end, now, limit)
            }
        })
    }

    /// Runs every due interval of every pipeline, then returns (`schedule --once`).
    pub async fn run_once(&self, pipelines: &[PipelineSchedule]) -> Vec<IntervalResult> {
        let passes = pipelines.iter().map(|p| self.pass(p));
        futures::future::join_all(passes)
            .await
            .into_iter()
            .flatten()
            .collect()
    }

    /// Runs due intervals as they fall due until `stop` fires (`schedule`).
    pub async fn run_forever(&self, pipelines: &[PipelineSchedule]) {
        futures::future::join_all(pipelines.iter().map(|p| self.pipeline_loop(p))).await;
    }

    async fn pipeline_loop(&self, pipeline: &PipelineSchedule) {
        while !self.stop.is_cancelled() {
            let results = self.pass(pipeline).await;
            let now = self.clock.now();
            let mut wake = pipeline
                .timetable
                .next_fire(now)
                .unwrap_or(now + Duration::days(365));
            for r in &results {
                match &r.outcome {
                    // Try again when the other holder's lease runs out, in case it died.
                    IntervalOutcome::Held { until, .. } => {
                        wake = wake.min(*until + Duration::seconds(1))
                    }
                    IntervalOutcome::Error(_) => wake = wake.min(now + RETRY_AFTER_ERROR),
                    _ => {}
                }
            }
            tracing::debug!(pipeline = %pipeline.name, wake = %wake, "scheduler sleeping");
            tokio::select! {
                _ = self.clock.sleep_until(wake) => {}
                _ = self.stop.cancelled() => {}
            }
        }
    }

    /// One pass over a pipeline: its due intervals, oldest first.
    async fn pass(&self, pipeline: &PipelineSchedule) -> Vec<IntervalResult> {
        let due = match self.due(pipeline).await {
            Ok(due) => due,
            Err(e) => {
                tracing::error!(pipeline = %pipeline.name, "cannot read schedule state: {e}");
                return vec![];
            }
        };
        let mut results = Vec::new();
        for interval in due {
            results.push(self.process(&pipeline.name, interval, Mode::Schedule).await);
        }
        results
    }

    /// One run per interval of `pipeline` whose `ds` is in `[from, to]`, at most `parallel`
    /// at once, started oldest first.
    pub async fn backfill(
        &self,
        pipeline: &PipelineSchedule,
        from: NaiveDate,
        to: NaiveDate,
        parallel: usize,
        rerun: bool,
    ) -> Vec<IntervalResult> {
        let intervals = pipeline.timetable.intervals_for_dates(from, to);
        futures::stream::iter(intervals)
            .map(|interval| self.process(&pipeline.name, interval, Mode::Backfill { rerun }))
            .buffered(parallel.max(1))
            .collect()
            .await
    }

    /// Takes the interval's lease, runs it unless it is already done, records the result.
    pub async fn process(&self, pipeline: &str, interval: Interval, mode: Mode) -> IntervalResult {
        let outcome = match self.try_process(pipeline, &interval, mode).await {
            Ok(outcome) => outcome,
            Err(e) => {
                tracing::error!(pipeline, %interval, "{e}");
                IntervalOutcome::Error(e.to_string())
            }
        };
        let result = IntervalResult {
            pipeline: pipeline.to_string(),
            interval,
            outcome,
        };
        if let Some(report) = &self.report {
            let _ = report.send(result.clone());
        }
        result
    }

    async fn try_process(
        &self,
        pipeline: &str,
        interval: &Interval,
        mode: Mode,
    ) -> Result<IntervalOutcome, StoreError> {
        if self.stop.is_cancelled() {
            return Ok(IntervalOutcome::NotStarted);
        }
        let done = |record: &Option<IntervalRecord>| {
            record
                .as_ref()
                .filter(|r| mode.skips(r.status))
                .map(|r| IntervalOutcome::Done {
                    status: r.status,
                    run_id: r.run_id.clone(),
                })
        };
        // Cheap check first: most intervals a pass looks at are done and need no lease.
        if let Some(skip) = done(&state::load(&self.storage, pipeline, interval).await?) {
            return Ok(skip);
        }
        let mut lease = match lease::acquire(
            &self.storage,
            self.clock.as_ref(),
            self.timing,
            &self.holder,
            pipeline,
            interval,
        )
        .await?
        {
            Acquired::Yes(lease) => lease,
            Acquired::HeldBy { holder, expires_at } => {
                return Ok(IntervalOutcome::Held {
                    holder,
                    until: expires_at,
                });
            }
        };
        // Again under the lease: a holder records its result before it releases.
        let record = match state::load(&self.storage, pipeline, interval).await {
            Ok(record) => record,
            Err(e) => {
                let _ = lease.release(&self.storage, self.clock.as_ref()).await;
                return Err(e);
            }
        };
        if let Some(skip) = done(&record) {
            lease.release(&self.storage, self.clock.as_ref()).await?;
            return Ok(skip);
        }
        let (run_id, resume) = match &record {
            Some(r) if mode != (Mode::Backfill { rerun: true }) => (r.run_id.clone(), true),
            _ => (crate::stores::runs::new_run_id(), false),
        };
        let mut record = IntervalRecord {
            pipeline: pipeline.to_string(),
            ds: interval.ds,
            start: interval.start,
            end: interval.end,
            status: IntervalStatus::Running,
            run_id: run_id.clone(),
            trigger: mode.trigger(),
            updated_at: self.clock.now(),
        };
        if let Err(e) = state::save(&self.storage, &record).await {
            let _ = lease.release(&self.storage, self.clock.as_ref()).await;
            return Err(e);
        }
        tracing::info!(pipeline, %interval, run_id, resume, "interval started");

        let request = LaunchRequest {
            pipeline: pipeline.to_string(),
            interval: *interval,
            run_id: run_id.clone(),
            resume,
        };
        let run_cancel = self.cancel.child_token();
        let launch = self.launcher.launch(&request, run_cancel.clone());
        let (outcome, lost) = lease
            .hold(
                &self.storage,
                self.clock.as_ref(),
                self.timing,
                &run_cancel,
                launch,
            )
            .await;
        if lost {
            // The interval belongs to the new holder now; it writes the record.
            return Ok(IntervalOutcome::Ran {
                run_id,
                resumed: resume,
                outcome: RunOutcome::Cancelled,
            });
        }
        record.status = match &outcome {
            RunOutcome::Succeeded => IntervalStatus::Succeeded,
            RunOutcome::Failed { .. } => IntervalStatus::Failed,
            RunOutcome::Cancelled => IntervalStatus::Cancelled,
        };
        record.updated_at = self.clock.now();
        state::save(&self.storage, &record).await?;
        lease.release(&self.storage, self.clock.as_ref()).await?;
        tracing::info!(pipeline, %interval, run_id, status = ?record.status, "interval finished");
        Ok(IntervalOutcome::Ran {
            run_id,
            resumed: resume,
            outcome,
        })
    }
}
