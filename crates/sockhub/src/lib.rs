//! # sockhub
//!
//! A real-time socket hub: WebSocket, raw TCP and UDP clients meet in one hub of channels, and
//! a message published to a channel — by any client or by the application — reaches every
//! subscriber whatever its transport. Application logic plugs in as a [`Handler`] with the three
//! classic callbacks (`on_connect`, `on_message`, `on_close`); with none, the built-in
//! [`Broadcast`] handler relays every message to the other members of the sender's channels.
//!
//! ```no_run
//! use sockhub::{Handler, Incoming, Listeners, Server, ServerConfig, Session, TcpOptions};
//!
//! struct Shout;
//! impl Handler for Shout {
//!     fn on_message(&self, session: &Session, incoming: Incoming) {
//!         if let Some(text) = incoming.message.as_str() {
//!             session.broadcast(text.to_uppercase());
//!         }
//!     }
//! }
//!
//! # async fn run() -> std::io::Result<()> {
//! let listeners = Listeners {
//!     http: Some(tokio::net::TcpListener::bind("127.0.0.1:8080").await?),
//!     tcp: vec![(tokio::net::TcpListener::bind("127.0.0.1:1935").await?, TcpOptions::default())],
//!     ..Listeners::default()
//! };
//! Server::with_handler(ServerConfig::default(), Shout)
//!     .serve(listeners, async { let _ = tokio::signal::ctrl_c().await; })
//!     .await;
//! # Ok(()) }
//! ```
//!
//! ## Layout
//! | module | owns |
//! |---|---|
//! | [`hub`] | channels ↔ local subscribers, the session registry, fan-out (encode once per wire format) |
//! | [`session`] | [`Session`]: one client of any transport, as handlers see it |
//! | `outbox` | the bounded per-session queue of encoded frames and its overflow policy |
//! | [`handler`] | the [`Handler`] callbacks and the built-in [`Broadcast`] / [`Echo`] handlers |
//! | [`close`] | the close-reason table: WebSocket code, TCP error line, HTTP status |
//! | [`protocol`] | the raw and json wire protocols: pure encoders and the json command parser |
//! | [`ws`] | the RFC 6455 codec: sans-I/O frame decoder, encoder, handshake key |
//! | [`framing`] | TCP line and length-prefixed decoders |
//! | `transport` | sockets → sessions: the shared stream driver, WebSocket, TCP, UDP, and `dispatch` (what a client message does) |
//! | [`http`] | the HTTP listener: WebSocket upgrade on `/` and `/ws`, `/healthz` |
//! | [`auth`] | client tokens (JWT HS256): mint, verify, channel patterns; HMAC helpers |
//! | [`webhook`] | connect / message / close events POSTed, signed, to a backend; its answers |
//! | [`api`] | the HTTP API (`/api/*`), readiness and `/metrics` |
//! | `dashboard` | the live dashboard page (`/dashboard`), its Server-Sent Events stats stream (`/api/stats/stream`), and `/admission` for the demo page |
//! | [`broker`] | the [`Broker`] seam to other nodes, and the single-node [`MemoryBroker`] |
//! | [`pusher`] | the Pusher Channels protocol (WebSocket `/app/{key}`, HTTP `/apps/{id}/…`) over the same hub; presence members shared through the relay's heartbeats |
//! | [`relay`] | a [`Broker`] over any pub/sub server (Redis, NATS): envelopes, heartbeats, routing, reconnects |
//! | `static_files` | the user's own files (`--static-dir`) under `/static/`: tower-http's `ServeDir`, confined to the directory |
//! | `shared` | what every task of a server shares, and a session's admission (token, connect webhook, handler), opening and end |
//! | [`server`] | [`Server`]: starts the listeners over the shared state, runs until a shutdown future, then drains |
//! | [`config`] | [`Limits`] and per-listener options, with their defaults |
//! | [`stats`] | counters of everything the server does, drops and disconnects included |

// Code reachable from network input never panics on a missing value: handle it instead.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]

pub mod api;
pub mod auth;
#[doc(hidden)]
pub mod bench_support;
pub mod broker;
pub mod close;
pub mod config;
mod dashboard;
pub mod framing;
#[doc(hidden)]
pub mod fuzzing;
pub mod handler;
pub mod http;
pub mod hub;
pub mod message;
mod metrics;
mod outbox;
pub mod protocol;
pub mod pusher;
mod rate;
pub mod relay;
pub mod server;
pub mod session;
mod shared;
mod static_files;
pub mod stats;
mod transport;
pub mod webhook;
pub mod ws;

pub use broker::{Broker, BrokerCounters, BrokerSink, ClusterView, MemoryBroker, PeerNode};
pub use close::CloseReason;
pub use config::{
    ApiOptions, AuthOptions, Limits, OverflowPolicy, Protocol, ServerConfig, TcpFraming,
    TcpOptions, UdpOptions, WebhookEvent, WebhookFailure, WebhookOptions, WsOptions,
    DEFAULT_CHANNEL,
};
pub use handler::{Broadcast, Echo, Handler, Incoming, Reject};
pub use hub::{ChannelInfo, Hub, SendError, SessionInfo, SubscribeError};
pub use message::{validate_channel_name, ChannelName, Message, MessageKind, SessionId, Transport};
pub use server::{Listeners, Server};
pub use session::Session;
pub use stats::{Stats, StatsSnapshot};
