//! Leases: at most one process runs a pipeline's interval at a time, even across machines
//! sharing one object store, without a scheduler database.
//!
//! A lease is a sequence of generation objects `schedule/<pipeline>/leases/<interval>/<gen>.json`.
//! Each generation is created with put-if-absent (`PutMode::Create`: a hard link on a local
//! filesystem, `If-None-Match: *` on S3, a create-only precondition on GCS and Azure), so of
//! two processes that race for the same generation exactly one wins. Only the holder rewrites
//! its generation afterwards: to push its expiry forward (heartbeat) and to expire it at once
//! (release). A process that finds the newest generation expired creates the next one; that
//! is how a crashed holder's lease is taken over. Generations are never deleted: a deleted
//! one could be created again by a process that listed before the delete, and two
//! processes would hold the lease.
//!
//! Like every lease without fencing tokens, this relies on the holder renewing before its
//! expiry: a holder stalled for longer than the TTL (or a clock more than the TTL off) can
//! overlap with the next holder until its next heartbeat notices the newer generation and
//! cancels its run. The TTL is therefore several heartbeats long.

use std::future::Future;

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::Interval;
use super::clock::Clock;
use crate::stores::{Result, Storage, StoreError};

/// Lease timing.
#[derive(Debug, Clone, Copy)]
pub struct LeaseTiming {
    /// A lease not renewed for this long is free for others.
    pub ttl: Duration,
    /// How often the holder renews it.
    pub heartbeat: Duration,
}

impl Default for LeaseTiming {
    fn default() -> Self {
        LeaseTiming {
            ttl: Duration::seconds(60),
            heartbeat: Duration::seconds(15),
        }
    }
}

/// One generation of a lease, as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeaseRecord {
    pub holder: String,
    pub pipeline: String,
    pub interval_start: DateTime<Utc>,
    pub generation: u64,
    pub acquired_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Given up by its holder: free at once, whatever the clocks of other machines say.
    #[serde(default)]
    pub released: bool,
    /// The holder's process, when it could be identified.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub process: Option<HolderProcess>,
}

/// A lease this process holds.
#[derive(Debug, Clone)]
pub struct Lease {
    dir: String,
    record: LeaseRecord,
}

/// The result of trying to take a lease.
#[derive(Debug)]
pub enum Acquired {
    Yes(Lease),
    /// Someone else holds it until `expires_at`.
    HeldBy {
        holder: String,
        expires_at: DateTime<Utc>,
    },
}

/// What a lease guards, and where its generations live.
#[derive(Debug, Clone)]
pub struct LeaseKey {
    dir: String,
    pipeline: String,
    interval_start: DateTime<Utc>,
}

impl LeaseKey {
    /// One scheduled interval of a pipeline: `schedule/<pipeline>/leases/<interval>/`.
    pub fn interval(pipeline: &str, interval: &Interval) -> LeaseKey {
        LeaseKey {
            dir: format!("schedule/{pipeline}/leases/{}", interval.key()),
            pipeline: pipeline.to_string(),
            interval_start: interval.start,
        }
    }

    /// The run lock of a pipeline, whatever interval its run covers: `locks/<pipeline>/`.
    /// `interval_start` is only recorded, to tell a waiting user what is running.
    pub fn run(pipeline: &str, interval_start: DateTime<Utc>) -> LeaseKey {
        LeaseKey {
            dir: format!("locks/{pipeline}"),
            pipeline: pipeline.to_string(),
            interval_start,
        }
    }
}

/// The process a lease record was written by, so another process on the same machine can
/// tell that a holder has died without waiting for its expiry (a `nightjar run` killed by
/// the OOM killer or a deploy, resumed at once by the next one).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HolderProcess {
    pub host: String,
    /// `/proc/self/ns/pid` (`pid:[4026531836]`): pids are only comparable inside one pid
    /// namespace, and two containers on one host can share a host name.
    pub pid_namespace: String,
    pub pid: u32,
}

impl HolderProcess {
    /// This process, where it can be identified (Linux; elsewhere leases only expire).
    fn current() -> Option<HolderProcess> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
        let pid_namespace = std::fs::read_link("/proc/self/ns/pid").ok()?;
        Some(HolderProcess {
            host: host.trim().to_string(),
            pid_namespace: pid_namespace.display().to_string(),
            pid: std::process::id(),
        })
    }

    /// Whether this holder is known to be gone: same host and pid namespace as us, and no
    /// such process. A reused pid only makes us wait for the expiry, the safe direction.
    fn is_gone(&self) -> bool {
        HolderProcess::current().is_some_and(|me| {
            me.host == self.host
                && me.pid_namespace == self.pid_namespace
                && me.pid != self.pid
                && !std::path::Path::new(&format!("/proc/{}", self.pid)).exists()
        })
    }
}

fn generation_path(dir: &str, generation: u64) -> String {
    format!("{dir}/{generation:010}.json")
}

/// The newest generation under `dir`, if any.
async fn newest(storage: &Storage, dir: &str) -> Result<Option<(u64, Option<LeaseRecord>)>> {
    let newest = storage
        .list(dir)
        .await?
        .iter()
        .filter_map(|p| p.rsplit('/').next()?.strip_suffix(".json")?.parse().ok())
        .max();
    let Some(generation) = newest else {
        return Ok(None);
    };
    let path = generation_path(dir, generation);
    let record = match storage.get(&path).await? {
        Some(bytes) => Some(
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json { path, source })?,
        ),
        None => None,
    };
    Ok(Some((generation, record)))
}

async fn write(storage: &Storage, dir: &str, record: &LeaseRecord, create: bool) -> Result<bool> {
    let path = generation_path(dir, record.generation);
    let json = serde_json::to_vec_pretty(record).map_err(|source| StoreError::Json {
        path: path.clone(),
        source,
    })?;
    if create {
        storage.put_if_absent(&path, Bytes::from(json)).await
    } else {
        storage.put(&path, Bytes::from(json)).await.map(|()| true)
    }
}

/// Takes the lease of `pipeline`'s `interval` for `holder`, unless a live one exists.
pub async fn acquire(
    storage: &Storage,
    clock: &dyn Clock,
    timing: LeaseTiming,
    holder: &str,
    pipeline: &str,
    interval: &Interval,
) -> Result<Acquired> {
    let key = LeaseKey::interval(pipeline, interval);
    acquire_key(storage, clock, timing, holder, &key).await
}

/// Takes the lease `key` for `holder`, unless a live one exists.
pub async fn acquire_key(
    storage: &Storage,
    clock: &dyn Clock,
    timing: LeaseTiming,
    holder: &str,
    key: &LeaseKey,
) -> Result<Acquired> {
    let dir = key.dir.clone();
    let now = clock.now();
    let generation = match newest(storage, &dir).await? {
        None => 0,
        Some((_, Some(record)))
            if !record.released
                && record.expires_at > now
                && !record.process.as_ref().is_some_and(HolderProcess::is_gone) =>
        {
            return Ok(Acquired::HeldBy {
                holder: record.holder,
                expires_at: record.expires_at,
            });
        }
        // Expired, released, its holder gone, or listed but unreadable (another store's
        // listing lag): try the next generation.
        Some((g, _)) => g + 1,
    };
    let record = LeaseRecord {
        holder: holder.to_string(),
        pipeline: key.pipeline.clone(),
        interval_start: key.interval_start,
        generation,
        acquired_at: now,
        expires_at: now + timing.ttl,
        released: false,
        process: HolderProcess::current(),
    };
    if write(storage, &dir, &record, true).await? {
        return Ok(Acquired::Yes(Lease { dir, record }));
    }
    // Lost the race for this generation: report the winner.
    let winner = newest(storage, &dir).await?.and_then(|(_, r)| r);
    Ok(Acquired::HeldBy {
        holder: winner
            .as_ref()
            .map_or_else(|| "another process".to_string(), |r| r.holder.clone()),
        expires_at: winner.map_or(now + timing.ttl, |r| r.expires_at),
    })
}

impl Lease {
    pub fn record(&self) -> &LeaseRecord {
        &self.record
    }

    /// Runs `work` while renewing the lease every heartbeat. If a renewal finds the lease
    /// lost, cancels `cancel` (the work should then wind down) and keeps waiting for the work.
    /// Returns the work's output and whether the lease was lost.
    pub async fn hold<T>(
        &mut self,
        storage: &Storage,
        clock: &dyn Clock,
        timing: LeaseTiming,
        cancel: &CancellationToken,
        work: impl Future<Output = T>,
    ) -> (T, bool) {
        tokio::pin!(work);
        let mut lost = false;
        loop {
            let beat = clock.now() + timing.heartbeat;
            tokio::select! {
                biased;
                output = &mut work => return (output, lost),
                _ = clock.sleep_until(beat), if !lost => {
                    match self.renew(storage, clock, timing.ttl).await {
                        Ok(true) => {}
                        Ok(false) => {
                            tracing::error!(lease = %self.dir, "lease lost to another process; cancelling the run");
                            lost = true;
                            cancel.cancel();
                        }
                        Err(e) => tracing::warn!(lease = %self.dir, "cannot renew lease: {e}"),
                    }
                }
            }
        }
    }

    /// Pushes the expiry forward. `Ok(false)`: a newer generation exists, the lease was lost
    /// (this holder missed its heartbeats for longer than the TTL) and the run must stop.
    pub async fn renew(
        &mut self,
        storage: &Storage,
        clock: &dyn Clock,
        ttl: Duration,
    ) -> Result<bool> {
        self.record.expires_at = clock.now() + ttl;
        write(storage, &self.dir, &self.record, false).await?;
        // Checked after the write, so a taker that already created the next generation is
        // seen now; one still between its read and its create is seen at the next heartbeat.
        Ok(newest(storage, &self.dir)
            .await?
            .is_none_or(|(g, _)| g == self.record.generation))
    }

    /// Gives the lease up, so the next process need not wait for the TTL.
    pub async fn release(mut self, storage: &Storage, clock: &dyn Clock) -> Result<()> {
        if newest(storage, &self.dir)
            .await?
            .is_some_and(|(g, _)| g != self.record.generation)
        {
            return Ok(());
        }
        self.record.expires_at = clock.now();
        self.record.released = true;
        write(storage, &self.dir, &self.record, false)
            .await
            .map(|_| ())
    }
}
