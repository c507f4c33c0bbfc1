//! `POST /api/v1/backup`: the Java service's request body (unchanged) plus our extensions.
//! Validated and planned while the caller waits (400/404 name what is wrong), then run as a job:
//! 202 with the job, or the report when the caller asked to wait.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::error::{ApiError, RawBody};
use super::jobs::{WaitQuery, accepted};
use super::{AppState, start_job};
use crate::backup::{
    BackupContext, BackupPlan, ensure_can_start, plan_backup, run_backup, validate_backup_request,
};
use crate::catalog::lease::LeaseTiming;
use crate::catalog::prune::prune;
use crate::catalog::retention::KeepPolicy;
use crate::domain::parse_backup_request;
use crate::error::{Error, ErrorKind};
use crate::jobs::{JobKind, NewJob};
use crate::storage::{Access, Store};

#[utoipa::path(
    post,
    path = "/api/v1/backup",
    tag = "backup",
    operation_id = "startBackup",
    summary = "Start a backup",
    description = "Validates and plans the backup while the caller waits, then runs it as a job. \
        The body is the Java service's request (unchanged) plus extensions; see the README. \
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

/// Validates, plans and starts the backup in `body` (an HTTP request, a Pub/Sub message, a
/// schedule); `wait` (or the body's own `wait`) answers with the report instead of 202.
pub(crate) async fn submit_backup(
    state: &AppState,
    body: &[u8],
    wait: bool,
    trigger: BTreeMap<String, String>,
) -> Result<Response, ApiError> {
    let now = Utc::now();
    let request = parse_backup_request(body)
        .map_err(|f| Error::invalid("the request body is not a valid backup request", vec![f]))?;
    // Parsed once more as plain JSON to record the request as received in the manifest.
    let request_json: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let (mut spec, encode) = validate_backup_request(request, now)?;
    spec.ttl_days = spec.ttl_days.or(state.settings.jobs.default_ttl_days);
    let (dry_run, wait, allow_concurrent) =
        (spec.dry_run, wait || spec.wait, spec.allow_concurrent);
    // A dry run too: a plan names where it would write.
    state.storage.admit(&spec.storage, &spec.storage_field)?;
    let storage_field = spec.storage_field.clone();
    // Shed load before the metadata calls of planning (a dry run starts no job).
    let slot = (!dry_run).then(|| state.jobs.reserve_slot()).transpose()?;
    let plan = plan_backup(
        &state.bigquery,
        spec,
        encode,
        request_json.clone(),
        now,
        state.settings.max_parallel_tables,
    )
    .await?;
    let Some(slot) = slot else {
        return Ok(Json(json!({ "dryRun": true, "plan": plan })).into_response());
    };
    let store = super::open_store(state, &plan.storage, &storage_field, Access::Write)?;
    let exclusive_key = (!allow_concurrent).then(|| selection_key(&plan));
    refuse_early(state, &store, &plan, exclusive_key.as_deref()).await?;
    let job = NewJob {
        kind: JobKind::Backup,
        backup_id: Some(plan.backup_id.to_string()),
        storage_uri: plan.storage_uri.clone(),
        tables: plan.tables.iter().map(|t| t.table.to_string()).collect(),
        request: request_json,
        trigger,
        exclusive_key,
    };
    let bigquery = state.bigquery.clone();
    let prune_after = state.settings.jobs.prune_after_backup;
    let lease = LeaseTiming::new(state.settings.jobs.heartbeat);
    let record = state
        .jobs
        .submit(slot, job, move |run| async move {
            let ctx = BackupContext {
                bigquery,
                store: store.clone(),
                cancel: run.cancel,
                progress: Some(run.progress),
                lease,
            };
            let report = run_backup(&plan, &ctx)
                .await
                .map_err(|e| store.attribute(e))?;
            let mut result = serde_json::to_value(report)
                .map_err(|e| Error::internal(format!("report: {e}")))?;
            if let Some(policy) = prune_after {
                result["prune"] = prune_after_backup(&store, policy).await;
            }
            Ok(result)
        })
        .await?;
    accepted(&state.jobs, record, wait).await
}

/// Refuses, while the caller waits, what can be seen before the job starts, instead of a 202
/// followed by a job that can only fail: a running backup of the same selection (409 naming it),
/// a repository that cannot be reached (404/403 naming the field that holds its URI), a backup id
/// that is committed or claimed by a live backup (409). An answer that may change — the store
/// failing right now — refuses nothing: the job has its own retries and checks again under its
/// claim.
async fn refuse_early(
    state: &AppState,
    store: &Store,
    plan: &BackupPlan,
    selection: Option<&str>,
) -> Result<(), Error> {
    if let Some(key) = selection {
        state.jobs.ensure_selection_free(key).await?;
    }
    let seen = match store.check_reachable().await {
        Ok(()) => ensure_can_start(store, plan)
            .await
            .map_err(|e| store.attribute(e)),
        Err(e) => Err(e),
    };
    match seen {
        Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Upstream) => {
            tracing::warn!(error = %e, backup_id = %plan.backup_id, "the repository could not be checked before the backup; the job will try");
            Ok(())
        }
        other => other,
    }
}

/// Two backups of the same tables to the same repository: one key.
fn selection_key(plan: &BackupPlan) -> String {
    let mut names: Vec<String> = plan
        .tables
        .iter()
        .chain(&plan.definitions)
        .map(|t| t.table.to_string())
        .collect();
    names.sort();
    let mut hasher = Sha256::new();
    hasher.update(plan.storage_uri.trim_end_matches('/').as_bytes());
    for name in names {
        hasher.update(b"\n");
        hasher.update(name.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The configured keep policy, applied to the repository just written. A failure is reported
/// in the result, never turned into a failed backup: the backup itself is complete.
async fn prune_after_backup(store: &Store, policy: KeepPolicy) -> Value {
    match prune(store, &policy, false, Utc::now()).await {
        Ok(report) => {
            json!({ "policy": policy, "deleted": report.deleted, "skipped": report.skipped })
        }
        Err(e) => {
            tracing::warn!(error = %e, "pruning after the backup failed");
            json!({ "policy": policy, "error": e.to_string() })
        }
    }
}
