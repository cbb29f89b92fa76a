//! `config`: the library's config types (`Limits`, `TcpOptions`, `UdpOptions`, `WsOptions`)
//! deserialize any document to a value or an error, never a panic. They are read by the
//! `sockhub` binary from its TOML file; JSON drives the same `Deserialize` impls (including the
//! custom duration field parser) with a smaller fuzzing dependency.
//!
//! Input: raw bytes, parsed as JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockhub::{Limits, TcpOptions, UdpOptions, WsOptions};

fuzz_target!(|data: &[u8]| {
    let _ = serde_json::from_slice::<Limits>(data);
    let _ = serde_json::from_slice::<TcpOptions>(data);
    let _ = serde_json::from_slice::<UdpOptions>(data);
    let _ = serde_json::from_slice::<WsOptions>(data);
});
