//! Fault injection: hostile or broken peers on every transport. Each test asserts the exact
//! outcome the server gives *and* that a healthy client on the same server still gets a message
//! relayed promptly afterwards (one round trip, measured, under [`HEALTHY_RELAY`]).
//!
//! The tests take a file-wide lock so that the load tests (slowloris, slow consumer) never run
//! next to a latency assertion of another test on this 2-core budget.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::{SinkExt, StreamExt};
use sockhub::{Limits, Protocol, UdpOptions};
use sockhub_testkit::{eventually, within, Setup, TcpClient, TestServer, UdpClient, WsClient};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message as WsMessage;
use tokio_tungstenite::MaybeTlsStream;

/// The one relay between two fresh clients after a fault must take less than this.
const HEALTHY_RELAY: Duration = Duration::from_millis(100);

/// One test at a time in this file (see the module doc).
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Masking key of every raw client frame written here.
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

fn setup(limits: Limits) -> Setup {
    Setup::with_limits(limits)
}

async fn start(limits: Limits) -> TestServer {
    TestServer::start_limits(limits).await
}

/// Proves the server still relays between two fresh clients, and promptly: the one round trip
/// (send → relay → receive) is timed and must stay under [`HEALTHY_RELAY`]. Returns its time.
async fn still_serving(srv: &TestServer) -> Duration {
    let took = srv.relay_check().await;
    assert!(
        took < HEALTHY_RELAY,
        "a healthy relay took {took:?} (limit {HEALTHY_RELAY:?})"
    );
    took
}

/// One masked client frame; `b0` is the first header byte (FIN, RSV bits, opcode).
fn client_frame(b0: u8, payload: &[u8]) -> Vec<u8> {
    let mut v = vec![b0];
    let len = payload.len();
    if len < 126 {
        v.push(0x80 | len as u8);
    } else if let Ok(len16) = u16::try_from(len) {
        v.push(0x80 | 126);
        v.extend_from_slice(&len16.to_be_bytes());
    } else {
        v.push(0x80 | 127);
        v.extend_from_slice(&(len as u64).to_be_bytes());
    }
    v.extend_from_slice(&MASK);
    v.extend(payload.iter().enumerate().map(|(i, b)| b ^ MASK[i % 4]));
    v
}

/// A close frame payload: code then reason bytes.
fn close_payload(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    p
}

/// The socket under a [`WsClient`], for writing bytes tungstenite would never write.
fn raw_socket(c: &mut WsClient) -> &mut TcpStream {
    match c.inner().get_mut() {
        MaybeTlsStream::Plain(s) => s,
        _ => unreachable!("plain ws:// connection"),
    }
}

async fn write_raw(c: &mut WsClient, bytes: &[u8]) {
    raw_socket(c).write_all(bytes).await.expect("raw write");
}

/// Reads the raw socket under `c` until end-of-file and parses the (unmasked, unfragmented)
/// server frames: the opcodes of the frames before the close, and the close code and reason.
/// Used where tungstenite's own opinion of a close code must not get in the way.
async fn raw_frames_until_eof(c: &mut WsClient) -> (Vec<u8>, Option<(u16, String)>) {
    let s = raw_socket(c);
    let mut bytes = Vec::new();
    within("server to close", s.read_to_end(&mut bytes))
        .await
        .expect("read until end-of-file");
    let (mut opcodes, mut rest) = (Vec::new(), &bytes[..]);
    while rest.len() >= 2 {
        assert_eq!(rest[1] & 0x80, 0, "server frames are unmasked");
        let (len, head) = match rest[1] & 0x7f {
            126 => (usize::from(u16::from_be_bytes([rest[2], rest[3]])), 4),
            127 => panic!("no 64-bit frame expected"),
            n => (usize::from(n), 2),
        };
        let (opcode, payload) = (rest[0] & 0x0f, &rest[head..head + len]);
        rest = &rest[head + len..];
        if opcode == 0x8 {
            assert!(rest.is_empty(), "nothing after the close frame");
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let reason = String::from_utf8(payload[2..].to_vec()).expect("UTF-8 reason");
            return (opcodes, Some((code, reason)));
        }
        opcodes.push(opcode);
    }
    assert!(rest.is_empty(), "a truncated frame: {rest:02x?}");
    (opcodes, None)
}

/// Closes `s` with a TCP reset instead of a FIN.
fn reset(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
}

/// Proves `witness` (subscribed to `channel`) received nothing so far: a marker sent now by a
/// fresh client must be the next message it gets.
async fn nothing_relayed_to(srv: &TestServer, witness: &mut WsClient, channel: &str) {
    let mut marker = WsClient::connect(&srv.ws_url(&format!("/ws?channel={channel}"))).await;
    marker.send_text("marker").await;
    assert_eq!(
        witness.recv_text().await,
        "marker",
        "nothing from the faulty client was relayed"
    );
}

/// p-th percentile (0 < p ≤ 100) of unsorted samples.
fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    samples.sort_unstable();
    let rank = ((p / 100.0) * samples.len() as f64).ceil() as usize;
    samples[rank.clamp(1, samples.len()) - 1]
}

// ---------------------------------------------------------------------------------------------
// 1. Slowloris
// ---------------------------------------------------------------------------------------------

/// Sockets that start a request head and never finish it.
const SLOWLORIS: usize = 1000;
/// Healthy WebSocket clients in one channel while they hang.
const HEALTHY: usize = 100;
/// The handshake deadline under attack.
const HANDSHAKE: Duration = Duration::from_secs(1);
/// How late after the deadline a slowloris socket may still be open (scheduling, 1,000 timers
/// firing together on 2 cores with the clients in the same process).
const SLOWLORIS_SLACK: Duration = Duration::from_secs(2);
/// Most rounds of healthy traffic (one message from one client to the 99 others per round).
const MAX_ROUNDS: usize = 5000;

/// What one slowloris socket saw.
struct Hung {
    /// Before its connect.
    started: Instant,
    /// After its partial head was written.
    written: Instant,
    /// When its read returned end-of-file or an error.
    ended: Instant,
    /// Everything the server sent it.
    answer: Vec<u8>,
    /// The read ended with an error (reset) rather than end-of-file.
    reset: bool,
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_sockets_are_closed_at_the_handshake_deadline_while_healthy_clients_chat() {
    let _serial = SERIAL.lock().await;
    let test_started = Instant::now();
    let srv = start(Limits {
        handshake_timeout: HANDSHAKE,
        ..Limits::default()
    })
    .await;

    // 100 healthy clients in channel `busy`; each reader reports (round, relay latency).
    let t0 = Instant::now();
    let (sample_tx, mut samples_rx) = tokio::sync::mpsc::unbounded_channel::<(usize, Duration)>();
    let mut senders = Vec::with_capacity(HEALTHY);
    for _ in 0..HEALTHY {
        let (ws, _) = within(
            "healthy connect",
            tokio_tungstenite::connect_async(srv.ws_url("/ws?channel=busy")),
        )
        .await
        .expect("healthy connect");
        let (sink, mut stream) = ws.split();
        senders.push(sink);
        let tx = sample_tx.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let WsMessage::Text(t) = m {
                    let received = t0.elapsed();
                    let (round, sent_us) = t.as_str().split_once(':').expect("round:micros");
                    let sent = Duration::from_micros(sent_us.parse().expect("micros"));
                    if tx
                        .send((round.parse().expect("round"), received - sent))
                        .is_err()
                    {
                        return;
                    }
                }
            }
        });
    }
    drop(sample_tx);
    let hub = srv.hub.clone();
    eventually("healthy clients subscribed", || {
        hub.subscribers("busy") == HEALTHY
    })
    .await;

    // 1,000 sockets send a few bytes of a request head, then nothing; each waits for the server
    // to close it (bounded well past the deadline so a late close is measured, not hung on).
    let http = srv.http;
    let gate = Arc::new(tokio::sync::Semaphore::new(200));
    let connected = Arc::new(AtomicUsize::new(0));
    let mut hung = tokio::task::JoinSet::new();
    for _ in 0..SLOWLORIS {
        let gate = gate.clone();
        let connected = connected.clone();
        hung.spawn(async move {
            let permit = gate.acquire_owned().await.expect("gate");
            let started = Instant::now();
            let mut s = TcpStream::connect(http).await.expect("slowloris connect");
            s.write_all(b"GET /ws HTTP/1.1\r\nHo")
                .await
                .expect("partial head");
            let written = Instant::now();
            connected.fetch_add(1, Ordering::Relaxed);
            drop(permit);
            let mut answer = Vec::new();
            let read = tokio::time::timeout(
                HANDSHAKE + SLOWLORIS_SLACK + Duration::from_secs(10),
                s.read_to_end(&mut answer),
            )
            .await
            .expect("the server never closed a slowloris socket");
            Hung {
                started,
                written,
                ended: Instant::now(),
                answer,
                reset: read.is_err(),
            }
        });
    }
    let attack = tokio::spawn(async move {
        let mut all = Vec::with_capacity(SLOWLORIS);
        while let Some(r) = hung.join_next().await {
            all.push(r.expect("slowloris task"));
        }
        all
    });

    // Healthy traffic for as long as the attack lasts: one message per round from a rotating
    // sender, paced every 5 ms, each round complete (99 receipts) before the next.
    let mut latencies = Vec::new();
    let mut pace = tokio::time::interval(Duration::from_millis(5));
    let mut rounds = 0;
    while !attack.is_finished() && rounds < MAX_ROUNDS {
        pace.tick().await;
        let sent_us = t0.elapsed().as_micros();
        senders[rounds % HEALTHY]
            .send(WsMessage::text(format!("{rounds}:{sent_us}")))
            .await
            .expect("healthy send");
        for _ in 0..HEALTHY - 1 {
            let (round, latency) = within("a healthy relay", samples_rx.recv())
                .await
                .expect("healthy readers alive");
            assert_eq!(round, rounds, "relays arrive round by round");
            latencies.push(latency);
        }
        rounds += 1;
    }
    let all = within("every slowloris socket to end", attack)
        .await
        .expect("attack task");
    assert_eq!(
        connected.load(Ordering::Relaxed),
        SLOWLORIS,
        "all 1,000 connected"
    );

    // Every slowloris socket was closed by the server (end-of-file, nothing but an optional
    // 408 sent), not before the deadline counted from its connect, and at most SLOWLORIS_SLACK
    // after the deadline counted from its last byte.
    let mut latest = Duration::ZERO;
    let mut earliest = Duration::MAX;
    let mut answered_408 = 0;
    for h in &all {
        assert!(!h.reset, "closed with a FIN, not a reset");
        let text = String::from_utf8_lossy(&h.answer);
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "unexpected answer to a slowloris socket: {text:?}"
        );
        answered_408 += usize::from(!text.is_empty());
        let after_write = h.ended.duration_since(h.written);
        let after_start = h.ended.duration_since(h.started);
        latest = latest.max(after_write);
        earliest = earliest.min(after_start);
        assert!(
            after_start >= HANDSHAKE.mul_f64(0.95),
            "closed {after_start:?} after connect, before the {HANDSHAKE:?} deadline"
        );
        assert!(
            after_write <= HANDSHAKE + SLOWLORIS_SLACK,
            "closed {after_write:?} after its last byte: later than the deadline + slack"
        );
    }
    assert_eq!(
        hub.session_count(),
        HEALTHY,
        "no slowloris socket became a session"
    );

    let n = latencies.len();
    assert!(
        n >= 500,
        "only {n} relay samples; the attack ended too fast to measure"
    );
    let p50 = percentile(&mut latencies, 50.0);
    let p99 = percentile(&mut latencies, 99.0);
    let max = percentile(&mut latencies, 100.0);
    eprintln!(
        "slowloris: {SLOWLORIS} sockets closed {earliest:?}..{latest:?} (from connect / from last \
         byte), {answered_408} answered 408; healthy relays: {n} samples over {rounds} rounds, \
         p50 {p50:?}, p99 {p99:?}, max {max:?}"
    );
    assert!(
        p99 < Duration::from_millis(50),
        "healthy relay p99 {p99:?} under slowloris"
    );
    let healthy = still_serving(&srv).await;
    eprintln!(
        "slowloris: healthy relay after the attack {healthy:?}; test took {:?}",
        test_started.elapsed()
    );
    assert!(test_started.elapsed() < Duration::from_secs(60));
    drop(senders);
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 2. RST mid-message
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_reset_in_the_middle_of_a_message_unregisters_tcp_and_websocket_sessions() {
    let _serial = SERIAL.lock().await;
    let srv = start(Limits::default()).await;
    let mut witness = WsClient::connect(&srv.ws_url("/ws")).await; // lobby
    srv.wait_sessions(1).await;
    let baseline = srv.hub.session_count();

    // TCP: a complete line (the witness receiving it proves the server read this segment), then
    // half a line in the same write, then a reset.
    let mut tcp = TcpStream::connect(srv.tcp[0]).await.unwrap();
    srv.wait_sessions(baseline + 1).await;
    tcp.write_all(b"whole line\nhalf a li").await.unwrap();
    assert_eq!(witness.recv_text().await, "whole line");

    // WebSocket: a complete message, then a frame announcing 100 bytes with only 10 sent.
    let mut ws = WsClient::connect(&srv.ws_url("/ws")).await;
    srv.wait_sessions(baseline + 2).await;
    let mut raw = client_frame(0x81, b"whole frame");
    let partial = client_frame(0x81, &[b'h'; 100]);
    raw.extend_from_slice(&partial[..2 + 4 + 10]);
    write_raw(&mut ws, &raw).await;
    assert_eq!(witness.recv_text().await, "whole frame");

    reset(&tcp);
    drop(tcp);
    reset(raw_socket(&mut ws));
    drop(ws);
    let hub = srv.hub.clone();
    eventually("both reset sessions unregistered", || {
        hub.session_count() == baseline
    })
    .await;
    let stats = hub.stats().snapshot();
    assert_eq!((stats.tcp_connections, stats.ws_connections), (0, 1));
    nothing_relayed_to(&srv, &mut witness, "lobby").await;
    still_serving(&srv).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 3. A raw TCP peer that never reads
// ---------------------------------------------------------------------------------------------

const FEED_MESSAGE: usize = 16 * 1024;
const FEED_MAX_MESSAGES: usize = 4000;
const FEED_OUTBOX: usize = 128 * 1024;

fn feed_payload(i: usize) -> String {
    let head = format!("{i:08}:");
    head.clone() + &"p".repeat(FEED_MESSAGE - head.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tcp_peer_that_never_reads_is_a_slow_consumer_while_a_fast_one_gets_everything() {
    let _serial = SERIAL.lock().await;
    let srv = start(Limits {
        max_outbox_bytes: FEED_OUTBOX,
        max_message_size: FEED_MESSAGE + 16,
        ..Limits::default()
    })
    .await;
    let hub = srv.hub.clone();
    // Both on the TCP lines listener, channel `lobby`.
    let mut fast = TcpClient::connect(srv.tcp[0]).await;
    eventually("fast subscribed", || hub.subscribers("lobby") == 1).await;
    let slow = TcpStream::connect(srv.tcp[0]).await.unwrap();
    eventually("both subscribed", || hub.subscribers("lobby") == 2).await;

    let (tx, mut received) = tokio::sync::watch::channel(0usize);
    tokio::spawn(async move {
        let mut next = 0usize;
        // Until the shutdown line (or end-of-file) at the end of the test.
        while let Some(line) = fast.try_read_line().await {
            if line.starts_with("ERROR") {
                if line != "ERROR 1001 server shutting down" {
                    eprintln!("fast reader cut off after {next} messages: {line}");
                }
                return;
            }
            let i: usize = line[..8].parse().expect("numbered line");
            assert_eq!(i, next, "the fast reader receives every message in order");
            assert_eq!(line.len(), FEED_MESSAGE, "whole line");
            next += 1;
            if tx.send(next).is_err() {
                return;
            }
        }
        eprintln!("fast reader: end-of-file after {next} messages");
    });

    let mut sent = 0;
    let mut disconnected_at = None;
    while sent < FEED_MAX_MESSAGES {
        hub.publish("lobby", feed_payload(sent));
        sent += 1;
        // Paced to the fast reader: it must never be the one that overflows. The server counts
        // a frame as sent only after its write call returns, which can be after the reader
        // already has it, so up to two batches may still count: 2 x 2 x 16 KiB < 128 KiB.
        if sent % 2 == 0 {
            within("fast reader to keep up", received.wait_for(|n| *n == sent))
                .await
                .unwrap();
        }
        if disconnected_at.is_none() && hub.stats().snapshot().slow_consumer_disconnects == 1 {
            disconnected_at = Some(sent);
        }
        if disconnected_at.is_some_and(|at| sent >= at + 100) {
            break;
        }
    }
    let at = disconnected_at.expect("the peer that never reads was disconnected");
    eventually("slow session gone", || hub.subscribers("lobby") == 1).await;
    within(
        "every message to the fast reader",
        received.wait_for(|n| *n == sent),
    )
    .await
    .unwrap();
    let stats = hub.stats().snapshot();
    assert_eq!(stats.slow_consumer_disconnects, 1);
    assert_eq!(stats.tcp_connections, 1, "only the fast reader is left");

    // When the slow peer finally reads: a gap-free prefix of the feed, at most the slow-consumer
    // error line (if the kernel buffers had room for it), then end-of-file.
    let mut lines = BufReader::new(slow);
    let (mut numbered, mut error_line) = (0usize, None);
    within("the slow peer to reach end-of-file", async {
        let mut line = String::new();
        loop {
            line.clear();
            match lines.read_line(&mut line).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            assert!(error_line.is_none(), "nothing after the error line");
            let l = line.trim_end();
            if l.starts_with("ERROR") {
                error_line = Some(l.to_string());
            } else {
                assert_eq!(l[..8].parse::<usize>().ok(), Some(numbered), "in order");
                numbered += 1;
            }
        }
    })
    .await;
    if let Some(e) = &error_line {
        assert_eq!(
            e,
            &format!("ERROR 4100 slow consumer: more than {FEED_OUTBOX} bytes waiting to be sent")
        );
    }
    eprintln!(
        "slow tcp peer: disconnected after {at} of {sent} messages; it had {numbered} in its \
         buffers; error line: {error_line:?}"
    );
    assert!(
        numbered <= at,
        "it got no more than was published before the disconnect"
    );
    still_serving(&srv).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 4. Data after close
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_text_frame_after_the_close_frame_is_never_relayed() {
    let _serial = SERIAL.lock().await;
    let srv = start(Limits::default()).await;
    let mut witness = WsClient::connect(&srv.ws_url("/ws")).await;
    let mut c = WsClient::connect(&srv.ws_url("/ws")).await;
    srv.wait_sessions(2).await;
    let mut raw = client_frame(0x88, &close_payload(1000, b"bye"));
    raw.extend(client_frame(0x81, b"after close"));
    write_raw(&mut c, &raw).await;
    let (msgs, closed) = c.closed().await;
    assert!(msgs.is_empty(), "{msgs:?}");
    assert_eq!((closed.code, closed.reason.as_str()), (1000, ""));
    srv.wait_sessions(1).await;
    nothing_relayed_to(&srv, &mut witness, "lobby").await;
    still_serving(&srv).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 5. Bad close codes and reasons
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn bad_close_codes_get_1002_and_bad_close_reasons_1007() {
    let _serial = SERIAL.lock().await;
    let srv = start(Limits::default()).await;
    let mut witness = WsClient::connect(&srv.ws_url("/ws")).await;
    // (close payload, expected close code, expected reason)
    let mut cases: Vec<(Vec<u8>, u16, String)> = Vec::new();
    for code in [
        0u16,
        999,
        1004,
        1005,
        1006,
        1015,
        1016,
        2000,
        2999,
        5000,
        u16::MAX,
    ] {
        cases.push((
            close_payload(code, b""),
            1002,
            format!("protocol error: invalid close code {code}"),
        ));
    }
    cases.push((
        vec![0x03],
        1002,
        "protocol error: close frame payload of one byte".into(),
    ));
    let bad_utf8 = "invalid payload: invalid UTF-8 in text message or close reason".to_string();
    cases.push((close_payload(1000, &[0xff, 0xfe]), 1007, bad_utf8.clone()));
    cases.push((close_payload(1000, b"caf\xc3"), 1007, bad_utf8.clone())); // truncated é
    cases.push((close_payload(1000, b"\xed\xa0\x80"), 1007, bad_utf8)); // a surrogate
                                                                        // Valid codes are echoed back (empty reason) as the closing handshake.
    for code in [1000u16, 1003, 1007, 1014, 3000, 4999] {
        cases.push((close_payload(code, "ok ✓".as_bytes()), code, String::new()));
    }
    for (payload, code, reason) in cases {
        let mut c = WsClient::connect(&srv.ws_url("/ws")).await;
        write_raw(&mut c, &client_frame(0x88, &payload)).await;
        // Read raw: tungstenite itself refuses some codes the server may echo (1012-1014).
        let (frames, close) = raw_frames_until_eof(&mut c).await;
        assert!(frames.is_empty(), "only a close frame: {frames:?}");
        assert_eq!(close, Some((code, reason)), "close payload {payload:02x?}");
    }
    srv.wait_sessions(1).await;
    nothing_relayed_to(&srv, &mut witness, "lobby").await;
    still_serving(&srv).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 6. Invalid UTF-8 split across fragments
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn invalid_utf8_split_across_fragments_closes_1007_before_the_final_fragment() {
    let _serial = SERIAL.lock().await;
    let srv = start(Limits::default()).await;
    let mut witness = WsClient::connect(&srv.ws_url("/ws")).await;

    // Control: "€" (E2 82 AC) split across fragments is fine and arrives whole.
    let mut ok = WsClient::connect(&srv.ws_url("/ws")).await;
    let mut raw = client_frame(0x01, b"ab\xe2");
    raw.extend(client_frame(0x80, b"\x82\xaccd"));
    write_raw(&mut ok, &raw).await;
    assert_eq!(witness.recv_text().await, "ab€cd");

    let mut c = WsClient::connect(&srv.ws_url("/ws")).await;
    // Fragment 1 ends with the first byte of a 3-byte sequence: not an error yet. A ping after
    // it (control frames may interleave) proves the server took it and is still open.
    write_raw(&mut c, &client_frame(0x01, b"ab\xe2")).await;
    write_raw(&mut c, &client_frame(0x89, b"sync")).await;
    let pong = within("pong between fragments", async {
        loop {
            match c.inner().next().await {
                Some(Ok(WsMessage::Pong(p))) => return p,
                Some(Ok(WsMessage::Ping(_))) => {}
                other => panic!("expected the pong, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(&pong[..], b"sync");
    // Fragment 2 (not final) starts with 0x28, which cannot continue E2: close 1007 now, with
    // no final fragment ever sent.
    write_raw(&mut c, &client_frame(0x00, b"\x28cd")).await;
    let (msgs, closed) = c.closed().await;
    assert!(msgs.is_empty());
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (
            1007,
            "invalid payload: invalid UTF-8 in text message or close reason"
        )
    );
    srv.wait_sessions(2).await;
    nothing_relayed_to(&srv, &mut witness, "lobby").await;
    still_serving(&srv).await;
    srv.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// 7. UDP garbage
// ---------------------------------------------------------------------------------------------

/// Deterministic noise (xorshift64*), so a failure reproduces.
struct Noise(u64);

impl Noise {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// `len` random bytes that are never valid UTF-8 (one byte is forced to 0xff).
    fn garbage(&mut self, len: usize) -> Vec<u8> {
        let mut v: Vec<u8> = (0..len).map(|_| self.next() as u8).collect();
        let at = (self.next() % len as u64) as usize;
        v[at] = 0xff;
        v
    }
}

#[tokio::test]
async fn udp_noise_is_relayed_as_binary_messages_and_crashes_nothing() {
    let _serial = SERIAL.lock().await;
    let srv = start(Limits::default()).await;
    let mut witness = WsClient::connect(&srv.ws_url("/ws")).await;
    let udp = UdpClient::connect(srv.udp).await;
    let mut noise = Noise(0x5eed_cafe_f00d_d00d);
    for i in 0..200 {
        let len = 1 + (noise.next() % 1400) as usize;
        let d = noise.garbage(len);
        udp.send(&d).await;
        assert_eq!(
            witness.recv().await,
            WsMessage::binary(d),
            "datagram {i} arrives as the same binary message"
        );
    }
    // An empty datagram is an empty (text) message.
    udp.send(b"").await;
    assert_eq!(witness.recv().await, WsMessage::text(""));
    assert_eq!(srv.hub.stats().snapshot().udp_sessions, 1);
    still_serving(&srv).await;
    srv.shutdown().await;
}

fn json_udp_setup() -> Setup {
    Setup {
        udp: UdpOptions {
            protocol: Protocol::Json,
            ..UdpOptions::default()
        },
        ..setup(Limits::default())
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("not json ({e}): {bytes:02x?}"))
}

#[tokio::test]
async fn json_udp_garbage_gets_a_bad_request_error_event_within_3x_its_size() {
    let _serial = SERIAL.lock().await;
    let srv = TestServer::start_with(json_udp_setup(), sockhub::Broadcast).await;
    let udp = UdpClient::connect(srv.udp).await;
    let mut noise = Noise(0xdead_beef_0bad_f00d);
    // Large enough that the error event is within 3x of it. (UDP sessions get no `connected`
    // greeting: it would answer a spoofed source with more than it sent.)
    let d = noise.garbage(100);
    udp.send(&d).await;
    let error = udp.recv().await;
    let ev = json(&error);
    assert_eq!(ev["type"], "error");
    assert_eq!(ev["code"], "bad_request");
    assert!(
        ev["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("invalid command: ")),
        "{ev}"
    );
    assert!(
        error.len() <= 3 * d.len(),
        "{} bytes answered {} bytes",
        error.len(),
        d.len()
    );
    // The peer is still served: a valid command after the garbage works.
    udp.send(br#"{"type":"ping","id":"after garbage"}"#).await;
    assert_eq!(udp.recv().await, br#"{"type":"pong","id":"after garbage"}"#);
    assert_eq!(srv.hub.stats().snapshot().udp_sessions, 1);
    still_serving(&srv).await;
    srv.shutdown().await;
}

/// The datagrams (and their total size) received before the one equal to `until`: what the
/// datagrams sent before the command that produces `until` were answered with.
async fn bytes_answered_before(udp: &UdpClient, until: &[u8]) -> (usize, Vec<Vec<u8>>) {
    let mut got = Vec::new();
    for _ in 0..10 {
        let d = udp.recv().await;
        if d == until {
            let total = got.iter().map(Vec::len).sum();
            return (total, got);
        }
        got.push(d);
    }
    panic!("no {until:?} among {got:?}");
}

#[tokio::test]
async fn json_udp_never_answers_an_unvalidated_source_with_more_than_3x() {
    let _serial = SERIAL.lock().await;
    let srv = TestServer::start_with(json_udp_setup(), sockhub::Broadcast).await;
    // A fresh source sends one byte of garbage; a ping afterwards marks the end of what the
    // garbage caused (its pong is within 3x of the ping, so it is not counted).
    let udp = UdpClient::connect(srv.udp).await;
    udp.send(&[0xff]).await;
    let ping = br#"{"type":"ping","id":1}"#;
    udp.send(ping).await;
    let (answered, datagrams) = bytes_answered_before(&udp, br#"{"type":"pong","id":1}"#).await;
    let shown: Vec<_> = datagrams
        .iter()
        .map(|d| String::from_utf8_lossy(d).into_owned())
        .collect();
    assert!(
        answered <= 3,
        "1 byte from an unknown source was answered with {answered} bytes: {shown:?}"
    );
    // Once known, the peer's garbage is still answered in proportion.
    udp.send(&[0xfe]).await;
    udp.send(ping).await;
    let (answered, datagrams) = bytes_answered_before(&udp, br#"{"type":"pong","id":1}"#).await;
    assert!(
        answered <= 3,
        "1 byte from a known peer was answered with {answered} bytes: {datagrams:?}"
    );
    still_serving(&srv).await;
    srv.shutdown().await;
}
