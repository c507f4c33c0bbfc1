//! Who may call the API: `AUTH_MODE=none|bearer|google-oidc`, as one axum middleware.
//!
//! The middleware runs inside [`super::error::render_errors`], so its refusals come out in the
//! standard JSON error shape:
//!
//! | outcome | answer |
//! |---|---|
//! | no `Authorization` header, not `Bearer <token>`, wrong shared token; a token that is not a JWT, not RS256, signed by a key not in the JWKS, with a bad signature, expired, not yet valid, with the wrong `iss` or `aud` | 401 `UNAUTHENTICATED` with `WWW-Authenticate: Bearer` |
//! | a valid token whose `email` is missing, not verified, or not in the allow-list | 403 `PERMISSION_DENIED` |
//! | the signing keys (JWKS) cannot be fetched | 502 `UPSTREAM_ERROR` (the caller is not at fault; logged) |
//!
//! The paths in [`OPEN_PATHS`] (probes, metrics) never need a token. The caller's identity (the
//! service-account email, or `bearer`) is recorded in the request span as `caller`; no token,
//! nor any part of one, is ever logged or echoed.
//!
//! Depends on `config` and `error` only.

use std::collections::HashMap;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::{Duration, Instant};

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::config::{AuthMode, AuthSettings};
use crate::error::{Error, ErrorKind};

/// Paths that never need a token: probes must work before anyone can mint one, and metrics
/// scrapers rarely carry one. Exact matches on the request path.
pub(crate) const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Accepted difference between our clock and the token issuer's, for `exp` and `nbf`.
const CLOCK_SKEW: Duration = Duration::from_secs(60);
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

/// Who made the request; in the request extensions for handlers that want it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Caller {
    /// `AUTH_MODE=none`.
    Anonymous,
    /// `AUTH_MODE=bearer`: someone holding the shared token.
    Bearer,
    /// `AUTH_MODE=google-oidc`: the verified `email` of the token.
    ServiceAccount(String),
}

impl Caller {
    fn as_str(&self) -> &str {
        match self {
            Self::Anonymous => "anonymous",
            Self::Bearer => "bearer",
            Self::ServiceAccount(email) => email,
        }
    }
}

/// Why a request was refused. Messages name what is wrong, never what the token holds.
#[derive(Debug, thiserror::Error)]
enum AuthError {
    #[error("authentication required: send `Authorization: Bearer <token>`")]
    Missing,
    #[error("the Authorization header is not `Bearer <token>`")]
    Malformed,
    #[error("the bearer token is not the configured one")]
    WrongToken,
    #[error("the token is not a well-formed JWT")]
    NotAJwt,
    #[error("the token is signed with {0:?}; only RS256 (Google ID tokens) is accepted")]
    Algorithm(Algorithm),
    #[error("the token header has no `kid`")]
    NoKeyId,
    #[error("the token is signed by a key that is not in the JWKS (BQB_AUTH_JWKS_URL)")]
    UnknownKey,
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid yet (`nbf`)")]
    NotYetValid,
    #[error("the token's issuer (`iss`) is not one of BQB_AUTH_ISSUERS")]
    Issuer,
    #[error("the token's audience (`aud`) is not one of BQB_AUTH_AUDIENCE")]
    Audience,
    #[error("the token has no `{0}` claim")]
    MissingClaim(String),
    #[error("the token is invalid")]
    Invalid,
    #[error(
        "the token carries no `email` claim; have the caller include it (Cloud Scheduler and Pub/Sub push do)"
    )]
    NoEmail,
    #[error("the token's email is not verified (`email_verified`)")]
    EmailNotVerified,
    #[error("{0} may not call this service (not in BQB_AUTH_ALLOWED_EMAILS)")]
    NotAllowed(String),
    #[error("the token signing keys could not be fetched: {0}")]
    Keys(String),
}

impl AuthError {
    fn kind(&self) -> ErrorKind {
        match self {
            Self::NoEmail | Self::EmailNotVerified | Self::NotAllowed(_) => {
                ErrorKind::PermissionDenied
            }
            Self::Keys(_) => ErrorKind::Upstream,
            _ => ErrorKind::Unauthenticated,
        }
    }

    /// The `WWW-Authenticate` challenge for a 401 (RFC 6750 §3): bare when no credentials came.
    fn challenge(&self) -> Option<&'static str> {
        match self.kind() {
            ErrorKind::Unauthenticated if matches!(self, Self::Missing) => Some("Bearer"),
            ErrorKind::Unauthenticated => Some("Bearer error=\"invalid_token\""),
            _ => None,
        }
    }
}

impl From<jsonwebtoken::errors::Error> for AuthError {
    fn from(e: jsonwebtoken::errors::Error) -> Self {
        use jsonwebtoken::errors::ErrorKind as Jwt;
        // The library's own messages are not passed on: some quote claim values.
        match e.into_kind() {
            Jwt::InvalidSignature => Self::BadSignature,
            Jwt::ExpiredSignature => Self::Expired,
            Jwt::ImmatureSignature => Self::NotYetValid,
            Jwt::InvalidIssuer => Self::Issuer,
            Jwt::InvalidAudience => Self::Audience,
            Jwt::MissingRequiredClaim(claim) => Self::MissingClaim(claim),
            Jwt::InvalidToken | Jwt::Base64(_) | Jwt::Json(_) | Jwt::Utf8(_) => Self::NotAJwt,
            _ => Self::Invalid,
        }
    }
}

/// Checks requests against the configured [`AuthMode`]. Built once per router.
pub(crate) struct Authenticator {
    method: Method,
}

enum Method {
    None,
    /// SHA-256 of the shared token: comparing fixed-size digests in constant time hides the
    /// token's length as well as its bytes.
    Bearer([u8; 32]),
    Oidc(Box<OidcVerifier>),
}

impl Authenticator {
    pub(crate) fn from_settings(settings: &AuthSettings) -> Self {
        let method = match (settings.mode, &settings.bearer_token) {
            (AuthMode::None, _) => Method::None,
            (AuthMode::Bearer, Some(token)) => Method::Bearer(sha256(token.expose().as_bytes())),
            // Settings validation requires the token in bearer mode; refuse everyone rather than
            // no one if that ever changes.
            (AuthMode::Bearer, None) => Method::Bearer(sha256(b"")),
            (AuthMode::GoogleOidc, _) => Method::Oidc(Box::new(OidcVerifier::new(settings))),
        };
        Self { method }
    }

    async fn authenticate(&self, headers: &HeaderMap) -> Result<Caller, AuthError> {
        match &self.method {
            Method::None => Ok(Caller::Anonymous),
            Method::Bearer(expected) => {
                let token = bearer_token(headers)?;
                if constant_time_eq(&sha256(token.as_bytes()), expected) {
                    Ok(Caller::Bearer)
                } else {
                    Err(AuthError::WrongToken)
                }
            }
            Method::Oidc(verifier) => verifier.verify(bearer_token(headers)?).await,
        }
    }
}

/// The middleware: lets [`OPEN_PATHS`] through, otherwise authenticates, records the caller in
/// the request span and extensions, and answers 401/403/502 itself on failure.
pub(crate) async fn require_auth(
    State(auth): State<Arc<Authenticator>>,
    mut req: Request,
    next: Next,
) -> Response {
    if OPEN_PATHS.contains(&req.uri().path()) {
        return next.run(req).await;
    }
    match auth.authenticate(req.headers()).await {
        Ok(caller) => {
            tracing::Span::current().record("caller", caller.as_str());
            req.extensions_mut().insert(caller);
            next.run(req).await
        }
        Err(e) => {
            let challenge = e.challenge();
            let kind = e.kind();
            let mut response = ApiError(Error::new(kind, e.to_string())).into_response();
            if let Some(challenge) = challenge {
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(challenge),
                );
            }
            response
        }
    }
}

/// The token of the one `Authorization: Bearer <token>` header (scheme case-insensitive).
fn bearer_token(headers: &HeaderMap) -> Result<&str, AuthError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = values.next().ok_or(AuthError::Missing)?;
    if values.next().is_some() {
        // Two credentials: which one a proxy looked at is anyone's guess.
        return Err(AuthError::Malformed);
    }
    let value = value.to_str().map_err(|_| AuthError::Malformed)?;
    let (scheme, token) = value.trim().split_once(' ').ok_or(AuthError::Malformed)?;
    let token = token.trim();
    if !scheme.eq_ignore_ascii_case("bearer")
        || token.is_empty()
        || token.contains(char::is_whitespace)
    {
        return Err(AuthError::Malformed);
    }
    Ok(token)
}

fn sha256(bytes: &[u8]) -> [u8; 32] {
    Sha256::digest(bytes).into()
}

/// Equal digests, in time that does not depend on where they differ.
fn constant_time_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

/// Verifies Google-signed ID tokens: RS256 signature against the JWKS, `iss`, `aud`, `exp`,
/// then a verified `email` from the allow-list.
struct OidcVerifier {
    validation: Validation,
    allowed_emails: Vec<String>,
    keys: JwksCache,
}

/// The claims we read beyond the ones [`Validation`] checks.
#[derive(Debug, Deserialize)]
struct IdClaims {
    email: Option<String>,
    email_verified: Option<Flag>,
}

/// `email_verified` is a JSON boolean in Google's tokens; some issuers send `"true"`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    fn is_true(&self) -> bool {
        match self {
            Self::Bool(b) => *b,
            Self::Text(s) => s.eq_ignore_ascii_case("true"),
        }
    }
}

impl OidcVerifier {
    fn new(settings: &AuthSettings) -> Self {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.leeway = CLOCK_SKEW.as_secs();
        validation.validate_nbf = true;
        validation.set_audience(&settings.audiences);
        validation.set_issuer(&settings.issuers);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        Self {
            validation,
            allowed_emails: settings.allowed_emails.clone(),
            keys: JwksCache::new(settings.jwks_url.clone()),
        }
    }

    async fn verify(&self, token: &str) -> Result<Caller, AuthError> {
        let header = jsonwebtoken::decode_header(token).map_err(|_| AuthError::NotAJwt)?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Algorithm(header.alg));
        }
        let kid = header.kid.ok_or(AuthError::NoKeyId)?;
        let key = self.keys.key_for(&kid).await?;
        let claims = jsonwebtoken::decode::<IdClaims>(token, &key, &self.validation)?.claims;
        allowed_caller(&claims, &self.allowed_emails)
    }
}

/// The 403 half: the token is genuine; is its holder on the list?
fn allowed_caller(claims: &IdClaims, allowed: &[String]) -> Result<Caller, AuthError> {
    let email = claims.email.as_deref().ok_or(AuthError::NoEmail)?;
    if !claims.email_verified.as_ref().is_some_and(Flag::is_true) {
        return Err(AuthError::EmailNotVerified);
    }
    // Email addresses compare case-insensitively in practice (Google lower-cases them).
    if allowed.iter().any(|a| a.eq_ignore_ascii_case(email)) {
        Ok(Caller::ServiceAccount(email.to_string()))
    } else {
        Err(AuthError::NotAllowed(email.to_string()))
    }
}

/// Signing keys by `kid`, fetched from the JWKS URL, kept for the answer's `max-age`.
struct JwksCache {
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
    fn new(url: String) -> Self {
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

    async fn key_for(&self, kid: &str) -> Result<DecodingKey, AuthError> {
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

    fn headers(values: &[&str]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for v in values {
            map.append(header::AUTHORIZATION, HeaderValue::from_str(v).unwrap());
        }
        map
    }

    #[test]
    fn constant_time_eq_compares_whole_digests() {
        let a = sha256(b"s3cret");
        assert!(constant_time_eq(&a, &sha256(b"s3cret")));
        assert!(!constant_time_eq(&a, &sha256(b"s3creT")));
        assert!(!constant_time_eq(&a, &sha256(b"s3cret-and-more")));
        assert!(!constant_time_eq(&a, &sha256(b"")));
    }

    #[test]
    fn bearer_token_is_read_from_the_one_authorization_header() {
        assert_eq!(
            bearer_token(&headers(&["Bearer abc.def"])).unwrap(),
            "abc.def"
        );
        assert_eq!(bearer_token(&headers(&["bearer  abc "])).unwrap(), "abc");
        assert!(matches!(
            bearer_token(&headers(&[])),
            Err(AuthError::Missing)
        ));
        for bad in [
            "Basic dXNlcjpwdw==",
            "Bearer",
            "Bearer ",
            "Bearer a b",
            "Token abc",
        ] {
            assert!(
                matches!(bearer_token(&headers(&[bad])), Err(AuthError::Malformed)),
                "{bad}"
            );
        }
        assert!(matches!(
            bearer_token(&headers(&["Bearer a", "Bearer b"])),
            Err(AuthError::Malformed)
        ));
        let mut non_ascii = HeaderMap::new();
        non_ascii.insert(
            header::AUTHORIZATION,
            HeaderValue::from_bytes(b"Bearer \xff").unwrap(),
        );
        assert!(matches!(
            bearer_token(&non_ascii),
            Err(AuthError::Malformed)
        ));
    }

    #[test]
    fn refusals_map_to_401_403_and_502() {
        assert_eq!(AuthError::Expired.kind(), ErrorKind::Unauthenticated);
        assert_eq!(AuthError::Missing.challenge(), Some("Bearer"));
        assert_eq!(
            AuthError::BadSignature.challenge(),
            Some("Bearer error=\"invalid_token\"")
        );
        let denied = AuthError::NotAllowed("x@p.iam.gserviceaccount.com".into());
        assert_eq!(denied.kind(), ErrorKind::PermissionDenied);
        assert_eq!(denied.challenge(), None);
        assert_eq!(AuthError::Keys("down".into()).kind(), ErrorKind::Upstream);
    }

    #[test]
    fn only_verified_allowed_emails_pass() {
        let allowed = vec!["Sched@p.iam.gserviceaccount.com".to_string()];
        let claims = |email: Option<&str>, verified: Option<Flag>| IdClaims {
            email: email.map(str::to_string),
            email_verified: verified,
        };
        let ok = allowed_caller(
            &claims(
                Some("sched@p.iam.gserviceaccount.com"),
                Some(Flag::Bool(true)),
            ),
            &allowed,
        );
        assert_eq!(
            ok.unwrap(),
            Caller::ServiceAccount("sched@p.iam.gserviceaccount.com".into())
        );
        let text_true = claims(
            Some("sched@p.iam.gserviceaccount.com"),
            Some(Flag::Text("true".into())),
        );
        assert!(allowed_caller(&text_true, &allowed).is_ok());
        let unverified = claims(
            Some("sched@p.iam.gserviceaccount.com"),
            Some(Flag::Bool(false)),
        );
        assert!(matches!(
            allowed_caller(&unverified, &allowed),
            Err(AuthError::EmailNotVerified)
        ));
        let no_flag = claims(Some("sched@p.iam.gserviceaccount.com"), None);
        assert!(matches!(
            allowed_caller(&no_flag, &allowed),
            Err(AuthError::EmailNotVerified)
        ));
        assert!(matches!(
            allowed_caller(&claims(None, Some(Flag::Bool(true))), &allowed),
            Err(AuthError::NoEmail)
        ));
        assert!(matches!(
            allowed_caller(&claims(Some("other@p.iam.gserviceaccount.com"), Some(Flag::Bool(true))), &allowed),
            Err(AuthError::NotAllowed(e)) if e == "other@p.iam.gserviceaccount.com"
        ));
    }

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
