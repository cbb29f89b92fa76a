//! The Pusher Channels protocol against clients no one here wrote: `pusher-js` and the `pusher`
//! server SDK from npm (tests/pusher/peers.mjs), a PHP backend that signs with `hash_hmac`,
//! and raw clients on the same channels (one fabric).
//!
//! Node.js with `npm ci` run in tests/pusher, and php-cli, must be there (scripts/test installs
//! them); a missing one fails the test with the command that installs it, unless
//! `SOCKHUB_ALLOW_MISSING_PEERS=1` (then it is a reported skip).

mod common;

use std::path::PathBuf;
use std::process::Command;

use common::Sockhub;
use sockhub_testkit::WsClient;

const APP: &str = "7:key7:secret7";

/// Where scripts/test installs the Python SDK (a local, git-ignored folder).
fn python_path() -> PathBuf {
    workspace().join(".tools/python-pusher")
}

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `true` to go on; `false` to skip (only with SOCKHUB_ALLOW_MISSING_PEERS=1).
fn present(test: &str, what: &str, ok: bool, install: &str) -> bool {
    if ok {
        return true;
    }
    if std::env::var("SOCKHUB_ALLOW_MISSING_PEERS").as_deref() == Ok("1") {
        eprintln!("SKIP {test}: {what} is missing ({install})");
        return false;
    }
    panic!("{test}: {what} is missing; install: {install}");
}

#[test]
fn pusher_js_and_the_pusher_server_sdk_work_against_sockhub() {
    let dir = workspace().join("tests/pusher");
    let node_ok = Command::new("node").arg("--version").output().is_ok()
        && dir.join("node_modules/pusher-js").is_dir()
        && dir.join("node_modules/pusher").is_dir();
    if !present(
        "pusher_js_and_the_pusher_server_sdk_work_against_sockhub",
        "node with tests/pusher/node_modules",
        node_ok,
        "cd tests/pusher && npm ci",
    ) {
        return;
    }
    // The app as a config file has it, with subscription counts on.
    let config = std::env::temp_dir().join(format!("sockhub-pusher-{}.toml", std::process::id()));
    std::fs::write(
        &config,
        "[[pusher]]\napp_id = \"7\"\nkey = \"key7\"\nsecret = \"secret7\"\nsubscription_count = true\n",
    )
    .expect("config");
    let mut hub = Sockhub::serve(&["--config", config.to_str().expect("utf-8")]);
    let http = hub.http.expect("http");
    let out = Command::new("node")
        .current_dir(&dir)
        .args([
            "peers.mjs",
            &http.ip().to_string(),
            &http.port().to_string(),
            "7",
            "key7",
            "secret7",
        ])
        .output()
        .expect("run node");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("DONE"),
        "pusher peers failed:\n{stdout}\n{stderr}"
    );
    for step in [
        "connect",
        "public channel + trigger",
        "subscription count",
        "private channel + client event",
        "encrypted channel",
        "presence channel + member_added",
        "channel info + channels + users",
        "batch trigger",
        "wrong secret gets 401",
        "member_removed",
    ] {
        assert!(
            stdout.contains(&format!("OK {step}\n")),
            "{step}:\n{stdout}"
        );
    }
    assert!(hub.stop("TERM").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_php_backend_signs_with_hash_hmac_and_every_kind_of_client_receives() {
    let php_ok = Command::new("php").arg("--version").output().is_ok();
    if !present(
        "a_php_backend_signs_with_hash_hmac_and_every_kind_of_client_receives",
        "php-cli",
        php_ok,
        "apt-get install php-cli",
    ) {
        return;
    }
    let mut hub = Sockhub::serve(&["--pusher-app", APP]);
    let http = hub.http.expect("http");
    // A Pusher client speaking the protocol by hand, a raw client and a json client, all in
    // channel `news`.
    let mut pusher = WsClient::connect(&hub.ws_url("/app/key7?protocol=7&client=raw-test")).await;
    let hello: serde_json::Value = serde_json::from_str(&pusher.recv_text().await).unwrap();
    assert_eq!(hello["event"], "pusher:connection_established");
    let data: serde_json::Value =
        serde_json::from_str(hello["data"].as_str().expect("data is a string")).unwrap();
    let socket = data["socket_id"].as_str().unwrap();
    assert!(
        socket
            .split_once('.')
            .is_some_and(|(a, b)| a.parse::<u64>().is_ok() && b.parse::<u64>().is_ok()),
        "{socket}"
    );
    assert!(data["activity_timeout"].as_u64().unwrap() > 0);
    pusher
        .send_text(r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#)
        .await;
    let ok: serde_json::Value = serde_json::from_str(&pusher.recv_text().await).unwrap();
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    pusher
        .send_text(r#"{"event":"pusher:ping","data":{}}"#)
        .await;
    let pong: serde_json::Value = serde_json::from_str(&pusher.recv_text().await).unwrap();
    assert_eq!(pong["event"], "pusher:pong");
    let mut raw = WsClient::connect(&hub.ws_url("/ws?channel=news")).await;
    let mut json = WsClient::connect(&hub.ws_url("/ws?channel=news&protocol=json")).await;
    json.recv_text().await; // connected

    let script = workspace().join("tests/peers/pusher_publish.php");
    let out = Command::new("php")
        .arg(script)
        .args([
            &format!("http://{http}"),
            "7",
            "key7",
            "secret7",
            "news",
            "headline",
            r#"{"title":"hello"}"#,
        ])
        .output()
        .expect("run php");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("HTTP/1.1 200"), "{stdout}");

    let ev: serde_json::Value = serde_json::from_str(&pusher.recv_text().await).unwrap();
    assert_eq!(ev["event"], "headline");
    assert_eq!(ev["channel"], "news");
    assert_eq!(ev["data"], r#"{"title":"hello"}"#);
    assert_eq!(raw.recv_text().await, r#"{"title":"hello"}"#);
    let j: serde_json::Value = serde_json::from_str(&json.recv_text().await).unwrap();
    assert_eq!(
        (j["event"].as_str(), j["data"].as_str()),
        (Some("headline"), Some(r#"{"title":"hello"}"#))
    );

    // The other way round: a raw client's message reaches the Pusher client as event `message`.
    raw.send_text("from raw").await;
    let ev: serde_json::Value = serde_json::from_str(&pusher.recv_text().await).unwrap();
    assert_eq!(
        (ev["event"].as_str(), ev["data"].as_str()),
        (Some("message"), Some("from raw"))
    );

    // Unknown keys and private channels without auth get Pusher's errors.
    let mut stranger = WsClient::connect(&hub.ws_url("/app/nope")).await;
    let (frames, closed) = stranger.closed().await;
    assert_eq!(closed.code, 4001);
    assert!(frames
        .iter()
        .any(|f| f.to_text().unwrap_or("").contains("\"code\":4001")));
    pusher
        .send_text(
            r#"{"event":"pusher:subscribe","data":{"channel":"private-x","auth":"key7:00"}}"#,
        )
        .await;
    let err: serde_json::Value = serde_json::from_str(&pusher.recv_text().await).unwrap();
    assert_eq!(err["event"], "pusher:subscription_error");
    // A client event on a public channel is refused.
    pusher
        .send_text(r#"{"event":"client-x","channel":"news","data":{}}"#)
        .await;
    let err: serde_json::Value = serde_json::from_str(&pusher.recv_text().await).unwrap();
    assert_eq!(err["event"], "pusher:error");
    // Cache channels: a new subscriber gets the last event, or pusher:cache_miss.
    let publish = |channel: &str, event: &str, data: &str| {
        let out = Command::new("php")
            .arg(workspace().join("tests/peers/pusher_publish.php"))
            .args([
                &format!("http://{http}"),
                "7",
                "key7",
                "secret7",
                channel,
                event,
                data,
            ])
            .output()
            .expect("run php");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert!(publish("cache-weather", "forecast", "sunny").starts_with("HTTP/1.1 200"));
    pusher
        .send_text(r#"{"event":"pusher:subscribe","data":{"channel":"cache-weather"}}"#)
        .await;
    let ok: serde_json::Value = serde_json::from_str(&pusher.recv_text().await).unwrap();
    assert_eq!(ok["event"], "pusher_internal:subscription_succeeded");
    let cached: serde_json::Value = serde_json::from_str(&pusher.recv_text().await).unwrap();
    assert_eq!(
        (cached["event"].as_str(), cached["data"].as_str()),
        (Some("forecast"), Some("sunny"))
    );
    pusher
        .send_text(r#"{"event":"pusher:subscribe","data":{"channel":"cache-empty"}}"#)
        .await;
    pusher.recv_text().await; // subscription_succeeded
    let miss: serde_json::Value = serde_json::from_str(&pusher.recv_text().await).unwrap();
    assert_eq!(
        (miss["event"].as_str(), miss["channel"].as_str()),
        (Some("pusher:cache_miss"), Some("cache-empty"))
    );

    // On shutdown Pusher clients are told 4200 (reconnect now), others 1001.
    let pusher_closed = tokio::spawn(async move { pusher.closed().await.1 });
    let raw_closed = tokio::spawn(async move { raw.closed().await.1 });
    assert!(hub.stop("TERM").success());
    assert_eq!(pusher_closed.await.expect("pusher client").code, 4200);
    assert_eq!(raw_closed.await.expect("raw client").code, 1001);
}

#[test]
fn the_embedded_default_prints_its_demo_app() {
    let mut hub = Sockhub::serve(&[]);
    let line = hub.wait_for_line("pusher demo app");
    assert!(
        line.contains("app_id=1") && line.contains("key=sockhub-demo"),
        "{line}"
    );
    let secret = line
        .split_whitespace()
        .find_map(|kv| kv.strip_prefix("secret="))
        .expect("secret logged");
    assert_eq!(secret.len(), 32, "{line}");
    assert!(hub.stop("TERM").success());
}

/// Runs `program args…` in tests/pusher and returns its stdout; fails with both outputs unless
/// it exits 0 with `DONE` last.
fn run_peer(program: &str, args: &[&str]) -> String {
    let out = Command::new(program)
        .current_dir(workspace().join("tests/pusher"))
        .env("PYTHONPATH", python_path())
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("run {program}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.trim_end().ends_with("DONE"),
        "{program} {args:?} failed:\n{stdout}\n{stderr}"
    );
    stdout
}

#[test]
fn laravel_echo_with_the_reverb_and_pusher_broadcasters() {
    let dir = workspace().join("tests/pusher");
    let ok = Command::new("node").arg("--version").output().is_ok()
        && dir.join("node_modules/laravel-echo").is_dir();
    if !present(
        "laravel_echo_with_the_reverb_and_pusher_broadcasters",
        "node with tests/pusher/node_modules",
        ok,
        "cd tests/pusher && npm ci",
    ) {
        return;
    }
    let mut hub = Sockhub::serve(&["--pusher-app", APP]);
    let http = hub.http.expect("http");
    let (h, p) = (http.ip().to_string(), http.port().to_string());
    let out = run_peer("node", &["echo.mjs", &h, &p, "7", "key7", "secret7"]);
    for b in ["reverb", "pusher"] {
        for step in ["channel", "join here joining", "private whisper"] {
            assert!(
                out.contains(&format!("OK {b} {step}\n")),
                "{b} {step}:\n{out}"
            );
        }
    }
    assert!(hub.stop("TERM").success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_python_pusher_sdk_publishes_through_the_http_api() {
    let ok = Command::new("python3")
        .args(["-c", "import pusher"])
        .env("PYTHONPATH", python_path())
        .output()
        .is_ok_and(|o| o.status.success());
    if !present(
        "the_python_pusher_sdk_publishes_through_the_http_api",
        "the pusher PyPI package",
        ok,
        "python3 -m pip install --target .tools/python-pusher pusher",
    ) {
        return;
    }
    let mut hub = Sockhub::serve(&["--pusher-app", APP]);
    let http = hub.http.expect("http");
    // A raw subscriber of the channel the SDK publishes to.
    let mut raw = WsClient::connect(&hub.ws_url("/ws?channel=py-news&protocol=json")).await;
    raw.recv_text().await; // connected
    let (h, p) = (http.ip().to_string(), http.port().to_string());
    let out = tokio::task::spawn_blocking(move || {
        run_peer("python3", &["sdk.py", &h, &p, "7", "key7", "secret7"])
    })
    .await
    .expect("python");
    for step in [
        "trigger",
        "batch",
        "channel_info",
        "channels_info",
        "wrong secret",
    ] {
        assert!(out.contains(&format!("OK {step}\n")), "{step}:\n{out}");
    }
    for (event, n) in [("update", 1), ("batch", 2)] {
        let m: serde_json::Value = serde_json::from_str(&raw.recv_text().await).unwrap();
        assert_eq!(m["event"], event);
        let data: serde_json::Value = serde_json::from_str(m["data"].as_str().unwrap()).unwrap();
        assert_eq!(data["n"], n);
    }
    assert!(hub.stop("TERM").success());
}
