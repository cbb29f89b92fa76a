//! Real Redis and NATS servers for tests, each on a free loopback port (never the standard
//! ones), stopped when dropped. They must be installed (`redis-server`, `nats-server`; Debian
//! packages of the same names); `scripts/test` installs them.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Longest wait for a broker to accept connections.
const START: Duration = Duration::from_secs(20);

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn wait_accepting(addr: SocketAddr, child: &mut Child, what: &str) {
    let deadline = Instant::now() + START;
    loop {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited with {status} before accepting on {addr}");
        }
        assert!(
            Instant::now() < deadline,
            "{what} not accepting on {addr} within {START:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn(program: &str, args: &[String]) -> Child {
    Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!(
                "cannot start {program}: {e}\n  install: `apt-get install redis-server nats-server` \
                 (scripts/test does this)"
            )
        })
}

/// A `redis-server` with no persistence.
pub struct RedisServer {
    /// Its address.
    pub addr: SocketAddr,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts one on a free port and waits until it accepts.
    pub fn start() -> RedisServer {
        let mut r = RedisServer {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            child: None,
        };
        r.restart();
        r
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills it (SIGKILL: an abrupt loss, as a crash would be).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        self.kill();
        let args: Vec<String> = [
            "--port",
            &self.addr.port().to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut child = spawn("redis-server", &args);
        wait_accepting(self.addr, &mut child, "redis-server");
        self.child = Some(child);
    }

    /// Runs one command with `redis-cli` and returns its output lines.
    pub fn cli(&self, args: &[&str]) -> Vec<String> {
        let out = Command::new("redis-cli")
            .args(["-h", "127.0.0.1", "-p", &self.addr.port().to_string()])
            .args(args)
            .output()
            .expect("redis-cli");
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter(|l| !l.is_empty())
            .map(str::to_string)
            .collect()
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A `nats-server` with its monitoring endpoint on a second free port.
pub struct NatsServer {
    /// Client address.
    pub addr: SocketAddr,
    /// Monitoring (HTTP) address: `/subsz?subs=1` lists subscriptions.
    pub monitor: SocketAddr,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts one on free ports and waits until it accepts.
    pub fn start() -> NatsServer {
        let mut n = NatsServer {
            addr: SocketAddr::from(([127, 0, 0, 1], free_port())),
            monitor: SocketAddr::from(([127, 0, 0, 1], free_port())),
            child: None,
        };
        n.restart();
        n
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts it again on the same ports.
    pub fn restart(&mut self) {
        self.kill();
        let args: Vec<String> = [
            "-a",
            "127.0.0.1",
            "-p",
            &self.addr.port().to_string(),
            "-m",
            &self.monitor.port().to_string(),
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let mut child = spawn("nats-server", &args);
        wait_accepting(self.addr, &mut child, "nats-server");
        wait_accepting(self.monitor, &mut child, "nats-server monitoring");
        self.child = Some(child);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}
