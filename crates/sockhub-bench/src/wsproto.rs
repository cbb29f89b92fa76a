//! The client side of RFC 6455, reduced to what a load generator needs: a handshake with a
//! fixed key, frames masked once up front, and a scanner that walks server frames in place
//! (never buffering a payload; only a small prefix and control payloads are copied out).

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::BytesMut;
use sockhub::ws::codec::{self, OpCode};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use crate::target::WsTarget;

/// The masking key of every frame we send (RFC 6455 wants it unpredictable to defeat cache
/// poisoning by intermediaries; on loopback against our own servers a constant is fine).
pub(crate) const MASK: [u8; 4] = [0x5a, 0xc3, 0x17, 0x9e];
/// `Sec-WebSocket-Key` of every handshake (the RFC's example nonce).
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
/// Largest frame we accept from a server.
pub(crate) const MAX_FRAME: u64 = 64 << 20;

/// The upgrade request for `t`, built once and sent on every connection.
pub(crate) fn handshake_request(t: &WsTarget) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        t.path, t.host
    )
    .into_bytes()
}

/// One masked client frame.
pub(crate) fn client_frame(opcode: OpCode, payload: &[u8]) -> Vec<u8> {
    let mut dst = BytesMut::new();
    codec::encode_frame(opcode, payload, Some(MASK), &mut dst);
    dst.to_vec()
}

/// Offset of the payload in a client frame of `len` payload bytes.
pub(crate) fn client_header_len(len: usize) -> usize {
    2 + 4
        + match len {
            0..=125 => 0,
            126..=0xFFFF => 2,
            _ => 8,
        }
}

/// Writes `plain` into the payload of a masked frame at payload offset `at` (masking it).
pub(crate) fn patch_masked(frame: &mut [u8], payload_start: usize, at: usize, plain: &[u8]) {
    for (i, b) in plain.iter().enumerate() {
        let off = at + i;
        frame[payload_start + off] = b ^ MASK[off % 4];
    }
}

/// Opens a TCP connection (from `bind` if given) and performs the WebSocket handshake.
/// Returns the stream and any bytes the server sent after its 101 response.
pub(crate) async fn connect(
    addr: SocketAddr,
    bind: Option<SocketAddr>,
    request: &[u8],
    timeout: Duration,
) -> Result<(TcpStream, Vec<u8>), String> {
    connect_with(addr, bind, request, timeout, None).await
}

/// Socket options that make a client which stops reading push back on the server the way it
/// would across a real network, set before connecting (0: the kernel's default).
///
/// On loopback the MSS is ~64 KB, and Linux sizes a new connection's send buffer from MSS ×
/// initial window: the server's socket then takes ~4 MB (`tcp_wmem` max) before its writes
/// block, a minute of a 1,000 msg/s × 64 B channel. An Ethernet-sized MSS brings that to tens
/// of KB, and a small receive buffer keeps the client's side small too.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SlowSocket {
    /// `SO_RCVBUF` (the kernel doubles it).
    pub rcvbuf: u32,
    /// `TCP_MAXSEG`: the MSS announced to the server.
    pub mss: u32,
}

/// [`connect`] with [`SlowSocket`] options, when given.
pub(crate) async fn connect_with(
    addr: SocketAddr,
    bind: Option<SocketAddr>,
    request: &[u8],
    timeout: Duration,
    slow: Option<SlowSocket>,
) -> Result<(TcpStream, Vec<u8>), String> {
    let fut = async {
        let mut stream = tcp_connect_with(addr, bind, slow).await?;
        let rest = handshake(&mut stream, request).await?;
        Ok((stream, rest))
    };
    match tokio::time::timeout(timeout, fut).await {
        Ok(r) => r,
        Err(_) => Err("connect: timed out".into()),
    }
}

/// A TCP connection with `TCP_NODELAY`, bound to `bind` first when given. An explicit source
/// port spares the kernel its ephemeral-port search, which grows quadratic as the range fills
/// (past ~15,000 connections from one address it costs seconds of CPU, and a `bind(ip, 0)`
/// far more); if that port is taken, the kernel picks one on the same address.
pub(crate) async fn tcp_connect(
    addr: SocketAddr,
    bind: Option<SocketAddr>,
) -> Result<TcpStream, String> {
    tcp_connect_with(addr, bind, None).await
}

/// [`tcp_connect`] with [`SlowSocket`] options, when given.
pub(crate) async fn tcp_connect_with(
    addr: SocketAddr,
    bind: Option<SocketAddr>,
    slow: Option<SlowSocket>,
) -> Result<TcpStream, String> {
    let err = |e: io::Error| format!("connect: {}", io_kind(&e));
    let socket = || {
        if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
    };
    let mut sock = socket().map_err(err)?;
    if let Some(b) = bind {
        // Reuse lets an explicit port bind while an earlier run's socket is in TIME_WAIT.
        sock.set_reuseaddr(true).map_err(err)?;
        if let Err(e) = sock.bind(b) {
            if e.kind() != io::ErrorKind::AddrInUse || b.port() == 0 {
                return Err(err(e));
            }
            sock = socket().map_err(err)?;
            sock.bind(SocketAddr::new(b.ip(), 0)).map_err(err)?;
        }
    }
    if let Some(o) = slow {
        if o.rcvbuf > 0 {
            sock.set_recv_buffer_size(o.rcvbuf).map_err(err)?;
        }
        if o.mss > 0 {
            socket2::SockRef::from(&sock)
                .set_tcp_mss(o.mss)
                .map_err(err)?;
        }
    }
    let stream = sock.connect(addr).await.map_err(err)?;
    stream.set_nodelay(true).map_err(err)?;
    Ok(stream)
}

/// A short, stable name for an I/O error (used as an error-count key).
pub(crate) fn io_kind(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => format!("{} (os error {code})", e.kind()),
        None => e.kind().to_string(),
    }
}

/// Sends the upgrade request and reads the response headers.
async fn handshake(s: &mut TcpStream, request: &[u8]) -> Result<Vec<u8>, String> {
    s.write_all(request)
        .await
        .map_err(|e| format!("handshake: {}", io_kind(&e)))?;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 1024];
    let end = loop {
        let n = s
            .read(&mut chunk)
            .await
            .map_err(|e| format!("handshake: {}", io_kind(&e)))?;
        if n == 0 {
            return Err(if buf.is_empty() {
                "handshake: connection closed without a response".into()
            } else {
                format!("handshake: {}", first_lines(&buf))
            });
        }
        buf.extend_from_slice(&chunk[..n]);
        if let Some(i) = find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > 16 * 1024 {
            return Err("handshake: response headers over 16 KiB".into());
        }
    };
    let head = std::str::from_utf8(&buf[..end]).map_err(|_| "handshake: non-UTF-8 response")?;
    let status = head.lines().next().unwrap_or_default();
    if !status.starts_with("HTTP/1.1 101") {
        return Err(format!("handshake: {}", first_lines(&buf)));
    }
    let accept = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("sec-websocket-accept")
            .then(|| v.trim())
    });
    if accept != Some(codec::accept_key(KEY.as_bytes()).as_str()) {
        return Err("handshake: wrong or missing Sec-WebSocket-Accept".into());
    }
    Ok(buf[end..].to_vec())
}

/// The status line of an HTTP response, and the first line of its body when there is one.
fn first_lines(buf: &[u8]) -> String {
    let text = String::from_utf8_lossy(buf);
    let status = text.lines().next().unwrap_or_default().trim().to_string();
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.lines().next().unwrap_or_default().trim().to_string())
        .unwrap_or_default();
    let mut s = if body.is_empty() {
        status
    } else {
        format!("{status}: {body}")
    };
    s.truncate(160);
    s
}

/// Position of `needle` in `hay`.
pub(crate) fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// What one `read` produced.
pub(crate) enum ReadOutcome {
    /// `n` bytes; `drained` when the read was short (the socket is empty, readiness cleared).
    Data(usize, bool),
    /// The peer closed.
    Eof,
    /// Nothing to read.
    WouldBlock,
    /// A socket error.
    Error(io::Error),
}

/// One `read` into `buf`. A short read means the socket's receive queue is empty, so the
/// readiness is cleared right away: the next wait goes straight to epoll instead of costing
/// another `read` that would only say `EAGAIN`.
pub(crate) fn read_once(stream: &TcpStream, buf: &mut [u8]) -> ReadOutcome {
    let mut got = 0;
    let cap = buf.len();
    let r = stream.try_io(tokio::io::Interest::READABLE, || {
        match stream.try_read(buf) {
            Ok(n) if n > 0 && n < cap => {
                got = n;
                Err(io::ErrorKind::WouldBlock.into())
            }
            other => other,
        }
    });
    match r {
        Ok(0) => ReadOutcome::Eof,
        Ok(n) => ReadOutcome::Data(n, false),
        Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
            if got > 0 {
                ReadOutcome::Data(got, true)
            } else {
                ReadOutcome::WouldBlock
            }
        }
        Err(e) => ReadOutcome::Error(e),
    }
}

/// A server frame, as the scanner reports it.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Frame<'a> {
    /// A data frame (text, binary or continuation); `fin` ends a message. `prefix` holds the
    /// first bytes of its payload (as many as the scanner was asked to capture).
    Data {
        /// Last frame of its message.
        fin: bool,
        /// Payload bytes captured.
        prefix: &'a [u8],
    },
    /// A ping with its payload (answer with a pong).
    Ping(&'a [u8]),
    /// A pong with its payload.
    Pong(&'a [u8]),
    /// A close frame with its code, if any.
    Close(Option<u16>),
}

/// Walks unmasked server frames across reads. Keeps at most a partial header and a captured
/// payload prefix (or control payload); payload bytes are otherwise only skipped.
pub(crate) struct Scanner {
    /// Data-payload bytes to capture per frame.
    capture: usize,
    /// Partial header.
    hdr: [u8; 14],
    hdr_len: usize,
    /// Inside a payload.
    in_payload: bool,
    /// First header byte of the current frame (FIN and opcode).
    b0: u8,
    /// Payload bytes of the current frame still to come.
    remaining: u64,
    /// Captured payload bytes.
    cap: [u8; 125],
    cap_len: usize,
    cap_want: usize,
}

impl Scanner {
    /// A scanner that captures the first `capture` (≤ 125) payload bytes of each data frame.
    pub(crate) fn new(capture: usize) -> Self {
        Scanner {
            capture: capture.min(125),
            hdr: [0; 14],
            hdr_len: 0,
            in_payload: false,
            b0: 0,
            remaining: 0,
            cap: [0; 125],
            cap_len: 0,
            cap_want: 0,
        }
    }

    /// Feeds bytes; calls `on` for each complete frame.
    ///
    /// # Errors
    /// A protocol violation by the server (masked frame, reserved bits or opcodes, oversized
    /// or fragmented control frame, a frame over [`MAX_FRAME`]).
    pub(crate) fn feed(
        &mut self,
        mut input: &[u8],
        on: &mut impl FnMut(Frame<'_>),
    ) -> Result<(), &'static str> {
        while !input.is_empty() {
            if !self.in_payload {
                if self.hdr_len == 0 && input.len() >= 2 {
                    let n = header_len(input[1]);
                    if input.len() >= n {
                        self.start_frame(&input[..n])?;
                        input = &input[n..];
                        if self.remaining == 0 {
                            self.emit(on);
                        }
                        continue;
                    }
                }
                self.hdr[self.hdr_len] = input[0];
                self.hdr_len += 1;
                input = &input[1..];
                if self.hdr_len >= 2 && self.hdr_len == header_len(self.hdr[1]) {
                    let h = self.hdr;
                    self.start_frame(&h[..self.hdr_len])?;
                    self.hdr_len = 0;
                    if self.remaining == 0 {
                        self.emit(on);
                    }
                }
                continue;
            }
            let take = self.remaining.min(input.len() as u64) as usize;
            if self.cap_len < self.cap_want {
                let c = (self.cap_want - self.cap_len).min(take);
                self.cap[self.cap_len..self.cap_len + c].copy_from_slice(&input[..c]);
                self.cap_len += c;
            }
            input = &input[take..];
            self.remaining -= take as u64;
            if self.remaining == 0 {
                self.emit(on);
            }
        }
        Ok(())
    }

    fn start_frame(&mut self, h: &[u8]) -> Result<(), &'static str> {
        let (b0, b1) = (h[0], h[1]);
        if b0 & 0x70 != 0 {
            return Err("server frame with reserved bits set");
        }
        if b1 & 0x80 != 0 {
            return Err("masked frame from server");
        }
        let opcode = b0 & 0x0f;
        let control = match opcode {
            0..=2 => false,
            8..=10 => true,
            _ => return Err("server frame with a reserved opcode"),
        };
        let len = match b1 & 0x7f {
            126 => u64::from(u16::from_be_bytes([h[2], h[3]])),
            127 => u64::from_be_bytes(h[2..10].try_into().unwrap_or([0xff; 8])),
            n => u64::from(n),
        };
        if control && (len > 125 || b0 & 0x80 == 0) {
            return Err("invalid control frame from server");
        }
        if len > MAX_FRAME {
            return Err("server frame over 64 MiB");
        }
        self.b0 = b0;
        self.remaining = len;
        self.in_payload = true;
        self.cap_len = 0;
        self.cap_want = if control {
            len as usize
        } else {
            (len as usize).min(self.capture)
        };
        Ok(())
    }

    fn emit(&mut self, on: &mut impl FnMut(Frame<'_>)) {
        self.in_payload = false;
        let cap = &self.cap[..self.cap_len];
        on(match self.b0 & 0x0f {
            9 => Frame::Ping(cap),
            10 => Frame::Pong(cap),
            8 => Frame::Close((cap.len() >= 2).then(|| u16::from_be_bytes([cap[0], cap[1]]))),
            _ => Frame::Data {
                fin: self.b0 & 0x80 != 0,
                prefix: cap,
            },
        });
    }
}

/// Header length announced by the second header byte.
fn header_len(b1: u8) -> usize {
    let ext = match b1 & 0x7f {
        126 => 2,
        127 => 8,
        _ => 0,
    };
    2 + ext + if b1 & 0x80 != 0 { 4 } else { 0 }
}

/// A pong (masked) answering a ping's payload.
pub(crate) fn pong(payload: &[u8]) -> Vec<u8> {
    client_frame(OpCode::Pong, payload)
}

/// `v` as 16 lowercase hex digits.
pub(crate) fn hex16(v: u64) -> [u8; 16] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; 16];
    for (i, o) in out.iter_mut().enumerate() {
        *o = DIGITS[((v >> (60 - 4 * i)) & 0xf) as usize];
    }
    out
}

/// Parses 16 hex digits.
pub(crate) fn parse_hex16(s: &[u8]) -> Option<u64> {
    if s.len() < 16 {
        return None;
    }
    let mut v = 0u64;
    for &c in &s[..16] {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = v << 4 | u64::from(d);
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn collect(s: &mut Scanner, input: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        s.feed(input, &mut |f| out.push(format!("{f:?}"))).unwrap();
        out
    }

    #[test]
    fn scans_frames_split_anywhere() {
        let mut wire = Vec::new();
        wire.extend_from_slice(&codec::server_frame(OpCode::Text, b"0123456789abcdefXYZ"));
        wire.extend_from_slice(&codec::server_frame(OpCode::Ping, b"pp"));
        wire.extend_from_slice(&codec::server_frame(OpCode::Binary, &[7u8; 300]));
        wire.extend_from_slice(&codec::server_frame(OpCode::Binary, &[9u8; 70_000]));
        wire.extend_from_slice(&codec::server_frame(OpCode::Text, b""));
        wire.extend_from_slice(&codec::close_frame(4100, "slow"));
        let whole = collect(&mut Scanner::new(16), &wire);
        assert_eq!(whole.len(), 6);
        assert!(whole[0].contains("fin: true"));
        assert_eq!(
            whole[1],
            format!("{:?}", Frame::Ping(b"pp")),
            "control payloads are captured"
        );
        assert_eq!(whole[5], "Close(Some(4100))");
        for step in [1, 2, 3, 7, 13, 1000] {
            let mut s = Scanner::new(16);
            let mut got = Vec::new();
            for chunk in wire.chunks(step) {
                got.extend(collect(&mut s, chunk));
            }
            assert_eq!(got, whole, "chunks of {step}");
        }
    }

    #[test]
    fn rejects_masked_and_reserved() {
        let masked = client_frame(OpCode::Text, b"hi");
        assert!(Scanner::new(0).feed(&masked, &mut |_| {}).is_err());
        assert!(Scanner::new(0).feed(&[0xc1, 0x00], &mut |_| {}).is_err());
        assert!(Scanner::new(0).feed(&[0x83, 0x00], &mut |_| {}).is_err());
    }

    #[test]
    fn hex_round_trip_and_patch() {
        for v in [0, 1, 0xdead_beef, u64::MAX] {
            assert_eq!(parse_hex16(&hex16(v)), Some(v));
        }
        assert_eq!(parse_hex16(b"xyz"), None);
        let mut f = client_frame(OpCode::Text, &[b'x'; 20]);
        let start = client_header_len(20);
        patch_masked(&mut f, start, 2, b"ab");
        let mut payload = f[start..].to_vec();
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= MASK[i % 4];
        }
        assert_eq!(&payload[..5], b"xxabx");
    }
}
