//! What every task of one server shares ([`ServerShared`]), and the life of a session in it:
//! admission (client token, connect webhook, handler), opening, and the end. Transports, the
//! HTTP API and protocol adapters depend on this; [`crate::server`], which starts them, sits
//! above them all.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{unix_now, Claims, TokenError, TokenSecret};
use crate::close::CloseReason;
use crate::config::{Protocol, ServerConfig};
use crate::handler::{guarded, Handler, Reject};
use crate::hub::{Hub, SubscribeError};
use crate::message::{SessionId, Transport};
use crate::protocol::{encode_event, Event, Framing, WireFormat};
use crate::rate::RateLimiter;
use crate::session::Session;
use crate::webhook::{Admission, Subject, Webhooks};

/// The remote address of the HTTP connection a request came on (a request extension, set by
/// [`crate::http`] for every route).
#[derive(Clone, Copy, Debug)]
pub struct PeerAddr(pub SocketAddr);

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
