//! Wire protocols over every transport: `raw` (the message is the payload) and `json`
//! (commands and events). Pure functions from messages to encoded bytes and back; what a
//! decoded client message *does* is decided in `transport::dispatch`.
//!
//! ## json protocol
//! Client → server commands (one JSON object per WebSocket message / TCP line / frame / datagram):
//! ```text
//! {"type":"subscribe","channel":"news"}
//! {"type":"unsubscribe","channel":"news"}
//! {"type":"publish","channel":"news","data":"hello"}          (or "data_base64":"AAEC")
//! {"type":"ping","id":7}                                      (id optional, echoed)
//! ```
//! Server → client events:
//! ```text
//! {"type":"connected","session":"12","channels":["lobby"]}
//! {"type":"subscribed","channel":"news"}    {"type":"unsubscribed","channel":"news"}
//! {"type":"message","channel":"news","from":"12","data":"hello"}   (binary: "data_base64")
//! {"type":"pong","id":7}
//! {"type":"error","code":"bad_request","message":"…"}
//! {"type":"close","code":1001,"reason":"server shutting down"}     (TCP/UDP, before closing)
//! ```

use std::sync::OnceLock;

use base64::Engine as _;
use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};

use crate::close::CloseReason;
use crate::config::Protocol;
use crate::message::{ChannelName, Message, MessageKind, SessionId};
use crate::ws::codec::{self as ws, OpCode};

/// How a transport delimits messages on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Framing {
    /// WebSocket frames (server → client: unmasked).
    WebSocket,
    /// WebSocket with permessage-deflate: messages of [`DEFLATE_MIN_SIZE`] bytes or more are
    /// compressed (fresh state per message, 15-bit window).
    WebSocketDeflate,
    /// The same with a 9-bit window, for clients that asked for a smaller
    /// `server_max_window_bits` (any value 9..=14 accepts it).
    WebSocketDeflateSmall,
    /// `\n`-terminated lines.
    Lines,
    /// Big-endian `u32` length prefix.
    LengthPrefixed,
    /// One UDP datagram per message.
    Datagram,
}

/// A session's wire format: framing × protocol. A publication is encoded at most once per
/// wire format, and the bytes are shared by every subscriber using it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WireFormat {
    /// The transport's framing.
    pub framing: Framing,
    /// raw or json.
    pub protocol: Protocol,
}

impl WireFormat {
    /// Number of distinct wire formats.
    pub(crate) const COUNT: usize = 18;

    /// Dense index in `0..COUNT`, for the per-publication encoding cache.
    pub(crate) fn index(self) -> usize {
        let f = match self.framing {
            Framing::WebSocket => 0,
            Framing::Lines => 1,
            Framing::LengthPrefixed => 2,
            Framing::Datagram => 3,
            Framing::WebSocketDeflate => 4,
            Framing::WebSocketDeflateSmall => 5,
        };
        let p = match self.protocol {
            Protocol::Raw => 0,
            Protocol::Json => 1,
            Protocol::Pusher => 2,
        };
        f * 3 + p
    }
}

/// One publish to one channel, with its encodings cached per wire format so a broadcast to N
/// subscribers encodes once per format and copies no payload per subscriber.
pub(crate) struct Publication {
    /// The channel published to.
    pub channel: ChannelName,
    /// What was published.
    pub message: Message,
    /// The publishing session, if a session published it (shown as `from` in json events).
    pub from: Option<SessionId>,
    /// Lazily filled encodings, one slot per [`WireFormat::index`].
    encoded: [OnceLock<Bytes>; WireFormat::COUNT],
}

impl Publication {
    pub(crate) fn new(channel: ChannelName, message: Message, from: Option<SessionId>) -> Self {
        Publication {
            channel,
            message,
            from,
            encoded: Default::default(),
        }
    }

    /// The bytes for `format`, encoding them on first use.
    pub(crate) fn bytes_for(&self, format: WireFormat) -> Bytes {
        self.encoded[format.index()]
            .get_or_init(|| encode_message(format, Some(&self.channel), &self.message, self.from))
            .clone()
    }
}

/// Messages shorter than this are sent uncompressed even with permessage-deflate: the
/// compressed form would not be smaller.
pub const DEFLATE_MIN_SIZE: usize = 64;

/// Puts one payload into `framing`'s envelope. One allocation, payload copied once.
pub(crate) fn frame(framing: Framing, kind: MessageKind, payload: &[u8]) -> Bytes {
    let op = match kind {
        MessageKind::Text => OpCode::Text,
        MessageKind::Binary => OpCode::Binary,
    };
    match framing {
        Framing::WebSocket => ws::server_frame(op, payload),
        Framing::WebSocketDeflate | Framing::WebSocketDeflateSmall => {
            let bits = if framing == Framing::WebSocketDeflate {
                15
            } else {
                9
            };
            match (payload.len() >= DEFLATE_MIN_SIZE)
                .then(|| crate::ws::deflate::compress(payload, bits))
                .flatten()
            {
                Some(c) => ws::server_frame_compressed(op, &c),
                None => ws::server_frame(op, payload),
            }
        }
        Framing::Lines => {
            let mut b = BytesMut::with_capacity(payload.len() + 1);
            b.put_slice(payload);
            b.put_u8(b'\n');
            b.freeze()
        }
        Framing::LengthPrefixed => {
            let mut b = BytesMut::with_capacity(payload.len() + 4);
            // Payloads are bounded by max_message_size, far below 4 GiB.
            b.put_u32(u32::try_from(payload.len()).unwrap_or(u32::MAX));
            b.put_slice(payload);
            b.freeze()
        }
        Framing::Datagram => Bytes::copy_from_slice(payload),
    }
}

#[derive(Serialize)]
struct MessageEvent<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    from: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_base64: Option<String>,
}

/// Encodes a message for one wire format. `channel` is `None` for a direct send to a session.
pub(crate) fn encode_message(
    format: WireFormat,
    channel: Option<&str>,
    message: &Message,
    from: Option<SessionId>,
) -> Bytes {
    match format.protocol {
        Protocol::Raw => match format.framing {
            // A datagram needs no envelope: share the payload itself.
            Framing::Datagram => message.payload().clone(),
            f => frame(f, message.kind(), message.payload()),
        },
        Protocol::Json => {
            let ev = MessageEvent {
                kind: "message",
                channel,
                from: from.map(|f| f.to_string()),
                event: message.event(),
                data: message.as_str(),
                data_base64: match message.as_str() {
                    Some(_) => None,
                    None => {
                        Some(base64::engine::general_purpose::STANDARD.encode(message.payload()))
                    }
                },
            };
            json_frame(format.framing, &ev)
        }
        Protocol::Pusher => encode_pusher(format.framing, channel, message),
    }
}

/// The bytes of a hub message for Pusher clients: `{"event", "channel", "data"}` with the
/// payload as the `data` string (see [`crate::pusher`] for the mapping).
pub(crate) fn encode_pusher(framing: Framing, channel: Option<&str>, message: &Message) -> Bytes {
    let (event, data) = match (message.event(), message.as_str()) {
        (Some(e), Some(text)) => (e.to_string(), text.to_string()),
        (None, Some(text)) => ("message".to_string(), text.to_string()),
        (e, None) => (
            e.unwrap_or("message-binary").to_string(),
            base64::engine::general_purpose::STANDARD.encode(message.payload()),
        ),
    };
    let mut v = serde_json::json!({ "event": event, "data": data });
    if let Some(c) = channel {
        v["channel"] = serde_json::Value::from(c);
    }
    if let Some(u) = message.user() {
        v["user_id"] = serde_json::Value::from(u);
    }
    frame(framing, MessageKind::Text, v.to_string().as_bytes())
}

fn json_frame<T: Serialize>(framing: Framing, value: &T) -> Bytes {
    // Serializing plain structs of strings and numbers cannot fail.
    let json = serde_json::to_vec(value).unwrap_or_default();
    frame(framing, MessageKind::Text, &json)
}

/// A server → client json event other than `message`.
#[derive(Serialize, Debug)]
#[serde(tag = "type", rename_all = "snake_case")]
pub(crate) enum Event<'a> {
    /// Sent once after a json session connects.
    Connected {
        session: String,
        channels: Vec<&'a str>,
    },
    Subscribed {
        channel: &'a str,
    },
    Unsubscribed {
        channel: &'a str,
    },
    Pong {
        #[serde(skip_serializing_if = "Option::is_none")]
        id: Option<serde_json::Value>,
    },
    Error {
        code: &'a str,
        message: String,
    },
    Close {
        code: u16,
        reason: String,
    },
}

/// Encodes a json event in `framing`'s envelope.
pub(crate) fn encode_event(framing: Framing, event: &Event<'_>) -> Bytes {
    json_frame(framing, event)
}

/// What a non-WebSocket client is told before the server closes it, if anything: an
/// `ERROR <code> <reason>` line (raw) or a `close` event (json).
pub(crate) fn encode_close_notice(format: WireFormat, reason: &CloseReason) -> Bytes {
    match format.protocol {
        Protocol::Raw | Protocol::Pusher => {
            let line = reason.error_line();
            frame(format.framing, MessageKind::Text, line.as_bytes())
        }
        Protocol::Json => encode_event(
            format.framing,
            &Event::Close {
                code: reason.ws_code(),
                reason: reason.to_string(),
            },
        ),
    }
}

/// A json command from a client.
#[derive(Deserialize, Debug, PartialEq)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum Command {
    Subscribe {
        channel: String,
    },
    Unsubscribe {
        channel: String,
    },
    Publish {
        channel: String,
        #[serde(default)]
        data: Option<String>,
        #[serde(default)]
        data_base64: Option<String>,
    },
    Ping {
        #[serde(default)]
        id: Option<serde_json::Value>,
    },
}

/// Parses one json command.
///
/// # Errors
/// A one-line description for the `bad_request` error event.
pub(crate) fn parse_command(bytes: &[u8]) -> Result<Command, String> {
    // Objects only: serde also reads a tagged enum from an array (`["subscribe","news"]`), a
    // form the protocol does not have (found by the `json_command` fuzz target).
    if bytes.trim_ascii_start().first() != Some(&b'{') {
        return Err("invalid command: expected a JSON object".into());
    }
    serde_json::from_slice(bytes).map_err(|e| one_line(&format!("invalid command: {e}")))
}

/// serde quotes the client's own text in its messages (an unknown `type`, say), control
/// characters included: escape them so a reason stays one line (found by the `json_command`
/// fuzz target: `{"type":"x\n"}` gave a two-line reason).
pub(crate) fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fmt(framing: Framing, protocol: Protocol) -> WireFormat {
        WireFormat { framing, protocol }
    }

    #[test]
    fn raw_encodings() {
        let m = Message::text("hi");
        assert_eq!(
            encode_message(fmt(Framing::Lines, Protocol::Raw), None, &m, None),
            &b"hi\n"[..]
        );
        assert_eq!(
            encode_message(fmt(Framing::LengthPrefixed, Protocol::Raw), None, &m, None),
            &b"\0\0\0\x02hi"[..]
        );
        assert_eq!(
            encode_message(fmt(Framing::WebSocket, Protocol::Raw), None, &m, None),
            &b"\x81\x02hi"[..]
        );
        assert_eq!(
            encode_message(fmt(Framing::Datagram, Protocol::Raw), None, &m, None),
            &b"hi"[..]
        );
    }

    #[test]
    fn json_message_event() {
        let b = encode_message(
            fmt(Framing::Lines, Protocol::Json),
            Some("news"),
            &Message::binary(vec![0, 1, 2]),
            Some(SessionId(7)),
        );
        assert_eq!(
            b,
            &br#"{"type":"message","channel":"news","from":"7","data_base64":"AAEC"}
"#[..]
        );
    }

    #[test]
    fn commands_parse_strictly() {
        assert_eq!(
            parse_command(br#"{"type":"subscribe","channel":"a"}"#),
            Ok(Command::Subscribe {
                channel: "a".into()
            })
        );
        assert!(parse_command(br#"{"type":"subscribe","channel":"a","x":1}"#).is_err());
        assert!(parse_command(br#"{"type":"fly"}"#).is_err());
        assert!(parse_command(b"not json").is_err());
    }

    #[test]
    fn bad_request_reason_has_no_newline() {
        // Found by the json_command fuzz target: serde quotes the unknown variant verbatim.
        let e = parse_command(b"{\"type\":\"publis-e9\\n\"}").unwrap_err();
        assert!(!e.contains('\n'), "{e:?}");
        assert!(e.contains("publis-e9\\n"), "escaped, still readable: {e}");
        let e = parse_command(b"{\"type\":\"a\\u001b[31m\\r\"}").unwrap_err();
        assert!(!e.chars().any(char::is_control), "{e:?}");
    }

    #[test]
    fn ping_id_survives_the_pong() {
        // Found by the json_command fuzz target: serde_json's default float parser may be one
        // ULP off, so a large number id came back in the pong as a different number.
        let cmd = parse_command(br#"{"type":"ping","id":123456789412345678901234567890}"#);
        let Ok(Command::Ping { id: Some(id) }) = cmd else {
            panic!("{cmd:?}");
        };
        assert_eq!(id.as_f64(), Some(123456789412345678901234567890f64));
        let pong = encode_event(
            Framing::Datagram,
            &Event::Pong {
                id: Some(id.clone()),
            },
        );
        let back: serde_json::Value = serde_json::from_slice(&pong).unwrap();
        assert_eq!(back["id"], id);
    }

    #[test]
    fn array_is_not_a_command() {
        // Found by the json_command fuzz target: serde's tagged enums also accept arrays.
        assert_eq!(
            parse_command(br#"["subscribe","news"]"#),
            Err("invalid command: expected a JSON object".into())
        );
        assert!(
            parse_command(b" \n{\"type\":\"ping\"}").is_ok(),
            "leading whitespace is fine"
        );
    }

    #[test]
    fn every_format_has_its_own_slot() {
        let mut seen = std::collections::HashSet::new();
        for f in [
            Framing::WebSocket,
            Framing::Lines,
            Framing::LengthPrefixed,
            Framing::Datagram,
            Framing::WebSocketDeflate,
            Framing::WebSocketDeflateSmall,
        ] {
            for p in [Protocol::Raw, Protocol::Json, Protocol::Pusher] {
                let i = fmt(f, p).index();
                assert!(i < WireFormat::COUNT);
                assert!(seen.insert(i));
            }
        }
    }
}
