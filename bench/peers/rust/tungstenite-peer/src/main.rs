//! Minimal tokio-tungstenite echo/broadcast server, the idiomatic way (peer for `bench/peers/run`).
//!
//! `tungstenite-peer --port PORT --mode echo|broadcast`, WebSocket on any path of 127.0.0.1.
//! echo: every text/binary message is sent back, as in tokio-tungstenite's `echo-server.rs`
//! example (`read.try_filter(..).forward(write)`: `forward` flushes when the input would block,
//! so replies to one read go out together). broadcast: every text/binary message goes to every
//! OTHER connection through its bounded mpsc queue (dropped when the queue is full); each
//! connection's writer forwards its queue into the sink, as in the crate's `server.rs` example.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use futures_util::{StreamExt, TryStreamExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::Message;

type Registry = Arc<Mutex<HashMap<u64, mpsc::Sender<Message>>>>;

const QUEUE: usize = 1024;

fn args() -> (u16, bool) {
    let mut port = 9001u16;
    let mut broadcast = false;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--port" => port = it.next().and_then(|v| v.parse().ok()).expect("--port PORT"),
            "--mode" => match it.next().as_deref() {
                Some("echo") => broadcast = false,
                Some("broadcast") => broadcast = true,
                _ => panic!("--mode echo|broadcast"),
            },
            other => panic!("unknown argument {other}"),
        }
    }
    (port, broadcast)
}

#[tokio::main]
async fn main() {
    let (port, broadcast) = args();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let registry: Registry = Arc::default();
    let ids = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        if broadcast {
            let id = ids.fetch_add(1, Ordering::Relaxed);
            tokio::spawn(run_broadcast(stream, id, registry.clone()));
        } else {
            tokio::spawn(run_echo(stream));
        }
    }
}

async fn run_echo(stream: TcpStream) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let (write, read) = ws.split();
    // Pings are answered by tungstenite itself; close ends the stream.
    let _ = read
        .try_filter(|msg| std::future::ready(msg.is_text() || msg.is_binary()))
        .forward(write)
        .await;
}

async fn run_broadcast(stream: TcpStream, id: u64, registry: Registry) {
    let Ok(ws) = tokio_tungstenite::accept_async(stream).await else { return };
    let (mut sink, mut source) = ws.split();
    let (tx, mut rx) = mpsc::channel::<Message>(QUEUE);
    registry.lock().unwrap().insert(id, tx);
    let writer = tokio::spawn(async move {
        let queue = futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx)).map(Ok);
        let _ = queue.forward(&mut sink).await;
    });
    while let Some(Ok(msg)) = source.next().await {
        match msg {
            Message::Text(_) | Message::Binary(_) => {
                let peers = registry.lock().unwrap();
                for (other, tx) in peers.iter() {
                    if *other != id {
                        let _ = tx.try_send(msg.clone()); // drop on full
                    }
                }
            }
            Message::Close(_) => break,
            _ => {}
        }
    }
    registry.lock().unwrap().remove(&id);
    writer.abort();
}
