//! `POST /api/v1/backup`: the Java service's request body (unchanged) plus our extensions.
//! Validated and planned while the caller waits (400/404 name what is wrong), then run as a job:
//! 202 with the job, or the report when the caller asked to wait.

use axum::extract::{Query, State};
use axum::response::Response;

use super::error::{ApiError, RawBody};
use super::jobs::WaitQuery;
use super::{AppState, start_job};
use crate::jobs::JobKind;

#[utoipa::path(
    post,
    path = "/api/v1/backup",
    tag = "backup",
    operation_id = "startBackup",
    summary = "Start a backup",
    description = "Validates and plans the backup while the caller waits, then runs it as a job. \
        The body is the Java service's request (unchanged) plus extensions; see docs/backup.md. \
        It may also be a Pub/Sub push envelope carrying that request in `message.data`: one job \
        per `messageId`, a redelivery answers 200 `{\"duplicate\": true, \"jobId\": …}`.",
    params(
        ("wait" = Option<bool>, Query, description = "Answer with the final result instead of 202 (also `\"wait\": true` in the body)"),
    ),
    request_body(content = Value, content_type = "application/json", description = "The backup request"),
    responses(
        (status = 200, description = "The report (when waiting) or the plan (`dryRun`)", body = Value),
        (status = 202, description = "Accepted as a job; `Location` names it", body = Value),
        (status = 400, description = "The request is invalid (each field named in `details`)", body = super::openapi::ErrorResponse),
        (status = 404, description = "A dataset or table does not exist, or the repository's bucket or container (the field holding the URI is named in `details`)", body = super::openapi::ErrorResponse),
        (status = 403, description = "The service may not access the repository (its field is named in `details`)", body = super::openapi::ErrorResponse),
        (status = 409, description = "The backup id is committed or being written in this repository, or a backup of the same selection is running", body = super::openapi::ErrorResponse),
        (status = 413, description = "The body is too large", body = super::openapi::ErrorResponse),
        (status = 429, description = "The job queue is full; see `Retry-After`", body = super::openapi::ErrorResponse),
        (status = 502, description = "BigQuery or the storage failed", body = super::openapi::ErrorResponse),
        (status = 503, description = "The storage is unavailable (it kept failing after retries); retry later", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn start_backup(
    State(state): State<AppState>,
    Query(query): Query<WaitQuery>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    start_job(&state, JobKind::Backup, &body, query.wait(false)?).await
}
