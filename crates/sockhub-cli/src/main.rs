//! The `sockhub` binary: argv, config file, environment, logging and signals; everything else
//! is the library's.

mod backend;
mod config;
mod connect;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use std::sync::Arc;

use sockhub::{Broadcast, Echo, Listeners, OverflowPolicy, Protocol, Server, TcpFraming};
use tokio::net::{TcpListener, UdpSocket};

use crate::config::{Behavior, Bind, FileConfig};

/// sockhub: a real-time socket hub. WebSocket, TCP and UDP clients meet in channels; a message
/// from any of them reaches every subscriber of the channel, whatever its transport.
#[derive(Parser, Debug)]
#[command(name = "sockhub", version, propagate_version = true)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the server. With no arguments: WebSocket + HTTP on 127.0.0.1:8080, TCP (lines) and
    /// UDP on 127.0.0.1:1935, channel `lobby`, every message broadcast to the others.
    Serve(Box<ServeArgs>),
    /// Connect to a server like netcat/websocat: stdin lines go out, received messages go to
    /// stdout. URL: ws://HOST:PORT/PATH?channel=…, tcp://HOST:PORT, udp://HOST:PORT.
    Connect(connect::ConnectArgs),
    /// Load generator (loopback only): `echo`, `broadcast` and `idle` scenarios against a
    /// WebSocket server; results per server CPU-second with `--pid`. See docs/performance.md.
    Bench(sockhub_bench::BenchArgs),
    /// Publish a message through a server's HTTP API (POST /api/publish).
    Publish(backend::PublishArgs),
    /// Mint a client token (HMAC-SHA256 JWT) for a server run with --token-secret.
    Token(backend::TokenArgs),
}

/// Flags of `sockhub serve`. Each also reads an environment variable (shown in --help); a flag
/// beats its variable, which beats the config file, which beats the default.
#[derive(Args, Debug)]
struct ServeArgs {
    /// TOML config file (see README: every listener and limit).
    #[arg(long, env = "SOCKHUB_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    /// HTTP + WebSocket listener address, or `off`. [default: 127.0.0.1:8080]
    #[arg(long, env = "SOCKHUB_HTTP", value_name = "ADDR")]
    http: Option<Bind>,
    /// Path of the dedicated WebSocket endpoint (the upgrade also works on `/`). [default: /ws]
    #[arg(long, env = "SOCKHUB_WS_PATH", value_name = "PATH")]
    ws_path: Option<String>,
    /// Negotiate permessage-deflate (RFC 7692) with WebSocket clients that offer it.
    /// Limits apply to inflated sizes.
    #[arg(long, env = "SOCKHUB_PERMESSAGE_DEFLATE")]
    permessage_deflate: bool,
    /// With --permessage-deflate, demand client_no_context_takeover: no inflate window is kept
    /// per connection (less memory, a little less compression).
    #[arg(long, env = "SOCKHUB_DEFLATE_NO_CONTEXT_TAKEOVER")]
    deflate_no_context_takeover: bool,
    /// Serve this directory's files under /static/ on the HTTP listener (your front end):
    /// GET/HEAD, no listings, hidden files and anything outside it refused.
    #[arg(long, env = "SOCKHUB_STATIC_DIR", value_name = "DIR")]
    static_dir: Option<PathBuf>,
    /// Raw TCP listener address, or `off`. [default: 127.0.0.1:1935]
    #[arg(long, env = "SOCKHUB_TCP", value_name = "ADDR")]
    tcp: Option<Bind>,
    /// TCP framing: `lines` (\n or \r\n) or `length-prefixed` (u32 big-endian + payload).
    /// [default: lines]
    #[arg(long, env = "SOCKHUB_TCP_FRAMING", value_name = "FRAMING", value_parser = config::parse_framing)]
    tcp_framing: Option<TcpFraming>,
    /// TCP wire protocol: `raw` or `json`. [default: raw]
    #[arg(long, env = "SOCKHUB_TCP_PROTOCOL", value_name = "PROTOCOL", value_parser = config::parse_protocol)]
    tcp_protocol: Option<Protocol>,
    /// UDP listener address, or `off`. [default: 127.0.0.1:1935]
    #[arg(long, env = "SOCKHUB_UDP", value_name = "ADDR")]
    udp: Option<Bind>,
    /// UDP wire protocol: `raw` or `json`. [default: raw]
    #[arg(long, env = "SOCKHUB_UDP_PROTOCOL", value_name = "PROTOCOL", value_parser = config::parse_protocol)]
    udp_protocol: Option<Protocol>,
    /// UDP return-routability check: `on` (a source gets at most 3x what it sent until it
    /// echoes a cookie) or `off` (only where source addresses cannot be spoofed). [default: on]
    #[arg(long, env = "SOCKHUB_UDP_ADDRESS_VALIDATION", value_name = "on|off", value_parser = parse_on_off)]
    udp_address_validation: Option<bool>,
    /// Sessions open at once, all transports (beyond it: HTTP 503 / `ERROR 1013` line).
    /// [default: 10000]
    #[arg(long, env = "SOCKHUB_MAX_CONNECTIONS", value_name = "N")]
    max_connections: Option<usize>,
    /// Largest message in bytes (beyond it: WebSocket close 1009 / `ERROR 1009` line / UDP drop).
    /// [default: 65536]
    #[arg(long, env = "SOCKHUB_MAX_MESSAGE_SIZE", value_name = "BYTES")]
    max_message_size: Option<usize>,
    /// Messages a session may send per second, bursts of one second's worth (beyond it: close
    /// 1008 / `ERROR 1008` line / UDP drop); 0 disables. [default: 1000]
    #[arg(long, env = "SOCKHUB_MAX_MESSAGES_PER_SECOND", value_name = "N")]
    max_messages_per_second: Option<u32>,
    /// Time allowed for the WebSocket upgrade request. [default: 10s]
    #[arg(long, env = "SOCKHUB_HANDSHAKE_TIMEOUT", value_name = "DURATION", value_parser = sockhub::config::parse_duration)]
    handshake_timeout: Option<Duration>,
    /// Close WebSocket sessions (and expire UDP peers) silent this long, pings answered
    /// included (close 4201); 0 disables. [default: 120s]
    #[arg(long, env = "SOCKHUB_IDLE_TIMEOUT", value_name = "DURATION", value_parser = sockhub::config::parse_duration)]
    idle_timeout: Option<Duration>,
    /// Close raw TCP sessions that send nothing this long (`ERROR 4201 idle timeout`); 0
    /// disables (dead peers are then found by TCP keepalive). [default: 0]
    #[arg(long, env = "SOCKHUB_TCP_IDLE_TIMEOUT", value_name = "DURATION", value_parser = sockhub::config::parse_duration)]
    tcp_idle_timeout: Option<Duration>,
    /// Ping WebSocket sessions quiet this long; 0 disables. [default: 30s]
    #[arg(long, env = "SOCKHUB_PING_INTERVAL", value_name = "DURATION", value_parser = sockhub::config::parse_duration)]
    ping_interval: Option<Duration>,
    /// Bytes queued per session before the overflow policy applies. [default: 1048576]
    #[arg(long, env = "SOCKHUB_MAX_OUTBOX_BYTES", value_name = "BYTES")]
    max_outbox_bytes: Option<usize>,
    /// What to do with a client whose outbox is full: `disconnect` (close 4100) or
    /// `drop-oldest`. [default: disconnect]
    #[arg(long, env = "SOCKHUB_OUTBOX_OVERFLOW", value_name = "POLICY", value_parser = parse_policy)]
    outbox_overflow: Option<OverflowPolicy>,
    /// On shutdown, time allowed to drain outboxes and say goodbye. [default: 5s]
    #[arg(long, env = "SOCKHUB_DRAIN_TIMEOUT", value_name = "DURATION", value_parser = sockhub::config::parse_duration)]
    drain_timeout: Option<Duration>,
    /// Built-in handler: `broadcast` each message to the other members of the sender's
    /// channels, or `echo` it back to the sender. [default: broadcast]
    #[arg(
        long,
        alias = "behavior",
        env = "SOCKHUB_HANDLER",
        value_name = "HANDLER"
    )]
    handler: Option<Behavior>,
    /// Secret key for the HTTP API (`Authorization: Bearer KEY`). Without one the API answers
    /// loopback clients only, and a non-loopback --http is refused.
    #[arg(
        long,
        env = "SOCKHUB_API_KEY",
        value_name = "KEY",
        hide_env_values = true
    )]
    api_key: Option<String>,
    /// API requests per second, all clients together (beyond it: HTTP 429); 0 disables.
    /// [default: 0]
    #[arg(long, env = "SOCKHUB_API_MAX_REQUESTS_PER_SECOND", value_name = "N")]
    api_max_requests_per_second: Option<u32>,
    /// Require clients to present a token signed with this secret (HMAC-SHA256 JWT; mint one
    /// with `sockhub token`). WebSocket: `?token=` or `Authorization: Bearer`; TCP: first line
    /// `AUTH <token>`; UDP: first datagram `AUTH <token>`. [default: anonymous access]
    #[arg(
        long,
        env = "SOCKHUB_TOKEN_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    token_secret: Option<String>,
    /// POST connect / message / close events to this http:// URL (signed; see README).
    #[arg(
        long,
        env = "SOCKHUB_WEBHOOK",
        value_name = "URL",
        requires = "webhook_secret"
    )]
    webhook: Option<String>,
    /// Key for the webhook signature header `X-Sockhub-Signature: sha256=<hex>`.
    #[arg(
        long,
        env = "SOCKHUB_WEBHOOK_SECRET",
        value_name = "SECRET",
        hide_env_values = true
    )]
    webhook_secret: Option<String>,
    /// Time allowed for one webhook request. [default: 5s]
    #[arg(long, env = "SOCKHUB_WEBHOOK_TIMEOUT", value_name = "DURATION", value_parser = sockhub::config::parse_duration)]
    webhook_timeout: Option<Duration>,
    /// A Pusher Channels app, `APP_ID:KEY:SECRET` (repeatable). Without one, a demo app with a
    /// random secret is served and its credentials are logged at start-up.
    #[arg(
        long = "pusher-app",
        env = "SOCKHUB_PUSHER_APP",
        value_name = "APP_ID:KEY:SECRET",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pusher_apps: Vec<sockhub::config::PusherApp>,
    /// Broker relaying publishes between nodes: `memory` (one node), `redis://HOST:PORT` or
    /// `nats://HOST:PORT`. [default: memory]
    #[arg(long, env = "SOCKHUB_BROKER", value_name = "URL")]
    broker: Option<String>,
    /// This node's name among the nodes sharing a broker. [default: HOSTNAME-RANDOM]
    #[arg(long, env = "SOCKHUB_NODE_ID", value_name = "NAME")]
    node_id: Option<String>,
    /// Prefix of every broker subject, so deployments can share a broker. [default: sockhub]
    #[arg(long, env = "SOCKHUB_BROKER_PREFIX", value_name = "PREFIX")]
    broker_prefix: Option<String>,
    /// Runtime worker threads. [default: the number of CPU cores]
    #[arg(long, env = "SOCKHUB_WORKERS", value_name = "N", value_parser = clap::value_parser!(u16).range(1..))]
    workers: Option<u16>,
    /// Log filter (tracing EnvFilter syntax, e.g. `info`, `sockhub=debug`). RUST_LOG also works.
    #[arg(
        long,
        env = "SOCKHUB_LOG",
        value_name = "FILTER",
        default_value = "info"
    )]
    log: String,
}

/// A random secret for the demo Pusher app (32 hex digits), from the OS's randomness.
fn demo_secret() -> String {
    use std::io::Read as _;
    let mut b = [0u8; 16];
    match std::fs::File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut b)) {
        Ok(()) => b.iter().map(|x| format!("{x:02x}")).collect(),
        Err(_) => format!(
            "{:032x}",
            std::process::id() as u128 * 0x9e37_79b9_7f4a_7c15
        ),
    }
}

fn parse_on_off(s: &str) -> Result<bool, String> {
    match s {
        "on" | "true" | "yes" => Ok(true),
        "off" | "false" | "no" => Ok(false),
        other => Err(format!("expected on or off, not {other:?}")),
    }
}

fn parse_policy(s: &str) -> Result<OverflowPolicy, String> {
    match s {
        "disconnect" => Ok(OverflowPolicy::Disconnect),
        "drop-oldest" => Ok(OverflowPolicy::DropOldest),
        other => Err(format!(
            "unknown policy {other:?} (expected disconnect or drop-oldest)"
        )),
    }
}

/// Exit status for bad configuration (the same as clap's usage errors).
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Connect(args) => connect::main(args),
        Command::Bench(args) => sockhub_bench::run(args),
        Command::Publish(args) => backend::publish(args),
        Command::Token(args) => backend::token(args),
    }
}

/// Merges file, environment and flags into the final configuration.
fn resolve(args: &ServeArgs) -> Result<FileConfig, String> {
    let mut cfg = match &args.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    }
    .with_default_tcp();
    if let Some(b) = args.http {
        cfg.http.listen = b;
    }
    if let Some(p) = &args.ws_path {
        cfg.http.path = p.clone();
    }
    if args.permessage_deflate {
        cfg.http.permessage_deflate = true;
    }
    if args.deflate_no_context_takeover {
        cfg.http.deflate_no_context_takeover = true;
    }
    if let Some(d) = &args.static_dir {
        cfg.http.static_dir = Some(d.clone());
    }
    let tcp = &mut cfg.tcp[0];
    if let Some(b) = args.tcp {
        tcp.listen = b;
    }
    if let Some(f) = args.tcp_framing {
        tcp.framing = f;
    }
    if let Some(p) = args.tcp_protocol {
        tcp.protocol = p;
    }
    if let Some(b) = args.udp {
        cfg.udp.listen = b;
    }
    if let Some(v) = args.udp_address_validation {
        cfg.udp.address_validation = v;
    }
    if let Some(p) = args.udp_protocol {
        cfg.udp.protocol = p;
    }
    let l = &mut cfg.limits;
    macro_rules! set {
        ($($field:ident),*) => { $( if let Some(v) = args.$field { l.$field = v; } )* };
    }
    set!(
        max_connections,
        max_message_size,
        max_messages_per_second,
        handshake_timeout,
        idle_timeout,
        tcp_idle_timeout,
        ping_interval,
        max_outbox_bytes,
        outbox_overflow,
        drain_timeout
    );
    if let Some(b) = args.handler {
        cfg.handler = Some(b);
    }
    if !args.pusher_apps.is_empty() {
        cfg.pusher = args.pusher_apps.clone();
    }
    if cfg.pusher.is_empty() {
        cfg.pusher.push(sockhub::config::PusherApp {
            app_id: "1".into(),
            key: "sockhub-demo".into(),
            secret: demo_secret(),
            ..Default::default()
        });
        cfg.pusher_demo = true;
    }
    if let Some(b) = &args.broker {
        cfg.broker.url = b.clone();
    }
    if let Some(n) = &args.node_id {
        cfg.broker.node_id = Some(n.clone());
    }
    if let Some(p) = &args.broker_prefix {
        cfg.broker.prefix = p.clone();
    }
    if let Some(k) = &args.api_key {
        cfg.api.key = Some(k.clone());
    }
    if let Some(n) = args.api_max_requests_per_second {
        cfg.api.max_requests_per_second = n;
    }
    if let Some(t) = &args.token_secret {
        cfg.auth.token_secret = Some(t.clone());
    }
    if let Some(url) = &args.webhook {
        cfg.webhook.get_or_insert_with(Default::default).url = url.clone();
    }
    if let Some(w) = cfg.webhook.as_mut() {
        if let Some(secret) = &args.webhook_secret {
            w.secret = secret.clone();
        }
        if let Some(t) = args.webhook_timeout {
            w.timeout = t;
        }
    }
    cfg.check()?;
    Ok(cfg)
}

fn serve(args: ServeArgs) -> ExitCode {
    init_logging(&args.log);
    let cfg = match resolve(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sockhub: {e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let mut builder = tokio::runtime::Builder::new_multi_thread();
    if let Some(n) = args.workers {
        builder.worker_threads(usize::from(n));
    }
    let runtime = match builder.enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("sockhub: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let shutdown = match shutdown_signal() {
            Ok(s) => s,
            Err(e) => {
                eprintln!("sockhub: cannot install signal handlers: {e}");
                return ExitCode::FAILURE;
            }
        };
        let listeners = match bind(&cfg).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("sockhub: {e}");
                return ExitCode::FAILURE;
            }
        };
        let config = cfg.to_server_config();
        let handler: Arc<dyn sockhub::Handler> = match cfg.handler.unwrap_or_default() {
            Behavior::Broadcast => Arc::new(Broadcast),
            Behavior::Echo => Arc::new(Echo),
        };
        let broker = match cfg.broker.start() {
            Ok(b) => b,
            Err(e) => {
                eprintln!("sockhub: {e}");
                return ExitCode::from(EXIT_CONFIG);
            }
        };
        let server = Server::with_parts(config, handler, broker);
        let addr = |a: Option<SocketAddr>| a.map_or("off".to_string(), |a| a.to_string());
        tracing::info!(
            http = %addr(listeners.http.as_ref().and_then(|l| l.local_addr().ok())),
            ws_path = %cfg.http.path,
            tcp = %if listeners.tcp.is_empty() { "off".to_string() } else {
                listeners.tcp.iter().map(|(l, _)| addr(l.local_addr().ok())).collect::<Vec<_>>().join(",")
            },
            udp = %addr(listeners.udp.as_ref().and_then(|(u, _)| u.local_addr().ok())),
            handler = ?cfg.handler.unwrap_or_default(),
            broker = %cfg.broker.describe(),
            max_connections = cfg.limits.max_connections,
            "sockhub listening"
        );
        if let Some(dir) = &cfg.http.static_dir {
            tracing::info!(dir = %dir.display(), "serving static files under /static/");
        }
        if cfg.pusher_demo {
            let app = &cfg.pusher[0];
            tracing::info!(
                app_id = %app.app_id,
                key = %app.key,
                secret = %app.secret,
                "pusher demo app (set --pusher-app APP_ID:KEY:SECRET for your own)"
            );
        }
        server.serve(listeners, shutdown).await;
        ExitCode::SUCCESS
    })
}

/// Binds every enabled listener, failing with the address in the message.
async fn bind(cfg: &FileConfig) -> Result<Listeners, String> {
    let mut l = Listeners::default();
    if let Bind::At(a) = cfg.http.listen {
        warn_if_exposed("http", a);
        l.http = Some(
            TcpListener::bind(a)
                .await
                .map_err(|e| format!("cannot listen for HTTP/WebSocket on {a}: {e}"))?,
        );
    }
    for t in &cfg.tcp {
        if let Bind::At(a) = t.listen {
            warn_if_exposed("tcp", a);
            let listener = TcpListener::bind(a)
                .await
                .map_err(|e| format!("cannot listen for TCP on {a}: {e}"))?;
            l.tcp.push((listener, t.options()));
        }
    }
    if let Bind::At(a) = cfg.udp.listen {
        warn_if_exposed("udp", a);
        let socket = UdpSocket::bind(a)
            .await
            .map_err(|e| format!("cannot bind UDP on {a}: {e}"))?;
        l.udp = Some((socket, cfg.udp.options()));
    }
    Ok(l)
}

fn warn_if_exposed(what: &str, a: SocketAddr) {
    if !a.ip().is_loopback() {
        tracing::warn!(listener = what, addr = %a, "listening beyond loopback: clients on the network can connect");
    }
}

/// Installs the SIGINT (Ctrl-C) and SIGTERM handlers now and returns a future that resolves on
/// either. Installing them before the "listening" line matters: a signal that arrives after it
/// must shut down gracefully, never kill the process with the default action.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = int.recv() => tracing::info!("SIGINT received"),
            _ = term.recv() => tracing::info!("SIGTERM received"),
        }
    })
}

fn init_logging(filter: &str) {
    use tracing_subscriber::EnvFilter;
    let filter = std::env::var("RUST_LOG")
        .ok()
        .and_then(|f| EnvFilter::try_new(f).ok())
        .or_else(|| EnvFilter::try_new(filter).ok())
        .unwrap_or_else(|| EnvFilter::new("info"));
    use std::io::IsTerminal;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::stderr().is_terminal())
        .with_writer(std::io::stderr)
        .init();
}
