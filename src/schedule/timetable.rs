//! When a pipeline fires and which logical interval each run covers: a cron expression read
//! in an IANA timezone, on wall-clock time, so that a DST change never drops or doubles a fire.
//!
//! The `cron` crate evaluated directly in a timezone skips a local time that does not exist
//! (02:30 on the spring-forward day: no run that day) and yields both instants of a repeated
//! one (02:30 on the fall-back day: two runs). Here the expression is evaluated on naive
//! wall-clock time instead, and each wall-clock fire time is mapped to one instant: its first
//! occurrence when it is repeated, the moment the clocks jump when it is skipped. That mapping
//! never decreases, so fire instants stay in order; equal neighbours (two skipped times that
//! both land on the jump) are merged into one fire.

use chrono::{DateTime, Duration, NaiveDate, NaiveDateTime, NaiveTime, TimeZone, Utc};
use chrono_tz::Tz;

use crate::spec::template::DataInterval;

/// A pipeline's fire times: a cron expression in a timezone.
#[derive(Debug, Clone)]
pub struct Timetable {
    cron: cron::Schedule,
    tz: Tz,
}

/// One logical interval of a schedule, `[start, end)`; the run for it starts at `end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Interval {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    /// The start's date in the schedule's timezone: `{{ ds }}`.
    pub ds: NaiveDate,
}

impl Interval {
    /// Names the interval in object keys: its start, UTC, sortable.
    pub fn key(&self) -> String {
        self.start.format("%Y%m%dT%H%M%SZ").to_string()
    }

    pub fn data_interval(&self) -> DataInterval {
        DataInterval {
            start: self.start,
            end: self.end,
        }
    }
}

impl std::fmt::Display for Interval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use crate::spec::template::format_instant;
        write!(
            f,
            "ds {} [{}, {})",
            self.ds,
            format_instant(self.start),
            format_instant(self.end)
        )
    }
}

/// The widest DST shift in use is 2 hours; 3 hours of slack covers every fire time whose
/// instant differs from its naive wall-clock reading in either direction.
const SLACK: Duration = Duration::hours(3);

impl Timetable {
    pub fn new(cron: cron::Schedule, tz: Tz) -> Timetable {
        Timetable { cron, tz }
    }

    pub fn timezone(&self) -> Tz {
        self.tz
    }

    /// The instant a wall-clock time means in this timezone: its first occurrence if the
    /// clocks repeat it, the end of the gap if they skip it.
    fn instant(&self, local: NaiveDateTime) -> DateTime<Utc> {
        if let Some(t) = self.tz.from_local_datetime(&local).earliest() {
            return t.with_timezone(&Utc);
        }
        // In a gap: the first wall-clock minute after it that exists is when the clocks jump.
        (1..=180)
            .find_map(|m| {
                self.tz
                    .from_local_datetime(&(local + Duration::minutes(m)))
                    .earliest()
            })
            .map_or_else(|| local.and_utc(), |t| t.with_timezone(&Utc))
    }

    fn local(&self, t: DateTime<Utc>) -> NaiveDateTime {
        t.with_timezone(&self.tz).naive_local()
    }

    /// Fire instants strictly after `t`, in order, each once.
    pub fn fires_after(&self, t: DateTime<Utc>) -> impl Iterator<Item = DateTime<Utc>> + '_ {
        // Wall-clock fire times are carried as `Utc` values only because `cron` wants a zone.
        let from = Utc.from_utc_datetime(&(self.local(t) - SLACK));
        let mut last = t;
        self.cron.after(&from).filter_map(move |naive| {
            let fire = self.instant(naive.naive_utc());
            (fire > last).then(|| {
                last = fire;
                fire
            })
        })
    }

    pub fn next_fire(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.fires_after(t).next()
    }

    /// The last fire instant strictly before `t`.
    pub fn prev_fire(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let from = Utc.from_utc_datetime(&(self.local(t) + SLACK));
        self.cron
            .after(&from)
            .rev()
            .map(|naive| self.instant(naive.naive_utc()))
            .find(|fire| *fire < t)
    }

    /// The interval that ends at fire instant `end`.
    pub fn interval_ending(&self, end: DateTime<Utc>) -> Option<Interval> {
        let start = self.prev_fire(end)?;
        Some(self.interval(start, end))
    }

    fn interval(&self, start: DateTime<Utc>, end: DateTime<Utc>) -> Interval {
        Interval {
            start,
            end,
            ds: self.local(start).date(),
        }
    }

    /// The latest interval that has ended at `now` (its run is due).
    pub fn latest_interval(&self, now: DateTime<Utc>) -> Option<Interval> {
        let end = self.prev_fire(now + Duration::nanoseconds(1))?;
        self.interval_ending(end)
    }

    /// Intervals that end in `(after, upto]`, oldest first, at most the newest `limit`.
    pub fn intervals_ending_between(
        &self,
        after: DateTime<Utc>,
        upto: DateTime<Utc>,
        limit: usize,
    ) -> Vec<Interval> {
        let Some(mut start) = self.prev_fire(after + Duration::nanoseconds(1)) else {
            return vec![];
        };
        let mut out = std::collections::VecDeque::new();
        for end in self.fires_after(start).take_while(|end| *end <= upto) {
            if end > after {
                out.push_back(self.interval(start, end));
                if out.len() > limit {
                    out.pop_front();
                }
            }
            start = end;
        }
        out.into()
    }

    /// Intervals whose `ds` (start date in the timezone) is in `[from, to]`, oldest first.
    pub fn intervals_for_dates(&self, from: NaiveDate, to: NaiveDate) -> Vec<Interval> {
        let midnight = self.instant(from.and_time(NaiveTime::MIN));
        let mut starts = self.fires_after(midnight - Duration::nanoseconds(1));
        let mut out = Vec::new();
        let Some(mut start) = starts.next() else {
            return out;
        };
        for end in starts {
            if self.local(start).date() > to {
                break;
            }
            out.push(self.interval(start, end));
            start = end;
        }
        out
    }
}
