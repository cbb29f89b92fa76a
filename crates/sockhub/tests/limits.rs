//! Every limit answers with its exact close code, status or error line, and the server keeps
//! serving others afterwards.

use std::time::Duration;

use sockhub::{Limits, TcpFraming, TcpOptions};
use sockhub_testkit::{
    eventually, http_request, upgrade_request, within, Setup, TcpClient, TestServer, UdpClient,
    WsClient,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message as WsMessage;

fn setup(limits: Limits) -> Setup {
    Setup::with_limits(limits)
}

async fn start(limits: Limits) -> TestServer {
    TestServer::start_limits(limits).await
}

/// Proves the server still relays between two fresh clients.
async fn still_serving(srv: &TestServer) {
    srv.relay_check().await;
}

#[tokio::test]
async fn max_connections_refuses_websocket_with_503_and_tcp_with_an_error_line() {
    let srv = start(Limits {
        max_connections: 2,
        ..Limits::default()
    })
    .await;
    let a = WsClient::connect(&srv.ws_url("/")).await;
    let mut b = TcpClient::connect(srv.tcp[0]).await;
    srv.wait_sessions(2).await;
    let (status, body) = http_request(srv.http, &upgrade_request("/ws")).await;
    assert_eq!(status, 503);
    assert_eq!(body, "server full: all 2 connections in use, retry later\n");
    let mut c = TcpClient::connect(srv.tcp[0]).await;
    assert_eq!(
        c.read_line().await,
        "ERROR 1013 server full: all 2 connections in use, retry later"
    );
    assert_eq!(c.try_read_line().await, None, "then the server closes");
    let udp = UdpClient::connect(srv.udp).await;
    // A refusal is only sent when it is at most 3x the datagram (no amplification).
    let knock = b"please let me in, I have something to say to the lobby";
    udp.send(knock).await;
    let full = b"ERROR 1013 server full: all 2 connections in use, retry later";
    assert_eq!(udp.recv().await, full);
    udp.send(b"?").await; // too small to deserve a 60-byte answer
    udp.send(knock).await;
    assert_eq!(
        udp.recv().await,
        full,
        "answer to the second knock, none to '?'"
    );
    assert_eq!(srv.hub.stats().snapshot().refused_full, 5);
    // Slots come back when sessions leave.
    drop(a);
    b.send_line("ok").await;
    srv.wait_sessions(1).await;
    let mut d = WsClient::connect(&srv.ws_url("/")).await;
    b.send_line("welcome d").await;
    assert_eq!(d.recv_text().await, "welcome d");
    srv.shutdown().await;
}

#[tokio::test]
async fn oversized_websocket_message_gets_close_1009() {
    let srv = start(Limits {
        max_message_size: 1024,
        ..Limits::default()
    })
    .await;
    let mut big = WsClient::connect(&srv.ws_url("/")).await;
    big.send_text(&"x".repeat(1024)).await; // exactly the limit is fine
    let mut other = WsClient::connect(&srv.ws_url("/")).await;
    big.send_text(&"y".repeat(1025)).await;
    let (_, closed) = big.closed().await;
    assert_eq!(closed.code, 1009);
    assert_eq!(
        closed.reason,
        "message too large: 1025 bytes exceeds max-message-size 1024"
    );
    other.send_text("ping").await; // the oversized message was never relayed
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn announced_giant_frame_is_refused_on_its_header() {
    let srv = start(Limits {
        max_message_size: 1024,
        ..Limits::default()
    })
    .await;
    let mut c = WsClient::connect(&srv.ws_url("/")).await;
    // A binary frame header announcing 2^62 bytes, masked, with no payload following. The
    // server must answer from the header alone (no allocation of the announced size).
    let mut raw = vec![0x82, 0xFF];
    raw.extend_from_slice(&(1u64 << 62).to_be_bytes());
    raw.extend_from_slice(&[1, 2, 3, 4]);
    let stream = c.inner().get_mut();
    match stream {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s.write_all(&raw).await.unwrap(),
        _ => unreachable!(),
    }
    let (_, closed) = c.closed().await;
    assert_eq!(closed.code, 1009);
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn oversized_tcp_line_gets_an_error_line_then_close() {
    let srv = start(Limits {
        max_message_size: 16,
        ..Limits::default()
    })
    .await;
    let mut c = TcpClient::connect(srv.tcp[0]).await;
    c.write(b"0123456789abcdef\r\n").await; // 16 bytes + CRLF: fits
    c.write(&[b'z'; 40]).await; // no newline, already over
    assert_eq!(
        c.read_line().await,
        "ERROR 1009 message too large: 40 bytes exceeds max-message-size 16"
    );
    assert_eq!(c.try_read_line().await, None);
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn oversized_length_prefix_is_refused_on_the_header() {
    let mut s = setup(Limits {
        max_message_size: 16,
        ..Limits::default()
    });
    s.tcp = vec![TcpOptions {
        framing: TcpFraming::LengthPrefixed,
        ..TcpOptions::default()
    }];
    let srv = TestServer::start_with(s, sockhub::Broadcast).await;
    let mut c = TcpClient::connect(srv.tcp[0]).await;
    c.write(&u32::MAX.to_be_bytes()).await;
    assert_eq!(
        c.read_frame().await.unwrap(),
        b"ERROR 1009 message too large: 4294967295 bytes exceeds max-message-size 16"
    );
    assert_eq!(c.read_frame().await, None);
    srv.shutdown().await;
}

#[tokio::test]
async fn oversized_udp_datagrams_are_dropped_and_counted() {
    let srv = start(Limits {
        max_message_size: 8,
        ..Limits::default()
    })
    .await;
    let mut ws = WsClient::connect(&srv.ws_url("/")).await;
    let udp = UdpClient::connect(srv.udp).await;
    udp.send(b"123456789").await; // 9 > 8: dropped
    udp.send(b"12345678").await; // fits
    assert_eq!(ws.recv_text().await, "12345678");
    assert_eq!(srv.hub.stats().snapshot().udp_oversized_dropped, 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn silent_http_connection_is_closed_after_the_handshake_timeout() {
    let srv = start(Limits {
        handshake_timeout: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(srv.http).await.unwrap();
    s.write_all(b"GET /ws HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap(); // never finished
    let mut buf = Vec::new();
    within(
        "server to close the half-sent handshake",
        s.read_to_end(&mut buf),
    )
    .await
    .ok();
    let text = String::from_utf8_lossy(&buf);
    assert!(
        text.is_empty() || text.starts_with("HTTP/1.1 408"),
        "unexpected answer: {text}"
    );
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn idle_websocket_is_pinged_and_one_that_never_answers_is_closed_4201() {
    let srv = start(Limits {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(1000),
        ..Limits::default()
    })
    .await;
    // tungstenite answers pings while we read, so this client stays connected past the idle
    // timeout; wait for a relayed message sent after several ping intervals.
    let mut alive = WsClient::connect(&srv.ws_url("/")).await;
    let alive = tokio::spawn(async move { alive.recv_text().await });
    // A raw socket that completes the upgrade and then never reads or answers anything.
    let mut mute = tokio::net::TcpStream::connect(srv.http).await.unwrap();
    mute.write_all(sockhub_testkit::upgrade_request("/ws?channel=mute").as_bytes())
        .await
        .unwrap();
    let mut head = [0u8; 12];
    mute.read_exact(&mut head).await.unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
    let pinged = within("ping, then close 4201", async {
        let mut seen = Vec::new();
        let mut buf = [0u8; 1024];
        loop {
            let n = mute.read(&mut buf).await.unwrap();
            if n == 0 {
                return seen;
            }
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await;
    // The rest of the 101 response, then a ping frame (0x89 0x00), then close 4201.
    let ping_at = pinged.windows(2).position(|w| w == [0x89, 0x00]);
    assert!(ping_at.is_some(), "a heartbeat ping was sent");
    let close_at = pinged
        .windows(4)
        .position(|w| w[0] == 0x88 && u16::from_be_bytes([w[2], w[3]]) == 4201);
    assert!(close_at > ping_at, "then close 4201 idle timeout");
    // The pong-answering client outlived the idle timeout.
    let mut other = WsClient::connect(&srv.ws_url("/")).await;
    other.send_text("you are alive").await;
    assert_eq!(alive.await.unwrap(), "you are alive");
    srv.shutdown().await;
}

#[tokio::test]
async fn idle_tcp_client_is_told_and_closed_when_tcp_idle_timeout_is_set() {
    let srv = start(Limits {
        tcp_idle_timeout: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let mut c = TcpClient::connect(srv.tcp[0]).await;
    assert_eq!(c.read_line().await, "ERROR 4201 idle timeout");
    assert_eq!(c.try_read_line().await, None);
    srv.shutdown().await;
}

#[tokio::test]
async fn invalid_utf8_text_gets_close_1007_and_protocol_errors_1002() {
    let srv = start(Limits::default()).await;
    let mut c = WsClient::connect(&srv.ws_url("/")).await;
    let raw = [0x81, 0x82, 0, 0, 0, 0, 0xff, 0xfe]; // masked text frame, invalid UTF-8
    match c.inner().get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s.write_all(&raw).await.unwrap(),
        _ => unreachable!(),
    }
    assert_eq!(c.closed().await.1.code, 1007);
    let mut c = WsClient::connect(&srv.ws_url("/")).await;
    let raw = [0x83, 0x80, 0, 0, 0, 0]; // reserved opcode 3
    match c.inner().get_mut() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s.write_all(&raw).await.unwrap(),
        _ => unreachable!(),
    }
    assert_eq!(c.closed().await.1.code, 1002);
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn handler_rejection_is_http_403_with_the_reason() {
    struct NoBob;
    impl sockhub::Handler for NoBob {
        fn on_connect(&self, s: &sockhub::Session) -> Result<(), sockhub::Reject> {
            if s.channels().iter().any(|c| &**c == "bob") {
                return Err(sockhub::Reject::new("bob is banned"));
            }
            Ok(())
        }
    }
    let srv = TestServer::start_with(Setup::default(), NoBob).await;
    let (status, body) = http_request(srv.http, &upgrade_request("/ws?channel=bob")).await;
    assert_eq!(status, 403);
    assert_eq!(body, "rejected: bob is banned\n");
    assert_eq!(srv.hub.session_count(), 0);
    assert!(
        srv.hub.channels().is_empty(),
        "the refused session left no channel behind"
    );
    let mut ok = WsClient::connect(&srv.ws_url("/ws")).await;
    ok.send(WsMessage::Ping(vec![1].into())).await.unwrap();
    srv.shutdown().await;
}

#[tokio::test]
async fn a_silent_udp_peer_expires_after_the_idle_timeout() {
    let srv = start(Limits {
        idle_timeout: Duration::from_millis(200),
        ..Limits::default()
    })
    .await;
    let udp = UdpClient::connect(srv.udp).await;
    udp.send(b"here").await;
    srv.wait_sessions(1).await;
    srv.wait_sessions(0).await; // expired, silently
    udp.send(b"back again").await; // a new datagram makes a new session
    srv.wait_sessions(1).await;
    assert_eq!(srv.hub.stats().snapshot().sessions_opened, 2);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_panicking_handler_closes_only_its_own_session_with_1011() {
    struct Fragile;
    impl sockhub::Handler for Fragile {
        fn on_message(&self, s: &sockhub::Session, m: sockhub::Incoming) {
            if m.message.as_str() == Some("boom") {
                panic!("handler bug (expected by this test)");
            }
            sockhub::Broadcast.on_message(s, m);
        }
    }
    let srv = TestServer::start_with(Setup::default(), Fragile).await;
    let mut a = WsClient::connect(&srv.ws_url("/")).await;
    let mut b = WsClient::connect(&srv.ws_url("/")).await;
    a.send_text("boom").await;
    let (_, closed) = a.closed().await;
    assert_eq!(closed.code, 1011);
    assert_eq!(closed.reason, "internal error: on_message failed");
    srv.wait_sessions(1).await;
    let mut c = WsClient::connect(&srv.ws_url("/")).await;
    c.send_text("fine").await;
    assert_eq!(b.recv_text().await, "fine");
    srv.shutdown().await;
}

#[tokio::test]
async fn message_rate_limit_closes_1008_and_drops_udp_floods() {
    let srv = start(Limits {
        max_messages_per_second: 20,
        ..Limits::default()
    })
    .await;
    let mut flood = WsClient::connect(&srv.ws_url("/")).await;
    for i in 0..100 {
        if flood.send(WsMessage::text(format!("m{i}"))).await.is_err() {
            break;
        }
    }
    let (_, closed) = flood.closed().await;
    assert_eq!(closed.code, 1008);
    assert_eq!(
        closed.reason,
        "rate limit: more than 20 messages per second"
    );
    let mut tcp = TcpClient::connect(srv.tcp[0]).await;
    tcp.write("x\n".repeat(100).as_bytes()).await;
    let mut last = String::new();
    while let Some(l) = tcp.try_read_line().await {
        last = l;
    }
    assert_eq!(
        last,
        "ERROR 1008 rate limit: more than 20 messages per second"
    );
    let udp = UdpClient::connect(srv.udp).await;
    for _ in 0..100 {
        udp.send(b"u").await;
    }
    let hub = srv.hub.clone();
    eventually("udp drops counted", || {
        hub.stats().snapshot().udp_rate_limited >= 50
    })
    .await;
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn oversized_or_overcrowded_request_heads_get_431() {
    let srv = start(Limits::default()).await;
    let huge = format!(
        "GET /ws HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20 * 1024)
    );
    let (status, _) = http_request(srv.http, &huge).await;
    assert_eq!(status, 431);
    let mut many = String::from("GET /ws HTTP/1.1\r\nHost: x\r\n");
    for i in 0..100 {
        many.push_str(&format!("X-H{i}: v\r\n"));
    }
    many.push_str("\r\n");
    let (status, _) = http_request(srv.http, &many).await;
    assert_eq!(status, 431);
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn frames_pipelined_with_the_upgrade_request_are_not_lost() {
    let srv = start(Limits::default()).await;
    let mut listener = WsClient::connect(&srv.ws_url("/ws")).await;
    let mut req = sockhub_testkit::upgrade_request("/ws").into_bytes();
    // A masked text frame "early" in the same write as the request.
    req.extend_from_slice(&[0x81, 0x85, 0, 0, 0, 0]);
    req.extend_from_slice(b"early");
    let mut s = tokio::net::TcpStream::connect(srv.http).await.unwrap();
    s.write_all(&req).await.unwrap();
    assert_eq!(listener.recv_text().await, "early");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_ping_flood_from_a_client_that_does_not_read_ends_as_a_slow_consumer() {
    let srv = start(Limits {
        max_outbox_bytes: 256 * 1024,
        max_messages_per_second: 0,
        ..Limits::default()
    })
    .await;
    let mut s = tokio::net::TcpStream::connect(srv.http).await.unwrap();
    s.write_all(sockhub_testkit::upgrade_request("/ws").as_bytes())
        .await
        .unwrap();
    // 100,000 masked pings with 125-byte payloads (13 MB), never reading the pongs (12.7 MB):
    // more than the kernel buffers and the 256 KiB outbox hold.
    let mut ping = vec![0x89, 0x80 | 125, 0, 0, 0, 0];
    ping.extend_from_slice(&[b'p'; 125]);
    let flood: Vec<u8> = ping
        .iter()
        .copied()
        .cycle()
        .take(ping.len() * 100_000)
        .collect();
    let (_r, mut w) = s.into_split();
    let writer = tokio::spawn(async move { w.write_all(&flood).await });
    let hub = srv.hub.clone();
    eventually("slow consumer disconnect", || {
        hub.stats().snapshot().slow_consumer_disconnects == 1
    })
    .await;
    let _ = within("flood writer to stop", writer).await; // broken pipe once closed
    srv.wait_sessions(0).await;
    still_serving(&srv).await;
    srv.shutdown().await;
}
