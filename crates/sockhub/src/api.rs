//! The HTTP API on the WebSocket port: what a backend in any language uses to push to clients
//! and look at the hub. JSON in and out; every error is
//! `{"error": {"code": "<stable code>", "message": "<one line>"}}` with its status.
//!
//! | method + path | does | answers |
//! |---|---|---|
//! | `POST /api/publish` | `{"channel": "lobby", "data": "hi"}` (or `"channels": [...]`, `"data_base64"`, `"exclude_session"`) | `{"channels": 1, "deliveries": 3}` |
//! | `GET /api/channels` | channels with subscribers on every node (`?prefix=` filters) | `{"channels": [{"name", "subscribers"}]}` |
//! | `GET /api/channels/{name}` | one channel | `{"name", "subscribers", "occupied"}` |
//! | `GET /api/sessions/{id}` | one session | `{"id", "transport", "peer", "user", "channels"}` |
//! | `POST /api/sessions/{id}/send` | `{"data": "…"}` or `{"data_base64": "…"}` to one session | `{"sent": true}`; 202 `{"sent": true, "relayed": true}` when another node holds it |
//! | `POST /api/sessions/{id}/close` | `{"reason": "…"}` (optional): close it (4010) | `{"closed": true}`; 202 with `"relayed": true` when another node holds it |
//! | `GET /api/stats` | every counter; with a broker, `cluster` (every node's sessions and channels) | the counters |
//! | `GET /healthz` | liveness | `ok` |
//! | `GET /readyz` | readiness: 503 while shutting down, or the broker or connect webhook is failing | `{"status": "ready" \| "degraded", "checks": {…}}` |
//! | `GET /metrics` | Prometheus text format | |
//!
//! Statuses: 400 `bad_json` / `unknown_field` / `bad_request` / `bad_channel`, 401
//! `unauthorized` (no key), 403 `forbidden` (wrong key, or not loopback when no key is set),
//! 404 `unknown_session` / `not_found`, 413 `too_large`, 429 `rate_limited`, 503
//! `outbox_full`.
//!
//! `/api/*` needs `Authorization: Bearer <api key>` when a key is configured; with no key it
//! answers loopback clients only. `/healthz`, `/readyz` and `/metrics` are open (they carry no
//! secrets and no payloads), like most servers' probe endpoints.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use base64::Engine as _;
use http_body_util::{BodyExt as _, Limited};
use serde::{Deserialize, Serialize};

use crate::auth::secrets_equal;
use crate::hub::SendError;
use crate::message::{validate_channel_name, Message, SessionId};
use crate::shared::PeerAddr;
use crate::shared::ServerShared;

/// Most channels one publish may name.
pub const MAX_PUBLISH_CHANNELS: usize = 100;

/// An API error: status, stable code, one-line message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// What went wrong, for humans.
    pub message: String,
}

impl ApiError {
    pub(crate) fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }
    fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, "bad_request", message)
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorDetail<'a>,
}

#[derive(Serialize)]
struct ErrorDetail<'a> {
    code: &'a str,
    message: &'a str,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code,
                message: &self.message,
            },
        };
        let mut r = json_response(self.status, &body);
        match self.status {
            StatusCode::UNAUTHORIZED => {
                r.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"sockhub\""),
                );
            }
            StatusCode::TOO_MANY_REQUESTS => {
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            _ => {}
        }
        r
    }
}

fn json_response<T: Serialize>(status: StatusCode, body: &T) -> Response {
    let mut bytes = serde_json::to_vec(body).unwrap_or_default();
    bytes.push(b'\n');
    let mut r = Response::new(Body::from(bytes));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

fn ok<T: Serialize>(body: &T) -> Response {
    json_response(StatusCode::OK, body)
}

/// Proof that a request may use the API: the key matched (or no key is set and the client is
/// on loopback), and the API rate limit had room. Also used by the dashboard's stats stream.
pub(crate) struct Authorized;

impl FromRequestParts<Arc<ServerShared>> for Authorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        server: &Arc<ServerShared>,
    ) -> Result<Self, Self::Rejection> {
        match &server.config.api.key {
            Some(key) => {
                let presented = parts
                    .headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "));
                match presented {
                    None => {
                        return Err(ApiError::new(
                            StatusCode::UNAUTHORIZED,
                            "unauthorized",
                            "missing Authorization: Bearer <api key>",
                        ))
                    }
                    Some(p) if !secrets_equal(p.trim().as_bytes(), key.as_bytes()) => {
                        return Err(ApiError::new(
                            StatusCode::FORBIDDEN,
                            "forbidden",
                            "invalid API key",
                        ))
                    }
                    Some(_) => {}
                }
            }
            None => {
                let loopback = parts
                    .extensions
                    .get::<PeerAddr>()
                    .is_some_and(|PeerAddr(a)| a.ip().is_loopback());
                if !loopback {
                    return Err(ApiError::new(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "no API key is configured, so the API answers loopback clients only",
                    ));
                }
            }
        }
        let allowed = server
            .api_rate
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take(tokio::time::Instant::now());
        if !allowed {
            return Err(ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!(
                    "more than {} API requests per second",
                    server.config.api.max_requests_per_second
                ),
            ));
        }
        Ok(Authorized)
    }
}

/// Largest request body accepted: room for a base64-encoded `max_message_size` payload plus
/// the JSON around it.
fn body_limit(server: &ServerShared) -> usize {
    let max = server.config.limits.max_message_size;
    max.saturating_add(max / 2).saturating_add(16 * 1024)
}

/// Reads a request body of at most `limit` bytes.
async fn read_body(body: Body, limit: usize) -> Result<bytes::Bytes, ApiError> {
    match Limited::new(body, limit).collect().await {
        Ok(c) => Ok(c.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!("request body over {limit} bytes"),
        )),
        Err(e) => Err(ApiError::bad_request(format!("reading the body: {e}"))),
    }
}

/// Parses a JSON body strictly (unknown fields are errors).
fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body).map_err(|e| {
        // serde quotes the client's text (an unknown key, say) verbatim: keep it one line.
        let text = crate::protocol::one_line(&e.to_string());
        if text.starts_with("unknown field") {
            ApiError::new(StatusCode::BAD_REQUEST, "unknown_field", text)
        } else {
            ApiError::new(StatusCode::BAD_REQUEST, "bad_json", text)
        }
    })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PublishBody {
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    exclude_session: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    data_base64: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct CloseBody {
    #[serde(default)]
    reason: Option<String>,
}

/// A validated `POST /api/publish` request.
#[derive(Debug, Clone, PartialEq)]
pub struct Publish {
    /// Target channels, each valid, no duplicates, at most [`MAX_PUBLISH_CHANNELS`].
    pub channels: Vec<String>,
    /// The payload.
    pub message: Message,
    /// A session that must not receive it.
    pub exclude: Option<SessionId>,
}

fn payload(
    data: Option<String>,
    data_base64: Option<String>,
    max_message_size: usize,
) -> Result<Message, ApiError> {
    let message = match (data, data_base64) {
        (Some(text), None) => Message::text(text),
        (None, Some(b64)) => match base64::engine::general_purpose::STANDARD.decode(b64) {
            Ok(bytes) => Message::binary(bytes),
            Err(e) => return Err(ApiError::bad_request(format!("data_base64: {e}"))),
        },
        _ => {
            return Err(ApiError::bad_request(
                "exactly one of data, data_base64 is required",
            ))
        }
    };
    if message.len() > max_message_size {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too_large",
            format!(
                "message of {} bytes exceeds max-message-size {max_message_size}",
                message.len()
            ),
        ));
    }
    Ok(message)
}

/// Parses and validates a publish body (pure: also what the fuzz target feeds).
///
/// # Errors
/// The [`ApiError`] to answer with.
pub fn parse_publish(body: &[u8], max_message_size: usize) -> Result<Publish, ApiError> {
    let b: PublishBody = parse_json(body)?;
    let mut channels = match (b.channel, b.channels) {
        (Some(c), None) => vec![c],
        (None, Some(cs)) => cs,
        _ => {
            return Err(ApiError::bad_request(
                "exactly one of channel, channels is required",
            ))
        }
    };
    if channels.is_empty() || channels.len() > MAX_PUBLISH_CHANNELS {
        return Err(ApiError::bad_request(format!(
            "channels must name 1 to {MAX_PUBLISH_CHANNELS} channels"
        )));
    }
    for c in &channels {
        validate_channel_name(c)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_channel", e))?;
    }
    let mut seen = std::collections::HashSet::new();
    channels.retain(|c| seen.insert(c.clone()));
    let exclude = match b.exclude_session {
        None => None,
        Some(s) => Some(SessionId(s.parse().map_err(|_| {
            ApiError::bad_request(format!("exclude_session {s:?} is not a session id"))
        })?)),
    };
    let message = payload(b.data, b.data_base64, max_message_size)?;
    Ok(Publish {
        channels,
        message,
        exclude,
    })
}

async fn publish(
    _: Authorized,
    State(server): State<Arc<ServerShared>>,
    body: Body,
) -> Result<Response, ApiError> {
    let body = read_body(body, body_limit(&server)).await?;
    let p = parse_publish(&body, server.config.limits.max_message_size)?;
    let mut deliveries = 0;
    for c in &p.channels {
        deliveries += server.hub.publish_except(c, p.message.clone(), p.exclude);
    }
    #[derive(Serialize)]
    struct Published {
        channels: usize,
        deliveries: usize,
    }
    Ok(ok(&Published {
        channels: p.channels.len(),
        deliveries,
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelsQuery {
    #[serde(default)]
    prefix: Option<String>,
}

async fn channels(
    _: Authorized,
    State(server): State<Arc<ServerShared>>,
    query: Result<Query<ChannelsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut list = server.hub.cluster_channels();
    if let Some(prefix) = &q.prefix {
        list.retain(|c| c.name.starts_with(prefix.as_str()));
    }
    #[derive(Serialize)]
    struct Channels {
        channels: Vec<crate::hub::ChannelInfo>,
    }
    Ok(ok(&Channels { channels: list }))
}

async fn channel(
    _: Authorized,
    State(server): State<Arc<ServerShared>>,
    Path(name): Path<String>,
) -> Result<Response, ApiError> {
    validate_channel_name(&name)
        .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_channel", e))?;
    let subscribers = server.hub.cluster_subscribers(&name);
    #[derive(Serialize)]
    struct Channel {
        name: String,
        subscribers: usize,
        occupied: bool,
    }
    Ok(ok(&Channel {
        name,
        subscribers,
        occupied: subscribers > 0,
    }))
}

fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    raw.parse().map(SessionId).map_err(|_| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "unknown_session",
            format!("no session {raw:?}"),
        )
    })
}

fn unknown_session(id: SessionId) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_session",
        format!("no session {id}"),
    )
}

async fn session(
    _: Authorized,
    State(server): State<Arc<ServerShared>>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = session_id(&id)?;
    match server.hub.session_info(id) {
        Some(info) => Ok(ok(&info)),
        None => Err(unknown_session(id)),
    }
}

async fn send(
    _: Authorized,
    State(server): State<Arc<ServerShared>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = session_id(&id)?;
    let body = read_body(body, body_limit(&server)).await?;
    let b: SendBody = parse_json(&body)?;
    let message = payload(b.data, b.data_base64, server.config.limits.max_message_size)?;
    match server.hub.send(id, message.clone()) {
        Ok(()) => Ok(ok(&serde_json::json!({ "sent": true }))),
        // Not here: the node that holds it gets it through the broker.
        Err(SendError::NoSuchSession) if server.hub.relay_send(id, message) => Ok(json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "sent": true, "relayed": true }),
        )),
        Err(SendError::NoSuchSession | SendError::Closing) => Err(unknown_session(id)),
        Err(SendError::OutboxFull) => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "outbox_full",
            format!("session {id} is not reading fast enough; the message was not queued"),
        )),
    }
}

async fn close(
    _: Authorized,
    State(server): State<Arc<ServerShared>>,
    Path(id): Path<String>,
    body: Body,
) -> Result<Response, ApiError> {
    let id = session_id(&id)?;
    let body = read_body(body, 16 * 1024).await?;
    let b: CloseBody = if body.iter().all(u8::is_ascii_whitespace) {
        CloseBody::default()
    } else {
        parse_json(&body)?
    };
    let reason = b.reason.unwrap_or_else(|| "closed by the API".into());
    if server.hub.close(id, &reason) {
        Ok(ok(&serde_json::json!({ "closed": true })))
    } else if server.hub.relay_close(id, &reason) {
        Ok(json_response(
            StatusCode::ACCEPTED,
            &serde_json::json!({ "closed": true, "relayed": true }),
        ))
    } else {
        Err(unknown_session(id))
    }
}

async fn stats(_: Authorized, State(server): State<Arc<ServerShared>>) -> Response {
    #[derive(Serialize)]
    struct Cluster {
        node: String,
        nodes: Vec<crate::broker::PeerNode>,
        connections: u64,
        channels: usize,
    }
    #[derive(Serialize)]
    struct Stats {
        connections: u64,
        channels: usize,
        broker: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        cluster: Option<Cluster>,
        #[serde(flatten)]
        counters: crate::stats::StatsSnapshot,
    }
    let counters = server.hub.stats().snapshot();
    let connections = counters.ws_connections + counters.tcp_connections + counters.udp_sessions;
    let cluster = server.hub.cluster().map(|c| Cluster {
        connections: connections + c.peers.iter().map(|p| p.connections).sum::<u64>(),
        channels: server.hub.cluster_channels().len(),
        node: c.node,
        // Presence members are the Pusher API's to list (`/apps/{id}/channels/{name}/users`).
        nodes: c
            .peers
            .into_iter()
            .map(|p| crate::broker::PeerNode {
                presence: Vec::new(),
                ..p
            })
            .collect(),
    });
    ok(&Stats {
        connections,
        channels: server.hub.channel_count(),
        broker: server.hub.broker_name(),
        cluster,
        counters,
    })
}

async fn readyz(State(server): State<Arc<ServerShared>>) -> Response {
    let shutting_down = server.shutdown.is_cancelled();
    let broker = server.hub.broker_healthy();
    let webhook = match &server.webhooks {
        None => true,
        Some(w) => w.healthy(),
    };
    let ready = !shutting_down && broker && webhook;
    let body = serde_json::json!({
        "status": if ready { "ready" } else { "degraded" },
        "checks": {
            "shutting_down": shutting_down,
            "broker": if broker { "ok" } else { "down" },
            "webhook": if webhook { "ok" } else { "failing" },
        }
    });
    json_response(
        if ready {
            StatusCode::OK
        } else {
            StatusCode::SERVICE_UNAVAILABLE
        },
        &body,
    )
}

async fn metrics(State(server): State<Arc<ServerShared>>) -> Response {
    let mut r = Response::new(Body::from(crate::metrics::render(&server)));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    r
}

async fn api_not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such API endpoint")
}

/// The API routes, merged into the HTTP listener's router.
pub(crate) fn routes() -> Router<Arc<ServerShared>> {
    Router::new()
        .route("/api/publish", post(publish))
        .route("/api/channels", get(channels))
        .route("/api/channels/{name}", get(channel))
        .route("/api/sessions/{id}", get(session).delete(close))
        .route("/api/sessions/{id}/send", post(send))
        .route("/api/sessions/{id}/close", post(close))
        .route("/api/stats", get(stats))
        .route("/api/{*rest}", axum::routing::any(api_not_found))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_bodies_are_validated() {
        let p = parse_publish(br#"{"channel":"lobby","data":"hi"}"#, 10).unwrap();
        assert_eq!(p.channels, vec!["lobby"]);
        assert_eq!(p.message.as_str(), Some("hi"));
        let p = parse_publish(
            br#"{"channels":["a","b","a"],"data_base64":"AAE=","exclude_session":"7"}"#,
            10,
        )
        .unwrap();
        assert_eq!(p.channels, vec!["a", "b"]);
        assert_eq!(&p.message.payload()[..], &[0, 1]);
        assert_eq!(p.exclude, Some(SessionId(7)));
        let code = |b: &[u8]| parse_publish(b, 10).unwrap_err().code;
        assert_eq!(code(b"{"), "bad_json");
        assert_eq!(
            code(br#"{"channel":"a","data":"x","color":1}"#),
            "unknown_field"
        );
        assert_eq!(code(br#"{"channel":"a"}"#), "bad_request");
        assert_eq!(
            code(br#"{"channel":"a","channels":["b"],"data":""}"#),
            "bad_request"
        );
        assert_eq!(code(br#"{"channel":"a b","data":""}"#), "bad_channel");
        assert_eq!(
            code(br#"{"channel":"a","data":"12345678901"}"#),
            "too_large"
        );
        assert_eq!(code(br#"{"channels":[],"data":""}"#), "bad_request");
    }

    #[test]
    fn unknown_key_with_a_newline_stays_one_line() {
        // Found by the http_publish fuzz target: serde quotes an unknown key verbatim, so a key
        // with a newline made a two-line error message.
        let e = parse_publish(b"{\"a\\nb\":1}", 10).unwrap_err();
        assert_eq!(e.code, "unknown_field");
        assert!(
            !e.message.contains('\n') && e.message.contains("a\\nb"),
            "{}",
            e.message
        );
    }
}
