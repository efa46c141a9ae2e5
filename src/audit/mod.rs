//! The audit trail of runs: OpenLineage events for every task, appended to the hash-chained
//! log in `stores::audit`, optionally forwarded over HTTP, and read back for lineage queries.
//!
//! - `event`: RunEvents from a task's declared and reported datasets (pure).
//! - `forward`: the optional OpenLineage HTTP transport.
//! - `lineage`: the dataset graph built from the events, and its renderings (pure).
//! - this file: [`RunAudit`], the one hook around task execution.
//!
//! Why one generic hook: the events are built from what every task already has, its declared
//! inputs and outputs (`PlannedTask`), what it reports (`TaskOutput`: tables written and read
//! with their versions, files exported), its contract checks (`RunContext::checks`) and its
//! query if it runs one (`TaskKind::query`). A new task kind gets START/COMPLETE/FAIL events
//! without audit code of its own.
//!
//! When events are written (the invariant "every published artefact has a lineage event,
//! written before the run reports success"): START is queued before the task's first attempt
//! runs, COMPLETE is durable before the task is reported done (so before any dependent
//! starts), FAIL/ABORT when the executor reports the task's final status, and the pipeline's
//! own COMPLETE/FAIL before the run state says how the run ended. One writer group-commits:
//! whatever is queued becomes one segment. Every object created costs (ext4 inode allocation
//! was ~29% of a 500-task run's profile), so a START lingers up to 200 ms for company and the
//! chain head is recorded outside the chain once per run, not per segment.

pub mod columns;
pub mod event;
pub mod forward;
pub mod lineage;

use std::path::Path;

use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use crate::exec::TaskStatus;
use crate::plan::PlannedTask;
use crate::stores::audit::{AuditLog, ChainHead};
use crate::stores::object::normalize_url;
use crate::stores::tables::Tables;
use crate::stores::{Storage, StoreError};
use crate::tasks::{RunContext, TaskOutput};
use event::{CheckFacts, DatasetFacts, EventType, JobInfo, RunInfo};
pub use forward::{Endpoint, Forwarder};

/// What the writer is asked to do.
enum Msg {
    /// Append events; tell the sender when they are durable.
    Append {
        events: Vec<Value>,
        done: oneshot::Sender<Result<ChainHead, String>>,
    },
    /// Finish forwarding and stop; reply with the newest head written.
    Close(oneshot::Sender<Option<ChainHead>>),
}

/// The audit side of one pipeline run.
pub struct RunAudit {
    info: RunInfo,
    tables: Tables,
    project_dir: std::path::PathBuf,
    tx: mpsc::UnboundedSender<Msg>,
}

impl RunAudit {
    /// Starts the writer for a run of `pipeline`. `witness` also receives every head.
    pub fn start(
        storage: Storage,
        witness: Option<Storage>,
        info: RunInfo,
        project_dir: &Path,
        forward: Option<Endpoint>,
    ) -> RunAudit {
        let tables = Tables::new(storage.clone());
        let (tx, rx) = mpsc::unbounded_channel();
        let forwarder = forward.map(Forwarder::start);
        tokio::spawn(write_loop(AuditLog::new(storage, witness), rx, forwarder));
        RunAudit {
            info,
            tables,
            project_dir: project_dir.to_path_buf(),
            tx,
        }
    }

    /// Run facts shared by every event of a run, from the project and storage.
    pub fn run_info(
        project: &str,
        pipeline: &str,
        run_id: &str,
        ds: chrono::NaiveDate,
        storage: &Storage,
        project_dir: &Path,
    ) -> RunInfo {
        let project_url = url::Url::from_directory_path(project_dir)
            .map(|u| u.to_string())
            .unwrap_or_else(|_| "file:///".into());
        RunInfo {
            project: project.to_string(),
            pipeline: pipeline.to_string(),
            run_id: run_id.to_string(),
            ds,
            namespace: event::public_url(&storage.root.url),
            project_url,
        }
    }

    /// Queues events without waiting. Safe because the writer fails every append after its
    /// first failure: a lost event always surfaces as the failure of a later, awaited append
    /// (a task's COMPLETE or FAIL, or the run's own last event).
    fn enqueue(&self, events: Vec<Value>) -> Result<(), StoreError> {
        let (done, _) = oneshot::channel();
        self.tx
            .send(Msg::Append { events, done })
            .map_err(|_| StoreError::Other("the audit writer has stopped".into()))
    }

    /// Appends events and waits until they are in the log.
    async fn append(&self, events: Vec<Value>) -> Result<ChainHead, StoreError> {
        let (done, wait) = oneshot::channel();
        self.tx
            .send(Msg::Append { events, done })
            .map_err(|_| StoreError::Other("the audit writer has stopped".into()))?;
        match wait.await {
            Ok(Ok(head)) => Ok(head),
            Ok(Err(message)) => Err(StoreError::Other(message)),
            Err(_) => Err(StoreError::Other("the audit writer has stopped".into())),
        }
    }

    fn job(&self, task: &PlannedTask) -> JobInfo {
        JobInfo {
            task: Some(task.id.clone()),
            kind: task.kind.name().to_string(),
            location: task.location.clone(),
            sql: task.kind.query().map(str::to_string),
        }
    }

    fn event(
        &self,
        job: &JobInfo,
        event_type: EventType,
        inputs: &[DatasetFacts],
        outputs: &[DatasetFacts],
        error: Option<&str>,
    ) -> Value {
        event::run_event(
            &self.info,
            job,
            event_type,
            chrono::Utc::now(),
            inputs,
            outputs,
            error,
        )
    }

    /// The pipeline run's own START, COMPLETE or FAIL (the tasks' `parent`).
    pub async fn pipeline_event(
        &self,
        event_type: EventType,
        error: Option<&str>,
    ) -> Result<ChainHead, StoreError> {
        let job = JobInfo {
            task: None,
            kind: "pipeline".into(),
            location: String::new(),
            sql: None,
        };
        let event = self.event(&job, event_type, &[], &[], error);
        self.append(vec![event]).await
    }

    /// START: the task's declared datasets. Queued, not awaited: the task's COMPLETE or FAIL
    /// follows it through the same writer and is awaited.
    pub fn task_started(&self, task: &PlannedTask) -> Result<(), StoreError> {
        let inputs = named(&task.inputs);
        let outputs = named(&task.outputs);
        let event = self.event(&self.job(task), EventType::Start, &inputs, &outputs, None);
        self.enqueue(vec![event])
    }

    /// COMPLETE: what the task read and published, with versions, statistics, schemas and
    /// contract results.
    pub async fn task_completed(
        &self,
        run: &RunContext,
        task: &PlannedTask,
        output: &TaskOutput,
    ) -> Result<(), StoreError> {
        let mut inputs = named(&task.inputs);
        for (table, version) in &output.read {
            facts_mut(&mut inputs, table).version = Some(*version);
        }
        for source in &output.sources {
            let mut d = self.file_dataset(&source.url);
            d.size_bytes = Some(source.size);
            d.files = Some(1);
            d.etag = source.etag.clone();
            d.last_modified = Some(source.last_modified.clone());
            inputs.push(d);
        }
        let mut outputs = named(&task.outputs);
        for written in &output.written {
            let facts = match &written.facts {
                Some(facts) => facts.clone(),
                // A version an earlier attempt published: read its facts back.
                None => {
                    self.tables
                        .describe(&written.table, written.version)
                        .await?
                }
            };
            let d = facts_mut(&mut outputs, &written.table);
            d.version = Some(written.version);
            d.rows = Some(written.rows);
            d.reused = written.reused;
            d.size_bytes = Some(facts.size_bytes);
            d.files = Some(facts.files);
            d.fields = facts.columns;
            d.fingerprint = Some(facts.fingerprint);
        }
        if let (Some(lineage), [written]) = (&output.column_lineage, output.written.as_slice()) {
            // Input tables as the events name them: a feature view by its version.
            let stored: std::collections::BTreeMap<&str, &str> = output
                .read
                .iter()
                .filter_map(|(name, _)| Some((name.split_once('@')?.0, name.as_str())))
                .collect();
            let mut lineage = lineage.clone();
            let rename = |s: &mut columns::Source| {
                if let Some(name) = stored.get(s.table.as_str()) {
                    s.table = name.to_string();
                }
            };
            lineage.fields = lineage
                .fields
                .into_iter()
                .map(|(k, v)| {
                    (
                        k,
                        v.into_iter()
                            .map(|mut s| {
                                rename(&mut s);
                                s
                            })
                            .collect(),
                    )
                })
                .collect();
            lineage.dataset = lineage
                .dataset
                .into_iter()
                .map(|mut s| {
                    rename(&mut s);
                    s
                })
                .collect();
            facts_mut(&mut outputs, &written.table).column_lineage = Some(lineage);
        }
        for exported in &output.exported {
            let mut d = self.file_dataset(&exported.target);
            d.rows = Some(exported.rows);
            outputs.push(d);
        }
        for used in &output.models {
            let d = model_dataset(used);
            if used.registered {
                outputs.push(d);
            } else {
                inputs.push(d);
            }
        }
        attach_checks(run, task, &mut inputs, &mut outputs);
        let event = self.event(
            &self.job(task),
            EventType::Complete,
            &inputs,
            &outputs,
            None,
        );
        self.append(vec![event]).await.map(|_| ())
    }

    /// FAIL or ABORT for a task that started and did not succeed; nothing otherwise.
    pub async fn task_ended(
        &self,
        run: &RunContext,
        task: &PlannedTask,
        status: TaskStatus,
        attempts: u32,
        error: Option<&str>,
    ) -> Result<(), StoreError> {
        let event_type = match status {
            TaskStatus::Failed => EventType::Fail,
            TaskStatus::Cancelled if attempts > 0 => EventType::Abort,
            _ => return Ok(()),
        };
        let mut inputs = named(&task.inputs);
        let mut outputs = named(&task.outputs);
        attach_checks(run, task, &mut inputs, &mut outputs);
        let event = self.event(&self.job(task), event_type, &inputs, &outputs, error);
        self.append(vec![event]).await.map(|_| ())
    }

    /// A file written outside the tables (an export target), named the OpenLineage way:
    /// namespace `scheme://authority`, name the path.
    fn file_dataset(&self, target: &str) -> DatasetFacts {
        // Full URLs (an ingest's sources) as they are; paths relative to the project.
        let parsed = url::Url::parse(target)
            .ok()
            .filter(|u| u.scheme().len() > 1)
            .map_or_else(|| normalize_url(target, &self.project_dir), Ok);
        match parsed {
            Ok(url) => {
                let mut base = url.clone();
                base.set_path("");
                DatasetFacts {
                    namespace: Some(event::public_url(&base)),
                    name: url.path().to_string(),
                    ..Default::default()
                }
            }
            Err(_) => DatasetFacts {
                namespace: Some("file".into()),
                name: target.to_string(),
                ..Default::default()
            },
        }
    }

    /// Waits for every queued event (and forward); returns the newest head this run wrote.
    /// Later appends fail: the run is over.
    pub async fn close(&self) -> Option<ChainHead> {
        let (reply, wait) = oneshot::channel();
        if self.tx.send(Msg::Close(reply)).is_err() {
            return None;
        }
        wait.await.ok().flatten()
    }
}

/// A model version read or registered by a task, as a dataset `name@version`.
fn model_dataset(used: &crate::tasks::ModelUse) -> DatasetFacts {
    let mut model = serde_json::json!({"name": used.model, "version": used.version});
    if let Some(reference) = &used.reference {
        model["reference"] = reference.as_str().into();
    }
    if let Some(sha) = &used.metadata_sha256 {
        model["metadataSha256"] = sha.as_str().into();
    }
    if !used.promoted_to.is_empty() {
        model["promotedTo"] = serde_json::json!(used.promoted_to);
    }
    DatasetFacts {
        name: crate::stores::registry::dataset_name(&used.model, used.version),
        model: Some(model),
        ..Default::default()
    }
}

fn named(tables: &[String]) -> Vec<DatasetFacts> {
    tables
        .iter()
        .map(|name| DatasetFacts {
            name: name.clone(),
            ..Default::default()
        })
        .collect()
}

/// The facts of `name` in `list`, added if missing (a task may report more than it declared).
fn facts_mut<'a>(list: &'a mut Vec<DatasetFacts>, name: &str) -> &'a mut DatasetFacts {
    // A feature view is declared as `features.<view>` and reported as the version it wrote or
    // read, `features.<view>@<version>`: the versioned name replaces the declared one.
    if let Some((declared, _)) = name.split_once('@')
        && let Some(d) = list
            .iter_mut()
            .find(|d| d.namespace.is_none() && d.name == declared)
    {
        d.name = name.to_string();
    }
    let idx = match list
        .iter()
        .position(|d| d.namespace.is_none() && d.name == name)
    {
        Some(idx) => idx,
        None => {
            list.push(DatasetFacts {
                name: name.to_string(),
                ..Default::default()
            });
            list.len() - 1
        }
    };
    &mut list[idx]
}

/// Each contract check of the task goes to the dataset it checked: an output if the task
/// writes it (the gate), else an input (a `contract` task).
fn attach_checks(
    run: &RunContext,
    task: &PlannedTask,
    inputs: &mut Vec<DatasetFacts>,
    outputs: &mut Vec<DatasetFacts>,
) {
    for check in run.checks_of(&task.id) {
        let facts = CheckFacts {
            contract_path: task.contract.as_ref().map(|c| c.path.clone()),
            report: check.report,
            violated: check.violated,
        };
        let table = facts.report.table.clone();
        let list = if task.outputs.contains(&table) {
            &mut *outputs
        } else {
            &mut *inputs
        };
        facts_mut(list, &table).checks.push(facts);
    }
}

/// How long a queued START may wait for company before it is written on its own: short
/// tasks' START and COMPLETE then share one segment (one object instead of two), while a
/// long task's START still shows up at once.
const LINGER: std::time::Duration = std::time::Duration::from_millis(200);

/// The writer: group commit. Awaited events are written with everything queued so far, as
/// one segment; queued-only events (START) wait at most [`LINGER`] for such company.
async fn write_loop(
    mut log: AuditLog,
    mut rx: mpsc::UnboundedReceiver<Msg>,
    forwarder: Option<Forwarder>,
) {
    let mut last: Option<ChainHead> = None;
    let mut close = None;
    // After a failed append every later one fails too, so no event can go missing between
    // two that made it (see `RunAudit::enqueue`).
    let mut broken: Option<String> = None;
    let mut events: Vec<Value> = Vec::new();
    let mut waiting: Vec<oneshot::Sender<Result<ChainHead, String>>> = Vec::new();
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        let msg = match deadline {
            _ if close.is_some() => None,
            Some(at) => match tokio::time::timeout_at(at, rx.recv()).await {
                Ok(msg) => msg,
                Err(_) => None,
            },
            None => rx.recv().await,
        };
        let mut flush = msg.is_none();
        let mut next = msg;
        while let Some(msg) = next.take() {
            match msg {
                Msg::Append { events: e, done } => {
                    events.extend(e);
                    if done.is_closed() {
                        // Nobody waits: linger for company.
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + LINGER);
                    } else {
                        waiting.push(done);
                        flush = true;
                    }
                }
                // Events queued before the close are still written.
                Msg::Close(reply) => {
                    close = Some(reply);
                    flush = true;
                }
            }
            next = rx.try_recv().ok();
        }
        if flush && !events.is_empty() {
            let batch = std::mem::take(&mut events);
            let result = match &broken {
                Some(first) => Err(format!("an earlier audit append failed: {first}")),
                None => log.append(batch.clone()).await.map_err(|e| e.to_string()),
            };
            match &result {
                Ok(head) => {
                    last = Some(head.clone());
                    if let Some(f) = &forwarder {
                        for event in batch {
                            f.send(event);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!("cannot append to the audit log: {e}");
                    broken.get_or_insert_with(|| e.clone());
                }
            }
            for done in waiting.drain(..) {
                let _ = done.send(result.clone());
            }
            deadline = None;
        }
        if close.is_some() || (flush && deadline.is_none() && rx.is_closed()) {
            break;
        }
    }
    // The head outside the chain: once per run, at its end (run states and the witness
    // carry it too).
    if let Some(head) = &last
        && broken.is_none()
        && let Err(e) = log.record_head(head).await
    {
        tracing::error!("cannot record the audit chain head: {e}");
        last = None;
    }
    if let Some(f) = forwarder {
        let stats = f.finish().await;
        tracing::info!(
            sent = stats.sent,
            failed = stats.failed,
            "OpenLineage events forwarded"
        );
    }
    if let Some(reply) = close {
        let _ = reply.send(last);
    }
}
