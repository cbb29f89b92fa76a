//! `channel_name`: `sockhub::validate_channel_name` (every channel name a client sends: json
//! `subscribe`/`publish`, the WebSocket URL's `?channel=`) agrees with its specification —
//! 1 to `MAX_CHANNEL_NAME_LEN` bytes, no whitespace, no control characters — and
//! `sockhub::Message::from_bytes` (how TCP lines and UDP datagrams are typed) calls a payload
//! text exactly when it is UTF-8. The wire-protocol names (`Protocol`, `TcpFraming`) parse only
//! their exact spellings.
//!
//! Input: raw bytes (the name is their lossy UTF-8 decoding).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sockhub::message::MAX_CHANNEL_NAME_LEN;
use sockhub::{validate_channel_name, Message, MessageKind, Protocol, TcpFraming};

fuzz_target!(|data: &[u8]| {
    let name = String::from_utf8_lossy(data);
    let valid = !name.is_empty()
        && name.len() <= MAX_CHANNEL_NAME_LEN
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    match validate_channel_name(&name) {
        Ok(()) => assert!(valid, "accepted {name:?}"),
        Err(reason) => {
            assert!(!valid, "rejected {name:?}: {reason}");
            assert!(!reason.contains('\n'), "one-line reason");
        }
    }

    let message = Message::from_bytes(Bytes::copy_from_slice(data));
    let utf8 = std::str::from_utf8(data).ok();
    assert_eq!(message.as_str(), utf8);
    assert_eq!(message.kind() == MessageKind::Text, utf8.is_some());
    assert_eq!(message.payload().as_ref(), data);

    if let Ok(p) = name.parse::<Protocol>() {
        assert!(matches!(
            (&*name, p),
            ("raw", Protocol::Raw) | ("json", Protocol::Json)
        ));
    }
    if let Ok(f) = name.parse::<TcpFraming>() {
        assert!(matches!(
            (&*name, f),
            ("lines", TcpFraming::Lines) | ("length-prefixed", TcpFraming::LengthPrefixed)
        ));
    }
});
