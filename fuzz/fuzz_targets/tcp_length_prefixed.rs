//! `tcp_length_prefixed`: arbitrary bytes into the TCP length-prefixed splitter
//! (`sockhub::framing::LengthPrefixedDecoder`: big-endian u32 length, then the payload).
//!
//! Input: the chunked stream format (see `src/lib.rs`). Limit selector: max payload
//! 16 / 0 / 255 / 1 MiB. The flag bit is unused.
//!
//! Checks: the decoder contract; whole and chunked reads give exactly the frames of a reference
//! parser and the same error (`TooLarge { size: announced length, max }`, raised on the header
//! alone, before any payload arrives); payloads stay within the limit; `buffered()` stays
//! within header + limit, and is 0 after a stream that ends on a frame boundary.
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sockhub::framing::{LengthPrefixedDecoder, TooLarge};
use sockhub_fuzz::{feed, reads, ChunkedInput, StreamDecoder};

const LIMITS: [usize; 4] = [16, 0, 255, 1 << 20];

struct Checked {
    decoder: LengthPrefixedDecoder,
    max: usize,
}

impl StreamDecoder for Checked {
    type Item = Bytes;
    type Error = TooLarge;

    fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Bytes>), TooLarge> {
        let result = self.decoder.decode(input);
        if let Ok((used, Some(frame))) = &result {
            assert!(*used >= 1);
            assert!(frame.len() <= self.max);
        }
        assert!(self.decoder.buffered() <= 4 + self.max);
        result
    }
}

/// The reference parser: the frames, the error, and how many bytes make up complete frames.
fn reference(stream: &[u8], max: usize) -> (Vec<Bytes>, Option<TooLarge>, usize) {
    let mut frames = Vec::new();
    let mut pos = 0;
    while stream.len() - pos >= 4 {
        let len = u32::from_be_bytes([
            stream[pos],
            stream[pos + 1],
            stream[pos + 2],
            stream[pos + 3],
        ]);
        if u64::from(len) > max as u64 {
            let error = TooLarge {
                size: u64::from(len),
                max,
            };
            return (frames, Some(error), pos);
        }
        let len = len as usize;
        if stream.len() - pos - 4 < len {
            break;
        }
        frames.push(Bytes::copy_from_slice(&stream[pos + 4..pos + 4 + len]));
        pos += 4 + len;
    }
    (frames, None, pos)
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = ChunkedInput::parse(data) else {
        return;
    };
    let max = LIMITS[input.limit];
    let (frames, error, complete) = reference(input.stream, max);
    for chunked in [false, true] {
        let mut d = Checked {
            decoder: LengthPrefixedDecoder::new(max),
            max,
        };
        let outcome = if chunked {
            feed(&mut d, reads(input.stream, &input.sizes))
        } else {
            feed(&mut d, std::iter::once(input.stream))
        };
        assert_eq!(
            outcome.items, frames,
            "chunked={chunked}: frames differ from the reference"
        );
        assert_eq!(outcome.error, error, "chunked={chunked}");
        if error.is_none() {
            assert_eq!(outcome.consumed, input.stream.len());
            assert_eq!(
                d.decoder.buffered(),
                input.stream.len() - complete,
                "chunked={chunked}: buffered() is not the unfinished frame"
            );
        }
    }
});
