//! `ws_roundtrip`: messages the fuzzer describes (kind, payload, fragmentation plan, control
//! frames between fragments, a closing handshake) are encoded with
//! `sockhub::ws::codec::encode_frame` — masked, as a client sends them — and decoded by a
//! server-role `Decoder` read in fuzzer-chosen chunks. The decoder must give back exactly the
//! messages that were sent, or exactly the error the plan calls for: `MessageTooLarge` at the
//! first fragment that takes a message over the limit (payload so far plus
//! `FRAGMENT_OVERHEAD` per earlier fragment), `InvalidCloseCode` for a bad close code.
//! With `server_to_client` the frames go unmasked to a client-role decoder instead.
//!
//! Input layout (read with `arbitrary::Unstructured`; missing bytes read as zero / empty; the
//! seeds in `corpus/ws_roundtrip` are written by `fuzz/seeds.py` from this layout):
//!
//! ```text
//! flags u8           bit 0: server → client (unmasked, client-role decoder)
//! max u32 LE         max message size, modulo 2^17 + 1
//! n u8, n × [u8;4]   masking keys used in turn (n mod 5; all-zero key when none)
//! n u8, n × u16 LE   read sizes (each + 1), cycled (n mod 16; one read when none)
//! parts, until the input ends or an ending part:
//!   0x00 | 0x03  message: kind u8 (bit 0 text, bit 1 repeat the payload past 64 KiB),
//!                len u16 LE, payload, n u8 + n fragment sizes u8 (n mod 16; the rest of the
//!                payload is the final fragment), n u8 + n controls (n mod 16; control i goes
//!                after fragment i)
//!   0x01         control: kind u8 (even ping, odd pong), len u8 (max 125), payload
//!   0x02         ending: kind u8 mod 3 (0 none, 1 empty close, 2 close with code u16 BE,
//!                reason len u8, reason bytes as lossy UTF-8), then trailing bytes that must be
//!                ignored after the close
//! ```
#![no_main]

use arbitrary::{Arbitrary, Unstructured};
use bytes::{Bytes, BytesMut};
use libfuzzer_sys::fuzz_target;
use sockhub::ws::codec::{
    encode_frame, CloseFrame, Decoder, Event, OpCode, ProtocolError, Role, FRAGMENT_OVERHEAD,
};
use sockhub_fuzz::{feed, reads, StreamDecoder};

/// A control frame sent between fragments or messages.
#[derive(Debug)]
enum Control {
    Ping(Vec<u8>),
    Pong(Vec<u8>),
}

/// One step of the conversation.
#[derive(Debug)]
enum Part {
    /// A data message.
    Message {
        /// Text (the payload is made UTF-8 with `from_utf8_lossy`) or binary.
        text: bool,
        payload: Vec<u8>,
        /// Repeat the payload to more than 64 KiB (8-byte length field); once per input.
        big: bool,
        /// Fragment sizes (0 allowed); what is left goes in the final fragment.
        fragments: Vec<u8>,
        /// Control frames interleaved: number i goes after fragment i (if not the last).
        controls: Vec<Control>,
    },
    /// A control frame on its own.
    Control(Control),
}

/// How the conversation ends.
#[derive(Debug)]
enum Ending {
    /// The stream just stops.
    None,
    /// A close frame with an empty payload.
    EmptyClose,
    /// A close frame with a code (possibly invalid) and a reason (cut to 123 bytes).
    Close(u16, String),
}

#[derive(Debug)]
struct Plan {
    max: usize,
    server_to_client: bool,
    masks: Vec<[u8; 4]>,
    /// Read sizes (each at least 1), cycled; the stream in one read when empty.
    chunks: Vec<usize>,
    parts: Vec<Part>,
    ending: Ending,
    /// Bytes after the close frame: must be ignored.
    trailing: Vec<u8>,
}

fn byte(u: &mut Unstructured) -> u8 {
    u8::arbitrary(u).unwrap_or(0)
}

fn take<'a>(u: &mut Unstructured<'a>, n: usize) -> &'a [u8] {
    u.bytes(n.min(u.len())).unwrap_or(&[])
}

fn u16_le(u: &mut Unstructured) -> u16 {
    let b = take(u, 2);
    u16::from_le_bytes([
        b.first().copied().unwrap_or(0),
        b.get(1).copied().unwrap_or(0),
    ])
}

fn control(u: &mut Unstructured) -> Control {
    let kind = byte(u);
    let len = usize::from(byte(u)).min(125);
    let payload = take(u, len).to_vec();
    if kind & 1 == 0 {
        Control::Ping(payload)
    } else {
        Control::Pong(payload)
    }
}

impl Plan {
    fn parse(data: &[u8]) -> Plan {
        let mut u = Unstructured::new(data);
        let flags = byte(&mut u);
        let max = take(&mut u, 4);
        let mut max_le = [0u8; 4];
        max_le[..max.len()].copy_from_slice(max);
        let masks = (0..byte(&mut u) % 5)
            .map(|_| {
                let mut key = [0u8; 4];
                let b = take(&mut u, 4);
                key[..b.len()].copy_from_slice(b);
                key
            })
            .collect();
        let chunks = (0..byte(&mut u) % 16)
            .map(|_| usize::from(u16_le(&mut u)) + 1)
            .collect();
        let mut plan = Plan {
            max: (u32::from_le_bytes(max_le) % ((1 << 17) + 1)) as usize,
            server_to_client: flags & 1 != 0,
            masks,
            chunks,
            parts: Vec::new(),
            ending: Ending::None,
            trailing: Vec::new(),
        };
        while !u.is_empty() {
            match byte(&mut u) % 4 {
                1 => plan.parts.push(Part::Control(control(&mut u))),
                2 => {
                    plan.ending = match byte(&mut u) % 3 {
                        0 => Ending::None,
                        1 => Ending::EmptyClose,
                        _ => {
                            let code = take(&mut u, 2);
                            let code = u16::from_be_bytes([
                                code.first().copied().unwrap_or(0),
                                code.get(1).copied().unwrap_or(0),
                            ]);
                            let len = usize::from(byte(&mut u));
                            let reason = String::from_utf8_lossy(take(&mut u, len)).into_owned();
                            Ending::Close(code, reason)
                        }
                    };
                    plan.trailing = u.take_rest().to_vec();
                    break;
                }
                _ => {
                    let kind = byte(&mut u);
                    let len = usize::from(u16_le(&mut u));
                    let payload = take(&mut u, len).to_vec();
                    let fragments = (0..byte(&mut u) % 16).map(|_| byte(&mut u)).collect();
                    let controls = (0..byte(&mut u) % 16).map(|_| control(&mut u)).collect();
                    plan.parts.push(Part::Message {
                        text: kind & 1 != 0,
                        payload,
                        big: kind & 2 != 0,
                        fragments,
                        controls,
                    });
                }
            }
        }
        plan
    }
}

/// Builds the wire bytes and the outcome the decoder must produce.
struct Wire {
    bytes: BytesMut,
    masks: Vec<[u8; 4]>,
    frames: usize,
    masked: bool,
    events: Vec<Event>,
    error: Option<ProtocolError>,
}

impl Wire {
    fn frame(&mut self, opcode: OpCode, fin: bool, payload: &[u8]) {
        let mask = self.masked.then(|| {
            self.masks
                .get(self.frames % self.masks.len().max(1))
                .copied()
                .unwrap_or([0; 4])
        });
        self.frames += 1;
        let start = self.bytes.len();
        encode_frame(opcode, payload, mask, &mut self.bytes);
        if !fin {
            self.bytes[start] &= 0x7F;
        }
    }

    fn control(&mut self, control: &Control) {
        let (opcode, payload) = match control {
            Control::Ping(p) => (OpCode::Ping, p),
            Control::Pong(p) => (OpCode::Pong, p),
        };
        let payload = &payload[..payload.len().min(125)];
        self.frame(opcode, true, payload);
        let payload = Bytes::copy_from_slice(payload);
        self.events.push(match opcode {
            OpCode::Ping => Event::Ping(payload),
            _ => Event::Pong(payload),
        });
    }
}

fn cut_at_char_boundary(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

struct Plain(Decoder);

impl StreamDecoder for Plain {
    type Item = Event;
    type Error = ProtocolError;
    fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), ProtocolError> {
        self.0.decode(input)
    }
}

fuzz_target!(|data: &[u8]| {
    let plan = Plan::parse(data);
    let max = plan.max;
    let mut wire = Wire {
        bytes: BytesMut::new(),
        masks: plan.masks,
        frames: 0,
        masked: !plan.server_to_client,
        events: Vec::new(),
        error: None,
    };
    let mut big_used = false;
    'parts: for part in &plan.parts {
        match part {
            Part::Control(c) => wire.control(c),
            Part::Message {
                text,
                payload,
                big,
                fragments,
                controls,
            } => {
                let mut payload = if *text {
                    String::from_utf8_lossy(payload).into_owned().into_bytes()
                } else {
                    payload.clone()
                };
                if *big && !big_used && !payload.is_empty() {
                    big_used = true;
                    let unit = payload.clone();
                    while payload.len() <= 0x1_0000 {
                        payload.extend_from_slice(&unit);
                    }
                }
                // The fragmentation plan: sizes from `fragments`, the rest last.
                let mut pieces = Vec::new();
                let mut rest = &payload[..];
                for &size in fragments {
                    let n = usize::from(size).min(rest.len());
                    pieces.push(&rest[..n]);
                    rest = &rest[n..];
                }
                pieces.push(rest);
                let mut total = 0usize;
                for (i, piece) in pieces.iter().enumerate() {
                    let first = i == 0;
                    let last = i + 1 == pieces.len();
                    let opcode = match (first, *text) {
                        (false, _) => OpCode::Continuation,
                        (true, true) => OpCode::Text,
                        (true, false) => OpCode::Binary,
                    };
                    wire.frame(opcode, last, piece);
                    // The limit counts the payload so far plus a charge for every earlier
                    // fragment, checked on each fragment's header.
                    let size = (total + piece.len()) as u64 + FRAGMENT_OVERHEAD * i as u64;
                    if size > max as u64 {
                        wire.error = Some(ProtocolError::MessageTooLarge { size, max });
                        break 'parts;
                    }
                    total += piece.len();
                    if !last {
                        if let Some(c) = controls.get(i) {
                            wire.control(c);
                        }
                    }
                }
                let payload = Bytes::from(payload);
                wire.events.push(if *text {
                    Event::Text(payload)
                } else {
                    Event::Binary(payload)
                });
            }
        }
    }
    if wire.error.is_none() {
        match &plan.ending {
            Ending::None => {}
            Ending::EmptyClose => {
                wire.frame(OpCode::Close, true, &[]);
                wire.events.push(Event::Close(None));
            }
            Ending::Close(code, reason) => {
                let reason = cut_at_char_boundary(reason, 123);
                let mut payload = code.to_be_bytes().to_vec();
                payload.extend_from_slice(reason.as_bytes());
                wire.frame(OpCode::Close, true, &payload);
                if sockhub::ws::codec::is_valid_close_code(*code) {
                    wire.events.push(Event::Close(Some(CloseFrame {
                        code: *code,
                        reason: reason.to_owned(),
                    })));
                } else {
                    wire.error = Some(ProtocolError::InvalidCloseCode(*code));
                }
            }
        }
        if !matches!(plan.ending, Ending::None) {
            // Whatever follows a close frame is ignored.
            wire.bytes.extend_from_slice(&plan.trailing);
        }
    }

    let role = if plan.server_to_client {
        Role::Client
    } else {
        Role::Server
    };
    let sizes = plan.chunks;
    let stream = &wire.bytes[..];
    let mut decoder = Plain(Decoder::new(role, max));
    let outcome = if sizes.is_empty() {
        feed(&mut decoder, std::iter::once(stream))
    } else {
        feed(&mut decoder, reads(stream, &sizes))
    };
    assert_eq!(
        outcome.items, wire.events,
        "decoded events differ from those sent"
    );
    assert_eq!(
        outcome.error, wire.error,
        "decoder error differs from the plan"
    );
});
