//! `sockhub connect URL`: a netcat/websocat-style client for `ws://`, `tcp://` and `udp://`.
//! Stdin lines go out as messages; what arrives goes to stdout. With `--send TEXT` it sends once
//! and prints replies until the server closes or `--timeout` seconds pass with nothing received
//! (the classic PHP client's behaviour).

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use bytes::{Buf, BytesMut};
use clap::Args;
use futures_util::{SinkExt, StreamExt};
use sockhub::TcpFraming;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpStream, UdpSocket};
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// Flags of `sockhub connect`.
#[derive(Args, Debug)]
pub struct ConnectArgs {
    /// Where to connect: ws://HOST:PORT[/PATH][?channel=NAME&protocol=json], tcp://HOST:PORT,
    /// udp://HOST:PORT.
    url: String,
    /// Send TEXT once instead of reading stdin, then print replies until the server closes or
    /// --timeout passes. Escapes \n, \r, \t and \\ are interpreted, so the classic client is
    /// `--send 'Ho\r\nfirst blood\r\n'`. Over TCP lines a final newline is added if missing.
    #[arg(long, value_name = "TEXT")]
    send: Option<String>,
    /// Stop after this many seconds with nothing received. [default: 5 with --send, none
    /// otherwise]
    #[arg(long, value_name = "SECS")]
    timeout: Option<f64>,
    /// Framing for tcp:// URLs: `lines` or `length-prefixed`. [default: lines]
    #[arg(long, value_name = "FRAMING", value_parser = crate::config::parse_framing)]
    framing: Option<TcpFraming>,
}

/// An open client connection of one of the three kinds.
enum Conn {
    Tcp {
        stream: TcpStream,
        framing: TcpFraming,
        /// Received bytes not yet printed (length-prefixed framing only).
        buf: BytesMut,
    },
    Udp(Box<Udp>),
    Ws(Box<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>>),
}

/// A `udp://` connection, with sockhub's return-routability exchange.
struct Udp {
    /// Connected to the server.
    socket: UdpSocket,
    /// Whether the first message (and the cookie exchange before it) was sent.
    started: bool,
    /// Datagrams that arrived while waiting for the cookie, printed first.
    early: std::collections::VecDeque<Vec<u8>>,
}

/// How long the first send waits for a cookie before giving up (a server that is not sockhub,
/// or a lost datagram: the server then offers a cookie later, and it is echoed when it comes).
const COOKIE_WAIT: Duration = Duration::from_secs(1);

/// A cookie request (the raw form works on raw and json listeners alike).
const COOKIE_REQUEST: &[u8] = b"SOCKHUB-COOKIE";

/// Whether a datagram is a cookie from the server (raw or json form), to be sent back as is.
fn is_cookie(d: &[u8]) -> bool {
    d.starts_with(b"SOCKHUB-COOKIE ") || d.starts_with(br#"{"type":"cookie","#)
}

impl Udp {
    /// sockhub sends a UDP source at most 3x what it sent until the source echoes a cookie.
    /// Before the first message: ask for one and echo it, so the session opens validated and
    /// every broadcast is printed from the start. Returns the cookie, echoed once more after
    /// the first message (with client auth, `AUTH <token>` opens the session, not the echo).
    async fn validate(&mut self) -> Result<Option<Vec<u8>>, String> {
        self.socket
            .send(COOKIE_REQUEST)
            .await
            .map_err(|e| e.to_string())?;
        let deadline = tokio::time::Instant::now() + COOKIE_WAIT;
        let mut buf = vec![0u8; 65_536];
        loop {
            let n = match tokio::time::timeout_at(deadline, self.socket.recv(&mut buf)).await {
                Ok(r) => r.map_err(|e| e.to_string())?,
                Err(_) => return Ok(None), // no cookie: carry on unvalidated
            };
            let d = &buf[..n];
            if is_cookie(d) {
                self.socket.send(d).await.map_err(|e| e.to_string())?;
                return Ok(Some(d.to_vec()));
            }
            self.early.push_back(d.to_vec());
        }
    }
}

/// Something received.
enum Received {
    /// Bytes to print as they are.
    Bytes(Vec<u8>),
    /// The server closed; the text says how.
    Closed(String),
}

pub fn main(args: ConnectArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("sockhub connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    rt.block_on(run(args))
}

async fn run(args: ConnectArgs) -> ExitCode {
    let mut conn = match open(&args).await {
        Ok(c) => c,
        Err(e) => {
            eprintln!("sockhub connect: {e}");
            return ExitCode::FAILURE;
        }
    };
    let timeout = args
        .timeout
        .or(args.send.as_ref().map(|_| 5.0))
        .filter(|t| t.is_finite() && *t > 0.0)
        .map(Duration::from_secs_f64);
    let mut stdin = (args.send.is_none()).then(|| BufReader::new(tokio::io::stdin()).lines());
    if let Some(text) = &args.send {
        if let Err(e) = conn.send(&unescape(text)).await {
            eprintln!("sockhub connect: send failed: {e}");
            return ExitCode::FAILURE;
        }
    }
    let mut out = std::io::stdout();
    loop {
        let idle = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            line = async { stdin.as_mut().expect("guarded").next_line().await }, if stdin.is_some() => {
                match line {
                    Ok(Some(line)) => {
                        if let Err(e) = conn.send(&line).await {
                            eprintln!("sockhub connect: send failed: {e}");
                            return ExitCode::FAILURE;
                        }
                    }
                    // End of input: stop sending, keep printing until the server closes.
                    _ => {
                        stdin = None;
                        conn.finish_sending().await;
                    }
                }
            }
            r = conn.recv() => match r {
                Ok(Received::Bytes(b)) => {
                    let _ = out.write_all(&b);
                    let _ = out.flush();
                }
                Ok(Received::Closed(how)) => {
                    eprintln!("sockhub connect: {how}");
                    return ExitCode::SUCCESS;
                }
                Err(e) => {
                    eprintln!("sockhub connect: {e}");
                    return ExitCode::FAILURE;
                }
            },
            _ = idle => {
                eprintln!("sockhub connect: nothing received for {:.1}s; done", timeout.unwrap_or_default().as_secs_f64());
                return ExitCode::SUCCESS;
            }
        }
    }
}

async fn open(args: &ConnectArgs) -> Result<Conn, String> {
    let url = url::Url::parse(&args.url).map_err(|e| format!("bad URL {:?}: {e}", args.url))?;
    let hostport = || -> Result<String, String> {
        let host = url.host_str().ok_or("URL has no host")?;
        let port = url.port().ok_or("URL has no port")?;
        Ok(if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        })
    };
    match url.scheme() {
        "tcp" => {
            let addr = hostport()?;
            let stream = TcpStream::connect(&addr)
                .await
                .map_err(|e| format!("cannot connect to tcp://{addr}: {e}"))?;
            Ok(Conn::Tcp {
                stream,
                framing: args.framing.unwrap_or_default(),
                buf: BytesMut::new(),
            })
        }
        "udp" => {
            let addr = hostport()?;
            let target = tokio::net::lookup_host(&addr)
                .await
                .map_err(|e| format!("cannot resolve {addr}: {e}"))?
                .next()
                .ok_or_else(|| format!("cannot resolve {addr}"))?;
            let local = if target.is_ipv6() { "[::]:0" } else { "0.0.0.0:0" };
            let socket = UdpSocket::bind(local).await.map_err(|e| e.to_string())?;
            socket
                .connect(target)
                .await
                .map_err(|e| format!("cannot connect to udp://{addr}: {e}"))?;
            Ok(Conn::Udp(Box::new(Udp {
                socket,
                started: false,
                early: Default::default(),
            })))
        }
        "ws" => {
            let (ws, _resp) = tokio_tungstenite::connect_async(args.url.as_str())
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", args.url))?;
            Ok(Conn::Ws(Box::new(ws)))
        }
        "wss" => Err("wss:// is not supported by this client; use ws:// (TLS belongs in a proxy in front of sockhub)".into()),
        other => Err(format!("unsupported scheme {other:?}: use ws://, tcp:// or udp://")),
    }
}

impl Conn {
    async fn send(&mut self, text: &str) -> Result<(), String> {
        match self {
            Conn::Tcp {
                stream, framing, ..
            } => {
                let mut bytes = Vec::with_capacity(text.len() + 4);
                match framing {
                    TcpFraming::Lines => {
                        bytes.extend_from_slice(text.as_bytes());
                        if !text.ends_with('\n') {
                            bytes.push(b'\n');
                        }
                    }
                    TcpFraming::LengthPrefixed => {
                        let len = u32::try_from(text.len()).map_err(|_| "message too long")?;
                        bytes.extend_from_slice(&len.to_be_bytes());
                        bytes.extend_from_slice(text.as_bytes());
                    }
                }
                stream.write_all(&bytes).await.map_err(|e| e.to_string())
            }
            Conn::Udp(u) => {
                let cookie = if u.started {
                    None
                } else {
                    u.started = true;
                    u.validate().await?
                };
                u.socket
                    .send(text.as_bytes())
                    .await
                    .map_err(|e| e.to_string())?;
                if let Some(cookie) = cookie {
                    // A duplicate when the echo opened the session; the proof when the first
                    // message (`AUTH <token>`) did.
                    u.socket.send(&cookie).await.map_err(|e| e.to_string())?;
                }
                Ok(())
            }
            Conn::Ws(ws) => ws
                .send(WsMessage::text(text))
                .await
                .map_err(|e| e.to_string()),
        }
    }

    /// No more input: half-close TCP, send a WebSocket close.
    async fn finish_sending(&mut self) {
        match self {
            Conn::Tcp { stream, .. } => {
                let _ = stream.shutdown().await;
            }
            Conn::Udp(_) => {}
            Conn::Ws(ws) => {
                let _ = SinkExt::close(ws).await;
            }
        }
    }

    async fn recv(&mut self) -> Result<Received, String> {
        match self {
            Conn::Tcp {
                stream,
                framing: TcpFraming::Lines,
                ..
            } => {
                let mut buf = vec![0u8; 16 * 1024];
                let n = stream.read(&mut buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Ok(Received::Closed("server closed the connection".into()));
                }
                buf.truncate(n);
                Ok(Received::Bytes(buf))
            }
            Conn::Tcp {
                stream,
                framing: TcpFraming::LengthPrefixed,
                buf,
            } => loop {
                if buf.len() >= 4 {
                    let len = u32::from_be_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                    if buf.len() >= 4 + len {
                        buf.advance(4);
                        let mut frame = buf.split_to(len).to_vec();
                        frame.push(b'\n');
                        return Ok(Received::Bytes(frame));
                    }
                }
                let n = stream.read_buf(buf).await.map_err(|e| e.to_string())?;
                if n == 0 {
                    return Ok(Received::Closed("server closed the connection".into()));
                }
            },
            Conn::Udp(u) => {
                if let Some(mut d) = u.early.pop_front() {
                    d.push(b'\n');
                    return Ok(Received::Bytes(d));
                }
                let mut buf = vec![0u8; 65_536];
                loop {
                    let n = u.socket.recv(&mut buf).await.map_err(|e| e.to_string())?;
                    if is_cookie(&buf[..n]) {
                        // The server offers a cookie to a source it has not validated yet.
                        u.socket.send(&buf[..n]).await.map_err(|e| e.to_string())?;
                        continue;
                    }
                    buf.truncate(n);
                    buf.push(b'\n');
                    return Ok(Received::Bytes(buf));
                }
            }
            Conn::Ws(ws) => loop {
                match ws.next().await {
                    None => return Ok(Received::Closed("connection closed".into())),
                    Some(Err(e)) => return Err(e.to_string()),
                    Some(Ok(WsMessage::Text(t))) => {
                        let mut v = t.as_bytes().to_vec();
                        v.push(b'\n');
                        return Ok(Received::Bytes(v));
                    }
                    Some(Ok(WsMessage::Binary(b))) => {
                        let mut v = b.to_vec();
                        v.push(b'\n');
                        return Ok(Received::Bytes(v));
                    }
                    Some(Ok(WsMessage::Close(frame))) => {
                        return Ok(Received::Closed(match frame {
                            Some(f) => {
                                format!("closed by server: {} {}", u16::from(f.code), f.reason)
                            }
                            None => "closed by server".into(),
                        }))
                    }
                    Some(Ok(_)) => {} // ping/pong: answered by tungstenite
                }
            },
        }
    }
}

/// Interprets `\n`, `\r`, `\t` and `\\`; any other backslash is kept as it is.
fn unescape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('r') => out.push('\r'),
            Some('t') => out.push('\t'),
            Some('\\') => out.push('\\'),
            Some(other) => {
                out.push('\\');
                out.push(other);
            }
            None => out.push('\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::unescape;

    #[test]
    fn classic_client_escapes() {
        assert_eq!(unescape(r"Ho\r\nfirst blood\r\n"), "Ho\r\nfirst blood\r\n");
        assert_eq!(unescape(r"a\\n\q"), "a\\n\\q");
    }
}
