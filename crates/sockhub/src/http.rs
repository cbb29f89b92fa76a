//! The HTTP layer: one listener for HTTP/1.1 and the WebSocket upgrade. An axum [`Router`]
//! answers requests; this module owns the accept loop so that it can hand hyper exactly
//! `TokioIo<TcpStream>` (which the WebSocket upgrade downcasts back to a raw socket), apply the
//! handshake timeout, and close idle keep-alive connections on shutdown.
//!
//! The API, readiness and metrics routes come from [`crate::api`]; the router holds no state of
//! its own beyond the shared server.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tower::ServiceExt as _;

use crate::shared::ServerShared;
use crate::transport::{tcp, ws};

pub use crate::shared::PeerAddr;

/// Largest HTTP request head (request line + headers) read, in bytes.
pub const MAX_HEAD_BYTES: usize = 16 * 1024;
/// Most headers accepted in one request.
pub const MAX_HEADERS: usize = 64;

/// The demo page served at `GET /` (a WebSocket upgrade on `/` still goes to the hub).
const INDEX_HTML: &str = include_str!("../static/index.html");

/// The routes of the HTTP listener.
pub(crate) fn router(server: Arc<ServerShared>) -> Router {
    let ws_path = server.config.ws.path.clone();
    let mut r = Router::new().route("/", get(index));
    if ws_path != "/" {
        r = r.route(&ws_path, get(ws_endpoint));
    }
    r.route("/healthz", get(|| async { "ok\n" }))
        .merge(crate::api::routes())
        .merge(crate::pusher::api::routes())
        .merge(crate::dashboard::routes())
        .merge(crate::static_files::routes(&server.config))
        .fallback(not_found)
        .with_state(server)
}

async fn not_found() -> Response {
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

/// `/`: the WebSocket upgrade when asked for one (so `new WebSocket('ws://host:8080')` works),
/// the page otherwise.
async fn index(State(server): State<Arc<ServerShared>>, req: Request) -> Response {
    if ws::is_upgrade_request(req.headers()) {
        return upgrade(&server, req).await;
    }
    let mut r = Response::new(Body::from(INDEX_HTML));
    r.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    r
}

/// The dedicated WebSocket path (`/ws` by default).
async fn ws_endpoint(State(server): State<Arc<ServerShared>>, req: Request) -> Response {
    if !ws::is_upgrade_request(req.headers()) {
        return (
            StatusCode::UPGRADE_REQUIRED,
            [(header::UPGRADE, "websocket")],
            "this endpoint speaks WebSocket only\n",
        )
            .into_response();
    }
    upgrade(&server, req).await
}

async fn upgrade(server: &Arc<ServerShared>, req: Request) -> Response {
    let Some(PeerAddr(peer)) = req.extensions().get::<PeerAddr>().copied() else {
        return (StatusCode::INTERNAL_SERVER_ERROR, "no peer address\n").into_response();
    };
    ws::upgrade(server, peer, req).await
}

/// Accepts HTTP connections until shutdown.
pub(crate) async fn accept_loop(server: Arc<ServerShared>, listener: TcpListener) {
    let router = router(server.clone());
    tcp::accept_loop(server, listener, move |server, stream, peer| {
        serve_connection(server, router.clone(), stream, peer)
    })
    .await;
}

/// Serves one HTTP/1.1 connection (keep-alive, upgrades) until it closes, upgrades, or the
/// server shuts down (then idle connections close at once and busy ones after their response).
async fn serve_connection(
    server: Arc<ServerShared>,
    router: Router,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let service =
        hyper::service::service_fn(move |mut req: hyper::Request<hyper::body::Incoming>| {
            req.extensions_mut().insert(PeerAddr(peer));
            let router = router.clone();
            async move {
                let resp = router.oneshot(req.map(Body::new)).await;
                Ok::<_, Infallible>(match resp {
                    Ok(r) => r,
                    Err(never) => match never {},
                })
            }
        });
    let conn = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(server.config.limits.handshake_timeout)
        // A request head over 16 KiB or with more than 64 headers is answered 431 and the
        // connection closed; nothing a WebSocket client sends comes near either.
        .max_buf_size(MAX_HEAD_BYTES)
        .max_headers(MAX_HEADERS)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(%peer, error = %e, "http connection error");
            }
        }
        _ = server.shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(server.config.limits.close_timeout, conn).await;
        }
    }
}
