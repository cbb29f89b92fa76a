//! Return-routability of UDP sources (anti-amplification), in the spirit of QUIC's address
//! validation (RFC 9000 §8.1) and the DTLS stateless cookie (RFC 6347 §4.2.1).
//!
//! A UDP source address proves nothing: anyone can send a datagram "from" a victim's address.
//! If such a source joins a busy channel, the victim would receive every broadcast — a small
//! datagram buying a large flood. So until a source proves that it receives at its address, the
//! server sends it at most [`MAX_AMPLIFICATION`] times the bytes it has received from it, and
//! what does not fit is dropped and counted (`udp_unvalidated_dropped`).
//!
//! A source proves it receives by echoing a **cookie**: 8 bytes of HMAC-SHA256 over its address
//! and the current 30-second epoch, under a random key made when the listener starts. Nothing
//! is stored per cookie; one is valid in the epoch it was made and the next (30–60 s).
//!
//! ## Wire form
//! | | raw listener | json listener (the raw form works too) |
//! |---|---|---|
//! | server → client: a cookie | `SOCKHUB-COOKIE 0123456789abcdef` | `{"type":"cookie","cookie":"0123456789abcdef"}` |
//! | client → server: the echo | the same datagram, verbatim | the same object (any key order) |
//! | client → server: a request | `SOCKHUB-COOKIE` | `{"type":"cookie"}` |
//!
//! - The server offers a cookie to a new source once that source has sent enough for the cookie
//!   to fit in 3× (11 bytes on raw listeners, 15 on json); a request is answered at once with a
//!   fresh cookie in the request's form (never more than 3× the request), and so is an echo that
//!   is stale or not a cookie at all.
//! - A valid echo validates the session of its source address, or opens one, validated, if the
//!   source has none (a request never does: it is answered without storing anything). So a
//!   client that wants every broadcast from its first message on sends a request, echoes the
//!   cookie, then sends its messages (`sockhub connect` and the testkit's `UdpClient` do exactly
//!   this), and echoes any cookie it receives later. An echo that cannot open a session (server
//!   full, rejected by the handler) is dropped silently: the first message gets the refusal.
//! - Datagrams in these forms are control datagrams: never delivered as messages. On raw
//!   listeners that is any datagram that is `SOCKHUB-COOKIE` alone or followed by a space.
//!
//! Everything here is pure (no I/O, no clock: callers pass the epoch), so it is unit-tested and
//! fuzzed directly; `transport::udp` applies it to sockets.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Deserialize;

use crate::config::Protocol;

/// An unvalidated source is sent at most this many times the bytes received from it.
pub const MAX_AMPLIFICATION: usize = 3;

/// Cookies are made per epoch of this length and accepted in that epoch and the next.
pub const COOKIE_EPOCH: Duration = Duration::from_secs(30);

/// The raw form's keyword.
const RAW_PREFIX: &[u8] = b"SOCKHUB-COOKIE";

/// Bytes of MAC in a cookie (16 hex digits on the wire). 64 bits: a blind attacker would need
/// about 2^63 guesses within one minute to validate an address it does not receive at.
pub const COOKIE_LEN: usize = 8;

/// A cookie as it travels (hex on the wire).
pub type Cookie = [u8; COOKIE_LEN];

/// Which wire form a control datagram used; an answer uses the same.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Form {
    /// `SOCKHUB-COOKIE <hex>`.
    Raw,
    /// `{"type":"cookie","cookie":"<hex>"}`.
    Json,
}

/// A control datagram from a client.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Asks for a cookie (or carried something that is not a cookie's 16 hex digits).
    Request(Form),
    /// Sends a cookie back.
    Echo(Form, Cookie),
}

/// The json form, as a client may send it.
#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
enum JsonControl {
    Cookie {
        #[serde(default)]
        cookie: Option<String>,
    },
}

/// Recognizes a control datagram. `None`: an ordinary message.
pub fn parse_control(protocol: Protocol, datagram: &[u8]) -> Option<Control> {
    if let Some(rest) = datagram.strip_prefix(RAW_PREFIX) {
        let rest = rest.trim_ascii_end();
        if rest.is_empty() {
            return Some(Control::Request(Form::Raw));
        }
        if let Some(hex) = rest.strip_prefix(b" ") {
            return Some(match parse_hex(hex.trim_ascii()) {
                Some(c) => Control::Echo(Form::Raw, c),
                None => Control::Request(Form::Raw),
            });
        }
        return None; // `SOCKHUB-COOKIES…`: just a message
    }
    if protocol != Protocol::Json || !contains(datagram, b"\"cookie\"") {
        return None;
    }
    match serde_json::from_slice::<JsonControl>(datagram) {
        Ok(JsonControl::Cookie { cookie }) => Some(
            match cookie.as_deref().and_then(|h| parse_hex(h.as_bytes())) {
                Some(c) => Control::Echo(Form::Json, c),
                None => Control::Request(Form::Json),
            },
        ),
        Err(_) => None,
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn parse_hex(hex: &[u8]) -> Option<Cookie> {
    if hex.len() != 2 * COOKIE_LEN {
        return None;
    }
    let digit = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let mut out = [0u8; COOKIE_LEN];
    for (o, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        *o = digit(pair[0])? << 4 | digit(pair[1])?;
    }
    Some(out)
}

/// A cookie datagram in `form`.
pub fn encode_cookie(form: Form, cookie: &Cookie) -> Bytes {
    let mut hex = String::with_capacity(2 * COOKIE_LEN);
    for b in cookie {
        hex.push_str(&format!("{b:02x}"));
    }
    Bytes::from(match form {
        Form::Raw => format!("SOCKHUB-COOKIE {hex}"),
        Form::Json => format!(r#"{{"type":"cookie","cookie":"{hex}"}}"#),
    })
}

/// A cookie request datagram in `form` (what clients send).
pub fn encode_request(form: Form) -> &'static [u8] {
    match form {
        Form::Raw => RAW_PREFIX,
        Form::Json => br#"{"type":"cookie"}"#,
    }
}

/// Makes and checks cookies. One per UDP listener, with its own random key.
pub struct CookieJar {
    /// The HMAC key. Never leaves the process.
    key: [u8; 32],
}

impl CookieJar {
    /// A jar with this key (tests and fuzzing; the server uses [`CookieJar::random`]).
    pub fn new(key: [u8; 32]) -> Self {
        CookieJar { key }
    }

    /// A jar with a key from the OS random source.
    pub fn random() -> Self {
        CookieJar::new(random_key())
    }

    /// The cookie for `addr` in `epoch`.
    pub fn issue(&self, addr: SocketAddr, epoch: u64) -> Cookie {
        let mut msg = Vec::with_capacity(8 + 16 + 2);
        msg.extend_from_slice(&epoch.to_be_bytes());
        match addr {
            SocketAddr::V4(a) => msg.extend_from_slice(&a.ip().octets()),
            SocketAddr::V6(a) => msg.extend_from_slice(&a.ip().octets()),
        }
        msg.extend_from_slice(&addr.port().to_be_bytes());
        let mac = hmac_sha256(&self.key, &msg);
        let mut c = [0u8; COOKIE_LEN];
        c.copy_from_slice(&mac[..COOKIE_LEN]);
        c
    }

    /// Whether `cookie` was made for `addr` in `epoch` or the one before.
    pub fn verify(&self, addr: SocketAddr, cookie: &Cookie, epoch: u64) -> bool {
        let now = same(&self.issue(addr, epoch), cookie);
        let before = epoch
            .checked_sub(1)
            .is_some_and(|e| same(&self.issue(addr, e), cookie));
        now | before
    }
}

/// Compares without stopping at the first difference (no timing hint about the right bytes).
fn same(a: &Cookie, b: &Cookie) -> bool {
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// HMAC-SHA256 (RFC 2104, RFC 4231).
fn hmac_sha256(key: &[u8; 32], msg: &[u8]) -> [u8; 32] {
    // HMAC takes a key of any length: this cannot fail.
    let Ok(mut mac) = Hmac::<sha2::Sha256>::new_from_slice(key) else {
        return [0; 32];
    };
    mac.update(msg);
    mac.finalize().into_bytes().into()
}

/// 32 bytes from `/dev/urandom`; where that cannot be read, from std's randomly seeded
/// `RandomState` (itself seeded by the OS) mixed with the time and process id.
fn random_key() -> [u8; 32] {
    use std::io::Read as _;
    let mut key = [0u8; 32];
    if std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut key))
        .is_ok()
    {
        return key;
    }
    use std::hash::{BuildHasher as _, Hasher as _};
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    for (i, chunk) in key.chunks_exact_mut(8).enumerate() {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_usize(i);
        h.write_u128(nanos);
        h.write_u32(std::process::id());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    key
}

/// One source's standing: validated, or how many more bytes it may be sent until it is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credit {
    /// It echoed a valid cookie (or validation is off): no limit.
    validated: bool,
    /// Bytes it may still be sent while unvalidated: 3× what it sent, minus what it was sent.
    left: usize,
    /// A cookie should be offered as soon as it fits in `left`.
    cookie_owed: bool,
}

impl Credit {
    /// The standing of a source whose first datagram was `received` bytes.
    pub fn new(received: usize, validation: bool) -> Self {
        let mut c = Credit {
            validated: !validation,
            left: 0,
            cookie_owed: validation,
        };
        c.received(received);
        c
    }

    /// Whether the source has proved it receives at its address.
    pub fn is_validated(&self) -> bool {
        self.validated
    }

    /// Credits a datagram of `n` bytes from the source.
    pub fn received(&mut self, n: usize) {
        if !self.validated {
            self.left = self
                .left
                .saturating_add(n.saturating_mul(MAX_AMPLIFICATION));
        }
    }

    /// Whether `len` more bytes may be sent to the source; if so they are debited.
    pub fn spend(&mut self, len: usize) -> bool {
        if self.validated {
            return true;
        }
        match self.left.checked_sub(len) {
            Some(left) => {
                self.left = left;
                true
            }
            None => false,
        }
    }
}

/// What to do with a control datagram.
#[derive(Debug, PartialEq, Eq)]
pub enum Answer {
    /// Nothing to send.
    Nothing,
    /// Send this datagram back (a fresh cookie).
    Reply(Bytes),
    /// A valid echo from a source without a session: open one, validated.
    Open,
}

/// The cookie logic of one UDP listener.
pub struct Validator {
    /// Makes and checks cookies.
    jar: CookieJar,
    /// `UdpOptions::address_validation`: off means every source starts validated.
    enabled: bool,
    /// The listener's protocol: the form of offered cookies.
    form: Form,
}

impl Validator {
    /// The validator of a listener speaking `protocol`.
    pub fn new(jar: CookieJar, enabled: bool, protocol: Protocol) -> Self {
        let form = match protocol {
            Protocol::Raw => Form::Raw,
            Protocol::Json | Protocol::Pusher => Form::Json,
        };
        Validator { jar, enabled, form }
    }

    /// The cookie epoch at `elapsed` since the listener started.
    pub fn epoch(elapsed: Duration) -> u64 {
        elapsed.as_secs() / COOKIE_EPOCH.as_secs()
    }

    /// The standing of a new source whose first message was `received` bytes.
    pub fn new_credit(&self, received: usize) -> Credit {
        Credit::new(received, self.enabled)
    }

    /// The standing of a source that opened its session with a valid echo.
    pub fn validated_credit(&self) -> Credit {
        Credit::new(0, false)
    }

    /// Answers a control datagram of `received` bytes from `addr`; `peer` is the source's
    /// standing if it has a session (already credited with this datagram).
    pub fn on_control(
        &self,
        addr: SocketAddr,
        control: Control,
        peer: Option<&mut Credit>,
        received: usize,
        epoch: u64,
    ) -> Answer {
        let (form, valid) = match control {
            Control::Request(form) => (form, false),
            Control::Echo(form, cookie) => (form, self.jar.verify(addr, &cookie, epoch)),
        };
        let fresh = || encode_cookie(form, &self.jar.issue(addr, epoch));
        match peer {
            Some(p) => {
                if valid {
                    p.validated = true;
                    p.cookie_owed = false;
                    return Answer::Nothing;
                }
                if p.validated && matches!(control, Control::Echo(..)) {
                    return Answer::Nothing; // a late duplicate
                }
                let reply = fresh();
                if p.spend(reply.len()) {
                    p.cookie_owed = false;
                    Answer::Reply(reply)
                } else {
                    Answer::Nothing
                }
            }
            None if valid => Answer::Open,
            // Stateless: a request from an unknown source is answered and forgotten.
            None => {
                let reply = fresh();
                if reply.len() <= received.saturating_mul(MAX_AMPLIFICATION) {
                    Answer::Reply(reply)
                } else {
                    Answer::Nothing
                }
            }
        }
    }

    /// The cookie owed to an unvalidated source, once it fits in its credit.
    pub fn offer(&self, addr: SocketAddr, peer: &mut Credit, epoch: u64) -> Option<Bytes> {
        if peer.validated || !peer.cookie_owed {
            return None;
        }
        let cookie = encode_cookie(self.form, &self.jar.issue(addr, epoch));
        peer.spend(cookie.len()).then(|| {
            peer.cookie_owed = false;
            cookie
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    fn validator(protocol: Protocol) -> Validator {
        Validator::new(CookieJar::new([7; 32]), true, protocol)
    }

    #[test]
    fn control_forms_parse() {
        let raw = Protocol::Raw;
        assert_eq!(
            parse_control(raw, b"SOCKHUB-COOKIE"),
            Some(Control::Request(Form::Raw))
        );
        assert_eq!(
            parse_control(raw, b"SOCKHUB-COOKIE 00112233445566ff\r\n"),
            Some(Control::Echo(
                Form::Raw,
                [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0xff]
            ))
        );
        assert_eq!(
            parse_control(raw, b"SOCKHUB-COOKIE nonsense"),
            Some(Control::Request(Form::Raw))
        );
        assert_eq!(parse_control(raw, b"SOCKHUB-COOKIES are tasty"), None);
        assert_eq!(
            parse_control(raw, br#"{"type":"cookie"}"#),
            None,
            "raw: a message"
        );
        let json = Protocol::Json;
        assert_eq!(
            parse_control(json, br#"{"type":"cookie"}"#),
            Some(Control::Request(Form::Json))
        );
        assert_eq!(
            parse_control(
                json,
                br#"{ "cookie" : "0011223344556677", "type":"cookie"}"#
            ),
            Some(Control::Echo(
                Form::Json,
                [0x00, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77]
            ))
        );
        assert_eq!(
            parse_control(json, b"SOCKHUB-COOKIE"),
            Some(Control::Request(Form::Raw))
        );
        assert_eq!(
            parse_control(json, br#"{"type":"ping","id":"cookie"}"#),
            None
        );
    }

    #[test]
    fn cookies_round_trip_and_requests_fit_in_3x() {
        for form in [Form::Raw, Form::Json] {
            let c = [0xab; COOKIE_LEN];
            let wire = encode_cookie(form, &c);
            let protocol = match form {
                Form::Raw => Protocol::Raw,
                Form::Json => Protocol::Json,
            };
            assert_eq!(parse_control(protocol, &wire), Some(Control::Echo(form, c)));
            let request = encode_request(form);
            assert_eq!(
                parse_control(protocol, request),
                Some(Control::Request(form))
            );
            assert!(wire.len() <= MAX_AMPLIFICATION * request.len(), "{form:?}");
        }
    }

    #[test]
    fn a_cookie_is_bound_to_its_address_and_lives_two_epochs() {
        let jar = CookieJar::new([1; 32]);
        let c = jar.issue(addr(5000), 10);
        assert!(jar.verify(addr(5000), &c, 10));
        assert!(jar.verify(addr(5000), &c, 11));
        assert!(!jar.verify(addr(5000), &c, 12));
        assert!(!jar.verify(addr(5000), &c, 9));
        assert!(!jar.verify(addr(5001), &c, 10));
        let other = CookieJar::new([2; 32]);
        assert!(!other.verify(addr(5000), &c, 10), "another key");
        assert!(jar.verify(addr(1), &jar.issue(addr(1), 0), 0), "epoch 0");
    }

    #[test]
    fn an_unvalidated_source_gets_at_most_3x_until_it_echoes() {
        let v = validator(Protocol::Raw);
        let a = addr(4000);
        let mut credit = v.new_credit(5); // 15 bytes of credit: too little for a cookie
        assert_eq!(v.offer(a, &mut credit, 0), None);
        assert!(credit.spend(10));
        assert!(!credit.spend(6));
        credit.received(20); // 5 + 60 = 65 left
        let cookie = v.offer(a, &mut credit, 0).expect("cookie fits now");
        assert_eq!(v.offer(a, &mut credit, 0), None, "offered once");
        assert!(!credit.spend(65 - cookie.len() + 1));
        let Some(Control::Echo(form, c)) = parse_control(Protocol::Raw, &cookie) else {
            panic!("not a cookie: {cookie:?}");
        };
        credit.received(cookie.len());
        assert_eq!(
            v.on_control(a, Control::Echo(form, c), Some(&mut credit), 31, 1),
            Answer::Nothing
        );
        assert!(credit.is_validated());
        assert!(credit.spend(usize::MAX));
    }

    #[test]
    fn unknown_sources_get_a_cookie_only_within_3x_and_no_state() {
        let v = validator(Protocol::Json);
        let a = addr(4001);
        let Answer::Reply(reply) = v.on_control(a, Control::Request(Form::Json), None, 17, 3)
        else {
            panic!("a 17-byte request is answered");
        };
        assert!(reply.len() <= 51);
        assert_eq!(
            v.on_control(a, Control::Request(Form::Json), None, 14, 3),
            Answer::Nothing,
            "a 14-byte datagram does not buy a 45-byte answer"
        );
        let Some(Control::Echo(_, c)) = parse_control(Protocol::Json, &reply) else {
            panic!("not a cookie");
        };
        assert_eq!(
            v.on_control(a, Control::Echo(Form::Json, c), None, reply.len(), 4),
            Answer::Open,
            "a valid echo without a session opens one"
        );
        assert_eq!(
            v.on_control(addr(4002), Control::Echo(Form::Json, c), None, 45, 4),
            Answer::Reply(encode_cookie(Form::Json, &v.jar.issue(addr(4002), 4))),
            "from another address the same cookie is just a request"
        );
        assert!(
            matches!(
                v.on_control(a, Control::Echo(Form::Json, c), None, 45, 5),
                Answer::Reply(_)
            ),
            "stale two epochs later"
        );
    }

    #[test]
    fn validation_off_starts_validated() {
        let v = Validator::new(CookieJar::new([0; 32]), false, Protocol::Raw);
        let mut credit = v.new_credit(1);
        assert!(credit.is_validated());
        assert!(credit.spend(1 << 20));
        assert_eq!(v.offer(addr(1), &mut credit, 0), None);
    }

    #[test]
    fn hmac_sha256_matches_rfc_4231() {
        // Test case 1: a 20-byte key of 0x0b; zero-padding it to 32 bytes changes nothing
        // (HMAC pads the key with zeros to the block size).
        let mut key = [0u8; 32];
        key[..20].fill(0x0b);
        let expected = [
            0xb0, 0x34, 0x4c, 0x61, 0xd8, 0xdb, 0x38, 0x53, 0x5c, 0xa8, 0xaf, 0xce, 0xaf, 0x0b,
            0xf1, 0x2b, 0x88, 0x1d, 0xc2, 0x00, 0xc9, 0x83, 0x3d, 0xa7, 0x26, 0xe9, 0x37, 0x6c,
            0x2e, 0x32, 0xcf, 0xf7,
        ];
        assert_eq!(hmac_sha256(&key, b"Hi There"), expected);
    }
}
