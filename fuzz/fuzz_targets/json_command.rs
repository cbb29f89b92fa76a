//! `json_command`: the json protocol's command parser (`protocol::parse_command`, behind every
//! json WebSocket message, TCP line or frame and UDP datagram) against the protocol's
//! specification, read off the input with serde_json's generic `Value` as the reference:
//!
//! - a command is accepted only when the input is one JSON object without duplicate keys whose
//!   `type` is `subscribe`, `unsubscribe`, `publish` or `ping`, with exactly the fields that type
//!   allows (`channel` a string; `data`/`data_base64` strings or null; `id` anything), and the
//!   command carries exactly those values;
//! - every such object is accepted (nothing valid is refused);
//! - a refusal is one line starting with `invalid command: ` (it goes to the client verbatim);
//! - an accepted command, re-encoded canonically, parses back to the same command.
//!
//! Input: raw bytes (the message as the client sent it).
#![no_main]

use std::fmt;

use libfuzzer_sys::fuzz_target;
use serde::de::{Deserialize, Deserializer, MapAccess, Visitor};
use serde_json::{json, Value};
use sockhub::fuzzing::{parse_command, Command};

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

/// What the specification says the input is: `Some(command)` for a valid command.
fn reference(data: &[u8]) -> Option<Command> {
    let Entries(entries) = serde_json::from_slice(data).ok()?;
    let mut keys: Vec<&str> = entries.iter().map(|(k, _)| k.as_str()).collect();
    keys.sort_unstable();
    if keys.windows(2).any(|w| w[0] == w[1]) {
        return None;
    }
    let get = |k: &str| entries.iter().find(|(key, _)| key == k).map(|(_, v)| v);
    let allowed: &[&str] = match get("type")?.as_str()? {
        "subscribe" | "unsubscribe" => &["type", "channel"],
        "publish" => &["type", "channel", "data", "data_base64"],
        "ping" => &["type", "id"],
        _ => return None,
    };
    if keys.iter().any(|k| !allowed.contains(k)) {
        return None;
    }
    let string = |k: &str| get(k).and_then(Value::as_str).map(str::to_owned);
    // `null` or absent → None; a string → Some; anything else → invalid.
    let optional = |k: &str| -> Option<Option<String>> {
        match get(k) {
            None | Some(Value::Null) => Some(None),
            Some(Value::String(s)) => Some(Some(s.clone())),
            Some(_) => None,
        }
    };
    Some(match get("type")?.as_str()? {
        "subscribe" => Command::Subscribe {
            channel: string("channel")?,
        },
        "unsubscribe" => Command::Unsubscribe {
            channel: string("channel")?,
        },
        "publish" => Command::Publish {
            channel: string("channel")?,
            data: optional("data")?,
            data_base64: optional("data_base64")?,
        },
        _ => Command::Ping {
            id: match get("id") {
                None | Some(Value::Null) => None,
                Some(v) => Some(v.clone()),
            },
        },
    })
}

fn canonical(c: &Command) -> Value {
    match c {
        Command::Subscribe { channel } => json!({"type": "subscribe", "channel": channel}),
        Command::Unsubscribe { channel } => json!({"type": "unsubscribe", "channel": channel}),
        Command::Publish {
            channel,
            data,
            data_base64,
        } => {
            json!({"type": "publish", "channel": channel, "data": data, "data_base64": data_base64})
        }
        Command::Ping { id } => json!({"type": "ping", "id": id}),
    }
}

fuzz_target!(|data: &[u8]| {
    let parsed = parse_command(data);
    let expected = reference(data);
    match (&parsed, &expected) {
        (Ok(got), Some(want)) => assert_eq!(got, want, "input {:?}", String::from_utf8_lossy(data)),
        (Ok(got), None) => panic!(
            "accepted {got:?} from an input the specification refuses: {:?}",
            String::from_utf8_lossy(data)
        ),
        (Err(e), Some(want)) => panic!(
            "refused a valid command {want:?} ({e}): {:?}",
            String::from_utf8_lossy(data)
        ),
        (Err(e), None) => {
            assert!(e.starts_with("invalid command: "), "{e}");
            assert!(!e.contains('\n') && !e.contains('\r'), "one line: {e:?}");
        }
    }
    if let Ok(cmd) = parsed {
        let again = serde_json::to_vec(&canonical(&cmd)).expect("serializable");
        assert_eq!(
            parse_command(&again).as_ref(),
            Ok(&cmd),
            "canonical round trip"
        );
    }
});
