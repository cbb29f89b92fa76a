//! Every transport end to end, and messages crossing between transports, over real loopback
//! sockets.

use sockhub::{Protocol, TcpFraming, TcpOptions, UdpOptions};
use sockhub_testkit::{
    http_request, upgrade_request, Setup, TcpClient, TestServer, UdpClient, WsClient,
};
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test]
async fn websocket_broadcast_reaches_the_others_but_not_the_sender() {
    let srv = TestServer::start().await;
    // The classic URL: the upgrade on `/`, default channel `lobby`.
    let mut a = WsClient::connect(&srv.ws_url("/")).await;
    let mut b = WsClient::connect(&srv.ws_url("/ws")).await;
    let mut c = WsClient::connect(&srv.ws_url("/ws?channel=lobby")).await;
    a.send_text("hello from a").await;
    assert_eq!(b.recv_text().await, "hello from a");
    assert_eq!(c.recv_text().await, "hello from a");
    // a gets b's next message first, which proves it did not receive its own.
    b.send_text("from b").await;
    assert_eq!(a.recv_text().await, "from b");
    a.send_binary(&[0, 159, 255]).await;
    assert_eq!(b.recv().await, WsMessage::binary(vec![0u8, 159, 255]));
    srv.shutdown().await;
}

#[tokio::test]
async fn channels_are_separate_and_repeatable_in_the_url() {
    let srv = TestServer::start().await;
    let mut both = WsClient::connect(&srv.ws_url("/ws?channel=red&channel=blue")).await;
    let mut red = WsClient::connect(&srv.ws_url("/ws?channel=red")).await;
    let mut blue = WsClient::connect(&srv.ws_url("/ws?channel=blue")).await;
    assert_eq!(srv.hub.subscribers("red"), 2);
    assert_eq!(srv.hub.subscribers("blue"), 2);
    red.send_text("r1").await;
    assert_eq!(both.recv_text().await, "r1");
    blue.send_text("b1").await;
    assert_eq!(both.recv_text().await, "b1");
    // A raw member of several of the sender's channels receives a broadcast once.
    both.send_text("to both").await;
    assert_eq!(red.recv_text().await, "to both");
    assert_eq!(blue.recv_text().await, "to both");
    red.send_text("r2").await;
    assert_eq!(
        both.recv_text().await,
        "r2",
        "no duplicate of 'to both' queued"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn a_channel_disappears_with_its_last_subscriber() {
    let srv = TestServer::start().await;
    let mut a = WsClient::connect(&srv.ws_url("/ws?channel=temp")).await;
    assert_eq!(srv.hub.channels().len(), 1);
    a.close().await;
    let hub = srv.hub.clone();
    sockhub_testkit::eventually("channel removed", || hub.channels().is_empty()).await;
    assert_eq!(hub.session_count(), 0);
    srv.shutdown().await;
}

#[tokio::test]
async fn classic_tcp_client_lines_reach_websocket() {
    let srv = TestServer::start().await;
    let mut ws = WsClient::connect(&srv.ws_url("/")).await;
    let mut tcp = TcpClient::connect(srv.tcp[0]).await;
    srv.wait_sessions(2).await;
    tcp.write(b"Ho\r\nfirst blood\r\n").await;
    assert_eq!(ws.recv_text().await, "Ho");
    assert_eq!(ws.recv_text().await, "first blood");
    srv.shutdown().await;
}

#[tokio::test]
async fn websocket_reaches_tcp_and_udp() {
    let srv = TestServer::start().await;
    let mut tcp = TcpClient::connect(srv.tcp[0]).await;
    srv.wait_sessions(1).await;
    let udp = UdpClient::connect(srv.udp).await;
    udp.send(b"udp joins").await; // a UDP peer becomes a session with its first datagram
    assert_eq!(tcp.read_line().await, "udp joins");
    let mut ws = WsClient::connect(&srv.ws_url("/")).await;
    ws.send_text("to everyone").await;
    assert_eq!(tcp.read_line().await, "to everyone");
    assert_eq!(udp.recv().await, b"to everyone");
    tcp.send_line("tcp speaking").await;
    assert_eq!(ws.recv_text().await, "tcp speaking");
    assert_eq!(udp.recv().await, b"tcp speaking");
    srv.shutdown().await;
}

#[tokio::test]
async fn udp_reaches_websocket() {
    let srv = TestServer::start().await;
    let mut ws = WsClient::connect(&srv.ws_url("/")).await;
    let udp = UdpClient::connect(srv.udp).await;
    udp.send("datagram ✓".as_bytes()).await;
    assert_eq!(ws.recv_text().await, "datagram ✓");
    // Non-UTF-8 datagrams arrive as binary messages.
    udp.send(&[0xff, 0x00]).await;
    assert_eq!(ws.recv().await, WsMessage::binary(vec![0xffu8, 0x00]));
    srv.shutdown().await;
}

#[tokio::test]
async fn length_prefixed_tcp_carries_binary_both_ways() {
    let setup = Setup {
        tcp: vec![TcpOptions {
            framing: TcpFraming::LengthPrefixed,
            ..TcpOptions::default()
        }],
        ..Setup::default()
    };
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    let mut game = TcpClient::connect(srv.tcp[0]).await;
    let mut ws = WsClient::connect(&srv.ws_url("/")).await;
    srv.wait_sessions(2).await;
    game.send_frame(&[1, 2, 3, b'\n', 0]).await;
    assert_eq!(
        ws.recv().await,
        WsMessage::binary(vec![1u8, 2, 3, b'\n', 0])
    );
    ws.send_text("state").await;
    assert_eq!(game.read_frame().await.unwrap(), b"state");
    srv.shutdown().await;
}

#[tokio::test]
async fn json_protocol_over_websocket() {
    let srv = TestServer::start().await;
    let mut j = WsClient::connect(&srv.ws_url("/ws?protocol=json")).await;
    let hello: serde_json::Value = serde_json::from_str(&j.recv_text().await).unwrap();
    assert_eq!(hello["type"], "connected");
    assert_eq!(hello["channels"], serde_json::json!(["lobby"]));
    j.send_text(r#"{"type":"subscribe","channel":"news"}"#)
        .await;
    assert_eq!(
        j.recv_text().await,
        r#"{"type":"subscribed","channel":"news"}"#
    );
    let mut raw = WsClient::connect(&srv.ws_url("/ws?channel=news")).await;
    raw.send_text("breaking").await;
    let ev: serde_json::Value = serde_json::from_str(&j.recv_text().await).unwrap();
    assert_eq!(ev["type"], "message");
    assert_eq!(ev["channel"], "news");
    assert_eq!(ev["data"], "breaking");
    j.send_text(r#"{"type":"publish","channel":"news","data":"thanks"}"#)
        .await;
    assert_eq!(raw.recv_text().await, "thanks");
    j.send_text(r#"{"type":"publish","channel":"news","data_base64":"AAE="}"#)
        .await;
    assert_eq!(raw.recv().await, WsMessage::binary(vec![0u8, 1]));
    j.send_text(r#"{"type":"ping","id":42}"#).await;
    assert_eq!(j.recv_text().await, r#"{"type":"pong","id":42}"#);
    j.send_text(r#"{"type":"dance"}"#).await;
    let err: serde_json::Value = serde_json::from_str(&j.recv_text().await).unwrap();
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "bad_request");
    j.send_text(r#"{"type":"subscribe","channel":"has space"}"#)
        .await;
    let err: serde_json::Value = serde_json::from_str(&j.recv_text().await).unwrap();
    assert_eq!(err["code"], "bad_channel");
    j.send_text(r#"{"type":"unsubscribe","channel":"news"}"#)
        .await;
    assert_eq!(
        j.recv_text().await,
        r#"{"type":"unsubscribed","channel":"news"}"#
    );
    assert_eq!(srv.hub.subscribers("news"), 1);
    srv.shutdown().await;
}

#[tokio::test]
async fn json_protocol_over_tcp_and_udp() {
    let setup = Setup {
        tcp: vec![TcpOptions {
            protocol: Protocol::Json,
            ..TcpOptions::default()
        }],
        udp: UdpOptions {
            protocol: Protocol::Json,
            ..UdpOptions::default()
        },
        ..Setup::default()
    };
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    let mut tcp = TcpClient::connect(srv.tcp[0]).await;
    assert!(tcp.read_line().await.starts_with(r#"{"type":"connected""#));
    let udp = UdpClient::connect(srv.udp).await;
    udp.send(br#"{"type":"subscribe","channel":"ops"}"#).await;
    // No `connected` greeting over UDP (it would answer a spoofed datagram with more bytes).
    assert_eq!(
        udp.recv().await,
        br#"{"type":"subscribed","channel":"ops"}"#
    );
    tcp.send_line(r#"{"type":"publish","channel":"ops","data":"multi\nline"}"#)
        .await;
    let ev: serde_json::Value = serde_json::from_slice(&udp.recv().await).unwrap();
    assert_eq!(ev["data"], "multi\nline");
    srv.shutdown().await;
}

#[tokio::test]
async fn library_operations_send_publish_and_kick() {
    let srv = TestServer::start().await;
    let mut a = WsClient::connect(&srv.ws_url("/ws?channel=x")).await;
    let mut tcp = TcpClient::connect(srv.tcp[0]).await;
    srv.wait_sessions(2).await;
    assert_eq!(srv.hub.publish("x", "from the app"), 1);
    assert_eq!(a.recv_text().await, "from the app");
    assert_eq!(srv.hub.publish("lobby", "lobby news"), 1);
    assert_eq!(tcp.read_line().await, "lobby news");
    // The WebSocket session is the first id; send to it alone, then kick it.
    let id = sockhub::SessionId(1);
    srv.hub.send(id, "just you").unwrap();
    assert_eq!(a.recv_text().await, "just you");
    assert!(srv.hub.close(id, "bye now"));
    let (_, closed) = a.closed().await;
    assert_eq!(closed.code, 4010);
    assert_eq!(closed.reason, "closed by server: bye now");
    srv.wait_sessions(1).await;
    assert_eq!(
        srv.hub.send(id, "too late"),
        Err(sockhub::SendError::NoSuchSession)
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn bad_upgrades_get_clear_http_errors() {
    let srv = TestServer::start().await;
    let (status, body) = http_request(srv.http, &upgrade_request("/ws?protocol=xml")).await;
    assert_eq!(status, 400);
    assert!(body.contains("unknown protocol"), "{body}");
    let (status, _) = http_request(
        srv.http,
        "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n",
    )
    .await;
    assert_eq!(status, 426);
    let (status, body) = http_request(srv.http, "GET / HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 200);
    assert!(body.contains("new WebSocket"), "the page at / is served");
    let (status, _) = http_request(srv.http, "GET /nope HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(status, 404);
    srv.shutdown().await;
}
