//! Counters shared by the hub and the transports: cheap atomics now, the source of the
//! Prometheus metrics later. Every drop or forced disconnect the server decides is counted here.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::message::Transport;

/// Live counters. Read a consistent-enough copy with [`Stats::snapshot`].
#[derive(Debug, Default)]
pub struct Stats {
    /// Sessions open now, by transport (index: ws, tcp, udp).
    open: [AtomicU64; 3],
    /// Sessions opened since start, by transport.
    opened: [AtomicU64; 3],
    /// Messages received from clients.
    messages_in: AtomicU64,
    /// Bytes read from clients' sockets, by transport (WebSocket and TCP: after the handshake).
    bytes_in: [AtomicU64; 3],
    /// Bytes of whole frames written to clients' sockets, by transport.
    bytes_out: [AtomicU64; 3],
    /// Publishes to a channel (from sessions, the API or the broker).
    publishes: AtomicU64,
    /// Frames queued for sessions by publishes and sends (fan-out deliveries).
    deliveries: AtomicU64,
    /// Sessions disconnected because their outbox overflowed.
    slow_consumer_disconnects: AtomicU64,
    /// Frames dropped by the drop-oldest overflow policy.
    outbox_dropped: AtomicU64,
    /// UDP datagrams dropped for exceeding `max_message_size`.
    udp_oversized_dropped: AtomicU64,
    /// Connections refused because `max_connections` was reached.
    refused_full: AtomicU64,
    /// UDP datagrams dropped for exceeding `max_messages_per_second`.
    udp_rate_limited: AtomicU64,
    /// Datagrams not sent to unvalidated UDP sources (over 3x what they sent).
    udp_unvalidated_dropped: AtomicU64,
    /// UDP datagrams from a source waiting for the connect webhook's answer, beyond the ones
    /// kept for it (or kept for a source that was then refused).
    udp_pending_dropped: AtomicU64,
}

/// A copy of the counters at one moment.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct StatsSnapshot {
    /// WebSocket sessions open now.
    pub ws_connections: u64,
    /// TCP sessions open now.
    pub tcp_connections: u64,
    /// UDP peer sessions open now.
    pub udp_sessions: u64,
    /// Sessions opened since start, all transports.
    pub sessions_opened: u64,
    /// Messages received from clients.
    pub messages_in: u64,
    /// Bytes received, by transport: `[ws, tcp, udp]`.
    pub bytes_in: [u64; 3],
    /// Bytes sent, by transport: `[ws, tcp, udp]`.
    pub bytes_out: [u64; 3],
    /// Sessions opened since start, by transport: `[ws, tcp, udp]`.
    pub opened_by_transport: [u64; 3],
    /// Publishes to a channel.
    pub publishes: u64,
    /// Frames queued for delivery to sessions.
    pub deliveries: u64,
    /// Sessions disconnected as slow consumers.
    pub slow_consumer_disconnects: u64,
    /// Frames dropped by the drop-oldest policy.
    pub outbox_dropped: u64,
    /// Oversized UDP datagrams dropped.
    pub udp_oversized_dropped: u64,
    /// Connections refused because the server was full.
    pub refused_full: u64,
    /// UDP datagrams dropped by the per-source rate limit.
    pub udp_rate_limited: u64,
    /// Datagrams not sent to UDP sources that have not echoed their cookie, because they
    /// exceeded 3x the bytes those sources sent (anti-amplification).
    pub udp_unvalidated_dropped: u64,
    /// Datagrams dropped while their source waited for the connect webhook.
    pub udp_pending_dropped: u64,
}

fn idx(t: Transport) -> usize {
    match t {
        Transport::WebSocket => 0,
        Transport::Tcp => 1,
        Transport::Udp => 2,
    }
}

impl Stats {
    pub(crate) fn session_opened(&self, t: Transport) {
        self.open[idx(t)].fetch_add(1, Relaxed);
        self.opened[idx(t)].fetch_add(1, Relaxed);
    }
    pub(crate) fn session_closed(&self, t: Transport) {
        self.open[idx(t)].fetch_sub(1, Relaxed);
    }
    pub(crate) fn bytes_in(&self, t: Transport, n: usize) {
        self.bytes_in[idx(t)].fetch_add(n as u64, Relaxed);
    }
    pub(crate) fn bytes_out(&self, t: Transport, n: usize) {
        self.bytes_out[idx(t)].fetch_add(n as u64, Relaxed);
    }
    pub(crate) fn message_in(&self) {
        self.messages_in.fetch_add(1, Relaxed);
    }
    pub(crate) fn published(&self, deliveries: u64) {
        self.publishes.fetch_add(1, Relaxed);
        self.deliveries.fetch_add(deliveries, Relaxed);
    }
    pub(crate) fn delivered(&self, n: u64) {
        self.deliveries.fetch_add(n, Relaxed);
    }
    pub(crate) fn slow_consumer(&self) {
        self.slow_consumer_disconnects.fetch_add(1, Relaxed);
    }
    pub(crate) fn outbox_dropped(&self, n: u64) {
        self.outbox_dropped.fetch_add(n, Relaxed);
    }
    pub(crate) fn udp_oversized(&self) {
        self.udp_oversized_dropped.fetch_add(1, Relaxed);
    }
    pub(crate) fn refused_full(&self) {
        self.refused_full.fetch_add(1, Relaxed);
    }
    pub(crate) fn udp_rate_limited(&self) {
        self.udp_rate_limited.fetch_add(1, Relaxed);
    }
    pub(crate) fn udp_pending_dropped(&self) {
        self.udp_pending_dropped.fetch_add(1, Relaxed);
    }
    pub(crate) fn udp_unvalidated_dropped(&self, n: u64) {
        self.udp_unvalidated_dropped.fetch_add(n, Relaxed);
    }

    /// Reads every counter.
    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            ws_connections: self.open[0].load(Relaxed),
            tcp_connections: self.open[1].load(Relaxed),
            udp_sessions: self.open[2].load(Relaxed),
            sessions_opened: self.opened.iter().map(|c| c.load(Relaxed)).sum(),
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.each_ref().map(|c| c.load(Relaxed)),
            bytes_out: self.bytes_out.each_ref().map(|c| c.load(Relaxed)),
            opened_by_transport: self.opened.each_ref().map(|c| c.load(Relaxed)),
            publishes: self.publishes.load(Relaxed),
            deliveries: self.deliveries.load(Relaxed),
            slow_consumer_disconnects: self.slow_consumer_disconnects.load(Relaxed),
            outbox_dropped: self.outbox_dropped.load(Relaxed),
            udp_oversized_dropped: self.udp_oversized_dropped.load(Relaxed),
            refused_full: self.refused_full.load(Relaxed),
            udp_rate_limited: self.udp_rate_limited.load(Relaxed),
            udp_unvalidated_dropped: self.udp_unvalidated_dropped.load(Relaxed),
            udp_pending_dropped: self.udp_pending_dropped.load(Relaxed),
        }
    }
}
