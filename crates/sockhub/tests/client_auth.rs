//! Client auth with signed tokens, on every transport: valid tokens are accepted, invalid or
//! expired ones refused with a clear reason, and a token's channel patterns are enforced.

use futures_util::StreamExt;
use sockhub::auth::{unix_now, Claims, TokenSecret};
use sockhub::Protocol;
use sockhub_testkit::{http_request, upgrade_request, Setup, TcpClient, TestServer, WsClient};
use tokio_tungstenite::tungstenite::Message as WsMessage;

const SECRET: &str = "test-secret";

fn token(user: &str, ttl: i64, channels: &[&str]) -> String {
    let exp = (unix_now() as i64 + ttl).max(0) as u64;
    TokenSecret::new(SECRET).mint(&Claims::new(user, exp, channels.iter().copied()))
}

async fn server() -> TestServer {
    let mut setup = Setup::default();
    setup.config.auth.token_secret = Some(SECRET.into());
    setup.tcp.push(sockhub::TcpOptions {
        protocol: Protocol::Json,
        ..Default::default()
    });
    TestServer::start_with(setup, sockhub::Broadcast).await
}

#[tokio::test]
async fn websocket_needs_a_valid_token_before_the_upgrade() {
    let srv = server().await;
    let refused = |path: String| async move {
        let (status, body) = http_request(srv.http, &upgrade_request(&path)).await;
        (status, body.trim().to_string())
    };
    assert_eq!(
        refused("/ws".into()).await,
        (401, "unauthorized: a token is required".into())
    );
    assert_eq!(
        refused(format!("/ws?token={}", token("alice", -10, &["*"]))).await,
        (401, "unauthorized: token expired".into())
    );
    let forged = TokenSecret::new("other").mint(&Claims::new("alice", unix_now() + 60, ["*"]));
    assert_eq!(
        refused(format!("/ws?token={forged}")).await,
        (401, "unauthorized: bad token signature".into())
    );
    assert_eq!(
        refused(format!("/ws?token={}", token("alice", 60, &["room-*"]))).await,
        (
            401,
            "unauthorized: channel \"lobby\" is not allowed by the session's token".into()
        )
    );
    assert_eq!(srv.hub.session_count(), 0);

    // Good tokens: in the query (browsers) or the Authorization header.
    let mut a = WsClient::connect(&srv.ws_url(&format!(
        "/ws?channel=room-1&token={}",
        token("alice", 60, &["room-*"])
    )))
    .await;
    let req = tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
        srv.ws_url("/ws?channel=room-1"),
    )
    .map(|mut r| {
        let value = format!("Bearer {}", token("bob", 60, &["room-1"]));
        r.headers_mut()
            .insert("authorization", value.parse().expect("header value"));
        r
    })
    .expect("request");
    let (mut b, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("bob connects");
    a.send_text("hi bob").await;
    let got = sockhub_testkit::within("bob's message", b.next()).await;
    assert_eq!(
        got.expect("a frame").expect("no error"),
        WsMessage::text("hi bob")
    );
    srv.wait_sessions(2).await;
    assert_eq!(srv.hub.subscribers("room-1"), 2);
    srv.shutdown().await;
}

#[tokio::test]
async fn json_subscribe_and_publish_outside_the_token_patterns_are_forbidden() {
    let srv = server().await;
    let t = token("carol", 60, &["lobby", "news-*"]);
    let mut c = WsClient::connect(&srv.ws_url(&format!("/ws?protocol=json&token={t}"))).await;
    let hello: serde_json::Value = serde_json::from_str(&c.recv_text().await).unwrap();
    assert_eq!(hello["type"], "connected");
    let session = hello["session"].as_str().unwrap().parse().unwrap();
    assert_eq!(
        srv.hub
            .session_info(sockhub::SessionId(session))
            .unwrap()
            .user
            .as_deref(),
        Some("carol")
    );
    c.send_text(r#"{"type":"subscribe","channel":"admin"}"#)
        .await;
    let e: serde_json::Value = serde_json::from_str(&c.recv_text().await).unwrap();
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    c.send_text(r#"{"type":"subscribe","channel":"news-eu"}"#)
        .await;
    let ok: serde_json::Value = serde_json::from_str(&c.recv_text().await).unwrap();
    assert_eq!(ok["type"], "subscribed");
    c.send_text(r#"{"type":"publish","channel":"admin","data":"x"}"#)
        .await;
    let e: serde_json::Value = serde_json::from_str(&c.recv_text().await).unwrap();
    assert_eq!(e["code"], "forbidden");
    srv.shutdown().await;
}

#[tokio::test]
async fn tcp_sends_auth_first_and_bad_tokens_get_an_error_line() {
    let srv = server().await;
    // No AUTH line: the first line is not a token.
    let mut t = TcpClient::connect(srv.tcp[0]).await;
    t.send_line("hello").await;
    assert_eq!(
        t.read_line().await,
        "ERROR 4001 unauthorized: first message must be AUTH <token>"
    );
    assert!(t.try_read_line().await.is_none(), "closed after the error");

    let mut t = TcpClient::connect(srv.tcp[0]).await;
    t.send_line(&format!("AUTH {}", token("dave", -1, &["*"])))
        .await;
    assert_eq!(
        t.read_line().await,
        "ERROR 4001 unauthorized: token expired"
    );

    // A good token, with the first message in the same segment as the AUTH line.
    let mut ws =
        WsClient::connect(&srv.ws_url(&format!("/ws?token={}", token("erin", 60, &["lobby"]))))
            .await;
    srv.wait_sessions(1).await;
    let mut t = TcpClient::connect(srv.tcp[0]).await;
    t.write(format!("AUTH {}\r\nfirst blood\r\n", token("dave", 60, &["*"])).as_bytes())
        .await;
    assert_eq!(ws.recv_text().await, "first blood");
    ws.send_text("hi tcp").await;
    assert_eq!(t.read_line().await, "hi tcp");

    // The json TCP listener accepts the json form and greets after it.
    let mut j = TcpClient::connect(srv.tcp[1]).await;
    j.send_line(&format!(
        r#"{{"type":"auth","token":"{}"}}"#,
        token("frank", 60, &["lobby"])
    ))
    .await;
    let hello: serde_json::Value = serde_json::from_str(&j.read_line().await).unwrap();
    assert_eq!(hello["type"], "connected");
    srv.shutdown().await;
}

#[tokio::test]
async fn udp_sends_auth_first_and_bad_tokens_get_an_error_datagram() {
    let srv = server().await;
    let mut ws =
        WsClient::connect(&srv.ws_url(&format!("/ws?token={}", token("erin", 60, &["lobby"]))))
            .await;
    srv.wait_sessions(1).await;

    // No AUTH: refused, with the error only because this datagram is big enough that the
    // answer stays within 3x of it (no amplification toward an unproven source).
    let raw = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    raw.connect(srv.udp).await.unwrap();
    let hello = "hello without any token at all, padded to be long enough";
    raw.send(hello.as_bytes()).await.unwrap();
    let mut buf = [0u8; 512];
    let n = sockhub_testkit::within("error datagram", raw.recv(&mut buf))
        .await
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap(),
        "ERROR 4001 unauthorized: first message must be AUTH <token>"
    );
    let bad = format!("AUTH {}", token("zed", -5, &["*"]));
    raw.send(bad.as_bytes()).await.unwrap();
    let n = sockhub_testkit::within("error datagram", raw.recv(&mut buf))
        .await
        .unwrap();
    assert_eq!(
        std::str::from_utf8(&buf[..n]).unwrap(),
        "ERROR 4001 unauthorized: token expired"
    );
    assert_eq!(srv.hub.session_count(), 1);

    // A good token opens the session (the AUTH datagram itself is not a message).
    let udp = sockhub_testkit::UdpClient::connect(srv.udp).await;
    udp.send(format!("AUTH {}", token("gina", 60, &["lobby"])).as_bytes())
        .await;
    srv.wait_sessions(2).await;
    udp.send(b"hi from udp").await;
    assert_eq!(ws.recv_text().await, "hi from udp");
    ws.send_text("hi udp").await;
    assert_eq!(udp.recv().await, b"hi udp");
    srv.shutdown().await;
}
