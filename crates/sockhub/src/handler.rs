//! Application logic: the three classic callbacks (`on_connect`, `on_message`, `on_close`).
//!
//! Callbacks run on the session's own task, never under a hub lock, and must not block: every
//! [`Session`] and [`crate::Hub`] method only queues. For slow work (a database, an HTTP call),
//! `tokio::spawn` it and reply through a cloned [`Session`] when it finishes.

use crate::close::CloseReason;
use crate::message::{ChannelName, Message};
use crate::session::Session;

/// A message a client sent, with the channel it targets if the protocol names one.
#[derive(Clone, Debug)]
pub struct Incoming {
    /// What the client sent.
    pub message: Message,
    /// `Some` for a json `publish` command (its `channel`); `None` for raw messages, which
    /// belong to the session's channels.
    pub channel: Option<ChannelName>,
}

/// Refusal of a new session by [`Handler::on_connect`]; the reason is shown to the client
/// (WebSocket: HTTP 403 before the upgrade; TCP/UDP: an `ERROR 4009 rejected: …` line).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reject(pub String);

impl Reject {
    /// A refusal with a one-line reason.
    pub fn new(reason: impl Into<String>) -> Self {
        Reject(reason.into())
    }
}

/// Application callbacks. All have defaults, so implement only what you need.
///
/// ```
/// use sockhub::{Handler, Incoming, Session};
///
/// /// Replies to every message with the message reversed.
/// struct Reverse;
///
/// impl Handler for Reverse {
///     fn on_message(&self, session: &Session, incoming: Incoming) {
///         if let Some(text) = incoming.message.as_str() {
///             let _ = session.send(text.chars().rev().collect::<String>());
///         }
///     }
/// }
/// ```
pub trait Handler: Send + Sync + 'static {
    /// A session was opened and joined its initial channels. Return `Err` to refuse it.
    ///
    /// # Errors
    /// The [`Reject`] reason is sent to the client and the session is closed; `on_close` is not
    /// called for a rejected session.
    fn on_connect(&self, session: &Session) -> Result<(), Reject> {
        let _ = session;
        Ok(())
    }

    /// A client sent a message (raw), or a json `publish` command.
    /// The default does what [`Broadcast`] does.
    fn on_message(&self, session: &Session, incoming: Incoming) {
        Broadcast.on_message(session, incoming);
    }

    /// The session ended; `reason` says why. It is still listed in its channels while this runs
    /// (so `session.broadcast("… left")` reaches the others) but receives nothing more.
    fn on_close(&self, session: &Session, reason: &CloseReason) {
        let _ = (session, reason);
    }
}

/// The built-in behaviour: every message goes to the other members of the sender's channels
/// (or, for a json `publish`, to the other subscribers of the named channel).
#[derive(Clone, Copy, Debug, Default)]
pub struct Broadcast;

impl Handler for Broadcast {
    fn on_message(&self, session: &Session, incoming: Incoming) {
        match incoming.channel {
            Some(channel) => {
                session.publish_to_others(&channel, incoming.message);
            }
            None => {
                session.broadcast(incoming.message);
            }
        }
    }
}

/// Replies to every message with the same message (for conformance tests and benchmarks).
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl Handler for Echo {
    fn on_message(&self, session: &Session, incoming: Incoming) {
        let _ = session.send(incoming.message);
    }
}

/// Runs one handler callback so that a panic in it ends only its own session: the panic is
/// logged, the session is closed with [`CloseReason::Internal`] (close 1011), and `None` is
/// returned. Without this a panicking callback would kill the connection's task and leave the
/// session registered in the hub.
pub(crate) fn guarded<R>(
    callback: &'static str,
    session: &Session,
    f: impl FnOnce() -> R,
) -> Option<R> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
        Ok(r) => Some(r),
        Err(_) => {
            tracing::error!(session = %session.id(), callback, "handler panicked; closing the session");
            session.close_with(CloseReason::Internal(format!("{callback} failed")));
            None
        }
    }
}
