//! `ws_inflate`: permessage-deflate inflation with limits (`sockhub::ws::deflate::Inflater`).
//!
//! Input: a control byte (bit 0: `client_no_context_takeover`, i.e. a fresh per-thread inflater
//! per message instead of one carrying its window; bits 1-2: max message size 1024 / 16 / 0 /
//! 65536; bits 3-5: window bits 9 + n, at most 15, for the compression round trip), then
//! messages, each a length byte followed by that many bytes (a message that would leave fewer
//! than 2 bytes after it takes all the rest).
//!
//! Each message is inflated as the arbitrary compressed payload of a client message: never a
//! panic, never more than `max` bytes out (`TooLarge { max }` instead), and a corrupt stream is
//! `Corrupt`. Then the same bytes are compressed as the server compresses a broadcast
//! (`compress`, fresh state) and must inflate back to themselves — with a fresh inflater at a
//! limit of exactly their size (and `TooLarge` one byte below), and through a second inflater
//! that carries its window across all the messages of the input, as a context-takeover
//! connection does.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockhub::ws::deflate::{compress, Agreed, InflateError, Inflater};

const LIMITS: [usize; 4] = [1024, 16, 0, 65536];

fuzz_target!(|data: &[u8]| {
    let Some((&control, mut rest)) = data.split_first() else {
        return;
    };
    let agreed = Agreed {
        client_no_context_takeover: control & 1 != 0,
        server_window_bits: 15,
    };
    let max = LIMITS[usize::from((control >> 1) & 3)];
    let window_bits = (9 + ((control >> 3) & 7)).min(15);
    // One inflater takes the fuzzer's bytes as compressed messages; the other only the
    // server's own compressed messages, in sequence, carrying its window the same way.
    let mut inflater = Inflater::new(&agreed);
    let mut valid = Inflater::new(&agreed);
    while let Some((&len, after)) = rest.split_first() {
        // The last message takes what is left, so long inputs reach large outputs too.
        let len = if after.len() < usize::from(len) + 2 {
            after.len()
        } else {
            usize::from(len)
        };
        let (message, next) = after.split_at(len);
        rest = next;
        check(&mut inflater, &mut valid, message, max, window_bits);
    }
});

fn check(inflater: &mut Inflater, valid: &mut Inflater, message: &[u8], max: usize, bits: u8) {
    match inflater.inflate(message, max) {
        Ok(out) => assert!(out.len() <= max, "inflated {} > max {max}", out.len()),
        Err(InflateError::TooLarge { max: m }) => assert_eq!(m, max),
        Err(InflateError::Corrupt) => {}
    }
    if let Some(compressed) = compress(message, bits) {
        assert!(compressed.len() < message.len());
        let mut fresh = Inflater::new(&Agreed {
            client_no_context_takeover: true,
            server_window_bits: 15,
        });
        assert_eq!(
            fresh.inflate(&compressed, message.len()).as_deref(),
            Ok(message)
        );
        assert_eq!(
            fresh.inflate(&compressed, message.len() - 1),
            Err(InflateError::TooLarge {
                max: message.len() - 1
            })
        );
        assert_eq!(
            valid.inflate(&compressed, message.len()).as_deref(),
            Ok(message)
        );
    }
}
