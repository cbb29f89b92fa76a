//! Several `sockhub serve` nodes on one real Redis and on one real NATS (started here on free
//! ports): a publish on any node reaches every subscriber on every node exactly once and in
//! order; answers are cluster-wide; sessions are reachable from any node; a broker restart is
//! survived, visible and counted; subscriptions are released.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::{Sockhub, WAIT};
use sockhub_testkit::brokers::{NatsServer, RedisServer};
use sockhub_testkit::{TcpClient, WsClient};

/// A keep-alive HTTP/1.1 connection (blocking), for thousands of API calls in a row.
struct Http {
    reader: BufReader<TcpStream>,
}

impl Http {
    fn connect(addr: SocketAddr) -> Http {
        let s = TcpStream::connect_timeout(&addr, WAIT).expect("http connect");
        s.set_read_timeout(Some(WAIT)).unwrap();
        s.set_nodelay(true).unwrap();
        Http {
            reader: BufReader::new(s),
        }
    }

    fn call(&mut self, method: &str, path: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        );
        self.reader
            .get_mut()
            .write_all(req.as_bytes())
            .expect("write");
        let mut status = 0;
        let mut len = 0;
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).expect("read head");
            let line = line.trim_end();
            if line.is_empty() {
                break;
            }
            if status == 0 {
                status = line
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .unwrap_or(0);
            } else if let Some((k, v)) = line.split_once(':') {
                if k.eq_ignore_ascii_case("content-length") {
                    len = v.trim().parse().unwrap_or(0);
                }
            }
        }
        let mut body = vec![0; len];
        self.reader.read_exact(&mut body).expect("read body");
        (status, String::from_utf8_lossy(&body).into_owned())
    }

    fn json(&mut self, path: &str) -> serde_json::Value {
        let (status, body) = self.call("GET", path, "");
        assert_eq!(status, 200, "{path}: {body}");
        serde_json::from_str(&body).expect("json")
    }
}

/// A node. Its outboxes hold a whole test stream (10,000 frames), so that a test client
/// falling behind on a loaded machine is not disconnected as a slow consumer: that policy has
/// its own tests, these are about relaying.
fn node(broker: &str, name: &str, prefix: &str) -> Sockhub {
    let config = std::env::temp_dir().join(format!("sockhub-cluster-{}.toml", std::process::id()));
    std::fs::write(&config, "[limits]\nmax_outbox_messages = 65536\n").expect("config");
    Sockhub::serve(&[
        "--config",
        config.to_str().expect("utf-8 path"),
        "--broker",
        broker,
        "--node-id",
        name,
        "--broker-prefix",
        prefix,
        "--log",
        "info",
    ])
}

fn http(n: &Sockhub) -> Http {
    Http::connect(n.http.expect("http"))
}

/// Waits until `check` holds for the JSON at `path` on `n` (bounded).
fn wait_json(n: &Sockhub, path: &str, what: &str, check: impl Fn(&serde_json::Value) -> bool) {
    let mut h = http(n);
    let deadline = Instant::now() + WAIT;
    loop {
        let v = h.json(path);
        if check(&v) {
            return;
        }
        assert!(Instant::now() < deadline, "{what}: last {path} = {v}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Subscribers of `channel` on every node, as `n` sees the cluster.
fn cluster_subscribers(v: &serde_json::Value, channel: &str) -> u64 {
    v["channels"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == channel)
        .and_then(|c| c["subscribers"].as_u64())
        .unwrap_or(0)
}

/// One metric sample from a node's `/metrics`.
fn metric(n: &Sockhub, name: &str) -> f64 {
    let (status, page) = http(n).call("GET", "/metrics", "");
    assert_eq!(status, 200);
    page.lines()
        .find_map(|l| l.strip_prefix(&format!("{name} ")))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{page}"))
}

const MESSAGES: usize = 10_000;

/// Appends numbered messages to `got` until its last is at least `at_least`.
async fn receive_until(client: &mut WsClient, got: &mut Vec<u64>, at_least: u64) {
    while got.last().map_or(true, |&l| l < at_least) {
        got.push(client.recv_text().await.parse().expect("a number"));
    }
}

async fn three_nodes_deliver_every_message_once_in_order(url: &str, prefix: &str) {
    let mut a = node(url, "node-a", prefix);
    let mut b = node(url, "node-b", prefix);
    let mut c = node(url, "node-c", prefix);
    let mut ws = WsClient::connect(&a.ws_url("/ws")).await;
    let mut tcp = TcpClient::connect(b.tcp.expect("tcp")).await;
    let mut local = WsClient::connect(&c.ws_url("/ws")).await;
    // C sees both other nodes' subscribers (from their heartbeats, sent after subscribing).
    wait_json(&c, "/api/channels", "cluster-wide lobby count", |v| {
        cluster_subscribers(v, "lobby") == 3
    });
    let stats = http(&c).json("/api/stats");
    assert_eq!(stats["cluster"]["connections"], 3, "{stats}");
    assert_eq!(
        stats["cluster"]["nodes"].as_array().map(Vec::len),
        Some(2),
        "{stats}"
    );

    let c_http = c.http.expect("http");
    let publisher = std::thread::spawn(move || {
        let mut h = Http::connect(c_http);
        for i in 0..MESSAGES {
            let (status, body) = h.call(
                "POST",
                "/api/publish",
                &format!(r#"{{"channel":"lobby","data":"m{i}"}}"#),
            );
            assert_eq!(status, 200, "{body}");
        }
    });
    let ws_task = tokio::spawn(async move {
        for i in 0..MESSAGES {
            assert_eq!(ws.recv_text().await, format!("m{i}"), "ws client on node A");
        }
        ws
    });
    let local_task = tokio::spawn(async move {
        for i in 0..MESSAGES {
            assert_eq!(
                local.recv_text().await,
                format!("m{i}"),
                "ws client on node C"
            );
        }
        local
    });
    for i in 0..MESSAGES {
        assert_eq!(
            tcp.read_line().await,
            format!("m{i}"),
            "tcp client on node B"
        );
    }
    let mut ws = ws_task.await.expect("ws client");
    let mut local = local_task.await.expect("local client");
    publisher.join().expect("publisher");
    // Exactly once: nothing more arrives after a final marker.
    http(&a).call(
        "POST",
        "/api/publish",
        r#"{"channel":"lobby","data":"end"}"#,
    );
    assert_eq!(ws.recv_text().await, "end");
    assert_eq!(tcp.read_line().await, "end");
    assert_eq!(local.recv_text().await, "end");
    assert_eq!(metric(&c, "sockhub_broker_relay_failed_total"), 0.0);

    ws.close().await;
    local.close().await;
    drop(tcp);
    for n in [&a, &b, &c] {
        wait_json(n, "/api/stats", "sessions gone", |v| v["connections"] == 0);
    }
    for n in [&mut a, &mut b, &mut c] {
        assert!(n.stop("TERM").success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_redis_deliver_every_message_once_in_order() {
    let redis = RedisServer::start();
    let prefix = "t3redis";
    three_nodes_deliver_every_message_once_in_order(&redis.url(), prefix).await;
    // Every channel subscription was released (heartbeat/control subjects go with the nodes).
    let left = redis.cli(&["PUBSUB", "CHANNELS", &format!("{prefix}:*")]);
    assert!(left.is_empty(), "subscriptions left behind: {left:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_on_nats_deliver_every_message_once_in_order() {
    let nats = NatsServer::start();
    three_nodes_deliver_every_message_once_in_order(&nats.url(), "t3nats").await;
    let subs = nats_subscriptions(&nats);
    assert!(
        subs.iter().all(|s| !s.starts_with("t3nats.")),
        "subscriptions left behind: {subs:?}"
    );
}

/// Subjects subscribed on the NATS server (monitoring `/subsz?subs=1`).
fn nats_subscriptions(nats: &NatsServer) -> Vec<String> {
    let mut s = TcpStream::connect_timeout(&nats.monitor, WAIT).expect("monitor");
    s.set_read_timeout(Some(WAIT)).unwrap();
    s.write_all(b"GET /subsz?subs=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    let body = &out[out.find("\r\n\r\n").map_or(0, |i| i + 4)..];
    let v: serde_json::Value = serde_json::from_str(body).unwrap_or_default();
    v["subscriptions_list"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s["subject"].as_str().map(str::to_string))
        .collect()
}

/// Sessions on another node are reachable through the API of any node.
async fn sessions_are_reachable_from_any_node(url: &str, prefix: &str) {
    let mut a = node(url, "node-a", prefix);
    let mut c = node(url, "node-c", prefix);
    let mut ws = WsClient::connect(&a.ws_url("/ws?protocol=json")).await;
    let hello: serde_json::Value = serde_json::from_str(&ws.recv_text().await).unwrap();
    let id = hello["session"].as_str().unwrap().to_string();
    wait_json(&c, "/api/stats", "peer heard", |v| {
        v["cluster"]["nodes"].as_array().map(Vec::len) == Some(1)
    });
    let mut h = http(&c);
    let (status, body) = h.call(
        "POST",
        &format!("/api/sessions/{id}/send"),
        r#"{"data":"via node c"}"#,
    );
    assert_eq!(
        (status, body.trim()),
        (202, r#"{"relayed":true,"sent":true}"#)
    );
    let got: serde_json::Value = serde_json::from_str(&ws.recv_text().await).unwrap();
    assert_eq!(got["data"], "via node c");
    // A session id no node can hold is 404.
    let (status, _) = h.call("POST", "/api/sessions/12345/send", r#"{"data":"x"}"#);
    assert_eq!(status, 404);
    let (status, _) = h.call(
        "POST",
        &format!("/api/sessions/{id}/close"),
        r#"{"reason":"from c"}"#,
    );
    assert_eq!(status, 202);
    let (_, closed) = ws.closed().await;
    assert_eq!(closed.code, 4010);
    assert!(closed.reason.contains("from c"), "{}", closed.reason);
    for n in [&mut a, &mut c] {
        assert!(n.stop("TERM").success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_reachable_from_any_node_on_redis() {
    let redis = RedisServer::start();
    sessions_are_reachable_from_any_node(&redis.url(), "sessredis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_are_reachable_from_any_node_on_nats() {
    let nats = NatsServer::start();
    sessions_are_reachable_from_any_node(&nats.url(), "sessnats").await;
}

/// The broker dies in the middle of a stream and comes back: local delivery never stops,
/// readiness and metrics show the outage, relaying resumes, and the publishing node counts
/// exactly the messages the remote client did not get.
async fn broker_restart_mid_stream(
    url: &str,
    prefix: &str,
    kill: &mut dyn FnMut(),
    restart: &mut dyn FnMut(),
) {
    let mut a = node(url, "node-a", prefix);
    let mut c = node(url, "node-c", prefix);
    let mut remote = WsClient::connect(&a.ws_url("/ws")).await;
    let mut local = WsClient::connect(&c.ws_url("/ws")).await;
    wait_json(&c, "/api/channels", "remote subscriber seen", |v| {
        cluster_subscribers(v, "lobby") == 2
    });

    // Publishes one numbered message on node C every 2 ms until told to stop.
    let c_http = c.http.expect("http");
    let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
    let publisher = std::thread::spawn(move || {
        let mut h = Http::connect(c_http);
        let mut n = 0u64;
        while stop_rx.try_recv().is_err() && n < 20_000 {
            let (status, body) = h.call(
                "POST",
                "/api/publish",
                &format!(r#"{{"channel":"lobby","data":"{n}"}}"#),
            );
            assert_eq!(status, 200, "{body}");
            n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        n
    });
    let (mut remote_got, mut local_got) = (Vec::new(), Vec::new());
    receive_until(&mut remote, &mut remote_got, 200).await;
    receive_until(&mut local, &mut local_got, 200).await;

    kill();
    c.wait_for_line("broker connection lost");
    a.wait_for_line("broker connection lost");
    let (status, body) = http(&c).call("GET", "/readyz", "");
    assert_eq!(status, 503, "{body}");
    assert!(body.contains(r#""broker":"down""#), "{body}");
    assert_eq!(metric(&c, "sockhub_broker_up"), 0.0);
    // Local delivery goes on during the outage.
    let mark = *local_got.last().unwrap() + 100;
    receive_until(&mut local, &mut local_got, mark).await;

    restart();
    for n in [&c, &a] {
        let mut h = http(n);
        let deadline = Instant::now() + WAIT;
        while h.call("GET", "/readyz", "").0 != 200 {
            assert!(Instant::now() < deadline, "not ready again");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
    assert!(metric(&c, "sockhub_broker_reconnects_total") >= 1.0);
    // Relaying resumed: the remote client gets messages published after recovery.
    let mark = *local_got.last().unwrap() + 300;
    receive_until(&mut local, &mut local_got, mark).await;
    stop_tx.send(()).unwrap();
    let published = publisher.join().expect("publisher");
    let last = published - 1;
    receive_until(&mut local, &mut local_got, last).await;
    let more = tokio::time::timeout(
        Duration::from_secs(8),
        receive_until(&mut remote, &mut remote_got, last),
    )
    .await;
    let Ok(()) = more else {
        for n in [&mut a, &mut c] {
            n.stop("TERM");
        }
        panic!(
            "the remote client stopped receiving after {:?}; node A log:\n{}\nnode C log:\n{}",
            remote_got.last(),
            a.lines.join("\n"),
            c.lines.join("\n")
        );
    };

    // The local client got everything, in order.
    assert_eq!(local_got, (0..published).collect::<Vec<_>>());
    // The remote client got an ordered subset, with a gap where the broker was away...
    assert!(remote_got.windows(2).all(|w| w[0] < w[1]), "out of order");
    let gap = published - remote_got.len() as u64;
    assert!(gap > 0, "the outage lost nothing?");
    // ...which the publishing node counted exactly.
    let failed = metric(&c, "sockhub_broker_relay_failed_total") as u64;
    assert_eq!(failed, gap, "relay_failed vs what the remote client missed");
    eprintln!(
        "published {published}, remote got {}, gap {gap}, counted {failed}",
        remote_got.len()
    );
    remote.close().await;
    local.close().await;
    for n in [&mut a, &mut c] {
        assert!(n.stop("TERM").success());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redis_restart_mid_stream_is_survived_and_counted() {
    let mut redis = RedisServer::start();
    let url = redis.url();
    let cell = std::cell::RefCell::new(&mut redis);
    broker_restart_mid_stream(
        &url,
        "rsredis",
        &mut || cell.borrow_mut().kill(),
        &mut || cell.borrow_mut().restart(),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nats_restart_mid_stream_is_survived_and_counted() {
    let mut nats = NatsServer::start();
    let url = nats.url();
    let cell = std::cell::RefCell::new(&mut nats);
    broker_restart_mid_stream(
        &url,
        "rsnats",
        &mut || cell.borrow_mut().kill(),
        &mut || cell.borrow_mut().restart(),
    )
    .await;
}
