//! The close-reason table: every way a session can end, mapped once to a WebSocket close code,
//! a TCP error line and an HTTP status.
//!
//! Code ranges tell clients what to do next, following the ranges the Pusher protocol made
//! familiar: standard 1xxx codes where RFC 6455 has one; `4000–4099` do not reconnect
//! (something must change first); `4100–4199` reconnect with backoff; `4200–4299` reconnect now.
//!
//! | reason | WS code | reconnect? | HTTP (before upgrade) |
//! |---|---|---|---|
//! | [`CloseReason::Normal`] | 1000 | — | — |
//! | [`CloseReason::GoingAway`] (server shutdown) | 1001 | yes, with backoff | 503 |
//! | [`CloseReason::ProtocolError`] | 1002 | no | 400 |
//! | [`CloseReason::InvalidPayload`] (bad UTF-8 / bad JSON command framing) | 1007 | no | 400 |
//! | [`CloseReason::MessageTooLarge`] | 1009 | no | 413 |
//! | [`CloseReason::RateLimited`] | 1008 | yes, with backoff | 429 |
//! | [`CloseReason::Internal`] | 1011 | yes, with backoff | 500 |
//! | [`CloseReason::ServerFull`] | 1013 | yes, with backoff | 503 |
//! | [`CloseReason::Unavailable`] (a backend the server needs did not answer) | 1013 | yes, with backoff | 503 |
//! | [`CloseReason::Unauthorized`] (no, bad or expired token; channel not allowed) | 4001 | no | 401 |
//! | [`CloseReason::Rejected`] (by the handler or the connect webhook) | 4009 | no | 403 |
//! | [`CloseReason::Kicked`] (closed by the application) | 4010 | no | — |
//! | [`CloseReason::SlowConsumer`] | 4100 | yes, with backoff | — |
//! | [`CloseReason::IdleTimeout`] | 4201 | yes, now | 408 |
//!
//! A TCP client is told with one line before the server closes: `ERROR <code> <text>` for the
//! raw protocol, `{"type":"close","code":<code>,"reason":"<text>"}` for the json protocol.
//! [`CloseReason::ClosedByPeer`] and [`CloseReason::ConnectionLost`] are endings the client caused;
//! nothing is sent for them.

use std::fmt;

/// Why a session ended (or is ending). Displayed as the one-line reason sent to clients.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The session ended normally (the server side's own choice, with nothing wrong).
    Normal,
    /// The peer closed: a WebSocket close frame (its code, if any) or TCP end-of-file.
    ClosedByPeer(Option<u16>),
    /// The socket failed (reset, broken pipe…); the text is the I/O error.
    ConnectionLost(String),
    /// The server is shutting down.
    GoingAway,
    /// The client broke the wire protocol; the text says how.
    ProtocolError(String),
    /// A payload was invalid (bad UTF-8 in a WebSocket text message, undecodable json command).
    InvalidPayload(String),
    /// A message exceeded `max_message_size`.
    MessageTooLarge {
        /// The size the client announced or sent, in bytes.
        size: u64,
        /// The configured limit, in bytes.
        max: usize,
    },
    /// All `max_connections` slots were in use.
    ServerFull {
        /// The configured limit.
        max: usize,
    },
    /// The session's outbox overflowed under the `disconnect` policy: the client reads too slowly.
    SlowConsumer {
        /// The outbox limit that was exceeded, in bytes.
        max_bytes: usize,
    },
    /// Nothing was received for `idle_timeout` (WebSocket: not even a pong to our pings).
    IdleTimeout,
    /// The handler's `on_connect` or the connect webhook refused the session; the text is its
    /// reason.
    Rejected(String),
    /// Client auth failed: no token, a bad or expired one, or a channel the token does not
    /// allow; the text says which.
    Unauthorized(String),
    /// Something the server needs to admit the client (the connect webhook's backend) did not
    /// answer in time; the text says what.
    Unavailable(String),
    /// The application closed the session (`Session::close` / `Hub::close`); the text is its reason.
    Kicked(String),
    /// The client sent more than `max_messages_per_second`.
    RateLimited {
        /// The configured rate.
        per_second: u32,
    },
    /// A server-side failure.
    Internal(String),
    /// A protocol adapter's own close code, in the 4000–4999 range (Pusher's 4001 unknown
    /// app, 4009 unauthorized, 4301 client events over the rate…).
    Adapter {
        /// The close code.
        code: u16,
        /// The reason.
        reason: String,
    },
}

impl CloseReason {
    /// The WebSocket close code for this reason (RFC 6455 §7.4 plus the ranges in the module doc).
    pub fn ws_code(&self) -> u16 {
        match self {
            CloseReason::Normal => 1000,
            CloseReason::ClosedByPeer(code) => code.unwrap_or(1000),
            CloseReason::ConnectionLost(_) => 1006,
            CloseReason::GoingAway => 1001,
            CloseReason::ProtocolError(_) => 1002,
            CloseReason::InvalidPayload(_) => 1007,
            CloseReason::MessageTooLarge { .. } => 1009,
            CloseReason::Internal(_) => 1011,
            CloseReason::RateLimited { .. } => 1008,
            CloseReason::ServerFull { .. } => 1013,
            CloseReason::Rejected(_) => 4009,
            CloseReason::Unauthorized(_) => 4001,
            CloseReason::Unavailable(_) => 1013,
            CloseReason::Adapter { code, .. } => *code,
            CloseReason::Kicked(_) => 4010,
            CloseReason::SlowConsumer { .. } => 4100,
            CloseReason::IdleTimeout => 4201,
        }
    }

    /// The HTTP status used when this reason refuses a WebSocket upgrade before it happens.
    pub fn http_status(&self) -> u16 {
        match self {
            CloseReason::GoingAway
            | CloseReason::ServerFull { .. }
            | CloseReason::Unavailable(_) => 503,
            CloseReason::Unauthorized(_) => 401,
            CloseReason::ProtocolError(_) | CloseReason::InvalidPayload(_) => 400,
            CloseReason::MessageTooLarge { .. } => 413,
            CloseReason::Rejected(_) => 403,
            CloseReason::IdleTimeout => 408,
            CloseReason::RateLimited { .. } => 429,
            _ => 500,
        }
    }

    /// Should the server tell the client before closing? False for endings the client caused
    /// (it is gone or already closed), true for everything the server decides.
    pub fn notifies_client(&self) -> bool {
        !matches!(
            self,
            CloseReason::ClosedByPeer(_) | CloseReason::ConnectionLost(_)
        )
    }

    /// Are frames already queued for the client thrown away instead of delivered first?
    /// Only for a slow consumer: draining its outbox is what it failed to do.
    pub fn discards_pending(&self) -> bool {
        matches!(self, CloseReason::SlowConsumer { .. })
    }

    /// The raw-protocol TCP/UDP error line, without the trailing newline: `ERROR <code> <text>`.
    pub fn error_line(&self) -> String {
        format!("ERROR {} {}", self.ws_code(), self)
    }
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CloseReason::Normal => f.write_str("normal closure"),
            CloseReason::ClosedByPeer(Some(code)) => write!(f, "closed by peer (code {code})"),
            CloseReason::ClosedByPeer(None) => f.write_str("closed by peer"),
            CloseReason::ConnectionLost(e) => write!(f, "connection lost: {e}"),
            CloseReason::GoingAway => f.write_str("server shutting down"),
            CloseReason::ProtocolError(e) => write!(f, "protocol error: {e}"),
            CloseReason::InvalidPayload(e) => write!(f, "invalid payload: {e}"),
            CloseReason::MessageTooLarge { size, max } => write!(
                f,
                "message too large: {size} bytes exceeds max-message-size {max}"
            ),
            CloseReason::ServerFull { max } => {
                write!(f, "server full: all {max} connections in use, retry later")
            }
            CloseReason::SlowConsumer { max_bytes } => write!(
                f,
                "slow consumer: more than {max_bytes} bytes waiting to be sent"
            ),
            CloseReason::IdleTimeout => f.write_str("idle timeout"),
            CloseReason::Rejected(r) => write!(f, "rejected: {r}"),
            CloseReason::Unauthorized(r) => write!(f, "unauthorized: {r}"),
            CloseReason::Unavailable(r) => write!(f, "unavailable: {r}"),
            CloseReason::Adapter { reason, .. } => f.write_str(reason),
            CloseReason::Kicked(r) => write!(f, "closed by server: {r}"),
            CloseReason::Internal(e) => write!(f, "internal error: {e}"),
            CloseReason::RateLimited { per_second } => {
                write!(f, "rate limit: more than {per_second} messages per second")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_table() {
        assert_eq!(CloseReason::GoingAway.ws_code(), 1001);
        assert_eq!(
            CloseReason::MessageTooLarge { size: 9, max: 8 }.ws_code(),
            1009
        );
        assert_eq!(CloseReason::ServerFull { max: 1 }.http_status(), 503);
        assert_eq!(CloseReason::SlowConsumer { max_bytes: 1 }.ws_code(), 4100);
        assert_eq!(
            CloseReason::MessageTooLarge { size: 9, max: 8 }.error_line(),
            "ERROR 1009 message too large: 9 bytes exceeds max-message-size 8"
        );
    }

    #[test]
    fn reasons_fit_in_a_close_frame() {
        // A WebSocket close reason must fit in 123 bytes; the codec truncates, but the fixed
        // texts should not need it.
        for r in [
            CloseReason::GoingAway,
            CloseReason::ServerFull { max: usize::MAX },
            CloseReason::SlowConsumer {
                max_bytes: usize::MAX,
            },
            CloseReason::MessageTooLarge {
                size: u64::MAX,
                max: usize::MAX,
            },
        ] {
            assert!(r.to_string().len() <= 123, "{r}");
        }
    }
}
