//! WebSocket protocol support.

pub mod codec;
pub mod deflate;
