//! A restore request body → a validated [`RestoreOrder`], whoever delivered it.

use crate::domain::{RestoreSpec, parse_restore_request};
use crate::error::Error;

/// A restore request that passed validation, and the request as received (kept in the job
/// record).
#[derive(Debug, Clone)]
pub struct RestoreOrder {
    pub spec: RestoreSpec,
    pub request: serde_json::Value,
}

impl RestoreOrder {
    /// Parses and validates a request body (HTTP, a Pub/Sub message, a schedule, the CLI's
    /// request file). The error (400) lists every problem by JSON path.
    pub fn from_json(body: &[u8]) -> Result<Self, Error> {
        let request = parse_restore_request(body).map_err(|f| {
            Error::invalid("the request body is not a valid restore request", vec![f])
        })?;
        let spec = request
            .validate()
            .map_err(|problems| Error::invalid("the restore request is invalid", problems))?;
        Ok(Self {
            spec,
            // It parsed as a request, so it is JSON.
            request: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
        })
    }
}
