//! WebSocket: the upgrade (an HTTP handler on the HTTP listener) and the codec adapter that lets
//! the shared stream driver speak RFC 6455.
//!
//! The handshake rides on hyper (HTTP parsing, timeouts, keep-alive); after the 101 response the
//! raw `TcpStream` is taken back from hyper (`Upgraded::downcast`) so the connection is driven by
//! our readiness-based driver with no per-connection read buffer. The frame codec is our own
//! (`ws::codec`) because no maintained crate offers a sans-I/O decoder that streams into a
//! shared read buffer and an outbox of pre-encoded, shared frames — which is what keeps an idle
//! connection near 1 KB and a broadcast encoded once.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use bytes::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::close::CloseReason;
use crate::config::Protocol;
use crate::protocol::{Framing, WireFormat};
use crate::shared::{Knock, ServerShared};
use crate::transport::stream::{Connection, Inbound, StreamCodec};
use crate::ws::codec::{self, Decoder, Event, OpCode, Role};
use crate::ws::deflate::{self, Agreed, InflateError, Inflater};

/// [`StreamCodec`] over the RFC 6455 decoder.
pub(crate) struct WsCodec {
    /// Frame decoder and message assembler.
    decoder: Decoder,
    /// permessage-deflate inflater, when negotiated.
    inflater: Option<Inflater>,
    /// Limit on inflated messages.
    max_message_size: usize,
    /// A Pusher-protocol connection: close codes follow Pusher's ranges.
    pusher: bool,
}

impl WsCodec {
    pub(crate) fn new(max_message_size: usize, deflate: Option<Agreed>) -> Self {
        let mut decoder = Decoder::new(Role::Server, max_message_size);
        decoder.set_compression(deflate.is_some());
        WsCodec {
            decoder,
            inflater: deflate.as_ref().map(Inflater::new),
            max_message_size,
            pusher: false,
        }
    }

    /// Close codes in Pusher's terms: shutdown is 4200 (reconnect now), a message rate limit
    /// 4301; the rest are the same in both tables.
    pub(crate) fn for_pusher(mut self) -> Self {
        self.pusher = true;
        self
    }

    /// Inflates a compressed message, enforcing the limit on the inflated size.
    fn inflate(&mut self, text: bool, payload: &[u8]) -> Result<crate::Message, CloseReason> {
        let max = self.max_message_size;
        let inflater = self.inflater.as_mut().ok_or_else(|| {
            CloseReason::ProtocolError("compressed message without permessage-deflate".into())
        })?;
        let data = inflater.inflate(payload, max).map_err(|e| match e {
            InflateError::TooLarge { max } => CloseReason::MessageTooLarge {
                size: max as u64 + 1,
                max,
            },
            InflateError::Corrupt => CloseReason::InvalidPayload("corrupt compressed data".into()),
        })?;
        if text {
            match String::from_utf8(data) {
                Ok(t) => Ok(crate::Message::text(t)),
                Err(_) => Err(CloseReason::InvalidPayload(
                    "invalid UTF-8 in text message".into(),
                )),
            }
        } else {
            Ok(crate::Message::binary(data))
        }
    }
}

impl StreamCodec for WsCodec {
    fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Inbound>), CloseReason> {
        let (used, ev) = self.decoder.decode(input).map_err(|e| match e {
            codec::ProtocolError::MessageTooLarge { size, max } => {
                CloseReason::MessageTooLarge { size, max }
            }
            e if e.close_code() == 1007 => CloseReason::InvalidPayload(e.to_string()),
            e => CloseReason::ProtocolError(e.to_string()),
        })?;
        let item = match ev {
            None => None,
            Some(Event::Text(b)) => Some(Inbound::Message(crate::Message::text_unchecked(b))),
            Some(Event::Binary(b)) => Some(Inbound::Message(crate::Message::binary(b))),
            Some(Event::Compressed { text, payload }) => {
                Some(Inbound::Message(self.inflate(text, &payload)?))
            }
            Some(Event::Ping(p)) => Some(Inbound::Ping(codec::server_frame(OpCode::Pong, &p))),
            Some(Event::Pong(_)) => Some(Inbound::Pong),
            Some(Event::Close(c)) => Some(Inbound::Close(c.map(|c| c.code))),
        };
        Ok((used, item))
    }

    fn close_notice(&self, reason: &CloseReason) -> Option<Bytes> {
        let code = match reason {
            CloseReason::GoingAway if self.pusher => 4200,
            CloseReason::RateLimited { .. } if self.pusher => 4301,
            other => other.ws_code(),
        };
        Some(codec::close_frame(code, &reason.to_string()))
    }

    fn close_reply(&self, code: Option<u16>) -> Option<Bytes> {
        Some(match code {
            Some(code) => codec::close_frame(code, ""),
            None => codec::server_frame(OpCode::Close, &[]),
        })
    }

    fn shrink_idle(&mut self) {
        self.decoder.shrink_idle();
    }
}

/// Is this request asking for a WebSocket upgrade (`Upgrade: websocket`)?
pub(crate) fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

fn plain(status: StatusCode, text: String) -> Response<Body> {
    let mut r = Response::new(Body::from(text + "\n"));
    *r.status_mut() = status;
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    r
}

fn header_has_token(headers: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|v| {
        v.to_str()
            .map(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
            .unwrap_or(false)
    })
}

/// The client token of an upgrade request: `?token=` (what browsers can send) or
/// `Authorization: Bearer`.
fn token_of(req: &Request<Body>) -> Option<String> {
    let from_query = req.uri().query().and_then(|q| {
        form_urlencoded_pairs(q)
            .find(|(k, _)| k == "token")
            .map(|(_, v)| v)
    });
    from_query.or_else(|| {
        req.headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string())
    })
}

/// The query options of a WebSocket URL: `?channel=a&channel=b&protocol=json`.
pub(crate) fn parse_query(
    query: Option<&str>,
    default: &[String],
) -> Result<(Vec<String>, Protocol), String> {
    let mut channels = Vec::new();
    let mut protocol = Protocol::Raw;
    if let Some(q) = query {
        for (k, v) in form_urlencoded_pairs(q) {
            match k.as_str() {
                "channel" => {
                    crate::message::validate_channel_name(&v)?;
                    if !channels.contains(&v) {
                        channels.push(v);
                    }
                }
                "protocol" => protocol = v.parse()?,
                _ => {} // unknown parameters are left to applications (and cache-busters)
            }
        }
    }
    if channels.is_empty() {
        channels = default.to_vec();
    }
    Ok((channels, protocol))
}

/// Splits `a=1&b=2` and percent-decodes (`+` is a space), as browsers encode query strings.
fn form_urlencoded_pairs(q: &str) -> impl Iterator<Item = (String, String)> + '_ {
    q.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (percent_decode(k), percent_decode(v))
    })
}

pub(crate) fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            // Two hex digits exactly: `u8::from_str_radix` alone would also take a sign, so
            // `%+5` decoded to 0x05 (found by the `ws_upgrade` fuzz target).
            b'%' if i + 2 < bytes.len()
                && bytes[i + 1].is_ascii_hexdigit()
                && bytes[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |b: u8| char::from(b).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(bytes[i + 1]) << 4 | hex(bytes[i + 2]));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// The RFC 6455 §4.2.1 checks of an upgrade request, before anything is allocated for it:
/// `GET`, `Connection: Upgrade`, `Sec-WebSocket-Version: 13` and a 24-character key. Returns the
/// key, or the refusal to send: 405, 400, or 426 with `Sec-WebSocket-Version: 13` (boxed: the
/// error path is the rare one).
pub(crate) fn check_upgrade(
    method: &Method,
    h: &HeaderMap,
) -> Result<Vec<u8>, Box<Response<Body>>> {
    if method != Method::GET {
        return Err(Box::new(plain(
            StatusCode::METHOD_NOT_ALLOWED,
            "websocket upgrade needs GET".into(),
        )));
    }
    if !header_has_token(h, header::CONNECTION, "upgrade") {
        return Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            "missing Connection: Upgrade".into(),
        )));
    }
    if h.get(header::SEC_WEBSOCKET_VERSION)
        .map(HeaderValue::as_bytes)
        != Some(b"13")
    {
        let mut r = plain(
            StatusCode::UPGRADE_REQUIRED,
            "unsupported Sec-WebSocket-Version (only 13)".into(),
        );
        r.headers_mut().insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        return Err(Box::new(r));
    }
    match h.get(header::SEC_WEBSOCKET_KEY) {
        // A valid key is 16 random bytes, base64: 24 characters.
        Some(k) if k.len() == 24 => Ok(k.as_bytes().to_vec()),
        _ => Err(Box::new(plain(
            StatusCode::BAD_REQUEST,
            "missing or malformed Sec-WebSocket-Key".into(),
        ))),
    }
}

/// Answers a WebSocket upgrade request: validates it (RFC 6455 §4.2.1), takes a connection
/// slot, opens the session (running `on_connect`), replies 101 and spawns the connection.
/// Refusals are plain-text HTTP errors with a one-line reason: 400 bad request, 426 wrong
/// version, 503 server full or shutting down, 403 rejected by the handler.
pub(crate) async fn upgrade(
    server: &Arc<ServerShared>,
    peer: SocketAddr,
    req: Request<Body>,
) -> Response<Body> {
    if let Err(refusal) = check_upgrade(req.method(), req.headers()) {
        return *refusal;
    }
    let (channels, protocol) = match parse_query(req.uri().query(), &server.config.ws.channels) {
        Ok(v) => v,
        Err(e) => return plain(StatusCode::BAD_REQUEST, e),
    };
    let token = token_of(&req);
    // Pusher's private and presence channels need Pusher's channel auth, or a token that
    // grants them (checked with the token's other patterns when the session opens).
    if token.is_none() {
        if let Some(c) = channels.iter().find(|c| server.pusher_reserved(c)) {
            return plain(
                StatusCode::FORBIDDEN,
                format!(
                    "channel {c:?} is for authorized Pusher clients (or a token that grants it)"
                ),
            );
        }
    }
    let route = Route {
        protocol,
        channels,
        token,
    };
    upgrade_as(server, peer, req, route, |_| {}).await
}

/// What an endpoint decided about a WebSocket before the upgrade.
pub(crate) struct Route {
    /// The session's protocol.
    pub protocol: Protocol,
    /// Channels it joins.
    pub channels: Vec<String>,
    /// The client token it presented.
    pub token: Option<String>,
}

/// [`upgrade`] for an endpoint that chose the protocol and channels itself (the Pusher
/// endpoint). `opened` runs once the session exists, before anything else is queued for it.
pub(crate) async fn upgrade_as(
    server: &Arc<ServerShared>,
    peer: SocketAddr,
    mut req: Request<Body>,
    route: Route,
    opened: impl FnOnce(&crate::session::Session),
) -> Response<Body> {
    let h = req.headers();
    let key = match check_upgrade(req.method(), h) {
        Ok(key) => key,
        Err(refusal) => return *refusal,
    };
    let Route {
        protocol,
        channels,
        token,
    } = route;
    if server.shutdown.is_cancelled() {
        return plain(
            StatusCode::SERVICE_UNAVAILABLE,
            CloseReason::GoingAway.to_string(),
        );
    }
    let permit = match server.permits.clone().try_acquire_owned() {
        Ok(p) => p,
        Err(_) => {
            server.hub.stats().refused_full();
            let reason = CloseReason::ServerFull {
                max: server.config.limits.max_connections,
            };
            tracing::info!(%peer, transport = "ws", %reason, "refused");
            if protocol == Protocol::Pusher {
                if let Some(res) = refuse_upgraded(server, req, &key, 4100, "Over capacity") {
                    return res;
                }
            }
            return plain(StatusCode::SERVICE_UNAVAILABLE, reason.to_string());
        }
    };
    let extensions = h
        .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
        .iter()
        .filter_map(|v| v.to_str().ok());
    let deflate = deflate::negotiate(extensions, &server.config.ws.deflate);
    let framing = match deflate {
        None => Framing::WebSocket,
        Some(a) if a.server_window_bits == 15 => Framing::WebSocketDeflate,
        Some(_) => Framing::WebSocketDeflateSmall,
    };
    let format = WireFormat { framing, protocol };
    let knock = Knock {
        transport: crate::Transport::WebSocket,
        peer,
        format,
        channels,
        token,
    };
    let session = match server.admit(knock).await {
        Ok(s) => s,
        Err(reason) => {
            return plain(
                StatusCode::from_u16(reason.http_status()).unwrap_or(StatusCode::FORBIDDEN),
                reason.to_string(),
            )
        }
    };
    opened(&session);
    let on_upgrade = hyper::upgrade::on(&mut req);
    let server2 = server.clone();
    server.tracker.spawn(async move {
        let _permit = permit;
        let reason = match into_stream(on_upgrade.await) {
            Ok((stream, early)) => {
                let mut codec = WsCodec::new(server2.config.limits.max_message_size, deflate);
                if protocol == Protocol::Pusher {
                    codec = codec.for_pusher();
                }
                // Bound to a local and run by reference: the connection is stored once in
                // this task, not once here and again inside `run`'s future.
                let mut conn = Connection::new(stream, codec, session.clone());
                conn.run(&early).await
            }
            Err(reason) => reason,
        };
        server2.finish_session(&session, &reason);
    });
    switching_protocols(&key, deflate)
}

/// The socket hyper hands back after the 101, and the bytes the client sent right after its
/// request (usually none), copied out so hyper's whole read buffer is freed now, not held for
/// the connection's life: an idle connection keeps no buffer at all. A function of its own
/// rather than inline in the connection's task, where hyper's `Upgraded` and `Parts` would keep
/// their ~120 bytes in every connection's task for its whole life (docs/performance.md).
fn into_stream(
    upgraded: hyper::Result<hyper::upgrade::Upgraded>,
) -> Result<(TcpStream, Vec<u8>), CloseReason> {
    let upgraded =
        upgraded.map_err(|e| CloseReason::ConnectionLost(format!("upgrade failed: {e}")))?;
    let parts = upgraded
        .downcast::<TokioIo<TcpStream>>()
        .map_err(|_| CloseReason::Internal("upgraded connection is not a TCP stream".into()))?;
    Ok((parts.io.into_inner(), parts.read_buf.to_vec()))
}

/// The 101 answer to a WebSocket handshake with `key`.
fn switching_protocols(key: &[u8], deflate: Option<Agreed>) -> Response<Body> {
    let mut res = Response::new(Body::empty());
    *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let hs = res.headers_mut();
    hs.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    hs.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    if let Ok(v) = HeaderValue::from_str(&codec::accept_key(key)) {
        hs.insert(header::SEC_WEBSOCKET_ACCEPT, v);
    }
    if let Some(agreed) = deflate {
        if let Ok(v) = HeaderValue::from_str(&agreed.response()) {
            hs.insert(header::SEC_WEBSOCKET_EXTENSIONS, v);
        }
    }
    res
}

/// Refusals in progress over an upgraded connection, across the process; beyond
/// [`MAX_REFUSING`] a refusal is a plain HTTP 503 again.
static REFUSING: AtomicUsize = AtomicUsize::new(0);
const MAX_REFUSING: usize = 64;

/// Accepts the upgrade only to refuse it the Pusher way: `pusher:error` with `code`, then a
/// close frame with `code` (4100 "over capacity": clients back off and retry; an HTTP status
/// would only tell them the connection failed). No session is opened and no connection slot
/// is used; the exchange is bounded to one second. `None` when too many refusals are already
/// in progress.
fn refuse_upgraded(
    server: &Arc<ServerShared>,
    mut req: Request<Body>,
    key: &[u8],
    code: u16,
    message: &'static str,
) -> Option<Response<Body>> {
    if REFUSING.fetch_add(1, Relaxed) >= MAX_REFUSING {
        REFUSING.fetch_sub(1, Relaxed);
        return None;
    }
    let error = serde_json::json!({
        "event": "pusher:error",
        "data": { "code": code, "message": message },
    })
    .to_string();
    let frames = [
        codec::server_frame(OpCode::Text, error.as_bytes()),
        codec::close_frame(code, message),
    ];
    let on_upgrade = hyper::upgrade::on(&mut req);
    server.tracker.spawn(async move {
        let exchange = async {
            let mut io = TokioIo::new(on_upgrade.await.map_err(std::io::Error::other)?);
            for f in &frames {
                io.write_all(f).await?;
            }
            io.flush().await?;
            // The client's close frame (or EOF), so ours is read before the socket goes.
            let mut buf = [0u8; 128];
            let _ = io.read(&mut buf).await?;
            Ok::<_, std::io::Error>(())
        };
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), exchange).await;
        REFUSING.fetch_sub(1, Relaxed);
    });
    Some(switching_protocols(key, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_channels_and_protocol() {
        let d = vec!["lobby".to_string()];
        assert_eq!(parse_query(None, &d).unwrap(), (d.clone(), Protocol::Raw));
        assert_eq!(
            parse_query(Some("channel=a&channel=b%20c&protocol=json"), &d),
            Err("channel name contains ' '".into())
        );
        assert_eq!(
            parse_query(Some("channel=a&channel=b&channel=a&protocol=json"), &d).unwrap(),
            (vec!["a".into(), "b".into()], Protocol::Json)
        );
        assert!(parse_query(Some("protocol=xml"), &d).is_err());
        assert_eq!(percent_decode("a%2Fb+c%zz"), "a/b c%zz");
    }

    #[test]
    fn percent_decode_signed_escape_is_not_a_byte() {
        // Found by the ws_upgrade fuzz target: `%+5` and `%+b` decoded to the bytes 0x05 and
        // 0x0b (`from_str_radix` accepts a leading `+`), so `?channel=a%+5` named the channel
        // "a\u{5}" instead of being refused for its space.
        assert_eq!(percent_decode("a%+5"), "a% 5");
        assert_eq!(percent_decode("%+b%-1%4"), "% b%-1%4");
        assert_eq!(percent_decode("%41%4a%4A"), "AJJ");
    }
}
