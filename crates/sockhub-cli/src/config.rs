//! The `sockhub serve` configuration: defaults, then the TOML file, then environment variables
//! and flags (clap merges those two; a flag beats its variable).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use sockhub::{Limits, Protocol, TcpFraming, TcpOptions, UdpOptions, WsOptions};

/// A listener address, or `off`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bind {
    /// Listen here.
    At(SocketAddr),
    /// This listener is disabled.
    Off,
}

impl std::str::FromStr for Bind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.eq_ignore_ascii_case("off") {
            return Ok(Bind::Off);
        }
        s.parse().map(Bind::At).map_err(|_| {
            format!("invalid address {s:?}: expected HOST:PORT with a numeric IP (e.g. 127.0.0.1:8080, [::1]:8080) or off")
        })
    }
}

impl<'de> Deserialize<'de> for Bind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

impl std::fmt::Display for Bind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Bind::At(a) => write!(f, "{a}"),
            Bind::Off => f.write_str("off"),
        }
    }
}

/// The whole file. Every section and key is optional; unknown keys are errors.
#[derive(Debug, Default, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct FileConfig {
    /// `[http]`: HTTP + WebSocket listener.
    pub http: HttpSection,
    /// `[[tcp]]` (or a single `[tcp]`): raw TCP listeners.
    #[serde(deserialize_with = "one_or_many")]
    pub tcp: Vec<TcpSection>,
    /// `[udp]`: the UDP listener.
    pub udp: UdpSection,
    /// `[limits]`: see `sockhub::Limits`.
    pub limits: Limits,
    /// `handler = "broadcast" | "echo"`: the built-in handler.
    pub handler: Option<Behavior>,
    /// `[api]`: `key`, `max_requests_per_second` (see `sockhub::ApiOptions`).
    pub api: sockhub::ApiOptions,
    /// `[auth]`: `token_secret` (see `sockhub::AuthOptions`).
    pub auth: sockhub::AuthOptions,
    /// `[[pusher]]`: Pusher Channels apps (`app_id`, `key`, `secret`, `client_events`,
    /// `max_client_events_per_second`, `allowed_origins`). None: one demo app with a random
    /// secret, printed at start-up.
    pub pusher: Vec<sockhub::config::PusherApp>,
    /// `[broker]`: `url` (`memory`, `redis://…`, `nats://…`), `node_id`, `prefix`.
    pub broker: BrokerSection,
    /// The Pusher app is the generated demo one (not from the file or a flag).
    #[serde(skip)]
    pub pusher_demo: bool,
    /// `[webhook]`: `url`, `secret`, `events`, `timeout`, `max_concurrency`, `close_retries`,
    /// `on_failure` (see `sockhub::WebhookOptions`).
    pub webhook: Option<sockhub::WebhookOptions>,
}

/// `[broker]`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct BrokerSection {
    /// `memory` (default), `redis://HOST:PORT` or `nats://HOST:PORT`.
    pub url: String,
    /// This node's name. Default: `HOSTNAME-RANDOM`.
    pub node_id: Option<String>,
    /// Prefix of every broker subject. Default `sockhub`.
    pub prefix: String,
}

impl Default for BrokerSection {
    fn default() -> Self {
        BrokerSection {
            url: "memory".into(),
            node_id: None,
            prefix: "sockhub".into(),
        }
    }
}

impl BrokerSection {
    /// Checks the URL scheme and the prefix.
    fn check(&self) -> Result<(), String> {
        let scheme_ok = self.url == "memory"
            || self.url.starts_with("redis://")
            || self.url.starts_with("nats://");
        if !scheme_ok {
            return Err(format!(
                "broker {:?}: expected memory, redis://HOST:PORT or nats://HOST:PORT",
                self.url
            ));
        }
        let token_ok = |s: &str| {
            !s.is_empty()
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        };
        if !token_ok(&self.prefix) {
            return Err(format!(
                "broker prefix {:?}: use letters, digits, - and _ only",
                self.prefix
            ));
        }
        if let Some(n) = &self.node_id {
            if !token_ok(n) {
                return Err(format!("node id {n:?}: use letters, digits, - and _ only"));
            }
        }
        Ok(())
    }

    /// For the listening log line.
    pub fn describe(&self) -> String {
        self.url.clone()
    }

    /// Starts the broker (inside the runtime).
    ///
    /// # Errors
    /// A bad URL.
    pub fn start(&self) -> Result<std::sync::Arc<dyn sockhub::Broker>, String> {
        let options = sockhub::relay::RelayOptions {
            node_id: self
                .node_id
                .clone()
                .unwrap_or_else(sockhub::relay::default_node_id),
            prefix: self.prefix.clone(),
        };
        if self.url.starts_with("redis://") {
            let link = sockhub_redis::RedisLink::new(&self.url)?;
            Ok(sockhub::relay::Relay::start(link, options))
        } else if self.url.starts_with("nats://") {
            let link = sockhub_nats::NatsLink::new(&self.url)?;
            Ok(sockhub::relay::Relay::start(link, options))
        } else {
            Ok(std::sync::Arc::new(sockhub::MemoryBroker))
        }
    }
}

/// `[http]`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct HttpSection {
    /// Address or `off`. Default 127.0.0.1:8080.
    pub listen: Bind,
    /// The dedicated WebSocket path (the upgrade also works on `/`). Default `/ws`.
    pub path: String,
    /// Channels a WebSocket joins when its URL names none. Default `["lobby"]`.
    pub channels: Vec<String>,
    /// Negotiate permessage-deflate (RFC 7692) with clients that offer it. Default false.
    pub permessage_deflate: bool,
    /// With permessage-deflate, also demand `client_no_context_takeover` (no inflate window
    /// kept per connection). Default false.
    pub deflate_no_context_takeover: bool,
    /// Serve this directory's files under `/static/` (relative paths: from the working
    /// directory). Default: none.
    pub static_dir: Option<PathBuf>,
}

impl Default for HttpSection {
    fn default() -> Self {
        let ws = WsOptions::default();
        HttpSection {
            listen: Bind::At(([127, 0, 0, 1], 8080).into()),
            path: ws.path,
            channels: ws.channels,
            permessage_deflate: ws.deflate.enabled,
            deflate_no_context_takeover: ws.deflate.no_context_takeover,
            static_dir: None,
        }
    }
}

impl HttpSection {
    /// The library's view.
    pub fn ws_options(&self) -> WsOptions {
        WsOptions {
            path: self.path.clone(),
            channels: self.channels.clone(),
            deflate: sockhub::ws::deflate::DeflateConfig {
                enabled: self.permessage_deflate,
                no_context_takeover: self.deflate_no_context_takeover,
            },
        }
    }
}

/// One `[[tcp]]` listener.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct TcpSection {
    /// Address or `off`. Default 127.0.0.1:1935.
    pub listen: Bind,
    /// `lines` (default) or `length-prefixed`.
    pub framing: TcpFraming,
    /// `raw` (default) or `json`.
    pub protocol: Protocol,
    /// Channels every session joins on connect. Default `["lobby"]`.
    pub channels: Vec<String>,
}

impl Default for TcpSection {
    fn default() -> Self {
        let o = TcpOptions::default();
        TcpSection {
            listen: Bind::At(([127, 0, 0, 1], 1935).into()),
            framing: o.framing,
            protocol: o.protocol,
            channels: o.channels,
        }
    }
}

impl TcpSection {
    /// The library's view.
    pub fn options(&self) -> TcpOptions {
        TcpOptions {
            framing: self.framing,
            protocol: self.protocol,
            channels: self.channels.clone(),
        }
    }
}

/// `[udp]`.
#[derive(Debug, Deserialize, PartialEq)]
#[serde(default, deny_unknown_fields)]
pub struct UdpSection {
    /// Address or `off`. Default 127.0.0.1:1935.
    pub listen: Bind,
    /// `raw` (default) or `json`.
    pub protocol: Protocol,
    /// Channels every peer joins on its first datagram. Default `["lobby"]`.
    pub channels: Vec<String>,
    /// Return-routability check (a source is sent at most 3x what it sent until it echoes a
    /// cookie). Default true; turn off only where source addresses cannot be spoofed.
    pub address_validation: bool,
}

impl Default for UdpSection {
    fn default() -> Self {
        let o = UdpOptions::default();
        UdpSection {
            listen: Bind::At(([127, 0, 0, 1], 1935).into()),
            protocol: o.protocol,
            channels: o.channels,
            address_validation: o.address_validation,
        }
    }
}

impl UdpSection {
    /// The library's view.
    pub fn options(&self) -> UdpOptions {
        UdpOptions {
            protocol: self.protocol,
            channels: self.channels.clone(),
            address_validation: self.address_validation,
        }
    }
}

/// The application behaviour when no code is plugged in.
#[derive(Clone, Copy, Debug, Default, Deserialize, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "kebab-case")]
pub enum Behavior {
    /// Every message goes to the other members of the sender's channels.
    #[default]
    Broadcast,
    /// Every message is sent back to its sender (conformance tests, benchmarks).
    Echo,
}

fn one_or_many<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<TcpSection>, D::Error> {
    // Decode as a TOML value first (not an untagged enum, which hides the inner error), so a
    // bad key inside a single [tcp] table is still reported by name.
    let v = toml::Value::deserialize(d)?;
    match v {
        toml::Value::Array(_) => {
            Vec::<TcpSection>::deserialize(v).map_err(serde::de::Error::custom)
        }
        other => TcpSection::deserialize(other)
            .map(|t| vec![t])
            .map_err(serde::de::Error::custom),
    }
}

impl FileConfig {
    /// The defaults: one TCP listener when the file names none.
    /// The library's server config.
    pub fn to_server_config(&self) -> sockhub::ServerConfig {
        sockhub::ServerConfig {
            limits: self.limits.clone(),
            ws: self.http.ws_options(),
            api: self.api.clone(),
            auth: self.auth.clone(),
            webhook: self.webhook.clone(),
            pusher: self.pusher.clone(),
            static_dir: self.http.static_dir.clone(),
        }
    }

    pub fn with_default_tcp(mut self) -> Self {
        if self.tcp.is_empty() {
            self.tcp.push(TcpSection::default());
        }
        self
    }

    /// Reads and checks a config file.
    ///
    /// # Errors
    /// A one-line message naming the file and the offending key.
    pub fn load(path: &Path) -> Result<FileConfig, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read config file {}: {e}", path.display()))?;
        let cfg: FileConfig = toml::from_str(&text).map_err(|e| {
            let msg = e.message().trim().to_string();
            match e.span() {
                Some(span) => {
                    let line = text[..span.start].matches('\n').count() + 1;
                    format!("config file {} line {line}: {msg}", path.display())
                }
                None => format!("config file {}: {msg}", path.display()),
            }
        })?;
        cfg.check()
            .map_err(|e| format!("config file {}: {e}", path.display()))?;
        Ok(cfg)
    }

    /// Cross-field checks serde cannot express.
    ///
    /// # Errors
    /// A message naming the key.
    pub fn check(&self) -> Result<(), String> {
        let l = &self.limits;
        if l.max_connections == 0 {
            return Err("limits.max_connections must be at least 1".into());
        }
        if l.max_message_size == 0 {
            return Err("limits.max_message_size must be at least 1".into());
        }
        if l.max_outbox_bytes < l.max_message_size {
            return Err(format!(
                "limits.max_outbox_bytes ({}) must be at least limits.max_message_size ({})",
                l.max_outbox_bytes, l.max_message_size
            ));
        }
        if let Bind::At(a) = self.http.listen {
            if self.api.key.is_none() && !a.ip().is_loopback() {
                return Err(format!(
                    "refusing to serve the HTTP API on {a} without an API key: anyone who can \
                     reach it could publish to every client. Set --api-key (or SOCKHUB_API_KEY, \
                     or [api] key), or listen on a loopback address"
                ));
            }
        }
        self.to_server_config().validate()?;
        self.broker.check()?;
        if !self.http.path.starts_with('/') {
            return Err(format!("http.path {:?} must start with /", self.http.path));
        }
        let lists = std::iter::once(("http.channels", &self.http.channels))
            .chain(self.tcp.iter().map(|t| ("tcp.channels", &t.channels)))
            .chain(std::iter::once(("udp.channels", &self.udp.channels)));
        for (key, list) in lists {
            for c in list {
                sockhub::validate_channel_name(c).map_err(|e| format!("{key}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// Used by flags: `lines` / `length-prefixed`.
pub fn parse_framing(s: &str) -> Result<TcpFraming, String> {
    s.parse()
}

/// Used by flags: `raw` / `json`.
pub fn parse_protocol(s: &str) -> Result<Protocol, String> {
    s.parse()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_the_default() {
        let c: FileConfig = toml::from_str("").unwrap();
        assert_eq!(c.http, HttpSection::default());
        assert!(c.tcp.is_empty());
        assert_eq!(c.with_default_tcp().tcp.len(), 1);
    }

    #[test]
    fn single_and_many_tcp_listeners() {
        let c: FileConfig =
            toml::from_str("[tcp]\nlisten = \"127.0.0.1:9000\"\nframing = \"length-prefixed\"\n")
                .unwrap();
        assert_eq!(c.tcp[0].framing, TcpFraming::LengthPrefixed);
        let c: FileConfig = toml::from_str(
            "[[tcp]]\nlisten = \"127.0.0.1:9000\"\n[[tcp]]\nlisten = \"off\"\nprotocol = \"json\"\n",
        )
        .unwrap();
        assert_eq!(c.tcp.len(), 2);
        assert_eq!(c.tcp[1].listen, Bind::Off);
    }

    #[test]
    fn http_static_dir_reaches_the_server_config() {
        let c: FileConfig = toml::from_str("[http]\nstatic_dir = \"site\"\n").unwrap();
        let dir = c.to_server_config().static_dir;
        assert_eq!(dir.as_deref(), Some(Path::new("site")));
        let c: FileConfig = toml::from_str("").unwrap();
        assert_eq!(c.to_server_config().static_dir, None);
    }

    #[test]
    fn unknown_keys_are_named() {
        let e = toml::from_str::<FileConfig>("[limits]\nmax_conections = 5\n").unwrap_err();
        assert!(e.to_string().contains("max_conections"), "{e}");
        let e = toml::from_str::<FileConfig>("[tcp]\nframing = \"lines\"\nport = 1\n").unwrap_err();
        assert!(e.to_string().contains("port"), "{e}");
        let e = toml::from_str::<FileConfig>("[limits]\nidle_timeout = \"soon\"\n").unwrap_err();
        assert!(e.to_string().contains("soon"), "{e}");
    }
}
