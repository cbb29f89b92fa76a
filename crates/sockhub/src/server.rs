//! [`Server`]: runs the transports over one hub until a shutdown future resolves, then shuts
//! down gracefully (stop accepting → tell every client → drain outboxes until a deadline).

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::TokenSecret;
use crate::broker::{Broker, MemoryBroker};
use crate::close::CloseReason;
use crate::config::{ServerConfig, TcpOptions, UdpOptions};
use crate::handler::{Broadcast, Handler};
use crate::hub::Hub;
use crate::rate::RateLimiter;
pub(crate) use crate::shared::ServerShared;
use crate::transport::{tcp, udp};
use crate::webhook::Webhooks;

/// Runs the heartbeat sweeper ([`crate::hub`]'s `sweep`) until shutdown, often enough for the
/// shortest of `ping_interval`, `idle_timeout` and `tcp_idle_timeout` (a quarter of it, between
/// 10 ms and 1 s).
async fn sweep(server: Arc<ServerShared>) {
    let l = &server.config.limits;
    let Some(shortest) = [l.ping_interval, l.idle_timeout, l.tcp_idle_timeout]
        .into_iter()
        .filter(|d| !d.is_zero())
        .min()
    else {
        return;
    };
    let tick = (shortest / 4).clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut interval = tokio::time::interval(tick);
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = server.shutdown.cancelled() => return,
            _ = interval.tick() => server.hub.inner.sweep(l),
        }
    }
}

/// The listeners a server runs on, already bound (tests bind port 0 and read the address).
#[derive(Debug, Default)]
pub struct Listeners {
    /// HTTP + WebSocket.
    pub http: Option<TcpListener>,
    /// Raw TCP listeners, each with its own framing and protocol.
    pub tcp: Vec<(TcpListener, TcpOptions)>,
    /// The UDP socket.
    pub udp: Option<(UdpSocket, UdpOptions)>,
}

/// A sockhub server: a hub plus the transports that feed it.
///
/// ```no_run
/// # async fn run() -> std::io::Result<()> {
/// use sockhub::{Listeners, Server, ServerConfig};
/// let server = Server::new(ServerConfig::default());
/// let listeners = Listeners {
///     http: Some(tokio::net::TcpListener::bind("127.0.0.1:8080").await?),
///     ..Listeners::default()
/// };
/// server.serve(listeners, async { let _ = tokio::signal::ctrl_c().await; }).await;
/// # Ok(()) }
/// ```
pub struct Server {
    shared: Arc<ServerShared>,
}

impl Server {
    /// A server with the built-in [`Broadcast`] behaviour and the in-memory broker.
    pub fn new(config: ServerConfig) -> Server {
        Server::with_handler(config, Broadcast)
    }

    /// A server whose sessions are handled by `handler`, with the in-memory broker.
    pub fn with_handler(config: ServerConfig, handler: impl Handler) -> Server {
        Server::with_parts(config, Arc::new(handler), Arc::new(MemoryBroker))
    }

    /// A server with a handler and a broker of your choice.
    ///
    /// # Panics
    /// If `config` is invalid (see [`ServerConfig::validate`], which says why without
    /// panicking).
    pub fn with_parts(
        config: ServerConfig,
        handler: Arc<dyn Handler>,
        broker: Arc<dyn Broker>,
    ) -> Server {
        #[allow(clippy::expect_used)] // documented above; validate() is the fallible path
        let webhooks = config
            .webhook
            .clone()
            .map(Webhooks::new)
            .transpose()
            .expect("invalid webhook options (check ServerConfig::validate first)")
            .map(Arc::new);
        let token_secret = config.auth.token_secret.as_deref().map(TokenSecret::new);
        let api_rate = std::sync::Mutex::new(RateLimiter::new(
            config.api.max_requests_per_second,
            tokio::time::Instant::now(),
        ));
        let pusher = (!config.pusher.is_empty())
            .then(|| Arc::new(crate::pusher::PusherState::new(config.pusher.clone())));
        let hub = Hub::new(&config.limits, broker);
        // Pusher's channel_occupied / channel_vacated webhooks follow the hub's channels.
        if let Some(hooks) = pusher.as_ref().and_then(|p| p.hooks.clone()) {
            let _ = hub
                .inner
                .channel_observer
                .set(Box::new(move |name, occupied| {
                    let event = if occupied {
                        "channel_occupied"
                    } else {
                        "channel_vacated"
                    };
                    hooks.emit_all(&serde_json::json!({ "name": event, "channel": name }));
                }));
        }
        // Presence members are part of this node's heartbeats, and follow the other nodes'.
        if let Some(p) = &pusher {
            let (a, b, c) = (p.clone(), p.clone(), p.clone());
            let _ = hub.inner.cluster_hooks.set(crate::hub::ClusterHooks {
                local_presence: Box::new(move || a.presence.local_list()),
                peers_changed: Box::new(move |hub| b.presence.peers_changed(hub)),
                notice: Box::new(move |hub, notice| c.notice(hub, notice)),
            });
        }
        let permits = Arc::new(Semaphore::new(
            config.limits.max_connections.min(Semaphore::MAX_PERMITS),
        ));
        Server {
            shared: Arc::new(ServerShared {
                hub,
                handler,
                config,
                permits,
                shutdown: CancellationToken::new(),
                tracker: TaskTracker::new(),
                token_secret,
                webhooks,
                api_rate,
                pusher,
            }),
        }
    }

    /// The state its tasks share (for the fuzz harness, which drives sessions without sockets).
    pub(crate) fn shared(&self) -> &Arc<ServerShared> {
        &self.shared
    }

    /// The hub: publish, send to a session, close a session, list channels.
    pub fn hub(&self) -> Hub {
        self.shared.hub.clone()
    }

    /// Serves `listeners` until `shutdown` resolves, then shuts down gracefully: listeners
    /// close, every client is told (WebSocket close 1001, TCP `ERROR 1001 server shutting
    /// down`), outboxes drain for up to `drain_timeout`, and this returns.
    pub async fn serve(self, listeners: Listeners, shutdown: impl Future<Output = ()>) {
        let s = self.shared;
        if let Some(l) = listeners.http {
            s.tracker.spawn(crate::http::accept_loop(s.clone(), l));
        }
        for (l, options) in listeners.tcp {
            let options = Arc::new(options);
            s.tracker
                .spawn(tcp::accept_loop(s.clone(), l, move |srv, stream, peer| {
                    tcp::serve_connection(srv, options.clone(), stream, peer)
                }));
        }
        if let Some((socket, options)) = listeners.udp {
            s.tracker.spawn(udp::run(s.clone(), socket, options));
        }
        s.tracker.spawn(sweep(s.clone()));
        shutdown.await;
        tracing::info!(
            sessions = s.hub.session_count(),
            "shutting down: closing listeners and telling clients"
        );
        s.shutdown.cancel();
        s.hub.inner.close_all(&CloseReason::GoingAway);
        s.tracker.close();
        // Each connection enforces drain_timeout + close_timeout itself; this outer bound only
        // guards against a bug leaving a task behind.
        let cap = s.config.limits.drain_timeout + s.config.limits.close_timeout * 2;
        if tokio::time::timeout(cap, s.tracker.wait()).await.is_err() {
            tracing::warn!(
                tasks = s.tracker.len(),
                "tasks still running after the drain deadline; exiting anyway"
            );
        }
        tracing::info!("shutdown complete");
    }
}
