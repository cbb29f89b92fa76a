//! Runs the real `sockhub` binary on OS-chosen loopback ports and learns them from its
//! `sockhub listening` log line.

#![allow(dead_code)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Longest wait for any single expected event.
pub const WAIT: Duration = Duration::from_secs(20);

/// A running `sockhub serve`.
pub struct Sockhub {
    /// The process.
    pub child: Child,
    /// HTTP + WebSocket address, if enabled.
    pub http: Option<SocketAddr>,
    /// First TCP address, if enabled.
    pub tcp: Option<SocketAddr>,
    /// UDP address, if enabled.
    pub udp: Option<SocketAddr>,
    /// Every stderr line so far (filled in the background).
    log: mpsc::Receiver<String>,
    /// Lines already taken from `log`.
    pub lines: Vec<String>,
}

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_sockhub")
}

fn field(line: &str, key: &str) -> Option<SocketAddr> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
        .and_then(|v| v.split(',').next())
        .and_then(|v| v.parse().ok())
}

impl Sockhub {
    /// `sockhub serve` on ephemeral ports for every listener, plus `extra` arguments.
    pub fn serve(extra: &[&str]) -> Sockhub {
        let mut args = vec![
            "serve",
            "--http",
            "127.0.0.1:0",
            "--tcp",
            "127.0.0.1:0",
            "--udp",
            "127.0.0.1:0",
        ];
        args.extend_from_slice(extra);
        Sockhub::spawn(&args)
    }

    /// Runs the binary with exactly `args` and waits for its listening line.
    pub fn spawn(args: &[&str]) -> Sockhub {
        Sockhub::spawn_wrapped(&[], args)
    }

    /// Like [`Sockhub::spawn`], run through a wrapper command (e.g. `prlimit --nofile=64:64`).
    pub fn spawn_wrapped(wrapper: &[&str], args: &[&str]) -> Sockhub {
        let mut cmd = match wrapper.split_first() {
            Some((program, rest)) => {
                let mut c = Command::new(program);
                c.args(rest).arg(bin());
                c
            }
            None => Command::new(bin()),
        };
        let mut child = cmd
            .args(args)
            .env_remove("RUST_LOG")
            .env("SOCKHUB_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("spawn sockhub via {wrapper:?}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut s = Sockhub {
            child,
            http: None,
            tcp: None,
            udp: None,
            log: rx,
            lines: Vec::new(),
        };
        let line = s.wait_for_line("sockhub listening");
        s.http = field(&line, "http");
        s.tcp = field(&line, "tcp");
        s.udp = field(&line, "udp");
        s
    }

    /// Waits for a stderr line containing `needle` and returns it.
    pub fn wait_for_line(&mut self, needle: &str) -> String {
        if let Some(l) = self.lines.iter().find(|l| l.contains(needle)) {
            return l.clone();
        }
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) => {
                    self.lines.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line containing {needle:?} within {WAIT:?}; log so far:\n{}",
                    self.lines.join("\n")
                ),
            }
        }
    }

    /// `ws://HTTP_ADDR{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{}", self.http.expect("http enabled"), path)
    }

    /// Sends SIGTERM (or SIGINT) and waits for the exit status.
    pub fn stop(&mut self, signal: &str) -> ExitStatus {
        let pid = self.child.id().to_string();
        let ok = Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .expect("kill");
        assert!(ok.success());
        self.wait_exit()
    }

    /// Waits (bounded) for the process to exit.
    pub fn wait_exit(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(st) = self.child.try_wait().expect("try_wait") {
                // Collect the rest of the log for assertions.
                while let Ok(l) = self.log.recv_timeout(Duration::from_millis(200)) {
                    self.lines.push(l);
                }
                return st;
            }
            assert!(
                Instant::now() < deadline,
                "sockhub did not exit within {WAIT:?}"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Sockhub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
