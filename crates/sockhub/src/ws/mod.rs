//! WebSocket protocol support.

pub mod codec;
