//! Independent peers against the real binaries: the Python `websockets` library (an RFC 6455
//! implementation that shares no code with sockhub or tungstenite) and the classic PHP
//! `socket_*` client, run as child processes from `tests/peers/`.
//!
//! php-cli (with the sockets extension) and the `websockets` PyPI package must be installed.
//! A missing one fails the test with the command that installs it; set
//! `SOCKHUB_ALLOW_MISSING_PEERS=1` to skip instead (a skip line goes to stderr).
//! `SOCKHUB_PHP` and `SOCKHUB_PYTHON` name other interpreters than `php` and `python3`.
//!
//! Nothing here sleeps to let something happen: every step waits for an event (a log line, a
//! line on a peer's stdout, a received message, a process exit) for at most [`WAIT`].

mod common;

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{Sockhub, WAIT};
use sockhub_testkit::{within, WsClient};

/// The lines the classic PHP client sends, as `Ho\r\nfirst blood\r\n` in one write.
const CLASSIC_LINES: [&str; 2] = ["Ho", "first blood"];

/// What the greeting example writes to every client.
const GREETING: &str = "测试成功！";

// ---------------------------------------------------------------------------------------------
// Finding the peers
// ---------------------------------------------------------------------------------------------

/// The workspace root (this crate lives in `crates/sockhub-cli`).
fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn peer_script(name: &str) -> PathBuf {
    workspace().join("tests/peers").join(name)
}

fn php() -> String {
    std::env::var("SOCKHUB_PHP").unwrap_or_else(|_| "php".into())
}

fn python() -> String {
    std::env::var("SOCKHUB_PYTHON").unwrap_or_else(|_| "python3".into())
}

/// Runs a short probe command, returning its stdout or a description of what went wrong.
fn probe(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run `{program}`: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "`{program} {}` failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Is php-cli with the sockets extension there? `Some` says what is missing.
fn php_missing() -> Option<String> {
    match probe(&php(), &["-m"]) {
        Err(e) => Some(format!("PHP is not available: {e}")),
        Ok(modules) if !modules.lines().any(|m| m.trim() == "sockets") => Some(format!(
            "`{} -m` does not list the sockets extension",
            php()
        )),
        Ok(_) => None,
    }
}

/// Is Python with `websockets` (the asyncio client API, websockets >= 13) there? `Some` says
/// what is missing.
fn python_missing() -> Option<String> {
    probe(
        &python(),
        &[
            "-c",
            "import websockets, websockets.asyncio.client; print(websockets.__version__)",
        ],
    )
    .err()
    .map(|e| format!("Python with the `websockets` package is not available: {e}"))
}

/// Decides whether a test can run: `true` to go on. A missing peer fails the test, unless
/// `SOCKHUB_ALLOW_MISSING_PEERS=1`, which turns it into a reported skip.
fn peers_present(test: &str, php_needed: bool, python_needed: bool) -> bool {
    let mut missing = Vec::new();
    if php_needed {
        if let Some(e) = php_missing() {
            missing.push(format!(
                "{e}\n  install: `apt-get install php-cli` (Debian/Ubuntu; the sockets extension \
                 is part of php-common) or enable `extension=sockets` in php.ini; \
                 or point SOCKHUB_PHP at a php binary"
            ));
        }
    }
    if python_needed {
        if let Some(e) = python_missing() {
            missing.push(format!(
                "{e}\n  install: `python3 -m pip install 'websockets>=13'` (tested with 17.x); \
                 or point SOCKHUB_PYTHON at a python3 that has it"
            ));
        }
    }
    if missing.is_empty() {
        return true;
    }
    let missing = missing.join("\n");
    if std::env::var("SOCKHUB_ALLOW_MISSING_PEERS").as_deref() == Ok("1") {
        eprintln!(
            "SKIP {test}: SOCKHUB_ALLOW_MISSING_PEERS=1 and a test peer is missing:\n{missing}"
        );
        return false;
    }
    panic!(
        "{test}: a test peer is missing:\n{missing}\n\
         (set SOCKHUB_ALLOW_MISSING_PEERS=1 to skip these tests instead of failing)"
    );
}

// ---------------------------------------------------------------------------------------------
// A child process whose output is read line by line as it arrives
// ---------------------------------------------------------------------------------------------

/// One output stream of a child, split into lines by a background thread.
struct Lines {
    rx: mpsc::Receiver<String>,
    /// Lines received so far, each with its terminator (so joining them gives the exact bytes).
    seen: Vec<String>,
    /// The stream reached end of file.
    eof: bool,
}

impl Lines {
    fn read(stream: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stream);
            loop {
                let mut line = Vec::new();
                match r.read_until(b'\n', &mut line) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if tx
                            .send(String::from_utf8_lossy(&line).into_owned())
                            .is_err()
                        {
                            break;
                        }
                    }
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
            eof: false,
        }
    }

    /// The next line without its terminator; `None` at end of file; `Err` on timeout.
    fn next(&mut self, deadline: Instant) -> Result<Option<String>, ()> {
        if self.eof {
            return Ok(None);
        }
        match self
            .rx
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            Ok(line) => {
                self.seen.push(line.clone());
                Ok(Some(line.trim_end_matches(['\n', '\r']).to_string()))
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                self.eof = true;
                Ok(None)
            }
            Err(mpsc::RecvTimeoutError::Timeout) => Err(()),
        }
    }

    /// Everything received so far, exactly.
    fn text(&self) -> String {
        self.seen.concat()
    }
}

/// A peer process (PHP, Python or an example server) with both outputs captured.
struct Peer {
    name: String,
    child: Child,
    stdout: Lines,
    stderr: Lines,
}

impl Peer {
    fn spawn<S: AsRef<OsStr>>(name: &str, program: impl AsRef<OsStr>, args: &[S]) -> Peer {
        Peer::spawn_env(name, program, args, &[])
    }

    /// [`Peer::spawn`] with extra environment variables.
    fn spawn_env<S: AsRef<OsStr>>(
        name: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
        env: &[(&str, &str)],
    ) -> Peer {
        let program = program.as_ref();
        let mut child = Command::new(program)
            .args(args)
            .envs(env.iter().copied())
            .env_remove("RUST_LOG")
            .env("PYTHONUNBUFFERED", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name} ({}): {e}", program.to_string_lossy()));
        let stdout = Lines::read(child.stdout.take().unwrap());
        let stderr = Lines::read(child.stderr.take().unwrap());
        Peer {
            name: name.to_string(),
            child,
            stdout,
            stderr,
        }
    }

    /// What the peer printed so far, for failure messages.
    fn transcript(&mut self) -> String {
        // Whatever is already in the pipes, without waiting.
        let now = Instant::now();
        while let Ok(Some(_)) = self.stdout.next(now) {}
        while let Ok(Some(_)) = self.stderr.next(now) {}
        format!(
            "--- {} stdout ---\n{}--- {} stderr ---\n{}",
            self.name,
            self.stdout.text(),
            self.name,
            self.stderr.text()
        )
    }

    /// Panics with `msg` and the peer's output so far.
    fn fail(&mut self, msg: String) -> ! {
        let t = self.transcript();
        panic!("{msg}\n{t}")
    }

    /// The next stdout line; panics at end of file or after [`WAIT`].
    fn line(&mut self, what: &str) -> String {
        match self.stdout.next(Instant::now() + WAIT) {
            Ok(Some(l)) => l,
            Ok(None) => {
                let msg = format!("{} ended its output while {what} was expected", self.name);
                self.fail(msg)
            }
            Err(()) => {
                let msg = format!("no {what} from {} within {WAIT:?}", self.name);
                self.fail(msg)
            }
        }
    }

    /// Waits for the `READY HOST:PORT` line of `ws_client.py` and returns the address.
    fn ready(&mut self) -> SocketAddr {
        let line = self.line("READY line");
        line.strip_prefix("READY ")
            .and_then(|a| a.parse().ok())
            .unwrap_or_else(|| panic!("{}: expected `READY HOST:PORT`, got {line:?}", self.name))
    }

    /// Waits for a stderr line containing `needle`; `None` if stderr ends first.
    fn stderr_line(&mut self, needle: &str) -> Option<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.stderr.next(deadline) {
                Ok(Some(l)) if l.contains(needle) => return Some(l),
                Ok(Some(_)) => {}
                Ok(None) => return None,
                Err(()) => {
                    let msg = format!(
                        "no stderr line containing {needle:?} from {} within {WAIT:?}",
                        self.name
                    );
                    self.fail(msg)
                }
            }
        }
    }

    /// Waits (bounded) for the process to exit; returns its status with its whole stdout.
    fn finish(&mut self) -> (ExitStatus, String) {
        let deadline = Instant::now() + WAIT;
        // Both pipes reach end of file when the process exits (the events to wait on)...
        while self.stdout.next(deadline).ok().flatten().is_some() {}
        while self.stderr.next(deadline).ok().flatten().is_some() {}
        // ...after which the exit status is there, or about to be.
        let status = loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                break st;
            }
            if Instant::now() >= deadline {
                let msg = format!("{} did not exit within {WAIT:?}", self.name);
                self.fail(msg)
            }
            std::thread::sleep(Duration::from_millis(5));
        };
        (status, self.stdout.text())
    }

    /// Like [`Peer::finish`], and the exit status must be 0.
    fn finish_ok(&mut self) -> String {
        let (status, out) = self.finish();
        if !status.success() {
            let msg = format!("{} exited with {status}", self.name);
            self.fail(msg)
        }
        out
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// The peers' command lines
// ---------------------------------------------------------------------------------------------

fn ws_client(name: &str, args: &[&str]) -> Peer {
    let script = peer_script("ws_client.py");
    let mut argv = vec![script.to_string_lossy().into_owned()];
    argv.extend(args.iter().map(|a| a.to_string()));
    Peer::spawn(name, python(), &argv)
}

fn classic_client(name: &str, addr: SocketAddr) -> Peer {
    let script = peer_script("classic_client.php");
    Peer::spawn(
        name,
        php(),
        &[
            script.to_string_lossy().into_owned(),
            addr.ip().to_string(),
            addr.port().to_string(),
        ],
    )
}
/// A needle matching only the server's `connect` log line for the session from `peer`
/// (`connect session=N transport=ws peer=127.0.0.1:P channels=["lobby"]`; the `disconnect`
/// line has `code=` where this one has `channels=`).
fn connect_line(transport: &str, peer: SocketAddr) -> String {
    format!("transport={transport} peer={peer} channels=")
}

/// The client-side address of a testkit WebSocket connection (the server logs it as `peer=`).
fn ws_local_addr(ws: &mut WsClient) -> SocketAddr {
    match ws.inner().get_ref() {
        tokio_tungstenite::MaybeTlsStream::Plain(s) => s.local_addr().expect("local_addr"),
        other => panic!("unexpected TLS stream {other:?}"),
    }
}

/// The `greeting_server` example binary, built with `cargo build -p sockhub-examples
/// --examples` if it is not there yet. It is looked for next to the binary under test
/// (`target/<profile>/examples`, which follows CARGO_TARGET_DIR), then in
/// `$CARGO_TARGET_DIR/debug/examples` and `<workspace>/target/debug/examples`.
fn greeting_server_bin() -> PathBuf {
    let name = format!("greeting_server{}", std::env::consts::EXE_SUFFIX);
    let profile_dir = Path::new(common::bin())
        .parent()
        .expect("binary directory")
        .to_path_buf();
    let mut candidates = vec![profile_dir.join("examples").join(&name)];
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR") {
        // A relative CARGO_TARGET_DIR is relative to the workspace; `join` keeps absolute ones.
        candidates.push(workspace().join(dir).join("debug/examples").join(&name));
    }
    candidates.push(workspace().join("target/debug/examples").join(&name));
    let found = |c: &[PathBuf]| c.iter().find(|p| p.is_file()).cloned();
    if let Some(p) = found(&candidates) {
        return p;
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = Command::new(&cargo);
    build
        .args(["build", "-p", "sockhub-examples", "--examples"])
        .current_dir(workspace());
    if profile_dir.file_name() == Some(OsStr::new("release")) {
        build.arg("--release");
    }
    eprintln!("greeting_server example not built yet; running `cargo build -p sockhub-examples --examples`");
    let out = build
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cargo}: {e}"));
    assert!(
        out.status.success(),
        "`cargo build -p sockhub-examples --examples` failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    found(&candidates).unwrap_or_else(|| {
        panic!("greeting_server example still missing after the build; looked at {candidates:?}")
    })
}

/// Starts the greeting example on a free loopback port and waits for its `greeting server on`
/// line. The port is found by binding port 0 and letting it go; if another process takes it
/// before the example binds it, the example exits and this tries again with a new port.
fn start_greeting_server(bin: &Path) -> (Peer, SocketAddr) {
    let mut failures = Vec::new();
    for attempt in 1..=5 {
        let addr = match TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()) {
            Ok(a) => a,
            Err(e) => {
                failures.push(format!("attempt {attempt}: cannot find a free port: {e}"));
                continue;
            }
        };
        let mut server = Peer::spawn("greeting_server", bin, &[addr.to_string()]);
        if server.stderr_line("greeting server on").is_some() {
            return (server, addr);
        }
        // Its stderr ended before it listened: it exited. Retry only if the port was taken.
        let (status, _) = server.finish();
        let log = server.stderr.text();
        failures.push(format!(
            "attempt {attempt} on {addr}: exited with {status}:\n{log}"
        ));
        if !(log.contains("AddrInUse") || log.contains("in use")) {
            break;
        }
    }
    panic!(
        "greeting_server ({}) did not start:\n{}",
        bin.display(),
        failures.join("\n")
    );
}

// ---------------------------------------------------------------------------------------------
// The tests
// ---------------------------------------------------------------------------------------------

/// Python `websockets`, tungstenite and a raw TCP client meet in `lobby`: each one's messages
/// reach the others, and the classic client's two `\r\n` lines arrive as two messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_websockets_meets_sockhub_in_lobby() {
    if !peers_present("python_websockets_meets_sockhub_in_lobby", false, true) {
        return;
    }
    let mut hub = Sockhub::serve(&[]);
    let url = hub.ws_url("/ws");

    // A Python member that prints the next 4 messages it receives.
    let mut listener = ws_client("python listener", &["listen", &url, "4"]);
    let py_addr = listener.ready();
    hub.wait_for_line(&connect_line("ws", py_addr));

    // A tungstenite member.
    let mut tung = WsClient::connect(&url).await;
    let tung_addr = ws_local_addr(&mut tung);
    hub.wait_for_line(&connect_line("ws", tung_addr));

    // Python sends: both other members receive it.
    let mut sender = ws_client("python sender", &["send", &url, "hello from python"]);
    assert_eq!(tung.recv_text().await, "hello from python");
    assert_eq!(listener.line("message 1"), "hello from python");
    sender.finish_ok();

    // tungstenite sends: Python receives it.
    tung.send_text("hello from tungstenite").await;
    assert_eq!(listener.line("message 2"), "hello from tungstenite");

    // A TCP client writes the classic client's bytes: one message per line, on every transport.
    let tcp_addr = hub.tcp.expect("tcp listener");
    let mut tcp = TcpStream::connect_timeout(&tcp_addr, WAIT).expect("tcp connect");
    let tcp_local = tcp.local_addr().expect("local_addr");
    hub.wait_for_line(&connect_line("tcp", tcp_local));
    tcp.write_all(b"Ho\r\nfirst blood\r\n").expect("tcp write");
    for (i, line) in CLASSIC_LINES.iter().enumerate() {
        assert_eq!(listener.line(&format!("message {}", i + 3)), *line);
    }
    for line in CLASSIC_LINES {
        assert_eq!(tung.recv_text().await, line);
    }

    // Having printed its 4 messages, the listener closes normally and exits 0.
    let out = listener.finish_ok();
    assert_eq!(
        out,
        format!("READY {py_addr}\nhello from python\nhello from tungstenite\nHo\nfirst blood\n")
    );

    tung.close().await;
    drop(tcp);
    let status = hub.stop("TERM");
    assert!(status.success(), "sockhub exited with {status}");
}

/// SIGTERM: a Python `websockets` client gets close 1001 `server shutting down`, and the
/// binary exits 0.
#[test]
fn python_websockets_sees_1001_on_sigterm() {
    if !peers_present("python_websockets_sees_1001_on_sigterm", false, true) {
        return;
    }
    let mut hub = Sockhub::serve(&[]);
    let url = hub.ws_url("/ws");
    let mut py = ws_client("python close-code", &["close-code", &url]);
    let py_addr = py.ready();
    hub.wait_for_line(&connect_line("ws", py_addr));

    let status = hub.stop("TERM");
    assert!(
        status.success(),
        "sockhub exited with {status} after SIGTERM; log:\n{}",
        hub.lines.join("\n")
    );
    let out = py.finish_ok();
    assert_eq!(out, format!("READY {py_addr}\n1001 server shutting down\n"));
    assert!(
        hub.lines
            .iter()
            .any(|l| l.contains(&format!("transport=ws peer={py_addr} code=1001"))),
        "no disconnect line with code 1001; log:\n{}",
        hub.lines.join("\n")
    );
}

/// The classic PHP client against `sockhub serve`: its two lines reach a WebSocket member of
/// `lobby`; on SIGTERM it is told `ERROR 1001 server shutting down`, sees end of file and
/// exits 0, and the binary exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn classic_php_client_meets_sockhub() {
    if !peers_present("classic_php_client_meets_sockhub", true, false) {
        return;
    }
    let mut hub = Sockhub::serve(&[]);
    let url = hub.ws_url("/ws");
    let mut ws = WsClient::connect(&url).await;
    let ws_addr = ws_local_addr(&mut ws);
    hub.wait_for_line(&connect_line("ws", ws_addr));

    let mut php = classic_client("php classic client", hub.tcp.expect("tcp listener"));
    // Its session is the only TCP one.
    hub.wait_for_line("transport=tcp peer=");
    for line in CLASSIC_LINES {
        assert_eq!(ws.recv_text().await, line);
    }

    // The WebSocket member answers the server's close while the binary drains.
    let closing = tokio::spawn(async move { ws.closed().await });
    let status = hub.stop("TERM");
    assert!(
        status.success(),
        "sockhub exited with {status} after SIGTERM; log:\n{}",
        hub.lines.join("\n")
    );

    let out = php.finish_ok();
    assert_eq!(
        out.lines().last(),
        Some("ERROR 1001 server shutting down"),
        "PHP client stdout: {out:?}"
    );
    // Nobody else sent anything, so that line is all it received.
    assert_eq!(out, "ERROR 1001 server shutting down\n");

    let (msgs, closed) = within("ws member's close", closing)
        .await
        .expect("close task");
    assert!(msgs.is_empty(), "unexpected messages: {msgs:?}");
    assert_eq!(
        (closed.code, closed.reason.as_str()),
        (1001, "server shutting down")
    );
}

/// The classic PHP client against the greeting example, 5 times: each run prints the greeting
/// and ends at end of file; after the 5th client the example exits 0 by itself.
#[test]
fn classic_php_client_meets_greeting_example() {
    if !peers_present("classic_php_client_meets_greeting_example", true, false) {
        return;
    }
    let bin = greeting_server_bin();
    let (mut server, addr) = start_greeting_server(&bin);
    for i in 1..=5 {
        let mut php = classic_client(&format!("php classic client {i}"), addr);
        let out = php.finish_ok();
        assert_eq!(out, format!("{GREETING}\n"), "client {i}: stdout");
    }
    let (status, _) = server.finish();
    let log = server.stderr.text();
    assert!(
        status.success(),
        "greeting_server exited with {status}; log:\n{log}"
    );
    assert_eq!(log.matches("received: Ho").count(), 5, "log:\n{log}");
    assert!(log.contains("served 5 clients, stopping"), "log:\n{log}");
}

/// Runs the binary with `args` to completion (bounded) and returns its stdout, trimmed.
fn run_sockhub(args: &[&str]) -> String {
    let mut p = Peer::spawn("sockhub", common::bin(), args);
    p.finish_ok().trim().to_string()
}

/// A free loopback port for a peer that must be told its port (php -S).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// The classic backend workflow end to end: `sockhub serve` with client tokens, an API key and
/// webhooks to a PHP app under `php -S` that checks every signature, refuses one user on
/// connect, and answers each message by publishing through the HTTP API with PHP's stream
/// functions. Tokens come from `sockhub token`; `sockhub publish` pushes from the shell.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn php_backend_gets_signed_webhooks_and_publishes_through_the_api() {
    if !peers_present(
        "php_backend_gets_signed_webhooks_and_publishes_through_the_api",
        true,
        false,
    ) {
        return;
    }
    let php_port = free_port();
    let php_addr = format!("127.0.0.1:{php_port}");
    let webhook = format!("http://{php_addr}/");
    let mut hub = Sockhub::serve(&[
        "--api-key",
        "api-k3y",
        "--token-secret",
        "t0ken-secret",
        "--webhook",
        &webhook,
        "--webhook-secret",
        "hook-secret",
        "--webhook-timeout",
        "5s",
    ]);
    let api = format!("http://{}", hub.http.expect("http listener"));
    let script = peer_script("webhook_backend.php");
    let mut backend = Peer::spawn_env(
        "php -S backend",
        php(),
        &["-S", &php_addr, &script.to_string_lossy()],
        &[
            ("WEBHOOK_SECRET", "hook-secret"),
            ("SOCKHUB_API", &api),
            ("SOCKHUB_API_KEY", "api-k3y"),
            ("BANNED_USER", "mallory"),
        ],
    );
    backend.stderr_line("started");

    let token = |user: &str| {
        run_sockhub(&[
            "token",
            "--secret",
            "t0ken-secret",
            "--user",
            user,
            "--channel",
            "lobby",
        ])
    };
    // mallory is refused by the backend, with its reason, before the upgrade.
    let refused = WsClient::try_connect(&hub.ws_url(&format!("/ws?token={}", token("mallory"))))
        .await
        .err()
        .map(|e| e.to_string());
    assert!(
        refused.as_deref().is_some_and(|e| e.contains("403")),
        "{refused:?}"
    );
    backend.stderr_line("EVENT connect mallory");

    let mut alice = WsClient::connect(&hub.ws_url(&format!("/ws?token={}", token("alice")))).await;
    let mut bob = WsClient::connect(&hub.ws_url(&format!("/ws?token={}", token("bob")))).await;
    backend.stderr_line("EVENT connect bob");

    // alice speaks: bob gets it from the built-in broadcast, then both get the backend's answer.
    alice.send_text("hello backend").await;
    assert_eq!(bob.recv_text().await, "hello backend");
    assert_eq!(bob.recv_text().await, "backend saw alice: hello backend");
    assert_eq!(alice.recv_text().await, "backend saw alice: hello backend");
    backend.stderr_line(r#"PUBLISHED {"channels":1,"deliveries":2}"#);

    // The shell publishes too.
    let out = run_sockhub(&[
        "publish",
        "--url",
        &api,
        "--api-key",
        "api-k3y",
        "--channel",
        "lobby",
        "from the shell",
    ]);
    assert_eq!(out, r#"{"channels":1,"deliveries":2}"#);
    assert_eq!(alice.recv_text().await, "from the shell");
    assert_eq!(bob.recv_text().await, "from the shell");

    // Without the key the API refuses, and `sockhub publish` says so and fails.
    let mut nokey = Peer::spawn(
        "sockhub publish without key",
        common::bin(),
        &["publish", "--url", &api, "--channel", "lobby", "x"],
    );
    let (status, _) = nokey.finish();
    assert!(!status.success());
    assert!(
        nokey.stderr.text().contains("HTTP 401"),
        "{}",
        nokey.transcript()
    );

    bob.close().await;
    backend.stderr_line("EVENT close bob");
    assert!(
        !backend.stderr.text().contains("BAD SIGNATURE"),
        "{}",
        backend.transcript()
    );

    // /metrics parses with the Prometheus project's own Python parser, and shows the webhooks.
    let families = prometheus_families(&format!("{api}/metrics"));
    let sample = |name: &str, labels: &str| {
        families
            .lines()
            .find(|l| l.starts_with(&format!("{name} {labels} ")))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no {name} {labels} in\n{families}"))
    };
    assert_eq!(
        sample(
            "sockhub_webhook_requests_total",
            r#"{"event":"connect","outcome":"refused"}"#
        ),
        1.0
    );
    assert_eq!(
        sample(
            "sockhub_webhook_requests_total",
            r#"{"event":"connect","outcome":"ok"}"#
        ),
        2.0
    );
    assert!(sample("sockhub_publishes_total", "{}") >= 3.0);
    assert_eq!(sample("sockhub_connections", r#"{"transport":"ws"}"#), 1.0);

    alice.close().await;
    let status = hub.stop("TERM");
    assert!(status.success(), "sockhub exited with {status}");
}

/// Fetches a Prometheus text page and parses it with `prometheus_client.parser` (PyPI), printing
/// one `name {labels as sorted JSON} value` line per sample. Fails if the page does not parse.
fn prometheus_families(url: &str) -> String {
    let program = r#"
import json, sys, urllib.request
from prometheus_client.parser import text_string_to_metric_families
text = urllib.request.urlopen(sys.argv[1], timeout=10).read().decode()
for family in text_string_to_metric_families(text):
    for s in family.samples:
        print(s.name, json.dumps(s.labels, sort_keys=True, separators=(",", ":")), s.value)
"#;
    let mut p = Peer::spawn("prometheus parser", python(), &["-c", program, url]);
    p.finish_ok()
}
