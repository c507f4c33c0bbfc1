//! `GET /metrics` (Prometheus, OpenMetrics text) and the middleware that counts every request by
//! route template, method and status, and every error response by its `errorCode`.
//!
//! The endpoint stays open when authentication is on: scrapers do not carry the API's
//! credentials, and the text holds counts only (no names, no data).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::header;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::AppState;
use super::error::ErrorCode;
use crate::jobs::{JobKind, JobState};
use crate::metrics::{CONTENT_TYPE, Metrics, RequestServed, UNMATCHED_ROUTE};

#[utoipa::path(
    get,
    path = "/metrics",
    tag = "operations",
    operation_id = "metrics",
    summary = "Prometheus metrics",
    description = "Every `bqbackup_*` family in the OpenMetrics text format: jobs started and ended \
        (by kind and final state), jobs active and queued, job durations, rows and bytes moved, \
        errors by `errorCode`, HTTP requests by route. Open even when authentication is on.",
    responses(
        (status = 200, description = "The metrics", body = String,
            content_type = "application/openmetrics-text"),
    )
)]
pub(crate) async fn scrape(State(state): State<AppState>) -> Response {
    let jobs = state.engine.jobs();
    let final_states: Vec<&'static str> = JobState::ALL
        .into_iter()
        .filter(|s| s.is_terminal())
        .map(JobState::as_str)
        .collect();
    for kind in [
        JobKind::Backup,
        JobKind::Restore,
        JobKind::Verify,
        JobKind::Copy,
        JobKind::Recover,
    ] {
        jobs.metrics()
            .declare_job_kind(kind.as_str(), &final_states);
        // The live-job gauges are read from the job table now, so they can never drift.
        let (active, queued) = jobs.live_count(kind);
        jobs.metrics().set_live_jobs(kind.as_str(), active, queued);
    }
    (
        [(header::CONTENT_TYPE, CONTENT_TYPE)],
        jobs.metrics().render(),
    )
        .into_response()
}

/// Counts the request once answered. Runs outside `render_errors`, so that it sees the final
/// status and the `errorCode` every error response carries.
pub(crate) async fn track(State(metrics): State<Metrics>, req: Request, next: Next) -> Response {
    let started = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_string());
    let method = req.method().clone();
    let response = next.run(req).await;
    metrics.request_served(&RequestServed {
        route: route.as_deref().unwrap_or(UNMATCHED_ROUTE),
        method: &method,
        status: response.status().as_u16(),
        duration: started.elapsed(),
        error_code: response.extensions().get::<ErrorCode>().map(|c| c.0),
    });
    response
}
