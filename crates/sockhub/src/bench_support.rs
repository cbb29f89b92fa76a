//! Crate-private pieces exposed to the micro-benchmarks in `crates/sockhub/benches/` only.
//!
//! **Not a public API**: hidden from the docs, no stability promise, may change with any
//! commit. Every item is a thin wrapper that calls the real code path (no logic of its own), so
//! a benchmark measures exactly what a server runs: sessions registered in a [`Hub`] without a
//! socket, the hub's fan-out into their outboxes, the driver's take of an outbox, and the
//! protocol encoders that are `pub(crate)`.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::hub::{Hub, SessionShared, SubscribeError};
use crate::message::{Message, SessionId, Transport};
use crate::protocol::WireFormat;

/// A session registered in a hub with no socket and no driver: its outbox fills as a real
/// session's would, and the benchmark plays the driver with [`BenchSession::drain`].
pub struct BenchSession {
    /// The hub's record of the session, as a transport driver holds it.
    shared: Arc<SessionShared>,
}

impl BenchSession {
    /// Registers a session (`HubInner::register`): counted in the hub's registry, subscribed
    /// to nothing yet.
    pub fn register(hub: &Hub, transport: Transport, peer: SocketAddr, format: WireFormat) -> Self {
        BenchSession {
            shared: hub.inner.register(transport, peer, format),
        }
    }

    /// The session's id.
    pub fn id(&self) -> SessionId {
        self.shared.id
    }

    /// Subscribes it to `channel` (`HubInner::subscribe`).
    ///
    /// # Errors
    /// As [`crate::Session::subscribe`].
    pub fn subscribe(&self, hub: &Hub, channel: &str) -> Result<(), SubscribeError> {
        hub.inner.subscribe(&self.shared, channel)
    }

    /// The session's message to the other members of its channels (`HubInner::broadcast_from`,
    /// what the built-in `Broadcast` handler calls). Returns deliveries.
    pub fn broadcast(&self, hub: &Hub, message: Message) -> usize {
        hub.inner.broadcast_from(&self.shared, message)
    }

    /// Plays the driver once: moves every queued frame into `write_queue` (`Outbox::take`),
    /// then marks what was moved as written (`Outbox::written`) and clears `write_queue`, as a
    /// fully successful vectored write would. Returns the frames taken.
    pub fn drain(&self, write_queue: &mut VecDeque<Bytes>) -> usize {
        let _ = self.shared.outbox.take(write_queue);
        let frames = write_queue.len();
        let bytes = write_queue.iter().map(Bytes::len).sum();
        self.shared.outbox.written(bytes, frames);
        write_queue.clear();
        frames
    }

    /// Unregisters the session (`HubInner::unregister`), as a closing driver does.
    pub fn unregister(self, hub: &Hub) {
        hub.inner.unregister(&self.shared);
    }
}

/// The server → client encoding of a published message for one wire format
/// (`protocol::encode_message`; json: a `message` event).
pub fn encode_message(
    format: WireFormat,
    channel: Option<&str>,
    message: &Message,
    from: Option<SessionId>,
) -> Bytes {
    crate::protocol::encode_message(format, channel, message, from)
}

/// Parses one json client command (`protocol::parse_command`); `Ok` says only that it parsed.
///
/// # Errors
/// The `bad_request` description.
pub fn parse_command(bytes: &[u8]) -> Result<(), String> {
    crate::protocol::parse_command(bytes).map(|_| ())
}
