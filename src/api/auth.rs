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
//! `jwks` keeps the OIDC signing keys; `settings` declares the `AUTH_MODE` and `BQB_AUTH_*`
//! variables. Depends on `config` and `error` only.

mod jwks;
pub(crate) mod settings;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::error::ApiError;
use crate::error::{Error, ErrorKind};
use jwks::JwksCache;
pub use settings::{AuthMode, AuthSettings};

/// Paths that never need a token: probes must work before anyone can mint one, and metrics
/// scrapers rarely carry one. Exact matches on the request path.
pub(crate) const OPEN_PATHS: &[&str] = &["/healthz", "/readyz", "/metrics"];

/// Accepted difference between our clock and the token issuer's, for `exp` and `nbf`.
const CLOCK_SKEW: Duration = Duration::from_secs(60);

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
}
