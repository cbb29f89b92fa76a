//! The kernel floor of a broadcast (peer for `bench/peers/run`; not a server to deploy).
//!
//! `floor-peer --port PORT --mode broadcast|echo`, WebSocket on any path of 127.0.0.1.
//!
//! broadcast: when a data frame arrives, the thread that read it encodes the server frame once
//! and writes it to every OTHER connection with one plain blocking `write` each, in a tight
//! loop. No runtime, no queue, no task or thread woken per subscriber, nothing allocated per
//! delivery: what is left is what the kernel charges the writing process for one small `send`
//! on loopback, which is the least a server that writes each message to each subscriber
//! separately can pay. (A subscriber that stops reading blocks the others: that is why nobody
//! should serve clients this way.) echo: each data frame is written back (one read, one write).
//!
//! One thread per connection (64 KiB stacks), blocking I/O; the subscribers' threads sleep in
//! `read` for the whole run. Frames are assumed unfragmented (the load generator sends them so).

use std::io::{self, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};

/// The connections a broadcast goes to (write halves).
type Registry = Arc<Mutex<Vec<(u64, TcpStream)>>>;

/// Largest request head and frame accepted.
const BUF: usize = 64 * 1024;

fn args() -> (u16, bool) {
    let mut port = 9001u16;
    let mut broadcast = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => port = it.next().and_then(|v| v.parse().ok()).expect("--port PORT"),
            "--mode" => match it.next().as_deref() {
                Some("echo") => broadcast = false,
                Some("broadcast") => broadcast = true,
                _ => panic!("--mode echo|broadcast"),
            },
            other => panic!("unknown argument {other}"),
        }
    }
    (port, broadcast)
}

fn main() {
    let (port, broadcast) = args();
    let listener = TcpListener::bind(("127.0.0.1", port)).expect("bind");
    let registry: Registry = Arc::default();
    for (id, stream) in (0u64..).zip(listener.incoming()) {
        let Ok(stream) = stream else { continue };
        let registry = registry.clone();
        let spawned = std::thread::Builder::new()
            .stack_size(64 * 1024)
            .spawn(move || {
                let _ = serve(stream, id, broadcast, &registry);
                registry.lock().unwrap().retain(|(other, _)| *other != id);
            });
        if spawned.is_err() {
            eprintln!("floor-peer: cannot start a thread for connection {id}");
        }
    }
}

/// Answers the upgrade, then reads frames until the client closes.
fn serve(mut stream: TcpStream, id: u64, broadcast: bool, registry: &Registry) -> io::Result<()> {
    stream.set_nodelay(true)?;
    let mut buf = vec![0u8; BUF];
    let mut have = handshake(&mut stream, &mut buf)?;
    if broadcast {
        registry.lock().unwrap().push((id, stream.try_clone()?));
    }
    let mut out = Vec::with_capacity(BUF + 14);
    loop {
        let mut start = 0;
        while let Some((opcode, payload, end)) = next_frame(&mut buf[start..have]) {
            let payload = start + payload.start..start + payload.end;
            start += end;
            match opcode {
                0x1 | 0x2 => {
                    server_frame(&mut out, opcode, &buf[payload]);
                    if broadcast {
                        let peers = registry.lock().unwrap();
                        for (other, peer) in peers.iter() {
                            if *other != id {
                                let _ = (&*peer).write_all(&out);
                            }
                        }
                    } else {
                        stream.write_all(&out)?;
                    }
                }
                0x8 => {
                    server_frame(&mut out, 0x8, &[]);
                    let _ = stream.write_all(&out);
                    return Ok(());
                }
                0x9 => {
                    server_frame(&mut out, 0xA, &buf[payload]);
                    stream.write_all(&out)?;
                }
                _ => {}
            }
        }
        buf.copy_within(start..have, 0);
        have -= start;
        if have == buf.len() {
            return Err(io::Error::other("frame larger than the buffer"));
        }
        let n = stream.read(&mut buf[have..])?;
        if n == 0 {
            return Ok(());
        }
        have += n;
    }
}

/// Reads the upgrade request, answers 101; returns how many bytes after the request are at the
/// front of `buf`.
fn handshake(stream: &mut TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    let mut have = 0;
    let end = loop {
        let n = stream.read(&mut buf[have..])?;
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
        if let Some(p) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            break p + 4;
        }
        if have == buf.len() {
            return Err(io::Error::other("request head too large"));
        }
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let key = head
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-key")
                .then(|| value.trim().to_string())
        })
        .ok_or_else(|| io::Error::other("no Sec-WebSocket-Key"))?;
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    stream.write_all(
        format!(
            "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Accept: {accept}\r\n\r\n"
        )
        .as_bytes(),
    )?;
    buf.copy_within(end..have, 0);
    Ok(have - end)
}

/// The first complete (masked, client) frame of `input`, unmasked in place: its opcode, the
/// range of its payload, and where it ends.
fn next_frame(input: &mut [u8]) -> Option<(u8, std::ops::Range<usize>, usize)> {
    if input.len() < 2 {
        return None;
    }
    let opcode = input[0] & 0x0F;
    let masked = input[1] & 0x80 != 0;
    let (len, mut pos) = match input[1] & 0x7F {
        126 => (u16::from_be_bytes(input.get(2..4)?.try_into().ok()?) as usize, 4),
        127 => (u64::from_be_bytes(input.get(2..10)?.try_into().ok()?) as usize, 10),
        short => (usize::from(short), 2),
    };
    let mask: Option<[u8; 4]> = if masked {
        let m = input.get(pos..pos + 4)?.try_into().ok()?;
        pos += 4;
        Some(m)
    } else {
        None
    };
    let end = pos.checked_add(len)?;
    let payload = input.get_mut(pos..end)?;
    if let Some(m) = mask {
        for (i, b) in payload.iter_mut().enumerate() {
            *b ^= m[i & 3];
        }
    }
    Some((opcode, pos..end, end))
}

/// An unmasked server frame (FIN set) into `out`.
fn server_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8]) {
    out.clear();
    out.push(0x80 | opcode);
    match payload.len() {
        n if n < 126 => out.push(n as u8),
        n if n <= usize::from(u16::MAX) => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}
