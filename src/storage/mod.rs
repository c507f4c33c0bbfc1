//! Object storage: an `object_store` client built from a storage URI (gs://, s3://, az://,
//! file://, memory://), rooted at the URI's prefix, honouring the emulator settings; and the
//! backup repository's key layout.
//!
//! Depends on `config`, `domain` and `error`; never on `bigquery`, `formats` or `api`.

pub mod exclusive;
mod gcs_credentials;
pub mod layout;
mod open;

pub use open::{StorageConfig, Store};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::error::{Error, ErrorKind};

/// Attempts of a create-if-absent whose outcome was unknown (the write may or may not have landed).
const CREATE_ATTEMPTS: u32 = 3;

/// Writes `body` at `path` only if nothing is there: `true` when this call created it, `false`
/// when something else was there first (stores report that as AlreadyExists or a failed
/// precondition). The one create-if-absent of the crate: manifests, claims, leases, records.
///
/// `body` must be unique to the caller (a holder token, a job id, a timestamp): when the store's
/// answer is lost (a connection reset or timeout after the write landed, or a retry of a write
/// that had landed answered "already exists"), the object is read back and it is this caller's
/// exactly when it holds the same bytes. Nothing there means the write did not land, and it is
/// tried again.
pub async fn put_if_absent(
    os: &dyn ObjectStore,
    path: &Path,
    body: Bytes,
) -> Result<bool, object_store::Error> {
    let mut attempt = 1;
    loop {
        let error = match os
            .put_opts(path, PutPayload::from(body.clone()), PutMode::Create.into())
            .await
        {
            Ok(_) => return Ok(true),
            Err(e) => e,
        };
        let already_there = matches!(
            error,
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. }
        );
        match get_if_exists(os, path).await {
            Ok(Some(found)) => return Ok(found == body),
            // Gone again (deleted in between): there was an object, so this caller lost.
            Ok(None) if already_there => return Ok(false),
            Ok(None) if attempt < CREATE_ATTEMPTS && is_transient(&error) => {
                tracing::warn!(object_key = %path, attempt, error = %error, "a create-if-absent write did not land; trying again");
            }
            Ok(None) | Err(_) => return Err(error),
        }
        tokio::time::sleep(std::time::Duration::from_millis(200 * u64::from(attempt))).await;
        attempt += 1;
    }
}

/// Whether a storage error may pass when the call is made again: anything but the answers that
/// describe the request or the object (not found, exists, precondition, permission, bad path).
/// object_store has already retried the HTTP request; this decides whether our own read-back
/// and second attempt at a create-if-absent are worth it.
pub fn is_transient(error: &object_store::Error) -> bool {
    !matches!(
        error,
        object_store::Error::NotFound { .. }
            | object_store::Error::AlreadyExists { .. }
            | object_store::Error::Precondition { .. }
            | object_store::Error::NotModified { .. }
            | object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. }
            | object_store::Error::InvalidPath { .. }
            | object_store::Error::NotSupported { .. }
            | object_store::Error::NotImplemented { .. }
            | object_store::Error::UnknownConfigurationKey { .. }
    )
}

/// The object at `path`, or `None` when there is none.
pub async fn get_if_exists(
    os: &dyn ObjectStore,
    path: &Path,
) -> Result<Option<Bytes>, object_store::Error> {
    match os.get(path).await {
        Ok(got) => got.bytes().await.map(Some),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Storage failures, each naming the location involved.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("cannot open {uri}: {source}")]
    Open {
        uri: String,
        #[source]
        source: object_store::Error,
    },
    #[error("cannot open {uri}: {message}")]
    Config { uri: String, message: String },
    #[error("{operation} {location} failed: {source}")]
    Object {
        operation: &'static str,
        location: String,
        #[source]
        source: object_store::Error,
    },
}

impl StorageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config { .. } => ErrorKind::InvalidInput,
            Self::Open { source, .. } | Self::Object { source, .. } => match source {
                object_store::Error::NotFound { .. } => ErrorKind::NotFound,
                object_store::Error::AlreadyExists { .. }
                | object_store::Error::Precondition { .. } => ErrorKind::Conflict,
                object_store::Error::PermissionDenied { .. } => ErrorKind::PermissionDenied,
                object_store::Error::Unauthenticated { .. } => ErrorKind::Unauthenticated,
                object_store::Error::InvalidPath { .. } => ErrorKind::InvalidInput,
                _ => ErrorKind::Upstream,
            },
        }
    }
}

/// The one conversion of a failed storage call into the crate's error: `operation` is what was
/// being done ("reading", "writing", "listing", "deleting"), `location` the key or prefix.
pub fn object_error(
    operation: &'static str,
    location: &Path,
    source: object_store::Error,
) -> Error {
    StorageError::Object {
        operation,
        location: location.to_string(),
        source,
    }
    .into()
}

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::new(e.kind(), e.to_string()).with_source(e)
    }
}
