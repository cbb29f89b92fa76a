//! `close_frame`: `sockhub::ws::codec::close_frame(code, reason)` — the close frame the server
//! sends, whose reason may be any string (a handler's rejection or kick reason, an error text) —
//! must be a well-formed control frame that a client-role `Decoder` reads back as the same code
//! and the reason cut at a char boundary to at most 123 bytes (or, for a code not allowed on the
//! wire, as `InvalidCloseCode`). `CloseReason`'s code and text go through the same path, as the
//! WebSocket transport sends them.
//!
//! Input: code u16 big-endian, a flag byte (bit 0: `Kicked` rather than `Rejected`), then the
//! reason as lossy UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockhub::ws::codec::{
    close_frame, is_valid_close_code, CloseFrame, Decoder, Event, ProtocolError, Role,
};
use sockhub::CloseReason;

fn expected_reason(reason: &str) -> &str {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    &reason[..end]
}

fn check(code: u16, reason: &str) {
    let frame = close_frame(code, reason);
    assert_eq!(frame[0], 0x88, "FIN + close opcode, no RSV bits");
    let len = usize::from(frame[1]);
    assert!(len <= 125 && frame[1] & 0x80 == 0, "unmasked, short length");
    assert_eq!(frame.len(), 2 + len);
    let mut decoder = Decoder::new(Role::Client, 0);
    let got = decoder.decode(&frame);
    if is_valid_close_code(code) {
        let want = Event::Close(Some(CloseFrame {
            code,
            reason: expected_reason(reason).to_owned(),
        }));
        assert_eq!(got, Ok((frame.len(), Some(want))));
    } else {
        assert_eq!(got, Err(ProtocolError::InvalidCloseCode(code)));
    }
}

fuzz_target!(|data: &[u8]| {
    let [hi, lo, flags, reason @ ..] = data else {
        return;
    };
    let code = u16::from_be_bytes([*hi, *lo]);
    let kicked = flags & 1 != 0;
    let reason = String::from_utf8_lossy(reason).into_owned();
    check(code, &reason);
    let close = if kicked {
        CloseReason::Kicked(reason)
    } else {
        CloseReason::Rejected(reason)
    };
    assert!(is_valid_close_code(close.ws_code()));
    check(close.ws_code(), &close.to_string());
});
