//! HTTP routes. One file per resource; `error` is the only place errors become HTTP.
//!
//! Depends on everything below it (bigquery, storage, formats, domain); nothing depends on it
//! except `app`, and `config`, whose aggregate holds `auth`'s settings (`auth::settings`).

pub(crate) mod auth;
mod backup;
mod backups;
mod error;
mod health;
mod jobs;
mod metrics;
mod openapi;
mod paging;
mod pubsub;
mod recover;
#[cfg(test)]
mod request_properties;
mod restore;
mod schedules;

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Router;
use axum::extract::{DefaultBodyLimit, Request};
use axum::http::StatusCode;
use axum::routing::{get, post};
use tokio_util::sync::CancellationToken;
use tower::ServiceBuilder;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Settings;
use crate::engine::{Engine, Submission};
use crate::jobs::JobKind;
use crate::schedule::Schedules;
use crate::telemetry::trace_id_from_headers;

/// What `POST /api/v1/backup` and `/restore` do with their body: a Pub/Sub push envelope starts
/// the job of its message (once per `messageId`), anything else is the request itself.
pub(crate) async fn start_job(
    state: &AppState,
    kind: JobKind,
    body: &[u8],
    wait: bool,
) -> Result<axum::response::Response, error::ApiError> {
    if let Some(message) = pubsub::envelope(body)? {
        return pubsub::deliver(state, message, kind, wait).await;
    }
    let started = state
        .engine
        .submit(kind, body, Submission::from(BTreeMap::new()))
        .await?;
    jobs::answer(&state.engine, started, wait).await
}

/// What every handler can reach. Cheap to clone.
#[derive(Clone)]
pub(crate) struct AppState {
    pub(crate) settings: Arc<Settings>,
    /// Every operation the routes offer.
    pub(crate) engine: Engine,
    /// `BQB_SCHEDULE_FILE`'s schedules (none without it) and this instance's view of them.
    pub(crate) schedules: Schedules,
    /// Cancelled when the process starts shutting down: readiness turns false, jobs checkpoint.
    pub(crate) shutdown: CancellationToken,
}

pub(crate) fn router(state: AppState) -> Router {
    let settings = state.settings.clone();
    let auth = Arc::new(auth::Authenticator::from_settings(&settings.auth));
    let request_metrics = state.engine.jobs().metrics().clone();
    // Every route is documented in `openapi::ApiDoc` (the `openapi` integration test checks).
    Router::new()
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(metrics::scrape))
        .route("/api/v1/openapi.json", get(openapi::spec))
        .route("/api/v1/backup", post(backup::start_backup))
        .route("/api/v1/restore", post(restore::start_restore))
        .route("/api/v1/recover", post(recover::start_recover))
        .route("/api/v1/jobs", get(jobs::list))
        .route("/api/v1/jobs/{id}", get(jobs::show).delete(jobs::cancel))
        .route("/api/v1/schedules", get(schedules::list))
        .route("/api/v1/backups", get(backups::list))
        .route("/api/v1/backups:prune", post(backups::prune))
        .route(
            "/api/v1/backups/{id}",
            get(backups::show)
                .post(backups::action)
                .delete(backups::delete),
        )
        .with_state(state)
        // Outermost first: request id → span → metrics → JSON errors → header limit → auth →
        // timeout → body limit → handler. Auth and the header limit inside the JSON errors so
        // their 401/403/431 come out in the standard shape.
        .layer(
            ServiceBuilder::new()
                .layer(SetRequestIdLayer::x_request_id(MakeRequestUuid))
                .layer(PropagateRequestIdLayer::x_request_id())
                .layer(TraceLayer::new_for_http().make_span_with(request_span))
                .layer(axum::middleware::from_fn_with_state(
                    request_metrics,
                    metrics::track,
                ))
                .layer(axum::middleware::from_fn(error::render_errors))
                .layer(axum::middleware::from_fn(error::limit_headers))
                .layer(axum::middleware::from_fn_with_state(
                    auth,
                    auth::require_auth,
                ))
                .layer(TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    settings.server.request_timeout,
                ))
                .layer(DefaultBodyLimit::max(settings.server.max_body_bytes)),
        )
}

/// One span per request with the fields every log line inside it carries.
fn request_span(req: &Request) -> tracing::Span {
    let header = |name: &str| req.headers().get(name).and_then(|v| v.to_str().ok());
    let request_id = header("x-request-id").unwrap_or_default();
    let span = tracing::info_span!(
        "request",
        method = %req.method(),
        path = %req.uri().path(),
        request_id,
        trace = tracing::field::Empty,
        // Who called, once authenticated (`auth`): a service-account email or `bearer`.
        caller = tracing::field::Empty,
    );
    if let Some(trace) =
        trace_id_from_headers(header("x-cloud-trace-context"), header("traceparent"))
    {
        span.record("trace", trace);
    }
    span
}
