//! Schedules: cron expressions in IANA timezones, the logical interval of each run, leases on
//! the object store so no interval runs twice, catch-up after downtime, and backfills.
//!
//! `timetable` turns `schedule:` + `timezone:` into fire instants and intervals (pure);
//! `clock` is the injected time; `lease` and `state` keep what must survive a restart under
//! `schedule/<pipeline>/` of the storage root (through `stores::Storage`, the IO boundary);
//! `scheduler` decides what is due and runs it through a `Launcher`.

pub mod clock;
pub mod lease;
pub mod scheduler;
pub mod state;
pub mod timetable;

#[cfg(test)]
mod tests;

use std::str::FromStr;

use chrono_tz::Tz;

use crate::diag::{Diagnostic, did_you_mean};
use crate::spec::yaml::Node;
use crate::spec::{PipelineHeader, PipelineSpec, SourceFile};
pub use timetable::{Interval, Timetable};

/// `max_catchup` when a pipeline does not set it.
pub const DEFAULT_MAX_CATCHUP: u32 = 30;

/// Parses a 5-field crontab expression, the `cron` crate's 6/7-field form (with seconds),
/// or a shortcut (`@daily`, `@hourly`, `@weekly`, `@monthly`, `@yearly`).
pub fn parse_cron(expr: &str) -> Result<cron::Schedule, String> {
    let expr = expr.trim();
    let normalized = match expr {
        "@yearly" | "@annually" => "0 0 0 1 1 *".to_string(),
        "@monthly" => "0 0 0 1 * *".to_string(),
        "@weekly" => "0 0 0 * * Sun".to_string(),
        "@daily" | "@midnight" => "0 0 0 * * *".to_string(),
        "@hourly" => "0 0 * * * *".to_string(),
        _ if expr.split_whitespace().count() == 5 => format!("0 {expr}"),
        _ => expr.to_string(),
    };
    // The crate's message repeats the normalized expression with a caret line; its last line
    // says what is wrong.
    cron::Schedule::from_str(&normalized).map_err(|e| {
        let text = e.to_string();
        let last = text.lines().rev().find(|l| !l.trim().is_empty());
        last.unwrap_or(&text).trim().to_string()
    })
}

/// An IANA timezone name (`Europe/Berlin`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim()).map_err(|_| format!("unknown timezone `{name}`"))
}

/// Checks `schedule`, `timezone`, `catchup` and `max_catchup` of a pipeline file; each
/// problem is reported at its line. Returns whether all were valid.
pub fn check_header(
    header: &PipelineHeader,
    root: &Node,
    file: &SourceFile,
    diags: &mut Vec<Diagnostic>,
) -> bool {
    let before = diags.len();
    let pos = |key: &str| root.get(key).map_or(root.pos, |n| n.pos);
    if let Some(schedule) = &header.schedule
        && let Err(e) = parse_cron(schedule)
    {
        diags.push(
            file.diag(
                pos("schedule"),
                format!("invalid cron expression `{schedule}`: {e}"),
            )
            .with_hint("write 5 fields (minute hour day-of-month month day-of-week), e.g. `30 2 * * *`, or `@daily`"),
        );
    }
    if let Some(timezone) = &header.timezone
        && let Err(e) = parse_timezone(timezone)
    {
        let names = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name());
        let hint = match did_you_mean(timezone, names) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "use an IANA name such as `Europe/Berlin` or `UTC`".to_string(),
        };
        diags.push(file.diag(pos("timezone"), e).with_hint(hint));
    }
    if header.schedule.is_none() {
        for key in ["catchup", "max_catchup"] {
            if root.get(key).is_some() {
                diags.push(file.diag(pos(key), format!("`{key}` needs a `schedule`")));
            }
        }
    }
    if header.max_catchup == Some(0) {
        diags.push(file.diag(pos("max_catchup"), "`max_catchup` must be at least 1"));
    }
    diags.len() == before
}

/// A pipeline as the scheduler sees it.
#[derive(Debug, Clone)]
pub struct PipelineSchedule {
    pub name: String,
    /// The expression as written (`@daily` when a backfill defaults it).
    pub expr: String,
    pub timetable: Timetable,
    pub catchup: bool,
    pub max_catchup: usize,
}

impl PipelineSchedule {
    /// The schedule of a loaded (already checked) pipeline; `None` if it has none.
    pub fn of(pipeline: &PipelineSpec) -> Result<Option<PipelineSchedule>, String> {
        match &pipeline.header.schedule {
            None => Ok(None),
            Some(expr) => PipelineSchedule::build(pipeline, expr).map(Some),
        }
    }

    /// The schedule a backfill walks: the pipeline's own, or daily at midnight in its
    /// timezone (one interval per `ds`, as `nightjar run --ds` has).
    pub fn for_backfill(pipeline: &PipelineSpec) -> Result<PipelineSchedule, String> {
        let expr = pipeline.header.schedule.as_deref().unwrap_or("@daily");
        PipelineSchedule::build(pipeline, expr)
    }

    fn build(pipeline: &PipelineSpec, expr: &str) -> Result<PipelineSchedule, String> {
        let cron = parse_cron(expr).map_err(|e| format!("pipeline `{}`: {e}", pipeline.name))?;
        let tz = match &pipeline.header.timezone {
            Some(name) => parse_timezone(name)?,
            None => Tz::UTC,
        };
        Ok(PipelineSchedule {
            name: pipeline.name.clone(),
            expr: expr.to_string(),
            timetable: Timetable::new(cron, tz),
            catchup: pipeline.header.catchup,
            max_catchup: pipeline.header.max_catchup.unwrap_or(DEFAULT_MAX_CATCHUP) as usize,
        })
    }
}
