//! permessage-deflate (RFC 7692): negotiated only when enabled, compressed both ways, limits on
//! inflated sizes, and a broadcast compressed once for every subscriber.

use bytes::BytesMut;
use sockhub::ws::codec::{encode_frame, Decoder, Event, OpCode, Role};
use sockhub::ws::deflate::{compress, Agreed, DeflateConfig, Inflater};
use sockhub::{Limits, ServerConfig};
use sockhub_testkit::{within, Setup, TestServer, WsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn setup(enabled: bool) -> Setup {
    let mut s = Setup::default();
    s.config = ServerConfig {
        limits: Limits {
            max_message_size: 64 * 1024,
            close_timeout: s.config.limits.close_timeout,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    s.config.ws.deflate = DeflateConfig {
        enabled,
        no_context_takeover: false,
    };
    s
}

/// A minimal client speaking permessage-deflate with our own codec in client role.
struct DeflateClient {
    stream: TcpStream,
    decoder: Decoder,
    inflater: Inflater,
    buf: BytesMut,
    /// The extensions header the server answered with.
    extensions: Option<String>,
}

impl DeflateClient {
    async fn connect(srv: &TestServer, path: &str, offer: &str) -> DeflateClient {
        let mut stream = TcpStream::connect(srv.http).await.unwrap();
        let req = format!(
            "GET {path} HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Extensions: {offer}\r\n\r\n"
        );
        stream.write_all(req.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        within("101", async {
            let mut b = [0u8; 1];
            while !head.ends_with(b"\r\n\r\n") {
                stream.read_exact(&mut b).await.unwrap();
                head.push(b[0]);
            }
        })
        .await;
        let head = String::from_utf8(head).unwrap();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let extensions = head
            .lines()
            .find_map(|l| l.strip_prefix("sec-websocket-extensions: "))
            .map(str::to_string);
        let mut decoder = Decoder::new(Role::Client, 1 << 20);
        decoder.set_compression(extensions.is_some());
        DeflateClient {
            stream,
            decoder,
            inflater: Inflater::new(&Agreed {
                client_no_context_takeover: true,
                server_window_bits: 15,
            }),
            buf: BytesMut::new(),
            extensions,
        }
    }

    /// Sends a text message compressed (RSV1) as a client would.
    async fn send_compressed(&mut self, text: &str) {
        let c = compress(text.as_bytes(), 15).expect("compressible");
        let mut frame = BytesMut::new();
        encode_frame(OpCode::Text, &c, Some([1, 2, 3, 4]), &mut frame);
        frame[0] |= 0x40;
        self.stream.write_all(&frame).await.unwrap();
    }

    /// The next event; compressed messages are inflated. Returns (was_compressed, event).
    async fn next(&mut self) -> (bool, Event) {
        within("a frame", async {
            loop {
                while !self.buf.is_empty() {
                    let (used, ev) = self.decoder.decode(&self.buf).unwrap();
                    let _ = self.buf.split_to(used);
                    match ev {
                        Some(Event::Compressed { text, payload }) => {
                            let data = self.inflater.inflate(&payload, 1 << 20).unwrap();
                            let b = bytes::Bytes::from(data);
                            return (
                                true,
                                if text {
                                    Event::Text(b)
                                } else {
                                    Event::Binary(b)
                                },
                            );
                        }
                        Some(ev) => return (false, ev),
                        None => {}
                    }
                }
                let n = self.stream.read_buf(&mut self.buf).await.unwrap();
                assert!(n > 0, "connection closed");
            }
        })
        .await
    }
}

#[tokio::test]
async fn not_negotiated_unless_enabled() {
    let srv = TestServer::start_with(setup(false), sockhub::Broadcast).await;
    let c = DeflateClient::connect(&srv, "/ws", "permessage-deflate; client_max_window_bits").await;
    assert_eq!(c.extensions, None);
    srv.shutdown().await;
}

#[tokio::test]
async fn compressed_both_ways_and_shared_by_a_broadcast() {
    let srv = TestServer::start_with(setup(true), sockhub::Broadcast).await;
    let mut a =
        DeflateClient::connect(&srv, "/ws", "permessage-deflate; client_max_window_bits").await;
    assert_eq!(
        a.extensions.as_deref(),
        Some("permessage-deflate; server_no_context_takeover")
    );
    let mut b = DeflateClient::connect(&srv, "/ws", "permessage-deflate").await;
    let mut plain = WsClient::connect(&srv.ws_url("/ws")).await; // no offer: uncompressed
    let long = "sockhub compresses repeated text ".repeat(40);
    a.send_compressed(&long).await;
    let (compressed, ev) = b.next().await;
    assert!(
        compressed,
        "a long message reaches a deflate client compressed"
    );
    assert_eq!(ev, Event::Text(long.clone().into()));
    assert_eq!(
        plain.recv_text().await,
        long,
        "and a plain client uncompressed"
    );
    // Short messages are not worth compressing.
    plain.send_text("hi").await;
    assert_eq!(b.next().await, (false, Event::Text("hi".into())));
    srv.shutdown().await;
}

#[tokio::test]
async fn inflated_size_is_limited_1009() {
    let srv = TestServer::start_with(setup(true), sockhub::Broadcast).await;
    let mut a = DeflateClient::connect(&srv, "/ws", "permessage-deflate").await;
    // 1 MiB of 'a' compresses to a few KB: under the 64 KiB limit on the wire, far over it
    // inflated.
    a.send_compressed(&"a".repeat(1 << 20)).await;
    match a.next().await {
        (_, Event::Close(Some(c))) => assert_eq!(c.code, 1009),
        other => panic!("expected close 1009, got {other:?}"),
    }
    let mut x = WsClient::connect(&srv.ws_url("/ws")).await;
    let mut y = WsClient::connect(&srv.ws_url("/ws")).await;
    x.send_text("still serving").await;
    assert_eq!(y.recv_text().await, "still serving");
    srv.shutdown().await;
}

#[tokio::test]
async fn rsv1_without_negotiation_is_a_protocol_error() {
    let srv = TestServer::start_with(setup(false), sockhub::Broadcast).await;
    let mut a = DeflateClient::connect(&srv, "/ws", "x-unknown").await;
    a.decoder.set_compression(false);
    a.send_compressed(&"z".repeat(200)).await;
    match a.next().await {
        (_, Event::Close(Some(c))) => assert_eq!(c.code, 1002),
        other => panic!("expected close 1002, got {other:?}"),
    }
    srv.shutdown().await;
}
