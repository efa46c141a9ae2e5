//! Executor tests. They run on real time with millisecond-scale delays:
//! `start_paused` needs tokio's `test-util` feature, which the crate does not
//! enable. Exact timing is asserted through the values the executor reports
//! (event delays, attempt counts); measured gaps are only lower-bounded,
//! because a sleep never ends early but a loaded machine may make it late.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::Instant as StdInstant;

use tokio::sync::mpsc;

use super::*;

/// What attempt `k` of a task does (the last step repeats).
#[derive(Debug, Clone)]
enum Step {
    Ok,
    OkAfter(Duration),
    Err {
        retryable: bool,
    },
    Panic,
    /// Sleeps an hour; if `cooperative`, returns early when the token fires.
    Hang {
        cooperative: bool,
    },
}

struct Script {
    steps: Vec<Vec<Step>>,
    calls: Vec<AtomicU32>,
    /// (task, attempt, when) per attempt start.
    starts: Mutex<Vec<(usize, u32, StdInstant)>>,
    in_flight: AtomicUsize,
    max_in_flight: AtomicUsize,
    /// Attempt futures dropped before they completed (aborted).
    dropped_unfinished: AtomicUsize,
    /// Per-attempt tokens, to check what the executor did with them.
    tokens: Mutex<Vec<(usize, u32, CancellationToken)>>,
}

impl Script {
    fn new(steps: Vec<Vec<Step>>) -> Arc<Self> {
        let n = steps.len();
        Arc::new(Self {
            steps,
            calls: (0..n).map(|_| AtomicU32::new(0)).collect(),
            starts: Mutex::new(Vec::new()),
            in_flight: AtomicUsize::new(0),
            max_in_flight: AtomicUsize::new(0),
            dropped_unfinished: AtomicUsize::new(0),
            tokens: Mutex::new(Vec::new()),
        })
    }

    fn all_ok(n: usize) -> Arc<Self> {
        Self::new(vec![vec![Step::Ok]; n])
    }

    fn calls(&self, idx: usize) -> u32 {
        self.calls[idx].load(Ordering::SeqCst)
    }

    fn start_times(&self, idx: usize) -> Vec<StdInstant> {
        let starts = self.starts.lock().expect("lock poisoned");
        starts
            .iter()
            .filter(|(i, _, _)| *i == idx)
            .map(|(_, _, t)| *t)
            .collect()
    }
}

/// Keeps the in-flight count right even when the executor drops the attempt.
struct InFlight<'a> {
    script: &'a Script,
    completed: bool,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.script.in_flight.fetch_sub(1, Ordering::SeqCst);
        if !self.completed {
            self.script
                .dropped_unfinished
                .fetch_add(1, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl TaskRunner for Script {
    type Output = (usize, u32);

    async fn run(
        &self,
        task_idx: usize,
        attempt: u32,
        cancel: CancellationToken,
    ) -> Result<Self::Output, TaskError> {
        self.calls[task_idx].fetch_add(1, Ordering::SeqCst);
        self.starts
            .lock()
            .expect("lock poisoned")
            .push((task_idx, attempt, StdInstant::now()));
        self.tokens
            .lock()
            .expect("lock poisoned")
            .push((task_idx, attempt, cancel.clone()));
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max_in_flight.fetch_max(now, Ordering::SeqCst);
        let mut guard = InFlight {
            script: self,
            completed: false,
        };
        let steps = &self.steps[task_idx];
        let step = steps[(attempt as usize - 1).min(steps.len() - 1)].clone();
        let result = match step {
            Step::Ok => Ok((task_idx, attempt)),
            Step::OkAfter(d) => {
                tokio::time::sleep(d).await;
                Ok((task_idx, attempt))
            }
            Step::Err { retryable } => Err(TaskError {
                message: format!("task {task_idx} attempt {attempt} failed"),
                retryable,
            }),
            Step::Panic => panic!("boom in task {task_idx}"),
            Step::Hang { cooperative } => {
                let hour = tokio::time::sleep(Duration::from_secs(3600));
                if cooperative {
                    tokio::select! {
                        () = cancel.cancelled() => Err(TaskError::fatal("saw cancellation")),
                        () = hour => Ok((task_idx, attempt)),
                    }
                } else {
                    hour.await;
                    Ok((task_idx, attempt))
                }
            }
        };
        guard.completed = true;
        result
    }
}

fn task(name: &str, deps: &[usize]) -> ExecTask {
    ExecTask {
        retry_delay: Duration::from_millis(10),
        max_retry_delay: Duration::from_secs(1),
        ..ExecTask::new(name, deps.to_vec())
    }
}

fn plan(spec: &[(&str, &[usize])]) -> ExecPlan {
    ExecPlan {
        tasks: spec.iter().map(|(name, deps)| task(name, deps)).collect(),
    }
}

fn opts(max_parallel: usize) -> ExecOptions {
    ExecOptions::new(max_parallel)
}

/// Options with an event channel; the receiver holds every event once
/// `execute` has returned.
fn opts_with_events(max_parallel: usize) -> (ExecOptions, mpsc::UnboundedReceiver<ExecEvent>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let mut o = ExecOptions::new(max_parallel);
    o.events = Some(tx);
    (o, rx)
}

fn drain(rx: &mut mpsc::UnboundedReceiver<ExecEvent>) -> Vec<ExecEvent> {
    let mut out = Vec::new();
    while let Ok(e) = rx.try_recv() {
        out.push(e);
    }
    out
}

fn statuses<O>(report: &ExecReport<O>) -> Vec<TaskStatus> {
    report.results.iter().map(|r| r.status).collect()
}

/// Small deterministic generator so the randomized checks reproduce.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A random DAG whose edges go from a random permutation's earlier to later
/// positions, so that index order is not already a topological order.
fn random_dag(rng: &mut Lcg, n: usize) -> ExecPlan {
    let mut perm: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        perm.swap(i, rng.below(i + 1));
    }
    let mut tasks: Vec<ExecTask> = (0..n).map(|i| task(&format!("t{i}"), &[])).collect();
    for pos in 1..n {
        let fan_in = rng.below(4);
        for _ in 0..fan_in {
            let dep_pos = rng.below(pos);
            tasks[perm[pos]].deps.push(perm[dep_pos]);
        }
    }
    ExecPlan { tasks }
}

fn assert_respects_edges(plan: &ExecPlan, order: &[usize]) {
    assert_eq!(order.len(), plan.tasks.len());
    let mut pos = vec![usize::MAX; order.len()];
    for (p, &idx) in order.iter().enumerate() {
        assert_eq!(pos[idx], usize::MAX, "task {idx} appears twice");
        pos[idx] = p;
    }
    for (idx, t) in plan.tasks.iter().enumerate() {
        for &d in &t.deps {
            assert!(pos[d] < pos[idx], "dep {d} must come before {idx}");
        }
    }
}

#[test]
fn topo_order_is_lowest_index_first() {
    // 0 waits for 2; 1 and 2 are free; 3 waits for 0 and 1.
    let p = plan(&[("a", &[2]), ("b", &[]), ("c", &[]), ("d", &[0, 1])]);
    assert_eq!(topo_order(&p).expect("acyclic"), vec![1, 2, 0, 3]);
}

#[test]
fn topo_order_respects_every_edge_on_random_dags() {
    let mut rng = Lcg(0x5eed);
    for round in 0..200 {
        let n = 1 + rng.below(60);
        let p = random_dag(&mut rng, n);
        let order = topo_order(&p).unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert_respects_edges(&p, &order);
        // Deterministic: same plan, same order.
        assert_eq!(topo_order(&p).expect("acyclic"), order);
    }
}

#[test]
fn cycle_is_an_error_naming_tasks_that_can_never_start() {
    // a <-> b cycle, c downstream of it, d independent, e self-loop.
    let p = plan(&[
        ("a", &[1]),
        ("b", &[0]),
        ("c", &[1]),
        ("d", &[]),
        ("e", &[4]),
    ]);
    let err = topo_order(&p).expect_err("cyclic");
    assert_eq!(
        err,
        ExecError::Cycle {
            tasks: vec!["a".into(), "b".into(), "c".into(), "e".into()]
        }
    );
    assert!(err.to_string().contains("a, b, c, e"), "{err}");
}

#[test]
fn unknown_dependency_is_an_error() {
    let p = plan(&[("a", &[]), ("b", &[7])]);
    assert_eq!(
        topo_order(&p),
        Err(ExecError::UnknownDependency {
            task: "b".into(),
            dep: 7,
            len: 2
        })
    );
}

#[tokio::test]
async fn execute_rejects_cycles_and_bad_options_without_running_anything() {
    let script = Script::all_ok(3);
    let cyclic = plan(&[("a", &[1]), ("b", &[0]), ("c", &[])]);
    let err = execute(&cyclic, script.clone(), opts(2))
        .await
        .expect_err("cyclic");
    assert!(matches!(err, ExecError::Cycle { ref tasks } if tasks == &["a", "b"]));

    let ok = plan(&[("a", &[]), ("b", &[0]), ("c", &[])]);
    let err = execute(&ok, script.clone(), opts(0))
        .await
        .expect_err("zero");
    assert_eq!(err, ExecError::ZeroParallelism);
    let mut o = opts(1);
    o.pre_completed = vec![true];
    let err = execute(&ok, script.clone(), o).await.expect_err("length");
    assert_eq!(
        err,
        ExecError::PreCompletedLength {
            expected: 3,
            actual: 1
        }
    );
    assert_eq!((0..3).map(|i| script.calls(i)).sum::<u32>(), 0);
}

#[tokio::test]
async fn empty_plan_succeeds() {
    let report = execute(&ExecPlan::default(), Script::all_ok(0), opts(1))
        .await
        .expect("runs");
    assert!(report.results.is_empty());
    assert!(report.succeeded());
}

#[tokio::test]
async fn serial_execution_follows_topo_order_and_returns_outputs() {
    let mut rng = Lcg(42);
    for _ in 0..20 {
        let n = 2 + rng.below(25);
        let p = random_dag(&mut rng, n);
        let (o, mut rx) = opts_with_events(1);
        let report = execute(&p, Script::all_ok(n), o).await.expect("runs");
        assert!(report.succeeded());
        let started: Vec<usize> = drain(&mut rx)
            .into_iter()
            .filter_map(|e| match e {
                ExecEvent::Started { task_idx, .. } => Some(task_idx),
                _ => None,
            })
            .collect();
        assert_eq!(started, topo_order(&p).expect("acyclic"));
        for (i, r) in report.results.iter().enumerate() {
            assert_eq!(r.output, Some((i, 1)));
            assert_eq!(r.attempts, 1);
            assert!(r.started_at.is_some() && r.finished_at >= r.started_at);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parallelism_bound_is_never_exceeded_and_is_used() {
    let n = 30;
    let p = ExecPlan {
        tasks: (0..n).map(|i| task(&format!("t{i}"), &[])).collect(),
    };
    let script = Script::new(vec![vec![Step::OkAfter(Duration::from_millis(15))]; n]);
    let report = execute(&p, script.clone(), opts(3)).await.expect("runs");
    assert!(report.succeeded());
    assert_eq!(script.max_in_flight.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn backoff_does_not_hold_a_slot() {
    // One slot. Task 0 fails once and backs off 200 ms; task 1 must use the
    // slot meanwhile instead of waiting behind the backoff.
    let mut p = plan(&[("flaky", &[]), ("other", &[])]);
    p.tasks[0].retries = 1;
    p.tasks[0].retry_delay = Duration::from_millis(200);
    let script = Script::new(vec![
        vec![Step::Err { retryable: true }, Step::Ok],
        vec![Step::Ok],
    ]);
    let report = execute(&p, script.clone(), opts(1)).await.expect("runs");
    assert!(report.succeeded());
    let flaky = script.start_times(0);
    let other = script.start_times(1);
    assert_eq!(flaky.len(), 2);
    assert!(other[0] < flaky[1], "other task waited behind a backoff");
}

#[tokio::test]
async fn retries_follow_the_exact_capped_backoff_sequence() {
    let mut p = plan(&[("flaky", &[])]);
    p.tasks[0].retries = 4;
    p.tasks[0].retry_delay = Duration::from_millis(10);
    p.tasks[0].max_retry_delay = Duration::from_millis(40);
    let script = Script::new(vec![vec![Step::Err { retryable: true }]]);
    let (o, mut rx) = opts_with_events(2);
    let report = execute(&p, script.clone(), o).await.expect("runs");

    let r = &report.results[0];
    assert_eq!(r.status, TaskStatus::Failed);
    assert_eq!(r.attempts, 5);
    assert_eq!(r.error.as_deref(), Some("task 0 attempt 5 failed"));
    assert_eq!(script.calls(0), 5);

    let expected_ms = [10u64, 20, 40, 40];
    let delays: Vec<Duration> = drain(&mut rx)
        .into_iter()
        .filter_map(|e| match e {
            ExecEvent::Retrying { delay, .. } => Some(delay),
            _ => None,
        })
        .collect();
    let expected: Vec<Duration> = expected_ms
        .iter()
        .map(|&ms| Duration::from_millis(ms))
        .collect();
    assert_eq!(delays, expected);
    let starts = script.start_times(0);
    for (pair, want) in starts.windows(2).zip(&expected) {
        assert!(
            pair[1] - pair[0] >= *want,
            "retried after {:?} < {want:?}",
            pair[1] - pair[0]
        );
    }
    assert!(r.duration >= Duration::from_millis(110));
}

#[test]
fn backoff_delay_doubles_and_caps() {
    let s = Duration::from_secs;
    let seq: Vec<Duration> = (1..=5).map(|a| backoff_delay(s(1), s(4), a)).collect();
    assert_eq!(seq, vec![s(1), s(2), s(4), s(4), s(4)]);
    assert_eq!(
        backoff_delay(s(1), s(60), 200),
        s(60),
        "overflow saturates to the cap"
    );
    assert_eq!(
        backoff_delay(s(3), s(1), 1),
        s(1),
        "cap applies to the first retry too"
    );
}

#[tokio::test]
async fn retry_then_success() {
    let mut p = plan(&[("flaky", &[]), ("after", &[0])]);
    p.tasks[0].retries = 3;
    let script = Script::new(vec![
        vec![
            Step::Err { retryable: true },
            Step::Err { retryable: true },
            Step::Ok,
        ],
        vec![Step::Ok],
    ]);
    let report = execute(&p, script.clone(), opts(2)).await.expect("runs");
    assert!(report.succeeded());
    assert_eq!(report.results[0].attempts, 3);
    assert_eq!(report.results[0].output, Some((0, 3)));
    assert_eq!(report.results[1].status, TaskStatus::Succeeded);
}

#[tokio::test]
async fn non_retryable_error_fails_on_the_first_attempt() {
    let mut p = plan(&[("contract", &[])]);
    p.tasks[0].retries = 5;
    let script = Script::new(vec![vec![Step::Err { retryable: false }, Step::Ok]]);
    let (o, mut rx) = opts_with_events(1);
    let report = execute(&p, script.clone(), o).await.expect("runs");
    assert_eq!(report.results[0].status, TaskStatus::Failed);
    assert_eq!(report.results[0].attempts, 1);
    assert_eq!(script.calls(0), 1);
    let events = drain(&mut rx);
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, ExecEvent::Retrying { .. }))
    );
    assert!(!report.succeeded());
}

#[tokio::test]
async fn timeout_counts_as_a_failed_attempt_and_is_retried() {
    let mut p = plan(&[("slow", &[])]);
    p.tasks[0].retries = 1;
    p.tasks[0].timeout = Some(Duration::from_millis(30));
    let script = Script::new(vec![vec![Step::OkAfter(Duration::from_secs(60)), Step::Ok]]);
    let (o, mut rx) = opts_with_events(1);
    let t0 = StdInstant::now();
    let report = execute(&p, script.clone(), o).await.expect("runs");
    assert!(t0.elapsed() < Duration::from_secs(10));
    let r = &report.results[0];
    assert_eq!(r.status, TaskStatus::Succeeded);
    assert_eq!(r.attempts, 2);
    assert_eq!(r.output, Some((0, 2)));
    let retry_errors: Vec<String> = drain(&mut rx)
        .into_iter()
        .filter_map(|e| match e {
            ExecEvent::Retrying { error, attempt, .. } => {
                assert_eq!(attempt, 1);
                Some(error)
            }
            _ => None,
        })
        .collect();
    assert_eq!(retry_errors, vec!["timed out after 30ms".to_owned()]);
    // The timed-out attempt was dropped, and its token told it to stop.
    assert_eq!(script.dropped_unfinished.load(Ordering::SeqCst), 1);
    let tokens = script.tokens.lock().expect("lock poisoned");
    assert!(tokens[0].2.is_cancelled());
    assert!(!tokens[1].2.is_cancelled());
}

#[tokio::test]
async fn timeout_without_retries_fails_with_message() {
    let mut p = plan(&[("slow", &[])]);
    p.tasks[0].timeout = Some(Duration::from_millis(20));
    let script = Script::new(vec![vec![Step::Hang { cooperative: false }]]);
    let report = execute(&p, script, opts(1)).await.expect("runs");
    assert_eq!(report.results[0].status, TaskStatus::Failed);
    assert_eq!(
        report.results[0].error.as_deref(),
        Some("timed out after 20ms")
    );
}

#[tokio::test]
async fn failure_propagates_downstream_only() {
    // Diamond a->b, a->c, b->d, c->d (b fails), e after d, independent x->y.
    let p = plan(&[
        ("a", &[]),
        ("b", &[0]),
        ("c", &[0]),
        ("d", &[1, 2]),
        ("e", &[3]),
        ("x", &[]),
        ("y", &[5]),
    ]);
    let mut steps = vec![vec![Step::Ok]; 7];
    steps[1] = vec![Step::Err { retryable: false }];
    // c finishes after b failed, so its success must not start d.
    steps[2] = vec![Step::OkAfter(Duration::from_millis(30))];
    let script = Script::new(steps);
    let report = execute(&p, script.clone(), opts(4)).await.expect("runs");
    use TaskStatus::*;
    assert_eq!(
        statuses(&report),
        vec![
            Succeeded,
            Failed,
            Succeeded,
            UpstreamFailed,
            UpstreamFailed,
            Succeeded,
            Succeeded
        ]
    );
    for idx in [3, 4] {
        let r = &report.results[idx];
        assert_eq!(r.failed_upstream.as_deref(), Some("b"));
        assert_eq!(r.error.as_deref(), Some("upstream task `b` failed"));
        assert_eq!(r.attempts, 0);
        assert_eq!(script.calls(idx), 0);
        assert!(r.started_at.is_none());
    }
    assert!(!report.succeeded());
    assert_eq!(report.count(UpstreamFailed), 2);
}

#[tokio::test]
async fn panic_becomes_failed_with_the_panic_message() {
    let p = plan(&[("bad", &[]), ("after", &[0]), ("fine", &[])]);
    let script = Script::new(vec![vec![Step::Panic], vec![Step::Ok], vec![Step::Ok]]);
    let report = execute(&p, script, opts(2)).await.expect("runs");
    let r = &report.results[0];
    assert_eq!(r.status, TaskStatus::Failed);
    assert_eq!(r.error.as_deref(), Some("task panicked: boom in task 0"));
    assert_eq!(report.results[1].status, TaskStatus::UpstreamFailed);
    assert_eq!(report.results[2].status, TaskStatus::Succeeded);
}

#[tokio::test]
async fn panic_is_retried_within_budget() {
    let mut p = plan(&[("flaky", &[])]);
    p.tasks[0].retries = 1;
    let script = Script::new(vec![vec![Step::Panic, Step::Ok]]);
    let report = execute(&p, script, opts(1)).await.expect("runs");
    assert_eq!(report.results[0].status, TaskStatus::Succeeded);
    assert_eq!(report.results[0].attempts, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancellation_mid_run_cancels_everything_unfinished_promptly() {
    let mut p = plan(&[
        ("quick", &[]),
        ("long", &[]),
        ("after_long", &[1]),
        ("backing_off", &[]),
        ("stubborn", &[]),
        ("after_quick", &[0]),
    ]);
    p.tasks[3].retries = 3;
    p.tasks[3].retry_delay = Duration::from_secs(3600);
    let script = Script::new(vec![
        vec![Step::Ok],
        vec![Step::Hang { cooperative: true }],
        vec![Step::Ok],
        vec![Step::Err { retryable: true }],
        vec![Step::Hang { cooperative: false }],
        vec![Step::Hang { cooperative: false }],
    ]);
    let (o, mut rx) = opts_with_events(8);
    let cancel = o.cancel.clone();
    let canceller = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let at = StdInstant::now();
        cancel.cancel();
        at
    });
    let report = execute(&p, script.clone(), o).await.expect("runs");
    let returned = StdInstant::now();
    let cancelled_at = canceller.await.expect("canceller ran");
    assert!(
        returned - cancelled_at < Duration::from_millis(500),
        "took {:?} to return after cancel",
        returned - cancelled_at
    );
    assert!(report.cancelled);
    assert!(!report.succeeded());
    use TaskStatus::*;
    assert_eq!(
        statuses(&report),
        vec![
            Succeeded, Cancelled, Cancelled, Cancelled, Cancelled, Cancelled
        ]
    );
    assert_eq!(report.results[1].attempts, 1);
    assert_eq!(report.results[2].attempts, 0);
    assert_eq!(
        report.results[2].error.as_deref(),
        Some("cancelled before start")
    );
    assert!(report.results[2].started_at.is_none());
    assert_eq!(report.results[3].attempts, 1);
    let backoff_error = report.results[3].error.as_deref().unwrap_or_default();
    assert!(
        backoff_error.starts_with("cancelled while waiting to retry"),
        "{backoff_error}"
    );
    assert_eq!(report.results[4].attempts, 1);
    assert_eq!(script.calls(2), 0);
    // The non-cooperative attempts (4 and 5) were dropped, not awaited.
    assert!(script.dropped_unfinished.load(Ordering::SeqCst) >= 2);
    assert_eq!(script.in_flight.load(Ordering::SeqCst), 0);
    let finished = drain(&mut rx)
        .into_iter()
        .filter(|e| matches!(e, ExecEvent::Finished { .. }))
        .count();
    assert_eq!(finished, 6);
}

#[tokio::test]
async fn cancelled_before_start_runs_nothing() {
    let p = plan(&[("a", &[]), ("b", &[0]), ("c", &[])]);
    let script = Script::all_ok(3);
    let mut o = opts(2);
    o.pre_completed = vec![false, false, true];
    o.cancel.cancel();
    let report = execute(&p, script.clone(), o).await.expect("runs");
    assert!(report.cancelled);
    use TaskStatus::*;
    assert_eq!(statuses(&report), vec![Cancelled, Cancelled, Skipped]);
    assert_eq!(script.calls(0) + script.calls(1), 0);
}

#[tokio::test]
async fn pre_completed_tasks_are_skipped_and_dependents_run() {
    // a -> b -> c, a -> d with a and b pre-completed; and e -> f -> g with
    // only f pre-completed, so f's upstream runs and succeeds and f must
    // still not run.
    let p = plan(&[
        ("a", &[]),
        ("b", &[0]),
        ("c", &[1]),
        ("d", &[0]),
        ("e", &[]),
        ("f", &[4]),
        ("g", &[5]),
    ]);
    let script = Script::all_ok(7);
    let (mut o, mut rx) = opts_with_events(2);
    o.pre_completed = vec![true, true, false, false, false, true, false];
    let report = execute(&p, script.clone(), o).await.expect("runs");
    use TaskStatus::*;
    assert_eq!(
        statuses(&report),
        vec![
            Skipped, Skipped, Succeeded, Succeeded, Succeeded, Skipped, Succeeded
        ]
    );
    let calls: Vec<u32> = (0..7).map(|i| script.calls(i)).collect();
    assert_eq!(calls, vec![0, 0, 1, 1, 1, 0, 1]);
    assert!(report.results[0].output.is_none());
    assert!(report.results[5].started_at.is_none());
    let finished = drain(&mut rx)
        .into_iter()
        .filter(|e| matches!(e, ExecEvent::Finished { .. }))
        .count();
    assert_eq!(finished, 7);
    assert!(report.succeeded());
}

#[tokio::test]
async fn failure_does_not_propagate_through_a_skipped_task() {
    // a fails; b (pre-completed) depends on a; c depends on b only.
    let p = plan(&[("a", &[]), ("b", &[0]), ("c", &[1])]);
    let script = Script::new(vec![
        vec![Step::Err { retryable: false }],
        vec![Step::Ok],
        vec![Step::Ok],
    ]);
    let mut o = opts(1);
    o.pre_completed = vec![false, true, false];
    let report = execute(&p, script, o).await.expect("runs");
    use TaskStatus::*;
    assert_eq!(statuses(&report), vec![Failed, Skipped, Succeeded]);
}

#[tokio::test]
async fn every_task_gets_exactly_one_finished_event_last() {
    let mut p = plan(&[
        ("a", &[]),
        ("b", &[0]),
        ("c", &[0]),
        ("d", &[1, 2]),
        ("e", &[]),
        ("f", &[4]),
    ]);
    p.tasks[2].retries = 2;
    let script = Script::new(vec![
        vec![Step::Ok],
        vec![Step::Err { retryable: false }],
        vec![Step::Err { retryable: true }, Step::Ok],
        vec![Step::Ok],
        vec![Step::Ok],
        vec![Step::Ok],
    ]);
    let (mut o, mut rx) = opts_with_events(2);
    o.pre_completed = vec![false, false, false, false, true, false];
    let report = execute(&p, script, o).await.expect("runs");
    let events = drain(&mut rx);
    for idx in 0..p.tasks.len() {
        let mine: Vec<&ExecEvent> = events
            .iter()
            .filter(|e| match e {
                ExecEvent::Started { task_idx, .. }
                | ExecEvent::Retrying { task_idx, .. }
                | ExecEvent::Finished { task_idx, .. } => *task_idx == idx,
            })
            .collect();
        let finished: Vec<&&ExecEvent> = mine
            .iter()
            .filter(|e| matches!(e, ExecEvent::Finished { .. }))
            .collect();
        assert_eq!(finished.len(), 1, "task {idx}: {mine:?}");
        let r = &report.results[idx];
        assert_eq!(
            **finished[0],
            ExecEvent::Finished {
                task_idx: idx,
                status: r.status,
                attempts: r.attempts,
                error: r.error.clone()
            }
        );
        assert!(matches!(mine.last(), Some(ExecEvent::Finished { .. })));
        let started = mine
            .iter()
            .filter(|e| matches!(e, ExecEvent::Started { .. }))
            .count();
        assert_eq!(started as u32, r.attempts, "task {idx}");
    }
    use TaskStatus::*;
    assert_eq!(
        statuses(&report),
        vec![
            Succeeded,
            Failed,
            Succeeded,
            UpstreamFailed,
            Skipped,
            Succeeded
        ]
    );
    assert_eq!(report.results[2].attempts, 2);
}

#[test]
fn status_serializes_snake_case() {
    let json = serde_json::to_string(&TaskStatus::UpstreamFailed).expect("serializes");
    assert_eq!(json, "\"upstream_failed\"");
    let back: TaskStatus = serde_json::from_str("\"skipped\"").expect("parses");
    assert_eq!(back, TaskStatus::Skipped);
}

#[test]
fn execute_future_is_send() {
    fn assert_send<T: Send>(_: &T) {}
    let p = plan(&[("a", &[])]);
    let fut = execute(&p, Script::all_ok(1), opts(1));
    assert_send(&fut);
}
