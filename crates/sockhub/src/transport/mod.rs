//! Transports turn sockets into session events and write outboxes back to sockets. They know
//! sessions and protocols, never the broker.

pub(crate) mod stream;
pub(crate) mod tcp;
pub(crate) mod udp;
pub(crate) mod ws;
