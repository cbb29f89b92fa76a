//! Smoke test: the `sockhub-bench` binary runs each scenario against a live in-process sockhub
//! server and prints a well-formed JSON result with consistent counts. No timing assertions.

use std::net::SocketAddr;
use std::process::{Command, Output};
use std::sync::mpsc;
use std::time::Duration;

use serde_json::Value;
use sockhub::{Broadcast, Echo, Handler, Limits, Listeners, Server, ServerConfig, TcpOptions};

/// Default limits, except that a per-session message rate limit (where the server has one)
/// is off: a closed-loop echo exceeds any fixed rate. Deserialized by name so that this builds
/// whether or not the library has the limit.
fn bench_limits() -> Limits {
    serde_json::from_value(serde_json::json!({ "max_messages_per_second": 0 })).unwrap_or_default()
}

/// A server on ephemeral loopback ports, running on its own runtime thread until dropped.
struct Live {
    http: SocketAddr,
    tcp: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Live {
    fn start(handler: impl Handler) -> Live {
        let (tx, rx) = mpsc::channel();
        let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .enable_all()
                .build()
                .expect("runtime");
            rt.block_on(async move {
                let http = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
                tx.send((http.local_addr().unwrap(), tcp.local_addr().unwrap()))
                    .unwrap();
                let mut config = ServerConfig {
                    limits: bench_limits(),
                    ..ServerConfig::default()
                };
                config.limits.drain_timeout = Duration::from_millis(200);
                config.limits.close_timeout = Duration::from_millis(200);
                let listeners = Listeners {
                    http: Some(http),
                    tcp: vec![(tcp, TcpOptions::default())],
                    ..Listeners::default()
                };
                Server::with_handler(config, handler)
                    .serve(listeners, async {
                        let _ = stop_rx.await;
                    })
                    .await;
            });
        });
        let (http, tcp) = rx
            .recv_timeout(Duration::from_secs(10))
            .expect("server started");
        Live {
            http,
            tcp,
            stop: Some(stop_tx),
            thread: Some(thread),
        }
    }

    fn ws(&self) -> String {
        format!("ws://{}/ws", self.http)
    }
}

impl Drop for Live {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Runs the binary with `args` (plus JSON output and this process as the server pid).
fn bench(args: &[&str]) -> Output {
    let pid = std::process::id().to_string();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sockhub-bench"));
    cmd.args(args).args([
        "--format",
        "json",
        "--quiet",
        "--threads",
        "2",
        "--pid",
        &pid,
    ]);
    cmd.output().expect("sockhub-bench runs")
}

/// Runs a scenario that must succeed and returns its JSON document.
fn bench_json(args: &[&str]) -> Value {
    let out = bench(args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{args:?} failed: {stderr}");
    let doc: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&out.stdout)));
    for key in [
        "scenario",
        "parameters",
        "duration_s",
        "counts",
        "rates",
        "latency_us",
        "server_cpu_s",
        "per_server_cpu_s",
        "rss_kb_before",
        "rss_kb_after",
        "generator_cpu_s",
        "errors",
    ] {
        assert!(doc.get(key).is_some(), "{key} missing in {doc:#}");
    }
    assert!(doc["rss_kb_after"].as_u64().unwrap() > 0, "{doc:#}");
    doc
}

fn count(doc: &Value, k: &str) -> u64 {
    doc["counts"][k]
        .as_u64()
        .unwrap_or_else(|| panic!("counts.{k} in {doc:#}"))
}

fn latency_ok(doc: &Value) {
    let l = &doc["latency_us"];
    let (p50, p99, p999) = (
        l["p50"].as_f64().unwrap(),
        l["p99"].as_f64().unwrap(),
        l["p999"].as_f64().unwrap(),
    );
    assert!(p50 <= p99 && p99 <= p999, "{l}");
    assert!(l["samples"].as_u64().unwrap() > 0, "{l}");
}

#[test]
fn echo_scenario() {
    let server = Live::start(Echo);
    let doc = bench_json(&[
        "echo",
        "--url",
        &server.ws(),
        "--connections",
        "4",
        "--in-flight",
        "4",
        "--size",
        "32",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
    ]);
    assert_eq!(doc["scenario"], "echo");
    assert_eq!(count(&doc, "connections_opened"), 4);
    let (sent, received, total) = (
        count(&doc, "sent"),
        count(&doc, "received"),
        count(&doc, "received_total"),
    );
    assert!(
        received > 0 && received <= total && total <= sent,
        "{doc:#}"
    );
    assert!(doc["rates"]["msgs_per_s"].as_f64().unwrap() > 0.0);
    latency_ok(&doc);
    assert_eq!(doc["errors"]["total"], 0, "{doc:#}");
}

#[test]
fn broadcast_scenario_ws_and_tcp() {
    let server = Live::start(Broadcast);
    let tcp = format!("tcp://{}", server.tcp);
    let ws = server.ws();
    for publish in [
        &["--publish", "ws"][..],
        &["--publish", "tcp", "--publish-url", &tcp],
    ] {
        let mut args = vec![
            "broadcast",
            "--url",
            &ws,
            "--subscribers",
            "20",
            "--rate",
            "200",
            "--size",
            "64",
            "--duration",
            "1s",
            "--warmup",
            "200ms",
            "--drain",
            "1s",
        ];
        args.extend_from_slice(publish);
        let doc = bench_json(&args);
        assert_eq!(doc["scenario"], "broadcast");
        let (published, expected, delivered) = (
            count(&doc, "published"),
            count(&doc, "expected"),
            count(&doc, "delivered"),
        );
        assert!(published > 0, "{doc:#}");
        assert_eq!(expected, published * count(&doc, "subscribers_opened"));
        assert!(delivered > 0 && delivered <= expected, "{doc:#}");
        let f = doc["rates"]["delivered_fraction"].as_f64().unwrap();
        assert!(f > 0.0 && f <= 1.0, "{doc:#}");
        latency_ok(&doc);
    }
}

#[test]
fn broadcast_with_slow_subscribers_reports_them_apart() {
    let server = Live::start(Broadcast);
    let doc = bench_json(&[
        "broadcast",
        "--url",
        &server.ws(),
        "--subscribers",
        "10",
        "--slow",
        "3",
        "--rate",
        "200",
        "--size",
        "64",
        "--duration",
        "1s",
        "--warmup",
        "200ms",
        "--drain",
        "500ms",
    ]);
    assert_eq!(doc["parameters"]["slow"], 3, "{doc:#}");
    assert_eq!(count(&doc, "subscribers_opened"), 10, "{doc:#}");
    assert_eq!(count(&doc, "slow_opened"), 3, "{doc:#}");
    assert!(count(&doc, "slow_disconnected") <= 3, "{doc:#}");
    // Only the fast subscribers are expected to receive (and measured).
    assert_eq!(
        count(&doc, "expected"),
        count(&doc, "published") * 10,
        "{doc:#}"
    );
    assert!(count(&doc, "delivered") <= count(&doc, "expected"));
    latency_ok(&doc);
    let peak = doc["rss_kb_peak"].as_u64().expect("rss_kb_peak");
    assert!(peak >= doc["rss_kb_after"].as_u64().unwrap(), "{doc:#}");
}

#[test]
fn broadcast_over_http_says_unsupported_when_the_api_is_missing() {
    let server = Live::start(Broadcast);
    let out = bench(&[
        "broadcast",
        "--url",
        &server.ws(),
        "--subscribers",
        "2",
        "--duration",
        "1s",
        "--publish",
        "http",
    ]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if out.status.success() {
        // The HTTP API exists by now: the result must be well formed.
        let doc: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(count(&doc, "delivered") <= count(&doc, "expected"));
    } else {
        assert!(
            stderr.contains("not supported by this server yet"),
            "{stderr}"
        );
    }
}

#[test]
fn idle_scenario() {
    let server = Live::start(Broadcast);
    let doc = bench_json(&[
        "idle",
        "--url",
        &server.ws(),
        "--connections",
        "50",
        "--hold",
        "300ms",
        "--sample",
        "10",
    ]);
    assert_eq!(doc["scenario"], "idle");
    assert_eq!(count(&doc, "connections_opened"), 50);
    let (probed, answered) = (count(&doc, "probed"), count(&doc, "probes_answered"));
    assert!(
        probed >= 10 && answered <= probed && answered > 0,
        "{doc:#}"
    );
    assert!(count(&doc, "alive_at_end") <= 50);
    assert!(
        doc["rates"]["server_rss_kb_per_conn"].is_number(),
        "{doc:#}"
    );
}

#[test]
fn refuses_targets_beyond_loopback() {
    for url in ["ws://10.1.2.3:80/ws", "ws://example.com:80/ws"] {
        let out = bench(&["echo", "--url", url, "--duration", "1s"]);
        assert!(!out.status.success());
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("loopback"), "{stderr}");
    }
}
