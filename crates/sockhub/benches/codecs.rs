//! Micro-benchmarks of the codecs: WebSocket decoder and encoder, the TCP line and
//! length-prefixed decoders, the json protocol encoder and command parser, and
//! permessage-deflate compress / inflate.
//!
//! ```sh
//! cargo bench -p sockhub --bench codecs                  # ~0.3 s per benchmark
//! cargo bench -p sockhub --bench codecs -- ws_decode     # a filter
//! cargo test  -p sockhub --benches                       # each benchmark once, as a test
//! ```
//!
//! Why divan and not criterion: its `AllocProfiler` is a counting global allocator we declare
//! without writing `unsafe` (the workspace forbids `unsafe_code`), and it prints allocations and
//! bytes per iteration next to the time; it also builds with a fraction of criterion's
//! dependencies, which matters on a 2-core machine.
//!
//! Every benchmark counts its throughput (bytes or messages), so divan prints rates too.

use std::time::Duration;

use bytes::BytesMut;
use divan::counter::{BytesCount, ItemsCount};
use divan::{black_box, AllocProfiler, Bencher};
use sockhub::bench_support::{encode_message, parse_command};
use sockhub::config::Protocol;
use sockhub::framing::{LengthPrefixedDecoder, LinesDecoder};
use sockhub::protocol::{Framing, WireFormat};
use sockhub::ws::codec::{encode_frame, server_frame, Decoder, Event, OpCode, Role};
use sockhub::ws::deflate::{compress, Agreed, Inflater};
use sockhub::{Message, SessionId};

#[global_allocator]
static ALLOC: AllocProfiler = AllocProfiler::system();

fn main() {
    // Short by default (a shared 2-core machine); `--max-time SECS` on the command line wins.
    divan::Divan::default()
        .max_time(Duration::from_millis(300))
        .config_with_args()
        .main();
}

/// The server's default `max_message_size` is 64 KiB; the decoders get room for the largest
/// benchmarked message.
const MAX: usize = 1 << 20;

/// A fixed masking key (the value does not change the cost).
const MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// `count` masked client frames of `size` bytes each, back to back, as one read would hold.
fn masked_frames(opcode: OpCode, size: usize, count: usize) -> Vec<u8> {
    let payload = text(size);
    let mut dst = BytesMut::new();
    for _ in 0..count {
        encode_frame(opcode, &payload, Some(MASK), &mut dst);
    }
    dst.to_vec()
}

/// One masked text message of `size` bytes split into `fragments` frames.
fn fragmented(size: usize, fragments: usize) -> Vec<u8> {
    let payload = text(size);
    let chunk = size / fragments;
    let mut dst = BytesMut::new();
    for (i, part) in payload.chunks(chunk).enumerate() {
        let start = dst.len();
        let op = if i == 0 {
            OpCode::Text
        } else {
            OpCode::Continuation
        };
        encode_frame(op, part, Some(MASK), &mut dst);
        if (i + 1) * chunk < size {
            dst[start] &= 0x7f; // clear FIN: more fragments follow
        }
    }
    dst.to_vec()
}

/// ASCII text of `size` bytes (valid UTF-8, so text frames are validated as such).
fn text(size: usize) -> Vec<u8> {
    (0..size).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Decodes every message in `input`; returns how many.
fn decode_all(decoder: &mut Decoder, mut input: &[u8]) -> usize {
    let mut n = 0;
    while !input.is_empty() {
        match decoder.decode(input) {
            Ok((used, event)) => {
                input = &input[used..];
                if let Some(ev) = event {
                    if matches!(ev, Event::Text(_) | Event::Binary(_)) {
                        n += 1;
                    }
                    black_box(ev);
                }
            }
            Err(e) => panic!("benchmark input rejected: {e}"),
        }
    }
    n
}

/// WebSocket decoder (server role: masked client frames, unmasked and validated in place).
mod ws_decode {
    use super::*;

    /// 64 masked text frames of 20 B / 1 KiB in one buffer (one read's worth).
    #[divan::bench(args = [20, 1024])]
    fn small_frames_x64(bencher: Bencher, size: usize) {
        let input = masked_frames(OpCode::Text, size, 64);
        let mut d = Decoder::new(Role::Server, MAX);
        bencher
            .counter(ItemsCount::new(64usize))
            .bench_local(|| assert_eq!(decode_all(&mut d, black_box(&input)), 64));
    }

    /// One masked 64 KiB binary frame.
    #[divan::bench]
    fn large_frame_64k(bencher: Bencher) {
        let input = masked_frames(OpCode::Binary, 64 * 1024, 1);
        let mut d = Decoder::new(Role::Server, MAX);
        bencher
            .counter(BytesCount::new(input.len()))
            .bench_local(|| decode_all(&mut d, black_box(&input)));
    }

    /// One masked 64 KiB text frame (UTF-8 validated).
    #[divan::bench]
    fn large_text_64k(bencher: Bencher) {
        let input = masked_frames(OpCode::Text, 64 * 1024, 1);
        let mut d = Decoder::new(Role::Server, MAX);
        bencher
            .counter(BytesCount::new(input.len()))
            .bench_local(|| decode_all(&mut d, black_box(&input)));
    }

    /// A 16 KiB text message in 16 fragments of 1 KiB (reassembled, validated across frames).
    #[divan::bench]
    fn fragmented_16k_in_16(bencher: Bencher) {
        let input = fragmented(16 * 1024, 16);
        let mut d = Decoder::new(Role::Server, MAX);
        bencher
            .counter(BytesCount::new(input.len()))
            .bench_local(|| assert_eq!(decode_all(&mut d, black_box(&input)), 1));
    }

    /// A 20 B frame fed one byte at a time (the worst case of a dribbling client).
    #[divan::bench]
    fn small_frame_bytewise(bencher: Bencher) {
        let input = masked_frames(OpCode::Text, 20, 1);
        let mut d = Decoder::new(Role::Server, MAX);
        bencher.bench_local(|| {
            let mut n = 0;
            for b in black_box(&input).chunks(1) {
                n += decode_all(&mut d, b);
            }
            assert_eq!(n, 1);
        });
    }
}

/// WebSocket encoder.
mod ws_encode {
    use super::*;

    /// An unmasked server frame as shared bytes (what a broadcast encodes once).
    #[divan::bench(args = [20, 1024, 65536])]
    fn server_frame_bytes(bencher: Bencher, size: usize) {
        let payload = text(size);
        bencher
            .counter(BytesCount::new(size))
            .bench_local(|| server_frame(OpCode::Text, black_box(&payload)));
    }

    /// A masked client frame into a reused buffer.
    #[divan::bench(args = [20, 1024, 65536])]
    fn masked_client_frame(bencher: Bencher, size: usize) {
        let payload = text(size);
        let mut dst = BytesMut::with_capacity(size + 14);
        bencher.counter(BytesCount::new(size)).bench_local(|| {
            dst.clear();
            encode_frame(OpCode::Text, black_box(&payload), Some(MASK), &mut dst);
        });
    }
}

/// TCP framings.
mod tcp_decode {
    use super::*;

    /// 64 lines of 20 B / 1 KiB in one buffer.
    #[divan::bench(args = [20, 1024])]
    fn lines_x64(bencher: Bencher, size: usize) {
        let mut input = Vec::new();
        for _ in 0..64 {
            input.extend_from_slice(&text(size));
            input.push(b'\n');
        }
        let mut d = LinesDecoder::new(MAX);
        bencher.counter(ItemsCount::new(64usize)).bench_local(|| {
            let mut rest = black_box(&input[..]);
            let mut n = 0;
            while !rest.is_empty() {
                let (used, line) = d.decode(rest).expect("within the limit");
                rest = &rest[used..];
                n += usize::from(black_box(line).is_some());
            }
            assert_eq!(n, 64);
        });
    }

    /// 64 length-prefixed frames of 20 B / 1 KiB in one buffer.
    #[divan::bench(args = [20, 1024])]
    fn length_prefixed_x64(bencher: Bencher, size: usize) {
        let mut input = Vec::new();
        for _ in 0..64 {
            input.extend_from_slice(&(size as u32).to_be_bytes());
            input.extend_from_slice(&text(size));
        }
        let mut d = LengthPrefixedDecoder::new(MAX);
        bencher.counter(ItemsCount::new(64usize)).bench_local(|| {
            let mut rest = black_box(&input[..]);
            let mut n = 0;
            while !rest.is_empty() {
                let (used, frame) = d.decode(rest).expect("within the limit");
                rest = &rest[used..];
                n += usize::from(black_box(frame).is_some());
            }
            assert_eq!(n, 64);
        });
    }
}

/// The json protocol: the `message` event every json subscriber gets, and command parsing.
mod json {
    use super::*;

    fn format(framing: Framing) -> WireFormat {
        WireFormat {
            framing,
            protocol: Protocol::Json,
        }
    }

    /// A 64 B text message as a json `message` event in a WebSocket frame.
    #[divan::bench]
    fn encode_text_event_ws(bencher: Bencher) {
        let m = Message::text(String::from_utf8(text(64)).expect("ascii"));
        bencher.bench_local(|| {
            encode_message(
                format(Framing::WebSocket),
                Some("lobby"),
                black_box(&m),
                Some(SessionId(12)),
            )
        });
    }

    /// A 64 B binary message (base64 in the event) as a json line.
    #[divan::bench]
    fn encode_binary_event_line(bencher: Bencher) {
        let m = Message::binary(vec![0xa5u8; 64]);
        bencher.bench_local(|| {
            encode_message(
                format(Framing::Lines),
                Some("lobby"),
                black_box(&m),
                Some(SessionId(12)),
            )
        });
    }

    /// A 1 KiB text message with characters that need escaping.
    #[divan::bench]
    fn encode_escaped_1k_ws(bencher: Bencher) {
        let s: String = "quote \" backslash \\ newline \n tab \t é ".repeat(26);
        let m = Message::text(s);
        bencher.bench_local(|| {
            encode_message(
                format(Framing::WebSocket),
                Some("lobby"),
                black_box(&m),
                None,
            )
        });
    }

    /// A `publish` command with 64 B of data.
    #[divan::bench]
    fn parse_publish(bencher: Bencher) {
        let cmd = format!(
            r#"{{"type":"publish","channel":"news","data":"{}"}}"#,
            String::from_utf8(text(64)).expect("ascii")
        );
        bencher.bench_local(|| parse_command(black_box(cmd.as_bytes())).expect("valid"));
    }
}

/// permessage-deflate: what the server does per broadcast (compress once) and per compressed
/// client message (inflate).
mod deflate {
    use super::*;

    /// A json-ish payload that compresses like real chat traffic.
    fn chatty(size: usize) -> Vec<u8> {
        let unit =
            br#"{"user":"player-17","text":"first blood at 12:04, regroup mid","x":117,"y":-42}"#;
        unit.iter().copied().cycle().take(size).collect()
    }

    /// Compress from a fresh state (`server_no_context_takeover`), 15-bit window.
    #[divan::bench(args = [256, 4096, 65536])]
    fn compress_fresh(bencher: Bencher, size: usize) {
        let payload = chatty(size);
        bencher
            .counter(BytesCount::new(size))
            .bench_local(|| compress(black_box(&payload), 15).expect("compressible"));
    }

    /// Inflate one message: with the per-thread inflater (client_no_context_takeover) or the
    /// connection's own (context takeover).
    #[divan::bench(args = [true, false])]
    fn inflate_4k(bencher: Bencher, no_context_takeover: bool) {
        let payload = chatty(4096);
        let compressed = compress(&payload, 15).expect("compressible");
        let mut inflater = Inflater::new(&Agreed {
            client_no_context_takeover: no_context_takeover,
            server_window_bits: 15,
        });
        bencher
            .counter(BytesCount::new(payload.len()))
            .bench_local(|| {
                let out = inflater
                    .inflate(black_box(&compressed), MAX)
                    .expect("inflates");
                assert_eq!(out.len(), payload.len());
                out
            });
    }
}
