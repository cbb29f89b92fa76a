//! The seam to other nodes. The hub tells its broker when a channel gains its first local
//! subscriber or loses its last, and hands it every local publish to relay; the broker hands
//! publishes from other nodes back through a [`BrokerSink`]. The default [`MemoryBroker`] is a
//! single node: nothing to relay. Redis and NATS brokers live in their own crates.

use std::sync::Weak;

use crate::message::{ChannelName, Message};

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

    /// A publish on this node, already delivered to local subscribers: relay it to the others.
    fn publish(&self, channel: &ChannelName, message: &Message) {
        let _ = (channel, message);
    }

    /// Is the broker connected? Readiness (`/readyz`) reports degraded while it is not.
    fn is_healthy(&self) -> bool {
        true
    }
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
    fn deliver_local(&self, channel: ChannelName, message: Message) -> usize;
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
    /// Delivers a remote publish to local subscribers of `channel` (not relayed again).
    /// Returns the number of local deliveries; 0 once the hub is gone.
    pub fn deliver(&self, channel: &str, message: Message) -> usize {
        match self.hub.upgrade() {
            Some(hub) => hub.deliver_local(ChannelName::from(channel), message),
            None => 0,
        }
    }
}
