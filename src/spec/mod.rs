//! The project files exactly as written: `nightjar.yaml` and `pipelines/*.yaml` as typed serde
//! structs, with the source text and the position of every node kept for diagnostics.
//!
//! API boundary: this module reads project files and nothing else (no object store, no
//! DataFusion session). Every problem of every file is collected into one `Vec<Diagnostic>`.

pub mod template;
pub mod units;
pub mod yaml;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::diag::{Diagnostic, did_you_mean};
use crate::tasks::TaskKind;
use template::{ParamValue, TemplateVars};
use units::{ByteSize, DurationSpec};
use yaml::{Node, NodeKind, Pos, YamlError};

/// The file format version this build reads.
pub const FORMAT_VERSION: u32 = 1;
pub const PROJECT_FILE: &str = "nightjar.yaml";

/// `nightjar.yaml`: the project's name, storage, engine and limits.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// Format version of this file. Unknown keys are errors within a version.
    pub version: u32,
    /// Project name; the lineage namespace.
    pub name: String,
    /// What this project is for.
    #[serde(default)]
    pub description: Option<String>,
    /// Where tables, run state, the registry and the audit log live.
    #[serde(default)]
    pub storage: StorageConfig,
    /// The SQL engine: `local` (DataFusion in this process).
    #[serde(default)]
    pub engine: EngineKind,
    /// Memory, spilling and parallelism.
    #[serde(default)]
    pub limits: Limits,
    /// Defaults for every task of every pipeline.
    #[serde(default)]
    pub defaults: TaskDefaults,
    /// The audit log (`audit/` under the storage root).
    #[serde(default)]
    pub audit: AuditConfig,
}

#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AuditConfig {
    /// A second place that receives every audit chain head (sequence and hash), outside the
    /// storage root, so `nightjar audit verify` can tell when the newest segments were deleted:
    /// a directory path or object-store URL that only the audit writer may write to, e.g.
    /// `s3://audit-witness/nightjar_demo`. Relative paths are relative to the project.
    #[serde(default)]
    pub witness: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StorageConfig {
    /// Storage root URL: `file://./warehouse` (relative to the project), `file:///abs/path`,
    /// `s3://bucket/prefix`, `gs://bucket/prefix`, `az://container/prefix`, `memory://name`.
    #[serde(default = "default_root")]
    pub root: String,
    /// Object-store options (e.g. `endpoint`, `region`, `allow_http`). Secrets must be given as
    /// `{ env: VAR_NAME }`: a literal value for a secret key is an error. Credentials are
    /// otherwise read from the standard environment variables (`AWS_ACCESS_KEY_ID`, …).
    #[serde(default)]
    pub options: BTreeMap<String, OptionValue>,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            root: default_root(),
            options: BTreeMap::new(),
        }
    }
}

fn default_root() -> String {
    "file://./warehouse".into()
}

/// An option value: a literal, or the name of an environment variable that holds it.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum OptionValue {
    Literal(String),
    Env {
        /// Name of the environment variable.
        env: String,
    },
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum EngineKind {
    /// DataFusion in this process.
    #[default]
    Local,
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Memory DataFusion may use for sorts, joins and aggregations before spilling to disk,
    /// shared by all the tasks running at once.
    #[serde(default = "default_memory")]
    pub memory: ByteSize,
    /// Directory for spill files (default: the system temp directory).
    #[serde(default)]
    pub spill_dir: Option<String>,
    /// Tasks that may run at once.
    #[serde(default = "default_parallel")]
    pub max_parallel_tasks: usize,
    /// DataFusion partitions per query (default: the number of cores).
    #[serde(default)]
    pub target_partitions: Option<usize>,
    /// Rows per Arrow batch (default 8192).
    #[serde(default)]
    pub batch_size: Option<usize>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            memory: default_memory(),
            spill_dir: None,
            max_parallel_tasks: default_parallel(),
            target_partitions: None,
            batch_size: None,
        }
    }
}

fn default_memory() -> ByteSize {
    ByteSize(2 << 30)
}
fn default_parallel() -> usize {
    2
}

/// Retry and timeout defaults; a task's own fields override them.
#[derive(Debug, Clone, Default, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskDefaults {
    /// Retries after a failed attempt (default 0).
    #[serde(default)]
    pub retries: Option<u32>,
    /// First backoff delay; it doubles with each retry (default `5s`).
    #[serde(default)]
    pub retry_delay: Option<DurationSpec>,
    /// Largest backoff delay (default `5m`).
    #[serde(default)]
    pub max_retry_delay: Option<DurationSpec>,
    /// Time limit of one attempt (default `1h`).
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
}

/// The top of a pipeline file, everything but its tasks.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PipelineHeader {
    /// Format version of this file.
    pub version: u32,
    /// Pipeline name; defaults to the file name without `.yaml`, and must equal it if given.
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// When `nightjar schedule` runs this pipeline: a 5-field crontab expression
    /// (`30 2 * * *`), the 6/7-field form with seconds (and years), or `@hourly`, `@daily`,
    /// `@weekly`, `@monthly`, `@yearly`. Each run covers the interval from one fire time to
    /// the next and starts at its end; `{{ ds }}` is the interval's start date.
    #[serde(default)]
    pub schedule: Option<String>,
    /// IANA timezone the schedule is read in, e.g. `Europe/Berlin` (default `UTC`). Fire times
    /// are wall-clock times: across a DST change each fires once, a skipped one when the
    /// clocks jump forward, a repeated one at its first occurrence.
    #[serde(default)]
    pub timezone: Option<String>,
    /// After downtime: `false` (default) runs only the latest missed interval; `true` runs
    /// every missed interval, oldest first, at most `max_catchup` of them.
    #[serde(default)]
    pub catchup: bool,
    /// With `catchup: true`, the most missed intervals run after downtime (the newest ones,
    /// oldest first); older ones are left to `nightjar backfill`. Default 30.
    #[serde(default)]
    pub max_catchup: Option<u32>,
    /// Params with their defaults; templates name them `{{ params.NAME }}`, `--var NAME=VALUE`
    /// overrides them.
    #[serde(default)]
    pub params: BTreeMap<String, ParamValue>,
    /// Retry and timeout defaults for this pipeline's tasks.
    #[serde(default)]
    pub defaults: TaskDefaults,
    /// The tasks (see `Task`).
    #[serde(default, skip_serializing)]
    #[schemars(with = "Vec<serde_json::Value>")]
    pub tasks: serde::de::IgnoredAny,
}

/// The fields every task has, whatever its kind.
#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TaskCommon {
    /// Task id, unique in the pipeline: lowercase letters, digits and `_`.
    pub id: String,
    /// The task kind.
    pub kind: String,
    #[serde(default)]
    pub description: Option<String>,
    /// Tasks that must succeed first (besides those inferred from the tables a task reads).
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Retries after a failed attempt.
    #[serde(default)]
    pub retries: Option<u32>,
    /// First backoff delay; doubles with each retry.
    #[serde(default)]
    pub retry_delay: Option<DurationSpec>,
    /// Time limit of one attempt.
    #[serde(default)]
    pub timeout: Option<DurationSpec>,
    /// A data contract (ODCS file under `contracts/`) that gates every table this task writes:
    /// the new version is checked before it is published.
    #[serde(default)]
    pub contract: Option<ContractRef>,
}

pub const COMMON_KEYS: &[&str] = &[
    "id",
    "kind",
    "description",
    "depends_on",
    "retries",
    "retry_delay",
    "timeout",
    "contract",
];

/// `contract:` on a task: a path, or a mapping with the violation policy.
#[derive(Debug, Clone, Serialize, schemars::JsonSchema)]
#[serde(untagged)]
pub enum ContractRef {
    /// `contract: contracts/orders.yaml` (blocking violations fail the task).
    Path(String),
    Use(ContractUse),
}

#[derive(Debug, Clone, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ContractUse {
    /// The contract file, relative to the project (e.g. `contracts/raw.yaml`).
    pub path: String,
    /// `fail` (default): a blocking violation fails the task and publishes nothing.
    /// `quarantine`: rows failing a row-level rule go to `<zone>.<name>__quarantine` with the
    /// rule id and run id, the other rows are published.
    #[serde(default)]
    pub on_violation: OnViolation,
    /// With `quarantine`: the most rows that may be quarantined, as `"1%"` of the rows or a
    /// row count; more fails the task. Default: `1%`.
    #[serde(default)]
    pub max_quarantined: Option<String>,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum OnViolation {
    #[default]
    Fail,
    Quarantine,
}

impl ContractRef {
    pub fn path(&self) -> &str {
        match self {
            ContractRef::Path(p) => p,
            ContractRef::Use(u) => &u.path,
        }
    }

    pub fn on_violation(&self) -> OnViolation {
        match self {
            ContractRef::Path(_) => OnViolation::Fail,
            ContractRef::Use(u) => u.on_violation,
        }
    }

    pub fn max_quarantined(&self) -> Option<&str> {
        match self {
            ContractRef::Path(_) => None,
            ContractRef::Use(u) => u.max_quarantined.as_deref(),
        }
    }
}

/// A string is a path; a mapping is a [`ContractUse`]. Written by hand (not `untagged`) so
/// that an error inside the mapping keeps its line and column.
impl<'de> Deserialize<'de> for ContractRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = ContractRef;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a contract file path or a mapping with `path`")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<ContractRef, E> {
                Ok(ContractRef::Path(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<ContractRef, A::Error> {
                ContractUse::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(ContractRef::Use)
            }
        }
        d.deserialize_any(V)
    }
}

/// `max_quarantined`: `"2.5%"` of the rows, or a row count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum QuarantineLimit {
    Percent(f64),
    Rows(u64),
}

impl QuarantineLimit {
    pub const DEFAULT: QuarantineLimit = QuarantineLimit::Percent(1.0);

    pub fn parse(text: &str) -> Option<QuarantineLimit> {
        let t = text.trim();
        match t.strip_suffix('%') {
            Some(p) => p
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .map(QuarantineLimit::Percent),
            None => t.parse::<u64>().ok().map(QuarantineLimit::Rows),
        }
    }

    pub fn allows(self, quarantined: u64, rows: u64) -> bool {
        match self {
            QuarantineLimit::Percent(p) => {
                rows == 0 || (quarantined as f64) * 100.0 <= p * rows as f64
            }
            QuarantineLimit::Rows(n) => quarantined <= n,
        }
    }

    pub fn describe(self) -> String {
        match self {
            QuarantineLimit::Percent(p) => format!("<= {p}%"),
            QuarantineLimit::Rows(n) => format!("<= {n} rows"),
        }
    }
}

/// A contract file of the project, parsed.
#[derive(Debug, Clone)]
pub struct LoadedContract {
    pub file: SourceFile,
    pub contract: std::sync::Arc<crate::contracts::Contract>,
}

/// One source file of the project, with the path users see in messages.
#[derive(Debug, Clone)]
pub struct SourceFile {
    /// Relative to the project directory.
    pub path: PathBuf,
    pub text: String,
}

impl SourceFile {
    pub fn diag(&self, pos: Pos, message: impl Into<String>) -> Diagnostic {
        Diagnostic::new(&self.path, pos, message).with_source(&self.text)
    }

    pub(crate) fn yaml_diag(&self, err: YamlError, fallback: Pos) -> Diagnostic {
        self.yaml_diag_with(err, fallback, &[])
    }

    /// Like `yaml_diag`, with more candidate names for a "did you mean" hint.
    fn yaml_diag_with(&self, err: YamlError, fallback: Pos, extra: &[&str]) -> Diagnostic {
        let mut d = self.diag(err.pos.unwrap_or(fallback), err.message.clone());
        if let Some(field) = err
            .message
            .strip_prefix("unknown field `")
            .and_then(|s| s.split('`').next())
            && let Some(list) = err.message.split("expected one of ").nth(1)
        {
            let candidates: Vec<&str> = list
                .split(", ")
                .map(|s| s.trim_matches('`'))
                .chain(extra.iter().copied())
                .collect();
            if let Some(s) = did_you_mean(field, candidates) {
                d = d.with_hint(format!("did you mean `{s}`?"));
            }
        }
        d
    }
}

/// A task as written: its common fields, its kind's config, and positions for diagnostics.
#[derive(Debug, Clone)]
pub struct TaskSpec {
    pub common: TaskCommon,
    pub kind: TaskKind,
    /// The task's mapping node (positions of any field, e.g. `sql`).
    pub node: Node,
    pub id_pos: Pos,
    pub depends_on_pos: Vec<Pos>,
}

impl TaskSpec {
    /// Position of a field of this task, or of the task itself.
    pub fn pos_of(&self, key: &str) -> Pos {
        self.node
            .entry(key)
            .map(|(_, v)| v.pos)
            .unwrap_or(self.node.pos)
    }
}

#[derive(Debug, Clone)]
pub struct PipelineSpec {
    pub name: String,
    pub file: SourceFile,
    pub header: PipelineHeader,
    pub tasks: Vec<TaskSpec>,
    /// The params after `--var` overrides, as the templates saw them.
    pub vars: TemplateVars,
}

#[derive(Debug, Clone)]
pub struct Project {
    /// Absolute project directory.
    pub dir: PathBuf,
    pub config: ProjectConfig,
    pub config_file: SourceFile,
    pub pipelines: Vec<PipelineSpec>,
    /// `contracts/*.yaml`, by file name order.
    pub contracts: Vec<LoadedContract>,
    /// `features/*.yaml`, by name.
    pub features: crate::features::Views,
}

impl Project {
    pub fn pipeline(&self, name: &str) -> Option<&PipelineSpec> {
        self.pipelines.iter().find(|p| p.name == name)
    }

    /// A contract by its path relative to the project (`contracts/raw.yaml`).
    pub fn contract(&self, path: &str) -> Option<&LoadedContract> {
        let wanted = Path::new(path.trim_start_matches("./"));
        self.contracts.iter().find(|c| c.file.path == wanted)
    }
}

/// What the caller knows about the run the project is loaded for.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// The run's logical date (`{{ ds }}`); `validate` uses today.
    pub ds: chrono::NaiveDate,
    /// `--var NAME=VALUE` overrides, applied to `only_pipeline` (or every pipeline declaring NAME).
    pub vars: Vec<(String, String)>,
    /// Apply `vars` only to this pipeline.
    pub only_pipeline: Option<String>,
    /// The run's logical interval from a schedule; `None`: the UTC day of `ds`.
    pub interval: Option<template::DataInterval>,
}

impl LoadOptions {
    /// Every pipeline for the day `ds`, no overrides: what commands that run nothing load.
    pub fn for_day(ds: chrono::NaiveDate) -> LoadOptions {
        LoadOptions {
            ds,
            vars: vec![],
            only_pipeline: None,
            interval: None,
        }
    }
}

/// Reads and checks every project file; returns every problem found, not just the first.
pub fn load_project(dir: &Path, options: &LoadOptions) -> Result<Project, Vec<Diagnostic>> {
    let mut diags = Vec::new();
    let dir = dir.canonicalize().map_err(|e| {
        vec![Diagnostic::new(
            dir,
            Pos::default(),
            format!("cannot open project directory `{}`: {e}", dir.display()),
        )]
    })?;

    let config_path = dir.join(PROJECT_FILE);
    let config_text = crate::diag::read_source(&config_path).map_err(|e| {
        vec![
            Diagnostic::new(
                Path::new(PROJECT_FILE),
                Pos::default(),
                format!("cannot read `{PROJECT_FILE}` in `{}`: {e}", dir.display()),
            )
            .with_hint("run nightjar in a project directory, or pass its path"),
        ]
    })?;
    let config_file = SourceFile {
        path: PathBuf::from(PROJECT_FILE),
        text: config_text,
    };
    let config = load_config(&config_file, &mut diags);

    let mut pipelines: Vec<PipelineSpec> = Vec::new();
    for file in read_yaml_files(&dir, "pipelines", &mut diags) {
        if let Some(p) = load_pipeline(&dir, file, options, &mut diags) {
            pipelines.push(p);
        }
    }

    let mut contracts = Vec::new();
    // Files that exist but do not parse: their own errors are reported, and a task naming one
    // is not also told the file does not exist.
    let mut invalid_contracts = Vec::new();
    for file in read_yaml_files(&dir, "contracts", &mut diags) {
        match crate::contracts::parse_contract(&file.path, &file.text) {
            Ok(contract) => contracts.push(LoadedContract {
                file,
                contract: std::sync::Arc::new(contract),
            }),
            Err(found) => {
                diags.extend(found);
                invalid_contracts.push(file.path);
            }
        }
    }
    let features = crate::features::load_views(&dir, &mut diags);
    crate::features::load::bind_tasks(&mut pipelines, &features, &mut diags);
    for pipeline in &pipelines {
        for task in &pipeline.tasks {
            check_contract_binding(
                &pipeline.file,
                task,
                &contracts,
                &invalid_contracts,
                &mut diags,
            );
        }
    }

    for (name, _) in &options.vars {
        let declared = pipelines
            .iter()
            .filter(|p| {
                options
                    .only_pipeline
                    .as_deref()
                    .is_none_or(|only| only == p.name)
            })
            .any(|p| p.header.params.contains_key(name));
        if !declared {
            diags.push(
                Diagnostic::new(
                    Path::new("--var"),
                    Pos::default(),
                    format!("`--var {name}=…` names no declared param"),
                )
                .with_hint("declare it under `params:` in the pipeline file"),
            );
        }
    }

    match config {
        Some(config) if diags.is_empty() => Ok(Project {
            dir,
            config,
            config_file,
            pipelines,
            contracts,
            features,
        }),
        _ => Err(diags),
    }
}

/// Every `*.yaml`/`*.yml` file directly in `dir/sub`, sorted, paths relative to `dir`.
pub(crate) fn read_yaml_files(
    dir: &Path,
    sub: &str,
    diags: &mut Vec<Diagnostic>,
) -> Vec<SourceFile> {
    let mut paths = Vec::new();
    match std::fs::read_dir(dir.join(sub)) {
        Ok(entries) => {
            for entry in entries.flatten() {
                let path = entry.path();
                if matches!(
                    path.extension().and_then(|e| e.to_str()),
                    Some("yaml" | "yml")
                ) {
                    paths.push(path);
                }
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => diags.push(Diagnostic::new(
            Path::new(sub),
            Pos::default(),
            format!("cannot list `{sub}/`: {e}"),
        )),
    }
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let rel = path.strip_prefix(dir).unwrap_or(&path).to_path_buf();
        match crate::diag::read_source(&path) {
            Ok(text) => files.push(SourceFile { path: rel, text }),
            Err(e) => diags.push(Diagnostic::new(
                &rel,
                Pos::default(),
                format!("cannot read `{}`: {e}", rel.display()),
            )),
        }
    }
    files
}

/// `contract:` names a contract file of the project, the task writes tables, and every table
/// it writes matches one object of the contract (by `physicalName` `zone.name`, by `name`, or
/// the contract's only object).
fn check_contract_binding(
    file: &SourceFile,
    task: &TaskSpec,
    contracts: &[LoadedContract],
    invalid_contracts: &[PathBuf],
    diags: &mut Vec<Diagnostic>,
) {
    let Some(reference) = &task.common.contract else {
        return;
    };
    let pos = task.pos_of("contract");
    if let Some(limit) = reference.max_quarantined() {
        let limit_pos = task
            .node
            .get("contract")
            .and_then(|c| c.get("max_quarantined"))
            .map_or(pos, |n| n.pos);
        if QuarantineLimit::parse(limit).is_none() {
            diags.push(
                file.diag(
                    limit_pos,
                    format!("`max_quarantined: {limit}` is neither a percentage nor a row count"),
                )
                .with_hint("write e.g. `1%` or `500`"),
            );
        } else if reference.on_violation() != OnViolation::Quarantine {
            diags.push(file.diag(
                limit_pos,
                "`max_quarantined` needs `on_violation: quarantine`",
            ));
        }
    }
    let wanted = Path::new(reference.path().trim_start_matches("./"));
    if invalid_contracts.iter().any(|p| p == wanted) {
        return;
    }
    let Some(loaded) = contracts.iter().find(|c| c.file.path == wanted) else {
        let known: Vec<String> = contracts
            .iter()
            .map(|c| c.file.path.display().to_string())
            .collect();
        let mut d = file.diag(pos, format!("no contract file `{}`", reference.path()));
        d = match did_you_mean(reference.path(), known.iter().map(String::as_str)) {
            Some(s) => d.with_hint(format!("did you mean `{s}`?")),
            None => d.with_hint("contracts are ODCS v3 files under `contracts/`, named by their path, e.g. `contracts/raw.yaml`"),
        };
        diags.push(d);
        return;
    };
    let outputs = task.kind.contract_tables();
    if outputs.is_empty() {
        diags.push(
            file.diag(
                pos,
                format!(
                    "task `{}` writes no table for its contract to check",
                    task.common.id
                ),
            )
            .with_hint("use a `contract` task to check a table another task wrote"),
        );
    }
    // A task writing one table must have it covered; a task writing several (synthetic) must
    // have at least one covered, and the others go unchecked.
    let covered = outputs
        .iter()
        .filter(|t| contract_object_for(&loaded.contract, t, outputs.len() == 1).is_some())
        .count();
    if covered == 0 && !outputs.is_empty() {
        let names: Vec<&str> = loaded
            .contract
            .objects
            .iter()
            .map(|o| o.name.as_str())
            .collect();
        let table = &outputs[0];
        diags.push(
            file.diag(
                pos,
                format!(
                    "contract `{}` has no schema object for {}",
                    reference.path(),
                    outputs
                        .iter()
                        .map(|t| format!("`{t}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .with_hint(format!(
                "its objects are {}; name one `{}` or give it `physicalName: {table}`",
                names.join(", "),
                table.split_once('.').map_or(table.as_str(), |(_, n)| n)
            )),
        );
    }
}

/// The object of a contract that describes table `zone.name`: the one whose `physicalName` is
/// the table, else whose `name` is the table or its short name, else (when the task has only
/// this one table, `sole`) the contract's only object.
pub fn contract_object_for<'c>(
    contract: &'c crate::contracts::Contract,
    table: &str,
    sole: bool,
) -> Option<&'c crate::contracts::ContractObject> {
    let short = table.split_once('.').map_or(table, |(_, n)| n);
    contract
        .objects
        .iter()
        .find(|o| o.physical_name.as_deref() == Some(table))
        .or_else(|| {
            contract
                .objects
                .iter()
                .find(|o| o.name == table || o.name == short)
        })
        .or_else(|| (sole && contract.objects.len() == 1).then(|| &contract.objects[0]))
}

/// A whole file parsed and deserialized as `T`, with its tree for positions; a problem goes
/// to `diags` at its place.
pub(crate) fn parse_file<T: serde::de::DeserializeOwned>(
    file: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> Option<(Node, T)> {
    let root = match yaml::parse(&file.text) {
        Ok(root) => root,
        Err(e) => {
            diags.push(file.yaml_diag(e, Pos { line: 1, col: 1 }));
            return None;
        }
    };
    match yaml::from_node(&root) {
        Ok(value) => Some((root, value)),
        Err(e) => {
            diags.push(file.yaml_diag(e, root.pos));
            None
        }
    }
}

fn load_config(file: &SourceFile, diags: &mut Vec<Diagnostic>) -> Option<ProjectConfig> {
    let (root, config) = parse_file::<ProjectConfig>(file, diags)?;
    let before = diags.len();
    if config.version != FORMAT_VERSION {
        diags.push(
            file.diag(
                root.get("version").map_or(root.pos, |n| n.pos),
                format!("unsupported format version {}", config.version),
            )
            .with_hint(format!("this nightjar reads version {FORMAT_VERSION}")),
        );
    }
    if config.limits.max_parallel_tasks == 0 {
        let pos = root
            .get("limits")
            .and_then(|l| l.get("max_parallel_tasks"))
            .map_or(root.pos, |n| n.pos);
        diags.push(file.diag(pos, "`max_parallel_tasks` must be at least 1"));
    }
    for (key, value) in &config.storage.options {
        let pos = root
            .get("storage")
            .and_then(|s| s.get("options"))
            .and_then(|o| o.get(key))
            .map_or(root.pos, |n| n.pos);
        if let OptionValue::Literal(_) = value
            && is_secret_option(key)
        {
            diags.push(
                file.diag(
                    pos,
                    format!(
                        "storage option `{key}` is a secret and must not be written in the file"
                    ),
                )
                .with_hint(format!(
                    "write `{key}: {{ env: VAR_NAME }}` and set VAR_NAME in the environment"
                )),
            );
        }
    }
    (diags.len() == before).then_some(config)
}

/// Option keys whose values are credentials (object_store's AWS, GCS and Azure key names).
pub fn is_secret_option(key: &str) -> bool {
    let key = key.to_ascii_lowercase();
    [
        "secret",
        "password",
        "token",
        "access_key",
        "account_key",
        "sas",
        "credential",
        "service_account_key",
        "client_secret",
    ]
    .iter()
    .any(|s| key.contains(s))
}

fn load_pipeline(
    dir: &Path,
    file: SourceFile,
    options: &LoadOptions,
    diags: &mut Vec<Diagnostic>,
) -> Option<PipelineSpec> {
    let stem = file
        .path
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or_default()
        .to_string();
    let root = match yaml::parse(&file.text) {
        Ok(root) => root,
        Err(e) => {
            diags.push(file.yaml_diag(e, Pos { line: 1, col: 1 }));
            return None;
        }
    };
    let header: PipelineHeader = match yaml::from_node(&root) {
        Ok(h) => h,
        Err(e) => {
            diags.push(file.yaml_diag(e, root.pos));
            return None;
        }
    };
    let mut ok = true;
    if header.version != FORMAT_VERSION {
        diags.push(
            file.diag(
                root.get("version").map_or(root.pos, |n| n.pos),
                format!("unsupported format version {}", header.version),
            )
            .with_hint(format!("this nightjar reads version {FORMAT_VERSION}")),
        );
        ok = false;
    }
    if !is_identifier(&stem) {
        diags.push(
            file.diag(
                Pos { line: 1, col: 1 },
                format!("pipeline file name `{stem}` is not a valid pipeline name"),
            )
            .with_hint("use lowercase letters, digits and `_`, starting with a letter"),
        );
        ok = false;
    }
    if let Some(name) = &header.name
        && name != &stem
    {
        diags.push(
            file.diag(
                root.get("name").map_or(root.pos, |n| n.pos),
                format!("pipeline name `{name}` differs from its file name `{stem}`"),
            )
            .with_hint("a pipeline is named after its file; remove `name:` or rename the file"),
        );
        ok = false;
    }
    ok &= crate::schedule::check_header(&header, &root, &file, diags);
    for name in header.params.keys() {
        if !is_identifier(name) {
            let pos = root
                .get("params")
                .and_then(|p| p.entry(name))
                .map_or(root.pos, |(k, _)| k.pos);
            diags.push(file.diag(pos, format!("param name `{name}` is not an identifier")));
            ok = false;
        }
    }

    let mut params = header.params.clone();
    // Param defaults may name the run's dates (`since: "{{ data_interval_start }}"`), not
    // other params; `--var` values are taken as written.
    let dates = TemplateVars {
        ds: options.ds,
        params: BTreeMap::new(),
        interval: options.interval,
    };
    for (name, value) in params.iter_mut() {
        if let ParamValue::String(text) = value {
            match template::render(text, &dates, template::Context::Plain) {
                Ok(rendered) => *text = rendered,
                Err(e) => {
                    let pos = root
                        .get("params")
                        .and_then(|p| p.get(name))
                        .map_or(root.pos, |n| n.pos);
                    let mut d = file.diag(pos, e.message);
                    if let Some(h) = e.hint {
                        d = d.with_hint(h);
                    }
                    diags.push(d);
                    ok = false;
                }
            }
        }
    }
    let applies = options
        .only_pipeline
        .as_deref()
        .is_none_or(|only| only == stem);
    if applies {
        for (name, text) in &options.vars {
            if let Some(default) = params.get(name) {
                match default.parse_like(text) {
                    Ok(v) => {
                        params.insert(name.clone(), v);
                    }
                    Err(e) => {
                        diags.push(Diagnostic::new(
                            Path::new("--var"),
                            Pos::default(),
                            format!("`--var {name}`: {e}"),
                        ));
                        ok = false;
                    }
                }
            }
        }
    }
    let vars = TemplateVars {
        ds: options.ds,
        params,
        interval: options.interval,
    };

    let mut tasks = Vec::new();
    match root.get("tasks") {
        None => {
            diags.push(file.diag(root.pos, "pipeline has no `tasks`"));
            ok = false;
        }
        Some(node) => match &node.kind {
            NodeKind::Seq(items) => {
                for item in items {
                    match load_task(dir, &file, item, &vars, diags) {
                        Some(t) => tasks.push(t),
                        None => ok = false,
                    }
                }
            }
            _ => {
                diags.push(file.diag(node.pos, "`tasks` must be a list of tasks"));
                ok = false;
            }
        },
    }
    ok.then_some(PipelineSpec {
        name: stem,
        file,
        header,
        tasks,
        vars,
    })
}

/// Keys whose text is SQL: rendered with SQL quoting by the task, not here.
const SQL_KEYS: &[&str] = &["sql", "labels"];

fn load_task(
    dir: &Path,
    file: &SourceFile,
    node: &Node,
    vars: &TemplateVars,
    diags: &mut Vec<Diagnostic>,
) -> Option<TaskSpec> {
    if node.entries().is_none() {
        diags.push(file.diag(
            node.pos,
            "a task must be a mapping with at least `id` and `kind`",
        ));
        return None;
    }
    let mut node = node.clone();
    let before = diags.len();
    render_node(&mut node, file, vars, diags, false);
    if diags.len() > before {
        return None;
    }
    let common: TaskCommon = match yaml::from_node(&node.only_keys(COMMON_KEYS)) {
        Ok(c) => c,
        Err(e) => {
            diags.push(file.yaml_diag(e, node.pos));
            return None;
        }
    };
    let id_pos = node.get("id").map_or(node.pos, |n| n.pos);
    if !is_identifier(&common.id) {
        diags.push(
            file.diag(id_pos, format!("task id `{}` is not valid", common.id))
                .with_hint("use lowercase letters, digits and `_`, starting with a letter"),
        );
    }
    let depends_on_pos = match node.get("depends_on").map(|n| &n.kind) {
        Some(NodeKind::Seq(items)) => items.iter().map(|n| n.pos).collect(),
        _ => vec![node.pos; common.depends_on.len()],
    };
    let Some((kind_key, kind_node)) = node.entry("kind") else {
        diags.push(file.diag(node.pos, "missing field `kind`"));
        return None;
    };
    let _ = kind_key;
    let content = node.without_keys(COMMON_KEYS);
    let mut kind: TaskKind = match yaml::from_tagged_node(kind_node, &content) {
        Ok(k) => k,
        Err(e) => {
            let mut d = file.yaml_diag_with(e, node.pos, COMMON_KEYS);
            if d.message.starts_with("unknown variant") {
                d.message = d
                    .message
                    .replacen("unknown variant", "unknown task kind", 1);
                if let Some(s) = did_you_mean(&common.kind, TaskKind::NAMES.iter().copied()) {
                    d = d.with_hint(format!("did you mean `{s}`?"));
                }
            }
            diags.push(d);
            return None;
        }
    };
    let before = diags.len();
    kind.check_spec(
        &crate::tasks::SpecCx {
            dir,
            file,
            node: &node,
            vars,
        },
        diags,
    );
    (diags.len() == before).then_some(TaskSpec {
        common,
        kind,
        node,
        id_pos,
        depends_on_pos,
    })
}

/// Renders templates in every string scalar of a task except SQL text.
fn render_node(
    node: &mut Node,
    file: &SourceFile,
    vars: &TemplateVars,
    diags: &mut Vec<Diagnostic>,
    in_sql: bool,
) {
    match &mut node.kind {
        NodeKind::Scalar(text, _) if !in_sql => {
            match template::render(text, vars, template::Context::Plain) {
                Ok(rendered) => *text = rendered,
                Err(e) => {
                    let mut d = file.diag(node.pos, e.message);
                    if let Some(h) = e.hint {
                        d = d.with_hint(h);
                    }
                    diags.push(d);
                }
            }
        }
        NodeKind::Scalar(..) => {}
        NodeKind::Seq(items) => items
            .iter_mut()
            .for_each(|n| render_node(n, file, vars, diags, in_sql)),
        NodeKind::Map(entries) => {
            for (k, v) in entries.iter_mut() {
                let sql = in_sql || k.as_str().is_some_and(|k| SQL_KEYS.contains(&k));
                render_node(v, file, vars, diags, sql);
            }
        }
    }
}

/// Lowercase letters, digits and `_`, starting with a letter: safe as a path segment, a SQL
/// identifier and a task id.
pub fn is_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 64
}

/// A table name `zone.name`, both parts identifiers.
pub fn is_table_name(name: &str) -> bool {
    match name.split_once('.') {
        Some((zone, table)) => is_identifier(zone) && is_identifier(table),
        None => false,
    }
}
