//! The classic PHP tutorial server that answers a line with the line reversed, rebuilt on
//! sockhub.
//!
//! The original (`strrev`) read one line, wrote it back reversed and exited. This version keeps
//! every connection open and answers each line, for any number of clients at once. It reverses
//! *characters*, not bytes: `héllo` comes back as `olléh`, where `strrev` would have produced
//! broken UTF-8. (Characters are Unicode scalar values, so a letter written with a combining
//! accent would lose its accent to the neighbouring letter; reversing grapheme clusters would
//! need the `unicode-segmentation` crate.)
//!
//! Run: `cargo run -p sockhub-examples --example reverse_server [-- 127.0.0.1:1234]`
//! Try: `nc 127.0.0.1 1234`, then type lines; Ctrl-C stops the server.

use sockhub::{Handler, Incoming, Listeners, Message, Server, ServerConfig, Session, TcpOptions};
use tokio::net::TcpListener;

/// Replies to every line with its characters in reverse order.
struct Reverse;

impl Handler for Reverse {
    fn on_message(&self, session: &Session, incoming: Incoming) {
        // The line arrives without its `\n` / `\r\n`; the reply gets a `\n` added on the way out.
        let reply = match incoming.message.as_str() {
            Some(text) => Message::text(text.chars().rev().collect::<String>()),
            // A line that is not UTF-8 has no characters: reverse its bytes, like `strrev`.
            None => {
                let mut bytes = incoming.message.payload().to_vec();
                bytes.reverse();
                Message::binary(bytes)
            }
        };
        // `send` only queues. It fails if the client is closing or reads far too slowly (then
        // the library disconnects it); nothing else to do here but note it.
        if let Err(e) = session.send(reply) {
            tracing::debug!(session = %session.id(), error = %e, "reply not sent");
        }
    }
    // on_connect / on_close: the defaults (accept everyone, nothing to clean up); the library
    // logs every connect and disconnect itself.
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    sockhub_examples::init_logging();
    let addr = sockhub_examples::addr_from_args("127.0.0.1:1234");

    let listener = TcpListener::bind(&addr).await?;
    tracing::info!("reverse server on {}", listener.local_addr()?);

    let listeners = Listeners {
        tcp: vec![(
            listener,
            TcpOptions {
                // Replies go to the sender only; no channel needed.
                channels: Vec::new(),
                ..TcpOptions::default()
            },
        )],
        ..Listeners::default()
    };
    Server::with_handler(ServerConfig::default(), Reverse)
        .serve(listeners, async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await;
    Ok(())
}
