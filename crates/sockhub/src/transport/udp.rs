//! UDP: a datagram is a message, and a peer address is a session from its first datagram until
//! `idle_timeout` passes without one (then it expires silently: UDP has no connection to close).
//!
//! One receive loop per socket owns the peer table; each peer session has a small task that
//! sends its outbox as datagrams and watches its expiry. Datagrams longer than
//! `max_message_size` are dropped and counted (`udp_oversized_dropped`).

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
use crate::server::ServerShared;
use crate::session::Session;
use crate::transport::dispatch;

/// Largest UDP payload over IPv4.
const MAX_DATAGRAM: usize = 65_507;

/// One known peer.
struct Peer {
    /// Its session.
    session: Session,
    /// When it last sent a datagram (for expiry).
    last_rx: Instant,
    /// `max_messages_per_second` for this source address.
    rate: RateLimiter,
}

/// The most a reply to an unknown source may be, relative to what it sent: an attacker spoofing
/// a victim's address must not get more than this factor of amplification from error replies.
const MAX_AMPLIFICATION: usize = 3;

/// Sends `reply` to an unknown source only if it is small enough relative to the `received`
/// datagram; otherwise stays silent.
fn reply_unvalidated(socket: &UdpSocket, reply: &[u8], received: usize, addr: SocketAddr) {
    if reply.len() <= received.saturating_mul(MAX_AMPLIFICATION) {
        let _ = socket.try_send_to(reply, addr);
    }
}

/// Peer address → peer. Locked by the receive loop per datagram and by peer tasks on expiry.
type PeerTable = Arc<Mutex<HashMap<SocketAddr, Peer>>>;

/// Receives datagrams until shutdown.
pub(crate) async fn run(server: Arc<ServerShared>, socket: UdpSocket, options: UdpOptions) {
    let socket = Arc::new(socket);
    let peers: PeerTable = Arc::default();
    let max = server.config.limits.max_message_size;
    // One byte more than the limit, so an oversized datagram shows as `n > max` (the kernel
    // truncates what does not fit).
    let mut buf = vec![0u8; max.saturating_add(1).min(MAX_DATAGRAM + 1)];
    let format = WireFormat {
        framing: Framing::Datagram,
        protocol: options.protocol,
    };
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
        if n > max {
            server.hub.stats().udp_oversized();
            tracing::debug!(peer = %addr, max_message_size = max, "udp datagram too large; dropped");
            continue;
        }
        let message = Message::from_bytes(Bytes::copy_from_slice(&buf[..n]));
        let existing = {
            let mut table = peers.lock().unwrap_or_else(|p| p.into_inner());
            table.get_mut(&addr).map(|p| {
                let now = Instant::now();
                p.last_rx = now;
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
        let session = match existing {
            Some(s) => s,
            None => {
                let Ok(permit) = server.permits.clone().try_acquire_owned() else {
                    server.hub.stats().refused_full();
                    let reason = CloseReason::ServerFull {
                        max: server.config.limits.max_connections,
                    };
                    reply_unvalidated(&socket, &encode_close_notice(format, &reason), n, addr);
                    continue;
                };
                let session = match server.open_session(
                    crate::Transport::Udp,
                    addr,
                    format,
                    &options.channels,
                ) {
                    Ok(s) => s,
                    Err(reason) => {
                        reply_unvalidated(&socket, &encode_close_notice(format, &reason), n, addr);
                        continue;
                    }
                };
                peers.lock().unwrap_or_else(|p| p.into_inner()).insert(
                    addr,
                    Peer {
                        session: session.clone(),
                        last_rx: Instant::now(),
                        rate: {
                            let now = Instant::now();
                            let rate = server.config.limits.max_messages_per_second;
                            let mut r = RateLimiter::new(rate, now);
                            r.take(now); // this first datagram
                            r
                        },
                    },
                );
                server.tracker.spawn(peer_task(
                    server.clone(),
                    socket.clone(),
                    peers.clone(),
                    session.clone(),
                    permit,
                ));
                session
            }
        };
        if session.shared.outbox.closing().is_none() {
            server.hub.stats().message_in();
            dispatch(&session, message);
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
    let mut shutdown_seen = false;
    let reason = loop {
        let closing = session.shared.outbox.take(&mut writing);
        let (mut bytes, frames) = (0, writing.len());
        for frame in writing.drain(..) {
            bytes += frame.len();
            if let Err(e) = socket.send_to(&frame, addr).await {
                tracing::debug!(peer = %addr, error = %e, "udp send failed");
            }
        }
        session.shared.outbox.written(bytes, frames);
        if let Some(reason) = closing {
            // Idle expiry is silent; anything the server decided is announced.
            if reason.notifies_client()
                && !matches!(reason, CloseReason::IdleTimeout | CloseReason::Normal)
            {
                let _ = socket
                    .send_to(&encode_close_notice(session.format(), &reason), addr)
                    .await;
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
