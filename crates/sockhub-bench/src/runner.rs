//! Generator threads: each runs a current-thread runtime with a `LocalSet` and drives its share
//! of the connections as local tasks (state in `Rc<RefCell<…>>`, no locks on the hot path). The
//! main thread coordinates them with a `watch` channel of phases and samples `/proc` at the
//! window boundaries.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use tokio::net::TcpStream;
use tokio::sync::watch;

use crate::progress::Progress;
use crate::target::WsTarget;
use crate::wsproto;

/// Size of each thread's read buffer.
const SCRATCH_SIZE: usize = 256 * 1024;

thread_local! {
    /// The read buffer every connection of this thread reads into (borrowed only for a
    /// synchronous read + scan, never across an await).
    pub(crate) static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_SIZE]);
}

/// The instants that frame a measurement.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Schedule {
    /// Traffic starts.
    pub start: Instant,
    /// The measured window opens.
    pub warm_end: Instant,
    /// The measured window closes (no new sends after it).
    pub end: Instant,
    /// Everything stops, drained or not.
    pub stop: Instant,
}

impl Schedule {
    /// Whether `t` falls in the measured window.
    #[inline]
    pub(crate) fn in_window(&self, t: Instant) -> bool {
        t >= self.warm_end && t < self.end
    }
}

/// What the main thread tells the workers.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Phase {
    /// Open connections, then wait.
    Wait,
    /// Run the traffic.
    Go(Schedule),
    /// (idle) Probe the sample, answering by this deadline.
    Probe(Instant),
    /// Stop now.
    Stop,
}

/// Counters a thread publishes for the progress bar (its own cache line; relaxed adds once
/// per read batch).
#[derive(Default, Debug)]
#[repr(align(128))]
pub(crate) struct Live {
    /// Messages received.
    pub msgs: AtomicU64,
    /// Connections opened.
    pub conns: AtomicU64,
    /// Connection attempts that failed, and connections lost.
    pub errors: AtomicU64,
    /// Probes finished (idle).
    pub probes: AtomicU64,
    /// Connections opened or failed (done trying).
    pub attempted: AtomicU64,
}

impl Live {
    pub(crate) fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// Error counts by kind (at most 32 kinds; the rest count as `other`).
#[derive(Debug, Default, Clone)]
pub(crate) struct Errors {
    /// Count per kind.
    pub kinds: BTreeMap<String, u64>,
    /// All errors.
    pub total: u64,
}

impl Errors {
    pub(crate) fn add(&mut self, kind: &str) {
        self.add_n(kind, 1);
    }

    fn add_n(&mut self, kind: &str, n: u64) {
        self.total += n;
        if let Some(c) = self.kinds.get_mut(kind) {
            *c += n;
        } else if self.kinds.len() < 32 {
            self.kinds.insert(kind.to_string(), n);
        } else {
            *self.kinds.entry("other".into()).or_default() += n;
        }
    }

    pub(crate) fn merge(&mut self, other: &Errors) {
        for (k, v) in &other.kinds {
            self.add_n(k, *v);
        }
    }
}

/// A latency histogram in nanoseconds (1 ns … 60 s, 3 significant digits).
pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid histogram bounds")
}

/// Counters and latencies of one thread (or, merged, of the run).
#[derive(Debug)]
pub(crate) struct Tally {
    /// Connections opened.
    pub opened: u64,
    /// Connection attempts that failed.
    pub failed: u64,
    /// Messages sent (whole run).
    pub sent: u64,
    /// Messages received in the measured window.
    pub received: u64,
    /// Messages received during the whole run.
    pub received_total: u64,
    /// Connections the server closed or lost during the run.
    pub lost: u64,
    /// (broadcast `--slow`) Slow subscribers opened (not counted in `opened`).
    pub slow_opened: u64,
    /// Slow subscribers found disconnected by the server at the end.
    pub slow_disconnected: u64,
    /// Probes answered / unanswered (idle).
    pub probes_ok: u64,
    /// Probes unanswered.
    pub probes_failed: u64,
    /// Latencies in ns.
    pub hist: Histogram<u64>,
    /// Errors by kind.
    pub errors: Errors,
}

impl Default for Tally {
    fn default() -> Self {
        Tally {
            opened: 0,
            failed: 0,
            sent: 0,
            received: 0,
            received_total: 0,
            lost: 0,
            slow_opened: 0,
            slow_disconnected: 0,
            probes_ok: 0,
            probes_failed: 0,
            hist: histogram(),
            errors: Errors::default(),
        }
    }
}

impl Tally {
    pub(crate) fn merge(&mut self, o: &Tally) {
        self.opened += o.opened;
        self.failed += o.failed;
        self.sent += o.sent;
        self.received += o.received;
        self.received_total += o.received_total;
        self.lost += o.lost;
        self.slow_opened += o.slow_opened;
        self.slow_disconnected += o.slow_disconnected;
        self.probes_ok += o.probes_ok;
        self.probes_failed += o.probes_failed;
        let _ = self.hist.add(&o.hist);
        self.errors.merge(&o.errors);
    }
}

/// A thread's handle on the run.
pub(crate) struct WorkerCtx {
    /// Thread number.
    pub index: usize,
    /// Global indices of this thread's connections.
    pub range: Range<u64>,
    /// Phases from the main thread.
    pub phase: watch::Receiver<Phase>,
    /// Tells the main thread this thread is done opening connections.
    pub ready: mpsc::Sender<usize>,
    /// Progress counters.
    pub live: Arc<Live>,
    /// Connections opened at once by this thread.
    pub concurrency: usize,
    /// Deadline for opening connections.
    pub connect_deadline: Instant,
}

impl WorkerCtx {
    /// Signals the end of the connect phase.
    pub(crate) fn report_ready(&self) {
        let _ = self.ready.send(self.index);
    }

    /// Waits for a phase past `Wait`.
    pub(crate) async fn next_phase(&mut self) -> Phase {
        loop {
            let p = *self.phase.borrow_and_update();
            if !matches!(p, Phase::Wait) {
                return p;
            }
            if self.phase.changed().await.is_err() {
                return Phase::Stop;
            }
        }
    }
}

/// The running threads.
pub(crate) struct Workers<R> {
    handles: Vec<std::thread::JoinHandle<R>>,
    /// Phase sender.
    pub phase: watch::Sender<Phase>,
    ready: mpsc::Receiver<usize>,
    /// Per-thread counters.
    pub live: Vec<Arc<Live>>,
}

/// Starts `threads` threads over `total` connections (split evenly, in order), each running
/// `f(ctx)` to completion on its own current-thread runtime.
pub(crate) fn spawn<R, F, Fut>(
    threads: usize,
    total: u64,
    concurrency: usize,
    connect_timeout: Duration,
    f: F,
) -> Result<Workers<R>, String>
where
    R: Send + 'static,
    F: Fn(WorkerCtx) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = R> + 'static,
{
    let f = Arc::new(f);
    let (phase_tx, phase_rx) = watch::channel(Phase::Wait);
    let (ready_tx, ready_rx) = mpsc::channel();
    let connect_deadline = Instant::now() + connect_timeout;
    let mut handles = Vec::with_capacity(threads);
    let mut live = Vec::with_capacity(threads);
    for index in 0..threads {
        let lo = total * index as u64 / threads as u64;
        let hi = total * (index as u64 + 1) / threads as u64;
        let l = Arc::new(Live::default());
        live.push(l.clone());
        let ctx = WorkerCtx {
            index,
            range: lo..hi,
            phase: phase_rx.clone(),
            ready: ready_tx.clone(),
            live: l,
            concurrency: concurrency.div_ceil(threads).max(1),
            connect_deadline,
        };
        let f = f.clone();
        let h = std::thread::Builder::new()
            .name(format!("bench-{index}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime");
                let local = tokio::task::LocalSet::new();
                local.block_on(&rt, f(ctx))
            })
            .map_err(|e| format!("cannot start a generator thread: {e}"))?;
        handles.push(h);
    }
    Ok(Workers {
        handles,
        phase: phase_tx,
        ready: ready_rx,
        live,
    })
}

impl<R> Workers<R> {
    /// Sum of a live counter over the threads.
    pub(crate) fn sum(&self, pick: impl Fn(&Live) -> &AtomicU64) -> u64 {
        self.live
            .iter()
            .map(|l| pick(l).load(Ordering::Relaxed))
            .sum()
    }

    /// Waits until every thread has finished opening its connections (or `deadline`).
    pub(crate) fn wait_ready(&self, deadline: Instant, total: u64, progress: &mut Progress) {
        let mut ready = 0;
        while ready < self.handles.len() {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self
                .ready
                .recv_timeout((deadline - now).min(Duration::from_millis(100)))
            {
                Ok(_) => ready += 1,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            let open = self.sum(|l| &l.conns);
            let err = self.sum(|l| &l.errors);
            progress.draw(
                "connecting",
                Some((open + err) as f64 / total.max(1) as f64),
                &format!("{open}/{total} open, {err} failed"),
            );
        }
    }

    /// Sets the phase.
    pub(crate) fn set(&self, p: Phase) {
        let _ = self.phase.send(p);
    }

    /// Waits for every thread; a panicked thread is an error.
    pub(crate) fn join(self) -> Result<Vec<R>, String> {
        let _ = &self.phase;
        let mut out = Vec::with_capacity(self.handles.len());
        for h in self.handles {
            out.push(
                h.join()
                    .map_err(|_| "a generator thread panicked".to_string())?,
            );
        }
        Ok(out)
    }
}

/// Sleeps on the main thread until `until`, redrawing the progress bar.
pub(crate) fn wait_until(
    until: Instant,
    progress: &mut Progress,
    mut status: impl FnMut() -> (String, Option<f64>),
) {
    loop {
        let now = Instant::now();
        if now >= until {
            return;
        }
        let (text, frac) = status();
        progress.draw("running", frac, &text);
        std::thread::sleep((until - now).min(Duration::from_millis(100)));
    }
}

/// Connections per source address when spreading is automatic.
pub(crate) const PER_SOURCE_IP: u64 = 20_000;
/// Past this many connections (to an IPv4 target) each gets an explicit source address.
const EXPLICIT_SOURCE_PAST: u64 = 10_000;
/// First explicit source port.
const PORT_BASE: u64 = 10_000;

/// Source address of connection `i` of `total`, or `None` for the kernel's choice. Past
/// 10,000 connections to an IPv4 target (or when `per_ip` is given), connection i binds to
/// 127.0.0.(1 + i / per_ip) — a new address every 20,000 connections by default, so that no
/// address runs out of ports past the ~28,000 of the ephemeral range — with an explicit
/// port 10,000 + i % per_ip, which spares the kernel's port search (see
/// [`crate::wsproto::tcp_connect`]).
pub(crate) fn source_addr(
    target: &WsTarget,
    i: u64,
    total: u64,
    per_ip: Option<u64>,
) -> Option<SocketAddr> {
    if !target.addr.is_ipv4() || (per_ip.is_none() && total <= EXPLICIT_SOURCE_PAST) {
        return None;
    }
    let per = per_ip.unwrap_or(PER_SOURCE_IP).clamp(1, 28_000);
    let host = 1 + i / per;
    let port = PORT_BASE + i % per;
    (host <= 254).then(|| {
        SocketAddr::new(
            IpAddr::V4(std::net::Ipv4Addr::new(127, 0, 0, host as u8)),
            port as u16,
        )
    })
}

/// Source addresses used for `total` connections.
pub(crate) fn source_ips(target: &WsTarget, total: u64, per_ip: Option<u64>) -> u64 {
    match source_addr(target, total.saturating_sub(1), total, per_ip).map(|a| a.ip()) {
        Some(IpAddr::V4(ip)) => u64::from(ip.octets()[3]),
        _ => 1,
    }
}

/// An open WebSocket connection.
pub(crate) struct Conn {
    /// Its index among all the run's connections (`0..total`).
    pub index: u64,
    /// The socket.
    pub stream: TcpStream,
    /// Bytes received after the 101 response.
    pub early: Vec<u8>,
}

/// Opens this thread's connections (at most `ctx.concurrency` at once, all by the connect
/// deadline) and returns those that opened; failures are counted in `tally`. With
/// `slow: Some((from, options))`, connections from index `from` on are opened with those
/// socket options (broadcast's slow subscribers).
pub(crate) async fn open_all(
    ctx: &WorkerCtx,
    target: &WsTarget,
    request: Rc<[u8]>,
    total: u64,
    tally: &Rc<RefCell<Tally>>,
    slow: Option<(u64, wsproto::SlowSocket)>,
) -> Vec<Conn> {
    let sem = Rc::new(tokio::sync::Semaphore::new(ctx.concurrency));
    let mut tasks = Vec::with_capacity(ctx.range.clone().count());
    for i in ctx.range.clone() {
        let sem = sem.clone();
        let request = request.clone();
        let addr = target.addr;
        let bind = source_addr(target, i, total, None);
        let deadline = ctx.connect_deadline;
        let live = ctx.live.clone();
        let tally = tally.clone();
        let opts = slow.and_then(|(from, o)| (i >= from).then_some(o));
        tasks.push(tokio::task::spawn_local(async move {
            let _permit = sem.acquire().await.ok()?;
            let left = deadline.saturating_duration_since(Instant::now());
            let r = wsproto::connect_with(addr, bind, &request, left, opts).await;
            Live::add(&live.attempted, 1);
            match r {
                Ok((stream, early)) => {
                    Live::add(&live.conns, 1);
                    tally.borrow_mut().opened += 1;
                    Some(Conn {
                        index: i,
                        stream,
                        early,
                    })
                }
                Err(e) => {
                    Live::add(&live.errors, 1);
                    let mut t = tally.borrow_mut();
                    t.failed += 1;
                    t.errors.add(&e);
                    None
                }
            }
        }));
    }
    let mut conns = Vec::with_capacity(tasks.len());
    for t in tasks {
        if let Ok(Some(c)) = t.await {
            conns.push(c);
        }
    }
    conns
}

/// Nanoseconds from `from` to `to` (0 if `to` is earlier).
#[inline]
pub(crate) fn nanos(from: Instant, to: Instant) -> u64 {
    to.saturating_duration_since(from).as_nanos() as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn source_addresses_spread_past_28k_or_on_request() {
        let t = crate::target::parse_ws("ws://127.0.0.1:1/ws").unwrap();
        assert_eq!(source_addr(&t, 5, 10_000, None), None);
        assert_eq!(source_ips(&t, 10_000, None), 1);
        let a = |s: &str| Some(s.parse::<SocketAddr>().unwrap());
        assert_eq!(source_addr(&t, 7, 19_000, None), a("127.0.0.1:10007"));
        assert_eq!(source_ips(&t, 19_000, None), 1);
        assert_eq!(source_addr(&t, 0, 100_000, None), a("127.0.0.1:10000"));
        assert_eq!(source_addr(&t, 19_999, 100_000, None), a("127.0.0.1:29999"));
        assert_eq!(source_addr(&t, 20_000, 100_000, None), a("127.0.0.2:10000"));
        assert_eq!(source_ips(&t, 100_000, None), 5);
        assert_eq!(
            source_addr(&t, 2_500, 5_000, Some(1_000)),
            a("127.0.0.3:10500")
        );
        assert_eq!(source_ips(&t, 5_000, Some(1_000)), 5);
        let v6 = crate::target::parse_ws("ws://[::1]:1/ws").unwrap();
        assert_eq!(source_addr(&v6, 50_000, 100_000, None), None);
    }
}
