//! The seam to other nodes. The hub tells its broker when a channel gains its first local
//! subscriber or loses its last, and hands it every local publish to relay; the broker hands
//! publishes from other nodes back through a [`BrokerSink`]. The default [`MemoryBroker`] is a
//! single node: nothing to relay. Redis and NATS brokers live in their own crates.

use std::sync::Weak;

use crate::message::{ChannelName, Message, SessionId};

/// Relays publishes between nodes.
///
/// Every method is called from inside the hub, sometimes under its channel lock, so
/// implementations must not block or await: queue the work to a task of their own.
pub trait Broker: Send + Sync + 'static {
    /// A short name for logs (`memory`, `redis`, `nats`).
    fn name(&self) -> &'static str;

    /// Called once, when the hub is created: remote publishes are delivered through `sink`.
    fn attach(&self, sink: BrokerSink) {
        let _ = sink;
    }

    /// `channel` gained its first local subscriber: start receiving it from other nodes.
    fn subscribe(&self, channel: &ChannelName) {
        let _ = channel;
    }

    /// `channel` lost its last local subscriber: stop receiving it.
    fn unsubscribe(&self, channel: &ChannelName) {
        let _ = channel;
    }

    /// A publish on this node, about to be delivered to local subscribers: relay it to the
    /// others. `from` is the publishing session (shown to json clients), `except` a session that
    /// must not receive it, wherever it is.
    fn publish(
        &self,
        channel: &ChannelName,
        message: &Message,
        from: Option<SessionId>,
        except: Option<SessionId>,
    ) {
        let _ = (channel, message, from, except);
    }

    /// Is the broker connected? Readiness (`/readyz`) reports degraded while it is not.
    fn is_healthy(&self) -> bool {
        true
    }

    /// Added to every session id of this node, so ids are unique across the cluster and name
    /// their node (0 for a single node).
    fn session_id_base(&self) -> u64 {
        0
    }

    /// `id` is not on this node: pass `message` to the node that holds it. False if no live
    /// node can hold it.
    fn send_to_session(&self, id: SessionId, message: &Message) -> bool {
        let _ = (id, message);
        false
    }

    /// `id` is not on this node: ask the node that holds it to close it. False if no live node
    /// can hold it.
    fn close_session(&self, id: SessionId, reason: &str) -> bool {
        let _ = (id, reason);
        false
    }

    /// The other nodes as last heard from (`None` for a single node).
    fn cluster(&self) -> Option<ClusterView> {
        None
    }

    /// Relay counters for `/metrics`.
    fn counters(&self) -> BrokerCounters {
        BrokerCounters::default()
    }

    /// This node's shared state changed (Pusher presence members): tell the other nodes soon
    /// rather than at the next periodic heartbeat.
    fn announce(&self) {}

    /// Hands `notice` to every other node's adapters (Pusher's "terminate this user's
    /// connections"). False if it could not be sent (single node, broker down).
    fn notify_all(&self, notice: &[u8]) -> bool {
        let _ = notice;
        false
    }
}

/// What a broker knows about the other nodes of the cluster (from their heartbeats).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ClusterView {
    /// This node's id.
    pub node: String,
    /// Every other live node.
    pub peers: Vec<PeerNode>,
}

/// Another node, as its last heartbeat described it.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PeerNode {
    /// Its `--node-id`.
    pub node: String,
    /// Sessions open on it.
    pub connections: u64,
    /// Its channels with their local subscriber counts.
    pub channels: Vec<(String, u64)>,
    /// Its Pusher presence members: channel → (user id, user info).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub presence: PresenceList,
}

/// Presence members per channel, as a node announces them.
pub type PresenceList = Vec<(String, Vec<(String, serde_json::Value)>)>;

/// Relay counters of a broker.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BrokerCounters {
    /// Publishes handed to the broker server.
    pub relayed: u64,
    /// Publishes that could not be relayed (broker down, queue full, write failed).
    pub relay_failed: u64,
    /// Publishes received from other nodes.
    pub received: u64,
    /// Connections (re)established after a loss.
    pub reconnects: u64,
}

/// The single-node broker: every subscriber is local, so there is nothing to relay.
#[derive(Debug, Default, Clone, Copy)]
pub struct MemoryBroker;

impl Broker for MemoryBroker {
    fn name(&self) -> &'static str {
        "memory"
    }
}

/// What a [`BrokerSink`] delivers into: the hub, seen only through this one operation, so
/// that brokers stay independent of the hub's internals.
pub(crate) trait LocalDelivery: Send + Sync {
    /// Fans a remote publish out to local subscribers; returns deliveries.
    fn deliver_local(
        &self,
        channel: ChannelName,
        message: Message,
        from: Option<SessionId>,
        except: Option<SessionId>,
    ) -> usize;
    /// Sends to a local session; false if it is not here.
    fn send_local(&self, id: SessionId, message: Message) -> bool;
    /// Closes a local session; false if it is not here.
    fn close_local(&self, id: SessionId, reason: &str) -> bool;
    /// Local sessions and channels with their subscriber counts (for heartbeats).
    fn local_view(&self) -> (u64, Vec<(String, u64)>);
    /// Local Pusher presence members (for heartbeats).
    fn local_presence(&self) -> PresenceList;
    /// What the broker knows of other nodes changed (a heartbeat arrived, or a peer may have
    /// expired).
    fn peers_changed(&self);
    /// A notice from another node ([`Broker::notify_all`]).
    fn notice(&self, notice: &[u8]);
}

/// How a broker delivers a publish from another node to this node's subscribers.
#[derive(Clone)]
pub struct BrokerSink {
    /// Weak, so a broker task that outlives the hub does not keep it alive.
    pub(crate) hub: Weak<dyn LocalDelivery>,
}

impl std::fmt::Debug for BrokerSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrokerSink")
            .field("hub_alive", &(self.hub.strong_count() > 0))
            .finish()
    }
}

impl BrokerSink {
    /// Delivers a remote publish to local subscribers of `channel` (not relayed again), but
    /// not to `except`; json clients see `from` as the sender. Returns the number of local
    /// deliveries; 0 once the hub is gone.
    pub fn deliver(
        &self,
        channel: &str,
        message: Message,
        from: Option<SessionId>,
        except: Option<SessionId>,
    ) -> usize {
        match self.hub.upgrade() {
            Some(hub) => hub.deliver_local(ChannelName::from(channel), message, from, except),
            None => 0,
        }
    }

    /// Sends to a session of this node (a request routed from another node); false if it is
    /// not here.
    pub fn send(&self, id: SessionId, message: Message) -> bool {
        self.hub
            .upgrade()
            .is_some_and(|h| h.send_local(id, message))
    }

    /// Closes a session of this node (a request routed from another node); false if it is
    /// not here.
    pub fn close(&self, id: SessionId, reason: &str) -> bool {
        self.hub
            .upgrade()
            .is_some_and(|h| h.close_local(id, reason))
    }

    /// This node's session count and channels with subscriber counts.
    pub fn local_view(&self) -> (u64, Vec<(String, u64)>) {
        self.hub
            .upgrade()
            .map(|h| h.local_view())
            .unwrap_or_default()
    }

    /// This node's Pusher presence members, per channel.
    pub fn local_presence(&self) -> PresenceList {
        self.hub
            .upgrade()
            .map(|h| h.local_presence())
            .unwrap_or_default()
    }

    /// Delivers a notice from another node ([`Broker::notify_all`]) to this node's adapters.
    pub fn notice(&self, notice: &[u8]) {
        if let Some(h) = self.hub.upgrade() {
            h.notice(notice);
        }
    }

    /// Tells the hub that the cluster view changed: a heartbeat arrived, or time passed and a
    /// peer may have expired. Cheap when nothing depends on the view.
    pub fn peers_changed(&self) {
        if let Some(h) = self.hub.upgrade() {
            h.peers_changed();
        }
    }
}
