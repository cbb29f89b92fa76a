//! `echo`: N connections keep K messages in flight each against an echo server.
//!
//! Every connection shares one buffer of K pre-masked frames; a reply lets the connection
//! send one more frame, written from that buffer (all the replies of one read in one `write`).
//! Latency: an echo server answers in order, so a per-connection FIFO of send instants pairs
//! each reply with its request without touching the payload.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockhub::ws::codec::OpCode;
use tokio::io::Interest;
use tokio::net::TcpStream;

use crate::procfs::{ensure_fds, Probe};
use crate::progress::Progress;
use crate::report::{round, Latency, Report, Window};
use crate::runner::{self, nanos, Conn, Live, Phase, Schedule, Tally, WorkerCtx, SCRATCH};
use crate::target::{parse_ws, WsTarget};
use crate::wsproto::{self, io_kind, read_once, Frame, ReadOutcome, Scanner};
use crate::{CommonArgs, EchoArgs, FrameKind};

/// Reads per readable event before yielding to other connections.
pub(crate) const MAX_READS_PER_WAKE: usize = 16;

/// What every connection of the run shares.
struct Plan {
    target: WsTarget,
    request: Rc<[u8]>,
    /// K frames back to back.
    burst: Vec<u8>,
    frame_len: usize,
    in_flight: usize,
    total: u64,
}

/// Generator threads to use for `n` connections.
pub(crate) fn threads(common: &CommonArgs, n: u64) -> usize {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let t = common.threads.map_or(cpus, usize::from);
    t.clamp(1, n.max(1) as usize)
}

pub(crate) fn run(common: &CommonArgs, a: &EchoArgs) -> Result<Report, String> {
    let target = parse_ws(&a.url)?;
    let probe = Probe::new(common.pid)?;
    let n = u64::from(a.connections);
    ensure_fds(n)?;
    let threads = threads(common, n);
    let opcode = match a.frame {
        FrameKind::Binary => OpCode::Binary,
        FrameKind::Text => OpCode::Text,
    };
    let frame = wsproto::client_frame(opcode, &vec![b'x'; a.size as usize]);
    let frame_len = frame.len();
    let in_flight = a.in_flight as usize;
    let burst: Arc<Vec<u8>> = Arc::new(frame.repeat(in_flight));
    let request: Arc<Vec<u8>> = Arc::new(wsproto::handshake_request(&target));
    let t2 = target.clone();
    let mut progress = Progress::new("echo", common.quiet);
    let workers = runner::spawn(
        threads,
        n,
        common.connect_concurrency as usize,
        common.connect_timeout,
        move |ctx| {
            let plan = Rc::new(Plan {
                target: t2.clone(),
                request: Rc::from(request.as_slice()),
                burst: burst.to_vec(),
                frame_len,
                in_flight,
                total: n,
            });
            worker(ctx, plan)
        },
    )?;
    workers.wait_ready(
        Instant::now() + common.connect_timeout + Duration::from_secs(1),
        n,
        &mut progress,
    );
    let opened = workers.sum(|l| &l.conns);
    if opened == 0 {
        workers.set(Phase::Stop);
        let outs = workers.join()?;
        return Err(no_connection(&target.url, &outs));
    }
    let start = Instant::now() + Duration::from_millis(20);
    let sched = Schedule {
        start,
        warm_end: start + a.warmup,
        end: start + a.warmup + a.duration,
        stop: start + a.warmup + a.duration,
    };
    workers.set(Phase::Go(sched));
    let total_s = (a.warmup + a.duration).as_secs_f64();
    runner::wait_until(sched.warm_end, &mut progress, || {
        (
            "warming up".into(),
            Some(start.elapsed().as_secs_f64() / total_s),
        )
    });
    let s0 = probe.server();
    let g0 = probe.myself();
    let m0 = workers.sum(|l| &l.msgs);
    runner::wait_until(sched.end, &mut progress, || {
        let m = workers.sum(|l| &l.msgs) - m0;
        let el = sched.warm_end.elapsed().as_secs_f64().max(1e-3);
        (
            format!("{:.0} msgs/s", m as f64 / el),
            Some(start.elapsed().as_secs_f64() / total_s),
        )
    });
    let s1 = probe.server();
    let g1 = probe.myself();
    let outs = workers.join()?;
    progress.finish();

    let mut t = Tally::default();
    for o in &outs {
        t.merge(o);
    }
    let secs = a.duration.as_secs_f64();
    let mut r = Report::new("echo", &a.url, "msgs");
    r.parameters
        .put("connections", a.connections)
        .put("in_flight", a.in_flight)
        .put("size", a.size)
        .put("frame", format!("{:?}", a.frame).to_lowercase())
        .put("duration_s", secs)
        .put("warmup_s", a.warmup.as_secs_f64())
        .put("threads", threads);
    r.duration_s = round(secs, 3);
    r.counts
        .put("connections_opened", t.opened)
        .put("connections_failed", t.failed)
        .put("connections_lost", t.lost)
        .put("sent", t.sent)
        .put("received", t.received)
        .put("received_total", t.received_total);
    r.rates
        .put("msgs_per_s", round(t.received as f64 / secs, 1));
    r.latency_us = Latency::from_ns(&t.hist);
    r.generator_threads = threads;
    r.set_window(
        common.pid,
        &Window {
            server: s0.zip(s1),
            generator: (g0, g1),
        },
        t.received,
    );
    r.errors = (&t.errors).into();
    r.primary = t.received;
    if t.received_total == 0 && t.opened > 0 {
        r.notes
            .push("no reply came back: is the server running with --handler echo?".into());
    }
    Ok(r)
}

/// The error when not one connection opened.
pub(crate) fn no_connection(url: &str, outs: &[Tally]) -> String {
    let mut t = Tally::default();
    for o in outs {
        t.merge(o);
    }
    let why = t
        .errors
        .kinds
        .iter()
        .max_by_key(|(_, v)| **v)
        .map(|(k, _)| k.clone())
        .unwrap_or_else(|| "timed out".into());
    format!("no connection could be opened to {url}: {why}")
}

async fn worker(mut ctx: WorkerCtx, plan: Rc<Plan>) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let conns = runner::open_all(
        &ctx,
        &plan.target,
        plan.request.clone(),
        plan.total,
        &tally,
        None,
    )
    .await;
    ctx.report_ready();
    let sched = match ctx.next_phase().await {
        Phase::Go(s) => s,
        _ => return tally.take(),
    };
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|c| {
            tokio::task::spawn_local(echo_conn(
                c,
                sched,
                plan.clone(),
                tally.clone(),
                ctx.live.clone(),
            ))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    tally.take()
}

/// One connection's state between reads.
struct EchoState {
    scanner: Scanner,
    /// Send instants of the messages in flight, oldest first.
    fifo: VecDeque<Instant>,
    /// Bytes of data frames still to write.
    owed: usize,
    /// Offset within the frame being written.
    pos: usize,
    /// Pongs to write at the next frame boundary.
    ctrl: Vec<u8>,
}

impl EchoState {
    /// Scans received bytes; returns how many replies came (each frees a slot) or why the
    /// connection is over.
    fn on_bytes(
        &mut self,
        bytes: &[u8],
        now: Instant,
        s: &Schedule,
        t: &mut Tally,
    ) -> Result<usize, String> {
        let in_window = s.in_window(now);
        let mut replies = 0;
        let mut closed = None;
        let (fifo, ctrl) = (&mut self.fifo, &mut self.ctrl);
        self.scanner
            .feed(bytes, &mut |f| match f {
                Frame::Data { fin: true, .. } => match fifo.pop_front() {
                    Some(at) => {
                        replies += 1;
                        t.received_total += 1;
                        if in_window {
                            t.received += 1;
                            t.hist.saturating_record(nanos(at, now));
                        }
                    }
                    None => t
                        .errors
                        .add("unexpected message (is the server an echo server?)"),
                },
                Frame::Data { .. } | Frame::Pong(_) => {}
                Frame::Ping(p) => ctrl.extend_from_slice(&wsproto::pong(p)),
                Frame::Close(code) => {
                    closed = Some(match code {
                        Some(c) => format!("closed by server: code {c}"),
                        None => "closed by server".into(),
                    })
                }
            })
            .map_err(|e| format!("protocol: {e}"))?;
        match closed {
            Some(c) => Err(c),
            None => Ok(replies),
        }
    }

    /// Queues `n` more frames sent at `now`.
    fn send_more(&mut self, n: usize, now: Instant, frame_len: usize) {
        for _ in 0..n {
            self.fifo.push_back(now);
        }
        self.owed += n * frame_len;
    }

    fn wants_write(&self) -> bool {
        self.owed > 0 || !self.ctrl.is_empty()
    }

    /// Writes what is owed until done or the socket is full.
    fn write(&mut self, stream: &TcpStream, burst: &[u8], frame_len: usize) -> io::Result<()> {
        loop {
            if self.pos == 0 && !self.ctrl.is_empty() {
                match stream.try_write(&self.ctrl) {
                    Ok(n) => {
                        self.ctrl.drain(..n);
                        continue;
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                    Err(e) => return Err(e),
                }
            }
            if self.owed == 0 {
                return Ok(());
            }
            let len = self.owed.min(burst.len() - self.pos);
            match stream.try_write(&burst[self.pos..self.pos + len]) {
                Ok(n) => {
                    self.owed -= n;
                    self.pos = (self.pos + n) % frame_len;
                    if n < len {
                        return Ok(());
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => return Err(e),
            }
        }
    }
}

async fn echo_conn(
    c: Conn,
    s: Schedule,
    plan: Rc<Plan>,
    tally: Rc<RefCell<Tally>>,
    live: Arc<Live>,
) {
    let Conn { stream, early, .. } = c;
    let mut st = EchoState {
        scanner: Scanner::new(0),
        fifo: VecDeque::with_capacity(plan.in_flight),
        owed: 0,
        pos: 0,
        ctrl: Vec::new(),
    };
    tokio::time::sleep_until(s.start.into()).await;
    let mut end: Option<String> = None;
    if !early.is_empty() {
        if let Err(e) = st.on_bytes(&early, Instant::now(), &s, &mut tally.borrow_mut()) {
            end = Some(e);
        }
    }
    st.send_more(plan.in_flight, Instant::now(), plan.frame_len);
    tally.borrow_mut().sent += plan.in_flight as u64;
    let deadline = tokio::time::sleep_until(s.end.into());
    tokio::pin!(deadline);
    while end.is_none() {
        if st.wants_write() {
            if let Err(e) = st.write(&stream, &plan.burst, plan.frame_len) {
                end = Some(format!("write: {}", io_kind(&e)));
                break;
            }
        }
        let interest = if st.wants_write() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let ready = tokio::select! {
            biased;
            _ = &mut deadline => break,
            r = stream.ready(interest) => r,
        };
        let ready = match ready {
            Ok(r) => r,
            Err(e) => {
                end = Some(format!("read: {}", io_kind(&e)));
                break;
            }
        };
        if !(ready.is_readable() || ready.is_read_closed()) {
            continue;
        }
        let (mut replies, mut resent) = (0, 0);
        for _ in 0..MAX_READS_PER_WAKE {
            let outcome = SCRATCH.with_borrow_mut(|buf| match read_once(&stream, buf) {
                ReadOutcome::Data(n, drained) => {
                    let now = Instant::now();
                    match st.on_bytes(&buf[..n], now, &s, &mut tally.borrow_mut()) {
                        Ok(r) => {
                            replies += r;
                            if now < s.end && r > 0 {
                                st.send_more(r, now, plan.frame_len);
                                resent += r;
                            }
                            Ok(!drained)
                        }
                        Err(e) => Err(e),
                    }
                }
                ReadOutcome::WouldBlock => Ok(false),
                ReadOutcome::Eof => Err("closed by server (EOF)".into()),
                ReadOutcome::Error(e) => Err(format!("read: {}", io_kind(&e))),
            });
            match outcome {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => {
                    end = Some(e);
                    break;
                }
            }
        }
        if replies > 0 {
            Live::add(&live.msgs, replies as u64);
            tally.borrow_mut().sent += resent as u64;
        }
    }
    if let Some(e) = end {
        Live::add(&live.errors, 1);
        let mut t = tally.borrow_mut();
        t.lost += 1;
        t.errors.add(&e);
    }
}
