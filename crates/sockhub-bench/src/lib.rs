//! Load generator for sockhub and its peers (any RFC 6455 server; raw TCP lines for publishing).
//!
//! Three scenarios, each a subcommand of [`BenchArgs`]:
//! - `echo`: N connections, K messages in flight each, payload size S, duration T → msgs/s and
//!   round-trip latency (a per-connection FIFO of send instants: an echo server answers in order).
//! - `broadcast`: N subscribers and one publisher at a fixed rate (over WebSocket, TCP lines or
//!   the HTTP API) → delivered fraction, deliveries/s, publish-to-receive latency (the send
//!   timestamp travels in the payload).
//! - `idle`: N connections opened (spread over 127.0.0.x source addresses past ~28k), held,
//!   a sample probed with pings → server RSS per connection and liveness.
//!
//! With `--pid`, the server's `/proc/PID/stat` (utime + stime) and `/proc/PID/status` (VmRSS)
//! are sampled around the measured window, so each result reads per server CPU-second, the
//! headline figure that stays comparable on a shared, noisy machine. The generator's own CPU is
//! reported too: it must stay below the server's for the figures to mean anything.
//!
//! Speed: every thread runs a current-thread runtime that drives its share of the connections
//! (one lightweight local task each, no locks or atomics on the hot path); frames are masked
//! once up front; server frames are scanned in place from a per-thread read buffer without
//! allocating; each readable event costs one `read` (the readiness is cleared on a short read),
//! and each batch of replies one `write`.
//!
//! Only loopback targets are accepted (127.0.0.0/8 and ::1), and every loop is bounded in
//! count and time.

mod broadcast;
mod echo;
mod idle;
mod procfs;
mod progress;
mod report;
mod runner;
mod target;
mod wsproto;

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

pub use report::Report;

/// Load generator for WebSocket servers on loopback: echo, broadcast and idle scenarios, results
/// per server CPU-second (arguments of `sockhub bench` and of the `sockhub-bench` binary).
#[derive(clap::Args, Debug, Clone)]
pub struct BenchArgs {
    /// The scenario to run.
    #[command(subcommand)]
    pub scenario: Scenario,
    /// Options every scenario takes.
    #[command(flatten)]
    pub common: CommonArgs,
}

/// Options shared by every scenario (accepted before or after the scenario name).
#[derive(clap::Args, Debug, Clone)]
pub struct CommonArgs {
    /// PID of the server: its CPU time (/proc/PID/stat) and RSS (/proc/PID/status) are sampled
    /// around the measured window, and results are expressed per server CPU-second.
    #[arg(long, global = true, value_name = "PID")]
    pub pid: Option<u32>,
    /// Also write the result as JSON to this file.
    #[arg(long, global = true, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Output on stdout: a readable table, or the JSON document.
    #[arg(long, global = true, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Generator threads, each driving its share of the connections on its own
    /// current-thread runtime. [default: the CPUs this process may run on]
    #[arg(long, global = true, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=64))]
    pub threads: Option<u16>,
    /// A name for this run, copied into the result (e.g. the peer under test).
    #[arg(long, global = true, value_name = "TEXT")]
    pub label: Option<String>,
    /// No progress bar (it is only drawn when stderr is a terminal anyway).
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Time allowed to open every connection (TCP connect + WebSocket handshake).
    #[arg(long, global = true, value_name = "DURATION", default_value = "60s", value_parser = parse_duration)]
    pub connect_timeout: Duration,
    /// Connections being opened at once (all threads together).
    #[arg(long, global = true, value_name = "N", default_value_t = 256, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub connect_concurrency: u32,
}

/// Output format on stdout.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A readable table.
    Table,
    /// The JSON document (the same as `--json FILE` writes).
    Json,
}

/// The scenarios.
#[derive(clap::Subcommand, Debug, Clone)]
pub enum Scenario {
    /// N connections, K messages in flight each, against an echo server (`--handler echo`):
    /// msgs/s and round-trip latency.
    Echo(EchoArgs),
    /// N subscribers and one publisher at a fixed rate, against a broadcast server: delivered
    /// fraction, deliveries/s, publish-to-receive latency.
    Broadcast(BroadcastArgs),
    /// Open N connections, hold them, probe a sample with pings: server RSS per connection and
    /// liveness.
    Idle(IdleArgs),
}

/// WebSocket frame type of the messages sent.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameKind {
    /// Binary frames.
    Binary,
    /// Text frames (ASCII payload: the server validates UTF-8).
    Text,
}

/// `echo` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct EchoArgs {
    /// WebSocket URL of the server (loopback only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Connections.
    #[arg(long, short = 'c', value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,
    /// Messages in flight per connection (each reply triggers the next send).
    #[arg(long, short = 'k', value_name = "K", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=4096))]
    pub in_flight: u32,
    /// Payload bytes per message.
    #[arg(long, short = 's', value_name = "BYTES", default_value_t = 20, value_parser = clap::value_parser!(u32).range(0..=16_777_216))]
    pub size: u32,
    /// Measured time (after the warm-up).
    #[arg(long, short = 'd', value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured time before the measured window.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Frame type of the messages.
    #[arg(long, value_enum, default_value_t = FrameKind::Binary)]
    pub frame: FrameKind,
}

/// How the publisher of the `broadcast` scenario publishes.
#[derive(clap::ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum PublishVia {
    /// A separate WebSocket connection to the same URL (a member of the channel: a broadcast
    /// server does not send it its own messages).
    Ws,
    /// A raw TCP connection, one line per message (`--publish-url tcp://HOST:PORT`; the TCP
    /// listener's channel must be the subscribers' channel).
    Tcp,
    /// The HTTP API: `POST /api/publish` with `{"channel": …, "data": …}` (keep-alive).
    Http,
}

/// `broadcast` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct BroadcastArgs {
    /// WebSocket URL the subscribers connect to (`?channel=NAME` picks the channel; the
    /// server's default is `lobby`).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Subscribers.
    #[arg(long, short = 'n', value_name = "N", default_value_t = 1000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub subscribers: u32,
    /// Messages per second from the publisher.
    #[arg(long, short = 'r', value_name = "MSGS_PER_S", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub rate: u32,
    /// Payload bytes per message (at least 16: the send timestamp).
    #[arg(long, short = 's', value_name = "BYTES", default_value_t = 64, value_parser = clap::value_parser!(u32).range(16..=16_777_216))]
    pub size: u32,
    /// Measured publishing time (after the warm-up).
    #[arg(long, short = 'd', value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Unmeasured publishing time before the measured window.
    #[arg(long, value_name = "DURATION", default_value = "1s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// How the publisher publishes.
    #[arg(long, value_enum, default_value_t = PublishVia::Ws)]
    pub publish: PublishVia,
    /// Where it publishes: a ws:// URL (default: --url), tcp://HOST:PORT (required with
    /// `--publish tcp`), or an http:// URL (default: http://HOST:PORT/api/publish of --url).
    #[arg(long, value_name = "URL")]
    pub publish_url: Option<String>,
    /// API key for `--publish http` (sent as `Authorization: Bearer KEY`).
    #[arg(
        long,
        value_name = "KEY",
        env = "SOCKHUB_API_KEY",
        hide_env_values = true
    )]
    pub api_key: Option<String>,
    /// After publishing stops, how long subscribers may take to receive what is still in flight.
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = parse_duration)]
    pub drain: Duration,
    /// Slow subscribers, in addition to the N: they complete the handshake and then read
    /// nothing, so the server must disconnect them as slow consumers or keep them at the outbox
    /// limit (`--outbox-overflow drop-oldest`). Latency, deliveries and the delivered fraction
    /// are the N fast subscribers' alone; at the end each slow one reads what is left to learn
    /// whether the server closed it.
    #[arg(long, value_name = "N", default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=1_000_000))]
    pub slow: u32,
    /// `SO_RCVBUF` of the slow subscribers, set before connecting (the kernel doubles it); 0:
    /// the kernel's auto-tuned default.
    #[arg(long, value_name = "BYTES", default_value_t = 4096)]
    pub slow_rcvbuf: u32,
    /// MSS the slow subscribers announce (`TCP_MAXSEG`); 0: loopback's own (~64 KB). Linux
    /// sizes the server's send buffer from it: with loopback's MSS it takes ~4 MB per socket
    /// before the server's outbox starts to fill (a minute at 1,000 msg/s × 64 B), with an
    /// Ethernet-sized one tens of KB, as for a real remote client.
    #[arg(long, value_name = "BYTES", default_value_t = 1460)]
    pub slow_mss: u32,
}

/// `idle` scenario.
#[derive(clap::Args, Debug, Clone)]
pub struct IdleArgs {
    /// WebSocket URL of the server (loopback only).
    #[arg(long, default_value = "ws://127.0.0.1:8080/ws")]
    pub url: String,
    /// Connections to open and hold.
    #[arg(long, short = 'c', value_name = "N", default_value_t = 10_000, value_parser = clap::value_parser!(u32).range(1..=1_000_000))]
    pub connections: u32,
    /// How long to hold them once all are open (then RSS is read and the sample probed).
    #[arg(long, value_name = "DURATION", default_value = "10s", value_parser = parse_duration)]
    pub hold: Duration,
    /// Connections probed for liveness (a ping each; the pong must come back).
    #[arg(long, short = 'm', value_name = "M", default_value_t = 100)]
    pub sample: u32,
    /// Time the probed connections have to answer.
    #[arg(long, value_name = "DURATION", default_value = "5s", value_parser = parse_duration)]
    pub probe_timeout: Duration,
    /// Connections per source address: connection i binds to 127.0.0.(1 + i / N), port
    /// 10000 + i % N. Automatic past 10,000 connections with N = 20,000 (a new address past
    /// the ~28,000 ports of the ephemeral range); given explicitly, it applies at any count.
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(100..=28_000))]
    pub per_source_ip: Option<u32>,
}

/// Parses `250ms`, `10s`, `2m` or a number of seconds.
fn parse_duration(s: &str) -> Result<Duration, String> {
    sockhub::config::parse_duration(s)
}

/// Runs a benchmark and prints its result; the exit status says whether it produced one.
pub fn run(args: BenchArgs) -> ExitCode {
    match execute(&args) {
        Ok(report) => {
            if let Err(e) = emit(&args.common, &report) {
                eprintln!("sockhub-bench: {e}");
                return ExitCode::FAILURE;
            }
            if report.is_empty() {
                eprintln!("sockhub-bench: the run produced no result (see errors)");
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        Err(e) => {
            eprintln!("sockhub-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a benchmark and returns its result without printing it (for tests and harnesses).
///
/// # Errors
/// A one-line reason when the run could not take place: a non-loopback target, an unreadable
/// `--pid`, no connection could be opened, or a publish path the server does not support.
pub fn execute(args: &BenchArgs) -> Result<Report, String> {
    let mut report = match &args.scenario {
        Scenario::Echo(a) => echo::run(&args.common, a)?,
        Scenario::Broadcast(a) => broadcast::run(&args.common, a)?,
        Scenario::Idle(a) => idle::run(&args.common, a)?,
    };
    report.label.clone_from(&args.common.label);
    report.explain_errors();
    Ok(report)
}

fn emit(common: &CommonArgs, report: &Report) -> Result<(), String> {
    let json = serde_json::to_string_pretty(report).map_err(|e| e.to_string())?;
    if let Some(path) = &common.json {
        std::fs::write(path, format!("{json}\n"))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    let mut out = std::io::stdout().lock();
    let text = match common.format {
        Format::Json => format!("{json}\n"),
        Format::Table => report.table(),
    };
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write the result: {e}"))
}
