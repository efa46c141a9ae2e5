//! The audit log: hash-chained segments `audit/<sequence>.json` under the storage root, each
//! written put-if-absent, and the chain heads kept outside the chain (`audit/head/`, an
//! optional witness store, each run's state), so `verify` can tell an intact log from an
//! edited, reordered, truncated or partly deleted one.
//!
//! A segment holds a batch of events (OpenLineage RunEvents today; registry actions later go
//! through the same `append`), the hash of the segment before it and its own hash:
//!
//! ```json
//! {"format": "nightjar.audit/1", "sequence": 7, "previous_hash": "<64 hex>",
//!  "written_at": "2025-05-01T02:30:11.123Z", "events": [...], "hash": "<64 hex>"}
//! ```
//!
//! `hash` is the sha256 of the segment without its `hash` key, serialized as compact JSON
//! with keys sorted (serde_json's map order; in Python:
//! `json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False)`), so it can
//! be recomputed from the file alone. The first segment is number 1 and names
//! [`GENESIS_HASH`] as its predecessor.
//!
//! Why put-if-absent: two runs appending at once both try the next sequence; exactly one
//! creates it, the other reads the winner's hash and retries one further. Nothing is ever
//! overwritten, so the chain never forks and no event is lost.
//!
//! Why heads outside the chain: a chain checks its own links but cannot notice that its newest
//! segments are gone. At the end of each run the writer records the head it reached in
//! `audit/head/<sequence>.json` (put-if-absent, versioned by sequence, so no compare-and-swap
//! is needed on stores without it), in the witness store if one is configured, and in the run
//! state. `verify` checks every such record against the chain.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use super::{Result, Storage, StoreError};

/// The segment format written and understood.
pub const FORMAT: &str = "nightjar.audit/1";
/// What the first segment names as its predecessor.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";
const SEGMENT_DIR: &str = "audit/";
const HEAD_DIR: &str = "audit/head/";
/// Zero-padded so that listing order is sequence order.
const SEQUENCE_DIGITS: usize = 12;

/// A point of the chain: a segment's sequence and hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChainHead {
    pub sequence: u64,
    pub hash: String,
}

impl ChainHead {
    fn genesis() -> ChainHead {
        ChainHead {
            sequence: 0,
            hash: GENESIS_HASH.to_string(),
        }
    }
}

/// One segment as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Segment {
    pub format: String,
    pub sequence: u64,
    pub previous_hash: String,
    pub written_at: String,
    pub events: Vec<Value>,
    pub hash: String,
}

impl Segment {
    fn new(previous: &ChainHead, events: Vec<Value>) -> Segment {
        let mut segment = Segment {
            format: FORMAT.to_string(),
            sequence: previous.sequence + 1,
            previous_hash: previous.hash.clone(),
            written_at: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
            events,
            hash: String::new(),
        };
        segment.hash = segment.computed_hash();
        segment
    }

    /// sha256 of everything but `hash`, as compact JSON with sorted keys.
    pub fn computed_hash(&self) -> String {
        let body = serde_json::json!({
            "format": self.format,
            "sequence": self.sequence,
            "previous_hash": self.previous_hash,
            "written_at": self.written_at,
            "events": self.events,
        });
        // A `Value` always serializes; an empty body would only make verify fail loudly.
        let bytes = serde_json::to_vec(&body).unwrap_or_default();
        hex::encode(Sha256::digest(&bytes))
    }

    pub fn head(&self) -> ChainHead {
        ChainHead {
            sequence: self.sequence,
            hash: self.hash.clone(),
        }
    }
}

/// The object path of segment `sequence`.
pub fn segment_path(sequence: u64) -> String {
    format!("{SEGMENT_DIR}{sequence:0SEQUENCE_DIGITS$}.json")
}

fn head_path(sequence: u64) -> String {
    format!("{HEAD_DIR}{sequence:0SEQUENCE_DIGITS$}.json")
}

/// The sequence a path names, if it is `<dir><12 digits>.json`.
fn sequence_of(path: &str, dir: &str) -> Option<u64> {
    let digits = path.strip_prefix(dir)?.strip_suffix(".json")?;
    (digits.len() == SEQUENCE_DIGITS && digits.bytes().all(|b| b.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// Appends to the chain of one storage root. One per process and run; several processes
/// may append to the same root at once.
pub struct AuditLog {
    storage: Storage,
    witness: Option<Storage>,
    /// The last segment this writer saw; found by listing on first use.
    tip: Option<ChainHead>,
}

impl AuditLog {
    pub fn new(storage: Storage, witness: Option<Storage>) -> AuditLog {
        AuditLog {
            storage,
            witness,
            tip: None,
        }
    }

    /// Appends `events` as one segment and records the new head; returns it.
    pub async fn append(&mut self, events: Vec<Value>) -> Result<ChainHead> {
        let mut tip = match self.tip.take() {
            Some(tip) => tip,
            None => find_tip(&self.storage).await?,
        };
        loop {
            let segment = Segment::new(&tip, events.clone());
            let path = segment_path(segment.sequence);
            let bytes = serde_json::to_vec_pretty(&segment).map_err(|source| StoreError::Json {
                path: path.clone(),
                source,
            })?;
            if self
                .storage
                .put_if_absent(&path, Bytes::from(bytes))
                .await?
            {
                let head = segment.head();
                self.tip = Some(head.clone());
                return Ok(head);
            }
            // Another writer took this sequence: chain after its segment.
            tracing::debug!(segment = %path, "audit segment taken by another writer, retrying at the next sequence");
            let theirs = read_segment(&self.storage, segment.sequence)
                .await?
                .ok_or_else(|| {
                    StoreError::Other(format!(
                        "audit segment `{path}` exists but cannot be read back"
                    ))
                })?;
            tip = theirs.head();
        }
    }

    /// Records `head` outside the chain: `audit/head/<sequence>.json` and the witness. Called
    /// once per run (at its end) rather than per segment: every object created costs, and the
    /// run state records the same head.
    pub async fn record_head(&self, head: &ChainHead) -> Result<()> {
        write_head(&self.storage, head).await?;
        if let Some(witness) = &self.witness {
            write_head(witness, head).await?;
        }
        Ok(())
    }
}

async fn write_head(storage: &Storage, head: &ChainHead) -> Result<()> {
    let path = head_path(head.sequence);
    let bytes = serde_json::to_vec_pretty(head).map_err(|source| StoreError::Json {
        path: path.clone(),
        source,
    })?;
    if !storage.put_if_absent(&path, Bytes::from(bytes)).await? {
        // Only possible when segments were deleted and their sequence reused: `verify`
        // reports the mismatch, and the older record must stay as evidence.
        tracing::warn!(head = %path, location = %storage.display(), "audit head already recorded for this sequence; the log may have been truncated");
    }
    Ok(())
}

/// The newest segment's head (genesis for an empty log).
async fn find_tip(storage: &Storage) -> Result<ChainHead> {
    let newest = storage
        .list(SEGMENT_DIR)
        .await?
        .iter()
        .filter_map(|p| sequence_of(p, SEGMENT_DIR))
        .max();
    let Some(sequence) = newest else {
        return Ok(ChainHead::genesis());
    };
    let segment = read_segment(storage, sequence).await?.ok_or_else(|| {
        StoreError::Other(format!(
            "audit segment `{}` disappeared while reading",
            segment_path(sequence)
        ))
    })?;
    Ok(segment.head())
}

/// Segment `sequence`, or `None` if there is no such object.
pub async fn read_segment(storage: &Storage, sequence: u64) -> Result<Option<Segment>> {
    let path = segment_path(sequence);
    let Some(bytes) = storage.get(&path).await? else {
        return Ok(None);
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|source| StoreError::Json { path, source })
}

/// Every segment in order (for `audit log` and lineage); unreadable ones are errors.
pub async fn read_all(storage: &Storage) -> Result<Vec<Segment>> {
    let mut segments = Vec::new();
    for path in storage.list(SEGMENT_DIR).await? {
        if let Some(sequence) = sequence_of(&path, SEGMENT_DIR)
            && let Some(segment) = read_segment(storage, sequence).await?
        {
            segments.push(segment);
        }
    }
    Ok(segments)
}

/// A head recorded outside the chain, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedHead {
    /// ``head `audit/head/000000000007.json` ``, ``witness `<url>` `` or ``run <run_id> (…)``.
    pub source: String,
    pub head: ChainHead,
}

/// What `verify` found; `problems[0]` is the first broken link.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct VerifyReport {
    pub segments: u64,
    pub events: u64,
    /// The newest segment of the chain as found.
    pub head: Option<ChainHead>,
    /// Heads recorded outside the chain that were checked.
    pub heads_checked: usize,
    pub problems: Vec<String>,
}

impl VerifyReport {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }
}

/// The heads recorded under `audit/head/` of a store: the root's own, or a witness's (named
/// by full URL, since it is somewhere else).
pub async fn recorded_heads(storage: &Storage, witness: bool) -> Result<Vec<RecordedHead>> {
    let mut heads = Vec::new();
    for path in storage.list(HEAD_DIR).await? {
        if sequence_of(&path, HEAD_DIR).is_none() {
            continue;
        }
        let Some(bytes) = storage.get(&path).await? else {
            continue;
        };
        let head: ChainHead =
            serde_json::from_slice(&bytes).map_err(|source| StoreError::Json {
                path: path.clone(),
                source,
            })?;
        let source = if witness {
            format!("witness `{}`", storage.url_of(&path))
        } else {
            format!("head `{path}`")
        };
        heads.push(RecordedHead { source, head });
    }
    Ok(heads)
}

/// Recomputes the chain of `storage` and checks it against `heads`.
///
/// Problems are named by object: a missing sequence (deleted), a file holding another
/// sequence (reordered or inserted), a link that does not match the segment before it
/// (replaced, inserted), content that does not match its hash (edited), an object under
/// `audit/` that is not a segment, and a recorded head the chain does not contain (truncated
/// or rewritten).
pub async fn verify(storage: &Storage, heads: &[RecordedHead]) -> Result<VerifyReport> {
    let mut report = VerifyReport::default();
    let mut files: BTreeMap<u64, String> = BTreeMap::new();
    for path in storage.list(SEGMENT_DIR).await? {
        if let Some(sequence) = sequence_of(&path, SEGMENT_DIR) {
            files.insert(sequence, path);
        } else if sequence_of(&path, HEAD_DIR).is_none() {
            report.problems.push(format!(
                "`{path}` is not a segment (audit/<12 digits>.json) or a head: inserted?"
            ));
        }
    }
    let last = files.keys().next_back().copied().unwrap_or(0);
    // Hashes of the segments as verified, for the head checks.
    let mut hashes: BTreeMap<u64, String> = BTreeMap::new();
    // The hash the next segment must name; `None` right after a gap (already reported).
    let mut previous = Some(GENESIS_HASH.to_string());
    for sequence in 1..=last {
        let path = segment_path(sequence);
        let Some(bytes) = storage.get(&path).await? else {
            report.problems.push(format!(
                "`{path}` is missing: segment {sequence} was deleted"
            ));
            previous = None;
            continue;
        };
        let segment: Segment = match serde_json::from_slice(&bytes) {
            Ok(s) => s,
            Err(e) => {
                report
                    .problems
                    .push(format!("`{path}` is not a readable segment: {e}"));
                previous = None;
                continue;
            }
        };
        report.segments += 1;
        report.events += segment.events.len() as u64;
        if segment.sequence != sequence {
            report.problems.push(format!(
                "`{path}` holds segment {} instead of {sequence}: segments were reordered or one was inserted",
                segment.sequence
            ));
        }
        if segment.format != FORMAT {
            report.problems.push(format!(
                "`{path}` has format `{}`, expected `{FORMAT}`",
                segment.format
            ));
        }
        if let Some(expected) = &previous
            && &segment.previous_hash != expected
        {
            report.problems.push(format!(
                "`{path}` names previous hash {} but segment {} has hash {}: the chain was broken here (a segment replaced, inserted or reordered)",
                short(&segment.previous_hash),
                sequence - 1,
                short(expected)
            ));
        }
        let computed = segment.computed_hash();
        if computed != segment.hash {
            report.problems.push(format!(
                "`{path}` was edited: its content hashes to {} but it records {}",
                short(&computed),
                short(&segment.hash)
            ));
        }
        hashes.insert(sequence, segment.hash.clone());
        previous = Some(segment.hash);
    }
    report.head = hashes.last_key_value().map(|(&sequence, hash)| ChainHead {
        sequence,
        hash: hash.clone(),
    });
    for recorded in heads {
        report.heads_checked += 1;
        let ChainHead { sequence, hash } = &recorded.head;
        match hashes.get(sequence) {
            Some(found) if found == hash => {}
            Some(found) => report.problems.push(format!(
                "{} records segment {sequence} with hash {}, but `{}` has hash {}: the log was rewritten",
                recorded.source,
                short(hash),
                segment_path(*sequence),
                short(found)
            )),
            None if *sequence > last => report.problems.push(format!(
                "{} records segment {sequence}, but the chain ends at {last}: the log was truncated",
                recorded.source
            )),
            // A missing or unreadable segment inside the chain is already reported.
            None => {}
        }
    }
    Ok(report)
}

fn short(hash: &str) -> &str {
    hash.get(..12).unwrap_or(hash)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    async fn memory(name: &str) -> Storage {
        Storage::open(
            &format!("memory://{name}"),
            &Default::default(),
            Path::new("/"),
        )
        .await
        .unwrap()
    }

    #[test]
    fn segment_paths_sort_by_sequence_and_parse_back() {
        assert_eq!(segment_path(7), "audit/000000000007.json");
        assert_eq!(sequence_of("audit/000000000007.json", SEGMENT_DIR), Some(7));
        assert_eq!(
            sequence_of("audit/head/000000000007.json", SEGMENT_DIR),
            None
        );
        assert_eq!(sequence_of("audit/7.json", SEGMENT_DIR), None);
        assert!(segment_path(10) > segment_path(9));
    }

    #[tokio::test]
    async fn appends_chain_and_verify() {
        let storage = memory("audit-chain").await;
        let mut log = AuditLog::new(storage.clone(), None);
        let a = log.append(vec![serde_json::json!({"n": 1})]).await.unwrap();
        log.record_head(&a).await.unwrap();
        let b = log.append(vec![serde_json::json!({"n": 2})]).await.unwrap();
        log.record_head(&b).await.unwrap();
        assert_eq!((a.sequence, b.sequence), (1, 2));
        let second = read_segment(&storage, 2).await.unwrap().unwrap();
        assert_eq!(second.previous_hash, a.hash);
        assert_eq!(second.computed_hash(), b.hash);
        let heads = recorded_heads(&storage, false).await.unwrap();
        assert_eq!(heads.len(), 2);
        let report = verify(&storage, &heads).await.unwrap();
        assert_eq!(report.problems, Vec::<String>::new());
        assert_eq!((report.segments, report.events), (2, 2));
        assert_eq!(report.head, Some(b));
    }

    #[tokio::test]
    async fn a_second_writer_continues_after_the_first() {
        let storage = memory("audit-race").await;
        let mut first = AuditLog::new(storage.clone(), None);
        let mut second = AuditLog::new(storage.clone(), None);
        // Both find the empty log; the second one's cached tip is stale after this.
        first.append(vec![serde_json::json!(1)]).await.unwrap();
        second.append(vec![serde_json::json!(2)]).await.unwrap();
        let again = first.append(vec![serde_json::json!(3)]).await.unwrap();
        assert_eq!(again.sequence, 3);
        let report = verify(&storage, &[]).await.unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(report.events, 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn concurrent_writers_never_fork_or_lose_events() {
        let storage = memory("audit-concurrent").await;
        let writers: Vec<_> = (0..8)
            .map(|w| {
                let storage = storage.clone();
                tokio::spawn(async move {
                    let mut log = AuditLog::new(storage, None);
                    for n in 0..10 {
                        let head = log
                            .append(vec![serde_json::json!({"writer": w, "n": n})])
                            .await
                            .unwrap();
                        log.record_head(&head).await.unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.await.unwrap();
        }
        let report = verify(&storage, &recorded_heads(&storage, false).await.unwrap())
            .await
            .unwrap();
        assert!(report.ok(), "{:?}", report.problems);
        assert_eq!(
            (report.segments, report.events, report.heads_checked),
            (80, 80, 80)
        );
        let mut seen: Vec<(u64, u64)> = read_all(&storage)
            .await
            .unwrap()
            .iter()
            .flat_map(|s| s.events.iter())
            .map(|e| (e["writer"].as_u64().unwrap(), e["n"].as_u64().unwrap()))
            .collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 80);
    }

    #[tokio::test]
    async fn a_head_beyond_the_chain_is_truncation() {
        let storage = memory("audit-truncated").await;
        let mut log = AuditLog::new(storage.clone(), None);
        log.append(vec![serde_json::json!(1)]).await.unwrap();
        let head = ChainHead {
            sequence: 2,
            hash: "ab".repeat(32),
        };
        let report = verify(
            &storage,
            &[RecordedHead {
                source: "run r1".into(),
                head,
            }],
        )
        .await
        .unwrap();
        assert_eq!(
            report.problems,
            vec!["run r1 records segment 2, but the chain ends at 1: the log was truncated"]
        );
    }
}
