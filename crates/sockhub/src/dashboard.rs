//! The live dashboard: the page at `/dashboard` and the server-side stats stream that feeds it;
//! and `/admission`, which tells the demo page at `/` why its WebSocket was refused.
//!
//! | method + path | does | answers |
//! |---|---|---|
//! | `GET /dashboard` | the dashboard page (embedded, no network) | `text/html` |
//! | `GET /api/stats/stream` | Server-Sent Events: one `stats` event per second, a final `shutdown` event | `text/event-stream` |
//! | `GET /admission` | would a new client be admitted now? | `{"accepting": false, "code": 1013, "reason": "server full: …"}` |
//!
//! Each `stats` event's data is one JSON object ([`StatsEvent`]): connections by transport, the
//! per-second rates since the previous event, the busiest channels and every counter of
//! [`crate::stats::StatsSnapshot`]. The server pushes; the page never polls.
//!
//! **Auth.** The stream carries channel names and counters, so it is guarded like the rest of
//! `/api/*` (the API's `Authorized` check is reused as is): with an API key configured the key is
//! required, otherwise only loopback clients are answered. A browser's `EventSource` cannot set
//! headers, so the key may also come as `?key=KEY` (an `Authorization: Bearer` header still
//! works and wins). The page itself holds no data and is served to anyone.
//!
//! `/admission` is open, like `/healthz`: it says only what a refused upgrade says anyway (its
//! HTTP 503 and reason), which a browser's `WebSocket` cannot see (it reports close 1006).
//!
//! **Bounds.** At most [`MAX_STATS_STREAMS`] streams are open at once (more are answered 503
//! `too_many_streams`); an event lists at most [`MAX_STREAM_CHANNELS`] channels. Every stream
//! ends at shutdown, after a `shutdown` event, so an open dashboard never delays a graceful
//! shutdown.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::body::Body;
use axum::extract::{FromRequestParts, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Router};
use futures_util::stream::Stream;
use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::api::{ApiError, Authorized};
use crate::close::CloseReason;
use crate::hub::ChannelInfo;
use crate::shared::ServerShared;
use crate::stats::StatsSnapshot;

/// The page served at `GET /dashboard`.
const DASHBOARD_HTML: &str = include_str!("../static/dashboard.html");

/// Most stats streams open at once on one server; more are refused with 503.
pub const MAX_STATS_STREAMS: usize = 64;

/// Most channels listed in one event (the ones with the most subscribers, then by name).
pub const MAX_STREAM_CHANNELS: usize = 50;

/// Time between two `stats` events.
pub const STATS_INTERVAL: Duration = Duration::from_secs(1);

/// How long a browser waits before reconnecting a stream that ended (the SSE `retry:` field).
const RECONNECT_AFTER: Duration = Duration::from_secs(1);

/// The dashboard routes, merged into the HTTP listener's router.
pub(crate) fn routes() -> Router<Arc<ServerShared>> {
    // One set of slots per router, and the HTTP listener builds one router per server.
    let slots = StreamSlots(Arc::new(Semaphore::new(MAX_STATS_STREAMS)));
    Router::new()
        .route("/dashboard", get(page))
        .route("/admission", get(admission))
        .route("/api/stats/stream", get(stream).layer(Extension(slots)))
}

async fn page() -> Response {
    let mut r = Response::new(Body::from(DASHBOARD_HTML));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// `GET /admission`: whether a client connecting now would be admitted, and if not the code and
/// reason its upgrade would be refused with (server full, shutting down). Refusals that depend
/// on the request itself (a token, the connect webhook) are not predicted.
async fn admission(State(server): State<Arc<ServerShared>>) -> Response {
    let refusal = if server.shutdown.is_cancelled() {
        Some(CloseReason::GoingAway)
    } else if server.permits.available_permits() == 0 {
        Some(CloseReason::ServerFull {
            max: server.config.limits.max_connections,
        })
    } else {
        None
    };
    #[derive(Serialize)]
    struct Admission {
        accepting: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        code: Option<u16>,
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    }
    let body = Admission {
        accepting: refusal.is_none(),
        code: refusal.as_ref().map(CloseReason::ws_code),
        reason: refusal.as_ref().map(CloseReason::to_string),
    };
    let mut r = Response::new(Body::from(serde_json::to_vec(&body).unwrap_or_default()));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    r.headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    r
}

/// The permits that bound concurrent streams: one travels with each open stream.
#[derive(Clone)]
struct StreamSlots(Arc<Semaphore>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamQuery {
    /// The API key, for clients that cannot send `Authorization` (`EventSource`).
    #[serde(default)]
    key: Option<String>,
}

/// [`Authorized`], with the key also accepted as `?key=` for `EventSource`.
struct StreamAuthorized;

impl FromRequestParts<Arc<ServerShared>> for StreamAuthorized {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        server: &Arc<ServerShared>,
    ) -> Result<Self, Self::Rejection> {
        let query = Query::<StreamQuery>::try_from_uri(&parts.uri)
            .map_err(|e| ApiError::new(StatusCode::BAD_REQUEST, "bad_request", e.body_text()))?;
        if let Some(key) = query.0.key {
            if !parts.headers.contains_key(header::AUTHORIZATION) {
                // A key that cannot be a header value cannot match the configured key either.
                let value = HeaderValue::from_str(&format!("Bearer {key}")).map_err(|_| {
                    ApiError::new(StatusCode::FORBIDDEN, "forbidden", "invalid API key")
                })?;
                parts.headers.insert(header::AUTHORIZATION, value);
            }
        }
        Authorized::from_request_parts(parts, server).await?;
        Ok(StreamAuthorized)
    }
}

/// Connections open now, by transport.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Connections {
    /// WebSocket sessions.
    pub ws: u64,
    /// TCP sessions.
    pub tcp: u64,
    /// UDP peer sessions.
    pub udp: u64,
    /// All of them.
    pub total: u64,
}

/// Per-second rates over the time since the previous event.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct Rates {
    /// Messages received from clients.
    pub messages_in: f64,
    /// Frames queued for clients by publishes and sends (one per subscriber reached).
    pub messages_out: f64,
    /// Publishes to a channel (clients, the API, handlers, the broker).
    pub publishes: f64,
    /// Bytes read from clients, all transports.
    pub bytes_in: f64,
    /// Bytes written to clients, all transports.
    pub bytes_out: f64,
    /// Slow-consumer disconnects.
    pub slow_consumer_disconnects: f64,
}

/// The busiest channels.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct Channels {
    /// Channels with at least one subscriber.
    pub count: usize,
    /// Up to [`MAX_STREAM_CHANNELS`] of them, most subscribers first.
    pub top: Vec<ChannelInfo>,
}

/// The data of one `stats` event.
#[derive(Clone, Debug, Serialize)]
pub struct StatsEvent {
    /// Server wall-clock time of the sample, Unix milliseconds.
    pub time_ms: u64,
    /// Connections open now.
    pub connections: Connections,
    /// Rates since the previous event of this stream; `null` in the first one.
    pub rates: Option<Rates>,
    /// Channels and their subscriber counts.
    pub channels: Channels,
    /// The broker's name.
    pub broker: &'static str,
    /// Every counter since the server started.
    pub counters: StatsSnapshot,
}

impl StatsEvent {
    /// Builds an event from a snapshot, the channel list and the previous sample (taken
    /// `elapsed` ago), if any. Pure, so the arithmetic is tested without a server.
    pub fn new(
        counters: StatsSnapshot,
        mut channels: Vec<ChannelInfo>,
        previous: Option<(&StatsSnapshot, Duration)>,
        broker: &'static str,
    ) -> StatsEvent {
        let rates = previous.map(|(p, elapsed)| {
            // A zero interval cannot happen with a ticking interval; guard the division anyway.
            let secs = elapsed.as_secs_f64().max(1e-3);
            let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
            Rates {
                messages_in: rate(counters.messages_in, p.messages_in),
                messages_out: rate(counters.deliveries, p.deliveries),
                publishes: rate(counters.publishes, p.publishes),
                bytes_in: rate(counters.bytes_in.iter().sum(), p.bytes_in.iter().sum()),
                bytes_out: rate(counters.bytes_out.iter().sum(), p.bytes_out.iter().sum()),
                slow_consumer_disconnects: rate(
                    counters.slow_consumer_disconnects,
                    p.slow_consumer_disconnects,
                ),
            }
        });
        let count = channels.len();
        channels.sort_by(|a, b| b.subscribers.cmp(&a.subscribers).then(a.name.cmp(&b.name)));
        channels.truncate(MAX_STREAM_CHANNELS);
        StatsEvent {
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64),
            connections: Connections {
                ws: counters.ws_connections,
                tcp: counters.tcp_connections,
                udp: counters.udp_sessions,
                total: counters.ws_connections + counters.tcp_connections + counters.udp_sessions,
            },
            rates,
            channels: Channels {
                count,
                top: channels,
            },
            broker,
            counters,
        }
    }
}

/// What one open stream remembers between two events.
struct Ticker {
    /// The server, for its hub and its shutdown token.
    server: Arc<ServerShared>,
    /// Paces the events.
    interval: tokio::time::Interval,
    /// The previous sample and when it was taken, for the rates.
    previous: Option<(Instant, StatsSnapshot)>,
    /// Set once the `shutdown` event is out: the next poll ends the stream.
    done: bool,
    /// This stream's slot among [`MAX_STATS_STREAMS`], freed when the stream is dropped.
    _permit: OwnedSemaphorePermit,
}

impl Ticker {
    fn sample(&mut self) -> Event {
        let now = Instant::now();
        let counters = self.server.hub.stats().snapshot();
        let ev = StatsEvent::new(
            counters.clone(),
            self.server.hub.channels(),
            self.previous.as_ref().map(|(t, p)| (p, now - *t)),
            self.server.hub.broker_name(),
        );
        let first = self.previous.is_none();
        self.previous = Some((now, counters));
        let ev = json_event("stats", &ev);
        if first {
            ev.retry(RECONNECT_AFTER)
        } else {
            ev
        }
    }
}

fn json_event<T: Serialize>(name: &str, data: &T) -> Event {
    // The types serialized here have no maps with non-string keys: this cannot fail.
    let json = serde_json::to_string(data).unwrap_or_else(|_| "null".into());
    Event::default().event(name).data(json)
}

/// `GET /api/stats/stream`.
async fn stream(
    _: StreamAuthorized,
    State(server): State<Arc<ServerShared>>,
    Extension(slots): Extension<StreamSlots>,
) -> Result<Response, ApiError> {
    let permit = slots.0.try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "too_many_streams",
            format!("{MAX_STATS_STREAMS} stats streams are already open"),
        )
    })?;
    if server.shutdown.is_cancelled() {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "shutting_down",
            "the server is shutting down",
        ));
    }
    let mut interval = tokio::time::interval(STATS_INTERVAL);
    // After a stall, one event now rather than a burst of catch-up events.
    interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let ticker = Ticker {
        server,
        interval,
        previous: None,
        done: false,
        _permit: permit,
    };
    let mut r = Sse::new(events(ticker)).into_response();
    // Tell buffering reverse proxies (nginx) to pass each event on at once.
    r.headers_mut()
        .insert("x-accel-buffering", HeaderValue::from_static("no"));
    Ok(r)
}

/// One `stats` event now and every [`STATS_INTERVAL`], until shutdown: then one `shutdown`
/// event, and the end of the stream (which closes the response).
fn events(ticker: Ticker) -> impl Stream<Item = Result<Event, Infallible>> + Send + 'static {
    futures_util::stream::unfold(ticker, |mut t| async move {
        if t.done {
            return None;
        }
        let event = tokio::select! {
            biased;
            _ = t.server.shutdown.cancelled() => {
                t.done = true;
                json_event("shutdown", &serde_json::json!({ "reason": "server shutting down" }))
            }
            _ = t.interval.tick() => t.sample(),
        };
        Some((Ok(event), t))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(name: &str, subscribers: usize) -> ChannelInfo {
        ChannelInfo {
            name: name.into(),
            subscribers,
        }
    }

    #[test]
    fn rates_are_deltas_per_second_and_absent_at_first() {
        let before = StatsSnapshot {
            messages_in: 10,
            deliveries: 100,
            bytes_in: [1, 2, 3],
            ..StatsSnapshot::default()
        };
        let now = StatsSnapshot {
            ws_connections: 2,
            tcp_connections: 1,
            messages_in: 30,
            deliveries: 160,
            bytes_in: [11, 2, 3],
            slow_consumer_disconnects: 1,
            ..StatsSnapshot::default()
        };
        let first = StatsEvent::new(now.clone(), vec![], None, "memory");
        assert!(first.rates.is_none());
        assert_eq!(first.connections.total, 3);

        let ev = StatsEvent::new(
            now,
            vec![],
            Some((&before, Duration::from_secs(2))),
            "memory",
        );
        let r = ev.rates.expect("rates");
        assert_eq!(r.messages_in, 10.0);
        assert_eq!(r.messages_out, 30.0);
        assert_eq!(r.bytes_in, 5.0);
        assert_eq!(r.slow_consumer_disconnects, 0.5);
    }

    #[test]
    fn channels_are_the_busiest_first_and_bounded() {
        let mut list: Vec<_> = (0..MAX_STREAM_CHANNELS + 10)
            .map(|i| info(&format!("c{i:03}"), 1))
            .collect();
        list.push(info("big", 9));
        list.push(info("mid", 4));
        let ev = StatsEvent::new(StatsSnapshot::default(), list, None, "memory");
        assert_eq!(ev.channels.count, MAX_STREAM_CHANNELS + 12);
        assert_eq!(ev.channels.top.len(), MAX_STREAM_CHANNELS);
        assert_eq!(ev.channels.top[0].name, "big");
        assert_eq!(ev.channels.top[1].name, "mid");
        assert_eq!(ev.channels.top[2].name, "c000");
    }
}
