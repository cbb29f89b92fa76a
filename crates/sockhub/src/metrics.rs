//! `/metrics`: the hub's counters in the Prometheus text exposition format (version 0.0.4).
//!
//! Rendered by hand from [`crate::stats::Stats`] rather than through a metrics crate: the
//! counters already live as plain atomics on the hot path (one relaxed add each), and the
//! format for a few dozen counters, gauges and one histogram is a page of code. Names follow
//! the Prometheus conventions: `sockhub_` prefix, base units (`_seconds`, `_bytes`), `_total`
//! on counters.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use crate::config::WebhookEvent;
use crate::shared::ServerShared;
use crate::webhook::{Outcome, LATENCY_BUCKETS};

const TRANSPORTS: [&str; 3] = ["ws", "tcp", "udp"];

struct Writer(String);

impl Writer {
    fn header(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}");
        let _ = writeln!(self.0, "# TYPE {name} {kind}");
    }
    fn one(&mut self, name: &str, kind: &str, help: &str, value: u64) {
        self.header(name, kind, help);
        let _ = writeln!(self.0, "{name} {value}");
    }
    fn by_transport(&mut self, name: &str, kind: &str, help: &str, values: [u64; 3]) {
        self.header(name, kind, help);
        for (t, v) in TRANSPORTS.iter().zip(values) {
            let _ = writeln!(self.0, "{name}{{transport=\"{t}\"}} {v}");
        }
    }
}

/// The metrics page.
pub(crate) fn render(server: &ServerShared) -> String {
    let s = server.hub.stats().snapshot();
    let mut w = Writer(String::with_capacity(4096));
    w.one(
        "sockhub_build_info",
        "gauge",
        concat!("Always 1; the version is ", env!("CARGO_PKG_VERSION"), "."),
        1,
    );
    w.by_transport(
        "sockhub_connections",
        "gauge",
        "Sessions open now (UDP: peers seen within the idle timeout).",
        [s.ws_connections, s.tcp_connections, s.udp_sessions],
    );
    w.by_transport(
        "sockhub_connections_opened_total",
        "counter",
        "Sessions opened since start.",
        s.opened_by_transport,
    );
    w.one(
        "sockhub_connections_refused_total",
        "counter",
        "Connections refused because max_connections was reached.",
        s.refused_full,
    );
    w.one(
        "sockhub_channels",
        "gauge",
        "Channels with at least one local subscriber.",
        server.hub.channel_count() as u64,
    );
    w.one(
        "sockhub_messages_received_total",
        "counter",
        "Messages received from clients (all transports).",
        s.messages_in,
    );
    w.by_transport(
        "sockhub_bytes_received_total",
        "counter",
        "Bytes read from clients (WebSocket and TCP: after the handshake).",
        s.bytes_in,
    );
    w.by_transport(
        "sockhub_bytes_sent_total",
        "counter",
        "Bytes of whole frames written to clients.",
        s.bytes_out,
    );
    w.one(
        "sockhub_publishes_total",
        "counter",
        "Publishes to a channel (by clients, the API, handlers and the broker).",
        s.publishes,
    );
    w.one(
        "sockhub_deliveries_total",
        "counter",
        "Frames queued for sessions by publishes and sends (fan-out deliveries).",
        s.deliveries,
    );
    w.one(
        "sockhub_outbox_dropped_total",
        "counter",
        "Frames dropped by the drop-oldest outbox policy.",
        s.outbox_dropped,
    );
    w.one(
        "sockhub_slow_consumer_disconnects_total",
        "counter",
        "Sessions disconnected because their outbox overflowed (close 4100).",
        s.slow_consumer_disconnects,
    );
    w.header(
        "sockhub_udp_dropped_total",
        "counter",
        "UDP datagrams dropped, by reason.",
    );
    let _ = writeln!(
        w.0,
        "sockhub_udp_dropped_total{{reason=\"oversized\"}} {}",
        s.udp_oversized_dropped
    );
    let _ = writeln!(
        w.0,
        "sockhub_udp_dropped_total{{reason=\"rate_limited\"}} {}",
        s.udp_rate_limited
    );
    let _ = writeln!(
        w.0,
        "sockhub_udp_dropped_total{{reason=\"unvalidated\"}} {}",
        s.udp_unvalidated_dropped
    );
    let _ = writeln!(
        w.0,
        "sockhub_udp_dropped_total{{reason=\"pending\"}} {}",
        s.udp_pending_dropped
    );
    w.one(
        "sockhub_broker_up",
        "gauge",
        "1 while the broker is connected (always 1 for the memory broker).",
        u64::from(server.hub.broker_healthy()),
    );
    let b = server.hub.broker_counters();
    w.one(
        "sockhub_broker_relayed_total",
        "counter",
        "Publishes handed to the broker for other nodes.",
        b.relayed,
    );
    w.one(
        "sockhub_broker_relay_failed_total",
        "counter",
        "Publishes that could not be relayed to other nodes (broker down or queue full).",
        b.relay_failed,
    );
    w.one(
        "sockhub_broker_received_total",
        "counter",
        "Publishes received from other nodes.",
        b.received,
    );
    w.one(
        "sockhub_broker_reconnects_total",
        "counter",
        "Broker connections re-established after a loss.",
        b.reconnects,
    );
    if let Some(cluster) = server.hub.cluster() {
        w.one(
            "sockhub_cluster_nodes",
            "gauge",
            "Nodes heard from in the last heartbeats, this one included.",
            cluster.peers.len() as u64 + 1,
        );
    }
    if let Some(webhooks) = &server.webhooks {
        let ws = &webhooks.stats;
        let events = [
            WebhookEvent::Connect,
            WebhookEvent::Message,
            WebhookEvent::Close,
        ];
        w.header(
            "sockhub_webhook_requests_total",
            "counter",
            "Webhook requests by event and outcome (ok, refused = 4xx, error, timeout).",
        );
        for e in events {
            for o in Outcome::ALL {
                let _ = writeln!(
                    w.0,
                    "sockhub_webhook_requests_total{{event=\"{}\",outcome=\"{}\"}} {}",
                    e.as_str(),
                    o.as_str(),
                    ws.requests(e, o)
                );
            }
        }
        w.header(
            "sockhub_webhook_dropped_total",
            "counter",
            "Webhook events not delivered: no free slot (message) or retries exhausted (close).",
        );
        for e in events {
            let _ = writeln!(
                w.0,
                "sockhub_webhook_dropped_total{{event=\"{}\"}} {}",
                e.as_str(),
                ws.dropped_count(e)
            );
        }
        w.header(
            "sockhub_webhook_duration_seconds",
            "histogram",
            "Time from sending a webhook request to its answer (or timeout).",
        );
        let mut cumulative = 0;
        for (i, bound) in LATENCY_BUCKETS.iter().enumerate() {
            cumulative += ws.latency_buckets[i].load(Relaxed);
            let _ = writeln!(
                w.0,
                "sockhub_webhook_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
            );
        }
        cumulative += ws.latency_buckets[LATENCY_BUCKETS.len()].load(Relaxed);
        let _ = writeln!(
            w.0,
            "sockhub_webhook_duration_seconds_bucket{{le=\"+Inf\"}} {cumulative}"
        );
        let _ = writeln!(
            w.0,
            "sockhub_webhook_duration_seconds_sum {}",
            ws.latency_sum_us.load(Relaxed) as f64 / 1e6
        );
        let _ = writeln!(w.0, "sockhub_webhook_duration_seconds_count {cumulative}");
    }
    w.0
}
