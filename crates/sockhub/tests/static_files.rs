//! `ServerConfig::static_dir` (`sockhub serve --static-dir DIR`) over real loopback HTTP: the
//! files under `/static/` with their Content-Type, HEAD, 404 for what is missing, no directory
//! listings, other methods refused, and every way out of the directory refused: `..`,
//! percent-encoded `..` and slashes, absolute paths, hidden files, symlinks that lead outside.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use sockhub::{Broadcast, ServerConfig};
use sockhub_testkit::{within, Setup, TestServer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What the files outside the served directory hold; no response may contain it.
const SECRET: &str = "outside-the-static-dir";

/// A one-pixel PNG.
const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR\0\0\0\x01\0\0\0\x01\x08\x06\0\0\0\x1f\x15\xc4\x89\0\0\0\rIDATx\x9cc\xf8\xcf\xc0\xf0\x1f\0\x05\0\x01\xff\x89\x99=\x1d\0\0\0\0IEND\xaeB`\x82";

/// A fresh directory tree for one test, removed when dropped:
///
/// ```text
/// base/outside/secret.txt           SECRET
/// base/www/                          the served directory
///   index.html app.js style.css data.json logo.svg pixel.png big.bin
///   docs/index.html  empty/  .env  .git/config
///   inside-link -> app.js            (a symlink that stays inside: served)
///   out-link -> ../outside/secret.txt, out-dir -> ../outside, abs-link -> /etc/passwd
/// ```
struct Tree {
    base: PathBuf,
}

impl Tree {
    fn new() -> Tree {
        static N: AtomicUsize = AtomicUsize::new(0);
        let base = std::env::temp_dir().join(format!(
            "sockhub-static-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&base);
        let www = base.join("www");
        for d in ["outside", "www/docs", "www/empty", "www/.git"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let files: &[(&str, &[u8])] = &[
            ("outside/secret.txt", SECRET.as_bytes()),
            ("www/index.html", b"<!doctype html><title>front end</title>"),
            ("www/app.js", b"console.log('app');"),
            ("www/style.css", b"body { color: teal }"),
            ("www/data.json", b"{\"ok\":true}"),
            (
                "www/logo.svg",
                b"<svg xmlns=\"http://www.w3.org/2000/svg\"/>",
            ),
            ("www/pixel.png", PNG),
            ("www/docs/index.html", b"<p>docs</p>"),
            ("www/.env", SECRET.as_bytes()),
            ("www/.git/config", SECRET.as_bytes()),
        ];
        for (path, bytes) in files {
            std::fs::write(base.join(path), bytes).unwrap();
        }
        // Larger than any buffer: served whole, in chunks.
        std::fs::write(www.join("big.bin"), vec![b'x'; 3 << 20]).unwrap();
        std::os::unix::fs::symlink("app.js", www.join("inside-link")).unwrap();
        std::os::unix::fs::symlink("../outside/secret.txt", www.join("out-link")).unwrap();
        std::os::unix::fs::symlink(base.join("outside"), www.join("out-dir")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", www.join("abs-link")).unwrap();
        Tree { base }
    }

    fn www(&self) -> PathBuf {
        self.base.join("www")
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

async fn serve(dir: Option<&Path>) -> TestServer {
    let mut setup = Setup::default();
    setup.config.static_dir = dir.map(Path::to_path_buf);
    TestServer::start_with(setup, Broadcast).await
}

/// One HTTP response: status, lowercased header names with their values, body.
struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `METHOD target` exactly as given (no normalisation by a client library) with
/// `Connection: close` and reads the whole response.
async fn request(addr: SocketAddr, method: &str, target: &str) -> Reply {
    request_with(addr, method, target, "").await
}

/// [`request`] with extra header lines (each ending in `\r\n`).
async fn request_with(addr: SocketAddr, method: &str, target: &str, headers: &str) -> Reply {
    within(&format!("{method} {target}"), async {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(
            format!(
                "{method} {target} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n{headers}\r\n"
            )
            .as_bytes(),
        )
        .await
        .expect("write");
        let mut raw = Vec::new();
        s.read_to_end(&mut raw).await.expect("read");
        let end = raw
            .windows(4)
            .position(|w| w == b"\r\n\r\n")
            .expect("a response head");
        let head = String::from_utf8_lossy(&raw[..end]).to_string();
        let mut lines = head.lines();
        let status = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .expect("status");
        let headers = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        Reply {
            status,
            headers,
            body: raw[end + 4..].to_vec(),
        }
    })
    .await
}

async fn get(addr: SocketAddr, target: &str) -> Reply {
    request(addr, "GET", target).await
}

#[tokio::test]
async fn files_are_served_with_their_content_type() {
    let tree = Tree::new();
    let server = serve(Some(&tree.www())).await;
    let cases = [
        ("/static/index.html", "text/html", "www/index.html"),
        ("/static/app.js", "text/javascript", "www/app.js"),
        ("/static/style.css", "text/css", "www/style.css"),
        ("/static/data.json", "application/json", "www/data.json"),
        ("/static/logo.svg", "image/svg+xml", "www/logo.svg"),
        ("/static/pixel.png", "image/png", "www/pixel.png"),
        // A directory is its index.html.
        ("/static/", "text/html", "www/index.html"),
        ("/static/docs/", "text/html", "www/docs/index.html"),
        // A symlink that stays inside the directory is followed.
        (
            "/static/inside-link",
            "application/octet-stream",
            "www/app.js",
        ),
    ];
    for (target, content_type, file) in cases {
        let r = get(server.http, target).await;
        assert_eq!(r.status, 200, "{target}");
        let ct = r.header("content-type").unwrap_or_default();
        assert!(ct.split(';').next() == Some(content_type), "{target}: {ct}");
        assert_eq!(r.header("x-content-type-options"), Some("nosniff"));
        assert_eq!(
            r.body,
            std::fs::read(tree.base.join(file)).unwrap(),
            "{target}"
        );
    }
    // Percent-encoded names are decoded once.
    std::fs::write(tree.www().join("a b.txt"), "spaced").unwrap();
    let r = get(server.http, "/static/a%20b.txt").await;
    assert_eq!((r.status, r.body.as_slice()), (200, &b"spaced"[..]));
    // A 3 MiB file arrives whole (streamed, never read into memory at once).
    let r = get(server.http, "/static/big.bin").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-length"), Some("3145728"));
    assert_eq!(r.body.len(), 3 << 20);
    server.shutdown().await;
}

#[tokio::test]
async fn head_has_the_headers_and_no_body() {
    let tree = Tree::new();
    let server = serve(Some(&tree.www())).await;
    let r = request(server.http, "HEAD", "/static/app.js").await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("content-length"),
        Some(&*"console.log('app');".len().to_string())
    );
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/javascript"));
    assert!(r.body.is_empty(), "{:?}", r.body);
    // Caches revalidate: the same Last-Modified or ETag back is 304 without a body.
    let last_modified = r
        .header("last-modified")
        .expect("last-modified")
        .to_string();
    let again = format!("If-Modified-Since: {last_modified}\r\n");
    let r2 = request_with(server.http, "GET", "/static/app.js", &again).await;
    assert_eq!((r2.status, r2.body.len()), (304, 0));
    if let Some(etag) = r.header("etag") {
        let again = format!("If-None-Match: {etag}\r\n");
        let r3 = request_with(server.http, "GET", "/static/app.js", &again).await;
        assert_eq!(r3.status, 304);
    }
    server.shutdown().await;
}

#[tokio::test]
async fn only_get_and_head_are_allowed() {
    let tree = Tree::new();
    let server = serve(Some(&tree.www())).await;
    for method in ["POST", "PUT", "DELETE", "PATCH"] {
        let r = request(server.http, method, "/static/app.js").await;
        assert_eq!(r.status, 405, "{method}");
        assert_eq!(r.header("allow"), Some("GET,HEAD"), "{method}");
    }
    assert_eq!(
        std::fs::read(tree.www().join("app.js")).unwrap(),
        b"console.log('app');"
    );
    server.shutdown().await;
}

#[tokio::test]
async fn missing_files_and_directories_without_index_are_404() {
    let tree = Tree::new();
    let server = serve(Some(&tree.www())).await;
    for target in [
        "/static/nope.js",
        "/static/docs/nope.html",
        "/static/app.js/x",
        // No listing of a directory without index.html.
        "/static/empty/",
    ] {
        assert_eq!(get(server.http, target).await.status, 404, "{target}");
    }
    // A directory without its slash is redirected under the prefix.
    let r = get(server.http, "/static/docs").await;
    assert_eq!(r.status, 307);
    assert_eq!(r.header("location"), Some("/static/docs/"));
    server.shutdown().await;
}

#[tokio::test]
async fn nothing_outside_the_directory_is_served() {
    let tree = Tree::new();
    let server = serve(Some(&tree.www())).await;
    for target in [
        "/static/../outside/secret.txt",
        "/static/docs/../../outside/secret.txt",
        "/static/%2e%2e/outside/secret.txt",
        "/static/%2E%2E/outside/secret.txt",
        "/static/..%2foutside%2fsecret.txt",
        "/static/%2e%2e%2foutside%2fsecret.txt",
        "/static/.%2e/outside/secret.txt",
        "/static/%252e%252e/outside/secret.txt",
        "/static//etc/passwd",
        "/static/%2fetc%2fpasswd",
        "/static/%2F..%2Foutside%2Fsecret.txt",
        "/static/..\\outside\\secret.txt",
        "/static/%00",
        // Symlinks that lead out: to a file, to a directory, to an absolute path.
        "/static/out-link",
        "/static/out-dir/secret.txt",
        "/static/out-dir/",
        "/static/abs-link",
        // Hidden files and directories.
        "/static/.env",
        "/static/%2eenv",
        "/static/.git/config",
        "/static/docs/../.env",
    ] {
        let r = get(server.http, target).await;
        assert!(
            r.status == 404 || r.status == 400,
            "{target}: {} {:?}",
            r.status,
            String::from_utf8_lossy(&r.body)
        );
        let body = String::from_utf8_lossy(&r.body);
        assert!(
            !body.contains(SECRET) && !body.contains("root:"),
            "{target}"
        );
    }
    // HEAD says nothing either.
    assert_eq!(
        request(server.http, "HEAD", "/static/out-link")
            .await
            .status,
        404
    );
    server.shutdown().await;
}

#[tokio::test]
async fn the_built_in_pages_stay_and_no_dir_means_no_route() {
    let tree = Tree::new();
    let server = serve(Some(&tree.www())).await;
    let page = get(server.http, "/").await;
    assert_eq!(page.status, 200);
    assert!(String::from_utf8_lossy(&page.body).contains("sockhub"));
    assert_eq!(get(server.http, "/dashboard").await.status, 200);
    assert_eq!(get(server.http, "/healthz").await.status, 200);
    server.shutdown().await;

    let server = serve(None).await;
    assert_eq!(get(server.http, "/static/app.js").await.status, 404);
    server.shutdown().await;
}

#[test]
fn a_missing_directory_is_a_config_error() {
    let config = ServerConfig {
        static_dir: Some(PathBuf::from("/nonexistent/sockhub-static")),
        ..ServerConfig::default()
    };
    let e = config.validate().unwrap_err();
    assert!(
        e.contains("static_dir") && e.contains("/nonexistent"),
        "{e}"
    );
}
