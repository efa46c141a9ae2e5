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

use bytes::Bytes;
use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

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

fn lease_dir(pipeline: &str, interval: &Interval) -> String {
    format!("schedule/{pipeline}/leases/{}", interval.key())
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
    let dir = lease_dir(pipeline, interval);
    let now = clock.now();
    let generation = match newest(storage, &dir).await? {
        None => 0,
        Some((_, Some(record))) if !record.released && record.expires_at > now => {
            return Ok(Acquired::HeldBy {
                holder: record.holder,
                expires_at: record.expires_at,
            });
        }
        // Expired, or listed but unreadable (another store's listing lag): try the next one.
        Some((g, _)) => g + 1,
    };
    let record = LeaseRecord {
        holder: holder.to_string(),
        pipeline: pipeline.to_string(),
        interval_start: interval.start,
        generation,
        acquired_at: now,
        expires_at: now + timing.ttl,
        released: false,
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
