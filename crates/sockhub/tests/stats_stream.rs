//! The dashboard and its Server-Sent Events stats stream over real loopback HTTP: one event per
//! second that follows the hub, the API key (also as `?key=`), a bound on open streams, and an
//! end at shutdown that does not hold the shutdown up.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use sockhub::{ApiOptions, Broadcast};
use sockhub_testkit::{within, Setup, TestServer, WsClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// `dashboard::MAX_STATS_STREAMS` (the module is private to the crate).
const MAX_STATS_STREAMS: usize = 64;

/// An open `GET /api/stats/stream` response, read event by event.
struct Stream {
    socket: TcpStream,
    /// Bytes read and not yet de-chunked.
    raw: Vec<u8>,
    /// De-chunked body bytes not yet split into events.
    body: Vec<u8>,
    /// The response's status line and headers, lowercased.
    head: String,
    /// The last chunk (size 0) arrived: the response is complete.
    ended: bool,
}

/// One server-sent event.
#[derive(Debug)]
struct Event {
    name: String,
    data: String,
    retry: Option<String>,
}

impl Event {
    fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.data).unwrap_or_else(|e| panic!("{e}: {}", self.data))
    }
}

impl Stream {
    /// Sends the request and reads the head. Returns the status and, on 200, the stream.
    async fn open(addr: SocketAddr, path_and_query: &str, auth: Option<&str>) -> (u16, Stream) {
        let auth = auth.map_or(String::new(), |k| format!("Authorization: Bearer {k}\r\n"));
        let mut socket = TcpStream::connect(addr).await.expect("connect");
        socket
            .write_all(
                format!(
                    "GET {path_and_query} HTTP/1.1\r\nHost: localhost\r\nAccept: text/event-stream\r\n{auth}\r\n"
                )
                .as_bytes(),
            )
            .await
            .expect("write request");
        let mut s = Stream {
            socket,
            raw: Vec::new(),
            body: Vec::new(),
            head: String::new(),
            ended: false,
        };
        within("response head", async {
            loop {
                if let Some(end) = find(&s.raw, b"\r\n\r\n") {
                    s.head = String::from_utf8_lossy(&s.raw[..end]).to_lowercase();
                    s.raw.drain(..end + 4);
                    break;
                }
                assert!(s.fill().await, "connection closed before the response head");
            }
        })
        .await;
        let status = s
            .head
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        (status, s)
    }

    /// The body of a refusal (which has a `Content-Length`, unlike the stream).
    async fn error_body(&mut self) -> String {
        let len: usize = self
            .head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse().ok())
            .expect("content-length");
        within("error body", async {
            while self.raw.len() < len {
                assert!(self.fill().await, "connection closed in the body");
            }
        })
        .await;
        String::from_utf8_lossy(&self.raw[..len]).into_owned()
    }

    /// Reads more bytes; false at end of file.
    async fn fill(&mut self) -> bool {
        let mut buf = [0u8; 8192];
        let n = self.socket.read(&mut buf).await.expect("read");
        self.raw.extend_from_slice(&buf[..n]);
        n > 0
    }

    /// Moves whole chunks from `raw` to `body`.
    fn dechunk(&mut self) {
        while let Some(eol) = find(&self.raw, b"\r\n") {
            let size = usize::from_str_radix(String::from_utf8_lossy(&self.raw[..eol]).trim(), 16)
                .expect("chunk size");
            if size == 0 {
                self.ended = true;
                self.raw.clear();
                return;
            }
            let end = eol + 2 + size + 2;
            if self.raw.len() < end {
                return;
            }
            self.body
                .extend_from_slice(&self.raw[eol + 2..eol + 2 + size]);
            self.raw.drain(..end);
        }
    }

    /// The next event, or `None` once the response has ended.
    async fn next(&mut self) -> Option<Event> {
        within("next server-sent event", async {
            loop {
                self.dechunk();
                if let Some(end) = find(&self.body, b"\n\n") {
                    let text = String::from_utf8_lossy(&self.body[..end]).into_owned();
                    self.body.drain(..end + 2);
                    let field = |name: &str| {
                        text.lines()
                            .find_map(|l| l.strip_prefix(name).map(|v| v.trim().to_string()))
                    };
                    return Some(Event {
                        name: field("event:").unwrap_or_default(),
                        data: field("data:").unwrap_or_default(),
                        retry: field("retry:"),
                    });
                }
                if self.ended || !self.fill().await {
                    return None;
                }
            }
        })
        .await
    }

    /// Reads `stats` events until one satisfies `cond` (at most 10, about 10 seconds).
    async fn until(&mut self, what: &str, cond: impl Fn(&serde_json::Value) -> bool) {
        for _ in 0..10 {
            let ev = self.next().await.expect("stream ended");
            assert_eq!(ev.name, "stats", "{ev:?}");
            if cond(&ev.json()) {
                return;
            }
        }
        panic!("no stats event with {what} in 10 events");
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

async fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    sockhub_testkit::http_exchange(addr, req.as_bytes()).await
}

#[tokio::test]
async fn the_stream_sends_the_counters_every_second_and_follows_clients() {
    let srv = TestServer::start().await;
    let (status, mut s) = Stream::open(srv.http, "/api/stats/stream", None).await;
    assert_eq!(status, 200, "{}", s.head);
    assert!(
        s.head.contains("content-type: text/event-stream"),
        "{}",
        s.head
    );

    let first = s.next().await.expect("first event");
    assert_eq!(first.name, "stats");
    assert_eq!(
        first.retry.as_deref(),
        Some("1000"),
        "browsers reconnect after 1 s"
    );
    let v = first.json();
    assert_eq!(v["connections"]["total"], 0, "{v}");
    assert!(
        v["rates"].is_null(),
        "no rates without a previous sample: {v}"
    );
    assert_eq!(v["broker"], "memory");
    assert_eq!(v["counters"]["slow_consumer_disconnects"], 0);

    let started = Instant::now();
    let second = s.next().await.expect("second event").json();
    let gap = started.elapsed();
    assert!(
        gap > Duration::from_millis(500) && gap < Duration::from_secs(5),
        "events are about a second apart, got {gap:?}"
    );
    assert!(second["rates"]["messages_in"].is_number(), "{second}");

    let mut a = WsClient::connect(&srv.ws_url("/ws?channel=room-1")).await;
    let mut b = WsClient::connect(&srv.ws_url("/ws?channel=room-1")).await;
    s.until("two WebSocket clients in room-1", |v| {
        v["connections"]["ws"] == 2
            && v["channels"]["top"][0]["name"] == "room-1"
            && v["channels"]["top"][0]["subscribers"] == 2
    })
    .await;

    a.send_text("hello").await;
    assert_eq!(b.recv_text().await, "hello");
    s.until("the message counted in and out", |v| {
        v["counters"]["messages_in"] == 1 && v["counters"]["deliveries"] == 1
    })
    .await;

    a.close().await;
    b.close().await;
    s.until("no connections", |v| {
        v["connections"]["total"] == 0 && v["channels"]["count"] == 0
    })
    .await;
    srv.shutdown().await;
}

#[tokio::test]
async fn the_stream_needs_the_api_key_as_a_header_or_a_query_parameter() {
    let mut setup = Setup::default();
    setup.config.api = ApiOptions {
        key: Some("s3cret key".into()),
        ..ApiOptions::default()
    };
    let srv = TestServer::start_with(setup, Broadcast).await;

    let (status, s) = Stream::open(srv.http, "/api/stats/stream", None).await;
    assert_eq!(status, 401, "{}", s.head);
    assert!(s.head.contains("www-authenticate: bearer"), "{}", s.head);
    let (status, mut s) = Stream::open(srv.http, "/api/stats/stream?key=wrong", None).await;
    assert_eq!(status, 403, "{}", s.head);
    assert!(s.error_body().await.contains("invalid API key"));
    let (status, s) = Stream::open(srv.http, "/api/stats/stream?color=red", None).await;
    assert_eq!(status, 400, "unknown parameters are refused: {}", s.head);

    // EventSource cannot send headers: the key comes percent-encoded in the URL.
    let (status, mut s) = Stream::open(srv.http, "/api/stats/stream?key=s3cret%20key", None).await;
    assert_eq!(status, 200, "{}", s.head);
    assert_eq!(s.next().await.expect("event").name, "stats");
    let (status, mut s) = Stream::open(srv.http, "/api/stats/stream", Some("s3cret key")).await;
    assert_eq!(status, 200, "{}", s.head);
    assert_eq!(s.next().await.expect("event").name, "stats");

    // The page holds no data: it needs no key.
    let (status, head, page) = get(srv.http, "/dashboard").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        page.contains("new EventSource"),
        "the page is fed by the stream"
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn open_streams_are_bounded() {
    let srv = TestServer::start().await;
    let mut open = Vec::new();
    for _ in 0..MAX_STATS_STREAMS {
        let (status, s) = Stream::open(srv.http, "/api/stats/stream", None).await;
        assert_eq!(status, 200, "{}", s.head);
        open.push(s);
    }
    let (status, mut s) = Stream::open(srv.http, "/api/stats/stream", None).await;
    assert_eq!(status, 503, "{}", s.head);
    let body = s.error_body().await;
    assert!(body.contains("too_many_streams"), "{body}");

    // A closed stream frees its slot (once the server notices, at its next event).
    drop(open.pop());
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _) = Stream::open(srv.http, "/api/stats/stream", None).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "the slot was never freed");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn the_stream_ends_at_shutdown_without_delaying_it() {
    let mut setup = Setup::default();
    // Long enough that waiting on an open stream would show.
    setup.config.limits.close_timeout = Duration::from_secs(5);
    setup.config.limits.drain_timeout = Duration::from_secs(5);
    let srv = TestServer::start_with(setup, Broadcast).await;
    let (status, mut s) = Stream::open(srv.http, "/api/stats/stream", None).await;
    assert_eq!(status, 200);
    assert_eq!(s.next().await.expect("event").name, "stats");

    let started = Instant::now();
    let shutdown = tokio::spawn(srv.shutdown());
    let last = loop {
        match s.next().await.expect("a shutdown event before the end") {
            ev if ev.name == "stats" => continue,
            ev => break ev,
        }
    };
    assert_eq!(last.name, "shutdown");
    assert_eq!(last.json()["reason"], "server shutting down");
    assert!(
        s.next().await.is_none(),
        "the response ends after the shutdown event"
    );
    within("shutdown", shutdown).await.expect("shutdown task");
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "shutdown waited {:?} for the stream",
        started.elapsed()
    );
}

#[tokio::test]
async fn the_demo_page_and_the_upgrade_share_the_root_path() {
    let srv = TestServer::start().await;
    let (status, head, page) = get(srv.http, "/").await;
    assert_eq!(status, 200);
    assert!(head.contains("content-type: text/html"), "{head}");
    assert!(
        page.contains("new WebSocket("),
        "the page is a WebSocket client"
    );
    assert!(
        page.contains("protocol: 'json'"),
        "it speaks the json protocol"
    );

    // A raw client upgrading on `/` still reaches the hub.
    let mut a = WsClient::connect(&srv.ws_url("/")).await;
    let mut b = WsClient::connect(&srv.ws_url("/ws")).await;
    srv.wait_sessions(2).await;
    a.send_text("from the root path").await;
    assert_eq!(b.recv_text().await, "from the root path");
    srv.shutdown().await;
}

#[tokio::test]
async fn admission_says_why_a_browser_would_be_refused() {
    let mut setup = Setup::default();
    setup.config.limits.max_connections = 1;
    let srv = TestServer::start_with(setup, Broadcast).await;
    let (status, head, body) = get(srv.http, "/admission").await;
    assert_eq!(status, 200);
    assert!(head.contains("cache-control: no-store"), "{head}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(v, serde_json::json!({ "accepting": true }));

    let _only = WsClient::connect(&srv.ws_url("/ws")).await;
    srv.wait_sessions(1).await;
    let (_, _, body) = get(srv.http, "/admission").await;
    let v: serde_json::Value = serde_json::from_str(&body).expect("json");
    assert_eq!(
        v,
        serde_json::json!({
            "accepting": false,
            "code": 1013,
            "reason": "server full: all 1 connections in use, retry later",
        })
    );
    srv.shutdown().await;
}
