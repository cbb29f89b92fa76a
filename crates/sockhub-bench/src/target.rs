//! Target URLs, restricted to loopback addresses.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// A WebSocket endpoint.
#[derive(Debug, Clone)]
pub(crate) struct WsTarget {
    /// The URL as given.
    pub url: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request target: path and query.
    pub path: String,
    /// The channel named by the first `channel=` query parameter (the server's default otherwise).
    pub channel: Option<String>,
}

/// An HTTP endpoint (for publishing).
#[derive(Debug, Clone)]
pub(crate) struct HttpTarget {
    /// The URL as given.
    pub url: String,
    /// Where to connect.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request target: path and query.
    pub path: String,
}

/// Refuses anything but 127.0.0.0/8 and ::1.
pub(crate) fn check_loopback(addr: &SocketAddr) -> Result<(), String> {
    if addr.ip().is_loopback() {
        Ok(())
    } else {
        Err(format!(
            "refusing target {addr}: only loopback addresses (127.0.0.0/8, ::1) may be loaded"
        ))
    }
}

/// Splits `scheme://authority/rest` for the given scheme.
fn split<'a>(url: &'a str, scheme: &str) -> Result<(&'a str, &'a str), String> {
    let rest = url
        .strip_prefix(scheme)
        .and_then(|r| r.strip_prefix("://"))
        .ok_or_else(|| format!("{url:?} is not a {scheme}:// URL"))?;
    Ok(match rest.find(['/', '?']) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, ""),
    })
}

/// Parses `host:port`, `[v6]:port` or `localhost:port` into a loopback socket address.
fn authority(auth: &str, default_port: Option<u16>) -> Result<SocketAddr, String> {
    let (host, port) = if let Some(v6) = auth.strip_prefix('[') {
        let (h, rest) = v6
            .split_once(']')
            .ok_or_else(|| format!("bad address {auth:?}"))?;
        (h, rest.strip_prefix(':'))
    } else {
        match auth.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (auth, None),
        }
    };
    let port = match port {
        Some(p) => p
            .parse::<u16>()
            .map_err(|_| format!("bad port in {auth:?}"))?,
        None => default_port.ok_or_else(|| format!("{auth:?} needs a port"))?,
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse().map_err(|_| {
            format!("{host:?} is not an IP address (only loopback addresses or localhost)")
        })?
    };
    let addr = SocketAddr::new(ip, port);
    check_loopback(&addr)?;
    Ok(addr)
}

/// Parses a `ws://HOST:PORT/PATH?QUERY` URL (`wss` is not supported).
pub(crate) fn parse_ws(url: &str) -> Result<WsTarget, String> {
    let (auth, rest) = split(url, "ws")?;
    let addr = authority(auth, Some(80))?;
    let path = if rest.starts_with('/') {
        rest.to_string()
    } else {
        format!("/{rest}")
    };
    let channel = path.split_once('?').and_then(|(_, q)| {
        q.split('&')
            .filter_map(|kv| kv.split_once('='))
            .find(|(k, _)| *k == "channel")
            .map(|(_, v)| v.to_string())
    });
    Ok(WsTarget {
        url: url.to_string(),
        addr,
        host: auth.to_string(),
        path,
        channel,
    })
}

/// Parses `tcp://HOST:PORT`.
pub(crate) fn parse_tcp(url: &str) -> Result<SocketAddr, String> {
    let (auth, _) = split(url, "tcp")?;
    authority(auth, None)
}

/// Parses `http://HOST:PORT/PATH`.
pub(crate) fn parse_http(url: &str) -> Result<HttpTarget, String> {
    let (auth, rest) = split(url, "http")?;
    let addr = authority(auth, Some(80))?;
    Ok(HttpTarget {
        url: url.to_string(),
        addr,
        host: auth.to_string(),
        path: if rest.is_empty() {
            "/".into()
        } else {
            rest.to_string()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let t = parse_ws("ws://127.0.0.1:9000/ws?channel=news&x=1").unwrap();
        assert_eq!(t.addr, "127.0.0.1:9000".parse().unwrap());
        assert_eq!(t.path, "/ws?channel=news&x=1");
        assert_eq!(t.host, "127.0.0.1:9000");
        assert_eq!(t.channel.as_deref(), Some("news"));
        let t = parse_ws("ws://localhost:9000").unwrap();
        assert_eq!(t.path, "/");
        assert_eq!(t.channel, None);
        assert_eq!(
            parse_ws("ws://[::1]:80/").unwrap().addr,
            "[::1]:80".parse().unwrap()
        );
        assert!(parse_ws("ws://127.1.2.3:1/").is_ok());
        assert!(parse_ws("ws://10.0.0.1:80/")
            .unwrap_err()
            .contains("loopback"));
        assert!(parse_ws("ws://example.com:80/").is_err());
        assert!(parse_ws("wss://127.0.0.1:80/").is_err());
        assert!(parse_tcp("tcp://192.168.1.1:1935").is_err());
        assert_eq!(
            parse_tcp("tcp://127.0.0.1:1935").unwrap(),
            "127.0.0.1:1935".parse().unwrap()
        );
        let h = parse_http("http://127.0.0.1:8080/api/publish").unwrap();
        assert_eq!(h.path, "/api/publish");
    }
}
