//! The `sockhub` binary: configuration errors, signals, and the `connect` client.

mod common;

use std::process::Command;

use common::{bin, Sockhub};
use sockhub_testkit::{TcpClient, WsClient};

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run sockhub");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn temp_config(name: &str, text: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("sockhub-cli-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

#[test]
fn serve_help_documents_the_contract_flags() {
    let (code, out, _) = run(&["serve", "--help"]);
    assert_eq!(code, 0);
    for flag in [
        "--http",
        "--tcp",
        "--udp",
        "--max-connections",
        "--max-message-size",
        "--config",
        "--handler",
        "--workers",
        "--api-key",
        "--webhook",
        "--webhook-secret",
        "--token-secret",
    ] {
        assert!(out.contains(flag), "--help lists {flag}");
    }
    let (code, out, _) = run(&["connect", "--help"]);
    assert_eq!(code, 0);
    assert!(out.contains("--send") && out.contains("--timeout"));
    let (code, out, _) = run(&["publish", "--help"]);
    assert_eq!(code, 0);
    for flag in ["--url", "--api-key", "--channel"] {
        assert!(out.contains(flag), "publish --help lists {flag}");
    }
    let (code, out, _) = run(&["token", "--help"]);
    assert_eq!(code, 0);
    for flag in ["--secret", "--user", "--channel"] {
        assert!(out.contains(flag), "token --help lists {flag}");
    }
}

#[test]
fn an_open_api_on_a_public_address_is_refused_with_the_reason() {
    let (code, _, err) = run(&[
        "serve",
        "--http",
        "0.0.0.0:0",
        "--tcp",
        "off",
        "--udp",
        "off",
    ]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("without an API key"), "{err}");
    assert!(err.contains("--api-key"), "{err}");
    // With a key it starts (and is stopped at once).
    let mut s = Sockhub::spawn(&[
        "serve",
        "--http",
        "0.0.0.0:0",
        "--tcp",
        "off",
        "--udp",
        "off",
        "--api-key",
        "k",
    ]);
    assert!(s.stop("TERM").success());
}

#[test]
fn token_mints_what_the_server_accepts() {
    let (code, out, _) = run(&[
        "token",
        "--secret",
        "s",
        "--user",
        "u1",
        "--channel",
        "room-*",
        "--ttl",
        "10m",
    ]);
    assert_eq!(code, 0);
    let claims = sockhub::auth::TokenSecret::new("s")
        .verify(out.trim(), sockhub::auth::unix_now())
        .expect("valid token");
    assert_eq!(claims.sub, "u1");
    assert_eq!(claims.channels, vec!["room-*"]);
    let ttl = claims.exp - sockhub::auth::unix_now();
    assert!((590..=600).contains(&ttl), "{ttl}");
    let (code, _, err) = run(&["token", "--secret", "", "--user", "u"]);
    assert_eq!(code, 2, "{err}");
}

#[test]
fn a_bad_config_key_is_named_and_exits_2() {
    let p = temp_config("typo.toml", "[limits]\nmax_conections = 5\n");
    let (code, _, err) = run(&["serve", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("max_conections"), "{err}");
    assert!(err.contains("line 2"), "{err}");
    let p = temp_config("value.toml", "[tcp]\nframing = \"xml\"\n");
    let (code, _, err) = run(&["serve", "--config", p.to_str().unwrap()]);
    assert_eq!(code, 2);
    assert!(err.contains("xml"), "{err}");
    let (code, _, err) = run(&["serve", "--max-connections", "many"]);
    assert_eq!(code, 2);
    assert!(err.contains("many"), "{err}");
    let (code, _, err) = run(&["serve", "--http", "localhost"]);
    assert_eq!(code, 2);
    assert!(err.contains("invalid address"), "{err}");
    let (code, _, err) = run(&["serve", "--config", "/nonexistent/sockhub.toml"]);
    assert_eq!(code, 2);
    assert!(err.contains("cannot read config file"), "{err}");
}

#[test]
fn a_config_file_sets_listeners_and_limits_and_flags_override_it() {
    let p = temp_config(
        "good.toml",
        "[http]\nlisten = \"127.0.0.1:0\"\npath = \"/live\"\n\n[[tcp]]\nlisten = \"127.0.0.1:0\"\n\
         framing = \"length-prefixed\"\n\n[udp]\nlisten = \"off\"\n\n[limits]\nmax_connections = 1\n",
    );
    let mut s = Sockhub::spawn(&["serve", "--config", p.to_str().unwrap(), "--tcp", "off"]);
    assert!(
        s.udp.is_none() && s.tcp.is_none(),
        "udp off by file, tcp off by flag"
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let _a = WsClient::connect(&s.ws_url("/live")).await;
        let (status, _) = sockhub_testkit::http_request(
            s.http.unwrap(),
            &sockhub_testkit::upgrade_request("/live"),
        )
        .await;
        assert_eq!(status, 503, "max_connections = 1 from the file");
    });
    assert!(s.stop("TERM").success());
}

#[test]
fn sigterm_sends_1001_and_a_final_line_then_exits_0() {
    let mut s = Sockhub::serve(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (mut ws, mut tcp) = rt.block_on(async {
        let ws = WsClient::connect(&s.ws_url("/")).await;
        let tcp = TcpClient::connect(s.tcp.unwrap()).await;
        (ws, tcp)
    });
    s.wait_for_line("transport=tcp");
    let pid = s.child.id().to_string();
    assert!(Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap()
        .success());
    rt.block_on(async {
        let (_, closed) = ws.closed().await;
        assert_eq!(closed.code, 1001);
        assert_eq!(closed.reason, "server shutting down");
        assert_eq!(tcp.read_line().await, "ERROR 1001 server shutting down");
        assert_eq!(tcp.try_read_line().await, None);
    });
    assert_eq!(s.wait_exit().code(), Some(0));
    s.wait_for_line("shutdown complete");
}

#[test]
fn sigint_also_shuts_down_cleanly() {
    let mut s = Sockhub::serve(&[]);
    assert_eq!(s.stop("INT").code(), Some(0));
}

#[test]
fn connect_send_behaves_like_the_classic_client() {
    let mut s = Sockhub::serve(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ws = rt.block_on(WsClient::connect(&s.ws_url("/")));
    let tcp = format!("tcp://{}", s.tcp.unwrap());
    let (code, _, err) = run(&[
        "connect",
        &tcp,
        "--send",
        r"Ho\r\nfirst blood\r\n",
        "--timeout",
        "0.5",
    ]);
    assert_eq!(code, 0, "{err}");
    rt.block_on(async {
        assert_eq!(ws.recv_text().await, "Ho");
        assert_eq!(ws.recv_text().await, "first blood");
    });
    // And the other way: connect over ws:// prints what TCP clients say.
    let url = s.ws_url("/ws");
    let child = Command::new(bin())
        .args(["connect", &url, "--send", "hi from ws", "--timeout", "1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    rt.block_on(async {
        // The ws client's message reaches us, so it is connected and subscribed.
        assert_eq!(ws.recv_text().await, "hi from ws");
        ws.send_text("reply to all").await;
    });
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout), "reply to all\n");
    assert!(s.stop("TERM").success());
}

#[test]
fn connect_reports_a_refused_connection() {
    // Bind and drop to find a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (code, _, err) = run(&["connect", &format!("tcp://127.0.0.1:{port}"), "--send", "x"]);
    assert_eq!(code, 1);
    assert!(err.contains("cannot connect"), "{err}");
    let (code, _, err) = run(&["connect", "http://127.0.0.1:1/"]);
    assert_eq!(code, 1);
    assert!(err.contains("unsupported scheme"), "{err}");
}

#[test]
fn workers_sets_the_runtime_threads() {
    let mut s = Sockhub::serve(&["--workers", "5"]);
    let status = std::fs::read_to_string(format!("/proc/{}/status", s.child.id())).unwrap();
    let threads: usize = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    // 5 workers plus the main thread (blocking-pool threads only appear on demand).
    assert!(threads >= 6, "{threads} threads");
    assert!(s.stop("TERM").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn udp_address_validation_can_be_turned_off_and_bad_values_are_refused() {
    let (code, _, err) = run(&["serve", "--udp-address-validation", "maybe"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("expected on or off"), "{err}");

    let mut hub = Sockhub::serve(&["--udp-address-validation", "off"]);
    let mut ws = WsClient::connect(&hub.ws_url("/ws")).await;
    let udp = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    udp.connect(hub.udp.expect("udp")).await.unwrap();
    // A source that never echoes a cookie: with validation off it gets a broadcast far over
    // 3x the 2 bytes it sent.
    udp.send(b"hi").await.unwrap();
    assert_eq!(ws.recv_text().await, "hi");
    let big = "x".repeat(600);
    ws.send_text(&big).await;
    let mut buf = [0u8; 1024];
    let n = sockhub_testkit::within("broadcast", udp.recv(&mut buf))
        .await
        .unwrap();
    assert_eq!(&buf[..n], big.as_bytes());
    assert!(hub.stop("TERM").success());
}
