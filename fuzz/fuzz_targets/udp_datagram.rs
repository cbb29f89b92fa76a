//! `udp_datagram`: UDP return-routability (`transport::udp::validation`): the control-datagram
//! parser, cookies, and the per-source credit, driven the way the UDP receive loop and peer
//! tasks drive them, by up to 8 sources of which some receive what is sent to them (they can
//! echo a cookie) and some are spoofed (they never see a reply).
//!
//! Checked after every step:
//! - **no amplification**: until a source is validated, everything sent to its address —
//!   replies to requests, offered cookies, queued frames — totals at most 3× what it sent;
//! - a source is validated only by echoing a cookie that was sent to *its* address in this
//!   epoch or the one before (spoofed sources never are, whatever they send);
//! - control datagrams are only the documented forms (`SOCKHUB-COOKIE…` on any listener, a
//!   `{"type":"cookie"…}` object on json listeners), and a cookie re-encoded parses back to
//!   itself;
//! - once validated, a source is sent everything.
//!
//! Input: byte 0: bit 0 json listener, bit 1 address validation off. Then steps, each an
//! opcode byte `o` (source = `o >> 5`; sources 0–3 receive, 4–7 are spoofed) and its operands:
//! `o & 7` = 0 datagram (length byte, then that many bytes), 1 echo the last cookie the source
//! received, 2 a frame of (operand byte × 4) bytes queued for the source, 3 next epoch,
//! 4 cookie request (raw form), 5 cookie request (json form), 6–7 a made-up echo (8 bytes).
#![no_main]

use std::net::SocketAddr;

use libfuzzer_sys::fuzz_target;
use sockhub::fuzzing::{
    encode_cookie, encode_request, parse_control, Answer, Control, CookieJar, Credit, Form,
    Validator, COOKIE_LEN, MAX_AMPLIFICATION,
};
use sockhub::Protocol;

#[derive(Default)]
struct Source {
    /// Its session's credit, if it has a session.
    session: Option<Credit>,
    /// Bytes it sent / was sent while not validated (cumulative).
    received: usize,
    sent: usize,
    /// The last cookie datagram delivered to it (receiving sources only).
    last_cookie: Option<Vec<u8>>,
    /// The cookies sent to its address: (cookie, epoch).
    issued: Vec<([u8; COOKIE_LEN], u64)>,
    /// It was validated (by the server's reckoning).
    validated: bool,
}

const KEY: [u8; 32] = *b"fuzzing key, not a secret at all";

fuzz_target!(|data: &[u8]| {
    let Some((&flags, mut rest)) = data.split_first() else {
        return;
    };
    let protocol = if flags & 1 != 0 {
        Protocol::Json
    } else {
        Protocol::Raw
    };
    let enabled = flags & 2 == 0;
    let validator = Validator::new(CookieJar::new(KEY), enabled, protocol);
    let mut sources: Vec<Source> = (0..8).map(|_| Source::default()).collect();
    let addr = |i: usize| SocketAddr::from(([127, 0, 0, 2 + (i as u8 & 1)], 4000 + i as u16));
    let mut epoch = 0u64;

    while let Some((&op, r)) = rest.split_first() {
        rest = r;
        let i = usize::from(op >> 5);
        let a = addr(i);
        let datagram: Vec<u8> = match op & 7 {
            0 => {
                let Some((&len, r)) = rest.split_first() else {
                    break;
                };
                let len = usize::from(len).min(r.len());
                let (d, r) = r.split_at(len);
                rest = r;
                d.to_vec()
            }
            1 => match &sources[i].last_cookie {
                Some(c) => c.clone(),
                None => continue,
            },
            2 => {
                let Some((&len, r)) = rest.split_first() else {
                    break;
                };
                rest = r;
                let len = usize::from(len) * 4;
                let s = &mut sources[i];
                let allowed = s.session.as_mut().map(|credit| {
                    let ok = credit.spend(len);
                    assert!(
                        ok || !credit.is_validated(),
                        "a validated source is sent everything"
                    );
                    ok
                });
                if allowed == Some(true) {
                    deliver(s, &vec![b'm'; len], i, epoch);
                }
                check(&sources[i], i, enabled);
                continue;
            }
            3 => {
                epoch += 1;
                continue;
            }
            4 => encode_request(Form::Raw).to_vec(),
            5 => encode_request(Form::Json).to_vec(),
            _ => {
                if rest.len() < COOKIE_LEN {
                    break;
                }
                let (c, r) = rest.split_at(COOKIE_LEN);
                rest = r;
                let mut cookie = [0u8; COOKIE_LEN];
                cookie.copy_from_slice(c);
                encode_cookie(if op & 1 == 0 { Form::Raw } else { Form::Json }, &cookie).to_vec()
            }
        };
        let n = datagram.len();
        let s = &mut sources[i];
        if !s.validated {
            s.received += n;
        }
        if let Some(credit) = &mut s.session {
            credit.received(n);
        }
        let control = parse_control(protocol, &datagram);
        if let Some(c) = control {
            // Only the documented forms are control datagrams.
            assert!(
                datagram.starts_with(b"SOCKHUB-COOKIE")
                    || (protocol == Protocol::Json
                        && datagram.windows(8).any(|w| w == b"\"cookie\"")),
                "{:?} taken for a control datagram",
                String::from_utf8_lossy(&datagram)
            );
            if let Control::Echo(form, cookie) = c {
                let again = encode_cookie(form, &cookie);
                assert_eq!(parse_control(protocol, &again), Some(c));
            }
        }
        let genuine = |s: &Source, c: &Control| match c {
            Control::Echo(_, cookie) => s
                .issued
                .iter()
                .any(|(k, e)| k == cookie && (*e == epoch || *e + 1 == epoch)),
            Control::Request(_) => false,
        };
        let before = s.session.as_ref().is_some_and(Credit::is_validated);
        let mut replies = Vec::new();
        match (&mut s.session, control) {
            (Some(credit), Some(c)) => {
                if let Answer::Reply(r) = validator.on_control(a, c, Some(credit), n, epoch) {
                    replies.push(r);
                }
                if !before && credit.is_validated() {
                    assert!(genuine(s, &c), "validated by {c:?} (epoch {epoch})");
                }
            }
            (None, Some(c)) => match validator.on_control(a, c, None, n, epoch) {
                Answer::Reply(r) => {
                    assert!(
                        r.len() <= MAX_AMPLIFICATION * n,
                        "stateless reply too large"
                    );
                    replies.push(r);
                }
                Answer::Open => {
                    assert!(genuine(s, &c), "opened by {c:?} (epoch {epoch})");
                    s.session = Some(validator.validated_credit());
                }
                Answer::Nothing => {}
            },
            (Some(_), None) => {}
            (None, None) => s.session = Some(validator.new_credit(n)),
        }
        if control.is_none() {
            if let Some(credit) = &mut s.session {
                if let Some(cookie) = validator.offer(a, credit, epoch) {
                    replies.push(cookie);
                }
            }
        }
        if s.session.as_ref().is_some_and(Credit::is_validated) {
            s.validated = true;
        }
        for r in replies {
            deliver(s, &r, i, epoch);
        }
        check(&sources[i], i, enabled);
    }
});

/// The server sends `d` to source `i` (the socket's `try_send_to` / `send_to`).
fn deliver(s: &mut Source, d: &[u8], i: usize, epoch: u64) {
    if !s.validated {
        s.sent += d.len();
    }
    if let Some(Control::Echo(_, c)) = parse_control(Protocol::Json, d) {
        s.issued.push((c, epoch));
        if i < 4 {
            s.last_cookie = Some(d.to_vec());
        }
    }
}

fn check(s: &Source, i: usize, enabled: bool) {
    if enabled && !s.validated {
        assert!(
            s.sent <= MAX_AMPLIFICATION * s.received,
            "source {i}: sent {} bytes for {} received",
            s.sent,
            s.received
        );
    }
    if enabled && i >= 4 {
        assert!(!s.validated, "spoofed source {i} validated");
    }
}
