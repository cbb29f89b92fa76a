//! A client that stops reading is disconnected by the outbox policy, while a fast client of the
//! same channel keeps receiving every message, in order.

use sockhub::{Limits, OverflowPolicy, ServerConfig};
use sockhub_testkit::{eventually, within, Setup, TestServer, WsClient};
use tokio::io::AsyncReadExt;

const MESSAGE: usize = 16 * 1024;
/// Enough to fill the slow client's kernel buffers (a few MB on loopback) many times over.
const MAX_MESSAGES: usize = 4000;

fn config(policy: OverflowPolicy) -> Setup {
    let mut s = Setup::default();
    s.config = ServerConfig {
        limits: Limits {
            max_outbox_bytes: 128 * 1024,
            max_message_size: MESSAGE + 16,
            outbox_overflow: policy,
            close_timeout: s.config.limits.close_timeout,
            ..Limits::default()
        },
        ..ServerConfig::default()
    };
    s
}

fn payload(i: usize) -> String {
    let head = format!("{i:08}:");
    head.clone() + &"p".repeat(MESSAGE - head.len())
}

/// Reads messages on `client`, checks they are 0, 1, 2… and publishes the count.
fn spawn_fast_reader(mut client: WsClient) -> tokio::sync::watch::Receiver<usize> {
    let (tx, rx) = tokio::sync::watch::channel(0usize);
    tokio::spawn(async move {
        let mut next = 0usize;
        loop {
            let text = client.recv_text().await;
            let i: usize = text[..8].parse().expect("numbered message");
            assert_eq!(i, next, "fast client received every message in order");
            next += 1;
            if tx.send(next).is_err() {
                return;
            }
        }
    });
    rx
}

#[tokio::test]
async fn slow_reader_is_disconnected_while_a_fast_reader_gets_everything() {
    let srv = TestServer::start_with(config(OverflowPolicy::Disconnect), sockhub::Broadcast).await;
    let fast = WsClient::connect(&srv.ws_url("/ws?channel=feed")).await;
    let mut received = spawn_fast_reader(fast);
    // The slow client completes the upgrade and then never reads again.
    let mut slow = tokio::net::TcpStream::connect(srv.http).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut slow,
        sockhub_testkit::upgrade_request("/ws?channel=feed").as_bytes(),
    )
    .await
    .unwrap();
    let hub = srv.hub.clone();
    eventually("both subscribed", || hub.subscribers("feed") == 2).await;

    let mut sent = 0;
    let mut disconnected_at = None;
    while sent < MAX_MESSAGES {
        hub.publish("feed", payload(sent));
        sent += 1;
        // Pace the publisher to the fast reader: it must never be the one that overflows.
        if sent % 4 == 0 {
            within("fast reader to keep up", received.wait_for(|n| *n == sent))
                .await
                .unwrap();
        }
        if disconnected_at.is_none() && hub.stats().snapshot().slow_consumer_disconnects == 1 {
            disconnected_at = Some(sent);
        }
        if let Some(at) = disconnected_at {
            if sent >= at + 100 {
                break;
            }
        }
    }
    let at = disconnected_at.expect("the slow reader was disconnected");
    eventually("slow session gone", || hub.subscribers("feed") == 1).await;
    within(
        "every message to the fast reader",
        received.wait_for(|n| *n == sent),
    )
    .await
    .unwrap();
    assert!(
        sent > at,
        "the fast reader kept receiving after the disconnect"
    );
    let stats = hub.stats().snapshot();
    assert_eq!(stats.slow_consumer_disconnects, 1);
    assert_eq!(stats.ws_connections, 1);
    // The slow client finds its connection ended once it finally reads.
    let ended = within("slow client sees the end", async {
        let mut buf = vec![0u8; 1 << 16];
        loop {
            match slow.read(&mut buf).await {
                Ok(0) | Err(_) => return true,
                Ok(_) => {}
            }
        }
    })
    .await;
    assert!(ended);
    srv.shutdown().await;
}

#[tokio::test]
async fn drop_oldest_keeps_a_slow_reader_connected_and_counts_the_drops() {
    let srv = TestServer::start_with(config(OverflowPolicy::DropOldest), sockhub::Broadcast).await;
    let mut slow = tokio::net::TcpStream::connect(srv.http).await.unwrap();
    tokio::io::AsyncWriteExt::write_all(
        &mut slow,
        sockhub_testkit::upgrade_request("/ws?channel=feed").as_bytes(),
    )
    .await
    .unwrap();
    let hub = srv.hub.clone();
    eventually("subscribed", || hub.subscribers("feed") == 1).await;
    let mut sent = 0;
    while sent < MAX_MESSAGES && hub.stats().snapshot().outbox_dropped == 0 {
        hub.publish("feed", payload(sent));
        sent += 1;
        if sent % 64 == 0 {
            tokio::task::yield_now().await;
        }
    }
    assert!(
        hub.stats().snapshot().outbox_dropped > 0,
        "drops were counted"
    );
    assert_eq!(hub.stats().snapshot().slow_consumer_disconnects, 0);
    assert_eq!(hub.subscribers("feed"), 1, "still connected");
    srv.shutdown().await;
}
