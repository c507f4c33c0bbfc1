//! Plain REST JSON calls, for the few BigQuery resources whose JSON must round-trip exactly as
//! BigQuery writes it (routines: the typed model writes enums as numbers), with the credentials
//! and retry decisions of every other call.

use reqwest::Method;
use serde_json::Value;

use super::client::BigQuery;
use super::retry;
use crate::error::{Error, ErrorKind};

impl BigQuery {
    /// `method {endpoint}/bigquery/v2/{path}` with an optional JSON body. Idempotent methods (GET,
    /// DELETE) are retried on transient failures with the module's backoff; POST is sent once.
    pub(crate) async fn rest(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, Error> {
        let url = format!("{}/bigquery/v2/{path}", self.inner.config.endpoint);
        let idempotent = matches!(method, Method::GET | Method::DELETE);
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut request = self
                .inner
                .http
                .request(method.clone(), &url)
                .headers(self.auth_headers().await?);
            if let Some(body) = body {
                request = request.json(body);
            }
            // A connection reset mid-answer surfaces from `text()`, not from `send()`: both are
            // retried for idempotent calls (an empty body is never taken for an answer).
            let answer = match request.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    resp.text().await.map(|text| (status, text))
                }
                Err(e) => Err(e),
            };
            let (status, text) = match answer {
                Ok(answer) => answer,
                Err(e) if idempotent && attempt < retry::MAX_ATTEMPTS && !e.is_builder() => {
                    tracing::warn!(attempt, error = %e, "BigQuery {method} {path} failed; retrying");
                    tokio::time::sleep(retry::delay(attempt)).await;
                    continue;
                }
                Err(e) => {
                    return Err(Error::upstream(format!(
                        "BigQuery {method} {path} failed: {e}"
                    )));
                }
            };
            if (200..300).contains(&status) {
                return Ok(if text.is_empty() {
                    Value::Null
                } else {
                    serde_json::from_str(&text).unwrap_or(Value::Null)
                });
            }
            if idempotent && attempt < retry::MAX_ATTEMPTS && retry::is_transient_status(status) {
                tokio::time::sleep(retry::delay(attempt)).await;
                continue;
            }
            return Err(status_error(
                &format!("BigQuery {method} {path}"),
                status,
                &text,
            ));
        }
    }
}

/// An HTTP error answer as the crate error, with BigQuery's own message.
pub(crate) fn status_error(what: &str, status: u16, body: &str) -> Error {
    let message = serde_json::from_str::<Value>(body)
        .ok()
        .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| body.chars().take(500).collect());
    let kind = match status {
        400 => ErrorKind::InvalidInput,
        401 => ErrorKind::Unauthenticated,
        403 => ErrorKind::PermissionDenied,
        404 => ErrorKind::NotFound,
        409 => ErrorKind::Conflict,
        _ => ErrorKind::Upstream,
    };
    Error::new(kind, format!("{what} failed ({status}): {message}"))
}
