//! Executor overhead benchmark: how much the scheduler itself costs, with
//! tasks that do nothing. Plain `fn main` (harness = false); run with
//! `cargo bench --bench orchestration`.
//!
//! Figures:
//! 1. fan-out/fan-in: 1 source -> 1,998 middle -> 1 sink, wall time, median of 7.
//! 2. per-transition overhead: a 2,000-task chain; for each task, the gap
//!    between its predecessor's runner returning and its own runner starting
//!    (pooled over 5 runs), p50/p99.
//! 3. layered: 10,000 tasks in 50 layers of 200, each depending on 3 tasks of
//!    the layer before; wall time, median of 5.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nightjar::exec::{ExecOptions, ExecPlan, ExecTask, TaskError, TaskRunner, execute};
use tokio_util::sync::CancellationToken;

/// Parallelism for the wide DAGs: large enough that the bound is not what is
/// being measured.
const MAX_PARALLEL: usize = 64;

struct Noop;

#[async_trait]
impl TaskRunner for Noop {
    type Output = ();
    async fn run(&self, _: usize, _: u32, _: CancellationToken) -> Result<(), TaskError> {
        Ok(())
    }
}

/// Records when each task's runner started and returned, in nanoseconds
/// since `base`.
struct Stamping {
    base: Instant,
    start: Vec<AtomicU64>,
    end: Vec<AtomicU64>,
}

impl Stamping {
    fn new(n: usize) -> Self {
        Self {
            base: Instant::now(),
            start: (0..n).map(|_| AtomicU64::new(0)).collect(),
            end: (0..n).map(|_| AtomicU64::new(0)).collect(),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.base.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }
}

#[async_trait]
impl TaskRunner for Stamping {
    type Output = ();
    async fn run(&self, idx: usize, _: u32, _: CancellationToken) -> Result<(), TaskError> {
        self.start[idx].store(self.now(), Ordering::Relaxed);
        self.end[idx].store(self.now(), Ordering::Relaxed);
        Ok(())
    }
}

fn task(i: usize, deps: Vec<usize>) -> ExecTask {
    ExecTask::new(format!("t{i}"), deps)
}

fn fan_out_fan_in(n: usize) -> ExecPlan {
    let mut tasks = vec![task(0, vec![])];
    tasks.extend((1..n - 1).map(|i| task(i, vec![0])));
    tasks.push(task(n - 1, (1..n - 1).collect()));
    ExecPlan { tasks }
}

fn chain(n: usize) -> ExecPlan {
    ExecPlan {
        tasks: (0..n)
            .map(|i| task(i, if i == 0 { vec![] } else { vec![i - 1] }))
            .collect(),
    }
}

fn layered(layers: usize, width: usize, fan_in: usize) -> ExecPlan {
    // Fixed-seed LCG: the same DAG every run.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) % n as u64) as usize
    };
    let mut tasks = Vec::with_capacity(layers * width);
    for layer in 0..layers {
        for j in 0..width {
            let i = layer * width + j;
            let deps = if layer == 0 {
                vec![]
            } else {
                (0..fan_in)
                    .map(|_| (layer - 1) * width + next(width))
                    .collect()
            };
            tasks.push(task(i, deps));
        }
    }
    ExecPlan { tasks }
}

fn run_wall<R: TaskRunner>(
    rt: &tokio::runtime::Runtime,
    plan: &ExecPlan,
    runner: Arc<R>,
) -> Duration {
    let t0 = Instant::now();
    let report = rt
        .block_on(execute(plan, runner, ExecOptions::new(MAX_PARALLEL)))
        .expect("benchmark plan is valid");
    let elapsed = t0.elapsed();
    assert!(report.succeeded(), "benchmark run failed");
    elapsed
}

fn median(mut xs: Vec<Duration>) -> Duration {
    xs.sort();
    xs[xs.len() / 2]
}

fn percentile(sorted: &[u64], p: f64) -> u64 {
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank]
}

struct Row {
    name: &'static str,
    value: f64,
    unit: &'static str,
    target: &'static str,
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut rows = Vec::new();

    // 1. fan-out/fan-in
    let plan = fan_out_fan_in(2_000);
    run_wall(&rt, &plan, Arc::new(Noop)); // warm-up
    let times: Vec<Duration> = (0..7)
        .map(|_| run_wall(&rt, &plan, Arc::new(Noop)))
        .collect();
    let med = median(times);
    rows.push(Row {
        name: "fanout_2000_wall",
        value: med.as_secs_f64() * 1e3,
        unit: "ms",
        target: "<= 1000",
    });
    rows.push(Row {
        name: "fanout_2000_per_task",
        value: med.as_secs_f64() * 1e6 / 2_000.0,
        unit: "us",
        target: "",
    });

    // 2. per-transition overhead on a chain
    let n = 2_000;
    let plan = chain(n);
    let mut gaps: Vec<u64> = Vec::with_capacity(5 * (n - 1));
    run_wall(&rt, &plan, Arc::new(Stamping::new(n))); // warm-up
    for _ in 0..5 {
        let stamps = Arc::new(Stamping::new(n));
        run_wall(&rt, &plan, Arc::clone(&stamps));
        for i in 1..n {
            let prev_end = stamps.end[i - 1].load(Ordering::Relaxed);
            let start = stamps.start[i].load(Ordering::Relaxed);
            gaps.push(start.saturating_sub(prev_end));
        }
    }
    gaps.sort_unstable();
    rows.push(Row {
        name: "chain_transition_p50",
        value: percentile(&gaps, 0.50) as f64 / 1e3,
        unit: "us",
        target: "<= 100",
    });
    rows.push(Row {
        name: "chain_transition_p99",
        value: percentile(&gaps, 0.99) as f64 / 1e3,
        unit: "us",
        target: "<= 1000",
    });
    rows.push(Row {
        name: "chain_transition_max",
        value: gaps[gaps.len() - 1] as f64 / 1e3,
        unit: "us",
        target: "",
    });

    // 3. wide layered DAG
    let plan = layered(50, 200, 3);
    run_wall(&rt, &plan, Arc::new(Noop)); // warm-up
    let times: Vec<Duration> = (0..5)
        .map(|_| run_wall(&rt, &plan, Arc::new(Noop)))
        .collect();
    let med = median(times);
    rows.push(Row {
        name: "layered_10000_wall",
        value: med.as_secs_f64() * 1e3,
        unit: "ms",
        target: "",
    });
    rows.push(Row {
        name: "layered_10000_per_task",
        value: med.as_secs_f64() * 1e6 / 10_000.0,
        unit: "us",
        target: "",
    });

    println!(
        "{:<26} {:>12} {:<5} {:>10}",
        "figure", "value", "unit", "target"
    );
    for r in &rows {
        println!(
            "{:<26} {:>12.2} {:<5} {:>10}",
            r.name, r.value, r.unit, r.target
        );
    }
    for r in &rows {
        println!("BENCH name={} value={:.2} unit={}", r.name, r.value, r.unit);
    }
}
