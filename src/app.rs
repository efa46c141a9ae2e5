//! One function per subcommand: load → compile → execute, and the exit-code classification.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use chrono::NaiveDate;
use tokio_util::sync::CancellationToken;

mod audit;
mod contract;
mod features;
mod models;
mod schedule;

use crate::audit::RunAudit;
use crate::audit::event::EventType;
use crate::cli::{Cli, Command, ContractCommand, FeaturesCommand, RunArgs, RunsCommand};
use crate::diag::Diagnostic;
use crate::engine::Engine;
use crate::exec::{
    self, ExecEvent, ExecOptions, ExecPlan, ExecTask, TaskError, TaskRunner, TaskStatus,
};
use crate::plan::{self, Plan};
use crate::spec::template::DataInterval;
use crate::spec::{self, LoadOptions, Project};
use crate::stores::Storage;
use crate::stores::runs::{self, RunState, RunStatus, TaskState, TaskStateStatus};
use crate::stores::tables::Tables;
use crate::tasks::{self, RunContext, TaskCx, TaskOutput};

/// Exit codes (DESIGN.md): 0 success, 1 a run failed, 2 invalid project or usage, 3 a
/// blocking data contract was violated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Success = 0,
    RunFailed = 1,
    Usage = 2,
    Contract = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// An error that ends the command: what to print and which exit code.
pub struct Failure {
    pub exit: Exit,
    pub message: String,
    pub diagnostics: Vec<Diagnostic>,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            exit: Exit::Usage,
            message: message.into(),
            diagnostics: vec![],
        }
    }
    /// Something failed after the project loaded: exit 1.
    fn run_failed(message: impl Into<String>) -> Failure {
        Failure {
            exit: Exit::RunFailed,
            message: message.into(),
            diagnostics: vec![],
        }
    }
    /// A store error: exit 2 when it is the user's input (a bad URL or name), else 1.
    fn store(e: crate::stores::StoreError) -> Failure {
        if e.is_usage() {
            Failure::usage(e.to_string())
        } else {
            Failure::run_failed(e.to_string())
        }
    }
    fn diags(diagnostics: Vec<Diagnostic>) -> Failure {
        let n = diagnostics.len();
        Failure {
            exit: Exit::Usage,
            message: format!("{n} problem{} found", if n == 1 { "" } else { "s" }),
            diagnostics,
        }
    }
}

pub fn run(cli: Cli) -> ExitCode {
    init_logging(cli.global.verbose);
    let json = cli.global.json;
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return Exit::RunFailed.into();
        }
    };
    let result = runtime.block_on(dispatch(cli));
    match result {
        Ok(exit) => exit.into(),
        Err(failure) => {
            report_failure(&failure, json);
            failure.exit.into()
        }
    }
}

fn report_failure(failure: &Failure, json: bool) {
    if json {
        let value = serde_json::json!({
            "ok": false,
            "exit_code": failure.exit as u8,
            "error": failure.message,
            "diagnostics": failure.diagnostics,
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    }
    let mut err = std::io::stderr().lock();
    for d in &failure.diagnostics {
        let _ = writeln!(err, "{d}");
    }
    let _ = writeln!(err, "error: {}", failure.message);
}

fn init_logging(verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info,datafusion=warn,deltalake_core=warn",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("NIGHTJAR_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let ansi = std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi)
        .with_target(false)
        .try_init();
}

async fn dispatch(cli: Cli) -> Result<Exit, Failure> {
    let g = &cli.global;
    match &cli.command {
        Command::Validate { path } => validate(path.as_deref().unwrap_or(&g.project), g.json),
        Command::Plan { pipeline, run } => show_plan(&g.project, pipeline, run, g.json),
        Command::Run {
            pipeline,
            run,
            resume,
            dry_run,
        } => {
            if *dry_run {
                show_plan(&g.project, pipeline, run, g.json)
            } else {
                run_pipeline(&g.project, pipeline, run, resume.as_deref(), g.json).await
            }
        }
        Command::Runs { command } => runs_command(&g.project, command, g.json).await,
        Command::Contract {
            command:
                ContractCommand::Check {
                    contract: file,
                    table,
                    data,
                    object,
                    ds,
                },
        } => {
            let args = contract::CheckArgs {
                contract: file,
                table: table.as_deref(),
                data: data.as_deref(),
                object: object.as_deref(),
                ds: ds.as_deref(),
            };
            contract::check(&g.project, &args, g.json).await
        }
        Command::Features { command } => match command {
            FeaturesCommand::List => features::list(&g.project, g.json).await,
            FeaturesCommand::Show { view } => features::show(&g.project, view, g.json).await,
        },
        Command::Schema => {
            println!("{}", crate::schema::project_schema_json());
            Ok(Exit::Success)
        }
        Command::Schedule {
            once,
            list,
            count,
            pipelines,
            timing,
        } => {
            let mode = match (*once, *list) {
                (_, true) => schedule::Mode::List { count: *count },
                (true, _) => schedule::Mode::Once,
                _ => schedule::Mode::Forever,
            };
            schedule::schedule(&g.project, mode, pipelines, timing, g.json).await
        }
        Command::Backfill {
            pipeline,
            from,
            to,
            parallel,
            rerun,
            timing,
        } => {
            let args = schedule::BackfillArgs {
                from,
                to,
                parallel: *parallel,
                rerun: *rerun,
            };
            schedule::backfill(&g.project, pipeline, &args, timing, g.json).await
        }
        Command::Audit { command } => audit::command(&g.project, command, g.json).await,
        Command::Models { command } => models::command(&g.project, command, g.json).await,
        Command::Lineage {
            name,
            upstream: _,
            downstream,
            depth,
            format,
        } => audit::lineage(&g.project, name, *downstream, *depth, *format, g.json).await,
    }
}

pub(crate) fn today() -> NaiveDate {
    chrono::Utc::now().date_naive()
}

fn parse_ds(ds: Option<&str>) -> Result<NaiveDate, Failure> {
    match ds {
        None => Ok(today()),
        Some(text) => NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .map_err(|_| Failure::usage(format!("`--ds {text}` is not a date (YYYY-MM-DD)"))),
    }
}

fn parse_vars(vars: &[String]) -> Result<Vec<(String, String)>, Failure> {
    vars.iter()
        .map(|v| match v.split_once('=') {
            Some((k, val)) if !k.is_empty() => Ok((k.to_string(), val.to_string())),
            _ => Err(Failure::usage(format!("`--var {v}` must be KEY=VALUE"))),
        })
        .collect()
}

fn load(dir: &Path, options: &LoadOptions) -> Result<Project, Failure> {
    spec::load_project(dir, options).map_err(Failure::diags)
}

fn validate(dir: &Path, json: bool) -> Result<Exit, Failure> {
    let options = LoadOptions::for_day(today());
    let project = load(dir, &options)?;
    let diags = plan::check_project(&project);
    if !diags.is_empty() {
        return Err(Failure::diags(diags));
    }
    let n_tasks: usize = project.pipelines.iter().map(|p| p.tasks.len()).sum();
    if json {
        let pipelines: Vec<_> = project.pipelines.iter().map(|p| serde_json::json!({"name": p.name, "tasks": p.tasks.len(), "file": p.file.path})).collect();
        let contracts: Vec<_> = project.contracts.iter().map(|c| &c.file.path).collect();
        let views: Vec<_> = project
            .features
            .values()
            .map(|v| serde_json::json!({"name": v.name, "version": v.version, "file": v.yaml.path}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({"ok": true, "project": project.config.name, "pipelines": pipelines, "contracts": contracts, "feature_views": views})).unwrap_or_default());
    } else {
        let (contracts, views) = (project.contracts.len(), project.features.len());
        println!(
            "ok: project `{}`, {} pipeline{}, {} task{}, {} contract{}, {} feature view{}",
            project.config.name,
            project.pipelines.len(),
            plural(project.pipelines.len()),
            n_tasks,
            plural(n_tasks),
            contracts,
            plural(contracts),
            views,
            plural(views)
        );
    }
    Ok(Exit::Success)
}

fn plural(n: usize) -> &'static str {
    if n == 1 { "" } else { "s" }
}

fn compile_for_run(
    dir: &Path,
    pipeline: &str,
    args: &RunArgs,
    ds: NaiveDate,
    vars: Vec<(String, String)>,
    interval: Option<DataInterval>,
) -> Result<(Project, Plan, Vec<bool>), Failure> {
    let options = LoadOptions {
        ds,
        vars,
        only_pipeline: Some(pipeline.to_string()),
        interval,
    };
    let project = load(dir, &options)?;
    let plan = plan::compile(&project, pipeline).map_err(Failure::diags)?;
    let mask = plan.select(&args.select).map_err(Failure::usage)?;
    Ok((project, plan, mask))
}

fn show_plan(dir: &Path, pipeline: &str, args: &RunArgs, json: bool) -> Result<Exit, Failure> {
    let ds = parse_ds(args.ds.as_deref())?;
    let (project, plan, mask) =
        compile_for_run(dir, pipeline, args, ds, parse_vars(&args.vars)?, None)?;
    let (exec_plan, map) = to_exec_plan(&plan, &mask);
    let order = exec::topo_order(&exec_plan).map_err(|e| Failure::usage(e.to_string()))?;
    if json {
        let tasks: Vec<_> = order
            .iter()
            .map(|&i| {
                let t = &plan.tasks[map[i]];
                serde_json::json!({
                    "id": t.id, "kind": t.kind.name(),
                    "depends_on": t.deps.iter().filter(|&&d| mask[d]).map(|&d| plan.tasks[d].id.clone()).collect::<Vec<_>>(),
                    "reads": t.inputs, "writes": t.outputs, "retries": t.retries,
                    "timeout_s": t.timeout.map(|d| d.as_secs()), "location": t.location,
                })
            })
            .collect();
        let value = serde_json::json!({"project": project.config.name, "pipeline": plan.pipeline, "ds": ds.to_string(), "tasks": tasks, "external_inputs": plan.external_inputs});
        println!(
            "{}",
            serde_json::to_string_pretty(&value).unwrap_or_default()
        );
    } else {
        println!(
            "pipeline `{}` (ds {ds}): {} of {} tasks selected, in order",
            plan.pipeline,
            map.len(),
            plan.tasks.len()
        );
        let rows: Vec<Vec<String>> = order
            .iter()
            .enumerate()
            .map(|(n, &i)| {
                let t = &plan.tasks[map[i]];
                let deps: Vec<&str> = t
                    .deps
                    .iter()
                    .filter(|&&d| mask[d])
                    .map(|&d| plan.tasks[d].id.as_str())
                    .collect();
                vec![
                    (n + 1).to_string(),
                    t.id.clone(),
                    t.kind.name().to_string(),
                    deps.join(","),
                    t.inputs.join(","),
                    t.outputs.join(","),
                ]
            })
            .collect();
        print_table(&["#", "task", "kind", "after", "reads", "writes"], &rows);
        if !plan.external_inputs.is_empty() {
            println!(
                "reads from other pipelines: {}",
                plan.external_inputs.join(", ")
            );
        }
    }
    Ok(Exit::Success)
}

/// The executor's view of the selected tasks: indices remapped, edges to unselected tasks
/// dropped (their tables are read as they are). Returns the plan and exec index → plan index.
fn to_exec_plan(plan: &Plan, mask: &[bool]) -> (ExecPlan, Vec<usize>) {
    let map: Vec<usize> = (0..plan.tasks.len()).filter(|&i| mask[i]).collect();
    let back: HashMap<usize, usize> = map.iter().enumerate().map(|(e, &p)| (p, e)).collect();
    let tasks = map
        .iter()
        .map(|&p| {
            let t = &plan.tasks[p];
            ExecTask {
                name: t.id.clone(),
                deps: t.deps.iter().filter_map(|d| back.get(d).copied()).collect(),
                retries: t.retries,
                retry_delay: t.retry_delay,
                max_retry_delay: t.max_retry_delay,
                timeout: t.timeout,
            }
        })
        .collect();
    (ExecPlan { tasks }, map)
}

struct Runner {
    ctx: Arc<RunContext>,
    plan: Arc<Plan>,
    map: Vec<usize>,
    audit: Arc<RunAudit>,
}

#[async_trait::async_trait]
impl TaskRunner for Runner {
    type Output = TaskOutput;

    async fn run(
        &self,
        task_idx: usize,
        attempt: u32,
        cancel: CancellationToken,
    ) -> Result<TaskOutput, TaskError> {
        let task = &self.plan.tasks[self.map[task_idx]];
        tracing::info!(run_id = %self.ctx.run_id, task = %task.id, attempt, "task started");
        let cx = TaskCx {
            run: &self.ctx,
            task,
            cancel,
            attempt,
        };
        // Lineage around every task kind alike: START queued before the first attempt does
        // anything, COMPLETE durable (with the START) before the executor, and so any
        // dependent, sees the task done.
        let audit_error = |e| cx.fail(format!("cannot write to the audit log: {e}"), true);
        if attempt == 1 {
            self.audit.task_started(task).map_err(audit_error)?;
        }
        let output = tasks::run(&cx).await?;
        self.audit
            .task_completed(&self.ctx, task, &output)
            .await
            .map_err(audit_error)?;
        Ok(output)
    }
}

async fn open_storage(project: &Project) -> Result<Storage, Failure> {
    let storage_cfg = &project.config.storage;
    Storage::open(&storage_cfg.root, &storage_cfg.options, &project.dir)
        .await
        .map_err(|e| Failure::usage(format!("{e}")))
}

fn rfc3339(t: SystemTime) -> String {
    chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

async fn run_pipeline(
    dir: &Path,
    pipeline: &str,
    args: &RunArgs,
    resume: Option<&str>,
    json: bool,
) -> Result<Exit, Failure> {
    // Loaded for the storage root and the pipeline's name; the run compiles its own. A new
    // run's overrides are applied already, as a param may need one.
    let options = match resume {
        Some(_) => LoadOptions::for_day(today()),
        None => LoadOptions {
            vars: parse_vars(&args.vars)?,
            ..LoadOptions::for_day(parse_ds(args.ds.as_deref())?)
        },
    };
    let project = load(
        dir,
        &LoadOptions {
            only_pipeline: Some(pipeline.to_string()),
            ..options
        },
    )?;
    let storage = open_storage(&project).await?;
    // Resume takes ds and vars from the run it continues: the same interval, the same inputs.
    let load_previous = |run_id: &str| {
        let storage = storage.clone();
        let run_id = run_id.to_string();
        async move {
            runs::load(&storage, pipeline, &run_id)
                .await
                .map_err(|e| Failure::usage(e.to_string()))?
                .ok_or_else(|| {
                    Failure::usage(format!("no run `{run_id}` of pipeline `{pipeline}`"))
                })
        }
    };
    let (ds, vars) = if let Some(run_id) = resume {
        let state = load_previous(run_id).await?;
        if args.ds.as_deref().is_some_and(|d| d != state.ds) {
            return Err(Failure::usage(format!(
                "run `{run_id}` has ds {}; `--resume` keeps it (drop `--ds`)",
                state.ds
            )));
        }
        (parse_ds(Some(&state.ds))?, state.vars)
    } else {
        (parse_ds(args.ds.as_deref())?, parse_vars(&args.vars)?)
    };

    // An unknown pipeline takes no lock: the run below reports it.
    let mut lock = if project.pipelines.iter().any(|p| p.name == pipeline) {
        Some(schedule::take_run_lock(&storage, pipeline, ds).await?)
    } else {
        None
    };
    // Read again under the lock: the run state another `nightjar run` had until now.
    let previous = match resume {
        Some(run_id) => Some(load_previous(run_id).await?),
        None => None,
    };

    let cancel = CancellationToken::new();
    let signal_cancel = cancel.clone();
    let signal_task = tokio::spawn(async move {
        exec::shutdown_signal().await;
        eprintln!("nightjar: interrupted, cancelling running tasks");
        signal_cancel.cancel();
    });
    let request = RunRequest {
        ds,
        interval: previous.as_ref().and_then(|s| s.data_interval),
        vars,
        run_id: None,
        previous,
    };
    let run = execute_run(dir, pipeline, args, request, cancel.clone(), json, true);
    let result = match &mut lock {
        Some(lock) => lock.hold(&storage, &cancel, run).await,
        None => run.await,
    };
    if let Some(lock) = lock {
        lock.release(&storage).await;
    }
    signal_task.abort();
    result.map(|(exit, _)| exit)
}

/// What one run is for; `previous` is the run state it resumes.
struct RunRequest {
    ds: NaiveDate,
    interval: Option<DataInterval>,
    vars: Vec<(String, String)>,
    /// The id of a new run (default: a fresh one).
    run_id: Option<String>,
    previous: Option<RunState>,
}

/// Runs (or resumes) a pipeline until it ends or `cancel` fires; prints its summary if
/// `print`. Shared by `run`, `schedule` and `backfill`.
async fn execute_run(
    dir: &Path,
    pipeline: &str,
    args: &RunArgs,
    request: RunRequest,
    cancel: CancellationToken,
    json: bool,
    print: bool,
) -> Result<(Exit, RunState), Failure> {
    let RunRequest {
        ds,
        interval,
        vars,
        run_id,
        previous,
    } = request;
    let (project, plan, mask) = compile_for_run(dir, pipeline, args, ds, vars.clone(), interval)?;
    let storage = open_storage(&project).await?;
    let (exec_plan, map) = to_exec_plan(&plan, &mask);
    let fresh_id = run_id.is_none() && previous.is_none();
    let run_id = run_id
        .or_else(|| previous.as_ref().map(|s| s.run_id.clone()))
        .unwrap_or_else(runs::new_run_id);

    let pre_completed: Vec<bool> = map
        .iter()
        .map(|&p| {
            previous.as_ref().is_some_and(|s| {
                s.tasks.iter().any(|t| {
                    t.id == plan.tasks[p].id
                        && matches!(
                            t.status,
                            TaskStateStatus::Succeeded | TaskStateStatus::Skipped
                        )
                })
            })
        })
        .collect();

    let mut state = RunState {
        run_id: run_id.clone(),
        pipeline: pipeline.to_string(),
        ds: ds.to_string(),
        vars: vars.clone(),
        data_interval: interval,
        status: RunStatus::Running,
        started_at: previous
            .as_ref()
            .map_or_else(|| rfc3339(SystemTime::now()), |s| s.started_at.clone()),
        finished_at: None,
        tasks: map
            .iter()
            .map(|&p| {
                let t = &plan.tasks[p];
                let old = previous
                    .as_ref()
                    .and_then(|s| s.tasks.iter().find(|x| x.id == t.id).cloned());
                match old {
                    Some(old)
                        if matches!(
                            old.status,
                            TaskStateStatus::Succeeded | TaskStateStatus::Skipped
                        ) =>
                    {
                        old
                    }
                    _ => TaskState {
                        id: t.id.clone(),
                        kind: t.kind.name().to_string(),
                        status: TaskStateStatus::Pending,
                        attempts: 0,
                        started_at: None,
                        finished_at: None,
                        duration_ms: None,
                        error: None,
                        outputs: vec![],
                        inputs: vec![],
                        checks: vec![],
                    },
                }
            })
            .collect(),
        nightjar_version: env!("CARGO_PKG_VERSION").to_string(),
        audit_head: None,
    };
    runs::save(&storage, &state)
        .await
        .map_err(|e| Failure::usage(format!("cannot write run state: {e}")))?;
    tracing::info!(run_id = %run_id, pipeline, ds = %ds, "run started");

    let engine = Engine::new(
        project.config.engine,
        project.config.limits.clone(),
        &project.dir,
        storage.clone(),
    );
    let ctx = Arc::new(RunContext {
        project_dir: project.dir.clone(),
        project_name: project.config.name.clone(),
        engine,
        tables: Tables::new(storage.clone()),
        pipeline: pipeline.to_string(),
        run_id: run_id.clone(),
        ds,
        features: Arc::new(project.features.clone()),
        checks: Default::default(),
        fresh_id,
    });
    let run_ctx = ctx.clone();
    let plan = Arc::new(plan);
    let audit = Arc::new(audit::start_run_audit(&project, &storage, pipeline, &run_id, ds).await?);
    audit
        .pipeline_event(EventType::Start, None)
        .await
        .map_err(|e| Failure::run_failed(format!("cannot write to the audit log: {e}")))?;
    let runner = Arc::new(Runner {
        ctx,
        plan: plan.clone(),
        map: map.clone(),
        audit: audit.clone(),
    });

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<ExecEvent>();
    let progress = Progress::new(exec_plan.tasks.len(), json || !print);
    let names: Vec<String> = exec_plan.tasks.iter().map(|t| t.name.clone()).collect();
    let state_storage = storage.clone();
    // Run state is persisted by one consumer, in event order, so writes never race.
    let mut consumer_state = state.clone();
    let consumer_ctx = run_ctx.clone();
    let (consumer_audit, consumer_plan, consumer_map) = (audit.clone(), plan.clone(), map.clone());
    let consumer = tokio::spawn(async move {
        while let Some(first) = rx.recv().await {
            // Apply every event already queued, then save once: with hundreds of short tasks,
            // a save per event would rewrite the whole run state O(tasks²) times.
            let mut next = Some(first);
            while let Some(event) = next.take() {
                match &event {
                    ExecEvent::Started { task_idx, attempt } => {
                        if let Some(t) = consumer_state.task_mut(&names[*task_idx]) {
                            t.status = TaskStateStatus::Running;
                            t.attempts = *attempt;
                            t.started_at
                                .get_or_insert_with(|| rfc3339(SystemTime::now()));
                        }
                        progress.started(&names[*task_idx]);
                    }
                    ExecEvent::Retrying {
                        task_idx,
                        attempt,
                        error,
                        delay,
                    } => {
                        tracing::warn!(task = %names[*task_idx], attempt, ?delay, "attempt failed, retrying: {error}");
                    }
                    ExecEvent::Finished {
                        task_idx,
                        status,
                        attempts,
                        error,
                    } => {
                        if let Some(t) = consumer_state.task_mut(&names[*task_idx]) {
                            t.status = (*status).into();
                            t.attempts = (*attempts).max(t.attempts);
                            t.error = error.clone();
                            t.finished_at = Some(rfc3339(SystemTime::now()));
                            t.checks = check_values(&consumer_ctx, &names[*task_idx]);
                        }
                        progress.finished(&names[*task_idx], *status);
                        // FAIL/ABORT here, where every final status arrives, also for timeouts
                        // and panics that never return to the runner.
                        let task = &consumer_plan.tasks[consumer_map[*task_idx]];
                        if let Err(e) = consumer_audit
                            .task_ended(&consumer_ctx, task, *status, *attempts, error.as_deref())
                            .await
                        {
                            tracing::error!(task = %task.id, "cannot write the task's lineage event to the audit log: {e}");
                        }
                    }
                }
                next = rx.try_recv().ok();
            }
            if let Err(e) = runs::save(&state_storage, &consumer_state).await {
                tracing::warn!("cannot update run state: {e}");
            }
        }
        progress.done();
    });

    let report = exec::execute(
        &exec_plan,
        runner,
        ExecOptions {
            max_parallel: project.config.limits.max_parallel_tasks,
            pre_completed,
            events: Some(tx),
            cancel: cancel.clone(),
        },
    )
    .await;
    let _ = consumer.await;
    let report = report.map_err(|e| Failure::run_failed(e.to_string()))?;

    for (i, result) in report.results.iter().enumerate() {
        let t = &mut state.tasks[i];
        if result.status == TaskStatus::Skipped {
            continue;
        }
        t.status = result.status.into();
        t.attempts = result.attempts;
        t.error = result.error.clone();
        t.started_at = result.started_at.map(rfc3339);
        t.finished_at = result.finished_at.map(rfc3339);
        t.duration_ms = Some(result.duration.as_millis() as u64);
        if let Some(out) = &result.output {
            t.outputs = out.written.clone();
            t.inputs = out.read.clone();
        }
        t.checks = check_values(&run_ctx, &t.id);
    }
    let violated = run_ctx
        .checks
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .any(|c| c.violated);
    state.status = if report.cancelled {
        RunStatus::Cancelled
    } else if report.succeeded() {
        RunStatus::Succeeded
    } else {
        RunStatus::Failed
    };
    state.finished_at = Some(rfc3339(SystemTime::now()));
    // The run's own last event, before the run state says how it ended (DESIGN: events are
    // written before the run reports success).
    let (event_type, run_error) = match state.status {
        RunStatus::Succeeded => (EventType::Complete, None),
        RunStatus::Cancelled => (EventType::Abort, Some("run cancelled".to_string())),
        _ => (
            EventType::Fail,
            Some(format!(
                "{} of {} tasks did not succeed",
                state
                    .tasks
                    .iter()
                    .filter(|t| !matches!(
                        t.status,
                        TaskStateStatus::Succeeded | TaskStateStatus::Skipped
                    ))
                    .count(),
                state.tasks.len()
            )),
        ),
    };
    let audit_result = audit.pipeline_event(event_type, run_error.as_deref()).await;
    state.audit_head = audit.close().await;
    if let Err(e) = &audit_result {
        state.status = RunStatus::Failed;
        eprintln!("error: cannot write the run's lineage event to the audit log: {e}");
    }
    runs::save(&storage, &state)
        .await
        .map_err(|e| Failure::run_failed(format!("cannot write run state: {e}")))?;

    let rows: Vec<u64> = report
        .results
        .iter()
        .map(|r| r.output.as_ref().map_or(0, |o| o.rows_written()))
        .collect();
    if print {
        print_run(&state, &rows, json, false);
    }
    let exit = match state.status {
        RunStatus::Succeeded => Exit::Success,
        _ if violated => Exit::Contract,
        _ => Exit::RunFailed,
    };
    if print && exit != Exit::Success {
        for t in state
            .tasks
            .iter()
            .filter(|t| t.status == TaskStateStatus::Failed)
        {
            eprintln!("error: {}", t.error.as_deref().unwrap_or("failed"));
        }
        eprintln!(
            "run {} {}; resume with: nightjar run {} --resume {}",
            state.run_id,
            status_word(state.status),
            state.pipeline,
            state.run_id
        );
    }
    Ok((exit, state))
}

/// A task's contract reports as JSON, for the run state.
fn check_values(ctx: &RunContext, task: &str) -> Vec<serde_json::Value> {
    ctx.checks_of(task)
        .into_iter()
        .filter_map(|c| serde_json::to_value(&c).ok())
        .collect()
}

fn status_word(s: RunStatus) -> &'static str {
    match s {
        RunStatus::Running => "running",
        RunStatus::Succeeded => "succeeded",
        RunStatus::Failed => "failed",
        RunStatus::Cancelled => "was cancelled",
    }
}

fn task_status_word(s: TaskStateStatus) -> &'static str {
    match s {
        TaskStateStatus::Pending => "pending",
        TaskStateStatus::Running => "running",
        TaskStateStatus::Succeeded => "succeeded",
        TaskStateStatus::Failed => "failed",
        TaskStateStatus::UpstreamFailed => "upstream_failed",
        TaskStateStatus::Cancelled => "cancelled",
        TaskStateStatus::Skipped => "skipped",
    }
}

/// The summary table; then each contract check, every rule if `all_checks`, else only the
/// failed and warned ones.
fn print_run(state: &RunState, rows: &[u64], json: bool, all_checks: bool) {
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(state).unwrap_or_default()
        );
        return;
    }
    println!(
        "run {} of `{}` (ds {}): {}",
        state.run_id,
        state.pipeline,
        state.ds,
        status_word(state.status)
    );
    let table: Vec<Vec<String>> = state
        .tasks
        .iter()
        .enumerate()
        .map(|(i, t)| {
            vec![
                t.id.clone(),
                task_status_word(t.status).to_string(),
                t.attempts.to_string(),
                t.duration_ms
                    .map_or("-".into(), |ms| format!("{:.2}s", ms as f64 / 1000.0)),
                rows.get(i).copied().unwrap_or(0).to_string(),
            ]
        })
        .collect();
    print_table(
        &["task", "status", "attempts", "duration", "rows written"],
        &table,
    );
    for t in &state.tasks {
        contract::print_task_checks(&t.id, &t.checks, all_checks);
    }
}

fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let parts: Vec<String> = cells
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        println!("  {}", parts.join("  ").trim_end());
    };
    line(header.iter().map(|s| s.to_string()).collect());
    for row in rows {
        line(row.clone());
    }
}

async fn runs_command(dir: &Path, command: &RunsCommand, json: bool) -> Result<Exit, Failure> {
    let options = LoadOptions::for_day(today());
    let project = load(dir, &options)?;
    let storage = open_storage(&project).await?;
    match command {
        RunsCommand::List { pipeline } => {
            let mut all = runs::list(&storage)
                .await
                .map_err(|e| Failure::usage(e.to_string()))?;
            if let Some(p) = pipeline {
                all.retain(|r| &r.pipeline == p);
            }
            if json {
                let rows: Vec<_> = all.iter().map(|r| serde_json::json!({"run_id": r.run_id, "pipeline": r.pipeline, "ds": r.ds, "status": r.status, "started_at": r.started_at, "finished_at": r.finished_at})).collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(&rows).unwrap_or_default()
                );
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|r| {
                        let done = r
                            .tasks
                            .iter()
                            .filter(|t| {
                                matches!(
                                    t.status,
                                    TaskStateStatus::Succeeded | TaskStateStatus::Skipped
                                )
                            })
                            .count();
                        vec![
                            r.run_id.clone(),
                            r.pipeline.clone(),
                            r.ds.clone(),
                            status_word(r.status).to_string(),
                            format!("{done}/{}", r.tasks.len()),
                        ]
                    })
                    .collect();
                print_table(&["run", "pipeline", "ds", "status", "tasks done"], &rows);
            }
        }
        RunsCommand::Show { run_id } => {
            let state = runs::find(&storage, run_id)
                .await
                .map_err(|e| Failure::usage(e.to_string()))?
                .ok_or_else(|| Failure::usage(format!("no run `{run_id}`")))?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&state).unwrap_or_default()
                );
            } else {
                let rows: Vec<u64> = state
                    .tasks
                    .iter()
                    .map(|t| t.outputs.iter().map(|o| o.rows).sum())
                    .collect();
                print_run(&state, &rows, false, true);
                for t in &state.tasks {
                    for o in &t.outputs {
                        println!(
                            "  {} wrote {} version {} ({} rows)",
                            t.id, o.table, o.version, o.rows
                        );
                    }
                    if let Some(e) = &t.error {
                        println!("  {} error: {e}", t.id);
                    }
                }
            }
        }
    }
    Ok(Exit::Success)
}

/// Progress on stderr: a bar on a terminal, nothing otherwise (logs say the rest).
struct Progress {
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(n: usize, json: bool) -> Progress {
        let show = !json && std::io::stderr().is_terminal();
        let bar = show.then(|| {
            let bar = indicatif::ProgressBar::new(n as u64);
            if let Ok(style) = indicatif::ProgressStyle::with_template(
                "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}",
            ) {
                bar.set_style(style);
            }
            bar.enable_steady_tick(std::time::Duration::from_millis(120));
            bar
        });
        Progress { bar }
    }
    fn started(&self, task: &str) {
        if let Some(b) = &self.bar {
            b.set_message(format!("running {task}"));
        }
    }
    fn finished(&self, task: &str, status: TaskStatus) {
        if let Some(b) = &self.bar {
            b.inc(1);
            b.set_message(format!("{task}: {status:?}"));
        }
    }
    fn done(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
