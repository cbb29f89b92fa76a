//! A minimal Pusher Channels client over [`WsClient`], for tests that need exact frames and
//! timing that `pusher-js` hides (presence diffs, close codes). The protocol's JSON-in-a-string
//! `data` is decoded, so tests compare values.

use serde_json::{json, Value};
use sockhub::pusher::signature::sign;

use crate::{within, WsClient};

/// One Pusher event: name, channel, and `data` decoded when it is JSON text.
#[derive(Clone, Debug, PartialEq)]
pub struct PusherEvent {
    /// `event`.
    pub event: String,
    /// `channel`, if any.
    pub channel: Option<String>,
    /// `data`, decoded.
    pub data: Value,
}

/// A connected Pusher client of one app.
pub struct PusherClient {
    /// The WebSocket.
    pub ws: WsClient,
    /// Its `socket_id`.
    pub socket_id: String,
    key: String,
    secret: String,
}

impl PusherClient {
    /// Connects to `ws://{addr}/app/{key}?protocol=7` and reads `connection_established`.
    pub async fn connect(addr: std::net::SocketAddr, key: &str, secret: &str) -> PusherClient {
        let mut ws = WsClient::connect(&format!("ws://{addr}/app/{key}?protocol=7")).await;
        let hello = decode(&ws.recv_text().await);
        assert_eq!(hello.event, "pusher:connection_established", "{hello:?}");
        let socket_id = hello.data["socket_id"]
            .as_str()
            .expect("socket_id")
            .to_string();
        PusherClient {
            ws,
            socket_id,
            key: key.into(),
            secret: secret.into(),
        }
    }

    /// The next event (bounded wait).
    pub async fn next(&mut self) -> PusherEvent {
        decode(&self.ws.recv_text().await)
    }

    /// The next event that is not a `pusher_internal:subscription_count`.
    pub async fn next_skipping_counts(&mut self) -> PusherEvent {
        within("an event other than a subscription count", async {
            loop {
                let e = self.next().await;
                if e.event != "pusher_internal:subscription_count" {
                    return e;
                }
            }
        })
        .await
    }

    /// Sends one event.
    pub async fn send(&mut self, event: &Value) {
        self.ws.send_text(&event.to_string()).await;
    }

    /// Subscribes to a public or private channel (signing private ones) and returns the
    /// answer (`subscription_succeeded` or `subscription_error`).
    pub async fn subscribe(&mut self, channel: &str) -> PusherEvent {
        let mut data = json!({ "channel": channel });
        if channel.starts_with("private-") {
            data["auth"] = Value::from(self.auth(&format!("{}:{channel}", self.socket_id)));
        }
        self.send(&json!({ "event": "pusher:subscribe", "data": data }))
            .await;
        self.next_skipping_counts().await
    }

    /// Joins a presence channel as `user` and returns `subscription_succeeded`'s data
    /// (`{"presence":{ids,hash,count}}`).
    pub async fn join(&mut self, channel: &str, user: &str) -> Value {
        let channel_data = json!({ "user_id": user, "user_info": { "name": user } }).to_string();
        let auth = self.auth(&format!("{}:{channel}:{channel_data}", self.socket_id));
        self.send(&json!({
            "event": "pusher:subscribe",
            "data": { "channel": channel, "auth": auth, "channel_data": channel_data },
        }))
        .await;
        let e = self.next().await;
        assert_eq!(e.event, "pusher_internal:subscription_succeeded", "{e:?}");
        e.data
    }

    fn auth(&self, text: &str) -> String {
        format!("{}:{}", self.key, sign(&self.secret, text))
    }
}

/// Decodes one Pusher frame.
pub fn decode(text: &str) -> PusherEvent {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text}"));
    let data = match &v["data"] {
        Value::String(s) => serde_json::from_str(s).unwrap_or_else(|_| Value::from(s.as_str())),
        other => other.clone(),
    };
    PusherEvent {
        event: v["event"].as_str().unwrap_or("").to_string(),
        channel: v["channel"].as_str().map(str::to_string),
        data,
    }
}

/// The sorted `ids` of a presence snapshot.
pub fn presence_ids(snapshot: &Value) -> Vec<String> {
    let mut ids: Vec<String> = snapshot["presence"]["ids"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// `target` (a path, with or without a query) with the query of a request signed as Pusher's
/// server SDKs sign it: its own parameters plus auth_key, auth_timestamp, auth_version,
/// body_md5 when there is a body, sorted, then auth_signature.
pub fn signed_path(method: &str, target: &str, key: &str, secret: &str, body: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut params: Vec<String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .collect();
    params.push(format!("auth_key={key}"));
    params.push(format!("auth_timestamp={now}"));
    params.push("auth_version=1.0".into());
    if !body.is_empty() {
        let md5 = sockhub::pusher::signature::body_md5(body.as_bytes());
        params.push(format!("body_md5={md5}"));
    }
    params.sort();
    let query = params.join("&");
    let signature = sign(secret, &format!("{method}\n{path}\n{query}"));
    format!("{path}?{query}&auth_signature={signature}")
}
