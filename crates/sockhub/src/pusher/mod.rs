//! The Pusher Channels protocol (version 7; 5 and 6 accepted) as an adapter over the same hub,
//! so `pusher-js`, Laravel Echo and the Pusher server SDKs work by changing host, port and
//! keys — while raw, json, TCP and UDP clients share the same channels.
//!
//! - WebSocket at `/app/{key}?protocol=7`: `pusher:connection_established` (socket id
//!   `\d+\.\d+`, `activity_timeout`), `pusher:ping`/`pong`, `pusher:subscribe` /
//!   `unsubscribe` for public, `private-`, `private-encrypted-` (relayed untouched) and
//!   `presence-` channels, `pusher:signin`, `client-*` events.
//! - HTTP API under `/apps/{app_id}/…` ([`api`]), signed as Pusher's SDKs sign.
//!
//! **Mapping to the hub** (one fabric): a Pusher channel *is* the hub channel of the same name
//! (all apps share one namespace). A Pusher event becomes a hub message whose payload is the
//! event's `data` string and whose event name is the event's name; raw clients receive the
//! payload, json clients get it with an `event` field. A message without an event name (from a
//! raw, json, TCP or UDP client, or `/api/publish`) reaches Pusher clients as event `message`
//! with the payload as `data` (binary payloads: base64, event `message-binary`).
//!
//! Presence works across nodes with a broker (see the `presence` module): each node announces its
//! members in its heartbeats, and subscribers everywhere see one member list.

pub mod api;
mod presence;
pub mod signature;
mod webhooks;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use serde::Deserialize;
use serde_json::{json, Value};

use crate::close::CloseReason;
use crate::config::PusherApp;
use crate::message::{Message, MessageKind, SessionId};
use crate::protocol::frame;
use crate::rate::RateLimiter;
use crate::session::Session;

/// Longest channel name Pusher allows.
pub const MAX_CHANNEL_NAME: usize = 164;

/// The socket id Pusher clients see for a session: `<high 32 bits>.<low 32 bits>`.
pub fn socket_id(id: SessionId) -> String {
    format!("{}.{}", id.0 >> 32, id.0 & 0xffff_ffff)
}

/// The session behind a socket id, written exactly as [`socket_id`] writes it (no sign, no
/// leading zeros: `0.01` is no other name for `0.1`).
pub fn parse_socket_id(s: &str) -> Option<SessionId> {
    let (hi, lo) = s.split_once('.')?;
    let (hi, lo): (u64, u64) = (hi.parse().ok()?, lo.parse().ok()?);
    (hi <= u64::from(u32::MAX) && lo <= u64::from(u32::MAX))
        .then_some(SessionId(hi << 32 | lo))
        .filter(|&id| socket_id(id) == s)
}

/// Pusher's channel-name rules: 1–164 characters of `A-Za-z0-9_-=@,.;`.
///
/// # Errors
/// What is wrong with the name.
pub fn validate_channel(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > MAX_CHANNEL_NAME {
        return Err(format!(
            "channel name must be 1 to {MAX_CHANNEL_NAME} characters"
        ));
    }
    match name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "_-=@,.;".contains(*c)))
    {
        Some(c) => Err(format!(
            "channel name contains {c:?} (allowed: A-Z a-z 0-9 _ - = @ , . ;)"
        )),
        None => Ok(()),
    }
}

/// One connection's Pusher state.
struct Conn {
    /// Index of its app.
    app: usize,
    /// Private, encrypted and presence channels it subscribed (client events need one).
    authorized: HashSet<String>,
    /// Presence channel → the user id it joined as.
    presence: HashMap<String, String>,
    /// The user it signed in as (`pusher:signin`).
    user: Option<String>,
    /// `max_client_events_per_second`.
    client_events: RateLimiter,
}

/// The adapter's state, shared by every Pusher connection and the API.
pub(crate) struct PusherState {
    /// Configured apps.
    pub apps: Vec<PusherApp>,
    /// Per connection.
    conns: Mutex<HashMap<SessionId, Conn>>,
    /// Open connections per app (for `max_connections`).
    open: Vec<AtomicUsize>,
    /// Presence channels' members.
    pub(crate) presence: presence::Presence,
    /// Cache channel → its last event (from the API or a client event), replayed to new
    /// subscribers. At most [`MAX_CACHED`] channels.
    cache: Mutex<HashMap<String, Message>>,
    /// Pusher webhooks, when an app has a `webhook_url`.
    pub(crate) hooks: Option<Arc<webhooks::PusherHooks>>,
}

/// Most cache channels whose last event is kept; beyond it an arbitrary one is forgotten.
pub const MAX_CACHED: usize = 10_000;

/// Is this a cache channel (`cache-`, `private-cache-`, `private-encrypted-cache-`,
/// `presence-cache-`)?
pub fn is_cache_channel(name: &str) -> bool {
    [
        "cache-",
        "private-cache-",
        "private-encrypted-cache-",
        "presence-cache-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

impl PusherState {
    /// The adapter for `apps` (their webhook URLs are checked by `ServerConfig::validate`;
    /// an invalid one is logged and ignored here).
    pub(crate) fn new(apps: Vec<PusherApp>) -> Self {
        let hooks = match webhooks::PusherHooks::new(&apps) {
            Ok(h) => h.map(Arc::new),
            Err(e) => {
                tracing::error!(error = %e, "pusher webhooks disabled");
                None
            }
        };
        PusherState {
            hooks,
            conns: Mutex::new(HashMap::new()),
            open: apps.iter().map(|_| AtomicUsize::new(0)).collect(),
            presence: presence::Presence::default(),
            cache: Mutex::new(HashMap::new()),
            apps,
        }
    }

    /// Remembers the last event of a cache channel.
    pub(crate) fn remember(&self, channel: &str, message: &Message) {
        if !is_cache_channel(channel) {
            return;
        }
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_CACHED && !cache.contains_key(channel) {
            if let Some(k) = cache.keys().next().cloned() {
                cache.remove(&k);
            }
        }
        cache.insert(channel.to_string(), message.clone());
    }

    /// Sends a new subscriber of a cache channel its last event, or `pusher:cache_miss`.
    fn replay(&self, session: &Session, channel: &str) {
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(channel)
            .cloned();
        match cached {
            Some(m) => session.send_control(crate::protocol::encode_pusher(
                session.format().framing,
                Some(channel),
                &m,
            )),
            None => {
                send_event(session, "pusher:cache_miss", Some(channel), "{}");
                if let (Some(h), Some(app)) = (&self.hooks, self.app_of(session)) {
                    h.emit(app, json!({ "name": "cache_miss", "channel": channel }));
                }
            }
        }
    }

    /// The app of a Pusher connection.
    fn app_of(&self, session: &Session) -> Option<usize> {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&session.id())
            .map(|c| c.app)
    }

    /// The app with this key.
    pub(crate) fn app_by_key(&self, key: &str) -> Option<usize> {
        self.apps.iter().position(|a| a.key == key)
    }

    /// The app with this id.
    pub(crate) fn app_by_id(&self, id: &str) -> Option<usize> {
        self.apps.iter().position(|a| a.app_id == id)
    }

    /// A new connection of `app`: records it and queues `pusher:connection_established`, or
    /// refuses it with 4004 when the app is at its `max_connections`.
    pub(crate) fn opened(&self, session: &Session, app: usize, activity_timeout: u64) {
        let quota = self.apps[app].max_connections;
        let admitted = self.open[app].fetch_update(Relaxed, Relaxed, |n| {
            (quota == 0 || n < quota).then_some(n + 1)
        });
        if admitted.is_err() {
            send_error(
                session,
                Some(4004),
                &format!("Application is over its connection quota ({quota})"),
            );
            session.close_with(CloseReason::Adapter {
                code: 4004,
                reason: "app over connection quota".into(),
            });
            return;
        }
        let limit = self.apps[app].max_client_events_per_second;
        self.conns.lock().unwrap_or_else(|p| p.into_inner()).insert(
            session.id(),
            Conn {
                app,
                authorized: HashSet::new(),
                presence: HashMap::new(),
                user: None,
                client_events: RateLimiter::new(limit, tokio::time::Instant::now()),
            },
        );
        let data = json!({
            "socket_id": socket_id(session.id()),
            "activity_timeout": activity_timeout,
        });
        send_event(
            session,
            "pusher:connection_established",
            None,
            &data.to_string(),
        );
    }

    /// A connection ended: leaves its presence channels (announcing users who are gone).
    pub(crate) fn closed(&self, session: &Session) {
        let conn = self
            .conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&session.id());
        if let Some(conn) = conn {
            self.open[conn.app].fetch_sub(1, Relaxed);
            for (channel, user) in conn.presence {
                self.leave_presence(session, conn.app, &channel, &user);
            }
            for channel in session.channels() {
                self.count_changed(session, conn.app, &channel, true);
            }
        }
    }

    /// A Pusher client of `app` joined or left `channel` (`leaving`: it is leaving but still
    /// counted by the hub): tells the channel's Pusher subscribers on every node its new
    /// subscription count, if the app asks for that. Other nodes' counts are as of their last
    /// heartbeat.
    fn count_changed(&self, session: &Session, app: usize, channel: &str, leaving: bool) {
        if !self.apps[app].subscription_count || channel.starts_with("presence-") {
            return;
        }
        let hub = session.hub();
        let n = hub
            .cluster_subscribers(channel)
            .saturating_sub(usize::from(leaving));
        let data = json!({ "subscription_count": n }).to_string();
        hub.publish(
            channel,
            Message::text(data).with_event("pusher_internal:subscription_count"),
        );
    }

    /// Removes one socket of `user` from `channel`; announces `member_removed` if it was the
    /// user's last.
    fn leave_presence(&self, session: &Session, app: usize, channel: &str, user: &str) {
        let change = self.presence.leave(&session.hub().inner, channel, user);
        if change.user_changed {
            if let Some(h) = &self.hooks {
                h.emit(
                    app,
                    json!({ "name": "member_removed", "channel": channel, "user_id": user }),
                );
            }
        }
    }

    /// Members of a presence channel on every node: (user id, info), by user id.
    pub(crate) fn members(&self, hub: &crate::Hub, channel: &str) -> Vec<(String, Value)> {
        self.presence.members(&hub.inner, channel)
    }

    /// Sessions of `app` signed in as (or present in some channel as) `user`.
    pub(crate) fn sessions_of_user(&self, app: usize, user: &str) -> Vec<SessionId> {
        self.conns
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .filter(|(_, c)| {
                c.app == app
                    && (c.user.as_deref() == Some(user) || c.presence.values().any(|u| u == user))
            })
            .map(|(id, _)| *id)
            .collect()
    }
}

/// Queues one Pusher event for one session: `{"event", "channel"?, "data": <string>}`.
fn send_event(session: &Session, event: &str, channel: Option<&str>, data: &str) {
    let mut v = json!({ "event": event, "data": data });
    if let Some(c) = channel {
        v["channel"] = Value::from(c);
    }
    let text = v.to_string();
    session.send_control(frame(
        session.format().framing,
        MessageKind::Text,
        text.as_bytes(),
    ));
}

/// `pusher:error` with a code (or none).
fn send_error(session: &Session, code: Option<u16>, message: &str) {
    let v = json!({ "event": "pusher:error", "data": { "code": code, "message": message } });
    let text = v.to_string();
    session.send_control(frame(
        session.format().framing,
        MessageKind::Text,
        text.as_bytes(),
    ));
}

/// `pusher:subscription_error` for one channel.
fn send_subscription_error(session: &Session, channel: &str, status: u16, error: &str) {
    let data = json!({ "type": "AuthError", "error": error, "status": status }).to_string();
    send_event(session, "pusher:subscription_error", Some(channel), &data);
}

/// An event from a Pusher client.
#[derive(Deserialize)]
struct ClientEvent {
    event: String,
    #[serde(default)]
    channel: Option<String>,
    #[serde(default)]
    data: Value,
}

/// `data` of `pusher:subscribe`.
#[derive(Deserialize)]
struct Subscribe {
    channel: String,
    #[serde(default)]
    auth: Option<String>,
    #[serde(default)]
    channel_data: Option<String>,
}

/// `channel_data` of a presence subscription.
#[derive(Deserialize)]
struct ChannelData {
    user_id: Value,
    #[serde(default)]
    user_info: Value,
}

/// `data` of a string or an object: the string itself, or the object's JSON.
fn data_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Handles one message from a Pusher client.
pub(crate) fn dispatch(session: &Session, message: Message) {
    let Some(state) = session.server().pusher.clone() else {
        return;
    };
    let Some(text) = message.as_str() else {
        send_error(
            session,
            None,
            "binary frames are not part of the Pusher protocol",
        );
        return;
    };
    // serde reads a struct from a JSON array too; the protocol's messages are objects.
    if !text.trim_start().starts_with('{') {
        send_error(session, None, "invalid JSON: expected an object");
        return;
    }
    let ev: ClientEvent = match serde_json::from_str(text) {
        Ok(ev) => ev,
        Err(e) => {
            send_error(session, None, &format!("invalid JSON: {e}"));
            return;
        }
    };
    let name = ev.event.clone();
    match name.as_str() {
        "pusher:ping" => send_event(session, "pusher:pong", None, "{}"),
        "pusher:pong" => {}
        "pusher:subscribe" => subscribe(&state, session, &ev.data),
        "pusher:unsubscribe" => {
            let Some(channel) = ev.data.get("channel").and_then(Value::as_str) else {
                send_error(session, None, "pusher:unsubscribe needs data.channel");
                return;
            };
            if !session.unsubscribe(channel) {
                return;
            }
            let left = {
                let mut conns = state.conns.lock().unwrap_or_else(|p| p.into_inner());
                conns.get_mut(&session.id()).and_then(|c| {
                    c.authorized.remove(channel);
                    c.presence.remove(channel).map(|u| (c.app, u))
                })
            };
            if let Some((app, user)) = left {
                state.leave_presence(session, app, channel, &user);
            }
            if let Some(app) = state.app_of(session) {
                state.count_changed(session, app, channel, false);
            }
        }
        "pusher:signin" => signin(&state, session, &ev.data),
        name if name.starts_with("client-") => client_event(&state, session, name, ev),
        other => send_error(session, None, &format!("unknown event {other:?}")),
    }
}

fn subscribe(state: &PusherState, session: &Session, data: &Value) {
    let (true, Ok(sub)) = (data.is_object(), Subscribe::deserialize(data)) else {
        send_error(session, None, "pusher:subscribe needs data.channel");
        return;
    };
    let channel = sub.channel.as_str();
    if let Err(e) = validate_channel(channel) {
        send_subscription_error(session, channel, 400, &e);
        return;
    }
    let Some(app) = state
        .conns
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .get(&session.id())
        .map(|c| c.app)
    else {
        return;
    };
    let app_cfg = &state.apps[app];
    let presence = channel.starts_with("presence-");
    let private = presence || channel.starts_with("private-");
    if private {
        let ok = sub.auth.as_deref().is_some_and(|auth| {
            signature::verify_channel_auth(
                &app_cfg.key,
                &app_cfg.secret,
                &socket_id(session.id()),
                channel,
                if presence {
                    sub.channel_data.as_deref()
                } else {
                    None
                },
                auth,
            )
        });
        if !ok {
            send_subscription_error(
                session,
                channel,
                401,
                "invalid or missing auth signature for this socket and channel",
            );
            return;
        }
    }
    let member = if presence {
        let parsed = sub
            .channel_data
            .as_deref()
            .filter(|d| d.trim_start().starts_with('{'))
            .and_then(|d| serde_json::from_str::<ChannelData>(d).ok())
            // A user id is a string or a number (`null` is nobody, not user "null").
            .and_then(|cd| match cd.user_id {
                Value::String(s) => Some((s, cd.user_info)),
                Value::Number(n) => Some((n.to_string(), cd.user_info)),
                _ => None,
            });
        let Some((id, user_info)) = parsed else {
            send_subscription_error(
                session,
                channel,
                400,
                "presence needs channel_data with a string or number user_id",
            );
            return;
        };
        // A new member of a full channel is refused (someone already in may add sockets).
        let limit = app_cfg.max_presence_members;
        let members = state.presence.members(&session.hub().inner, channel);
        if limit > 0 && members.len() >= limit && !members.iter().any(|(u, _)| *u == id) {
            let data = json!({
                "type": "LimitReached",
                "error": format!("presence channel is full ({limit} members)"),
                "status": 4100,
            });
            send_event(
                session,
                "pusher:subscription_error",
                Some(channel),
                &data.to_string(),
            );
            return;
        }
        Some((id, user_info))
    } else {
        None
    };
    if let Err(e) = session.subscribe(channel) {
        send_subscription_error(session, channel, 400, &e.to_string());
        return;
    }
    let previous = {
        let mut conns = state.conns.lock().unwrap_or_else(|p| p.into_inner());
        let c = conns.get_mut(&session.id());
        c.and_then(|c| {
            if private {
                c.authorized.insert(channel.to_string());
            }
            let (user, _) = member.as_ref()?;
            c.presence.insert(channel.to_string(), user.clone())
        })
    };
    // Subscribing again to a presence channel: as the same user, nothing changes; as another,
    // the socket leaves as the first before joining as the second.
    if let (Some(prev), Some((user, _))) = (&previous, &member) {
        if prev == user {
            send_event(
                session,
                "pusher_internal:subscription_succeeded",
                Some(channel),
                &state
                    .presence
                    .snapshot(&session.hub().inner, channel)
                    .to_string(),
            );
            return;
        }
        state.leave_presence(session, app, channel, prev);
    }
    let Some((user, info)) = member else {
        send_event(
            session,
            "pusher_internal:subscription_succeeded",
            Some(channel),
            "{}",
        );
        if is_cache_channel(channel) {
            state.replay(session, channel);
        }
        state.count_changed(session, app, channel, false);
        return;
    };
    let change = state
        .presence
        .join(&session.hub().inner, channel, &user, info, session.id());
    send_event(
        session,
        "pusher_internal:subscription_succeeded",
        Some(channel),
        &change.snapshot.to_string(),
    );
    if is_cache_channel(channel) {
        state.replay(session, channel);
    }
    if change.user_changed {
        if let Some(h) = &state.hooks {
            h.emit(
                app,
                json!({ "name": "member_added", "channel": channel, "user_id": user }),
            );
        }
    }
}

fn signin(state: &PusherState, session: &Session, data: &Value) {
    let auth = data.get("auth").and_then(Value::as_str).unwrap_or("");
    let user_data = data.get("user_data").and_then(Value::as_str).unwrap_or("");
    let mut conns = state.conns.lock().unwrap_or_else(|p| p.into_inner());
    let Some(conn) = conns.get_mut(&session.id()) else {
        return;
    };
    let app = &state.apps[conn.app];
    // The id is a non-empty string or a number (`null` is nobody, not the empty user).
    let user: Option<String> = serde_json::from_str::<Value>(user_data)
        .ok()
        .and_then(|v| match v.get("id")? {
            Value::String(s) if !s.is_empty() => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            _ => None,
        });
    let ok = signature::verify_signin(
        &app.key,
        &app.secret,
        &socket_id(session.id()),
        user_data,
        auth,
    );
    match (ok, user) {
        (true, Some(user)) => {
            conn.user = Some(user);
            drop(conns);
            send_event(
                session,
                "pusher:signin_success",
                None,
                &json!({ "user_data": user_data }).to_string(),
            );
        }
        _ => {
            drop(conns);
            send_error(
                session,
                Some(4009),
                "signin failed: bad auth or user_data without id",
            );
        }
    }
}

fn client_event(state: &PusherState, session: &Session, name: &str, ev: ClientEvent) {
    let Some(channel) = ev.channel else {
        send_error(session, None, "client events need a channel");
        return;
    };
    let (allowed, authorized, over_rate, user, app) = {
        let mut conns = state.conns.lock().unwrap_or_else(|p| p.into_inner());
        let Some(c) = conns.get_mut(&session.id()) else {
            return;
        };
        let allowed = state.apps[c.app].client_events;
        let authorized = c.authorized.contains(&channel);
        let over = !c.client_events.take(tokio::time::Instant::now());
        (
            allowed,
            authorized,
            over,
            c.presence.get(&channel).cloned(),
            c.app,
        )
    };
    let app = Some(app);
    let user_for_hook = user.clone();
    if !allowed {
        send_error(session, None, "client events are not enabled for this app");
        return;
    }
    if !authorized || !(channel.starts_with("private-") || channel.starts_with("presence-")) {
        send_error(
            session,
            None,
            "client events need a subscribed private- or presence- channel",
        );
        return;
    }
    if channel.starts_with("private-encrypted-") {
        // As on Pusher: the server cannot tell a client's ciphertext from garbage.
        send_error(
            session,
            None,
            "client events are not supported on private-encrypted- channels",
        );
        return;
    }
    if over_rate {
        session.close_with(CloseReason::Adapter {
            code: 4301,
            reason: "client event rate limit exceeded".into(),
        });
        return;
    }
    // Pusher adds the sender's user_id (top level) on presence channels.
    let mut message = Message::text(data_text(&ev.data)).with_event(name.to_string());
    if let Some(user) = user {
        message = message.with_user(user);
    }
    state.remember(&channel, &message);
    if let (Some(h), Some(app)) = (&state.hooks, app) {
        let mut ev = json!({
            "name": "client_event",
            "channel": channel,
            "event": name,
            "data": message.as_str().unwrap_or(""),
            "socket_id": socket_id(session.id()),
        });
        if let Some(user) = &user_for_hook {
            ev["user_id"] = Value::from(user.as_str());
        }
        h.emit(app, ev);
    }
    session
        .hub()
        .publish_except(&channel, message, Some(session.id()));
}

/// Closes every session of `app` that belongs to `user` (terminate_connections), on this node
/// and, through the broker, on every other.
pub(crate) fn terminate_user(state: &PusherState, hub: &crate::Hub, app: usize, user: &str) {
    terminate_here(state, &hub.inner, app, user);
    let notice = format!("{TERMINATE}\n{}\n{user}", state.apps[app].app_id);
    hub.inner.broker().notify_all(notice.as_bytes());
}

/// The notice that asks other nodes to terminate a user: `TERMINATE\nAPP_ID\nUSER`.
const TERMINATE: &str = "pusher-terminate";

/// Closes this node's sessions of `app` that belong to `user`.
fn terminate_here(state: &PusherState, hub: &crate::hub::HubInner, app: usize, user: &str) {
    for id in state.sessions_of_user(app, user) {
        if let Some(s) = hub.session(id) {
            s.outbox.close(CloseReason::Adapter {
                code: 4009,
                reason: "connection terminated by the server".into(),
            });
        }
    }
}

impl PusherState {
    /// A notice from another node.
    pub(crate) fn notice(&self, hub: &crate::hub::HubInner, notice: &[u8]) {
        let text = String::from_utf8_lossy(notice);
        let mut parts = text.splitn(3, '\n');
        if let (Some(TERMINATE), Some(app_id), Some(user)) =
            (parts.next(), parts.next(), parts.next())
        {
            if let Some(app) = self.app_by_id(app_id) {
                terminate_here(self, hub, app, user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Framing;

    #[test]
    fn socket_ids_round_trip() {
        for id in [1u64, 42, (7 << 40) + 3, u64::MAX] {
            let s = socket_id(SessionId(id));
            assert!(s
                .split_once('.')
                .is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok()));
            assert_eq!(parse_socket_id(&s), Some(SessionId(id)));
        }
        assert_eq!(parse_socket_id("1"), None);
        assert_eq!(parse_socket_id("99999999999.1"), None);
    }

    /// Found by the `pusher_request` fuzz target: `str::parse` takes leading zeros and a `+`,
    /// so an API `socket_id` of `1234.0617` or `+0.1` excluded a session it does not name.
    #[test]
    fn parse_socket_id_takes_only_what_socket_id_writes() {
        for s in ["1234.0617", "01.1", "+0.1", "0.+1", "00.0", "1. 2"] {
            assert_eq!(parse_socket_id(s), None, "{s}");
        }
        assert_eq!(parse_socket_id("0.0"), Some(SessionId(0)));
        assert_eq!(
            parse_socket_id("1234.617"),
            Some(SessionId(1234 << 32 | 617))
        );
    }

    #[test]
    fn channel_names_follow_pusher_rules() {
        assert!(validate_channel("private-chat.room_1=@,;").is_ok());
        assert!(validate_channel("has space").is_err());
        assert!(validate_channel(&"a".repeat(165)).is_err());
        assert!(validate_channel("").is_err());
    }

    #[test]
    fn hub_messages_become_pusher_events() {
        let plain =
            crate::protocol::encode_pusher(Framing::Lines, Some("news"), &Message::text("hi"));
        assert_eq!(
            &plain[..],
            b"{\"channel\":\"news\",\"data\":\"hi\",\"event\":\"message\"}\n"
        );
        let named = crate::protocol::encode_pusher(
            Framing::Lines,
            Some("news"),
            &Message::text("{\"a\":1}").with_event("update"),
        );
        let v: Value = serde_json::from_slice(&named).unwrap();
        assert_eq!(v["event"], "update");
        assert_eq!(v["data"], "{\"a\":1}");
    }

    /// Found by the `pusher_message` fuzz target's model: serde's derived structs also read a
    /// JSON array (`["pusher:ping"]` was a ping), in a message, in subscribe data and in
    /// presence channel_data.
    #[test]
    fn arrays_are_not_pusher_messages() {
        use crate::fuzzing::FuzzPusher;
        let app = PusherApp {
            app_id: "1".into(),
            key: "key".into(),
            secret: "secret".into(),
            ..PusherApp::default()
        };
        let server = FuzzPusher::new(vec![app], crate::Limits::default()).unwrap();
        let s = server.open(0, SessionId(1)).unwrap();
        s.take();
        let event = |text: &str| {
            s.receive(Message::text(text));
            let (frames, _) = s.take();
            assert_eq!(frames.len(), 1, "{text}");
            let v: Value = serde_json::from_slice(&frames[0]).unwrap();
            (v["event"].as_str().unwrap().to_string(), v)
        };
        assert_eq!(event(r#"["pusher:ping"]"#).0, "pusher:error");
        assert_eq!(event(r#"{"event":"pusher:ping"}"#).0, "pusher:pong");
        let sub = r#"{"event":"pusher:subscribe","data":["news"]}"#;
        assert_eq!(event(sub).0, "pusher:error");
        assert_eq!(server.hub().subscribers("news"), 0);
        let data = r#"["u1",{}]"#;
        let auth = signature::sign("secret", &format!("0.1:presence-room:{data}"));
        let sub = json!({ "event": "pusher:subscribe", "data": {
            "channel": "presence-room", "auth": format!("key:{auth}"), "channel_data": data } });
        let (name, v) = event(&sub.to_string());
        assert_eq!(name, "pusher:subscription_error");
        assert!(v["data"].as_str().unwrap().contains("400"));
    }
}
