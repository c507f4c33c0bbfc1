//! `POST /api/v1/restore`: the Java service's request body (unchanged) plus our extensions.

use axum::Json;
use axum::extract::State;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, RawBody};
use crate::domain::parse_restore_request;
use crate::error::Error;
use crate::restore::{RestoreContext, plan_restore, run_restore};

pub(crate) async fn start_restore(
    State(state): State<AppState>,
    RawBody(body): RawBody,
) -> Result<Json<Value>, ApiError> {
    let request = parse_restore_request(&body)
        .map_err(|f| Error::invalid("the request body is not a valid restore request", vec![f]))?;
    let spec = request
        .validate()
        .map_err(|problems| Error::invalid("the restore request is invalid", problems))?;
    let store = state.storage.open(&spec.storage)?;
    let plan = plan_restore(
        &state.bigquery,
        &store,
        &spec,
        state.settings.max_parallel_tables,
    )
    .await?;
    if spec.dry_run {
        return Ok(Json(json!({ "dryRun": true, "plan": plan })));
    }
    let ctx = RestoreContext {
        bigquery: state.bigquery.clone(),
        store,
        cancel: state.shutdown.child_token(),
    };
    let report = run_restore(&plan, &ctx).await?;
    Ok(Json(
        serde_json::to_value(report).map_err(|e| Error::internal(format!("report: {e}")))?,
    ))
}
