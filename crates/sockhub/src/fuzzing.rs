//! Crate-private pieces exposed to the cargo-fuzz targets in `fuzz/` only.
//!
//! **Not a public API**: hidden from the docs, no stability promise, may change with any
//! commit. Every item is a thin wrapper over (or a re-export of) the code a server runs, with no
//! logic of its own, so a target fuzzes exactly what the network reaches:
//!
//! - the json protocol's command parser (`protocol::parse_command`);
//! - the WebSocket upgrade checks and URL query parser used by `transport::ws::upgrade`;
//! - UDP return-routability (`transport::udp::validation`): control datagrams, cookies, credit;
//! - sessions registered in a [`Hub`] without a socket, for hub operation sequences: subscribe,
//!   unsubscribe, publish, broadcast, and the driver's side of an outbox (take, finish);
//! - a server with Pusher apps and no listeners ([`FuzzPusher`]): Pusher sessions fed client
//!   messages through `transport::dispatch` (as the WebSocket driver does), and requests to the
//!   Pusher HTTP API routes, run in memory.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::http::{HeaderMap, Method, Response};
use bytes::Bytes;

use crate::close::CloseReason;
use crate::config::Protocol;
use crate::hub::{Hub, SessionShared, SubscribeError};
use crate::message::{ChannelName, Message, SessionId, Transport};
use crate::protocol::{Framing, WireFormat};

pub use crate::transport::udp::validation::{
    encode_cookie, encode_request, parse_control, Answer, Control, Cookie, CookieJar, Credit, Form,
    Validator, COOKIE_LEN, MAX_AMPLIFICATION,
};

/// A json client command as `protocol::parse_command` understood it (its private enum, field
/// for field).
#[derive(Debug, PartialEq)]
pub enum Command {
    /// `{"type":"subscribe","channel":…}`
    Subscribe {
        /// Channel name, not yet validated.
        channel: String,
    },
    /// `{"type":"unsubscribe","channel":…}`
    Unsubscribe {
        /// Channel name.
        channel: String,
    },
    /// `{"type":"publish","channel":…,"data"|"data_base64":…}`
    Publish {
        /// Channel name, not yet validated.
        channel: String,
        /// Text payload.
        data: Option<String>,
        /// Binary payload, base64, not yet decoded.
        data_base64: Option<String>,
    },
    /// `{"type":"ping","id":…}`
    Ping {
        /// Echoed in the pong.
        id: Option<serde_json::Value>,
    },
}

/// Parses one json command (`protocol::parse_command`).
///
/// # Errors
/// The `bad_request` description a client would get.
pub fn parse_command(bytes: &[u8]) -> Result<Command, String> {
    use crate::protocol::Command as C;
    Ok(match crate::protocol::parse_command(bytes)? {
        C::Subscribe { channel } => Command::Subscribe { channel },
        C::Unsubscribe { channel } => Command::Unsubscribe { channel },
        C::Publish {
            channel,
            data,
            data_base64,
        } => Command::Publish {
            channel,
            data,
            data_base64,
        },
        C::Ping { id } => Command::Ping { id },
    })
}

/// The upgrade request checks (`transport::ws::check_upgrade`): the client's key, or the
/// refusal response.
///
/// # Errors
/// The HTTP response the client would get.
pub fn check_upgrade(method: &Method, headers: &HeaderMap) -> Result<Vec<u8>, Box<Response<Body>>> {
    crate::transport::ws::check_upgrade(method, headers)
}

/// The WebSocket URL query (`transport::ws::parse_query`): channels (`default` when none) and
/// protocol.
///
/// # Errors
/// The one-line reason of the 400 response.
pub fn parse_query(
    query: Option<&str>,
    default: &[String],
) -> Result<(Vec<String>, Protocol), String> {
    crate::transport::ws::parse_query(query, default)
}

/// Percent-decoding of a query component (`transport::ws::percent_decode`; `+` is a space).
pub fn percent_decode(s: &str) -> String {
    crate::transport::ws::percent_decode(s)
}

/// A session registered in a hub with no socket and no driver: the fuzz target plays the
/// driver (take the outbox, finish the session) and the handler (publish, broadcast).
pub struct FuzzSession {
    /// The hub's record of the session, as a transport driver holds it.
    shared: Arc<SessionShared>,
}

impl FuzzSession {
    /// Registers a UDP-framed session (`HubInner::register`; datagram framing, so a raw frame
    /// is exactly the payload and a json frame exactly one event).
    pub fn register(hub: &Hub, protocol: Protocol, peer: SocketAddr) -> Self {
        let format = WireFormat {
            framing: Framing::Datagram,
            protocol,
        };
        FuzzSession {
            shared: hub.inner.register(Transport::Udp, peer, format),
        }
    }

    /// Its id.
    pub fn id(&self) -> SessionId {
        self.shared.id
    }

    /// Subscribes (`HubInner::subscribe`, what `Session::subscribe` calls).
    ///
    /// # Errors
    /// As [`crate::Session::subscribe`].
    pub fn subscribe(&self, hub: &Hub, channel: &str) -> Result<(), SubscribeError> {
        hub.inner.subscribe(&self.shared, channel)
    }

    /// Unsubscribes (`HubInner::unsubscribe`); false if it was not subscribed.
    pub fn unsubscribe(&self, hub: &Hub, channel: &str) -> bool {
        hub.inner.unsubscribe(&self.shared, channel)
    }

    /// Its channels, in the hub's order.
    pub fn channels(&self) -> Vec<ChannelName> {
        self.shared
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Publishes as this session (`Session::publish`, or `publish_to_others` when
    /// `to_others`). Returns local deliveries.
    pub fn publish(&self, hub: &Hub, channel: &str, message: Message, to_others: bool) -> usize {
        let id = self.shared.id;
        hub.inner.publish(
            ChannelName::from(channel),
            message,
            Some(id),
            to_others.then_some(id),
        )
    }

    /// The classic broadcast to the other members of its channels (`HubInner::broadcast_from`).
    pub fn broadcast(&self, hub: &Hub, message: Message) -> usize {
        hub.inner.broadcast_from(&self.shared, message)
    }

    /// Plays the driver once: takes every queued frame (`Outbox::take`) and marks them written
    /// (`Outbox::written`). Returns the frames and the close request, if any.
    pub fn take(&self) -> (Vec<Bytes>, Option<CloseReason>) {
        let mut q = VecDeque::new();
        let closing = self.shared.outbox.take(&mut q);
        let bytes = q.iter().map(Bytes::len).sum();
        self.shared.outbox.written(bytes, q.len());
        (q.into(), closing)
    }

    /// Ends the session as a driver does once its outbox is closed: nothing more is queued
    /// (`Outbox::close`), then it leaves the hub (`HubInner::unregister`).
    pub fn finish(self, hub: &Hub, reason: CloseReason) {
        self.shared.outbox.close(reason);
        hub.inner.unregister(&self.shared);
    }
}

/// A server with Pusher apps, no listeners and no background tasks: what `Server::with_parts`
/// builds, minus webhooks (none configured here) and client auth.
pub struct FuzzPusher {
    /// The state every session and API request of the server shares.
    server: Arc<crate::shared::ServerShared>,
    /// Runs the API's async handlers to completion (current thread; nothing is spawned).
    runtime: tokio::runtime::Runtime,
}

/// A Pusher session with no socket: the target plays its WebSocket driver.
pub struct FuzzPusherSession {
    /// The session as handlers and the Pusher adapter see it.
    session: crate::session::Session,
}

impl FuzzPusher {
    /// A server for `apps` (no webhook URLs) with `limits`, the built-in handler and the
    /// in-memory broker.
    ///
    /// # Errors
    /// If the runtime for API requests cannot be built.
    pub fn new(
        apps: Vec<crate::config::PusherApp>,
        limits: crate::Limits,
    ) -> std::io::Result<Self> {
        let config = crate::ServerConfig {
            limits,
            pusher: apps,
            ..crate::ServerConfig::default()
        };
        // Built as a real server builds it (hooks included), just never served.
        let server = crate::Server::with_parts(
            config,
            Arc::new(crate::Broadcast),
            Arc::new(crate::MemoryBroker),
        );
        Ok(FuzzPusher {
            server: server.shared().clone(),
            runtime: tokio::runtime::Builder::new_current_thread().build()?,
        })
    }

    /// The hub.
    pub fn hub(&self) -> Hub {
        self.server.hub.clone()
    }

    /// Opens a Pusher WebSocket session of app `app` under `id` (which must not be in use), as
    /// `GET /app/{key}` does once upgraded: `open_session_as` with no channels, then
    /// `PusherState::opened` (which queues `pusher:connection_established`). Frames are
    /// datagram-framed, so each one is exactly the event's JSON.
    ///
    /// # Errors
    /// Why the server refused the session.
    pub fn open(&self, app: usize, id: SessionId) -> Result<FuzzPusherSession, CloseReason> {
        let format = WireFormat {
            framing: Framing::Datagram,
            protocol: Protocol::Pusher,
        };
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        let session = self.server.open_session_as::<&str>(
            id,
            Transport::WebSocket,
            peer,
            format,
            &[],
            None,
        )?;
        let activity = self.server.config.limits.ping_interval.as_secs().max(1);
        if let Some(p) = &self.server.pusher {
            p.opened(&session, app, activity);
        }
        Ok(FuzzPusherSession { session })
    }

    /// One request to the Pusher HTTP API routes (`/apps/{id}/…`), run to completion: status
    /// and body.
    pub fn api(&self, method: &str, uri: &str, body: Vec<u8>) -> (u16, Bytes) {
        use tower::ServiceExt as _;
        let router = crate::pusher::api::routes().with_state(self.server.clone());
        let Ok(req) = axum::http::Request::builder()
            .method(method)
            .uri(uri)
            .body(Body::from(body))
        else {
            return (0, Bytes::new());
        };
        self.runtime.block_on(async move {
            let Ok(res) = router.oneshot(req).await;
            let status = res.status().as_u16();
            let body = axum::body::to_bytes(res.into_body(), usize::MAX)
                .await
                .unwrap_or_default();
            (status, body)
        })
    }
}

impl FuzzPusherSession {
    /// Its id (its socket id is `pusher::socket_id(id)`).
    pub fn id(&self) -> SessionId {
        self.session.id()
    }

    /// A message from the client (`transport::dispatch`, what the WebSocket driver calls).
    pub fn receive(&self, message: Message) {
        crate::transport::dispatch(&self.session, message);
    }

    /// Plays the driver once: every queued frame (each one event's JSON) and the close
    /// request, if any.
    pub fn take(&self) -> (Vec<Bytes>, Option<CloseReason>) {
        let mut q = VecDeque::new();
        let shared = &self.session.shared;
        let closing = shared.outbox.take(&mut q);
        let bytes = q.iter().map(Bytes::len).sum();
        shared.outbox.written(bytes, q.len());
        (q.into(), closing)
    }

    /// The connection ends (`ServerShared::finish_session`: the Pusher adapter forgets it and
    /// its presence memberships, the hub unregisters it).
    pub fn finish(self, reason: CloseReason) {
        self.session
            .server()
            .clone()
            .finish_session(&self.session, &reason);
    }
}
