//! The Pusher protocol's finer points on one node, frame by frame: presence members announced
//! once per user however many sockets they open, Pusher's internal events kept from raw
//! clients, subscription counts, and the 4004 (app quota) and 4100 (server capacity) closes.

use serde_json::json;
use sockhub::config::PusherApp;
use sockhub::Limits;
use sockhub_testkit::pusher::{presence_ids, PusherClient};
use sockhub_testkit::{Setup, TestServer, WsClient};

fn app(configure: impl FnOnce(&mut PusherApp)) -> PusherApp {
    let mut a = PusherApp {
        app_id: "7".into(),
        key: "key7".into(),
        secret: "secret7".into(),
        ..PusherApp::default()
    };
    configure(&mut a);
    a
}

const TOKEN_SECRET: &str = "token-secret";

/// A server with one Pusher app and client auth on (raw clients need a token; Pusher clients
/// never do).
async fn server(app: PusherApp, limits: Option<Limits>) -> TestServer {
    let mut setup = match limits {
        Some(l) => Setup::with_limits(l),
        None => Setup::default(),
    };
    setup.config.pusher = vec![app];
    setup.config.auth.token_secret = Some(TOKEN_SECRET.into());
    TestServer::start_with(setup, sockhub::Broadcast).await
}

/// `?token=` granting `channels`.
fn token(channels: &[&str]) -> String {
    let exp = sockhub::auth::unix_now() + 600;
    let claims = sockhub::auth::Claims::new("raw-user", exp, channels.iter().copied());
    sockhub::auth::TokenSecret::new(TOKEN_SECRET).mint(&claims)
}

async fn client(srv: &TestServer) -> PusherClient {
    PusherClient::connect(srv.http, "key7", "secret7").await
}

#[tokio::test]
async fn presence_members_are_announced_once_per_user_and_only_to_pusher_clients() {
    let srv = server(app(|_| {}), None).await;
    // A raw WebSocket subscriber of the same channel (its token grants it): it gets published
    // data, never the Pusher protocol's own member events.
    let url = format!("/ws?channel=presence-room&token={}", token(&["presence-*"]));
    let mut raw = WsClient::connect(&srv.ws_url(&url)).await;
    srv.wait_sessions(1).await;

    let mut a = client(&srv).await;
    let snap = a.join("presence-room", "alice").await;
    assert_eq!(presence_ids(&snap), ["alice"]);
    assert_eq!(snap["presence"]["count"], 1);
    assert_eq!(
        snap["presence"]["hash"]["alice"],
        json!({ "name": "alice" })
    );

    let mut b = client(&srv).await;
    let snap = b.join("presence-room", "bob").await;
    assert_eq!(presence_ids(&snap), ["alice", "bob"]);
    let added = a.next().await;
    assert_eq!(added.event, "pusher_internal:member_added");
    assert_eq!(added.channel.as_deref(), Some("presence-room"));
    assert_eq!(
        added.data,
        json!({ "user_id": "bob", "user_info": { "name": "bob" } })
    );

    // Alice's second socket: already a member, so nobody hears of it, and it sees two users.
    let mut a2 = client(&srv).await;
    let snap = a2.join("presence-room", "alice").await;
    assert_eq!(presence_ids(&snap), ["alice", "bob"]);
    assert_eq!(snap["presence"]["count"], 2);
    // Subscribing again as the same user changes nothing (and leaves nothing behind: her
    // last socket's close below still removes her).
    let snap = a2.join("presence-room", "alice").await;
    assert_eq!(snap["presence"]["count"], 2);

    // Her first socket leaves: she is still present through the second.
    a.ws.close().await;
    drop(a);
    // Bob leaves and comes back: the events around it are the only ones Alice's second
    // socket sees (nothing about her own first socket came before them).
    b.send(&json!({ "event": "pusher:unsubscribe", "data": { "channel": "presence-room" } }))
        .await;
    let removed = a2.next().await;
    assert_eq!(removed.event, "pusher_internal:member_removed");
    assert_eq!(removed.data, json!({ "user_id": "bob" }));

    // Alice's last socket goes: Bob (back in the room) hears she left.
    let snap = b.join("presence-room", "bob").await;
    assert_eq!(presence_ids(&snap), ["alice", "bob"]);
    let added = a2.next().await;
    assert_eq!(added.data["user_id"], "bob");
    a2.ws.close().await;
    let removed = b.next().await;
    assert_eq!(removed.event, "pusher_internal:member_removed");
    assert_eq!(removed.data, json!({ "user_id": "alice" }));

    // The raw client saw none of it: the first thing it receives is the next publish.
    srv.hub.publish("presence-room", "plain data");
    assert_eq!(raw.recv_text().await, "plain data");
}

#[tokio::test]
async fn subscription_counts_reach_subscribers_when_the_app_asks() {
    let srv = server(app(|a| a.subscription_count = true), None).await;
    let mut a = client(&srv).await;
    let ok = a.subscribe("scores").await;
    assert_eq!(ok.event, "pusher_internal:subscription_succeeded");
    let count = a.next().await;
    assert_eq!(count.event, "pusher_internal:subscription_count");
    assert_eq!(count.channel.as_deref(), Some("scores"));
    assert_eq!(count.data, json!({ "subscription_count": 1 }));

    // A raw subscriber counts (one fabric), but is not told.
    let url = format!("/ws?channel=scores&token={}", token(&["*"]));
    let mut raw = WsClient::connect(&srv.ws_url(&url)).await;
    srv.wait_sessions(2).await;
    let mut b = client(&srv).await;
    assert_eq!(
        b.subscribe("scores").await.event,
        "pusher_internal:subscription_succeeded"
    );
    for c in [&mut a, &mut b] {
        assert_eq!(c.next().await.data, json!({ "subscription_count": 3 }));
    }
    b.send(&json!({ "event": "pusher:unsubscribe", "data": { "channel": "scores" } }))
        .await;
    assert_eq!(a.next().await.data, json!({ "subscription_count": 2 }));
    b.ws.close().await;
    // b had left the channel already: its close changes no count.
    a.ws.close().await;
    srv.hub.publish("scores", "after");
    assert_eq!(raw.recv_text().await, "after");
}

#[tokio::test]
async fn no_subscription_counts_unless_the_app_asks() {
    let srv = server(app(|_| {}), None).await;
    let mut a = client(&srv).await;
    a.subscribe("scores").await;
    let mut b = client(&srv).await;
    b.subscribe("scores").await;
    srv.hub.publish("scores", "first");
    let e = a.next().await;
    assert_eq!((e.event.as_str(), e.data), ("message", json!("first")));
}

#[tokio::test]
async fn an_app_over_its_quota_gets_4004_and_a_full_server_4100() {
    let limits = Limits {
        max_connections: 2,
        ..Limits::default()
    };
    let srv = server(app(|a| a.max_connections = 1), Some(limits)).await;
    let _first = client(&srv).await;

    let mut second = WsClient::connect(&srv.ws_url("/app/key7?protocol=7")).await;
    let (msgs, closed) = second.closed().await;
    assert_eq!(closed.code, 4004, "{closed:?}");
    let error = sockhub_testkit::pusher::decode(msgs[0].to_text().unwrap());
    assert_eq!(error.event, "pusher:error");
    assert_eq!(error.data["code"], 4004);
    srv.wait_sessions(1).await;

    // Fill the server's last slot with a raw client; the next Pusher client is told 4100
    // over the WebSocket (it backs off and retries), not with an HTTP 503.
    let _raw = WsClient::connect(&srv.ws_url(&format!("/ws?token={}", token(&["*"])))).await;
    srv.wait_sessions(2).await;
    let mut third = WsClient::connect(&srv.ws_url("/app/key7?protocol=7")).await;
    let (msgs, closed) = third.closed().await;
    assert_eq!(closed.code, 4100, "{closed:?}");
    let error = sockhub_testkit::pusher::decode(msgs[0].to_text().unwrap());
    assert_eq!(
        (error.event.as_str(), &error.data["code"]),
        ("pusher:error", &json!(4100))
    );
    // Raw clients still get the plain 503 before any upgrade.
    let raw = WsClient::try_connect(&srv.ws_url(&format!("/ws?token={}", token(&["*"])))).await;
    assert!(raw.is_err());
}

#[tokio::test]
async fn private_and_presence_channels_need_pusher_auth_or_a_token_that_grants_them() {
    let mut setup = Setup::default();
    setup.config.pusher = vec![app(|_| {})];
    let srv = TestServer::start_with(setup, sockhub::Broadcast).await;
    // Anonymous raw clients may not listen in on them, by URL…
    for channel in ["private-chat", "presence-room"] {
        let req = sockhub_testkit::upgrade_request(&format!("/ws?channel={channel}"));
        let (status, body) = sockhub_testkit::http_request(srv.http, &req).await;
        assert_eq!(status, 403, "{channel}: {body}");
        assert!(body.contains("authorized Pusher clients"), "{body}");
    }
    // …or by a json command, nor publish into them; other channels are theirs to use.
    let mut json = WsClient::connect(&srv.ws_url("/ws?protocol=json&channel=lobby")).await;
    let _connected = json.recv_text().await;
    json.send_text(r#"{"type":"subscribe","channel":"private-chat"}"#)
        .await;
    let e: serde_json::Value = serde_json::from_str(&json.recv_text().await).unwrap();
    assert_eq!(
        (e["type"].as_str(), e["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    json.send_text(r#"{"type":"publish","channel":"presence-room","data":"x"}"#)
        .await;
    let e: serde_json::Value = serde_json::from_str(&json.recv_text().await).unwrap();
    assert_eq!(e["code"], "forbidden");
    json.send_text(r#"{"type":"subscribe","channel":"news"}"#)
        .await;
    let e: serde_json::Value = serde_json::from_str(&json.recv_text().await).unwrap();
    assert_eq!(e["type"], "subscribed");
    // A Pusher client with a valid channel signature gets in.
    let mut p = client(&srv).await;
    assert_eq!(
        p.subscribe("private-chat").await.event,
        "pusher_internal:subscription_succeeded"
    );
    // Client events: never on encrypted channels (as on Pusher).
    assert_eq!(
        p.subscribe("private-encrypted-vault").await.event,
        "pusher_internal:subscription_succeeded"
    );
    p.send(&json!({ "event": "client-x", "channel": "private-encrypted-vault", "data": {} }))
        .await;
    let e = p.next().await;
    assert_eq!(e.event, "pusher:error");
    assert!(
        e.data["message"]
            .as_str()
            .unwrap_or("")
            .contains("private-encrypted-"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_full_presence_channel_refuses_new_users_but_not_new_sockets_of_members() {
    let srv = server(app(|a| a.max_presence_members = 2), None).await;
    let mut alice = client(&srv).await;
    alice.join("presence-small", "alice").await;
    let mut bob = client(&srv).await;
    bob.join("presence-small", "bob").await;
    assert_eq!(alice.next().await.data["user_id"], "bob");

    // Carol's subscription is signed correctly, but the channel is full.
    let mut carol = client(&srv).await;
    let channel_data = json!({ "user_id": "carol", "user_info": {} }).to_string();
    let auth = format!(
        "key7:{}",
        sockhub::pusher::signature::sign(
            "secret7",
            &format!("{}:presence-small:{channel_data}", carol.socket_id)
        )
    );
    carol
        .send(&json!({
            "event": "pusher:subscribe",
            "data": { "channel": "presence-small", "auth": auth, "channel_data": channel_data },
        }))
        .await;
    let refused = carol.next().await;
    assert_eq!(refused.event, "pusher:subscription_error");
    assert_eq!(refused.data["status"], 4100);
    assert_eq!(refused.data["type"], "LimitReached");

    // Alice on a second device is no new member.
    let mut alice2 = client(&srv).await;
    let snap = alice2.join("presence-small", "alice").await;
    assert_eq!(presence_ids(&snap), ["alice", "bob"]);
    // Nobody heard of Carol.
    srv.hub.publish("presence-small", "marker");
    assert_eq!(alice.next().await.data, json!("marker"));
}
