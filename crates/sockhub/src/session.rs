//! [`Session`]: one client of any transport, as handlers see it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::close::CloseReason;
use crate::config::Protocol;
use crate::hub::{Hub, SendError, SessionShared, SubscribeError};
use crate::message::{ChannelName, Message, SessionId, Transport};
use crate::protocol::WireFormat;
use crate::shared::ServerShared;

/// One connected client — a WebSocket, a TCP connection or a UDP peer — as handlers see it.
/// Cheap to clone; every method is non-blocking (it queues and returns).
#[derive(Clone)]
pub struct Session {
    /// The hub's record of this session (outbox, subscriptions).
    pub(crate) shared: Arc<SessionShared>,
    /// The server it belongs to: hub, handler, limits.
    pub(crate) server: Arc<ServerShared>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &self.shared.id)
            .field("transport", &self.shared.transport)
            .field("peer", &self.shared.peer)
            .finish()
    }
}

impl Session {
    pub(crate) fn new(shared: Arc<SessionShared>, server: Arc<ServerShared>) -> Self {
        Session { shared, server }
    }

    /// Unique id within this server process.
    pub fn id(&self) -> SessionId {
        self.shared.id
    }

    /// The client's address.
    pub fn peer(&self) -> SocketAddr {
        self.shared.peer
    }

    /// The transport it arrived on.
    pub fn transport(&self) -> Transport {
        self.shared.transport
    }

    /// The user id its token proved (client auth); `None` for anonymous sessions.
    pub fn user(&self) -> Option<&str> {
        self.shared.identity.as_deref().map(|c| c.sub.as_str())
    }

    /// May this client ask to join or publish to `channel`? Its token's channel patterns
    /// decide; an anonymous client may use any channel but Pusher's `private-` and `presence-`
    /// ones when Pusher apps are configured (those need Pusher's channel auth). Server-side
    /// code ([`Session::subscribe`] from a handler) is not bound by this.
    pub fn may_use(&self, channel: &str) -> bool {
        match self.shared.identity.as_deref() {
            None => !self.server.pusher_reserved(channel),
            Some(claims) => claims.allows(channel),
        }
    }

    pub(crate) fn subject(&self) -> crate::webhook::Subject<'_> {
        crate::webhook::Subject {
            session: self.id(),
            transport: self.transport(),
            peer: self.peer(),
            user: self.user(),
        }
    }

    /// raw or json.
    pub fn protocol(&self) -> Protocol {
        self.shared.format.protocol
    }

    pub(crate) fn format(&self) -> WireFormat {
        self.shared.format
    }

    pub(crate) fn server(&self) -> &Arc<ServerShared> {
        &self.server
    }

    /// The hub, for operations on other sessions and channels.
    pub fn hub(&self) -> &Hub {
        &self.server.hub
    }

    /// Channels this session is subscribed to.
    pub fn channels(&self) -> Vec<ChannelName> {
        self.shared
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Sends a message to this session only (a reply).
    ///
    /// # Errors
    /// [`SendError::Closing`] if the session is closing, [`SendError::OutboxFull`] if its outbox
    /// overflowed (see [`crate::OverflowPolicy`]).
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.server.hub.inner.send_to(&self.shared, &message.into())
    }

    /// Queues a protocol reply (json ack, pong, error event) under the outbox limits: a client
    /// flooding requests without reading the replies ends as a slow consumer.
    pub(crate) fn send_control(&self, frame: Bytes) {
        self.server.hub.inner.push(&self.shared, frame);
    }

    /// Subscribes this session to `channel`. Subscribing twice is a no-op.
    ///
    /// # Errors
    /// [`SubscribeError`]: a bad name, `max_subscriptions` reached, or the session is closing.
    pub fn subscribe(&self, channel: &str) -> Result<(), SubscribeError> {
        self.server.hub.inner.subscribe(&self.shared, channel)
    }

    /// Unsubscribes from `channel`; false if it was not subscribed.
    pub fn unsubscribe(&self, channel: &str) -> bool {
        self.server.hub.inner.unsubscribe(&self.shared, channel)
    }

    /// Publishes to every subscriber of `channel`, this session included if subscribed.
    /// Returns local deliveries.
    pub fn publish(&self, channel: &str, message: impl Into<Message>) -> usize {
        self.server.hub.inner.publish(
            ChannelName::from(channel),
            message.into(),
            Some(self.shared.id),
            None,
        )
    }

    /// Publishes to every *other* subscriber of `channel`. Returns local deliveries.
    pub fn publish_to_others(&self, channel: &str, message: impl Into<Message>) -> usize {
        self.server.hub.inner.publish(
            ChannelName::from(channel),
            message.into(),
            Some(self.shared.id),
            Some(self.shared.id),
        )
    }

    /// Sends `message` to the other members of every channel this session is in (the classic
    /// chat broadcast). A raw-protocol member of several of them receives it once.
    pub fn broadcast(&self, message: impl Into<Message>) -> usize {
        self.server
            .hub
            .inner
            .broadcast_from(&self.shared, message.into())
    }

    /// Closes this session: already-queued messages are sent first, then the client is told
    /// (WebSocket close 4010 with `reason`; TCP `ERROR 4010 closed by server: <reason>`).
    pub fn close(&self, reason: impl Into<String>) {
        self.shared.outbox.close(CloseReason::Kicked(reason.into()));
    }

    /// Closes this session with a specific reason from the close-reason table.
    pub fn close_with(&self, reason: CloseReason) {
        self.shared.outbox.close(reason);
    }
}
