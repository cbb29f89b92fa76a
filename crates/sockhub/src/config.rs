//! Limits and per-listener options. Every limit has a name, a unit, a default and a documented
//! outcome when exceeded (see [`crate::close`]). All types deserialize from the TOML config
//! file of the `sockhub` binary, rejecting unknown keys.

use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize};

/// Limits shared by every listener of one server.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Sessions open at once, all transports together (the classic "max users").
    /// Default 10,000. Beyond it: WebSocket upgrade → HTTP 503; TCP → `ERROR 1013 …` line then
    /// close; UDP → one `ERROR 1013 …` datagram, the datagram is not delivered.
    pub max_connections: usize,
    /// Largest message in bytes (a WebSocket message after reassembly, a TCP line or frame, a UDP
    /// datagram). Default 65,536. Beyond it: WebSocket close 1009; TCP `ERROR 1009 …` then close;
    /// UDP: dropped and counted. Checked on the header before anything is allocated.
    pub max_message_size: usize,
    /// Time allowed from TCP accept to a complete WebSocket upgrade request. Default 10 s.
    /// Beyond it the connection is closed.
    #[serde(deserialize_with = "duration")]
    pub handshake_timeout: Duration,
    /// A WebSocket session that sends nothing for this long — not even a pong to the pings sent
    /// every `ping_interval` — is closed (close 4201); a UDP peer silent this long expires
    /// (silently). 0 disables. Default 120 s.
    #[serde(deserialize_with = "duration")]
    pub idle_timeout: Duration,
    /// A raw TCP session that sends nothing for this long is closed (`ERROR 4201 idle timeout`).
    /// Raw TCP has no ping, and listen-only clients are common, so this is off (0) by default:
    /// dead TCP peers are found by kernel keepalive probes instead (after about 90 s).
    #[serde(deserialize_with = "duration")]
    pub tcp_idle_timeout: Duration,
    /// Heartbeat: a WebSocket session that has been quiet this long gets a ping. Default 30 s.
    #[serde(deserialize_with = "duration")]
    pub ping_interval: Duration,
    /// Bytes queued for one session and not yet written to its socket. Default 1 MiB.
    /// Beyond it the [`OverflowPolicy`] applies.
    pub max_outbox_bytes: usize,
    /// Frames queued for one session. Default 4,096. Beyond it the [`OverflowPolicy`] applies.
    pub max_outbox_messages: usize,
    /// What happens to a session whose outbox is full. Default `disconnect`.
    pub outbox_overflow: OverflowPolicy,
    /// Messages one session may send per second (json commands included), with bursts of up to
    /// one second's worth. Beyond it: WebSocket close 1008, TCP `ERROR 1008 rate limit: …`,
    /// UDP: the datagram is dropped and counted. 0 disables. Default 1,000.
    pub max_messages_per_second: u32,
    /// Channels one session may be subscribed to at once. Default 100. Beyond it: a json
    /// `error` event with code `too_many_subscriptions`.
    pub max_subscriptions: usize,
    /// On shutdown, how long sessions may take to drain their outboxes and say goodbye.
    /// Default 5 s; after it, remaining connections are dropped.
    #[serde(deserialize_with = "duration")]
    pub drain_timeout: Duration,
    /// After sending a WebSocket close frame, how long to wait for the client's close reply
    /// before dropping the connection. Default 2 s.
    #[serde(deserialize_with = "duration")]
    pub close_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 10_000,
            max_message_size: 64 * 1024,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            tcp_idle_timeout: Duration::ZERO,
            ping_interval: Duration::from_secs(30),
            max_outbox_bytes: 1024 * 1024,
            max_outbox_messages: 4096,
            outbox_overflow: OverflowPolicy::Disconnect,
            max_subscriptions: 100,
            max_messages_per_second: 1000,
            drain_timeout: Duration::from_secs(5),
            close_timeout: Duration::from_secs(2),
        }
    }
}

/// What to do when a session's outbox is full (Workerman calls this `onBufferFull`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum OverflowPolicy {
    /// Disconnect the slow client (close 4100 "slow consumer"): it never delays the others, and
    /// it learns that it missed messages. The default.
    #[default]
    Disconnect,
    /// Drop the oldest queued frames to make room and count them: for feeds where only the
    /// latest state matters (prices, positions).
    DropOldest,
}

/// The wire protocol spoken on a listener (or chosen by a WebSocket URL's `?protocol=`).
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum Protocol {
    /// A message is the payload; the session's channels come from the URL or listener config.
    #[default]
    Raw,
    /// JSON commands (subscribe, unsubscribe, publish, ping) and events (message, error…).
    Json,
    /// The Pusher Channels protocol (WebSocket at `/app/{key}` only; not selectable for a
    /// listener).
    #[serde(skip)]
    Pusher,
}

impl std::str::FromStr for Protocol {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "raw" => Ok(Protocol::Raw),
            "json" => Ok(Protocol::Json),
            other => Err(format!("unknown protocol {other:?} (expected raw or json)")),
        }
    }
}

/// How a TCP listener splits the byte stream into messages.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum TcpFraming {
    /// One message per line, ended by `\n` or `\r\n` (the terminator is not part of the message).
    #[default]
    Lines,
    /// A big-endian `u32` length, then that many payload bytes: for binary game clients.
    LengthPrefixed,
}

impl std::str::FromStr for TcpFraming {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "lines" => Ok(TcpFraming::Lines),
            "length-prefixed" => Ok(TcpFraming::LengthPrefixed),
            other => Err(format!(
                "unknown framing {other:?} (expected lines or length-prefixed)"
            )),
        }
    }
}

/// Options of one TCP listener.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TcpOptions {
    /// How the stream is split into messages. Default `lines`.
    pub framing: TcpFraming,
    /// Wire protocol. Default `raw`.
    pub protocol: Protocol,
    /// Channels every session of this listener joins on connect. Default `["lobby"]`.
    pub channels: Vec<String>,
}

impl Default for TcpOptions {
    fn default() -> Self {
        TcpOptions {
            framing: TcpFraming::Lines,
            protocol: Protocol::Raw,
            channels: vec![DEFAULT_CHANNEL.to_string()],
        }
    }
}

/// Options of the UDP listener.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UdpOptions {
    /// Wire protocol. Default `raw`.
    pub protocol: Protocol,
    /// Channels every peer joins on its first datagram. Default `["lobby"]`.
    pub channels: Vec<String>,
    /// Return-routability check (anti-amplification, as QUIC's address validation): a source
    /// is sent at most 3× the bytes it sent until it echoes a cookie the server sent to its
    /// address (`SOCKHUB-COOKIE <hex>`, or a json `cookie` event); what does not fit is dropped
    /// and counted (`udp_unvalidated_dropped`). Default true. Turn it off only where source
    /// addresses cannot be spoofed (a private network) and clients cannot echo.
    pub address_validation: bool,
}

impl Default for UdpOptions {
    fn default() -> Self {
        UdpOptions {
            protocol: Protocol::Raw,
            channels: vec![DEFAULT_CHANNEL.to_string()],
            address_validation: true,
        }
    }
}

/// Options of the HTTP listener's WebSocket endpoint.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WsOptions {
    /// The dedicated upgrade path (the upgrade also works on `/`). Default `/ws`.
    pub path: String,
    /// Channels joined when the URL names none. Default `["lobby"]`.
    pub channels: Vec<String>,
    /// permessage-deflate (RFC 7692). Off by default.
    pub deflate: crate::ws::deflate::DeflateConfig,
}

impl Default for WsOptions {
    fn default() -> Self {
        WsOptions {
            path: "/ws".into(),
            channels: vec![DEFAULT_CHANNEL.to_string()],
            deflate: Default::default(),
        }
    }
}

/// The channel sessions join when nothing else is said.
pub const DEFAULT_CHANNEL: &str = "lobby";

/// Everything a [`crate::Server`] needs besides its listeners.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ServerConfig {
    /// Limits shared by all listeners.
    pub limits: Limits,
    /// The WebSocket endpoint on the HTTP listener.
    pub ws: WsOptions,
    /// The HTTP API (`/api/*`) on the HTTP listener.
    pub api: ApiOptions,
    /// Client auth (signed tokens) for every transport.
    pub auth: AuthOptions,
    /// Connect / message / close events POSTed to a backend; `None`: no webhooks.
    pub webhook: Option<WebhookOptions>,
    /// Pusher Channels apps (the `/app/{key}` WebSocket and `/apps/{id}/…` API); empty: the
    /// Pusher protocol is off.
    pub pusher: Vec<PusherApp>,
    /// A directory of the application's own files (its front end), served under `/static/` on
    /// the HTTP listener: GET/HEAD only, no listings, nothing outside it (see the
    /// `static_files` module). `None` (the default): no `/static/` route.
    pub static_dir: Option<std::path::PathBuf>,
}

/// One Pusher Channels app: what `pusher-js`, Laravel Echo and the Pusher server SDKs are
/// configured with.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct PusherApp {
    /// Numeric app id (the HTTP API's `/apps/{app_id}`).
    pub app_id: String,
    /// Public key (the WebSocket's `/app/{key}`, the API's `auth_key`).
    pub key: String,
    /// Secret for channel authorization and API signatures.
    pub secret: String,
    /// Allow `client-*` events on private and presence channels. Default true.
    pub client_events: bool,
    /// Client events one connection may send per second (beyond it: close 4301). Default 10.
    pub max_client_events_per_second: u32,
    /// Origins allowed to open WebSockets (`Origin` header); empty: any. Default empty.
    pub allowed_origins: Vec<String>,
    /// Where Pusher webhooks go (`http://`): channel_occupied / channel_vacated, member_added /
    /// member_removed, client_event, signed with `X-Pusher-Signature`. Default none.
    pub webhook_url: Option<String>,
    /// Connections this app may hold on this node; beyond it a new one gets `pusher:error`
    /// 4004 and is closed with 4004 ("over quota"). 0 (the default): no limit of its own
    /// (the server's `max_connections` still applies, answered with 4100).
    pub max_connections: usize,
    /// Send `pusher_internal:subscription_count` to a channel's subscribers whenever a Pusher
    /// client of this app subscribes to or leaves it (not on presence channels, which count
    /// members). Default false, as on Pusher, where it is an app setting.
    pub subscription_count: bool,
    /// Users a presence channel may have, counted on every node (as on Pusher, default 100);
    /// a new user beyond it gets `pusher:subscription_error` with status 4100
    /// ("LimitReached"). 0: no limit.
    pub max_presence_members: usize,
}

impl Default for PusherApp {
    fn default() -> Self {
        PusherApp {
            app_id: String::new(),
            key: String::new(),
            secret: String::new(),
            client_events: true,
            max_client_events_per_second: 10,
            allowed_origins: Vec::new(),
            webhook_url: None,
            max_connections: 0,
            subscription_count: false,
            max_presence_members: 100,
        }
    }
}

impl std::str::FromStr for PusherApp {
    type Err = String;
    /// `APP_ID:KEY:SECRET`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut parts = s.splitn(3, ':');
        match (parts.next(), parts.next(), parts.next()) {
            (Some(id), Some(key), Some(secret))
                if !id.is_empty()
                    && id.bytes().all(|b| b.is_ascii_digit())
                    && !key.is_empty()
                    && !secret.is_empty() =>
            {
                Ok(PusherApp {
                    app_id: id.into(),
                    key: key.into(),
                    secret: secret.into(),
                    ..PusherApp::default()
                })
            }
            _ => Err(format!(
                "pusher app {s:?}: expected APP_ID:KEY:SECRET with a numeric APP_ID"
            )),
        }
    }
}

impl ServerConfig {
    /// Checks what cannot be checked by types: the webhook URL and secret.
    ///
    /// # Errors
    /// A one-line description of the first problem.
    pub fn validate(&self) -> Result<(), String> {
        if let Some(w) = &self.webhook {
            http_url(&w.url).map_err(|e| format!("webhook url {:?}: {e}", w.url))?;
            if w.secret.is_empty() {
                return Err("a webhook secret is required to sign the events".into());
            }
        }
        if self.auth.token_secret.as_deref() == Some("") {
            return Err("auth.token_secret must not be empty".into());
        }
        if self.api.key.as_deref() == Some("") {
            return Err("api.key must not be empty".into());
        }
        if let Some(dir) = &self.static_dir {
            if !dir.is_dir() {
                return Err(format!("static_dir {}: no such directory", dir.display()));
            }
        }
        for (i, a) in self.pusher.iter().enumerate() {
            if a.app_id.is_empty() || !a.app_id.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!("pusher app_id {:?} must be numeric", a.app_id));
            }
            if a.key.is_empty() || a.secret.is_empty() {
                return Err(format!(
                    "pusher app {}: key and secret are required",
                    a.app_id
                ));
            }
            if self.pusher[..i]
                .iter()
                .any(|b| b.key == a.key || b.app_id == a.app_id)
            {
                return Err(format!(
                    "pusher app {}: app_id and key must be unique",
                    a.app_id
                ));
            }
        }
        for a in &self.pusher {
            if let Some(url) = &a.webhook_url {
                http_url(url)
                    .map_err(|e| format!("pusher app {}: webhook_url {url:?}: {e}", a.app_id))?;
            }
        }
        Ok(())
    }
}

/// The HTTP API.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct ApiOptions {
    /// The secret API key (`Authorization: Bearer <key>`). `None`: the API answers loopback
    /// clients only, and the `sockhub` binary refuses to bind the HTTP listener elsewhere.
    pub key: Option<String>,
    /// API requests per second, all clients together, with bursts of one second's worth;
    /// beyond it: HTTP 429. 0 (the default) disables the limit.
    pub max_requests_per_second: u32,
}

/// Client auth for WebSocket, TCP and UDP sessions.
#[derive(Clone, Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct AuthOptions {
    /// The HMAC-SHA256 secret client tokens are signed with (see [`crate::auth`]). `None` (the
    /// default): anonymous access. When set, every session must present a valid token:
    /// WebSocket as `?token=` or `Authorization: Bearer`; TCP as its first line or frame
    /// `AUTH <token>`; UDP as its first datagram `AUTH <token>`.
    pub token_secret: Option<String>,
}

/// What to do when the connect webhook cannot be reached or answers 5xx.
#[derive(Clone, Copy, Debug, Default, Deserialize, Serialize, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookFailure {
    /// Refuse the client (WebSocket: HTTP 503; TCP/UDP: `ERROR 1013 unavailable: …`).
    #[default]
    Reject,
    /// Let the client in as if the backend had said yes.
    Accept,
}

/// Webhooks: the classic connect / message / close callbacks, POSTed as signed JSON.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct WebhookOptions {
    /// Where events are POSTed (`http://` only).
    pub url: String,
    /// HMAC-SHA256 key for the `X-Sockhub-Signature: sha256=<hex>` header over the raw body.
    pub secret: String,
    /// Which events to send. Default: all of `connect`, `message`, `close`.
    pub events: Vec<WebhookEvent>,
    /// Time allowed for one request, connect included. Default 5 s.
    #[serde(deserialize_with = "duration")]
    pub timeout: Duration,
    /// Requests in flight at once; a message event that finds them all busy is dropped and
    /// counted (`sockhub_webhook_dropped_total`), so a slow backend never stalls clients.
    /// Default 64.
    pub max_concurrency: usize,
    /// Close events are retried up to this many more times (after 100 ms, 200 ms, 400 ms…)
    /// before they are counted as dropped. Default 3.
    pub close_retries: u32,
    /// The connect webhook's answer decides admission; this decides when there is none.
    /// Default `reject`.
    pub on_failure: WebhookFailure,
}

impl Default for WebhookOptions {
    fn default() -> Self {
        WebhookOptions {
            url: String::new(),
            secret: String::new(),
            events: vec![
                WebhookEvent::Connect,
                WebhookEvent::Message,
                WebhookEvent::Close,
            ],
            timeout: Duration::from_secs(5),
            max_concurrency: 64,
            close_retries: 3,
            on_failure: WebhookFailure::Reject,
        }
    }
}

/// A kind of webhook event.
#[derive(Clone, Copy, Debug, Deserialize, Serialize, PartialEq, Eq, Hash)]
#[serde(rename_all = "kebab-case")]
pub enum WebhookEvent {
    /// A client is connecting; the answer may reject it or assign its channels.
    Connect,
    /// A client sent a message; the answer may reply or publish.
    Message,
    /// A session ended.
    Close,
}

impl WebhookEvent {
    /// The event's name on the wire (`"connect"`…).
    pub fn as_str(self) -> &'static str {
        match self {
            WebhookEvent::Connect => "connect",
            WebhookEvent::Message => "message",
            WebhookEvent::Close => "close",
        }
    }
}

/// Parses an `http://HOST[:PORT]/PATH` URL (webhooks are plain HTTP; put a TLS proxy in front
/// of a remote backend).
///
/// # Errors
/// What is wrong with it.
pub(crate) fn http_url(url: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = url.parse().map_err(|_| "not a URL".to_string())?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err(
            "must be http://HOST[:PORT]/PATH (https is not supported; put a TLS proxy in front)"
                .into(),
        );
    }
    Ok(uri)
}

/// Parses `"250ms"`, `"10s"`, `"2m"` (humantime syntax) or a bare number of seconds.
///
/// # Errors
/// A message naming the accepted forms.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    if let Ok(secs) = s.trim().parse::<f64>() {
        // try_: a huge or negative number of seconds is an error, not a panic (fuzzing found
        // `1e20`).
        return Duration::try_from_secs_f64(secs)
            .map_err(|_| format!("invalid duration {s:?}: not a representable number of seconds"));
    }
    humantime::parse_duration(s.trim())
        .map_err(|e| format!("invalid duration {s:?}: {e} (examples: 250ms, 10s, 2m)"))
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(f64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Duration::try_from_secs_f64(s).map_err(|_| {
            serde::de::Error::custom(format!(
                "invalid duration {s}: must be a non-negative, representable number of seconds"
            ))
        }),
        Raw::Text(t) => parse_duration(&t).map_err(serde::de::Error::custom),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_duration_float_seconds_overflow() {
        // Found by the parse_duration fuzz target: a panic before the fix.
        assert!(parse_duration("1e20").is_err());
        assert!(parse_duration("33333333333833333338").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn config_duration_float_seconds_overflow() {
        // Found by the config fuzz target: the deserializer panicked on the same input.
        let e = serde_json::from_str::<Limits>(r#"{"idle_timeout":1e20}"#).unwrap_err();
        assert!(e.to_string().contains("invalid duration"), "{e}");
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("250ms").unwrap(), Duration::from_millis(250));
        assert_eq!(parse_duration("3").unwrap(), Duration::from_secs(3));
        assert!(parse_duration("soon").is_err());
    }
}
