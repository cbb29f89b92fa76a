//! The classic PHP TCP client, in plain tokio: connect, send two lines, print everything the
//! server sends back until it closes the connection.
//!
//! sockhub has no client API (yet), so this one talks to the socket directly. Pair it with the
//! `greeting_server` example, which greets, reads one line and closes:
//!
//! ```text
//! cargo run -p sockhub-examples --example greeting_server &
//! cargo run -p sockhub-examples --example classic_client [-- 127.0.0.1:1935]
//! ```
//!
//! Unlike the PHP original (`set_time_limit(0)`), the whole exchange is bounded: after 10 s the
//! client gives up. Exit status: 0 when the server closed the connection (end-of-file), 1 on a
//! connection error or the timeout.

use std::process::ExitCode;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// What the original sent: two CRLF-terminated lines.
const REQUEST: &[u8] = b"Ho\r\nfirst blood\r\n";

/// Upper bound for connect + send + receive until end-of-file.
const OVERALL_TIMEOUT: Duration = Duration::from_secs(10);

#[tokio::main]
async fn main() -> ExitCode {
    sockhub_examples::init_logging();
    let addr = sockhub_examples::addr_from_args("127.0.0.1:1935");

    match tokio::time::timeout(OVERALL_TIMEOUT, talk(&addr)).await {
        Ok(Ok(lines)) => {
            println!("server closed the connection ({lines} line(s) received); socket closed");
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("connection to {addr} failed: {e}");
            println!("socket closed (error)");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("no end-of-file from {addr} within {OVERALL_TIMEOUT:?}; giving up");
            println!("socket closed (timed out)");
            ExitCode::FAILURE
        }
    }
}

/// Connects, sends [`REQUEST`] and prints what comes back, line by line, until end-of-file.
/// Returns the number of lines received.
async fn talk(addr: &str) -> std::io::Result<usize> {
    println!("connecting to {addr}…");
    let mut stream = TcpStream::connect(addr).await?;
    println!("connected");

    stream.write_all(REQUEST).await?;
    println!(
        "sent: {:?}",
        String::from_utf8_lossy(REQUEST) // shows the \r\n escapes
    );

    // Read whole lines, so a multi-byte character is never split across two prints.
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    let mut lines = 0;
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(lines); // end-of-file: the server closed
        }
        lines += 1;
        let text = String::from_utf8_lossy(&line);
        println!("received: {}", text.trim_end_matches(['\r', '\n']));
    }
}
