//! `GET /api/v1/schedules`: the schedules of `BQB_SCHEDULE_FILE`, their next runs, the newest
//! tick claimed by any instance (from the state store) and the last failed tick on this one.

use axum::Json;
use axum::extract::State;
use chrono::{DateTime, SecondsFormat, Utc};
use chrono_tz::Tz;
use futures::StreamExt;
use serde_json::{Value, json};

use super::AppState;
use super::error::{ApiError, code_and_status};
use crate::error::Error;
use crate::schedule::{Claim, Claims, Schedule};

/// Next runs shown per schedule.
const NEXT_RUNS: usize = 3;
/// State-store reads at once (one listing and one read per schedule).
const READ_CONCURRENCY: usize = 8;

#[utoipa::path(
    get,
    path = "/api/v1/schedules",
    tag = "schedules",
    operation_id = "listSchedules",
    summary = "The service's own schedules (BQB_SCHEDULE_FILE): next runs, newest claimed tick, last error",
    responses(
        (status = 200, description = "Every schedule (an empty list without a schedule file)", body = Value),
    ),
)]
pub(crate) async fn list(State(state): State<AppState>) -> Result<Json<Value>, ApiError> {
    let now = Utc::now();
    let claims = Claims::new(state.engine.jobs().store().store().clone());
    let schedules = state.schedules.list();
    let names: Vec<String> = schedules.iter().map(|s| s.name.clone()).collect();
    let newest: Vec<Result<Option<Claim>, Error>> = futures::stream::iter(names)
        .map(|name| {
            let claims = claims.clone();
            async move { claims.newest(&name).await }
        })
        .buffered(READ_CONCURRENCY)
        .collect()
        .await;
    let mut listed = Vec::with_capacity(schedules.len());
    for (schedule, newest) in schedules.iter().zip(newest) {
        listed.push(schedule_json(&state, schedule, newest?, now));
    }
    Ok(Json(json!({
        "schedules": listed,
        "instance": state.schedules.instance(),
    })))
}

fn schedule_json(
    state: &AppState,
    schedule: &Schedule,
    newest: Option<Claim>,
    now: DateTime<Utc>,
) -> Value {
    let tz = schedule.cadence.timezone();
    let next_runs: Vec<Value> = if schedule.enabled {
        schedule
            .cadence
            .upcoming(now, NEXT_RUNS)
            .into_iter()
            .map(|t| instant(t, tz))
            .collect()
    } else {
        Vec::new()
    };
    let last_error = state.schedules.last_error(&schedule.name).map(|e| {
        json!({
            "tick": instant(e.tick, tz),
            "at": rfc3339(e.at),
            "errorCode": code_and_status(e.kind).0,
            "message": e.message,
        })
    });
    json!({
        "name": schedule.name,
        "kind": schedule.kind,
        "cron": schedule.cadence.expression(),
        "timezone": tz.name(),
        "enabled": schedule.enabled,
        "nextRuns": next_runs,
        "lastClaim": newest.map(|c| claim_json(&c, tz)),
        "lastError": last_error,
    })
}

fn claim_json(claim: &Claim, tz: Tz) -> Value {
    let mut body = json!({
        "tick": instant(claim.tick, tz),
        "instance": claim.instance,
        "claimedAt": rfc3339(claim.claimed_at),
        "jobId": claim.job_id,
        "backupId": claim.backup_id,
        "submittedAt": claim.submitted_at.map(rfc3339),
        "error": claim.error.as_ref().map(|e| json!({
            "errorCode": code_and_status(e.kind).0,
            "message": e.message,
        })),
    });
    if let Some(id) = &claim.job_id {
        body["links"] = json!({ "job": format!("/api/v1/jobs/{id}") });
    }
    body
}

/// An instant in UTC and on the schedule's wall clock.
fn instant(t: DateTime<Utc>, tz: Tz) -> Value {
    json!({
        "utc": rfc3339(t),
        "local": t.with_timezone(&tz).to_rfc3339_opts(SecondsFormat::Secs, true),
    })
}

fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}
