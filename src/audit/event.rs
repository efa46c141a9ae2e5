//! OpenLineage RunEvents (spec 2-0-2) built from what any task declares and reports: pure
//! functions, no IO, so the same code serves every task kind.
//!
//! Mapping (choices where the OpenLineage spec leaves room):
//! - `run.runId`: a UUIDv7 derived from the nightjar run id and the task id (time = the run's
//!   start second, the rest from a sha256), so a retry or `--resume` of a task reports under
//!   the same runId, and the pipeline run's id is derived the same way (the `parent` facet).
//! - `job`: namespace = project name, name = `pipeline.task` (the pipeline run itself is job
//!   `pipeline`).
//! - datasets: namespace = the storage root URL without user info, query or fragment; name =
//!   the table (`zone.name`) or, for files written outside the tables, the file's path.
//! - `dataQualityAssertions` is an input facet in the spec; a contract checked on a task's
//!   output (the gate) is reported in that output's `facets`, where the schema accepts it too.
//! - nightjar's own facets (`nightjar`, schema in `schema/openlineage/`) carry what the
//!   standard facets cannot: the nightjar run id, the Delta version, whether it was reused,
//!   a fingerprint of the version's files, and the contract file's identity.

use chrono::NaiveDate;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// nightjar's URL and version, as OpenLineage's `producer` wants it.
pub const PRODUCER: &str = concat!(
    "https://github.com/nightjar-data/nightjar/tree/v",
    env!("CARGO_PKG_VERSION")
);
/// The OpenLineage core schema the events follow (kept in tests/fixtures/openlineage/).
pub const SCHEMA_URL: &str = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent";
/// Where nightjar's own facet schemas are published (`schema/openlineage/` in the repository).
pub const NIGHTJAR_FACETS_URL: &str =
    "https://github.com/nightjar-data/nightjar/blob/main/schema/openlineage/NightjarFacets.json";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Start,
    Complete,
    Fail,
    Abort,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Start => "START",
            EventType::Complete => "COMPLETE",
            EventType::Fail => "FAIL",
            EventType::Abort => "ABORT",
        }
    }
}

/// What every event of one pipeline run shares.
#[derive(Debug, Clone)]
pub struct RunInfo {
    /// The project name: the jobs' namespace.
    pub project: String,
    pub pipeline: String,
    /// nightjar's run id (`20250501T023000Z-1a2b3c4d`).
    pub run_id: String,
    pub ds: NaiveDate,
    /// The datasets' namespace: the storage root without secrets.
    pub namespace: String,
    /// The project directory as a `file://` URL with a trailing `/`, for source locations.
    pub project_url: String,
}

/// The job an event is about: a task, or the pipeline run itself (`task: None`).
#[derive(Debug, Clone, Default)]
pub struct JobInfo {
    pub task: Option<String>,
    /// The task kind (`sql`, `synthetic`, …) or `pipeline`.
    pub kind: String,
    /// `pipelines/x.yaml:12:5`.
    pub location: String,
    /// The query, for tasks that run one.
    pub sql: Option<String>,
}

/// A dataset read or written, with whatever is known about it.
#[derive(Debug, Clone, Default)]
pub struct DatasetFacts {
    /// `None`: the run's storage root.
    pub namespace: Option<String>,
    pub name: String,
    pub version: Option<i64>,
    pub rows: Option<u64>,
    pub size_bytes: Option<u64>,
    pub files: Option<u64>,
    /// `(column, Arrow type)` in table order.
    pub fields: Vec<(String, String)>,
    /// sha256 of the version's data files (path and size), sorted.
    pub fingerprint: Option<String>,
    /// The version was published by an earlier attempt of this run.
    pub reused: bool,
    /// A source file: its ETag and last-modified time as the store reported them.
    pub etag: Option<String>,
    pub last_modified: Option<String>,
    pub checks: Vec<CheckFacts>,
    /// A model version (`name@version`): the `model` object of nightjar's dataset facet.
    pub model: Option<Value>,
    /// Which input columns each column of this output comes from.
    pub column_lineage: Option<super::columns::ColumnLineage>,
}

/// One contract check of a dataset.
#[derive(Debug, Clone)]
pub struct CheckFacts {
    /// The contract file as written in the task (`contracts/raw.yaml`), if known.
    pub contract_path: Option<String>,
    pub report: crate::contracts::CheckReport,
    /// The check stopped the task.
    pub violated: bool,
}

/// A UUIDv7 for `key` within nightjar run `run_id`: the run's start second as its time,
/// sha256-derived bits as the rest, so it is the same every time it is derived.
pub fn derived_uuid(run_id: &str, key: &str) -> uuid::Uuid {
    let millis = run_id
        .get(..16)
        .and_then(|t| chrono::NaiveDateTime::parse_from_str(t, "%Y%m%dT%H%M%SZ").ok())
        .map_or(0, |t| t.and_utc().timestamp_millis().max(0) as u64);
    let digest = Sha256::digest(format!("{run_id}\n{key}").as_bytes());
    let mut bits = [0u8; 10];
    bits.copy_from_slice(&digest[..10]);
    uuid::Builder::from_unix_timestamp_millis(millis, &bits).into_uuid()
}

/// A storage URL with user info, query and fragment removed (they may hold credentials).
pub fn public_url(url: &url::Url) -> String {
    let mut url = url.clone();
    let _ = url.set_username("");
    let _ = url.set_password(None);
    url.set_query(None);
    url.set_fragment(None);
    url.as_str().trim_end_matches('/').to_string()
}

fn facet(schema: &str, fields: Value) -> Value {
    let mut facet = Map::new();
    facet.insert("_producer".into(), json!(PRODUCER));
    facet.insert("_schemaURL".into(), json!(schema));
    if let Value::Object(fields) = fields {
        facet.extend(fields);
    }
    Value::Object(facet)
}

fn standard(file_version: &str, name: &str) -> String {
    format!("https://openlineage.io/spec/facets/{file_version}/{name}.json#/$defs/{name}")
}

fn nightjar_schema(name: &str) -> String {
    format!("{NIGHTJAR_FACETS_URL}#/$defs/{name}")
}

fn nominal(ds: NaiveDate) -> (String, String) {
    let start = ds.and_hms_opt(0, 0, 0).unwrap_or_default().and_utc();
    let end = start + chrono::Duration::days(1);
    let fmt =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
    (fmt(start), fmt(end))
}

/// One RunEvent.
pub fn run_event(
    run: &RunInfo,
    job: &JobInfo,
    event_type: EventType,
    event_time: chrono::DateTime<chrono::Utc>,
    inputs: &[DatasetFacts],
    outputs: &[DatasetFacts],
    error: Option<&str>,
) -> Value {
    let (job_name, run_uuid) = match &job.task {
        Some(task) => (
            format!("{}.{task}", run.pipeline),
            derived_uuid(&run.run_id, task),
        ),
        None => (run.pipeline.clone(), pipeline_run_uuid(&run.run_id)),
    };
    let (nominal_start, nominal_end) = nominal(run.ds);
    let mut run_facets = Map::new();
    if job.task.is_some() {
        run_facets.insert(
            "parent".into(),
            facet(
                &standard("1-2-0", "ParentRunFacet"),
                json!({
                    "run": {"runId": pipeline_run_uuid(&run.run_id).to_string()},
                    "job": {"namespace": run.project, "name": run.pipeline},
                }),
            ),
        );
    }
    run_facets.insert(
        "nominalTime".into(),
        facet(
            &standard("1-0-1", "NominalTimeRunFacet"),
            json!({"nominalStartTime": nominal_start, "nominalEndTime": nominal_end}),
        ),
    );
    run_facets.insert(
        "processing_engine".into(),
        facet(
            &standard("1-1-1", "ProcessingEngineRunFacet"),
            json!({"name": "nightjar", "version": env!("CARGO_PKG_VERSION")}),
        ),
    );
    let mut nightjar_run =
        json!({"runId": run.run_id, "pipeline": run.pipeline, "ds": run.ds.to_string()});
    if let Some(task) = &job.task {
        nightjar_run["task"] = json!(task);
    }
    run_facets.insert(
        "nightjar".into(),
        facet(&nightjar_schema("NightjarRunFacet"), nightjar_run),
    );
    if let Some(message) = error {
        run_facets.insert(
            "errorMessage".into(),
            facet(
                &standard("1-0-1", "ErrorMessageRunFacet"),
                json!({"message": message, "programmingLanguage": "Rust"}),
            ),
        );
    }

    let mut job_facets = Map::new();
    job_facets.insert(
        "jobType".into(),
        facet(
            &standard("2-0-4", "JobTypeJobFacet"),
            json!({
                "processingType": "BATCH",
                "integration": "NIGHTJAR",
                "jobType": if job.task.is_some() { job.kind.to_uppercase() } else { "DAG".into() },
            }),
        ),
    );
    if let Some(sql) = &job.sql {
        job_facets.insert(
            "sql".into(),
            facet(
                &standard("1-1-0", "SQLJobFacet"),
                json!({"query": sql, "dialect": "datafusion"}),
            ),
        );
    }
    if let Some((file, _)) = job.location.split_once(':').or(Some((&job.location, "")))
        && !file.is_empty()
        && let Ok(url) = url::Url::parse(&run.project_url).and_then(|base| base.join(file))
    {
        job_facets.insert(
            "sourceCodeLocation".into(),
            facet(
                &standard("1-1-0", "SourceCodeLocationJobFacet"),
                json!({"type": "file", "url": url.as_str(), "path": job.location}),
            ),
        );
    }

    let datasets = |list: &[DatasetFacts], output: bool| -> Vec<Value> {
        list.iter().map(|d| dataset(run, d, output)).collect()
    };
    json!({
        "eventType": event_type.as_str(),
        "eventTime": event_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "producer": PRODUCER,
        "schemaURL": SCHEMA_URL,
        "run": {"runId": run_uuid.to_string(), "facets": run_facets},
        "job": {"namespace": run.project, "name": job_name, "facets": job_facets},
        "inputs": datasets(inputs, false),
        "outputs": datasets(outputs, true),
    })
}

/// The pipeline run's own OpenLineage runId.
pub fn pipeline_run_uuid(run_id: &str) -> uuid::Uuid {
    derived_uuid(run_id, "")
}

fn dataset(run: &RunInfo, d: &DatasetFacts, output: bool) -> Value {
    let namespace = d.namespace.clone().unwrap_or_else(|| run.namespace.clone());
    let mut facets = Map::new();
    let uri = if d.namespace.is_some() {
        namespace.clone()
    } else if let Some(model) = &d.model {
        format!(
            "{namespace}/registry/{}/versions/{}",
            model["name"].as_str().unwrap_or_default(),
            model["version"]
        )
    } else {
        table_uri(&namespace, &d.name)
    };
    facets.insert(
        "dataSource".into(),
        facet(
            &standard("1-0-1", "DatasourceDatasetFacet"),
            json!({"name": namespace, "uri": uri}),
        ),
    );
    if !d.fields.is_empty() {
        let fields: Vec<Value> = d
            .fields
            .iter()
            .enumerate()
            .map(|(i, (name, ty))| json!({"name": name, "type": ty, "ordinal_position": i + 1}))
            .collect();
        facets.insert(
            "schema".into(),
            facet(
                &standard("1-2-0", "SchemaDatasetFacet"),
                json!({ "fields": fields }),
            ),
        );
    }
    if let Some(version) = d.version {
        facets.insert(
            "version".into(),
            facet(
                &standard("1-0-1", "DatasetVersionDatasetFacet"),
                json!({"datasetVersion": version.to_string()}),
            ),
        );
    }
    if let Some(lineage) = &d.column_lineage {
        let input = |s: &super::columns::Source| {
            json!({
                "namespace": run.namespace,
                "name": s.table,
                "field": s.column,
                "transformations": [{"type": s.kind, "subtype": s.subtype}],
            })
        };
        let fields: Map<String, Value> = lineage
            .fields
            .iter()
            .map(|(name, sources)| {
                let inputs: Vec<Value> = sources.iter().map(input).collect();
                (name.clone(), json!({ "inputFields": inputs }))
            })
            .collect();
        let dataset: Vec<Value> = lineage.dataset.iter().map(input).collect();
        facets.insert(
            "columnLineage".into(),
            facet(
                &standard("1-2-0", "ColumnLineageDatasetFacet"),
                json!({"fields": fields, "dataset": dataset}),
            ),
        );
    }
    let mut nightjar = Map::new();
    if let Some(model) = &d.model {
        facets.insert(
            "version".into(),
            facet(
                &standard("1-0-1", "DatasetVersionDatasetFacet"),
                json!({"datasetVersion": model["version"].to_string()}),
            ),
        );
        nightjar.insert("model".into(), model.clone());
    }
    if let Some(version) = d.version {
        nightjar.insert("deltaVersion".into(), json!(version));
    }
    if d.reused {
        nightjar.insert("reused".into(), json!(true));
    }
    if let Some(fp) = &d.fingerprint {
        nightjar.insert("fingerprint".into(), json!(fp));
    }
    if let Some(modified) = &d.last_modified {
        // A source file: what the object store said of it when the ingest listed it.
        nightjar.insert("lastModified".into(), json!(modified));
        if let Some(etag) = &d.etag {
            nightjar.insert("etag".into(), json!(etag));
        }
        if let Some(size) = d.size_bytes {
            nightjar.insert("sizeBytes".into(), json!(size));
        }
    }
    if !d.checks.is_empty() {
        let contracts: Vec<Value> = d
            .checks
            .iter()
            .map(|c| {
                let mut v = json!({
                    "id": c.report.contract_id,
                    "version": c.report.contract_version,
                    "textSha256": c.report.text_sha256,
                    "object": c.report.object,
                    "rows": c.report.rows,
                    "passed": !c.violated,
                });
                if let Some(path) = &c.contract_path {
                    v["path"] = json!(path);
                }
                v
            })
            .collect();
        nightjar.insert("contracts".into(), Value::Array(contracts));
    }
    if !nightjar.is_empty() {
        facets.insert(
            "nightjar".into(),
            facet(
                &nightjar_schema("NightjarDatasetFacet"),
                Value::Object(nightjar),
            ),
        );
    }
    let assertions = (!d.checks.is_empty()).then(|| {
        let list: Vec<Value> = d.checks.iter().flat_map(assertions_of).collect();
        facet(
            &standard("1-1-0", "DataQualityAssertionsDatasetFacet"),
            json!({ "assertions": list }),
        )
    });
    let mut value = json!({"namespace": namespace, "name": d.name});
    if output {
        if let Some(a) = assertions {
            facets.insert("dataQualityAssertions".into(), a);
        }
        let mut stats = Map::new();
        if let Some(rows) = d.rows {
            stats.insert("rowCount".into(), json!(rows));
        }
        if let Some(size) = d.size_bytes {
            stats.insert("size".into(), json!(size));
        }
        if let Some(files) = d.files {
            stats.insert("fileCount".into(), json!(files));
        }
        if !stats.is_empty() {
            value["outputFacets"] = json!({
                "outputStatistics": facet(
                    &standard("1-0-2", "OutputStatisticsOutputDatasetFacet"),
                    Value::Object(stats),
                )
            });
        }
    } else if let Some(a) = assertions {
        value["inputFacets"] = json!({ "dataQualityAssertions": a });
    }
    value["facets"] = Value::Object(facets);
    value
}

/// The URL of a table under the storage root.
fn table_uri(namespace: &str, table: &str) -> String {
    match table.split_once('.') {
        Some((zone, name)) => format!("{namespace}/tables/{zone}/{name}"),
        None => format!("{namespace}/{table}"),
    }
}

fn assertions_of(check: &CheckFacts) -> Vec<Value> {
    check
        .report
        .results
        .iter()
        .map(|r| {
            let mut a = json!({
                "assertion": r.metric,
                "success": r.passed,
                "name": r.rule_id,
                "severity": r.severity,
                "expected": r.threshold,
                "actual": if r.observed.is_nan() { "nothing".to_string() } else { r.observed.to_string() },
            });
            if let Some(column) = &r.column {
                a["column"] = json!(column);
            }
            a
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run() -> RunInfo {
        RunInfo {
            project: "demo".into(),
            pipeline: "nightly".into(),
            run_id: "20250501T023000Z-1a2b3c4d".into(),
            ds: NaiveDate::from_ymd_opt(2025, 5, 1).unwrap(),
            namespace: "s3://bucket/wh".into(),
            project_url: "file:///srv/demo/".into(),
        }
    }

    #[test]
    fn run_ids_are_derived_uuid_v7_and_stable() {
        let a = derived_uuid("20250501T023000Z-1a2b3c4d", "load");
        assert_eq!(a, derived_uuid("20250501T023000Z-1a2b3c4d", "load"));
        assert_ne!(a, derived_uuid("20250501T023000Z-1a2b3c4d", "other"));
        assert_eq!(a.get_version_num(), 7);
        let (secs, _) = a.get_timestamp().unwrap().to_unix();
        assert_eq!(secs, 1_746_066_600);
    }

    #[test]
    fn secrets_in_urls_are_dropped() {
        let url = url::Url::parse("s3://key:secret@bucket/wh/?token=x#f").unwrap();
        assert_eq!(public_url(&url), "s3://bucket/wh");
    }

    #[test]
    fn a_task_event_has_the_mapped_fields() {
        let job = JobInfo {
            task: Some("load".into()),
            kind: "sql".into(),
            location: "pipelines/nightly.yaml:12:5".into(),
            sql: Some("SELECT 1".into()),
        };
        let out = DatasetFacts {
            name: "staging.orders".into(),
            version: Some(3),
            rows: Some(10),
            fields: vec![("id".into(), "Int64".into())],
            ..Default::default()
        };
        let time = chrono::DateTime::parse_from_rfc3339("2025-05-02T02:30:00Z")
            .unwrap()
            .to_utc();
        let e = run_event(
            &run(),
            &job,
            EventType::Fail,
            time,
            &[],
            &[out],
            Some("boom"),
        );
        assert_eq!(e["eventType"], "FAIL");
        assert_eq!(e["eventTime"], "2025-05-02T02:30:00.000Z");
        assert_eq!(e["job"]["name"], "nightly.load");
        assert_eq!(e["job"]["namespace"], "demo");
        assert_eq!(e["job"]["facets"]["jobType"]["jobType"], "SQL");
        assert_eq!(e["job"]["facets"]["sql"]["query"], "SELECT 1");
        assert_eq!(
            e["job"]["facets"]["sourceCodeLocation"]["url"],
            "file:///srv/demo/pipelines/nightly.yaml"
        );
        assert_eq!(
            e["run"]["facets"]["parent"]["run"]["runId"],
            pipeline_run_uuid("20250501T023000Z-1a2b3c4d").to_string()
        );
        assert_eq!(
            e["run"]["facets"]["nominalTime"]["nominalStartTime"],
            "2025-05-01T00:00:00.000Z"
        );
        assert_eq!(e["run"]["facets"]["errorMessage"]["message"], "boom");
        let o = &e["outputs"][0];
        assert_eq!(o["namespace"], "s3://bucket/wh");
        assert_eq!(
            o["facets"]["dataSource"]["uri"],
            "s3://bucket/wh/tables/staging/orders"
        );
        assert_eq!(o["facets"]["nightjar"]["deltaVersion"], 3);
        assert_eq!(o["facets"]["version"]["datasetVersion"], "3");
        assert_eq!(o["facets"]["schema"]["fields"][0]["name"], "id");
        assert_eq!(o["outputFacets"]["outputStatistics"]["rowCount"], 10);
    }
}
