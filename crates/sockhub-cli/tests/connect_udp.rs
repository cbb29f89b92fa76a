//! `sockhub connect udp://…` completes sockhub's UDP return-routability exchange by itself: it
//! asks for a cookie and echoes it before its first message, so its session opens validated and
//! it prints every broadcast, not just 3x the bytes it sent.

mod common;

use std::process::{Command, Stdio};

use common::{bin, Sockhub};
use sockhub_testkit::WsClient;

#[test]
fn connect_udp_prints_every_broadcast_after_the_cookie_exchange() {
    let mut s = Sockhub::serve(&[]);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let mut ws = rt.block_on(WsClient::connect(&s.ws_url("/")));
    let url = format!("udp://{}", s.udp.unwrap());
    let child = Command::new(bin())
        .args(["connect", &url, "--send", "hi", "--timeout", "1"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let expected: Vec<String> = (0..20).map(|i| format!("broadcast number {i}")).collect();
    rt.block_on(async {
        // 2 bytes sent: unvalidated, that would buy 6 bytes of answers.
        assert_eq!(ws.recv_text().await, "hi");
        for line in &expected {
            ws.send_text(line).await;
        }
    });
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().collect::<Vec<_>>(), expected, "{stderr}");
    assert!(s.stop("TERM").success());
}
