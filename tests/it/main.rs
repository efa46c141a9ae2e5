//! The one integration-test binary: drives the real `nightjar` CLI on temp projects.

mod audit;
mod cli_errors;
mod contracts;
mod corpus;
mod demo;
mod faults;
mod features;
mod ingest_export;
mod models;
mod registry;
mod run_lock;
mod s3;
mod schedule;
mod schema;

use std::path::{Path, PathBuf};
use std::process::Command;

/// The output of one CLI call.
pub struct Out {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Out {
    /// stdout + stderr with the temp dir, run ids and timings replaced, for snapshots.
    pub fn normalized(&self, dir: &Path) -> String {
        let text = format!(
            "exit: {}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        );
        normalize(&text, dir)
    }
}

pub fn normalize(text: &str, dir: &Path) -> String {
    let dir = dir.canonicalize().unwrap_or(dir.to_path_buf());
    let mut out = text.replace(&dir.display().to_string(), "[TMP]");
    // Run ids look like 20251123T101010Z-1a2b3c4d.
    let mut result = String::new();
    let mut rest = out.as_str();
    while let Some(i) = rest.find(|c: char| c.is_ascii_digit()) {
        let candidate = &rest[i..];
        if candidate.len() >= 25
            && candidate.as_bytes()[8] == b'T'
            && candidate.as_bytes()[15] == b'Z'
            && candidate.as_bytes()[16] == b'-'
        {
            result.push_str(&rest[..i]);
            result.push_str("[RUN_ID]");
            rest = &candidate[25..];
        } else {
            result.push_str(&rest[..i + 1]);
            rest = &rest[i + 1..];
        }
    }
    result.push_str(rest);
    out = result;
    out
}

pub fn nightjar(dir: &Path, args: &[&str]) -> Out {
    nightjar_env(dir, args, &[])
}

/// `nightjar` with extra environment variables (the run's own OpenLineage settings are
/// cleared first, so a developer's `OPENLINEAGE_URL` never reaches a test).
pub fn nightjar_env(dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Out {
    nightjar_env_without(dir, args, env, &[])
}

/// `nightjar_env` with some variables of the test's own environment removed as well.
pub fn nightjar_env_without(
    dir: &Path,
    args: &[&str],
    env: &[(&str, &str)],
    remove: &[&str],
) -> Out {
    let mut command = Command::new(env!("CARGO_BIN_EXE_nightjar"));
    for key in remove {
        command.env_remove(key);
    }
    let output = command
        .arg("--project")
        .arg(dir)
        .args(args)
        .env("NO_COLOR", "1")
        .env_remove("NIGHTJAR_LOG")
        .env_remove("OPENLINEAGE_URL")
        .env_remove("OPENLINEAGE_ENDPOINT")
        .env_remove("OPENLINEAGE_API_KEY")
        .envs(env.iter().copied())
        .output()
        .expect("run nightjar");
    Out {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}

/// The repository root (the demo project).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A temp project from `(relative path, contents)` pairs.
pub fn project(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for (path, text) in files {
        let full = dir.path().join(path);
        std::fs::create_dir_all(full.parent().expect("parent")).expect("mkdir");
        std::fs::write(full, text).expect("write");
    }
    dir
}

pub const PROJECT_YAML: &str = "version: 1\nname: t\nstorage:\n  root: file://./warehouse\nlimits:\n  memory: 512MiB\n  max_parallel_tasks: 2\ndefaults:\n  retries: 0\n";

/// The demo, small enough for tests that run it several times, with the promotion floors
/// lowered so every model is promoted (a tiny run's models are weak).
pub const SMALL_DEMO: &[&str] = &[
    "run",
    "marketing_nightly",
    "--ds",
    "2025-05-01",
    "--var",
    "customers=200",
    "--var",
    "days=40",
    "--var",
    "min_churn_auc=0",
    "--var",
    "min_propensity_auc=0",
    "--var",
    "min_ltv_r2=-1e9",
    "--json",
];

/// A copy of the repository's demo project in a temp dir (its own warehouse).
pub fn demo_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    copy_dir(
        &repo_root().join("pipelines"),
        &dir.path().join("pipelines"),
    );
    copy_dir(
        &repo_root().join("contracts"),
        &dir.path().join("contracts"),
    );
    copy_dir(&repo_root().join("features"), &dir.path().join("features"));
    std::fs::copy(
        repo_root().join("nightjar.yaml"),
        dir.path().join("nightjar.yaml"),
    )
    .expect("copy nightjar.yaml");
    dir
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read_dir") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), target).expect("copy");
        }
    }
}

/// Rows and columns of a Parquet file, read with DataFusion as table `t`.
pub fn read_parquet(path: &Path, sql: &str) -> Vec<datafusion::arrow::record_batch::RecordBatch> {
    query_as_t(sql, |ctx| async move {
        ctx.register_parquet("t", path.to_str().expect("utf8 path"), Default::default())
            .await
            .expect("register parquet");
    })
}

/// Rows of a query over the latest version of a Delta table of a warehouse, as table `t`
/// (read with delta-rs directly, not through nightjar).
pub fn query_table(
    warehouse: &Path,
    table: &str,
    sql: &str,
) -> Vec<datafusion::arrow::record_batch::RecordBatch> {
    let (zone, name) = table.split_once('.').expect("zone.name");
    query_delta(&warehouse.join("tables").join(zone).join(name), sql)
}

/// Rows of a query over the latest version of the Delta table at `location`, as table `t`.
pub fn query_delta(
    location: &Path,
    sql: &str,
) -> Vec<datafusion::arrow::record_batch::RecordBatch> {
    let location = location.to_path_buf();
    query_as_t(sql, |ctx| async move {
        let url = url::Url::from_directory_path(&location).expect("url");
        let delta = deltalake_core::open_table(url)
            .await
            .expect("open delta table");
        ctx.register_table("t", delta.table_provider().await.expect("provider"))
            .expect("register");
    })
}

fn query_as_t<F, Fut>(sql: &str, register: F) -> Vec<datafusion::arrow::record_batch::RecordBatch>
where
    F: FnOnce(datafusion::prelude::SessionContext) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let ctx = datafusion::prelude::SessionContext::new();
        register(ctx.clone()).await;
        ctx.sql(sql)
            .await
            .expect("sql")
            .collect()
            .await
            .expect("collect")
    })
}

/// Delta versions present for a table (the commit files under `_delta_log`).
pub fn delta_versions(warehouse: &Path, table: &str) -> Vec<u64> {
    let (zone, name) = table.split_once('.').expect("zone.name");
    delta_log_versions(&warehouse.join("tables").join(zone).join(name))
}

/// Delta versions present in the table at `table_dir` (none if it has no log).
pub fn delta_log_versions(table_dir: &Path) -> Vec<u64> {
    let mut versions: Vec<u64> = std::fs::read_dir(table_dir.join("_delta_log"))
        .map(|entries| {
            entries
                .flatten()
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".json")?.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    versions.sort();
    versions
}

/// Waits (polling, at most 60 s) until a run state under `runs_dir` has a task running (not just
/// the run: a run cancelled before its first task starts emits no task events), then sends the
/// child SIGTERM with the shell's builtin kill (a fresh machine need not have procps).
pub fn sigterm_once_running(child: &std::process::Child, runs_dir: &Path) {
    let started = std::time::Instant::now();
    loop {
        let running = std::fs::read_dir(runs_dir)
            .ok()
            .and_then(|mut d| d.next())
            .and_then(|e| e.ok())
            .and_then(|e| std::fs::read_to_string(e.path()).ok())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).ok())
            .is_some_and(|state| {
                state["tasks"]
                    .as_array()
                    .is_some_and(|tasks| tasks.iter().any(|t| t["status"] == "running"))
            });
        if running {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "the run never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = Command::new("sh")
        .args(["-c", &format!("kill -TERM {}", child.id())])
        .status()
        .expect("kill");
    assert!(status.success());
}

/// Every object under `dir` as object_store's local store lists it, as sorted paths. Unlike
/// `files_under`, this leaves out what the store never lists or reads: the staging file
/// (`<name>#<digits>`) of a put that a crash interrupted before its rename.
pub fn listed_files_under(dir: &Path) -> Vec<PathBuf> {
    use futures::TryStreamExt;
    use object_store::ObjectStore;
    if !dir.exists() {
        return vec![];
    }
    let store = object_store::local::LocalFileSystem::new_with_prefix(dir).expect("local store");
    let objects: Vec<object_store::ObjectMeta> = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime")
        .block_on(store.list(None).try_collect())
        .expect("list");
    let mut out: Vec<PathBuf> = objects
        .iter()
        .map(|meta| dir.join(meta.location.as_ref()))
        .collect();
    out.sort();
    out
}

/// Every file under `dir`, recursively, sorted (none if `dir` does not exist).
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            out.extend(files_under(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

/// One Int64 column of query results, nulls as `None`.
pub fn i64_column(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
    column: usize,
) -> Vec<Option<i64>> {
    use datafusion::arrow::array::{Array, AsArray};
    batches
        .iter()
        .flat_map(|b| {
            let a = b
                .column(column)
                .as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            (0..a.len())
                .map(|i| a.is_valid(i).then(|| a.value(i)))
                .collect::<Vec<_>>()
        })
        .collect()
}

/// One column of query results as text (Arrow's cast to Utf8).
pub fn string_column(
    batches: &[datafusion::arrow::record_batch::RecordBatch],
    column: usize,
) -> Vec<String> {
    use datafusion::arrow::array::{Array, AsArray};
    batches
        .iter()
        .flat_map(|b| {
            let a = datafusion::arrow::compute::cast(
                b.column(column),
                &datafusion::arrow::datatypes::DataType::Utf8,
            )
            .expect("cast to utf8");
            let a = a.as_string::<i32>();
            (0..a.len())
                .map(|i| a.value(i).to_string())
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn listed_files_leave_out_an_interrupted_puts_staging_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::create_dir_all(dir.path().join("m/versions/1")).expect("dirs");
    for name in ["card.json", "card.json#1", "a#b#1"] {
        std::fs::write(dir.path().join("m/versions/1").join(name), b"{}").expect("write");
    }
    let listed: Vec<String> = listed_files_under(dir.path())
        .iter()
        .map(|p| p.strip_prefix(dir.path()).unwrap().display().to_string())
        .collect();
    assert_eq!(listed, ["m/versions/1/a#b#1", "m/versions/1/card.json"]);
    assert_eq!(files_under(dir.path()).len(), 3);
}
