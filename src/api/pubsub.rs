//! Pub/Sub push on `POST /api/v1/backup` and `/restore`: the envelope
//! `{"message":{"data":base64(request),"messageId":…,"attributes":{…}},"subscription":…}` carries
//! an ordinary request. Pub/Sub delivers at least once, so each `messageId` is recorded in the
//! state store (`idempotency/pubsub-{kind}-{messageId}.json`) before its job starts: a redelivery
//! answers 200 with the job the first delivery started, and never starts a second one. Any 2xx
//! acknowledges the message; a malformed envelope or request is a 400, which Pub/Sub redelivers
//! until the subscription's dead-letter topic takes it.

use std::collections::BTreeMap;

use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::AppState;
use super::error::ApiError;
use crate::domain::{PushMessage, is_push_envelope, parse_push_envelope_value};
use crate::engine::{Started, Submission};
use crate::error::Error;
use crate::jobs::{DeliveryRecord, JobKind};

/// The push message in `body`, if `body` is a Pub/Sub push envelope (400 when it is a broken one).
pub(crate) fn envelope(body: &[u8]) -> Result<Option<PushMessage>, ApiError> {
    let Ok(value) = serde_json::from_slice::<Value>(body) else {
        // Not JSON at all: the request parser names the problem.
        return Ok(None);
    };
    if !is_push_envelope(&value) {
        return Ok(None);
    }
    parse_push_envelope_value(&value)
        .map(Some)
        .map_err(|problems| Error::invalid("the Pub/Sub push envelope is invalid", problems).into())
}

/// Starts the job a push message asks for, once per `messageId`.
pub(crate) async fn deliver(
    state: &AppState,
    message: PushMessage,
    kind: JobKind,
    wait: bool,
) -> Result<Response, ApiError> {
    let store = state.engine.jobs().store();
    let claim = DeliveryRecord::received(&message.message_id, message.subscription.clone());
    if let Some(first) = store.claim_delivery(kind, &claim).await? {
        tracing::info!(message_id = %message.message_id, job_id = ?first.job_id, "Pub/Sub redelivery: no second job");
        return Ok(Json(json!({
            "duplicate": true,
            "messageId": message.message_id,
            "jobId": first.job_id,
            "backupId": first.backup_id,
            "message": "this message was delivered before; the job it started is the one to follow",
        }))
        .into_response());
    }
    let mut trigger = BTreeMap::from([
        ("source".to_string(), "pubsub".to_string()),
        ("messageId".to_string(), message.message_id.clone()),
    ]);
    if let Some(subscription) = &message.subscription {
        trigger.insert("subscription".into(), subscription.clone());
    }
    match state
        .engine
        .submit(kind, &message.data, Submission::from(trigger))
        .await
    {
        Ok(started) => {
            let (job_id, backup_id) = match &started {
                Started::Job(job) => (
                    Some(job.record.job_id.to_string()),
                    job.record.backup_id.clone(),
                ),
                Started::DryRun(_) => (None, None),
            };
            let record = DeliveryRecord {
                job_id,
                backup_id,
                ..claim
            };
            if let Err(e) = store.record_delivery(kind, &record).await {
                tracing::warn!(message_id = %message.message_id, error = %e, "recording the job of a Pub/Sub message failed");
            }
            super::jobs::answer(&state.engine, started, wait).await
        }
        Err(e) => {
            // Nothing started: a redelivery may try again (a 429 or an outage passes).
            store.forget_delivery(kind, &message.message_id).await;
            Err(e.into())
        }
    }
}
