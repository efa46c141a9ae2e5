//! Test-only fault injection under the object stores, enabled by `NIGHTJAR_FAULTS` (read here,
//! nowhere else). Unset, nothing is wrapped and this module costs nothing.
//!
//! The tests in `tests/it/faults.rs` use it to prove the DESIGN.md invariants against a real
//! process: a crash at any write leaves every table at its old or new version and the run
//! resumable; a flaky S3 is ridden out by retries; a permanent fault fails the run clearly.
//!
//! `NIGHTJAR_FAULTS` is a comma-separated list of `key=value`:
//!
//! - `seed=N` (default 0): seeds the choice of which requests fail.
//! - `http_503=P`: on HTTP stores (S3, GCS, Azure), answer a share `P` (0..1) of requests
//!   with `503 Slow Down` without sending them. The fault sits *beneath* object_store's
//!   retry layer (an `HttpConnector`), so it exercises the real backoff-and-retry path.
//! - `http_timeout=P`: on HTTP stores, *send* a share `P` of requests, then drop the answer
//!   and report a timeout: the server did the work, the client does not know it. object_store
//!   retries idempotent requests; a conditional create (Delta commits, registry claims,
//!   aliases, audit segments) fails upward, and whoever retries it must recognise its own
//!   write.
//! - `crash_after_writes=N`: abort the process (SIGABRT, no unwinding, no cleanup: the
//!   moral equivalent of SIGKILL) right after the N-th completed write of this process, so
//!   the write is durable but the writer never learns it succeeded. Writes are puts
//!   (including put-if-absent), completed multipart uploads, copies, renames and deletes.
//! - `crash_on=TEXT`: abort the same way right after the first completed write to an object
//!   whose path contains `TEXT` (a crash at one kind of write, such as `/_delta_log/`).
//! - `fail_writes=TEXT`: every write to an object whose path contains `TEXT` fails with a
//!   non-retryable error naming the object (a permanent fault: permissions, a full disk).
//!
//! With a plan set, every completed write is logged at debug level (`NIGHTJAR_LOG=
//! nightjar::stores::faults=debug`) as `write N (put `path`)`, so a test can count a run's
//! writes and see which one a crash point hits.

use std::fmt;
use std::ops::Range;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use bytes::Bytes;
use futures::StreamExt;
use futures::stream::BoxStream;
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, UploadPart,
};
// The HTTP-level faults exist only with the cloud stores (a build without them has no HTTP).
#[cfg(feature = "cloud")]
use rand::{Rng, SeedableRng};
#[cfg(feature = "cloud")]
use std::sync::Mutex;

/// The environment variable that turns fault injection on (tests only).
pub const ENV: &str = "NIGHTJAR_FAULTS";

/// What to inject, parsed from `NIGHTJAR_FAULTS`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FaultPlan {
    pub seed: u64,
    pub http_503: f64,
    pub http_timeout: f64,
    pub crash_after_writes: Option<u64>,
    pub crash_on: Option<String>,
    pub fail_writes: Option<String>,
}

impl FaultPlan {
    pub fn parse(spec: &str) -> Result<FaultPlan, String> {
        let mut plan = FaultPlan::default();
        for item in spec.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            let (key, value) = item
                .split_once('=')
                .ok_or_else(|| format!("`{item}` is not `key=value`"))?;
            let number = |what: &str| format!("`{key}` wants {what}, got `{value}`");
            match key {
                "seed" => plan.seed = value.parse().map_err(|_| number("an integer"))?,
                "http_503" => {
                    plan.http_503 = value
                        .parse()
                        .ok()
                        .filter(|p: &f64| (0.0..=1.0).contains(p))
                        .ok_or_else(|| number("a share between 0 and 1"))?
                }
                "crash_after_writes" => {
                    plan.crash_after_writes = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|n| *n > 0)
                            .ok_or_else(|| number("a positive integer"))?,
                    )
                }
                "http_timeout" => {
                    plan.http_timeout = value
                        .parse()
                        .ok()
                        .filter(|p: &f64| (0.0..=1.0).contains(p))
                        .ok_or_else(|| number("a share between 0 and 1"))?
                }
                "crash_on" => plan.crash_on = Some(value.to_string()),
                "fail_writes" => plan.fail_writes = Some(value.to_string()),
                other => {
                    return Err(format!(
                        "unknown key `{other}` (expected seed, http_503, http_timeout, crash_after_writes, crash_on, fail_writes)"
                    ));
                }
            }
        }
        Ok(plan)
    }
}

/// The process's fault plan: `None` when `NIGHTJAR_FAULTS` is unset (the normal case).
pub fn plan() -> Result<Option<&'static FaultPlan>, String> {
    static PLAN: OnceLock<Result<Option<FaultPlan>, String>> = OnceLock::new();
    PLAN.get_or_init(|| match std::env::var(ENV) {
        Ok(spec) => FaultPlan::parse(&spec)
            .map(Some)
            .map_err(|e| format!("{ENV}: {e}")),
        Err(_) => Ok(None),
    })
    .as_ref()
    .map(Option::as_ref)
    .map_err(Clone::clone)
}

/// Writes completed by this process, across every store (the crash counter).
static WRITES: AtomicU64 = AtomicU64::new(0);

/// Counts one completed write; aborts the process if it is the planned crash point.
fn wrote(plan: &FaultPlan, what: &str, location: &Path) {
    let n = WRITES.fetch_add(1, Ordering::SeqCst) + 1;
    tracing::debug!("write {n} ({what} `{location}`)");
    let crash_here = plan
        .crash_on
        .as_deref()
        .is_some_and(|text| location.as_ref().contains(text));
    if plan.crash_after_writes == Some(n) || crash_here {
        eprintln!("{ENV}: crashing after write {n} ({what} `{location}`)");
        std::process::abort();
    }
}

fn refused(plan: &FaultPlan, what: &str, location: &Path) -> object_store::Result<()> {
    match &plan.fail_writes {
        Some(text) if location.as_ref().contains(text.as_str()) => {
            Err(object_store::Error::Generic {
                store: "faults",
                source: format!("injected permanent fault: {what} `{location}` refused").into(),
            })
        }
        _ => Ok(()),
    }
}

/// An object store that injects the plan's crash and permanent faults around every write.
#[derive(Debug)]
pub struct FaultStore {
    inner: Arc<dyn ObjectStore>,
    plan: &'static FaultPlan,
}

impl FaultStore {
    pub fn wrap(inner: Arc<dyn ObjectStore>, plan: &'static FaultPlan) -> Arc<dyn ObjectStore> {
        Arc::new(FaultStore { inner, plan })
    }
}

impl fmt::Display for FaultStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Faults({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for FaultStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> object_store::Result<PutResult> {
        refused(self.plan, "put", location)?;
        let result = self.inner.put_opts(location, payload, opts).await?;
        wrote(self.plan, "put", location);
        Ok(result)
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> object_store::Result<Box<dyn MultipartUpload>> {
        refused(self.plan, "multipart upload", location)?;
        let inner = self.inner.put_multipart_opts(location, opts).await?;
        Ok(Box::new(FaultUpload {
            inner,
            plan: self.plan,
            location: location.clone(),
        }))
    }

    async fn get_opts(
        &self,
        location: &Path,
        options: GetOptions,
    ) -> object_store::Result<GetResult> {
        self.inner.get_opts(location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[Range<u64>],
    ) -> object_store::Result<Vec<Bytes>> {
        self.inner.get_ranges(location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, object_store::Result<Path>>,
    ) -> BoxStream<'static, object_store::Result<Path>> {
        let plan = self.plan;
        let checked = locations
            .map(move |p| p.and_then(|p| refused(plan, "delete", &p).map(|()| p)))
            .boxed();
        self.inner
            .delete_stream(checked)
            .map(move |r| {
                if let Ok(p) = &r {
                    wrote(plan, "delete", p);
                }
                r
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(
        &self,
        prefix: Option<&Path>,
        offset: &Path,
    ) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(
        &self,
        from: &Path,
        to: &Path,
        options: CopyOptions,
    ) -> object_store::Result<()> {
        refused(self.plan, "copy to", to)?;
        self.inner.copy_opts(from, to, options).await?;
        wrote(self.plan, "copy to", to);
        Ok(())
    }

    async fn rename_opts(
        &self,
        from: &Path,
        to: &Path,
        options: RenameOptions,
    ) -> object_store::Result<()> {
        refused(self.plan, "rename to", to)?;
        self.inner.rename_opts(from, to, options).await?;
        wrote(self.plan, "rename to", to);
        Ok(())
    }
}

/// A multipart upload whose completion counts as one write.
#[derive(Debug)]
struct FaultUpload {
    inner: Box<dyn MultipartUpload>,
    plan: &'static FaultPlan,
    location: Path,
}

#[async_trait]
impl MultipartUpload for FaultUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        self.inner.put_part(data)
    }

    async fn complete(&mut self) -> object_store::Result<PutResult> {
        let result = self.inner.complete().await?;
        wrote(self.plan, "multipart upload", &self.location);
        Ok(result)
    }

    async fn abort(&mut self) -> object_store::Result<()> {
        self.inner.abort().await
    }
}

/// An HTTP connector that answers a seeded share of requests with `503 Slow Down` before they
/// leave the process, beneath object_store's retries (which must then ride them out).
#[cfg(feature = "cloud")]
#[derive(Debug)]
pub struct FlakyHttp {
    plan: &'static FaultPlan,
}

#[cfg(feature = "cloud")]
impl FlakyHttp {
    pub fn new(plan: &'static FaultPlan) -> FlakyHttp {
        FlakyHttp { plan }
    }
}

#[cfg(feature = "cloud")]
impl object_store::client::HttpConnector for FlakyHttp {
    fn connect(
        &self,
        options: &object_store::ClientOptions,
    ) -> object_store::Result<object_store::client::HttpClient> {
        let inner = object_store::client::ReqwestConnector::default().connect(options)?;
        Ok(object_store::client::HttpClient::new(FlakyService {
            inner,
            share: self.plan.http_503,
            lost: self.plan.http_timeout,
            rng: Mutex::new(rand_chacha::ChaCha8Rng::seed_from_u64(self.plan.seed)),
        }))
    }
}

#[cfg(feature = "cloud")]
#[derive(Debug)]
struct FlakyService {
    inner: object_store::client::HttpClient,
    share: f64,
    /// The share of requests whose answer is lost after they were sent.
    lost: f64,
    rng: Mutex<rand_chacha::ChaCha8Rng>,
}

#[cfg(feature = "cloud")]
#[async_trait]
impl object_store::client::HttpService for FlakyService {
    async fn call(
        &self,
        req: object_store::client::HttpRequest,
    ) -> Result<object_store::client::HttpResponse, object_store::client::HttpError> {
        let (fail, lose) = {
            let mut rng = self.rng.lock().unwrap_or_else(|p| p.into_inner());
            (rng.random_bool(self.share), rng.random_bool(self.lost))
        };
        if fail {
            tracing::debug!(method = %req.method(), uri = %req.uri(), "{ENV}: injected 503");
            let body = "<Error><Code>SlowDown</Code><Message>injected by NIGHTJAR_FAULTS</Message></Error>";
            let mut response = object_store::client::HttpResponse::new(Bytes::from(body).into());
            *response.status_mut() = 503u16.try_into().expect("503 is a status code");
            return Ok(response);
        }
        if lose {
            let (method, uri) = (req.method().clone(), req.uri().clone());
            let answer = self.inner.execute(req).await;
            tracing::debug!(%method, %uri, status = ?answer.as_ref().map(|r| r.status()).ok(), "{ENV}: injected timeout after sending");
            return Err(object_store::client::HttpError::new(
                object_store::client::HttpErrorKind::Timeout,
                std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the answer was lost (injected by NIGHTJAR_FAULTS)",
                ),
            ));
        }
        self.inner.execute(req).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::ObjectStoreExt;

    #[test]
    fn plans_parse_and_bad_ones_say_why() {
        assert_eq!(
            FaultPlan::parse(
                "seed=7, http_503=0.1,http_timeout=0.05,crash_after_writes=12,crash_on=/_delta_log/,fail_writes=staging/"
            )
            .unwrap(),
            FaultPlan {
                seed: 7,
                http_503: 0.1,
                http_timeout: 0.05,
                crash_after_writes: Some(12),
                crash_on: Some("/_delta_log/".into()),
                fail_writes: Some("staging/".into()),
            }
        );
        assert_eq!(FaultPlan::parse("").unwrap(), FaultPlan::default());
        assert_eq!(
            FaultPlan::parse("http_503=2").unwrap_err(),
            "`http_503` wants a share between 0 and 1, got `2`"
        );
        assert_eq!(
            FaultPlan::parse("crash_after_writes=0").unwrap_err(),
            "`crash_after_writes` wants a positive integer, got `0`"
        );
        assert!(
            FaultPlan::parse("explode=1")
                .unwrap_err()
                .contains("unknown key")
        );
    }

    #[tokio::test]
    async fn a_permanent_fault_names_the_object_and_writes_nothing() {
        let plan: &'static FaultPlan = Box::leak(Box::new(FaultPlan {
            fail_writes: Some("secret".into()),
            ..Default::default()
        }));
        let inner: Arc<dyn ObjectStore> = Arc::new(object_store::memory::InMemory::new());
        let store = FaultStore::wrap(inner.clone(), plan);
        let path = Path::from("a/secret/x.json");
        let err = store
            .put_opts(&path, PutPayload::from_static(b"1"), PutOptions::default())
            .await
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("injected permanent fault: put `a/secret/x.json` refused"),
            "{err}"
        );
        assert!(inner.head(&path).await.is_err());
        let other = Path::from("a/public/x.json");
        store
            .put_opts(&other, PutPayload::from_static(b"1"), PutOptions::default())
            .await
            .unwrap();
        assert!(inner.head(&other).await.is_ok());
    }
}
