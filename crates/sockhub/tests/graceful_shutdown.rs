//! Shutdown stops accepting, delivers what was queued, tells every client (WebSocket close 1001,
//! a final TCP line, a UDP datagram) and returns.

use sockhub_testkit::{TcpClient, TestServer, UdpClient, WsClient};
use tokio_tungstenite::tungstenite::Message as WsMessage;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_drains_then_sends_1001_and_a_final_line() {
    let srv = TestServer::start().await;
    let mut ws = WsClient::connect(&srv.ws_url("/")).await;
    let mut tcp = TcpClient::connect(srv.tcp[0]).await;
    srv.wait_sessions(2).await;
    let udp = UdpClient::connect(srv.udp).await;
    udp.send(b"hello").await;
    assert_eq!(ws.recv_text().await, "hello");
    srv.wait_sessions(3).await;
    // Queued just before shutdown: delivered before the goodbye.
    for i in 0..100 {
        srv.hub.publish("lobby", format!("last words {i}"));
    }
    let http = srv.http;
    let tcp_addr = srv.tcp[0];
    srv.begin_shutdown();
    let (msgs, closed) = ws.closed().await;
    assert_eq!(msgs.len(), 100, "all 100 queued messages arrived first");
    assert_eq!(msgs.last(), Some(&WsMessage::text("last words 99")));
    assert_eq!(closed.code, 1001);
    assert_eq!(closed.reason, "server shutting down");
    let mut lines = vec![];
    while let Some(l) = tcp.try_read_line().await {
        lines.push(l);
    }
    assert_eq!(lines.len(), 102, "hello, 100 messages, goodbye");
    assert_eq!(lines[0], "hello");
    assert_eq!(lines[100], "last words 99");
    assert_eq!(lines[101], "ERROR 1001 server shutting down");
    let mut last = Vec::new();
    for _ in 0..100 {
        last = udp.recv().await;
    }
    assert_eq!(last, b"last words 99");
    assert_eq!(udp.recv().await, b"ERROR 1001 server shutting down");
    srv.shutdown().await;
    // Listeners are closed.
    assert!(tokio::net::TcpStream::connect(http).await.is_err());
    assert!(tokio::net::TcpStream::connect(tcp_addr).await.is_err());
}
