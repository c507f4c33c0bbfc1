//! Pub/Sub push envelopes: `POST /api/v1/backup` and `/api/v1/restore` also accept the body a
//! Pub/Sub push subscription sends, whose `message.data` is the base64 of a normal request:
//!
//! ```json
//! {"message": {"data": "eyJiaWdRdWVyeSI6…", "messageId": "2070443601311540",
//!              "message_id": "2070443601311540", "attributes": {"trigger": "nightly"},
//!              "publishTime": "2026-11-23T06:00:00.123Z"},
//!  "subscription": "projects/my-project/subscriptions/bq-backup-nightly"}
//! ```
//!
//! This module only recognises and unpacks the envelope; the request inside is parsed by the
//! backup or restore request parser like any other body. Pure: no I/O. Depends only on `error`.

use std::collections::BTreeMap;

use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};

use super::request_fields::{BODY_FIELD, key_path};
use crate::error::FieldError;

/// Longest accepted message id. Pub/Sub's are decimal strings of about 16 digits; the bound
/// (and the character set, see [`check_message_id`]) exist because the id names the idempotency
/// record in the state store, so it must be safe as an object key.
const MAX_MESSAGE_ID_CHARS: usize = 128;

/// Top-level keys of backup and restore requests. A body holding any of them is a request, even
/// if it also has a stray `message` field (the request parser then names that field).
const REQUEST_KEYS: [&str; 3] = ["bigQuery", "backupStorage", "restoreStorage"];

/// Standard alphabet (what Pub/Sub sends), padding optional: hand-made envelopes (curl, tests)
/// often drop it, and nothing is ambiguous without it.
const DATA_ENGINE: GeneralPurpose = GeneralPurpose::new(
    &alphabet::STANDARD,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// One pushed message, unpacked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PushMessage {
    /// Pub/Sub's id of the message; the same on every redelivery (the idempotency key).
    pub message_id: String,
    /// `projects/{project}/subscriptions/{name}`, when given.
    pub subscription: Option<String>,
    pub attributes: BTreeMap<String, String>,
    pub publish_time: Option<DateTime<Utc>>,
    /// The decoded `message.data`: the request body (a JSON object), as bytes.
    pub data: Vec<u8>,
}

/// Whether a JSON body is a push envelope rather than a request: an object with a `message` or
/// `subscription` key (neither is a request field) and none of the request's own top-level keys.
/// A body that is an envelope only in part (`{"message": "x"}`) still counts, so that
/// [`parse_push_envelope`] names what is wrong with it.
pub fn is_push_envelope(body: &Value) -> bool {
    let Some(object) = body.as_object() else {
        return false;
    };
    let envelope_key = object.contains_key("message") || object.contains_key("subscription");
    let request_key = REQUEST_KEYS.iter().any(|k| object.contains_key(*k));
    envelope_key && !request_key
}

/// Parses a push envelope body. Returns every problem at once, each naming its field
/// (`message.data`, `message.messageId`, …). Unknown fields are ignored: Pub/Sub adds some
/// (`orderingKey`, `deliveryAttempt`) and may add more.
pub fn parse_push_envelope(body: &[u8]) -> Result<PushMessage, Vec<FieldError>> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| vec![FieldError::new(BODY_FIELD, format!("is not JSON: {e}"))])?;
    parse_push_envelope_value(&value)
}

/// As [`parse_push_envelope`], for a body already parsed as JSON.
pub fn parse_push_envelope_value(body: &Value) -> Result<PushMessage, Vec<FieldError>> {
    let Some(envelope) = body.as_object() else {
        return Err(vec![FieldError::new(
            BODY_FIELD,
            "must be a JSON object (a Pub/Sub push envelope)",
        )]);
    };
    let mut errors = Vec::new();
    let subscription = match envelope.get("subscription") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            errors.push(FieldError::new("subscription", "must be a string"));
            None
        }
    };
    let message = match envelope.get("message") {
        Some(Value::Object(message)) => message,
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                "message",
                "is required (an object with data and messageId)",
            ));
            return Err(errors);
        }
        Some(_) => {
            errors.push(FieldError::new(
                "message",
                "must be an object with data and messageId",
            ));
            return Err(errors);
        }
    };

    let message_id = message_id(message, &mut errors);
    let data = data(message, &mut errors);
    let attributes = attributes(message, &mut errors);
    let publish_time = publish_time(message, &mut errors);

    match (message_id, data) {
        (Some(message_id), Some(data)) if errors.is_empty() => Ok(PushMessage {
            message_id,
            subscription,
            attributes,
            publish_time,
            data,
        }),
        _ => Err(errors),
    }
}

/// A string field given under its camelCase or snake_case name (Pub/Sub sends both, with the
/// same value). Returns the field name it was found under, for errors.
fn either_string<'a>(
    message: &'a Map<String, Value>,
    camel: &'static str,
    snake: &'static str,
    errors: &mut Vec<FieldError>,
) -> Option<(&'a str, &'static str)> {
    let mut found: Option<(&'a str, &'static str)> = None;
    for name in [camel, snake] {
        match message.get(name) {
            None | Some(Value::Null) => {}
            Some(Value::String(s)) => match found {
                Some((first, first_name)) if first != s => {
                    errors.push(FieldError::new(
                        format!("message.{name}"),
                        format!("differs from message.{first_name}"),
                    ));
                    return None;
                }
                Some(_) => {}
                None => found = Some((s, name)),
            },
            Some(_) => {
                errors.push(FieldError::new(
                    format!("message.{name}"),
                    "must be a string",
                ));
                return None;
            }
        }
    }
    found
}

fn message_id(message: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<String> {
    let before = errors.len();
    let Some((id, name)) = either_string(message, "messageId", "message_id", errors) else {
        if errors.len() == before {
            errors.push(FieldError::new(
                "message.messageId",
                "is required (Pub/Sub's id of the message)",
            ));
        }
        return None;
    };
    match check_message_id(id) {
        Ok(()) => Some(id.to_owned()),
        Err(problem) => {
            errors.push(FieldError::new(format!("message.{name}"), problem));
            None
        }
    }
}

/// Ids name the idempotency record in the state store: letters, digits, `-` and `_` only, so
/// they can never form a path (`../`) or an odd object key.
fn check_message_id(id: &str) -> Result<(), String> {
    if id.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let chars = id.chars().count();
    if chars > MAX_MESSAGE_ID_CHARS {
        return Err(format!(
            "must be at most {MAX_MESSAGE_ID_CHARS} characters (it has {chars})"
        ));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    {
        return Err("may only contain ASCII letters, digits, `-` and `_`".to_owned());
    }
    Ok(())
}

/// `message.data`: base64 (standard alphabet; padding optional; line breaks, as `base64` wraps
/// its output, ignored) of a JSON object.
fn data(message: &Map<String, Value>, errors: &mut Vec<FieldError>) -> Option<Vec<u8>> {
    const FIELD: &str = "message.data";
    let text = match message.get("data") {
        None | Some(Value::Null) => {
            errors.push(FieldError::new(
                FIELD,
                "is required (the base64 of the request JSON)",
            ));
            return None;
        }
        Some(Value::String(s)) => s,
        Some(_) => {
            errors.push(FieldError::new(
                FIELD,
                "must be a string (the base64 of the request JSON)",
            ));
            return None;
        }
    };
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    if compact.is_empty() {
        errors.push(FieldError::new(
            FIELD,
            "is empty; it must hold the base64 of the request JSON",
        ));
        return None;
    }
    let bytes = match DATA_ENGINE.decode(compact.as_bytes()) {
        Ok(bytes) => bytes,
        Err(e) => {
            errors.push(FieldError::new(
                FIELD,
                format!("is not base64 (standard alphabet): {e}"),
            ));
            return None;
        }
    };
    match serde_json::from_slice::<Value>(&bytes) {
        Ok(Value::Object(_)) => Some(bytes),
        Ok(_) => {
            errors.push(FieldError::new(
                FIELD,
                "decodes to JSON that is not an object; it must be a backup or restore request",
            ));
            None
        }
        Err(e) => {
            errors.push(FieldError::new(
                FIELD,
                format!("does not decode to JSON: {e}"),
            ));
            None
        }
    }
}

fn attributes(
    message: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> BTreeMap<String, String> {
    let mut attributes = BTreeMap::new();
    match message.get("attributes") {
        None | Some(Value::Null) => {}
        Some(Value::Object(map)) => {
            for (key, value) in map {
                match value {
                    Value::String(v) => {
                        attributes.insert(key.clone(), v.clone());
                    }
                    _ => errors.push(FieldError::new(
                        key_path("message.attributes", key),
                        "must be a string",
                    )),
                }
            }
        }
        Some(_) => errors.push(FieldError::new(
            "message.attributes",
            "must be an object of strings",
        )),
    }
    attributes
}

fn publish_time(
    message: &Map<String, Value>,
    errors: &mut Vec<FieldError>,
) -> Option<DateTime<Utc>> {
    let (text, name) = either_string(message, "publishTime", "publish_time", errors)?;
    match DateTime::parse_from_rfc3339(text) {
        Ok(t) => Some(t.with_timezone(&Utc)),
        Err(_) => {
            errors.push(FieldError::new(
                format!("message.{name}"),
                format!("`{text}` is not an RFC 3339 time like 2026-11-23T06:00:00.123Z"),
            ));
            None
        }
    }
}

#[cfg(test)]
mod tests;
