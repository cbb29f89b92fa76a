//! The HTTP API, readiness and metrics over real loopback HTTP: publishes reach every
//! transport, and every error has its status and stable code.

use std::net::SocketAddr;
use std::time::Duration;

use sockhub::{ApiOptions, Limits};
use sockhub_testkit::{Setup, TcpClient, TestServer, UdpClient, WsClient};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// One HTTP/1.1 request with `Connection: close`; returns status, headers (lowercase names)
/// and body.
async fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    key: Option<&str>,
    body: Option<&str>,
) -> (u16, String, serde_json::Value) {
    let auth = key.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{auth}\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, head, text) = sockhub_testkit::http_exchange(addr, req.as_bytes()).await;
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    (status, head, json)
}

fn error_code(v: &serde_json::Value) -> &str {
    v["error"]["code"].as_str().unwrap_or("<no error code>")
}

#[tokio::test]
async fn a_publish_reaches_websocket_tcp_and_udp_subscribers() {
    let srv = TestServer::start().await;
    let mut ws = WsClient::connect(&srv.ws_url("/ws")).await;
    let mut tcp = TcpClient::connect(srv.tcp[0]).await;
    let udp = UdpClient::connect(srv.udp).await;
    udp.send(b"hello from udp").await;
    assert_eq!(ws.recv_text().await, "hello from udp");
    assert_eq!(tcp.read_line().await, "hello from udp");
    srv.wait_sessions(3).await;

    let (status, _, v) = call(
        srv.http,
        "POST",
        "/api/publish",
        None,
        Some(r#"{"channel":"lobby","data":"from the backend"}"#),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["channels"], 1);
    assert_eq!(v["deliveries"], 3);
    assert_eq!(ws.recv_text().await, "from the backend");
    assert_eq!(tcp.read_line().await, "from the backend");
    assert_eq!(udp.recv().await, b"from the backend");

    // Binary, to several channels at once (one of them empty).
    let (status, _, v) = call(
        srv.http,
        "POST",
        "/api/publish",
        None,
        Some(r#"{"channels":["lobby","nobody-here"],"data_base64":"AAH/"}"#),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        (v["channels"].as_u64(), v["deliveries"].as_u64()),
        (Some(2), Some(3))
    );
    assert_eq!(ws.recv().await, WsMessage::binary(vec![0u8, 1, 255]));
    assert_eq!(udp.recv().await, [0u8, 1, 255]);
    srv.shutdown().await;
}

#[tokio::test]
async fn channels_sessions_and_stats_are_listed_and_sessions_can_be_addressed() {
    let srv = TestServer::start().await;
    let mut red = WsClient::connect(&srv.ws_url("/ws?channel=red&protocol=json")).await;
    let connected: serde_json::Value = serde_json::from_str(&red.recv_text().await).unwrap();
    let id = connected["session"].as_str().unwrap().to_string();
    let _blue = WsClient::connect(&srv.ws_url("/ws?channel=blue")).await;
    srv.wait_sessions(2).await;

    let (status, _, v) = call(srv.http, "GET", "/api/channels", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(
        v["channels"],
        serde_json::json!([{"name":"blue","subscribers":1},{"name":"red","subscribers":1}])
    );
    let (_, _, v) = call(srv.http, "GET", "/api/channels?prefix=r", None, None).await;
    assert_eq!(v["channels"].as_array().map(Vec::len), Some(1));
    let (_, _, v) = call(srv.http, "GET", "/api/channels/red", None, None).await;
    assert_eq!(
        v,
        serde_json::json!({"name":"red","subscribers":1,"occupied":true})
    );
    let (_, _, v) = call(srv.http, "GET", "/api/channels/empty", None, None).await;
    assert_eq!(v["occupied"], false);

    let (status, _, v) = call(srv.http, "GET", &format!("/api/sessions/{id}"), None, None).await;
    assert_eq!(status, 200);
    assert_eq!(v["transport"], "ws");
    assert_eq!(v["channels"], serde_json::json!(["red"]));

    let (status, _, v) = call(srv.http, "GET", "/api/stats", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(v["connections"], 2);
    assert_eq!(v["ws_connections"], 2);

    // Send to one session (json protocol: a message event with no channel).
    let (status, _, v) = call(
        srv.http,
        "POST",
        &format!("/api/sessions/{id}/send"),
        None,
        Some(r#"{"data":"just for you"}"#),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let got: serde_json::Value = serde_json::from_str(&red.recv_text().await).unwrap();
    assert_eq!(got["data"], "just for you");

    // Close it: the client gets 4010 with the reason.
    let (status, _, _) = call(
        srv.http,
        "POST",
        &format!("/api/sessions/{id}/close"),
        None,
        Some(r#"{"reason":"bye"}"#),
    )
    .await;
    assert_eq!(status, 200);
    let (_, closed) = red.closed().await;
    assert_eq!(closed.code, 4010);
    assert!(closed.reason.contains("bye"), "{}", closed.reason);
    srv.wait_sessions(1).await;
    let (status, _, v) = call(srv.http, "GET", &format!("/api/sessions/{id}"), None, None).await;
    assert_eq!((status, error_code(&v)), (404, "unknown_session"));
    srv.shutdown().await;
}

#[tokio::test]
async fn every_api_error_has_its_status_and_code() {
    let mut setup = Setup::with_limits(Limits {
        max_message_size: 16,
        max_outbox_bytes: 1024,
        ..Limits::default()
    });
    setup.config.api = ApiOptions {
        key: Some("k3y".into()),
        max_requests_per_second: 0,
    };
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    let k = Some("k3y");
    let publish = |body: &'static str| call(srv.http, "POST", "/api/publish", k, Some(body));

    let (status, head, v) = call(srv.http, "POST", "/api/publish", None, Some("{}")).await;
    assert_eq!((status, error_code(&v)), (401, "unauthorized"));
    assert!(head.contains("www-authenticate: bearer"), "{head}");
    let (status, _, v) = call(srv.http, "GET", "/api/channels", Some("wrong"), None).await;
    assert_eq!((status, error_code(&v)), (403, "forbidden"));

    let (status, _, v) = publish("{not json").await;
    assert_eq!((status, error_code(&v)), (400, "bad_json"));
    let (status, _, v) = publish(r#"{"channel":"a","data":"x","colour":"red"}"#).await;
    assert_eq!((status, error_code(&v)), (400, "unknown_field"));
    assert!(v["error"]["message"].as_str().unwrap().contains("colour"));
    let (status, _, v) = publish(r#"{"channel":"a"}"#).await;
    assert_eq!((status, error_code(&v)), (400, "bad_request"));
    let (status, _, v) = publish(r#"{"channel":"has space","data":"x"}"#).await;
    assert_eq!((status, error_code(&v)), (400, "bad_channel"));
    let (status, _, v) = publish(r#"{"channel":"a","data":"seventeen bytes!!"}"#).await;
    assert_eq!((status, error_code(&v)), (413, "too_large"));
    // A body far over the limit is refused while reading, before parsing.
    let huge = format!(r#"{{"channel":"a","data":"{}"}}"#, "x".repeat(64 * 1024));
    let (status, _, v) = call(srv.http, "POST", "/api/publish", k, Some(&huge)).await;
    assert_eq!((status, error_code(&v)), (413, "too_large"));

    let (status, _, v) = call(
        srv.http,
        "POST",
        "/api/sessions/999999/send",
        k,
        Some(r#"{"data":"x"}"#),
    )
    .await;
    assert_eq!((status, error_code(&v)), (404, "unknown_session"));
    let (status, _, v) = call(srv.http, "POST", "/api/sessions/abc/close", k, None).await;
    assert_eq!((status, error_code(&v)), (404, "unknown_session"));
    let (status, _, v) = call(srv.http, "GET", "/api/nothing-here", k, None).await;
    assert_eq!((status, error_code(&v)), (404, "not_found"));

    // With the right key everything works.
    let (status, _, v) = publish(r#"{"channel":"a","data":"ok"}"#).await;
    assert_eq!(status, 200, "{v}");
    srv.shutdown().await;
}

#[tokio::test]
async fn api_requests_over_the_rate_limit_get_429() {
    let mut setup = Setup::default();
    setup.config.api.max_requests_per_second = 3;
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let (status, head, v) = call(srv.http, "GET", "/api/channels", None, None).await;
        if status == 429 {
            assert_eq!(error_code(&v), "rate_limited");
            assert!(head.contains("retry-after: 1"), "{head}");
        }
        statuses.push(status);
    }
    // A burst of one second's worth passes; the rest of six back-to-back requests does not
    // (refill is 3 per second, and six requests take far less than a second on loopback).
    assert_eq!(&statuses[..3], &[200, 200, 200], "{statuses:?}");
    assert!(statuses.contains(&429), "{statuses:?}");
    // Probes are not rate limited.
    let (status, _, _) = call(srv.http, "GET", "/readyz", None, None).await;
    assert_eq!(status, 200);
    srv.shutdown().await;
}

/// `name{labels} value` → value, for the sample whose name and labels start with `key`.
fn sample(page: &str, key: &str) -> f64 {
    page.lines()
        .find(|l| !l.starts_with('#') && l.rsplit_once(' ').is_some_and(|(k, _)| k == key))
        .and_then(|l| l.rsplit_once(' '))
        .and_then(|(_, v)| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {key} in\n{page}"))
}

#[tokio::test]
async fn metrics_move_as_traffic_flows_and_readiness_answers() {
    let srv = TestServer::start().await;
    let metrics = || async {
        let (status, _, body) = sockhub_testkit::http_exchange(
            srv.http,
            b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        )
        .await;
        assert_eq!(status, 200);
        body
    };
    let before = metrics().await;
    assert!(before.contains("# TYPE sockhub_connections gauge"));
    assert_eq!(
        sample(&before, "sockhub_connections{transport=\"ws\"}"),
        0.0
    );

    let mut a = WsClient::connect(&srv.ws_url("/ws")).await;
    let mut b = WsClient::connect(&srv.ws_url("/ws")).await;
    a.send_text("0123456789").await;
    assert_eq!(b.recv_text().await, "0123456789");
    let (status, _, _) = call(
        srv.http,
        "POST",
        "/api/publish",
        None,
        Some(r#"{"channel":"lobby","data":"x"}"#),
    )
    .await;
    assert_eq!(status, 200);
    a.recv_text().await;
    b.recv_text().await;

    let after = metrics().await;
    assert_eq!(sample(&after, "sockhub_connections{transport=\"ws\"}"), 2.0);
    assert_eq!(
        sample(&after, "sockhub_connections_opened_total{transport=\"ws\"}"),
        2.0
    );
    assert_eq!(sample(&after, "sockhub_messages_received_total"), 1.0);
    assert_eq!(sample(&after, "sockhub_publishes_total"), 2.0);
    assert_eq!(sample(&after, "sockhub_deliveries_total"), 3.0);
    // 16 bytes: a masked 10-byte text frame from a.
    assert_eq!(
        sample(&after, "sockhub_bytes_received_total{transport=\"ws\"}"),
        16.0
    );
    // 12 (b's relay) + 3 + 3 (the publish to both).
    assert_eq!(
        sample(&after, "sockhub_bytes_sent_total{transport=\"ws\"}"),
        18.0
    );
    assert_eq!(sample(&after, "sockhub_channels"), 1.0);

    let (status, _, v) = call(srv.http, "GET", "/readyz", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(v["status"], "ready");
    let (status, _, _) = call(srv.http, "GET", "/healthz", None, None).await;
    assert_eq!(status, 200);
    srv.shutdown().await;
}

#[tokio::test]
async fn exclude_session_skips_the_named_client() {
    let srv = TestServer::start().await;
    let mut a = WsClient::connect(&srv.ws_url("/ws?protocol=json")).await;
    let hello: serde_json::Value = serde_json::from_str(&a.recv_text().await).unwrap();
    let id = hello["session"].as_str().unwrap().to_string();
    let mut b = WsClient::connect(&srv.ws_url("/ws")).await;
    srv.wait_sessions(2).await;
    let body = format!(r#"{{"channel":"lobby","data":"not for a","exclude_session":"{id}"}}"#);
    let (status, _, v) = call(srv.http, "POST", "/api/publish", None, Some(&body)).await;
    assert_eq!((status, v["deliveries"].as_u64()), (200, Some(1)));
    assert_eq!(b.recv_text().await, "not for a");
    // a's next message is the one after, proving it got nothing before.
    call(
        srv.http,
        "POST",
        "/api/publish",
        None,
        Some(r#"{"channel":"lobby","data":"for all"}"#),
    )
    .await;
    let next: serde_json::Value = serde_json::from_str(&a.recv_text().await).unwrap();
    assert_eq!(next["data"], "for all");
    tokio::time::timeout(Duration::from_secs(5), b.recv_text())
        .await
        .expect("b gets the second publish too");
    srv.shutdown().await;
}
