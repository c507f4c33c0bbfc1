//! Object storage: an `object_store` client built from a storage URI (gs://, s3://, az://,
//! file://, memory://), rooted at the URI's prefix, honouring the emulator settings; and the
//! backup repository's key layout.
//!
//! Depends on `config`, `domain` and `error`; never on `bigquery`, `formats` or `api`.

mod gcs_credentials;
pub mod layout;
mod open;

pub use open::{StorageConfig, Store};

use crate::error::{Error, ErrorKind};

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

impl From<StorageError> for Error {
    fn from(e: StorageError) -> Self {
        Error::new(e.kind(), e.to_string()).with_source(e)
    }
}
