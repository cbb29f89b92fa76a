//! [`Relay`]: a [`Broker`] over any pub/sub server, given a [`Link`] that speaks its wire
//! protocol. `sockhub-redis` and `sockhub-nats` are each a `Link` and nothing else; everything
//! a cluster needs lives here once:
//!
//! - **Subscriptions follow local interest**: a channel's subject is subscribed on its first
//!   local subscriber and unsubscribed after its last (the hub tells the broker), and every
//!   subject with local subscribers is subscribed again after a reconnect.
//! - **No double delivery**: each publish carries its origin node; a node ignores its own.
//! - **Order**: one task owns the connection and publishes in the order the hub published, so
//!   messages from one node to one channel reach every node in that order.
//! - **Heartbeats**: every second each node announces its sessions and channels on a shared
//!   subject; the others keep what they heard for three seconds. That is the cluster view the
//!   HTTP API answers from, and how a node knows which node holds a session (its id carries
//!   the node's number, see [`Broker::session_id_base`]).
//! - **Routing**: "send to session" and "close session" for a session elsewhere go on a control
//!   subject; the node that holds it acts.
//! - **Failures are visible and counted**: while the broker is unreachable local delivery goes
//!   on, `/readyz` reports degraded, `sockhub_broker_up` is 0, and every publish that cannot
//!   be relayed is counted in `relay_failed` (never silently lost). The task reconnects with
//!   backoff (100 ms doubling to 5 s). After a reconnect it resumes relaying once every peer it
//!   knew has announced itself again (each announces only after re-subscribing), or after
//!   three seconds, so that publishes are not handed to a broker whose other side is not
//!   listening yet; publishes in that window are counted as not relayed, too.
//!
//! The delivery promise across nodes is therefore *at most once, in order, with every loss
//! counted at the publishing node* — the promise of the brokers' own pub/sub.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::broker::{Broker, BrokerCounters, BrokerSink, ClusterView, PeerNode};
use crate::message::{ChannelName, Message, MessageKind, SessionId};

/// How often a node announces itself.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A peer not heard from for this long is gone.
const PEER_TTL: Duration = Duration::from_secs(3);
/// Publishes waiting for the connection task; beyond it a publish is counted as not relayed.
const QUEUE: usize = 64 * 1024;
/// Most publishes sent in one go.
const BATCH: usize = 256;
/// Largest heartbeat with presence members in it (see `heartbeat`).
const MAX_HEARTBEAT: usize = 512 * 1024;
/// Session ids of a node are `node_number << NODE_SHIFT` plus a counter.
const NODE_SHIFT: u32 = 40;

/// What a [`Relay`] subscribes and publishes to, in the broker's own naming.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Topic<'a> {
    /// A hub channel.
    Channel(&'a str),
    /// Heartbeats of every node.
    Heartbeat,
    /// Routed "send to session" / "close session" requests.
    Control,
}

/// One connection to a pub/sub server: the only part a broker crate writes.
pub trait Link: Send + Sync + 'static {
    /// An open connection.
    type Conn: LinkConn;
    /// A short name for logs and `/api/stats` (`redis`, `nats`).
    fn name(&self) -> &'static str;
    /// Where it connects, for logs (no credentials).
    fn describe(&self) -> String;
    /// The broker-side name of `topic` under `prefix`.
    fn subject(&self, prefix: &str, topic: Topic<'_>) -> String;
    /// Connects. Payloads of subscribed subjects arrive on the receiver, in order; it closes
    /// when the connection is lost.
    fn connect(
        &self,
    ) -> impl Future<Output = Result<(Self::Conn, mpsc::Receiver<Bytes>), String>> + Send;
}

/// Commands on an open connection.
pub trait LinkConn: Send + 'static {
    /// Subscribes to subjects.
    fn subscribe(&mut self, subjects: &[String])
        -> impl Future<Output = Result<(), String>> + Send;
    /// Unsubscribes from subjects.
    fn unsubscribe(
        &mut self,
        subjects: &[String],
    ) -> impl Future<Output = Result<(), String>> + Send;
    /// Publishes in order. `Ok(accepted)`: how many (from the front) the server accepted; an
    /// `Err` means the connection is lost and none after `accepted` was.
    fn publish(
        &mut self,
        batch: &[(String, Bytes)],
    ) -> impl Future<Output = (usize, Result<(), String>)> + Send;
}

/// Options of a [`Relay`].
#[derive(Clone, Debug)]
pub struct RelayOptions {
    /// This node's name (`--node-id`). Default: `<hostname>-<random>`.
    pub node_id: String,
    /// Prepended to every subject, so several deployments can share a broker.
    /// Default `sockhub`.
    pub prefix: String,
}

impl Default for RelayOptions {
    fn default() -> Self {
        RelayOptions {
            node_id: default_node_id(),
            prefix: "sockhub".into(),
        }
    }
}

/// `<hostname>-<6 hex digits>`.
pub fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    format!("{host}-{:06x}", random_u64() & 0xff_ffff)
}

fn random_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS; good enough for ids that only need to differ.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish()
}

/// A command for the connection task.
enum Cmd {
    /// Publish one envelope to a subject.
    Publish(String, Bytes),
    /// `wanted` changed: subscribe/unsubscribe to match it.
    Reconcile,
    /// Local presence changed: send a heartbeat now (after the publishes queued before).
    Announce,
}

/// What the hub side and the connection task share.
struct Shared {
    /// This node's name.
    node: String,
    /// This node's number (the high bits of its session ids).
    number: u64,
    /// Subject prefix.
    prefix: String,
    /// Delivery into the hub, once attached.
    sink: OnceLock<BrokerSink>,
    /// Commands to the connection task.
    cmds: mpsc::Sender<Cmd>,
    /// Channels with local subscribers (what should be subscribed).
    wanted: Mutex<BTreeSet<ChannelName>>,
    /// Connected and relaying.
    up: AtomicBool,
    /// Counters.
    relayed: AtomicU64,
    relay_failed: AtomicU64,
    received: AtomicU64,
    reconnects: AtomicU64,
    /// Other nodes by name: number, last heartbeat, when heard.
    peers: Mutex<HashMap<String, (u64, PeerNode, Instant)>>,
    /// Subjects (computed once).
    heartbeat_subject: String,
    control_subject: String,
}

/// A [`Broker`] relaying through a pub/sub server reached by a [`Link`].
pub struct Relay<L: Link> {
    shared: Arc<Shared>,
    link: Arc<L>,
    /// Stops the connection task when the relay is dropped.
    stop: CancellationToken,
}

impl<L: Link> std::fmt::Debug for Relay<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Relay")
            .field("broker", &self.link.describe())
            .field("node", &self.shared.node)
            .finish()
    }
}

impl<L: Link> Drop for Relay<L> {
    fn drop(&mut self) {
        self.stop.cancel();
    }
}

impl<L: Link> Relay<L> {
    /// Starts the connection task (it connects in the background, with backoff, and keeps
    /// reconnecting). Must be called inside a tokio runtime.
    pub fn start(link: L, options: RelayOptions) -> Arc<Relay<L>> {
        let (tx, rx) = mpsc::channel(QUEUE);
        let link = Arc::new(link);
        let shared = Arc::new(Shared {
            number: (random_u64() % 0xff_fffe) + 1,
            heartbeat_subject: link.subject(&options.prefix, Topic::Heartbeat),
            control_subject: link.subject(&options.prefix, Topic::Control),
            node: options.node_id,
            prefix: options.prefix,
            sink: OnceLock::new(),
            cmds: tx,
            wanted: Mutex::new(BTreeSet::new()),
            up: AtomicBool::new(false),
            relayed: AtomicU64::new(0),
            relay_failed: AtomicU64::new(0),
            received: AtomicU64::new(0),
            reconnects: AtomicU64::new(0),
            peers: Mutex::new(HashMap::new()),
        });
        let stop = CancellationToken::new();
        tokio::spawn(run(link.clone(), shared.clone(), rx, stop.clone()));
        Arc::new(Relay { shared, link, stop })
    }

    /// This node's id.
    pub fn node_id(&self) -> &str {
        &self.shared.node
    }

    fn failed(&self, what: &str) {
        let n = self.shared.relay_failed.fetch_add(1, Relaxed) + 1;
        // One line per power of two: visible, without a line per lost message.
        if n.is_power_of_two() {
            tracing::warn!(
                broker = self.link.name(),
                total = n,
                "{what}: publish not relayed to other nodes"
            );
        }
    }

    /// The live peer holding session `id`, by the node number in its high bits.
    fn holder_alive(&self, id: SessionId) -> bool {
        let number = id.0 >> NODE_SHIFT;
        let peers = self.shared.peers.lock().unwrap_or_else(|p| p.into_inner());
        peers
            .values()
            .any(|(n, _, seen)| *n == number && seen.elapsed() < PEER_TTL)
    }

    fn control(&self, op: u8, id: SessionId, body: &[u8]) -> bool {
        if !self.shared.up.load(Relaxed) || (op != OP_NOTICE && !self.holder_alive(id)) {
            return false;
        }
        let mut b = BytesMut::with_capacity(16 + body.len());
        b.put_u8(KIND_CONTROL);
        put_origin(&mut b, &self.shared.node);
        b.put_u8(op);
        b.put_u64(id.0);
        b.put_slice(body);
        self.shared
            .cmds
            .try_send(Cmd::Publish(
                self.shared.control_subject.clone(),
                b.freeze(),
            ))
            .is_ok()
    }
}

const KIND_PUBLISH: u8 = 1;
const KIND_HEARTBEAT: u8 = 2;
const KIND_CONTROL: u8 = 3;
const OP_SEND: u8 = 1;
const OP_CLOSE: u8 = 2;
/// To every other node (session id 0): an adapter's notice.
const OP_NOTICE: u8 = 3;

fn put_origin(b: &mut BytesMut, node: &str) {
    let n = node.len().min(255);
    b.put_u8(n as u8);
    b.put_slice(&node.as_bytes()[..n]);
}

fn put_message(b: &mut BytesMut, m: &Message) {
    // Event name and user, each a length byte and bytes (empty: none).
    for label in [m.event().unwrap_or(""), m.user().unwrap_or("")] {
        let n = label.len().min(255);
        b.put_u8(n as u8);
        b.put_slice(&label.as_bytes()[..n]);
    }
    b.put_u8(match m.kind() {
        MessageKind::Text => 0,
        MessageKind::Binary => 1,
    });
    b.put_slice(m.payload());
}

/// Reads one length-prefixed label of `put_message`.
fn take_label(b: &mut Bytes) -> Option<String> {
    let n = usize::from(*b.first()?);
    if b.len() < n + 1 {
        return None;
    }
    b.advance(1);
    String::from_utf8(b.split_to(n).to_vec()).ok()
}

/// Reads what `put_message` wrote.
fn take_message(b: &mut Bytes) -> Option<Message> {
    let event = take_label(b)?;
    let user = take_label(b)?;
    let kind = *b.first()?;
    b.advance(1);
    let payload = std::mem::take(b);
    let mut m = match kind {
        0 if std::str::from_utf8(&payload).is_ok() => Message::from_bytes(payload),
        1 => Message::binary(payload),
        _ => return None,
    };
    if !event.is_empty() {
        m = m.with_event(event);
    }
    if !user.is_empty() {
        m = m.with_user(user);
    }
    Some(m)
}

/// A publish envelope: kind, origin, from, except, channel, message.
fn encode_publish(
    node: &str,
    channel: &str,
    m: &Message,
    from: Option<SessionId>,
    except: Option<SessionId>,
) -> Bytes {
    let mut b = BytesMut::with_capacity(32 + node.len() + channel.len() + m.len());
    b.put_u8(KIND_PUBLISH);
    put_origin(&mut b, node);
    b.put_u64(from.map_or(0, |s| s.0));
    b.put_u64(except.map_or(0, |s| s.0));
    b.put_u16(channel.len() as u16);
    b.put_slice(channel.as_bytes());
    put_message(&mut b, m);
    b.freeze()
}

/// A decoded envelope from another node.
#[derive(Debug, PartialEq)]
enum Envelope {
    Publish {
        channel: String,
        message: Message,
        from: Option<SessionId>,
        except: Option<SessionId>,
    },
    Heartbeat(u64, PeerNode),
    Send(SessionId, Message),
    Close(SessionId, String),
    Notice(Bytes),
}

/// Decodes an envelope; `None` for our own, or anything malformed (counted by the caller).
fn decode(me: &str, mut b: Bytes) -> Result<Option<Envelope>, &'static str> {
    let need = |b: &Bytes, n: usize| {
        if b.remaining() < n {
            Err("truncated")
        } else {
            Ok(())
        }
    };
    need(&b, 2)?;
    let kind = b.get_u8();
    let n = usize::from(b.get_u8());
    need(&b, n)?;
    let origin = b.split_to(n);
    if origin == me.as_bytes() {
        return Ok(None);
    }
    let id = |v: u64| (v != 0).then_some(SessionId(v));
    match kind {
        KIND_PUBLISH => {
            need(&b, 18)?;
            let from = id(b.get_u64());
            let except = id(b.get_u64());
            let len = usize::from(b.get_u16());
            need(&b, len + 3)?;
            let channel = String::from_utf8(b.split_to(len).to_vec()).map_err(|_| "channel")?;
            let message = take_message(&mut b).ok_or("message")?;
            Ok(Some(Envelope::Publish {
                channel,
                message,
                from,
                except,
            }))
        }
        KIND_HEARTBEAT => {
            need(&b, 8)?;
            let number = b.get_u64();
            let node: PeerNode = serde_json::from_slice(&b).map_err(|_| "heartbeat")?;
            Ok(Some(Envelope::Heartbeat(number, node)))
        }
        KIND_CONTROL => {
            need(&b, 9)?;
            let op = b.get_u8();
            let sid = SessionId(b.get_u64());
            match op {
                OP_SEND => Ok(Some(Envelope::Send(
                    sid,
                    take_message(&mut b).ok_or("message")?,
                ))),
                OP_CLOSE => Ok(Some(Envelope::Close(
                    sid,
                    String::from_utf8_lossy(&b).into_owned(),
                ))),
                OP_NOTICE => Ok(Some(Envelope::Notice(b))),
                _ => Err("control op"),
            }
        }
        _ => Err("kind"),
    }
}

impl<L: Link> Broker for Relay<L> {
    fn name(&self) -> &'static str {
        self.link.name()
    }

    fn attach(&self, sink: BrokerSink) {
        let _ = self.shared.sink.set(sink);
    }

    fn subscribe(&self, channel: &ChannelName) {
        self.shared
            .wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(channel.clone());
        // If the queue is full, the task reconciles on its next heartbeat anyway.
        let _ = self.shared.cmds.try_send(Cmd::Reconcile);
    }

    fn unsubscribe(&self, channel: &ChannelName) {
        self.shared
            .wanted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(channel);
        let _ = self.shared.cmds.try_send(Cmd::Reconcile);
    }

    fn publish(
        &self,
        channel: &ChannelName,
        message: &Message,
        from: Option<SessionId>,
        except: Option<SessionId>,
    ) {
        if !self.shared.up.load(Relaxed) {
            self.failed("broker unavailable");
            return;
        }
        let subject = self
            .link
            .subject(&self.shared.prefix, Topic::Channel(channel));
        let env = encode_publish(&self.shared.node, channel, message, from, except);
        if self
            .shared
            .cmds
            .try_send(Cmd::Publish(subject, env))
            .is_err()
        {
            self.failed("relay queue full");
        }
    }

    fn is_healthy(&self) -> bool {
        self.shared.up.load(Relaxed)
    }

    fn session_id_base(&self) -> u64 {
        self.shared.number << NODE_SHIFT
    }

    fn send_to_session(&self, id: SessionId, message: &Message) -> bool {
        let mut body = BytesMut::new();
        put_message(&mut body, message);
        self.control(OP_SEND, id, &body)
    }

    fn close_session(&self, id: SessionId, reason: &str) -> bool {
        self.control(OP_CLOSE, id, reason.as_bytes())
    }

    fn cluster(&self) -> Option<ClusterView> {
        let peers = self.shared.peers.lock().unwrap_or_else(|p| p.into_inner());
        let mut list: Vec<PeerNode> = peers
            .values()
            .filter(|(_, _, seen)| seen.elapsed() < PEER_TTL)
            .map(|(_, p, _)| p.clone())
            .collect();
        list.sort_by(|a, b| a.node.cmp(&b.node));
        Some(ClusterView {
            node: self.shared.node.clone(),
            peers: list,
        })
    }

    fn notify_all(&self, notice: &[u8]) -> bool {
        self.control(OP_NOTICE, SessionId(0), notice)
    }

    fn announce(&self) {
        // Queue full: the periodic heartbeat carries the change within a second anyway.
        let _ = self.shared.cmds.try_send(Cmd::Announce);
    }

    fn counters(&self) -> BrokerCounters {
        let s = &self.shared;
        BrokerCounters {
            relayed: s.relayed.load(Relaxed),
            relay_failed: s.relay_failed.load(Relaxed),
            received: s.received.load(Relaxed),
            reconnects: s.reconnects.load(Relaxed),
        }
    }
}

/// The connection task: connect, subscribe, relay; on loss, count and reconnect.
async fn run<L: Link>(
    link: Arc<L>,
    shared: Arc<Shared>,
    mut cmds: mpsc::Receiver<Cmd>,
    stop: CancellationToken,
) {
    let mut backoff = Duration::from_millis(100);
    let mut ever_connected = false;
    loop {
        let connected = tokio::select! {
            _ = stop.cancelled() => return,
            c = link.connect() => c,
        };
        let (mut conn, mut incoming) = match connected {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(broker = link.name(), at = %link.describe(), error = %e, retry_in = ?backoff, "broker unreachable; local delivery continues");
                drain_failed(&shared, &mut cmds);
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(100);
        let mut subscribed: BTreeSet<String> = BTreeSet::new();
        let base = vec![
            shared.heartbeat_subject.clone(),
            shared.control_subject.clone(),
        ];
        let result = async {
            conn.subscribe(&base).await?;
            reconcile(&*link, &shared, &mut conn, &mut subscribed).await?;
            heartbeat(&shared, &mut conn).await?;
            Ok::<_, String>(())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(broker = link.name(), error = %e, "broker connection failed while subscribing; reconnecting");
            continue;
        }
        if ever_connected {
            shared.reconnects.fetch_add(1, Relaxed);
        }
        ever_connected = true;
        // Resume relaying once every peer known before has announced itself again (each does so
        // only after re-subscribing), or after PEER_TTL.
        let waiting_for: BTreeSet<String> = shared
            .peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .keys()
            .cloned()
            .collect();
        let mut waiting_for = waiting_for;
        let resync_deadline = Instant::now() + PEER_TTL;
        if waiting_for.is_empty() {
            shared.up.store(true, Relaxed);
        }
        tracing::info!(broker = link.name(), at = %link.describe(), node = %shared.node, "broker connected");
        let mut tick = tokio::time::interval(HEARTBEAT);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let lost = loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                payload = incoming.recv() => match payload {
                    None => break "connection closed".to_string(),
                    Some(p) => {
                        if let Some(node) = receive(&shared, p) {
                            waiting_for.remove(&node);
                            if waiting_for.is_empty() && !shared.up.load(Relaxed) {
                                shared.up.store(true, Relaxed);
                                tracing::info!(broker = link.name(), "peers are back; relaying again");
                            }
                        }
                    }
                },
                cmd = cmds.recv() => {
                    let Some(cmd) = cmd else { return };
                    if let Err(e) = handle(&*link, &shared, &mut conn, &mut subscribed, cmd, &mut cmds).await {
                        break e;
                    }
                }
                _ = tick.tick() => {
                    if !shared.up.load(Relaxed) && Instant::now() >= resync_deadline {
                        shared.up.store(true, Relaxed);
                        tracing::info!(broker = link.name(), missing = ?waiting_for, "peers not back after resync; relaying again");
                    }
                    let r = async {
                        reconcile(&*link, &shared, &mut conn, &mut subscribed).await?;
                        heartbeat(&shared, &mut conn).await
                    }.await;
                    if let Err(e) = r {
                        break e;
                    }
                    shared
                        .peers
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .retain(|_, (_, _, seen)| seen.elapsed() < PEER_TTL * 10);
                    // A peer may have expired since the last tick.
                    if let Some(sink) = shared.sink.get() {
                        sink.peers_changed();
                    }
                }
            }
        };
        shared.up.store(false, Relaxed);
        tracing::warn!(broker = link.name(), error = %lost, "broker connection lost; local delivery continues; reconnecting");
        drain_failed(&shared, &mut cmds);
    }
}

/// While disconnected: every queued publish is counted as not relayed.
fn drain_failed(shared: &Shared, cmds: &mut mpsc::Receiver<Cmd>) {
    while let Ok(cmd) = cmds.try_recv() {
        if let Cmd::Publish(..) = cmd {
            shared.relay_failed.fetch_add(1, Relaxed);
        }
    }
}

/// Handles one command, batching the publishes queued behind it.
async fn handle<L: Link>(
    link: &L,
    shared: &Shared,
    conn: &mut L::Conn,
    subscribed: &mut BTreeSet<String>,
    first: Cmd,
    cmds: &mut mpsc::Receiver<Cmd>,
) -> Result<(), String> {
    let mut batch = Vec::new();
    let mut announce = false;
    let mut next = Some(first);
    while let Some(cmd) = next.take() {
        match cmd {
            Cmd::Publish(subject, env) => {
                // Not relaying yet (resyncing after a reconnect): counted, not sent.
                if shared.up.load(Relaxed) {
                    batch.push((subject, env));
                } else {
                    shared.relay_failed.fetch_add(1, Relaxed);
                }
            }
            // Subscriptions change before the publishes behind them go out.
            Cmd::Reconcile => {
                flush(shared, conn, &mut batch).await?;
                reconcile(link, shared, conn, subscribed).await?;
            }
            // Several in a row make one heartbeat.
            Cmd::Announce => announce = true,
        }
        if batch.len() < BATCH {
            next = cmds.try_recv().ok();
        }
    }
    flush(shared, conn, &mut batch).await?;
    if announce {
        heartbeat(shared, conn).await?;
    }
    Ok(())
}

async fn flush<C: LinkConn>(
    shared: &Shared,
    conn: &mut C,
    batch: &mut Vec<(String, Bytes)>,
) -> Result<(), String> {
    if batch.is_empty() {
        return Ok(());
    }
    let (accepted, result) = conn.publish(batch).await;
    shared.relayed.fetch_add(accepted as u64, Relaxed);
    let lost = batch.len() - accepted.min(batch.len());
    shared.relay_failed.fetch_add(lost as u64, Relaxed);
    batch.clear();
    result
}

/// Subscribes and unsubscribes so that the subscribed channels are the wanted ones.
async fn reconcile<L: Link>(
    link: &L,
    shared: &Shared,
    conn: &mut L::Conn,
    subscribed: &mut BTreeSet<String>,
) -> Result<(), String> {
    let wanted: BTreeSet<String> = shared
        .wanted
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|c| link.subject(&shared.prefix, Topic::Channel(c)))
        .collect();
    let add: Vec<String> = wanted.difference(subscribed).cloned().collect();
    let remove: Vec<String> = subscribed.difference(&wanted).cloned().collect();
    if !add.is_empty() {
        conn.subscribe(&add).await?;
    }
    if !remove.is_empty() {
        conn.unsubscribe(&remove).await?;
    }
    *subscribed = wanted;
    Ok(())
}

async fn heartbeat<C: LinkConn>(shared: &Shared, conn: &mut C) -> Result<(), String> {
    let (connections, channels) = shared
        .sink
        .get()
        .map(BrokerSink::local_view)
        .unwrap_or_default();
    let presence = shared
        .sink
        .get()
        .map(BrokerSink::local_presence)
        .unwrap_or_default();
    let me = PeerNode {
        node: shared.node.clone(),
        connections,
        channels,
        presence,
    };
    let mut body = serde_json::to_vec(&me).unwrap_or_default();
    if body.len() > MAX_HEARTBEAT && !me.presence.is_empty() {
        // NATS refuses payloads over 1 MiB by default. Other nodes then do not see this
        // node's presence members (a documented limit: README, "Pusher").
        tracing::warn!(
            bytes = body.len(),
            "presence members too large for a heartbeat; not shared with other nodes"
        );
        let me = PeerNode {
            presence: Vec::new(),
            ..me
        };
        body = serde_json::to_vec(&me).unwrap_or_default();
    }
    let mut b = BytesMut::new();
    b.put_u8(KIND_HEARTBEAT);
    put_origin(&mut b, &shared.node);
    b.put_u64(shared.number);
    b.put_slice(&body);
    let batch = [(shared.heartbeat_subject.clone(), b.freeze())];
    conn.publish(&batch).await.1
}

/// Acts on one payload from the broker. Returns the peer's name for a heartbeat.
fn receive(shared: &Shared, payload: Bytes) -> Option<String> {
    let sink = shared.sink.get()?;
    match decode(&shared.node, payload) {
        Ok(None) => None,
        Err(what) => {
            tracing::warn!(what, "undecodable message from the broker ignored");
            None
        }
        Ok(Some(Envelope::Publish {
            channel,
            message,
            from,
            except,
        })) => {
            shared.received.fetch_add(1, Relaxed);
            sink.deliver(&channel, message, from, except);
            None
        }
        Ok(Some(Envelope::Heartbeat(number, node))) => {
            let name = node.node.clone();
            shared
                .peers
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(name.clone(), (number, node, Instant::now()));
            sink.peers_changed();
            Some(name)
        }
        Ok(Some(Envelope::Send(id, message))) => {
            sink.send(id, message);
            None
        }
        Ok(Some(Envelope::Close(id, reason))) => {
            sink.close(id, &reason);
            None
        }
        Ok(Some(Envelope::Notice(body))) => {
            sink.notice(&body);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelopes_round_trip_and_our_own_are_skipped() {
        let env = encode_publish("a", "lobby", &Message::text("hi"), Some(SessionId(7)), None);
        assert_eq!(decode("a", env.clone()), Ok(None));
        assert_eq!(
            decode("b", env),
            Ok(Some(Envelope::Publish {
                channel: "lobby".into(),
                message: Message::text("hi"),
                from: Some(SessionId(7)),
                except: None,
            }))
        );
        let bin = encode_publish(
            "a",
            "c",
            &Message::binary(vec![0, 255]),
            None,
            Some(SessionId(3)),
        );
        assert!(matches!(
            decode("b", bin),
            Ok(Some(Envelope::Publish {
                except: Some(SessionId(3)),
                ..
            }))
        ));
        let named = Message::text("{}")
            .with_event("client-moved")
            .with_user("u1");
        let env = encode_publish("a", "c", &named, None, None);
        assert!(matches!(
            decode("b", env),
            Ok(Some(Envelope::Publish { message, .. })) if message == named
        ));
        // Truncations and garbage are errors, never panics.
        let env = encode_publish("a", "lobby", &Message::text("hi"), None, None);
        for cut in 0..env.len() - 3 {
            assert!(decode("b", env.slice(..cut)).is_err(), "cut at {cut}");
        }
        assert!(decode("b", Bytes::from_static(&[9, 0])).is_err());
    }
}
