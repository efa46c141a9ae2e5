//! S3 over real HTTP: moto's S3 server (a Python process, `python3 -m moto.server`) started by
//! the test on a free loopback port, and the demo pipeline run against it with its storage root
//! on `s3://`, compared with the same run on `file://`.
//!
//! moto is a test prerequisite (`python3 -m pip install 'moto[server]'`, see the README); a
//! machine without it fails these tests, naming the command.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use datafusion::arrow::record_batch::RecordBatch;

use crate::{Out, SMALL_DEMO, demo_copy, files_under, nightjar, nightjar_env_without};

pub const BUCKET: &str = "nightjar";
const ACCESS_KEY: &str = "nightjar-test";
const SECRET_KEY: &str = "nightjar-test-secret";

/// A moto S3 server on a loopback port with the bucket [`BUCKET`]; killed when dropped.
pub struct Moto {
    pub endpoint: String,
    child: Child,
    _log_dir: tempfile::TempDir,
}

impl Moto {
    pub fn start() -> Moto {
        let probe = Command::new("python3")
            .args(["-c", "import moto.server"])
            .output();
        match probe {
            Ok(out) if out.status.success() => {}
            Ok(out) => panic!(
                "moto's S3 server is missing (`python3 -c 'import moto.server'` failed: {}); \
                 install it with `python3 -m pip install 'moto[server]'` (a test prerequisite, \
                 see the README)",
                String::from_utf8_lossy(&out.stderr).trim()
            ),
            Err(e) => panic!("python3 is required to run moto's S3 server: {e}"),
        }
        let log_dir = tempfile::tempdir().expect("tempdir");
        // A free port can be taken between probing and moto's bind: try a few.
        for _ in 0..5 {
            let port = std::net::TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free loopback port")
                .port();
            let log = log_dir.path().join(format!("moto-{port}.log"));
            let log_file = std::fs::File::create(&log).expect("moto log");
            let child = Command::new("python3")
                .args([
                    "-m",
                    "moto.server",
                    "-H",
                    "127.0.0.1",
                    "-p",
                    &port.to_string(),
                ])
                .stdin(Stdio::null())
                .stdout(log_file.try_clone().expect("log"))
                .stderr(log_file)
                .spawn()
                .expect("start moto");
            let endpoint = format!("http://127.0.0.1:{port}");
            let mut child = child;
            if wait_until_ready(&mut child, &endpoint, &log) {
                return Moto {
                    endpoint,
                    child,
                    _log_dir: log_dir,
                };
            }
            // The port was taken meanwhile: moto exited; try another.
        }
        panic!(
            "moto's S3 server did not start (logs in {:?})",
            log_dir.path()
        );
    }

    /// The environment a `nightjar` process needs to reach this server (credentials from the
    /// environment, as in production).
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AWS_ENDPOINT_URL", self.endpoint.clone()),
            ("AWS_ACCESS_KEY_ID", ACCESS_KEY.into()),
            ("AWS_SECRET_ACCESS_KEY", SECRET_KEY.into()),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_REGION", "us-east-1".into()),
        ]
    }

    /// nightjar's own store on `s3://BUCKET/prefix` of this server, opened in this process.
    pub async fn storage(&self, prefix: &str) -> nightjar::stores::Storage {
        let mut options = BTreeMap::new();
        for (key, value) in [
            ("endpoint", self.endpoint.as_str()),
            ("access_key_id", ACCESS_KEY),
            ("secret_access_key", SECRET_KEY),
            ("allow_http", "true"),
            ("region", "us-east-1"),
        ] {
            options.insert(
                key.to_string(),
                nightjar::spec::OptionValue::Literal(value.to_string()),
            );
        }
        nightjar::stores::Storage::open(
            &format!("s3://{BUCKET}/{prefix}"),
            &options,
            Path::new("/"),
        )
        .await
        .expect("open the s3 root")
    }

    /// Copies every object under `s3://BUCKET/prefix/` to `to` (to read results back with the
    /// same helpers as a local warehouse).
    pub fn download(&self, prefix: &str, to: &Path) {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async {
            let storage = self.storage(prefix).await;
            for key in storage.list("").await.expect("list the bucket") {
                let bytes = storage.get(&key).await.expect("get").expect("listed");
                let path = to.join(&key);
                std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
                std::fs::write(path, bytes).expect("write");
            }
        });
    }
}

/// Polls until moto answers by creating the bucket; false if it exited (port taken).
fn wait_until_ready(child: &mut Child, endpoint: &str, log: &Path) -> bool {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("moto status") {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            assert!(
                text.contains("in use"),
                "moto's S3 server exited ({status}):\n{text}"
            );
            return false;
        }
        if let Some(status) = raw_request(endpoint, "PUT", &format!("/{BUCKET}")) {
            assert_eq!(status, 200, "creating bucket `{BUCKET}` on moto");
            return true;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "moto's S3 server did not answer within 60 s:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One unsigned HTTP/1.1 request; the status code, or `None` if nothing answers yet.
fn raw_request(endpoint: &str, method: &str, path: &str) -> Option<u16> {
    let host = endpoint.trim_start_matches("http://");
    let mut stream = std::net::TcpStream::connect(host).ok()?;
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {host}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    response.split_whitespace().nth(1)?.parse().ok()
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `nightjar` with the server's credentials (and none of the developer's AWS settings).
pub fn nightjar_s3(server: &Moto, dir: &Path, args: &[&str], extra: &[(&str, &str)]) -> Out {
    let env = server.env();
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    let stray = [
        "AWS_PROFILE",
        "AWS_SESSION_TOKEN",
        "AWS_DEFAULT_REGION",
        "AWS_ENDPOINT",
        "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
        "AWS_S3_EXPRESS",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
    ];
    nightjar_env_without(dir, args, &all, &stray)
}

/// Points a project's `storage.root` at `root`.
pub fn set_storage_root(dir: &Path, root: &str) {
    let path = dir.join("nightjar.yaml");
    let text = std::fs::read_to_string(&path).expect("nightjar.yaml");
    let replaced = text.replace("root: file://./warehouse", &format!("root: {root}"));
    assert_ne!(text, replaced, "nightjar.yaml names its storage root");
    std::fs::write(&path, replaced).expect("write nightjar.yaml");
}

/// Columns that hold the wall-clock time of the run by design, so two runs differ there.
const WALL_CLOCK_COLUMNS: &[(&str, &str)] = &[
    ("tables/scores/churn", "scored_at"),
    ("tables/scores/propensity", "scored_at"),
    ("tables/scores/ltv", "scored_at"),
];

/// One Delta table of a warehouse: its directory (relative), Delta versions and latest rows.
#[derive(Debug)]
pub struct TableContents {
    pub name: String,
    pub versions: Vec<u64>,
    pub rows: Vec<RecordBatch>,
}

/// Every Delta table under a warehouse directory (`tables/<zone>/<name>` and
/// `features/<view>/<version>`), sorted by name.
pub fn warehouse_tables(warehouse: &Path) -> Vec<TableContents> {
    let mut dirs: Vec<PathBuf> = files_under(warehouse)
        .into_iter()
        .filter_map(|file| {
            let log = file.parent()?;
            (log.file_name()? == "_delta_log").then(|| log.parent().map(Path::to_path_buf))?
        })
        .collect();
    dirs.dedup();
    dirs.into_iter()
        .map(|dir| {
            let name = dir
                .strip_prefix(warehouse)
                .expect("under the warehouse")
                .display()
                .to_string();
            let excluded: Vec<&str> = WALL_CLOCK_COLUMNS
                .iter()
                .filter(|(table, _)| *table == name)
                .map(|(_, column)| *column)
                .collect();
            let rows = crate::query_delta(&dir, "SELECT * FROM t")
                .into_iter()
                .map(|batch| without_columns(&batch, &excluded))
                .collect();
            TableContents {
                versions: crate::delta_log_versions(&dir),
                name,
                rows,
            }
        })
        .collect()
}

fn without_columns(batch: &RecordBatch, excluded: &[&str]) -> RecordBatch {
    let keep: Vec<usize> = (0..batch.num_columns())
        .filter(|i| !excluded.contains(&batch.schema().field(*i).name().as_str()))
        .collect();
    batch.project(&keep).expect("project")
}

/// The rows of a table as sorted text lines (row order is not part of a Delta version).
pub fn sorted_rows(batches: &[RecordBatch]) -> Vec<String> {
    let text = datafusion::arrow::util::pretty::pretty_format_batches(batches)
        .expect("format")
        .to_string();
    let mut lines: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with('|'))
        .skip(1) // the header
        .map(str::to_string)
        .collect();
    lines.sort_unstable();
    lines
}

/// The columns whose sorted values differ between two versions of a table's rows.
fn differing_columns(a: &[RecordBatch], b: &[RecordBatch]) -> Vec<String> {
    let Some(schema) = a.first().map(|batch| batch.schema()) else {
        return vec![];
    };
    (0..schema.fields().len())
        .filter(|i| {
            let column = |batches: &[RecordBatch]| {
                let one: Vec<RecordBatch> = batches
                    .iter()
                    .map(|batch| batch.project(&[*i]).expect("project"))
                    .collect();
                sorted_rows(&one)
            };
            column(a) != column(b)
        })
        .map(|i| schema.field(i).name().clone())
        .collect()
}

/// Asserts two warehouses hold the same tables, Delta versions and rows; `what` names the
/// comparison in failures.
pub fn assert_same_tables(got: &[TableContents], want: &[TableContents], what: &str) {
    let names = |tables: &[TableContents]| -> Vec<String> {
        tables.iter().map(|t| t.name.clone()).collect()
    };
    assert_eq!(names(got), names(want), "{what}: tables");
    for (got, want) in got.iter().zip(want) {
        assert_eq!(
            got.versions, want.versions,
            "{what}: {} Delta versions",
            got.name
        );
        assert!(
            sorted_rows(&got.rows) == sorted_rows(&want.rows),
            "{what}: {} rows differ (columns {:?}; {} vs {} rows)",
            got.name,
            differing_columns(&got.rows, &want.rows),
            got.rows.iter().map(RecordBatch::num_rows).sum::<usize>(),
            want.rows.iter().map(RecordBatch::num_rows).sum::<usize>(),
        );
    }
}

/// Replaces run ids and ISO-8601 times (`2026-11-23T18:27:46.388Z`, `2026-11-23 18:27:46.388000`)
/// in `text`, so two runs' registry files compare equal when only those differ.
pub fn mask_run_ids_and_times(text: &str) -> String {
    let text = crate::normalize(text, Path::new("/nonexistent"));
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    let digit = |j: usize| bytes.get(j).is_some_and(u8::is_ascii_digit);
    while i < bytes.len() {
        let is_time = (0..4).all(|k| digit(i + k))
            && bytes.get(i + 4) == Some(&b'-')
            && bytes.get(i + 7) == Some(&b'-')
            && matches!(bytes.get(i + 10), Some(b'T' | b' '))
            && bytes.get(i + 13) == Some(&b':')
            && bytes.get(i + 16) == Some(&b':')
            && digit(i + 17)
            && digit(i + 18)
            && (i == 0 || !bytes[i - 1].is_ascii_digit());
        if is_time {
            let mut end = i + 19;
            while end < bytes.len() && (bytes[end] == b'.' || bytes[end].is_ascii_digit()) {
                end += 1;
            }
            if bytes.get(end) == Some(&b'Z') {
                end += 1;
            }
            out.push_str("[TIME]");
            i = end;
        } else {
            let c = text[i..].chars().next().expect("char");
            out.push(c);
            i += c.len_utf8();
        }
    }
    out
}

/// The registry of a warehouse, each file as masked text: model versions (`model.json` as is,
/// every other file with run ids and times masked, and `metadata.json` without the hashes and
/// sizes of the files that name the run) and alias records: what the store lists, so not the
/// staging file of a put that a crash interrupted (`listed_files_under`).
pub fn registry_contents(warehouse: &Path) -> BTreeMap<String, String> {
    let registry = warehouse.join("registry");
    crate::listed_files_under(&registry)
        .into_iter()
        .map(|file| {
            let rel = file
                .strip_prefix(&registry)
                .expect("under registry")
                .display()
                .to_string();
            let text = std::fs::read_to_string(&file).expect("registry files are text");
            let text = if rel.ends_with("/model.json") {
                text
            } else if rel.ends_with("/metadata.json") {
                let mut metadata: serde_json::Value =
                    serde_json::from_str(&text).expect("metadata.json");
                for entry in metadata["files"].as_array_mut().expect("files") {
                    if entry["path"] != "model.json" {
                        let entry = entry.as_object_mut().expect("file entry");
                        entry.remove("sha256");
                        entry.remove("bytes");
                    }
                }
                mask_run_ids_and_times(&serde_json::to_string_pretty(&metadata).expect("json"))
            } else if rel.ends_with("/MLmodel") {
                // MLflow's `model_uuid` is a fresh UUID per registration.
                let masked = mask_run_ids_and_times(&text);
                masked
                    .lines()
                    .map(|line| match line.strip_prefix("model_uuid:") {
                        Some(_) => "model_uuid: [UUID]",
                        None => line,
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
            } else {
                mask_run_ids_and_times(&text)
            };
            (rel, text)
        })
        .collect()
}

#[test]
fn moto_refuses_a_second_create_of_the_same_key() {
    let server = Moto::start();
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    rt.block_on(async {
        let storage = server.storage("pia").await;
        let first = storage
            .put_if_absent("audit/0.json", bytes::Bytes::from_static(b"first"))
            .await
            .expect("first put");
        let second = storage
            .put_if_absent("audit/0.json", bytes::Bytes::from_static(b"second"))
            .await
            .expect("second put");
        assert_eq!(
            (first, second),
            (true, false),
            "PutMode::Create (If-None-Match: *) refuses an existing key"
        );
        assert_eq!(
            storage.get("audit/0.json").await.unwrap().unwrap(),
            bytes::Bytes::from_static(b"first"),
            "the loser did not overwrite the winner"
        );
        assert_eq!(
            storage.list("audit").await.unwrap(),
            vec!["audit/0.json".to_string()]
        );
        // A plain put still replaces (run state, exports).
        storage
            .put("audit/0.json", bytes::Bytes::from_static(b"replaced"))
            .await
            .expect("plain put");
        assert_eq!(
            storage.get("audit/0.json").await.unwrap().unwrap(),
            bytes::Bytes::from_static(b"replaced")
        );
    });
}

#[test]
fn demo_pipeline_on_s3_matches_the_same_run_on_local_disk() {
    let local = demo_copy();
    let out = nightjar(local.path(), SMALL_DEMO);
    assert_eq!(out.code, 0, "{}", out.stderr);

    let server = Moto::start();
    let remote = demo_copy();
    set_storage_root(remote.path(), &format!("s3://{BUCKET}/warehouse"));
    let out = nightjar_s3(&server, remote.path(), SMALL_DEMO, &[]);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    let state: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(state["status"], "succeeded");
    assert!(
        !remote.path().join("warehouse").exists(),
        "nothing went to local disk"
    );

    let downloaded = tempfile::tempdir().expect("tempdir");
    server.download("warehouse", downloaded.path());
    let on_disk = warehouse_tables(&local.path().join("warehouse"));
    let on_s3 = warehouse_tables(downloaded.path());
    // Every demo table and the three feature views (same definition versions) are there.
    assert!(on_disk.len() >= 20, "{on_disk:?}");
    assert_eq!(
        on_disk
            .iter()
            .filter(|t| t.name.starts_with("features/"))
            .count(),
        3
    );
    for table in &on_disk {
        assert!(
            !sorted_rows(&table.rows).is_empty(),
            "{} has rows",
            table.name
        );
    }
    assert_same_tables(&on_s3, &on_disk, "s3:// against file://");

    // The same model versions and aliases, equal but for run ids and times.
    let registry = registry_contents(&local.path().join("warehouse"));
    assert!(
        registry.keys().any(|k| k.contains("/aliases/champion/")),
        "{:?}",
        registry.keys()
    );
    let s3_registry = registry_contents(downloaded.path());
    assert_eq!(
        s3_registry.keys().collect::<Vec<_>>(),
        registry.keys().collect::<Vec<_>>()
    );
    for (file, text) in &registry {
        assert!(&s3_registry[file] == text, "registry/{file} differs");
    }
    // nightjar itself loads each champion from S3, checking every file's sha256.
    for model in ["churn", "propensity", "ltv"] {
        let show = nightjar_s3(
            &server,
            remote.path(),
            &["models", "show", &format!("{model}@champion")],
            &[],
        );
        assert_eq!(show.code, 0, "{}\n{}", show.stdout, show.stderr);
    }

    // The export went to the project directory, equal in rows.
    let export = "exports/customer_activity_20250501.parquet";
    let sql = "SELECT * FROM t ORDER BY customer_id";
    assert_eq!(
        crate::read_parquet(&remote.path().join(export), sql),
        crate::read_parquet(&local.path().join(export), sql)
    );

    // The audit log's chain, written put-if-absent over HTTP, verifies.
    assert!(
        files_under(&downloaded.path().join("audit")).len() > 2,
        "audit segments are on s3"
    );
    let out = nightjar_s3(&server, remote.path(), &["audit", "verify"], &[]);
    assert_eq!(out.code, 0, "{}\n{}", out.stdout, out.stderr);
}
