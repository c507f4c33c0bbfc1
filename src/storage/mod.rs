//! Object storage: an `object_store` client built from a storage URI (gs://, s3://, az://,
//! file://, memory://), rooted at the URI's prefix, honouring the emulator settings; and the
//! backup repository's key layout.
//!
//! Depends on `config`, `domain` and `error`; never on `bigquery`, `formats` or `api`.

mod gcs_credentials;
pub mod layout;
mod open;

pub use open::{Access, StorageConfig, Store};

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::error::{Error, ErrorKind, FieldError};

/// Writes `payload` at `path` only if nothing is there: `true` when this call created it,
/// `false` when it already existed (stores report that as AlreadyExists or a failed
/// precondition). The one create-if-absent of the crate: manifests, claims, locks, records.
pub async fn put_if_absent(
    os: &dyn ObjectStore,
    path: &Path,
    payload: PutPayload,
) -> Result<bool, object_store::Error> {
    match os.put_opts(path, payload, PutMode::Create.into()).await {
        Ok(_) => Ok(true),
        Err(
            object_store::Error::AlreadyExists { .. } | object_store::Error::Precondition { .. },
        ) => Ok(false),
        Err(e) => Err(e),
    }
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
    /// The caller named storage this server may not use (`BQB_ALLOWED_STORAGE`).
    #[error("{reason}")]
    NotAllowed {
        field: String,
        uri: String,
        reason: String,
    },
    /// A read of a local root that does not exist (nothing is created for a read).
    #[error("{uri} does not exist")]
    Missing { field: String, uri: String },
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
            Self::Config { .. } | Self::NotAllowed { .. } => ErrorKind::InvalidInput,
            Self::Missing { .. } => ErrorKind::NotFound,
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

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        // Errors about the caller's own URI name the field that held it.
        match &e {
            StorageError::NotAllowed { field, reason, .. } => Error::invalid(
                "the storage URI is not allowed on this server",
                vec![FieldError::new(field, reason)],
            ),
            StorageError::Missing { field, .. } => {
                Error::not_found(e.to_string()).with_details(vec![FieldError::new(
                    field,
                    "no backup repository there (the directory does not exist)",
                )])
            }
            _ => Error::new(e.kind(), e.to_string()).with_source(e),
        }
    }
}
