//! Jobs: `GET /api/v1/jobs`, `GET /api/v1/jobs/{id}`, `DELETE /api/v1/jobs/{id}` (cancel), and
//! how `POST /api/v1/backup` and `/restore` answer once their job is accepted (202, or the
//! result when the caller asked to wait).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, code_and_status};
use super::paging::{page_size, page_token};
use crate::domain::JobId;
use crate::engine::{Engine, Started};
use crate::error::{Error, FieldError};
use crate::jobs::{Cancelled, JobKind, JobRecord, JobState};

const DEFAULT_PAGE_SIZE: usize = 50;
const MAX_PAGE_SIZE: usize = 1000;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ListQuery {
    state: Option<String>,
    kind: Option<String>,
    page_size: Option<String>,
    page_token: Option<String>,
}

/// `?wait=true` on `POST /api/v1/backup`, `/restore` and `/backups/{id}:verify`.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct WaitQuery {
    wait: Option<String>,
}

impl From<Option<String>> for WaitQuery {
    fn from(wait: Option<String>) -> Self {
        Self { wait }
    }
}

impl WaitQuery {
    /// Whether the caller asked to wait, from the query or the body's `wait`.
    pub(crate) fn wait(&self, in_body: bool) -> Result<bool, ApiError> {
        match self.wait.as_deref().map(str::trim) {
            None => Ok(in_body),
            Some("" | "true" | "1") => Ok(true),
            Some("false" | "0") => Ok(in_body),
            Some(other) => Err(Error::invalid(
                "the query is invalid",
                vec![FieldError::new(
                    "wait",
                    format!("`{other}` is not true or false"),
                )],
            )
            .into()),
        }
    }
}

fn job_id(segment: &str) -> Result<JobId, ApiError> {
    JobId::parse(segment).map_err(|e| {
        Error::invalid(
            "the job id is invalid",
            vec![FieldError::new("id", e.to_string())],
        )
        .into()
    })
}

/// A record as the API shows it: the Java error shape for `error`, and links.
pub(crate) fn job_json(record: &JobRecord) -> Value {
    let mut body = serde_json::to_value(record).unwrap_or_else(|_| json!({}));
    // How the record is stored is not part of the API.
    if let Some(fields) = body.as_object_mut() {
        fields.remove("version");
    }
    if let Some(error) = &record.error {
        body["error"] = json!({
            "errorCode": code_and_status(error.kind).0,
            "message": error.message,
            "details": error.details,
        });
    }
    body["tablesDone"] = json!(record.tables_done());
    body["links"] = links(record);
    body
}

fn links(record: &JobRecord) -> Value {
    let mut links = json!({ "self": format!("/api/v1/jobs/{}", record.job_id) });
    if let Some(id) = &record.backup_id {
        links["backup"] = json!(format!(
            "/api/v1/backups/{id}?uri={}",
            url::form_urlencoded::byte_serialize(record.storage_uri.as_bytes()).collect::<String>()
        ));
    }
    links
}

/// How `POST /api/v1/backup` and `/restore` answer what the engine started: a dry run with its
/// plan (200); a job with 202 and where to follow it or — when the caller waits (`wait`, or the
/// request's own `wait`) — with the job's result (200) or its error (the status its failure
/// maps to).
pub(crate) async fn answer(
    engine: &Engine,
    started: Started<Value>,
    wait: bool,
) -> Result<Response, ApiError> {
    let accepted = match started {
        Started::DryRun(plan) => return Ok(Json(plan).into_response()),
        Started::Job(accepted) => accepted,
    };
    let record = accepted.record;
    if wait || accepted.wait {
        let ended = engine.finished(record).await?;
        return Ok(Json(ended.outcome()?).into_response());
    }
    let location = format!("/api/v1/jobs/{}", record.job_id);
    let body = json!({
        "jobId": record.job_id,
        "kind": record.kind,
        "backupId": record.backup_id,
        "status": record.state,
        "links": links(&record),
    });
    let mut response = (StatusCode::ACCEPTED, Json(body)).into_response();
    if let Ok(value) = HeaderValue::from_str(&location) {
        response.headers_mut().insert(header::LOCATION, value);
    }
    Ok(response)
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    operation_id = "getJob",
    summary = "A job: state, per-table progress, result or error",
    params(
        ("id" = String, Path, description = "The job id"),
    ),
    responses(
        (status = 200, description = "The job", body = Value),
        (status = 400, description = "The id is not a job id", body = super::openapi::ErrorResponse),
        (status = 404, description = "No such job", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let id = job_id(&id)?;
    let record = state.engine.jobs().get(&id).await?.ok_or_else(|| {
        Error::not_found(format!(
            "no job {id} in {}",
            state.engine.jobs().store().uri()
        ))
    })?;
    Ok(Json(job_json(&record)))
}

#[utoipa::path(
    get,
    path = "/api/v1/jobs",
    tag = "jobs",
    operation_id = "listJobs",
    summary = "Jobs, newest first",
    params(
        ("state" = Option<String>, Query, description = "PENDING, RUNNING, SUCCEEDED, FAILED or CANCELLED"),
        ("kind" = Option<String>, Query, description = "BACKUP, RESTORE, VERIFY or COPY"),
        ("pageSize" = Option<u32>, Query, description = "1 to 1000 (default 50)"),
        ("pageToken" = Option<String>, Query, description = "`nextPageToken` of the previous page"),
    ),
    responses(
        (status = 200, description = "`{\"jobs\": […], \"nextPageToken\": …}`", body = Value),
        (status = 400, description = "A query parameter is invalid", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut problems = Vec::new();
    let wanted_state = q.state.as_deref().and_then(|s| {
        let parsed = JobState::parse(s);
        if parsed.is_none() {
            problems.push(FieldError::new(
                "state",
                "must be PENDING, RUNNING, SUCCEEDED, FAILED or CANCELLED",
            ));
        }
        parsed
    });
    let wanted_kind = q.kind.as_deref().and_then(|k| {
        let parsed = JobKind::parse(k);
        if parsed.is_none() {
            problems.push(FieldError::new(
                "kind",
                "must be BACKUP, RESTORE, VERIFY or COPY",
            ));
        }
        parsed
    });
    let page_size = page_size(
        q.page_size.as_deref(),
        DEFAULT_PAGE_SIZE,
        MAX_PAGE_SIZE,
        &mut problems,
    );
    let after = page_token(q.page_token.as_deref(), JobId::parse, &mut problems);
    if !problems.is_empty() {
        return Err(Error::invalid("the listing request is invalid", problems).into());
    }
    let matching: Vec<JobRecord> = state
        .engine
        .jobs()
        .list()
        .await?
        .into_iter()
        .filter(|r| wanted_state.is_none_or(|s| r.state == s))
        .filter(|r| wanted_kind.is_none_or(|k| r.kind == k))
        .collect();
    let start = match &after {
        None => 0,
        Some(id) => match matching.iter().position(|r| &r.job_id == id) {
            Some(i) => i + 1,
            None => {
                return Err(Error::invalid(
                    "the listing request is invalid",
                    vec![FieldError::new(
                        "pageToken",
                        "names a job that is no longer listed; start again without it",
                    )],
                )
                .into());
            }
        },
    };
    let page: Vec<&JobRecord> = matching.iter().skip(start).take(page_size).collect();
    let next = (start + page.len() < matching.len())
        .then(|| page.last().map(|r| r.job_id.to_string()))
        .flatten();
    Ok(Json(json!({
        "jobs": page.iter().map(|r| summary(r)).collect::<Vec<_>>(),
        "nextPageToken": next,
    })))
}

/// A job in a listing: no request, no result body.
fn summary(record: &JobRecord) -> Value {
    json!({
        "jobId": record.job_id,
        "kind": record.kind,
        "state": record.state,
        "backupId": record.backup_id,
        "storageUri": record.storage_uri,
        "createdAt": record.created_at,
        "startedAt": record.started_at,
        "finishedAt": record.finished_at,
        "tables": record.tables.len(),
        "tablesDone": record.tables_done(),
        "cancelRequested": record.cancel_requested,
        "trigger": record.trigger,
        "links": links(record),
    })
}

/// `DELETE /api/v1/jobs/{id}`: 200 with the final record once the job stopped, 202 when the
/// instance running it has been asked to stop.
#[utoipa::path(
    delete,
    path = "/api/v1/jobs/{id}",
    tag = "jobs",
    operation_id = "cancelJob",
    summary = "Cancel a job",
    params(
        ("id" = String, Path, description = "The job id"),
    ),
    responses(
        (status = 200, description = "The job stopped: its final record", body = Value),
        (status = 202, description = "The instance running it was asked to stop", body = Value),
        (status = 400, description = "The id is not a job id", body = super::openapi::ErrorResponse),
        (status = 404, description = "No such job", body = super::openapi::ErrorResponse),
        (status = 409, description = "The job has already ended", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn cancel(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id = job_id(&id)?;
    Ok(match state.engine.jobs().cancel(&id).await? {
        Cancelled::Stopped(record) => (StatusCode::OK, Json(job_json(&record))).into_response(),
        Cancelled::Requested(record) => {
            (StatusCode::ACCEPTED, Json(job_json(&record))).into_response()
        }
    })
}
