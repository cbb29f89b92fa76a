//! `tcp_lines`: arbitrary bytes into the TCP line splitter (`sockhub::framing::LinesDecoder`).
//!
//! Input: the chunked stream format (see `src/lib.rs`). Limit selector: max line length
//! 16 / 0 / 1 / 1024 bytes. The flag bit is unused.
//!
//! Checks: the decoder contract; whole and chunked reads give exactly the lines of a reference
//! splitter (split at `\n`, drop one `\r` before it, fail on a line longer than the limit or an
//! unterminated tail longer than limit + 1) and fail exactly when it fails; no line contains
//! `\n` or exceeds the limit; `buffered()` stays within limit + 1 (the `\r` slack).
#![no_main]

use bytes::Bytes;
use libfuzzer_sys::fuzz_target;
use sockhub::framing::{LinesDecoder, TooLarge};
use sockhub_fuzz::{feed, reads, ChunkedInput, StreamDecoder};

const LIMITS: [usize; 4] = [16, 0, 1, 1024];

struct Checked {
    decoder: LinesDecoder,
    max: usize,
}

impl StreamDecoder for Checked {
    type Item = Bytes;
    type Error = TooLarge;

    fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Bytes>), TooLarge> {
        let result = self.decoder.decode(input);
        match &result {
            Ok((used, Some(line))) => {
                assert!(*used >= 1, "a line consumes at least its newline");
                assert!(
                    line.len() <= self.max,
                    "line of {} > max {}",
                    line.len(),
                    self.max
                );
                assert!(!line.contains(&b'\n'));
            }
            Ok((_, None)) => {}
            Err(e) => {
                assert_eq!(e.max, self.max);
                assert!(e.size > self.max as u64, "{e:?}");
            }
        }
        assert!(self.decoder.buffered() <= self.max + 1);
        result
    }
}

/// The reference splitter: the lines, and whether the stream is an error.
fn reference(stream: &[u8], max: usize) -> (Vec<Bytes>, bool) {
    let mut lines = Vec::new();
    let mut rest = stream;
    while let Some(i) = rest.iter().position(|&b| b == b'\n') {
        let mut line = &rest[..i];
        if let Some(stripped) = line.strip_suffix(b"\r") {
            line = stripped;
        }
        if line.len() > max {
            return (lines, true);
        }
        lines.push(Bytes::copy_from_slice(line));
        rest = &rest[i + 1..];
    }
    (lines, rest.len() > max + 1)
}

fuzz_target!(|data: &[u8]| {
    let Some(input) = ChunkedInput::parse(data) else {
        return;
    };
    let max = LIMITS[input.limit];
    let (lines, fails) = reference(input.stream, max);
    for (name, outcome) in [
        (
            "whole",
            feed(
                &mut Checked {
                    decoder: LinesDecoder::new(max),
                    max,
                },
                std::iter::once(input.stream),
            ),
        ),
        (
            "chunked",
            feed(
                &mut Checked {
                    decoder: LinesDecoder::new(max),
                    max,
                },
                reads(input.stream, &input.sizes),
            ),
        ),
    ] {
        assert_eq!(
            outcome.items, lines,
            "{name}: lines differ from the reference"
        );
        assert_eq!(
            outcome.error.is_some(),
            fails,
            "{name}: {:?}",
            outcome.error
        );
        if !fails {
            assert_eq!(outcome.consumed, input.stream.len(), "{name}");
        }
    }
});
