//! The run lock: two `nightjar run` of one pipeline at once, as two real processes sharing a
//! storage root. The second fails fast (exit 2, nothing ran); another pipeline runs alongside.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{SMALL_DEMO, demo_copy, files_under, nightjar};

const SIDE_PIPELINE: &str = "version: 1\ntasks:\n  - id: one\n    kind: sql\n    output: side.one\n    sql: SELECT 1 AS x\n";

#[test]
fn a_second_run_of_a_running_pipeline_fails_fast_and_another_pipeline_runs_alongside() {
    let dir = demo_copy();
    std::fs::write(dir.path().join("pipelines/side.yaml"), SIDE_PIPELINE).unwrap();
    let warehouse = dir.path().join("warehouse");
    let mut first = Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .arg("--project")
        .arg(dir.path())
        .args(SMALL_DEMO)
        .env("NO_COLOR", "1")
        .env_remove("NIGHTJAR_LOG")
        .env_remove("NIGHTJAR_FAULTS")
        .env_remove("OPENLINEAGE_URL")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start the first run");

    // The first run holds the lock once its first generation exists.
    let lock_dir = warehouse.join("locks/marketing_nightly");
    let started = Instant::now();
    while files_under(&lock_dir).is_empty() {
        assert!(
            first.try_wait().unwrap().is_none(),
            "the first run ended before it took the lock"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "no run lock");
        std::thread::sleep(Duration::from_millis(10));
    }

    let second = nightjar(dir.path(), SMALL_DEMO);
    let side = nightjar(dir.path(), &["run", "side", "--json"]);
    assert!(
        first.try_wait().unwrap().is_none(),
        "the first run finished before the others were checked: the test proves nothing"
    );
    assert_eq!(second.code, 2, "{}", second.stderr);
    assert!(
        second
            .stderr
            .contains("pipeline `marketing_nightly` is already running (its run lock is held by `")
            && second.stderr.contains("nothing was run"),
        "{}",
        second.stderr
    );
    assert_eq!(
        side.code, 0,
        "another pipeline is not locked out: {}",
        side.stderr
    );

    let first = first.wait_with_output().unwrap();
    assert_eq!(
        first.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    // The refused run left no run state behind: only the first run (and side's) exist.
    assert_eq!(
        files_under(&warehouse.join("runs/marketing_nightly")).len(),
        1
    );

    // Released at the end of the run: the next run goes at once.
    let third = nightjar(dir.path(), SMALL_DEMO);
    assert_eq!(third.code, 0, "{}", third.stderr);
    let verify = nightjar(dir.path(), &["audit", "verify"]);
    assert_eq!(verify.code, 0, "{}\n{}", verify.stdout, verify.stderr);
}
