//! Schedules on a clock moved by hand and an in-memory store: no sleeping, every instant
//! asserted.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use chrono::{DateTime, Duration, NaiveDate, Utc};
use tokio::sync::{Notify, mpsc};
use tokio_util::sync::CancellationToken;

use super::clock::{Clock, ManualClock};
use super::lease::{self, Acquired, LeaseTiming};
use super::scheduler::{
    IntervalOutcome, IntervalResult, LaunchRequest, Launcher, RunOutcome, Scheduler,
};
use super::state::{self, IntervalRecord, IntervalStatus, Trigger};
use super::*;
use crate::stores::Storage;

fn t(text: &str) -> DateTime<Utc> {
    text.parse().unwrap()
}

fn d(text: &str) -> NaiveDate {
    text.parse().unwrap()
}

fn timetable(expr: &str, tz: Tz) -> Timetable {
    Timetable::new(parse_cron(expr).unwrap(), tz)
}

fn berlin_0230(catchup: bool, max_catchup: usize) -> PipelineSchedule {
    PipelineSchedule {
        name: "nightly".into(),
        expr: "30 2 * * *".into(),
        timetable: timetable("30 2 * * *", chrono_tz::Europe::Berlin),
        catchup,
        max_catchup,
    }
}

async fn memory_storage() -> Storage {
    let name = uuid::Uuid::new_v4().simple().to_string();
    Storage::open(
        &format!("memory://{name}"),
        &BTreeMap::new(),
        std::path::Path::new("/"),
    )
    .await
    .unwrap()
}

/// Records what it is asked to run. Gated: waits for `release` (or cancellation) after
/// telling `started`. Fails the ds in `fail`.
#[derive(Default)]
struct FakeLauncher {
    launched: Mutex<Vec<LaunchRequest>>,
    gated: bool,
    started: Option<mpsc::UnboundedSender<LaunchRequest>>,
    release: Notify,
    fail: Mutex<Option<NaiveDate>>,
}

impl FakeLauncher {
    fn launched(&self) -> Vec<LaunchRequest> {
        self.launched.lock().unwrap().clone()
    }
    fn ds(&self) -> Vec<NaiveDate> {
        self.launched().iter().map(|r| r.interval.ds).collect()
    }
}

#[async_trait::async_trait]
impl Launcher for FakeLauncher {
    async fn launch(&self, request: &LaunchRequest, cancel: CancellationToken) -> RunOutcome {
        self.launched.lock().unwrap().push(request.clone());
        if let Some(started) = &self.started {
            let _ = started.send(request.clone());
        }
        if self.gated {
            tokio::select! {
                _ = self.release.notified() => {}
                _ = cancel.cancelled() => return RunOutcome::Cancelled,
            }
        }
        if *self.fail.lock().unwrap() == Some(request.interval.ds) {
            return RunOutcome::Failed {
                message: "boom".into(),
                contract: false,
            };
        }
        RunOutcome::Succeeded
    }
}

fn scheduler(
    storage: &Storage,
    clock: &Arc<ManualClock>,
    launcher: &Arc<FakeLauncher>,
    holder: &str,
) -> Scheduler {
    Scheduler {
        storage: storage.clone(),
        clock: clock.clone(),
        launcher: launcher.clone(),
        timing: LeaseTiming::default(),
        holder: holder.into(),
        stop: CancellationToken::new(),
        cancel: CancellationToken::new(),
        report: None,
    }
}

/// A store, a clock at 2025-06-01 05:00 Berlin, and a launcher (gated or not) that reports
/// each run it starts on the returned channel.
async fn with_started(
    gated: bool,
) -> (
    Storage,
    Arc<ManualClock>,
    Arc<FakeLauncher>,
    mpsc::UnboundedReceiver<LaunchRequest>,
) {
    let (tx, started) = mpsc::unbounded_channel();
    let launcher = Arc::new(FakeLauncher {
        gated,
        started: Some(tx),
        ..Default::default()
    });
    let clock = Arc::new(ManualClock::new(t("2025-06-01T03:00:00Z")));
    (memory_storage().await, clock, launcher, started)
}

fn ran(results: &[IntervalResult]) -> usize {
    results
        .iter()
        .filter(|r| matches!(r.outcome, IntervalOutcome::Ran { .. }))
        .count()
}

#[test]
fn cron_forms_and_shortcuts_parse() {
    assert!(parse_cron("30 2 * * *").is_ok());
    assert!(parse_cron("0 30 2 * * *").is_ok());
    assert!(parse_cron("0 30 2 * * * 2025").is_ok());
    for shortcut in ["@daily", "@hourly", "@weekly", "@monthly", "@yearly"] {
        assert!(parse_cron(shortcut).is_ok(), "{shortcut}");
    }
    assert!(parse_cron("61 2 * * *").is_err());
    assert!(parse_cron("every night").is_err());
    assert!(parse_timezone("Europe/Berlin").is_ok());
    assert!(parse_timezone("Europe/Berln").is_err());
}

#[test]
fn spring_forward_fires_once_when_the_clocks_jump() {
    // 2025-03-30 in Berlin: 02:00 CET jumps to 03:00 CEST, so 02:30 does not exist.
    let tt = timetable("30 2 * * *", chrono_tz::Europe::Berlin);
    let fires: Vec<_> = tt.fires_after(t("2025-03-28T12:00:00Z")).take(4).collect();
    assert_eq!(
        fires,
        vec![
            t("2025-03-29T01:30:00Z"), // 02:30 CET
            t("2025-03-30T01:00:00Z"), // 03:00 CEST, the moment 02:30 is skipped
            t("2025-03-31T00:30:00Z"), // 02:30 CEST
            t("2025-04-01T00:30:00Z"),
        ]
    );
    let interval = tt.interval_ending(t("2025-03-31T00:30:00Z")).unwrap();
    assert_eq!(interval.start, t("2025-03-30T01:00:00Z"));
    assert_eq!(interval.ds, d("2025-03-30"));
    assert_eq!(
        tt.latest_interval(t("2025-03-30T01:00:00Z")).unwrap().end,
        t("2025-03-30T01:00:00Z")
    );
    assert_eq!(
        tt.latest_interval(t("2025-03-30T00:59:59Z")).unwrap().end,
        t("2025-03-29T01:30:00Z")
    );
    // Every wall-clock time in the skipped hour lands on the jump, once.
    let hourly = timetable("*/30 * * * *", chrono_tz::Europe::Berlin);
    let fires: Vec<_> = hourly
        .fires_after(t("2025-03-30T00:15:00Z"))
        .take(3)
        .collect();
    assert_eq!(
        fires,
        vec![
            t("2025-03-30T00:30:00Z"), // 01:30 CET
            t("2025-03-30T01:00:00Z"), // 02:00 and 02:30 (skipped) and 03:00 CEST
            t("2025-03-30T01:30:00Z"), // 03:30 CEST
        ]
    );
}

#[test]
fn fall_back_fires_once_at_the_first_occurrence() {
    // 2025-10-26 in Berlin: 03:00 CEST goes back to 02:00 CET, so 02:30 happens twice.
    let tt = timetable("30 2 * * *", chrono_tz::Europe::Berlin);
    let fires: Vec<_> = tt.fires_after(t("2025-10-24T12:00:00Z")).take(3).collect();
    assert_eq!(
        fires,
        vec![
            t("2025-10-25T00:30:00Z"), // 02:30 CEST
            t("2025-10-26T00:30:00Z"), // the first 02:30 (CEST)
            t("2025-10-27T01:30:00Z"), // 02:30 CET
        ]
    );
    // In the repeated hour, the second 02:30 is not a fire.
    assert_eq!(
        tt.next_fire(t("2025-10-26T00:45:00Z")),
        Some(t("2025-10-27T01:30:00Z"))
    );
    assert_eq!(
        tt.prev_fire(t("2025-10-26T01:45:00Z")),
        Some(t("2025-10-26T00:30:00Z"))
    );
    // The interval across the change is 25 hours long.
    let interval = tt.interval_ending(t("2025-10-27T01:30:00Z")).unwrap();
    assert_eq!(interval.end - interval.start, Duration::hours(25));
    assert_eq!(interval.ds, d("2025-10-26"));
}

#[test]
fn backfill_dates_pick_intervals_by_local_start_date() {
    let tt = timetable("30 2 * * *", chrono_tz::Europe::Berlin);
    let intervals = tt.intervals_for_dates(d("2025-03-29"), d("2025-03-31"));
    let ds: Vec<_> = intervals.iter().map(|i| i.ds).collect();
    assert_eq!(ds, vec![d("2025-03-29"), d("2025-03-30"), d("2025-03-31")]);
    assert_eq!(intervals[1].start, t("2025-03-30T01:00:00Z"));
    assert_eq!(intervals[1].end, t("2025-03-31T00:30:00Z"));
    let hourly = timetable("@hourly", Tz::UTC);
    assert_eq!(
        hourly
            .intervals_for_dates(d("2025-06-01"), d("2025-06-02"))
            .len(),
        48
    );
}

/// A scheduler polled every 10 minutes across a DST night runs exactly one interval a day.
async fn one_run_per_day_across(start: &str, expected_ends: &[&str]) {
    let storage = memory_storage().await;
    let clock = Arc::new(ManualClock::new(t(start)));
    let launcher = Arc::new(FakeLauncher::default());
    let sched = scheduler(&storage, &clock, &launcher, "a");
    let pipelines = [berlin_0230(false, 30)];
    for _ in 0..(4 * 24 * 6) {
        sched.run_once(&pipelines).await;
        clock.advance(Duration::minutes(10));
    }
    let ends: Vec<_> = launcher.launched().iter().map(|r| r.interval.end).collect();
    let expected: Vec<_> = expected_ends.iter().map(|e| t(e)).collect();
    assert_eq!(ends, expected);
}

#[tokio::test]
async fn scheduler_runs_once_a_day_across_spring_forward() {
    one_run_per_day_across(
        "2025-03-28T12:00:00Z",
        &[
            "2025-03-28T01:30:00Z", // the latest interval when first started
            "2025-03-29T01:30:00Z",
            "2025-03-30T01:00:00Z",
            "2025-03-31T00:30:00Z",
            "2025-04-01T00:30:00Z",
        ],
    )
    .await;
}

#[tokio::test]
async fn scheduler_runs_once_a_day_across_fall_back() {
    one_run_per_day_across(
        "2025-10-24T12:00:00Z",
        &[
            "2025-10-24T00:30:00Z",
            "2025-10-25T00:30:00Z",
            "2025-10-26T00:30:00Z",
            "2025-10-27T01:30:00Z",
            "2025-10-28T01:30:00Z",
        ],
    )
    .await;
}

/// Runs once at 2025-06-01 05:00 Berlin, is down for 3 days, runs again; returns the ds of
/// every run after the outage, and how many a further pass ran.
async fn after_outage(catchup: bool, max_catchup: usize) -> (Vec<NaiveDate>, usize) {
    let storage = memory_storage().await;
    let clock = Arc::new(ManualClock::new(t("2025-06-01T03:00:00Z")));
    let launcher = Arc::new(FakeLauncher::default());
    let sched = scheduler(&storage, &clock, &launcher, "a");
    let pipelines = [berlin_0230(catchup, max_catchup)];
    assert_eq!(ran(&sched.run_once(&pipelines).await), 1);
    assert_eq!(launcher.ds(), vec![d("2025-05-31")]);
    clock.advance(Duration::days(3));
    sched.run_once(&pipelines).await;
    let after = launcher.ds()[1..].to_vec();
    let again = ran(&sched.run_once(&pipelines).await);
    (after, again)
}

#[tokio::test]
async fn catchup_off_runs_only_the_latest_missed_interval() {
    let (ds, again) = after_outage(false, 30).await;
    assert_eq!(ds, vec![d("2025-06-03")]);
    assert_eq!(again, 0);
}

#[tokio::test]
async fn catchup_on_runs_every_missed_interval_oldest_first() {
    let (ds, again) = after_outage(true, 30).await;
    assert_eq!(ds, vec![d("2025-06-01"), d("2025-06-02"), d("2025-06-03")]);
    assert_eq!(again, 0);
    let (ds, _) = after_outage(true, 2).await;
    assert_eq!(ds, vec![d("2025-06-02"), d("2025-06-03")]);
}

#[tokio::test]
async fn two_schedulers_racing_run_an_interval_once() {
    let storage = memory_storage().await;
    let clock = Arc::new(ManualClock::new(t("2025-06-01T03:00:00Z")));
    let (la, lb) = (
        Arc::new(FakeLauncher::default()),
        Arc::new(FakeLauncher::default()),
    );
    let a = scheduler(&storage, &clock, &la, "a");
    let b = scheduler(&storage, &clock, &lb, "b");
    let pipelines = [berlin_0230(false, 30)];
    let (ra, rb) = tokio::join!(a.run_once(&pipelines), b.run_once(&pipelines));
    assert_eq!(la.launched().len() + lb.launched().len(), 1);
    assert_eq!(ran(&ra) + ran(&rb), 1);
}

#[tokio::test]
async fn a_second_scheduler_skips_an_interval_held_by_the_first() {
    let (storage, clock, la, mut started) = with_started(true).await;
    let lb = Arc::new(FakeLauncher::default());
    let a = scheduler(&storage, &clock, &la, "a");
    let b = scheduler(&storage, &clock, &lb, "b");
    let pipelines = [berlin_0230(false, 30)];
    let (ra, rb) = tokio::join!(a.run_once(&pipelines), async {
        started.recv().await.unwrap();
        // The run takes longer than the lease TTL; A's heartbeats keep the lease. (Each
        // step lets A's side of the join run its heartbeat before B looks.)
        for _ in 0..10 {
            clock.advance(Duration::seconds(10));
            for _ in 0..10 {
                tokio::task::yield_now().await;
            }
        }
        let rb = b.run_once(&pipelines).await;
        la.release.notify_one();
        rb
    });
    assert_eq!(ran(&ra), 1);
    assert_eq!(lb.launched().len(), 0);
    match &rb[..] {
        [r] => match &r.outcome {
            IntervalOutcome::Held { holder, .. } => assert_eq!(holder, "a"),
            other => panic!("expected held, got {other:?}"),
        },
        other => panic!("expected one result, got {other:?}"),
    }
    // Once A finished, B finds nothing due.
    assert!(b.run_once(&pipelines).await.is_empty());
    assert_eq!(lb.launched().len(), 0);
}

#[tokio::test]
async fn a_crashed_holders_lease_expires_and_its_run_is_resumed() {
    let storage = memory_storage().await;
    let clock = Arc::new(ManualClock::new(t("2025-06-01T03:00:00Z")));
    let pipelines = [berlin_0230(false, 30)];
    let interval = pipelines[0].timetable.latest_interval(clock.now()).unwrap();
    // A process took the lease, recorded its run, and died.
    let dead = lease::acquire(
        &storage,
        clock.as_ref(),
        LeaseTiming::default(),
        "dead",
        "nightly",
        &interval,
    )
    .await
    .unwrap();
    assert!(matches!(dead, Acquired::Yes(_)));
    state::save(
        &storage,
        &IntervalRecord {
            pipeline: "nightly".into(),
            ds: interval.ds,
            start: interval.start,
            end: interval.end,
            status: IntervalStatus::Running,
            run_id: "run-of-the-dead".into(),
            trigger: Trigger::Schedule,
            updated_at: clock.now(),
        },
    )
    .await
    .unwrap();

    let launcher = Arc::new(FakeLauncher::default());
    let sched = scheduler(&storage, &clock, &launcher, "b");
    let results = sched.run_once(&pipelines).await;
    assert!(
        matches!(&results[0].outcome, IntervalOutcome::Held { holder, until } if holder == "dead" && *until == t("2025-06-01T03:01:00Z")),
        "{results:?}"
    );
    clock.advance(Duration::seconds(59));
    assert_eq!(ran(&sched.run_once(&pipelines).await), 0);
    clock.advance(Duration::seconds(2));
    assert_eq!(ran(&sched.run_once(&pipelines).await), 1);
    let launched = launcher.launched();
    assert_eq!(launched.len(), 1);
    assert_eq!(launched[0].run_id, "run-of-the-dead");
    assert!(launched[0].resume);
    let record = state::load(&storage, "nightly", &interval)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, IntervalStatus::Succeeded);
}

#[tokio::test]
async fn heartbeats_keep_a_lease_and_a_late_holder_learns_it_lost_it() {
    let storage = memory_storage().await;
    let clock = ManualClock::new(t("2025-06-01T03:00:00Z"));
    let timing = LeaseTiming::default();
    let interval = berlin_0230(false, 1)
        .timetable
        .latest_interval(clock.now())
        .unwrap();
    let take = |holder: &'static str| {
        lease::acquire(&storage, &clock, timing, holder, "nightly", &interval)
    };
    let Acquired::Yes(mut held) = take("a").await.unwrap() else {
        panic!("a should get the free lease");
    };
    clock.advance(Duration::seconds(50));
    assert!(held.renew(&storage, &clock, timing.ttl).await.unwrap());
    clock.advance(Duration::seconds(50)); // 100 s after acquiring, 50 s after renewing
    assert!(matches!(take("b").await.unwrap(), Acquired::HeldBy { holder, .. } if holder == "a"));
    clock.advance(Duration::seconds(11)); // a missed its heartbeats: expired
    let Acquired::Yes(taken) = take("b").await.unwrap() else {
        panic!("b should take the expired lease");
    };
    assert_eq!(taken.record().generation, 1);
    assert!(!held.renew(&storage, &clock, timing.ttl).await.unwrap());
    assert!(matches!(take("c").await.unwrap(), Acquired::HeldBy { holder, .. } if holder == "b"));
    // A released lease is free at once, even to a machine whose clock is behind.
    taken.release(&storage, &clock).await.unwrap();
    clock.advance(Duration::seconds(-30));
    assert!(matches!(take("c").await.unwrap(), Acquired::Yes(l) if l.record().generation == 2));
}

#[tokio::test]
async fn shutdown_lets_the_running_run_finish_and_starts_no_more() {
    let (storage, clock, launcher, mut started) = with_started(true).await;
    let sched = scheduler(&storage, &clock, &launcher, "a");
    let pipelines = [berlin_0230(true, 30)];
    // First pass: one interval. Then 3 days of downtime: 3 due with catchup.
    let (first, ()) = tokio::join!(sched.run_once(&pipelines), async {
        started.recv().await.unwrap();
        launcher.release.notify_one();
    });
    assert_eq!(ran(&first), 1);
    clock.advance(Duration::days(3));
    let (results, ()) = tokio::join!(sched.run_once(&pipelines), async {
        started.recv().await.unwrap();
        sched.stop.cancel();
        launcher.release.notify_one();
    });
    let outcomes: Vec<_> = results.iter().map(|r| &r.outcome).collect();
    assert!(matches!(
        outcomes[0],
        IntervalOutcome::Ran {
            outcome: RunOutcome::Succeeded,
            ..
        }
    ));
    assert_eq!(
        outcomes[1..],
        [&IntervalOutcome::NotStarted, &IntervalOutcome::NotStarted]
    );
    assert_eq!(launcher.launched().len(), 2);
}

#[tokio::test]
async fn cancelled_runs_are_recorded_and_resumed_by_the_next_pass() {
    let (storage, clock, launcher, mut started) = with_started(true).await;
    let sched = scheduler(&storage, &clock, &launcher, "a");
    let pipelines = [berlin_0230(false, 30)];
    let (results, ()) = tokio::join!(sched.run_once(&pipelines), async {
        started.recv().await.unwrap();
        sched.cancel.cancel(); // the grace period is over
    });
    assert!(matches!(
        &results[0].outcome,
        IntervalOutcome::Ran {
            outcome: RunOutcome::Cancelled,
            ..
        }
    ));
    let interval = results[0].interval;
    let record = state::load(&storage, "nightly", &interval)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(record.status, IntervalStatus::Cancelled);

    let next = Arc::new(FakeLauncher::default());
    let restarted = scheduler(&storage, &clock, &next, "b");
    assert_eq!(ran(&restarted.run_once(&pipelines).await), 1);
    let resumed = &next.launched()[0];
    assert_eq!(
        (resumed.run_id.as_str(), resumed.resume, resumed.interval),
        (record.run_id.as_str(), true, interval)
    );
}

#[tokio::test]
async fn the_long_running_scheduler_fires_as_the_clock_moves() {
    let (storage, clock, launcher, mut started) = with_started(false).await;
    let sched = scheduler(&storage, &clock, &launcher, "a");
    let pipelines = [berlin_0230(false, 30)];
    tokio::join!(sched.run_forever(&pipelines), async {
        started.recv().await.unwrap();
        for _ in 0..3 {
            clock.advance(Duration::hours(12));
            clock.advance(Duration::hours(12));
            started.recv().await.unwrap();
        }
        sched.stop.cancel();
    });
    assert_eq!(
        launcher.ds(),
        vec![
            d("2025-05-31"),
            d("2025-06-01"),
            d("2025-06-02"),
            d("2025-06-03")
        ]
    );
}

#[tokio::test]
async fn backfill_runs_each_interval_once_resumes_failures_and_reruns_on_request() {
    let storage = memory_storage().await;
    let clock = Arc::new(ManualClock::new(t("2025-07-01T00:00:00Z")));
    let launcher = Arc::new(FakeLauncher::default());
    *launcher.fail.lock().unwrap() = Some(d("2025-06-02"));
    let sched = scheduler(&storage, &clock, &launcher, "a");
    let daily = PipelineSchedule {
        name: "p".into(),
        expr: "@daily".into(),
        timetable: timetable("@daily", Tz::UTC),
        catchup: false,
        max_catchup: 30,
    };
    let (from, to) = (d("2025-06-01"), d("2025-06-03"));
    let results = sched.backfill(&daily, from, to, 2, false).await;
    assert_eq!(ran(&results), 3);
    assert_eq!(launcher.ds(), vec![from, d("2025-06-02"), to]);
    let failed_run = launcher.launched()[1].run_id.clone();
    assert!(matches!(
        &results[1].outcome,
        IntervalOutcome::Ran {
            outcome: RunOutcome::Failed { .. },
            ..
        }
    ));

    // Again: the succeeded ones are skipped, the failed one resumed with its run id.
    *launcher.fail.lock().unwrap() = None;
    let results = sched.backfill(&daily, from, to, 2, false).await;
    assert_eq!(ran(&results), 1);
    let resumed = launcher.launched()[3].clone();
    assert_eq!((resumed.run_id, resumed.resume), (failed_run, true));
    assert!(matches!(
        &results[0].outcome,
        IntervalOutcome::Done {
            status: IntervalStatus::Succeeded,
            ..
        }
    ));

    assert_eq!(ran(&sched.backfill(&daily, from, to, 2, false).await), 0);
    let results = sched.backfill(&daily, from, to, 1, true).await;
    assert_eq!(ran(&results), 3);
    let reruns = &launcher.launched()[4..];
    assert!(reruns.iter().all(|r| !r.resume));
    // The scheduler then continues after the latest backfilled interval.
    let scheduled = PipelineSchedule {
        catchup: true,
        ..daily
    };
    clock.set(t("2025-06-05T00:30:00Z"));
    sched.run_once(&[scheduled]).await;
    assert_eq!(launcher.ds()[7..], [d("2025-06-04")]);
}

#[tokio::test]
async fn a_lease_whose_process_is_gone_from_this_machine_is_taken_over_at_once() {
    let storage = memory_storage().await;
    let clock = ManualClock::new(t("2025-06-01T03:00:00Z"));
    let timing = LeaseTiming::default();
    let key = lease::LeaseKey::run("nightly", t("2025-06-01T00:00:00Z"));
    let take = |holder: &'static str| lease::acquire_key(&storage, &clock, timing, holder, &key);
    let Acquired::Yes(held) = take("a").await.unwrap() else {
        panic!("a should get the free lease");
    };
    // Its holder (this process) is alive: b waits for the expiry.
    assert!(matches!(take("b").await.unwrap(), Acquired::HeldBy { holder, .. } if holder == "a"));
    let Some(me) = held.record().process.clone() else {
        return; // not Linux: leases only expire
    };
    // The same record, as written by a process of this machine that has exited since.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let mut record = held.record().clone();
    record.process = Some(lease::HolderProcess {
        pid: child.id(),
        ..me
    });
    storage
        .put(
            "locks/nightly/0000000000.json",
            serde_json::to_vec(&record).unwrap().into(),
        )
        .await
        .unwrap();
    assert!(matches!(take("b").await.unwrap(), Acquired::Yes(l) if l.record().generation == 1));
}
