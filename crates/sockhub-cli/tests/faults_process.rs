//! Process-level faults against the real `sockhub` binary: running out of file descriptors
//! while accepting, and a graceful shutdown with thousands of connections open.
//!
//! The tests take a file-wide lock: each one loads the machine on its own.

mod common;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::{Sockhub, WAIT};
use futures_util::stream::{FuturesUnordered, StreamExt};
use sockhub::ws::codec::{encode_frame, Decoder, Event, OpCode, Role};
use sockhub_testkit::{upgrade_request, within, TcpClient, WsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One test at a time in this file.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The one relay between healthy clients after a fault must take less than this.
const HEALTHY_RELAY: Duration = Duration::from_millis(100);

// ---------------------------------------------------------------------------------------------
// A sockhub process under `prlimit`
// ---------------------------------------------------------------------------------------------

/// `sockhub serve` started through `prlimit --nofile=N:N`.
fn spawn_limited(nofile: u32, args: &[&str]) -> Sockhub {
    let limit = format!("--nofile={nofile}:{nofile}");
    Sockhub::spawn_wrapped(&["prlimit", &limit], args)
}

// ---------------------------------------------------------------------------------------------
// 8. EMFILE during accept
// ---------------------------------------------------------------------------------------------

/// The server's descriptor limit: about a dozen are in use at start, so ~50 connections fit.
const NOFILE: u32 = 64;
/// Connections opened to exhaust it (the kernel completes them all into the backlog).
const FLOOD: usize = 120;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn running_out_of_file_descriptors_while_accepting_is_survived() {
    let _serial = SERIAL.lock().await;
    let mut srv = spawn_limited(
        NOFILE,
        &[
            "serve",
            "--http",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            "off",
        ],
    );
    let ws_url = format!("ws://{}/ws", srv.http.expect("http"));
    // Two clients in `lobby` accepted before the flood; a line between them proves it.
    let mut b = WsClient::connect(&ws_url).await;
    let mut a = TcpClient::connect(srv.tcp.expect("tcp")).await;
    a.send_line("warm").await;
    assert_eq!(b.recv_text().await, "warm");

    // Exhaust the descriptors: every connect completes (backlog), the server accepts until
    // EMFILE, logs it and backs off.
    let mut flood = Vec::with_capacity(FLOOD);
    for _ in 0..FLOOD {
        flood.push(
            within("flood connect", TcpStream::connect(srv.tcp.expect("tcp")))
                .await
                .expect("the kernel completes the handshake"),
        );
    }
    let emfile_at = Instant::now();
    let line = tokio::task::block_in_place(|| srv.wait_for_line("accept failed"));
    assert!(
        line.contains("Too many open files") || line.contains("os error 24"),
        "{line}"
    );
    // Sessions already open keep working while accepts fail.
    a.send_line("during emfile").await;
    assert_eq!(b.recv_text().await, "during emfile");

    // Free them all; a new client of each kind is served within a bounded time.
    drop(flood);
    let freed_at = Instant::now();
    let mut c = WsClient::connect(&ws_url).await;
    let mut d = TcpClient::connect(srv.tcp.expect("tcp")).await;
    d.send_line("d joined").await;
    assert_eq!(c.recv_text().await, "d joined");
    let recovered = freed_at.elapsed();
    assert_eq!(b.recv_text().await, "d joined");
    // One timed healthy round trip.
    let t = Instant::now();
    d.send_line("prompt").await;
    assert_eq!(c.recv_text().await, "prompt");
    let relay = t.elapsed();
    assert!(relay < HEALTHY_RELAY, "healthy relay took {relay:?}");
    assert!(
        srv.child.try_wait().expect("try_wait").is_none(),
        "still running"
    );

    drop((a, b, c, d));
    let t = Instant::now();
    let status = tokio::task::block_in_place(|| srv.stop("TERM"));
    let exit = t.elapsed();
    assert!(status.success(), "exit status {status}");
    // It backed off (about one retry per second), it did not spin on the failing accept.
    let failures = srv
        .lines
        .iter()
        .filter(|l| l.contains("accept failed"))
        .count();
    let at_limit = emfile_at.elapsed().as_secs() + 2;
    assert!(
        failures as u64 <= at_limit,
        "{failures} accept failures logged in about {at_limit}s"
    );
    assert!(srv.lines.iter().any(|l| l.contains("shutdown complete")));
    eprintln!(
        "emfile: {failures} 'accept failed' lines, recovered {recovered:?} after the flood \
         closed, healthy relay {relay:?}, exit after SIGTERM {exit:?}"
    );
}

// ---------------------------------------------------------------------------------------------
// 9. Shutdown with 5,000 connections
// ---------------------------------------------------------------------------------------------

/// WebSocket connections open at SIGTERM (5,000 sockets here plus 5,000 in the server, under
/// the 20,000 descriptor limit of both).
const CLIENTS: usize = 5000;
/// Tasks driving them (100 connections each).
const GROUPS: usize = 50;
/// Handshakes in flight at once (keeps the listener's backlog from overflowing).
const HANDSHAKES_IN_FLIGHT: usize = 64;
/// Messages published just before SIGTERM.
const LAST_WORDS: usize = 5;
/// `--drain-timeout`.
const DRAIN: Duration = Duration::from_secs(5);

/// What one raw client saw after its handshake.
#[derive(Debug, Default)]
struct Seen {
    /// Text messages, in order, before the close frame.
    texts: Vec<String>,
    /// Any other frame before the close frame (none expected).
    other: Vec<String>,
    /// The close frame's code and reason.
    close: Option<(u16, String)>,
    /// How the stream ended: `None` for end-of-file, else the read error.
    error: Option<String>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// Connects, upgrades (raw request, raw 101), then reads frames with sockhub's own client-role
/// decoder until end-of-file, answering the server's close frame like a polite client.
async fn raw_client(
    addr: SocketAddr,
    gate: Arc<tokio::sync::Semaphore>,
    ready: Arc<AtomicUsize>,
    failed: Arc<AtomicUsize>,
) -> Result<Seen, String> {
    let handshake = async {
        let _permit = gate.acquire().await.map_err(|e| e.to_string())?;
        let mut s = TcpStream::connect(addr)
            .await
            .map_err(|e| format!("connect: {e}"))?;
        s.write_all(upgrade_request("/ws").as_bytes())
            .await
            .map_err(|e| format!("write upgrade: {e}"))?;
        let mut head = Vec::new();
        let mut chunk = [0u8; 1024];
        loop {
            let n = s
                .read(&mut chunk)
                .await
                .map_err(|e| format!("read 101: {e}"))?;
            if n == 0 {
                return Err("end-of-file during the handshake".to_string());
            }
            head.extend_from_slice(&chunk[..n]);
            if let Some(end) = find(&head, b"\r\n\r\n") {
                if !head.starts_with(b"HTTP/1.1 101 ") {
                    return Err(format!("answer: {}", String::from_utf8_lossy(&head)));
                }
                return Ok((s, head.split_off(end + 4)));
            }
            if head.len() > 4096 {
                return Err("response head too long".to_string());
            }
        }
    };
    let (mut s, mut pending) = match handshake.await {
        Ok(v) => v,
        Err(e) => {
            failed.fetch_add(1, Ordering::Relaxed);
            return Err(e);
        }
    };
    ready.fetch_add(1, Ordering::Relaxed);
    let mut decoder = Decoder::new(Role::Client, 1 << 20);
    let mut seen = Seen::default();
    let mut chunk = vec![0u8; 4096];
    loop {
        let mut rest = &pending[..];
        while !rest.is_empty() {
            let (used, event) = decoder
                .decode(rest)
                .map_err(|e| format!("bad server frame: {e}"))?;
            rest = &rest[used..];
            match event {
                None => {}
                Some(Event::Text(t)) => seen
                    .texts
                    .push(String::from_utf8(t.to_vec()).map_err(|e| e.to_string())?),
                Some(Event::Close(c)) => {
                    let (code, reason) = c.map_or((1005, String::new()), |c| (c.code, c.reason));
                    let mut reply = BytesMut::new();
                    encode_frame(
                        OpCode::Close,
                        &code.to_be_bytes(),
                        Some([1, 2, 3, 4]),
                        &mut reply,
                    );
                    let _ = s.write_all(&reply).await;
                    seen.close = Some((code, reason));
                }
                Some(other) => seen.other.push(format!("{other:?}")),
            }
        }
        match s.read(&mut chunk).await {
            Ok(0) => return Ok(seen),
            Ok(n) => pending = chunk[..n].to_vec(),
            Err(e) => {
                seen.error = Some(e.to_string());
                return Ok(seen);
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_with_5000_websocket_connections_delivers_then_closes_1001_and_exits_0() {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let drain = format!("{}s", DRAIN.as_secs());
    let srv = Sockhub::serve(&["--max-connections", "20000", "--drain-timeout", &drain]);
    let http = srv.http.expect("http");

    let gate = Arc::new(tokio::sync::Semaphore::new(HANDSHAKES_IN_FLIGHT));
    let ready = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let mut groups = Vec::with_capacity(GROUPS);
    for _ in 0..GROUPS {
        let (gate, ready, failed) = (gate.clone(), ready.clone(), failed.clone());
        groups.push(tokio::spawn(async move {
            let mut clients: FuturesUnordered<_> = (0..CLIENTS / GROUPS)
                .map(|_| raw_client(http, gate.clone(), ready.clone(), failed.clone()))
                .collect();
            let mut seen = Vec::with_capacity(CLIENTS / GROUPS);
            while let Some(r) = clients.next().await {
                seen.push(r);
            }
            seen
        }));
    }
    // Every upgrade answered (101 is sent after the session is registered).
    let deadline = Instant::now() + WAIT;
    while ready.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed) < CLIENTS {
        assert!(
            Instant::now() < deadline,
            "only {} of {CLIENTS} upgrades done ({} failed) within {WAIT:?}",
            ready.load(Ordering::Relaxed),
            failed.load(Ordering::Relaxed)
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0, "every upgrade succeeded");
    let connected_in = started.elapsed();

    // A json client outside `lobby` publishes to it; its pong comes after the publishes were
    // fanned out, so they were all accepted before SIGTERM.
    let mut publisher = WsClient::connect(&srv.ws_url("/ws?protocol=json&channel=control")).await;
    assert!(publisher
        .recv_text()
        .await
        .starts_with(r#"{"type":"connected""#));
    let expected: Vec<String> = (0..LAST_WORDS)
        .map(|i| format!("before SIGTERM {i}"))
        .collect();
    for text in &expected {
        publisher
            .send_text(&format!(
                r#"{{"type":"publish","channel":"lobby","data":"{text}"}}"#
            ))
            .await;
    }
    publisher.send_text(r#"{"type":"ping","id":"sync"}"#).await;
    assert_eq!(
        publisher.recv_text().await,
        r#"{"type":"pong","id":"sync"}"#
    );
    // The publisher answers its own close frame too (so the server need not wait for it).
    let publisher = tokio::spawn(async move { publisher.closed().await });

    // SIGTERM; the clients keep reading on this runtime while a blocking thread waits.
    let mut srv = srv;
    let (srv, status, exit_after) = tokio::task::spawn_blocking(move || {
        let t = Instant::now();
        let status = srv.stop("TERM");
        (srv, status, t.elapsed())
    })
    .await
    .expect("stop");
    assert!(status.success(), "exit status {status}");
    assert!(
        exit_after <= DRAIN + Duration::from_secs(5),
        "exited {exit_after:?} after SIGTERM"
    );
    assert!(srv.lines.iter().any(|l| l.contains("shutdown complete")));
    let (publisher_msgs, publisher_closed) = within("publisher close", publisher)
        .await
        .expect("publisher task");
    assert!(publisher_msgs.is_empty(), "{publisher_msgs:?}");
    assert_eq!(
        (publisher_closed.code, publisher_closed.reason.as_str()),
        (1001, "server shutting down")
    );

    let mut outcomes = Vec::with_capacity(CLIENTS);
    for g in groups {
        outcomes.extend(
            within("clients to see the end", g)
                .await
                .expect("group task"),
        );
    }
    assert_eq!(outcomes.len(), CLIENTS);
    let goodbye = (1001, "server shutting down".to_string());
    for (i, o) in outcomes.into_iter().enumerate() {
        let seen = o.unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(
            seen.texts, expected,
            "client {i}: every message accepted before SIGTERM"
        );
        assert!(seen.other.is_empty(), "client {i}: {:?}", seen.other);
        assert_eq!(
            seen.close.as_ref(),
            Some(&goodbye),
            "client {i}: close frame before end-of-file"
        );
        assert_eq!(
            seen.error, None,
            "client {i}: the stream ended with a FIN, not an error"
        );
    }
    eprintln!(
        "shutdown: {CLIENTS} connections up in {connected_in:?}; exit 0 {exit_after:?} after \
         SIGTERM; whole test {:?}",
        started.elapsed()
    );
}
