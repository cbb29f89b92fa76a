//! `broadcast`: N subscribers, one publisher at a fixed rate.
//!
//! Each message carries its send instant (16 hex digits of nanoseconds since the start, then
//! `x` padding), so every subscriber measures publish-to-receive latency from the payload
//! prefix it captures while scanning; nothing else of the payload is copied.
//!
//! With `--slow N`, N more subscribers complete the handshake and then read nothing until the
//! run is over (see [`slow_subscriber`]); every figure but their own counts is the fast
//! subscribers'.
//!
//! The publisher sends on a schedule (message i is due at start + i / rate; everything due is
//! written at once, so a late wake-up catches up in one write). Messages sent inside the
//! measured window are the expected ones: each should reach every subscriber.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sockhub::ws::codec::OpCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::echo::{no_connection, threads, MAX_READS_PER_WAKE};
use crate::procfs::{ensure_fds, Probe};
use crate::progress::Progress;
use crate::report::{round, Latency, Report, Window};
use crate::runner::{self, nanos, Conn, Live, Phase, Schedule, Tally, WorkerCtx, SCRATCH};
use crate::target::{parse_http, parse_tcp, parse_ws, HttpTarget, WsTarget};
use crate::wsproto::{self, io_kind, read_once, Frame, ReadOutcome, Scanner};
use crate::{BroadcastArgs, CommonArgs, PublishVia};

/// Where and how to publish.
#[derive(Clone, Debug)]
enum Publish {
    Ws(WsTarget),
    Tcp(std::net::SocketAddr),
    Http {
        target: HttpTarget,
        channel: String,
        api_key: Option<String>,
    },
}

impl Publish {
    fn url(&self) -> String {
        match self {
            Publish::Ws(t) => t.url.clone(),
            Publish::Tcp(a) => format!("tcp://{a}"),
            Publish::Http { target, .. } => target.url.clone(),
        }
    }
}

/// The publisher's progress, shared with every subscriber thread.
#[derive(Default)]
struct PubState {
    /// Messages published so far.
    published: AtomicU64,
    /// Of which inside the measured window.
    in_window: AtomicU64,
    /// Publishing is over (subscribers may stop once they have everything).
    done: AtomicBool,
    /// Why publishing failed, if it did.
    fatal: Mutex<Option<String>>,
}

impl PubState {
    fn fail(&self, why: String) {
        let mut f = self.fatal.lock().unwrap_or_else(|e| e.into_inner());
        f.get_or_insert(why);
        self.done.store(true, Ordering::Release);
    }

    fn fatal(&self) -> Option<String> {
        self.fatal.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// What every thread shares.
struct Plan {
    target: WsTarget,
    request: Rc<[u8]>,
    /// Connections: the fast subscribers (indices `0..fast`), then the slow ones.
    total: u64,
    /// Fast subscribers.
    fast: u64,
    /// Socket options of the slow subscribers.
    slow_socket: wsproto::SlowSocket,
    publish: Publish,
    size: usize,
    rate: u32,
    state: Arc<PubState>,
}

pub(crate) fn run(common: &CommonArgs, a: &BroadcastArgs) -> Result<Report, String> {
    let target = parse_ws(&a.url)?;
    let channel = target.channel.clone().unwrap_or_else(|| "lobby".into());
    let publish = match a.publish {
        PublishVia::Ws => Publish::Ws(match &a.publish_url {
            Some(u) => parse_ws(u)?,
            None => target.clone(),
        }),
        PublishVia::Tcp => Publish::Tcp(parse_tcp(a.publish_url.as_deref().ok_or(
            "--publish tcp needs --publish-url tcp://HOST:PORT (the server's TCP lines listener)",
        )?)?),
        PublishVia::Http => Publish::Http {
            target: parse_http(
                &a.publish_url
                    .clone()
                    .unwrap_or_else(|| format!("http://{}/api/publish", target.host)),
            )?,
            channel: channel.clone(),
            api_key: a.api_key.clone(),
        },
    };
    let probe = Probe::new(common.pid)?;
    let fast = u64::from(a.subscribers);
    let slow_socket = wsproto::SlowSocket {
        rcvbuf: a.slow_rcvbuf,
        mss: a.slow_mss,
    };
    let n = fast + u64::from(a.slow);
    ensure_fds(n + 1)?;
    if let Publish::Http { .. } = &publish {
        preflight_http(&publish)?;
    }
    let threads = threads(common, n);
    let state = Arc::new(PubState::default());
    let request: Arc<Vec<u8>> = Arc::new(wsproto::handshake_request(&target));
    let (t2, p2, s2) = (target.clone(), publish.clone(), state.clone());
    let (size, rate) = (a.size as usize, a.rate);
    let mut progress = Progress::new("broadcast", common.quiet);
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
                fast,
                slow_socket,
                publish: p2.clone(),
                size,
                rate,
                state: s2.clone(),
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
    if opened == 0 || state.fatal().is_some() {
        workers.set(Phase::Stop);
        let outs = workers.join()?;
        return Err(match state.fatal() {
            Some(f) => f,
            None => no_connection(&target.url, &outs),
        });
    }
    let start = Instant::now() + Duration::from_millis(20);
    let sched = Schedule {
        start,
        warm_end: start + a.warmup,
        end: start + a.warmup + a.duration,
        stop: start + a.warmup + a.duration + a.drain,
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
    // The server's RSS, sampled every ~100 ms through the window (memory under load).
    let mut rss_peak = s0.and_then(|s| s.rss_kb);
    let sample_rss = |peak: &mut Option<u64>| {
        if let Some(kb) = probe.server().and_then(|s| s.rss_kb) {
            *peak = Some(peak.map_or(kb, |p| p.max(kb)));
        }
    };
    runner::wait_until(sched.end, &mut progress, || {
        sample_rss(&mut rss_peak);
        let m = workers.sum(|l| &l.msgs) - m0;
        let el = sched.warm_end.elapsed().as_secs_f64().max(1e-3);
        (
            format!("{:.0} deliveries/s", m as f64 / el),
            Some(start.elapsed().as_secs_f64() / total_s),
        )
    });
    progress.draw("draining", None, "");
    let (outs, s1, g1) = if a.slow > 0 {
        // The slow subscribers read what is left only after `stop`: sample the server before,
        // so that its CPU and RSS cover the run and not that final read.
        runner::wait_until(sched.stop, &mut progress, || {
            sample_rss(&mut rss_peak);
            ("draining".into(), None)
        });
        let (s1, g1) = (probe.server(), probe.myself());
        (workers.join()?, s1, g1)
    } else {
        let outs = workers.join()?;
        (outs, probe.server(), probe.myself())
    };
    progress.finish();
    if let Some(f) = state.fatal() {
        return Err(f);
    }

    let mut t = Tally::default();
    for o in &outs {
        t.merge(o);
    }
    let secs = a.duration.as_secs_f64();
    let published = state.in_window.load(Ordering::Acquire);
    let expected = published * t.opened;
    let mut r = Report::new("broadcast", &a.url, "deliveries");
    r.parameters
        .put("subscribers", a.subscribers)
        .put("rate", a.rate)
        .put("size", a.size)
        .put("publish", format!("{:?}", a.publish).to_lowercase())
        .put("publish_url", publish.url())
        .put("duration_s", secs)
        .put("warmup_s", a.warmup.as_secs_f64())
        .put("drain_s", a.drain.as_secs_f64())
        .put("threads", threads);
    if a.slow > 0 {
        r.parameters
            .put("slow", a.slow)
            .put("slow_rcvbuf", a.slow_rcvbuf)
            .put("slow_mss", a.slow_mss);
    }
    r.duration_s = round(secs, 3);
    r.counts
        .put("subscribers_opened", t.opened)
        .put("subscribers_failed", t.failed)
        .put("subscribers_lost", t.lost)
        .put("published", published)
        .put("published_total", state.published.load(Ordering::Acquire))
        .put("expected", expected)
        .put("delivered", t.received)
        .put("delivered_total", t.received_total);
    if a.slow > 0 {
        r.counts
            .put("slow_opened", t.slow_opened)
            .put("slow_disconnected", t.slow_disconnected);
        r.notes.push(format!(
            "{} slow subscribers read nothing until the end ({} of them found closed by the \
             server); latency, deliveries and the delivered fraction are the {} fast \
             subscribers' alone",
            t.slow_opened, t.slow_disconnected, t.opened
        ));
    }
    r.rates
        .put(
            "delivered_fraction",
            if expected > 0 {
                round(t.received as f64 / expected as f64, 6)
            } else {
                0.0
            },
        )
        .put("deliveries_per_s", round(t.received as f64 / secs, 1))
        .put("publish_per_s", round(published as f64 / secs, 1));
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
    if common.pid.is_some() {
        // VmHWM as the kernel reports it can lag its own VmRSS; keep the larger.
        r.rss_kb_peak = r.rss_kb_peak.max(rss_peak).max(r.rss_kb_after);
    }
    r.notes.push(
        "server and generator CPU cover the window plus the drain of its last messages".into(),
    );
    r.errors = (&t.errors).into();
    r.primary = t.received;
    Ok(r)
}

async fn worker(mut ctx: WorkerCtx, plan: Rc<Plan>) -> Tally {
    let tally = Rc::new(RefCell::new(Tally::default()));
    let conns = runner::open_all(
        &ctx,
        &plan.target,
        plan.request.clone(),
        plan.total,
        &tally,
        Some((plan.fast, plan.slow_socket)),
    )
    .await;
    let publisher = if ctx.index == 0 {
        match open_publisher(&plan).await {
            Ok(p) => Some(p),
            Err(e) => {
                plan.state.fail(e);
                None
            }
        }
    } else {
        None
    };
    ctx.report_ready();
    let sched = match ctx.next_phase().await {
        Phase::Go(s) => s,
        _ => return tally.take(),
    };
    let (conns, slow): (Vec<Conn>, Vec<Conn>) =
        conns.into_iter().partition(|c| c.index < plan.fast);
    {
        let mut t = tally.borrow_mut();
        t.opened -= slow.len() as u64;
        t.slow_opened += slow.len() as u64;
    }
    let slow_tasks: Vec<_> = slow
        .into_iter()
        .map(|c| tokio::task::spawn_local(slow_subscriber(c, sched, tally.clone())))
        .collect();
    let mut tasks: Vec<_> = conns
        .into_iter()
        .map(|c| {
            tokio::task::spawn_local(subscriber(
                c,
                sched,
                plan.clone(),
                tally.clone(),
                ctx.live.clone(),
            ))
        })
        .collect();
    if let Some(p) = publisher {
        tasks.push(tokio::task::spawn_local(publish_loop(
            p,
            sched,
            plan.clone(),
            tally.clone(),
        )));
    }
    tasks.extend(slow_tasks);
    for t in tasks {
        let _ = t.await;
    }
    tally.take()
}

/// How long a slow subscriber may take, after `stop`, to read what is left.
const SLOW_CHECK: Duration = Duration::from_secs(3);
/// Silence that tells a slow subscriber the server still holds it open.
const SLOW_QUIET: Duration = Duration::from_millis(300);

/// A slow subscriber: reads nothing until the run is over (`stop`), so the server's outbox for
/// it fills up; then reads what is left, bounded by [`SLOW_CHECK`], to learn whether the server
/// closed it (a close frame, EOF or an error) or still holds it ([`SLOW_QUIET`] of silence).
async fn slow_subscriber(c: Conn, s: Schedule, tally: Rc<RefCell<Tally>>) {
    let Conn { stream, early, .. } = c;
    tokio::time::sleep_until(s.stop.into()).await;
    let deadline = tokio::time::Instant::from(Instant::now() + SLOW_CHECK);
    let mut scanner = Scanner::new(0);
    let mut closed = holds_close(&mut scanner, &early);
    while !closed {
        tokio::select! {
            biased;
            _ = tokio::time::sleep_until(deadline) => break,
            _ = tokio::time::sleep(SLOW_QUIET) => break,
            r = stream.readable() => {
                if r.is_err() {
                    closed = true;
                    break;
                }
            }
        }
        let gone = SCRATCH.with_borrow_mut(|buf| match read_once(&stream, buf) {
            ReadOutcome::Data(n, _) => holds_close(&mut scanner, &buf[..n]),
            ReadOutcome::WouldBlock => false,
            ReadOutcome::Eof | ReadOutcome::Error(_) => true,
        });
        closed = gone;
    }
    if closed {
        tally.borrow_mut().slow_disconnected += 1;
    }
}

/// Scans `bytes`; true when they hold a close frame (or are not a valid frame stream, which
/// also means the connection is over).
fn holds_close(scanner: &mut Scanner, bytes: &[u8]) -> bool {
    let mut close = false;
    let ok = scanner
        .feed(bytes, &mut |f| {
            if let Frame::Close(_) = f {
                close = true;
            }
        })
        .is_ok();
    close || !ok
}

/// A subscriber: scans deliveries, measures their latency, stops when it has everything the
/// publisher sent (or at the drain deadline).
async fn subscriber(
    c: Conn,
    s: Schedule,
    plan: Rc<Plan>,
    tally: Rc<RefCell<Tally>>,
    live: Arc<Live>,
) {
    let Conn { stream, early, .. } = c;
    let mut scanner = Scanner::new(16);
    let mut got: u64 = 0;
    let mut pongs: Vec<u8> = Vec::new();
    let mut end: Option<String> = None;
    let stop = tokio::time::sleep_until(s.stop.into());
    tokio::pin!(stop);
    let check = tokio::time::sleep_until(s.end.into());
    tokio::pin!(check);
    let on_bytes = |scanner: &mut Scanner,
                    bytes: &[u8],
                    now: Instant,
                    got: &mut u64,
                    pongs: &mut Vec<u8>,
                    t: &mut Tally|
     -> Result<u64, String> {
        let mut n = 0;
        let mut closed = None;
        scanner
            .feed(bytes, &mut |f| match f {
                Frame::Data { fin: true, prefix } => {
                    n += 1;
                    *got += 1;
                    t.received_total += 1;
                    match wsproto::parse_hex16(prefix) {
                        Some(ts) => {
                            let sent = s.start + Duration::from_nanos(ts);
                            if s.in_window(sent) {
                                t.received += 1;
                                t.hist.saturating_record(nanos(sent, now));
                            }
                        }
                        None => t.errors.add("message without a timestamp"),
                    }
                }
                Frame::Data { .. } | Frame::Pong(_) => {}
                Frame::Ping(p) => pongs.extend_from_slice(&wsproto::pong(p)),
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
            None => Ok(n),
        }
    };
    if !early.is_empty() {
        if let Err(e) = on_bytes(
            &mut scanner,
            &early,
            Instant::now(),
            &mut got,
            &mut pongs,
            &mut tally.borrow_mut(),
        ) {
            end = Some(e);
        }
    }
    while end.is_none() {
        if !pongs.is_empty() {
            // Tiny and rare: a full socket here only loses a pong.
            let _ = stream.try_write(&pongs);
            pongs.clear();
        }
        tokio::select! {
            biased;
            _ = &mut stop => break,
            _ = &mut check => {
                let st = &plan.state;
                if st.done.load(Ordering::Acquire) && got >= st.published.load(Ordering::Acquire) {
                    break;
                }
                check.as_mut().reset((Instant::now() + Duration::from_millis(20)).into());
                continue;
            }
            r = stream.readable() => {
                if let Err(e) = r {
                    end = Some(format!("read: {}", io_kind(&e)));
                    break;
                }
            }
        }
        let mut batch = 0;
        for _ in 0..MAX_READS_PER_WAKE {
            let outcome = SCRATCH.with_borrow_mut(|buf| match read_once(&stream, buf) {
                ReadOutcome::Data(n, drained) => {
                    let now = Instant::now();
                    on_bytes(
                        &mut scanner,
                        &buf[..n],
                        now,
                        &mut got,
                        &mut pongs,
                        &mut tally.borrow_mut(),
                    )
                    .map(|k| {
                        batch += k;
                        !drained
                    })
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
        if batch > 0 {
            Live::add(&live.msgs, batch);
            let st = &plan.state;
            if st.done.load(Ordering::Acquire) && got >= st.published.load(Ordering::Acquire) {
                break;
            }
        }
    }
    if let Some(e) = end {
        Live::add(&live.errors, 1);
        let mut t = tally.borrow_mut();
        t.lost += 1;
        t.errors.add(&e);
    }
}

/// The publisher's connection.
enum PubConn {
    Ws(TcpStream),
    Tcp(TcpStream),
    Http(TcpStream),
}

async fn open_publisher(plan: &Plan) -> Result<PubConn, String> {
    let timeout = Duration::from_secs(10);
    match &plan.publish {
        Publish::Ws(t) => {
            let req = wsproto::handshake_request(t);
            let (s, _) = wsproto::connect(t.addr, None, &req, timeout)
                .await
                .map_err(|e| format!("publisher {}: {e}", t.url))?;
            Ok(PubConn::Ws(s))
        }
        Publish::Tcp(a) => {
            let s = tokio::time::timeout(timeout, wsproto::tcp_connect(*a, None))
                .await
                .map_err(|_| format!("publisher tcp://{a}: connect timed out"))?
                .map_err(|e| format!("publisher tcp://{a}: {e}"))?;
            Ok(PubConn::Tcp(s))
        }
        Publish::Http { target, .. } => {
            let s = tokio::time::timeout(timeout, wsproto::tcp_connect(target.addr, None))
                .await
                .map_err(|_| format!("publisher {}: connect timed out", target.url))?
                .map_err(|e| format!("publisher {}: {e}", target.url))?;
            Ok(PubConn::Http(s))
        }
    }
}

/// Builds one message of each kind; the 16-byte timestamp is patched in per send.
struct Templates {
    /// The bytes of one message on the wire.
    bytes: Vec<u8>,
    /// Where the timestamp goes in `bytes`.
    ts_at: usize,
    /// Masked (WebSocket) or plain.
    masked: bool,
}

fn template(plan: &Plan) -> Templates {
    let payload = vec![b'x'; plan.size];
    match &plan.publish {
        Publish::Ws(_) => Templates {
            bytes: wsproto::client_frame(OpCode::Text, &payload),
            ts_at: wsproto::client_header_len(plan.size),
            masked: true,
        },
        Publish::Tcp(_) => {
            let mut bytes = payload;
            bytes.push(b'\n');
            Templates {
                bytes,
                ts_at: 0,
                masked: false,
            }
        }
        Publish::Http {
            target,
            channel,
            api_key,
        } => {
            let body = format!(
                "{{\"channel\":{},\"data\":\"{}\"}}",
                serde_json::Value::from(channel.as_str()),
                String::from_utf8_lossy(&payload)
            );
            let auth = api_key
                .as_ref()
                .map(|k| format!("Authorization: Bearer {k}\r\n"))
                .unwrap_or_default();
            let head = format!(
                "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}\
                 Content-Length: {}\r\n\r\n",
                target.path,
                target.host,
                body.len()
            );
            let ts_at = head.len() + body.find("\"data\":\"").unwrap_or(0) + 8;
            Templates {
                bytes: format!("{head}{body}").into_bytes(),
                ts_at,
                masked: false,
            }
        }
    }
}

/// Publishes on schedule until the window closes.
async fn publish_loop(mut conn: PubConn, s: Schedule, plan: Rc<Plan>, tally: Rc<RefCell<Tally>>) {
    let tpl = template(&plan);
    let st = plan.state.clone();
    let rate = f64::from(plan.rate);
    let mut out: Vec<u8> = Vec::with_capacity(tpl.bytes.len() * 16);
    let mut sent: u64 = 0;
    let mut http_buf: Vec<u8> = Vec::new();
    let mut next = s.start;
    let result: Result<(), String> = async {
        loop {
            let is_http = matches!(conn, PubConn::Http(_));
            let stream = match &mut conn {
                PubConn::Ws(s) | PubConn::Tcp(s) | PubConn::Http(s) => s,
            };
            // Sleep until the next message is due, discarding whatever the server sends
            // (pings are rare and harmless to leave unanswered within a run).
            let wake = tokio::time::sleep_until(next.into());
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    biased;
                    _ = &mut wake => break,
                    r = stream.readable(), if !is_http => {
                        r.map_err(|e| format!("publisher: {}", io_kind(&e)))?;
                        let mut sink = [0u8; 4096];
                        match stream.try_read(&mut sink) {
                            Ok(0) => return Err("publisher: closed by server".to_string()),
                            Ok(_) => {}
                            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                            Err(e) => return Err(format!("publisher: {}", io_kind(&e))),
                        }
                    }
                }
            }
            let now = Instant::now();
            if now >= s.end {
                return Ok(());
            }
            let due = ((now - s.start).as_secs_f64() * rate) as u64 + 1;
            let n = due.saturating_sub(sent).clamp(1, 10_000);
            let ts = wsproto::hex16(nanos(s.start, now));
            out.clear();
            for _ in 0..n {
                let at = out.len();
                out.extend_from_slice(&tpl.bytes);
                if tpl.masked {
                    wsproto::patch_masked(&mut out[at..], tpl.ts_at, 0, &ts);
                } else {
                    out[at + tpl.ts_at..at + tpl.ts_at + 16].copy_from_slice(&ts);
                }
            }
            tokio::time::timeout_at(s.stop.into(), stream.write_all(&out))
                .await
                .map_err(|_| "publisher: write timed out".to_string())?
                .map_err(|e| format!("publisher: {}", io_kind(&e)))?;
            if let PubConn::Http(h) = &mut conn {
                read_http_responses(h, n, &mut http_buf, s.stop)
                    .await
                    .map_err(|e| http_unsupported(&plan.publish, &e))?;
            }
            sent += n;
            st.published.store(sent, Ordering::Release);
            if s.in_window(now) {
                st.in_window.fetch_add(n, Ordering::AcqRel);
            }
            next = s.start + Duration::from_secs_f64(sent as f64 / rate);
        }
    }
    .await;
    tally.borrow_mut().sent += sent;
    match result {
        Ok(()) => st.done.store(true, Ordering::Release),
        Err(e) => {
            tally.borrow_mut().errors.add(&e);
            st.fail(e);
        }
    }
}

/// The error for a failed publish over HTTP.
fn http_unsupported(p: &Publish, why: &str) -> String {
    format!(
        "publishing over HTTP is not supported by this server yet (POST {} failed: {why})",
        p.url()
    )
}

/// One POST before any connection is opened, so that a server without the HTTP API fails
/// the run at once.
fn preflight_http(p: &Publish) -> Result<(), String> {
    let Publish::Http {
        target,
        channel,
        api_key,
    } = p
    else {
        return Ok(());
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let body = format!(
        "{{\"channel\":{},\"data\":\"sockhub-bench preflight\"}}",
        serde_json::Value::from(channel.as_str())
    );
    let auth = api_key
        .as_ref()
        .map(|k| format!("Authorization: Bearer {k}\r\n"))
        .unwrap_or_default();
    let req = format!(
        "POST {} HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\n{auth}\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        target.path,
        target.host,
        body.len()
    );
    rt.block_on(async {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut s =
            tokio::time::timeout_at(deadline.into(), wsproto::tcp_connect(target.addr, None))
                .await
                .map_err(|_| "connect timed out".to_string())??;
        s.write_all(req.as_bytes()).await.map_err(|e| io_kind(&e))?;
        let mut buf = Vec::new();
        read_http_responses(&mut s, 1, &mut buf, deadline).await
    })
    .map_err(|e| http_unsupported(p, &e))
}

/// Reads `n` HTTP responses from a keep-alive connection; any status but 2xx is an error.
async fn read_http_responses(
    s: &mut TcpStream,
    mut n: u64,
    buf: &mut Vec<u8>,
    deadline: Instant,
) -> Result<(), String> {
    while n > 0 {
        // Parse whatever is complete in `buf`.
        if let Some(hdr_end) = wsproto::find(buf, b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..hdr_end]).to_string();
            let status_line = head.lines().next().unwrap_or_default().to_string();
            let code: u16 = status_line
                .split_whitespace()
                .nth(1)
                .and_then(|c| c.parse().ok())
                .ok_or_else(|| format!("bad HTTP response {status_line:?}"))?;
            let header = |name: &str| {
                head.lines().skip(1).find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.trim()
                        .eq_ignore_ascii_case(name)
                        .then(|| v.trim().to_string())
                })
            };
            let body_len = if header("transfer-encoding")
                .is_some_and(|v| v.to_ascii_lowercase().contains("chunked"))
            {
                // Whole chunked body present? It ends with a zero-size chunk.
                {
                    let body = &buf[hdr_end + 4..];
                    if body.starts_with(b"0\r\n\r\n") {
                        Some(5)
                    } else {
                        wsproto::find(body, b"\r\n0\r\n\r\n").map(|i| i + 7)
                    }
                }
            } else {
                Some(
                    header("content-length")
                        .and_then(|v| v.parse::<usize>().ok())
                        .unwrap_or(0),
                )
            };
            if let Some(len) = body_len {
                if buf.len() >= hdr_end + 4 + len {
                    let body =
                        String::from_utf8_lossy(&buf[hdr_end + 4..hdr_end + 4 + len]).to_string();
                    buf.drain(..hdr_end + 4 + len);
                    if !(200..300).contains(&code) {
                        let mut b = body.trim().to_string();
                        b.truncate(120);
                        return Err(format!(
                            "{status_line}{}",
                            if b.is_empty() {
                                String::new()
                            } else {
                                format!(": {b}")
                            }
                        ));
                    }
                    n -= 1;
                    continue;
                }
            }
        }
        let mut chunk = [0u8; 4096];
        let r = tokio::time::timeout_at(deadline.into(), s.read(&mut chunk))
            .await
            .map_err(|_| "no response in time".to_string())?
            .map_err(|e| io_kind(&e))?;
        if r == 0 {
            return Err(if buf.is_empty() {
                "connection closed without a response".into()
            } else {
                "connection closed mid-response".into()
            });
        }
        buf.extend_from_slice(&chunk[..r]);
        if buf.len() > 1 << 20 {
            return Err("HTTP response over 1 MiB".into());
        }
    }
    Ok(())
}
