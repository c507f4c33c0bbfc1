//! `POST /api/v1/recover`: tables brought back as they were at an instant inside BigQuery's
//! time-travel window, without a backup. Validated and planned while the caller waits, then run
//! as a job: 202 with the job, or the report when the caller asked to wait.

use axum::extract::{Query, State};
use axum::response::Response;

use super::error::{ApiError, RawBody};
use super::jobs::WaitQuery;
use super::{AppState, start_job};
use crate::jobs::JobKind;

#[utoipa::path(
    post,
    path = "/api/v1/recover",
    tag = "backup",
    operation_id = "startRecover",
    summary = "Recover tables by time travel",
    description = "Brings tables of one dataset back as they were at `asOf` (inside the \
        dataset's time-travel window; `BEFORE_DROP`: each named dropped table as it was just \
        before its `DROP TABLE`) by BigQuery clones, copies of snapshot decorators or \
        queries: no backup needed, no data through the service. A new table name by default \
        (`{table}_recovered_{yyyyMMddHHmmss}`), in place only with `WRITE_TRUNCATE`. See \
        docs/recover.md for the body.",
    params(
        ("wait" = Option<bool>, Query, description = "Answer with the final result instead of 202 (also `\"wait\": true` in the body)"),
    ),
    request_body(content = Value, content_type = "application/json", description = "The recovery request"),
    responses(
        (status = 200, description = "The report (when waiting) or the plan (`dryRun`)", body = Value),
        (status = 202, description = "Accepted as a job; `Location` names it", body = Value),
        (status = 400, description = "The request is invalid, `asOf` lies outside the dataset's time-travel window, or a table's drop cannot be found for `BEFORE_DROP` (each field named in `details`)", body = super::openapi::ErrorResponse),
        (status = 404, description = "The dataset or the target dataset does not exist (`details` names the field)", body = super::openapi::ErrorResponse),
        (status = 409, description = "A target table exists and the request does not say WRITE_TRUNCATE", body = super::openapi::ErrorResponse),
        (status = 429, description = "The job queue is full; see `Retry-After`", body = super::openapi::ErrorResponse),
        (status = 502, description = "BigQuery failed", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn start_recover(
    State(state): State<AppState>,
    Query(query): Query<WaitQuery>,
    RawBody(body): RawBody,
) -> Result<Response, ApiError> {
    start_job(&state, JobKind::Recover, &body, query.wait(false)?).await
}
