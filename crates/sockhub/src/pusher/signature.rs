//! Pusher's signatures: channel authorization (`<key>:<hex HMAC-SHA256 of
//! "socket_id:channel[:channel_data]">`) and HTTP API request signing (`auth_signature` over
//! `METHOD\nPATH\nsorted query`). Every comparison is constant-time (`hmac`'s `verify_slice`).

use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str) -> HmacSha256 {
    match HmacSha256::new_from_slice(secret.as_bytes()) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts keys of every length"),
    }
}

/// Hex HMAC-SHA256 of `text` under `secret`.
pub fn sign(secret: &str, text: &str) -> String {
    let mut m = mac(secret);
    m.update(text.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

fn verify(secret: &str, text: &str, signature_hex: &str) -> bool {
    let Ok(sig) = hex::decode(signature_hex) else {
        return false;
    };
    let mut m = mac(secret);
    m.update(text.as_bytes());
    m.verify_slice(&sig).is_ok()
}

/// Checks the `auth` of a `pusher:subscribe` (`<key>:<signature>`) for a private or presence
/// channel; `channel_data` is the exact string the client sent (presence only).
pub fn verify_channel_auth(
    key: &str,
    secret: &str,
    socket_id: &str,
    channel: &str,
    channel_data: Option<&str>,
    auth: &str,
) -> bool {
    // The key may contain ':' (a config file allows it); the hex signature cannot.
    let Some((k, sig)) = auth.rsplit_once(':') else {
        return false;
    };
    if !crate::auth::secrets_equal(k.as_bytes(), key.as_bytes()) {
        return false;
    }
    let text = match channel_data {
        Some(d) => format!("{socket_id}:{channel}:{d}"),
        None => format!("{socket_id}:{channel}"),
    };
    verify(secret, &text, sig)
}

/// Checks `pusher:signin`'s `auth` (`<key>:<HMAC of "socket_id::user::user_data">`).
pub fn verify_signin(
    key: &str,
    secret: &str,
    socket_id: &str,
    user_data: &str,
    auth: &str,
) -> bool {
    let Some((k, sig)) = auth.rsplit_once(':') else {
        return false;
    };
    crate::auth::secrets_equal(k.as_bytes(), key.as_bytes())
        && verify(secret, &format!("{socket_id}::user::{user_data}"), sig)
}

/// Why an API request's signature was refused (the text goes into the 401 body).
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// A required auth parameter is missing.
    #[error("missing {0}")]
    Missing(&'static str),
    /// `auth_key` is not this app's key.
    #[error("unknown auth_key")]
    Key,
    /// `auth_timestamp` is more than 600 s away from the server's clock.
    #[error("auth_timestamp expired (more than 600 seconds from the server's time)")]
    Timestamp,
    /// `body_md5` does not match the body.
    #[error("body_md5 does not match the body")]
    BodyMd5,
    /// `auth_signature` does not match.
    #[error("invalid auth_signature")]
    Signature,
}

/// Checks a signed API request. `params` are the decoded query parameters (keys as sent),
/// `now` Unix seconds.
///
/// # Errors
/// [`RequestError`] saying what is wrong.
pub fn verify_request(
    key: &str,
    secret: &str,
    method: &str,
    path: &str,
    params: &[(String, String)],
    body: &[u8],
    now: u64,
) -> Result<(), RequestError> {
    let get = |name: &str| {
        params
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let auth_key = get("auth_key").ok_or(RequestError::Missing("auth_key"))?;
    let ts = get("auth_timestamp").ok_or(RequestError::Missing("auth_timestamp"))?;
    let signature = get("auth_signature").ok_or(RequestError::Missing("auth_signature"))?;
    get("auth_version").ok_or(RequestError::Missing("auth_version"))?;
    if !crate::auth::secrets_equal(auth_key.as_bytes(), key.as_bytes()) {
        return Err(RequestError::Key);
    }
    let ts: u64 = ts.parse().map_err(|_| RequestError::Timestamp)?;
    if ts.abs_diff(now) > 600 {
        return Err(RequestError::Timestamp);
    }
    // Some SDKs send body_md5 on GETs too (of the empty body); check it whenever present, and
    // require it when there is a body.
    match get("body_md5") {
        Some(md5) if !md5.eq_ignore_ascii_case(&body_md5(body)) => {
            return Err(RequestError::BodyMd5)
        }
        None if !body.is_empty() => return Err(RequestError::Missing("body_md5")),
        _ => {}
    }
    let mut sorted: Vec<(String, &str)> = params
        .iter()
        .filter(|(k, _)| !k.eq_ignore_ascii_case("auth_signature"))
        .map(|(k, v)| (k.to_ascii_lowercase(), v.as_str()))
        .collect();
    sorted.sort();
    let query = sorted
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let text = format!("{}\n{path}\n{query}", method.to_ascii_uppercase());
    if verify(secret, &text, signature) {
        Ok(())
    } else {
        Err(RequestError::Signature)
    }
}

/// Hex MD5 of a body.
pub fn body_md5(body: &[u8]) -> String {
    use md5::Digest as _;
    hex::encode(md5::Md5::digest(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    // The worked examples of Pusher's "Authentication and authorization signatures" and "HTTP
    // API reference" pages.
    const KEY: &str = "278d425bdf160c739803";
    const SECRET: &str = "7ad3773142a6692b25b8";

    #[test]
    fn pusher_docs_private_channel_example() {
        let sig = "58df8b0c36d6982b82c3ecf6b4662e34fe8c25bba48f5369f135bf843651c3a4";
        assert_eq!(sign(SECRET, "1234.1234:private-foobar"), sig);
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            "1234.1234",
            "private-foobar",
            None,
            &format!("{KEY}:{sig}")
        ));
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "1234.1235",
            "private-foobar",
            None,
            &format!("{KEY}:{sig}")
        ));
        // The key in the auth must be this app's.
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "1234.1234",
            "private-foobar",
            None,
            &format!("otherkey:{sig}")
        ));
    }

    #[test]
    fn pusher_docs_http_api_example() {
        let body = br#"{"name":"foo","channels":["project-3"],"data":"{\"some\":\"data\"}"}"#;
        assert_eq!(body_md5(body), "ec365a775a4cd0599faeb73354201b6f");
        let params: Vec<(String, String)> = [
            ("auth_key", KEY),
            ("auth_timestamp", "1353088179"),
            ("auth_version", "1.0"),
            ("body_md5", "ec365a775a4cd0599faeb73354201b6f"),
            (
                "auth_signature",
                "da454824c97ba181a32ccc17a72625ba02771f50b50e1e7430e47a1f3f457e6c",
            ),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let check = |now, body: &[u8]| {
            verify_request(KEY, SECRET, "POST", "/apps/3/events", &params, body, now)
        };
        assert_eq!(check(1353088179, body), Ok(()));
        assert_eq!(check(1353088179 + 601, body), Err(RequestError::Timestamp));
        assert_eq!(check(1353088179, b"{}"), Err(RequestError::BodyMd5));
        let wrong = verify_request(
            KEY,
            "wrong",
            "POST",
            "/apps/3/events",
            &params,
            body,
            1353088179,
        );
        assert_eq!(wrong, Err(RequestError::Signature));
    }

    /// Found by the `pusher_request` fuzz target: the auth was split at its first ':', so with
    /// a key containing one (allowed in a config file) no private or presence subscription and
    /// no signin ever verified.
    #[test]
    fn key_with_a_colon_verifies() {
        let key = "app:key";
        let sig = sign(SECRET, "1.2:private-x");
        let auth = format!("{key}:{sig}");
        assert!(verify_channel_auth(
            key,
            SECRET,
            "1.2",
            "private-x",
            None,
            &auth
        ));
        assert!(!verify_channel_auth(
            "app",
            SECRET,
            "1.2",
            "private-x",
            None,
            &auth
        ));
        let sig = sign(SECRET, "1.2::user::{\"id\":\"u\"}");
        let auth = format!("{key}:{sig}");
        assert!(verify_signin(key, SECRET, "1.2", r#"{"id":"u"}"#, &auth));
    }

    #[test]
    fn presence_auth_covers_the_exact_channel_data() {
        let data = r#"{"user_id":"10","user_info":{"name":"Mr. Channels"}}"#;
        let sig = sign(SECRET, &format!("1234.1234:presence-foobar:{data}"));
        let auth = format!("{KEY}:{sig}");
        assert!(verify_channel_auth(
            KEY,
            SECRET,
            "1234.1234",
            "presence-foobar",
            Some(data),
            &auth
        ));
        let other = r#"{"user_id":"11","user_info":{"name":"Mr. Channels"}}"#;
        assert!(!verify_channel_auth(
            KEY,
            SECRET,
            "1234.1234",
            "presence-foobar",
            Some(other),
            &auth
        ));
    }
}
