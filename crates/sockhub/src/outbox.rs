//! The bounded per-session queue of encoded frames, and its overflow policy.
//!
//! Publishers (any task: another session's driver, the HTTP API, a broker) push shared
//! [`Bytes`] and never wait; the session's own driver takes the queued frames in one swap and
//! writes them with vectored writes. The limit counts everything not yet written to the socket,
//! queued *and* taken, so a client that stops reading holds at most `max_outbox_bytes`.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};

use bytes::Bytes;

use crate::close::CloseReason;
use crate::config::{Limits, OverflowPolicy};

/// The three outbox limits, copied out of [`Limits`] so the hub's fan-out reads one small struct.
#[derive(Clone, Copy, Debug)]
pub(crate) struct OutboxLimits {
    /// `max_outbox_bytes`.
    pub max_bytes: usize,
    /// `max_outbox_messages`.
    pub max_messages: usize,
    /// `outbox_overflow`.
    pub policy: OverflowPolicy,
}

impl From<&Limits> for OutboxLimits {
    fn from(l: &Limits) -> Self {
        OutboxLimits {
            max_bytes: l.max_outbox_bytes,
            max_messages: l.max_outbox_messages,
            policy: l.outbox_overflow,
        }
    }
}

/// What became of a pushed frame.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Push {
    /// Queued for writing.
    Queued,
    /// Queued after dropping this many older frames (drop-oldest policy), or not queued at all
    /// when nothing older could be dropped (`frame_dropped`).
    Dropped {
        /// Frames thrown away, the new one included when `frame_dropped`.
        count: usize,
        /// Whether the pushed frame itself was dropped.
        frame_dropped: bool,
    },
    /// The outbox overflowed under the disconnect policy: the session is now closing as a slow
    /// consumer (this push is the one that tipped it).
    Overflow,
    /// The session is already closing; the frame was not queued.
    Closed,
}

/// One session's outbox. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Outbox {
    /// Queue, accounting and the driver's waker. A std mutex: it is held only for a push, a
    /// swap or a check, never across an await, and it is per session, so contention is one
    /// publisher against one driver.
    state: Mutex<State>,
    /// The driver waits (set under the lock by [`Outbox::poll_ready`]; cleared without it by
    /// [`Outbox::resume`], so a push that reads it a moment late causes at most one spurious
    /// wake-up). While the driver runs, what is pushed (its own replies to what it reads) waits
    /// for its next take: no wake-up, no extra turn of its loop.
    waiting: AtomicBool,
    /// A close was requested: the lock-free twin of `State::closing`, for the driver's check
    /// on every message it dispatches.
    closed: AtomicBool,
}

#[derive(Debug, Default)]
struct State {
    /// Frames not yet taken by the driver.
    queue: VecDeque<Bytes>,
    /// Bytes not yet written: queued plus taken-but-unwritten.
    bytes: usize,
    /// Frames not yet written: queued plus taken-but-unwritten.
    frames: usize,
    /// Set once, by the first close request; later requests keep the first reason. (Boxed:
    /// this record is part of every session, and a reason is needed only once it closes.)
    closing: Option<Box<CloseReason>>,
    /// The driver has something to take: set by the push that makes the queue non-empty and
    /// by a close request, cleared by [`Outbox::take`].
    signal: bool,
    /// The driver's waker, while it waits (a push that wakes it takes it).
    waker: Option<Waker>,
}

/// Bytes and whole frames the driver wrote to the socket and has not reported yet: reported
/// with its next wait or take (the same turn of its loop), to spare a lock per write.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Written {
    /// Bytes.
    pub bytes: usize,
    /// Whole frames.
    pub frames: usize,
}

impl State {
    /// Frames the driver wrote no longer count against the limits.
    fn report(&mut self, written: Written) {
        self.bytes = self.bytes.saturating_sub(written.bytes);
        self.frames = self.frames.saturating_sub(written.frames);
    }
}

impl Outbox {
    /// Queues one frame under `limits`. Never blocks and never waits for the socket.
    pub(crate) fn push(&self, frame: Bytes, limits: &OutboxLimits) -> Push {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.closing.is_some() {
            return Push::Closed;
        }
        let fits = |st: &State| {
            st.bytes + frame.len() <= limits.max_bytes && st.frames < limits.max_messages
        };
        let result = if fits(&st) {
            Push::Queued
        } else {
            match limits.policy {
                OverflowPolicy::Disconnect => {
                    // Free the memory now; the driver writes the close notice after whatever
                    // frame is half-written (`discards_pending`).
                    let freed: usize = st.queue.iter().map(Bytes::len).sum();
                    let n = st.queue.len();
                    st.queue.clear();
                    st.bytes -= freed;
                    st.frames -= n;
                    st.closing = Some(Box::new(CloseReason::SlowConsumer {
                        max_bytes: limits.max_bytes,
                    }));
                    self.closed.store(true, Ordering::Release);
                    self.signal(st);
                    return Push::Overflow;
                }
                OverflowPolicy::DropOldest => {
                    let mut count = 0;
                    while !fits(&st) {
                        match st.queue.pop_front() {
                            Some(old) => {
                                st.bytes -= old.len();
                                st.frames -= 1;
                                count += 1;
                            }
                            None => break,
                        }
                    }
                    let frame_dropped = !fits(&st);
                    if frame_dropped {
                        count += 1;
                    }
                    if frame_dropped {
                        return Push::Dropped {
                            count,
                            frame_dropped,
                        };
                    }
                    Push::Dropped {
                        count,
                        frame_dropped: false,
                    }
                }
            }
        };
        self.enqueue(st, frame);
        result
    }

    /// Queues a heartbeat ping unless the session is closing (a ping must never follow a close
    /// notice). Not limited: at most one is outstanding per session.
    pub(crate) fn push_heartbeat(&self, frame: Bytes) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.closing.is_none() {
            self.enqueue(st, frame);
        }
    }

    /// Appends `frame` (accounted) and wakes the driver if the queue was empty.
    fn enqueue(&self, mut st: std::sync::MutexGuard<'_, State>, frame: Bytes) {
        st.bytes += frame.len();
        st.frames += 1;
        let was_empty = st.queue.is_empty();
        st.queue.push_back(frame);
        // Only the push that makes the queue non-empty needs to signal the driver: until it
        // has taken the queue, later pushes are picked up by the same take.
        if was_empty {
            self.signal(st);
        }
    }

    /// Queues a frame of the driver's own (close notice, close echo, ping, pong) even while
    /// closing: the driver alone decides what follows a close request.
    pub(crate) fn push_internal(&self, frame: Bytes) {
        let st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        self.enqueue(st, frame);
    }

    /// Asks the driver to close the session with `reason`. Returns false if it was already
    /// closing (the first reason wins).
    pub(crate) fn close(&self, reason: CloseReason) -> bool {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if st.closing.is_some() {
            return false;
        }
        if reason.discards_pending() {
            let freed: usize = st.queue.iter().map(Bytes::len).sum();
            st.bytes -= freed;
            st.frames -= st.queue.len();
            st.queue.clear();
        }
        st.closing = Some(Box::new(reason));
        self.closed.store(true, Ordering::Release);
        self.signal(st);
        true
    }

    /// The close reason, if a close was requested.
    pub(crate) fn closing(&self) -> Option<CloseReason> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .closing
            .as_deref()
            .cloned()
    }

    /// Moves every queued frame to the back of `into` (the driver's write queue) in one swap and
    /// returns the close request, if any. The frames still count against the limits until
    /// [`Outbox::written`].
    pub(crate) fn take(&self, into: &mut VecDeque<Bytes>) -> Option<CloseReason> {
        self.take_and_report(into, Written::default())
    }

    /// [`Outbox::take`], after reporting what the driver wrote since its last report.
    pub(crate) fn take_and_report(
        &self,
        into: &mut VecDeque<Bytes>,
        written: Written,
    ) -> Option<CloseReason> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.report(written);
        st.signal = false;
        if into.is_empty() {
            std::mem::swap(into, &mut st.queue);
        } else {
            into.extend(st.queue.drain(..));
        }
        st.closing.as_deref().cloned()
    }

    /// Records that `bytes` in `frames` whole frames reached the socket.
    pub(crate) fn written(&self, bytes: usize, frames: usize) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.report(Written { bytes, frames });
    }

    /// Bytes not yet written (queued plus taken).
    #[cfg(test)]
    pub(crate) fn pending_bytes(&self) -> usize {
        self.state.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }

    /// Sets the driver's signal and, if it waits, wakes it (after the lock is released).
    fn signal(&self, mut st: std::sync::MutexGuard<'_, State>) {
        st.signal = true;
        let waker = if self.waiting.load(Ordering::Relaxed) {
            st.waker.take()
        } else {
            None
        };
        drop(st);
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Has a close been requested? (No lock: the driver asks for every message it dispatches.)
    pub(crate) fn is_closing(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    /// Reports what the driver wrote, then: ready when a push or close has happened since the
    /// last take; otherwise the driver's waker is kept and the outbox will wake it. Once it
    /// runs again the driver calls [`Outbox::resume`].
    pub(crate) fn poll_ready(&self, cx: &mut Context<'_>, written: Written) -> Poll<()> {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.report(written);
        if st.signal {
            return Poll::Ready(());
        }
        // The same task's waker is kept, not cloned again, from one wait to the next.
        if !st.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            st.waker = Some(cx.waker().clone());
        }
        // Under the lock: a push either came before (and set the signal seen above) or comes
        // after and sees this.
        self.waiting.store(true, Ordering::Relaxed);
        Poll::Pending
    }

    /// The driver runs again: pushes from here on (its own replies to what it reads) are picked
    /// up by its next take and need not wake it.
    pub(crate) fn resume(&self) {
        self.waiting.store(false, Ordering::Relaxed);
    }

    /// Waits until a push or close has happened since the last take. (A driver that drops this
    /// future before it completes only risks one spurious wake-up later.)
    pub(crate) async fn notified(&self) {
        std::future::poll_fn(|cx| self.poll_ready(cx, Written::default())).await;
        self.resume();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(policy: OverflowPolicy) -> OutboxLimits {
        OutboxLimits {
            max_bytes: 10,
            max_messages: 3,
            policy,
        }
    }

    #[test]
    fn overflow_disconnects_by_default_and_frees_the_queue() {
        let o = Outbox::default();
        let l = limits(OverflowPolicy::Disconnect);
        assert_eq!(o.push(Bytes::from_static(b"12345"), &l), Push::Queued);
        assert_eq!(o.push(Bytes::from_static(b"12345"), &l), Push::Queued);
        assert_eq!(o.push(Bytes::from_static(b"1"), &l), Push::Overflow);
        assert_eq!(o.pending_bytes(), 0);
        assert_eq!(
            o.closing(),
            Some(CloseReason::SlowConsumer { max_bytes: 10 })
        );
        assert_eq!(o.push(Bytes::from_static(b"1"), &l), Push::Closed);
    }

    #[test]
    fn drop_oldest_keeps_the_newest() {
        let o = Outbox::default();
        let l = limits(OverflowPolicy::DropOldest);
        for f in [&b"a"[..], b"b", b"c"] {
            assert_eq!(o.push(Bytes::copy_from_slice(f), &l), Push::Queued);
        }
        assert_eq!(
            o.push(Bytes::from_static(b"d"), &l),
            Push::Dropped {
                count: 1,
                frame_dropped: false
            }
        );
        let mut q = VecDeque::new();
        assert_eq!(o.take(&mut q), None);
        assert_eq!(q, [&b"b"[..], b"c", b"d"]);
    }

    #[test]
    fn taken_frames_count_until_written() {
        let o = Outbox::default();
        let l = limits(OverflowPolicy::Disconnect);
        o.push(Bytes::from_static(b"123456"), &l);
        let mut q = VecDeque::new();
        o.take(&mut q);
        assert_eq!(o.pending_bytes(), 6);
        assert_eq!(o.push(Bytes::from_static(b"12345"), &l), Push::Overflow);
        let o = Outbox::default();
        o.push(Bytes::from_static(b"123456"), &l);
        o.take(&mut q);
        o.written(6, 1);
        assert_eq!(o.push(Bytes::from_static(b"12345"), &l), Push::Queued);
    }
}
