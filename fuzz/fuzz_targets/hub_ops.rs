//! `hub_ops`: sequences of hub operations across up to 6 sessions — subscribe, unsubscribe,
//! publish (as a session, to others, or from the application), the classic broadcast, send to
//! one session, close by id, the driver taking an outbox and finishing a closed session, a
//! client going away — checked against a simple model after every step:
//!
//! - who receives what: every session's outbox holds exactly the frames the model expects, in
//!   order (a raw frame is the payload; a json frame is a `message` event naming the channel
//!   and the publisher), and every delivery count returned matches;
//! - a session that published to others, or broadcast, never receives its own message; a raw
//!   member of several channels gets a broadcast once, a json member once per channel;
//! - subscribe errors (bad name, `max_subscriptions` = 3, closed) and unsubscribe results;
//! - the slow-consumer policy (`max_outbox_messages` = 8): the push that overflows closes the
//!   session, its queue is dropped, nothing more is queued;
//! - `send` errors (no such session, closing, outbox full) and `close` results;
//! - channels exist exactly while they have subscribers, with the right counts, and the
//!   session count matches (sessions leave the registry when their driver finishes them).
//!
//! Input: steps, each an opcode byte `o` (slot = `(o >> 4) % 6`, operation = `o & 15`) and its
//! operands: 0/1 open a raw/json session in the slot; 2/3 subscribe/unsubscribe (channel byte);
//! 4/5 publish as the session to all/others (channel byte, payload); 6 publish from the
//! application (channel byte, payload); 7 broadcast (payload); 8 send to the slot's session id
//! (payload); 9 close it by id; 10 the driver takes the outbox (and finishes the session if it
//! is closing); 11 the client goes away (finish); 12–15 the driver takes every outbox. A
//! channel byte picks one of `a b c lobby`, `bad name`, the empty name, a 165-byte name; a
//! payload is a length byte (0–31 used) and that many bytes.
#![no_main]

use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use base64::Engine as _;
use libfuzzer_sys::fuzz_target;
use sockhub::fuzzing::FuzzSession;
use sockhub::{
    CloseReason, Hub, Limits, MemoryBroker, Message, Protocol, SendError, SubscribeError,
};

const SLOTS: usize = 6;
const MAX_SUBSCRIPTIONS: usize = 3;
const MAX_OUTBOX_MESSAGES: usize = 8;

/// What a session should find in its outbox.
#[derive(Debug, PartialEq)]
struct Expected {
    /// The channel a json event names (`None` for a direct send).
    channel: Option<String>,
    /// The publisher a json event names.
    from: Option<u64>,
    /// The message.
    payload: Vec<u8>,
}

#[derive(Debug, PartialEq)]
enum Closing {
    Slow,
    Kicked,
    Normal,
}

struct Model {
    fs: FuzzSession,
    json: bool,
    /// Its channels in the hub's order (push on subscribe, swap-remove on unsubscribe).
    channels: Vec<String>,
    /// Frames queued and not yet taken.
    queue: VecDeque<Expected>,
    closing: Option<Closing>,
}

impl Model {
    /// A push under the outbox limits: queued (true), or refused (closing, or overflow).
    fn push(&mut self, e: Expected) -> Result<(), SendError> {
        if self.closing.is_some() {
            return Err(SendError::Closing);
        }
        if self.queue.len() >= MAX_OUTBOX_MESSAGES {
            self.queue.clear();
            self.closing = Some(Closing::Slow);
            return Err(SendError::OutboxFull);
        }
        self.queue.push_back(e);
        Ok(())
    }

    fn close(&mut self, c: Closing) {
        if self.closing.is_none() {
            if c == Closing::Slow {
                self.queue.clear();
            }
            self.closing = Some(c);
        }
    }
}

fn channel_name(b: u8) -> String {
    match b % 7 {
        0 => "a".into(),
        1 => "b".into(),
        2 => "c".into(),
        3 => "lobby".into(),
        4 => "bad name".into(),
        5 => String::new(),
        _ => "x".repeat(165),
    }
}

fn valid_name(ch: &str) -> bool {
    !ch.is_empty() && ch.len() <= 164 && !ch.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Checks one taken frame against what was expected.
fn check_frame(json: bool, frame: &[u8], want: &Expected) {
    if !json {
        assert_eq!(frame, &want.payload[..], "raw frame");
        return;
    }
    let ev: serde_json::Value = serde_json::from_slice(frame).expect("json frame");
    assert_eq!(ev["type"], "message");
    assert_eq!(ev["channel"].as_str(), want.channel.as_deref(), "{ev}");
    assert_eq!(
        ev["from"].as_str(),
        want.from.map(|f| f.to_string()).as_deref(),
        "{ev}"
    );
    match std::str::from_utf8(&want.payload) {
        Ok(text) => assert_eq!(ev["data"].as_str(), Some(text), "{ev}"),
        Err(_) => {
            let b64 = ev["data_base64"].as_str().expect("data_base64");
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(b64)
                .expect("base64");
            assert_eq!(bytes, want.payload);
        }
    }
}

/// Every message published to `channel` by `from`, except to `except`: what the hub should
/// deliver. Returns the deliveries.
fn fan_out(
    slots: &mut [Option<Model>],
    channel: &str,
    payload: &[u8],
    from: Option<u64>,
    except: Option<usize>,
    raw_seen: &mut Option<Vec<usize>>,
) -> usize {
    let mut n = 0;
    for (i, slot) in slots.iter_mut().enumerate() {
        let Some(m) = slot else { continue };
        if Some(i) == except || !m.channels.iter().any(|c| c == channel) {
            continue;
        }
        if !m.json {
            if let Some(seen) = raw_seen {
                if seen.contains(&i) {
                    continue;
                }
                seen.push(i);
            }
        }
        let e = Expected {
            channel: Some(channel.to_string()),
            from,
            payload: payload.to_vec(),
        };
        if m.push(e).is_ok() {
            n += 1;
        }
    }
    n
}

fn take(hub: &Hub, slots: &mut [Option<Model>], i: usize) {
    let Some(m) = &mut slots[i] else { return };
    let (frames, closing) = m.fs.take();
    let expected: Vec<Expected> = m.queue.drain(..).collect();
    assert_eq!(
        frames.len(),
        expected.len(),
        "slot {i}: {frames:?} vs {expected:?}"
    );
    for (f, e) in frames.iter().zip(&expected) {
        check_frame(m.json, f, e);
    }
    let kind = closing.as_ref().map(|c| match c {
        CloseReason::SlowConsumer { .. } => Closing::Slow,
        CloseReason::Kicked(_) => Closing::Kicked,
        CloseReason::Normal => Closing::Normal,
        other => panic!("unexpected close reason {other:?}"),
    });
    assert_eq!(kind, m.closing, "slot {i}: close request");
    if closing.is_some() {
        // The driver has written what was left and said goodbye: the session ends.
        if let Some(m) = slots[i].take() {
            m.fs.finish(hub, closing.unwrap_or(CloseReason::Normal));
        }
    }
}

fn check_registry(hub: &Hub, slots: &[Option<Model>]) {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in slots.iter().flatten() {
        for c in &m.channels {
            *counts.entry(c.clone()).or_default() += 1;
        }
        let real: Vec<String> = m.fs.channels().iter().map(|c| c.to_string()).collect();
        assert_eq!(real, m.channels, "a session's channels");
    }
    let real: Vec<(String, usize)> = hub
        .channels()
        .into_iter()
        .map(|c| (c.name, c.subscribers))
        .collect();
    let want: Vec<(String, usize)> = counts.into_iter().collect();
    assert_eq!(real, want, "channels and their subscriber counts");
    for (name, n) in &want {
        assert_eq!(hub.subscribers(name), *n);
    }
    assert_eq!(hub.session_count(), slots.iter().flatten().count());
}

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_subscriptions: MAX_SUBSCRIPTIONS,
        max_outbox_messages: MAX_OUTBOX_MESSAGES,
        max_outbox_bytes: 1 << 20,
        ..Limits::default()
    };
    let hub = Hub::new(&limits, Arc::new(MemoryBroker));
    let mut slots: Vec<Option<Model>> = (0..SLOTS).map(|_| None).collect();
    // Ids of sessions that have finished, for sends and closes to the departed.
    let mut gone: Vec<u64> = Vec::new();
    let mut rest = data;
    let byte = |rest: &mut &[u8]| -> Option<u8> {
        let (&b, r) = rest.split_first()?;
        *rest = r;
        Some(b)
    };
    while let Some(op) = byte(&mut rest) {
        let i = usize::from(op >> 4) % SLOTS;
        let peer = SocketAddr::from(([127, 0, 0, 1], 5000 + i as u16));
        match op & 15 {
            k @ (0 | 1) => {
                if slots[i].is_none() {
                    let json = k == 1;
                    let protocol = if json { Protocol::Json } else { Protocol::Raw };
                    slots[i] = Some(Model {
                        fs: FuzzSession::register(&hub, protocol, peer),
                        json,
                        channels: Vec::new(),
                        queue: VecDeque::new(),
                        closing: None,
                    });
                }
            }
            k @ (2 | 3) => {
                let Some(b) = byte(&mut rest) else { break };
                let ch = channel_name(b);
                let Some(m) = &mut slots[i] else { continue };
                if k == 2 {
                    let want = if !valid_name(&ch) {
                        Err("bad")
                    } else if m.channels.contains(&ch) {
                        Ok(false)
                    } else if m.channels.len() >= MAX_SUBSCRIPTIONS {
                        Err("too many")
                    } else if m.closing.is_some() {
                        Err("closed")
                    } else {
                        Ok(true)
                    };
                    let got = m.fs.subscribe(&hub, &ch);
                    match (&got, want) {
                        (Ok(()), Ok(added)) => {
                            if added {
                                m.channels.push(ch);
                            }
                        }
                        (Err(SubscribeError::BadName(_)), Err("bad"))
                        | (Err(SubscribeError::TooMany(MAX_SUBSCRIPTIONS)), Err("too many"))
                        | (Err(SubscribeError::Closed), Err("closed")) => {}
                        (got, want) => panic!("subscribe {ch:?}: got {got:?}, want {want:?}"),
                    }
                } else {
                    let pos = m.channels.iter().position(|c| *c == ch);
                    assert_eq!(
                        m.fs.unsubscribe(&hub, &ch),
                        pos.is_some(),
                        "unsubscribe {ch:?}"
                    );
                    if let Some(p) = pos {
                        m.channels.swap_remove(p);
                    }
                }
            }
            k @ (4..=7) => {
                let ch = if k == 7 {
                    String::new()
                } else {
                    let Some(b) = byte(&mut rest) else { break };
                    channel_name(b)
                };
                let Some(len) = byte(&mut rest) else { break };
                let len = usize::from(len & 31).min(rest.len());
                let (payload, r) = rest.split_at(len);
                rest = r;
                let message = Message::from_bytes(bytes::Bytes::copy_from_slice(payload));
                match k {
                    4 | 5 => {
                        let Some(m) = &slots[i] else { continue };
                        let id = m.fs.id();
                        let got = m.fs.publish(&hub, &ch, message, k == 5);
                        let except = (k == 5).then_some(i);
                        let want = fan_out(&mut slots, &ch, payload, Some(id.0), except, &mut None);
                        assert_eq!(got, want, "publish to {ch:?}");
                    }
                    6 => {
                        let got = hub.publish(&ch, message);
                        let want = fan_out(&mut slots, &ch, payload, None, None, &mut None);
                        assert_eq!(got, want, "application publish to {ch:?}");
                    }
                    _ => {
                        let Some(m) = &slots[i] else { continue };
                        let (id, channels) = (m.fs.id(), m.channels.clone());
                        let got = m.fs.broadcast(&hub, message);
                        let mut seen = (channels.len() > 1).then(Vec::new);
                        let want: usize = channels
                            .iter()
                            .map(|c| {
                                fan_out(&mut slots, c, payload, Some(id.0), Some(i), &mut seen)
                            })
                            .sum();
                        assert_eq!(got, want, "broadcast from slot {i} in {channels:?}");
                    }
                }
            }
            8 => {
                let Some(len) = byte(&mut rest) else { break };
                let len = usize::from(len & 31).min(rest.len());
                let (payload, r) = rest.split_at(len);
                rest = r;
                let message = Message::from_bytes(bytes::Bytes::copy_from_slice(payload));
                match &mut slots[i] {
                    Some(m) => {
                        let got = hub.send(m.fs.id(), message);
                        let want = m.push(Expected {
                            channel: None,
                            from: None,
                            payload: payload.to_vec(),
                        });
                        assert_eq!(got, want, "send to slot {i}");
                    }
                    None => {
                        if let Some(&id) = gone.last() {
                            assert_eq!(
                                hub.send(sockhub::SessionId(id), message),
                                Err(SendError::NoSuchSession)
                            );
                        }
                    }
                }
            }
            9 => match &mut slots[i] {
                Some(m) => {
                    assert!(hub.close(m.fs.id(), "fuzz"));
                    m.close(Closing::Kicked);
                }
                None => {
                    if let Some(&id) = gone.last() {
                        assert!(!hub.close(sockhub::SessionId(id), "fuzz"));
                    }
                }
            },
            10 => {
                if let Some(m) = &slots[i] {
                    let id = m.fs.id().0;
                    take(&hub, &mut slots, i);
                    if slots[i].is_none() {
                        gone.push(id);
                    }
                }
            }
            11 => {
                if let Some(mut m) = slots[i].take() {
                    m.close(Closing::Normal);
                    gone.push(m.fs.id().0);
                    m.fs.finish(&hub, CloseReason::Normal);
                }
            }
            _ => {
                for j in 0..SLOTS {
                    if let Some(m) = &slots[j] {
                        let id = m.fs.id().0;
                        take(&hub, &mut slots, j);
                        if slots[j].is_none() {
                            gone.push(id);
                        }
                    }
                }
            }
        }
        check_registry(&hub, &slots);
    }
});
