//! Object stores by URL scheme (`file://`, `memory://`, `s3://`, `gs://`, `az://`) and the
//! project's storage root with its atomic write primitives.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use url::Url;

use super::{Result, StoreError};
use crate::spec::OptionValue;

/// An object store and the location of a URL inside it.
#[derive(Clone, Debug)]
pub struct Located {
    /// The store, rooted at the bucket / filesystem root (what DataFusion registers).
    pub store: Arc<dyn ObjectStore>,
    /// `scheme://host/` of the store, as DataFusion's `ObjectStoreUrl` wants it.
    pub store_url: Url,
    /// The path of the URL inside the store.
    pub path: Path,
    /// The full URL, with a trailing `/` for directories.
    pub url: Url,
}

/// Turns a user-written location into a URL: `file://./rel`, bare `./rel` and bare `rel` are
/// relative to `base_dir`; bare absolute paths are `file://` URLs.
pub fn normalize_url(location: &str, base_dir: &FsPath) -> Result<Url> {
    let invalid = |reason: String| StoreError::InvalidUrl {
        url: location.to_string(),
        reason,
    };
    let local = |p: &str| -> Result<Url> {
        let path = if FsPath::new(p).is_absolute() {
            PathBuf::from(p)
        } else {
            base_dir.join(p)
        };
        let path = normalize_path(&path);
        Url::from_file_path(&path).map_err(|_| invalid("not an absolute path".into()))
    };
    if let Some(rest) = location.strip_prefix("file://") {
        return if rest.starts_with('/') {
            local(rest)
        } else {
            local(rest.trim_start_matches("./"))
        };
    }
    if !location.contains("://") {
        return local(location);
    }
    Url::parse(location).map_err(|e| invalid(e.to_string()))
}

/// Removes `.` and `..` lexically, so a `file://` URL never carries them.
fn normalize_path(path: &FsPath) -> PathBuf {
    let mut out = PathBuf::new();
    for part in path.components() {
        match part {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    out
}

fn memory_stores() -> &'static Mutex<HashMap<String, Arc<InMemory>>> {
    static STORES: OnceLock<Mutex<HashMap<String, Arc<InMemory>>>> = OnceLock::new();
    STORES.get_or_init(Default::default)
}

/// Resolves option values: literals as written, `{ env: VAR }` from the environment.
pub fn resolve_options(options: &BTreeMap<String, OptionValue>) -> Result<Vec<(String, String)>> {
    options
        .iter()
        .map(|(key, value)| match value {
            OptionValue::Literal(v) => Ok((key.clone(), v.clone())),
            OptionValue::Env { env } => {
                std::env::var(env)
                    .map(|v| (key.clone(), v))
                    .map_err(|_| StoreError::BadOption {
                        key: key.clone(),
                        reason: format!("environment variable `{env}` is not set"),
                    })
            }
        })
        .collect()
}

/// The one object-store factory: by URL scheme.
pub fn open_url(url: &Url, options: &[(String, String)]) -> Result<Located> {
    let scheme = url.scheme();
    let (store, store_url, path): (Arc<dyn ObjectStore>, Url, Path) = match scheme {
        "file" => {
            let fs_path = url.to_file_path().map_err(|_| StoreError::InvalidUrl {
                url: url.to_string(),
                reason: "not a local path".into(),
            })?;
            let path = Path::from_absolute_path(&fs_path).map_err(|e| StoreError::InvalidUrl {
                url: url.to_string(),
                reason: e.to_string(),
            })?;
            let store = object_store::local::LocalFileSystem::new().with_automatic_cleanup(true);
            (
                Arc::new(store),
                Url::parse("file:///").expect("static URL"),
                path,
            )
        }
        "memory" => {
            let name = url.host_str().unwrap_or("default").to_string();
            let store = memory_stores()
                .lock()
                .expect("memory store registry lock")
                .entry(name.clone())
                .or_insert_with(|| Arc::new(InMemory::new()))
                .clone();
            let store_url =
                Url::parse(&format!("memory://{name}/")).map_err(|e| StoreError::InvalidUrl {
                    url: url.to_string(),
                    reason: e.to_string(),
                })?;
            (store, store_url, Path::from(url.path()))
        }
        #[cfg(feature = "cloud")]
        "s3" | "s3a" | "gs" | "az" | "abfs" | "abfss" => cloud_store(url, options)?,
        other => {
            return Err(StoreError::UnsupportedScheme {
                scheme: other.to_string(),
                url: url.to_string(),
            });
        }
    };
    let _ = options;
    // Test-only fault injection (stores/faults.rs): every store of the process, so table IO,
    // DataFusion scans, run state and the audit log all see the same faults.
    let store = match fault_plan()? {
        Some(plan) => super::faults::FaultStore::wrap(store, plan),
        None => store,
    };
    let mut url = url.clone();
    if !url.path().ends_with('/') {
        url.set_path(&format!("{}/", url.path()));
    }
    Ok(Located {
        store,
        store_url,
        path,
        url,
    })
}

#[cfg(feature = "cloud")]
fn cloud_store(
    url: &Url,
    options: &[(String, String)],
) -> Result<(Arc<dyn ObjectStore>, Url, Path)> {
    use object_store::aws::{AmazonS3Builder, AmazonS3ConfigKey};
    use object_store::azure::{AzureConfigKey, MicrosoftAzureBuilder};
    use object_store::gcp::{GoogleCloudStorageBuilder, GoogleConfigKey};

    let bad = |key: &str, reason: String| StoreError::BadOption {
        key: key.to_string(),
        reason,
    };
    let host = url.host_str().unwrap_or_default();
    let store_url =
        Url::parse(&format!("{}://{host}/", url.scheme())).map_err(|e| StoreError::InvalidUrl {
            url: url.to_string(),
            reason: e.to_string(),
        })?;
    let path = Path::from(url.path());
    let store: Arc<dyn ObjectStore> = match url.scheme() {
        "s3" | "s3a" => {
            let mut builder = AmazonS3Builder::from_env().with_url(store_url.as_str());
            for (key, value) in options {
                let k: AmazonS3ConfigKey = key
                    .parse()
                    .map_err(|e: object_store::Error| bad(key, e.to_string()))?;
                builder = builder.with_config(k, value);
            }
            // S3 has had conditional PUT (If-None-Match) since 2024; Delta commits rely on it.
            builder = builder.with_conditional_put(object_store::aws::S3ConditionalPut::ETagMatch);
            if let Some(plan) = flaky_plan()? {
                builder = builder.with_http_connector(super::faults::FlakyHttp::new(plan));
            }
            Arc::new(builder.build().map_err(|e| StoreError::Root {
                root: url.to_string(),
                reason: e.to_string(),
            })?)
        }
        "gs" => {
            let mut builder = GoogleCloudStorageBuilder::from_env().with_url(store_url.as_str());
            for (key, value) in options {
                let k: GoogleConfigKey = key
                    .parse()
                    .map_err(|e: object_store::Error| bad(key, e.to_string()))?;
                builder = builder.with_config(k, value);
            }
            if let Some(plan) = flaky_plan()? {
                builder = builder.with_http_connector(super::faults::FlakyHttp::new(plan));
            }
            Arc::new(builder.build().map_err(|e| StoreError::Root {
                root: url.to_string(),
                reason: e.to_string(),
            })?)
        }
        _ => {
            let mut builder = MicrosoftAzureBuilder::from_env().with_url(store_url.as_str());
            for (key, value) in options {
                let k: AzureConfigKey = key
                    .parse()
                    .map_err(|e: object_store::Error| bad(key, e.to_string()))?;
                builder = builder.with_config(k, value);
            }
            if let Some(plan) = flaky_plan()? {
                builder = builder.with_http_connector(super::faults::FlakyHttp::new(plan));
            }
            Arc::new(builder.build().map_err(|e| StoreError::Root {
                root: url.to_string(),
                reason: e.to_string(),
            })?)
        }
    };
    Ok((store, store_url, path))
}

/// The process's fault plan (test-only, `NIGHTJAR_FAULTS`); a malformed one is a usage error.
fn fault_plan() -> Result<Option<&'static super::faults::FaultPlan>> {
    super::faults::plan().map_err(|reason| StoreError::BadOption {
        key: super::faults::ENV.into(),
        reason,
    })
}

/// The fault plan when it asks for HTTP faults.
#[cfg(feature = "cloud")]
fn flaky_plan() -> Result<Option<&'static super::faults::FaultPlan>> {
    Ok(fault_plan()?.filter(|p| p.http_503 > 0.0 || p.http_timeout > 0.0))
}

/// The project's storage root: tables, runs, registry and audit log live under it.
#[derive(Clone, Debug)]
pub struct Storage {
    pub root: Located,
    /// Options the root was opened with (reused for other URLs of the same scheme).
    options: Vec<(String, String)>,
}

impl Storage {
    /// Opens the root, creating a local directory if needed, and checks it is writable.
    pub async fn open(
        root: &str,
        options: &BTreeMap<String, OptionValue>,
        project_dir: &FsPath,
    ) -> Result<Storage> {
        let url = normalize_url(root, project_dir)?;
        let options = resolve_options(options)?;
        let located = open_url(&url, &options)?;
        if url.scheme() == "file" {
            let dir = url.to_file_path().map_err(|_| StoreError::Root {
                root: root.into(),
                reason: "not a path".into(),
            })?;
            std::fs::create_dir_all(&dir).map_err(|e| StoreError::Root {
                root: dir.display().to_string(),
                reason: e.to_string(),
            })?;
            // One probe name per process: concurrent runs on a fresh root must not remove each
            // other's probe (seen as "not writable: No such file" under parallel starts).
            let probe = dir.join(format!(".nightjar-write-probe-{}", std::process::id()));
            std::fs::write(&probe, b"")
                .and_then(|_| std::fs::remove_file(&probe))
                .map_err(|e| StoreError::Root {
                    root: dir.display().to_string(),
                    reason: format!("not writable: {e}"),
                })?;
        }
        Ok(Storage {
            root: located,
            options,
        })
    }

    /// A store for another URL (an ingest source, an export target), built the same way.
    pub fn open_other(&self, location: &str, project_dir: &FsPath) -> Result<Located> {
        let url = normalize_url(location, project_dir)?;
        let same_kind = url.scheme() == self.root.url.scheme();
        open_url(&url, if same_kind { &self.options } else { &[] })
    }

    /// The store path of `rel` (a `/`-separated path under the root).
    pub fn path(&self, rel: &str) -> Path {
        let mut parts: Vec<String> = self
            .root
            .path
            .parts()
            .map(|p| p.as_ref().to_string())
            .collect();
        parts.extend(rel.split('/').filter(|p| !p.is_empty()).map(str::to_string));
        Path::from_iter(parts)
    }

    pub fn url_of(&self, rel: &str) -> Url {
        let mut url = self.root.url.clone();
        let joined = format!("{}{}", url.path(), rel.trim_start_matches('/'));
        url.set_path(&joined);
        url
    }

    pub fn store(&self) -> Arc<dyn ObjectStore> {
        self.root.store.clone()
    }

    pub fn display(&self) -> String {
        self.root.url.to_string()
    }

    pub async fn get(&self, rel: &str) -> Result<Option<Bytes>> {
        let path = self.path(rel);
        match self.root.store.get(&path).await {
            Ok(r) => Ok(Some(r.bytes().await.map_err(|source| {
                StoreError::Object {
                    path: path.to_string(),
                    source,
                }
            })?)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(source) => Err(StoreError::Object {
                path: path.to_string(),
                source,
            }),
        }
    }

    /// Replaces an object in one step: readers see the old bytes or the new ones.
    pub async fn put(&self, rel: &str, bytes: Bytes) -> Result<()> {
        let path = self.path(rel);
        self.root
            .store
            .put(&path, PutPayload::from(bytes))
            .await
            .map(|_| ())
            .map_err(|source| StoreError::Object {
                path: path.to_string(),
                source,
            })
    }

    /// Creates an object only if it does not exist; `Ok(false)` if it does.
    ///
    /// A conditional create is not retried by object_store when its answer is lost (a
    /// timeout, a dropped connection): the object may exist now, written by this very call.
    /// So after such an error the object is read back: our bytes mean the create landed
    /// (`Ok(true)`), other bytes that another writer won (`Ok(false)`), and no object that
    /// the create is tried again, a few times, before the error is returned. Every caller
    /// writes records unique to its writer (run ids, times, hash links), so equal bytes are
    /// our own write.
    pub async fn put_if_absent(&self, rel: &str, bytes: Bytes) -> Result<bool> {
        const ATTEMPTS: usize = 3;
        let path = self.path(rel);
        let opts = || PutOptions {
            mode: PutMode::Create,
            ..Default::default()
        };
        let mut attempt = 1;
        loop {
            let source = match self
                .root
                .store
                .put_opts(&path, PutPayload::from(bytes.clone()), opts())
                .await
            {
                Ok(_) => return Ok(true),
                Err(object_store::Error::AlreadyExists { .. }) => return Ok(false),
                Err(source) => source,
            };
            let unanswered = |source| StoreError::Object {
                path: path.to_string(),
                source,
            };
            if matches!(source, object_store::Error::NotImplemented { .. }) {
                return Err(unanswered(source));
            }
            match self.get(rel).await {
                Ok(Some(existing)) => {
                    tracing::debug!(%path, error = %source, "conditional create unanswered; read back");
                    return Ok(existing == bytes);
                }
                Ok(None) if attempt < ATTEMPTS => attempt += 1,
                _ => return Err(unanswered(source)),
            }
        }
    }

    /// Paths (relative to the root) of every object under `rel`.
    pub async fn list(&self, rel: &str) -> Result<Vec<String>> {
        let prefix = self.path(rel);
        let root_len = self.root.path.parts().count();
        let metas: Vec<_> = self
            .root
            .store
            .list(Some(&prefix))
            .try_collect()
            .await
            .map_err(|source| StoreError::Object {
                path: prefix.to_string(),
                source,
            })?;
        let mut out: Vec<String> = metas
            .into_iter()
            .map(|m| {
                m.location
                    .parts()
                    .skip(root_len)
                    .map(|p| p.as_ref().to_string())
                    .collect::<Vec<_>>()
                    .join("/")
            })
            .collect();
        out.sort();
        Ok(out)
    }

    /// Deletes every object under `rel` (scratch space such as staged task outputs).
    pub async fn delete_prefix(&self, rel: &str) -> Result<()> {
        for key in self.list(rel).await? {
            self.delete(&key).await?;
        }
        Ok(())
    }

    /// Deletes one object; a missing one is not an error (deletes are retried after crashes).
    pub async fn delete(&self, rel: &str) -> Result<()> {
        let path = self.path(rel);
        match self.root.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(StoreError::Object {
                path: path.to_string(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_file_urls_resolve_against_the_project() {
        let base = FsPath::new("/srv/project");
        assert_eq!(
            normalize_url("file://./warehouse", base).unwrap().as_str(),
            "file:///srv/project/warehouse"
        );
        assert_eq!(
            normalize_url("data/x.csv", base).unwrap().as_str(),
            "file:///srv/project/data/x.csv"
        );
        assert_eq!(
            normalize_url("file:///tmp/a/../b", base).unwrap().as_str(),
            "file:///tmp/b"
        );
        assert_eq!(
            normalize_url("s3://bucket/p", base).unwrap().as_str(),
            "s3://bucket/p"
        );
    }

    #[test]
    fn unknown_schemes_are_refused_by_name() {
        let err = open_url(&Url::parse("ftp://host/x").unwrap(), &[]).unwrap_err();
        assert_eq!(
            err.to_string(),
            "unsupported storage URL scheme `ftp` in `ftp://host/x`"
        );
    }

    #[tokio::test]
    async fn put_if_absent_refuses_the_second_writer() {
        let storage = Storage::open("memory://put-if-absent", &BTreeMap::new(), FsPath::new("/"))
            .await
            .unwrap();
        assert!(
            storage
                .put_if_absent("a/b.json", Bytes::from_static(b"1"))
                .await
                .unwrap()
        );
        assert!(
            !storage
                .put_if_absent("a/b.json", Bytes::from_static(b"2"))
                .await
                .unwrap()
        );
        assert_eq!(
            storage.get("a/b.json").await.unwrap().unwrap(),
            Bytes::from_static(b"1")
        );
        assert_eq!(
            storage.list("a").await.unwrap(),
            vec!["a/b.json".to_string()]
        );
    }
}
