//! The classic PHP `socket_select` WebSocket chat, rebuilt on sockhub.
//!
//! The original did the RFC 6455 handshake and frame decoding by hand, polled with `sleep(1)`,
//! and called three callbacks: `add` (a user connected), `send` (a message arrived, broadcast
//! it) and `close`. sockhub does the HTTP upgrade, framing, heartbeats and limits; what is left
//! is the three callbacks:
//!
//! * `on_connect`: log, and tell the others `user N joined`;
//! * `on_message`: send `N: text` to the others in the room;
//! * `on_close`: tell the remaining members `user N left`.
//!
//! At most 10 users at once, as in the original (`Limits::max_connections`); the library answers
//! the 11th upgrade request with HTTP 503 and never calls `on_connect` for it.
//!
//! Run: `cargo run -p sockhub-examples --example ws_broadcast_server [-- 127.0.0.1:8080]`
//!
//! Try it from a browser: open <http://127.0.0.1:8080/> (the library serves a small chat page),
//! or, from any page's developer console:
//!
//! ```js
//! const ws = new WebSocket('ws://127.0.0.1:8080');
//! ws.onmessage = (e) => console.log(e.data);
//! ws.onopen = () => ws.send('hello');
//! ```
//!
//! or from a terminal: `websocat ws://127.0.0.1:8080`. The room is the channel `lobby`, unless
//! the URL names others: `ws://127.0.0.1:8080/?channel=room1` (repeat `channel=` for several).

use sockhub::{
    CloseReason, Handler, Incoming, Limits, Listeners, Message, Reject, Server, ServerConfig,
    Session,
};
use tokio::net::TcpListener;

/// Users allowed at once (the PHP original's `$maxuser`).
const MAX_USERS: usize = 10;

/// The chat. Users are named by their session id, which the library never reuses.
struct Chat;

impl Handler for Chat {
    fn on_connect(&self, session: &Session) -> Result<(), Reject> {
        let user = session.id();
        // The session has joined its rooms already (`lobby`, or the URL's `?channel=`s).
        tracing::info!(%user, peer = %session.peer(), rooms = ?session.channels(), "user joined");
        // To the other members of every room this user is in (not to the user).
        session.broadcast(format!("user {user} joined"));
        Ok(())
    }

    fn on_message(&self, session: &Session, incoming: Incoming) {
        let user = session.id();
        let message = match incoming.message.as_str() {
            Some(text) => {
                tracing::info!(%user, "says: {text}");
                Message::text(format!("{user}: {text}"))
            }
            // Binary messages are relayed untouched (a prefix would corrupt them).
            None => incoming.message,
        };
        match incoming.channel {
            // A `?protocol=json` client's `publish` names its room.
            Some(room) => {
                session.publish_to_others(&room, message);
            }
            // A plain (raw) WebSocket message goes to everyone else in the user's rooms.
            None => {
                session.broadcast(message);
            }
        }
    }

    fn on_close(&self, session: &Session, reason: &CloseReason) {
        let user = session.id();
        tracing::info!(%user, %reason, "user left");
        // The session is still a member of its rooms while on_close runs (it receives nothing
        // more), so the others can be told.
        session.broadcast(format!("user {user} left"));
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    sockhub_examples::init_logging();
    let addr = sockhub_examples::addr_from_args("127.0.0.1:8080");

    let listener = TcpListener::bind(&addr).await?;
    let local = listener.local_addr()?;
    tracing::info!("WebSocket chat on ws://{local} (browser page: http://{local}/)");

    let config = ServerConfig {
        limits: Limits {
            max_connections: MAX_USERS,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    // The HTTP listener upgrades WebSocket requests on `/` and `/ws`.
    let listeners = Listeners {
        http: Some(listener),
        ..Listeners::default()
    };
    Server::with_handler(config, Chat)
        .serve(listeners, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
