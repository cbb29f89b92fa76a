//! `pusher_request`: Pusher's signatures (`pusher::signature`) and the HTTP API's event bodies
//! (`POST /apps/{id}/events` and `/batch_events`, run through the real routes in memory by
//! `fuzzing::FuzzPusher`, with three Pusher subscribers):
//!
//! - socket ids: `parse_socket_id` accepts exactly what `socket_id` writes
//!   (`socket_id(parse_socket_id(s)) == s`), and every id round-trips;
//! - channel names: `validate_channel` accepts exactly 1–164 characters of `A-Za-z0-9_-=@,.;`,
//!   such a name is a valid hub name too, and a refusal is one line;
//! - channel auth and signin: `<key>:<sign(secret, text)>` verifies for any key, secret, socket
//!   id, channel and data (`text` being `socket_id:channel[:channel_data]` or
//!   `socket_id::user::user_data`), the signature also in upper case; changing any one
//!   character of the auth, the socket id, the channel or the data, or cutting or lengthening
//!   the signature, makes it fail;
//! - API requests signed as Pusher's SDKs sign them (lower-case keys sorted, `METHOD\nPATH\n
//!   key=value&…`, HMAC-SHA256) verify, for any method, path, extra parameters and body; the
//!   documented leniencies hold (method, parameter names and the signature in any case,
//!   `body_md5` in the case it was signed in); changing one character of the method, the path, a parameter name or value, the
//!   body or the signature fails, and so do a timestamp 700 s off (`Timestamp`), another key
//!   (`Key`), each missing auth parameter (`Missing`), a body without `body_md5`;
//! - through the routes: a request signed that way (parameters percent-encoded in the query)
//!   is accepted exactly when its body follows the API's rules (one JSON object, known fields
//!   of the right types without duplicates; `channel` or 1–100 `channels`, valid names; a
//!   `name` of 1–200 bytes; `data` at most 10 KiB as text, else 413; a `socket_id` as the
//!   server writes them; a batch of at most 10 such events), with 401/404 for a bad signature
//!   or app; an accepted event reaches every subscriber of each distinct channel named except
//!   the `socket_id`'s, once, with its name and data; a refused request delivers nothing (a
//!   batch is all or nothing); the `info` answer counts subscribers.
//!
//! Input: lines. 1: key, 2: secret, 3: a socket id, 4: a channel, 5: channel data / user
//! data, 6: method, 7: path, 8: extra query parameters `k=v&…` (decoded form), 9: control,
//! then the body (the rest). Control: character 0 the API route (`e` events, `b`
//! batch_events, anything else: no API request); character 1 how it is signed (`s` well, `x`
//! one signature digit changed, `e` 700 s ago, `w` for another app id, `n` not at all); the
//! rest a decimal number choosing the character to change in the signature checks.
#![no_main]

use std::collections::BTreeSet;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde_json::{json, Value};
use sockhub::config::PusherApp;
use sockhub::fuzzing::{FuzzPusher, FuzzPusherSession};
use sockhub::pusher::signature::{
    body_md5, sign, verify_channel_auth, verify_request, verify_signin, RequestError,
};
use sockhub::pusher::{parse_socket_id, socket_id, validate_channel};
use sockhub::{validate_channel_name, Limits, Message, SessionId};

const API_KEY: &str = "apikey";
const API_SECRET: &str = "apisecret";
/// The subscribers: session ids and their (public) channels.
const SUBSCRIBERS: [(u64, &[&str]); 3] =
    [(1, &["a", "b"]), (2, &["b", "c"]), ((7 << 32) | 3, &["a"])];

/// One character of `s` replaced by another (`0`, or `1` where it was `0`): never a change of
/// case. `None` for an empty string.
fn change(s: &str, at: usize) -> Option<String> {
    let n = s.chars().count();
    if n == 0 {
        return None;
    }
    let at = at % n;
    Some(
        s.chars()
            .enumerate()
            .map(|(i, c)| match (i == at, c) {
                (true, '0') => '1',
                (true, _) => '0',
                (false, c) => c,
            })
            .collect(),
    )
}

fn pusher_name_ok(name: &str) -> bool {
    (1..=164).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b))
}

/// Channel auth and signin: good signatures verify, one changed character does not.
fn check_client_auth(key: &str, secret: &str, sid: &str, channel: &str, data: &str, at: usize) {
    // (what is signed, verify(socket id, channel, data, auth))
    type Verify<'a> = Box<dyn Fn(&str, &str, &str, &str) -> bool + 'a>;
    let cases: [(String, Verify); 3] = [
        (
            format!("{sid}:{channel}"),
            Box::new(|s, c, _, a| verify_channel_auth(key, secret, s, c, None, a)),
        ),
        (
            format!("{sid}:{channel}:{data}"),
            Box::new(|s, c, d, a| verify_channel_auth(key, secret, s, c, Some(d), a)),
        ),
        (
            format!("{sid}::user::{data}"),
            Box::new(|s, _, d, a| verify_signin(key, secret, s, d, a)),
        ),
    ];
    for (i, (text, verify)) in cases.iter().enumerate() {
        let sig = sign(secret, text);
        assert_eq!(sig.len(), 64);
        assert!(sig
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        let auth = format!("{key}:{sig}");
        assert!(
            verify(sid, channel, data, &auth),
            "case {i}: {auth:?} over {text:?}"
        );
        let upper = format!("{key}:{}", sig.to_uppercase());
        assert!(verify(sid, channel, data, &upper), "case {i}: upper case");
        assert!(
            !verify(sid, channel, data, &auth[..auth.len() - 1]),
            "case {i}: cut"
        );
        assert!(
            !verify(sid, channel, data, &format!("{auth}0")),
            "case {i}: longer"
        );
        // One character changed in one of the parts (the data only where it is signed).
        let parts = [auth.as_str(), sid, channel, data];
        let used: Vec<usize> = match i {
            0 => vec![0, 1, 2],
            1 => vec![0, 1, 2, 3],
            _ => vec![0, 1, 3],
        };
        let which = used[at % used.len()];
        if let Some(changed) = change(parts[which], at / used.len()) {
            let mut p = parts.map(str::to_string);
            p[which] = changed;
            assert!(
                !verify(&p[1], &p[2], &p[3], &p[0]),
                "case {i}: part {which} changed to {:?} still verifies",
                p[which]
            );
        }
    }
}

/// The string an API request's signature covers, as Pusher's SDKs build it.
fn string_to_sign(method: &str, path: &str, params: &[(String, String)]) -> String {
    let mut sorted: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| k != "auth_signature")
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    sorted.sort();
    let query: Vec<String> = sorted.iter().map(|(k, v)| format!("{k}={v}")).collect();
    format!(
        "{}\n{path}\n{}",
        method.to_ascii_uppercase(),
        query.join("&")
    )
}

/// Signed parameters: `extra` (names that are not auth parameters, distinct in any case) and
/// the auth parameters, `auth_signature` last.
fn signed(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    extra: &[(String, String)],
    body: &[u8],
    ts: u64,
) -> Vec<(String, String)> {
    let mut p: Vec<(String, String)> = extra.to_vec();
    p.push(("auth_key".into(), key.into()));
    p.push(("auth_timestamp".into(), ts.to_string()));
    p.push(("auth_version".into(), "1.0".into()));
    if !body.is_empty() {
        p.push(("body_md5".into(), body_md5(body)));
    }
    let sig = sign(secret, &string_to_sign(method, path, &p));
    p.push(("auth_signature".into(), sig));
    p
}

/// The extra parameters of line 8, without auth parameters and repeated names.
fn extra_params(line: &str) -> Vec<(String, String)> {
    let mut seen = BTreeSet::new();
    line.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .filter(|(k, _)| {
            let lower = k.to_ascii_lowercase();
            !lower.starts_with("auth_") && lower != "body_md5" && seen.insert(lower)
        })
        .take(8)
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn check_request(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    extra: &[(String, String)],
    body: &[u8],
    now: u64,
    at: usize,
) {
    let verify = |p: &[(String, String)], m: &str, pa: &str, b: &[u8]| {
        let r = verify_request(key, secret, m, pa, p, b, now);
        if let Err(e) = &r {
            assert!(!e.to_string().contains('\n'), "{e}");
        }
        r
    };
    let params = signed(key, secret, method, path, extra, body, now - 300);
    assert_eq!(verify(&params, method, path, body), Ok(()), "{params:?}");
    // The leniencies: method, parameter names, body_md5 and signature in any case.
    assert_eq!(
        verify(&params, &method.to_ascii_lowercase(), path, body),
        Ok(())
    );
    let upper_names: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
        .collect();
    assert_eq!(verify(&upper_names, method, path, body), Ok(()));
    let upper_signature: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| match k.as_str() {
            "auth_signature" => (k.clone(), v.to_uppercase()),
            _ => (k.clone(), v.clone()),
        })
        .collect();
    assert_eq!(verify(&upper_signature, method, path, body), Ok(()));
    // body_md5 is signed as sent, so only a client that signed it in upper case sends that.
    let mut upper_md5 = params.clone();
    upper_md5.pop();
    for (k, v) in &mut upper_md5 {
        if k == "body_md5" {
            *v = v.to_uppercase();
        }
    }
    let sig = sign(secret, &string_to_sign(method, path, &upper_md5));
    upper_md5.push(("auth_signature".into(), sig));
    assert_eq!(verify(&upper_md5, method, path, body), Ok(()));
    // Refusals.
    let expired = signed(key, secret, method, path, extra, body, now - 700);
    assert_eq!(
        verify(&expired, method, path, body),
        Err(RequestError::Timestamp)
    );
    let other_key = signed(&format!("{key}x"), secret, method, path, extra, body, now);
    assert_eq!(
        verify(&other_key, method, path, body),
        Err(RequestError::Key)
    );
    for name in [
        "auth_key",
        "auth_timestamp",
        "auth_version",
        "auth_signature",
    ] {
        let without: Vec<_> = params.iter().filter(|(k, _)| k != name).cloned().collect();
        assert_eq!(
            verify(&without, method, path, body),
            Err(RequestError::Missing(name))
        );
    }
    if !body.is_empty() {
        let without: Vec<_> = params
            .iter()
            .filter(|(k, _)| k != "body_md5")
            .cloned()
            .collect();
        assert_eq!(
            verify(&without, method, path, body),
            Err(RequestError::Missing("body_md5"))
        );
    }
    // One character changed anywhere: method, path, a parameter's name or value, the body.
    let slots = 3 + 2 * params.len();
    let which = at % slots;
    let at = at / slots;
    let (mut m, mut pa, mut p, mut b) = (
        method.to_string(),
        path.to_string(),
        params.clone(),
        body.to_vec(),
    );
    let changed = match which {
        0 => change(method, at).map(|c| m = c),
        1 => change(path, at).map(|c| pa = c),
        2 => {
            if body.is_empty() {
                None
            } else {
                let i = at % body.len();
                b[i] = if b[i] == b'0' { b'1' } else { b'0' };
                Some(())
            }
        }
        n => {
            let (i, value) = ((n - 3) / 2, (n - 3) % 2 == 1);
            let field = if value { &mut p[i].1 } else { &mut p[i].0 };
            change(field, at).map(|c| *field = c)
        }
    };
    if changed.is_some() {
        let r = verify(&p, &m, &pa, &b);
        assert!(
            r.is_err(),
            "changed {which}: {m:?} {pa:?} {p:?} {:?} still verifies",
            String::from_utf8_lossy(&b)
        );
    }
}

// ---- the API bodies --------------------------------------------------------------------------

/// An event object's fields in order, duplicates kept (a `Value` would keep only the last).
/// Other members are skipped as serde skips unknown fields (their strings are not checked
/// for UTF-8, so neither are they here).
struct Entries(Vec<(String, Value)>);

fn event_entries<'de, A: MapAccess<'de>>(mut map: A) -> Result<Entries, A::Error> {
    let mut v = Vec::new();
    while let Some(k) = map.next_key::<String>()? {
        if EVENT_FIELDS.contains(&k.as_str()) {
            v.push((k, map.next_value::<Value>()?));
        } else {
            map.next_value::<IgnoredAny>()?;
        }
    }
    Ok(Entries(v))
}

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Entries, A::Error> {
                event_entries(map)
            }
        }
        d.deserialize_map(V)
    }
}

/// Any JSON value: `Some(entries)` for an object, `None` for anything else.
struct MaybeObject(Option<Entries>);

impl<'de> Deserialize<'de> for MaybeObject {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(AnyVisitor).map(|v| match v {
            Any::Object(e) => MaybeObject(Some(e)),
            _ => MaybeObject(None),
        })
    }
}

/// Any JSON value: `Some(elements)` for an array, `None` for anything else.
struct MaybeArray(Option<Vec<MaybeObject>>);

impl<'de> Deserialize<'de> for MaybeArray {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = MaybeArray;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("anything")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<MaybeArray, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = seq.next_element::<MaybeObject>()? {
                    v.push(e);
                }
                Ok(MaybeArray(Some(v)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<MaybeArray, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(MaybeArray(None))
            }
            fn visit_bool<E>(self, _: bool) -> Result<MaybeArray, E> {
                Ok(MaybeArray(None))
            }
            fn visit_i64<E>(self, _: i64) -> Result<MaybeArray, E> {
                Ok(MaybeArray(None))
            }
            fn visit_u64<E>(self, _: u64) -> Result<MaybeArray, E> {
                Ok(MaybeArray(None))
            }
            fn visit_f64<E>(self, _: f64) -> Result<MaybeArray, E> {
                Ok(MaybeArray(None))
            }
            fn visit_str<E>(self, _: &str) -> Result<MaybeArray, E> {
                Ok(MaybeArray(None))
            }
            fn visit_unit<E>(self) -> Result<MaybeArray, E> {
                Ok(MaybeArray(None))
            }
        }
        d.deserialize_any(V)
    }
}

enum Any {
    Object(Entries),
    Other,
}

struct AnyVisitor;

impl<'de> Visitor<'de> for AnyVisitor {
    type Value = Any;
    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str("anything")
    }
    fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Any, A::Error> {
        event_entries(map).map(Any::Object)
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Any, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Any::Other)
    }
    fn visit_bool<E>(self, _: bool) -> Result<Any, E> {
        Ok(Any::Other)
    }
    fn visit_i64<E>(self, _: i64) -> Result<Any, E> {
        Ok(Any::Other)
    }
    fn visit_u64<E>(self, _: u64) -> Result<Any, E> {
        Ok(Any::Other)
    }
    fn visit_f64<E>(self, _: f64) -> Result<Any, E> {
        Ok(Any::Other)
    }
    fn visit_str<E>(self, _: &str) -> Result<Any, E> {
        Ok(Any::Other)
    }
    fn visit_unit<E>(self) -> Result<Any, E> {
        Ok(Any::Other)
    }
}

/// `{"batch": …}` with every occurrence of `batch` kept.
struct BatchBody(Vec<MaybeArray>);

impl<'de> Deserialize<'de> for BatchBody {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = BatchBody;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<BatchBody, A::Error> {
                let mut v = Vec::new();
                while let Some(k) = map.next_key::<String>()? {
                    if k == "batch" {
                        v.push(map.next_value::<MaybeArray>()?);
                    } else {
                        map.next_value::<IgnoredAny>()?;
                    }
                }
                Ok(BatchBody(v))
            }
        }
        d.deserialize_map(V)
    }
}

/// An event as serde reads it (types checked, rules not yet).
struct Parsed {
    name: String,
    data: String,
    channel: Option<String>,
    channels: Option<Vec<String>>,
    socket_id: Option<String>,
    info: String,
}

/// An event as the API's rules read it.
struct Ev {
    name: String,
    data: String,
    /// Distinct, in first-seen order.
    channels: Vec<String>,
    except: Option<SessionId>,
    info: String,
}

const EVENT_FIELDS: [&str; 6] = ["name", "data", "channel", "channels", "socket_id", "info"];

/// Absent or null → `Some(None)`; a string → `Some(Some)`; anything else → `None` (invalid).
fn opt_string(v: Option<&Value>) -> Option<Option<String>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

/// One event object's fields, if they have the right types and none repeats.
fn parse(e: &Entries) -> Option<Parsed> {
    let mut seen = BTreeSet::new();
    if e.0
        .iter()
        .any(|(k, _)| EVENT_FIELDS.contains(&k.as_str()) && !seen.insert(k.as_str()))
    {
        return None;
    }
    let get = |k: &str| e.0.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let Some(Value::String(name)) = get("name") else {
        return None;
    };
    let channels: Option<Vec<String>> = match get("channels") {
        None | Some(Value::Null) => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|c| c.as_str().map(str::to_string))
                .collect::<Option<_>>()?,
        ),
        Some(_) => return None,
    };
    Some(Parsed {
        name: name.clone(),
        data: match get("data") {
            None | Some(Value::Null) => String::new(),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        },
        channel: opt_string(get("channel"))?,
        channels,
        socket_id: opt_string(get("socket_id"))?,
        info: opt_string(get("info"))?.unwrap_or_default(),
    })
}

/// The API's rules, in its order: the event, or the refusal's status.
fn rules(p: Parsed) -> Result<Ev, u16> {
    let named = match (p.channel, p.channels) {
        (Some(c), None) => vec![c],
        (None, Some(cs)) if (1..=100).contains(&cs.len()) => cs,
        _ => return Err(400),
    };
    if !named.iter().all(|c| pusher_name_ok(c)) {
        return Err(400);
    }
    if p.name.is_empty() || p.name.len() > 200 {
        return Err(400);
    }
    if p.data.len() > 10 * 1024 {
        return Err(413);
    }
    let except = match p.socket_id {
        None => None,
        Some(s) => {
            // As the server writes them: two u32 in decimal, no sign, no leading zeros.
            let part = |p: &str| {
                let ok = !p.is_empty()
                    && p.bytes().all(|b| b.is_ascii_digit())
                    && (p == "0" || !p.starts_with('0'));
                ok.then(|| p.parse::<u32>().ok()).flatten()
            };
            let id = s
                .split_once('.')
                .and_then(|(a, b)| Some(u64::from(part(a)?) << 32 | u64::from(part(b)?)));
            Some(SessionId(id.ok_or(400u16)?))
        }
    };
    let mut channels = Vec::new();
    for c in named {
        if !channels.contains(&c) {
            channels.push(c);
        }
    }
    Ok(Ev {
        name: p.name,
        data: p.data,
        channels,
        except,
        info: p.info,
    })
}

/// The events of a body, or the refusal's status.
fn events(batch: bool, body: &[u8]) -> Result<Vec<Ev>, u16> {
    if !batch {
        let e: Entries = serde_json::from_slice(body).map_err(|_| 400u16)?;
        return Ok(vec![rules(parse(&e).ok_or(400u16)?)?]);
    }
    let BatchBody(mut occurrences) = serde_json::from_slice(body).map_err(|_| 400u16)?;
    if occurrences.len() != 1 {
        return Err(400);
    }
    let MaybeArray(Some(elements)) = occurrences.remove(0) else {
        return Err(400);
    };
    // Every element is read (and its types checked) before any rule.
    let parsed: Vec<Parsed> = elements
        .iter()
        .map(|MaybeObject(o)| o.as_ref().and_then(parse))
        .collect::<Option<_>>()
        .ok_or(400u16)?;
    if parsed.len() > 10 {
        return Err(400);
    }
    parsed.into_iter().map(rules).collect()
}

fn percent_encode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                char::from(b).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

fn check_api(route: char, signing: char, extra: &[(String, String)], body: &[u8], now: u64) {
    let app = PusherApp {
        app_id: "1".into(),
        key: API_KEY.into(),
        secret: API_SECRET.into(),
        ..PusherApp::default()
    };
    let server = FuzzPusher::new(vec![app], Limits::default()).expect("runtime");
    let sessions: Vec<FuzzPusherSession> = SUBSCRIBERS
        .iter()
        .map(|(id, channels)| {
            let s = server.open(0, SessionId(*id)).expect("opens");
            for c in *channels {
                let sub = json!({ "event": "pusher:subscribe", "data": { "channel": c } });
                s.receive(Message::text(sub.to_string()));
            }
            s.take();
            s
        })
        .collect();
    let batch = route == 'b';
    let path = if batch {
        "/apps/1/batch_events"
    } else {
        "/apps/1/events"
    };
    let ts = if signing == 'e' { now - 700 } else { now };
    let mut params = signed(API_KEY, API_SECRET, "POST", path, extra, body, ts);
    if signing == 'x' {
        let sig = &mut params.last_mut().expect("signature").1;
        *sig = change(sig, 0).expect("a signature");
    }
    if signing == 'n' {
        params.clear();
    }
    let query: Vec<String> = params
        .iter()
        .map(|(k, v)| format!("{}={}", percent_encode(k), percent_encode(v)))
        .collect();
    let uri_path = if signing == 'w' {
        path.replace("/apps/1/", "/apps/2/")
    } else {
        path.to_string()
    };
    let uri = format!("{uri_path}?{}", query.join("&"));
    let (status, answer) = server.api("POST", &uri, body.to_vec());
    let expected = match signing {
        'w' => Err(404),
        'x' | 'e' | 'n' => Err(401),
        _ => events(batch, body),
    };
    let text = String::from_utf8_lossy(&answer);
    let subscribers =
        |c: &str| -> Vec<usize> { (0..3).filter(|&i| SUBSCRIBERS[i].1.contains(&c)).collect() };
    let mut want: Vec<Vec<Value>> = vec![Vec::new(); 3];
    match &expected {
        Ok(evs) => {
            assert_eq!(
                status,
                200,
                "{text:?} for {:?}",
                String::from_utf8_lossy(body)
            );
            let v: Value = serde_json::from_str(&text).expect("JSON answer");
            for (i, ev) in evs.iter().enumerate() {
                for c in &ev.channels {
                    for s in subscribers(c) {
                        if ev.except != Some(SessionId(SUBSCRIBERS[s].0)) {
                            want[s]
                                .push(json!({ "event": ev.name, "channel": c, "data": ev.data }));
                        }
                    }
                }
                let info = |c: &str| {
                    let wants = |k: &str| ev.info.split(',').any(|i| i.trim() == k);
                    let mut v = json!({});
                    if wants("subscription_count") {
                        v["subscription_count"] = Value::from(subscribers(c).len());
                    }
                    if wants("user_count") && c.starts_with("presence-") {
                        v["user_count"] = Value::from(0);
                    }
                    v
                };
                let any_info = evs.iter().any(|e| !e.info.is_empty());
                let expected_answer = match (batch, any_info) {
                    (false, true) => {
                        let map: serde_json::Map<String, Value> =
                            ev.channels.iter().map(|c| (c.clone(), info(c))).collect();
                        json!({ "channels": map })
                    }
                    (true, true) => match ev.channels.first() {
                        Some(c) if !ev.info.is_empty() => info(c),
                        _ => json!({}),
                    },
                    _ => json!({}),
                };
                if batch && any_info {
                    assert_eq!(v["batch"].as_array().map(Vec::len), Some(evs.len()));
                }
                let got = if batch && any_info {
                    v["batch"][i].clone()
                } else {
                    v.clone()
                };
                assert_eq!(got, expected_answer, "answer {text:?}");
            }
        }
        Err(code) => assert_eq!(
            status,
            *code,
            "{text:?} for {:?}",
            String::from_utf8_lossy(body)
        ),
    }
    if status != 200 {
        assert!(
            !text.trim_end().contains('\n') && !text.trim().is_empty(),
            "{text:?}"
        );
    }
    for (i, s) in sessions.iter().enumerate() {
        let (frames, closing) = s.take();
        assert!(closing.is_none());
        let got: Vec<Value> = frames
            .iter()
            .map(|f| serde_json::from_slice(f).expect("JSON frame"))
            .collect();
        assert_eq!(
            got,
            want[i],
            "session {i} after {status} for {:?}",
            String::from_utf8_lossy(body)
        );
    }
}

fuzz_target!(|input: &[u8]| {
    let mut lines = input.splitn(10, |&b| b == b'\n');
    let mut line = || String::from_utf8_lossy(lines.next().unwrap_or(b"")).into_owned();
    let (key, secret, sid, channel, data) = (line(), line(), line(), line(), line());
    let (method, path, extra, control) = (line(), line(), line(), line());
    let body = lines.next().unwrap_or(b"").to_vec();
    let mut control = control.chars();
    let route = control.next().unwrap_or(' ');
    let signing = control.next().unwrap_or('s');
    let at: usize = control.as_str().parse().unwrap_or(0);

    // Socket ids.
    if let Some(id) = parse_socket_id(&sid) {
        assert_eq!(socket_id(id), sid, "parse_socket_id accepted {sid:?}");
    }
    let id = sid
        .bytes()
        .fold(0u64, |h, b| h.rotate_left(8) ^ u64::from(b));
    assert_eq!(
        parse_socket_id(&socket_id(SessionId(id))),
        Some(SessionId(id))
    );

    // Channel names.
    match validate_channel(&channel) {
        Ok(()) => {
            assert!(pusher_name_ok(&channel), "accepted {channel:?}");
            assert!(validate_channel_name(&channel).is_ok(), "{channel:?}");
        }
        Err(e) => {
            assert!(!pusher_name_ok(&channel), "refused {channel:?}: {e}");
            assert!(!e.contains('\n'));
        }
    }

    check_client_auth(&key, &secret, &sid, &channel, &data, at);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let extra = extra_params(&extra);
    check_request(&key, &secret, &method, &path, &extra, &body, now, at);
    if route == 'e' || route == 'b' {
        check_api(route, signing, &extra, &body, now);
    }
});
