//! Shared bits of the examples: logging setup and the listen address from the command line.
//!
//! Each example is a standalone program (`cargo run -p sockhub-examples --example NAME`); these
//! two helpers only keep the boilerplate out of them.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Logs to stderr (stdout stays for program output) with `tracing-subscriber`'s fmt layer.
/// The level comes from `RUST_LOG` (e.g. `RUST_LOG=debug` or `RUST_LOG=sockhub=debug,info`)
/// and defaults to `info`.
pub fn init_logging() {
    let stderr = std::io::stderr();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Colours only on a terminal, so redirected logs stay plain text.
        .with_ansi(stderr.is_terminal())
        .with_writer(std::io::stderr)
        .init();
}

/// The address to listen on or connect to: the first command-line argument, or `default`.
///
/// ```no_run
/// // `cargo run -p sockhub-examples --example reverse_server -- 0.0.0.0:4000`
/// let addr = sockhub_examples::addr_from_args("127.0.0.1:1234");
/// assert!(!addr.is_empty());
/// ```
pub fn addr_from_args(default: &str) -> String {
    std::env::args()
        .nth(1)
        .unwrap_or_else(|| default.to_string())
}
