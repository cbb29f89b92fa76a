//! Helpers shared by the fuzz targets: the "chunked stream" input format and a driver that
//! feeds a streaming decoder the way the transports do.
//!
//! ## The chunked stream input format
//! Used by `ws_decoder`, `tcp_lines` and `tcp_length_prefixed`, so that seeds are the raw wire
//! bytes behind a short prefix and stay readable in a hex dump:
//!
//! ```text
//! byte 0      control byte C
//!               bits 0-3  k: how many chunk-size bytes follow (0..=15)
//!               bits 4-5  limit selector: index into the target's table of max sizes
//!               bit  6    target-specific flag (ws_decoder: client role instead of server)
//!               bit  7    target-specific flag (ws_decoder: permessage-deflate negotiated)
//! bytes 1..=k chunk sizes: each byte b is a read of b + 1 bytes; the list is cycled.
//!             k = 0 means one byte per read.
//! rest        the byte stream, as it arrives from the socket
//! ```
//!
//! Every target decodes the stream twice, once whole (one read) and once in the chunks above,
//! and requires the same messages and the same error from both.

use arbitrary::{Arbitrary, Unstructured};

/// A parsed chunked-stream input.
#[derive(Debug)]
pub struct ChunkedInput<'a> {
    /// Limit selector, `0..=3`.
    pub limit: usize,
    /// Bit 6 of the control byte.
    pub flag: bool,
    /// Bit 7 of the control byte.
    pub high_bit: bool,
    /// Read sizes, each at least 1, cycled; never empty.
    pub sizes: Vec<usize>,
    /// The byte stream.
    pub stream: &'a [u8],
}

impl<'a> ChunkedInput<'a> {
    /// Splits a fuzzer input into its parts; `None` for an empty input.
    pub fn parse(data: &'a [u8]) -> Option<Self> {
        let mut u = Unstructured::new(data);
        if u.is_empty() {
            return None;
        }
        let control = u8::arbitrary(&mut u).ok()?;
        let k = usize::from(control & 0x0F).min(u.len());
        let sizes: Vec<usize> = u
            .bytes(k)
            .ok()?
            .iter()
            .map(|&b| usize::from(b) + 1)
            .collect();
        Some(ChunkedInput {
            limit: usize::from((control >> 4) & 0x03),
            flag: control & 0x40 != 0,
            high_bit: control & 0x80 != 0,
            sizes: if sizes.is_empty() { vec![1] } else { sizes },
            stream: u.take_rest(),
        })
    }
}

/// Splits `stream` into consecutive reads of the given sizes (cycled).
pub fn reads<'a>(stream: &'a [u8], sizes: &'a [usize]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut start = 0;
    sizes.iter().cycle().map_while(move |&size| {
        if start >= stream.len() {
            return None;
        }
        let end = start.saturating_add(size.max(1)).min(stream.len());
        let read = &stream[start..end];
        start = end;
        Some(read)
    })
}

/// What feeding a whole stream to a streaming decoder produced.
#[derive(Debug, PartialEq)]
pub struct Outcome<T, E> {
    /// Items in the order they were returned.
    pub items: Vec<T>,
    /// The error that stopped decoding, if any.
    pub error: Option<E>,
    /// Bytes consumed before the error (all of them when there was none).
    pub consumed: usize,
}

/// A streaming decoder as the transports drive it.
pub trait StreamDecoder {
    /// What one `decode` call may return.
    type Item;
    /// Why decoding stopped.
    type Error;
    /// Consumes bytes from the front of `input`: `(used, item)`.
    fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Self::Item>), Self::Error>;
    /// Called after each read has been fully consumed (invariants, `shrink_idle`…).
    fn after_read(&mut self) {}
    /// Called after each item.
    fn after_item(&mut self, _item: &Self::Item) {}
}

/// Feeds `reads` to `decoder` with the contract every sockhub decoder shares: `decode(input)`
/// returns `(used, item)` with `used <= input.len()`, and no item only when all of `input` was
/// used (so a caller looping `while !input.is_empty()` always makes progress). Checks that
/// contract and stops at the first error.
pub fn feed<'a, D: StreamDecoder>(
    decoder: &mut D,
    reads: impl Iterator<Item = &'a [u8]>,
) -> Outcome<D::Item, D::Error> {
    let mut out = Outcome {
        items: Vec::new(),
        error: None,
        consumed: 0,
    };
    for read in reads {
        let mut rest = read;
        while !rest.is_empty() {
            match decoder.decode(rest) {
                Ok((used, item)) => {
                    assert!(used <= rest.len(), "used {used} of {} bytes", rest.len());
                    match item {
                        Some(item) => {
                            decoder.after_item(&item);
                            out.items.push(item);
                        }
                        None => assert_eq!(used, rest.len(), "no item, yet input left over"),
                    }
                    out.consumed += used;
                    rest = &rest[used..];
                }
                Err(e) => {
                    out.error = Some(e);
                    return out;
                }
            }
        }
        decoder.after_read();
    }
    out
}
