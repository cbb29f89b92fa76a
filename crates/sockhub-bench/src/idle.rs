//! `idle`: open N connections, hold them, probe a sample → server RSS per connection.
//!
//! Each connection is a local task that, once open, only waits: it answers the server's
//! heartbeat pings, notices a close, and — if it is in the sample — sends one ping when told to
//! probe and waits for the matching pong. Past 10,000 connections each binds to an explicit
//! source address and port (see `runner::source_addr`): 127.0.0.(1 + i / 20,000), so that no
//! source address runs out of ephemeral ports, and a port of its own.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use sockhub::ws::codec::OpCode;
use tokio::sync::{Notify, Semaphore};

use crate::echo::{no_connection, threads};
use crate::procfs::{ensure_fds, Probe, Sample};
use crate::progress::Progress;
use crate::report::{round, Latency, Report, Window};
use crate::runner::{self, nanos, Live, Phase, Tally, WorkerCtx, SCRATCH};
use crate::target::{parse_ws, WsTarget};
use crate::wsproto::{self, io_kind, read_once, Frame, ReadOutcome, Scanner};
use crate::{CommonArgs, IdleArgs};

struct Plan {
    target: WsTarget,
    request: Rc<[u8]>,
    total: u64,
    per_ip: Option<u64>,
    /// Every `stride`-th connection is probed.
    stride: u64,
}

pub(crate) fn run(common: &CommonArgs, a: &IdleArgs) -> Result<Report, String> {
    let target = parse_ws(&a.url)?;
    let probe = Probe::new(common.pid)?;
    let n = u64::from(a.connections);
    ensure_fds(n)?;
    let threads = threads(common, n);
    let stride = if a.sample == 0 {
        u64::MAX
    } else {
        (n / u64::from(a.sample)).max(1)
    };
    let request: Arc<Vec<u8>> = Arc::new(wsproto::handshake_request(&target));
    let t2 = target.clone();
    let per_ip = a.per_source_ip.map(u64::from);
    let mut progress = Progress::new("idle", common.quiet);

    let s0 = probe.server();
    let g0 = probe.myself();
    let workers = runner::spawn(
        threads,
        n,
        common.connect_concurrency as usize,
        common.connect_timeout,
        move |ctx| {
            let plan = Rc::new(Plan {
                target: t2.clone(),
                request: Rc::from(request.as_slice()),
                total: n,
                per_ip,
                stride,
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
    let connected_at = Instant::now();
    let s_conn = probe.server();
    let g_conn = probe.myself();
    if opened == 0 {
        workers.set(Phase::Stop);
        let outs = workers.join()?;
        return Err(no_connection(&target.url, &outs));
    }
    let hold_end = connected_at + a.hold;
    runner::wait_until(hold_end, &mut progress, || {
        let lost = workers.sum(|l| &l.errors);
        (
            format!("holding {opened} connections ({lost} failed or lost)"),
            Some(connected_at.elapsed().as_secs_f64() / a.hold.as_secs_f64().max(1e-3)),
        )
    });
    let s_hold = probe.server();
    let probe_deadline = Instant::now() + a.probe_timeout;
    workers.set(Phase::Probe(probe_deadline));
    let sampled = workers.sum(|l| &l.msgs);
    while Instant::now() < probe_deadline + Duration::from_millis(50)
        && workers.sum(|l| &l.probes) < sampled
    {
        progress.draw(
            "probing",
            None,
            &format!("{}/{sampled} answered", workers.sum(|l| &l.probes)),
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    workers.set(Phase::Stop);
    let outs = workers.join()?;
    progress.finish();

    let mut t = Tally::default();
    for o in &outs {
        t.merge(o);
    }
    let alive = t.opened - t.lost;
    let connect_s = connected_at.saturating_duration_since(g0.at).as_secs_f64();
    let mut r = Report::new("idle", &a.url, "connections opened");
    r.parameters
        .put("connections", a.connections)
        .put("hold_s", a.hold.as_secs_f64())
        .put("sample", a.sample)
        .put("probe_timeout_s", a.probe_timeout.as_secs_f64())
        .put("per_source_ip", per_ip.unwrap_or(runner::PER_SOURCE_IP))
        .put("source_ips", runner::source_ips(&target, n, per_ip))
        .put("connect_concurrency", common.connect_concurrency)
        .put("threads", threads);
    r.duration_s = round(a.hold.as_secs_f64(), 3);
    let probed = t.probes_ok + t.probes_failed;
    r.counts
        .put("connections_opened", t.opened)
        .put("connections_failed", t.failed)
        .put("connections_lost", t.lost)
        .put("alive_at_end", alive)
        .put("probed", probed)
        .put("probes_answered", t.probes_ok);
    r.rates
        .put("connect_s", round(connect_s, 3))
        .put(
            "connects_per_s",
            round(t.opened as f64 / connect_s.max(1e-6), 1),
        )
        .put(
            "liveness",
            if probed > 0 {
                round(t.probes_ok as f64 / probed as f64, 6)
            } else {
                0.0
            },
        );
    if let (Some(b), Some(h)) = (&s0, &s_hold) {
        let per = |before: Option<u64>, after: Option<u64>| {
            before
                .zip(after)
                .map(|(b, a)| round(a.saturating_sub(b) as f64 / alive.max(1) as f64, 3))
        };
        if let Some(v) = per(b.rss_kb, h.rss_kb) {
            r.rates.put("server_rss_kb_per_conn", v);
        }
        if let Some(v) = per(b.rss_anon_kb, h.rss_anon_kb) {
            r.rates.put("server_rss_anon_kb_per_conn", v);
        }
        if let Some(c) = &s_conn {
            r.rates.put(
                "server_cpu_pct_while_holding",
                round(100.0 * h.cpu_s_since(c) / cpu_wall(c, h), 2),
            );
        }
    }
    r.latency_us = Latency::from_ns(&t.hist);
    r.generator_threads = threads;
    // CPU over the connect phase (the per-CPU figure: connections opened per server
    // CPU-second); RSS from before connecting to the end of the hold.
    r.set_window(
        common.pid,
        &Window {
            server: s0.zip(s_conn),
            generator: (g0, g_conn),
        },
        t.opened,
    );
    if let (Some(h), Some(_)) = (&s_hold, &s0) {
        r.rss_kb_after = h.rss_kb;
        r.rss_anon_kb_after = h.rss_anon_kb;
    }
    r.notes.push(
        "latency is the probe round trip (ping → pong); server CPU covers the connect phase; \
         rss_kb_after is read at the end of the hold"
            .into(),
    );
    r.errors = (&t.errors).into();
    r.primary = t.opened;
    Ok(r)
}

fn cpu_wall(a: &Sample, b: &Sample) -> f64 {
    b.at.saturating_duration_since(a.at).as_secs_f64().max(1e-3)
}

async fn worker(ctx: WorkerCtx, plan: Rc<Plan>) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let pending = Rc::new(Cell::new(ctx.range.clone().count()));
    let notify = Rc::new(Notify::new());
    let sem = Rc::new(Semaphore::new(ctx.concurrency));
    let ctx = Rc::new(ctx);
    let mut tasks = Vec::with_capacity(pending.get());
    for i in ctx.range.clone() {
        tasks.push(tokio::task::spawn_local(idle_conn(
            i,
            ctx.clone(),
            plan.clone(),
            sem.clone(),
            pending.clone(),
            notify.clone(),
            tally.clone(),
        )));
    }
    let deadline = tokio::time::sleep_until(ctx.connect_deadline.into());
    tokio::pin!(deadline);
    while pending.get() > 0 {
        tokio::select! {
            _ = notify.notified() => {}
            _ = &mut deadline => break,
        }
    }
    ctx.report_ready();
    for t in tasks {
        let _ = t.await;
    }
    tally.take()
}

async fn idle_conn(
    i: u64,
    ctx: Rc<WorkerCtx>,
    plan: Rc<Plan>,
    sem: Rc<Semaphore>,
    pending: Rc<Cell<usize>>,
    notify: Rc<Notify>,
    tally: Rc<RefCell<Tally>>,
) {
    let mut phase = ctx.phase.clone();
    let live = &ctx.live;
    let opened = {
        let _permit = sem.acquire().await;
        let left = ctx
            .connect_deadline
            .saturating_duration_since(Instant::now());
        let bind = runner::source_addr(&plan.target, i, plan.total, plan.per_ip);
        wsproto::connect(plan.target.addr, bind, &plan.request, left).await
    };
    Live::add(&live.attempted, 1);
    pending.set(pending.get() - 1);
    if pending.get() == 0 {
        notify.notify_one();
    }
    let (stream, early) = match opened {
        Ok(c) => c,
        Err(e) => {
            Live::add(&live.errors, 1);
            let mut t = tally.borrow_mut();
            t.failed += 1;
            t.errors.add(&e);
            return;
        }
    };
    Live::add(&live.conns, 1);
    tally.borrow_mut().opened += 1;
    let sampled = i % plan.stride == 0;
    if sampled {
        Live::add(&live.msgs, 1);
    }
    let tag = i.to_be_bytes();
    let mut scanner = Scanner::new(0);
    // Some(sent_at) while our probe is out.
    let mut probing: Option<Instant> = None;
    let mut probe_done = false;
    let mut probe_deadline = tokio::time::Instant::now();
    let mut end: Option<String> = None;
    let mut out: Vec<u8> = Vec::new();
    let mut handle = |bytes: &[u8],
                      out: &mut Vec<u8>,
                      probing: &mut Option<Instant>,
                      t: &mut Tally|
     -> Result<bool, String> {
        let mut closed = None;
        let mut answered = false;
        scanner
            .feed(bytes, &mut |f| match f {
                Frame::Ping(p) => out.extend_from_slice(&wsproto::pong(p)),
                Frame::Pong(p) if p == tag && probing.is_some() => {
                    if let Some(at) = probing.take() {
                        t.hist.saturating_record(nanos(at, Instant::now()));
                    }
                    answered = true;
                }
                Frame::Close(code) => {
                    closed = Some(match code {
                        Some(c) => format!("closed by server: code {c}"),
                        None => "closed by server".into(),
                    })
                }
                _ => {}
            })
            .map_err(|e| format!("protocol: {e}"))?;
        match closed {
            Some(c) => Err(c),
            None => Ok(answered),
        }
    };
    if !early.is_empty() {
        if let Err(e) = handle(&early, &mut out, &mut probing, &mut tally.borrow_mut()) {
            end = Some(e);
        }
    }
    while end.is_none() {
        if !out.is_empty() {
            match stream.try_write(&out) {
                Ok(n) => {
                    out.drain(..n);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => out.clear(),
                Err(e) => {
                    end = Some(format!("write: {}", io_kind(&e)));
                    break;
                }
            }
        }
        tokio::select! {
            biased;
            r = phase.changed() => {
                if r.is_err() {
                    break;
                }
                match *phase.borrow_and_update() {
                    Phase::Stop => break,
                    Phase::Probe(deadline) if sampled && !probe_done && probing.is_none() => {
                        probing = Some(Instant::now());
                        probe_deadline = deadline.into();
                        out.extend_from_slice(&wsproto::client_frame(OpCode::Ping, &tag));
                    }
                    _ => {}
                }
            }
            _ = tokio::time::sleep_until(probe_deadline), if probing.is_some() => {
                probing = None;
                probe_done = true;
                Live::add(&live.probes, 1);
                let mut t = tally.borrow_mut();
                t.probes_failed += 1;
                t.errors.add("probe: no pong in time");
            }
            r = stream.readable() => {
                if let Err(e) = r {
                    end = Some(format!("read: {}", io_kind(&e)));
                    break;
                }
                let outcome = SCRATCH.with_borrow_mut(|buf| match read_once(&stream, buf) {
                    ReadOutcome::Data(n, _) => {
                        handle(&buf[..n], &mut out, &mut probing, &mut tally.borrow_mut())
                    }
                    ReadOutcome::WouldBlock => Ok(false),
                    ReadOutcome::Eof => Err("closed by server (EOF)".into()),
                    ReadOutcome::Error(e) => Err(format!("read: {}", io_kind(&e))),
                });
                match outcome {
                    Ok(true) => {
                        probe_done = true;
                        Live::add(&live.probes, 1);
                        tally.borrow_mut().probes_ok += 1;
                    }
                    Ok(false) => {}
                    Err(e) => end = Some(e),
                }
            }
        }
    }
    if let Some(e) = end {
        Live::add(&live.errors, 1);
        let mut t = tally.borrow_mut();
        t.lost += 1;
        t.errors.add(&e);
        if sampled && !probe_done {
            // A lost sampled connection is a failed probe.
            t.probes_failed += 1;
            Live::add(&live.probes, 1);
        }
    }
}
