//! The manifest: one versioned JSON document per backup, written last with a create-if-absent
//! put. Its presence is what makes a backup complete; a backup without one is an incomplete
//! attempt and is never listed or restored.
//!
//! It records everything needed to verify and recreate the backup: per dataset the dataset
//! resource (location, description, labels, default expirations); per table the full BigQuery
//! table resource (schema with modes, nested fields, descriptions, default values, policy tags;
//! partitioning; clustering; labels; description; expiration), the Arrow schema the files were
//! written with, the row count at the snapshot, how it was exported, and every file with its
//! size, rows and checksum (SHA-256, or Cloud Storage's CRC32C for files BigQuery wrote).

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::bigquery::TableKind;
use crate::domain::{BackupId, ExportMethod, TableRef};
use crate::error::{Error, ErrorKind};
use crate::storage::{Store, get_if_exists, layout, put_if_absent};

/// Bumped on any change a version-1 reader would misread. Readers refuse newer versions.
pub const MANIFEST_VERSION: u32 = 1;
/// The version of a manifest with files that carry a CRC32C instead of a SHA-256 (EXTRACT): a
/// version-1 reader would find no checksum to compare, so it must refuse such a manifest. Every
/// other manifest keeps [`MANIFEST_VERSION`], so older releases still read STREAM backups.
pub const MANIFEST_VERSION_CRC32C: u32 = 2;

/// The version `manifest` must be written with.
pub fn version_for(tables: &[TableEntry]) -> u32 {
    let crc32c = tables
        .iter()
        .flat_map(|t| &t.files)
        .any(|f| f.crc32c.is_some());
    if crc32c {
        MANIFEST_VERSION_CRC32C
    } else {
        MANIFEST_VERSION
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub manifest_version: u32,
    pub backup_id: BackupId,
    /// Always `COMPLETE`: incomplete backups have no manifest.
    pub status: String,
    /// The instant every table was read at.
    pub snapshot_time: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_at: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `bq-backup <version>`.
    pub tool: String,
    /// The request as received, with nothing secret in it (requests carry no credentials).
    pub request: serde_json::Value,
    pub format: FormatEntry,
    pub totals: Totals,
    pub datasets: Vec<DatasetEntry>,
    pub tables: Vec<TableEntry>,
    /// Routines (functions, procedures) of the backed-up datasets: definitions only.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routines: Vec<RoutineEntry>,
    /// Never set in a manifest this service writes: marks the in-memory manifest that restore
    /// synthesizes for a backup in the Java service's layout (no manifest, no checksums, no row
    /// counts; the schema comes from the files or from the request), whose files are decoded but
    /// cannot be verified.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub legacy: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutineEntry {
    pub project: String,
    pub dataset: String,
    pub routine: String,
    /// The routine resource as BigQuery's REST API returns it (body, arguments, return type).
    pub resource: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FormatEntry {
    /// `AVRO`, `CSV`, `PARQUET` or `JSON`.
    pub format: String,
    /// `NONE`, `GZIP`, `DEFLATE`, `SNAPPY` or `ZSTD`.
    pub compression: String,
    pub csv_header: bool,
    /// The CSV delimiter as a one-character string.
    pub csv_delimiter: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub tables: u64,
    pub rows: u64,
    pub bytes: u64,
    pub files: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DatasetEntry {
    pub project: String,
    pub dataset: String,
    pub location: String,
    /// The dataset resource as BigQuery's REST API returns it.
    pub resource: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableEntry {
    pub table: TableRef,
    pub kind: TableKind,
    /// The table resource as BigQuery's REST API returns it (what restore recreates).
    pub resource: serde_json::Value,
    /// Views and materialized views: their SQL. Not exported as data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub definition: Option<String>,
    /// The Arrow schema the files were written with, as an IPC schema message in base64: lets
    /// restore decode text formats (CSV, JSON) back to exactly the same types.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub arrow_schema: Option<String>,
    /// Rows read at the snapshot; equals the sum of the files' rows.
    pub rows: u64,
    pub bytes: u64,
    pub files: Vec<FileEntry>,
    /// How this table's files are written when it differs from the backup's [`Manifest::format`]:
    /// only in legacy manifests, where each table's format comes from its files' extension.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<FormatEntry>,
    /// Tables with data: how it was exported (`STREAM` or `EXTRACT`). Absent for views and in
    /// manifests written before the method existed (all STREAM).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<ExportMethod>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FileEntry {
    /// Key relative to the repository root (`backups/{id}/{project}/{dataset}/{table}/part-00000.parquet`).
    pub path: String,
    pub bytes: u64,
    pub rows: u64,
    /// Lower-case hex SHA-256 of the file's bytes as stored. Empty (and absent from the JSON)
    /// for a file that records [`Self::crc32c`] instead.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// Files BigQuery wrote (EXTRACT): Cloud Storage's CRC32C of the bytes, lower-case hex of the
    /// big-endian value, in place of a SHA-256 (which would mean reading every byte). Verify
    /// and restore check whichever checksum a file carries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crc32c: Option<String>,
}

impl Manifest {
    pub fn table(&self, table: &TableRef) -> Option<&TableEntry> {
        self.tables.iter().find(|t| &t.table == table)
    }

    /// How the files of `table` are written: its own format entry, else the backup's.
    pub fn format_of<'a>(&'a self, table: &'a TableEntry) -> &'a FormatEntry {
        table.format.as_ref().unwrap_or(&self.format)
    }
}

/// Writes the manifest if none exists for this id: the commit point of a backup.
/// An existing manifest is a conflict, never overwritten.
pub async fn write_manifest(store: &Store, manifest: &Manifest) -> Result<(), Error> {
    let path = layout::manifest(&manifest.backup_id);
    let body = serde_json::to_vec_pretty(manifest)
        .map_err(|e| Error::internal(format!("manifest serialization failed: {e}")))?;
    match put_if_absent(
        store.object_store().as_ref(),
        &path,
        bytes::Bytes::from(body),
    )
    .await
    {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::conflict(format!(
            "backup {} already exists in {}",
            manifest.backup_id,
            store.uri()
        ))),
        Err(e) => Err(crate::storage::object_error("writing", &path, e)),
    }
}

/// Reads and checks a manifest. `None` when the backup has none (absent or incomplete).
pub async fn read_manifest(store: &Store, id: &BackupId) -> Result<Option<Manifest>, Error> {
    let path = layout::manifest(id);
    let Some(bytes) = get_if_exists(store.object_store().as_ref(), &path)
        .await
        .map_err(|e| crate::storage::object_error("reading", &path, e))?
    else {
        return Ok(None);
    };
    // A manifest that does not parse was damaged after its commit (it is written whole, once):
    // the backup's fault, named by its key, not the storage's or the caller's.
    let damaged = |problem: String| Error::damaged(path.to_string(), problem);
    let version: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| damaged(format!("is not valid JSON: {e}")))?;
    match version
        .get("manifestVersion")
        .and_then(serde_json::Value::as_u64)
    {
        Some(v) if (1..=u64::from(MANIFEST_VERSION_CRC32C)).contains(&v) => {}
        Some(v) => {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!(
                    "{path} has manifest version {v}; this bq-backup reads versions up to {MANIFEST_VERSION_CRC32C}: upgrade it"
                ),
            ));
        }
        None => return Err(damaged("has no manifestVersion".into())),
    }
    serde_json::from_value(version)
        .map(Some)
        .map_err(|e| damaged(format!("does not match its manifest version: {e}")))
}
/// The Arrow schema as an IPC schema message, base64: exact types for decoding text formats.
pub fn encode_arrow_schema(schema: &arrow::datatypes::Schema) -> String {
    let data_gen = arrow::ipc::writer::IpcDataGenerator::default();
    let mut tracker = arrow::ipc::writer::DictionaryTracker::new(false);
    let encoded = data_gen.schema_to_bytes_with_dictionary_tracker(
        schema,
        &mut tracker,
        &arrow::ipc::writer::IpcWriteOptions::default(),
    );
    let mut framed = Vec::with_capacity(encoded.ipc_message.len() + 8);
    framed.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
    framed.extend_from_slice(
        &u32::try_from(encoded.ipc_message.len())
            .unwrap_or(u32::MAX)
            .to_le_bytes(),
    );
    framed.extend_from_slice(&encoded.ipc_message);
    base64::engine::general_purpose::STANDARD.encode(framed)
}

/// Inverse of [`encode_arrow_schema`].
pub fn decode_arrow_schema(text: &str) -> Result<arrow::datatypes::Schema, String> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(text)
        .map_err(|e| e.to_string())?;
    arrow::ipc::convert::try_schema_from_ipc_buffer(&bytes).map_err(|e| e.to_string())
}
