//! The classic PHP "greeting" server, rebuilt on sockhub.
//!
//! The original accepted a TCP connection on port 1935, wrote `测试成功！`, read what the client
//! sent, printed it, closed the connection, and stopped for good after 5 clients. This version
//! keeps that behaviour with the three sockhub callbacks:
//!
//! * `on_connect` greets the client ([`Session::send`]; a raw TCP line gets its `\n` added);
//! * `on_message` logs the client's first line and closes it ([`Session::close_with`] and
//!   [`CloseReason::Normal`]: for raw TCP, a plain end of stream, as in the original);
//! * `on_close` counts served clients, and the 5th one cancels the token that `serve` is
//!   waiting on, so the server shuts down gracefully and `main` returns (exit status 0).
//!
//! Unlike the PHP loop it serves clients concurrently, and a client that never sends anything
//! is closed by the library's idle timeout (2 minutes by default) instead of blocking the rest.
//!
//! Run: `cargo run -p sockhub-examples --example greeting_server [-- 127.0.0.1:1935]`
//! Try: `printf 'Ho\r\nfirst blood\r\n' | nc 127.0.0.1 1935`, or the `classic_client` example.

use std::sync::atomic::{AtomicUsize, Ordering};

use sockhub::{
    CloseReason, Handler, Incoming, Listeners, Reject, Server, ServerConfig, Session, TcpOptions,
};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// How many clients are served before the server stops (the PHP original's `$count >= 5`).
const CLIENTS_TO_SERVE: usize = 5;

/// What every client is told first.
const GREETING: &str = "测试成功！";

/// The application: greet, read one line, close; stop after [`CLIENTS_TO_SERVE`] clients.
struct Greeter {
    /// Clients whose session has ended.
    served: AtomicUsize,
    /// Cancelled after the last client; `Server::serve` returns when it is.
    done: CancellationToken,
}

impl Handler for Greeter {
    fn on_connect(&self, session: &Session) -> Result<(), Reject> {
        // `send` only queues (handlers must never block); the connection's task writes it.
        if let Err(e) = session.send(GREETING) {
            tracing::warn!(session = %session.id(), error = %e, "could not greet");
        }
        tracing::info!(session = %session.id(), peer = %session.peer(), "greeted");
        Ok(())
    }

    fn on_message(&self, session: &Session, incoming: Incoming) {
        // The listener splits the stream into lines, so this is the client's first line
        // (`Ho` from the classic client), where PHP's `socket_read($sock, 8192)` logged
        // whatever one read returned. A line is text when it is valid UTF-8; show anything
        // else lossily.
        let text = String::from_utf8_lossy(incoming.message.payload());
        tracing::info!(session = %session.id(), "received: {text}");
        // One message per client, as in the original. Whatever else the client already sent
        // (the classic client's second line, "first blood") is discarded: a closing session
        // dispatches nothing more. The greeting went out first; the close follows it.
        session.close_with(CloseReason::Normal);
    }

    fn on_close(&self, session: &Session, reason: &CloseReason) {
        // Counting here (rather than in on_message) also counts a client that hung up without
        // sending anything, as the PHP loop did when its read returned nothing.
        let served = self.served.fetch_add(1, Ordering::SeqCst) + 1;
        tracing::info!(
            session = %session.id(),
            %reason,
            "client {served} of {CLIENTS_TO_SERVE} served"
        );
        if served == CLIENTS_TO_SERVE {
            tracing::info!("served {CLIENTS_TO_SERVE} clients, stopping");
            self.done.cancel();
        }
    }
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    sockhub_examples::init_logging();
    let addr = sockhub_examples::addr_from_args("127.0.0.1:1935");

    let listener = TcpListener::bind(&addr).await?;
    tracing::info!("greeting server on {}", listener.local_addr()?);

    let done = CancellationToken::new();
    // Ctrl-C stops it early, through the same token.
    let on_ctrl_c = done.clone();
    tokio::spawn(async move {
        if tokio::signal::ctrl_c().await.is_ok() {
            on_ctrl_c.cancel();
        }
    });

    let handler = Greeter {
        served: AtomicUsize::new(0),
        done: done.clone(),
    };
    let listeners = Listeners {
        tcp: vec![(
            listener,
            TcpOptions {
                // Nobody here broadcasts, so sessions need not join any channel.
                channels: Vec::new(),
                // One message per `\n` or `\r\n` line, passed to the handler as-is (raw).
                ..TcpOptions::default()
            },
        )],
        ..Listeners::default()
    };
    // `serve` runs until the token is cancelled, then tells any remaining client and drains.
    Server::with_handler(ServerConfig::default(), handler)
        .serve(listeners, done.cancelled_owned())
        .await;
    tracing::info!("bye");
    Ok(())
}
