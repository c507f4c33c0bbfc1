//! Object storage: an `object_store` client built from a storage URI (gs://, s3://, az://,
//! file://, memory://), rooted at the URI's prefix, honouring the emulator settings; the key
//! layout of a backup repository and of the state store ([`layout`]); and the typed, versioned
//! JSON files kept in them ([`versioned`]).
//!
//! Every failed call becomes the crate's error in one place, [`object_error`], which says what
//! the failure means ([`Failure`]: a missing bucket, a missing object, refused access, a store
//! that is down…); [`Store::attribute`] then says whose it is, by where the store's URI came
//! from (the request field that named it, or a setting of the service).
//!
//! Depends on `config`, `domain` and `error`; never on `bigquery`, `formats` or `api`.

mod clients;
pub mod exclusive;
mod gcs_credentials;
mod gcs_objects;
pub mod layout;
mod open;
pub(crate) mod settings;
pub mod upload;
pub mod versioned;

pub use gcs_objects::ObjectChecksums;
pub use open::{Access, Origin, StorageConfig, Store};
pub use settings::StorageSettings;

use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutPayload};

use crate::error::{Error, ErrorKind, FieldError};

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
            // Whether the write landed is unknown: asking again (a second create answers
            // "exists" if it did, then reads it back) beats reporting a failure for what may be
            // a finished write, such as a backup's manifest.
            Err(read_error) if attempt < CREATE_ATTEMPTS && is_transient(&read_error) => {
                tracing::warn!(object_key = %path, attempt, error = %error, read_error = %read_error, "a create-if-absent write failed and could not be read back; trying again");
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

/// The object at `path`, or `None` when there is none. A bucket or container that does not
/// exist is an error, not an absent object: S3 and Azure answer 404 for both, and taking one for
/// the other would make a mistyped bucket look like an empty repository.
pub async fn get_if_exists(
    os: &dyn ObjectStore,
    path: &Path,
) -> Result<Option<Bytes>, object_store::Error> {
    match os.get(path).await {
        Ok(got) => got.bytes().await.map(Some),
        Err(e @ object_store::Error::NotFound { .. }) if names_missing_root(&e) => Err(e),
        Err(object_store::Error::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The typed file at `path` (see [`versioned`]), or `None` when there is none; a file that does
/// not read as `T` is an error naming its key.
pub async fn read_file<T: versioned::VersionedFile>(
    store: &Store,
    path: &Path,
) -> Result<Option<T>, Error> {
    let Some(bytes) = get_if_exists(store.object_store().as_ref(), path)
        .await
        .map_err(|e| object_error("reading", path, e))?
    else {
        return Ok(None);
    };
    versioned::decode::<T>(&bytes)
        .map(Some)
        .map_err(|e| e.into_state_error(path))
}

/// Writes `file` at `path` unless something is there ([`put_if_absent`]); `false` when it was.
pub async fn create_file<T: versioned::VersionedFile>(
    store: &Store,
    path: &Path,
    file: &T,
) -> Result<bool, Error> {
    let body = versioned::encode_pretty(file)?;
    put_if_absent(store.object_store().as_ref(), path, body)
        .await
        .map_err(|e| object_error("writing", path, e))
}

/// Deletes the object at `path`; one that is already gone is not an error.
pub async fn delete_if_exists(
    os: &dyn ObjectStore,
    path: &Path,
) -> Result<(), object_store::Error> {
    match os.delete(path).await {
        Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
        Err(e) => Err(e),
    }
}

/// What a failed storage call means for whoever asked for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// The bucket (S3, GCS) or container (Azure) of the URI does not exist.
    RootMissing,
    /// The object (or prefix) does not exist.
    NotFound,
    /// Something is in the way: the object exists, or a precondition failed.
    Conflict,
    /// The service's credentials may not do this.
    PermissionDenied,
    /// The store refused the service's credentials.
    Unauthenticated,
    /// The key is not valid for the store.
    InvalidPath,
    /// Timeouts, connection errors, throttling or 5xx answers that outlasted object_store's
    /// retries (`open::STORAGE_MAX_RETRIES`): the same call may pass later.
    Unavailable,
    /// Anything else the store answered.
    Other,
}

impl Failure {
    /// Classifies a failed call. object_store 0.14 maps the statuses of object calls (get, put,
    /// head, delete) to its own variants but wraps those of bucket-level calls (list, multipart
    /// completion) in `Generic`, and keeps the status and body of the failed request in a
    /// crate-private type: its text is all there is to read them from.
    pub fn of(error: &object_store::Error) -> Self {
        use object_store::Error as E;
        match error {
            E::NotFound { .. } if names_missing_root(error) => Self::RootMissing,
            E::NotFound { .. } => Self::NotFound,
            E::AlreadyExists { .. } | E::Precondition { .. } => Self::Conflict,
            E::PermissionDenied { .. } => Self::PermissionDenied,
            E::Unauthenticated { .. } => Self::Unauthenticated,
            E::InvalidPath { .. } => Self::InvalidPath,
            _ if names_missing_root(error) => Self::RootMissing,
            _ => match http_status(error) {
                Some(404) => Self::NotFound,
                Some(401) => Self::Unauthenticated,
                Some(403) => Self::PermissionDenied,
                Some(409 | 412) => Self::Conflict,
                Some(408 | 429 | 500..=599) => Self::Unavailable,
                Some(_) => Self::Other,
                None if is_transport_error(error) => Self::Unavailable,
                None => Self::Other,
            },
        }
    }

    /// The error kind, for a store named by the caller's request.
    pub fn kind(self) -> ErrorKind {
        match self {
            Self::RootMissing | Self::NotFound => ErrorKind::NotFound,
            Self::Conflict => ErrorKind::Conflict,
            Self::PermissionDenied => ErrorKind::PermissionDenied,
            Self::Unauthenticated => ErrorKind::Unauthenticated,
            Self::InvalidPath => ErrorKind::InvalidInput,
            Self::Unavailable => ErrorKind::Unavailable,
            Self::Other => ErrorKind::Upstream,
        }
    }
}

/// The error codes S3, GCS (XML API) and Azure answer for a bucket or container that does not
/// exist, as they appear in the text of object_store's error.
const MISSING_ROOT_CODES: [&str; 3] = [
    "<Code>NoSuchBucket</Code>",
    "<Code>ContainerNotFound</Code>",
    // Azure's batch delete reports it without the XML code.
    "The specified container does not exist",
];

fn names_missing_root(error: &object_store::Error) -> bool {
    let text = error.to_string();
    MISSING_ROOT_CODES.iter().any(|code| text.contains(code))
}

/// The HTTP status of the failed request, from object_store's "Server returned non-2xx status
/// code: 404 Not Found: …" (see [`Failure::of`] for why the text).
fn http_status(error: &object_store::Error) -> Option<u16> {
    let text = error.to_string();
    let marker = "status code: ";
    let at = text.find(marker)? + marker.len();
    text.get(at..at + 3)?.parse().ok()
}

/// Whether the call failed below HTTP (connect, timeout, reset), after its retries.
fn is_transport_error(error: &object_store::Error) -> bool {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if e.downcast_ref::<object_store::client::HttpError>()
            .is_some()
        {
            return true;
        }
        current = e.source();
    }
    false
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
    #[error("{operation} {location} failed: {}", summary(*.failure, .source))]
    Object {
        operation: &'static str,
        location: String,
        failure: Failure,
        #[source]
        source: object_store::Error,
    },
}

/// What a failed call's message says: the meaning where it is clear, the store's own words
/// where it is not (they are what an operator needs then).
fn summary(failure: Failure, source: &object_store::Error) -> String {
    match failure {
        Failure::RootMissing => "the bucket or container does not exist".into(),
        Failure::NotFound => "not found".into(),
        Failure::PermissionDenied => "permission denied".into(),
        Failure::Unauthenticated => "the storage refused the service's credentials".into(),
        Failure::Unavailable => format!("the storage is unavailable (retried): {source}"),
        Failure::Conflict | Failure::InvalidPath | Failure::Other => source.to_string(),
    }
}

impl StorageError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            Self::Config { .. } | Self::NotAllowed { .. } => ErrorKind::InvalidInput,
            Self::Missing { .. } => ErrorKind::NotFound,
            Self::Open { source, .. } => Failure::of(source).kind(),
            Self::Object { failure, .. } => failure.kind(),
        }
    }

    /// The meaning of a failed call (`None` for a store that could not be opened).
    pub fn failure(&self) -> Option<Failure> {
        match self {
            Self::Object { failure, .. } => Some(*failure),
            Self::Open { .. }
            | Self::Config { .. }
            | Self::NotAllowed { .. }
            | Self::Missing { .. } => None,
        }
    }
}

/// The one conversion of a failed storage call into the crate's error: `operation` is what was
/// being done ("reading", "writing", "listing", "deleting"), `location` the key or prefix.
/// [`Store::attribute`] then names the request field (or setting) the store came from.
pub fn object_error(
    operation: &'static str,
    location: &Path,
    source: object_store::Error,
) -> Error {
    StorageError::Object {
        operation,
        location: location.to_string(),
        failure: Failure::of(&source),
        source,
    }
    .into()
}

/// The storage failure behind `error`, if it is one: anywhere in its chain of sources, since a
/// job's error leads with the failure of one of its tables.
pub fn storage_failure(error: &Error) -> Option<Failure> {
    let mut current = std::error::Error::source(error);
    while let Some(e) = current {
        if let Some(storage) = e.downcast_ref::<StorageError>() {
            return storage.failure();
        }
        current = e.source();
    }
    None
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::StorageUri;
    use crate::error::FieldError;

    /// What object_store's crate-private request error says, as text.
    #[derive(Debug)]
    struct Answer(&'static str);

    impl std::fmt::Display for Answer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "Server returned non-2xx status code: {}", self.0)
        }
    }

    impl std::error::Error for Answer {}

    fn listing_failed(answer: &'static str) -> object_store::Error {
        object_store::Error::Generic {
            store: "S3",
            source: Box::new(Answer(answer)),
        }
    }

    fn get_failed(answer: &'static str) -> object_store::Error {
        object_store::Error::NotFound {
            path: "backups/x/manifest.json".into(),
            source: Box::new(Answer(answer)),
        }
    }

    #[test]
    fn a_missing_bucket_or_container_is_told_apart_from_a_missing_object() {
        let s3 = "404 Not Found: <Error><Code>NoSuchBucket</Code></Error>";
        let azure = "404 Not Found: <Error>\n  <Code>ContainerNotFound</Code>\n</Error>";
        assert_eq!(Failure::of(&listing_failed(s3)), Failure::RootMissing);
        assert_eq!(Failure::of(&listing_failed(azure)), Failure::RootMissing);
        assert_eq!(Failure::of(&get_failed(s3)), Failure::RootMissing);
        assert_eq!(
            Failure::of(&get_failed("404 Not Found: <Code>NoSuchKey</Code>")),
            Failure::NotFound
        );
        assert_eq!(Failure::RootMissing.kind(), ErrorKind::NotFound);
    }

    #[test]
    fn statuses_of_bucket_level_calls_are_classified_like_those_of_object_calls() {
        let cases = [
            ("403 Forbidden: AccessDenied", Failure::PermissionDenied),
            ("401 Unauthorized", Failure::Unauthenticated),
            ("412 Precondition Failed", Failure::Conflict),
            ("503 Service Unavailable: SlowDown", Failure::Unavailable),
            ("429 Too Many Requests", Failure::Unavailable),
            ("400 Bad Request: InvalidArgument", Failure::Other),
        ];
        for (answer, expected) in cases {
            assert_eq!(Failure::of(&listing_failed(answer)), expected, "{answer}");
        }
        let timeout = object_store::Error::Generic {
            store: "GCS",
            source: Box::new(object_store::client::HttpError::new(
                object_store::client::HttpErrorKind::Timeout,
                Answer("never answered"),
            )),
        };
        assert_eq!(Failure::of(&timeout), Failure::Unavailable);
        assert_eq!(Failure::Unavailable.kind(), ErrorKind::Unavailable);
        assert_eq!(Failure::Other.kind(), ErrorKind::Upstream);
    }

    #[tokio::test]
    async fn an_absent_object_is_none_not_an_error() {
        let os = object_store::memory::InMemory::new();
        assert_eq!(
            get_if_exists(&os, &Path::from("nothing/here")).await.ok(),
            Some(None)
        );
    }

    fn store(uri: &str) -> Store {
        crate::storage::StorageConfig::default()
            .open(
                &StorageUri::parse(uri).expect("a valid uri"),
                "uri",
                crate::storage::Access::Write,
            )
            .expect("a memory store opens")
    }

    fn missing_bucket() -> Error {
        object_error(
            "listing",
            &Path::from("backups"),
            listing_failed("404 Not Found: <Code>NoSuchBucket</Code>"),
        )
    }

    #[test]
    fn a_store_named_by_a_request_field_names_it_in_its_errors() {
        let store = store("memory://attr-request/x").from_request_field("backupStorage.uri");
        let error = store.attribute(missing_bucket());
        assert_eq!(error.kind(), ErrorKind::NotFound);
        assert!(error.message().contains("does not exist"), "{error}");
        assert_eq!(error.details()[0].field, "backupStorage.uri");

        let unavailable = object_error(
            "writing",
            &Path::from("backups/x/part-00000.avro"),
            listing_failed("503 Service Unavailable"),
        );
        let error = store.attribute(unavailable);
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert_eq!(error.details()[0].field, "backupStorage.uri");

        let other = Error::conflict("not a storage failure")
            .with_details(vec![FieldError::new("tables", "taken")]);
        let error = store.attribute(other);
        assert_eq!(
            error.details().len(),
            1,
            "errors of other kinds pass unchanged"
        );
    }

    #[test]
    fn a_missing_bucket_of_a_setting_is_the_services_problem_not_the_callers() {
        let store = store("memory://attr-setting").from_setting("BQB_STATE_URI");
        let error = store.attribute(missing_bucket());
        assert_eq!(error.kind(), ErrorKind::Unavailable);
        assert!(error.message().contains("BQB_STATE_URI"), "{error}");
        assert!(error.details().is_empty());
    }
}
