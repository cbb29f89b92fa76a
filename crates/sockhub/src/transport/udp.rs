//! UDP: a datagram is a message, and a peer address is a session from its first datagram until
//! `idle_timeout` passes without one (then it expires silently: UDP has no connection to close).
//!
//! One receive loop per socket owns the peer table; each peer session has a small task that
//! sends its outbox as datagrams and watches its expiry. Datagrams longer than
//! `max_message_size` are dropped and counted (`udp_oversized_dropped`).
//!
//! A source address is unproven until the peer echoes a cookie ([`validation`]): until then it
//! is sent at most 3× the bytes it sent, and the rest is dropped and counted
//! (`udp_unvalidated_dropped`), so a spoofed datagram cannot turn a busy channel into a flood
//! aimed at someone else.
//!
//! With client auth on, a new source's first datagram must be `AUTH <token>` (it is not a
//! message). With a connect webhook, a new source waits for the backend's answer; up to
//! [`MAX_PENDING`] datagrams it sends meanwhile are kept and delivered, in order, once it is
//! admitted; more are dropped and counted (`udp_pending_dropped`).

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tokio::net::UdpSocket;
use tokio::sync::OwnedSemaphorePermit;
use tokio::time::Instant;

use crate::close::CloseReason;
use crate::config::UdpOptions;
use crate::message::Message;
use crate::protocol::{encode_close_notice, Framing, WireFormat};
use crate::rate::RateLimiter;
use crate::session::Session;
use crate::shared::{Knock, ServerShared};
use crate::transport::dispatch;

pub(crate) mod validation;

use validation::{parse_control, Answer, CookieJar, Credit, Validator, MAX_AMPLIFICATION};

/// Datagrams kept per source while it waits for the connect webhook.
pub(crate) const MAX_PENDING: usize = 16;

/// Largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// Cookie requests and echoes up to this size are read whatever `max_message_size` is: a
/// client must be able to validate its address even where messages are tiny.
const MAX_CONTROL: usize = 64;

/// One known peer.
struct Peer {
    /// Its session.
    session: Session,
    /// When it last sent a datagram (for expiry).
    last_rx: Instant,
    /// `max_messages_per_second` for this source address.
    rate: RateLimiter,
    /// Return-routability: validated yet, and if not, how many bytes it may still be sent.
    credit: Credit,
}

/// Sends `reply` to an unknown source only if it is small enough relative to the `received`
/// datagram; otherwise stays silent.
fn reply_unvalidated(socket: &UdpSocket, reply: &[u8], received: usize, addr: SocketAddr) {
    if reply.len() <= received.saturating_mul(MAX_AMPLIFICATION) {
        let _ = socket.try_send_to(reply, addr);
    }
}

/// Peer address → peer. Locked by the receive loop per datagram and by peer tasks on expiry.
type PeerTable = Arc<Mutex<HashMap<SocketAddr, Peer>>>;

/// What the receive loop shares with the peers it opens.
struct Listener {
    /// The server.
    server: Arc<ServerShared>,
    /// The socket, shared with every peer task.
    socket: Arc<UdpSocket>,
    /// Known peers.
    peers: PeerTable,
    /// Sources waiting for the connect webhook's answer.
    pending: Arc<Mutex<HashMap<SocketAddr, Pending>>>,
    /// Options of this listener.
    options: UdpOptions,
}

/// A source waiting for the connect webhook.
#[derive(Default)]
struct Pending {
    /// Messages it sent meanwhile (at most [`MAX_PENDING`]), delivered once it is admitted.
    waiting: Vec<Bytes>,
    /// It echoed a valid cookie meanwhile: its session starts validated.
    validated: bool,
}

/// What became of a new source.
enum Admitted {
    /// Its session is open; `first_is_message`: dispatch the datagram that opened it.
    Now {
        session: Session,
        first_is_message: bool,
    },
    /// Waiting for something (the connect webhook, or its `AUTH` datagram).
    Later,
}

impl Listener {
    /// Admits a new source: takes a slot, checks its token (its first datagram must be
    /// `AUTH <token>` when client auth is on), asks the connect webhook (asynchronously: the
    /// source is pending meanwhile), opens its session (running `on_connect`) and starts its
    /// peer task. `first` is the datagram that revealed it (`None` for a cookie echo). On
    /// refusal, the reason for the client (not yet counted).
    fn admit_peer(
        &self,
        addr: SocketAddr,
        credit: Credit,
        first: Option<&[u8]>,
    ) -> Result<Admitted, CloseReason> {
        let server = &self.server;
        let token = match (&server.token_secret, first) {
            (None, _) => None,
            // A validated source (cookie echo) still has to present its token.
            (Some(_), None) => return Ok(Admitted::Later),
            (Some(_), Some(d)) => Some(crate::transport::tcp::parse_auth(d)?),
        };
        let first_is_message = server.token_secret.is_none() && first.is_some();
        let Ok(permit) = server.permits.clone().try_acquire_owned() else {
            return Err(CloseReason::ServerFull {
                max: server.config.limits.max_connections,
            });
        };
        let knock = Knock {
            transport: crate::Transport::Udp,
            peer: addr,
            format: self.format(),
            channels: self.options.channels.clone(),
            token,
        };
        if server.webhooks.is_none() {
            // Everything is synchronous: admit in line.
            let identity = server.verify_token(knock.token.as_deref())?;
            let id = server.hub.inner.next_session_id();
            let session = server.open_session_as(
                id,
                knock.transport,
                addr,
                knock.format,
                &knock.channels,
                identity,
            )?;
            self.start_peer(addr, credit, session.clone(), permit);
            return Ok(Admitted::Now {
                session,
                first_is_message,
            });
        }
        // The connect webhook answers asynchronously; the receive loop must not wait for it.
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(addr, Pending::default());
        let first = first
            .filter(|_| first_is_message)
            .map(Bytes::copy_from_slice);
        let received = first.as_ref().map_or(0, Bytes::len).max(1);
        let this = self.clone_parts();
        // What `Validator::validated_credit` gives: a source that echoed its cookie.
        let validated_credit = Credit::new(0, false);
        server.tracker.spawn(async move {
            let admitted = this.server.admit(knock).await;
            let Pending { waiting, validated } = this
                .pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&addr)
                .unwrap_or_default();
            match admitted {
                Ok(session) => {
                    let credit = if validated { validated_credit } else { credit };
                    this.start_peer(addr, credit, session.clone(), permit);
                    for d in first.into_iter().chain(waiting) {
                        this.server.hub.stats().message_in();
                        dispatch(&session, Message::from_bytes(d));
                    }
                }
                Err(reason) => {
                    for _ in waiting {
                        this.server.hub.stats().udp_pending_dropped();
                    }
                    let notice = encode_close_notice(this.format(), &reason);
                    reply_unvalidated(&this.socket, &notice, received, addr);
                }
            }
        });
        Ok(Admitted::Later)
    }

    /// A second handle on the same listener state (for admission tasks).
    fn clone_parts(&self) -> Listener {
        Listener {
            server: self.server.clone(),
            socket: self.socket.clone(),
            peers: self.peers.clone(),
            pending: self.pending.clone(),
            options: self.options.clone(),
        }
    }

    /// Records an admitted source in the peer table with `credit` and spawns its peer task.
    fn start_peer(
        &self,
        addr: SocketAddr,
        credit: Credit,
        session: Session,
        permit: OwnedSemaphorePermit,
    ) {
        let server = &self.server;
        let now = Instant::now();
        let mut rate = RateLimiter::new(server.config.limits.max_messages_per_second, now);
        rate.take(now); // this first datagram
        self.peers.lock().unwrap_or_else(|p| p.into_inner()).insert(
            addr,
            Peer {
                session: session.clone(),
                last_rx: now,
                rate,
                credit,
            },
        );
        server.tracker.spawn(peer_task(
            server.clone(),
            self.socket.clone(),
            self.peers.clone(),
            session,
            permit,
        ));
    }

    fn format(&self) -> WireFormat {
        WireFormat {
            framing: Framing::Datagram,
            protocol: self.options.protocol,
        }
    }
}

/// Receives datagrams until shutdown.
pub(crate) async fn run(server: Arc<ServerShared>, socket: UdpSocket, options: UdpOptions) {
    let validator = Validator::new(
        CookieJar::random(),
        options.address_validation,
        options.protocol,
    );
    let listener = Listener {
        server: server.clone(),
        socket: Arc::new(socket),
        peers: Arc::default(),
        pending: Arc::default(),
        options,
    };
    let (socket, peers, protocol) = (&listener.socket, &listener.peers, listener.options.protocol);
    let format = listener.format();
    let max = server.config.limits.max_message_size;
    // One byte more than the limit, so an oversized datagram shows as `n > max` (the kernel
    // truncates what does not fit); never less than a control datagram, which any limit admits.
    let mut buf = vec![0u8; max.max(MAX_CONTROL).saturating_add(1).min(MAX_DATAGRAM + 1)];
    let started = Instant::now();
    loop {
        let (n, addr) = tokio::select! {
            _ = server.shutdown.cancelled() => break,
            r = socket.recv_from(&mut buf) => match r {
                Ok(v) => v,
                // ICMP errors from earlier sends surface here (e.g. ECONNREFUSED); not fatal.
                Err(e) => {
                    tracing::debug!(error = %e, "udp recv error");
                    continue;
                }
            },
        };
        let datagram = &buf[..n];
        // Cookie requests and echoes are never messages.
        let control = (n <= MAX_CONTROL)
            .then(|| parse_control(protocol, datagram))
            .flatten();
        if n > max && control.is_none() {
            server.hub.stats().udp_oversized();
            tracing::debug!(peer = %addr, max_message_size = max, "udp datagram too large; dropped");
            continue;
        }
        let epoch = Validator::epoch(started.elapsed());
        if let Some(pending) = listener
            .pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&addr)
        {
            match control {
                // Cookie traffic is answered as for an unknown source; a valid echo is
                // remembered, so the session starts validated once admitted.
                Some(control) => match validator.on_control(addr, control, None, n, epoch) {
                    Answer::Reply(reply) => {
                        let _ = socket.try_send_to(&reply, addr);
                    }
                    Answer::Open => pending.validated = true,
                    Answer::Nothing => {}
                },
                None if pending.waiting.len() < MAX_PENDING => {
                    pending.waiting.push(Bytes::copy_from_slice(datagram));
                }
                None => server.hub.stats().udp_pending_dropped(),
            }
            continue;
        }
        let existing = {
            let mut table = peers.lock().unwrap_or_else(|p| p.into_inner());
            table.get_mut(&addr).map(|p| {
                let now = Instant::now();
                p.last_rx = now;
                p.credit.received(n);
                (p.session.clone(), p.rate.take(now))
            })
        };
        let existing = match existing {
            Some((_, false)) => {
                server.hub.stats().udp_rate_limited();
                continue;
            }
            Some((s, true)) => Some(s),
            None => None,
        };
        let session = match (existing, control) {
            (Some(session), None) => session,
            (None, None) => {
                match listener.admit_peer(addr, validator.new_credit(n), Some(datagram)) {
                    Ok(Admitted::Now {
                        session,
                        first_is_message: true,
                    }) => session,
                    Ok(_) => continue,
                    Err(reason) => {
                        if matches!(reason, CloseReason::ServerFull { .. }) {
                            server.hub.stats().refused_full();
                        }
                        reply_unvalidated(socket, &encode_close_notice(format, &reason), n, addr);
                        continue;
                    }
                }
            }
            (Some(_), Some(control)) => {
                let answer = {
                    let mut table = peers.lock().unwrap_or_else(|p| p.into_inner());
                    match table.get_mut(&addr) {
                        Some(p) => {
                            let was = p.credit.is_validated();
                            let answer =
                                validator.on_control(addr, control, Some(&mut p.credit), n, epoch);
                            if !was && p.credit.is_validated() {
                                tracing::debug!(peer = %addr, "udp source validated");
                            }
                            answer
                        }
                        None => Answer::Nothing,
                    }
                };
                if let Answer::Reply(reply) = answer {
                    let _ = socket.try_send_to(&reply, addr);
                }
                continue;
            }
            (None, Some(control)) => {
                match validator.on_control(addr, control, None, n, epoch) {
                    Answer::Reply(reply) => {
                        let _ = socket.try_send_to(&reply, addr);
                    }
                    Answer::Open => {
                        // Not answered here: the source's first message gets the refusal.
                        if let Err(reason) =
                            listener.admit_peer(addr, validator.validated_credit(), None)
                        {
                            tracing::debug!(peer = %addr, %reason, "udp cookie echo: no session");
                        }
                    }
                    Answer::Nothing => {}
                }
                continue;
            }
        };
        // Offer the cookie an unvalidated source is owed, once it fits in 3x what it sent.
        // Before the dispatch: the cookie is what unlocks everything else, so it goes first.
        let offer = {
            let mut table = peers.lock().unwrap_or_else(|p| p.into_inner());
            table
                .get_mut(&addr)
                .and_then(|p| validator.offer(addr, &mut p.credit, epoch))
        };
        if let Some(cookie) = offer {
            let _ = socket.try_send_to(&cookie, addr);
        }
        if session.shared.outbox.closing().is_none() {
            server.hub.stats().message_in();
            dispatch(
                &session,
                Message::from_bytes(Bytes::copy_from_slice(datagram)),
            );
        }
    }
}

/// Sends one peer's outbox as datagrams and expires it when idle.
async fn peer_task(
    server: Arc<ServerShared>,
    socket: Arc<UdpSocket>,
    peers: PeerTable,
    session: Session,
    permit: OwnedSemaphorePermit,
) {
    let addr = session.peer();
    let idle = server.config.limits.idle_timeout;
    let mut writing: VecDeque<Bytes> = VecDeque::new();
    let mut sendable: Vec<Bytes> = Vec::new();
    // Once validated, a source stays validated for the session's life: stop asking.
    let mut validated = false;
    let mut shutdown_seen = false;
    let reason = loop {
        let closing = session.shared.outbox.take(&mut writing);
        let (bytes, frames) = (writing.iter().map(Bytes::len).sum(), writing.len());
        let notice = closing.as_ref().and_then(|reason| {
            // Idle expiry is silent; anything the server decided is announced.
            (reason.notifies_client()
                && !matches!(reason, CloseReason::IdleTimeout | CloseReason::Normal))
            .then(|| encode_close_notice(session.format(), reason))
        });
        let mut notice_allowed = true;
        if validated {
            sendable.extend(writing.drain(..));
        } else {
            // An unvalidated source is sent frames up to its credit; the rest is dropped.
            let mut table = peers.lock().unwrap_or_else(|p| p.into_inner());
            match table.get_mut(&addr).map(|p| &mut p.credit) {
                Some(c) if !c.is_validated() => {
                    let before = writing.len();
                    sendable.extend(writing.drain(..).filter(|f| c.spend(f.len())));
                    let dropped = before - sendable.len();
                    if let Some(n) = &notice {
                        notice_allowed = c.spend(n.len());
                    }
                    let dropped = dropped + usize::from(!notice_allowed);
                    if dropped > 0 {
                        server.hub.stats().udp_unvalidated_dropped(dropped as u64);
                    }
                }
                // Validated, or vanished from the table (then the loop ends below).
                other => {
                    validated = other.is_some();
                    sendable.extend(writing.drain(..));
                }
            }
        }
        for frame in sendable.drain(..) {
            if let Err(e) = socket.send_to(&frame, addr).await {
                tracing::debug!(peer = %addr, error = %e, "udp send failed");
            }
        }
        session.shared.outbox.written(bytes, frames);
        if let Some(reason) = closing {
            if let Some(notice) = notice.filter(|_| notice_allowed) {
                let _ = socket.send_to(&notice, addr).await;
            }
            break reason;
        }
        let expires = {
            let table = peers.lock().unwrap_or_else(|p| p.into_inner());
            table.get(&addr).map(|p| p.last_rx + idle)
        };
        let Some(expires) = expires else {
            break CloseReason::Internal("udp peer vanished from its table".into());
        };
        tokio::select! {
            _ = server.shutdown.cancelled(), if !shutdown_seen => {
                shutdown_seen = true;
                session.shared.outbox.close(CloseReason::GoingAway);
            }
            _ = session.shared.outbox.notified() => {}
            _ = tokio::time::sleep_until(expires), if !idle.is_zero() => {
                let table = peers.lock().unwrap_or_else(|p| p.into_inner());
                if table.get(&addr).is_some_and(|p| Instant::now() >= p.last_rx + idle) {
                    session.shared.outbox.close(CloseReason::IdleTimeout);
                }
            }
        }
    };
    peers
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&addr);
    drop(permit);
    server.finish_session(&session, &reason);
}
