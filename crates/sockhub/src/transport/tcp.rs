//! Raw TCP: the accept loop (shared with the HTTP listener) and the codec adapter for line and
//! length-prefixed framing.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use crate::close::CloseReason;
use crate::config::{TcpFraming, TcpOptions};
use crate::framing::{LengthPrefixedDecoder, LinesDecoder, TooLarge};
use crate::protocol::{encode_close_notice, Framing, WireFormat};
use crate::shared::{Knock, ServerShared};
use crate::transport::stream::{Connection, Inbound, StreamCodec};
use crate::Message;

/// Either TCP framing behind one codec type.
enum Splitter {
    Lines(LinesDecoder),
    LengthPrefixed(LengthPrefixedDecoder),
}

/// [`StreamCodec`] for raw TCP.
pub(crate) struct TcpCodec {
    /// The framing decoder.
    splitter: Splitter,
    /// The session's wire format, for close notices.
    format: WireFormat,
}

impl TcpCodec {
    pub(crate) fn new(options: &TcpOptions, max_message_size: usize) -> Self {
        let (splitter, framing) = match options.framing {
            TcpFraming::Lines => (
                Splitter::Lines(LinesDecoder::new(max_message_size)),
                Framing::Lines,
            ),
            TcpFraming::LengthPrefixed => (
                Splitter::LengthPrefixed(LengthPrefixedDecoder::new(max_message_size)),
                Framing::LengthPrefixed,
            ),
        };
        TcpCodec {
            splitter,
            format: WireFormat {
                framing,
                protocol: options.protocol,
            },
        }
    }
}

impl StreamCodec for TcpCodec {
    fn decode(&mut self, input: &[u8]) -> Result<(usize, Option<Inbound>), CloseReason> {
        let r = match &mut self.splitter {
            Splitter::Lines(d) => d.decode(input),
            Splitter::LengthPrefixed(d) => d.decode(input),
        };
        let (used, payload) =
            r.map_err(|TooLarge { size, max }| CloseReason::MessageTooLarge { size, max })?;
        let item = payload.map(|p| match self.splitter {
            // A line is text when it is UTF-8; a length-prefixed frame is always binary data.
            Splitter::Lines(_) => Inbound::Message(Message::from_bytes(p)),
            Splitter::LengthPrefixed(_) => Inbound::Message(Message::binary(p)),
        });
        Ok((used, item))
    }

    fn close_notice(&self, reason: &CloseReason) -> Option<Bytes> {
        // A normal close of a raw stream is just the end of the stream, as in the classic
        // servers; every other reason is announced.
        (*reason != CloseReason::Normal).then(|| encode_close_notice(self.format, reason))
    }

    fn close_reply(&self, _code: Option<u16>) -> Option<Bytes> {
        None
    }

    fn shrink_idle(&mut self) {}
}

/// Kernel keepalive for every accepted connection: first probe after 60 s of silence, then every
/// 10 s; 3 unanswered probes end the connection (about 90 s after the peer vanished).
const KEEPALIVE: socket2::TcpKeepalive = socket2::TcpKeepalive::new()
    .with_time(Duration::from_secs(60))
    .with_interval(Duration::from_secs(10))
    .with_retries(3);

/// How long a refusal line may take to write before the socket is just dropped.
const REFUSAL_WRITE_TIMEOUT: Duration = Duration::from_secs(1);

/// Accepts TCP connections until shutdown. Transient errors never end the loop: resets and
/// aborts are ignored, anything else (EMFILE, ENFILE, ENOBUFS…) is logged and retried after a
/// short backoff, as axum's `serve` does.
pub(crate) async fn accept_loop<F, Fut>(
    server: Arc<ServerShared>,
    listener: TcpListener,
    on_accept: F,
) where
    F: Fn(Arc<ServerShared>, TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = server.shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                // Finds dead peers that will never send a FIN (unplugged, crashed host).
                let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&KEEPALIVE);
                server
                    .tracker
                    .spawn(on_accept(server.clone(), stream, peer));
            }
            Err(e) if is_connection_error(&e) => {}
            Err(e) => {
                tracing::error!(error = %e, "accept failed; retrying in 1s");
                tokio::select! {
                    _ = server.shutdown.cancelled() => return,
                    _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                }
            }
        }
    }
}

fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Runs one raw TCP connection: takes a slot (or refuses with an error line), opens the session
/// and drives it.
pub(crate) async fn serve_connection(
    server: Arc<ServerShared>,
    options: Arc<TcpOptions>,
    mut stream: TcpStream,
    peer: SocketAddr,
) {
    let format = WireFormat {
        framing: match options.framing {
            TcpFraming::Lines => Framing::Lines,
            TcpFraming::LengthPrefixed => Framing::LengthPrefixed,
        },
        protocol: options.protocol,
    };
    let Ok(permit) = server.permits.clone().try_acquire_owned() else {
        server.hub.stats().refused_full();
        let reason = CloseReason::ServerFull {
            max: server.config.limits.max_connections,
        };
        tracing::info!(%peer, transport = "tcp", %reason, "refused");
        refuse(&mut stream, format, &reason).await;
        return;
    };
    // With client auth on, the first message must be `AUTH <token>`; whatever the client sent
    // after it is handed to the connection below.
    let (token, early) = if server.token_secret.is_some() {
        match read_auth(
            &mut stream,
            options.framing,
            server.config.limits.handshake_timeout,
        )
        .await
        {
            Ok(v) => v,
            Err(reason) => {
                refuse(&mut stream, format, &reason).await;
                return;
            }
        }
    } else {
        (None, Vec::new())
    };
    let knock = Knock {
        transport: crate::Transport::Tcp,
        peer,
        format,
        channels: options.channels.clone(),
        token,
    };
    let session = match server.admit(knock).await {
        Ok(s) => s,
        Err(reason) => {
            refuse(&mut stream, format, &reason).await;
            return;
        }
    };
    let codec = TcpCodec::new(&options, server.config.limits.max_message_size);
    let mut conn = Connection::new(stream, codec, session.clone());
    let reason = conn.run(&early).await;
    drop(conn);
    drop(permit);
    server.finish_session(&session, &reason);
}

/// Reads the client's first message, which must carry its token: `AUTH <token>` (either
/// protocol) or `{"type":"auth","token":"…"}` (json), within `deadline`. Returns the token and
/// the bytes read past that message.
///
/// # Errors
/// [`CloseReason::Unauthorized`] for anything else, including silence until the deadline.
async fn read_auth(
    stream: &mut TcpStream,
    framing: TcpFraming,
    deadline: Duration,
) -> Result<(Option<String>, Vec<u8>), CloseReason> {
    // A token is at most MAX_TOKEN_LEN; allow the command word and framing around it.
    let max = crate::auth::MAX_TOKEN_LEN + 64;
    let mut lines = LinesDecoder::new(max);
    let mut prefixed = LengthPrefixedDecoder::new(max);
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let read = async {
        loop {
            let n = stream
                .read(&mut chunk)
                .await
                .map_err(|e| CloseReason::ConnectionLost(format!("reading the AUTH line: {e}")))?;
            if n == 0 {
                return Err(CloseReason::ConnectionLost(
                    "closed before sending AUTH".into(),
                ));
            }
            buf.extend_from_slice(&chunk[..n]);
            // The decoders keep the bytes they consumed; feed each byte once.
            loop {
                let decoded = match framing {
                    TcpFraming::Lines => lines.decode(&buf),
                    TcpFraming::LengthPrefixed => prefixed.decode(&buf),
                };
                match decoded {
                    Ok((used, Some(first))) => return Ok((used, first)),
                    Ok((0, None)) => break,
                    Ok((used, None)) => {
                        buf.drain(..used);
                    }
                    Err(TooLarge { .. }) => {
                        return Err(CloseReason::Unauthorized(
                            "first message must be AUTH <token>".into(),
                        ))
                    }
                }
            }
        }
    };
    let (used, first) = match tokio::time::timeout(deadline, read).await {
        Ok(r) => r?,
        Err(_) => {
            return Err(CloseReason::Unauthorized(
                "no AUTH <token> within the handshake timeout".into(),
            ))
        }
    };
    let rest = buf[used..].to_vec();
    Ok((Some(parse_auth(&first)?), rest))
}

/// The token of an auth message: `AUTH <token>` or `{"type":"auth","token":"…"}`.
///
/// # Errors
/// [`CloseReason::Unauthorized`] if the message is neither.
pub(crate) fn parse_auth(message: &[u8]) -> Result<String, CloseReason> {
    #[derive(serde::Deserialize)]
    #[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
    enum AuthCommand {
        Auth { token: String },
    }
    let text = std::str::from_utf8(message).unwrap_or("").trim();
    if let Some(token) = text
        .strip_prefix("AUTH ")
        .or_else(|| text.strip_prefix("auth "))
    {
        return Ok(token.trim().to_string());
    }
    match serde_json::from_str::<AuthCommand>(text) {
        Ok(AuthCommand::Auth { token }) => Ok(token),
        Err(_) => Err(CloseReason::Unauthorized(
            "first message must be AUTH <token>".into(),
        )),
    }
}

/// Writes one close notice and closes, bounded in time (the client may not be reading). Reads
/// and discards until the client closes too, so unread input cannot turn the close into a reset
/// that destroys the notice before the client reads it.
async fn refuse(stream: &mut TcpStream, format: WireFormat, reason: &CloseReason) {
    let notice = encode_close_notice(format, reason);
    let _ = tokio::time::timeout(REFUSAL_WRITE_TIMEOUT, async {
        stream.write_all(&notice).await?;
        stream.shutdown().await?;
        let mut sink = [0u8; 1024];
        while stream.read(&mut sink).await? > 0 {}
        io::Result::Ok(())
    })
    .await;
}
