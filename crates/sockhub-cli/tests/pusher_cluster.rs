//! Pusher presence across `sockhub serve` nodes on one real Redis and one real NATS (started
//! here on free ports): one member list whichever node a client is on, each user announced
//! once however many sockets and nodes they use, the Pusher API's users and channels
//! answered cluster-wide, a user terminated from any node, and the members of a node that
//! dies removed everywhere.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::{Sockhub, WAIT};
use serde_json::{json, Value};
use sockhub_testkit::brokers::{NatsServer, RedisServer};
use sockhub_testkit::http_request;
use sockhub_testkit::pusher::{presence_ids, signed_path, PusherClient, PusherEvent};

const KEY: &str = "key7";
const SECRET: &str = "secret7";
const ROOM: &str = "presence-room";

fn node(broker: &str, name: &str, prefix: &str) -> Sockhub {
    Sockhub::serve(&[
        "--broker",
        broker,
        "--node-id",
        name,
        "--broker-prefix",
        prefix,
        "--pusher-app",
        "7:key7:secret7",
    ])
}

fn http(n: &Sockhub) -> SocketAddr {
    n.http.expect("http")
}

/// A signed GET on the Pusher API.
async fn pusher_get(n: &Sockhub, path: &str) -> Value {
    let path = signed_path("GET", path, KEY, SECRET, "");
    let (status, body) =
        http_request(http(n), &format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n")).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).expect("json")
}

/// User ids of the room as node `n`'s Pusher API lists them.
async fn users(n: &Sockhub) -> Vec<String> {
    let v = pusher_get(n, &format!("/apps/7/channels/{ROOM}/users")).await;
    let mut ids: Vec<String> = v["users"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u["id"].as_str().map(str::to_string))
        .collect();
    ids.sort();
    ids
}

/// Waits (bounded) until node `n` lists exactly `want` in the room.
async fn wait_users(n: &Sockhub, want: &[&str]) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = users(n).await;
        if got == want {
            return;
        }
        assert!(Instant::now() < deadline, "users {got:?}, want {want:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `data` on the room through node `n`'s sockhub API.
async fn mark(n: &Sockhub, data: &str) {
    let body = json!({ "channel": ROOM, "data": data }).to_string();
    let req = format!(
        "POST /api/publish HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let (status, answer) = http_request(http(n), &req).await;
    assert_eq!(status, 200, "{answer}");
}

fn is_marker(e: &PusherEvent, data: &str) -> bool {
    e.event == "message" && e.data == json!(data)
}

async fn presence_is_one_list_across_nodes(url: &str, prefix: &str) {
    let a = node(url, "a", prefix);
    let mut b = node(url, "b", prefix);
    // Each node has heard the other's heartbeat (the sockhub API's cluster view).
    for n in [&a, &b] {
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, body) =
                http_request(http(n), "GET /api/stats HTTP/1.1\r\nHost: x\r\n\r\n").await;
            let v: Value = serde_json::from_str(&body).expect("stats");
            if v["cluster"]["nodes"]
                .as_array()
                .is_some_and(|p| p.len() == 1)
            {
                break;
            }
            assert!(Instant::now() < deadline, "nodes never met: {v}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // Alice on node a; node b's API lists her once a's heartbeat arrives.
    let mut alice = PusherClient::connect(http(&a), KEY, SECRET).await;
    assert_eq!(presence_ids(&alice.join(ROOM, "alice").await), ["alice"]);
    wait_users(&b, &["alice"]).await;

    // Bob on node b sees her in his snapshot, and she hears of him.
    let mut bob = PusherClient::connect(http(&b), KEY, SECRET).await;
    assert_eq!(presence_ids(&bob.join(ROOM, "bob").await), ["alice", "bob"]);
    let added = alice.next().await;
    assert_eq!(added.event, "pusher_internal:member_added");
    assert_eq!(
        added.data,
        json!({ "user_id": "bob", "user_info": { "name": "bob" } })
    );

    // A second socket of Alice's, on node b: a member already, so nobody is told. Node b's
    // heartbeat with it goes out before the marker published on b, so a duplicate
    // member_added would reach Alice's first socket before the marker does.
    let mut alice2 = PusherClient::connect(http(&b), KEY, SECRET).await;
    let snap = alice2.join(ROOM, "alice").await;
    assert_eq!(presence_ids(&snap), ["alice", "bob"]);
    assert_eq!(snap["presence"]["count"], 2);
    mark(&b, "after alice2").await;
    let e = alice.next().await;
    assert!(is_marker(&e, "after alice2"), "{e:?}");
    assert!(is_marker(&bob.next().await, "after alice2"));
    assert!(is_marker(&alice2.next().await, "after alice2"));

    // Alice's socket on node a goes; she is still present on b, so nobody hears she left.
    alice.ws.close().await;
    drop(alice);
    wait_users(&a, &["alice", "bob"]).await;
    mark(&a, "after a's alice left").await;
    let e = bob.next().await;
    assert!(is_marker(&e, "after a's alice left"), "{e:?}");

    // The Pusher API answers for the cluster on both nodes.
    for n in [&a, &b] {
        let v = pusher_get(
            n,
            &format!("/apps/7/channels/{ROOM}?info=user_count,subscription_count"),
        )
        .await;
        assert_eq!(v["occupied"], true, "{v}");
        assert_eq!(v["user_count"], 2, "{v}");
        let v = pusher_get(
            n,
            "/apps/7/channels?filter_by_prefix=presence-&info=user_count",
        )
        .await;
        assert_eq!(v["channels"][ROOM]["user_count"], 2, "{v}");
    }

    // Carol on node a watches what happens on node b: Bob terminated, then the node dies with
    // Alice on it (three seconds without a heartbeat and she is removed, though no one on b
    // ever said she left).
    let mut carol = PusherClient::connect(http(&a), KEY, SECRET).await;
    assert_eq!(
        presence_ids(&carol.join(ROOM, "carol").await),
        ["alice", "bob", "carol"]
    );

    // Terminating Bob through node a's API closes his socket on node b (4009), and Carol
    // hears he left.
    let path = signed_path(
        "POST",
        "/apps/7/users/bob/terminate_connections",
        KEY,
        SECRET,
        "",
    );
    let (status, body) = http_request(
        http(&a),
        &format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (_, closed) = bob.ws.closed().await;
    assert_eq!(closed.code, 4009, "{closed:?}");
    let e = carol.next().await;
    assert_eq!(e.event, "pusher_internal:member_removed", "{e:?}");
    assert_eq!(e.data, json!({ "user_id": "bob" }));

    b.child.kill().expect("kill b");
    let _ = b.child.wait();
    let e = carol.next().await;
    assert_eq!(e.event, "pusher_internal:member_removed", "{e:?}");
    assert_eq!(e.data, json!({ "user_id": "alice" }));
    assert_eq!(users(&a).await, ["carol"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_one_list_across_nodes_on_redis() {
    let redis = RedisServer::start();
    presence_is_one_list_across_nodes(&redis.url(), "pusherredis").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_is_one_list_across_nodes_on_nats() {
    let nats = NatsServer::start();
    presence_is_one_list_across_nodes(&nats.url(), "pushernats").await;
}
