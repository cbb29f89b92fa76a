//! # sockhub-nats
//!
//! A [`Link`] to a NATS server (core NATS) for sockhub's [`Relay`], which does everything else
//! a cluster needs (see [`sockhub::relay`]).
//!
//! Subjects: `<prefix>.ch.<channel>`, `<prefix>.hb` (heartbeats), `<prefix>.ctl` (routing).
//! A channel name is escaped into one subject token: letters, digits, `-` and `_` stay, every
//! other byte becomes `~XX` (hex), since `.`, `*`, `>` and spaces mean something to NATS.
//! The server's monitoring endpoint `/subsz?subs=1` shows what a deployment subscribes.
//!
//! The client's own reconnection is turned off: when the connection drops, the relay sees it
//! at once (its incoming stream ends), counts what it cannot relay, and reconnects with its own
//! backoff and re-subscription — the same behaviour as with Redis.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt as _;
use sockhub::relay::{Link, LinkConn, Topic};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

pub use sockhub::relay::{Relay, RelayOptions};

/// Time allowed to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Payloads buffered between the subscriptions and the relay.
const INCOMING: usize = 4096;

/// Where the NATS server is.
#[derive(Debug, Clone)]
pub struct NatsLink {
    /// `nats://host:port` (as given).
    url: String,
}

impl NatsLink {
    /// A link to `url` (`nats://host:port`).
    ///
    /// # Errors
    /// The URL is not a `nats://` URL.
    pub fn new(url: &str) -> Result<NatsLink, String> {
        if !url.starts_with("nats://") {
            return Err(format!("broker url {url:?}: expected nats://HOST:PORT"));
        }
        Ok(NatsLink {
            url: url.to_string(),
        })
    }
}

/// One subject token for a channel name.
pub fn escape(channel: &str) -> String {
    let mut out = String::with_capacity(channel.len());
    for b in channel.bytes() {
        if b.is_ascii_alphanumeric() || b == b'-' || b == b'_' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "~{b:02X}");
        }
    }
    out
}

/// An open connection and its subscriptions.
pub struct NatsConn {
    client: async_nats::Client,
    /// Incoming payloads go here (shared by every subscription's forwarding task).
    tx: mpsc::Sender<Bytes>,
    /// One forwarding task per subscribed subject; aborting it drops (unsubscribes) it.
    subs: HashMap<String, JoinHandle<()>>,
}

impl Drop for NatsConn {
    fn drop(&mut self) {
        for (_, t) in self.subs.drain() {
            t.abort();
        }
    }
}

impl Link for NatsLink {
    type Conn = NatsConn;

    fn name(&self) -> &'static str {
        "nats"
    }

    fn describe(&self) -> String {
        self.url.clone()
    }

    fn subject(&self, prefix: &str, topic: Topic<'_>) -> String {
        match topic {
            Topic::Channel(c) => format!("{prefix}.ch.{}", escape(c)),
            Topic::Heartbeat => format!("{prefix}.hb"),
            Topic::Control => format!("{prefix}.ctl"),
        }
    }

    async fn connect(&self) -> Result<(NatsConn, mpsc::Receiver<Bytes>), String> {
        let (tx, rx) = mpsc::channel(INCOMING);
        let (lost_tx, mut lost_rx) = mpsc::channel::<()>(1);
        let client = async_nats::ConnectOptions::new()
            .connection_timeout(CONNECT_TIMEOUT)
            .max_reconnects(1)
            .event_callback(move |event| {
                let lost_tx = lost_tx.clone();
                async move {
                    if matches!(
                        event,
                        async_nats::Event::Disconnected | async_nats::Event::Closed
                    ) {
                        let _ = lost_tx.try_send(());
                    }
                }
            })
            .connect(self.url.as_str())
            .await
            .map_err(|e| e.to_string())?;
        // The relay's receiver must close when the connection is lost: a watcher holds one
        // sender and drops it (with every forwarding task's, see `subscribe`) on disconnect.
        let watch_tx = tx.clone();
        tokio::spawn(async move {
            let _ = lost_rx.recv().await;
            drop(watch_tx);
        });
        Ok((
            NatsConn {
                client,
                tx,
                subs: HashMap::new(),
            },
            rx,
        ))
    }
}

impl LinkConn for NatsConn {
    async fn subscribe(&mut self, subjects: &[String]) -> Result<(), String> {
        for s in subjects {
            if self.subs.contains_key(s) {
                continue;
            }
            let mut sub = self
                .client
                .subscribe(s.clone())
                .await
                .map_err(|e| e.to_string())?;
            let tx = self.tx.clone();
            let task = tokio::spawn(async move {
                while let Some(m) = sub.next().await {
                    if tx.send(m.payload).await.is_err() {
                        break;
                    }
                }
            });
            self.subs.insert(s.clone(), task);
        }
        // Make sure the server has them before saying so.
        self.client.flush().await.map_err(|e| e.to_string())
    }

    async fn unsubscribe(&mut self, subjects: &[String]) -> Result<(), String> {
        for s in subjects {
            if let Some(t) = self.subs.remove(s) {
                t.abort();
            }
        }
        self.client.flush().await.map_err(|e| e.to_string())
    }

    async fn publish(&mut self, batch: &[(String, Bytes)]) -> (usize, Result<(), String>) {
        for (i, (subject, payload)) in batch.iter().enumerate() {
            if let Err(e) = self.client.publish(subject.clone(), payload.clone()).await {
                return (i, Err(e.to_string()));
            }
        }
        // Core NATS has no per-message acknowledgement; a flush (PING/PONG) proves the server
        // read everything before it. If it fails, none of the batch is counted as relayed.
        match self.client.flush().await {
            Ok(()) => (batch.len(), Ok(())),
            Err(e) => (0, Err(e.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_become_one_safe_token() {
        assert_eq!(escape("lobby"), "lobby");
        assert_eq!(escape("room-1_a"), "room-1_a");
        assert_eq!(escape("a.b*c>"), "a~2Eb~2Ac~3E");
        assert_eq!(escape("é"), "~C3~A9");
    }
}
