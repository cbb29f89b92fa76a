//! `pusher_message`: what Pusher clients send (`pusher:subscribe` with auth and presence
//! `channel_data`, `pusher:unsubscribe`, `pusher:signin`, `client-*` events, pings, anything
//! else) through the real dispatcher (`transport::dispatch` → `pusher::dispatch`) of a server
//! with two apps and three Pusher sessions (`fuzzing::FuzzPusher`, no sockets), checked against
//! a model of the protocol after every step; the messages are read with serde_json's generic
//! `Value` as the reference:
//!
//! - every frame a session gets is one JSON object with a string `event`; a `pusher:error`'s
//!   data is `{code, message}` with a one-line message;
//! - a message that is not one JSON object (without duplicate `event`/`channel`/`data`), with a
//!   string `event`, gets exactly one `pusher:error`; so do binary frames and unknown events;
//! - `pusher:subscribe` succeeds exactly when the name obeys Pusher's rules (1–164 characters of
//!   `A-Za-z0-9_-=@,.;`; `validate_channel` agrees, and such a name is also a valid hub name),
//!   the auth of a `private-` or `presence-` channel is `<key>:<HMAC-SHA256 of
//!   socket_id:channel[:channel_data]>` for this session's socket id and app (the signature's
//!   hex in any case; anything else → 401), a presence `channel_data` is one JSON object with a
//!   string or number `user_id` (400), and the session has fewer than `max_subscriptions` (4) other channels
//!   (400); subscribing again succeeds again;
//! - presence: the `subscription_succeeded` snapshot lists exactly the users with a socket in
//!   the channel (ids, infos, count); `member_added` reaches the other members when a user's
//!   first socket joins, `member_removed` when its last one leaves (unsubscribe, close, or
//!   subscribing again as another user); subscribing again as the same user changes nothing;
//! - `pusher_internal:subscription_count` (app 0 asks for it): every subscriber of a
//!   non-presence channel gets the new count when a client of that app subscribes, unsubscribes
//!   or closes;
//! - `pusher:signin` succeeds exactly with a valid signature of `socket_id::user::user_data`
//!   and a `user_data` object whose `id` is a non-empty string or a number (else
//!   `pusher:error` 4009);
//! - a `client-*` event reaches exactly the other subscribers of its channel, with the same
//!   data (and the sender's `user_id` on presence channels), when the app allows client events
//!   and the sender subscribed to that `private-`/`presence-` channel (not a
//!   `private-encrypted-` one); else one `pusher:error`;
//! - cache channels: a new subscriber gets the last client event or `pusher:cache_miss`;
//! - `connection_established` names the session's socket id, `socket_id(id)`, which
//!   `parse_socket_id` reads back as the same id; hub subscriber counts match the model.
//!
//! Input: lines (invalid UTF-8 replaced), at most 48 steps, each `<op><slot><rest>` (slot = the
//! character's code mod 3, so `0`–`2`; slots 0 and 1 use app 0, which allows client events and
//! asks for subscription counts, slot 2 app 1, which does neither):
//!
//! - `m` the rest as a text message, verbatim; `b` the rest as a binary message;
//! - `s<auth><channel>[\t<channel_data>]` subscribe; `<auth>`: `g` a good auth for this
//!   session, `o` good for the next slot's socket, `f` good with its last hex digit changed,
//!   `u` good in upper case, `k` good under another key, `d` good over other channel data,
//!   anything else none;
//! - `u<channel>` unsubscribe; `i<auth><user_data>` sign in (same `<auth>` codes);
//! - `c<name>\t<channel>[\t<data>]` a client event (data: the JSON if it parses, else a
//!   string; no channel field without a tab); `p` ping;
//! - `x[<id>]` the session closes and a new one opens in the slot under that id (decimal; the
//!   next free id if absent, taken or invalid).
#![no_main]

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{json, Value};
use sockhub::config::PusherApp;
use sockhub::fuzzing::{FuzzPusher, FuzzPusherSession};
use sockhub::pusher::signature::sign;
use sockhub::pusher::{parse_socket_id, socket_id, validate_channel};
use sockhub::{validate_channel_name, CloseReason, Limits, Message, SessionId};

const MAX_SUBSCRIPTIONS: usize = 4;
const MAX_STEPS: usize = 48;
/// An app as configured: key, secret, `client_events`, `subscription_count`.
struct App(&'static str, &'static str, bool, bool);
const APPS: [App; 2] = [
    App("fuzzkey", "fuzzsecret", true, true),
    App("key2", "s3cr3t", false, false),
];
const SLOT_APP: [usize; 3] = [0, 0, 1];
const FIRST_IDS: [u64; 3] = [1, (1 << 32) | 7, u64::MAX];

/// A JSON object's entries in order, duplicates kept (a `Value` would keep only the last).
struct Entries(Vec<(String, Value)>);

impl<'de> Deserialize<'de> for Entries {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Entries, A::Error> {
                let mut v = Vec::new();
                while let Some(e) = map.next_entry::<String, Value>()? {
                    v.push(e);
                }
                Ok(Entries(v))
            }
        }
        d.deserialize_map(V)
    }
}

impl Entries {
    /// The entries of `text` when it is one JSON object in which none of `known` repeats.
    fn parse(text: &str, known: &[&str]) -> Option<Entries> {
        let e: Entries = serde_json::from_str(text).ok()?;
        let mut seen = BTreeSet::new();
        for (k, _) in &e.0 {
            if known.contains(&k.as_str()) && !seen.insert(k.as_str()) {
                return None;
            }
        }
        Some(e)
    }

    fn get(&self, k: &str) -> Option<&Value> {
        self.0.iter().find(|(key, _)| key == k).map(|(_, v)| v)
    }
}

/// Absent or null → `Some(None)`; a string → `Some(Some)`; anything else → `None` (invalid).
fn opt_string(v: Option<&Value>) -> Option<Option<String>> {
    match v {
        None | Some(Value::Null) => Some(None),
        Some(Value::String(s)) => Some(Some(s.clone())),
        Some(_) => None,
    }
}

/// Pusher's channel-name rule, written independently of `validate_channel`.
fn pusher_name_ok(name: &str) -> bool {
    (1..=164).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"_-=@,.;".contains(&b))
}

fn is_cache(name: &str) -> bool {
    [
        "cache-",
        "private-cache-",
        "private-encrypted-cache-",
        "presence-cache-",
    ]
    .iter()
    .any(|p| name.starts_with(p))
}

/// A JSON event's `data` as the adapter relays it: a string as is, null as "", else its JSON.
fn data_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => String::new(),
        other => other.to_string(),
    }
}

/// Is `auth` `<key>:<hex signature of text>` (the hex in any case)?
fn auth_ok(app: usize, text: &str, auth: &str) -> bool {
    let App(key, secret, ..) = APPS[app];
    let want = sign(secret, text);
    auth.strip_prefix(key)
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|sig| sig.eq_ignore_ascii_case(&want))
}

/// An auth string as the `<auth>` code asks; `text_for(sid)` is what is signed.
fn make_auth(
    code: char,
    app: usize,
    sid: &str,
    other_sid: &str,
    text_for: impl Fn(&str) -> String,
    other_text: String,
) -> Option<String> {
    let App(key, secret, ..) = APPS[app];
    let good = sign(secret, &text_for(sid));
    Some(match code {
        'g' => format!("{key}:{good}"),
        'o' => format!("{key}:{}", sign(secret, &text_for(other_sid))),
        'f' => {
            let mut s = good;
            let last = if s.ends_with('0') { '1' } else { '0' };
            s.pop();
            s.push(last);
            format!("{key}:{s}")
        }
        'u' => format!("{key}:{}", good.to_uppercase()),
        'k' => format!("otherkey:{good}"),
        'd' => format!("{key}:{}", sign(secret, &other_text)),
        _ => return None,
    })
}

/// What a session should get from one step.
#[derive(Debug, Clone, PartialEq)]
enum Want {
    /// Exactly this event (after `normalize`).
    Frame(Value),
    /// A `pusher:error` with this code.
    Error(Option<u64>),
    /// A `pusher:subscription_error` for this channel with this status.
    SubscriptionError(String, u64),
}

fn frame(event: &str, channel: Option<&str>, data: Value) -> Want {
    let mut v = json!({ "event": event, "data": data });
    if let Some(c) = channel {
        v["channel"] = Value::from(c);
    }
    Want::Frame(normalize(v))
}

/// Events whose data the server writes as JSON text: compared as JSON, presence ids sorted.
const JSON_DATA: [&str; 7] = [
    "pusher_internal:subscription_count",
    "pusher:connection_established",
    "pusher:signin_success",
    "pusher_internal:subscription_succeeded",
    "pusher_internal:member_added",
    "pusher_internal:member_removed",
    "pusher:cache_miss",
];

fn normalize(mut v: Value) -> Value {
    let event = v["event"].as_str().unwrap_or("").to_string();
    if JSON_DATA.contains(&event.as_str()) {
        if let Some(text) = v["data"].as_str() {
            let mut data: Value = serde_json::from_str(text)
                .unwrap_or_else(|e| panic!("{event} data is not JSON ({e}): {text:?}"));
            if let Some(ids) = data
                .pointer_mut("/presence/ids")
                .and_then(Value::as_array_mut)
            {
                ids.sort_by_key(|a| a.to_string());
            }
            v["data"] = data;
        }
    }
    v
}

struct Slot {
    s: Option<FuzzPusherSession>,
    id: u64,
    sid: String,
    app: usize,
    channels: BTreeSet<String>,
    authorized: BTreeSet<String>,
    /// presence channel → user id
    presence: BTreeMap<String, String>,
}

struct Model {
    server: FuzzPusher,
    slots: Vec<Slot>,
    /// presence channel → user → (info, sockets)
    members: BTreeMap<String, BTreeMap<String, (Value, usize)>>,
    /// cache channel → its last event, as a new subscriber gets it
    cache: BTreeMap<String, Value>,
    /// channels ever used, for the hub's subscriber counts
    seen: BTreeSet<String>,
    /// frames a slot may or may not get in this step
    ignore: Vec<(usize, Want)>,
    next_id: u64,
}

type Out = [Vec<Want>; 3];

impl Model {
    fn open(&mut self, slot: usize, id: u64, out: &mut Out) {
        let s = self
            .server
            .open(SLOT_APP[slot], SessionId(id))
            .expect("session opens");
        let sid = socket_id(SessionId(id));
        assert_eq!(parse_socket_id(&sid), Some(SessionId(id)), "{sid}");
        let activity = Limits::default().ping_interval.as_secs().max(1);
        out[slot].push(frame(
            "pusher:connection_established",
            None,
            json!({ "socket_id": sid, "activity_timeout": activity }),
        ));
        self.slots[slot] = Slot {
            s: Some(s),
            id,
            sid,
            app: SLOT_APP[slot],
            channels: BTreeSet::new(),
            authorized: BTreeSet::new(),
            presence: BTreeMap::new(),
        };
    }

    /// Sends `want` to every other subscriber of `channel`.
    fn to_others(&self, slot: usize, channel: &str, want: &Want, out: &mut Out) {
        for (i, s) in self.slots.iter().enumerate() {
            if i != slot && s.channels.contains(channel) {
                out[i].push(want.clone());
            }
        }
    }

    /// A socket of `slot` leaves a presence channel as `user`: `member_removed` to the other
    /// subscribers when it was the user's last socket.
    fn leave_presence(&mut self, slot: usize, channel: &str, user: &str, out: &mut Out) {
        let members = self.members.get_mut(channel).expect("member's channel");
        let entry = members.get_mut(user).expect("member");
        entry.1 -= 1;
        let gone = entry.1 == 0;
        if gone {
            members.remove(user);
        }
        if members.is_empty() {
            self.members.remove(channel);
        }
        if gone {
            let w = frame(
                "pusher_internal:member_removed",
                Some(channel),
                json!({ "user_id": user }),
            );
            self.to_others(slot, channel, &w, out);
        }
    }

    /// One text message from `slot`: what every session should get.
    fn text(&mut self, slot: usize, text: &str, out: &mut Out) {
        let Some(e) = Entries::parse(text, &["event", "channel", "data"]) else {
            return out[slot].push(Want::Error(None));
        };
        let (Some(Value::String(event)), Some(channel)) =
            (e.get("event"), opt_string(e.get("channel")))
        else {
            return out[slot].push(Want::Error(None));
        };
        let data = e.get("data").cloned().unwrap_or(Value::Null);
        match event.as_str() {
            "pusher:ping" => out[slot].push(frame("pusher:pong", None, json!("{}"))),
            "pusher:pong" => {}
            "pusher:subscribe" => self.subscribe(slot, &data, out),
            "pusher:unsubscribe" => {
                let Some(channel) = data.get("channel").and_then(Value::as_str) else {
                    return out[slot].push(Want::Error(None));
                };
                let me = &mut self.slots[slot];
                if !me.channels.remove(channel) {
                    return;
                }
                me.authorized.remove(channel);
                if let Some(user) = me.presence.remove(channel) {
                    self.leave_presence(slot, channel, &user, out);
                }
                self.count(self.slots[slot].app, channel, None, out);
            }
            "pusher:signin" => {
                let auth = data.get("auth").and_then(Value::as_str).unwrap_or("");
                let user_data = data.get("user_data").and_then(Value::as_str).unwrap_or("");
                let me = &self.slots[slot];
                let signed = auth_ok(me.app, &format!("{}::user::{user_data}", me.sid), auth);
                let has_id = serde_json::from_str::<Value>(user_data)
                    .ok()
                    .is_some_and(|v| match v.get("id") {
                        Some(Value::String(s)) => !s.is_empty(),
                        Some(Value::Number(_)) => true,
                        _ => false,
                    });
                out[slot].push(if signed && has_id {
                    frame(
                        "pusher:signin_success",
                        None,
                        json!({ "user_data": user_data }),
                    )
                } else {
                    Want::Error(Some(4009))
                });
            }
            name if name.starts_with("client-") => {
                let Some(channel) = channel else {
                    return out[slot].push(Want::Error(None));
                };
                let me = &self.slots[slot];
                if !APPS[me.app].2
                    || !me.authorized.contains(&channel)
                    || !(channel.starts_with("private-") || channel.starts_with("presence-"))
                    || channel.starts_with("private-encrypted-")
                {
                    return out[slot].push(Want::Error(None));
                }
                let mut ev = json!({ "event": name, "channel": channel, "data": data_text(&data) });
                if let Some(user) = me.presence.get(&channel) {
                    ev["user_id"] = Value::from(user.as_str());
                }
                if is_cache(&channel) {
                    self.cache.insert(channel.clone(), ev.clone());
                }
                self.to_others(slot, &channel, &Want::Frame(ev), out);
            }
            _ => out[slot].push(Want::Error(None)),
        }
    }

    fn subscribe(&mut self, slot: usize, data: &Value, out: &mut Out) {
        // `data` is a `Value` already, so duplicate keys inside it are resolved (last wins).
        let fields = data.as_object().and_then(|o| {
            let channel = o.get("channel")?.as_str()?.to_string();
            let auth = opt_string(o.get("auth"))?;
            let channel_data = opt_string(o.get("channel_data"))?;
            Some((channel, auth, channel_data))
        });
        let Some((channel, auth, channel_data)) = fields else {
            return out[slot].push(Want::Error(None));
        };
        self.seen.insert(channel.clone());
        let ok = pusher_name_ok(&channel);
        match validate_channel(&channel) {
            Ok(()) => {
                assert!(ok, "validate_channel accepted {channel:?}");
                assert!(
                    validate_channel_name(&channel).is_ok(),
                    "a valid Pusher name the hub refuses: {channel:?}"
                );
            }
            Err(e) => {
                assert!(!ok, "validate_channel refused {channel:?}: {e}");
                assert!(!e.contains('\n'), "one line: {e:?}");
                return out[slot].push(Want::SubscriptionError(channel, 400));
            }
        }
        let me = &self.slots[slot];
        let presence = channel.starts_with("presence-");
        let private = presence || channel.starts_with("private-");
        if private {
            let text = match (&channel_data, presence) {
                (Some(d), true) => format!("{}:{channel}:{d}", me.sid),
                _ => format!("{}:{channel}", me.sid),
            };
            if !auth.is_some_and(|a| auth_ok(me.app, &text, &a)) {
                return out[slot].push(Want::SubscriptionError(channel, 401));
            }
        }
        let member = if presence {
            let parsed = channel_data
                .as_deref()
                .and_then(|d| Entries::parse(d, &["user_id", "user_info"]))
                .and_then(|e| {
                    let id = match e.get("user_id")? {
                        Value::String(s) => s.clone(),
                        Value::Number(n) => n.to_string(),
                        _ => return None,
                    };
                    Some((id, e.get("user_info").cloned().unwrap_or(Value::Null)))
                });
            let Some(m) = parsed else {
                return out[slot].push(Want::SubscriptionError(channel, 400));
            };
            Some(m)
        } else {
            None
        };
        // Subscribing again is accepted (the hub keeps one subscription).
        if !me.channels.contains(&channel) && me.channels.len() >= MAX_SUBSCRIPTIONS {
            return out[slot].push(Want::SubscriptionError(channel, 400));
        }
        let me = &mut self.slots[slot];
        me.channels.insert(channel.clone());
        if private {
            me.authorized.insert(channel.clone());
        }
        let Some((user, info)) = member else {
            out[slot].push(frame(
                "pusher_internal:subscription_succeeded",
                Some(&channel),
                json!("{}"),
            ));
            self.replay(slot, &channel, out);
            return self.count(self.slots[slot].app, &channel, None, out);
        };
        match me.presence.insert(channel.clone(), user.clone()) {
            // Again as the same user: a fresh snapshot, nothing else.
            Some(previous) if previous == user => {
                let snapshot = self.snapshot(&channel);
                return out[slot].push(snapshot);
            }
            // As another user: the socket leaves as the first, then joins as the second. Whether
            // it hears its own old identity leave is left open (its new snapshot follows).
            Some(previous) => {
                let w = frame(
                    "pusher_internal:member_removed",
                    Some(&channel),
                    json!({ "user_id": previous }),
                );
                self.ignore.push((slot, w));
                self.leave_presence(slot, &channel, &previous, out);
            }
            None => {}
        }
        let members = self.members.entry(channel.clone()).or_default();
        let entry = members.entry(user.clone()).or_insert((info.clone(), 0));
        entry.1 += 1;
        let first = entry.1 == 1;
        let snapshot = self.snapshot(&channel);
        out[slot].push(snapshot);
        self.replay(slot, &channel, out);
        if first {
            let w = frame(
                "pusher_internal:member_added",
                Some(&channel),
                json!({ "user_id": user, "user_info": info }),
            );
            self.to_others(slot, &channel, &w, out);
        }
    }

    /// `subscription_succeeded` of a presence channel as its members stand.
    fn snapshot(&self, channel: &str) -> Want {
        let none = BTreeMap::new();
        let members = self.members.get(channel).unwrap_or(&none);
        let mut ids: Vec<&String> = members.keys().collect();
        ids.sort_by_key(|a| Value::from(a.as_str()).to_string());
        let hash: serde_json::Map<String, Value> = members
            .iter()
            .map(|(k, (v, _))| (k.clone(), v.clone()))
            .collect();
        let data = json!({ "presence": { "ids": ids, "hash": hash, "count": members.len() } });
        Want::Frame(json!({
            "event": "pusher_internal:subscription_succeeded",
            "channel": channel,
            "data": data,
        }))
    }

    /// A Pusher client of `app` subscribed to or left `channel`: its subscribers (but
    /// `except`) get the new count, when the app asks for that and it is not a presence
    /// channel.
    fn count(&self, app: usize, channel: &str, except: Option<usize>, out: &mut Out) {
        if !APPS[app].3 || channel.starts_with("presence-") {
            return;
        }
        let subscribed = |i: usize| Some(i) != except && self.slots[i].channels.contains(channel);
        let n = (0..3).filter(|&i| subscribed(i)).count();
        let w = frame(
            "pusher_internal:subscription_count",
            Some(channel),
            json!({ "subscription_count": n }),
        );
        for (i, o) in out.iter_mut().enumerate() {
            if subscribed(i) {
                o.push(w.clone());
            }
        }
    }

    fn replay(&self, slot: usize, channel: &str, out: &mut Out) {
        if !is_cache(channel) {
            return;
        }
        out[slot].push(match self.cache.get(channel) {
            Some(ev) => Want::Frame(ev.clone()),
            None => frame("pusher:cache_miss", Some(channel), json!({})),
        });
    }

    /// Takes every outbox and compares it with `out`; `any_order` for a close (its presence
    /// channels are left in no particular order).
    fn check(&mut self, out: Out, any_order: bool, step: &str) {
        for (i, want) in out.into_iter().enumerate() {
            let s = self.slots[i].s.as_ref().expect("open");
            let (frames, closing) = s.take();
            assert!(
                closing.is_none(),
                "slot {i} closing: {closing:?} after {step:?}"
            );
            let mut got: Vec<Want> = frames.iter().map(|f| classify(f)).collect();
            for (_, w) in self.ignore.iter().filter(|(slot, _)| *slot == i) {
                if let Some(at) = got.iter().position(|g| g == w) {
                    got.remove(at);
                }
            }
            let mut want = want;
            if any_order {
                got.sort_by_key(|w| format!("{w:?}"));
                want.sort_by_key(|w| format!("{w:?}"));
            }
            assert_eq!(got, want, "slot {i} after {step:?}");
        }
        self.ignore.clear();
        for c in &self.seen {
            let n = self.slots.iter().filter(|s| s.channels.contains(c)).count();
            assert_eq!(self.server.hub().subscribers(c), n, "subscribers of {c:?}");
        }
    }
}

/// A frame as the model states it; panics on a malformed one.
fn classify(f: &[u8]) -> Want {
    let v: Value = serde_json::from_slice(f)
        .unwrap_or_else(|e| panic!("frame is not JSON ({e}): {:?}", String::from_utf8_lossy(f)));
    let obj = v.as_object().expect("frame is an object");
    let event = obj
        .get("event")
        .and_then(Value::as_str)
        .expect("string event");
    match event {
        "pusher:error" => {
            let data = &obj["data"];
            let message = data["message"].as_str().expect("error message");
            assert!(
                !message.is_empty() && !message.contains('\n'),
                "{message:?}"
            );
            assert!(data["code"].is_null() || data["code"].is_u64(), "{data}");
            Want::Error(data["code"].as_u64())
        }
        "pusher:subscription_error" => {
            let text = obj["data"].as_str().expect("string data");
            let data: Value = serde_json::from_str(text).expect("JSON data");
            assert_eq!(data["type"], "AuthError");
            assert!(data["error"].as_str().is_some_and(|e| !e.contains('\n')));
            Want::SubscriptionError(
                obj["channel"].as_str().expect("channel").to_string(),
                data["status"].as_u64().expect("status"),
            )
        }
        _ => Want::Frame(normalize(v)),
    }
}

fn fields(rest: &str) -> (String, Option<String>, Option<String>) {
    let mut it = rest.splitn(3, '\t');
    let a = it.next().unwrap_or("").to_string();
    (
        a,
        it.next().map(str::to_string),
        it.next().map(str::to_string),
    )
}

fuzz_target!(|input: &[u8]| {
    let apps = APPS
        .iter()
        .enumerate()
        .map(|(i, App(key, secret, client_events, count))| PusherApp {
            app_id: (i + 1).to_string(),
            key: key.to_string(),
            secret: secret.to_string(),
            client_events: *client_events,
            subscription_count: *count,
            max_client_events_per_second: 0,
            ..PusherApp::default()
        })
        .collect();
    let limits = Limits {
        max_subscriptions: MAX_SUBSCRIPTIONS,
        ..Limits::default()
    };
    let mut m = Model {
        server: FuzzPusher::new(apps, limits).expect("runtime"),
        slots: Vec::new(),
        members: BTreeMap::new(),
        cache: BTreeMap::new(),
        seen: BTreeSet::new(),
        ignore: Vec::new(),
        next_id: 2,
    };
    let mut out: Out = Default::default();
    for (slot, id) in FIRST_IDS.into_iter().enumerate() {
        m.slots.push(Slot {
            s: None,
            id: 0,
            sid: String::new(),
            app: 0,
            channels: BTreeSet::new(),
            authorized: BTreeSet::new(),
            presence: BTreeMap::new(),
        });
        m.open(slot, id, &mut out);
    }
    m.check(out, false, "open");

    let text = String::from_utf8_lossy(input);
    for line in text.split('\n').take(MAX_STEPS) {
        let mut chars = line.chars();
        let (Some(op), Some(slot)) = (chars.next(), chars.next()) else {
            continue;
        };
        let slot = (slot as usize) % 3;
        let rest = chars.as_str();
        let mut out: Out = Default::default();
        let mut any_order = false;
        let (app, sid) = (m.slots[slot].app, m.slots[slot].sid.clone());
        let other_sid = m.slots[(slot + 1) % 3].sid.clone();
        let message = match op {
            'm' => Some(rest.to_string()),
            'b' => {
                out[slot].push(Want::Error(None));
                let s = m.slots[slot].s.as_ref().expect("open");
                s.receive(Message::binary(rest.as_bytes().to_vec()));
                None
            }
            's' => {
                let mut c = rest.chars();
                let code = c.next().unwrap_or('n');
                let (channel, channel_data, _) = fields(c.as_str());
                let signed = |sid: &str| match &channel_data {
                    Some(d) => format!("{sid}:{channel}:{d}"),
                    None => format!("{sid}:{channel}"),
                };
                let other = format!("{sid}:{channel}:{} ", channel_data.as_deref().unwrap_or(""));
                let auth = make_auth(code, app, &sid, &other_sid, signed, other);
                let mut data = json!({ "channel": channel });
                if let Some(a) = auth {
                    data["auth"] = Value::from(a);
                }
                if let Some(d) = channel_data {
                    data["channel_data"] = Value::from(d);
                }
                Some(json!({ "event": "pusher:subscribe", "data": data }).to_string())
            }
            'u' => Some(
                json!({ "event": "pusher:unsubscribe", "data": { "channel": rest } }).to_string(),
            ),
            'i' => {
                let mut c = rest.chars();
                let code = c.next().unwrap_or('n');
                let user_data = c.as_str();
                let signed = |sid: &str| format!("{sid}::user::{user_data}");
                let other = format!("{sid}::user::{user_data} ");
                let auth = make_auth(code, app, &sid, &other_sid, signed, other);
                Some(
                    json!({ "event": "pusher:signin", "data": { "auth": auth, "user_data": user_data } })
                        .to_string(),
                )
            }
            'c' => {
                let (name, channel, data) = fields(rest);
                let mut ev = json!({ "event": name });
                if let Some(c) = channel {
                    ev["channel"] = Value::from(c);
                }
                if let Some(d) = data {
                    ev["data"] = serde_json::from_str(&d).unwrap_or(Value::String(d));
                }
                Some(ev.to_string())
            }
            'p' => Some(json!({ "event": "pusher:ping", "data": {} }).to_string()),
            'x' => {
                let old = m.slots[slot].s.take().expect("open");
                old.finish(CloseReason::Normal);
                let closed = std::mem::take(&mut m.slots[slot].presence);
                for (channel, user) in closed {
                    m.leave_presence(slot, &channel, &user, &mut out);
                }
                for channel in std::mem::take(&mut m.slots[slot].channels) {
                    m.count(m.slots[slot].app, &channel, None, &mut out);
                }
                let taken = |id: u64| m.slots.iter().any(|s| s.s.is_some() && s.id == id);
                let id = match rest.parse::<u64>() {
                    Ok(id) if id != 0 && !taken(id) => id,
                    _ => {
                        while taken(m.next_id) {
                            m.next_id = m.next_id.wrapping_add(1).max(1);
                        }
                        m.next_id
                    }
                };
                m.next_id = m.next_id.max(id).wrapping_add(1).max(2);
                m.open(slot, id, &mut out);
                any_order = true;
                None
            }
            _ => continue,
        };
        if let Some(text) = message {
            m.text(slot, &text, &mut out);
            m.slots[slot]
                .s
                .as_ref()
                .expect("open")
                .receive(Message::text(text));
        }
        m.check(out, any_order, line);
    }
});
