//! Pusher's webhooks against a real HTTP backend: channel_occupied / channel_vacated,
//! member_added / member_removed and client_event, each batch signed with X-Pusher-Signature.

use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::http::HeaderMap;
use axum::routing::post;
use sockhub::config::PusherApp;
use sockhub::pusher::signature::sign;
use sockhub_testkit::{eventually, Setup, TestServer, WsClient};

/// Events received, with whether their batch's signature and key were right.
type Log = Arc<Mutex<Vec<(serde_json::Value, bool)>>>;

async fn backend() -> (std::net::SocketAddr, Log) {
    failing_backend(0).await
}

/// A backend that answers its first `failures` requests with 500 (logging nothing of them).
async fn failing_backend(failures: usize) -> (std::net::SocketAddr, Log) {
    let log: Log = Arc::default();
    let log2 = log.clone();
    let failed = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let app = axum::Router::new().route(
        "/pusher",
        post(move |headers: HeaderMap, body: Bytes| {
            let log = log2.clone();
            let failed = failed.clone();
            async move {
                use std::sync::atomic::Ordering::SeqCst;
                if failed.fetch_add(1, SeqCst) < failures {
                    return axum::http::StatusCode::INTERNAL_SERVER_ERROR;
                }
                let header = |n: &str| {
                    headers
                        .get(n)
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("")
                        .to_string()
                };
                let signed = header("x-pusher-key") == "k3"
                    && header("x-pusher-signature")
                        == sign("s3", std::str::from_utf8(&body).unwrap_or(""));
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                for e in v["events"].as_array().into_iter().flatten() {
                    log.lock().unwrap().push((e.clone(), signed));
                }
                axum::http::StatusCode::OK
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (addr, log)
}

fn names(log: &Log) -> Vec<String> {
    log.lock()
        .unwrap()
        .iter()
        .map(|(e, _)| {
            format!(
                "{} {}",
                e["name"].as_str().unwrap_or("?"),
                e["channel"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

async fn json(ws: &mut WsClient) -> serde_json::Value {
    serde_json::from_str(&ws.recv_text().await).expect("json")
}

#[tokio::test]
async fn channel_member_and_client_events_reach_the_app_webhook_signed() {
    let (addr, log) = backend().await;
    let mut setup = Setup::default();
    setup.config.pusher = vec![PusherApp {
        app_id: "3".into(),
        key: "k3".into(),
        secret: "s3".into(),
        webhook_url: Some(format!("http://{addr}/pusher")),
        ..PusherApp::default()
    }];
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    let mut a = WsClient::connect(&srv.ws_url("/app/k3?protocol=7")).await;
    let hello = json(&mut a).await;
    let data: serde_json::Value = serde_json::from_str(hello["data"].as_str().unwrap()).unwrap();
    let sid = data["socket_id"].as_str().unwrap().to_string();

    a.send_text(r#"{"event":"pusher:subscribe","data":{"channel":"news"}}"#)
        .await;
    assert_eq!(
        json(&mut a).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    // A cache channel with nothing cached yet: pusher:cache_miss, and the cache_miss webhook.
    a.send_text(r#"{"event":"pusher:subscribe","data":{"channel":"cache-scores"}}"#)
        .await;
    assert_eq!(
        json(&mut a).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    assert_eq!(json(&mut a).await["event"], "pusher:cache_miss");
    let channel_data = r#"{"user_id":"u1","user_info":{}}"#;
    let auth = format!(
        "k3:{}",
        sign("s3", &format!("{sid}:presence-room:{channel_data}"))
    );
    let sub = serde_json::json!({
        "event": "pusher:subscribe",
        "data": { "channel": "presence-room", "auth": auth, "channel_data": channel_data }
    });
    a.send_text(&sub.to_string()).await;
    assert_eq!(
        json(&mut a).await["event"],
        "pusher_internal:subscription_succeeded"
    );
    a.send_text(r#"{"event":"client-hi","channel":"presence-room","data":{"x":1}}"#)
        .await;
    eventually(
        "occupied ×3, cache_miss, member_added, client_event",
        || log.lock().unwrap().len() >= 6,
    )
    .await;
    a.close().await;
    eventually("member_removed and three vacated", || {
        log.lock().unwrap().len() >= 10
    })
    .await;

    let mut got = names(&log);
    got.sort();
    assert_eq!(
        got,
        [
            "cache_miss cache-scores",
            "channel_occupied cache-scores",
            "channel_occupied news",
            "channel_occupied presence-room",
            "channel_vacated cache-scores",
            "channel_vacated news",
            "channel_vacated presence-room",
            "client_event presence-room",
            "member_added presence-room",
            "member_removed presence-room",
        ]
    );
    let events = log.lock().unwrap().clone();
    assert!(
        events.iter().all(|(_, signed)| *signed),
        "every batch signed with the app's secret"
    );
    let client = events
        .iter()
        .find(|(e, _)| e["name"] == "client_event")
        .unwrap();
    assert_eq!(client.0["event"], "client-hi");
    assert_eq!(client.0["user_id"], "u1");
    assert_eq!(client.0["socket_id"], sid.as_str());
    assert_eq!(client.0["data"], r#"{"x":1}"#);
    let added = events
        .iter()
        .find(|(e, _)| e["name"] == "member_added")
        .unwrap();
    assert_eq!(added.0["user_id"], "u1");
    srv.shutdown().await;
}

#[tokio::test]
async fn leaving_and_coming_back_within_three_seconds_is_not_reported_and_failures_are_retried() {
    // The backend fails the first request: the batch is sent again a second later.
    let (addr, log) = failing_backend(1).await;
    let mut setup = Setup::default();
    setup.config.pusher = vec![PusherApp {
        app_id: "3".into(),
        key: "k3".into(),
        secret: "s3".into(),
        webhook_url: Some(format!("http://{addr}/pusher")),
        ..PusherApp::default()
    }];
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    let mut a = sockhub_testkit::pusher::PusherClient::connect(srv.http, "k3", "s3").await;
    a.join("presence-room", "u1").await;
    eventually("occupied and member_added, after one retry", || {
        log.lock().unwrap().len() >= 2
    })
    .await;
    // A page reload: the user leaves and is back well within the 3 s hold.
    a.send(&serde_json::json!({
        "event": "pusher:unsubscribe", "data": { "channel": "presence-room" }
    }))
    .await;
    a.join("presence-room", "u1").await;
    a.ws.close().await;
    eventually("member_removed and vacated, 3 s after the close", || {
        log.lock().unwrap().len() >= 4
    })
    .await;
    // Events arrive in order, so a reported flap would have come before these.
    assert_eq!(
        names(&log),
        [
            "channel_occupied presence-room",
            "member_added presence-room",
            "member_removed presence-room",
            "channel_vacated presence-room",
        ]
    );
    srv.shutdown().await;
}
