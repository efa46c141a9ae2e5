//! The model registry's files: `registry/<model>/versions/<n>/` holds `model.json` (the
//! artefact) and `metadata.json`. Versions are immutable and numbered 1, 2, … without a
//! server: a writer claims number `n` by creating `model.json` put-if-absent (a loser of the
//! race takes the next number), and the version exists once `metadata.json` is created
//! (put-if-absent too). A claimed number without metadata (a task that failed between the
//! two puts) is skipped by readers and never reused.

use bytes::Bytes;
use sha2::{Digest, Sha256};

use super::{Result, Storage, StoreError};

pub const ARTEFACT: &str = "model.json";
pub const METADATA: &str = "metadata.json";

#[derive(Clone)]
pub struct Registry {
    storage: Storage,
}

/// A registered version, as read back.
pub struct Loaded {
    pub version: u64,
    pub artefact: Bytes,
    pub metadata: serde_json::Value,
}

pub fn version_dir(model: &str, version: u64) -> String {
    format!("registry/{model}/versions/{version}")
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Registry {
    pub fn new(storage: Storage) -> Registry {
        Registry { storage }
    }

    /// Every claimed version number and whether it is registered (has metadata), ascending.
    async fn claimed(&self, model: &str) -> Result<Vec<(u64, bool)>> {
        let prefix = format!("registry/{model}/versions/");
        let mut found: std::collections::BTreeMap<u64, bool> = Default::default();
        for key in self.storage.list(&prefix).await? {
            let Some(rest) = key.strip_prefix(&prefix) else {
                continue;
            };
            let Some((n, file)) = rest.split_once('/') else {
                continue;
            };
            let Ok(n) = n.parse::<u64>() else { continue };
            let registered = found.entry(n).or_insert(false);
            *registered |= file == METADATA;
        }
        Ok(found.into_iter().collect())
    }

    /// Registered versions, ascending.
    pub async fn versions(&self, model: &str) -> Result<Vec<u64>> {
        Ok(self
            .claimed(model)
            .await?
            .into_iter()
            .filter_map(|(n, registered)| registered.then_some(n))
            .collect())
    }

    /// Claims the next free version number by creating its artefact.
    pub async fn claim(&self, model: &str, artefact: Bytes) -> Result<u64> {
        let mut next = self.claimed(model).await?.last().map_or(1, |(n, _)| n + 1);
        loop {
            let key = format!("{}/{ARTEFACT}", version_dir(model, next));
            if self.storage.put_if_absent(&key, artefact.clone()).await? {
                return Ok(next);
            }
            // Another writer took it between our listing and our put.
            next += 1;
        }
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

    /// A registered version's metadata.
    pub async fn metadata(&self, model: &str, version: u64) -> Result<Option<serde_json::Value>> {
        let key = format!("{}/{METADATA}", version_dir(model, version));
        match self.storage.get(&key).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|source| StoreError::Json { path: key, source }),
        }
    }

    /// Loads a version (the latest registered one if `None`) and checks the artefact against
    /// the sha256 its metadata recorded.
    pub async fn load(&self, model: &str, version: Option<u64>) -> Result<Loaded> {
        let version = match version {
            Some(v) => v,
            None => *self.versions(model).await?.last().ok_or_else(|| {
                StoreError::Other(format!("model `{model}` has no registered version"))
            })?,
        };
        let metadata = self.metadata(model, version).await?.ok_or_else(|| {
            StoreError::Other(format!(
                "model `{model}` has no registered version {version}"
            ))
        })?;
        let key = format!("{}/{ARTEFACT}", version_dir(model, version));
        let artefact = self
            .storage
            .get(&key)
            .await?
            .ok_or_else(|| StoreError::Other(format!("`{key}` is missing")))?;
        let expected = metadata["artefact"]["sha256"].as_str().unwrap_or_default();
        let actual = sha256_hex(&artefact);
        if actual != expected {
            return Err(StoreError::Other(format!(
                "`{key}` has sha256 {actual}, but its metadata records {expected}: the artefact was changed or truncated"
            )));
        }
        Ok(Loaded {
            version,
            artefact,
            metadata,
        })
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

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_claims_take_distinct_numbers_without_gaps() {
        let registry = registry("registry-claims").await;
        let claims = (0..16).map(|i| {
            let registry = registry.clone();
            tokio::spawn(async move {
                let version = registry.claim("m", Bytes::from(format!("artefact {i}"))).await.unwrap();
                let meta = serde_json::json!({"artefact": {"sha256": sha256_hex(format!("artefact {i}").as_bytes())}});
                registry
                    .commit("m", version, Bytes::from(meta.to_string()))
                    .await
                    .unwrap();
                (version, i)
            })
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
            let loaded = registry.load("m", Some(v)).await.unwrap();
            assert_eq!(loaded.artefact, Bytes::from(format!("artefact {i}")));
        }
        assert_eq!(registry.load("m", None).await.unwrap().version, 16);
    }

    #[tokio::test]
    async fn unregistered_claims_are_skipped_and_tampering_is_refused() {
        let registry = registry("registry-tamper").await;
        // Version 1 claimed but never registered (its task failed before the metadata).
        assert_eq!(registry.claim("m", Bytes::from("a")).await.unwrap(), 1);
        assert!(registry.versions("m").await.unwrap().is_empty());
        assert!(registry.load("m", None).await.is_err());
        let v = registry.claim("m", Bytes::from("b")).await.unwrap();
        assert_eq!(v, 2, "a claimed number is never reused");
        let meta = serde_json::json!({"artefact": {"sha256": sha256_hex(b"not b")}});
        registry
            .commit("m", v, Bytes::from(meta.to_string()))
            .await
            .unwrap();
        let err = registry.load("m", None).await.err().unwrap().to_string();
        assert!(err.contains("was changed or truncated"), "{err}");
        // Metadata is put-if-absent too.
        assert!(registry.commit("m", v, Bytes::from("{}")).await.is_err());
    }
}
