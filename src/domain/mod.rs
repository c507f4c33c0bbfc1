//! Domain types: requests (Java-compatible + extensions), ids, formats, table references.
//! Pure data and validation: no I/O, and nothing else in the crate is imported here except `error`.
//!
//! - `ids`: [`BackupId`], [`JobId`], [`TableRef`], [`DatasetRef`] and BigQuery's naming rules.
//! - `storage_uri`: [`StorageUri`], the root of a backup repository.
//! - `allowed_storage`: [`StorageAllowList`] (`BQB_ALLOWED_STORAGE`), which roots a server may open.
//! - `selection`: [`TableSelector`], which tables of a dataset a request selects.
//! - `sql_refs`: [`sql_paths`], the table, view and routine names a view's or routine's SQL uses.
//! - `backup_request` / `restore_request`: the request bodies (Java-compatible + extensions) and
//!   their validation into [`BackupSpec`] / [`RestoreSpec`], listing every problem by JSON path.
//! - `pubsub`: Pub/Sub push envelopes ([`parse_push_envelope`]) around those request bodies.

mod allowed_storage;
mod backup_request;
mod ids;
mod pubsub;
mod recover_request;
mod request_fields;
mod restore_request;
mod selection;
mod sql_refs;
mod storage_uri;

pub use allowed_storage::{StorageAllowList, StorageRefusal};
pub use backup_request::{
    BackupMethod, BackupRequest, BackupSpec, BackupStorage, BackupTime, BigQueryBackup,
    DEFAULT_FILE_SIZE_BYTES, DEFAULT_FORMAT, DatasetEntry, DatasetSelection, DatasetToBackup,
    EncryptionRequest, ExportMethod, ExportOptions, GcsBackupOptions, INCREMENTAL_BASE_FIELD,
    IncrementalBase, IncrementalRequest, MAX_SHARDS, Snapshot, parse_backup_request,
};
pub use ids::{
    BackupId, DatasetRef, InvalidId, JobId, TableRef, is_valid_dataset_id, is_valid_table_id,
};
pub use pubsub::{PushMessage, is_push_envelope, parse_push_envelope, parse_push_envelope_value};
pub use recover_request::{
    MAX_TIME_TRAVEL, RecoverInstant, RecoverMethod, RecoverRequest, RecoverSpec,
    parse_recover_request,
};
pub use restore_request::{
    BackupSelector, BigQueryRestore, DEFAULT_DATASET_PREFIX, DRILL_DATASET_PREFIX,
    GcsRestoreOptions, ImportOptions, RestoreRequest, RestoreSpec, RestoreStorage, SourceTable,
    TableChoice, WriteDisposition, parse_restore_request,
};
pub use selection::TableSelector;
pub use sql_refs::{PathPiece, SqlPath, sql_paths};
pub use storage_uri::{StorageScheme, StorageUri, StorageUriError};

/// Google Cloud project ids: 6–30 chars, lower-case letters, digits and hyphens, starting with a
/// letter, not ending with a hyphen. Domain-scoped ids (`example.com:my-proj`) are allowed too.
pub fn is_valid_project_id(id: &str) -> bool {
    let name = match id.rsplit_once(':') {
        Some((domain, name)) => {
            if domain.is_empty()
                || !domain
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-')
            {
                return false;
            }
            name
        }
        None => id,
    };
    let len_ok = (6..=30).contains(&name.len());
    let starts_ok = name.chars().next().is_some_and(|c| c.is_ascii_lowercase());
    let chars_ok = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-');
    len_ok && starts_ok && chars_ok && !name.ends_with('-')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn project_ids_follow_google_rules() {
        for ok in ["test-project", "my-proj-123", "example.com:my-proj"] {
            assert!(is_valid_project_id(ok), "{ok}");
        }
        for bad in [
            "",
            "short",
            "Upper-case",
            "1starts-digit",
            "ends-with-",
            "has_underscore",
            "a-very-long-project-name-over-30",
        ] {
            assert!(!is_valid_project_id(bad), "{bad}");
        }
    }
}
