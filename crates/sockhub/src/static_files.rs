//! The user's own files (`--static-dir DIR`, [`crate::ServerConfig::static_dir`]) under
//! [`PREFIX`]`/` on the HTTP listener, so that a front end can be hosted next to the socket
//! server: `DIR/app.js` is `GET /static/app.js`, `DIR/index.html` is also `GET /static/`.
//!
//! **Why `tower-http`'s `ServeDir` and not a hand-written handler.** It is the file service of
//! the tower-rs team that axum users already serve files with, and it does the parts that are
//! easy to get wrong: percent-decoding the path *before* checking it, refusing any `..`, root or
//! drive-prefix component (so `/static/../x`, `/static/%2e%2e/x` and `/static/%2fetc/passwd`
//! are 404 — tower-http issue #204 covered `c:` in a segment), the Content-Type from the
//! extension (`mime_guess`), HEAD, ranges, `ETag`/`Last-Modified`/304, 405 with `Allow:
//! GET,HEAD` for other methods, and streaming the file in 64 KiB chunks so that no file is read
//! into memory whole, whatever its size. It lists no directory: a directory is its `index.html`
//! or 404.
//!
//! What it does not do, and [`Confined`] adds as its file-system backend:
//! - **Symlinks stay inside the directory.** `ServeDir` follows symlinks wherever they point;
//!   here every path is resolved (`canonicalize`) and must still lie under the canonical
//!   directory, else 404. The file opened is the resolved path, so what was checked is what is
//!   read (a symlink swapped in between needs write access to the directory, which is trust
//!   already given).
//! - **Hidden files are not served**: any path segment starting with `.` (`.env`, `.git/…`) is
//!   404, because a front-end folder often has one nobody meant to publish.
//!
//! Every response also carries `X-Content-Type-Options: nosniff`, so a browser never runs a
//! file as a type other than the one its extension says.

use std::future::Future;
use std::io;
use std::path::{Component, Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use axum::extract::Request;
use axum::http::{header, HeaderValue, Response};
use axum::Router;
use tower::ServiceExt;
use tower_http::services::fs::{Backend, ServeDir, TokioBackend, TokioFile};

use crate::ServerConfig;

/// The URL prefix the directory is served under (`/static/…`).
pub const PREFIX: &str = "/static";

/// The `/static/` routes for [`ServerConfig::static_dir`], or no routes when it is `None`.
pub(crate) fn routes<S: Clone + Send + Sync + 'static>(config: &ServerConfig) -> Router<S> {
    let Some(dir) = config.static_dir.as_deref() else {
        return Router::new();
    };
    // Resolved once, so that the per-request check compares canonical paths. The directory was
    // checked by `ServerConfig::validate`; if it has gone since, every request is a 404.
    let root = std::fs::canonicalize(dir).unwrap_or_else(|e| {
        tracing::warn!(dir = %dir.display(), error = %e, "static directory unavailable");
        dir.to_path_buf()
    });
    let backend = Confined {
        root: Arc::from(root.as_path()),
    };
    let files = ServeDir::with_backend(&root, backend)
        // `/static/sub` (a directory) redirects to `/static/sub/`, not to `/sub/`.
        .redirect_path_prefix(PREFIX);
    let files = ServiceExt::<Request>::map_response(files, |mut r: Response<_>| {
        r.headers_mut().insert(
            header::X_CONTENT_TYPE_OPTIONS,
            HeaderValue::from_static("nosniff"),
        );
        r
    });
    Router::new().nest_service(PREFIX, files)
}

/// `ServeDir`'s file-system backend, confined to one directory: hidden segments and paths that
/// resolve (through symlinks) outside the directory are "not found".
#[derive(Clone, Debug)]
struct Confined {
    /// The canonical directory every served file must lie under.
    root: Arc<Path>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = io::Result<T>> + Send>>;

fn not_found() -> io::Error {
    io::Error::from(io::ErrorKind::NotFound)
}

impl Confined {
    /// The real path to open for `path` (which `ServeDir` built as the root joined with the
    /// request's checked, decoded segments), or `NotFound`.
    async fn resolve(root: Arc<Path>, path: PathBuf) -> io::Result<PathBuf> {
        let relative = path.strip_prefix(&*root).map_err(|_| not_found())?;
        let hidden = relative.components().any(|c| match c {
            Component::Normal(s) => s.as_encoded_bytes().first() == Some(&b'.'),
            // ServeDir refuses `..`, roots and prefixes and drops `.`; refuse them here too.
            _ => true,
        });
        if hidden {
            return Err(not_found());
        }
        // Any failure to resolve (missing, ENOTDIR, a NUL in the name) is "not found".
        let real = tokio::fs::canonicalize(&path)
            .await
            .map_err(|_| not_found())?;
        if !real.starts_with(&*root) {
            tracing::debug!(path = %path.display(), "static file resolves outside the directory");
            return Err(not_found());
        }
        Ok(real)
    }
}

impl Backend for Confined {
    type File = TokioFile;
    type Metadata = std::fs::Metadata;
    type OpenFuture = BoxFuture<TokioFile>;
    type MetadataFuture = BoxFuture<std::fs::Metadata>;

    fn open(&self, path: PathBuf) -> Self::OpenFuture {
        let root = self.root.clone();
        Box::pin(async move {
            TokioBackend
                .open(Confined::resolve(root, path).await?)
                .await
        })
    }

    fn metadata(&self, path: PathBuf) -> Self::MetadataFuture {
        let root = self.root.clone();
        Box::pin(async move { tokio::fs::metadata(Confined::resolve(root, path).await?).await })
    }
}
