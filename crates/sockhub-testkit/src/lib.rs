//! Test helpers for sockhub: a server on OS-chosen loopback ports, a client per transport, and
//! bounded waits. Every wait here ends within [`WAIT`] or fails the test with a message; nothing
//! sleeps for a fixed time to let something happen.

pub mod brokers;
mod http;
pub mod pusher;

pub use http::http_exchange;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use sockhub::{Broadcast, Handler, Hub, Listeners, Server, ServerConfig, TcpOptions, UdpOptions};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::{self, Message as WsMessage};
use tokio_util::sync::CancellationToken;

pub use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

/// The longest any single expected event may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `fut` for at most [`WAIT`], panicking with `what` if it takes longer.
pub async fn within<T>(what: &str, fut: impl Future<Output = T>) -> T {
    match tokio::time::timeout(WAIT, fut).await {
        Ok(v) => v,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// Polls `cond` until it holds (checking every millisecond), for at most [`WAIT`]. For state
/// that has no event to await, such as "the server has registered the TCP session".
pub async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    within(what, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await
}

/// A server running in the test's runtime on ephemeral loopback ports.
pub struct TestServer {
    /// HTTP + WebSocket address.
    pub http: SocketAddr,
    /// TCP listener addresses, in the order of the options given.
    pub tcp: Vec<SocketAddr>,
    /// UDP address.
    pub udp: SocketAddr,
    /// The server's hub.
    pub hub: Hub,
    stop: CancellationToken,
    task: JoinHandle<()>,
}

/// What to start.
pub struct Setup {
    /// Limits and WebSocket options.
    pub config: ServerConfig,
    /// One TCP listener per entry.
    pub tcp: Vec<TcpOptions>,
    /// UDP options.
    pub udp: UdpOptions,
}

impl Default for Setup {
    /// Default server settings, except that a client which does not answer the server's close
    /// is dropped after 250 ms instead of 2 s (test clients often stop reading first).
    fn default() -> Self {
        let mut config = ServerConfig::default();
        config.limits.close_timeout = Duration::from_millis(250);
        Setup {
            config,
            tcp: vec![TcpOptions::default()],
            udp: UdpOptions::default(),
        }
    }
}

impl Setup {
    /// The default setup with these limits (keeping the test-friendly `close_timeout`).
    pub fn with_limits(limits: sockhub::Limits) -> Setup {
        let mut s = Setup::default();
        s.config.limits = sockhub::Limits {
            close_timeout: s.config.limits.close_timeout,
            ..limits
        };
        s
    }
}

impl TestServer {
    /// A broadcast server with these limits (see [`Setup::with_limits`]).
    pub async fn start_limits(limits: sockhub::Limits) -> TestServer {
        TestServer::start_with(Setup::with_limits(limits), Broadcast).await
    }

    /// Relays one message between two fresh WebSocket clients on channel `health` and returns
    /// how long the relay took: the "a healthy client is still served" check after a fault.
    pub async fn relay_check(&self) -> Duration {
        let mut a = WsClient::connect(&self.ws_url("/ws?channel=health")).await;
        let mut b = WsClient::connect(&self.ws_url("/ws?channel=health")).await;
        let t = std::time::Instant::now();
        a.send_text("still here").await;
        assert_eq!(b.recv_text().await, "still here");
        t.elapsed()
    }

    /// The default server (broadcast behaviour, one TCP lines listener, UDP).
    pub async fn start() -> TestServer {
        TestServer::start_with(Setup::default(), Broadcast).await
    }

    /// A server with custom setup and handler.
    pub async fn start_with(setup: Setup, handler: impl Handler) -> TestServer {
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind http");
        let mut tcp = Vec::new();
        for o in setup.tcp {
            tcp.push((TcpListener::bind("127.0.0.1:0").await.expect("bind tcp"), o));
        }
        let udp = UdpSocket::bind("127.0.0.1:0").await.expect("bind udp");
        let http_addr = http.local_addr().unwrap();
        let tcp_addrs = tcp.iter().map(|(l, _)| l.local_addr().unwrap()).collect();
        let udp_addr = udp.local_addr().unwrap();
        let server = Server::with_handler(setup.config, handler);
        let hub = server.hub();
        let stop = CancellationToken::new();
        let listeners = Listeners {
            http: Some(http),
            tcp,
            udp: Some((udp, setup.udp)),
        };
        let stopped = stop.clone().cancelled_owned();
        let task = tokio::spawn(async move { server.serve(listeners, stopped).await });
        TestServer {
            http: http_addr,
            tcp: tcp_addrs,
            udp: udp_addr,
            hub,
            stop,
            task,
        }
    }

    /// `ws://HOST:PORT{path_and_query}`.
    pub fn ws_url(&self, path_and_query: &str) -> String {
        format!("ws://{}{}", self.http, path_and_query)
    }

    /// Starts a graceful shutdown without waiting for it.
    pub fn begin_shutdown(&self) {
        self.stop.cancel();
    }

    /// Shuts down and waits for `serve` to return.
    pub async fn shutdown(self) {
        self.stop.cancel();
        within("server shutdown", self.task)
            .await
            .expect("server task");
    }

    /// Waits until the hub has `n` sessions open.
    pub async fn wait_sessions(&self, n: usize) {
        let hub = self.hub.clone();
        eventually(&format!("{n} sessions"), || hub.session_count() == n).await;
    }
}

/// A WebSocket client (tokio-tungstenite: an independent implementation of RFC 6455).
pub struct WsClient {
    ws: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
}

/// How a WebSocket connection ended, as the client saw it.
#[derive(Debug, PartialEq, Eq)]
pub struct Closed {
    /// Close code (1005 if the frame had none, 1006 if the connection dropped without one).
    pub code: u16,
    /// Close reason.
    pub reason: String,
}

impl WsClient {
    /// Connects, panicking on failure.
    pub async fn connect(url: &str) -> WsClient {
        let (ws, _) = within("ws connect", tokio_tungstenite::connect_async(url))
            .await
            .unwrap_or_else(|e| panic!("ws connect {url}: {e}"));
        WsClient { ws }
    }

    /// Connects with a raw config (e.g. a larger max message size for the client side).
    pub async fn try_connect(url: &str) -> Result<WsClient, tungstenite::Error> {
        let (ws, _) = within("ws connect", tokio_tungstenite::connect_async(url)).await?;
        Ok(WsClient { ws })
    }

    /// Sends a text message.
    pub async fn send_text(&mut self, text: &str) {
        self.ws.send(WsMessage::text(text)).await.expect("ws send");
    }

    /// Sends a binary message.
    pub async fn send_binary(&mut self, data: &[u8]) {
        self.ws
            .send(WsMessage::binary(data.to_vec()))
            .await
            .expect("ws send");
    }

    /// Sends any tungstenite message.
    pub async fn send(&mut self, m: WsMessage) -> Result<(), tungstenite::Error> {
        self.ws.send(m).await
    }

    /// The next text or binary message (pings are answered by tungstenite and skipped).
    pub async fn recv(&mut self) -> WsMessage {
        within("ws message", async {
            loop {
                match self.ws.next().await {
                    Some(Ok(m @ (WsMessage::Text(_) | WsMessage::Binary(_)))) => return m,
                    Some(Ok(WsMessage::Close(f))) => {
                        panic!("closed while expecting a message: {f:?}")
                    }
                    Some(Ok(_)) => {}
                    Some(Err(e)) => panic!("ws error while expecting a message: {e}"),
                    None => panic!("ws ended while expecting a message"),
                }
            }
        })
        .await
    }

    /// The next text message.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            WsMessage::Text(t) => t.to_string(),
            other => panic!("expected text, got {other:?}"),
        }
    }

    /// Reads until the server closes; returns its close code and reason. Messages before the
    /// close are returned too.
    pub async fn closed(&mut self) -> (Vec<WsMessage>, Closed) {
        within("ws close", async {
            let mut msgs = Vec::new();
            loop {
                match self.ws.next().await {
                    Some(Ok(WsMessage::Close(f))) => {
                        let c = match f {
                            Some(f) => Closed {
                                code: f.code.into(),
                                reason: f.reason.to_string(),
                            },
                            None => Closed {
                                code: 1005,
                                reason: String::new(),
                            },
                        };
                        // Let tungstenite finish the closing handshake.
                        while let Some(Ok(_)) = self.ws.next().await {}
                        return (msgs, c);
                    }
                    Some(Ok(m @ (WsMessage::Text(_) | WsMessage::Binary(_)))) => msgs.push(m),
                    Some(Ok(_)) => {}
                    Some(Err(_)) | None => {
                        return (
                            msgs,
                            Closed {
                                code: 1006,
                                reason: String::new(),
                            },
                        )
                    }
                }
            }
        })
        .await
    }

    /// Starts the close handshake from the client side.
    pub async fn close(&mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The underlying stream, for tests that need raw control.
    pub fn inner(
        &mut self,
    ) -> &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>> {
        &mut self.ws
    }
}

/// Sends a raw HTTP request and returns the status code and body (for refused upgrades).
pub async fn http_request(addr: SocketAddr, request: &str) -> (u16, String) {
    within("http response", async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(request.as_bytes()).await.expect("write");
        let mut buf = Vec::new();
        // The server closes refused connections or answers with Content-Length; read until the
        // headers and the declared body are in.
        let mut chunk = [0u8; 4096];
        loop {
            let n = s.read(&mut chunk).await.unwrap_or(0);
            buf.extend_from_slice(&chunk[..n]);
            if let Some(end) = find(&buf, b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&buf[..end]).to_string();
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if buf.len() >= end + 4 + len || n == 0 {
                    let status = head
                        .split_whitespace()
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    let body = String::from_utf8_lossy(&buf[end + 4..]).to_string();
                    return (status, body);
                }
            }
            if n == 0 {
                return (0, String::from_utf8_lossy(&buf).to_string());
            }
        }
    })
    .await
}

/// A WebSocket upgrade request for `path` (for [`http_request`]).
pub fn upgrade_request(path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A TCP client for the line framing.
pub struct TcpClient {
    reader: BufReader<tokio::net::tcp::OwnedReadHalf>,
    writer: tokio::net::tcp::OwnedWriteHalf,
}

impl TcpClient {
    /// Connects.
    pub async fn connect(addr: SocketAddr) -> TcpClient {
        let s = within("tcp connect", TcpStream::connect(addr))
            .await
            .expect("tcp connect");
        let (r, w) = s.into_split();
        TcpClient {
            reader: BufReader::new(r),
            writer: w,
        }
    }

    /// Writes bytes as they are.
    pub async fn write(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).await.expect("tcp write");
    }

    /// Writes one line (adds `\n`).
    pub async fn send_line(&mut self, line: &str) {
        self.write(format!("{line}\n").as_bytes()).await;
    }

    /// The next line without its terminator; panics on EOF.
    pub async fn read_line(&mut self) -> String {
        self.try_read_line()
            .await
            .expect("connection closed while expecting a line")
    }

    /// The next line, or `None` at EOF.
    pub async fn try_read_line(&mut self) -> Option<String> {
        within("tcp line", async {
            let mut line = String::new();
            match self.reader.read_line(&mut line).await {
                Ok(0) => None,
                Ok(_) => Some(line.trim_end_matches(['\n', '\r']).to_string()),
                Err(_) => None,
            }
        })
        .await
    }

    /// Reads everything until the server closes.
    pub async fn read_to_end(&mut self) -> Vec<u8> {
        within("tcp eof", async {
            let mut v = Vec::new();
            let _ = self.reader.read_to_end(&mut v).await;
            v
        })
        .await
    }

    /// One length-prefixed frame's payload, or `None` at EOF.
    pub async fn read_frame(&mut self) -> Option<Vec<u8>> {
        within("tcp frame", async {
            let mut len = [0u8; 4];
            self.reader.read_exact(&mut len).await.ok()?;
            let mut payload = vec![0; u32::from_be_bytes(len) as usize];
            self.reader.read_exact(&mut payload).await.ok()?;
            Some(payload)
        })
        .await
    }

    /// Writes one length-prefixed frame.
    pub async fn send_frame(&mut self, payload: &[u8]) {
        let mut v = (payload.len() as u32).to_be_bytes().to_vec();
        v.extend_from_slice(payload);
        self.write(&v).await;
    }
}

/// A UDP client connected to the server's socket. It completes sockhub's return-routability
/// exchange by itself (see `sockhub`'s UDP docs): before its first datagram it asks for a cookie
/// (`SOCKHUB-COOKIE`) and echoes it, which opens its session already validated, so it receives
/// every broadcast (with client auth on, the echo repeated after the first datagram, `AUTH`,
/// does that); any cookie received later is echoed and never returned by [`UdpClient::recv`].
/// For a source that never echoes, use a plain `UdpSocket`.
pub struct UdpClient {
    socket: UdpSocket,
    /// Whether the first datagram (and with it the cookie exchange) was sent.
    started: std::sync::atomic::AtomicBool,
    /// Datagrams received while waiting for the cookie, handed out by `recv` first.
    early: std::sync::Mutex<std::collections::VecDeque<Vec<u8>>>,
}

/// The raw form of a cookie request; a cookie is this, a space and 16 hex digits.
const COOKIE_REQUEST: &[u8] = b"SOCKHUB-COOKIE";

/// Whether `d` is a cookie from the server (raw or json form), to be echoed.
pub fn is_cookie(d: &[u8]) -> bool {
    d.starts_with(b"SOCKHUB-COOKIE ") || d.starts_with(br#"{"type":"cookie","#)
}

impl UdpClient {
    /// Binds an ephemeral loopback port and connects it to `server`.
    pub async fn connect(server: SocketAddr) -> UdpClient {
        let socket = UdpSocket::bind("127.0.0.1:0").await.expect("udp bind");
        socket.connect(server).await.expect("udp connect");
        UdpClient {
            socket,
            started: Default::default(),
            early: Default::default(),
        }
    }

    /// The client's own address (as the server sees it).
    pub fn local_addr(&self) -> SocketAddr {
        self.socket.local_addr().expect("udp local addr")
    }

    /// Sends one datagram (the first one wrapped in the cookie exchange).
    pub async fn send(&self, payload: &[u8]) {
        let first = !self
            .started
            .swap(true, std::sync::atomic::Ordering::Relaxed);
        if first {
            self.socket.send(COOKIE_REQUEST).await.expect("udp send");
            let cookie = self.recv_raw(true).await;
            // The server reads the echo before the payload: the session is validated first.
            self.socket.send(&cookie).await.expect("udp send");
            self.socket.send(payload).await.expect("udp send");
            // Once more after it: with client auth the session opens only with the `AUTH`
            // datagram, so the first echo found none (a duplicate is ignored).
            self.socket.send(&cookie).await.expect("udp send");
        } else {
            self.socket.send(payload).await.expect("udp send");
        }
    }

    /// The next datagram (cookies are echoed and skipped).
    pub async fn recv(&self) -> Vec<u8> {
        if let Some(d) = self.early.lock().unwrap().pop_front() {
            return d;
        }
        self.recv_raw(false).await
    }

    /// The next datagram from the socket: a cookie when `want_cookie` (other datagrams are
    /// kept for `recv`), else the next non-cookie datagram (cookies are echoed).
    async fn recv_raw(&self, want_cookie: bool) -> Vec<u8> {
        within("udp datagram", async {
            let mut buf = vec![0u8; 65_536];
            loop {
                let n = self.socket.recv(&mut buf).await.expect("udp recv");
                let d = buf[..n].to_vec();
                match (is_cookie(&d), want_cookie) {
                    (true, true) => return d,
                    (true, false) => self.socket.send(&d).await.map(drop).expect("udp send"),
                    (false, true) => self.early.lock().unwrap().push_back(d),
                    (false, false) => return d,
                }
            }
        })
        .await
    }
}
