//! The only place errors become HTTP responses.
//!
//! Handlers return [`ApiError`] (from any [`crate::Error`]); it becomes a status code plus an
//! [`ErrorBody`] in the response extensions. The [`render_errors`] middleware then writes every
//! error response, including the ones axum and tower-http produce themselves (unknown route,
//! wrong method, timeout, body or headers too large), in the one JSON shape the Java service
//! used, extended with `details` and `requestId` (only what hyper refuses before routing — a head
//! over its buffer, a request that is not HTTP — keeps hyper's bodyless answer):
//! `{"errorCode":"VALIDATION_ERROR","message":"…","timestamp":"…","path":"/api/v1/backup","details":[…]}`.

use axum::body::Body;
use axum::extract::{FromRequest, Request};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;

use crate::error::{Error, ErrorKind, FieldError};

/// The error code and HTTP status for each kind (DESIGN.md "HTTP API").
pub(crate) fn code_and_status(kind: ErrorKind) -> (&'static str, StatusCode) {
    let status = match kind {
        ErrorKind::InvalidInput => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
        ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict | ErrorKind::Cancelled => StatusCode::CONFLICT,
        ErrorKind::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Upstream => StatusCode::BAD_GATEWAY,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::DamagedBackup => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    };
    (kind.code(), status)
}

/// The `errorCode` of an error response, left in its extensions by [`render_errors`] for the
/// request metrics (`api::metrics`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ErrorCode(pub(crate) &'static str);

/// A handler's error. Anything that converts into [`crate::Error`] converts into this.
#[derive(Debug)]
pub(crate) struct ApiError(pub(crate) Error);

impl<E: Into<Error>> From<E> for ApiError {
    fn from(e: E) -> Self {
        Self(e.into())
    }
}

/// What [`render_errors`] needs to write the body; travels in the response extensions.
#[derive(Debug, Clone)]
struct ErrorBody {
    code: &'static str,
    message: String,
    details: Vec<FieldError>,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (code, status) = code_and_status(self.0.kind());
        if status.is_server_error() {
            tracing::error!(error = %self.0, error_code = code, "request failed");
        } else {
            tracing::info!(error = %self.0, error_code = code, "request rejected");
        }
        let mut response = status.into_response();
        if let Some(after) = self.0.retry_after() {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(after.as_secs().max(1)),
            );
        }
        response.extensions_mut().insert(ErrorBody {
            code,
            message: self.0.message().to_string(),
            details: self.0.details().to_vec(),
        });
        response
    }
}

/// A request body of at most the configured size (`DefaultBodyLimit`), any content type: Cloud
/// Scheduler sends `application/octet-stream` unless told otherwise, so the body is parsed as JSON
/// by the handler whatever the header says.
pub(crate) struct RawBody(pub(crate) Bytes);

impl<S: Send + Sync> FromRequest<S> for RawBody {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match Bytes::from_request(req, state).await {
            Ok(bytes) => Ok(Self(bytes)),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError(Error::new(
                    ErrorKind::PayloadTooLarge,
                    "the request body is larger than the configured limit (BQB_MAX_BODY_BYTES)",
                )))
            }
            Err(rejection) => Err(ApiError(Error::invalid(
                format!(
                    "the request body could not be read: {}",
                    rejection.body_text()
                ),
                vec![],
            ))),
        }
    }
}

/// The most request header bytes (names and values, all headers together) the service reads.
///
/// hyper answers a request head over its own buffer (about 400 KiB) with a bare 431 before any
/// of our code runs, and a malformed request line with a bare 400: those two cannot be JSON.
/// Below that, this limit makes an oversized head a JSON 431 like every other error, and keeps
/// what reaches authentication and the handlers small. 64 KiB is far above what a real client
/// sends (an OIDC token is a few KiB).
pub(crate) const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Refuses requests whose headers exceed [`MAX_HEADER_BYTES`] (431, written as JSON by
/// [`render_errors`]).
pub(crate) async fn limit_headers(req: Request, next: Next) -> Response {
    let size: usize = req
        .headers()
        .iter()
        // "name: value\r\n", as on the wire.
        .map(|(name, value)| name.as_str().len() + value.len() + 4)
        .sum();
    if size > MAX_HEADER_BYTES {
        return StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE.into_response();
    }
    next.run(req).await
}

/// Writes every error response as JSON. Responses that already carry a JSON body pass unchanged.
pub(crate) async fn render_errors(req: Request, next: Next) -> Response {
    let path = req.uri().path().to_string();
    let request_id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut response = next.run(req).await;
    let status = response.status();
    if !(status.is_client_error() || status.is_server_error()) {
        return response;
    }
    let body = match response.extensions_mut().remove::<ErrorBody>() {
        Some(body) => body,
        None if is_json(&response) => return response,
        None => fallback_body(status),
    };
    let json = serde_json::json!({
        "errorCode": body.code,
        "message": body.message,
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
        "path": path,
        "details": body.details,
        "requestId": request_id,
    });
    let (mut parts, _) = response.into_parts();
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.extensions.insert(ErrorCode(body.code));
    Response::from_parts(parts, Body::from(json.to_string()))
}

fn is_json(response: &Response) -> bool {
    response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"))
}

/// Error responses produced outside our handlers (routing, limits, timeouts).
fn fallback_body(status: StatusCode) -> ErrorBody {
    let (code, message) = match status {
        StatusCode::NOT_FOUND => ("RESOURCE_NOT_FOUND", "no such route".to_string()),
        StatusCode::METHOD_NOT_ALLOWED => (
            "METHOD_NOT_ALLOWED",
            "this route does not accept that method".to_string(),
        ),
        StatusCode::PAYLOAD_TOO_LARGE => (
            "PAYLOAD_TOO_LARGE",
            "the request body is larger than the configured limit (BQB_MAX_BODY_BYTES)".to_string(),
        ),
        StatusCode::REQUEST_TIMEOUT => (
            "REQUEST_TIMEOUT",
            "the request took longer than the configured limit (BQB_REQUEST_TIMEOUT_SECS)"
                .to_string(),
        ),
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE => (
            "REQUEST_HEADERS_TOO_LARGE",
            format!("the request headers are larger than {MAX_HEADER_BYTES} bytes in total"),
        ),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => {
            ("VALIDATION_ERROR", "unsupported content type".to_string())
        }
        s if s.is_server_error() => ("SERVICE_ERROR", format!("internal error ({s})")),
        s => ("VALIDATION_ERROR", format!("request rejected ({s})")),
    };
    ErrorBody {
        code,
        message,
        details: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_input_is_never_a_500() {
        assert_eq!(
            code_and_status(ErrorKind::InvalidInput).1,
            StatusCode::BAD_REQUEST
        );
        assert_eq!(
            code_and_status(ErrorKind::NotFound),
            ("RESOURCE_NOT_FOUND", StatusCode::NOT_FOUND)
        );
        assert_eq!(code_and_status(ErrorKind::Conflict).1, StatusCode::CONFLICT);
        assert_eq!(
            code_and_status(ErrorKind::Upstream).1,
            StatusCode::BAD_GATEWAY
        );
        assert_eq!(
            code_and_status(ErrorKind::Internal).1,
            StatusCode::INTERNAL_SERVER_ERROR
        );
    }

    #[test]
    fn a_damaged_backup_and_an_unavailable_store_are_neither_the_callers_fault_nor_a_bug() {
        assert_eq!(
            code_and_status(ErrorKind::DamagedBackup),
            ("BACKUP_DAMAGED", StatusCode::UNPROCESSABLE_ENTITY)
        );
        assert_eq!(
            code_and_status(ErrorKind::Unavailable),
            ("UPSTREAM_UNAVAILABLE", StatusCode::SERVICE_UNAVAILABLE)
        );
    }
}
