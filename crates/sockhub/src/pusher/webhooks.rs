//! Pusher's webhooks (server_api/webhooks): `channel_occupied`, `channel_vacated`,
//! `member_added`, `member_removed` and `client_event`, POSTed to each app's `webhook_url` as
//! `{"time_ms": …, "events": [...]}` with `X-Pusher-Key` and `X-Pusher-Signature` (hex
//! HMAC-SHA256 of the body with the app's secret).
//!
//! Events are queued (never waited for: some are raised under the hub's channel lock) and sent
//! by one task, batched per app, one attempt each with a 5 s timeout; what cannot be queued or
//! sent is counted and logged. Occupancy is this node's (channels are shared by all apps, so
//! every app with a webhook hears about every channel).

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::config::PusherApp;

/// Events waiting to be sent.
const QUEUE: usize = 4096;
/// Most events in one request.
const BATCH: usize = 100;
/// Time allowed per request.
const TIMEOUT: Duration = Duration::from_secs(5);

/// The webhook sender of the Pusher adapter.
pub(crate) struct PusherHooks {
    /// Per app: its URL, key and secret (`None`: no webhook).
    targets: Vec<Option<(hyper::Uri, String, String)>>,
    /// Queue to the sending task, started on first use (inside the runtime).
    tx: OnceLock<mpsc::Sender<(usize, Value)>>,
    /// Events not delivered (queue full, request failed or refused).
    pub(crate) dropped: AtomicU64,
    /// Events delivered (2xx).
    pub(crate) sent: AtomicU64,
}

impl PusherHooks {
    /// `None` if no app has a webhook URL.
    ///
    /// # Errors
    /// A webhook URL that is not `http://HOST…`.
    pub(crate) fn new(apps: &[PusherApp]) -> Result<Option<PusherHooks>, String> {
        let mut targets = Vec::new();
        for a in apps {
            targets.push(match &a.webhook_url {
                None => None,
                Some(url) => {
                    let uri = crate::config::http_url(url).map_err(|e| {
                        format!("pusher app {}: webhook_url {url:?}: {e}", a.app_id)
                    })?;
                    Some((uri, a.key.clone(), a.secret.clone()))
                }
            });
        }
        if targets.iter().all(Option::is_none) {
            return Ok(None);
        }
        Ok(Some(PusherHooks {
            targets,
            tx: OnceLock::new(),
            dropped: AtomicU64::new(0),
            sent: AtomicU64::new(0),
        }))
    }

    /// Does `app` have a webhook?
    pub(crate) fn wants(&self, app: usize) -> bool {
        self.targets.get(app).is_some_and(Option::is_some)
    }

    /// Queues `event` for `app` (no-op for an app without a webhook).
    pub(crate) fn emit(self: &std::sync::Arc<Self>, app: usize, event: Value) {
        if !self.wants(app) {
            return;
        }
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::channel(QUEUE);
            tokio::spawn(send_loop(self.clone(), rx));
            tx
        });
        if tx.try_send((app, event)).is_err() {
            self.dropped.fetch_add(1, Relaxed);
            tracing::warn!("pusher webhook queue full; event dropped");
        }
    }

    /// Queues `event` for every app that has a webhook.
    pub(crate) fn emit_all(self: &std::sync::Arc<Self>, event: &Value) {
        for app in 0..self.targets.len() {
            if self.wants(app) {
                self.emit(app, event.clone());
            }
        }
    }
}

async fn send_loop(hooks: std::sync::Arc<PusherHooks>, mut rx: mpsc::Receiver<(usize, Value)>) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(TIMEOUT));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    while let Some(first) = rx.recv().await {
        // Everything queued now, batched per app, in order.
        let mut per_app: Vec<Vec<Value>> = vec![Vec::new(); hooks.targets.len()];
        per_app[first.0].push(first.1);
        while let Ok((app, ev)) = rx.try_recv() {
            per_app[app].push(ev);
            if per_app[app].len() >= BATCH {
                break;
            }
        }
        for (app, events) in per_app.into_iter().enumerate() {
            let Some(Some((uri, key, secret))) = hooks.targets.get(app) else {
                continue;
            };
            if events.is_empty() {
                continue;
            }
            let n = events.len() as u64;
            let time_ms = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0);
            let body = json!({ "time_ms": time_ms, "events": events }).to_string();
            let signature = super::signature::sign(secret, &body);
            let req = hyper::Request::post(uri.clone())
                .header("content-type", "application/json")
                .header("x-pusher-key", key.as_str())
                .header("x-pusher-signature", signature)
                .body(Full::new(Bytes::from(body)));
            let Ok(req) = req else {
                hooks.dropped.fetch_add(n, Relaxed);
                continue;
            };
            match tokio::time::timeout(TIMEOUT, client.request(req)).await {
                Ok(Ok(resp)) if resp.status().is_success() => {
                    hooks.sent.fetch_add(n, Relaxed);
                }
                outcome => {
                    hooks.dropped.fetch_add(n, Relaxed);
                    let why = match outcome {
                        Ok(Ok(resp)) => format!("HTTP {}", resp.status()),
                        Ok(Err(e)) => e.to_string(),
                        Err(_) => "timed out".into(),
                    };
                    tracing::warn!(events = n, error = %why, "pusher webhook not delivered");
                }
            }
        }
    }
}
