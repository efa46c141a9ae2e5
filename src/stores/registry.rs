//! The model registry's files, on any object store (no server, no database):
//!
//! ```text
//! registry/<model>/versions/<n>/model.json        the artefact
//! registry/<model>/versions/<n>/MLmodel           MLflow-shaped description (flavor, signature)
//! registry/<model>/versions/<n>/card.md|card.json the model card at registration
//! registry/<model>/versions/<n>/metadata.json     written last: the version exists from here
//! registry/<model>/versions/<n>/deleted.json      tombstone left by `gc`
//! registry/<model>/aliases/<alias>/<gen>.json     one record per alias move, gen 1, 2, …
//! ```
//!
//! Versions are immutable and numbered 1, 2, … A writer claims number `n` by creating
//! `model.json` put-if-absent (a loser of the race takes the next number), writes the other
//! files, and registers the version by creating `metadata.json` put-if-absent; it records the
//! sha256 of every other file, and loading checks them all. A claimed number without metadata
//! (a task that failed in between) is skipped by readers and never reused; neither is a
//! number that `gc` deleted (its tombstone stays).
//!
//! Aliases are compare-and-swap without a conditional update: a move from generation `g`
//! creates generation `g + 1` put-if-absent, so of two concurrent moves from the same state
//! exactly one wins and the other sees a conflict. The newest generation is the alias's value;
//! the older ones are its history (who moved it, when, why, and which gate decided).

use std::collections::BTreeMap;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::{Result, Storage, StoreError};
use crate::spec::is_identifier;

pub const ARTEFACT: &str = "model.json";
pub const METADATA: &str = "metadata.json";
pub const MLMODEL: &str = "MLmodel";
pub const CARD_MARKDOWN: &str = "card.md";
pub const CARD_JSON: &str = "card.json";
pub const TOMBSTONE: &str = "deleted.json";
/// Who claimed a version (`run <id> task <task>`), created put-if-absent: the claim itself.
pub const CLAIM: &str = "claim.json";

#[derive(Clone)]
pub struct Registry {
    storage: Storage,
}

/// A registered version, as read back and checked.
pub struct Loaded {
    pub version: u64,
    pub artefact: Bytes,
    pub metadata: serde_json::Value,
    /// sha256 of `metadata.json`.
    pub metadata_sha256: String,
}

/// One file of a version as `metadata.json` lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSig {
    pub path: String,
    pub sha256: String,
    pub bytes: usize,
}

impl FileSig {
    pub fn of(path: &str, bytes: &[u8]) -> FileSig {
        FileSig {
            path: path.to_string(),
            sha256: sha256_hex(bytes),
            bytes: bytes.len(),
        }
    }
}

/// One move of an alias: generation `generation` of `registry/<model>/aliases/<alias>/`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AliasRecord {
    pub alias: String,
    pub generation: u64,
    /// `None`: the alias was removed.
    pub version: Option<u64>,
    pub previous_version: Option<u64>,
    /// RFC 3339.
    pub at: String,
    /// `run <run_id> (<pipeline>.<task>)` or `user <name>`.
    pub by: String,
    pub reason: String,
    /// The promotion gate that decided the move, if one did: expression, inputs, verdict.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<serde_json::Value>,
    /// The nightjar run that moved it, if a run did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run_id: Option<String>,
}

/// What is asked of an alias move.
#[derive(Debug, Clone)]
pub struct AliasMove {
    pub to: Option<u64>,
    pub by: String,
    pub reason: String,
    pub gate: Option<serde_json::Value>,
    pub run_id: Option<String>,
}

/// The outcome of a compare-and-swap move.
#[derive(Debug, Clone, PartialEq)]
pub enum Moved {
    Done(AliasRecord),
    /// The alias is no longer at the expected generation: here is what it is now.
    Conflict(Option<AliasRecord>),
}

/// Which version a reference selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    Latest,
    Version(u64),
    Alias(String),
}

/// `name`, `name@latest`, `name@<n>`, `name@<alias>`, or MLflow's `models:/name@alias`,
/// `models:/name/<n>`, `models:/name/latest`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRef {
    pub name: String,
    pub selector: Selector,
}

impl ModelRef {
    pub fn parse(text: &str) -> std::result::Result<ModelRef, String> {
        let usage = || {
            format!(
                "`{text}`: a model reference is `name`, `name@<version>`, `name@<alias>`, `name@latest`, `models:/name@<alias>` or `models:/name/<version>`"
            )
        };
        let (name, selector) = match text.strip_prefix("models:/") {
            Some(rest) => match (rest.split_once('@'), rest.split_once('/')) {
                (Some((name, alias)), None) => (name, Some(alias)),
                (None, Some((name, version))) => (name, Some(version)),
                (None, None) => (rest, None),
                _ => return Err(usage()),
            },
            None => match text.split_once('@') {
                Some((name, s)) => (name, Some(s)),
                None => (text, None),
            },
        };
        if !is_identifier(name) {
            return Err(format!("`{name}` is not a valid model name ({})", usage()));
        }
        let selector = match selector {
            None | Some("latest") => Selector::Latest,
            Some(s) if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) => {
                match s.parse::<u64>() {
                    Ok(n) if n > 0 => Selector::Version(n),
                    _ => return Err(format!("{}: versions start at 1", usage())),
                }
            }
            Some(alias) => {
                check_alias(alias).map_err(|e| format!("{}: {e}", usage()))?;
                Selector::Alias(alias.to_string())
            }
        };
        Ok(ModelRef {
            name: name.to_string(),
            selector,
        })
    }
}

impl std::fmt::Display for ModelRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.selector {
            Selector::Latest => write!(f, "{}", self.name),
            Selector::Version(n) => write!(f, "{}@{n}", self.name),
            Selector::Alias(a) => write!(f, "{}@{a}", self.name),
        }
    }
}

/// An alias name: an identifier that is neither a number nor `latest`.
pub fn check_alias(alias: &str) -> std::result::Result<(), String> {
    if alias == "latest" {
        return Err("`latest` is not an alias: it always means the newest version".into());
    }
    if !is_identifier(alias) {
        return Err(format!(
            "`{alias}` is not a valid alias (lowercase letters, digits and `_`, starting with a letter)"
        ));
    }
    Ok(())
}

/// The dataset name of a model version in lineage events and queries.
pub fn dataset_name(model: &str, version: u64) -> String {
    format!("{model}@{version}")
}

pub fn version_dir(model: &str, version: u64) -> String {
    format!("registry/{model}/versions/{version}")
}

fn alias_dir(model: &str, alias: &str) -> String {
    format!("registry/{model}/aliases/{alias}/")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

fn now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

fn json_error(path: String) -> impl FnOnce(serde_json::Error) -> StoreError {
    move |source| StoreError::Json { path, source }
}

/// What a version directory holds, as far as listing tells.
#[derive(Debug, Default, Clone, Copy)]
struct Claim {
    registered: bool,
    deleted: bool,
}

impl Registry {
    pub fn new(storage: Storage) -> Registry {
        Registry { storage }
    }

    /// Names of the models with anything in the registry, sorted.
    pub async fn models(&self) -> Result<Vec<String>> {
        let mut names = std::collections::BTreeSet::new();
        for key in self.storage.list("registry/").await? {
            if let Some((name, _)) = key
                .strip_prefix("registry/")
                .and_then(|r| r.split_once('/'))
            {
                names.insert(name.to_string());
            }
        }
        Ok(names.into_iter().collect())
    }

    /// Every claimed version number and its state, ascending.
    async fn claimed(&self, model: &str) -> Result<BTreeMap<u64, Claim>> {
        let prefix = format!("registry/{model}/versions/");
        let mut found: BTreeMap<u64, Claim> = BTreeMap::new();
        for key in self.storage.list(&prefix).await? {
            let Some((n, file)) = key.strip_prefix(&prefix).and_then(|r| r.split_once('/')) else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            let claim = found.entry(n).or_default();
            claim.registered |= file == METADATA;
            claim.deleted |= file == TOMBSTONE;
        }
        Ok(found)
    }

    /// Registered (and not deleted) versions, ascending.
    pub async fn versions(&self, model: &str) -> Result<Vec<u64>> {
        Ok(self
            .claimed(model)
            .await?
            .into_iter()
            .filter_map(|(n, c)| (c.registered && !c.deleted).then_some(n))
            .collect())
    }

    /// Claims a version number for `owner` (a run's task) and writes its artefact. The claim
    /// is `claim.json` naming the owner, created put-if-absent, so concurrent claimers take
    /// distinct numbers. An unregistered version the same owner claimed earlier (an attempt
    /// that crashed or failed before registering: a retry or `--resume`) is taken back rather
    /// than a new number claimed, so an interrupted registration leaves no orphan version.
    /// Returns the number and whether it was taken back.
    pub async fn claim(&self, model: &str, artefact: Bytes, owner: &str) -> Result<(u64, bool)> {
        let claimed = self.claimed(model).await?;
        let owner_record = Bytes::from(serde_json::json!({ "owner": owner }).to_string());
        // Only claims newer than the newest registered version can be an unfinished attempt.
        for (n, claim) in claimed.iter().rev() {
            if claim.registered {
                break;
            }
            if claim.deleted {
                continue;
            }
            let key = format!("{}/{CLAIM}", version_dir(model, *n));
            if self.storage.get(&key).await?.as_ref() == Some(&owner_record) {
                self.put_file(model, *n, ARTEFACT, artefact).await?;
                return Ok((*n, true));
            }
        }
        let mut next = claimed.last_key_value().map_or(1, |(n, _)| n + 1);
        loop {
            let key = format!("{}/{CLAIM}", version_dir(model, next));
            if self
                .storage
                .put_if_absent(&key, owner_record.clone())
                .await?
            {
                self.put_file(model, next, ARTEFACT, artefact).await?;
                return Ok((next, false));
            }
            // Another writer took it between our listing and our put.
            next += 1;
        }
    }

    /// Writes another file of a claimed, not yet registered version (the claimer owns it).
    pub async fn put_file(
        &self,
        model: &str,
        version: u64,
        file: &str,
        bytes: Bytes,
    ) -> Result<()> {
        let key = format!("{}/{file}", version_dir(model, version));
        self.storage.put(&key, bytes).await
    }

    /// Registers a claimed version: its metadata becomes visible in one put.
    pub async fn commit(&self, model: &str, version: u64, metadata: Bytes) -> Result<()> {
        let key = format!("{}/{METADATA}", version_dir(model, version));
        if self.storage.put_if_absent(&key, metadata).await? {
            Ok(())
        } else {
            Err(StoreError::Other(format!(
                "model `{model}` version {version} is already registered (this is a bug: versions are claimed first)"
            )))
        }
    }

    /// A registered version's metadata (`None` if it is not registered or was deleted).
    pub async fn metadata(&self, model: &str, version: u64) -> Result<Option<serde_json::Value>> {
        Ok(self.signed_metadata(model, version).await?.map(|(m, _)| m))
    }

    /// A version's metadata and the sha256 of its bytes (what lineage events record).
    pub async fn signed_metadata(
        &self,
        model: &str,
        version: u64,
    ) -> Result<Option<(serde_json::Value, String)>> {
        let key = format!("{}/{METADATA}", version_dir(model, version));
        match self.storage.get(&key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(|m| Some((m, sha256_hex(&bytes))))
                .map_err(json_error(key)),
        }
    }

    /// The version a reference selects now.
    pub async fn resolve(&self, reference: &ModelRef) -> Result<u64> {
        let model = &reference.name;
        match &reference.selector {
            Selector::Version(n) => Ok(*n),
            Selector::Latest => self.versions(model).await?.last().copied().ok_or_else(|| {
                StoreError::Other(format!("model `{model}` has no registered version"))
            }),
            Selector::Alias(alias) => match self.alias(model, alias).await? {
                Some(AliasRecord {
                    version: Some(v), ..
                }) => Ok(v),
                _ => {
                    let known: Vec<String> = self.aliases(model).await?.into_keys().collect();
                    Err(StoreError::Other(format!(
                        "model `{model}` has no alias `{alias}` (aliases: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    )))
                }
            },
        }
    }

    /// Loads a version and checks every file its metadata lists against its sha256.
    pub async fn load(&self, model: &str, version: u64) -> Result<Loaded> {
        let (metadata, metadata_sha256) =
            self.signed_metadata(model, version).await?.ok_or_else(|| {
                StoreError::Other(format!(
                    "model `{model}` has no registered version {version}"
                ))
            })?;
        let mut artefact = None;
        for (sig, bytes) in self.checked_files(model, version, &metadata).await? {
            if sig.path == ARTEFACT {
                artefact = Some(bytes);
            }
        }
        let artefact = artefact.ok_or_else(|| {
            StoreError::Other(format!(
                "model `{model}` version {version}: metadata.json lists no `{ARTEFACT}`"
            ))
        })?;
        Ok(Loaded {
            version,
            artefact,
            metadata,
            metadata_sha256,
        })
    }

    /// Every file `metadata` lists, read and checked: a missing, truncated or altered one is
    /// an error naming it.
    pub async fn checked_files(
        &self,
        model: &str,
        version: u64,
        metadata: &serde_json::Value,
    ) -> Result<Vec<(FileSig, Bytes)>> {
        let files: Vec<FileSig> = match metadata.get("files") {
            Some(files) => serde_json::from_value(files.clone()).map_err(json_error(format!(
                "{}/{METADATA} (files)",
                version_dir(model, version)
            )))?,
            // Versions registered before `files` existed list only the artefact.
            None => vec![
                serde_json::from_value(metadata["artefact"].clone()).map_err(json_error(
                    format!("{}/{METADATA} (artefact)", version_dir(model, version)),
                ))?,
            ],
        };
        let mut out = Vec::with_capacity(files.len());
        for sig in files {
            let key = format!("{}/{}", version_dir(model, version), sig.path);
            let bytes = self
                .storage
                .get(&key)
                .await?
                .ok_or_else(|| StoreError::Other(format!("`{key}` is missing")))?;
            let actual = sha256_hex(&bytes);
            if actual != sig.sha256 || bytes.len() != sig.bytes {
                return Err(StoreError::Other(format!(
                    "`{key}` has sha256 {actual} ({} bytes), but metadata.json records {} ({} bytes): the file was changed or truncated",
                    bytes.len(),
                    sig.sha256,
                    sig.bytes
                )));
            }
            out.push((sig, bytes));
        }
        Ok(out)
    }

    /// The generation objects of one alias, oldest first (one listing, no reads).
    async fn generations(&self, model: &str, alias: &str) -> Result<Vec<String>> {
        let dir = alias_dir(model, alias);
        let mut generations: Vec<(u64, String)> = self
            .storage
            .list(&dir)
            .await?
            .into_iter()
            .filter_map(|key| {
                let n = key
                    .strip_prefix(&dir)?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()?;
                Some((n, key))
            })
            .collect();
        generations.sort();
        Ok(generations.into_iter().map(|(_, key)| key).collect())
    }

    async fn read_record(&self, key: String) -> Result<Option<AliasRecord>> {
        match self.storage.get(&key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(json_error(key)),
        }
    }

    /// One alias's moves, oldest first.
    pub async fn alias_history(&self, model: &str, alias: &str) -> Result<Vec<AliasRecord>> {
        let mut records = Vec::new();
        for key in self.generations(model, alias).await? {
            records.extend(self.read_record(key).await?);
        }
        Ok(records)
    }

    /// An alias's newest record (`None` if it was never set): one listing and one read,
    /// however long its history.
    pub async fn alias(&self, model: &str, alias: &str) -> Result<Option<AliasRecord>> {
        match self.generations(model, alias).await?.pop() {
            Some(key) => self.read_record(key).await,
            None => Ok(None),
        }
    }

    /// Every alias ever set on `model`, sorted.
    async fn alias_names(&self, model: &str) -> Result<std::collections::BTreeSet<String>> {
        let dir = format!("registry/{model}/aliases/");
        Ok(self
            .storage
            .list(&dir)
            .await?
            .iter()
            .filter_map(|k| Some(k.strip_prefix(&dir)?.split_once('/')?.0.to_string()))
            .collect())
    }

    /// Every alias that points to a version now.
    pub async fn aliases(&self, model: &str) -> Result<BTreeMap<String, AliasRecord>> {
        let mut out = BTreeMap::new();
        for name in self.alias_names(model).await? {
            if let Some(record) = self.alias(model, &name).await?
                && record.version.is_some()
            {
                out.insert(name, record);
            }
        }
        Ok(out)
    }

    /// Every move of every alias of `model`, in time order.
    pub async fn history(&self, model: &str) -> Result<Vec<AliasRecord>> {
        let mut all = Vec::new();
        for name in self.alias_names(model).await? {
            all.extend(self.alias_history(model, &name).await?);
        }
        all.sort_by(|a, b| (&a.at, &a.alias, a.generation).cmp(&(&b.at, &b.alias, b.generation)));
        Ok(all)
    }

    /// Moves `alias` from generation `expected` (0: never set) to `to`: compare-and-swap.
    pub async fn move_alias(
        &self,
        model: &str,
        alias: &str,
        expected: u64,
        request: AliasMove,
    ) -> Result<Moved> {
        check_alias(alias).map_err(StoreError::Other)?;
        if let Some(v) = request.to
            && self.metadata(model, v).await?.is_none()
        {
            return Err(StoreError::Other(format!(
                "model `{model}` has no registered version {v}"
            )));
        }
        let current = self.alias(model, alias).await?;
        if current.as_ref().map_or(0, |r| r.generation) != expected {
            return Ok(Moved::Conflict(current));
        }
        let record = AliasRecord {
            alias: alias.to_string(),
            generation: expected + 1,
            version: request.to,
            previous_version: current.and_then(|r| r.version),
            at: now(),
            by: request.by,
            reason: request.reason,
            gate: request.gate,
            run_id: request.run_id,
        };
        let key = format!("{}{:010}.json", alias_dir(model, alias), record.generation);
        let mut bytes = serde_json::to_vec_pretty(&record).map_err(json_error(key.clone()))?;
        bytes.push(b'\n');
        if self.storage.put_if_absent(&key, bytes.into()).await? {
            Ok(Moved::Done(record))
        } else {
            Ok(Moved::Conflict(self.alias(model, alias).await?))
        }
    }

    /// Deletes the registered versions of `model` beyond the newest `keep` that no alias
    /// points to. Each deleted version leaves a tombstone (its number is never reused) and
    /// loses its metadata first, so it disappears from readers in one step. Returns them.
    pub async fn gc(&self, model: &str, keep: usize, by: &str) -> Result<Vec<u64>> {
        let pinned: std::collections::BTreeSet<u64> = self
            .aliases(model)
            .await?
            .values()
            .filter_map(|r| r.version)
            .collect();
        let versions = self.versions(model).await?;
        let newest: std::collections::BTreeSet<u64> =
            versions.iter().rev().take(keep).copied().collect();
        let mut deleted = Vec::new();
        for v in versions {
            if pinned.contains(&v) || newest.contains(&v) {
                continue;
            }
            let dir = version_dir(model, v);
            let tombstone = serde_json::json!({"version": v, "deleted_at": now(), "by": by});
            self.storage
                .put(
                    &format!("{dir}/{TOMBSTONE}"),
                    Bytes::from(tombstone.to_string()),
                )
                .await?;
            self.storage.delete(&format!("{dir}/{METADATA}")).await?;
            for key in self.storage.list(&format!("{dir}/")).await? {
                if !key.ends_with(TOMBSTONE) {
                    self.storage.delete(&key).await?;
                }
            }
            deleted.push(v);
        }
        // An alias set between our listing and the deletes would point to nothing: report it.
        for (alias, record) in self.aliases(model).await? {
            if let Some(v) = record.version
                && deleted.contains(&v)
            {
                return Err(StoreError::Other(format!(
                    "alias `{alias}` of model `{model}` was moved to version {v} while gc deleted it; move it again"
                )));
            }
        }
        Ok(deleted)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn registry(name: &str) -> Registry {
        let storage = Storage::open(
            &format!("memory://{name}"),
            &Default::default(),
            std::path::Path::new("/"),
        )
        .await
        .unwrap();
        Registry::new(storage)
    }

    /// Claims and registers a version whose artefact is `text`.
    async fn register(registry: &Registry, model: &str, text: &str) -> u64 {
        let (version, _) = registry
            .claim(
                model,
                Bytes::from(text.to_string()),
                &format!("test {text}"),
            )
            .await
            .unwrap();
        let meta = serde_json::json!({"files": [FileSig::of(ARTEFACT, text.as_bytes())]});
        registry
            .commit(model, version, Bytes::from(meta.to_string()))
            .await
            .unwrap();
        version
    }

    fn by_user(to: Option<u64>, reason: &str) -> AliasMove {
        AliasMove {
            to,
            by: "user test".into(),
            reason: reason.into(),
            gate: None,
            run_id: None,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_take_distinct_numbers_without_gaps() {
        let registry = registry("registry-claims").await;
        let claims = (0..16).map(|i| {
            let registry = registry.clone();
            tokio::spawn(
                async move { (register(&registry, "m", &format!("artefact {i}")).await, i) },
            )
        });
        let mut taken: Vec<(u64, i32)> = futures::future::join_all(claims)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        taken.sort();
        let versions: Vec<u64> = taken.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, (1..=16).collect::<Vec<u64>>());
        assert_eq!(registry.versions("m").await.unwrap(), versions);
        // Each version holds the artefact its claimer wrote, and loads with its checksum.
        for (v, i) in taken {
            let loaded = registry.load("m", v).await.unwrap();
            assert_eq!(loaded.artefact, Bytes::from(format!("artefact {i}")));
        }
        let latest = ModelRef::parse("m").unwrap();
        assert_eq!(registry.resolve(&latest).await.unwrap(), 16);
    }

    #[tokio::test]
    async fn unregistered_claims_are_skipped_and_tampering_is_refused() {
        let registry = registry("registry-tamper").await;
        // Version 1 claimed but never registered (its task failed before the metadata).
        assert_eq!(
            registry
                .claim("m", Bytes::from("a"), "run A")
                .await
                .unwrap(),
            (1, false)
        );
        assert!(registry.versions("m").await.unwrap().is_empty());
        assert!(
            registry
                .resolve(&ModelRef::parse("m").unwrap())
                .await
                .is_err()
        );
        let (v, _) = registry
            .claim("m", Bytes::from("b"), "run B")
            .await
            .unwrap();
        assert_eq!(v, 2, "a claimed number is never reused by another claimer");
        // The claimer of version 1 tries again (a retry, or `--resume` after a crash): it
        // takes its own unregistered claim back instead of leaving it orphaned.
        assert_eq!(
            registry
                .claim("m", Bytes::from("a"), "run A")
                .await
                .unwrap(),
            (1, true)
        );
        registry
            .put_file("m", v, CARD_MARKDOWN, Bytes::from("# card"))
            .await
            .unwrap();
        let meta = serde_json::json!({"files": [
            FileSig::of(ARTEFACT, b"b"), FileSig::of(CARD_MARKDOWN, b"# card")
        ]});
        registry
            .commit("m", v, Bytes::from(meta.to_string()))
            .await
            .unwrap();
        assert!(registry.load("m", v).await.is_ok());
        // Metadata is put-if-absent too.
        assert!(registry.commit("m", v, Bytes::from("{}")).await.is_err());
        // Any listed file altered, truncated or removed: refused, naming the file.
        registry
            .put_file("m", v, CARD_MARKDOWN, Bytes::from("# card, edited"))
            .await
            .unwrap();
        let err = registry.load("m", v).await.err().unwrap().to_string();
        assert!(
            err.contains("versions/2/card.md") && err.contains("changed or truncated"),
            "{err}"
        );
        registry
            .put_file("m", v, CARD_MARKDOWN, Bytes::from("# card"))
            .await
            .unwrap();
        registry
            .put_file("m", v, ARTEFACT, Bytes::new())
            .await
            .unwrap();
        let err = registry.load("m", v).await.err().unwrap().to_string();
        assert!(
            err.contains("versions/2/model.json") && err.contains("(0 bytes)"),
            "{err}"
        );
        registry
            .storage
            .delete(&format!("{}/{ARTEFACT}", version_dir("m", v)))
            .await
            .unwrap();
        let err = registry.load("m", v).await.err().unwrap().to_string();
        assert!(err.contains("is missing"), "{err}");
    }

    #[test]
    fn model_references() {
        let r = |name: &str, selector| ModelRef {
            name: name.into(),
            selector,
        };
        let alias = |a: &str| Selector::Alias(a.into());
        assert_eq!(ModelRef::parse("churn"), Ok(r("churn", Selector::Latest)));
        assert_eq!(
            ModelRef::parse("churn@latest"),
            Ok(r("churn", Selector::Latest))
        );
        assert_eq!(
            ModelRef::parse("churn@3"),
            Ok(r("churn", Selector::Version(3)))
        );
        assert_eq!(
            ModelRef::parse("churn@champion"),
            Ok(r("churn", alias("champion")))
        );
        assert_eq!(
            ModelRef::parse("models:/churn@champion"),
            Ok(r("churn", alias("champion")))
        );
        assert_eq!(
            ModelRef::parse("models:/churn/7"),
            Ok(r("churn", Selector::Version(7)))
        );
        assert_eq!(
            ModelRef::parse("models:/churn/latest"),
            Ok(r("churn", Selector::Latest))
        );
        assert_eq!(
            ModelRef::parse("models:/churn"),
            Ok(r("churn", Selector::Latest))
        );
        for bad in [
            "churn@0",
            "churn@",
            "bad name",
            "churn@Champion!",
            "models:/a/b@c",
            "@3",
            "churn@1x",
        ] {
            assert!(ModelRef::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            ModelRef::parse("models:/churn@champion")
                .unwrap()
                .to_string(),
            "churn@champion"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn alias_moves_are_compare_and_swap_and_keep_their_history() {
        let registry = registry("registry-aliases").await;
        for text in ["one", "two", "three"] {
            register(&registry, "m", text).await;
        }
        let champion = ModelRef::parse("m@champion").unwrap();
        assert!(registry.resolve(&champion).await.is_err());
        assert!(matches!(
            registry
                .move_alias("m", "champion", 0, by_user(Some(1), "first"))
                .await
                .unwrap(),
            Moved::Done(AliasRecord {
                generation: 1,
                version: Some(1),
                previous_version: None,
                ..
            })
        ));
        // Eight concurrent promotions from generation 1: exactly one wins.
        let racers = (0..8).map(|i| {
            let registry = registry.clone();
            tokio::spawn(async move {
                let to = Some(2 + (i % 2));
                registry
                    .move_alias("m", "champion", 1, by_user(to, &format!("racer {i}")))
                    .await
                    .unwrap()
            })
        });
        let outcomes: Vec<Moved> = futures::future::join_all(racers)
            .await
            .into_iter()
            .map(|r| r.unwrap())
            .collect();
        let winners: Vec<&AliasRecord> = outcomes
            .iter()
            .filter_map(|m| match m {
                Moved::Done(r) => Some(r),
                Moved::Conflict(_) => None,
            })
            .collect();
        assert_eq!(winners.len(), 1, "{outcomes:?}");
        let winner = winners[0].clone();
        assert_eq!((winner.generation, winner.previous_version), (2, Some(1)));
        for m in &outcomes {
            if let Moved::Conflict(now) = m {
                assert_eq!(
                    now.as_ref(),
                    Some(&winner),
                    "a loser sees the winner's state"
                );
            }
        }
        assert_eq!(
            registry.resolve(&champion).await.unwrap(),
            winner.version.unwrap()
        );
        // A stale expected generation is a conflict; a version that does not exist is refused.
        assert!(matches!(
            registry
                .move_alias("m", "champion", 1, by_user(Some(1), "stale"))
                .await
                .unwrap(),
            Moved::Conflict(Some(AliasRecord { generation: 2, .. }))
        ));
        assert!(
            registry
                .move_alias("m", "champion", 2, by_user(Some(9), "no such"))
                .await
                .is_err()
        );
        assert!(
            registry
                .move_alias("m", "latest", 0, by_user(Some(1), "reserved"))
                .await
                .is_err()
        );
        // The history is every move in order; removing the alias is a move too.
        registry
            .move_alias("m", "champion", 2, by_user(None, "retired"))
            .await
            .unwrap();
        let history = registry.alias_history("m", "champion").await.unwrap();
        let steps: Vec<(u64, Option<u64>, &str)> = history
            .iter()
            .map(|r| (r.generation, r.version, r.reason.as_str()))
            .collect();
        assert_eq!(steps[0], (1, Some(1), "first"));
        assert_eq!((steps[1].0, steps[1].1), (2, winner.version));
        assert_eq!(steps[2], (3, None, "retired"));
        assert!(registry.aliases("m").await.unwrap().is_empty());
        assert!(registry.resolve(&champion).await.is_err());
    }

    #[tokio::test]
    async fn gc_keeps_the_newest_and_aliased_versions_and_never_reuses_numbers() {
        let registry = registry("registry-gc").await;
        for i in 1..=5 {
            register(&registry, "m", &format!("v{i}")).await;
        }
        registry
            .move_alias("m", "champion", 0, by_user(Some(2), "pinned"))
            .await
            .unwrap();
        assert_eq!(registry.gc("m", 2, "user test").await.unwrap(), vec![1, 3]);
        assert_eq!(registry.versions("m").await.unwrap(), vec![2, 4, 5]);
        assert!(registry.load("m", 1).await.is_err());
        assert!(registry.load("m", 2).await.is_ok());
        assert_eq!(
            registry.gc("m", 2, "user test").await.unwrap(),
            Vec::<u64>::new()
        );
        // Numbers of deleted versions are not claimed again, even the newest.
        assert_eq!(registry.gc("m", 0, "user test").await.unwrap(), vec![4, 5]);
        assert_eq!(register(&registry, "m", "v6").await, 6);
        assert_eq!(registry.models().await.unwrap(), vec!["m".to_string()]);
    }
}
