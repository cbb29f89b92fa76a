//! Client auth: HMAC-SHA256 signed tokens (JWT, `HS256`) carrying a user id, an expiry and the
//! channel patterns the client may join; plus the HMAC helpers the webhooks and the API share.
//!
//! A token is what a backend hands its client after its own login, minted with the secret it
//! shares with sockhub (`sockhub token`, or [`TokenSecret::mint`], or any JWT library):
//!
//! ```
//! use sockhub::auth::{Claims, TokenSecret};
//!
//! let secret = TokenSecret::new("s3cret");
//! let token = secret.mint(&Claims::new("alice", 4_102_444_800, ["lobby", "room-*"]));
//! let claims = secret.verify(&token, 1_800_000_000).unwrap();
//! assert_eq!(claims.sub, "alice");
//! assert!(claims.allows("room-42") && !claims.allows("admin"));
//! ```
//!
//! Why not a JWT crate: sockhub needs exactly one algorithm (`HS256`), and the JWT crates bring
//! RSA and elliptic-curve stacks with them. The checks that matter are all here and tested:
//! the header must say `HS256` (no `none`, no algorithm confusion), the signature is compared in
//! constant time (`hmac`'s `verify_slice`), and `exp` is required.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Longest token accepted, in bytes: far above any real one, small enough to refuse garbage
/// before decoding it.
pub const MAX_TOKEN_LEN: usize = 4096;

/// What a token says about its holder.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id (shown to handlers and webhooks as the session's user).
    pub sub: String,
    /// Expiry, in seconds since the Unix epoch. Required.
    pub exp: u64,
    /// Channel patterns the holder may subscribe and publish to: exact names, or with `*`
    /// matching any run of characters (`room-*`, `*`). Empty means no channel at all.
    #[serde(default)]
    pub channels: Vec<String>,
    /// Issued at (seconds since the epoch); informational.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
}

impl Claims {
    /// Claims for `user`, valid until `exp` (Unix seconds), for `channels` (patterns).
    pub fn new<S: Into<String>>(
        user: impl Into<String>,
        exp: u64,
        channels: impl IntoIterator<Item = S>,
    ) -> Self {
        Claims {
            sub: user.into(),
            exp,
            channels: channels.into_iter().map(Into::into).collect(),
            iat: None,
        }
    }

    /// May the holder join or publish to `channel`?
    pub fn allows(&self, channel: &str) -> bool {
        self.channels.iter().any(|p| glob_match(p, channel))
    }
}

/// Why a token was refused. The text is what the client is told (after `unauthorized: `).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// No token was presented but the server requires one.
    #[error("a token is required")]
    Missing,
    /// Not three base64url parts, bad JSON, over [`MAX_TOKEN_LEN`]…
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    /// The header names an algorithm other than HS256.
    #[error("unsupported token algorithm (only HS256)")]
    Algorithm,
    /// The signature does not match this server's secret.
    #[error("bad token signature")]
    Signature,
    /// `exp` is in the past.
    #[error("token expired")]
    Expired,
}

/// The shared secret tokens are signed with.
#[derive(Clone)]
pub struct TokenSecret(Vec<u8>);

impl std::fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenSecret(…)")
    }
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
}

impl TokenSecret {
    /// A secret from its text.
    pub fn new(secret: impl AsRef<[u8]>) -> Self {
        TokenSecret(secret.as_ref().to_vec())
    }

    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
        match HmacSha256::new_from_slice(&self.0) {
            Ok(m) => m,
            Err(_) => unreachable!("HMAC accepts keys of every length"),
        }
    }

    /// Signs `claims` as a compact JWT (`HS256`).
    pub fn mint(&self, claims: &Claims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(claims).unwrap_or_default());
        let signing_input = format!("{header}.{payload}");
        let mut mac = self.mac();
        mac.update(signing_input.as_bytes());
        let sig = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{sig}")
    }

    /// Checks a token's algorithm, signature and expiry against `now` (Unix seconds).
    ///
    /// # Errors
    /// [`TokenError`], whose text is fit to show the client.
    pub fn verify(&self, token: &str, now: u64) -> Result<Claims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long"));
        }
        let mut parts = token.trim().split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(TokenError::Malformed("expected three dot-separated parts"));
        };
        let header: Header = URL_SAFE_NO_PAD
            .decode(h)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed("bad header"))?;
        if header.alg != "HS256" {
            return Err(TokenError::Algorithm);
        }
        let sig = URL_SAFE_NO_PAD
            .decode(s)
            .map_err(|_| TokenError::Malformed("bad signature encoding"))?;
        let mut mac = self.mac();
        mac.update(h.as_bytes());
        mac.update(b".");
        mac.update(p.as_bytes());
        mac.verify_slice(&sig).map_err(|_| TokenError::Signature)?;
        let claims: Claims = URL_SAFE_NO_PAD
            .decode(p)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or(TokenError::Malformed(
                "bad claims (sub and exp are required)",
            ))?;
        if claims.exp <= now {
            return Err(TokenError::Expired);
        }
        Ok(claims)
    }
}

/// HMAC-SHA256 of `body` under `key`, as lowercase hex: the webhook signature
/// (`X-Sockhub-Signature: sha256=<this>`).
pub fn sign_hex(key: &[u8], body: &[u8]) -> String {
    let mut mac = TokenSecret::new(key).mac();
    mac.update(body);
    hex::encode(mac.finalize().into_bytes())
}

/// Checks a `sha256=<hex>` signature header over `body` in constant time.
pub fn verify_signature(key: &[u8], body: &[u8], header: &str) -> bool {
    let Some(sig) = header
        .strip_prefix("sha256=")
        .and_then(|h| hex::decode(h).ok())
    else {
        return false;
    };
    let mut mac = TokenSecret::new(key).mac();
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

/// Constant-time equality of two secrets (API keys). Lengths are not hidden; contents are.
pub fn secrets_equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// `*` matches any run of characters (including none); every other character matches itself.
/// Linear in practice: the classic two-pointer match that backtracks only to the last `*`.
pub fn glob_match(pattern: &str, name: &str) -> bool {
    let (p, n) = (pattern.as_bytes(), name.as_bytes());
    let (mut pi, mut ni) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ni < n.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, ni));
            pi += 1;
        } else if pi < p.len() && p[pi] == n[ni] {
            pi += 1;
            ni += 1;
        } else if let Some((sp, sn)) = star {
            pi = sp + 1;
            ni = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// Seconds since the Unix epoch, by the system clock.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minted_tokens_verify_and_carry_claims() {
        let s = TokenSecret::new("k");
        let t = s.mint(&Claims::new("u1", 100, ["a", "b-*"]));
        let c = s.verify(&t, 99).unwrap();
        assert_eq!(c.sub, "u1");
        assert!(c.allows("a") && c.allows("b-1") && c.allows("b-") && !c.allows("c"));
        assert_eq!(s.verify(&t, 100), Err(TokenError::Expired));
        assert_eq!(
            TokenSecret::new("other").verify(&t, 0),
            Err(TokenError::Signature)
        );
    }

    #[test]
    fn tampered_or_unsigned_tokens_are_refused() {
        let s = TokenSecret::new("k");
        let t = s.mint(&Claims::new("u1", 100, ["a"]));
        let parts: Vec<&str> = t.split('.').collect();
        // Claims swapped for another user's, signature kept.
        let forged = URL_SAFE_NO_PAD.encode(br#"{"sub":"root","exp":100,"channels":["*"]}"#);
        assert_eq!(
            s.verify(&format!("{}.{forged}.{}", parts[0], parts[2]), 0),
            Err(TokenError::Signature)
        );
        // alg=none with an empty signature.
        let none = URL_SAFE_NO_PAD.encode(br#"{"alg":"none"}"#);
        assert_eq!(
            s.verify(&format!("{none}.{}.", parts[1]), 0),
            Err(TokenError::Algorithm)
        );
        assert!(matches!(s.verify("abc", 0), Err(TokenError::Malformed(_))));
        assert!(matches!(
            s.verify(&"a".repeat(MAX_TOKEN_LEN + 1), 0),
            Err(TokenError::Malformed(_))
        ));
    }

    #[test]
    fn a_token_from_another_jwt_implementation_verifies() {
        // HS256 over {"sub":"1234567890","exp":4102444800,"channels":["*"]} with key "secret",
        // computed with Python's hmac + base64 (the JWT compact form, RFC 7519).
        let t = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.\
                 eyJzdWIiOiIxMjM0NTY3ODkwIiwiZXhwIjo0MTAyNDQ0ODAwLCJjaGFubmVscyI6WyIqIl19.\
                 9ztIgtf2rntZY6QPo1En89QZxDvqN3kpAxXdRKIZ1VA";
        let c = TokenSecret::new("secret").verify(t, 0).unwrap();
        assert_eq!(c.sub, "1234567890");
        assert!(c.allows("anything"));
    }

    #[test]
    fn glob_patterns() {
        assert!(glob_match("*", ""));
        assert!(glob_match("a*c", "abbbc"));
        assert!(glob_match("a*b*c", "a-b-b-c"));
        assert!(!glob_match("a*c", "abcd"));
        assert!(glob_match("lobby", "lobby"));
        assert!(!glob_match("lobby", "lobby2"));
        // Many stars against a long name stays quick (no exponential backtracking).
        let name = "a".repeat(164);
        assert!(!glob_match(&("*a".repeat(50) + "b"), &name));
    }

    #[test]
    fn webhook_signatures() {
        let sig = sign_hex(b"key", b"body");
        assert!(verify_signature(b"key", b"body", &format!("sha256={sig}")));
        assert!(!verify_signature(
            b"key",
            b"body2",
            &format!("sha256={sig}")
        ));
        assert!(!verify_signature(b"key", b"body", &sig));
        assert!(secrets_equal(b"abc", b"abc") && !secrets_equal(b"abc", b"abd"));
    }
}
