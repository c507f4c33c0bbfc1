//! `POST /api/v1/restore`: the Java service's request body (unchanged) plus our extensions.
//! Validated and planned while the caller waits (400/404/409 before any data moves), then run as
//! a job: 202 with the job, or the report when the caller asked to wait.

use axum::extract::{Query, State};
use axum::response::Response;

use super::error::{ApiError, RawBody};
use super::jobs::WaitQuery;
use super::{AppState, start_job};
use crate::jobs::JobKind;

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
        (status = 403, description = "The service may not access the repository (its field is named in `details`), or the backup is encrypted and none of the service's identities (`BQB_ENCRYPTION_IDENTITIES`) opens it (the message names the backup; nothing was restored)", body = super::openapi::ErrorResponse),
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
