//! The crate-wide error: every module's private error converts into this at its edge, carrying an
//! [`ErrorKind`] that says what the caller can do about it. Only `api::error` maps kinds to HTTP.
//!
//! Depends on nothing else in the crate.

use std::fmt;

/// What kind of failure this is, from the caller's point of view.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ErrorKind {
    /// The request (or a setting) is wrong; retrying it unchanged cannot succeed.
    InvalidInput,
    /// No or invalid credentials were presented.
    Unauthenticated,
    /// The caller, or this service's identity, may not do this.
    PermissionDenied,
    /// A named thing does not exist.
    NotFound,
    /// The operation would overwrite or clash with something that exists.
    Conflict,
    /// The request body is larger than allowed.
    PayloadTooLarge,
    /// Too much work is queued; try again later.
    TooManyRequests,
    /// A dependency (BigQuery, object storage) answered with an error that is nobody's input
    /// and not worth retrying as such.
    Upstream,
    /// A dependency is unreachable or kept failing after its retries (timeouts, connection
    /// errors, 5xx, throttling): the same request may pass later.
    Unavailable,
    /// A backup's own files are damaged (a checksum, size or row count that does not match its
    /// manifest, a file that does not decode, a manifest that does not parse). Neither the
    /// caller's request nor a dependency's failure: retrying cannot help, restoring from another
    /// backup can.
    DamagedBackup,
    /// The operation was stopped on request (job cancel, shutdown) or because a sibling failed.
    Cancelled,
    /// A bug in this service.
    Internal,
}

impl ErrorKind {
    /// The stable name of this kind that callers see (`errorCode` in HTTP answers and job
    /// records, the `code` label of the error metrics).
    pub fn code(self) -> &'static str {
        match self {
            Self::InvalidInput => "VALIDATION_ERROR",
            Self::Unauthenticated => "UNAUTHENTICATED",
            Self::PermissionDenied => "PERMISSION_DENIED",
            Self::NotFound => "RESOURCE_NOT_FOUND",
            Self::Conflict => "RESOURCE_CONFLICT",
            Self::PayloadTooLarge => "PAYLOAD_TOO_LARGE",
            Self::TooManyRequests => "TOO_MANY_REQUESTS",
            Self::Upstream => "UPSTREAM_ERROR",
            Self::Unavailable => "UPSTREAM_UNAVAILABLE",
            Self::DamagedBackup => "BACKUP_DAMAGED",
            Self::Cancelled => "CANCELLED",
            Self::Internal => "SERVICE_ERROR",
        }
    }

    /// How much a failure of this kind says about its cause (see [`most_telling`]).
    fn telling(self) -> u8 {
        match self {
            Self::Upstream => 0,
            Self::Unavailable => 1,
            _ => 2,
        }
    }
}

/// Of several failures (one per table of a job), the position of the one whose kind says most
/// about whose fault it is: a named cause (a missing table, a conflict, a damaged file) before
/// "unavailable, retry later", and that before a dependency's plain failure. The first of equals.
pub fn most_telling<'a>(errors: impl IntoIterator<Item = &'a Error>) -> Option<usize> {
    let mut best: Option<(usize, u8)> = None;
    for (position, error) in errors.into_iter().enumerate() {
        let telling = error.kind().telling();
        if best.is_none_or(|(_, b)| telling > b) {
            best = Some((position, telling));
        }
    }
    best.map(|(position, _)| position)
}

/// One problem with one input field, named by its JSON path (`backupStorage.gcsOptions.uri`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FieldError {
    pub field: String,
    pub message: String,
}

impl FieldError {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// An error that knows its [`ErrorKind`], a message for humans, and (for invalid input) every
/// field that was wrong.
#[derive(Debug)]
pub struct Error {
    kind: ErrorKind,
    message: String,
    details: Vec<FieldError>,
    /// For [`ErrorKind::TooManyRequests`]: when to try again.
    retry_after: Option<std::time::Duration>,
    source: Option<Box<dyn std::error::Error + Send + Sync>>,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            details: Vec::new(),
            retry_after: None,
            source: None,
        }
    }

    /// Too much work queued: the caller should retry after `after`.
    pub fn too_many_requests(message: impl Into<String>, after: std::time::Duration) -> Self {
        Self {
            retry_after: Some(after),
            ..Self::new(ErrorKind::TooManyRequests, message)
        }
    }

    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    /// Invalid input listing every problem found (never only the first).
    pub fn invalid(message: impl Into<String>, details: Vec<FieldError>) -> Self {
        Self {
            details,
            ..Self::new(ErrorKind::InvalidInput, message)
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, message)
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, message)
    }

    pub fn upstream(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Upstream, message)
    }

    pub fn cancelled(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Cancelled, message)
    }

    pub fn is_cancelled(&self) -> bool {
        self.kind == ErrorKind::Cancelled
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, message)
    }

    pub fn with_source(mut self, source: impl std::error::Error + Send + Sync + 'static) -> Self {
        self.source = Some(Box::new(source));
        self
    }

    pub fn with_details(mut self, details: Vec<FieldError>) -> Self {
        self.details = details;
        self
    }

    /// A damaged backup: `object_key` (the file or manifest, relative to the repository root)
    /// is named in `details`, `problem` says what is wrong with it.
    pub fn damaged(object_key: impl Into<String>, problem: impl Into<String>) -> Self {
        let (object_key, problem) = (object_key.into(), problem.into());
        Self {
            details: vec![FieldError::new(object_key.clone(), problem.clone())],
            ..Self::new(
                ErrorKind::DamagedBackup,
                format!("the backup is damaged: {object_key} {problem}"),
            )
        }
    }

    /// Adds one more detail.
    pub fn with_detail(mut self, detail: FieldError) -> Self {
        self.details.push(detail);
        self
    }

    /// The same error seen from another side (a dependency's "not found" that is, for the
    /// caller, this service's misconfiguration).
    pub fn with_kind(mut self, kind: ErrorKind) -> Self {
        self.kind = kind;
        self
    }

    /// The same error, said differently (its source and details kept).
    pub fn with_message(mut self, message: impl Into<String>) -> Self {
        self.message = message.into();
        self
    }

    pub fn kind(&self) -> ErrorKind {
        self.kind
    }

    pub fn message(&self) -> &str {
        &self.message
    }

    pub fn details(&self) -> &[FieldError] {
        &self.details
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)?;
        for d in &self.details {
            write!(f, "; {}: {}", d.field, d.message)?;
        }
        if let Some(source) = &self.source {
            // A module's error converted at its edge is both this error's message and its
            // source: show what lies beneath it instead of the same words twice.
            let text = source.to_string();
            if text != self.message {
                write!(f, ": {text}")?;
            } else if let Some(inner) = source.source() {
                let inner = inner.to_string();
                if !self.message.contains(&inner) {
                    write!(f, ": {inner}")?;
                }
            }
        }
        Ok(())
    }
}

impl std::error::Error for Error {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        self.source
            .as_deref()
            .map(|s| s as &(dyn std::error::Error + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_lists_every_field_problem() {
        let err = Error::invalid(
            "the request is invalid",
            vec![
                FieldError::new("a.b", "is required"),
                FieldError::new("c", "must be positive"),
            ],
        );
        assert_eq!(
            err.to_string(),
            "the request is invalid; a.b: is required; c: must be positive"
        );
        assert_eq!(err.kind(), ErrorKind::InvalidInput);
    }

    #[derive(Debug, thiserror::Error)]
    #[error("reading x failed: not found")]
    struct ModuleError(#[source] std::io::Error);

    #[test]
    fn a_converted_module_error_is_not_printed_twice() {
        let module = ModuleError(std::io::Error::other("the store said 404"));
        let err = Error::not_found(module.to_string()).with_source(module);
        assert_eq!(
            err.to_string(),
            "reading x failed: not found: the store said 404"
        );
    }

    #[test]
    fn the_most_telling_failure_of_several_leads() {
        let errors = [
            Error::upstream("bigquery said 500"),
            Error::new(ErrorKind::Unavailable, "storage timed out"),
            Error::damaged("backups/1/t/part-00000.avro", "does not decode"),
            Error::not_found("table gone"),
        ];
        assert_eq!(most_telling(&errors), Some(2));
        assert_eq!(most_telling(&errors[..2]), Some(1));
        assert_eq!(most_telling(&[]), None);
    }

    #[test]
    fn a_damaged_backup_names_the_object_in_its_details() {
        let err = Error::damaged("backups/1/manifest.json", "is not valid JSON");
        assert_eq!(err.kind(), ErrorKind::DamagedBackup);
        assert_eq!(err.details()[0].field, "backups/1/manifest.json");
        assert!(err.message().contains("damaged"), "{err}");
    }
}
