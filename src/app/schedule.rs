//! `nightjar schedule` and `nightjar backfill`: the CLI around `schedule::scheduler`. Each
//! interval's run is an ordinary run in this process (`execute_run`), with the interval's
//! dates in its templates and a run id the scheduler chose and recorded first.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use chrono::{DateTime, NaiveDate, Utc};
use tokio_util::sync::CancellationToken;

use super::{Exit, Failure, RunRequest, execute_run, load, open_storage, print_table, today};
use crate::cli::{RunArgs, ScheduleArgs};
use crate::exec;
use crate::schedule::PipelineSchedule;
use crate::schedule::clock::{Clock, SystemClock};
use crate::schedule::lease::{self, Acquired, Lease, LeaseKey, LeaseTiming};
use crate::schedule::scheduler::{
    IntervalOutcome, IntervalResult, LaunchRequest, Launcher, RunOutcome, Scheduler,
};
use crate::schedule::state::{self, IntervalStatus};
use crate::spec::template::format_instant;
use crate::spec::units::DurationSpec;
use crate::spec::{LoadOptions, Project};
use crate::stores::Storage;
use crate::stores::runs::{self, RunStatus, TaskStateStatus};

pub(super) enum Mode {
    Forever,
    Once,
    List { count: usize },
}

pub(super) struct BackfillArgs<'a> {
    pub from: &'a str,
    pub to: &'a str,
    pub parallel: usize,
    pub rerun: bool,
}

/// Runs an interval as an in-process pipeline run.
struct AppLauncher {
    dir: PathBuf,
    storage: Storage,
}

#[async_trait::async_trait]
impl Launcher for AppLauncher {
    async fn launch(&self, request: &LaunchRequest, cancel: CancellationToken) -> RunOutcome {
        let previous = if request.resume {
            match runs::load(&self.storage, &request.pipeline, &request.run_id).await {
                Ok(state) => state,
                Err(e) => {
                    return RunOutcome::Failed {
                        message: format!("cannot read run `{}`: {e}", request.run_id),
                        contract: false,
                    };
                }
            }
        } else {
            None
        };
        // A run recorded but never saved (its process died first) starts afresh.
        let run_request = RunRequest {
            ds: request.interval.ds,
            interval: Some(request.interval.data_interval()),
            vars: previous
                .as_ref()
                .map(|s| s.vars.clone())
                .unwrap_or_default(),
            run_id: Some(request.run_id.clone()),
            previous,
        };
        let run_args = RunArgs::default();
        match execute_run(
            &self.dir,
            &request.pipeline,
            &run_args,
            run_request,
            cancel,
            false,
            false,
        )
        .await
        {
            Ok((Exit::Success, _)) => RunOutcome::Succeeded,
            Ok((_, state)) if state.status == RunStatus::Cancelled => RunOutcome::Cancelled,
            Ok((exit, state)) => RunOutcome::Failed {
                message: state
                    .tasks
                    .iter()
                    .filter(|t| t.status == TaskStateStatus::Failed)
                    .filter_map(|t| t.error.as_deref().map(|e| format!("task `{}`: {e}", t.id)))
                    .collect::<Vec<_>>()
                    .join("; "),
                contract: exit == Exit::Contract,
            },
            Err(failure) => RunOutcome::Failed {
                message: std::iter::once(failure.message)
                    .chain(failure.diagnostics.iter().map(|d| d.to_string()))
                    .collect::<Vec<_>>()
                    .join("\n"),
                contract: false,
            },
        }
    }
}

fn parse_date(flag: &str, text: &str) -> Result<NaiveDate, Failure> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Failure::usage(format!("`{flag} {text}` is not a date (YYYY-MM-DD)")))
}

fn clock(args: &ScheduleArgs) -> Result<Arc<dyn Clock>, Failure> {
    Ok(match &args.now {
        None => Arc::new(SystemClock::default()),
        Some(text) => {
            let start = DateTime::parse_from_rfc3339(text).map_err(|e| {
                Failure::usage(format!("`--now {text}` is not an RFC 3339 time: {e}"))
            })?;
            Arc::new(SystemClock::starting_at(start.with_timezone(&Utc)))
        }
    })
}

/// Names this process in the leases it takes: host, pid and a random part.
fn holder_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map_or_else(|| "localhost".to_string(), |h| h.trim().to_string());
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}:{}:{}", std::process::id(), &random[..8])
}

/// The run lock a `nightjar run` holds (see `take_run_lock`), renewed while the run runs.
pub(super) struct RunLock {
    lease: Lease,
    clock: SystemClock,
}

/// Takes `pipeline`'s run lock, the lease `locks/<pipeline>/` (the scheduler's leases, keyed
/// by pipeline instead of interval), so that two `nightjar run` of one pipeline never run at
/// once: they would replace the same tables and race for the same run state. The second
/// fails at once, before anything ran (exit 2), naming the holder. Schedules and backfills
/// hold interval leases instead: a backfill may run several intervals of a pipeline at once.
pub(super) async fn take_run_lock(
    storage: &Storage,
    pipeline: &str,
    ds: NaiveDate,
) -> Result<RunLock, Failure> {
    let clock = SystemClock::default();
    let key = LeaseKey::run(pipeline, ds.and_time(chrono::NaiveTime::MIN).and_utc());
    let acquired = lease::acquire_key(storage, &clock, LeaseTiming::default(), &holder_id(), &key)
        .await
        .map_err(|e| Failure::usage(format!("cannot take the run lock of `{pipeline}`: {e}")))?;
    match acquired {
        Acquired::Yes(lease) => Ok(RunLock { lease, clock }),
        Acquired::HeldBy { holder, expires_at } => Err(Failure::usage(format!(
            "pipeline `{pipeline}` is already running (its run lock is held by `{holder}` until {}, renewed while that run lasts); nothing was run",
            format_instant(expires_at)
        ))),
    }
}

impl RunLock {
    /// Runs `work` under the lock; if the lock is lost (this process stalled past its
    /// expiry and another run took it), `cancel` stops the run.
    pub(super) async fn hold<T>(
        &mut self,
        storage: &Storage,
        cancel: &CancellationToken,
        work: impl Future<Output = T>,
    ) -> T {
        let timing = LeaseTiming::default();
        let (output, _lost) = self
            .lease
            .hold(storage, &self.clock, timing, cancel, work)
            .await;
        output
    }

    /// Frees the lock for the next run at once. A failure only costs the next run the wait
    /// for the expiry (or less, on this machine: a dead holder's lock is taken over).
    pub(super) async fn release(self, storage: &Storage) {
        if let Err(e) = self.lease.release(storage, &self.clock).await {
            tracing::warn!("cannot release the run lock: {e}");
        }
    }
}

fn load_project(dir: &Path) -> Result<Project, Failure> {
    load(dir, &LoadOptions::for_day(today()))
}

/// Builds the scheduler, with SIGTERM/Ctrl-C wired to `stop` and, after `grace` or a second
/// signal, to `cancel`. Results are printed as they come.
async fn scheduler(
    project: &Project,
    args: &ScheduleArgs,
    json: bool,
) -> Result<
    (
        Scheduler,
        tokio::task::JoinHandle<()>,
        tokio::task::JoinHandle<()>,
    ),
    Failure,
> {
    let grace = DurationSpec::parse(&args.grace)
        .map_err(|e| Failure::usage(format!("`--grace`: {e}")))?
        .0;
    let storage = open_storage(project).await?;
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<IntervalResult>();
    let printer = tokio::spawn(async move {
        while let Some(result) = rx.recv().await {
            print_result(&result, json);
        }
    });
    let stop = CancellationToken::new();
    let cancel = CancellationToken::new();
    let (signal_stop, signal_cancel) = (stop.clone(), cancel.clone());
    let signals = tokio::spawn(async move {
        exec::shutdown_signal().await;
        eprintln!(
            "nightjar: stopping; no new runs start, running ones have {} to finish (signal again to cancel them)",
            DurationSpec(grace)
        );
        signal_stop.cancel();
        tokio::select! {
            _ = tokio::time::sleep(grace) => {}
            _ = exec::shutdown_signal() => {}
        }
        eprintln!("nightjar: cancelling running runs");
        signal_cancel.cancel();
    });
    let scheduler = Scheduler {
        storage: storage.clone(),
        clock: clock(args)?,
        launcher: Arc::new(AppLauncher {
            dir: project.dir.clone(),
            storage,
        }),
        timing: LeaseTiming::default(),
        holder: holder_id(),
        stop,
        cancel,
        report: Some(tx),
    };
    Ok((scheduler, printer, signals))
}

/// The scheduled pipelines, or those named with `--pipeline`.
fn scheduled(project: &Project, only: &[String]) -> Result<Vec<PipelineSchedule>, Failure> {
    for name in only {
        match project.pipeline(name) {
            None => return Err(Failure::usage(format!("no pipeline `{name}`"))),
            Some(p) if p.header.schedule.is_none() => {
                return Err(Failure::usage(format!(
                    "pipeline `{name}` has no `schedule:`"
                )));
            }
            Some(_) => {}
        }
    }
    let mut out = Vec::new();
    for pipeline in &project.pipelines {
        if !only.is_empty() && !only.contains(&pipeline.name) {
            continue;
        }
        if let Some(s) = PipelineSchedule::of(pipeline).map_err(Failure::usage)? {
            out.push(s);
        }
    }
    Ok(out)
}

pub(super) async fn schedule(
    dir: &Path,
    mode: Mode,
    only: &[String],
    args: &ScheduleArgs,
    json: bool,
) -> Result<Exit, Failure> {
    let project = load_project(dir)?;
    let pipelines = scheduled(&project, only)?;
    if let Mode::List { count } = mode {
        return list(&project, &pipelines, count, args, json).await;
    }
    if pipelines.is_empty() {
        eprintln!("nightjar: no pipeline has a `schedule:`; nothing to do");
        return Ok(Exit::Success);
    }
    let (scheduler, printer, signals) = scheduler(&project, args, json).await?;
    let results = match mode {
        Mode::Once => scheduler.run_once(&pipelines).await,
        _ => {
            for p in &pipelines {
                let next = p.timetable.next_fire(scheduler.clock.now());
                tracing::info!(pipeline = %p.name, next = ?next, "scheduled");
            }
            scheduler.run_forever(&pipelines).await;
            vec![]
        }
    };
    signals.abort();
    drop(scheduler);
    let _ = printer.await;
    if results.is_empty() && !json && matches!(mode, Mode::Once) {
        println!("nothing due");
    }
    Ok(exit_of(&results, false))
}

pub(super) async fn backfill(
    dir: &Path,
    pipeline: &str,
    args: &BackfillArgs<'_>,
    timing: &ScheduleArgs,
    json: bool,
) -> Result<Exit, Failure> {
    let from = parse_date("--from", args.from)?;
    let to = parse_date("--to", args.to)?;
    if from > to {
        return Err(Failure::usage(format!(
            "`--from {from}` is after `--to {to}`"
        )));
    }
    if args.parallel == 0 {
        return Err(Failure::usage("`--parallel` must be at least 1"));
    }
    let project = load_project(dir)?;
    let spec = project
        .pipeline(pipeline)
        .ok_or_else(|| Failure::usage(format!("no pipeline `{pipeline}`")))?;
    let schedule = PipelineSchedule::for_backfill(spec).map_err(Failure::usage)?;
    let (scheduler, printer, signals) = scheduler(&project, timing, json).await?;
    let results = scheduler
        .backfill(&schedule, from, to, args.parallel, args.rerun)
        .await;
    signals.abort();
    drop(scheduler);
    let _ = printer.await;
    if !json {
        let count =
            |f: fn(&IntervalOutcome) -> bool| results.iter().filter(|r| f(&r.outcome)).count();
        println!(
            "backfill of `{pipeline}` from {from} to {to}: {} intervals, {} ran, {} already done, {} not run",
            results.len(),
            count(|o| matches!(o, IntervalOutcome::Ran { .. })),
            count(|o| matches!(o, IntervalOutcome::Done { .. })),
            count(|o| matches!(
                o,
                IntervalOutcome::Held { .. }
                    | IntervalOutcome::NotStarted
                    | IntervalOutcome::Error(_)
            )),
        );
    }
    Ok(exit_of(&results, true))
}

/// 1 if a run failed (or, in a backfill, an interval was left undone), else 3 if a
/// contract stopped one, else 0.
fn exit_of(results: &[IntervalResult], all_needed: bool) -> Exit {
    let mut exit = Exit::Success;
    for r in results {
        match &r.outcome {
            IntervalOutcome::Ran { outcome, .. } => match outcome {
                RunOutcome::Succeeded => {}
                RunOutcome::Failed { contract: true, .. } => {
                    if exit == Exit::Success {
                        exit = Exit::Contract;
                    }
                }
                RunOutcome::Failed { .. } | RunOutcome::Cancelled => return Exit::RunFailed,
            },
            IntervalOutcome::Done { .. } => {}
            IntervalOutcome::Error(_) | IntervalOutcome::NotStarted => return Exit::RunFailed,
            IntervalOutcome::Held { .. } if all_needed => return Exit::RunFailed,
            IntervalOutcome::Held { .. } => {}
        }
    }
    exit
}

fn status_word(status: IntervalStatus) -> &'static str {
    match status {
        IntervalStatus::Running => "running",
        IntervalStatus::Succeeded => "succeeded",
        IntervalStatus::Failed => "failed",
        IntervalStatus::Cancelled => "cancelled",
    }
}

fn print_result(result: &IntervalResult, json: bool) {
    let (outcome, run_id, detail): (&str, Option<&str>, Option<String>) = match &result.outcome {
        IntervalOutcome::Ran {
            run_id, outcome, ..
        } => match outcome {
            RunOutcome::Succeeded => ("succeeded", Some(run_id), None),
            RunOutcome::Failed { message, .. } => ("failed", Some(run_id), Some(message.clone())),
            RunOutcome::Cancelled => ("cancelled", Some(run_id), None),
        },
        IntervalOutcome::Done { status, run_id } => (
            "skipped",
            Some(run_id),
            Some(format!("already {}", status_word(*status))),
        ),
        IntervalOutcome::Held { holder, until } => (
            "skipped",
            None,
            Some(format!(
                "running elsewhere: lease held by {holder} until {}",
                format_instant(*until)
            )),
        ),
        IntervalOutcome::NotStarted => ("not_started", None, Some("shutting down".into())),
        IntervalOutcome::Error(e) => ("error", None, Some(e.clone())),
    };
    let resumed = matches!(&result.outcome, IntervalOutcome::Ran { resumed: true, .. });
    let i = &result.interval;
    if json {
        let value = serde_json::json!({
            "pipeline": result.pipeline, "ds": i.ds.to_string(),
            "data_interval_start": format_instant(i.start), "data_interval_end": format_instant(i.end),
            "outcome": outcome, "run_id": run_id, "resumed": resumed, "detail": detail,
        });
        println!("{value}");
        return;
    }
    let mut line = format!("{} {i}: {outcome}", result.pipeline);
    if let Some(run_id) = run_id {
        line.push_str(&format!(
            " ({}run {run_id})",
            if resumed { "resumed " } else { "" }
        ));
    }
    match detail {
        Some(d) if outcome == "failed" || outcome == "error" => {
            println!("{line}");
            eprintln!("error: {} {i}: {d}", result.pipeline);
        }
        Some(d) => println!("{line}: {d}"),
        None => println!("{line}"),
    }
}

/// `schedule --list`: the next fire times, each with the interval it closes.
async fn list(
    project: &Project,
    pipelines: &[PipelineSchedule],
    count: usize,
    args: &ScheduleArgs,
    json: bool,
) -> Result<Exit, Failure> {
    let now = clock(args)?.now();
    let storage = open_storage(project).await?;
    let mut rows = Vec::new();
    let mut values = Vec::new();
    for p in pipelines {
        let last = state::last_finished(&storage, &p.name)
            .await
            .map_err(|e| Failure::usage(e.to_string()))?;
        let last_text = last.as_ref().map_or("-".to_string(), |r| {
            format!("ds {} {}", r.ds, status_word(r.status))
        });
        let tz = p.timetable.timezone();
        for fire in p.timetable.fires_after(now).take(count) {
            let Some(interval) = p.timetable.interval_ending(fire) else {
                continue;
            };
            let local = fire
                .with_timezone(&tz)
                .format("%Y-%m-%d %H:%M %Z")
                .to_string();
            values.push(serde_json::json!({
                "pipeline": p.name, "schedule": p.expr, "timezone": tz.name(),
                "fires_at": format_instant(fire), "fires_at_local": local,
                "ds": interval.ds.to_string(),
                "data_interval_start": format_instant(interval.start),
                "data_interval_end": format_instant(interval.end),
                "catchup": p.catchup,
                "last_finished": last.as_ref().map(|r| serde_json::json!({"ds": r.ds.to_string(), "status": status_word(r.status), "run_id": r.run_id})),
            }));
            rows.push(vec![
                p.name.clone(),
                p.expr.clone(),
                local,
                format_instant(fire),
                interval.ds.to_string(),
                last_text.clone(),
            ]);
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&values).unwrap_or_default()
        );
    } else if rows.is_empty() {
        println!("no pipeline has a `schedule:`");
    } else {
        print_table(
            &[
                "pipeline",
                "schedule",
                "next run",
                "(UTC)",
                "ds",
                "last finished",
            ],
            &rows,
        );
    }
    Ok(Exit::Success)
}
