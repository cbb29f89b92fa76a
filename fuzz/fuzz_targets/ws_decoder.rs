//! `ws_decoder`: arbitrary bytes into the RFC 6455 frame decoder (`sockhub::ws::codec::Decoder`).
//!
//! Input: the chunked stream format (see `src/lib.rs`). Limit selector: max message size
//! 1024 / 0 / 7 / 130 bytes. Flag (bit 6): decode as a client (server frames) instead of a
//! server. Bit 7: permessage-deflate negotiated (`set_compression(true)`: RSV1 allowed on a
//! message's first frame, yielding `Event::Compressed`).
//!
//! Checks, besides "no panic, no sanitizer report":
//! - the decoder contract (`used <= input`, no event only when all input was used, an empty
//!   read yields `Ok((0, None))`);
//! - every event is well-formed: text is UTF-8, data messages (compressed ones too) are within
//!   the limit, compressed messages only when negotiated, control
//!   payloads are at most 125 bytes, close codes are valid and reasons at most 123 bytes;
//! - nothing is returned after a Close event, and later input is swallowed;
//! - errors are sticky, map to 1002/1007/1009, and free the message buffer;
//! - `buffered()` never exceeds the limit (the buffer grows only up to declared lengths);
//! - differential: the stream fed whole and fed in the fuzzer's chunks (calling `shrink_idle`
//!   between reads, as the connection driver does) gives the same events and the same error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockhub::ws::codec::{is_valid_close_code, Decoder, Event, ProtocolError, Role};
use sockhub_fuzz::{feed, reads, ChunkedInput, Outcome, StreamDecoder};

const LIMITS: [usize; 4] = [1024, 0, 7, 130];

struct Checked {
    decoder: Decoder,
    max: usize,
    closed: bool,
    shrink: bool,
    compression: bool,
}

impl StreamDecoder for Checked {
    type Item = Event;
    type Error = ProtocolError;

    fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Event>), ProtocolError> {
        let result = self.decoder.decode(input);
        match &result {
            Ok((used, event)) => {
                if self.closed {
                    assert_eq!(
                        (*used, event.is_none()),
                        (input.len(), true),
                        "input after Close must be swallowed"
                    );
                }
            }
            Err(e) => {
                assert!(!self.closed, "error after Close: {e:?}");
                assert!(
                    matches!(e.close_code(), 1002 | 1007 | 1009),
                    "close code {} for {e:?}",
                    e.close_code()
                );
                if let ProtocolError::MessageTooLarge { size, max } = e {
                    assert_eq!(*max, self.max);
                    assert!(*size > *max as u64, "{e:?}");
                }
                assert_eq!(self.decoder.buffered(), 0, "buffer kept after {e:?}");
                // Poisoned: the same error again, whatever comes next.
                assert_eq!(self.decoder.decode(input).as_ref(), Err(e));
                assert_eq!(self.decoder.decode(&[]).as_ref(), Err(e));
            }
        }
        assert!(
            self.decoder.buffered() <= self.max,
            "buffered {} > max {}",
            self.decoder.buffered(),
            self.max
        );
        result
    }

    fn after_item(&mut self, event: &Event) {
        match event {
            Event::Text(b) => {
                assert!(std::str::from_utf8(b).is_ok(), "text event is not UTF-8");
                assert!(
                    b.len() <= self.max,
                    "text of {} > max {}",
                    b.len(),
                    self.max
                );
            }
            Event::Binary(b) => {
                assert!(
                    b.len() <= self.max,
                    "binary of {} > max {}",
                    b.len(),
                    self.max
                );
            }
            Event::Ping(b) | Event::Pong(b) => assert!(b.len() <= 125),
            Event::Close(close) => {
                if let Some(c) = close {
                    assert!(is_valid_close_code(c.code), "close code {}", c.code);
                    assert!(c.reason.len() <= 123);
                }
                self.closed = true;
            }
            Event::Compressed { payload, .. } => {
                assert!(self.compression, "compressed message without the extension");
                assert!(
                    payload.len() <= self.max,
                    "compressed {} > max {}",
                    payload.len(),
                    self.max
                );
            }
        }
    }

    fn after_read(&mut self) {
        assert_eq!(
            self.decoder.decode(&[]).map(|(n, e)| (n, e.is_none())),
            Ok((0, true))
        );
        if self.shrink {
            self.decoder.shrink_idle();
        }
    }
}

fn run<'a>(
    role: Role,
    max: usize,
    compression: bool,
    reads: impl Iterator<Item = &'a [u8]>,
    shrink: bool,
) -> Outcome<Event, ProtocolError> {
    let mut decoder = Decoder::new(role, max);
    decoder.set_compression(compression);
    let mut d = Checked {
        decoder,
        max,
        closed: false,
        shrink,
        compression,
    };
    feed(&mut d, reads)
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = ChunkedInput::parse(data) else {
        return;
    };
    let role = if input.flag {
        Role::Client
    } else {
        Role::Server
    };
    let max = LIMITS[input.limit];
    let compression = input.high_bit;
    let whole = run(role, max, compression, std::iter::once(input.stream), false);
    let chunked = run(
        role,
        max,
        compression,
        reads(input.stream, &input.sizes),
        true,
    );
    assert_eq!(
        whole.items, chunked.items,
        "events differ: whole vs chunked"
    );
    assert_eq!(
        whole.error, chunked.error,
        "errors differ: whole vs chunked"
    );
    if whole.error.is_none() {
        assert_eq!(whole.consumed, input.stream.len());
        assert_eq!(chunked.consumed, input.stream.len());
    }
});
