//! Micro-benchmarks of the fan-out path: one publish to 1, 100 or 1,000 subscribers, each
//! iteration also playing every subscriber's driver once (take the outbox, mark it written),
//! so the queues stay at their steady state. Sessions have no socket (see
//! `sockhub::bench_support`); everything else is the server's own code.
//!
//! ```sh
//! cargo bench -p sockhub --bench fanout
//! ```
//!
//! The `alloc` rows divan prints under each benchmark are the **allocations and bytes per
//! publish** (the counting global allocator below); the message itself is built from static
//! bytes, so they count only what the hub does. See `codecs.rs` for why divan.
//!
//! Wire formats: `ws` = every subscriber a raw WebSocket; `mixed` = subscribers cycle through
//! six formats (WebSocket raw, WebSocket json, WebSocket permessage-deflate, TCP lines raw,
//! TCP length-prefixed json, UDP raw), so a publish encodes six times and shares each encoding.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use divan::counter::ItemsCount;
use divan::{black_box, AllocProfiler, Bencher};
use sockhub::bench_support::BenchSession;
use sockhub::config::Protocol;
use sockhub::protocol::{Framing, WireFormat};
use sockhub::{Hub, Limits, MemoryBroker, Message, Transport};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    divan::Divan::default()
        .max_time(Duration::from_millis(500))
        .config_with_args()
        .main();
}

const CHANNEL: &str = "bench";

/// 64 B of text, as the `broadcast` load scenario sends; static, so building the message
/// allocates nothing.
static PAYLOAD: &[u8; 64] = b"0000000000000000xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx";

/// A hub with `n` subscribers of `CHANNEL` and one extra session (the publisher of
/// `broadcast_from`, subscribed too).
struct Setup {
    hub: Hub,
    subscribers: Vec<BenchSession>,
    publisher: BenchSession,
    /// The driver's write queue, reused for every session as a driver reuses its own.
    write_queue: VecDeque<Bytes>,
}

fn format(framing: Framing, protocol: Protocol) -> (Transport, WireFormat) {
    let transport = match framing {
        Framing::WebSocket | Framing::WebSocketDeflate | Framing::WebSocketDeflateSmall => {
            Transport::WebSocket
        }
        Framing::Lines | Framing::LengthPrefixed => Transport::Tcp,
        Framing::Datagram => Transport::Udp,
    };
    (transport, WireFormat { framing, protocol })
}

fn setup(n: usize, mixed: bool) -> Setup {
    let limits = Limits {
        max_outbox_messages: 1 << 20,
        max_outbox_bytes: 1 << 30,
        ..Limits::default()
    };
    let hub = Hub::new(&limits, Arc::new(MemoryBroker));
    let formats = if mixed {
        vec![
            format(Framing::WebSocket, Protocol::Raw),
            format(Framing::WebSocket, Protocol::Json),
            format(Framing::WebSocketDeflate, Protocol::Raw),
            format(Framing::Lines, Protocol::Raw),
            format(Framing::LengthPrefixed, Protocol::Json),
            format(Framing::Datagram, Protocol::Raw),
        ]
    } else {
        vec![format(Framing::WebSocket, Protocol::Raw)]
    };
    let peer: SocketAddr = "127.0.0.1:9".parse().expect("an address");
    let subscribers: Vec<BenchSession> = (0..n)
        .map(|i| {
            let (t, f) = formats[i % formats.len()];
            let s = BenchSession::register(&hub, t, peer, f);
            s.subscribe(&hub, CHANNEL).expect("subscribes");
            s
        })
        .collect();
    let (t, f) = format(Framing::WebSocket, Protocol::Raw);
    let publisher = BenchSession::register(&hub, t, peer, f);
    publisher.subscribe(&hub, CHANNEL).expect("subscribes");
    let mut s = Setup {
        hub,
        subscribers,
        publisher,
        write_queue: VecDeque::with_capacity(16),
    };
    // Warm every outbox's queue to its steady-state capacity.
    s.publish_and_drain();
    s.broadcast_and_drain();
    s
}

impl Setup {
    fn drain_all(&mut self) -> usize {
        let mut frames = 0;
        for s in &self.subscribers {
            frames += s.drain(&mut self.write_queue);
        }
        frames + self.publisher.drain(&mut self.write_queue)
    }

    /// `Hub::publish` (the application's / HTTP API's publish), then every driver's take.
    fn publish_and_drain(&mut self) -> usize {
        let msg = Message::from_bytes(Bytes::from_static(PAYLOAD));
        let n = self.hub.publish(CHANNEL, black_box(msg));
        let taken = self.drain_all();
        debug_assert_eq!(n, taken);
        n
    }

    /// A session's message to the others (the built-in `Broadcast` handler's path), then
    /// every driver's take.
    fn broadcast_and_drain(&mut self) -> usize {
        let msg = Message::from_bytes(Bytes::from_static(PAYLOAD));
        let n = self.publisher.broadcast(&self.hub, black_box(msg));
        self.drain_all();
        n
    }
}

/// `Hub::publish` to N raw WebSocket subscribers.
#[divan::bench(args = [1, 100, 1000])]
fn publish_ws(bencher: Bencher, n: usize) {
    let mut s = setup(n, false);
    bencher
        .counter(ItemsCount::new(n))
        .bench_local(|| assert_eq!(s.publish_and_drain(), n + 1));
}

/// `Hub::publish` to N subscribers in six wire formats.
#[divan::bench(args = [1, 100, 1000])]
fn publish_mixed(bencher: Bencher, n: usize) {
    let mut s = setup(n, true);
    bencher
        .counter(ItemsCount::new(n))
        .bench_local(|| assert_eq!(s.publish_and_drain(), n + 1));
}

/// A subscriber's broadcast to the N others, raw WebSocket (the `broadcast` load scenario).
#[divan::bench(args = [1, 100, 1000])]
fn broadcast_ws(bencher: Bencher, n: usize) {
    let mut s = setup(n, false);
    bencher
        .counter(ItemsCount::new(n))
        .bench_local(|| assert_eq!(s.broadcast_and_drain(), n));
}

/// A subscriber's broadcast to the N others in six wire formats.
#[divan::bench(args = [1, 100, 1000])]
fn broadcast_mixed(bencher: Bencher, n: usize) {
    let mut s = setup(n, true);
    bencher
        .counter(ItemsCount::new(n))
        .bench_local(|| assert_eq!(s.broadcast_and_drain(), n));
}
