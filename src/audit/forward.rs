//! Optional OpenLineage HTTP transport: events already in the local audit log are also POSTed
//! to an OpenLineage endpoint (Marquez, DataHub, …), configured the way OpenLineage clients
//! are: `OPENLINEAGE_URL` (e.g. `http://marquez:5000`), `OPENLINEAGE_ENDPOINT` (default
//! `api/v1/lineage`) and `OPENLINEAGE_API_KEY` (sent as a bearer token).
//!
//! A forward is best effort: it runs beside the run, retries with backoff under a timeout,
//! and a failure is a warning. The local log is the record; the endpoint is a copy.

use std::time::Duration;

use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Attempts per event (the first one included).
const ATTEMPTS: u32 = 3;
/// Limit on each request.
const TIMEOUT: Duration = Duration::from_secs(5);
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// How long the end of a run waits for forwards still queued.
const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Where to send events.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub url: String,
    pub api_key: Option<String>,
}

impl Endpoint {
    /// From the OpenLineage client environment variables; `None` when `OPENLINEAGE_URL` is
    /// unset or empty.
    pub fn from_env() -> Option<Endpoint> {
        let base = std::env::var("OPENLINEAGE_URL").ok()?;
        let base = base.trim().trim_end_matches('/');
        if base.is_empty() {
            return None;
        }
        let endpoint =
            std::env::var("OPENLINEAGE_ENDPOINT").unwrap_or_else(|_| "api/v1/lineage".into());
        Some(Endpoint {
            url: format!("{base}/{}", endpoint.trim_start_matches('/')),
            api_key: std::env::var("OPENLINEAGE_API_KEY")
                .ok()
                .filter(|k| !k.is_empty()),
        })
    }
}

/// Sends events in the order given, one at a time, from a background task.
pub struct Forwarder {
    tx: mpsc::UnboundedSender<Value>,
    task: JoinHandle<Stats>,
}

/// What a forwarder managed, for logs and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    pub sent: u64,
    pub failed: u64,
}

impl Forwarder {
    pub fn start(endpoint: Endpoint) -> Forwarder {
        let (tx, mut rx) = mpsc::unbounded_channel::<Value>();
        let task = tokio::spawn(async move {
            let mut stats = Stats::default();
            let client = match reqwest::Client::builder().timeout(TIMEOUT).build() {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(
                        "OpenLineage forwarding disabled: cannot build an HTTP client: {e}"
                    );
                    while rx.recv().await.is_some() {
                        stats.failed += 1;
                    }
                    return stats;
                }
            };
            // After an event fails every attempt, the endpoint is taken to be down: later
            // events get one attempt each until one succeeds, so a dead endpoint costs a run
            // little time.
            let mut healthy = true;
            while let Some(event) = rx.recv().await {
                let attempts = if healthy { ATTEMPTS } else { 1 };
                match send(&client, &endpoint, &event, attempts).await {
                    Ok(()) => {
                        stats.sent += 1;
                        healthy = true;
                    }
                    Err(e) => {
                        stats.failed += 1;
                        healthy = false;
                        tracing::warn!(url = %endpoint.url, "OpenLineage event not forwarded (it is in the local audit log): {e}");
                    }
                }
            }
            stats
        });
        Forwarder { tx, task }
    }

    pub fn send(&self, event: Value) {
        // The task only ends when every sender is gone; a closed channel cannot happen here.
        let _ = self.tx.send(event);
    }

    /// Waits (bounded) for queued events to be sent.
    pub async fn finish(self) -> Stats {
        drop(self.tx);
        let mut task = self.task;
        match tokio::time::timeout(DRAIN_LIMIT, &mut task).await {
            Ok(Ok(stats)) => stats,
            Ok(Err(e)) => {
                tracing::warn!("OpenLineage forwarder stopped: {e}");
                Stats::default()
            }
            Err(_) => {
                tracing::warn!(
                    "OpenLineage forwarding still busy after {DRAIN_LIMIT:?}; giving up (events are in the local audit log)"
                );
                task.abort();
                Stats::default()
            }
        }
    }
}

async fn send(
    client: &reqwest::Client,
    endpoint: &Endpoint,
    event: &Value,
    attempts: u32,
) -> Result<(), String> {
    let body = serde_json::to_vec(event).map_err(|e| e.to_string())?;
    let mut delay = FIRST_BACKOFF;
    let mut last = String::new();
    for attempt in 1..=attempts {
        let mut request = client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .body(body.clone());
        if let Some(key) = &endpoint.api_key {
            request = request.bearer_auth(key);
        }
        match request.send().await {
            Ok(response) if response.status().is_success() => return Ok(()),
            // A 4xx other than 408/429 will fail the same way again.
            Ok(response)
                if response.status().is_client_error()
                    && !matches!(response.status().as_u16(), 408 | 429) =>
            {
                return Err(format!("HTTP {}", response.status()));
            }
            Ok(response) => last = format!("HTTP {}", response.status()),
            Err(e) => last = e.without_url().to_string(),
        }
        if attempt < attempts {
            tokio::time::sleep(delay).await;
            delay *= 2;
        }
    }
    Err(format!("{last} after {attempts} attempt(s)"))
}
