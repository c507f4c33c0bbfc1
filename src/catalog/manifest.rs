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
//!
//! It is read strictly ([`crate::storage::versioned`]): a status, format or compression this
//! build does not know is a damaged manifest naming the field, and a manifest of a newer version
//! is refused (upgrade), never misread. Resources are kept whole and read through
//! [`crate::bigquery::resource`].

use std::collections::BTreeMap;

use base64::Engine;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::bigquery::{DatasetResource, ResourceError, RoutineResource, TableKind, TableResource};
use crate::domain::{BackupId, ExportMethod, TableRef};
use crate::error::{Error, ErrorKind};
use crate::formats::{Compression, DecodeOptions, EncodeOptions, Format};
use crate::storage::versioned::{self, FileError, VersionedFile};
use crate::storage::{Store, get_if_exists, layout, put_if_absent};

/// Bumped on any change a version-1 reader would misread. Readers refuse newer versions.
pub const MANIFEST_VERSION: u32 = 1;
/// The version of a manifest with files that carry a CRC32C instead of a SHA-256 (EXTRACT): a
/// version-1 reader would find no checksum to compare, so it must refuse such a manifest. Every
/// other manifest keeps [`MANIFEST_VERSION`], so older releases still read STREAM backups.
pub const MANIFEST_VERSION_CRC32C: u32 = 2;
/// The version of a manifest whose files are encrypted (it has an `encryption` block): a reader
/// of an older version would hand ciphertext to its decoders.
pub const MANIFEST_VERSION_ENCRYPTED: u32 = 3;
/// The version of an incremental backup's manifest (it has an `incremental` block and lists
/// files of other backups): a reader of an older version would restore it, but its prune and
/// delete would not know that other backups' files are needed, so it must refuse it.
pub const MANIFEST_VERSION_INCREMENTAL: u32 = 4;

/// The version a manifest with `tables` (and `encryption`, and `incremental`) must be written with.
pub fn version_for(
    tables: &[TableEntry],
    encryption: Option<&EncryptionEntry>,
    incremental: Option<&IncrementalEntry>,
) -> u32 {
    let crc32c = tables
        .iter()
        .flat_map(|t| &t.files)
        .any(|f| f.crc32c.is_some());
    if incremental.is_some() {
        MANIFEST_VERSION_INCREMENTAL
    } else if encryption.is_some() {
        MANIFEST_VERSION_ENCRYPTED
    } else if crc32c {
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
    pub status: ManifestStatus,
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
    /// Present when every data file is encrypted (age): to whom. The manifest itself is in
    /// clear and holds no data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionEntry>,
    /// Present when the backup is incremental: some of its files are those of earlier backups
    /// (the partitions that did not change since its base), listed by their own keys.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalEntry>,
}

/// An incremental backup's place in its chain: the backup it was taken against, and every
/// backup whose files it lists (its base, and what the base itself reused). None of those may
/// be deleted while this backup exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IncrementalEntry {
    pub base: BackupId,
    /// Sorted, without this backup.
    pub depends_on: Vec<BackupId>,
}

/// How a backup's files are encrypted: the scheme (`AGE`) and the public keys of the recipients
/// every file was encrypted to (never a secret). Each file's `bytes` and `sha256` are of the
/// ciphertext as stored, its `plaintextSha256` of what decrypts from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionEntry {
    pub scheme: EncryptionScheme,
    pub recipients: Vec<String>,
}

/// The encryption schemes this build reads; another is refused, never misread.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum EncryptionScheme {
    Age,
}

impl EncryptionEntry {
    pub fn age(recipients: &[String]) -> Self {
        Self {
            scheme: EncryptionScheme::Age,
            recipients: recipients.to_vec(),
        }
    }
}

impl VersionedFile for Manifest {
    const WHAT: &'static str = "manifest";
    // The newest version read; a manifest is written with the oldest version that holds it
    // ([`version_for`]).
    const VERSION: u32 = MANIFEST_VERSION_INCREMENTAL;
    const VERSION_FIELD: &'static str = "manifestVersion";
    // Every manifest ever written names its version.
    const VERSION_REQUIRED: bool = true;
}

/// What a manifest says of its backup.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ManifestStatus {
    /// Every file was written and checked: the only status a manifest is written with.
    Complete,
}

impl ManifestStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Complete => "COMPLETE",
        }
    }
}

impl std::fmt::Display for ManifestStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RoutineEntry {
    pub project: String,
    pub dataset: String,
    pub routine: String,
    /// The routine resource as BigQuery's REST API returns it (body, arguments, return type).
    pub resource: RoutineResource,
}

/// How a backup's files are written. Stored with the names requests use (`"format": "CSV"`,
/// `"compression": "GZIP"`, `"csvDelimiter": ","`); a name this build does not know is an
/// error, not a default.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FormatEntry {
    pub format: Format,
    pub compression: Compression,
    pub csv_header: bool,
    /// The CSV delimiter, stored as a one-character string.
    #[serde(with = "csv_delimiter")]
    pub csv_delimiter: u8,
}

impl FormatEntry {
    /// What files written with `options` record.
    pub fn of(options: &EncodeOptions) -> Self {
        Self {
            format: options.format,
            compression: options.compression,
            csv_header: options.csv_header,
            csv_delimiter: options.csv_delimiter,
        }
    }

    /// How to write more files like these (the shards of a sharded backup).
    pub fn encode_options(&self) -> EncodeOptions {
        EncodeOptions {
            format: self.format,
            compression: self.compression,
            csv_header: self.csv_header,
            csv_delimiter: self.csv_delimiter,
        }
    }

    /// How to decode files written this way.
    pub fn decode_options(&self) -> DecodeOptions {
        DecodeOptions {
            compression: self.compression,
            csv_header: self.csv_header,
            csv_delimiter: self.csv_delimiter,
            ..DecodeOptions::new(self.format)
        }
    }
}

/// The CSV delimiter as the one-character string manifests hold (`","`, `";"`, `"\t"`).
mod csv_delimiter {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(delimiter: &u8, serializer: S) -> Result<S::Ok, S::Error> {
        let mut buffer = [0u8; 4];
        serializer.serialize_str(char::from(*delimiter).encode_utf8(&mut buffer))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u8, D::Error> {
        let text = String::deserialize(deserializer)?;
        match text.as_bytes() {
            [byte] if byte.is_ascii() => Ok(*byte),
            _ => Err(D::Error::custom(format!(
                "`{text}` is not a delimiter: expected one ASCII character"
            ))),
        }
    }
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
    pub resource: DatasetResource,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TableEntry {
    pub table: TableRef,
    pub kind: TableKind,
    /// The table resource as BigQuery's REST API returns it (what restore recreates).
    pub resource: TableResource,
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
    /// Partitioned tables read partition by partition: what was read and what was reused. Each
    /// of its files names its partition; a file that names none holds rows found outside every
    /// partition BigQuery listed (a partition made while the backup started), and makes the
    /// entry unfit as an incremental backup's base.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partitions: Option<PartitionsEntry>,
}

/// How a partitioned table's partitions were backed up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PartitionsEntry {
    /// Partitions read at this backup's snapshot.
    pub read: u64,
    /// Partitions unchanged since the base's snapshot: their files are the base's.
    #[serde(default)]
    pub reused: u64,
    /// Partitions of the base that no longer exist.
    #[serde(default)]
    pub dropped: u64,
}

impl TableEntry {
    /// Whether an incremental backup may reuse this entry's files partition by partition.
    pub fn reusable_by_partition(&self) -> bool {
        self.partitions.is_some() && self.files.iter().all(|f| f.partition.is_some())
    }
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
    /// Encrypted backups: lower-case hex SHA-256 of the file's plaintext (what `age -d` gives).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plaintext_sha256: Option<String>,
    /// The partition (BigQuery's `partition_id`) every row of the file belongs to, in a table
    /// read partition by partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<String>,
}

impl Manifest {
    pub fn table(&self, table: &TableRef) -> Option<&TableEntry> {
        self.tables.iter().find(|t| &t.table == table)
    }

    /// How the files of `table` are written: its own format entry, else the backup's.
    pub fn format_of<'a>(&'a self, table: &'a TableEntry) -> &'a FormatEntry {
        table.format.as_ref().unwrap_or(&self.format)
    }

    /// The manifest's key, for naming it in errors.
    pub fn key(&self) -> String {
        layout::manifest(&self.backup_id).to_string()
    }

    /// A recorded resource of `table` that does not read as BigQuery documents it: the manifest
    /// is damaged (it is written whole, once, from what BigQuery answered).
    pub fn damaged_resource(&self, table: &impl std::fmt::Display, e: ResourceError) -> Error {
        Error::damaged(
            self.key(),
            format!("records a resource for {table} whose {e}"),
        )
    }
}

/// Writes the manifest if none exists for this id: the commit point of a backup.
/// An existing manifest is a conflict, never overwritten.
pub async fn write_manifest(store: &Store, manifest: &Manifest) -> Result<(), Error> {
    let path = layout::manifest(&manifest.backup_id);
    let body = versioned::encode_pretty(manifest)?;
    match put_if_absent(store.object_store().as_ref(), &path, body).await {
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
    parse_manifest(path.as_ref(), &bytes).map(Some)
}

/// A manifest's bytes, read strictly. `key` names it in errors.
pub fn parse_manifest(key: &str, bytes: &[u8]) -> Result<Manifest, Error> {
    versioned::decode::<Manifest>(bytes).map_err(|e| match e {
        // Written by a newer bq-backup: this one cannot know what it means.
        e @ FileError::Newer { .. } => Error::new(ErrorKind::InvalidInput, format!("{key} {e}")),
        // A manifest that does not parse was damaged after its commit (it is written whole,
        // once): the backup's fault, named by its key, not the storage's or the caller's.
        e => Error::damaged(key, e.to_string()),
    })
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

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};

    use super::*;

    /// Manifests as bq-backup wrote them before its files were typed (a real backup of a
    /// partitioned, clustered table, a view and a SQL function on bqemulator): every backup
    /// written since must keep reading.
    const V1_CSV: &str = include_str!("../../tests/fixtures/manifests/v1-csv-gzip.json");
    const V1_PARQUET: &str = include_str!("../../tests/fixtures/manifests/v1-parquet-snappy.json");
    const KEY: &str = "backups/20261201_014646/manifest.json";

    fn edited(edit: impl FnOnce(&mut Value)) -> Vec<u8> {
        let mut value: Value = serde_json::from_str(V1_CSV).unwrap();
        edit(&mut value);
        serde_json::to_vec(&value).unwrap()
    }

    #[test]
    fn manifests_written_before_typing_still_read_and_write_back_byte_for_byte() {
        for fixture in [V1_CSV, V1_PARQUET] {
            let manifest = parse_manifest(KEY, fixture.as_bytes()).unwrap();
            assert_eq!(manifest.status, ManifestStatus::Complete);
            let again = versioned::encode_pretty(&manifest).unwrap();
            assert_eq!(std::str::from_utf8(&again).unwrap(), fixture);
        }
        let csv = parse_manifest(KEY, V1_CSV.as_bytes()).unwrap();
        assert_eq!(csv.format.format, Format::Csv);
        assert_eq!(csv.format.compression, Compression::Gzip);
        assert_eq!(csv.format.csv_delimiter, b';');
        let options = csv.format.decode_options();
        assert_eq!((options.format, options.csv_delimiter), (Format::Csv, b';'));
        let parquet = parse_manifest(KEY, V1_PARQUET.as_bytes()).unwrap();
        assert_eq!(
            (parquet.format.format, parquet.format.compression),
            (Format::Parquet, Compression::Snappy)
        );
    }

    #[test]
    fn the_recorded_resources_read_through_their_accessors() {
        let manifest = parse_manifest(KEY, V1_CSV.as_bytes()).unwrap();
        let orders = &manifest.tables[0];
        assert_eq!(orders.kind, TableKind::Table);
        let resource = &orders.resource;
        assert_eq!(resource.description().unwrap(), Some("orders by day"));
        assert_eq!(resource.clustering().unwrap(), ["id"]);
        let partitioning = resource.time_partitioning().unwrap().unwrap();
        assert_eq!(partitioning.field.as_deref(), Some("ts"));
        assert_eq!(resource.schema().unwrap().unwrap().fields.len(), 4);
        assert_eq!(resource.labels().unwrap()["team"], "shop");
        let view = &manifest.tables[1];
        assert_eq!(view.kind, TableKind::View);
        assert_eq!(
            view.resource.view_query().unwrap(),
            view.definition.as_deref()
        );
        assert_eq!(
            manifest.datasets[0].resource.location().unwrap(),
            Some("US")
        );
        let routine = &manifest.routines[0].resource;
        assert_eq!(routine.routine_id().unwrap(), "add_one");
        assert!(routine.is_sql().unwrap());
    }

    /// The message of a damaged manifest names its key and the field.
    fn damaged(bytes: &[u8]) -> String {
        let err = parse_manifest(KEY, bytes).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::DamagedBackup, "{err}");
        assert_eq!(err.details()[0].field, KEY, "{err}");
        err.to_string()
    }

    #[test]
    fn an_unknown_status_format_or_compression_is_a_damaged_manifest_naming_the_field() {
        let message = damaged(&edited(|m| m["status"] = json!("PARTIAL")));
        assert!(message.contains(KEY), "{message}");
        assert!(
            message.contains("at `status`: unknown variant `PARTIAL`, expected `COMPLETE`"),
            "{message}"
        );
        let message = damaged(&edited(|m| m["format"]["format"] = json!("XML")));
        assert!(
            message.contains("at `format.format`: unknown variant `XML`"),
            "{message}"
        );
        let message = damaged(&edited(|m| m["format"]["compression"] = json!("BROTLI")));
        assert!(
            message.contains("at `format.compression`: unknown variant `BROTLI`"),
            "{message}"
        );
        // Names are exact, as written: a lower-case name is not read as the upper-case one.
        let message = damaged(&edited(|m| m["format"]["compression"] = json!("gzip")));
        assert!(message.contains("at `format.compression`"), "{message}");
        let message = damaged(&edited(|m| m["format"]["csvDelimiter"] = json!(";;")));
        assert!(message.contains("at `format.csvDelimiter`"), "{message}");
        let message = damaged(&edited(|m| m["tables"][1]["kind"] = json!("TEMPORARY")));
        assert!(message.contains("at `tables[1].kind`"), "{message}");
        let message = damaged(&edited(|m| m["tables"][0]["resource"] = json!("orders")));
        assert!(message.contains("at `tables[0].resource`"), "{message}");
    }

    #[test]
    fn the_version_is_checked_before_anything_else() {
        let newer = edited(|m| {
            m["manifestVersion"] = json!(5);
            m["status"] = json!("SOMETHING_NEW");
        });
        let err = parse_manifest(KEY, &newer).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidInput, "{err}");
        assert!(
            err.to_string()
                .contains("is manifest version 5, written by a newer bq-backup; this one reads up to version 4: upgrade it"),
            "{err}"
        );
        let message = damaged(&edited(|m| {
            m.as_object_mut().unwrap().remove("manifestVersion");
        }));
        assert!(message.contains("has no `manifestVersion`"), "{message}");
        let message = damaged(&edited(|m| m["manifestVersion"] = json!("1")));
        assert!(message.contains("not a version"), "{message}");
        let message = damaged(b"{\"manifestVersion\": 1,");
        assert!(message.contains("is not valid JSON"), "{message}");
    }

    #[test]
    fn a_format_entry_keeps_what_the_files_were_written_with() {
        let options = EncodeOptions {
            compression: Compression::Gzip,
            csv_delimiter: b'\t',
            ..EncodeOptions::new(Format::Csv)
        };
        let entry = FormatEntry::of(&options);
        let json = serde_json::to_value(entry).unwrap();
        assert_eq!(
            json,
            json!({ "format": "CSV", "compression": "GZIP", "csvHeader": true, "csvDelimiter": "\t" })
        );
        let back: FormatEntry = serde_json::from_value(json).unwrap();
        assert_eq!(back, entry);
        assert_eq!(back.decode_options().compression, Compression::Gzip);
    }
}
