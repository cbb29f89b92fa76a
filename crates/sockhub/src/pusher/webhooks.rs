//! Pusher's webhooks (server_api/webhooks): `channel_occupied`, `channel_vacated`,
//! `member_added`, `member_removed` and `client_event`, POSTed to each app's `webhook_url` as
//! `{"time_ms": …, "events": [...]}` with `X-Pusher-Key` and `X-Pusher-Signature` (hex
//! HMAC-SHA256 of the body with the app's secret).
//!
//! Events are queued (never waited for: some are raised under the hub's channel lock) and sent
//! by one task, in order, batched per app. `channel_vacated` and `member_removed` are held
//! back 3 s and cancelled by a `channel_occupied` / `member_added` of the same channel (and
//! user) within that time, as on Pusher. A batch gets 5 s per attempt and up to 3 attempts
//! (after 1 s, then 2 s) unless the backend answers 4xx; what cannot be queued or sent is
//! counted and logged. Occupancy is this node's (channels are shared by all apps, so every app
//! with a webhook hears about every channel).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::OnceLock;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

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

/// Time `channel_vacated` and `member_removed` are held back, as Pusher does: a channel
/// re-occupied (a member back) within it sends neither event, so a page reload is not
/// reported as leave-and-join.
const DELAY: Duration = Duration::from_secs(3);
/// Most events held back at once (memory and the cost of looking for a cancelling one).
const MAX_HELD: usize = 16 * 1024;
/// Attempts per batch: failed requests (no answer, timeout, 5xx) are retried after 1 s, then
/// 2 s; a 4xx is the backend's answer and is not retried.
const ATTEMPTS: u32 = 3;

/// The event that a held-back `event` cancels with, if any.
fn opposite(name: &str) -> Option<&'static str> {
    match name {
        "channel_occupied" => Some("channel_vacated"),
        "member_added" => Some("member_removed"),
        _ => None,
    }
}

/// Files one queued event: held back, cancelled against a held-back opposite, or due now.
fn accept(
    app: usize,
    event: Value,
    held: &mut VecDeque<(Instant, usize, Value)>,
    due: &mut [Vec<Value>],
) {
    let name = event["name"].as_str().unwrap_or("");
    if name == "channel_vacated" || name == "member_removed" {
        // Beyond MAX_HELD (a mass disconnect) events go out at once rather than pile up.
        if held.len() < MAX_HELD {
            held.push_back((Instant::now() + DELAY, app, event));
        } else {
            due[app].push(event);
        }
        return;
    }
    if let Some(cancels) = opposite(name) {
        let same = |h: &Value| {
            h["name"] == cancels
                && h["channel"] == event["channel"]
                && h["user_id"] == event["user_id"]
        };
        if let Some(i) = held.iter().position(|(_, a, h)| *a == app && same(h)) {
            held.remove(i);
            return;
        }
    }
    due[app].push(event);
}

async fn send_loop(hooks: std::sync::Arc<PusherHooks>, mut rx: mpsc::Receiver<(usize, Value)>) {
    let mut connector = HttpConnector::new();
    connector.set_connect_timeout(Some(TIMEOUT));
    let client: Client<_, Full<Bytes>> = Client::builder(TokioExecutor::new()).build(connector);
    let mut held: VecDeque<(Instant, usize, Value)> = VecDeque::new();
    let mut open = true;
    while open || !held.is_empty() {
        let mut due: Vec<Vec<Value>> = vec![Vec::new(); hooks.targets.len()];
        let next = held.front().map(|h| h.0);
        tokio::select! {
            got = rx.recv(), if open => match got {
                Some((app, ev)) => accept(app, ev, &mut held, &mut due),
                // Shutting down: what is held back goes now.
                None => {
                    open = false;
                    for (_, app, ev) in held.drain(..) {
                        due[app].push(ev);
                    }
                }
            },
            _ = tokio::time::sleep_until(next.unwrap_or_else(Instant::now)), if next.is_some() => {}
        }
        // Everything else queued now, batched per app, in order.
        let mut n = 0;
        while n < BATCH {
            let Ok((app, ev)) = rx.try_recv() else { break };
            accept(app, ev, &mut held, &mut due);
            n += 1;
        }
        let now = Instant::now();
        while held.front().is_some_and(|h| h.0 <= now) {
            if let Some((_, app, ev)) = held.pop_front() {
                due[app].push(ev);
            }
        }
        for (app, events) in due.into_iter().enumerate() {
            let Some(Some(target)) = hooks.targets.get(app) else {
                continue;
            };
            for chunk in events.chunks(BATCH) {
                deliver(&hooks, &client, target, chunk).await;
            }
        }
    }
}

/// POSTs one batch, retrying failures; counts the outcome.
async fn deliver(
    hooks: &PusherHooks,
    client: &Client<HttpConnector, Full<Bytes>>,
    (uri, key, secret): &(hyper::Uri, String, String),
    events: &[Value],
) {
    if events.is_empty() {
        return;
    }
    let n = events.len() as u64;
    let time_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let body = json!({ "time_ms": time_ms, "events": events }).to_string();
    let signature = super::signature::sign(secret, &body);
    let body = Bytes::from(body);
    for attempt in 1..=ATTEMPTS {
        let req = hyper::Request::post(uri.clone())
            .header("content-type", "application/json")
            .header("x-pusher-key", key.as_str())
            .header("x-pusher-signature", signature.as_str())
            .body(Full::new(body.clone()));
        let Ok(req) = req else {
            hooks.dropped.fetch_add(n, Relaxed);
            return;
        };
        let why = match tokio::time::timeout(TIMEOUT, client.request(req)).await {
            Ok(Ok(resp)) if resp.status().is_success() => {
                hooks.sent.fetch_add(n, Relaxed);
                return;
            }
            Ok(Ok(resp)) if resp.status().is_client_error() => {
                hooks.dropped.fetch_add(n, Relaxed);
                tracing::warn!(events = n, status = %resp.status(), "pusher webhook refused by the backend");
                return;
            }
            Ok(Ok(resp)) => format!("HTTP {}", resp.status()),
            Ok(Err(e)) => e.to_string(),
            Err(_) => "timed out".into(),
        };
        if attempt == ATTEMPTS {
            hooks.dropped.fetch_add(n, Relaxed);
            tracing::warn!(events = n, attempts = attempt, error = %why, "pusher webhook not delivered");
            return;
        }
        tracing::info!(events = n, attempt, error = %why, "pusher webhook failed; retrying");
        tokio::time::sleep(Duration::from_secs(1 << (attempt - 1))).await;
    }
}
