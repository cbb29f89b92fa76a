//! Webhooks against real HTTP backends on loopback: signed events, the connect answer decides
//! admission and channels, the message answer replies and publishes, the close event arrives;
//! a backend that hangs is bounded by the timeout and never stalls other clients.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use sockhub::auth::verify_signature;
use sockhub::{WebhookFailure, WebhookOptions};
use sockhub_testkit::{eventually, http_request, upgrade_request, Setup, TestServer, WsClient};

const SECRET: &str = "hook-secret";

/// Events the backend received, each with whether its signature verified.
type Log = Arc<Mutex<Vec<(serde_json::Value, bool)>>>;

/// A backend that: refuses peers whose connect lists channel `blocked`; moves anyone asking for
/// `vip` to `vip-lounge`; answers the message `ping` with a reply `pong` and a publish to
/// `lobby`; answers 200 with no body otherwise.
async fn backend() -> (SocketAddr, Log) {
    let log: Log = Arc::default();
    let log2 = log.clone();
    let app = axum::Router::new().route(
        "/hook",
        post(move |headers: HeaderMap, body: Bytes| {
            let log = log2.clone();
            async move {
                let sig = headers
                    .get("x-sockhub-signature")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or("");
                let ok = verify_signature(SECRET.as_bytes(), &body, sig);
                let ev: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                log.lock().unwrap().push((ev.clone(), ok));
                let channels = ev["channels"].as_array().cloned().unwrap_or_default();
                let answer = match ev["event"].as_str() {
                    Some("connect") if channels.contains(&"blocked".into()) => {
                        return (StatusCode::FORBIDDEN, "not you".to_string());
                    }
                    Some("connect") if channels.contains(&"vip".into()) => {
                        serde_json::json!({"channels": ["vip-lounge"]}).to_string()
                    }
                    Some("message") if ev["data"] == "ping" => serde_json::json!({
                        "reply": "pong",
                        "publish": [{"channel": "lobby", "data": "someone pinged"}]
                    })
                    .to_string(),
                    _ => String::new(),
                };
                (StatusCode::OK, answer)
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, log)
}

fn hooked(url: String, timeout: Duration, on_failure: WebhookFailure) -> Setup {
    let mut setup = Setup::default();
    setup.config.webhook = Some(WebhookOptions {
        url,
        secret: SECRET.into(),
        timeout,
        on_failure,
        ..WebhookOptions::default()
    });
    setup
}

fn events(log: &Log, kind: &str) -> Vec<serde_json::Value> {
    log.lock()
        .unwrap()
        .iter()
        .filter(|(e, _)| e["event"] == kind)
        .map(|(e, _)| e.clone())
        .collect()
}

#[tokio::test]
async fn connect_message_and_close_events_reach_the_backend_and_its_answers_act() {
    let (addr, log) = backend().await;
    let setup = hooked(
        format!("http://{addr}/hook"),
        Duration::from_secs(5),
        WebhookFailure::Reject,
    );
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;

    // Refused by the backend: 403 before the upgrade, with its reason.
    let (status, body) = http_request(srv.http, &upgrade_request("/ws?channel=blocked")).await;
    assert_eq!((status, body.trim()), (403, "rejected: not you"));

    // Assigned channels: asked for vip, lands in vip-lounge.
    let _vip = WsClient::connect(&srv.ws_url("/ws?channel=vip")).await;
    assert_eq!(srv.hub.subscribers("vip-lounge"), 1);
    assert_eq!(srv.hub.subscribers("vip"), 0);

    let mut a = WsClient::connect(&srv.ws_url("/ws")).await;
    let mut b = WsClient::connect(&srv.ws_url("/ws")).await;
    a.send_text("ping").await;
    // The built-in broadcast still runs, and the backend's answer replies and publishes.
    assert_eq!(b.recv_text().await, "ping");
    assert_eq!(b.recv_text().await, "someone pinged");
    let mut got = vec![a.recv_text().await, a.recv_text().await];
    got.sort();
    assert_eq!(got, ["pong", "someone pinged"]);

    a.close().await;
    eventually("close event", || !events(&log, "close").is_empty()).await;

    let connects = events(&log, "connect");
    assert_eq!(connects.len(), 4, "{connects:?}");
    assert_eq!(connects[0]["transport"], "ws");
    assert_eq!(connects[0]["channels"], serde_json::json!(["blocked"]));
    let message = &events(&log, "message")[0];
    assert_eq!(message["data"], "ping");
    assert_eq!(message["channel"], serde_json::Value::Null);
    let close = &events(&log, "close")[0];
    assert_eq!(close["session"], message["session"]);
    assert_eq!(close["code"], 1000);
    assert!(
        log.lock().unwrap().iter().all(|(_, signed)| *signed),
        "every event carries a valid X-Sockhub-Signature"
    );
    // Ids increase by one per event.
    let mut ids: Vec<u64> = log
        .lock()
        .unwrap()
        .iter()
        .map(|(e, _)| e["id"].as_u64().unwrap())
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, (1..=ids.len() as u64).collect::<Vec<_>>());
    srv.shutdown().await;
}

/// A backend that accepts connections and never answers.
async fn hanging_backend() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            held.push(s);
        }
    });
    addr
}

#[tokio::test]
async fn a_hanging_backend_is_bounded_by_the_timeout_and_stalls_nobody() {
    let addr = hanging_backend().await;
    let timeout = Duration::from_millis(400);
    let setup = hooked(format!("http://{addr}/"), timeout, WebhookFailure::Reject);
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;

    // Admission waits for the timeout, then refuses with 503 and a reason.
    let started = Instant::now();
    let (status, body) = http_request(srv.http, &upgrade_request("/ws")).await;
    let waited = started.elapsed();
    assert_eq!(
        (status, body.trim()),
        (503, "unavailable: connect webhook timed out")
    );
    assert!(waited >= timeout, "{waited:?}");
    assert!(waited < timeout * 5, "{waited:?}");
    srv.shutdown().await;

    // With on_failure = accept, clients get in after the timeout and then chat at full speed
    // while the backend keeps hanging on their message events.
    let setup = hooked(format!("http://{addr}/"), timeout, WebhookFailure::Accept);
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    let mut a = WsClient::connect(&srv.ws_url("/ws")).await;
    let mut b = WsClient::connect(&srv.ws_url("/ws")).await;
    // Also keep a third client connecting (stuck in its connect webhook) during the chat.
    let third = tokio::spawn({
        let url = srv.ws_url("/ws");
        async move { WsClient::connect(&url).await }
    });
    let mut worst = Duration::ZERO;
    for i in 0..20 {
        let t = Instant::now();
        a.send_text(&format!("m{i}")).await;
        assert_eq!(b.recv_text().await, format!("m{i}"));
        worst = worst.max(t.elapsed());
    }
    assert!(worst < Duration::from_millis(100), "relay took {worst:?}");
    let _third = third
        .await
        .expect("third client admitted after the timeout");

    // Ready reports degraded once connects keep failing (3 in a row).
    let mut more = Vec::new();
    for _ in 0..2 {
        more.push(WsClient::connect(&srv.ws_url("/ws")).await);
    }
    let (status, body) = http_request(
        srv.http,
        "GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""webhook":"failing""#), "{body}");
    srv.shutdown().await;
}

#[tokio::test]
async fn udp_and_tcp_peers_go_through_the_connect_webhook_too() {
    let (addr, log) = backend().await;
    let mut setup = hooked(
        format!("http://{addr}/hook"),
        Duration::from_secs(5),
        WebhookFailure::Reject,
    );
    // A TCP listener whose channel the backend refuses.
    setup.tcp.push(sockhub::TcpOptions {
        channels: vec!["blocked".into()],
        ..Default::default()
    });
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    let mut ws = WsClient::connect(&srv.ws_url("/ws")).await;

    // UDP: admitted after the backend answers; its first datagram is then delivered.
    let udp = sockhub_testkit::UdpClient::connect(srv.udp).await;
    udp.send(b"first from udp").await;
    assert_eq!(ws.recv_text().await, "first from udp");
    let connects = events(&log, "connect");
    assert_eq!(
        connects.iter().filter(|e| e["transport"] == "udp").count(),
        1
    );
    // Its cookie echo while it waited for the backend counted: it is validated, so a
    // broadcast far over 3x what it sent still reaches it.
    let big = "b".repeat(600);
    ws.send_text(&big).await;
    assert_eq!(udp.recv().await, big.as_bytes());

    // TCP on the default listener: admitted.
    let mut tcp = sockhub_testkit::TcpClient::connect(srv.tcp[0]).await;
    tcp.send_line("from tcp").await;
    assert_eq!(ws.recv_text().await, "from tcp");
    // TCP on the refused listener: the reason as an error line.
    let mut refused = sockhub_testkit::TcpClient::connect(srv.tcp[1]).await;
    assert_eq!(refused.read_line().await, "ERROR 4009 rejected: not you");
    srv.shutdown().await;
}

/// A backend that takes 300 ms to accept each connect.
async fn slow_backend() -> SocketAddr {
    let app = axum::Router::new().route(
        "/",
        post(|| async {
            tokio::time::sleep(Duration::from_millis(300)).await;
            ""
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

#[tokio::test]
async fn a_udp_source_that_echoes_its_cookie_while_waiting_for_the_backend_is_validated() {
    let addr = slow_backend().await;
    let setup = hooked(
        format!("http://{addr}/"),
        Duration::from_secs(5),
        WebhookFailure::Reject,
    );
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    let mut ws = WsClient::connect(&srv.ws_url("/ws")).await; // waits 300 ms itself
    let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    raw.connect(srv.udp).await.unwrap();
    let mut buf = vec![0u8; 2048];
    // A cookie first (answered at once, nothing stored), then a message — the source now
    // waits for the backend — and the echo while it waits.
    raw.send(b"SOCKHUB-COOKIE").await.unwrap();
    let n = sockhub_testkit::within("cookie", raw.recv(&mut buf))
        .await
        .unwrap();
    let cookie = buf[..n].to_vec();
    raw.send(b"hello").await.unwrap();
    raw.send(&cookie).await.unwrap();
    assert_eq!(ws.recv_text().await, "hello");
    let big = "b".repeat(600);
    ws.send_text(&big).await;
    let n = sockhub_testkit::within("broadcast", raw.recv(&mut buf))
        .await
        .unwrap();
    assert_eq!(
        &buf[..n],
        big.as_bytes(),
        "validated: not limited to 3x 'hello'"
    );
    srv.shutdown().await;
}
