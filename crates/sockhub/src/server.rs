//! [`Server`]: runs the transports over one hub until a shutdown future resolves, then shuts
//! down gracefully (stop accepting → tell every client → drain outboxes until a deadline).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{unix_now, Claims, TokenError, TokenSecret};
use crate::broker::{Broker, MemoryBroker};
use crate::close::CloseReason;
use crate::config::{Protocol, ServerConfig, TcpOptions, UdpOptions};
use crate::handler::{guarded, Broadcast, Handler, Reject};
use crate::hub::{Hub, SubscribeError};
use crate::message::{SessionId, Transport};
use crate::protocol::{encode_event, Event, Framing, WireFormat};
use crate::rate::RateLimiter;
use crate::session::Session;
use crate::transport::{tcp, udp};
use crate::webhook::{Admission, Subject, Webhooks};

/// State every task of one server shares.
pub(crate) struct ServerShared {
    /// Channels and sessions.
    pub hub: Hub,
    /// Application callbacks.
    pub handler: Arc<dyn Handler>,
    /// Limits and endpoint options.
    pub config: ServerConfig,
    /// One permit per open session (`max_connections`); the permit travels with the session.
    pub permits: Arc<Semaphore>,
    /// Cancelled when shutdown starts.
    pub shutdown: CancellationToken,
    /// Every task the server spawned, so shutdown can wait for them.
    pub tracker: TaskTracker,
    /// Verifies client tokens when client auth is on.
    pub token_secret: Option<TokenSecret>,
    /// Sends connect / message / close events to the backend, when configured.
    pub webhooks: Option<Arc<Webhooks>>,
    /// `api.max_requests_per_second`, all API clients together.
    pub api_rate: std::sync::Mutex<RateLimiter>,
    /// The Pusher protocol adapter, when apps are configured.
    pub pusher: Option<Arc<crate::pusher::PusherState>>,
}

/// What a transport knows about a client before its session exists.
pub(crate) struct Knock {
    /// The transport it arrived on.
    pub transport: Transport,
    /// Its address.
    pub peer: SocketAddr,
    /// How to encode for it.
    pub format: WireFormat,
    /// The channels it asks to join (URL query, or the listener's).
    pub channels: Vec<String>,
    /// The token it presented, if any.
    pub token: Option<String>,
}

impl ServerShared {
    /// Is `channel` a Pusher `private-` or `presence-` channel of this server (Pusher apps are
    /// configured)? Other clients may use one only with a token that grants it.
    pub(crate) fn pusher_reserved(&self, channel: &str) -> bool {
        self.pusher.is_some()
            && (channel.starts_with("private-") || channel.starts_with("presence-"))
    }

    /// Checks a client's token (when client auth is on).
    ///
    /// # Errors
    /// [`CloseReason::Unauthorized`] saying what is wrong with the token.
    pub(crate) fn verify_token(
        &self,
        token: Option<&str>,
    ) -> Result<Option<Arc<Claims>>, CloseReason> {
        let Some(secret) = &self.token_secret else {
            return Ok(None);
        };
        let unauthorized = |e: TokenError| CloseReason::Unauthorized(e.to_string());
        let token = token.ok_or(TokenError::Missing).map_err(unauthorized)?;
        let claims = secret.verify(token, unix_now()).map_err(unauthorized)?;
        Ok(Some(Arc::new(claims)))
    }

    /// Admits a client: checks its token, asks the connect webhook (waiting for its answer,
    /// bounded by the webhook timeout), then opens the session.
    ///
    /// # Errors
    /// The reason to give the client: unauthorized, rejected, unavailable, shutting down…
    pub(crate) async fn admit(self: &Arc<Self>, knock: Knock) -> Result<Session, CloseReason> {
        // Pusher clients carry no sockhub token: Pusher's channel auth governs them.
        let identity = if knock.format.protocol == Protocol::Pusher {
            None
        } else {
            self.verify_token(knock.token.as_deref())?
        };
        let id = self.hub.inner.next_session_id();
        let mut channels = knock.channels;
        if let Some(webhooks) = &self.webhooks {
            let subject = Subject {
                session: id,
                transport: knock.transport,
                peer: knock.peer,
                user: identity.as_deref().map(|c| c.sub.as_str()),
            };
            // Boxed: the webhook request's future is large, and kept inline it would enlarge
            // every WebSocket handshake's future (and the heap it leaves behind) even on
            // servers without webhooks.
            match Box::pin(webhooks.connect(&subject, &channels)).await {
                Admission::Accept(Some(assigned)) => channels = assigned,
                Admission::Accept(None) => {}
                Admission::Refuse(reason) => {
                    tracing::info!(session = %id, transport = %knock.transport, peer = %knock.peer, %reason, "refused by the connect webhook");
                    return Err(reason);
                }
            }
        }
        self.open_session_as(
            id,
            knock.transport,
            knock.peer,
            knock.format,
            &channels,
            identity,
        )
    }

    /// Registers a session under an id from `next_session_id`, with the identity client auth
    /// proved; joins its initial channels and asks the handler. On refusal the session is gone
    /// again and the reason says what to tell the client.
    pub(crate) fn open_session_as<S: AsRef<str>>(
        self: &Arc<Self>,
        id: SessionId,
        transport: Transport,
        peer: SocketAddr,
        format: WireFormat,
        channels: &[S],
        identity: Option<Arc<Claims>>,
    ) -> Result<Session, CloseReason> {
        let shared = self
            .hub
            .inner
            .register_as(id, transport, peer, format, identity);
        let session = Session::new(shared, self.clone());
        // Checked after registering: a shutdown that starts later finds this session in the
        // registry and closes it; one that started earlier is seen here.
        if self.shutdown.is_cancelled() {
            self.hub.inner.unregister(&session.shared);
            return Err(CloseReason::GoingAway);
        }
        for ch in channels {
            if let Err(e) = session.subscribe(ch.as_ref()) {
                self.hub.inner.unregister(&session.shared);
                return Err(match e {
                    SubscribeError::Forbidden(_) => CloseReason::Unauthorized(e.to_string()),
                    _ => CloseReason::ProtocolError(e.to_string()),
                });
            }
        }
        match guarded("on_connect", &session, || self.handler.on_connect(&session)) {
            Some(Ok(())) => {}
            Some(Err(Reject(reason))) => {
                self.hub.inner.unregister(&session.shared);
                tracing::info!(session = %session.id(), %transport, %peer, %reason, "rejected");
                return Err(CloseReason::Rejected(reason));
            }
            None => {
                self.hub.inner.unregister(&session.shared);
                return Err(CloseReason::Internal("on_connect failed".into()));
            }
        }
        // UDP gets no greeting: a datagram from a spoofed source must not buy a larger answer.
        if format.protocol == Protocol::Json && format.framing != Framing::Datagram {
            let channels = session.channels();
            session.send_control(encode_event(
                format.framing,
                &Event::Connected {
                    session: session.id().to_string(),
                    channels: channels.iter().map(|c| &**c).collect(),
                },
            ));
        }
        tracing::info!(
            session = %session.id(),
            %transport,
            %peer,
            channels = ?session.channels(),
            "connect"
        );
        Ok(session)
    }

    /// Tells the handler why a session ended, then forgets it. The handler runs first so it can
    /// still see (and broadcast to) the session's channels; the session itself is closed, so it
    /// receives nothing more.
    pub(crate) fn finish_session(&self, session: &Session, reason: &CloseReason) {
        // Make sure nothing more is queued for it, whoever ended it.
        session.shared.outbox.close(reason.clone());
        guarded("on_close", session, || {
            self.handler.on_close(session, reason)
        });
        if let (Some(pusher), Protocol::Pusher) = (&self.pusher, session.protocol()) {
            pusher.closed(session);
        }
        if let Some(webhooks) = &self.webhooks {
            if let Some(report) = webhooks.close(&session.subject(), reason) {
                self.tracker.spawn(report);
            }
        }
        self.hub.inner.unregister(&session.shared);
        tracing::info!(
            session = %session.id(),
            transport = %session.transport(),
            peer = %session.peer(),
            code = reason.ws_code(),
            %reason,
            "disconnect"
        );
    }
}

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
