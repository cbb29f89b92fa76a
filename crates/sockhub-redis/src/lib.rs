//! # sockhub-redis
//!
//! A [`Link`] to a Redis server (6 or 7; Valkey and KeyDB speak the same protocol) for
//! sockhub's [`Relay`], which does everything else a cluster needs (see [`sockhub::relay`]).
//! Two connections per node: one for `SUBSCRIBE` (a connection in subscribe mode can do
//! nothing else) and one multiplexed connection for `PUBLISH`.
//!
//! Subjects: `<prefix>:ch:<channel>`, `<prefix>:hb` (heartbeats), `<prefix>:ctl` (routing).
//! `PUBSUB CHANNELS <prefix>:*` shows what a deployment subscribes.
//!
//! ```no_run
//! # async fn run() -> Result<(), String> {
//! use sockhub::relay::{Relay, RelayOptions};
//! let link = sockhub_redis::RedisLink::new("redis://127.0.0.1:6379")?;
//! let broker = Relay::start(link, RelayOptions::default());
//! let server = sockhub::Server::with_parts(
//!     sockhub::ServerConfig::default(),
//!     std::sync::Arc::new(sockhub::Broadcast),
//!     broker,
//! );
//! # let _ = server; Ok(()) }
//! ```

use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use redis::aio::{MultiplexedConnection, PubSubSink};
use sockhub::relay::{Link, LinkConn, Topic};
use tokio::sync::mpsc;

pub use sockhub::relay::{Relay, RelayOptions};

/// Time allowed to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Payloads buffered between the subscription and the relay.
const INCOMING: usize = 4096;

/// Where the Redis server is.
#[derive(Debug, Clone)]
pub struct RedisLink {
    client: redis::Client,
    /// `host:port`, for logs (the URL may carry a password).
    at: String,
}

impl RedisLink {
    /// A link to `url` (`redis://[:password@]host:port[/db]`).
    ///
    /// # Errors
    /// The URL is not a Redis URL.
    pub fn new(url: &str) -> Result<RedisLink, String> {
        let client = redis::Client::open(url).map_err(|e| format!("broker url {url:?}: {e}"))?;
        let at = client.get_connection_info().addr().to_string();
        Ok(RedisLink { client, at })
    }
}

/// An open pair of connections.
pub struct RedisConn {
    /// Subscribe-mode connection (commands half).
    sink: PubSubSink,
    /// For PUBLISH.
    publisher: MultiplexedConnection,
}

impl Link for RedisLink {
    type Conn = RedisConn;

    fn name(&self) -> &'static str {
        "redis"
    }

    fn describe(&self) -> String {
        format!("redis://{}", self.at)
    }

    fn subject(&self, prefix: &str, topic: Topic<'_>) -> String {
        match topic {
            Topic::Channel(c) => format!("{prefix}:ch:{c}"),
            Topic::Heartbeat => format!("{prefix}:hb"),
            Topic::Control => format!("{prefix}:ctl"),
        }
    }

    async fn connect(&self) -> Result<(RedisConn, mpsc::Receiver<Bytes>), String> {
        let open = async {
            let pubsub = self.client.get_async_pubsub().await?;
            let publisher = self.client.get_multiplexed_async_connection().await?;
            Ok::<_, redis::RedisError>((pubsub, publisher))
        };
        let (pubsub, publisher) = tokio::time::timeout(CONNECT_TIMEOUT, open)
            .await
            .map_err(|_| format!("no connection within {CONNECT_TIMEOUT:?}"))?
            .map_err(|e| e.to_string())?;
        let (sink, mut stream) = pubsub.split();
        let (tx, rx) = mpsc::channel(INCOMING);
        // Ends when the connection does (the stream ends), which closes `rx`: the relay's
        // signal to reconnect.
        tokio::spawn(async move {
            while let Some(msg) = stream.next().await {
                let payload = Bytes::copy_from_slice(msg.get_payload_bytes());
                if tx.send(payload).await.is_err() {
                    break;
                }
            }
        });
        Ok((RedisConn { sink, publisher }, rx))
    }
}

impl LinkConn for RedisConn {
    async fn subscribe(&mut self, subjects: &[String]) -> Result<(), String> {
        self.sink
            .subscribe(subjects)
            .await
            .map_err(|e| e.to_string())
    }

    async fn unsubscribe(&mut self, subjects: &[String]) -> Result<(), String> {
        self.sink
            .unsubscribe(subjects)
            .await
            .map_err(|e| e.to_string())
    }

    async fn publish(&mut self, batch: &[(String, Bytes)]) -> (usize, Result<(), String>) {
        // One PUBLISH per message, all in flight at once on the multiplexed connection: the
        // commands go out in this order, and each reply tells whether that one was accepted
        // (a pipeline would answer for all or none).
        let sends = batch.iter().map(|(subject, payload)| {
            let mut conn = self.publisher.clone();
            async move {
                redis::cmd("PUBLISH")
                    .arg(subject)
                    .arg(&payload[..])
                    .query_async::<i64>(&mut conn)
                    .await
            }
        });
        let results = futures_util::future::join_all(sends).await;
        let accepted = results.iter().take_while(|r| r.is_ok()).count();
        match results.into_iter().find_map(Result::err) {
            None => (accepted, Ok(())),
            Some(e) => (accepted, Err(e.to_string())),
        }
    }
}
