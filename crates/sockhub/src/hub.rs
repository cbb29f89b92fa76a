//! The hub: channels ↔ local subscribers, the session registry, and fan-out.
//!
//! It knows no transport (sessions carry their [`WireFormat`]) and no concrete broker (only the
//! [`Broker`] trait). A channel's entry is created by its first subscriber and removed with its
//! last, and exactly those two moments are reported to the broker.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock, Weak};

use bytes::Bytes;
use indexmap::IndexMap;

use crate::auth::Claims;
use crate::broker::{Broker, BrokerSink, LocalDelivery};
use crate::close::CloseReason;
use crate::config::Protocol;
use crate::message::{validate_channel_name, ChannelName, Message, SessionId, Transport};
use crate::outbox::{Outbox, OutboxLimits, Push};
use crate::protocol::{encode_message, Publication, WireFormat};
use crate::stats::Stats;

/// Handle to the hub. Cheap to clone; all clones are the same hub.
///
/// ```
/// let hub = sockhub::Hub::new(&sockhub::Limits::default(), std::sync::Arc::new(sockhub::MemoryBroker));
/// assert_eq!(hub.publish("lobby", "nobody listens"), 0);
/// assert!(hub.channels().is_empty());
/// ```
#[derive(Clone)]
pub struct Hub {
    pub(crate) inner: Arc<HubInner>,
}

/// Subscribers of one channel, in subscription order. `IndexMap` gives O(1) removal by id
/// (`swap_remove`) and fast iteration for fan-out.
type Subscribers = IndexMap<SessionId, Arc<SessionShared>>;

pub(crate) struct HubInner {
    /// Channel name → local subscribers. One lock for the map: publishes take it shared for the
    /// length of one fan-out (pushes never block); (un)subscribes take it exclusively, briefly.
    channels: RwLock<HashMap<ChannelName, Subscribers>>,
    /// Every open session, for send-to-one and close-by-id.
    sessions: RwLock<HashMap<SessionId, Arc<SessionShared>>>,
    /// Next session id; ids are never reused within a process.
    next_id: AtomicU64,
    /// Relay to other nodes.
    broker: Arc<dyn Broker>,
    /// Outbox limits applied to every push.
    outbox_limits: OutboxLimits,
    /// `max_subscriptions` per session.
    max_subscriptions: usize,
    /// Counters.
    pub(crate) stats: Stats,
    /// Zero of the millisecond clock in `SessionShared::last_rx_ms`.
    epoch: tokio::time::Instant,
    /// Told when a channel gains its first local subscriber (`true`) or loses its last
    /// (`false`); called under the channel lock, so it must only queue (Pusher webhooks).
    pub(crate) channel_observer: std::sync::OnceLock<ChannelObserver>,
    /// State shared with other nodes beyond channels (Pusher presence), when an adapter keeps
    /// some.
    pub(crate) cluster_hooks: std::sync::OnceLock<ClusterHooks>,
}

/// See `HubInner::channel_observer`.
pub(crate) type ChannelObserver = Box<dyn Fn(&str, bool) + Send + Sync>;

/// See `HubInner::cluster_hooks`.
pub(crate) struct ClusterHooks {
    /// This node's presence members, for its heartbeats.
    pub local_presence: Box<dyn Fn() -> crate::broker::PresenceList + Send + Sync>,
    /// The broker's view of the other nodes changed. Runs on the broker's task; must not block.
    pub peers_changed: Box<dyn Fn(&HubInner) + Send + Sync>,
    /// A notice from another node. Runs on the broker's task; must not block.
    pub notice: NoticeHook,
}

/// See [`ClusterHooks::notice`].
pub(crate) type NoticeHook = Box<dyn Fn(&HubInner, &[u8]) + Send + Sync>;

/// The hub's view of one session; the transport's driver holds the same `Arc`.
pub(crate) struct SessionShared {
    /// Unique id.
    pub id: SessionId,
    /// Which transport it came in on.
    pub transport: Transport,
    /// Remote address.
    pub peer: SocketAddr,
    /// How to encode for it.
    pub format: WireFormat,
    /// Frames waiting for its socket.
    pub outbox: Outbox,
    /// Channels it is subscribed to, so closing can unsubscribe without scanning every channel.
    pub channels: Mutex<Vec<ChannelName>>,
    /// When the client last sent anything, in ms since the hub's epoch (read by the sweeper).
    pub last_rx_ms: AtomicU64,
    /// A heartbeat ping was sent since `last_rx_ms`.
    pub ping_sent: AtomicBool,
    /// The client sent something since the sweeper's last pass, which then moves `last_rx_ms`
    /// to its own clock (so a read costs no clock reading: ~0.4 % of an echo's CPU).
    pub rx_seen: AtomicBool,
    /// Who the client proved to be with a token (client auth), which also bounds the channels
    /// it may join; `None` for anonymous sessions.
    pub identity: Option<Arc<Claims>>,
}

/// Why a subscribe failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SubscribeError {
    /// The name is empty, too long, or has whitespace/control characters.
    #[error("bad channel name: {0}")]
    BadName(String),
    /// The session is at `max_subscriptions`; unsubscribe from something first.
    #[error("too many subscriptions (max {0})")]
    TooMany(usize),
    /// The session is closed or closing.
    #[error("session closed")]
    Closed,
    /// The session's token does not allow this channel.
    #[error("channel {0:?} is not allowed by the session's token")]
    Forbidden(String),
}

impl SubscribeError {
    /// Stable code for json `error` events.
    pub fn code(&self) -> &'static str {
        match self {
            SubscribeError::BadName(_) => "bad_channel",
            SubscribeError::TooMany(_) => "too_many_subscriptions",
            SubscribeError::Closed => "closed",
            SubscribeError::Forbidden(_) => "forbidden",
        }
    }
}

/// Why a send to one session failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum SendError {
    /// No session has that id (never existed, or already closed).
    #[error("no such session")]
    NoSuchSession,
    /// The session is closing; nothing more is queued for it.
    #[error("session closing")]
    Closing,
    /// The outbox was full: under `disconnect` the session is now closing as a slow consumer;
    /// under `drop-oldest` this message was dropped.
    #[error("outbox full")]
    OutboxFull,
}

/// A channel and its local subscriber count.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct ChannelInfo {
    /// Channel name.
    pub name: String,
    /// Local subscribers.
    pub subscribers: usize,
}

impl Hub {
    /// A hub with `limits`' outbox and subscription limits, relaying through `broker`.
    pub fn new(limits: &crate::Limits, broker: Arc<dyn Broker>) -> Hub {
        let inner = Arc::new(HubInner {
            channels: RwLock::default(),
            sessions: RwLock::default(),
            next_id: AtomicU64::new(broker.session_id_base() + 1),
            broker,
            outbox_limits: OutboxLimits::from(limits),
            max_subscriptions: limits.max_subscriptions,
            stats: Stats::default(),
            epoch: tokio::time::Instant::now(),
            channel_observer: std::sync::OnceLock::new(),
            cluster_hooks: std::sync::OnceLock::new(),
        });
        let hub: Weak<dyn LocalDelivery> = Arc::downgrade(&inner) as Weak<HubInner>;
        inner.broker.attach(BrokerSink { hub });
        Hub { inner }
    }

    /// Publishes to every subscriber of `channel` on every node. Returns local deliveries.
    pub fn publish(&self, channel: &str, message: impl Into<Message>) -> usize {
        self.inner
            .publish(ChannelName::from(channel), message.into(), None, None)
    }

    /// Sends to one session only, encoded for its transport and protocol.
    ///
    /// # Errors
    /// [`SendError`]: the session is gone or closing, or its outbox is full.
    pub fn send(&self, id: SessionId, message: impl Into<Message>) -> Result<(), SendError> {
        let s = self.inner.session(id).ok_or(SendError::NoSuchSession)?;
        self.inner.send_to(&s, &message.into())
    }

    /// Closes one session with [`CloseReason::Kicked`]. Returns false if no such session is open.
    pub fn close(&self, id: SessionId, reason: &str) -> bool {
        self.inner.close_local(id, reason)
    }

    /// Channels with at least one local subscriber, sorted by name.
    pub fn channels(&self) -> Vec<ChannelInfo> {
        let map = self
            .inner
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner());
        let mut v: Vec<_> = map
            .iter()
            .map(|(name, subs)| ChannelInfo {
                name: name.to_string(),
                subscribers: subs.len(),
            })
            .collect();
        v.sort_by(|a, b| a.name.cmp(&b.name));
        v
    }

    /// Channels with subscribers on any node, with their counts: this node's now, the others'
    /// from their last heartbeat (at most a few seconds old). Sorted by name.
    pub fn cluster_channels(&self) -> Vec<ChannelInfo> {
        let mut list = self.channels();
        let Some(cluster) = self.cluster() else {
            return list;
        };
        let mut merged: std::collections::BTreeMap<String, usize> =
            list.drain(..).map(|c| (c.name, c.subscribers)).collect();
        for peer in &cluster.peers {
            for (name, n) in &peer.channels {
                *merged.entry(name.clone()).or_default() += *n as usize;
            }
        }
        merged
            .into_iter()
            .map(|(name, subscribers)| ChannelInfo { name, subscribers })
            .collect()
    }

    /// Subscribers of one channel on every node (the others' as of their last heartbeat).
    pub fn cluster_subscribers(&self, channel: &str) -> usize {
        let remote: u64 = self.cluster().map_or(0, |c| {
            c.peers
                .iter()
                .flat_map(|p| p.channels.iter())
                .filter(|(name, _)| name == channel)
                .map(|(_, n)| *n)
                .sum()
        });
        self.subscribers(channel) + remote as usize
    }

    /// Channels with at least one local subscriber, counted without listing them.
    pub fn channel_count(&self) -> usize {
        self.inner
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// Local subscribers of one channel (0 if it has none).
    pub fn subscribers(&self, channel: &str) -> usize {
        let map = self
            .inner
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner());
        map.get(channel).map_or(0, IndexMap::len)
    }

    /// Sessions open on this node.
    pub fn session_count(&self) -> usize {
        self.inner
            .sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len()
    }

    /// The hub's counters.
    pub fn stats(&self) -> &Stats {
        &self.inner.stats
    }

    /// The broker's name.
    pub fn broker_name(&self) -> &'static str {
        self.inner.broker.name()
    }

    /// Is the broker connected (always true for the memory broker)?
    pub fn broker_healthy(&self) -> bool {
        self.inner.broker.is_healthy()
    }

    /// The broker's relay counters.
    pub fn broker_counters(&self) -> crate::broker::BrokerCounters {
        self.inner.broker.counters()
    }

    /// The other nodes, as the broker last heard from them (`None` for a single node).
    pub fn cluster(&self) -> Option<crate::broker::ClusterView> {
        self.inner.broker.cluster()
    }

    /// Passes `message` to a session of another node through the broker; false if no live
    /// node can hold `id`. (For a local session use [`Hub::send`].)
    pub fn relay_send(&self, id: SessionId, message: impl Into<Message>) -> bool {
        self.inner.broker.send_to_session(id, &message.into())
    }

    /// Asks the node holding session `id` to close it; false if no live node can hold it.
    pub fn relay_close(&self, id: SessionId, reason: &str) -> bool {
        self.inner.broker.close_session(id, reason)
    }

    /// What the hub knows about one session; `None` if it is gone.
    pub fn session_info(&self, id: SessionId) -> Option<SessionInfo> {
        let s = self.inner.session(id)?;
        let channels = s
            .channels
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|c| c.to_string())
            .collect();
        Some(SessionInfo {
            id: id.to_string(),
            transport: s.transport.as_str(),
            peer: s.peer.to_string(),
            user: s.identity.as_ref().map(|c| c.sub.clone()),
            channels,
        })
    }

    /// Publishes to every subscriber of `channel` except the session `except` (for example
    /// the client whose action caused the publish). Returns local deliveries.
    pub fn publish_except(
        &self,
        channel: &str,
        message: impl Into<Message>,
        except: Option<SessionId>,
    ) -> usize {
        self.inner
            .publish(ChannelName::from(channel), message.into(), None, except)
    }
}

/// One session as the HTTP API shows it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SessionInfo {
    /// Session id.
    pub id: String,
    /// `ws`, `tcp` or `udp`.
    pub transport: &'static str,
    /// Remote address.
    pub peer: String,
    /// The user its token proved, if any.
    pub user: Option<String>,
    /// Channels it is subscribed to.
    pub channels: Vec<String>,
}

impl HubInner {
    pub(crate) fn session(&self, id: SessionId) -> Option<Arc<SessionShared>> {
        self.sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(&id)
            .cloned()
    }

    /// Creates and registers an anonymous session (not yet subscribed to anything).
    pub(crate) fn register(
        &self,
        transport: Transport,
        peer: SocketAddr,
        format: WireFormat,
    ) -> Arc<SessionShared> {
        self.register_as(self.next_session_id(), transport, peer, format, None)
    }

    /// Reserves a session id before the session exists (the connect webhook names it).
    pub(crate) fn next_session_id(&self) -> SessionId {
        SessionId(self.next_id.fetch_add(1, Ordering::Relaxed))
    }

    /// Registers a session under an id from [`HubInner::next_session_id`].
    pub(crate) fn register_as(
        &self,
        id: SessionId,
        transport: Transport,
        peer: SocketAddr,
        format: WireFormat,
        identity: Option<Arc<Claims>>,
    ) -> Arc<SessionShared> {
        let s = Arc::new(SessionShared {
            id,
            transport,
            peer,
            format,
            outbox: Outbox::default(),
            channels: Mutex::new(Vec::new()),
            last_rx_ms: AtomicU64::new(self.now_ms()),
            ping_sent: AtomicBool::new(false),
            rx_seen: AtomicBool::new(false),
            identity,
        });
        self.sessions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id, s.clone());
        self.stats.session_opened(transport);
        s
    }

    /// Milliseconds since the hub's epoch.
    pub(crate) fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Records that a session's client sent something.
    pub(crate) fn touch(&self, s: &SessionShared) {
        if !s.rx_seen.load(Ordering::Relaxed) {
            s.rx_seen.store(true, Ordering::Relaxed);
        }
        if s.ping_sent.load(Ordering::Relaxed) {
            s.ping_sent.store(false, Ordering::Relaxed);
        }
    }

    /// One pass of the heartbeat sweeper over every stream session: a WebSocket quiet for
    /// `ping_interval` gets a ping; one quiet for `idle_timeout` (TCP: `tcp_idle_timeout`) is
    /// closed with [`CloseReason::IdleTimeout`]. One task for all sessions instead of a timer
    /// in each keeps an idle connection small. UDP peers expire in their own tasks.
    pub(crate) fn sweep(&self, limits: &crate::Limits) {
        /// An empty, unmasked ping frame.
        static PING: [u8; 2] = [0x89, 0x00];
        let now = self.now_ms();
        let ms = |d: std::time::Duration| d.as_millis() as u64;
        let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        for s in sessions.values() {
            let (idle, ping) = match s.transport {
                Transport::WebSocket => (ms(limits.idle_timeout), ms(limits.ping_interval)),
                Transport::Tcp => (ms(limits.tcp_idle_timeout), 0),
                Transport::Udp => continue,
            };
            // Traffic since the last pass is dated now: at most one tick late, so a ping or
            // an idle close comes at most one tick later than the quiet time it measures.
            if s.rx_seen.swap(false, Ordering::Relaxed) {
                s.last_rx_ms.store(now, Ordering::Relaxed);
            }
            let quiet = now.saturating_sub(s.last_rx_ms.load(Ordering::Relaxed));
            if idle > 0 && quiet >= idle {
                s.outbox.close(CloseReason::IdleTimeout);
            } else if ping > 0 && quiet >= ping && !s.ping_sent.swap(true, Ordering::Relaxed) {
                s.outbox.push_heartbeat(Bytes::from_static(&PING));
            }
        }
    }

    /// Asks every session to close with `reason` (shutdown).
    pub(crate) fn close_all(&self, reason: &CloseReason) {
        let sessions = self.sessions.read().unwrap_or_else(|p| p.into_inner());
        for s in sessions.values() {
            s.outbox.close(reason.clone());
        }
    }

    /// Unsubscribes a session from everything and forgets it. Idempotent.
    pub(crate) fn unregister(&self, s: &SessionShared) {
        let removed = self
            .sessions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&s.id)
            .is_some();
        let channels = std::mem::take(&mut *s.channels.lock().unwrap_or_else(|p| p.into_inner()));
        if !channels.is_empty() {
            let mut map = self.channels.write().unwrap_or_else(|p| p.into_inner());
            for ch in channels {
                self.remove_subscriber(&mut map, &ch, s.id);
            }
        }
        if removed {
            self.stats.session_closed(s.transport);
        }
    }

    fn remove_subscriber(
        &self,
        map: &mut HashMap<ChannelName, Subscribers>,
        channel: &str,
        id: SessionId,
    ) -> bool {
        let Some(subs) = map.get_mut(channel) else {
            return false;
        };
        let removed = subs.swap_remove(&id).is_some();
        if subs.is_empty() {
            // The registry shrinks with its channels (mini-redis #63 is the bug this avoids).
            if let Some((name, _)) = map.remove_entry(channel) {
                self.broker.unsubscribe(&name);
                if let Some(observe) = self.channel_observer.get() {
                    observe(&name, false);
                }
            }
        }
        removed
    }

    pub(crate) fn subscribe(
        &self,
        s: &Arc<SessionShared>,
        channel: &str,
    ) -> Result<(), SubscribeError> {
        validate_channel_name(channel).map_err(SubscribeError::BadName)?;
        if let Some(claims) = &s.identity {
            if !claims.allows(channel) {
                return Err(SubscribeError::Forbidden(channel.to_string()));
            }
        }
        let mut mine = s.channels.lock().unwrap_or_else(|p| p.into_inner());
        if mine.iter().any(|c| &**c == channel) {
            return Ok(());
        }
        if mine.len() >= self.max_subscriptions {
            return Err(SubscribeError::TooMany(self.max_subscriptions));
        }
        if s.outbox.closing().is_some() {
            return Err(SubscribeError::Closed);
        }
        let mut map = self.channels.write().unwrap_or_else(|p| p.into_inner());
        let name = match map.get_key_value(channel) {
            Some((name, _)) => name.clone(),
            None => {
                let name = ChannelName::from(channel);
                self.broker.subscribe(&name);
                if let Some(observe) = self.channel_observer.get() {
                    observe(&name, true);
                }
                name
            }
        };
        map.entry(name.clone()).or_default().insert(s.id, s.clone());
        // Most sessions join one channel: start with room for exactly one (16 bytes, not the
        // default 4 slots) and grow only when more are joined.
        if mine.capacity() == 0 {
            mine.reserve_exact(1);
        }
        mine.push(name);
        Ok(())
    }

    pub(crate) fn unsubscribe(&self, s: &SessionShared, channel: &str) -> bool {
        let mut mine = s.channels.lock().unwrap_or_else(|p| p.into_inner());
        let Some(pos) = mine.iter().position(|c| &**c == channel) else {
            return false;
        };
        mine.swap_remove(pos);
        let mut map = self.channels.write().unwrap_or_else(|p| p.into_inner());
        self.remove_subscriber(&mut map, channel, s.id)
    }

    /// Local delivery plus relay to other nodes.
    pub(crate) fn publish(
        &self,
        channel: ChannelName,
        message: Message,
        from: Option<SessionId>,
        except: Option<SessionId>,
    ) -> usize {
        self.broker.publish(&channel, &message, from, except);
        self.deliver_local(channel, message, from, except)
    }

    /// The broker, for adapters that share state with other nodes.
    pub(crate) fn broker(&self) -> &dyn Broker {
        &*self.broker
    }
}

impl LocalDelivery for HubInner {
    /// Local delivery only (a publish that came from another node).
    fn deliver_local(
        &self,
        channel: ChannelName,
        message: Message,
        from: Option<SessionId>,
        except: Option<SessionId>,
    ) -> usize {
        let p = Publication::new(channel, message, from);
        let n = self.fan_out(&p, except, None);
        self.stats.published(n as u64);
        n
    }

    fn send_local(&self, id: SessionId, message: Message) -> bool {
        match self.session(id) {
            Some(s) => self.send_to(&s, &message).is_ok(),
            None => false,
        }
    }

    fn close_local(&self, id: SessionId, reason: &str) -> bool {
        match self.session(id) {
            Some(s) => {
                s.outbox.close(CloseReason::Kicked(reason.to_string()));
                true
            }
            None => false,
        }
    }

    fn local_view(&self) -> (u64, Vec<(String, u64)>) {
        let sessions = self
            .sessions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .len() as u64;
        let channels = self
            .channels
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(name, subs)| (name.to_string(), subs.len() as u64))
            .collect();
        (sessions, channels)
    }

    fn local_presence(&self) -> crate::broker::PresenceList {
        self.cluster_hooks
            .get()
            .map(|h| (h.local_presence)())
            .unwrap_or_default()
    }

    fn peers_changed(&self) {
        if let Some(h) = self.cluster_hooks.get() {
            (h.peers_changed)(self);
        }
    }

    fn notice(&self, notice: &[u8]) {
        if let Some(h) = self.cluster_hooks.get() {
            (h.notice)(self, notice);
        }
    }
}

impl HubInner {
    /// A session's message to the other members of all its channels. A raw-protocol member of
    /// several of those channels gets it once (its bytes would be identical); json members get
    /// one `message` event per channel, since each names its channel.
    pub(crate) fn broadcast_from(&self, s: &SessionShared, message: Message) -> usize {
        let channels = s.channels.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let mut seen = (channels.len() > 1).then(HashSet::new);
        let mut total = 0;
        for ch in channels {
            self.broker.publish(&ch, &message, Some(s.id), Some(s.id));
            let p = Publication::new(ch, message.clone(), Some(s.id));
            let n = self.fan_out(&p, Some(s.id), seen.as_mut());
            self.stats.published(n as u64);
            total += n;
        }
        total
    }

    /// Queues one publication for every local subscriber (but `except`). Returns deliveries.
    fn fan_out(
        &self,
        p: &Publication,
        except: Option<SessionId>,
        mut raw_seen: Option<&mut HashSet<SessionId>>,
    ) -> usize {
        let map = self.channels.read().unwrap_or_else(|p| p.into_inner());
        let Some(subs) = map.get(&p.channel) else {
            return 0;
        };
        // The Pusher protocol's own events (presence members, subscription counts) mean
        // nothing to raw, json, TCP or UDP clients.
        let pusher_only = p
            .message
            .event()
            .is_some_and(|e| e.starts_with("pusher_internal:"));
        let mut delivered = 0;
        for (id, s) in subs {
            if Some(*id) == except || (pusher_only && s.format.protocol != Protocol::Pusher) {
                continue;
            }
            if s.format.protocol == Protocol::Raw {
                if let Some(seen) = raw_seen.as_deref_mut() {
                    if !seen.insert(*id) {
                        continue;
                    }
                }
            }
            if self.push(s, p.bytes_for(s.format)) {
                delivered += 1;
            }
        }
        delivered
    }

    /// Pushes one frame to a session under the outbox limits, counting what the policy did.
    pub(crate) fn push(&self, s: &SessionShared, frame: Bytes) -> bool {
        match s.outbox.push(frame, &self.outbox_limits) {
            Push::Queued => true,
            Push::Dropped {
                count,
                frame_dropped,
            } => {
                self.stats.outbox_dropped(count as u64);
                !frame_dropped
            }
            Push::Overflow => {
                self.stats.slow_consumer();
                tracing::warn!(
                    session = %s.id,
                    transport = %s.transport,
                    peer = %s.peer,
                    max_outbox_bytes = self.outbox_limits.max_bytes,
                    "slow consumer: outbox full, disconnecting"
                );
                false
            }
            Push::Closed => false,
        }
    }

    pub(crate) fn send_to(&self, s: &SessionShared, message: &Message) -> Result<(), SendError> {
        let frame = encode_message(s.format, None, message, None);
        match s.outbox.push(frame, &self.outbox_limits) {
            Push::Queued => {
                self.stats.delivered(1);
                Ok(())
            }
            Push::Closed => Err(SendError::Closing),
            Push::Dropped {
                count,
                frame_dropped,
            } => {
                self.stats.outbox_dropped(count as u64);
                if frame_dropped {
                    Err(SendError::OutboxFull)
                } else {
                    self.stats.delivered(1);
                    Ok(())
                }
            }
            Push::Overflow => {
                self.stats.slow_consumer();
                Err(SendError::OutboxFull)
            }
        }
    }
}
