//! Task executor: owns running one already-checked pipeline DAG on tokio — bounded parallelism, per-task retries with exponential backoff, per-attempt timeouts, failure propagation and cancellation.
//!
//! The executor knows nothing about what a task does: it hands a task index
//! and an attempt number to a [`TaskRunner`] and only looks at whether the
//! attempt returned `Ok`, `Err`, panicked or ran out of time. Everything that
//! gives a task meaning (SQL, contracts, features, models) lives with the
//! runner, so this module can be tested and benchmarked with no-op runners.
//!
//! Design notes, the "why" behind the shape of [`execute`]:
//!
//! * One coordinating loop owns all bookkeeping (indegree counters, a
//!   min-heap ready queue, a min-heap of retry timers); attempts run as
//!   separate tokio tasks in a [`JoinSet`]. Keeping state in one place means
//!   no locks on the hot path, and a transition costs O(log n + out-degree)
//!   rather than a rescan of the plan.
//! * Ready tasks start lowest index first, and backoff has no jitter, so a
//!   given plan and a given pattern of failures always produce the same start
//!   order and the same delays: nightly runs must be reproducible when
//!   someone is comparing two nights' logs.
//! * A retry's backoff is a timer in the loop, not a sleeping tokio task, so
//!   waiting to retry never holds one of the `max_parallel` slots.
//! * Cancellation aborts the attempts rather than waiting for runners to
//!   notice the token: a runner stuck in a slow query must not keep a
//!   Ctrl-C'd process alive. Runners still get the token, because dropping a
//!   future does not stop work it handed to other threads.

mod graph;
#[cfg(test)]
mod tests;

use std::any::Any;
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use futures::FutureExt;
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc::UnboundedSender;
use tokio::task::{Id, JoinError, JoinSet};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use graph::Graph;
pub use graph::topo_order;

/// How long cancellation waits for aborted attempts to be dropped before
/// returning anyway. Aborting only takes effect at the attempt's next
/// `.await`; a runner that blocks its thread cannot be stopped from here, and
/// a shutdown must not hang on it.
const CANCEL_GRACE: Duration = Duration::from_millis(250);

/// One node of an [`ExecPlan`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecTask {
    /// Human-readable name, used in errors and upstream-failure messages.
    pub name: String,
    /// Indices into [`ExecPlan::tasks`] that must succeed (or be skipped)
    /// before this task may start.
    pub deps: Vec<usize>,
    /// Extra attempts after the first one, for retryable failures.
    pub retries: u32,
    /// Backoff before the first retry; doubles on each later retry.
    pub retry_delay: Duration,
    /// Cap on the backoff.
    pub max_retry_delay: Duration,
    /// Limit on a single attempt (not on the task as a whole).
    pub timeout: Option<Duration>,
}

impl ExecTask {
    /// A task with no retries, no timeout, and a 1 s backoff capped at
    /// 5 min should retries be turned on.
    pub fn new(name: impl Into<String>, deps: Vec<usize>) -> Self {
        Self {
            name: name.into(),
            deps,
            retries: 0,
            retry_delay: Duration::from_secs(1),
            max_retry_delay: Duration::from_secs(300),
            timeout: None,
        }
    }
}

/// A DAG of tasks; `deps` are indices into `tasks`.
///
/// Expected to be acyclic already (the compiler checks it), but [`execute`]
/// and [`topo_order`] re-check rather than trust it, since a cycle would
/// otherwise make a run wait forever.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExecPlan {
    pub tasks: Vec<ExecTask>,
}

/// Runs single attempts of tasks. Implemented by the pipeline layer.
#[async_trait]
pub trait TaskRunner: Send + Sync + 'static {
    type Output: Send + 'static;

    /// One attempt (1-based). `cancel` fires on Ctrl-C/SIGTERM or run abort,
    /// and also when this attempt times out; a runner should stop promptly,
    /// but the executor also drops the attempt future.
    async fn run(
        &self,
        task_idx: usize,
        attempt: u32,
        cancel: CancellationToken,
    ) -> Result<Self::Output, TaskError>;
}

/// Why one attempt failed, and whether trying again could help.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct TaskError {
    pub message: String,
    /// `false` for failures that will fail the same way every time (a
    /// data-contract violation, bad SQL): the task fails at once, without
    /// spending its retries and their backoff.
    pub retryable: bool,
}

impl TaskError {
    /// A failure worth retrying (network blip, lock contention, ...).
    pub fn retryable(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: true,
        }
    }

    /// A failure that retrying cannot fix.
    pub fn fatal(message: impl Into<String>) -> Self {
        Self {
            message: message.into(),
            retryable: false,
        }
    }
}

/// Final state of a task in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TaskStatus {
    Succeeded,
    Failed,
    /// Never ran because a transitive dependency failed.
    UpstreamFailed,
    /// Stopped or never started because the run was cancelled.
    Cancelled,
    /// Pre-completed (e.g. on resume); not run, counts as satisfied for
    /// dependents.
    Skipped,
}

impl TaskStatus {
    /// Whether dependents may rely on this task's output.
    pub fn is_success(self) -> bool {
        matches!(self, Self::Succeeded | Self::Skipped)
    }
}

/// What happened to one task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TaskResult<O> {
    pub status: TaskStatus,
    /// Attempts started (0 if the task never ran).
    pub attempts: u32,
    /// The last attempt's failure, or why the task did not run.
    pub error: Option<String>,
    /// For [`TaskStatus::UpstreamFailed`]: the name of the task whose
    /// failure stopped this one (the failed task itself, not the nearest
    /// skipped-over dependency, so the report points at the real cause).
    pub failed_upstream: Option<String>,
    /// Wall-clock start of the first attempt.
    pub started_at: Option<SystemTime>,
    /// Wall-clock time the task reached its final status, if it ever started.
    pub finished_at: Option<SystemTime>,
    /// From the start of the first attempt to the final status, including
    /// backoff between attempts; zero if the task never started.
    pub duration: Duration,
    /// The runner's output, for [`TaskStatus::Succeeded`] only.
    pub output: Option<O>,
}

impl<O> TaskResult<O> {
    fn pending() -> Self {
        Self {
            // Placeholder until the task reaches a final state; every task
            // gets a real status before `execute` returns.
            status: TaskStatus::Cancelled,
            attempts: 0,
            error: None,
            failed_upstream: None,
            started_at: None,
            finished_at: None,
            duration: Duration::ZERO,
            output: None,
        }
    }
}

/// Progress notifications, in the order things happen. Every task gets
/// exactly one `Finished`, and all events are sent before [`execute`]
/// returns.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ExecEvent {
    Started {
        task_idx: usize,
        attempt: u32,
    },
    Retrying {
        task_idx: usize,
        /// The attempt that failed.
        attempt: u32,
        error: String,
        delay: Duration,
    },
    Finished {
        task_idx: usize,
        status: TaskStatus,
        attempts: u32,
        error: Option<String>,
    },
}

/// How to run a plan.
#[derive(Debug, Clone)]
pub struct ExecOptions {
    /// Most attempts running at once (at least 1).
    pub max_parallel: usize,
    /// Per task, whether it already completed (e.g. resuming a run); either
    /// empty or one entry per task. Pre-completed tasks are reported as
    /// [`TaskStatus::Skipped`] regardless of their own dependencies.
    pub pre_completed: Vec<bool>,
    pub events: Option<UnboundedSender<ExecEvent>>,
    /// Cancels the whole run (wire it to [`shutdown_signal`]).
    pub cancel: CancellationToken,
}

impl ExecOptions {
    pub fn new(max_parallel: usize) -> Self {
        Self {
            max_parallel,
            pre_completed: Vec::new(),
            events: None,
            cancel: CancellationToken::new(),
        }
    }
}

impl Default for ExecOptions {
    /// One slot per available core.
    fn default() -> Self {
        Self::new(std::thread::available_parallelism().map_or(4, |n| n.get()))
    }
}

/// Outcome of a run; `results` is indexed like [`ExecPlan::tasks`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExecReport<O> {
    pub results: Vec<TaskResult<O>>,
    /// Whether the run was cancelled before every task finished.
    pub cancelled: bool,
}

impl<O> ExecReport<O> {
    /// True when the run was not cancelled and every task succeeded or was
    /// skipped.
    pub fn succeeded(&self) -> bool {
        !self.cancelled && self.results.iter().all(|r| r.status.is_success())
    }

    /// Number of tasks that ended with `status`.
    pub fn count(&self, status: TaskStatus) -> usize {
        self.results.iter().filter(|r| r.status == status).count()
    }
}

/// Errors that stop a run before any task starts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ExecError {
    #[error("task `{task}` depends on task index {dep}, but the plan has only {len} tasks")]
    UnknownDependency {
        task: String,
        dep: usize,
        len: usize,
    },
    #[error(
        "tasks can never start (dependency cycle, or downstream of one): {}",
        tasks.join(", ")
    )]
    Cycle { tasks: Vec<String> },
    #[error("pre_completed has {actual} entries, but the plan has {expected} tasks")]
    PreCompletedLength { expected: usize, actual: usize },
    #[error("max_parallel must be at least 1")]
    ZeroParallelism,
}

/// Backoff before retrying after failed attempt `attempt` (1-based):
/// `min(retry_delay * 2^(attempt-1), max_retry_delay)`, saturating instead of
/// overflowing for absurd attempt counts.
pub fn backoff_delay(retry_delay: Duration, max_retry_delay: Duration, attempt: u32) -> Duration {
    let factor = 2u32.checked_pow(attempt.saturating_sub(1));
    factor
        .and_then(|f| retry_delay.checked_mul(f))
        .map_or(max_retry_delay, |d| d.min(max_retry_delay))
}

/// Runs `plan` to completion (or cancellation) with `runner`.
///
/// Returns `Err` only for a plan or options that cannot run at all (checked
/// before anything starts); task failures are reported in the
/// [`ExecReport`]. See the module docs for the scheduling rules.
pub async fn execute<R: TaskRunner>(
    plan: &ExecPlan,
    runner: Arc<R>,
    opts: ExecOptions,
) -> Result<ExecReport<R::Output>, ExecError> {
    let n = plan.tasks.len();
    if opts.max_parallel == 0 {
        return Err(ExecError::ZeroParallelism);
    }
    if !opts.pre_completed.is_empty() && opts.pre_completed.len() != n {
        return Err(ExecError::PreCompletedLength {
            expected: n,
            actual: opts.pre_completed.len(),
        });
    }
    let graph = Graph::build(plan)?;
    // Re-checked here rather than trusted: with a cycle the loop below would
    // finish with tasks that were never started and never could be.
    graph.order(plan)?;

    let mut run = Run::new(plan, graph, runner, opts);
    let cancelled = run.drive().await;
    if cancelled {
        run.abort_attempts().await;
    }
    run.finalize(cancelled);
    Ok(ExecReport {
        results: run.results,
        cancelled,
    })
}

/// Resolves on Ctrl-C or (on unix) SIGTERM, for the app to cancel the run's
/// token with. If a handler cannot be installed that source is logged and
/// ignored rather than resolving at once, which would cancel every run.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::warn!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut sigterm) => {
                sigterm.recv().await;
            }
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C received, cancelling"),
        () = terminate => tracing::info!("SIGTERM received, cancelling"),
    }
}

/// Where a task is in its life cycle; only the coordinating loop reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Some dependency has not finished yet.
    Waiting,
    /// In the ready queue.
    Ready,
    /// An attempt is in the `JoinSet`.
    Running,
    /// Waiting on a retry timer.
    Backoff,
    /// Final status recorded and `Finished` sent.
    Done,
}

enum Outcome<O> {
    Ok(O),
    Failed { message: String, retryable: bool },
}

struct AttemptDone<O> {
    idx: usize,
    attempt: u32,
    outcome: Outcome<O>,
}

/// State of one `execute` call.
struct Run<'p, R: TaskRunner> {
    plan: &'p ExecPlan,
    graph: Graph,
    runner: Arc<R>,
    max_parallel: usize,
    events: Option<UnboundedSender<ExecEvent>>,
    cancel: CancellationToken,
    phase: Vec<Phase>,
    /// Dependencies not yet satisfied, per task.
    remaining: Vec<usize>,
    results: Vec<TaskResult<R::Output>>,
    /// Monotonic start of the first attempt; `results[i].duration` is
    /// measured from it (tokio's clock, so paused-time tests see it too).
    first_start: Vec<Option<Instant>>,
    /// tokio task id of the current attempt; only consulted on a
    /// `JoinError`, which carries the id but not our task index.
    attempt_id: Vec<Option<Id>>,
    ready: BinaryHeap<Reverse<usize>>,
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    attempts: JoinSet<AttemptDone<R::Output>>,
    /// Reused by failure propagation.
    stack: Vec<usize>,
}

impl<'p, R: TaskRunner> Run<'p, R> {
    fn new(plan: &'p ExecPlan, graph: Graph, runner: Arc<R>, opts: ExecOptions) -> Self {
        let n = plan.tasks.len();
        let pre = |i: usize| opts.pre_completed.get(i).copied().unwrap_or(false);
        let mut run = Self {
            plan,
            runner,
            max_parallel: opts.max_parallel,
            events: opts.events,
            cancel: opts.cancel,
            phase: vec![Phase::Waiting; n],
            // A pre-completed dependency is satisfied from the start.
            remaining: (0..n)
                .map(|i| graph.indegree(i) - plan.tasks[i].deps.iter().filter(|&&d| pre(d)).count())
                .collect(),
            graph,
            results: (0..n).map(|_| TaskResult::pending()).collect(),
            first_start: vec![None; n],
            attempt_id: vec![None; n],
            ready: BinaryHeap::with_capacity(n),
            timers: BinaryHeap::new(),
            attempts: JoinSet::new(),
            stack: Vec::new(),
        };
        for idx in 0..n {
            if pre(idx) {
                run.finish(idx, TaskStatus::Skipped, None, None);
            } else if run.remaining[idx] == 0 {
                run.phase[idx] = Phase::Ready;
                run.ready.push(Reverse(idx));
            }
        }
        run
    }

    /// Runs until every task is final (returns `false`) or the run is
    /// cancelled with work left (returns `true`).
    async fn drive(&mut self) -> bool {
        let cancel = self.cancel.clone();
        let cancelled = cancel.cancelled();
        tokio::pin!(cancelled);
        // One timer, re-armed to the earliest retry deadline, instead of a
        // sleeping task per retry.
        let sleep = tokio::time::sleep_until(Instant::now());
        tokio::pin!(sleep);
        loop {
            if self.ready.is_empty() && self.attempts.is_empty() && self.timers.is_empty() {
                return false;
            }
            if self.cancel.is_cancelled() {
                return true;
            }
            self.start_ready();
            let next_timer = self.timers.peek().map(|Reverse((at, _))| *at);
            if let Some(at) = next_timer
                && sleep.deadline() != at
            {
                sleep.as_mut().reset(at);
            }
            tokio::select! {
                // Cancellation first, so that nothing new starts once it fired.
                biased;
                () = &mut cancelled => return true,
                Some(joined) = self.attempts.join_next_with_id() => {
                    self.on_joined(joined);
                    // Take everything that finished meanwhile before starting
                    // more, so lowest-index-first applies to all of it.
                    while let Some(joined) = self.attempts.try_join_next_with_id() {
                        self.on_joined(joined);
                    }
                }
                () = &mut sleep, if next_timer.is_some() => self.release_due_timers(),
            }
        }
    }

    fn start_ready(&mut self) {
        while self.attempts.len() < self.max_parallel {
            let Some(Reverse(idx)) = self.ready.pop() else {
                break;
            };
            self.start_attempt(idx);
        }
    }

    fn start_attempt(&mut self, idx: usize) {
        let task = &self.plan.tasks[idx];
        let result = &mut self.results[idx];
        result.attempts += 1;
        let attempt = result.attempts;
        if result.started_at.is_none() {
            result.started_at = Some(SystemTime::now());
            self.first_start[idx] = Some(Instant::now());
        }
        self.phase[idx] = Phase::Running;
        tracing::debug!(task = %task.name, attempt, "starting task");
        self.emit(ExecEvent::Started {
            task_idx: idx,
            attempt,
        });
        // A child token per attempt so a timeout can tell this attempt's
        // spawned work to stop without cancelling the whole run.
        let token = self.cancel.child_token();
        let fut = run_attempt(Arc::clone(&self.runner), idx, attempt, token, task.timeout);
        let handle = self.attempts.spawn(fut);
        self.attempt_id[idx] = Some(handle.id());
    }

    fn on_joined(&mut self, joined: Result<(Id, AttemptDone<R::Output>), JoinError>) {
        match joined {
            Ok((_, done)) => self.on_attempt(done.idx, done.attempt, done.outcome),
            Err(err) => {
                let Some(idx) = self.task_of(err.id()) else {
                    tracing::error!(%err, "attempt of unknown task ended; this is a bug");
                    return;
                };
                // `run_attempt` catches runner panics itself, so this is a
                // panic while dropping the runner's future, or the runtime
                // shutting down under us.
                let message = if err.is_panic() {
                    format!("task panicked: {}", panic_message(&*err.into_panic()))
                } else {
                    "attempt aborted by the runtime".to_owned()
                };
                let attempt = self.results[idx].attempts;
                self.on_attempt(
                    idx,
                    attempt,
                    Outcome::Failed {
                        message,
                        retryable: false,
                    },
                );
            }
        }
    }

    /// Running task whose current attempt is tokio task `id`. Linear, but
    /// only used on the (practically unreachable) `JoinError` path, which
    /// keeps the hot path free of a map insert and remove per attempt.
    fn task_of(&self, id: Id) -> Option<usize> {
        (0..self.phase.len())
            .find(|&i| self.phase[i] == Phase::Running && self.attempt_id[i] == Some(id))
    }

    fn on_attempt(&mut self, idx: usize, attempt: u32, outcome: Outcome<R::Output>) {
        match outcome {
            Outcome::Ok(output) => self.succeed(idx, output),
            // A runner that noticed the token returns an error; that is the
            // cancellation, not a task failure to retry or propagate.
            Outcome::Failed { message, .. } if self.cancel.is_cancelled() => self.finish(
                idx,
                TaskStatus::Cancelled,
                Some(format!("cancelled during attempt {attempt}: {message}")),
                None,
            ),
            Outcome::Failed { message, retryable } => {
                let task = &self.plan.tasks[idx];
                if retryable && attempt <= task.retries {
                    let delay = backoff_delay(task.retry_delay, task.max_retry_delay, attempt);
                    tracing::warn!(task = %task.name, attempt, error = %message, ?delay, "attempt failed, will retry");
                    self.emit(ExecEvent::Retrying {
                        task_idx: idx,
                        attempt,
                        error: message.clone(),
                        delay,
                    });
                    self.results[idx].error = Some(message);
                    if delay.is_zero() {
                        self.phase[idx] = Phase::Ready;
                        self.ready.push(Reverse(idx));
                    } else {
                        let now = Instant::now();
                        // A delay too large for the clock means "never" in
                        // practice; a year away is the same thing and cannot
                        // overflow.
                        let at = now
                            .checked_add(delay)
                            .unwrap_or_else(|| now + Duration::from_secs(365 * 24 * 3600));
                        self.phase[idx] = Phase::Backoff;
                        self.timers.push(Reverse((at, idx)));
                    }
                } else {
                    tracing::warn!(task = %task.name, attempt, error = %message, "task failed");
                    self.fail(idx, message);
                }
            }
        }
    }

    fn succeed(&mut self, idx: usize, output: R::Output) {
        self.finish(idx, TaskStatus::Succeeded, None, Some(output));
        for &d in self.graph.dependents(idx) {
            debug_assert!(
                self.remaining[d] > 0,
                "dependency counted twice; this is a bug"
            );
            self.remaining[d] = self.remaining[d].saturating_sub(1);
            // Only `Waiting` tasks become ready: a dependent may already be
            // final (upstream-failed via another dependency, or skipped).
            if self.remaining[d] == 0 && self.phase[d] == Phase::Waiting {
                self.phase[d] = Phase::Ready;
                self.ready.push(Reverse(d));
            }
        }
    }

    /// Marks `idx` failed and every transitive dependent that has not
    /// reached a final state as upstream-failed. Skipped (pre-completed)
    /// tasks stay skipped and are not walked through: their earlier output
    /// still stands, so their dependents may run.
    fn fail(&mut self, idx: usize, message: String) {
        self.finish(idx, TaskStatus::Failed, Some(message), None);
        let upstream = &self.plan.tasks[idx].name;
        let mut stack = std::mem::take(&mut self.stack);
        stack.extend_from_slice(self.graph.dependents(idx));
        while let Some(d) = stack.pop() {
            if self.phase[d] != Phase::Waiting {
                continue;
            }
            self.results[d].failed_upstream = Some(upstream.clone());
            self.finish(
                d,
                TaskStatus::UpstreamFailed,
                Some(format!("upstream task `{upstream}` failed")),
                None,
            );
            stack.extend_from_slice(self.graph.dependents(d));
        }
        self.stack = stack;
    }

    fn release_due_timers(&mut self) {
        let now = Instant::now();
        while let Some(&Reverse((at, idx))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            self.phase[idx] = Phase::Ready;
            self.ready.push(Reverse(idx));
        }
    }

    /// Records a final status and sends `Finished`; the one place that does,
    /// so each task gets exactly one.
    fn finish(
        &mut self,
        idx: usize,
        status: TaskStatus,
        error: Option<String>,
        output: Option<R::Output>,
    ) {
        debug_assert!(
            self.phase[idx] != Phase::Done,
            "task finished twice; this is a bug"
        );
        self.phase[idx] = Phase::Done;
        let result = &mut self.results[idx];
        result.status = status;
        result.error = error;
        result.output = output;
        if let Some(start) = self.first_start[idx] {
            result.finished_at = Some(SystemTime::now());
            result.duration = start.elapsed();
        }
        let event = ExecEvent::Finished {
            task_idx: idx,
            status,
            attempts: result.attempts,
            error: result.error.clone(),
        };
        self.emit(event);
    }

    fn emit(&self, event: ExecEvent) {
        if let Some(events) = &self.events {
            // A consumer that went away must not stop the run.
            let _ = events.send(event);
        }
    }

    /// Aborts running attempts and collects them for a bounded time.
    /// Attempts that complete successfully before the abort lands keep their
    /// result; everything else is recorded as cancelled.
    async fn abort_attempts(&mut self) {
        self.attempts.abort_all();
        let drain = async {
            while let Some(joined) = self.attempts.join_next().await {
                // An aborted attempt (`Err`) stays `Running` and `finalize`
                // marks it cancelled; no need to look up whose it was.
                if let Ok(done) = joined {
                    self.on_attempt(done.idx, done.attempt, done.outcome);
                }
            }
        };
        if tokio::time::timeout(CANCEL_GRACE, drain).await.is_err() {
            tracing::warn!(
                still_running = self.attempts.len(),
                "some attempts did not stop within {CANCEL_GRACE:?} of cancellation; leaving them detached"
            );
            self.attempts.detach_all();
        }
    }

    /// Gives every task that is not yet final its final status.
    fn finalize(&mut self, cancelled: bool) {
        self.timers.clear();
        self.ready.clear();
        for idx in 0..self.phase.len() {
            let attempts = self.results[idx].attempts;
            let error = match self.phase[idx] {
                Phase::Done => continue,
                Phase::Running => format!("cancelled during attempt {attempts}"),
                Phase::Backoff => match &self.results[idx].error {
                    Some(last) => format!("cancelled while waiting to retry; last error: {last}"),
                    None => "cancelled while waiting to retry".to_owned(),
                },
                Phase::Waiting | Phase::Ready if cancelled => "cancelled before start".to_owned(),
                Phase::Waiting | Phase::Ready => {
                    // The cycle check makes this unreachable.
                    tracing::error!(task = %self.plan.tasks[idx].name, "task never became ready; this is a bug");
                    "never became ready (executor bug)".to_owned()
                }
            };
            self.finish(idx, TaskStatus::Cancelled, Some(error), None);
        }
    }
}

/// One attempt, as spawned into the `JoinSet`: never panics and never
/// outlives its timeout, so the coordinating loop always gets an outcome
/// tagged with the task it belongs to.
async fn run_attempt<R: TaskRunner>(
    runner: Arc<R>,
    idx: usize,
    attempt: u32,
    token: CancellationToken,
    timeout: Option<Duration>,
) -> AttemptDone<R::Output> {
    let run_token = token.clone();
    // The call itself is inside the guarded block too: a hand-written
    // (non-`async_trait`) runner may panic before returning its future.
    let call =
        AssertUnwindSafe(async move { runner.run(idx, attempt, run_token).await }).catch_unwind();
    let caught = match timeout {
        None => call.await,
        Some(limit) => match tokio::time::timeout(limit, call).await {
            Ok(caught) => caught,
            Err(_) => {
                token.cancel();
                return AttemptDone {
                    idx,
                    attempt,
                    outcome: Outcome::Failed {
                        message: format!("timed out after {limit:?}"),
                        retryable: true,
                    },
                };
            }
        },
    };
    let outcome = match caught {
        Ok(Ok(output)) => Outcome::Ok(output),
        Ok(Err(err)) => Outcome::Failed {
            message: err.message,
            retryable: err.retryable,
        },
        // Retryable: the executor cannot tell a bug from a panic on a
        // transient condition, and the retry budget bounds the cost.
        Err(payload) => Outcome::Failed {
            message: format!("task panicked: {}", panic_message(&*payload)),
            retryable: true,
        },
    };
    AttemptDone {
        idx,
        attempt,
        outcome,
    }
}

fn panic_message(payload: &(dyn Any + Send)) -> &str {
    if let Some(s) = payload.downcast_ref::<&str>() {
        s
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s
    } else {
        "non-string panic payload"
    }
}
