//! The OIDC signing keys: a JWKS fetched over HTTP, cached by `kid` for the answer's `max-age`,
//! refetched when a token names a key we do not know (Google rotates its keys), rate-limited so
//! forged `kid`s cannot flood the JWKS endpoint.

use std::collections::HashMap;
use std::sync::{PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::http::header;
use jsonwebtoken::DecodingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use serde::Deserialize;

use super::AuthError;

/// How long fetched signing keys are trusted when the JWKS answer has no `Cache-Control:
/// max-age` (Google sends one of several hours).
const DEFAULT_KEYS_TTL: Duration = Duration::from_secs(3600);
/// Bounds on a `max-age`: refetch at least daily, and never more than once a minute.
const MIN_KEYS_TTL: Duration = Duration::from_secs(60);
const MAX_KEYS_TTL: Duration = Duration::from_secs(24 * 3600);
/// A token signed by a key we do not know triggers a refetch (key rotation) at most this often,
/// so a stream of forged `kid`s cannot turn into a stream of requests to the JWKS endpoint.
const UNKNOWN_KEY_REFETCH_INTERVAL: Duration = Duration::from_secs(30);
/// After a failed fetch, the keys we already have are used this long before trying again.
const RETRY_AFTER_FAILED_FETCH: Duration = Duration::from_secs(30);
/// One JWKS request may take this long.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);

/// Signing keys by `kid`, fetched from the JWKS URL, kept for the answer's `max-age`.
pub(super) struct JwksCache {
    url: String,
    http: reqwest::Client,
    keys: RwLock<KeySet>,
    /// One fetch at a time: concurrent requests wait for it instead of each fetching.
    fetching: tokio::sync::Mutex<()>,
}

/// The cache's state; [`KeySet::lookup`] decides, without I/O, whether a fetch is needed.
#[derive(Default)]
struct KeySet {
    keys: HashMap<String, DecodingKey>,
    /// `None` until the first successful fetch.
    fresh_until: Option<Instant>,
    /// The last fetch caused by an unknown `kid` (successful or not).
    last_unknown_key_fetch: Option<Instant>,
}

#[derive(Debug)]
enum Lookup {
    Found(DecodingKey),
    /// Fetch the JWKS; `unknown_key` when only because this `kid` is new (rate-limited).
    Fetch {
        unknown_key: bool,
    },
    /// Not in fresh keys, and a refetch for unknown keys happened too recently.
    Unknown,
}

impl KeySet {
    fn lookup(&self, kid: &str, now: Instant) -> Lookup {
        if self.fresh_until.is_none_or(|until| now >= until) {
            return Lookup::Fetch { unknown_key: false };
        }
        if let Some(key) = self.keys.get(kid) {
            return Lookup::Found(key.clone());
        }
        let may_refetch = self
            .last_unknown_key_fetch
            .is_none_or(|at| now.saturating_duration_since(at) >= UNKNOWN_KEY_REFETCH_INTERVAL);
        if may_refetch {
            Lookup::Fetch { unknown_key: true }
        } else {
            Lookup::Unknown
        }
    }
}

impl JwksCache {
    pub(super) fn new(url: String) -> Self {
        Self {
            url,
            // Panics only if TLS cannot initialise at all, as every reqwest client here would.
            http: reqwest::Client::new(),
            keys: RwLock::new(KeySet::default()),
            fetching: tokio::sync::Mutex::new(()),
        }
    }

    fn lookup(&self, kid: &str) -> Lookup {
        // A poisoned lock only means a panic elsewhere mid-update of plain data; the map is
        // still usable.
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.lookup(kid, Instant::now())
    }

    fn cached(&self, kid: &str) -> Option<DecodingKey> {
        let keys = self.keys.read().unwrap_or_else(PoisonError::into_inner);
        keys.keys.get(kid).cloned()
    }

    pub(super) async fn key_for(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        match self.lookup(kid) {
            Lookup::Found(key) => return Ok(key),
            Lookup::Unknown => return Err(AuthError::UnknownKey),
            Lookup::Fetch { .. } => {}
        }
        let _fetching = self.fetching.lock().await;
        // Another request may have fetched while this one waited.
        let unknown_key = match self.lookup(kid) {
            Lookup::Found(key) => return Ok(key),
            Lookup::Unknown => return Err(AuthError::UnknownKey),
            Lookup::Fetch { unknown_key } => unknown_key,
        };
        let started = Instant::now();
        if unknown_key {
            self.keys
                .write()
                .unwrap_or_else(PoisonError::into_inner)
                .last_unknown_key_fetch = Some(started);
        }
        match self.fetch().await {
            Ok((keys, ttl)) => {
                tracing::info!(
                    jwks_url = %self.url,
                    keys = keys.len(),
                    ttl_secs = ttl.as_secs(),
                    "fetched the token signing keys"
                );
                let mut state = self.keys.write().unwrap_or_else(PoisonError::into_inner);
                state.keys = keys;
                state.fresh_until = Some(started + ttl);
            }
            Err(e) => {
                tracing::error!(jwks_url = %self.url, error = %e, "cannot fetch the token signing keys");
                // Keys we had still verify what they verified before: better than refusing
                // every caller while the endpoint hiccups. Try again a little later.
                let mut state = self.keys.write().unwrap_or_else(PoisonError::into_inner);
                let key = state.keys.get(kid).cloned().ok_or(AuthError::Keys(e))?;
                if !unknown_key {
                    state.fresh_until = Some(started + RETRY_AFTER_FAILED_FETCH);
                }
                return Ok(key);
            }
        }
        self.cached(kid).ok_or(AuthError::UnknownKey)
    }

    /// The usable keys and how long to trust them. The error is for logs and the 502 message.
    async fn fetch(&self) -> Result<(HashMap<String, DecodingKey>, Duration), String> {
        let resp = self
            .http
            .get(&self.url)
            .timeout(FETCH_TIMEOUT)
            .send()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("{} answered {status}", self.url));
        }
        let ttl = resp
            .headers()
            .get(header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .map_or(DEFAULT_KEYS_TTL, |age| {
                age.clamp(MIN_KEYS_TTL, MAX_KEYS_TTL)
            });
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("{}: {e}", self.url))?;
        let keys = parse_jwks(&body).map_err(|e| format!("{}: {e}", self.url))?;
        Ok((keys, ttl))
    }
}

/// The RS256 signing keys of a JWKS document, by `kid`. Other keys (EC, encryption, no `kid`)
/// are skipped, so one odd entry does not take the others down.
fn parse_jwks(body: &[u8]) -> Result<HashMap<String, DecodingKey>, String> {
    #[derive(Deserialize)]
    struct Document {
        keys: Vec<serde_json::Value>,
    }
    let document: Document =
        serde_json::from_slice(body).map_err(|e| format!("not a JWKS document: {e}"))?;
    let mut keys = HashMap::new();
    for value in document.keys {
        let Ok(jwk) = serde_json::from_value::<Jwk>(value) else {
            continue;
        };
        let usable = matches!(jwk.algorithm, AlgorithmParameters::RSA(_))
            && jwk
                .common
                .key_algorithm
                .is_none_or(|alg| alg == KeyAlgorithm::RS256)
            && jwk
                .common
                .public_key_use
                .as_ref()
                .is_none_or(|u| *u == PublicKeyUse::Signature);
        let Some(kid) = jwk.common.key_id.clone().filter(|_| usable) else {
            continue;
        };
        if let Ok(key) = DecodingKey::from_jwk(&jwk) {
            keys.insert(kid, key);
        }
    }
    if keys.is_empty() {
        return Err("the JWKS holds no RS256 signing key with a `kid`".into());
    }
    Ok(keys)
}

/// `max-age` of a `Cache-Control` value.
fn max_age(cache_control: &str) -> Option<Duration> {
    cache_control.split(',').find_map(|directive| {
        let (name, value) = directive.trim().split_once('=')?;
        name.trim()
            .eq_ignore_ascii_case("max-age")
            .then(|| value.trim().trim_matches('"').parse().ok())
            .flatten()
            .map(Duration::from_secs)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=19813, must-revalidate, no-transform"),
            Some(Duration::from_secs(19813))
        );
        assert_eq!(max_age("Max-Age=60"), Some(Duration::from_secs(60)));
        assert_eq!(max_age("no-cache"), None);
        assert_eq!(max_age("max-age=soon"), None);
        assert_eq!(max_age(""), None);
    }

    fn key() -> DecodingKey {
        DecodingKey::from_rsa_raw_components(&[0xc3; 256], &[1, 0, 1])
    }

    #[test]
    fn key_lookup_fetches_when_empty_or_stale_and_rate_limits_unknown_keys() {
        let now = Instant::now();
        let mut set = KeySet::default();
        let fetch = |l: Lookup| matches!(l, Lookup::Fetch { unknown_key: false });
        let refetch = |l: Lookup| matches!(l, Lookup::Fetch { unknown_key: true });
        let found = |l: Lookup| matches!(l, Lookup::Found(_));
        assert!(fetch(set.lookup("a", now)), "nothing fetched yet");
        set.keys.insert("a".into(), key());
        set.fresh_until = Some(now + Duration::from_secs(3600));
        assert!(found(set.lookup("a", now)));
        assert!(
            refetch(set.lookup("b", now)),
            "a new kid may mean the keys rotated"
        );
        set.last_unknown_key_fetch = Some(now);
        let soon = now + Duration::from_secs(5);
        assert!(
            matches!(set.lookup("b", soon), Lookup::Unknown),
            "rate-limited"
        );
        assert!(found(set.lookup("a", soon)));
        assert!(refetch(set.lookup("b", now + UNKNOWN_KEY_REFETCH_INTERVAL)));
        assert!(
            fetch(set.lookup("a", now + Duration::from_secs(3600))),
            "known keys are refetched once stale"
        );
    }

    #[test]
    fn jwks_parsing_keeps_only_rs256_signing_keys_with_a_kid() {
        let n = "xjlCRBqkOa8TDHtfGn-P4eK3-lVQ8F-qRYbxQ0R7lJ0uGAz7-BW6u9XAyWt-4L1dU6H4Lq7Kb1uM5rT9mZp0kQ";
        let body = serde_json::json!({ "keys": [
            { "kty": "RSA", "kid": "good", "alg": "RS256", "use": "sig", "n": n, "e": "AQAB" },
            { "kty": "RSA", "kid": "no-alg", "n": n, "e": "AQAB" },
            { "kty": "RSA", "kid": "enc", "use": "enc", "n": n, "e": "AQAB" },
            { "kty": "RSA", "kid": "ps", "alg": "PS256", "n": n, "e": "AQAB" },
            { "kty": "RSA", "alg": "RS256", "n": n, "e": "AQAB" },
            { "kty": "EC", "kid": "ec", "crv": "P-256", "x": "AA", "y": "AA" },
            { "kty": "weird" }
        ]});
        let keys = parse_jwks(body.to_string().as_bytes()).unwrap();
        let mut kids: Vec<_> = keys.keys().map(String::as_str).collect();
        kids.sort_unstable();
        assert_eq!(kids, ["good", "no-alg"]);
        assert!(parse_jwks(br#"{"keys":[]}"#).is_err());
        assert!(parse_jwks(b"<html>").is_err());
    }

    #[tokio::test]
    async fn https_jwks_urls_are_fetched_over_tls() {
        // Google's JWKS is https: the client must speak TLS (reqwest's `rustls` feature), not
        // plain HTTP to port 443. A local listener looks at the first byte the client sends.
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("https://{}/certs", listener.local_addr().unwrap());
        let first_byte = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            socket.read_u8().await.unwrap()
        });
        let cache = JwksCache::new(url);
        assert!(matches!(
            cache.key_for("any").await,
            Err(AuthError::Keys(_))
        ));
        assert_eq!(
            first_byte.await.unwrap(),
            0x16,
            "a TLS handshake record, not `GET`"
        );
    }
}
