//! The backup catalog: the manifest (the commit point of a backup) and, later, listing, showing,
//! deleting, verifying and pruning backups from their manifests.
//!
//! Depends on `storage`, `domain` and `error`; never on `bigquery` or `api`.

pub mod manifest;

pub use manifest::{
    DatasetEntry, FileEntry, FormatEntry, MANIFEST_VERSION, Manifest, RoutineEntry, TableEntry,
    Totals, decode_arrow_schema, encode_arrow_schema, read_manifest, write_manifest,
};
