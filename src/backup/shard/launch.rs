//! Starting the workers of a sharded backup (`BQB_SHARD_LAUNCHER`): with `cloud-run`, one
//! execution of the configured Cloud Run Job (Admin API v2 `jobs.run`, Application Default
//! Credentials) with one task per shard and what the tasks work on in their environment (a
//! backup's id and repository, or a sharded restore's job); Cloud Run gives each task
//! `CLOUD_RUN_TASK_INDEX` and `CLOUD_RUN_TASK_COUNT`.

use serde_json::{Value, json};

use super::settings::{CLOUD_RUN_JOB, Launcher};
use crate::error::{Error, ErrorKind};

/// What the workers of one sharded run are told: its variables (`BQB_BACKUP_ID` and
/// `BQB_REPOSITORY`, or `BQB_RESTORE_JOB`) and how many shards it has; `what` names it in errors
/// (`backup 20261202_101500`).
pub struct Work<'a> {
    pub what: String,
    pub env: Vec<(&'a str, String)>,
    pub shards: u32,
}

/// What starting the workers gave: where to follow them (the Cloud Run operation and execution),
/// or `None` when the service starts nothing.
pub async fn launch(launcher: &Launcher, work: &Work<'_>) -> Result<Option<Value>, Error> {
    match launcher {
        Launcher::None => Ok(None),
        Launcher::CloudRun { job, endpoint } => {
            run_cloud_run_job(endpoint, job, work).await.map(Some)
        }
    }
}

/// The body of `jobs.run`: the task count and the variables every task's container gets.
pub fn cloud_run_overrides(env: &[(&str, String)], shards: u32) -> Value {
    let env: Vec<Value> = env
        .iter()
        .map(|(name, value)| json!({ "name": name, "value": value }))
        .collect();
    json!({
        "overrides": {
            "taskCount": shards,
            "containerOverrides": [{ "env": env }],
        },
    })
}

async fn run_cloud_run_job(endpoint: &str, job: &str, work: &Work<'_>) -> Result<Value, Error> {
    let shards = work.shards;
    let failed = |kind: ErrorKind, message: String| {
        Error::new(
            kind,
            format!(
                "running Cloud Run Job {job} ({}) for the {shards} shards of {} failed: {message}",
                CLOUD_RUN_JOB.name, work.what
            ),
        )
    };
    let url = format!("{}/v2/{job}:run", endpoint.trim_end_matches('/'));
    let mut request = reqwest::Client::new()
        .post(&url)
        .timeout(std::time::Duration::from_secs(60))
        .json(&cloud_run_overrides(&work.env, shards));
    if !endpoint.starts_with("http://") {
        let credentials = google_cloud_auth::credentials::Builder::default()
            .build_access_token_credentials()
            .map_err(|e| {
                failed(
                    ErrorKind::Unavailable,
                    format!("no Google credentials: {e}"),
                )
            })?;
        let token = credentials
            .access_token()
            .await
            .map_err(|e| failed(ErrorKind::Unavailable, format!("no access token: {e}")))?;
        request = request.bearer_auth(token.token);
    }
    let response = request
        .send()
        .await
        .map_err(|e| failed(ErrorKind::Unavailable, e.to_string()))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let first: String = body.chars().take(300).collect();
        let kind = match status.as_u16() {
            401 | 403 => ErrorKind::PermissionDenied,
            // A wrong job name or request is this service's configuration, not the caller's.
            _ => ErrorKind::Upstream,
        };
        return Err(failed(kind, format!("HTTP {status}: {first}")));
    }
    let operation: Value = response
        .json()
        .await
        .map_err(|e| failed(ErrorKind::Upstream, format!("unexpected answer: {e}")))?;
    Ok(json!({
        "launcher": "cloud-run",
        "job": job,
        "operation": operation.get("name").cloned().unwrap_or(Value::Null),
        "execution": operation
            .pointer("/metadata/name")
            .cloned()
            .unwrap_or(Value::Null),
        "tasks": shards,
    }))
}
