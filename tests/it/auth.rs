//! API authentication (`AUTH_MODE`) against a real server: tokens signed with the RSA keys in
//! tests/fixtures/auth/, checked against a JWKS served by a local HTTP server.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::State;
use axum::routing::get;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::jwk::{Jwk, JwkSet, KeyAlgorithm, PublicKeyUse};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};

use crate::helpers::{TestApp, TestServices, spawn_app_with};

const AUDIENCE: &str = "https://bq-backup.example.run.app";
const ISSUER: &str = "https://accounts.google.com";
const CALLER: &str = "scheduler@test-project.iam.gserviceaccount.com";
const TRUSTED_KID: &str = "trusted-1";
/// A cheap authenticated route: lists an (empty) in-memory repository, no BigQuery involved.
const PROTECTED: &str = "/api/v1/backups?uri=memory://auth-test";

/// A private key from tests/fixtures/auth/ (PKCS#1 PEM, test use only).
fn signing_key(name: &str) -> EncodingKey {
    let path = format!(
        "{}/tests/fixtures/auth/{name}.pem",
        env!("CARGO_MANIFEST_DIR")
    );
    let pem = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    EncodingKey::from_rsa_der(&STANDARD.decode(body).expect("PEM body is base64"))
}

/// The public half of `key` as a JWKS entry, as Google publishes them.
fn public_jwk(key: &EncodingKey, kid: &str) -> Jwk {
    let mut jwk = Jwk::from_encoding_key(key, Algorithm::RS256).expect("RSA key to JWK");
    jwk.common.key_id = Some(kid.to_string());
    jwk.common.key_algorithm = Some(KeyAlgorithm::RS256);
    jwk.common.public_key_use = Some(PublicKeyUse::Signature);
    jwk
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

/// Claims as Google puts them in an ID token for a service account.
fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "azp": "1234567890",
        "sub": "1234567890",
        "email": CALLER,
        "email_verified": true,
        "iat": now() - 10,
        "exp": now() + 3600,
    })
}

fn sign(claims: &Value, key: &EncodingKey, kid: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(kid.to_string());
    jsonwebtoken::encode(&header, claims, key).expect("token signs")
}

fn trusted_token(claims: &Value) -> String {
    sign(claims, &signing_key("trusted"), TRUSTED_KID)
}

/// A JWKS endpoint on 127.0.0.1 whose key set tests can change, counting its requests.
struct Jwks {
    url: String,
    keys: Arc<Mutex<Vec<Jwk>>>,
    hits: Arc<AtomicUsize>,
}

#[derive(Clone)]
struct JwksState {
    keys: Arc<Mutex<Vec<Jwk>>>,
    hits: Arc<AtomicUsize>,
}

async fn serve_jwks(State(state): State<JwksState>) -> Json<JwkSet> {
    state.hits.fetch_add(1, Ordering::SeqCst);
    let keys = state.keys.lock().unwrap().clone();
    Json(JwkSet { keys })
}

impl Jwks {
    async fn start(keys: Vec<Jwk>) -> Self {
        let state = JwksState {
            keys: Arc::new(Mutex::new(keys)),
            hits: Arc::new(AtomicUsize::new(0)),
        };
        let router = axum::Router::new()
            .route("/oauth2/v3/certs", get(serve_jwks))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/oauth2/v3/certs", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, router).await });
        Self {
            url,
            keys: state.keys,
            hits: state.hits,
        }
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

/// An app in `google-oidc` mode trusting `jwks_url`, and a JWKS serving the trusted key.
async fn oidc_app() -> (TestApp, Jwks) {
    let jwks = Jwks::start(vec![public_jwk(&signing_key("trusted"), TRUSTED_KID)]).await;
    let app = oidc_app_with_jwks_url(&jwks.url).await;
    (app, jwks)
}

async fn oidc_app_with_jwks_url(jwks_url: &str) -> TestApp {
    let settings = TestServices::get().settings_with(&[
        ("AUTH_MODE", "google-oidc"),
        ("BQB_AUTH_AUDIENCE", AUDIENCE),
        (
            "BQB_AUTH_ALLOWED_EMAILS",
            &format!("other@test-project.iam.gserviceaccount.com,{CALLER}"),
        ),
        ("BQB_AUTH_JWKS_URL", jwks_url),
    ]);
    spawn_app_with(settings).await
}

/// GET `path` with `Authorization: Bearer <token>` (none when `token` is `None`).
async fn get_with(app: &TestApp, path: &str, token: Option<&str>) -> reqwest::Response {
    let mut req = app.client.get(app.url(path));
    if let Some(token) = token {
        req = req.bearer_auth(token);
    }
    req.send().await.expect("server answers")
}

/// Asserts a 401 in the standard error shape with a `WWW-Authenticate: Bearer` challenge; returns
/// the message.
async fn assert_unauthenticated(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 401);
    let challenge = resp
        .headers()
        .get("www-authenticate")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    assert!(challenge.starts_with("Bearer"), "challenge: {challenge:?}");
    let body: Value = resp.json().await.expect("a JSON error body");
    assert_eq!(body["errorCode"], "UNAUTHENTICATED", "{body}");
    assert_eq!(body["path"], "/api/v1/backups");
    assert!(body["requestId"].as_str().is_some_and(|r| !r.is_empty()));
    body["message"].as_str().unwrap_or_default().to_string()
}

async fn assert_permission_denied(resp: reqwest::Response) -> String {
    assert_eq!(resp.status(), 403);
    assert!(!resp.headers().contains_key("www-authenticate"));
    let body: Value = resp.json().await.expect("a JSON error body");
    assert_eq!(body["errorCode"], "PERMISSION_DENIED", "{body}");
    body["message"].as_str().unwrap_or_default().to_string()
}

async fn assert_reaches_the_handler(resp: reqwest::Response) {
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    assert_eq!(status, 200, "{body}");
    assert!(
        body["backups"].is_array(),
        "the list handler answered: {body}"
    );
}

#[tokio::test]
async fn oidc_accepts_a_valid_token_from_an_allowed_service_account() {
    let (app, jwks) = oidc_app().await;
    let token = trusted_token(&claims());
    assert_reaches_the_handler(get_with(&app, PROTECTED, Some(&token)).await).await;
    // Audience as a list, as some issuers send it.
    let mut listed = claims();
    listed["aud"] = json!(["https://elsewhere.example", AUDIENCE]);
    assert_reaches_the_handler(get_with(&app, PROTECTED, Some(&trusted_token(&listed))).await)
        .await;
    assert_eq!(
        jwks.hits(),
        1,
        "the signing keys are fetched once and cached"
    );
}

#[tokio::test]
async fn oidc_refuses_a_request_without_a_token_with_a_bearer_challenge() {
    let (app, _jwks) = oidc_app().await;
    let resp = get_with(&app, PROTECTED, None).await;
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let message = assert_unauthenticated(resp).await;
    assert!(message.contains("Authorization: Bearer"), "{message}");
    let basic = app
        .client
        .get(app.url(PROTECTED))
        .header("authorization", "Basic dXNlcjpwdw==")
        .send()
        .await
        .unwrap();
    assert_unauthenticated(basic).await;
}

#[tokio::test]
async fn oidc_refuses_an_expired_token() {
    let (app, _jwks) = oidc_app().await;
    let mut expired = claims();
    // Past the 60 s clock-skew leeway.
    expired["iat"] = json!(now() - 7200);
    expired["exp"] = json!(now() - 3600);
    let resp = get_with(&app, PROTECTED, Some(&trusted_token(&expired))).await;
    let message = assert_unauthenticated(resp).await;
    assert!(message.contains("expired"), "{message}");
}

#[tokio::test]
async fn oidc_refuses_a_token_for_another_audience() {
    let (app, _jwks) = oidc_app().await;
    let mut other = claims();
    other["aud"] = json!("https://some-other-service.run.app");
    let resp = get_with(&app, PROTECTED, Some(&trusted_token(&other))).await;
    let message = assert_unauthenticated(resp).await;
    assert!(message.contains("aud"), "{message}");
}

#[tokio::test]
async fn oidc_refuses_a_token_from_another_issuer() {
    let (app, _jwks) = oidc_app().await;
    let mut other = claims();
    other["iss"] = json!("https://evil.example");
    let resp = get_with(&app, PROTECTED, Some(&trusted_token(&other))).await;
    let message = assert_unauthenticated(resp).await;
    assert!(message.contains("iss"), "{message}");
    let mut missing = claims();
    missing.as_object_mut().unwrap().remove("iss");
    let resp = get_with(&app, PROTECTED, Some(&trusted_token(&missing))).await;
    assert_unauthenticated(resp).await;
}

#[tokio::test]
async fn oidc_refuses_a_token_signed_by_another_key() {
    let (app, _jwks) = oidc_app().await;
    let other = signing_key("other");
    // Claiming to be signed by the trusted key.
    let forged = sign(&claims(), &other, TRUSTED_KID);
    let message = assert_unauthenticated(get_with(&app, PROTECTED, Some(&forged)).await).await;
    assert!(message.contains("signature"), "{message}");
    // Naming its own key, which the JWKS does not hold.
    let unknown = sign(&claims(), &other, "other-1");
    let message = assert_unauthenticated(get_with(&app, PROTECTED, Some(&unknown)).await).await;
    assert!(message.contains("not in the JWKS"), "{message}");
}

#[tokio::test]
async fn oidc_refuses_a_tampered_token() {
    let (app, _jwks) = oidc_app().await;
    // A genuine token for a caller who is not allowed, its payload swapped for an allowed one.
    let mut outsider = claims();
    outsider["email"] = json!("intruder@elsewhere.iam.gserviceaccount.com");
    let token = trusted_token(&outsider);
    let parts: Vec<&str> = token.split('.').collect();
    let payload = URL_SAFE_NO_PAD.encode(claims().to_string());
    let tampered = format!("{}.{payload}.{}", parts[0], parts[2]);
    let message = assert_unauthenticated(get_with(&app, PROTECTED, Some(&tampered)).await).await;
    assert!(message.contains("signature"), "{message}");
    // Garbage and truncated tokens.
    for bad in ["not-a-jwt", &format!("{}.{}", parts[0], parts[1])] {
        assert_unauthenticated(get_with(&app, PROTECTED, Some(bad)).await).await;
    }
}

#[tokio::test]
async fn oidc_refuses_tokens_with_another_algorithm() {
    let (app, _jwks) = oidc_app().await;
    // Algorithm confusion: HMAC "signed" with public material; and an unsigned token.
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(TRUSTED_KID.to_string());
    let hmac = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(b"AQAB"))
        .expect("token signs");
    let message = assert_unauthenticated(get_with(&app, PROTECTED, Some(&hmac)).await).await;
    assert!(message.contains("RS256"), "{message}");
    let none_header = URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#);
    let unsigned = format!(
        "{none_header}.{}.",
        URL_SAFE_NO_PAD.encode(claims().to_string())
    );
    assert_unauthenticated(get_with(&app, PROTECTED, Some(&unsigned)).await).await;
}

#[tokio::test]
async fn oidc_forbids_a_valid_token_from_a_service_account_not_on_the_list() {
    let (app, _jwks) = oidc_app().await;
    let mut outsider = claims();
    outsider["email"] = json!("intruder@elsewhere.iam.gserviceaccount.com");
    let resp = get_with(&app, PROTECTED, Some(&trusted_token(&outsider))).await;
    let message = assert_permission_denied(resp).await;
    assert!(
        message.contains("intruder@elsewhere.iam.gserviceaccount.com"),
        "{message}"
    );
    let mut unverified = claims();
    unverified["email_verified"] = json!(false);
    let resp = get_with(&app, PROTECTED, Some(&trusted_token(&unverified))).await;
    assert!(assert_permission_denied(resp).await.contains("verified"));
    let mut anonymous = claims();
    anonymous.as_object_mut().unwrap().remove("email");
    let resp = get_with(&app, PROTECTED, Some(&trusted_token(&anonymous))).await;
    assert!(assert_permission_denied(resp).await.contains("email"));
}

#[tokio::test]
async fn oidc_picks_up_a_rotated_key_and_rate_limits_unknown_keys() {
    let (app, jwks) = oidc_app().await;
    assert_reaches_the_handler(get_with(&app, PROTECTED, Some(&trusted_token(&claims()))).await)
        .await;
    assert_eq!(jwks.hits(), 1);
    // Google publishes a new key and starts signing with it.
    let rotated = signing_key("other");
    jwks.keys
        .lock()
        .unwrap()
        .push(public_jwk(&rotated, "rotated-2"));
    let token = sign(&claims(), &rotated, "rotated-2");
    assert_reaches_the_handler(get_with(&app, PROTECTED, Some(&token)).await).await;
    assert_eq!(jwks.hits(), 2, "an unknown kid triggers one refetch");
    // More unknown kids right after: refused without hammering the JWKS endpoint.
    for kid in ["made-up-1", "made-up-2"] {
        let forged = sign(&claims(), &rotated, kid);
        assert_unauthenticated(get_with(&app, PROTECTED, Some(&forged)).await).await;
    }
    assert_eq!(jwks.hits(), 2, "unknown-kid refetches are rate-limited");
    assert_reaches_the_handler(get_with(&app, PROTECTED, Some(&trusted_token(&claims()))).await)
        .await;
    assert_eq!(jwks.hits(), 2);
}

#[tokio::test]
async fn oidc_answers_502_when_the_signing_keys_cannot_be_fetched() {
    // Port 9 (discard) on loopback: nothing listens, the connection is refused.
    let app = oidc_app_with_jwks_url("http://127.0.0.1:9/certs").await;
    let resp = get_with(&app, PROTECTED, Some(&trusted_token(&claims()))).await;
    assert_eq!(resp.status(), 502);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["errorCode"], "UPSTREAM_ERROR", "{body}");
    assert!(
        body["message"]
            .as_str()
            .is_some_and(|m| m.contains("signing keys")),
        "{body}"
    );
}

#[tokio::test]
async fn probes_stay_open_whatever_the_mode() {
    let (oidc, _jwks) = oidc_app().await;
    let bearer = bearer_app().await;
    for app in [&oidc, &bearer] {
        for path in ["/healthz", "/readyz"] {
            let resp = get_with(app, path, None).await;
            assert_eq!(resp.status(), 200, "{path}");
        }
    }
}

async fn bearer_app() -> TestApp {
    let settings = TestServices::get().settings_with(&[
        ("AUTH_MODE", "bearer"),
        ("BQB_AUTH_BEARER_TOKEN", "correct-horse-battery-staple"),
    ]);
    spawn_app_with(settings).await
}

#[tokio::test]
async fn bearer_mode_accepts_only_the_configured_token() {
    let app = bearer_app().await;
    let ok = get_with(&app, PROTECTED, Some("correct-horse-battery-staple")).await;
    assert_reaches_the_handler(ok).await;
    for wrong in [
        "correct-horse-battery-stapl",
        "correct-horse-battery-staple2",
        "x",
    ] {
        let message = assert_unauthenticated(get_with(&app, PROTECTED, Some(wrong)).await).await;
        assert!(!message.contains(wrong), "the token is never echoed");
    }
    let missing = get_with(&app, PROTECTED, None).await;
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    assert_unauthenticated(missing).await;
}

#[tokio::test]
async fn unknown_routes_need_a_token_too() {
    let app = bearer_app().await;
    let resp = get_with(&app, "/api/v1/nope", None).await;
    assert_eq!(resp.status(), 401, "route names are not revealed");
    let resp = get_with(&app, "/api/v1/nope", Some("correct-horse-battery-staple")).await;
    assert_eq!(resp.status(), 404);
}

#[tokio::test]
async fn mode_none_needs_no_token() {
    let app = spawn_app_with(TestServices::get().settings_with(&[("AUTH_MODE", "none")])).await;
    assert_reaches_the_handler(get_with(&app, PROTECTED, None).await).await;
}
