//! The BigQuery module's error and its conversion to the crate error kind.

use google_cloud_gax::error::rpc::Code;

use crate::error::{Error, ErrorKind};

#[derive(Debug, thiserror::Error)]
pub enum BigQueryError {
    #[error("building the BigQuery {client} client failed: {source}")]
    Build {
        client: &'static str,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("BigQuery {operation} failed: {source}")]
    Api {
        operation: String,
        #[source]
        source: google_cloud_gax::error::Error,
    },
    #[error("the Storage Read API returned data that is not valid Arrow for {table}: {source}")]
    Arrow {
        table: String,
        #[source]
        source: arrow::error::ArrowError,
    },
    #[error("the Storage Read API answered without a schema for {table}")]
    MissingSchema { table: String },
}

impl BigQueryError {
    pub(crate) fn api(
        operation: impl Into<String>,
        source: google_cloud_gax::error::Error,
    ) -> Self {
        Self::Api {
            operation: operation.into(),
            source,
        }
    }

    /// What the caller can do about it, from the API's status (gRPC code or HTTP status).
    pub fn kind(&self) -> ErrorKind {
        let Self::Api { source, .. } = self else {
            return ErrorKind::Upstream;
        };
        if source.is_authentication() {
            return ErrorKind::Unauthenticated;
        }
        if let Some(status) = source.status() {
            match status.code {
                Code::NotFound => return ErrorKind::NotFound,
                Code::AlreadyExists => return ErrorKind::Conflict,
                Code::PermissionDenied => return ErrorKind::PermissionDenied,
                Code::Unauthenticated => return ErrorKind::Unauthenticated,
                Code::InvalidArgument | Code::FailedPrecondition | Code::OutOfRange => {
                    return ErrorKind::InvalidInput;
                }
                _ => {}
            }
        }
        match source.http_status_code() {
            Some(404) => ErrorKind::NotFound,
            Some(409) => ErrorKind::Conflict,
            Some(403) => ErrorKind::PermissionDenied,
            Some(401) => ErrorKind::Unauthenticated,
            Some(400) => ErrorKind::InvalidInput,
            _ => ErrorKind::Upstream,
        }
    }
}

impl From<BigQueryError> for Error {
    fn from(e: BigQueryError) -> Self {
        Error::new(e.kind(), e.to_string()).with_source(e)
    }
}
