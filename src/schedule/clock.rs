//! The scheduler's notion of now, injected so that tests move time by hand instead of sleeping.

use std::sync::Mutex;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use tokio::sync::watch;

/// Where the scheduler reads the time and waits for it.
#[async_trait]
pub trait Clock: Send + Sync {
    fn now(&self) -> DateTime<Utc>;
    /// Returns once `now() >= t`.
    async fn sleep_until(&self, t: DateTime<Utc>);
}

/// The system clock, optionally shifted (`--now` starts it at another instant).
#[derive(Debug, Clone, Default)]
pub struct SystemClock {
    offset: chrono::Duration,
}

impl SystemClock {
    /// A clock that reads `start` now and then runs at the system clock's pace.
    pub fn starting_at(start: DateTime<Utc>) -> SystemClock {
        SystemClock {
            offset: start - Utc::now(),
        }
    }
}

/// Longest single wait: a suspended laptop or a stepped system clock is noticed within this.
const MAX_WAIT: std::time::Duration = std::time::Duration::from_secs(60);

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }

    async fn sleep_until(&self, t: DateTime<Utc>) {
        loop {
            let Ok(left) = (t - self.now()).to_std() else {
                return;
            };
            if left.is_zero() {
                return;
            }
            tokio::time::sleep(left.min(MAX_WAIT)).await;
        }
    }
}

/// A clock that moves only when told to (tests): sleepers wake when it passes their time.
pub struct ManualClock {
    now: watch::Sender<DateTime<Utc>>,
    /// Serializes `advance` so concurrent callers add up.
    lock: Mutex<()>,
}

impl ManualClock {
    pub fn new(start: DateTime<Utc>) -> ManualClock {
        ManualClock {
            now: watch::Sender::new(start),
            lock: Mutex::new(()),
        }
    }

    pub fn set(&self, t: DateTime<Utc>) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        self.now.send_replace(t);
    }

    pub fn advance(&self, by: chrono::Duration) {
        let _guard = self.lock.lock().unwrap_or_else(|p| p.into_inner());
        let t = *self.now.borrow() + by;
        self.now.send_replace(t);
    }
}

#[async_trait]
impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        *self.now.borrow()
    }

    async fn sleep_until(&self, t: DateTime<Utc>) {
        let mut rx = self.now.subscribe();
        while *rx.borrow_and_update() < t {
            if rx.changed().await.is_err() {
                return;
            }
        }
    }
}
