//! `parse_duration`: `sockhub::config::parse_duration` (every duration flag, environment
//! variable and config value of the `sockhub` binary) returns `Ok` or `Err` for any string —
//! never panics — and a bare number of seconds parses to that many seconds.
//!
//! Input: raw bytes; non-UTF-8 inputs are skipped.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockhub::config::parse_duration;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let result = parse_duration(s);
    if let (Ok(d), Ok(secs)) = (&result, s.trim().parse::<f64>()) {
        if secs.is_finite() && secs >= 0.0 {
            let got = d.as_secs_f64();
            assert!(
                (got - secs).abs() <= 1e-9 * secs.max(1.0),
                "{s:?} parsed to {d:?}"
            );
        }
    }
});
