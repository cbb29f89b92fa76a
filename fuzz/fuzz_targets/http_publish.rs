//! `http_publish`: the body of `POST /api/publish` (`sockhub::api::parse_publish`), checked
//! against the API's rules read off the input with serde_json's generic `Value`:
//!
//! - accepted only if the body is one JSON object whose keys are among `channel`, `channels`,
//!   `data`, `data_base64`, `exclude_session`, with exactly one of `channel`/`channels` and of
//!   `data`/`data_base64`;
//! - an accepted publish names 1 to 100 distinct, valid channels (in first-seen order), carries
//!   at most `max` payload bytes, and the text payload equals `data`;
//! - a refusal has a 4xx status, a stable code and a one-line message.
//!
//! Input: one byte for the size limit, then the body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use sockhub::api::{parse_publish, MAX_PUBLISH_CHANNELS};

const KEYS: [&str; 5] = ["channel", "channels", "data", "data_base64", "exclude_session"];

fuzz_target!(|input: &[u8]| {
    let Some((&limit, body)) = input.split_first() else {
        return;
    };
    let max = usize::from(limit) * 4;
    match parse_publish(body, max) {
        Ok(p) => {
            let v: Value = serde_json::from_slice(body).expect("accepted body is JSON");
            let obj = v.as_object().expect("accepted body is an object");
            assert!(obj.keys().all(|k| KEYS.contains(&k.as_str())), "unknown key accepted");
            assert!(obj.contains_key("channel") != obj.contains_key("channels"));
            assert!(obj.contains_key("data") != obj.contains_key("data_base64"));
            assert!(!p.channels.is_empty() && p.channels.len() <= MAX_PUBLISH_CHANNELS);
            for (i, c) in p.channels.iter().enumerate() {
                assert!(sockhub::validate_channel_name(c).is_ok(), "invalid channel {c:?}");
                assert!(!p.channels[..i].contains(c), "duplicate channel {c:?}");
            }
            assert!(p.message.len() <= max, "payload over the limit");
            if let Some(text) = obj.get("data").and_then(Value::as_str) {
                assert_eq!(p.message.as_str(), Some(text));
            }
        }
        Err(e) => {
            assert!(e.status.is_client_error(), "status {}", e.status);
            assert!(!e.code.is_empty());
            assert!(!e.message.contains('\n'), "multi-line message {:?}", e.message);
        }
    }
});
