//! Injected faults (`NIGHTJAR_FAULTS`, src/stores/faults.rs) against the real binary: a crash
//! after the N-th write then `--resume`, a flaky S3 ridden out by retries, and a permanent
//! fault that fails the run clearly and publishes nothing partial.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use crate::s3::{
    Moto, TableContents, assert_same_tables, nightjar_s3, registry_contents, set_storage_root,
    warehouse_tables,
};
use crate::{Out, SMALL_DEMO, delta_versions, demo_copy, nightjar, nightjar_env};

/// The kinds of object-store write a run makes, by the path written (first match wins).
const WRITE_KINDS: &[(&str, &str)] = &[
    ("/_delta_log/", "delta commit"),
    ("/warehouse/tables/", "delta data file"),
    ("/warehouse/features/", "delta data file"),
    ("/warehouse/tmp/", "contract staging"),
    ("/warehouse/runs/", "run state"),
    ("/aliases/", "alias generation"),
    ("/warehouse/registry/", "registry version file"),
    ("/warehouse/audit/head/", "audit head"),
    ("/warehouse/audit/", "audit segment"),
    ("/warehouse/locks/", "lock"),
    ("/exports/", "export"),
];

/// The kinds every crash sweep must hit at least once.
const REQUIRED_KINDS: &[&str] = &[
    "delta data file",
    "delta commit",
    "run state",
    "registry version file",
    "alias generation",
    "audit segment",
    "lock",
];

fn kind_of(write: &str) -> &'static str {
    WRITE_KINDS
        .iter()
        .find(|(needle, _)| write.contains(needle))
        .map(|(_, kind)| *kind)
        .unwrap_or("other")
}

/// The writes a run logged (`write N (put `path`)` at debug level), as `(what, path)`.
fn logged_writes(stderr: &str) -> Vec<String> {
    stderr
        .lines()
        .filter_map(|line| {
            let rest = &line[line.find(" write ")? + " write ".len()..];
            let (n, what) = rest.split_once(" (")?;
            n.parse::<u64>().ok()?;
            Some(what.trim_end_matches(')').to_string())
        })
        .collect()
}

/// The write a crashed run died after, from its `crashing after write N (...)` line.
fn crashed_write(out: &Out) -> Option<(u64, String)> {
    let line = out
        .stderr
        .lines()
        .find(|l| l.contains("NIGHTJAR_FAULTS: crashing after write "))?;
    let rest = line.split("crashing after write ").nth(1)?;
    let (n, what) = rest.split_once(" (")?;
    Some((n.parse().ok()?, what.trim_end_matches(')').to_string()))
}

fn assert_no_panic(out: &Out) {
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

/// The id of the only run of `pipeline` under a warehouse, if its state was ever written.
fn only_run_id(warehouse: &Path, pipeline: &str) -> Option<String> {
    let dir = warehouse.join("runs").join(pipeline);
    let mut ids: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| Some(e.file_name().to_str()?.strip_suffix(".json")?.to_string()))
        .collect();
    assert!(ids.len() <= 1, "one run at most: {ids:?}");
    ids.pop()
}

/// What an uninterrupted small demo run leaves: its tables and its registry.
struct Reference {
    tables: Vec<TableContents>,
    registry: BTreeMap<String, String>,
}

/// How a run planned to crash at a write ended.
enum Crash {
    /// It crashed after write `n` (the path written) and was resumed.
    At(u64, String),
    /// The plan's write number lies past this run's last write: the count varies by a few
    /// between runs, because the audit log group-commits events that arrive within 200 ms.
    BeyondTheRun { writes: u64 },
}

impl Crash {
    /// The write a `crash_on=…` plan crashed at: such a plan always matches a write of the run.
    fn expect_at(self, faults: &str) -> (u64, String) {
        match self {
            Crash::At(n, write) => (n, write),
            Crash::BeyondTheRun { writes } => {
                panic!("{faults}: no crash in a run of {writes} writes")
            }
        }
    }
}

/// Runs the small demo with `faults`, expects a crash, resumes it (or, if it died before its
/// run state existed, runs it again) and checks the warehouse ends exactly as the reference:
/// the same tables, Delta versions (nothing published twice) and rows (nothing lost or
/// duplicated), the same registry, champions that load with every file's sha256 checked, and
/// an audit chain that verifies. A `crash_after_writes=N` past the run's last write must leave
/// a run that succeeded, made fewer than N writes, and equals the reference too.
fn crash_then_resume(faults: &str, reference: &Reference) -> Crash {
    let dir = demo_copy();
    let warehouse = dir.path().join("warehouse");
    let out = nightjar_env(
        dir.path(),
        SMALL_DEMO,
        &[
            ("NIGHTJAR_FAULTS", faults),
            ("NIGHTJAR_LOG", "nightjar::stores::faults=debug"),
        ],
    );
    assert_no_panic(&out);
    let Some((n, write)) = crashed_write(&out) else {
        let planned: Option<u64> = faults
            .strip_prefix("crash_after_writes=")
            .and_then(|n| n.parse().ok());
        let writes = logged_writes(&out.stderr).len() as u64;
        assert!(
            out.code == 0 && planned.is_some_and(|n| writes < n),
            "{faults}: expected a crash, got exit {} after {writes} writes:\n{}",
            out.code,
            out.stderr
        );
        assert_like_reference(dir.path(), reference, &format!("{faults}, {writes} writes"));
        return Crash::BeyondTheRun { writes };
    };
    assert_ne!(out.code, 0, "{faults}: a crashed run does not exit 0");

    let resumed = match only_run_id(&warehouse, "marketing_nightly") {
        Some(run_id) => nightjar(
            dir.path(),
            &["run", "marketing_nightly", "--resume", &run_id, "--json"],
        ),
        None => nightjar(dir.path(), SMALL_DEMO),
    };
    assert_no_panic(&resumed);
    assert_eq!(
        resumed.code, 0,
        "{faults} ({write}): resume failed\nstdout:\n{}\nstderr:\n{}",
        resumed.stdout, resumed.stderr
    );
    let what = format!("crash after write {n} ({write}), then resume");
    assert_like_reference(dir.path(), reference, &what);
    Crash::At(n, write)
}

/// The project's warehouse holds exactly the reference's tables and registry, each champion
/// loads with its files' sha256 checked, and the audit chain verifies.
fn assert_like_reference(project: &Path, reference: &Reference, what: &str) {
    let warehouse = project.join("warehouse");
    assert_same_tables(&warehouse_tables(&warehouse), &reference.tables, what);
    let registry = registry_contents(&warehouse);
    assert_eq!(
        registry.keys().collect::<Vec<_>>(),
        reference.registry.keys().collect::<Vec<_>>(),
        "{what}: registry files"
    );
    for (file, text) in &reference.registry {
        assert!(&registry[file] == text, "{what}: registry/{file} differs");
    }
    for model in ["churn", "propensity", "ltv"] {
        let show = nightjar(project, &["models", "show", &format!("{model}@champion")]);
        assert_eq!(show.code, 0, "{what}: {model}@champion\n{}", show.stderr);
    }
    let verify = nightjar(project, &["audit", "verify"]);
    assert_eq!(
        verify.code, 0,
        "{what}: audit verify\n{}\n{}",
        verify.stdout, verify.stderr
    );
}

#[test]
fn a_crash_at_any_kind_of_write_then_resume_ends_like_an_uninterrupted_run() {
    let started = Instant::now();
    // The reference run also counts the run's writes (W) and their kinds.
    let dir = demo_copy();
    let out = nightjar_env(
        dir.path(),
        SMALL_DEMO,
        &[
            ("NIGHTJAR_FAULTS", "seed=0"),
            ("NIGHTJAR_LOG", "nightjar::stores::faults=debug"),
        ],
    );
    assert_eq!(out.code, 0, "{}", out.stderr);
    let writes = logged_writes(&out.stderr);
    let total = writes.len() as u64;
    let reference = Reference {
        tables: warehouse_tables(&dir.path().join("warehouse")),
        registry: registry_contents(&dir.path().join("warehouse")),
    };
    for kind in REQUIRED_KINDS {
        assert!(
            writes.iter().any(|w| kind_of(w) == *kind),
            "the demo makes no {kind} write: {writes:#?}"
        );
    }

    // A stride that keeps the sweep to about 40 crash points (a few minutes in debug on 2
    // cores), then a crash at the first write of each kind the stride missed.
    let stride = total.div_ceil(40).max(1);
    let mut hits: Vec<(String, u64, String)> = vec![];
    let mut beyond = vec![];
    for n in (1..=total).step_by(stride as usize) {
        let faults = format!("crash_after_writes={n}");
        match crash_then_resume(&faults, &reference) {
            Crash::At(crashed_at, write) => {
                assert_eq!(crashed_at, n);
                hits.push((faults, n, write));
            }
            Crash::BeyondTheRun { writes } => beyond.push((n, writes)),
        }
    }
    // Only the last few points may fall past a run's end; the rest of the sweep must crash.
    assert!(
        beyond.iter().all(|(n, _)| n + 10 > total),
        "crash points past the run's end far from the reference's {total} writes: {beyond:?}"
    );
    // Regression (issue 9): a crash between a model version's claim and its registration
    // (here right after its holdout table's commit) made the resumed train task claim a new
    // version and publish the holdout table twice.
    let faults = "crash_on=/tables/models/churn_holdout/_delta_log/";
    let (n, write) = crash_then_resume(faults, &reference).expect_at(faults);
    hits.push((faults.to_string(), n, write));
    for kind in REQUIRED_KINDS {
        if hits.iter().any(|(_, _, w)| kind_of(w) == *kind) {
            continue;
        }
        let needle = WRITE_KINDS
            .iter()
            .find(|(_, k)| k == kind)
            .map(|(needle, _)| *needle)
            .expect("a needle per kind");
        let faults = format!("crash_on={needle}");
        let (n, write) = crash_then_resume(&faults, &reference).expect_at(&faults);
        assert_eq!(kind_of(&write), *kind, "{faults} crashed at {write}");
        hits.push((faults, n, write));
    }
    eprintln!(
        "crash sweep: W = {total} writes, stride {stride}, {} crash points in {:.0?}; past \
         the run's end (point, writes made): {beyond:?}",
        hits.len(),
        started.elapsed()
    );
    for (faults, n, write) in &hits {
        eprintln!(
            "  {faults:<24} write {n:>4}: {:<22} {write}",
            kind_of(write)
        );
    }
    for kind in REQUIRED_KINDS {
        assert!(
            hits.iter().any(|(_, _, w)| kind_of(w) == *kind),
            "no crash hit a {kind} write"
        );
    }
}

/// The small demo run on local disk (the reference), a moto server, and a demo copy whose
/// storage root is on that server.
fn local_run_and_s3_demo() -> (tempfile::TempDir, Moto, tempfile::TempDir) {
    let local = demo_copy();
    let out = nightjar(local.path(), SMALL_DEMO);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let server = Moto::start();
    let dir = demo_copy();
    set_storage_root(dir.path(), &format!("s3://{}/warehouse", crate::s3::BUCKET));
    (local, server, dir)
}

/// The S3 run's tables equal the local run's and its audit chain verifies; returns the
/// downloaded warehouse.
fn assert_equals_local(
    server: &Moto,
    dir: &tempfile::TempDir,
    local: &tempfile::TempDir,
    what: &str,
) -> tempfile::TempDir {
    let downloaded = tempfile::tempdir().expect("tempdir");
    server.download("warehouse", downloaded.path());
    assert_same_tables(
        &warehouse_tables(downloaded.path()),
        &warehouse_tables(&local.path().join("warehouse")),
        what,
    );
    let verify = nightjar_s3(server, dir.path(), &["audit", "verify"], &[]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
    downloaded
}

#[test]
fn transient_s3_503s_are_ridden_out_by_retries_beneath_the_tasks() {
    let (local, server, dir) = local_run_and_s3_demo();
    let out = nightjar_s3(
        &server,
        dir.path(),
        SMALL_DEMO,
        &[
            ("NIGHTJAR_FAULTS", "seed=9,http_503=0.2"),
            ("NIGHTJAR_LOG", "nightjar::stores::faults=debug"),
        ],
    );
    assert_no_panic(&out);
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    let injected = out.stderr.matches("injected 503").count();
    assert!(injected >= 50, "only {injected} faults were injected");
    // object_store's backoff retried every one of them: no task needed a second attempt.
    let state: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    for task in state["tasks"].as_array().unwrap() {
        assert_eq!(task["status"], "succeeded", "{task}");
        assert_eq!(task["attempts"], 1, "{task}");
    }
    eprintln!("injected 503s: {injected}");

    assert_equals_local(&server, &dir, &local, "s3:// with 20% 503s against file://");
}

/// Requests that reach S3 but whose answer is lost: the server did the work, the client saw a
/// timeout. object_store retries idempotent requests; a conditional create fails upward, and
/// whoever tries again must recognise its own earlier write rather than claim a second
/// version, commit twice or fork the audit chain. The run must succeed and equal an
/// undisturbed run.
#[test]
fn lost_s3_answers_are_recognised_on_retry_and_nothing_is_written_twice() {
    let (local, server, dir) = local_run_and_s3_demo();
    let faults = [
        ("NIGHTJAR_FAULTS", "seed=5,http_timeout=0.1"),
        ("NIGHTJAR_LOG", "nightjar::stores::faults=debug"),
    ];
    let out = nightjar_s3(&server, dir.path(), SMALL_DEMO, &faults);
    assert_no_panic(&out);
    assert_eq!(
        out.code, 0,
        "lost answers fail no task\nstdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    // Lost answers to conditional creates: Delta commits, audit segments, registry files.
    let lost: Vec<&str> = out
        .stderr
        .lines()
        .filter(|l| l.contains("injected timeout after sending"))
        .collect();
    let lost_creates = lost
        .iter()
        .filter(|l| l.contains("method=PUT"))
        .filter(|l| {
            ["/_delta_log/", "/audit/", "/registry/"]
                .iter()
                .any(|k| l.contains(k))
        })
        .count();
    eprintln!(
        "lost answers: {} ({lost_creates} to conditional creates)",
        lost.len()
    );
    assert!(lost.len() >= 50, "only {} answers were lost", lost.len());
    assert!(lost_creates >= 1, "no conditional create lost its answer");
    let state: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    for task in state["tasks"].as_array().unwrap() {
        assert_eq!(task["status"], "succeeded", "{task}");
    }

    let downloaded = assert_equals_local(
        &server,
        &dir,
        &local,
        "s3:// with lost answers against file://",
    );
    for model in ["churn", "propensity", "ltv"] {
        let versions =
            std::fs::read_dir(downloaded.path().join(format!("registry/{model}/versions")))
                .map(|d| d.count())
                .unwrap_or(0);
        assert_eq!(versions, 1, "`{model}`: one version, no orphan claims");
    }
}

#[test]
fn a_permanent_write_fault_fails_the_run_naming_the_object_and_publishes_nothing() {
    let dir = demo_copy();
    let warehouse = dir.path().join("warehouse");
    let out = nightjar(dir.path(), SMALL_DEMO);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let before = delta_versions(&warehouse, "staging.customer_activity");
    let tables_before = warehouse_tables(&warehouse);
    assert!(!before.is_empty());

    // The next day's run: data files of customer_activity may be written, its commit never is.
    let next_day: Vec<&str> = SMALL_DEMO
        .iter()
        .map(|a| if *a == "2025-05-01" { "2025-05-02" } else { *a })
        .collect();
    let out = nightjar_env(
        dir.path(),
        &next_day,
        &[(
            "NIGHTJAR_FAULTS",
            "fail_writes=tables/staging/customer_activity/_delta_log/",
        )],
    );
    assert_no_panic(&out);
    assert_eq!(out.code, 1, "a failed run exits 1\n{}", out.stderr);
    let commit = format!(
        "tables/staging/customer_activity/_delta_log/{:020}.json",
        before.last().unwrap() + 1
    );
    assert!(
        out.stderr.contains("injected permanent fault: put `") && out.stderr.contains(&commit),
        "the error names the object:\n{}",
        out.stderr
    );
    let state: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(state["status"], "failed");
    let status_of = |id: &str| {
        state["tasks"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["id"] == id)
            .unwrap()["status"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(status_of("customer_activity"), "failed");
    assert_eq!(status_of("export_activity"), "upstream_failed");
    assert_eq!(
        delta_versions(&warehouse, "staging.customer_activity"),
        before,
        "the failed table's Delta version did not move"
    );
    let activity = |tables: &[TableContents]| {
        crate::s3::sorted_rows(
            &tables
                .iter()
                .find(|t| t.name == "tables/staging/customer_activity")
                .expect("customer_activity")
                .rows,
        )
    };
    assert!(
        activity(&warehouse_tables(&warehouse)) == activity(&tables_before),
        "readers still see the old rows"
    );
    assert!(
        !dir.path()
            .join("exports/customer_activity_20250502.parquet")
            .exists(),
        "nothing downstream was exported"
    );
    let verify = nightjar(dir.path(), &["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
}

#[test]
fn a_malformed_fault_plan_is_a_usage_error() {
    let dir = demo_copy();
    let out = nightjar_env(
        dir.path(),
        SMALL_DEMO,
        &[("NIGHTJAR_FAULTS", "crash_after_writes=soon")],
    );
    assert_no_panic(&out);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr
            .contains("`crash_after_writes` wants a positive integer, got `soon`"),
        "{}",
        out.stderr
    );
}
