//! `POST /api/v1/backup`: the Java service's request body (unchanged) plus our extensions.

use axum::Json;
use axum::extract::State;
use chrono::Utc;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, RawBody};
use crate::backup::{BackupContext, plan_backup, run_backup, validate_backup_request};
use crate::domain::parse_backup_request;
use crate::error::Error;

pub(crate) async fn start_backup(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let now = Utc::now();
    let request = parse_backup_request(&body)
        .map_err(|f| Error::invalid("the request body is not a valid backup request", vec![f]))?;
    // Parsed once more as plain JSON to record the request as received in the manifest.
    let request_json: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let (spec, encode) = validate_backup_request(request, now)?;
    let dry_run = spec.dry_run;
    let plan = plan_backup(
        &state.bigquery,
        spec,
        encode,
        request_json,
        now,
        state.settings.max_parallel_tables,
    )
    .await?;
    if dry_run {
        return Ok(Json(json!({ "dryRun": true, "plan": plan })));
    }
    let store = state.storage.open(&plan.storage)?;
    let ctx = BackupContext {
        bigquery: state.bigquery.clone(),
        store,
        cancel: state.shutdown.child_token(),
        on_table_done: None,
    };
    let report = run_backup(&plan, &ctx).await?;
    Ok(Json(
        serde_json::to_value(report).map_err(|e| Error::internal(format!("report: {e}")))?,
    ))
}
