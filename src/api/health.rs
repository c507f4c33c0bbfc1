//! `GET /healthz` (the process is alive) and `GET /readyz` (clients built, BigQuery answered,
//! not shutting down).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Value, json};

use super::AppState;

/// How long readiness waits for BigQuery before calling it unreachable.
const READY_PROBE_TIMEOUT: Duration = Duration::from_secs(5);

#[utoipa::path(
    get,
    path = "/healthz",
    tag = "operations",
    operation_id = "healthz",
    summary = "Liveness: the process answers",
    responses((status = 200, description = "`{\"status\": \"ok\", \"version\": …}`", body = Value)),
)]
pub(crate) async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok", "version": env!("CARGO_PKG_VERSION") }))
}

#[utoipa::path(
    get,
    path = "/readyz",
    tag = "operations",
    operation_id = "readyz",
    summary = "Readiness: BigQuery answered and the instance is not shutting down",
    responses(
        (status = 200, description = "Ready, with each check", body = Value),
        (status = 503, description = "Not ready (a check failed, or shutting down)", body = Value),
    ),
)]
pub(crate) async fn readyz(State(state): State<AppState>) -> (StatusCode, Json<Value>) {
    if state.shutdown.is_cancelled() {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({ "status": "shutting_down" })),
        );
    }
    let bigquery = match tokio::time::timeout(READY_PROBE_TIMEOUT, probe_bigquery(&state)).await {
        Ok(Ok(())) => json!({ "ok": true, "endpoint": state.settings.bigquery.endpoint }),
        Ok(Err(error)) => {
            json!({ "ok": false, "endpoint": state.settings.bigquery.endpoint, "error": error })
        }
        Err(_) => {
            json!({ "ok": false, "endpoint": state.settings.bigquery.endpoint, "error": "timed out" })
        }
    };
    let ready = bigquery["ok"] == true;
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = json!({ "status": if ready { "ready" } else { "unready" }, "checks": { "bigquery": bigquery } });
    (status, Json(body))
}

/// With a default project: one authenticated `datasets.list`. Without one there is nothing to
/// list, so any HTTP answer from the endpoint counts as "answered".
async fn probe_bigquery(state: &AppState) -> Result<(), String> {
    match &state.settings.bigquery.project_id {
        Some(project) => state
            .engine
            .bigquery()
            .ping(project)
            .await
            .map_err(|e| e.to_string()),
        None => reqwest::Client::new()
            .get(format!(
                "{}/bigquery/v2/projects",
                state.settings.bigquery.endpoint
            ))
            .timeout(READY_PROBE_TIMEOUT)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| format!("{} did not answer: {e}", state.settings.bigquery.endpoint)),
    }
}
