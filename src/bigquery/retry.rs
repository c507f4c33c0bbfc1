//! The one retry policy for every BigQuery call: retry what is transient (HTTP 429, 500, 502, 503,
//! 504; gRPC UNAVAILABLE, RESOURCE_EXHAUSTED, DEADLINE_EXCEEDED, ABORTED, INTERNAL; I/O and
//! connection errors) with exponential backoff and jitter, bounded in attempts and time, and only
//! for idempotent calls (the client marks reads and gets idempotent; inserts are not retried after
//! they reached the server, so a retry never creates something twice).

use std::time::Duration;

use google_cloud_gax::error::Error as GaxError;
use google_cloud_gax::error::rpc::Code;
use google_cloud_gax::exponential_backoff::{ExponentialBackoff, ExponentialBackoffBuilder};
use google_cloud_gax::retry_policy::{RetryPolicy, RetryPolicyExt};
use google_cloud_gax::retry_result::RetryResult;
use google_cloud_gax::retry_state::RetryState;

/// At most this many attempts per call (the first included).
pub const MAX_ATTEMPTS: u32 = 8;
/// No call keeps retrying longer than this.
pub const MAX_ELAPSED: Duration = Duration::from_secs(120);
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(200);
pub const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// HTTP statuses worth another attempt.
const RETRYABLE_HTTP: [u16; 5] = [429, 500, 502, 503, 504];
/// gRPC codes worth another attempt.
const RETRYABLE_CODES: [Code; 5] = [
    Code::Unavailable,
    Code::ResourceExhausted,
    Code::DeadlineExceeded,
    Code::Aborted,
    Code::Internal,
];

/// True for HTTP statuses worth another attempt (raw HTTP calls: uploads, REST JSON).
pub fn is_transient_status(status: u16) -> bool {
    RETRYABLE_HTTP.contains(&status)
}

/// Backoff before attempt `attempt + 1` of a raw HTTP call: the same curve as [`backoff`],
/// without jitter.
pub fn delay(attempt: u32) -> std::time::Duration {
    let factor = 2u32.saturating_pow(attempt.saturating_sub(1));
    INITIAL_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// Sends an insert again after transient failures. Inserts are not idempotent, so the client
/// does not retry them once sent; the caller resolves what a retry finds. On failure: the last
/// error, and whether an earlier attempt was sent (and may have landed with its answer lost).
pub async fn insert<T, F, Fut>(operation: &str, mut send: F) -> Result<T, (GaxError, bool)>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, GaxError>>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        match send().await {
            Ok(done) => return Ok(done),
            Err(e) if attempt < MAX_ATTEMPTS && is_transient(&e) => {
                tracing::warn!(operation, attempt, error = %e, "a BigQuery insert failed; retrying");
                tokio::time::sleep(delay(attempt)).await;
            }
            Err(e) => return Err((e, attempt > 1)),
        }
    }
}

/// Decides whether one failure is transient.
#[derive(Debug, Clone, Copy, Default)]
pub struct TransientErrors;

/// True when `error` is worth retrying (for an idempotent call).
pub fn is_transient(error: &GaxError) -> bool {
    if error.is_io()
        || error.is_connect()
        || error.is_timeout()
        || error.is_transient_and_before_rpc()
    {
        return true;
    }
    if error
        .status()
        .is_some_and(|s| RETRYABLE_CODES.contains(&s.code))
    {
        return true;
    }
    error
        .http_status_code()
        .is_some_and(|c| RETRYABLE_HTTP.contains(&c))
}

impl RetryPolicy for TransientErrors {
    fn on_error(&self, state: &RetryState, error: GaxError) -> RetryResult {
        if error.is_transient_and_before_rpc() {
            return RetryResult::Continue(error);
        }
        if state.idempotent && is_transient(&error) {
            RetryResult::Continue(error)
        } else {
            RetryResult::Permanent(error)
        }
    }
}

/// The policy installed on every client.
pub fn policy() -> impl RetryPolicy {
    TransientErrors
        .with_attempt_limit(MAX_ATTEMPTS)
        .with_time_limit(MAX_ELAPSED)
}

/// The backoff installed on every client.
pub fn backoff() -> ExponentialBackoff {
    ExponentialBackoffBuilder::new()
        .with_initial_delay(INITIAL_BACKOFF)
        .with_maximum_delay(MAX_BACKOFF)
        .with_scaling(2.0)
        .build()
        // The constants above are valid (initial < maximum, scaling > 1).
        .expect("constant backoff parameters are valid")
}

#[cfg(test)]
mod tests {
    use super::*;
    use google_cloud_gax::error::rpc::Status;

    fn http(code: u16) -> GaxError {
        GaxError::http(code, http::HeaderMap::new(), bytes::Bytes::new())
    }

    #[test]
    fn throttling_and_server_errors_are_retried_client_errors_are_not() {
        for code in [429, 500, 502, 503, 504] {
            assert!(is_transient(&http(code)), "{code}");
        }
        for code in [400, 401, 403, 404, 409] {
            assert!(!is_transient(&http(code)), "{code}");
        }
        assert!(is_transient(&GaxError::service(
            Status::default().set_code(Code::Unavailable)
        )));
        assert!(!is_transient(&GaxError::service(
            Status::default().set_code(Code::NotFound)
        )));
    }

    #[test]
    fn non_idempotent_calls_are_not_retried_after_reaching_the_server() {
        let state = RetryState::new(false);
        assert!(matches!(
            TransientErrors.on_error(&state, http(503)),
            RetryResult::Permanent(_)
        ));
        let state = RetryState::new(true);
        assert!(matches!(
            TransientErrors.on_error(&state, http(503)),
            RetryResult::Continue(_)
        ));
    }
}
