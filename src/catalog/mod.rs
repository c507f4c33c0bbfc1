//! The backup catalog: the manifest (the commit point of a backup) and, later, listing, showing,
//! deleting, verifying and pruning backups from their manifests, and copying them between
//! repositories ([`copy`]).
//!
//! Depends on `storage` (keys, versioned files), `formats` (format and compression names),
//! `domain` and `error`; on `bigquery` only for its pure resource types (`TableKind`,
//! `TableResource`, ...), never its client; never on `api`.

pub mod attempt;
pub mod checksum;
mod cipher;
pub mod copy;
pub mod digest;
pub mod drills;
pub mod keys;
pub mod lease;
pub mod list;
pub mod manifest;
pub mod prune;
pub mod retention;
pub mod stream;
#[cfg(test)]
mod stream_tests;
pub mod verify;

pub use list::{BackupPage, BackupSummary, ListFilter, backup_ids, list_backups};
pub use manifest::{
    DatasetEntry, EncryptionEntry, FileEntry, FormatEntry, IncrementalEntry, MANIFEST_VERSION,
    Manifest, ManifestStatus, PartitionsEntry, RoutineEntry, TableEntry, Totals,
    decode_arrow_schema, encode_arrow_schema, parse_manifest, read_manifest, write_manifest,
};
pub use verify::{Finding, Sample, VerifyReport, verify_backup};
