//! `nightjar schedule` and `nightjar backfill` through the real CLI, with `--now` fixing the
//! time: due runs happen once, backfills skip what is done, schedule problems point at lines.

use crate::{Out, PROJECT_YAML, nightjar, project};

/// Daily at 03:00 Berlin; each run exports its interval to `exports/stamp_<ds_nodash>.csv`.
const DAILY: &str = r#"version: 1
schedule: "0 3 * * *"
timezone: Europe/Berlin
params:
  since: "{{ data_interval_start }}"
tasks:
  - id: stamp
    kind: sql
    output: staging.stamps
    sql: >
      SELECT {{ ds }} AS ds, {{ data_interval_start }} AS start_ts,
             {{ data_interval_end }} AS end_ts, {{ params.since }} AS since
  - id: out
    kind: export
    table: staging.stamps
    target: exports/stamp_{{ ds_nodash }}.csv
    format: csv
"#;

fn daily_project() -> tempfile::TempDir {
    project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/daily.yaml", DAILY),
        (
            "pipelines/manual.yaml",
            "version: 1\ntasks:\n  - id: a\n    kind: sql\n    output: s.a\n    sql: SELECT 1 AS x\n",
        ),
    ])
}

/// (ds, status) of every run, sorted by ds.
fn runs(dir: &std::path::Path) -> Vec<(String, String)> {
    let out = nightjar(dir, &["runs", "list", "--json"]);
    assert_eq!(out.code, 0, "{}", out.stderr);
    let list: Vec<serde_json::Value> = serde_json::from_str(&out.stdout).unwrap();
    let mut runs: Vec<(String, String)> = list
        .iter()
        .map(|r| {
            (
                r["ds"].as_str().unwrap().to_string(),
                r["status"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    runs.sort();
    runs
}

fn ok(out: Out) -> Out {
    assert_eq!(
        out.code, 0,
        "stdout:\n{}\nstderr:\n{}",
        out.stdout, out.stderr
    );
    out
}

#[test]
fn schedule_once_runs_the_due_interval_once() {
    let dir = daily_project();
    let now = "--now=2025-06-02T05:00:00Z"; // 07:00 in Berlin: the 03:00 run is due
    let out = ok(nightjar(dir.path(), &["schedule", "--once", now]));
    assert!(
        out.stdout.starts_with(
            "daily ds 2025-06-01 [2025-06-01T01:00:00Z, 2025-06-02T01:00:00Z): succeeded (run "
        ),
        "{}",
        out.stdout
    );
    assert_eq!(
        runs(dir.path()),
        vec![("2025-06-01".into(), "succeeded".into())]
    );
    let csv = std::fs::read_to_string(dir.path().join("exports/stamp_20250601.csv")).unwrap();
    assert_eq!(
        csv.lines().nth(1),
        Some("2025-06-01,2025-06-01T01:00:00Z,2025-06-02T01:00:00Z,2025-06-01T01:00:00Z")
    );

    // The same instant again: nothing is due, nothing runs.
    let out = ok(nightjar(dir.path(), &["schedule", "--once", now]));
    assert_eq!(out.stdout, "nothing due\n");
    assert_eq!(runs(dir.path()).len(), 1);

    // A day later the next interval is due, and only that one.
    let out = ok(nightjar(
        dir.path(),
        &["schedule", "--once", "--now=2025-06-03T05:00:00Z", "--json"],
    ));
    let line: serde_json::Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(line["ds"], "2025-06-02");
    assert_eq!(line["outcome"], "succeeded");
    assert_eq!(runs(dir.path()).len(), 2);
}

#[test]
fn backfill_runs_each_day_once_and_skips_them_after() {
    let dir = daily_project();
    let backfill = [
        "backfill",
        "daily",
        "--from",
        "2025-05-28",
        "--to",
        "2025-05-30",
    ];
    let out = ok(nightjar(dir.path(), &backfill));
    assert!(
        out.stdout
            .ends_with("backfill of `daily` from 2025-05-28 to 2025-05-30: 3 intervals, 3 ran, 0 already done, 0 not run\n"),
        "{}",
        out.stdout
    );
    let expected: Vec<(String, String)> = ["2025-05-28", "2025-05-29", "2025-05-30"]
        .iter()
        .map(|ds| (ds.to_string(), "succeeded".to_string()))
        .collect();
    assert_eq!(runs(dir.path()), expected);
    let csv = std::fs::read_to_string(dir.path().join("exports/stamp_20250529.csv")).unwrap();
    assert_eq!(
        csv.lines().nth(1),
        Some("2025-05-29,2025-05-29T01:00:00Z,2025-05-30T01:00:00Z,2025-05-29T01:00:00Z")
    );

    // Again: every interval is done, no new run.
    let out = ok(nightjar(dir.path(), &backfill));
    assert_eq!(
        out.stdout.matches(": skipped (run ").count(),
        3,
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("3 intervals, 0 ran, 3 already done"),
        "{}",
        out.stdout
    );
    assert_eq!(runs(dir.path()), expected);

    // `--rerun` runs them again as new runs.
    let mut rerun = backfill.to_vec();
    rerun.push("--rerun");
    ok(nightjar(dir.path(), &rerun));
    assert_eq!(runs(dir.path()).len(), 6);

    // The scheduler continues after the latest finished interval, not before it.
    let out = ok(nightjar(
        dir.path(),
        &["schedule", "--once", "--now=2025-05-31T05:00:00Z"],
    ));
    assert_eq!(out.stdout, "nothing due\n");
}

#[test]
fn schedule_list_shows_next_fire_times_across_dst() {
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/daily.yaml", DAILY),
        (
            "pipelines/night.yaml",
            "version: 1\nschedule: \"30 2 * * *\"\ntimezone: Europe/Berlin\ncatchup: true\ntasks: []\n",
        ),
        (
            "pipelines/hourly.yaml",
            "version: 1\nschedule: \"@hourly\"\ntasks: []\n",
        ),
        ("pipelines/manual.yaml", "version: 1\ntasks: []\n"),
    ]);
    // Saturday noon before the spring-forward night in Berlin.
    let out = ok(nightjar(
        dir.path(),
        &[
            "schedule",
            "--list",
            "--count",
            "2",
            "--now",
            "2025-03-29T12:00:00Z",
        ],
    ));
    insta::assert_snapshot!(out.stdout, @r"
      pipeline  schedule    next run               (UTC)                 ds          last finished
      daily     0 3 * * *   2025-03-30 03:00 CEST  2025-03-30T01:00:00Z  2025-03-29  -
      daily     0 3 * * *   2025-03-31 03:00 CEST  2025-03-31T01:00:00Z  2025-03-30  -
      hourly    @hourly     2025-03-29 13:00 UTC   2025-03-29T13:00:00Z  2025-03-29  -
      hourly    @hourly     2025-03-29 14:00 UTC   2025-03-29T14:00:00Z  2025-03-29  -
      night     30 2 * * *  2025-03-30 03:00 CEST  2025-03-30T01:00:00Z  2025-03-29  -
      night     30 2 * * *  2025-03-31 02:30 CEST  2025-03-31T00:30:00Z  2025-03-30  -
    ");
}

#[test]
fn bad_cron_timezone_and_template_are_reported_at_their_lines() {
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        (
            "pipelines/p.yaml",
            "version: 1\nschedule: \"30 25 * * *\"\ntimezone: Europe/Berln\nparams:\n  since: \"{{ data_interval_begin }}\"\ntasks: []\n",
        ),
        ("pipelines/q.yaml", "version: 1\ncatchup: true\ntasks: []\n"),
    ]);
    let out = nightjar(dir.path(), &["validate"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    insta::assert_snapshot!(out.normalized(dir.path()));
    for needle in [
        "pipelines/p.yaml:2:11",
        "invalid cron expression `30 25 * * *`",
        "pipelines/p.yaml:3:11",
        "unknown timezone `Europe/Berln`",
        "did you mean `Europe/Berlin`?",
        "pipelines/p.yaml:5:10",
        "unknown template variable `data_interval_begin`",
        "pipelines/q.yaml:2:10",
        "`catchup` needs a `schedule`",
    ] {
        assert!(
            out.stderr.contains(needle),
            "missing {needle:?} in {}",
            out.stderr
        );
    }
}

/// Starts `nightjar schedule --once` on a pipeline whose run takes a few seconds, waits until
/// its run state says running, sends SIGTERM, and returns (exit code, stdout, stderr).
fn sigterm_during_once(dir: &std::path::Path, extra: &[&str]) -> (i32, String, String) {
    use std::process::{Command, Stdio};
    let child = Command::new(env!("CARGO_BIN_EXE_nightjar"))
        .arg("--project")
        .arg(dir)
        .args(["schedule", "--once", "--now=2025-06-02T05:00:00Z"])
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    crate::sigterm_once_running(&child, &dir.join("warehouse/runs/slow"));
    let output = child.wait_with_output().expect("wait");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

const SLOW: &str = "version: 1
schedule: \"@daily\"
tasks:
  - id: generate
    kind: synthetic
    customers: 100000
    days: 30
    ground_truth: false
";

#[test]
fn sigterm_lets_the_running_interval_finish_within_the_grace_period() {
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/slow.yaml", SLOW),
    ]);
    let (code, stdout, stderr) = sigterm_during_once(dir.path(), &[]);
    assert_eq!(code, 0, "{stdout}\n{stderr}");
    assert!(stderr.contains("no new runs start"), "{stderr}");
    assert!(
        stdout.starts_with(
            "slow ds 2025-06-01 [2025-06-01T00:00:00Z, 2025-06-02T00:00:00Z): succeeded"
        ),
        "{stdout}"
    );
    assert_eq!(
        runs(dir.path()),
        vec![("2025-06-01".into(), "succeeded".into())]
    );
}

#[test]
fn sigterm_after_the_grace_period_cancels_and_the_next_pass_resumes_the_run() {
    let dir = project(&[
        ("nightjar.yaml", PROJECT_YAML),
        ("pipelines/slow.yaml", SLOW),
    ]);
    let (code, stdout, stderr) = sigterm_during_once(dir.path(), &["--grace", "0s"]);
    assert_eq!(code, 1, "{stdout}\n{stderr}");
    assert!(stdout.contains("): cancelled (run "), "{stdout}");
    assert_eq!(
        runs(dir.path()),
        vec![("2025-06-01".into(), "cancelled".into())]
    );
    let run_id = stdout
        .split("(run ")
        .nth(1)
        .unwrap()
        .trim_end()
        .trim_end_matches(')');

    let out = ok(nightjar(
        dir.path(),
        &["schedule", "--once", "--now=2025-06-02T05:00:00Z"],
    ));
    assert!(
        out.stdout
            .contains(&format!("): succeeded (resumed run {run_id})")),
        "{}",
        out.stdout
    );
    assert_eq!(
        runs(dir.path()),
        vec![("2025-06-01".into(), "succeeded".into())]
    );
}
