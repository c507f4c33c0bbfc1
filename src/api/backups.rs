//! The catalog: `GET /api/v1/backups`, `GET /api/v1/backups/{id}`, `DELETE …/{id}`,
//! `POST /api/v1/backups/{id}:verify` and `POST /api/v1/backups/{id}:copy` (jobs),
//! `POST /api/v1/backups:prune`. The repository is named by the `uri` query parameter.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use chrono::Utc;
use serde::Deserialize;
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use super::jobs::WaitQuery;
use super::paging::{page_size, page_token};
use crate::catalog::copy::Existing;
use crate::catalog::drills::{self, read_drills};
use crate::catalog::retention::KeepPolicy;
use crate::catalog::{
    BackupSummary, ListFilter, Sample, list::DEFAULT_PAGE_SIZE, list::MAX_PAGE_SIZE,
};
use crate::domain::{BackupId, EncryptionRequest, StorageUri};
use crate::encryption::Recipients;
use crate::engine::{CopyOrder, Started, Submission, VerifyOrder};
use crate::error::{Error, ErrorKind, FieldError};
use crate::storage::{Access, Store};

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub(crate) struct ListQuery {
    uri: Option<String>,
    project: Option<String>,
    dataset: Option<String>,
    /// `key` or `key:value`.
    label: Option<String>,
    status: Option<String>,
    page_size: Option<String>,
    page_token: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct UriQuery {
    uri: Option<String>,
}

/// Opens the repository named by the `uri` query parameter for reading. A URI that is absent,
/// malformed or not allowed here is a problem of the request (`None`, listed in `problems` with
/// the others, 400); a local repository that does not exist is the answer once the request is
/// otherwise valid (`Some(Err(..))`, 404): nothing is created for a read.
fn open(
    state: &AppState,
    uri: Option<&str>,
    problems: &mut Vec<FieldError>,
) -> Option<Result<Store, Error>> {
    let Some(uri) = uri.filter(|u| !u.trim().is_empty()) else {
        problems.push(FieldError::new(
            "uri",
            "is required: the backup repository, e.g. gs://bucket/prefix",
        ));
        return None;
    };
    let uri = match StorageUri::parse(uri) {
        Ok(uri) => uri,
        Err(e) => {
            problems.push(FieldError::new("uri", e.to_string()));
            return None;
        }
    };
    match state.engine.repository(&uri, "uri", Access::Read) {
        Ok(store) => Some(Ok(store)),
        Err(e) => {
            if e.kind() == ErrorKind::InvalidInput {
                problems.extend(e.details().iter().cloned());
                if e.details().is_empty() {
                    problems.push(FieldError::new("uri", e.to_string()));
                }
                return None;
            }
            Some(Err(e))
        }
    }
}

#[utoipa::path(
    get,
    path = "/api/v1/backups",
    tag = "backups",
    operation_id = "listBackups",
    summary = "The complete backups in a repository, newest first",
    params(
        ("uri" = String, Query, description = "The backup repository, e.g. `gs://bucket/prefix`"),
        ("project" = Option<String>, Query, description = "Only backups of this project"),
        ("dataset" = Option<String>, Query, description = "Only backups of this dataset"),
        ("label" = Option<String>, Query, description = "`key` or `key:value`"),
        ("status" = Option<String>, Query, description = "COMPLETE or EXPIRED"),
        ("pageSize" = Option<u32>, Query, description = "Backups per page"),
        ("pageToken" = Option<String>, Query, description = "`nextPageToken` of the previous page"),
    ),
    responses(
        (status = 200, description = "A page of backups", body = Value),
        (status = 400, description = "A query parameter is invalid, or the uri names storage this server may not use (`BQB_ALLOWED_STORAGE`)", body = super::openapi::ErrorResponse),
        (status = 404, description = "The repository's bucket or container does not exist, or a file:// repository that does not exist (`details` names `uri`; nothing is created)", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn list(
    State(state): State<AppState>,
    Query(q): Query<ListQuery>,
) -> Result<Json<Value>, ApiError> {
    let mut problems = Vec::new();
    let store = open(&state, q.uri.as_deref(), &mut problems);
    let page_size = page_size(
        q.page_size.as_deref(),
        DEFAULT_PAGE_SIZE,
        MAX_PAGE_SIZE,
        &mut problems,
    );
    let page_token = page_token(q.page_token.as_deref(), BackupId::parse, &mut problems);
    if let Some(status) = &q.status
        && !["COMPLETE", "EXPIRED"].contains(&status.to_ascii_uppercase().as_str())
    {
        problems.push(FieldError::new("status", "must be COMPLETE or EXPIRED"));
    }
    let (Some(store), true) = (store, problems.is_empty()) else {
        return Err(Error::invalid("the listing request is invalid", problems).into());
    };
    let store = store?;
    let filter = ListFilter {
        project: q.project,
        dataset: q.dataset,
        label: q.label.map(|l| match l.split_once(':') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (l, None),
        }),
        status: q.status,
    };
    let page = state
        .engine
        .repositories()
        .list(&store, &filter, page_size, page_token.as_ref())
        .await?;
    Ok(Json(
        serde_json::to_value(page).map_err(|e| Error::internal(format!("listing: {e}")))?,
    ))
}

/// Parses the id segment, which for verify carries the `:verify` custom method.
fn backup_id(segment: &str, problems: &mut Vec<FieldError>) -> Option<BackupId> {
    match BackupId::parse(segment) {
        Ok(id) => Some(id),
        Err(e) => {
            problems.push(FieldError::new("id", e.to_string()));
            None
        }
    }
}

/// The backup id in `segment` and the repository named by `uri`, or every problem of both.
fn backup_in(
    state: &AppState,
    segment: &str,
    uri: Option<&str>,
) -> Result<(Store, BackupId), ApiError> {
    let mut problems = Vec::new();
    let id = backup_id(segment, &mut problems);
    let store = open(state, uri, &mut problems);
    let (Some(id), Some(store)) = (id, store) else {
        return Err(Error::invalid("the request is invalid", problems).into());
    };
    Ok((store?, id))
}

#[utoipa::path(
    get,
    path = "/api/v1/backups/{id}",
    tag = "backups",
    operation_id = "getBackup",
    summary = "A backup: its tables, routines and request",
    params(
        ("id" = String, Path, description = "The backup id"),
        ("uri" = String, Query, description = "The backup repository, e.g. `gs://bucket/prefix`"),
    ),
    responses(
        (status = 200, description = "The backup", body = Value),
        (status = 400, description = "The id or uri is invalid, or the uri is not allowed here", body = super::openapi::ErrorResponse),
        (status = 404, description = "No complete backup with this id, or no such bucket or container (`details` names `uri`)", body = super::openapi::ErrorResponse),
        (status = 422, description = "The manifest is damaged (`BACKUP_DAMAGED`, `details` names its key)", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn show(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<UriQuery>,
) -> Result<Json<Value>, ApiError> {
    let (store, id) = backup_in(&state, &id, q.uri.as_deref())?;
    let manifest = state.engine.repositories().show(&store, &id).await?;
    let mut body = serde_json::to_value(BackupSummary::of(&manifest, Utc::now()))
        .map_err(|e| Error::internal(e.to_string()))?;
    body["tables"] = manifest
        .tables
        .iter()
        .map(|t| {
            let mut table = json!({ "table": t.table, "kind": t.kind, "rows": t.rows, "bytes": t.bytes, "files": t.files.len() });
            if let Some(partitions) = t.partitions {
                table["partitions"] = json!(partitions);
            }
            table
        })
        .collect();
    if let Some(incremental) = &manifest.incremental {
        body["incremental"] = json!(incremental);
    }
    // The newest drills, with every table's comparison; the newest also as `lastDrill`.
    let drills = read_drills(&store, &id, drills::SHOWN).await?;
    if let Some(last) = drills.first() {
        body["lastDrill"] = json!(last.summary());
    }
    body["drills"] = json!(drills);
    body["routines"] = manifest
        .routines
        .iter()
        .map(|r| json!(format!("{}.{}.{}", r.project, r.dataset, r.routine)))
        .collect();
    body["request"] = manifest.request.clone();
    Ok(Json(body))
}

/// The query of `POST /api/v1/backups/{id}:verify` and `:copy`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ActionQuery {
    uri: Option<String>,
    wait: Option<String>,
}

/// The optional body of `POST /api/v1/backups/{id}:verify`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct VerifyBody {
    /// `"10%"` or a number of files: read only those in full.
    sample: Option<Value>,
    #[serde(default)]
    wait: bool,
}

/// `POST /api/v1/backups/{id}:verify`.
#[utoipa::path(
    post,
    path = "/api/v1/backups/{id}:verify",
    tag = "backups",
    operation_id = "verifyBackup",
    summary = "Verify a backup as a job: every file present with its recorded size; every file (or a sample) read and checked against its SHA-256, decoded, rows counted",
    params(
        ("id" = String, Path, description = "The backup id"),
        ("uri" = String, Query, description = "The backup repository, e.g. `gs://bucket/prefix`"),
        ("wait" = Option<bool>, Query, description = "Answer with the report instead of 202 (also `\"wait\": true` in the body)"),
    ),
    request_body(
        content = Option<Value>,
        content_type = "application/json",
        description = "Optional: `sample` — `\"10%\"` (a share of the files) or a number of files to read in full, picked at random each time (the others are only checked to exist with their recorded size); `wait`",
    ),
    responses(
        (status = 200, description = "The verify report (every finding), when waiting", body = Value),
        (status = 202, description = "Accepted as a job (kind VERIFY); `Location` names it; its result is the report", body = Value),
        (status = 400, description = "The id, uri or sample is invalid, or the uri is not allowed here", body = super::openapi::ErrorResponse),
        (status = 403, description = "The backup is encrypted and none of the service's identities (`BQB_ENCRYPTION_IDENTITIES`) opens it; the message names the backup", body = super::openapi::ErrorResponse),
        (status = 404, description = "No complete backup with this id, or no such bucket or container (`details` names `uri`)", body = super::openapi::ErrorResponse),
        (status = 429, description = "The job queue is full; see `Retry-After`", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn action(
    State(state): State<AppState>,
    Path(segment): Path<String>,
    Query(q): Query<ActionQuery>,
    super::error::RawBody(body): super::error::RawBody,
) -> Result<Response, ApiError> {
    if let Some(id) = segment.strip_suffix(":copy") {
        return copy(&state, id, q, &body).await;
    }
    let Some(id) = segment.strip_suffix(":verify") else {
        return Err(Error::not_found(format!(
            "no action in `{segment}`: POST /api/v1/backups/{{id}}:verify or :copy"
        ))
        .into());
    };
    let mut problems = Vec::new();
    let parsed: Option<VerifyBody> = parse_optional_body(&body, &mut problems);
    let sample =
        parsed
            .as_ref()
            .and_then(|b| b.sample.as_ref())
            .and_then(|v| match Sample::parse(v) {
                Ok(sample) => Some(sample),
                Err(message) => {
                    problems.push(FieldError::new("sample", message));
                    None
                }
            });
    let wait = WaitQuery::from(q.wait.clone())
        .wait(parsed.as_ref().is_some_and(|b| b.wait))
        .map_err(|e| e.0)?;
    let backup = backup_in(&state, id, q.uri.as_deref());
    let (store, backup_id) = match backup {
        Ok(found) if problems.is_empty() => found,
        Err(ApiError(e)) if e.kind() == ErrorKind::InvalidInput => {
            problems.extend(e.details().iter().cloned());
            return Err(Error::invalid("the request is invalid", problems).into());
        }
        Err(e) => return Err(e),
        Ok(_) => return Err(Error::invalid("the request is invalid", problems).into()),
    };
    let order = VerifyOrder {
        backup_id,
        sample,
        wait,
    };
    let accepted = state
        .engine
        .verify(store, order, Submission::from(Default::default()))
        .await?;
    super::jobs::answer(&state.engine, Started::Job(accepted), wait).await
}

/// Where a copy goes: `to`, the body's one required field.
const TO_FIELD: &str = "to";

/// `POST /api/v1/backups/{id}:copy` (dispatched by [`action`]).
#[utoipa::path(
    post,
    path = "/api/v1/backups/{id}:copy",
    tag = "backups",
    operation_id = "copyBackup",
    summary = "Copy a backup to another repository as a job: every file streamed and checked against the manifest (size and SHA-256 or CRC32C), the manifest written last; a failed or cancelled copy leaves nothing listed at the target",
    params(
        ("id" = String, Path, description = "The backup id"),
        ("uri" = String, Query, description = "The repository the backup is in, e.g. `gs://bucket/prefix`"),
        ("wait" = Option<bool>, Query, description = "Answer with the report instead of 202 (also `\"wait\": true` in the body)"),
    ),
    request_body(
        content = Value,
        content_type = "application/json",
        description = "`to` (required): the repository to copy the backup to, e.g. `s3://bucket/prefix`; `wait`; `encryption`: `{\"recipients\": [\"age1…\"]}` to encrypt every file of the copy for these recipients (an encrypted backup is decrypted with the service's identities and encrypted again)",
    ),
    responses(
        (status = 200, description = "The copy report, when waiting", body = Value),
        (status = 202, description = "Accepted as a job (kind COPY); `Location` names it; its result is the report", body = Value),
        (status = 400, description = "The id, uri or `to` is invalid, not allowed here, or `to` names the source repository; an unknown body field, or a bad `encryption.recipients[i]`, is named", body = super::openapi::ErrorResponse),
        (status = 403, description = "Re-encrypting an encrypted backup, and the service has no identities that open it (`BQB_ENCRYPTION_IDENTITIES`)", body = super::openapi::ErrorResponse),
        (status = 404, description = "No complete backup with this id in `uri`, or no such bucket or container (`details` names the field)", body = super::openapi::ErrorResponse),
        (status = 409, description = "The target already holds a backup with this id, or is writing one", body = super::openapi::ErrorResponse),
        (status = 429, description = "The job queue is full; see `Retry-After`", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn copy(
    state: &AppState,
    segment: &str,
    q: ActionQuery,
    body: &[u8],
) -> Result<Response, ApiError> {
    let mut problems = Vec::new();
    let backup_id = backup_id(segment, &mut problems);
    let from = open(state, q.uri.as_deref(), &mut problems);
    let (to, in_body_wait, encryption) = copy_body(body, &mut problems);
    if let Some(to) = &to
        && let Err(e) = state.engine.repositories().storage().admit(to, TO_FIELD)
    {
        problems.extend(Error::from(e).details().iter().cloned());
    }
    let wait = WaitQuery::from(q.wait.clone())
        .wait(in_body_wait)
        .map_err(|e| e.0)?;
    let (Some(backup_id), Some(from), Some(to), true) = (backup_id, from, to, problems.is_empty())
    else {
        return Err(Error::invalid("the copy request is invalid", problems).into());
    };
    let order = CopyOrder {
        backup_id,
        from: from?.uri().clone(),
        from_field: "uri".into(),
        to,
        to_field: TO_FIELD.into(),
        existing: Existing::Refuse,
        wait,
        encryption,
    };
    let accepted = state
        .engine
        .copy(order, Submission::from(Default::default()))
        .await?;
    super::jobs::answer(&state.engine, Started::Job(accepted), wait).await
}

/// The body of a copy: `to` (parsed), `wait` and `encryption` (recipients to encrypt the copy
/// for). Every problem names its field.
fn copy_body(body: &[u8], problems: &mut Vec<FieldError>) -> CopyBody {
    let required = || {
        FieldError::new(
            TO_FIELD,
            "is required: the repository to copy the backup to, e.g. s3://bucket/prefix",
        )
    };
    if body.iter().all(u8::is_ascii_whitespace) {
        problems.push(required());
        return (None, false, None);
    }
    let fields = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(fields)) => fields,
        Ok(_) => {
            problems.push(FieldError::new("body", "must be a JSON object"));
            return (None, false, None);
        }
        Err(e) => {
            problems.push(FieldError::new("body", e.to_string()));
            return (None, false, None);
        }
    };
    let (mut to, mut wait, mut encryption) = (None, false, None);
    for (name, value) in &fields {
        match (name.as_str(), value) {
            (TO_FIELD, Value::String(text)) if !text.trim().is_empty() => {
                match StorageUri::parse(text.trim()) {
                    Ok(uri) => to = Some(uri),
                    Err(e) => problems.push(FieldError::new(TO_FIELD, e.to_string())),
                }
            }
            (TO_FIELD, _) => problems.push(FieldError::new(
                TO_FIELD,
                "must be a storage URI, e.g. s3://bucket/prefix",
            )),
            ("wait", Value::Bool(b)) => wait = *b,
            ("wait", _) => problems.push(FieldError::new("wait", "must be true or false")),
            ("encryption", value) => {
                match serde_json::from_value::<EncryptionRequest>(value.clone()) {
                    Ok(request) => {
                        match Recipients::parse_at("encryption.recipients", &request.recipients) {
                            Ok(r) => encryption = Some(Arc::new(r)),
                            Err(errors) => problems.extend(errors),
                        }
                    }
                    Err(e) => problems.push(FieldError::new(
                        "encryption",
                        format!("must be {{\"recipients\": [\"age1…\", …]}}: {e}"),
                    )),
                }
            }
            (other, _) => problems.push(FieldError::new(
                other,
                "unknown field: a copy takes `to`, `wait` and `encryption`",
            )),
        }
    }
    if !fields.contains_key(TO_FIELD) {
        problems.push(required());
    }
    (to, wait, encryption)
}

/// `to`, `wait`, `encryption` of a copy's body.
type CopyBody = (Option<StorageUri>, bool, Option<Arc<Recipients>>);

/// A JSON body that may be absent (empty or whitespace): `T::default()`. A body that does not
/// parse is a problem naming the field (or `body`).
fn parse_optional_body<T: Default + serde::de::DeserializeOwned>(
    body: &[u8],
    problems: &mut Vec<FieldError>,
) -> Option<T> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Some(T::default());
    }
    let de = &mut serde_json::Deserializer::from_slice(body);
    match serde_path_to_error::deserialize(de) {
        Ok(b) => Some(b),
        Err(e) => {
            let field = e.path().to_string();
            problems.push(FieldError::new(
                if field == "." { "body".into() } else { field },
                e.inner().to_string(),
            ));
            None
        }
    }
}

#[utoipa::path(
    delete,
    path = "/api/v1/backups/{id}",
    tag = "backups",
    operation_id = "deleteBackup",
    summary = "Delete a backup (its manifest first, then its files)",
    params(
        ("id" = String, Path, description = "The backup id"),
        ("uri" = String, Query, description = "The backup repository, e.g. `gs://bucket/prefix`"),
    ),
    responses(
        (status = 200, description = "What was deleted", body = Value),
        (status = 400, description = "The id or uri is invalid, or the uri is not allowed here", body = super::openapi::ErrorResponse),
        (status = 404, description = "No backup with this id, or no such bucket or container (`details` names `uri`)", body = super::openapi::ErrorResponse),
        (status = 409, description = "The backup is being restored", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn delete(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Query(q): Query<UriQuery>,
) -> Result<Json<Value>, ApiError> {
    let (store, id) = backup_in(&state, &id, q.uri.as_deref())?;
    let report = state.engine.repositories().delete(&store, &id).await?;
    Ok(Json(
        serde_json::to_value(report).map_err(|e| Error::internal(e.to_string()))?,
    ))
}

/// The body of `POST /api/v1/backups:prune`: a keep policy (one that keeps nothing is refused,
/// see [`KeepPolicy::problems`]); `dryRun` only lists.
#[derive(Debug, Default)]
pub(crate) struct PruneBody {
    policy: KeepPolicy,
    dry_run: bool,
}

impl PruneBody {
    /// `dryRun` is taken out and the rest read as the [`KeepPolicy`] itself, whose deserializer
    /// names the field at fault and refuses unknown ones. An empty body is the empty policy
    /// (refused by its check, as `{}` is).
    fn parse(body: &[u8]) -> Result<Self, FieldError> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self::default());
        }
        let mut fields: Value =
            serde_json::from_slice(body).map_err(|e| FieldError::new(BODY_FIELD, e.to_string()))?;
        let dry_run = match fields.as_object_mut().and_then(|f| f.remove(DRY_RUN_FIELD)) {
            Some(value) => serde_json::from_value(value)
                .map_err(|e| FieldError::new(DRY_RUN_FIELD, e.to_string()))?,
            None => false,
        };
        let policy = serde_path_to_error::deserialize(fields).map_err(|e| {
            let field = e.path().to_string();
            FieldError::new(
                if field == "." {
                    BODY_FIELD.into()
                } else {
                    field
                },
                e.inner().to_string(),
            )
        })?;
        Ok(Self { policy, dry_run })
    }
}

/// Where a prune body's problems that are not one field's are reported.
const BODY_FIELD: &str = "body";
const DRY_RUN_FIELD: &str = "dryRun";

#[utoipa::path(
    post,
    path = "/api/v1/backups:prune",
    tag = "backups",
    operation_id = "pruneBackups",
    summary = "Delete the backups a keep policy does not keep",
    params(
        ("uri" = String, Query, description = "The backup repository, e.g. `gs://bucket/prefix`"),
    ),
    request_body(
        content = Option<Value>,
        content_type = "application/json",
        description = "`keepLast`, `keepDaily`, `keepWeekly`, `keepMonthly` (counts, at least 1; at least one of them), or `expiredOnly: true` to delete only expired backups; and `dryRun`. A policy that keeps nothing (a count of 0, an empty body) is a 400",
    ),
    responses(
        (status = 200, description = "What was (or, with `dryRun`, would be) deleted and kept; a backup a restore is reading is kept", body = Value),
        (status = 400, description = "The uri or the policy is invalid (a policy that keeps nothing included)", body = super::openapi::ErrorResponse),
        (status = 404, description = "A file:// repository that does not exist", body = super::openapi::ErrorResponse),
    ),
)]
pub(crate) async fn prune(
    State(state): State<AppState>,
    Query(q): Query<UriQuery>,
    super::error::RawBody(body): super::error::RawBody,
) -> Result<Json<Value>, ApiError> {
    let mut problems = Vec::new();
    let store = open(&state, q.uri.as_deref(), &mut problems);
    let parsed = PruneBody::parse(&body).map_err(|e| problems.push(e)).ok();
    if let Some(body) = &parsed {
        problems.extend(body.policy.problems());
    }
    let (Some(store), Some(body), true) = (store, parsed, problems.is_empty()) else {
        return Err(Error::invalid("the prune request is invalid", problems).into());
    };
    let store = store?;
    let report = state
        .engine
        .repositories()
        .prune(&store, &body.policy, body.dry_run)
        .await?;
    Ok(Json(
        serde_json::to_value(report).map_err(|e| Error::internal(e.to_string()))?,
    ))
}
