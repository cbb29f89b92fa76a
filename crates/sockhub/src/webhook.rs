//! Webhooks: the classic `onConnect` / `onMessage` / `onClose` callbacks for a backend in any
//! language. Each event is POSTed as JSON to one URL, signed with HMAC-SHA256 over the raw body
//! (`X-Sockhub-Signature: sha256=<hex>`), and the backend's answer can act:
//!
//! | event | body | the backend may answer (JSON, all optional) |
//! |---|---|---|
//! | `connect` | `{"event":"connect","id":…,"time_ms":…,"session":"7","transport":"ws","peer":"127.0.0.1:5555","user":"alice"\|null,"channels":["lobby"]}` | `{"reject":"reason"}` refuses the client; `{"channels":["a","b"]}` sets the channels it joins. A 4xx status also refuses (with the body's first line as reason). |
//! | `message` | `{"event":"message",…,"session":"7","user":…,"channel":"lobby"\|null,"data":"hi"}` (or `"data_base64"`) | `{"reply":"text"}` to the sender; `{"publish":[{"channel":"lobby","data":"…"}]}` to channels |
//! | `close` | `{"event":"close",…,"session":"7","user":…,"code":1000,"reason":"closed by peer"}` | nothing |
//!
//! Bounded and never blocking: at most `max_concurrency` requests are in flight. A connect
//! waits for its answer (up to `timeout`; then `on_failure` decides). A message event that
//! finds every slot busy is dropped and counted. A close event waits for a slot and is retried
//! `close_retries` times before it is counted as dropped. `id` increases by one per event, so
//! a backend can restore the order of events that raced each other.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt as _, Full, Limited};
use hyper::header;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::{Deserialize, Serialize};
use tokio::sync::Semaphore;

use crate::auth::sign_hex;
use crate::close::CloseReason;
use crate::config::{WebhookEvent, WebhookFailure, WebhookOptions};
use crate::message::{Message, MessageKind, SessionId, Transport};

/// Largest answer body read from the backend, in bytes.
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Upper bounds of the latency histogram, in seconds.
pub(crate) const LATENCY_BUCKETS: [f64; 10] =
    [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

/// How one webhook request ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// 2xx.
    Ok,
    /// The backend answered 4xx (for connect: a refusal).
    Refused,
    /// 5xx, an unreadable answer, or a connection error.
    Error,
    /// No answer within `timeout`.
    Timeout,
}

impl Outcome {
    pub(crate) const ALL: [Outcome; 4] = [
        Outcome::Ok,
        Outcome::Refused,
        Outcome::Error,
        Outcome::Timeout,
    ];
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::Refused => "refused",
            Outcome::Error => "error",
            Outcome::Timeout => "timeout",
        }
    }
}

/// Counters for `/metrics`, per event kind (index: connect, message, close).
#[derive(Debug, Default)]
pub(crate) struct WebhookStats {
    /// Requests by event and outcome.
    pub requests: [[AtomicU64; 4]; 3],
    /// Events not delivered (no free slot for a message; retries exhausted for a close).
    pub dropped: [AtomicU64; 3],
    /// Latency histogram: cumulative-free bucket counts (one per bound, plus +Inf last).
    pub latency_buckets: [AtomicU64; LATENCY_BUCKETS.len() + 1],
    /// Sum of latencies, in microseconds.
    pub latency_sum_us: AtomicU64,
    /// Connect webhooks that failed in a row (readiness reports degraded from 3).
    pub connect_failures_in_a_row: AtomicU64,
}

fn event_index(e: WebhookEvent) -> usize {
    match e {
        WebhookEvent::Connect => 0,
        WebhookEvent::Message => 1,
        WebhookEvent::Close => 2,
    }
}

fn outcome_index(o: Outcome) -> usize {
    match o {
        Outcome::Ok => 0,
        Outcome::Refused => 1,
        Outcome::Error => 2,
        Outcome::Timeout => 3,
    }
}

impl WebhookStats {
    fn record(&self, event: WebhookEvent, outcome: Outcome, took: Duration) {
        self.requests[event_index(event)][outcome_index(outcome)].fetch_add(1, Relaxed);
        let secs = took.as_secs_f64();
        let bucket = LATENCY_BUCKETS
            .iter()
            .position(|&b| secs <= b)
            .unwrap_or(LATENCY_BUCKETS.len());
        self.latency_buckets[bucket].fetch_add(1, Relaxed);
        self.latency_sum_us
            .fetch_add(took.as_micros().min(u64::MAX as u128) as u64, Relaxed);
    }

    fn dropped(&self, event: WebhookEvent) {
        self.dropped[event_index(event)].fetch_add(1, Relaxed);
    }

    /// Requests for `event` that ended with `outcome`.
    pub(crate) fn requests(&self, event: WebhookEvent, outcome: Outcome) -> u64 {
        self.requests[event_index(event)][outcome_index(outcome)].load(Relaxed)
    }

    /// Events of this kind that were dropped.
    pub(crate) fn dropped_count(&self, event: WebhookEvent) -> u64 {
        self.dropped[event_index(event)].load(Relaxed)
    }
}

/// The session a webhook event is about.
pub(crate) struct Subject<'a> {
    pub session: SessionId,
    pub transport: Transport,
    pub peer: std::net::SocketAddr,
    pub user: Option<&'a str>,
}

#[derive(Serialize)]
struct Envelope<'a, T: Serialize> {
    event: &'static str,
    id: u64,
    time_ms: u64,
    session: String,
    transport: &'static str,
    peer: String,
    user: Option<&'a str>,
    #[serde(flatten)]
    body: T,
}

#[derive(Serialize)]
struct ConnectBody<'a> {
    channels: &'a [String],
}

#[derive(Serialize)]
struct MessageBody<'a> {
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

#[derive(Serialize)]
struct CloseBody<'a> {
    code: u16,
    reason: &'a str,
}

/// The backend's answer to a connect event.
#[derive(Debug, Default, Deserialize)]
struct ConnectAnswer {
    #[serde(default)]
    reject: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
}

/// One message the backend asks sockhub to send.
#[derive(Debug, Deserialize)]
pub(crate) struct OutMessage {
    /// Target channel (for `publish`).
    #[serde(default)]
    pub channel: Option<String>,
    /// Text payload.
    #[serde(default)]
    pub data: Option<String>,
    /// Binary payload, base64.
    #[serde(default)]
    pub data_base64: Option<String>,
}

impl OutMessage {
    pub(crate) fn message(&self) -> Option<Message> {
        match (&self.data, &self.data_base64) {
            (Some(t), None) => Some(Message::text(t.clone())),
            (None, Some(b)) => base64::engine::general_purpose::STANDARD
                .decode(b)
                .ok()
                .map(Message::binary),
            _ => None,
        }
    }
}

/// The backend's answer to a message event.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct MessageAnswer {
    /// Text or message sent back to the sender.
    #[serde(default)]
    pub reply: Option<Reply>,
    /// Messages published to channels.
    #[serde(default)]
    pub publish: Vec<OutMessage>,
}

/// `"reply": "text"` or `"reply": {"data_base64": "…"}`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub(crate) enum Reply {
    /// Plain text.
    Text(String),
    /// Text or binary, as an object.
    Message(OutMessage),
}

/// What the connect webhook decided.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admission {
    /// Let the client in; `Some` replaces its channels.
    Accept(Option<Vec<String>>),
    /// Refuse the client.
    Refuse(CloseReason),
}

/// The webhook sender shared by every session of a server.
pub(crate) struct Webhooks {
    opts: WebhookOptions,
    uri: hyper::Uri,
    client: Client<HttpConnector, Full<Bytes>>,
    slots: Arc<Semaphore>,
    next_id: AtomicU64,
    pub(crate) stats: WebhookStats,
}

impl std::fmt::Debug for Webhooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Webhooks")
            .field("url", &self.opts.url)
            .finish()
    }
}

/// Why webhook options cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("webhook url {url:?}: {why}")]
pub struct WebhookConfigError {
    url: String,
    why: String,
}

/// Checks webhook options: an `http://` URL with a host, and a non-empty secret.
///
/// # Errors
/// What is wrong, naming the URL.
pub(crate) fn check(opts: &WebhookOptions) -> Result<hyper::Uri, WebhookConfigError> {
    let err = |why: &str| WebhookConfigError {
        url: opts.url.clone(),
        why: why.to_string(),
    };
    let uri = crate::config::http_url(&opts.url).map_err(|e| err(&e))?;
    if opts.secret.is_empty() {
        return Err(err("a webhook secret is required to sign the events"));
    }
    Ok(uri)
}

impl Webhooks {
    /// Checks the options and builds the HTTP client.
    ///
    /// # Errors
    /// See [`check`].
    pub(crate) fn new(opts: WebhookOptions) -> Result<Webhooks, WebhookConfigError> {
        let uri = check(&opts)?;
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(opts.timeout));
        connector.set_nodelay(true);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        Ok(Webhooks {
            slots: Arc::new(Semaphore::new(opts.max_concurrency.max(1))),
            opts,
            uri,
            client,
            next_id: AtomicU64::new(1),
            stats: WebhookStats::default(),
        })
    }

    fn wants(&self, e: WebhookEvent) -> bool {
        self.opts.events.contains(&e)
    }

    fn envelope<T: Serialize>(&self, event: WebhookEvent, s: &Subject<'_>, body: T) -> Bytes {
        let env = Envelope {
            event: event.as_str(),
            id: self.next_id.fetch_add(1, Relaxed),
            time_ms: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            session: s.session.to_string(),
            transport: s.transport.as_str(),
            peer: s.peer.to_string(),
            user: s.user,
            body,
        };
        Bytes::from(serde_json::to_vec(&env).unwrap_or_default())
    }

    /// POSTs one event and reads the answer (bounded in time and size).
    async fn post(&self, event: WebhookEvent, body: Bytes) -> (Outcome, u16, Bytes) {
        let started = Instant::now();
        let signature = format!("sha256={}", sign_hex(self.opts.secret.as_bytes(), &body));
        let req = hyper::Request::post(self.uri.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                header::USER_AGENT,
                concat!("sockhub/", env!("CARGO_PKG_VERSION")),
            )
            .header("x-sockhub-event", event.as_str())
            .header("x-sockhub-signature", signature)
            .body(Full::new(body));
        let Ok(req) = req else {
            return (Outcome::Error, 0, Bytes::new());
        };
        let exchange = async {
            let resp = self.client.request(req).await.map_err(|e| e.to_string())?;
            let status = resp.status().as_u16();
            let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| e.to_string())?
                .to_bytes();
            Ok::<_, String>((status, body))
        };
        let (outcome, status, answer) =
            match tokio::time::timeout(self.opts.timeout, exchange).await {
                Err(_) => (Outcome::Timeout, 0, Bytes::new()),
                Ok(Err(e)) => {
                    tracing::warn!(event = event.as_str(), error = %e, "webhook failed");
                    (Outcome::Error, 0, Bytes::new())
                }
                Ok(Ok((status, body))) => match status {
                    200..=299 => (Outcome::Ok, status, body),
                    400..=499 => (Outcome::Refused, status, body),
                    _ => (Outcome::Error, status, body),
                },
            };
        self.stats.record(event, outcome, started.elapsed());
        if outcome == Outcome::Timeout {
            tracing::warn!(event = event.as_str(), timeout = ?self.opts.timeout, "webhook timed out");
        }
        (outcome, status, answer)
    }

    /// Asks the backend whether a client may connect. Waits for a slot and the answer, both
    /// within `timeout`.
    pub(crate) async fn connect(&self, s: &Subject<'_>, channels: &[String]) -> Admission {
        if !self.wants(WebhookEvent::Connect) {
            return Admission::Accept(None);
        }
        let body = self.envelope(WebhookEvent::Connect, s, ConnectBody { channels });
        let permit = tokio::time::timeout(self.opts.timeout, self.slots.clone().acquire_owned());
        let (outcome, status, answer) = match permit.await {
            Ok(Ok(_permit)) => self.post(WebhookEvent::Connect, body).await,
            _ => {
                self.stats
                    .record(WebhookEvent::Connect, Outcome::Timeout, self.opts.timeout);
                (Outcome::Timeout, 0, Bytes::new())
            }
        };
        let failed = matches!(outcome, Outcome::Error | Outcome::Timeout);
        if failed {
            self.stats.connect_failures_in_a_row.fetch_add(1, Relaxed);
        } else {
            self.stats.connect_failures_in_a_row.store(0, Relaxed);
        }
        match outcome {
            Outcome::Ok => {
                let a: ConnectAnswer = if answer.iter().all(u8::is_ascii_whitespace) {
                    ConnectAnswer::default()
                } else {
                    match serde_json::from_slice(&answer) {
                        Ok(a) => a,
                        Err(e) => {
                            tracing::warn!(error = %e, "connect webhook answer is not the expected JSON; refusing");
                            return Admission::Refuse(CloseReason::Unavailable(
                                "connect webhook answered with invalid JSON".into(),
                            ));
                        }
                    }
                };
                match a.reject {
                    Some(reason) => Admission::Refuse(CloseReason::Rejected(one_line(&reason))),
                    None => Admission::Accept(a.channels),
                }
            }
            Outcome::Refused => {
                let reason = serde_json::from_slice::<ConnectAnswer>(&answer)
                    .ok()
                    .and_then(|a| a.reject)
                    .unwrap_or_else(|| String::from_utf8_lossy(&answer).into_owned());
                let reason = one_line(&reason);
                Admission::Refuse(CloseReason::Rejected(if reason.is_empty() {
                    format!("refused by backend (HTTP {status})")
                } else {
                    reason
                }))
            }
            Outcome::Error | Outcome::Timeout => match self.opts.on_failure {
                WebhookFailure::Accept => Admission::Accept(None),
                WebhookFailure::Reject => Admission::Refuse(CloseReason::Unavailable(format!(
                    "connect webhook {}",
                    if outcome == Outcome::Timeout {
                        "timed out"
                    } else {
                        "failed"
                    }
                ))),
            },
        }
    }

    /// Reports a message; never waits. Returns the work to run (the request and the handling
    /// of its answer) if a slot was free, or `None` after counting the event as dropped.
    pub(crate) fn message(
        self: &Arc<Self>,
        s: &Subject<'_>,
        channel: Option<&str>,
        message: &Message,
    ) -> Option<impl std::future::Future<Output = Option<MessageAnswer>> + Send + 'static> {
        if !self.wants(WebhookEvent::Message) {
            return None;
        }
        let Ok(permit) = self.slots.clone().try_acquire_owned() else {
            self.stats.dropped(WebhookEvent::Message);
            tracing::warn!(session = %s.session, "webhook slots all busy; message event dropped");
            return None;
        };
        let body = match message.kind() {
            MessageKind::Text => MessageBody {
                channel,
                data: message.as_str(),
                data_base64: None,
            },
            MessageKind::Binary => MessageBody {
                channel,
                data: None,
                data_base64: Some(
                    base64::engine::general_purpose::STANDARD.encode(message.payload()),
                ),
            },
        };
        let body = self.envelope(WebhookEvent::Message, s, body);
        let this = self.clone();
        Some(async move {
            let _permit = permit;
            let (outcome, _, answer) = this.post(WebhookEvent::Message, body).await;
            if outcome != Outcome::Ok || answer.iter().all(u8::is_ascii_whitespace) {
                return None;
            }
            match serde_json::from_slice::<MessageAnswer>(&answer) {
                Ok(a) => Some(a),
                Err(e) => {
                    tracing::warn!(error = %e, "message webhook answer ignored: not the expected JSON");
                    None
                }
            }
        })
    }

    /// Reports a closed session, retrying with backoff. Returns the work to spawn.
    pub(crate) fn close(
        self: &Arc<Self>,
        s: &Subject<'_>,
        reason: &CloseReason,
    ) -> Option<impl std::future::Future<Output = ()> + Send + 'static> {
        if !self.wants(WebhookEvent::Close) {
            return None;
        }
        let body = self.envelope(
            WebhookEvent::Close,
            s,
            CloseBody {
                code: reason.ws_code(),
                reason: &reason.to_string(),
            },
        );
        let this = self.clone();
        Some(async move {
            let mut backoff = Duration::from_millis(100);
            for attempt in 0..=this.opts.close_retries {
                if attempt > 0 {
                    tokio::time::sleep(backoff).await;
                    backoff *= 2;
                }
                let Ok(_permit) = this.slots.clone().acquire_owned().await else {
                    break;
                };
                let (outcome, _, _) = this.post(WebhookEvent::Close, body.clone()).await;
                if matches!(outcome, Outcome::Ok | Outcome::Refused) {
                    return;
                }
            }
            this.stats.dropped(WebhookEvent::Close);
            tracing::warn!("close webhook dropped after retries");
        })
    }

    /// Is the backend answering connects? False after 3 failures in a row.
    pub(crate) fn healthy(&self) -> bool {
        self.stats.connect_failures_in_a_row.load(Relaxed) < 3
    }
}

/// A reason fit for a close frame or error line: first line, at most 100 bytes.
fn one_line(s: &str) -> String {
    let line = s.lines().next().unwrap_or("").trim();
    let mut end = line.len().min(100);
    while !line.is_char_boundary(end) {
        end -= 1;
    }
    line[..end].to_string()
}
