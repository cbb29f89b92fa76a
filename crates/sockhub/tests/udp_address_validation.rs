//! UDP return-routability (anti-amplification): a source that has not echoed a cookie is sent at
//! most 3x the bytes it sent, the rest is dropped and counted; one that echoes gets everything.
//! Real sockets on loopback; where the process may open a raw socket (root), the spoofed source
//! really is spoofed: the datagram is forged with the victim's address by another socket.

use std::net::SocketAddr;
use std::time::Duration;

use sockhub::{Limits, Protocol, UdpOptions};
use sockhub_testkit::{eventually, is_cookie, within, Setup, TestServer, WsClient};
use tokio::net::UdpSocket;

/// The one relay between two fresh clients after each test must take less than this.
const HEALTHY_RELAY: Duration = Duration::from_millis(100);

/// A cookie request in the raw form.
const REQUEST: &[u8] = b"SOCKHUB-COOKIE";

/// The relay check of `faults.rs`: the server still relays between two fresh clients, promptly.
async fn still_serving(srv: &TestServer) {
    let took = srv.relay_check().await;
    assert!(
        took < HEALTHY_RELAY,
        "a healthy relay took {took:?} (limit {HEALTHY_RELAY:?})"
    );
}

async fn socket_at(ip: &str) -> UdpSocket {
    UdpSocket::bind(format!("{ip}:0")).await.expect("udp bind")
}

async fn recv_from_server(s: &UdpSocket) -> Vec<u8> {
    within("a datagram", async {
        let mut buf = vec![0u8; 65_536];
        let n = s.recv(&mut buf).await.expect("udp recv");
        buf.truncate(n);
        buf
    })
    .await
}

/// Every datagram waiting on `s` now, without blocking.
fn drain(s: &UdpSocket, into: &mut Vec<Vec<u8>>) {
    let mut buf = vec![0u8; 65_536];
    while let Ok(n) = s.try_recv(&mut buf) {
        into.push(buf[..n].to_vec());
    }
}

/// Sends `payload` to `server` from `victim`'s address without using `victim`: through a raw
/// socket bound to the victim's IP, with the victim's port in a hand-made UDP header. Returns
/// false if this process may not open raw sockets.
fn spoof(victim: SocketAddr, server: SocketAddr, payload: &[u8]) -> bool {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let Ok(raw) = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)) else {
        return false;
    };
    let from = SocketAddr::new(victim.ip(), 0);
    raw.bind(&SockAddr::from(from)).expect("bind raw socket");
    let mut packet = Vec::with_capacity(8 + payload.len());
    packet.extend_from_slice(&victim.port().to_be_bytes());
    packet.extend_from_slice(&server.port().to_be_bytes());
    packet.extend_from_slice(&(8 + payload.len() as u16).to_be_bytes());
    packet.extend_from_slice(&[0, 0]); // no checksum (allowed over IPv4)
    packet.extend_from_slice(payload);
    raw.send_to(&packet, &SockAddr::from(server))
        .expect("raw send");
    true
}

#[tokio::test]
async fn a_spoofed_source_on_a_busy_channel_receives_at_most_3x_what_it_sent() {
    let srv = TestServer::start().await;
    // The victim only ever receives. 127.0.0.2 is loopback too, and not the attacker's address.
    let victim = socket_at("127.0.0.2").await;
    let victim_addr = victim.local_addr().unwrap();
    let claim = b"join lobby, victim!!"; // 20 bytes: 60 bytes of credit
    let forged = spoof(victim_addr, srv.udp, claim);
    if !forged {
        // No raw sockets here: the victim's own socket sends once and never echoes, which is
        // the same to the server.
        eprintln!("no raw socket (not root?): the victim sends its datagram itself");
        victim.send_to(claim, srv.udp).await.unwrap();
    }
    srv.wait_sessions(1).await;
    assert_eq!(srv.hub.subscribers("lobby"), 1, "the spoofed source joined");
    // A busy channel: 200 publications of 20 bytes.
    let published = 200;
    for i in 0..published {
        assert_eq!(
            srv.hub.publish("lobby", format!("busy channel msg {i:03}")),
            1
        );
    }
    let stats = srv.hub.clone();
    let mut got = Vec::new();
    eventually("every publication sent or dropped", || {
        drain(&victim, &mut got);
        let messages = got.iter().filter(|d| !is_cookie(d)).count() as u64;
        messages + stats.stats().snapshot().udp_unvalidated_dropped == published
    })
    .await;
    let bytes: usize = got.iter().map(Vec::len).sum();
    assert!(
        bytes <= 3 * claim.len(),
        "{bytes} bytes sent to an unvalidated source that sent {}: {got:?}",
        claim.len()
    );
    let dropped = srv.hub.stats().snapshot().udp_unvalidated_dropped;
    assert!(dropped >= published - 2, "only {dropped} dropped");
    // The attacker cannot validate the address blind: a made-up echo is only a request, whose
    // answer (a fresh cookie) again comes out of the victim's 3x credit.
    let forged_echo = b"SOCKHUB-COOKIE 0123456789abcdef";
    if forged {
        assert!(spoof(victim_addr, srv.udp, forged_echo));
    } else {
        victim.send_to(forged_echo, srv.udp).await.unwrap();
    }
    for i in 0..published {
        srv.hub.publish("lobby", format!("busy channel msg {i:03}"));
    }
    let before = got.len();
    eventually("the second burst sent or dropped", || {
        drain(&victim, &mut got);
        let messages = got.iter().filter(|d| !is_cookie(d)).count() as u64;
        messages + stats.stats().snapshot().udp_unvalidated_dropped == 2 * published
    })
    .await;
    let sent_by_attacker = claim.len() + forged_echo.len();
    let bytes: usize = got.iter().map(Vec::len).sum();
    assert!(
        bytes <= 3 * sent_by_attacker,
        "{bytes} bytes for {sent_by_attacker}: {:?}",
        &got[before..]
    );
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_source_that_echoes_its_cookie_receives_every_broadcast() {
    let srv = TestServer::start().await;
    let s = socket_at("127.0.0.1").await;
    s.connect(srv.udp).await.unwrap();
    // A request is answered at once, within 3x, and opens no session.
    s.send(REQUEST).await.unwrap();
    let cookie = recv_from_server(&s).await;
    assert!(is_cookie(&cookie), "{:?}", String::from_utf8_lossy(&cookie));
    assert!(cookie.len() <= 3 * REQUEST.len());
    assert_eq!(srv.hub.session_count(), 0, "a request stores nothing");
    // The echo opens the session, validated.
    s.send(&cookie).await.unwrap();
    srv.wait_sessions(1).await;
    assert_eq!(srv.hub.subscribers("lobby"), 1);
    let big = "x".repeat(100); // 100 datagrams stay well inside the socket buffer
    for i in 0..100 {
        srv.hub.publish("lobby", format!("{i:03} {big}"));
    }
    for i in 0..100 {
        let d = recv_from_server(&s).await;
        assert_eq!(d, format!("{i:03} {big}").as_bytes(), "broadcast {i}");
    }
    assert_eq!(srv.hub.stats().snapshot().udp_unvalidated_dropped, 0);
    // A late duplicate echo changes nothing and is not relayed.
    let mut witness = WsClient::connect(&srv.ws_url("/ws")).await;
    s.send(&cookie).await.unwrap();
    s.send(b"after the duplicate").await.unwrap();
    assert_eq!(witness.recv_text().await, "after the duplicate");
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_sensor_that_echoes_the_offered_cookie_is_validated() {
    let srv = TestServer::start().await;
    let mut witness = WsClient::connect(&srv.ws_url("/ws")).await;
    let s = socket_at("127.0.0.1").await;
    s.connect(srv.udp).await.unwrap();
    // A message first (no request): the cookie is offered as soon as it fits in 3x.
    s.send(b"t=21.5").await.unwrap(); // 6 bytes: 18 of credit, too little for a cookie
    assert_eq!(witness.recv_text().await, "t=21.5");
    s.send(b"t=21.6").await.unwrap(); // 36: enough
    assert_eq!(witness.recv_text().await, "t=21.6");
    let cookie = recv_from_server(&s).await;
    assert!(is_cookie(&cookie), "{:?}", String::from_utf8_lossy(&cookie));
    s.send(&cookie).await.unwrap();
    // Datagrams are read in order: once this one is relayed, the echo has been handled.
    s.send(b"echoed").await.unwrap();
    assert_eq!(witness.recv_text().await, "echoed");
    for i in 0..50 {
        witness.send_text(&format!("to the sensor {i}")).await;
    }
    for i in 0..50 {
        assert_eq!(
            recv_from_server(&s).await,
            format!("to the sensor {i}").as_bytes()
        );
    }
    assert_eq!(srv.hub.stats().snapshot().udp_unvalidated_dropped, 0);
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn json_listeners_speak_the_cookie_as_a_json_event() {
    let setup = Setup {
        udp: UdpOptions {
            protocol: Protocol::Json,
            ..UdpOptions::default()
        },
        ..Setup::default()
    };
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    let s = socket_at("127.0.0.1").await;
    s.connect(srv.udp).await.unwrap();
    let request = br#"{"type":"cookie"}"#;
    s.send(request).await.unwrap();
    let cookie = recv_from_server(&s).await;
    assert!(cookie.len() <= 3 * request.len());
    let ev: serde_json::Value = serde_json::from_slice(&cookie).expect("json");
    assert_eq!(ev["type"], "cookie");
    let hex = ev["cookie"].as_str().expect("a cookie string");
    assert_eq!(hex.len(), 16);
    // Echo it re-serialized by a JSON library (other key order): still the same cookie.
    let echo = serde_json::json!({"cookie": hex, "type": "cookie"}).to_string();
    s.send(echo.as_bytes()).await.unwrap();
    srv.wait_sessions(1).await;
    s.send(br#"{"type":"subscribe","channel":"news"}"#)
        .await
        .unwrap();
    assert_eq!(
        recv_from_server(&s).await,
        br#"{"type":"subscribed","channel":"news"}"#
    );
    for i in 0..50 {
        srv.hub.publish("news", format!("headline {i}"));
    }
    for i in 0..50 {
        let ev: serde_json::Value = serde_json::from_slice(&recv_from_server(&s).await).unwrap();
        assert_eq!(ev["data"], format!("headline {i}"));
    }
    assert_eq!(srv.hub.stats().snapshot().udp_unvalidated_dropped, 0);
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn a_cookie_validates_only_the_address_it_was_sent_to() {
    let srv = TestServer::start().await;
    let a = socket_at("127.0.0.1").await;
    let b = socket_at("127.0.0.1").await;
    a.send_to(REQUEST, srv.udp).await.unwrap();
    let cookie = recv_from_server(&a).await;
    // B replays A's cookie: to the server that is only a request, answered with B's own cookie.
    b.send_to(&cookie, srv.udp).await.unwrap();
    let for_b = recv_from_server(&b).await;
    assert!(is_cookie(&for_b));
    assert_ne!(for_b, cookie);
    assert_eq!(
        srv.hub.session_count(),
        0,
        "no session for a replayed cookie"
    );
    // A's own echo opens A's session.
    a.send_to(&cookie, srv.udp).await.unwrap();
    srv.wait_sessions(1).await;
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn with_address_validation_off_every_source_gets_everything() {
    let setup = Setup {
        udp: UdpOptions {
            address_validation: false,
            ..UdpOptions::default()
        },
        ..Setup::with_limits(Limits::default())
    };
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    let s = socket_at("127.0.0.1").await;
    s.connect(srv.udp).await.unwrap();
    s.send(b"x").await.unwrap();
    srv.wait_sessions(1).await;
    for i in 0..100 {
        srv.hub
            .publish("lobby", format!("unvalidated but trusted {i}"));
    }
    for i in 0..100 {
        let d = recv_from_server(&s).await;
        assert_eq!(d, format!("unvalidated but trusted {i}").as_bytes());
    }
    assert_eq!(srv.hub.stats().snapshot().udp_unvalidated_dropped, 0);
    still_serving(&srv).await;
    srv.shutdown().await;
}

#[tokio::test]
async fn with_client_auth_the_echo_after_auth_validates() {
    use sockhub::auth::{unix_now, Claims, TokenSecret};
    let mut setup = Setup::default();
    setup.config.auth.token_secret = Some("udp cookie test secret".into());
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    let token = TokenSecret::new("udp cookie test secret").mint(&Claims::new(
        "sensor",
        unix_now() + 60,
        ["lobby"],
    ));
    // The testkit client: request, echo (opens nothing: the token must come first), AUTH,
    // echo again (validates the session AUTH opened).
    let udp = sockhub_testkit::UdpClient::connect(srv.udp).await;
    udp.send(format!("AUTH {token}").as_bytes()).await;
    srv.wait_sessions(1).await;
    // Datagrams are read in order: once this one is relayed, the second echo has been handled.
    let mut witness = WsClient::connect(&srv.ws_url(&format!("/ws?token={token}"))).await;
    udp.send(b"ready").await;
    assert_eq!(witness.recv_text().await, "ready");
    // Queued before the client reads anything (so before it could echo an offered cookie):
    // only a validated session gets them all.
    let big = "y".repeat(100);
    for i in 0..100 {
        assert_eq!(srv.hub.publish("lobby", format!("{i:03} {big}")), 2);
    }
    for i in 0..100 {
        assert_eq!(udp.recv().await, format!("{i:03} {big}").as_bytes());
    }
    assert_eq!(srv.hub.stats().snapshot().udp_unvalidated_dropped, 0);
    srv.shutdown().await;
}
