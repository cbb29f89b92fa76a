//! The per-connection driver shared by WebSocket and TCP: one task per connection that reads
//! on readiness into a per-thread scratch buffer, feeds a sans-I/O [`StreamCodec`], dispatches
//! messages, and writes the session's outbox with vectored writes.
//!
//! Memory: an idle connection holds no read buffer (the scratch buffer belongs to the worker
//! thread; a codec buffers only a message that straddles reads) and an empty write queue.
//! Syscalls: after each readable event every reply produced by it goes out in one `writev`.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::io::{self, IoSlice, Read as _};
use std::task::Poll;

use bytes::Bytes;
use socket2::SockRef;
use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;
use tokio::time::{sleep_until, Instant};

use crate::close::CloseReason;
use crate::message::Message;
use crate::outbox::Written;
use crate::rate::RateLimiter;
use crate::session::Session;
use crate::transport::dispatch;

/// Size of the per-thread read buffer. Large enough to take many small frames per `read`.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Most buffers handed to one `writev` (Linux's IOV_MAX is 1024; 64 keeps the array on stack).
const MAX_IOVECS: usize = 64;

thread_local! {
    /// Read buffer shared by every connection driven on this worker thread. Borrowed only for a
    /// synchronous `try_read` + decode, never across an await or a handler call.
    static SCRATCH: RefCell<Vec<u8>> = RefCell::new(vec![0; SCRATCH_SIZE]);
    /// Decoded items waiting for dispatch, shared the same way (a connection keeps none between
    /// reads). Taken out while its items are dispatched, so a handler that somehow drove
    /// another connection's read would find an empty vector, not a borrowed one.
    static INBOUND: Cell<Vec<Inbound>> = const { Cell::new(Vec::new()) };
}

/// What a codec decoded from the client.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A complete message.
    Message(Message),
    /// A WebSocket ping: answer with this pong frame.
    Ping(Bytes),
    /// A WebSocket pong (it counts as traffic; nothing else to do).
    Pong,
    /// A WebSocket close frame with its code, if any.
    Close(Option<u16>),
}

/// A transport's framing, seen by the driver.
pub(crate) trait StreamCodec: Send + 'static {
    /// Decodes from the front of `input`, returning bytes consumed and at most one item.
    /// Must consume at least one byte or return an item when `input` is not empty.
    fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Inbound>), CloseReason>;
    /// What to send the client before a server-side close (`None`: nothing).
    fn close_notice(&self, reason: &CloseReason) -> Option<Bytes>;
    /// The reply to a client's WebSocket close frame.
    fn close_reply(&self, code: Option<u16>) -> Option<Bytes>;
    /// Release buffers held between messages (called when a read leaves nothing pending).
    fn shrink_idle(&mut self);
}

/// Drives one stream connection (WebSocket after the upgrade, or TCP) until it closes.
pub(crate) struct Connection<C> {
    /// The socket.
    stream: TcpStream,
    /// Framing state.
    codec: C,
    /// The session this connection carries.
    session: Session,
    /// Frames taken from the outbox and not yet fully written, oldest first.
    writing: VecDeque<Bytes>,
    /// Bytes of `writing[0]` already written.
    front_written: usize,
    /// `max_messages_per_second`.
    rate: RateLimiter,
    /// A close was decided: only drain the write queue (close notice last) and linger until
    /// the peer closes too. (The reason and the deadline live in the closing phase's future,
    /// not in every open connection.)
    closing: bool,
    /// The peer has closed its side (EOF or close frame): stop reading.
    peer_done: bool,
    /// Our write side has been shut down (FIN sent).
    write_shut: bool,
}

impl<C: StreamCodec> Connection<C> {
    pub(crate) fn new(stream: TcpStream, codec: C, session: Session) -> Self {
        let rate = RateLimiter::new(
            session.server().config.limits.max_messages_per_second,
            Instant::now(),
        );
        Connection {
            rate,
            stream,
            codec,
            session,
            writing: VecDeque::new(),
            front_written: 0,
            closing: false,
            peer_done: false,
            write_shut: false,
        }
    }

    /// Runs until the connection is over; returns why. The caller unregisters the session.
    ///
    /// Two phases, each its own future so that only one is stored in the task at a time: while
    /// open, the task waits on nothing but socket readiness and its outbox (heartbeats, idle
    /// timeouts and shutdown reach it through the outbox, from the server's sweeper); only a
    /// closing connection holds a timer.
    pub(crate) async fn run(&mut self, already_read: &[u8]) -> CloseReason {
        if !already_read.is_empty() {
            self.process(already_read);
        }
        match self.run_open().await {
            // Boxed: the closing phase's timer and futures are allocated only for the moments a
            // connection spends closing, not reserved in every idle connection's task.
            Ok(reason) => {
                let deadline = self.begin_close(&reason);
                Box::pin(self.run_closing(reason, deadline)).await
            }
            Err(reason) => reason,
        }
    }

    /// The open phase: returns `Ok` with the reason when a close has begun, `Err` when the
    /// socket failed.
    async fn run_open(&mut self) -> Result<CloseReason, CloseReason> {
        // What was written and not yet reported to the outbox: reported by the next wait or
        // take, whichever comes first (both in this turn of the loop), instead of with a lock
        // of its own.
        let mut written = Written::default();
        loop {
            // Everything queued so far joins the write queue; a close request starts closing.
            let outbox = &self.session.shared.outbox;
            if let Some(reason) = outbox.take_and_report(&mut self.writing, written) {
                return Ok(reason);
            }
            written = self
                .flush()
                .map_err(|e| CloseReason::ConnectionLost(e.to_string()))?;
            if self.wait(&mut written).await {
                self.read_ready();
            }
        }
    }

    /// Waits until the socket is readable (returns true), writable while frames wait to be
    /// written, or the outbox has something; in that order of preference.
    ///
    /// One hand-written poll instead of `select!` over three futures: nothing is stored in the
    /// task while it waits. `poll_*_ready` rather than `readable()`/`writable()`: no readiness
    /// future either, and the socket's single reader/writer waker slot is taken over from
    /// hyper's finished handshake task (which a waiter-list future would leave registered
    /// there, keeping that task's memory alive).
    ///
    /// `written` is reported to the outbox when it is polled (and zeroed); if the wait ends
    /// before that, it is left for the caller's next take.
    async fn wait(&mut self, written: &mut Written) -> bool {
        let readable = std::future::poll_fn(|cx| {
            if !self.peer_done {
                if let Poll::Ready(r) = self.stream.poll_read_ready(cx) {
                    return Poll::Ready(r.is_ok());
                }
            }
            if !self.writing.is_empty() && self.stream.poll_write_ready(cx).is_ready() {
                return Poll::Ready(false);
            }
            let outbox = &self.session.shared.outbox;
            outbox
                .poll_ready(cx, std::mem::take(written))
                .map(|()| false)
        })
        .await;
        // Running again: what this task queues for itself from here on (replies to what it
        // reads) is written by its next take, without a wake-up and another turn.
        self.session.shared.outbox.resume();
        readable
    }

    /// The closing phase: drain the write queue (close notice last), half-close, and linger
    /// until the peer closes too or `deadline` passes.
    async fn run_closing(&mut self, reason: CloseReason, deadline: Instant) -> CloseReason {
        let close_timeout = self.session.server().config.limits.close_timeout;
        let timer = sleep_until(deadline);
        tokio::pin!(timer);
        loop {
            self.session.shared.outbox.take(&mut self.writing);
            match self.flush() {
                Ok(w) => self.session.shared.outbox.written(w.bytes, w.frames),
                Err(_) => return reason,
            }
            if self.writing.is_empty() {
                if !self.write_shut {
                    // FIN after the close notice; keep reading so unread input does not turn
                    // our close into a reset that could destroy the notice. From here the peer
                    // has `close_timeout` to close its side.
                    self.write_shut = true;
                    let _ = self.stream.shutdown().await;
                    let linger = Instant::now() + close_timeout;
                    if linger < timer.deadline() {
                        timer.as_mut().reset(linger);
                    }
                }
                if self.peer_done {
                    return reason;
                }
            }
            let mut nothing = Written::default();
            tokio::select! {
                biased;
                readable = self.wait(&mut nothing) => {
                    if readable {
                        self.read_ready();
                    }
                }
                _ = &mut timer => return reason,
            }
        }
    }

    /// Records a close decided by the driver itself (protocol error, timeout, peer close).
    /// The outbox keeps the first reason, whoever asked first.
    fn request_close(&mut self, reason: CloseReason) {
        self.session.shared.outbox.close(reason);
    }

    /// Enters the closing phase: drops frames a slow consumer failed to read, queues the close
    /// notice after the rest, and returns the deadline.
    fn begin_close(&mut self, reason: &CloseReason) -> Instant {
        let limits = &self.session.server().config.limits;
        if reason.discards_pending() {
            // Keep only a half-written frame: cutting it would corrupt the stream.
            let keep = usize::from(self.front_written > 0).min(self.writing.len());
            let dropped: Vec<Bytes> = self.writing.drain(keep..).collect();
            self.session
                .shared
                .outbox
                .written(dropped.iter().map(Bytes::len).sum(), dropped.len());
        }
        if reason.notifies_client() {
            if let Some(notice) = self.codec.close_notice(reason) {
                self.session.shared.outbox.push_internal(notice);
            }
        }
        let wait = if *reason == CloseReason::GoingAway {
            limits.drain_timeout
        } else {
            limits.close_timeout
        };
        self.closing = true;
        Instant::now() + wait
    }

    /// Reads what the socket has (once) and processes it.
    fn read_ready(&mut self) {
        let result = SCRATCH.with_borrow_mut(|buf| {
            // The read and, after a short one, clearing the socket's readiness under one
            // readiness check, as tokio's own `poll_read` does: a short read emptied the
            // socket, so readiness is cleared now instead of paying a second read that only
            // returns EAGAIN (one read per readable event, not two). Safe with edge-triggered
            // epoll: tokio clears only if no new event arrived since the read began, and never
            // clears end-of-stream (a FIN still wakes us for the final 0-byte read).
            let mut n = 0;
            let read = self.stream.try_io(Interest::READABLE, || {
                n = (&*SockRef::from(&self.stream)).read(&mut buf[..])?;
                if n > 0 && n < buf.len() {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            });
            match read {
                _ if n > 0 => {
                    let session = &self.session;
                    session.hub().stats().bytes_in(session.transport(), n);
                    Ok(self.decode_all(&buf[..n]))
                }
                Ok(()) => Err(None),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
                Err(e) => Err(Some(e)),
            }
        });
        match result {
            Ok(error) => {
                // Messages that arrived before a framing error are still delivered (and
                // echoed) before the close, as RFC 6455 peers expect.
                self.dispatch_inbound();
                if let Some(reason) = error {
                    self.request_close(reason);
                }
            }
            Err(err) => {
                self.peer_done = true;
                if !self.closing {
                    self.request_close(match err {
                        None => CloseReason::ClosedByPeer(None),
                        Some(e) => CloseReason::ConnectionLost(e.to_string()),
                    });
                }
            }
        }
    }

    /// Processes bytes that arrived before the driver started (left over from the handshake).
    fn process(&mut self, input: &[u8]) {
        let error = self.decode_all(input);
        self.dispatch_inbound();
        if let Some(reason) = error {
            self.request_close(reason);
        }
    }

    /// Decodes every complete item in `input` into the thread's [`INBOUND`] list. Returns the
    /// framing error that stopped it, if any; nothing after such an error can be trusted, and
    /// the codec stays failed, so later reads only watch for the peer to go away.
    fn decode_all(&mut self, mut input: &[u8]) -> Option<CloseReason> {
        // For the server's sweeper: this session is alive (heartbeat and idle timeout).
        self.session.server().hub.inner.touch(&self.session.shared);
        let mut items = INBOUND.take();
        let mut error = None;
        while !input.is_empty() {
            match self.codec.decode(input) {
                Ok((used, item)) => {
                    input = &input[used..];
                    match item {
                        Some(item) => items.push(item),
                        None if used == 0 => break,
                        None => {}
                    }
                }
                Err(reason) => {
                    error = Some(reason);
                    break;
                }
            }
        }
        INBOUND.set(items);
        error
    }

    /// Hands decoded items to the protocol layer (only while open; a closing connection reads
    /// just to see the peer's close).
    fn dispatch_inbound(&mut self) {
        let mut items = INBOUND.take();
        // The rate limiter's "now": one clock reading for everything this read brought, and
        // none without a limit.
        let limited = self.session.server().config.limits.max_messages_per_second != 0;
        let now = limited.then(Instant::now);
        for item in items.drain(..) {
            match item {
                Inbound::Close(code) => {
                    self.peer_done = true;
                    if !self.closing && !self.session.shared.outbox.is_closing() {
                        if let Some(reply) = self.codec.close_reply(code) {
                            self.session.shared.outbox.push_internal(reply);
                        }
                        self.request_close(CloseReason::ClosedByPeer(code));
                    }
                    break;
                }
                _ if self.closing || self.session.shared.outbox.is_closing() => {}
                Inbound::Message(m) => {
                    if now.is_some_and(|now| !self.rate.take(now)) {
                        let per_second =
                            self.session.server().config.limits.max_messages_per_second;
                        self.request_close(CloseReason::RateLimited { per_second });
                        continue;
                    }
                    self.session.server().hub.stats().message_in();
                    dispatch(&self.session, m);
                }
                // Every ping is answered, in order with the other replies (Autobahn 2.10 and
                // 5.x check both), and the pong counts against the outbox limits: a ping flood
                // from a client that does not read ends as a slow consumer, not as unbounded
                // memory. (RFC 6455 would also allow answering only the latest ping.)
                Inbound::Ping(frame) => {
                    self.session
                        .server()
                        .hub
                        .inner
                        .push(&self.session.shared, frame);
                }
                Inbound::Pong => {}
            }
        }
        // Items left after a close frame are dropped here; a vector grown by a burst is not
        // kept.
        items.clear();
        if items.capacity() <= 64 {
            INBOUND.set(items);
        }
        self.codec.shrink_idle();
    }

    /// Writes queued frames until done or the socket would block; gathers up to
    /// [`MAX_IOVECS`] frames per `writev`. Returns what was written, for the caller to report
    /// to the outbox (on an error the connection is over, and nothing is reported).
    fn flush(&mut self) -> io::Result<Written> {
        let (mut bytes_done, mut frames_done) = (0, 0);
        let result = loop {
            if self.writing.is_empty() {
                break Ok(());
            }
            let written = if self.writing.len() == 1 {
                // One frame (an echo, a broadcast to an idle subscriber): `send`, which costs
                // the kernel less than a one-element `writev`.
                self.stream
                    .try_write(&self.writing[0][self.front_written..])
            } else {
                let mut iov = [IoSlice::new(&[]); MAX_IOVECS];
                let mut n_iov = 0;
                for (i, frame) in self.writing.iter().take(MAX_IOVECS).enumerate() {
                    let start = if i == 0 { self.front_written } else { 0 };
                    iov[n_iov] = IoSlice::new(&frame[start..]);
                    n_iov += 1;
                }
                self.stream.try_write_vectored(&iov[..n_iov])
            };
            match written {
                Ok(0) => break Err(io::ErrorKind::WriteZero.into()),
                Ok(mut n) => {
                    // The kernel took n bytes from the front of the queue: retire whole frames.
                    while let Some(front) = self.writing.front() {
                        let front_left = front.len() - self.front_written;
                        if n >= front_left {
                            n -= front_left;
                            bytes_done += front.len();
                            frames_done += 1;
                            self.front_written = 0;
                            self.writing.pop_front();
                        } else {
                            self.front_written += n;
                            break;
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        if frames_done > 0 {
            let session = &self.session;
            session
                .hub()
                .stats()
                .bytes_out(session.transport(), bytes_done);
        }
        if self.writing.is_empty() && self.writing.capacity() > 64 {
            self.writing = VecDeque::new();
        }
        result.map(|()| Written {
            bytes: bytes_done,
            frames: frames_done,
        })
    }
}

#[cfg(test)]
mod tests {
    use std::mem::size_of;

    use super::Connection;
    use crate::outbox::Outbox;
    use crate::transport::ws::WsCodec;
    use crate::ws::codec::Decoder;

    /// An idle WebSocket connection is mostly its task, and tokio sizes a task in steps of 128
    /// bytes (its cell is cache-line aligned): the connection's future was 640 bytes, a
    /// 768-byte task, when these were measured (docs/performance.md, "Idle memory"). A few
    /// bytes more here can cost every idle connection 128 more; if this fails, check the task
    /// size before raising the bounds.
    #[test]
    fn per_connection_state_stays_small() {
        // Without tokio's socket, which has a debug-only field (32 bytes in release).
        let socket = size_of::<tokio::net::TcpStream>();
        assert!(size_of::<Connection<WsCodec>>() - socket <= 256);
        assert!(size_of::<WsCodec>() <= 160);
        assert!(size_of::<Decoder>() <= 128);
        // Part of every session record (the hub's `SessionShared`).
        assert!(size_of::<Outbox>() <= 96);
    }
}
