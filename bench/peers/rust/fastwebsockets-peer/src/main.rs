//! Minimal fastwebsockets (hyper 1 upgrade) echo/broadcast server, after fastwebsockets'
//! own examples (peer for `bench/peers/run`).
//!
//! `fastwebsockets-peer --port PORT --mode echo|broadcast`, WebSocket on any path of 127.0.0.1.
//! echo: `FragmentCollector`, every text/binary frame written back. broadcast: the socket is
//! split, a writer task drains a bounded mpsc queue per connection, and every text/binary
//! message is queued for every OTHER connection (dropped when a queue is full).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use fastwebsockets::upgrade;
use fastwebsockets::{FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A frame queued for a connection's writer.
struct Out {
    opcode: OpCode,
    payload: Bytes,
}

type Registry = Arc<Mutex<HashMap<u64, mpsc::Sender<Out>>>>;

const QUEUE: usize = 1024;

fn args() -> (u16, bool) {
    let mut port = 9002u16;
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

async fn echo(fut: upgrade::UpgradeFut) -> Result<(), WebSocketError> {
    let mut ws = FragmentCollector::new(fut.await?);
    loop {
        let frame = ws.read_frame().await?;
        match frame.opcode {
            OpCode::Close => break,
            OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
            _ => {}
        }
    }
    Ok(())
}

async fn broadcast(fut: upgrade::UpgradeFut, id: u64, registry: Registry) -> Result<(), WebSocketError> {
    let ws = fut.await?;
    let (rx, mut wr) = ws.split(tokio::io::split);
    let mut rx = FragmentCollectorRead::new(rx);
    let (tx, mut queue) = mpsc::channel::<Out>(QUEUE);
    registry.lock().unwrap().insert(id, tx.clone());
    let writer = tokio::spawn(async move {
        while let Some(out) = queue.recv().await {
            let frame = Frame::new(true, out.opcode, None, Payload::Borrowed(&out.payload));
            if wr.write_frame(frame).await.is_err() {
                break;
            }
        }
    });
    let result = async {
        loop {
            // Obligated replies (pong, close) go through the same queue, waiting for room.
            let frame = rx
                .read_frame(&mut |f: Frame<'_>| {
                    let tx = tx.clone();
                    let out = Out { opcode: f.opcode, payload: Bytes::copy_from_slice(&f.payload) };
                    async move { tx.send(out).await.map_err(|_| WebSocketError::ConnectionClosed) }
                })
                .await?;
            match frame.opcode {
                OpCode::Close => break,
                OpCode::Text | OpCode::Binary => {
                    let payload = Bytes::copy_from_slice(&frame.payload);
                    let peers = registry.lock().unwrap();
                    for (other, q) in peers.iter() {
                        if *other != id {
                            // drop on full
                            let _ = q.try_send(Out { opcode: frame.opcode, payload: payload.clone() });
                        }
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
    .await;
    registry.lock().unwrap().remove(&id);
    drop(tx);
    // Let the writer flush what is queued (e.g. the close reply), then stop.
    let _ = tokio::time::timeout(std::time::Duration::from_secs(1), writer).await;
    result
}

#[tokio::main]
async fn main() {
    let (port, is_broadcast) = args();
    let listener = TcpListener::bind(("127.0.0.1", port)).await.expect("bind");
    let registry: Registry = Arc::default();
    let ids = Arc::new(AtomicU64::new(0));
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        let _ = stream.set_nodelay(true);
        let registry = registry.clone();
        let ids = ids.clone();
        tokio::spawn(async move {
            let io = hyper_util::rt::TokioIo::new(stream);
            let service = service_fn(move |mut req: Request<Incoming>| {
                let registry = registry.clone();
                let ids = ids.clone();
                async move {
                    let (response, fut) = upgrade::upgrade(&mut req)?;
                    tokio::spawn(async move {
                        let _ = if is_broadcast {
                            let id = ids.fetch_add(1, Ordering::Relaxed);
                            tokio::task::unconstrained(broadcast(fut, id, registry)).await
                        } else {
                            tokio::task::unconstrained(echo(fut)).await
                        };
                    });
                    Ok::<Response<Empty<Bytes>>, WebSocketError>(response)
                }
            });
            let _ = http1::Builder::new().serve_connection(io, service).with_upgrades().await;
        });
    }
}
