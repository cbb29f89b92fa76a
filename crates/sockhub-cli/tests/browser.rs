//! The demo page and the dashboard in a real headless Chromium, against the real `sockhub serve`.
//!
//! `tests/browser/demo.mjs` drives Chromium (Debian's `/usr/bin/chromium`, through the npm
//! package `playwright-core`): two pages join a channel by name and exchange messages, a TCP
//! client's message and an HTTP API publish appear with their sender, a third page finds the
//! server full, a too-large message and a close through the API show their close reasons, the
//! server restarts on the same port and the pages reconnect, and the dashboard's counts follow.
//! This test owns the server: it answers the script's `NEED` lines (send from a TCP client, close
//! it, restart the server) and checks every `RESULT` against what it knows (session ids from the
//! server log). `tests/browser/pusher.mjs` runs pusher-js on a page sockhub serves with
//! `--static-dir` (see the last test). Screenshots go to `target/browser-screenshots/` (or
//! `SOCKHUB_SCREENSHOT_DIR`).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Sockhub, WAIT};
use serde_json::Value;

/// The whole browser run, restart included, must finish within this.
const RUN_LIMIT: Duration = Duration::from_secs(180);

/// The server's flags: a small `max-message-size`, so the page can show close 1009, and room
/// for three sessions, so that a third page (after two pages and a TCP client) is refused.
const SERVE_FLAGS: &[&str] = &["--max-message-size", "1024", "--max-connections", "3"];

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn chromium() -> PathBuf {
    std::env::var_os("SOCKHUB_CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from)
}

fn node() -> String {
    std::env::var("SOCKHUB_NODE").unwrap_or_else(|_| "node".into())
}

fn screenshot_dir() -> PathBuf {
    match std::env::var_os("SOCKHUB_SCREENSHOT_DIR") {
        Some(d) => PathBuf::from(d),
        // CARGO_TARGET_TMPDIR is <target>/tmp.
        None => {
            let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
            tmp.parent().unwrap_or(tmp).join("browser-screenshots")
        }
    }
}

/// Decides whether the test can run: a missing browser, Node or npm package (playwright-core,
/// and each `(folder under tests/, package)` of `npm`) fails it, unless
/// `SOCKHUB_ALLOW_MISSING_PEERS=1` turns that into a reported skip (as in `peers.rs`).
fn browser_present(test: &str, npm: &[(&str, &str)]) -> bool {
    let mut missing = Vec::new();
    if !chromium().is_file() {
        missing.push(format!(
            "no Chromium at {}\n  install: `apt-get install chromium` (Debian), or point \
             SOCKHUB_CHROMIUM at a Chromium binary",
            chromium().display()
        ));
    }
    let node_ok = Command::new(node())
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !node_ok {
        missing.push(
            "no `node` on PATH\n  install: `apt-get install nodejs npm` (Debian), or point \
             SOCKHUB_NODE at a node binary"
                .to_string(),
        );
    }
    for (folder, name) in std::iter::once(&("browser", "playwright-core")).chain(npm) {
        let dir = repo_root().join("tests").join(folder);
        if !dir
            .join("node_modules")
            .join(name)
            .join("package.json")
            .is_file()
        {
            missing.push(format!(
                "the npm package {name} is not installed in tests/{folder}\n  install: \
                 `cd {} && npm ci` (or run scripts/test, which does it)",
                dir.display()
            ));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join("\n");
    if std::env::var("SOCKHUB_ALLOW_MISSING_PEERS").as_deref() == Ok("1") {
        eprintln!(
            "SKIP {test}: SOCKHUB_ALLOW_MISSING_PEERS=1 and something is missing:\n{missing}"
        );
        return false;
    }
    panic!(
        "{test}: the browser test needs:\n{missing}\n\
         (set SOCKHUB_ALLOW_MISSING_PEERS=1 to skip it instead of failing)"
    );
}

/// The Node script, its output arriving line by line, and its stdin for answers.
struct Driver {
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Driver {
    /// Runs `script` (in tests/browser) against `url` with `extra` arguments (`--scenario …`).
    fn start(script: &str, url: &str, out: &Path, extra: &[&str]) -> Driver {
        let dir = repo_root().join("tests/browser");
        let mut child = Command::new(node())
            .current_dir(&dir)
            .arg(script)
            .args(["--url", url])
            .arg("--out")
            .arg(out)
            .arg("--chromium")
            .arg(chromium())
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn node tests/browser/{script}: {e}"));
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Driver {
            child,
            stdin,
            lines,
        }
    }

    fn answer(&mut self, line: &str) {
        writeln!(self.stdin, "{line}").expect("write to the driver");
        self.stdin.flush().expect("flush");
    }

    /// Reads the script's output until `DONE` (within [`RUN_LIMIT`] of `started`), answering
    /// each `NEED` line with what `on_need` returns, and checks that the script exited 0 and no
    /// page threw.
    fn run(&mut self, started: Instant, mut on_need: impl FnMut(&str) -> String) -> Report {
        let mut report = Report::default();
        let deadline = started + RUN_LIMIT;
        let done = loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = self.lines.recv_timeout(left) else {
                // The script exited (its stdout closed) or ran past the limit.
                break false;
            };
            eprintln!("browser| {line}");
            report.log.push(line.clone());
            if let Some(json) = line.strip_prefix("RESULT ") {
                let v: Value = serde_json::from_str(json).expect("RESULT json");
                for (k, v) in v.as_object().expect("RESULT object") {
                    if k == "screenshot" {
                        report
                            .screenshots
                            .push(PathBuf::from(v.as_str().expect("path")));
                    } else {
                        report.results.insert(k.clone(), v.clone());
                    }
                }
            } else if let Some(need) = line.strip_prefix("NEED ") {
                let answer = on_need(need);
                self.answer(&answer);
            } else if line == "DONE" {
                break true;
            }
        };
        let status = self.child.wait().expect("wait for node");
        eprintln!("browser run took {:.1?}", started.elapsed());
        assert!(
            done && status.success(),
            "the browser script did not finish (exit {status}):\n{}",
            report.log.join("\n")
        );
        let errors: Vec<_> = report
            .log
            .iter()
            .filter(|l| l.starts_with("PAGEERROR"))
            .collect();
        assert!(
            errors.is_empty(),
            "JavaScript errors in the pages: {errors:?}"
        );
        for p in &report.screenshots {
            let bytes = std::fs::read(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
            assert!(
                bytes.starts_with(b"\x89PNG\r\n\x1a\n") && bytes.len() > 10_000,
                "{} is not a plausible screenshot",
                p.display()
            );
            eprintln!("screenshot: {}", p.display());
        }
        report
    }
}

/// What one run of the script reported.
#[derive(Default)]
struct Report {
    /// Every `RESULT` field but `screenshot`, by name.
    results: HashMap<String, Value>,
    /// Every screenshot file, in order.
    screenshots: Vec<PathBuf>,
    /// Every line the script printed.
    log: Vec<String>,
}

impl Report {
    fn screenshot_names(&self) -> Vec<String> {
        self.screenshots
            .iter()
            .filter_map(|p| p.file_name()?.to_str().map(String::from))
            .collect()
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The session id in the server's `connect` log line for a client at `peer`.
fn session_of(hub: &mut Sockhub, transport: &str, peer: std::net::SocketAddr) -> String {
    let line = hub.wait_for_line(&format!("transport={transport} peer={peer} "));
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix("session="))
        .unwrap_or_else(|| panic!("no session= in {line:?}"))
        .to_string()
}

fn number(v: &Value) -> u64 {
    v.as_u64()
        .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        .unwrap_or_else(|| panic!("not a number: {v}"))
}

#[test]
fn demo_page_and_dashboard_in_headless_chromium() {
    if !browser_present("demo_page_and_dashboard_in_headless_chromium", &[]) {
        return;
    }
    let started = Instant::now();
    let mut args = vec!["serve", "--http", "127.0.0.1:0", "--tcp", "127.0.0.1:0"];
    args.extend_from_slice(&["--udp", "127.0.0.1:0"]);
    args.extend_from_slice(SERVE_FLAGS);
    let mut hub = Sockhub::spawn(&args);
    let http = hub.http.expect("http listener");
    let out = screenshot_dir();
    std::fs::create_dir_all(&out).expect("screenshot dir");
    eprintln!("screenshots: {}", out.display());

    let mut driver = Driver::start(
        "demo.mjs",
        &format!("http://{http}"),
        &out,
        &["--scenario", "demo"],
    );
    let mut tcp_clients = Vec::new();
    let report = driver.run(started, |need| {
        if let Some(text) = need.strip_prefix("tcp-send ") {
            // A raw TCP client (lines framing, channel lobby) says one line.
            let addr = hub.tcp.expect("tcp listener");
            let mut tcp = TcpStream::connect_timeout(&addr, WAIT).expect("tcp connect");
            let session = session_of(&mut hub, "tcp", tcp.local_addr().expect("local_addr"));
            tcp.write_all(format!("{text}\r\n").as_bytes())
                .expect("tcp write");
            tcp_clients.push(tcp);
            format!("ok {session}")
        } else if need == "tcp-close" {
            tcp_clients.clear();
            "ok".into()
        } else if need == "restart" {
            // Graceful stop, then a new server on the same HTTP port (the pages reconnect to it).
            let status = hub.stop("TERM");
            assert!(status.success(), "sockhub exited with {status}");
            tcp_clients.clear();
            let listen = http.to_string();
            let mut args = vec!["serve", "--http", &listen, "--tcp", "127.0.0.1:0"];
            args.extend_from_slice(&["--udp", "127.0.0.1:0"]);
            args.extend_from_slice(SERVE_FLAGS);
            hub = Sockhub::spawn(&args);
            assert_eq!(hub.http, Some(http), "the new server took the same port");
            "ok".into()
        } else {
            panic!("unknown NEED {need:?}")
        }
    });
    let results = &report.results;

    // Two pages in one channel: each sees the other's message, labelled with its session.
    let a = number(&results["a_session"]);
    let b = number(&results["b_session"]);
    assert_ne!(a, b);
    assert_eq!(results["a_channel"], "#room-7");
    assert_eq!(
        results["bad_channel_error"],
        "\"two words\": a channel name has no spaces or control characters."
    );
    assert_eq!(number(&results["b_saw"]["from"]), a, "{results:?}");
    assert_eq!(results["b_saw"]["who"], format!("session {a}"));
    assert_eq!(number(&results["a_saw"]["from"]), b);
    let time = results["a_saw"]["time"].as_str().expect("time");
    assert!(
        time.len() == 8 && time.matches(':').count() == 2,
        "HH:MM:SS: {time}"
    );

    // The dashboard's connection counts follow clients joining.
    let before = number(&results["dashboard_before"]["ws"]);
    assert_eq!(before, 0, "no clients before the pages opened");
    assert!(number(&results["dashboard_ws"]) >= before + 2);
    assert_eq!(
        number(&results["dashboard_room_subscribers"]),
        2,
        "two subscribers in room-7"
    );
    assert_eq!(number(&results["dashboard_tcp"]), 1);

    // Messages from a TCP client and the HTTP API, with their senders.
    let tcp = number(&results["tcp_session"]);
    assert_eq!(number(&results["a_saw_tcp"]["from"]), tcp);
    assert_eq!(number(&results["b_saw_tcp"]["from"]), tcp);
    assert_eq!(results["a_saw_api"]["who"], "server (HTTP API)");
    assert!(results["a_saw_api"]["from"].is_null());

    // Server full: the browser sees close 1006, the page asks /admission and says why.
    let full = results["full_notice"].as_str().expect("full notice");
    assert!(
        full.contains("Server full")
            && full.contains("1013: server full: all 3 connections in use, retry later")
            && full.contains("Reconnecting in"),
        "{full}"
    );
    // Waiting to retry, or retrying (the first retry comes within half a second).
    let full_status = results["full_status"].as_str().expect("status");
    assert!(
        ["reconnecting", "connecting"].contains(&full_status),
        "{full_status}"
    );
    assert!(number(&results["dashboard_refused"]) >= 1);

    // Close 1009 is shown as such, without an automatic reconnect; "Reconnect now" works.
    let notice = results["too_large_notice"].as_str().expect("notice");
    assert!(
        notice.contains("Message too large") && notice.contains("1009"),
        "{notice}"
    );
    assert!(
        notice.contains("Not reconnecting automatically"),
        "{notice}"
    );
    assert_eq!(
        number(&results["too_large_marked_not_delivered"]),
        4000,
        "the page marks the refused message"
    );
    assert_ne!(number(&results["a_session_after_reconnect_now"]), a);

    // Closed through the API (4010): shown with the application's reason, no reconnect.
    let kicked = results["kicked_notice"].as_str().expect("kicked notice");
    assert!(
        kicked.contains("Closed by the server")
            && kicked.contains("4010: closed by server: kicked by the browser test")
            && kicked.contains("Not reconnecting automatically"),
        "{kicked}"
    );

    // After the restart: told why (1001), reconnected with new sessions, messages flow again.
    let r = &results["restart"];
    let line = r["shutdown_line"].as_str().expect("line");
    assert!(
        line.contains("Server shutting down") && line.contains("1001"),
        "{line}"
    );
    let (a3, b3) = (number(&r["a_session"]), number(&r["b_session"]));
    assert_ne!(a3, b3);
    assert_eq!(number(&r["b_saw"]["from"]), a3);
    assert!(number(&r["dashboard_ws"]) >= 2);
    for s in [a3, b3] {
        hub.wait_for_line(&format!("session={s} transport=ws"));
    }

    // Screenshots of both pages (checked to be PNG files by `run`).
    let names = report.screenshot_names();
    for want in [
        "demo-a.png",
        "demo-b.png",
        "dashboard.png",
        "demo-server-full.png",
        "demo-a-reconnected.png",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    let status = hub.stop("TERM");
    assert!(status.success());
}

/// With `--api-key`, the dashboard's stream is refused until the key is given: the page says so
/// and asks for it, refuses a wrong one, streams with the right one, and takes `?key=` from its
/// URL without leaving it in the address bar.
#[test]
fn dashboard_asks_for_the_api_key() {
    if !browser_present("dashboard_asks_for_the_api_key", &[]) {
        return;
    }
    let started = Instant::now();
    let key = "browser test key";
    let mut hub = Sockhub::serve(&["--api-key", key]);
    let http = hub.http.expect("http listener");
    let out = screenshot_dir();
    std::fs::create_dir_all(&out).expect("screenshot dir");
    let mut driver = Driver::start(
        "demo.mjs",
        &format!("http://{http}"),
        &out,
        &["--scenario", "api-key", "--key", key],
    );
    let report = driver.run(started, |need| panic!("unexpected NEED {need:?}"));
    let r = &report.results;
    assert_eq!(r["denied_status"], "API key required");
    assert_eq!(r["wrong_key_error"], "invalid API key");
    assert_eq!(r["typed_key_live"], true, "the key form hides once live");
    assert_eq!(r["url_after_key"], "", "the key left the address bar");
    assert!(report
        .screenshot_names()
        .contains(&"dashboard-api-key.png".to_string()));
    assert!(hub.stop("TERM").success());
}

/// pusher-js in a real browser, on a page sockhub serves itself: `--static-dir` holds
/// `tests/browser/pusher/index.html` and pusher-js's browser build (`dist/web/pusher.min.js`,
/// copied from npm's package in tests/pusher), and `tests/browser/pusher.mjs` plays the app's
/// backend (an auth endpoint and the `pusher` server SDK). Two pages subscribe to a public and
/// a private channel (and are refused a third by the auth endpoint); events triggered through
/// the HTTP API appear on both, and a client event from each page reaches the other only.
#[test]
fn pusher_js_in_headless_chromium_on_a_page_served_by_sockhub() {
    let test = "pusher_js_in_headless_chromium_on_a_page_served_by_sockhub";
    if !browser_present(test, &[("pusher", "pusher-js"), ("pusher", "pusher")]) {
        return;
    }
    let started = Instant::now();
    // The front end's folder, as a user would have it: the page and the library's build.
    let site =
        Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("pusher-site-{}", std::process::id()));
    std::fs::create_dir_all(&site).expect("site dir");
    let root = repo_root();
    for (from, to) in [
        ("tests/browser/pusher/index.html", "index.html"),
        (
            "tests/pusher/node_modules/pusher-js/dist/web/pusher.min.js",
            "pusher.min.js",
        ),
    ] {
        std::fs::copy(root.join(from), site.join(to))
            .unwrap_or_else(|e| panic!("copy {from}: {e}"));
    }
    let (app_id, key, secret) = ("4242", "browser-key", "browser-secret");
    let app = format!("{app_id}:{key}:{secret}");
    let site_arg = site.to_str().expect("utf-8 path");
    let mut hub = Sockhub::serve(&["--pusher-app", &app, "--static-dir", site_arg]);
    hub.wait_for_line("serving static files under /static/");
    let http = hub.http.expect("http listener");
    let out = screenshot_dir();
    std::fs::create_dir_all(&out).expect("screenshot dir");
    let mut driver = Driver::start(
        "pusher.mjs",
        &format!("http://{http}"),
        &out,
        &["--app-id", app_id, "--key", key, "--secret", secret],
    );
    let report = driver.run(started, |need| panic!("unexpected NEED {need:?}"));
    let r = &report.results;

    // Both files came from --static-dir with their types.
    assert_eq!(number(&r["page_status"]), 200);
    assert!(
        r["page_content_type"]
            .as_str()
            .unwrap()
            .starts_with("text/html"),
        "{r:?}"
    );
    assert_eq!(number(&r["js_status"]), 200);
    assert!(
        r["js_content_type"]
            .as_str()
            .unwrap()
            .starts_with("text/javascript"),
        "{r:?}"
    );

    // Two connections with Pusher socket ids; the refused channel shows the auth's 403.
    for page in ["A", "B"] {
        let socket = r[&format!("{page}_socket")].as_str().unwrap();
        let id = socket
            .strip_prefix("socket ")
            .unwrap_or_else(|| panic!("{socket}"));
        let (x, y) = id.split_once('.').unwrap_or_else(|| panic!("{id}"));
        assert!(x.parse::<u64>().is_ok() && y.parse::<u64>().is_ok(), "{id}");
        assert_eq!(r[&format!("{page}_vault")], "private · refused (403)");
    }
    assert_ne!(r["A_socket"], r["B_socket"]);
    // The auth endpoint was asked for each private channel by each page, never for `news`.
    assert_eq!(
        r["auth_requests"],
        serde_json::json!([
            "private-room",
            "private-room",
            "private-vault",
            "private-vault"
        ])
    );

    // Triggered through the HTTP API by the server SDK: on both pages.
    for page in ["A", "B"] {
        let news = &r[&format!("{page}_news")];
        assert_eq!(news["event"], "headline");
        assert_eq!(news["data"]["text"], "sockhub speaks Pusher");
        let room = &r[&format!("{page}_room")];
        assert_eq!(room["event"], "alert");
        assert_eq!(
            room["data"],
            serde_json::json!({"text": "for subscribers only", "level": 2})
        );
    }

    // Client events cross from page to page and are not echoed to their sender.
    assert_eq!(
        r["B_client_event"]["data"],
        serde_json::json!({"text": "typed in page A", "from": "A"})
    );
    assert_eq!(
        r["A_client_event"]["data"],
        serde_json::json!({"text": "answered from page B", "from": "B"})
    );
    assert_eq!(number(&r["A_echoed"]), 0);
    assert_eq!(number(&r["B_echoed"]), 0);
    assert_eq!(r["A_vault_after"], "refused");

    let names = report.screenshot_names();
    for want in ["pusher-a.png", "pusher-b.png"] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    assert!(hub.stop("TERM").success());
    let _ = std::fs::remove_dir_all(&site);
}
