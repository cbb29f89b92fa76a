//! The Pusher HTTP API and WebSocket endpoint routes:
//!
//! | request | does |
//! |---|---|
//! | `GET /app/{key}?protocol=7` | the Pusher WebSocket |
//! | `POST /apps/{id}/events` | `{"name", "data", "channel" \| "channels", "socket_id"?, "info"?}` |
//! | `POST /apps/{id}/batch_events` | `{"batch": [{"name", "channel", "data", "socket_id"?}…]}` (up to 10) |
//! | `GET /apps/{id}/channels` | `?filter_by_prefix=…&info=user_count` |
//! | `GET /apps/{id}/channels/{name}` | `?info=user_count,subscription_count` |
//! | `GET /apps/{id}/channels/{name}/users` | presence members |
//! | `POST /apps/{id}/users/{user_id}/terminate_connections` | closes that user's connections |
//!
//! Every API request is signed (`auth_key`, `auth_timestamp` within 600 s, `auth_version`,
//! `body_md5`, `auth_signature`; see [`super::signature`]); errors are plain text with the
//! status Pusher documents: 400 bad request, 401 bad signature, 404 unknown app, 413 data over
//! 10 KB.

use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use http_body_util::{BodyExt as _, Limited};
use serde::Deserialize;
use serde_json::{json, Value};

use super::{parse_socket_id, signature, validate_channel, PusherState};
use crate::config::Protocol;
use crate::message::Message;
use crate::shared::PeerAddr;
use crate::shared::ServerShared;
use crate::transport::ws::{self, Route};

/// Largest event `data`, as Pusher limits it.
pub const MAX_EVENT_DATA: usize = 10 * 1024;
/// Most channels one event may name.
pub const MAX_EVENT_CHANNELS: usize = 100;
/// Most events in one batch.
pub const MAX_BATCH: usize = 10;

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    let mut r = Response::new(Body::from(body.into() + "\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

/// A refusal: status and one line (kept small; it becomes a plain-text response).
struct Fail(StatusCode, String);

impl IntoResponse for Fail {
    fn into_response(self) -> Response {
        text(self.0, self.1)
    }
}

fn ok_json(v: &Value) -> Response {
    let mut r = Response::new(Body::from(v.to_string()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r
}

/// The Pusher routes, merged into the HTTP listener's router when apps are configured.
pub(crate) fn routes() -> Router<Arc<ServerShared>> {
    Router::new()
        .route("/app/{key}", get(websocket))
        .route("/apps/{app_id}/events", post(events))
        .route("/apps/{app_id}/batch_events", post(batch_events))
        .route("/apps/{app_id}/channels", get(channels))
        .route("/apps/{app_id}/channels/{name}", get(channel))
        .route("/apps/{app_id}/channels/{name}/users", get(users))
        .route(
            "/apps/{app_id}/users/{user_id}/terminate_connections",
            post(terminate),
        )
}

/// `GET /app/{key}`: the Pusher WebSocket.
async fn websocket(
    State(server): State<Arc<ServerShared>>,
    Path(key): Path<String>,
    req: Request,
) -> Response {
    let Some(state) = server.pusher.clone() else {
        return text(StatusCode::NOT_FOUND, "the Pusher protocol is not enabled");
    };
    let Some(PeerAddr(peer)) = req.extensions().get::<PeerAddr>().copied() else {
        return text(StatusCode::INTERNAL_SERVER_ERROR, "no peer address");
    };
    let app = state.app_by_key(&key);
    if let Some(app) = app {
        let allowed = &state.apps[app].allowed_origins;
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("");
        if !allowed.is_empty() && !allowed.iter().any(|o| o == origin) {
            return text(
                StatusCode::FORBIDDEN,
                format!("origin {origin:?} not allowed"),
            );
        }
    }
    let version = req
        .uri()
        .query()
        .and_then(|q| q.split('&').find_map(|p| p.strip_prefix("protocol=")))
        .and_then(|v| v.parse::<u32>().ok())
        .unwrap_or(7);
    let route = Route {
        protocol: Protocol::Pusher,
        channels: Vec::new(),
        token: None,
    };
    let activity = server.config.limits.ping_interval.as_secs().max(1);
    ws::upgrade_as(&server, peer, req, route, move |session| match app {
        // Pusher reports these as errors on an open connection, then closes it: clients
        // learn the reason and, for 4000–4099, not to reconnect.
        None => {
            super::send_error(
                session,
                Some(4001),
                &format!("App key {key} not in this cluster"),
            );
            session.close_with(crate::close::CloseReason::Adapter {
                code: 4001,
                reason: "app key not in this cluster".into(),
            });
        }
        Some(_) if !(5..=7).contains(&version) => {
            super::send_error(session, Some(4007), "unsupported protocol version");
            session.close_with(crate::close::CloseReason::Adapter {
                code: 4007,
                reason: "unsupported protocol version".into(),
            });
        }
        Some(app) => state.opened(session, app, activity),
    })
    .await
}

/// A request whose signature checked out.
struct Signed {
    /// The adapter.
    state: Arc<PusherState>,
    /// Index of the app.
    app: usize,
    /// The body.
    body: bytes::Bytes,
    /// Decoded query parameters.
    params: Vec<(String, String)>,
}

impl Signed {
    /// A query parameter ("" when absent).
    fn param(&self, name: &str) -> &str {
        self.params
            .iter()
            .find(|(k, _)| k == name)
            .map_or("", |(_, v)| v.as_str())
    }
}

/// Checks app and signature, and reads the body (at most 256 KiB).
async fn authorized(server: &ServerShared, app_id: &str, req: Request) -> Result<Signed, Response> {
    let Some(state) = server.pusher.clone() else {
        return Err(text(
            StatusCode::NOT_FOUND,
            "the Pusher protocol is not enabled",
        ));
    };
    let Some(app) = state.app_by_id(app_id) else {
        return Err(text(StatusCode::NOT_FOUND, format!("unknown app {app_id}")));
    };
    let method: Method = req.method().clone();
    let path = req.uri().path().to_string();
    let params: Vec<(String, String)> = req
        .uri()
        .query()
        .map(|q| {
            q.split('&')
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').unwrap_or((p, ""));
                    (ws::percent_decode(k), ws::percent_decode(v))
                })
                .collect()
        })
        .unwrap_or_default();
    let body = match Limited::new(req.into_body(), 256 * 1024).collect().await {
        Ok(c) => c.to_bytes(),
        Err(_) => {
            return Err(text(
                StatusCode::PAYLOAD_TOO_LARGE,
                "request body too large",
            ))
        }
    };
    let a = &state.apps[app];
    signature::verify_request(
        &a.key,
        &a.secret,
        method.as_str(),
        &path,
        &params,
        &body,
        crate::auth::unix_now(),
    )
    .map_err(|e| text(StatusCode::UNAUTHORIZED, e.to_string()))?;
    Ok(Signed {
        state,
        app,
        body,
        params,
    })
}

/// One event to trigger.
#[derive(Deserialize)]
struct Event {
    name: String,
    #[serde(default)]
    data: Value,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    channels: Option<Vec<String>>,
    #[serde(default)]
    socket_id: Option<String>,
    #[serde(default)]
    info: Option<String>,
}

/// A struct read from a JSON object only: serde's derived impls also read an array
/// (`["name","data","channel"]` was an event), which the API's bodies never are.
struct Object<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Object<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(std::marker::PhantomData<T>);
        impl<'de, T: Deserialize<'de>> serde::de::Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(serde::de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(std::marker::PhantomData)).map(Object)
    }
}

/// An event that passed the API's checks, not yet published.
struct Checked {
    /// The channels it goes to.
    channels: Vec<String>,
    /// What their subscribers get.
    message: Message,
    /// The socket that does not get it.
    except: Option<crate::message::SessionId>,
}

/// Validates one event (publishes nothing, so a batch is checked whole before any of it goes
/// out).
fn check(ev: Event) -> Result<Checked, Fail> {
    let bad = |m: String| Fail(StatusCode::BAD_REQUEST, m);
    let channels = match (ev.channel, ev.channels) {
        (Some(c), None) => vec![c],
        (None, Some(cs)) if !cs.is_empty() && cs.len() <= MAX_EVENT_CHANNELS => cs,
        _ => {
            return Err(bad(format!(
                "give channel, or channels (1 to {MAX_EVENT_CHANNELS})"
            )))
        }
    };
    for c in &channels {
        validate_channel(c).map_err(bad)?;
    }
    // A channel named twice gets the event once.
    let mut seen = std::collections::HashSet::new();
    let channels: Vec<String> = channels
        .into_iter()
        .filter(|c| seen.insert(c.clone()))
        .collect();
    if ev.name.is_empty() || ev.name.len() > 200 {
        return Err(bad("event name must be 1 to 200 characters".into()));
    }
    let data = super::data_text(&ev.data);
    if data.len() > MAX_EVENT_DATA {
        return Err(Fail(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("data over {MAX_EVENT_DATA} bytes"),
        ));
    }
    let except = match ev.socket_id.as_deref() {
        None => None,
        Some(s) => Some(parse_socket_id(s).ok_or_else(|| bad(format!("bad socket_id {s:?}")))?),
    };
    let message = Message::text(data).with_event(ev.name);
    Ok(Checked {
        channels,
        message,
        except,
    })
}

/// Publishes a checked event; returns its channels.
fn trigger(server: &ServerShared, state: &PusherState, ev: Checked) -> Vec<String> {
    for c in &ev.channels {
        state.remember(c, &ev.message);
        server.hub.publish_except(c, ev.message.clone(), ev.except);
    }
    ev.channels
}

fn channel_info(server: &ServerShared, state: &PusherState, name: &str, info: &str) -> Value {
    let mut v = json!({});
    let wants = |k: &str| info.split(',').any(|i| i.trim() == k);
    if wants("subscription_count") {
        v["subscription_count"] = Value::from(server.hub.cluster_subscribers(name));
    }
    if wants("user_count") && name.starts_with("presence-") {
        v["user_count"] = Value::from(state.members(&server.hub, name).len());
    }
    v
}

async fn events(
    State(server): State<Arc<ServerShared>>,
    Path(app_id): Path<String>,
    req: Request,
) -> Response {
    let Signed { state, body, .. } = match authorized(&server, &app_id, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let ev: Event = match serde_json::from_slice(&body) {
        Ok(Object(e)) => e,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    let info = ev.info.clone().unwrap_or_default();
    match check(ev).map(|ev| trigger(&server, &state, ev)) {
        Ok(channels) if !info.is_empty() => {
            let map: serde_json::Map<String, Value> = channels
                .iter()
                .map(|c| (c.clone(), channel_info(&server, &state, c, &info)))
                .collect();
            ok_json(&json!({ "channels": map }))
        }
        Ok(_) => ok_json(&json!({})),
        Err(f) => f.into_response(),
    }
}

async fn batch_events(
    State(server): State<Arc<ServerShared>>,
    Path(app_id): Path<String>,
    req: Request,
) -> Response {
    let Signed { state, body, .. } = match authorized(&server, &app_id, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    #[derive(Deserialize)]
    struct Batch {
        batch: Vec<Object<Event>>,
    }
    let batch: Batch = match serde_json::from_slice(&body) {
        Ok(Object(b)) => b,
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")),
    };
    if batch.batch.len() > MAX_BATCH {
        return text(
            StatusCode::BAD_REQUEST,
            format!("at most {MAX_BATCH} events per batch"),
        );
    }
    // All or nothing: a refused event refuses the batch before any of it is published.
    let mut checked = Vec::new();
    for Object(ev) in batch.batch {
        let info = ev.info.clone().unwrap_or_default();
        match check(ev) {
            Ok(ev) => checked.push((ev, info)),
            Err(f) => return f.into_response(),
        }
    }
    let mut infos = Vec::new();
    let mut any_info = false;
    for (ev, info) in checked {
        any_info |= !info.is_empty();
        let channels = trigger(&server, &state, ev);
        infos.push(match channels.first() {
            Some(c) if !info.is_empty() => channel_info(&server, &state, c, &info),
            _ => json!({}),
        });
    }
    if any_info {
        ok_json(&json!({ "batch": infos }))
    } else {
        ok_json(&json!({}))
    }
}

async fn channels(
    State(server): State<Arc<ServerShared>>,
    Path(app_id): Path<String>,
    req: Request,
) -> Response {
    let signed = match authorized(&server, &app_id, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (state, prefix, info) = (
        &signed.state,
        signed.param("filter_by_prefix"),
        signed.param("info"),
    );
    if info.contains("user_count") && !prefix.starts_with("presence-") {
        return text(
            StatusCode::BAD_REQUEST,
            "info=user_count needs filter_by_prefix=presence-",
        );
    }
    let map: serde_json::Map<String, Value> = server
        .hub
        .cluster_channels()
        .into_iter()
        .filter(|c| c.name.starts_with(prefix) && validate_channel(&c.name).is_ok())
        .map(|c| {
            let v = channel_info(&server, state, &c.name, info);
            (c.name, v)
        })
        .collect();
    ok_json(&json!({ "channels": map }))
}

async fn channel(
    State(server): State<Arc<ServerShared>>,
    Path((app_id, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    let signed = match authorized(&server, &app_id, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    let (state, info) = (&signed.state, signed.param("info"));
    if let Err(e) = validate_channel(&name) {
        return text(StatusCode::BAD_REQUEST, e);
    }
    if info.contains("user_count") && !name.starts_with("presence-") {
        return text(
            StatusCode::BAD_REQUEST,
            "user_count is only for presence channels",
        );
    }
    let mut v = channel_info(&server, state, &name, info);
    v["occupied"] = Value::from(server.hub.cluster_subscribers(&name) > 0);
    ok_json(&v)
}

async fn users(
    State(server): State<Arc<ServerShared>>,
    Path((app_id, name)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Signed { state, .. } = match authorized(&server, &app_id, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    if !name.starts_with("presence-") {
        return text(
            StatusCode::BAD_REQUEST,
            "users are listed for presence channels only",
        );
    }
    let users: Vec<Value> = state
        .members(&server.hub, &name)
        .into_iter()
        .map(|(id, _)| json!({ "id": id }))
        .collect();
    ok_json(&json!({ "users": users }))
}

async fn terminate(
    State(server): State<Arc<ServerShared>>,
    Path((app_id, user)): Path<(String, String)>,
    req: Request,
) -> Response {
    let Signed { state, app, .. } = match authorized(&server, &app_id, req).await {
        Ok(v) => v,
        Err(r) => return r,
    };
    super::terminate_user(&state, &server.hub, app, &user);
    ok_json(&json!({}))
}

impl IntoResponse for super::signature::RequestError {
    fn into_response(self) -> Response {
        text(StatusCode::UNAUTHORIZED, self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PusherApp;
    use crate::fuzzing::FuzzPusher;
    use crate::message::SessionId;

    /// A server with one app and a Pusher subscriber of channel `a`.
    fn subscriber() -> (FuzzPusher, crate::fuzzing::FuzzPusherSession) {
        let app = PusherApp {
            app_id: "1".into(),
            key: "key".into(),
            secret: "secret".into(),
            ..PusherApp::default()
        };
        let server = FuzzPusher::new(vec![app], crate::Limits::default()).unwrap();
        let s = server.open(0, SessionId(1)).unwrap();
        s.receive(Message::text(
            r#"{"event":"pusher:subscribe","data":{"channel":"a"}}"#,
        ));
        s.take();
        (server, s)
    }

    /// A signed `POST` of `body` to `path`: the status.
    fn post(server: &FuzzPusher, path: &str, body: &Value) -> u16 {
        let body = body.to_string();
        let md5 = signature::body_md5(body.as_bytes());
        let ts = crate::auth::unix_now();
        let query = format!("auth_key=key&auth_timestamp={ts}&auth_version=1.0&body_md5={md5}");
        let sig = signature::sign("secret", &format!("POST\n{path}\n{query}"));
        let uri = format!("{path}?{query}&auth_signature={sig}");
        server.api("POST", &uri, body.into()).0
    }

    /// Found by the `pusher_request` fuzz target: events were published one by one as they
    /// passed the checks, so a batch refused for its second event (400) had already sent the
    /// first.
    #[test]
    fn refused_batch_publishes_nothing() {
        let (server, s) = subscriber();
        let event = |name: &str, channel: &str| json!({ "name": name, "channel": channel });
        let bad = json!({ "batch": [event("e1", "a"), event("e2", "a b")] });
        assert_eq!(post(&server, "/apps/1/batch_events", &bad), 400);
        assert!(
            s.take().0.is_empty(),
            "a refused batch published its first event"
        );
        let good = json!({ "batch": [event("e1", "a"), event("e2", "a")] });
        assert_eq!(post(&server, "/apps/1/batch_events", &good), 200);
        assert_eq!(s.take().0.len(), 2);
    }

    /// Found with the `pusher_request` fuzz target's model (a hand-written probe): an event
    /// to `["a","a"]` reached the subscribers of `a` twice.
    #[test]
    fn channel_named_twice_gets_the_event_once() {
        let (server, s) = subscriber();
        let ev = json!({ "name": "e", "channels": ["a", "a"], "data": "x", "info": "subscription_count" });
        assert_eq!(post(&server, "/apps/1/events", &ev), 200);
        assert_eq!(s.take().0.len(), 1);
    }

    /// Found with the `pusher_request` fuzz target's model (hand-written probes): an array
    /// body, or an array in a batch, was read as an event (`["e","x","a"]`: event `e`, data
    /// `x`, channel `a`), like finding 7 of the json protocol.
    #[test]
    fn arrays_are_not_api_events() {
        let (server, s) = subscriber();
        assert_eq!(
            post(&server, "/apps/1/events", &json!(["e", "x", "a"])),
            400
        );
        let batch = json!({ "batch": [["e", "x", "a"]] });
        assert_eq!(post(&server, "/apps/1/batch_events", &batch), 400);
        assert_eq!(post(&server, "/apps/1/batch_events", &json!([[]])), 400);
        assert!(s.take().0.is_empty());
        // Objects still work.
        let ev = json!({ "name": "e", "data": "x", "channel": "a" });
        assert_eq!(post(&server, "/apps/1/events", &ev), 200);
        assert_eq!(s.take().0.len(), 1);
    }
}
