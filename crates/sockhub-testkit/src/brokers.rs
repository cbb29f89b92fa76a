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

/// A server process that can be killed and started again with the same arguments.
struct Daemon {
    /// Program name (for messages).
    program: &'static str,
    /// Its arguments.
    args: Vec<String>,
    /// Addresses that must accept before it counts as started.
    ready: Vec<SocketAddr>,
    /// The running process, if any.
    child: Option<Child>,
}

impl Daemon {
    fn start(program: &'static str, args: &[&str], ready: Vec<SocketAddr>) -> Daemon {
        let mut d = Daemon {
            program,
            args: args.iter().map(|a| a.to_string()).collect(),
            ready,
            child: None,
        };
        d.restart();
        d
    }

    /// SIGKILL: an abrupt loss, as a crash would be.
    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn restart(&mut self) {
        self.kill();
        let mut child = spawn(self.program, &self.args);
        for addr in &self.ready {
            wait_accepting(*addr, &mut child, self.program);
        }
        self.child = Some(child);
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
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
    daemon: Daemon,
}

impl RedisServer {
    /// Starts one on a free port and waits until it accepts.
    pub fn start() -> RedisServer {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let port = addr.port().to_string();
        let args = [
            "--port",
            &port,
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--protected-mode",
            "no",
        ];
        RedisServer {
            addr,
            daemon: Daemon::start("redis-server", &args, vec![addr]),
        }
    }

    /// `redis://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("redis://{}", self.addr)
    }

    /// Kills it (SIGKILL: an abrupt loss, as a crash would be).
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// Starts it again on the same port (after [`RedisServer::kill`]).
    pub fn restart(&mut self) {
        self.daemon.restart();
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

/// A `nats-server` with its monitoring endpoint on a second free port.
pub struct NatsServer {
    /// Client address.
    pub addr: SocketAddr,
    /// Monitoring (HTTP) address: `/subsz?subs=1` lists subscriptions.
    pub monitor: SocketAddr,
    daemon: Daemon,
}

impl NatsServer {
    /// Starts one on free ports and waits until it accepts.
    pub fn start() -> NatsServer {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let monitor = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let (port, mport) = (addr.port().to_string(), monitor.port().to_string());
        let args = ["-a", "127.0.0.1", "-p", &port, "-m", &mport];
        NatsServer {
            addr,
            monitor,
            daemon: Daemon::start("nats-server", &args, vec![addr, monitor]),
        }
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://{}", self.addr)
    }

    /// Kills it (SIGKILL).
    pub fn kill(&mut self) {
        self.daemon.kill();
    }

    /// Starts it again on the same ports.
    pub fn restart(&mut self) {
        self.daemon.restart();
    }
}
