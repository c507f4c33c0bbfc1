//! `POST /api/v1/restore`: the Java service's request body (unchanged) plus our extensions.
//! Validated and planned while the caller waits (400/404/409 before any data moves), then run as
//! a job: 202 with the job, or the report when the caller asked to wait.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::error::{ApiError, RawBody};
use super::jobs::{WaitQuery, accepted};
use super::{AppState, start_job};
use crate::catalog::lease::LeaseTiming;
use crate::domain::parse_restore_request;
use crate::error::Error;
use crate::jobs::{JobKind, NewJob};
use crate::recovery::ActiveRestore;
use crate::restore::{RestoreContext, plan_restore, run_restore};
use crate::storage::Access;

#[utoipa::path(
    post,
    path = "/api/v1/restore",
    tag = "backup",
    operation_id = "startRestore",
    summary = "Start a restore",
    description = "Validates and plans the restore while the caller waits (nothing is written \
        before the plan holds), then runs it as a job. See docs/restore.md for the body. It may also be a \
        Pub/Sub push envelope carrying that request in `message.data`: one job per `messageId`.",
    params(
        ("wait" = Option<bool>, Query, description = "Answer with the final result instead of 202 (also `\"wait\": true` in the body)"),
    ),
    request_body(content = Value, content_type = "application/json", description = "The restore request"),
    responses(
        (status = 200, description = "The report (when waiting) or the plan (`dryRun`)", body = Value),
        (status = 202, description = "Accepted as a job; `Location` names it", body = Value),
        (status = 400, description = "The request is invalid (each field named in `details`)", body = super::openapi::ErrorResponse),
        (status = 404, description = "The backup or a table in it does not exist, or the repository's bucket or container (the field holding the URI is named in `details`)", body = super::openapi::ErrorResponse),
        (status = 403, description = "The service may not access the repository (its field is named in `details`)", body = super::openapi::ErrorResponse),
        (status = 409, description = "A target table exists and is not empty", body = super::openapi::ErrorResponse),
        (status = 413, description = "The body is too large", body = super::openapi::ErrorResponse),
        (status = 422, description = "The backup is damaged (`BACKUP_DAMAGED`): a file or the manifest does not match what was written; `details` names its key", body = super::openapi::ErrorResponse),
        (status = 429, description = "The job queue is full; see `Retry-After`", body = super::openapi::ErrorResponse),
        (status = 502, description = "BigQuery or the storage failed", body = super::openapi::ErrorResponse),
        (status = 503, description = "The storage is unavailable (it kept failing after retries); retry later", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn start_restore(
    State(state): State<AppState>,
    Query(query): Query<WaitQuery>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    start_job(&state, JobKind::Restore, &body, query.wait(false)?).await
}

/// Validates, plans and starts the restore in `body`.
pub(crate) async fn submit_restore(
    state: &AppState,
    body: &[u8],
    wait: bool,
    trigger: BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let request = parse_restore_request(body)
        .map_err(|f| Error::invalid("the request body is not a valid restore request", vec![f]))?;
    let spec = request
        .validate()
        .map_err(|problems| Error::invalid("the restore request is invalid", problems))?;
    // Refused or missing storage before anything else; no network call yet.
    let store = super::open_store(state, &spec.storage, &spec.storage_field, Access::Read)?;
    // Shed load before planning reads BigQuery (a dry run starts no job).
    let slot = (!spec.dry_run)
        .then(|| state.jobs.reserve_slot())
        .transpose()?;
    let plan = plan_restore(
        &state.bigquery,
        &store,
        &spec,
        state.settings.max_parallel_tables,
    )
    .await
    .map_err(|e| store.attribute(e))?;
    let Some(slot) = slot else {
        return Ok(Json(json!({ "dryRun": true, "plan": plan })).into_response());
    };
    let job = NewJob {
        kind: JobKind::Restore,
        backup_id: Some(plan.backup_id.to_string()),
        storage_uri: store.uri().to_string(),
        tables: plan.tables.iter().map(|t| t.target.to_string()).collect(),
        request: serde_json::from_slice(body).unwrap_or(Value::Null),
        trigger,
        exclusive_key: None,
    };
    let bigquery = state.bigquery.clone();
    let lease = LeaseTiming::new(state.settings.jobs.heartbeat);
    let job_store = state.jobs.store().clone();
    let record = state
        .jobs
        .submit(slot, job, move |run| async move {
            // Written before anything is created: if this process dies, another instance
            // removes what the restore created and never filled (`recovery`).
            let marker = ActiveRestore::begin(&job_store, run.job_id, &plan).await?;
            let ctx = RestoreContext {
                bigquery,
                store: store.clone(),
                cancel: run.cancel,
                progress: Some(run.progress),
                lease,
            };
            let report = run_restore(&plan, &ctx).await;
            marker.end().await;
            let report = report.map_err(|e| store.attribute(e))?;
            serde_json::to_value(report).map_err(|e| Error::internal(format!("report: {e}")))
        })
        .await?;
    accepted(&state.jobs, record, wait || spec.wait).await
}
