//! `ws_negotiate`: the permessage-deflate offer parser (`sockhub::ws::deflate::negotiate`) on
//! arbitrary `Sec-WebSocket-Extensions` values — a client-controlled header.
//!
//! Input: a control byte (bit 0: enabled, bit 1: `no_context_takeover` configured), then the
//! header values separated by `\n` (lossy UTF-8).
//!
//! Checks: no panic; nothing is agreed when disabled; an agreement has a window of 9..=15 bits,
//! honours the configured `no_context_takeover`, and its response, offered back, is accepted
//! with the same terms.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockhub::ws::deflate::{negotiate, DeflateConfig};

fuzz_target!(|data: &[u8]| {
    let [control, rest @ ..] = data else {
        return;
    };
    let config = DeflateConfig {
        enabled: control & 1 != 0,
        no_context_takeover: control & 2 != 0,
    };
    let text = String::from_utf8_lossy(rest);
    let Some(agreed) = negotiate(text.split('\n'), &config) else {
        return;
    };
    assert!(config.enabled, "agreed while disabled");
    assert!((9..=15).contains(&agreed.server_window_bits), "{agreed:?}");
    if config.no_context_takeover {
        assert!(agreed.client_no_context_takeover);
    }
    let response = agreed.response();
    assert!(response.starts_with("permessage-deflate"));
    assert_eq!(
        negotiate([response.as_str()], &config),
        Some(agreed),
        "{response}"
    );
});
