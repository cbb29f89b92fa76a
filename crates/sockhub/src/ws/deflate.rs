//! permessage-deflate (RFC 7692): negotiation, per-message compression and size-limited
//! inflation.
//!
//! Design choices, both made for memory and for broadcast:
//! - The server always answers with `server_no_context_takeover`, so every message it sends is
//!   compressed from a fresh state. The compressed bytes then depend only on the message, and a
//!   broadcast is compressed **once** and shared by every subscriber (like an uncompressed frame);
//!   no per-connection compressor exists. The compressor is reused per worker thread.
//! - Inbound, a connection keeps an inflater only while the client uses context takeover; with
//!   `no_context_takeover` configured, the server also demands `client_no_context_takeover` and
//!   the inflater is per thread too, so an idle compressed connection costs nothing extra.
//! - Limits apply to the **decompressed** size: inflation stops as soon as the output would
//!   exceed `max_message_size` (close 1009), so a small "zip bomb" never allocates more than the
//!   limit.

use std::cell::RefCell;

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};

/// The four bytes a sync flush ends with; stripped on the wire (RFC 7692 §7.2.1).
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Server-side permessage-deflate settings (per listener).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DeflateConfig {
    /// Negotiate permessage-deflate when a client offers it. Default false.
    pub enabled: bool,
    /// Also demand `client_no_context_takeover`: clients compress every message from scratch,
    /// so the server keeps no inflate window (32 KiB + state) per connection. Default false.
    pub no_context_takeover: bool,
}

/// What was agreed in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Agreed {
    /// The client resets its compressor per message (so may we, our inflater).
    pub client_no_context_takeover: bool,
    /// The largest LZ77 window (log2) our compressor may use (`server_max_window_bits`).
    pub server_window_bits: u8,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` response value.
    pub fn response(&self) -> String {
        let mut r = String::from("permessage-deflate; server_no_context_takeover");
        if self.client_no_context_takeover {
            r.push_str("; client_no_context_takeover");
        }
        if self.server_window_bits < 15 {
            r.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_window_bits
            ));
        }
        r
    }
}

/// Picks the first acceptable permessage-deflate offer from `Sec-WebSocket-Extensions` values
/// (RFC 7692 §5, §7.1). Offers with unknown, duplicate or invalid parameters are skipped; so is
/// one asking `server_max_window_bits=8`, which zlib cannot honour for raw deflate.
pub fn negotiate<'a>(
    headers: impl IntoIterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<Agreed> {
    if !config.enabled {
        return None;
    }
    for header in headers {
        for offer in header.split(',') {
            let mut parts = offer.split(';').map(str::trim);
            if parts.next() != Some("permessage-deflate") {
                continue;
            }
            if let Some(agreed) = accept_offer(parts, config) {
                return Some(agreed);
            }
        }
    }
    None
}

fn accept_offer<'a>(
    params: impl Iterator<Item = &'a str>,
    config: &DeflateConfig,
) -> Option<Agreed> {
    let mut seen: Vec<&str> = Vec::new();
    let mut agreed = Agreed {
        client_no_context_takeover: config.no_context_takeover,
        server_window_bits: 15,
    };
    for p in params {
        if p.is_empty() {
            return None;
        }
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim().trim_matches('"'))),
            None => (p, None),
        };
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        let bits = |v: Option<&str>| {
            v.and_then(|v| v.parse::<u8>().ok())
                .filter(|b| (8..=15).contains(b))
        };
        match (name, value) {
            ("server_no_context_takeover", None) => {}
            ("client_no_context_takeover", None) => agreed.client_no_context_takeover = true,
            ("server_max_window_bits", v) => {
                let b = bits(v)?;
                if b < 9 {
                    return None;
                }
                agreed.server_window_bits = b;
            }
            // We inflate with a 15-bit window, which reads any smaller one.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", v) => {
                bits(v)?;
            }
            _ => return None,
        }
    }
    Some(agreed)
}

thread_local! {
    /// One compressor per worker thread and window size, reset per message (no context
    /// takeover), so compressing allocates nothing but the output.
    static COMPRESSORS: RefCell<Vec<(u8, Compress)>> = const { RefCell::new(Vec::new()) };
    /// One inflater per worker thread for clients without context takeover.
    static INFLATER: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Compresses one message from a fresh state. Returns `None` when compression does not make
/// it smaller (send it uncompressed then).
pub fn compress(payload: &[u8], window_bits: u8) -> Option<Bytes> {
    COMPRESSORS.with_borrow_mut(|list| {
        let pos = match list.iter().position(|(b, _)| *b == window_bits) {
            Some(p) => p,
            None => {
                list.push((
                    window_bits,
                    Compress::new_with_window_bits(Compression::fast(), false, window_bits),
                ));
                list.len() - 1
            }
        };
        let c = &mut list[pos].1;
        c.reset();
        // Deflate never grows data by more than a few bytes per 16 KiB block, plus the flush.
        let mut out = Vec::with_capacity(payload.len() + payload.len() / 1000 + 64);
        loop {
            let consumed = c.total_in() as usize;
            c.compress_vec(&payload[consumed..], &mut out, FlushCompress::Sync)
                .ok()?;
            if c.total_in() as usize == payload.len() && out.len() < out.capacity() {
                break;
            }
            out.reserve(out.capacity().max(256));
        }
        if out.ends_with(&SYNC_TAIL) {
            out.truncate(out.len() - SYNC_TAIL.len());
        }
        (out.len() < payload.len()).then(|| Bytes::from(out))
    })
}

/// Why a compressed message could not be inflated.
#[derive(Debug, PartialEq, Eq)]
pub enum InflateError {
    /// The inflated message would exceed the limit (close 1009).
    TooLarge {
        /// The limit, in bytes.
        max: usize,
    },
    /// Not valid DEFLATE data (close 1007).
    Corrupt,
}

/// Inflates client messages for one connection.
#[derive(Debug, Default)]
pub struct Inflater {
    /// The LZ77 window carried between messages (context takeover); `None` until the first
    /// compressed message, and always `None` with `client_no_context_takeover`.
    state: Option<Box<Decompress>>,
    /// The client resets per message, so a shared per-thread inflater does.
    no_context_takeover: bool,
}

impl Inflater {
    /// An inflater for what was agreed.
    pub fn new(agreed: &Agreed) -> Self {
        Inflater {
            state: None,
            no_context_takeover: agreed.client_no_context_takeover,
        }
    }

    /// Inflates one message, failing as soon as it would exceed `max` bytes.
    ///
    /// # Errors
    /// [`InflateError`]: too large, or corrupt.
    pub fn inflate(&mut self, compressed: &[u8], max: usize) -> Result<Vec<u8>, InflateError> {
        if self.no_context_takeover {
            INFLATER.with_borrow_mut(|d| {
                let d = d.get_or_insert_with(|| Decompress::new(false));
                d.reset(false);
                inflate_into(d, compressed, max)
            })
        } else {
            let d = self
                .state
                .get_or_insert_with(|| Box::new(Decompress::new(false)));
            inflate_into(d, compressed, max)
        }
    }

    /// Heap held between messages (the window and state of a context-takeover inflater).
    pub fn holds_state(&self) -> bool {
        self.state.is_some()
    }
}

fn inflate_into(
    d: &mut Decompress,
    compressed: &[u8],
    max: usize,
) -> Result<Vec<u8>, InflateError> {
    // Start small and grow by doubling, never beyond one byte over the limit: that byte is the
    // proof of "too large", and a bomb never gets more memory than the limit.
    // (min/max, not clamp: with a limit under 63 bytes clamp's bounds would cross and panic,
    // as fuzzing found.)
    let mut out: Vec<u8> =
        Vec::with_capacity(compressed.len().saturating_mul(2).max(64).min(max + 1));
    for chunk in [compressed, &SYNC_TAIL[..]] {
        let mut pos = 0;
        loop {
            if out.len() == out.capacity() {
                if out.len() > max {
                    return Err(InflateError::TooLarge { max });
                }
                let grow = out.capacity().max(64).min(max + 1 - out.len());
                out.reserve_exact(grow);
            }
            let (in0, out0) = (d.total_in(), d.total_out());
            d.decompress_vec(&chunk[pos..], &mut out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            pos += (d.total_in() - in0) as usize;
            if out.len() > max {
                return Err(InflateError::TooLarge { max });
            }
            let room = out.len() < out.capacity();
            if room && (pos == chunk.len() || (d.total_in(), d.total_out()) == (in0, out0)) {
                // All input taken and nothing more pending (the buffer was not filled), or no
                // progress possible with room to spare.
                break;
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on() -> DeflateConfig {
        DeflateConfig {
            enabled: true,
            ..DeflateConfig::default()
        }
    }

    #[test]
    fn negotiation_picks_the_first_acceptable_offer() {
        assert_eq!(
            negotiate(["permessage-deflate"], &DeflateConfig::default()),
            None
        );
        let a = negotiate(["permessage-deflate; client_max_window_bits"], &on()).unwrap();
        assert_eq!(
            a.response(),
            "permessage-deflate; server_no_context_takeover"
        );
        let a = negotiate(
            ["permessage-deflate; server_max_window_bits=8, permessage-deflate; server_max_window_bits=10"],
            &on(),
        )
        .unwrap();
        assert_eq!(a.server_window_bits, 10);
        assert_eq!(
            negotiate(["permessage-deflate; bogus"], &on()),
            None,
            "unknown parameters decline the offer"
        );
        assert_eq!(negotiate(["x-webkit-deflate-frame"], &on()), None);
        let strict = DeflateConfig {
            no_context_takeover: true,
            ..on()
        };
        assert!(negotiate(["permessage-deflate"], &strict)
            .unwrap()
            .response()
            .contains("client_no_context_takeover"));
    }

    #[test]
    fn round_trip_with_and_without_context() {
        let text = "hello hello hello hello hello hello hello hello hello hello".repeat(10);
        let c = compress(text.as_bytes(), 15).unwrap();
        assert!(c.len() < text.len() / 4);
        for nct in [false, true] {
            let mut inf = Inflater::new(&Agreed {
                client_no_context_takeover: nct,
                server_window_bits: 15,
            });
            for _ in 0..3 {
                assert_eq!(inf.inflate(&c, 1 << 20).unwrap(), text.as_bytes());
            }
            assert_eq!(inf.holds_state(), !nct);
        }
        assert_eq!(compress(b"ab", 15), None, "tiny messages stay uncompressed");
    }

    #[test]
    fn a_zip_bomb_stops_at_the_limit() {
        let zeros = vec![0u8; 10 << 20];
        let c = compress(&zeros, 15).unwrap();
        assert!(c.len() < zeros.len() / 50, "{} bytes", c.len());
        let mut inf = Inflater::default();
        assert_eq!(
            inf.inflate(&c, 1 << 16),
            Err(InflateError::TooLarge { max: 1 << 16 })
        );
        let mut inf = Inflater::default();
        assert_eq!(inf.inflate(&c, 10 << 20).unwrap().len(), 10 << 20);
    }

    #[test]
    fn inflate_limit_below_64_bytes() {
        // Found by the ws_inflate fuzz target: a panic before the fix.
        let c = compress(&[b'x'; 200], 15).unwrap();
        let mut inf = Inflater::default();
        assert_eq!(inf.inflate(&c, 17), Err(InflateError::TooLarge { max: 17 }));
        let mut inf = Inflater::default();
        assert_eq!(inf.inflate(&[0x02, 0x00], 17), Ok(vec![]));
    }

    #[test]
    fn garbage_is_corrupt() {
        let mut inf = Inflater::default();
        assert_eq!(inf.inflate(&[0xff; 16], 1024), Err(InflateError::Corrupt));
    }
}
