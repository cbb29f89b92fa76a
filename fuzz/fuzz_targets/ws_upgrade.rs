//! `ws_upgrade`: the WebSocket upgrade checks and URL query parser that `transport::ws::upgrade`
//! runs on every upgrade request, against RFC 6455 §4.2.1 and the documented query options.
//!
//! - `check_upgrade` accepts exactly `GET` with a `Connection` header listing the `upgrade`
//!   token (any case, any of several values), a first `Sec-WebSocket-Version` of exactly `13`
//!   and a first `Sec-WebSocket-Key` of 24 bytes, and returns that key; otherwise 405 (method),
//!   400 (Connection), 426 with `Sec-WebSocket-Version: 13` (version) or 400 (key), in that
//!   order of checks.
//! - `percent_decode` decodes exactly the `%XX` escapes with two hex digits and `+` as a space,
//!   leaving everything else as it is (compared with a reference decoder), and any string
//!   percent-encoded byte by byte decodes back to itself.
//! - `parse_query` gives the distinct `channel` values in order (or the default when none), the
//!   last `protocol` value, and fails exactly when a channel name is invalid or a protocol is
//!   neither `raw` nor `json`, with that reason.
//!
//! Input: lines. Line 1: the method. Line 2: the query string after `?` (`-`: no query).
//! Further lines: headers `Name: value` (lines that are not a valid header are skipped, as
//! hyper would refuse them).
#![no_main]

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use libfuzzer_sys::fuzz_target;
use sockhub::fuzzing::{check_upgrade, parse_query, percent_decode};
use sockhub::{validate_channel_name, Protocol};

/// The reference decoder: `%` + two hex digits is a byte, `+` a space, anything else itself.
fn reference_decode(s: &str) -> String {
    let b = s.as_bytes();
    let (mut out, mut i) = (Vec::with_capacity(b.len()), 0);
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
                continue;
            }
            b'+' => out.push(b' '),
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn visible(v: &HeaderValue) -> Option<&str> {
    v.to_str().ok()
}

fn check_headers(method: &Method, headers: &HeaderMap) {
    let connection_upgrade = headers.get_all("connection").iter().any(|v| {
        visible(v).is_some_and(|s| {
            s.split(',')
                .any(|t| t.trim().eq_ignore_ascii_case("upgrade"))
        })
    });
    let version_13 = headers
        .get("sec-websocket-version")
        .is_some_and(|v| v.as_bytes() == b"13");
    let key = headers
        .get("sec-websocket-key")
        .filter(|k| k.len() == 24)
        .map(|k| k.as_bytes().to_vec());
    let expected: Result<Vec<u8>, u16> = if method != Method::GET {
        Err(405)
    } else if !connection_upgrade {
        Err(400)
    } else if !version_13 {
        Err(426)
    } else {
        key.ok_or(400)
    };
    match (check_upgrade(method, headers), expected) {
        (Ok(k), Ok(want)) => assert_eq!(k, want),
        (Err(r), Err(status)) => {
            assert_eq!(r.status().as_u16(), status);
            if status == 426 {
                assert_eq!(
                    r.headers()
                        .get("sec-websocket-version")
                        .map(HeaderValue::as_bytes),
                    Some(&b"13"[..])
                );
            }
        }
        (got, want) => panic!(
            "{method} {headers:?}: got {:?}, want {want:?}",
            got.map_err(|r| r.status())
        ),
    }
}

fn check_query(query: Option<&str>) {
    let default = vec!["lobby".to_string()];
    let mut channels: Vec<String> = Vec::new();
    let mut protocol = Protocol::Raw;
    let mut expected = Ok(());
    for pair in query.unwrap_or("").split('&').filter(|p| !p.is_empty()) {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        let (k, v) = (percent_decode(k), percent_decode(v));
        match k.as_str() {
            "channel" => {
                if let Err(e) = validate_channel_name(&v) {
                    expected = Err(e);
                    break;
                }
                if !channels.contains(&v) {
                    channels.push(v);
                }
            }
            "protocol" => match v.parse() {
                Ok(p) => protocol = p,
                Err(e) => {
                    expected = Err(e);
                    break;
                }
            },
            _ => {}
        }
    }
    if channels.is_empty() {
        channels = default.clone();
    }
    let expected = expected.map(|()| (channels, protocol));
    assert_eq!(parse_query(query, &default), expected, "query {query:?}");
}

fn check_decode(s: &str) {
    assert_eq!(percent_decode(s), reference_decode(s), "decoding {s:?}");
    // Any string, percent-encoded byte by byte (upper or lower hex), decodes back to itself.
    let upper: String = s.bytes().map(|b| format!("%{b:02X}")).collect();
    let lower: String = s.bytes().map(|b| format!("%{b:02x}")).collect();
    assert_eq!(percent_decode(&upper), s);
    assert_eq!(percent_decode(&lower), s);
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let mut lines = text.split('\n');
    let method = lines.next().unwrap_or("");
    let query = match lines.next() {
        None | Some("-") => None,
        Some(q) => Some(q),
    };
    let mut headers = HeaderMap::new();
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.trim().as_bytes()),
            HeaderValue::from_bytes(value.trim().as_bytes()),
        ) {
            headers.append(n, v);
        }
    }
    if let Ok(method) = Method::from_bytes(method.as_bytes()) {
        check_headers(&method, &headers);
    }
    check_query(query);
    check_decode(query.unwrap_or(method));
});
