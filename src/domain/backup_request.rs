//! The body of `POST /api/v1/backup`: the Java service's fields, unchanged, plus our extensions,
//! and [`BackupRequest::validate`], which turns it into a checked [`BackupSpec`] or lists every
//! problem with its JSON path.
//!
//! The serde types mirror the JSON one to one and keep every field optional, so that a missing
//! required field is reported by `validate` alongside all other problems instead of stopping
//! deserialization at the first one.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{BackupId, DatasetRef};
use super::request_fields::{
    self, MAX_PARALLEL_TABLES, UriFields, check_project_at, key_path, lenient, normalize_name,
    parallelism_from_thread_pool, parse_field_delimiter,
};
use super::selection::TableSelector;
use super::storage_uri::{StorageScheme, StorageUri};
use crate::error::FieldError;
use datasets::check_datasets;
use snapshot::{check_snapshot, snapshot_window_error};

pub use snapshot::Snapshot;

mod datasets;
mod snapshot;

/// Format used when the request names none (the Java service's default).
pub const DEFAULT_FORMAT: &str = "AVRO";
/// Target size of one exported file, when the request does not say.
pub const DEFAULT_FILE_SIZE_BYTES: u64 = 256 * MIB;
const MIB: u64 = 1024 * 1024;
const MIN_FILE_SIZE_BYTES: u64 = MIB;
/// 5 GiB: the largest object a single S3 PUT accepts, and far beyond any useful part size.
const MAX_FILE_SIZE_BYTES: u64 = 5 * 1024 * MIB;
const MAX_REASON_CHARS: usize = 1024;
const MAX_TTL_DAYS: i64 = 36_500;
/// The most shards one backup may run as (Cloud Run Jobs run at most 10,000 tasks).
pub const MAX_SHARDS: u32 = 10_000;
/// BigQuery's label limits.
const MAX_LABELS: usize = 64;
const MAX_LABEL_CHARS: usize = 63;

/// Parses a backup request body. Bad JSON, a wrong type or an unknown field becomes a
/// [`FieldError`] naming its path; everything else is checked by [`BackupRequest::validate`].
pub fn parse_backup_request(body: &[u8]) -> Result<BackupRequest, FieldError> {
    request_fields::parse_json(body)
}

/// `POST /api/v1/backup`, as sent. Java field names are kept exactly; the others are extensions.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub big_query: Option<BigQueryBackup>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_storage: Option<BackupStorage>,
    /// Java: the snapshot time as a local date-time in a time zone; absent = now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_time: Option<BackupTime>,
    /// Why this backup was taken; stored in the manifest (≤ 1024 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Labels stored in the manifest, following BigQuery's label rules.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    /// The snapshot time as an RFC 3339 instant; not together with `backupTime`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_parallel_tables: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file_size_bytes: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub include_dependents: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow_concurrent: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ttl_days: Option<i64>,
    /// How table data leaves BigQuery: `AUTO` (default), `STREAM` or `EXTRACT` (see
    /// [`BackupMethod`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    /// Client-side encryption of every data file (age): to whom. Absent = the service's default
    /// (`BQB_ENCRYPTION_RECIPIENTS`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub encryption: Option<EncryptionRequest>,
    /// Run the backup as this many shards, each a `bq-backup worker` process (Cloud Run Jobs
    /// tasks, a Kubernetes Indexed Job's pods, or processes started by hand), 1 to 10,000.
    /// Absent = the service runs it alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<i64>,
    /// Back up only what changed since an earlier backup in the same repository: the
    /// partitions of partitioned tables that changed since its snapshot (see
    /// [`IncrementalRequest`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub incremental: Option<IncrementalRequest>,
}

/// `incremental`: `{"base": "latest"}` or `{"base": "<backupId>"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IncrementalRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base: Option<String>,
}

/// The backup an incremental backup is taken against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IncrementalBase {
    /// The newest complete backup of the repository holding any of the selected tables.
    Latest,
    Id(BackupId),
}

/// The JSON path of `incremental.base`, for errors about the base.
pub const INCREMENTAL_BASE_FIELD: &str = "incremental.base";

/// `encryption`: the recipients' public keys (`age1…`, `ssh-ed25519 …`, `ssh-rsa …`). Checked by
/// the encryption module, which names each bad one (`encryption.recipients[i]`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EncryptionRequest {
    pub recipients: Vec<String>,
}

/// How table data leaves BigQuery (`method`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum BackupMethod {
    /// EXTRACT for every table it can export faithfully (gs:// destinations only), STREAM for
    /// the others; decided per table at planning.
    #[default]
    Auto,
    /// Every table read through the Storage Read API and written by this service.
    Stream,
    /// Every table exported by BigQuery extract jobs straight to gs://; refused (400 naming
    /// `method`) where that cannot be done faithfully.
    Extract,
}

impl BackupMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "AUTO",
            Self::Stream => "STREAM",
            Self::Extract => "EXTRACT",
        }
    }
}

/// How one table's data was (or will be) exported: what [`BackupMethod::Auto`] resolves to per
/// table, recorded in the manifest and the report.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum ExportMethod {
    /// Read through the Storage Read API and written by this service (SHA-256 per file).
    #[default]
    Stream,
    /// Written by a BigQuery extract job from a snapshot of the table (CRC32C per file, from
    /// Cloud Storage's object metadata).
    Extract,
}

impl ExportMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Stream => "STREAM",
            Self::Extract => "EXTRACT",
        }
    }
}

/// `bigQuery`: what to back up.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BigQueryBackup {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Empty or absent: every dataset of the project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables_to_backup: Option<Vec<DatasetToBackup>>,
}

/// `bigQuery.tablesToBackup[]`: one dataset and which of its tables (see [`TableSelector`]).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DatasetToBackup {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// Java: a glob over table names (`events_*`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_filter: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_regex: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exclude_tables: Option<Vec<String>>,
}

/// `backupStorage`: where to write.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupStorage {
    /// Any supported store (gs, s3, az, file, memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcs_options: Option<GcsBackupOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_options: Option<ExportOptions>,
}

/// `backupStorage.gcsOptions` (Java).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcsBackupOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub export_options: Option<ExportOptions>,
}

/// `…exportOptions` (Java field set). Booleans and integers accept Jackson-style strings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExportOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub overwrite: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub header: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compression: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_delimiter: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub thread_pool_size: Option<i64>,
    /// Accepted and ignored: the Java service sized a per-request queue with it; our work queue
    /// is bounded once, by the service configuration, so one request cannot resize it.
    #[serde(
        default,
        deserialize_with = "lenient::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub thread_queue_capacity: Option<i64>,
}

/// `backupTime` (Java): `localDateTime` like `2026-11-20T23:59:00` in `timezone` (IANA name
/// like `America/Los_Angeles`, or an offset like `+01:00`; default UTC).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackupTime {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub local_date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timezone: Option<String>,
}

/// A checked backup request: every value is valid and defaults are applied.
#[derive(Debug, Clone)]
pub struct BackupSpec {
    pub project: String,
    pub storage: StorageUri,
    /// JSON path of the field that held the storage URI (`backupStorage.gcsOptions.uri` or
    /// `backupStorage.uri`), for errors about the place it names.
    pub storage_field: String,
    pub datasets: DatasetSelection,
    /// Upper-case format name (`AVRO` by default). Not checked against the supported formats
    /// here: the formats module owns that list and reports on [`Self::format_field`].
    pub format: String,
    /// JSON path of the format (where it was, or would have been, given).
    pub format_field: String,
    /// Upper-case compression name; `None` for none (absent, blank or `NONE`).
    pub compression: Option<String>,
    pub compression_field: String,
    /// CSV only: write a header row. Default true, as the Java service (and BigQuery's
    /// `printHeader`) did. Ignored for other formats rather than rejected, because Java clients
    /// send `header` with every format.
    pub csv_header: bool,
    /// CSV only: the field delimiter byte (ASCII), `,` by default.
    pub field_delimiter: u8,
    /// Whether an existing backup with the same id may be replaced (Java's `overwrite`).
    pub overwrite: bool,
    /// When the snapshot is taken; `None` = at the start of the job.
    pub snapshot: Option<Snapshot>,
    pub reason: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// `None` = the service's configured default.
    pub max_parallel_tables: Option<u32>,
    pub file_size_bytes: u64,
    pub dry_run: bool,
    pub wait: bool,
    pub include_dependents: bool,
    pub allow_concurrent: bool,
    /// Days after which the backup may be pruned; `None` = kept until deleted.
    pub ttl_days: Option<u32>,
    /// `method`; EXTRACT is only accepted with a gs:// destination (the format and the columns
    /// are checked later, where they are known).
    pub method: BackupMethod,
    /// `shards`: the backup is planned here and run by that many worker processes.
    pub shards: Option<u32>,
    /// `incremental.base`: only the partitions that changed since that backup are read.
    pub incremental: Option<IncrementalBase>,
    /// Things that were accepted but not used as written (e.g. `threadPoolSize` when
    /// `maxParallelTables` is also given); worth showing to the caller.
    pub warnings: Vec<FieldError>,
}

/// Which datasets to back up.
#[derive(Debug, Clone)]
pub enum DatasetSelection {
    /// Every dataset of the project (no `tablesToBackup`, or an empty list).
    All,
    Listed(Vec<DatasetEntry>),
}

/// One `tablesToBackup` entry, checked.
#[derive(Debug, Clone)]
pub struct DatasetEntry {
    pub dataset: DatasetRef,
    pub tables: TableSelector,
    /// JSON path of the entry (`bigQuery.tablesToBackup[0]`), for errors found later, such as a
    /// named table that does not exist (`{field}.tables`).
    pub field: String,
}

impl BackupSpec {
    /// The snapshot instant, if the request fixed one.
    pub fn snapshot_time(&self) -> Option<DateTime<Utc>> {
        self.snapshot.as_ref().map(|s| s.at)
    }

    /// BigQuery can only read a table as of the last 7 days, and not the future. Checked at
    /// validation and worth checking again when a queued job starts.
    pub fn snapshot_window_error(&self, now: DateTime<Utc>) -> Option<FieldError> {
        let snapshot = self.snapshot.as_ref()?;
        snapshot_window_error(snapshot, now)
    }
}

impl BackupRequest {
    /// Checks everything and applies defaults. Returns every problem found, each naming its JSON
    /// path — never only the first. `now` is passed in so the snapshot window is testable.
    pub fn validate(self, now: DateTime<Utc>) -> Result<BackupSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();

        let big_query = self.big_query.unwrap_or_default();
        let project = check_project_at("bigQuery.projectId", big_query.project_id, &mut errors);
        let datasets = check_datasets(
            project.as_deref().unwrap_or_default(),
            big_query.tables_to_backup.unwrap_or_default(),
            &mut errors,
        );

        let storage_given = self.backup_storage.is_some();
        let storage_section = self.backup_storage.unwrap_or_default();
        let gcs = storage_section.gcs_options.unwrap_or_default();
        let storage = if storage_given {
            request_fields::resolve_storage_uri(
                UriFields {
                    section: "backupStorage",
                    uri: storage_section.uri.as_deref(),
                    gcs_uri: gcs.uri.as_deref(),
                    gcs_present: gcs.uri.is_some() || gcs.export_options.is_some(),
                },
                &mut errors,
            )
        } else {
            errors.push(FieldError::new("backupStorage", "is required"));
            None
        };

        // Export options may sit under gcsOptions (Java) or beside the uri (extension).
        let gcs_options_path = "backupStorage.gcsOptions.exportOptions";
        let (options, options_path) = match (gcs.export_options, storage_section.export_options) {
            (Some(java), Some(_)) => {
                errors.push(FieldError::new(
                    "backupStorage.exportOptions",
                    format!("give export options in one place: here or in {gcs_options_path}"),
                ));
                (java, gcs_options_path)
            }
            (Some(java), None) => (java, gcs_options_path),
            (None, Some(ext)) => (ext, "backupStorage.exportOptions"),
            (None, None) if gcs.uri.is_some() => (ExportOptions::default(), gcs_options_path),
            (None, None) => (ExportOptions::default(), "backupStorage.exportOptions"),
        };
        let field_delimiter = match options.field_delimiter.as_deref() {
            None => b',',
            Some(text) => parse_field_delimiter(text).unwrap_or_else(|message| {
                errors.push(FieldError::new(
                    format!("{options_path}.fieldDelimiter"),
                    message,
                ));
                b','
            }),
        };

        let max_parallel_tables = match (self.max_parallel_tables, options.thread_pool_size) {
            (Some(n), pool) => {
                if pool.is_some() {
                    warnings.push(FieldError::new(
                        format!("{options_path}.threadPoolSize"),
                        "ignored: maxParallelTables takes precedence",
                    ));
                }
                in_range(
                    n,
                    1,
                    i64::from(MAX_PARALLEL_TABLES),
                    "maxParallelTables",
                    &mut errors,
                )
            }
            (None, Some(pool)) => parallelism_from_thread_pool(
                pool,
                &format!("{options_path}.threadPoolSize"),
                &mut errors,
                &mut warnings,
            ),
            (None, None) => None,
        };

        let snapshot = check_snapshot(self.as_of, self.backup_time, &mut errors);
        if let Some(error) = snapshot
            .as_ref()
            .and_then(|s| snapshot_window_error(s, now))
        {
            errors.push(error);
        }

        if let Some(reason) = &self.reason {
            let chars = reason.chars().count();
            if chars > MAX_REASON_CHARS {
                errors.push(FieldError::new(
                    "reason",
                    format!("must be at most {MAX_REASON_CHARS} characters (it has {chars})"),
                ));
            }
        }
        let labels = self.labels.unwrap_or_default();
        check_labels(&labels, &mut errors);

        let file_size_bytes = match self.file_size_bytes {
            None => DEFAULT_FILE_SIZE_BYTES,
            Some(n) => in_range(
                n,
                MIN_FILE_SIZE_BYTES as i64,
                MAX_FILE_SIZE_BYTES as i64,
                "fileSizeBytes",
                &mut errors,
            )
            .unwrap_or(DEFAULT_FILE_SIZE_BYTES),
        };
        let ttl_days = self
            .ttl_days
            .and_then(|n| in_range(n, 1, MAX_TTL_DAYS, "ttlDays", &mut errors));
        let method = check_method(
            self.method.as_deref(),
            storage.as_ref().map(|(uri, _)| uri),
            &mut errors,
        );
        let shards = self
            .shards
            .and_then(|n| in_range(n, 1, i64::from(MAX_SHARDS), "shards", &mut errors));
        if shards.is_some() && method == BackupMethod::Extract {
            errors.push(FieldError::new(
                "shards",
                "a sharded backup reads its tables through the Storage Read API, which EXTRACT does not use: leave out one of them (EXTRACT needs no shards: BigQuery's own jobs write the files)",
            ));
        }

        let incremental = self
            .incremental
            .as_ref()
            .and_then(|i| check_incremental(i, method, shards, &mut errors));

        let (Some(project), Some((storage, storage_field)), Some(datasets)) =
            (project, storage, datasets)
        else {
            debug_assert!(
                !errors.is_empty(),
                "a required value is missing without an error"
            );
            return Err(errors);
        };
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(BackupSpec {
            project,
            storage,
            storage_field,
            datasets,
            format: normalize_name(options.format.as_deref())
                .unwrap_or_else(|| DEFAULT_FORMAT.to_owned()),
            format_field: format!("{options_path}.format"),
            compression: normalize_name(options.compression.as_deref()).filter(|c| c != "NONE"),
            compression_field: format!("{options_path}.compression"),
            csv_header: options.header.unwrap_or(true),
            field_delimiter,
            overwrite: options.overwrite.unwrap_or(false),
            snapshot,
            reason: self.reason,
            labels,
            max_parallel_tables,
            file_size_bytes,
            dry_run: self.dry_run.unwrap_or(false),
            wait: self.wait.unwrap_or(false),
            include_dependents: self.include_dependents.unwrap_or(false),
            allow_concurrent: self.allow_concurrent.unwrap_or(false),
            ttl_days,
            method,
            shards,
            incremental,
            warnings,
        })
    }
}

/// `incremental`: a base (`latest` or a backup id), for a backup this service reads partition
/// by partition itself: EXTRACT exports whole tables, and the shards of a sharded backup split
/// whole tables' read streams.
fn check_incremental(
    request: &IncrementalRequest,
    method: BackupMethod,
    shards: Option<u32>,
    errors: &mut Vec<FieldError>,
) -> Option<IncrementalBase> {
    let before = errors.len();
    if method == BackupMethod::Extract {
        errors.push(FieldError::new(
            "method",
            "EXTRACT exports whole tables, and an incremental backup reads only the changed partitions of a table: use STREAM or AUTO with `incremental`",
        ));
    }
    if shards.is_some() {
        errors.push(FieldError::new(
            "shards",
            "a sharded backup cannot be incremental yet: leave out `shards` or `incremental`",
        ));
    }
    let base = match request.base.as_deref().map(str::trim) {
        None | Some("") => {
            errors.push(FieldError::new(
                INCREMENTAL_BASE_FIELD,
                "is required: \"latest\" (the newest backup of these tables in the repository) or a backup id",
            ));
            None
        }
        Some(text) if text.eq_ignore_ascii_case("latest") => Some(IncrementalBase::Latest),
        Some(text) => match BackupId::parse(text) {
            Ok(id) => Some(IncrementalBase::Id(id)),
            Err(e) => {
                errors.push(FieldError::new(
                    INCREMENTAL_BASE_FIELD,
                    format!("{e}, or \"latest\""),
                ));
                None
            }
        },
    };
    base.filter(|_| errors.len() == before)
}

/// `method`: one of the three names (any case); EXTRACT needs a gs:// destination, because
/// BigQuery's extract jobs write only to Cloud Storage.
fn check_method(
    given: Option<&str>,
    storage: Option<&StorageUri>,
    errors: &mut Vec<FieldError>,
) -> BackupMethod {
    let method = match given.map(|m| m.trim().to_ascii_uppercase()).as_deref() {
        None | Some("AUTO") => BackupMethod::Auto,
        Some("STREAM") => BackupMethod::Stream,
        Some("EXTRACT") => BackupMethod::Extract,
        Some(_) => {
            errors.push(FieldError::new(
                "method",
                format!(
                    "must be AUTO, STREAM or EXTRACT (got `{}`)",
                    given.unwrap_or_default()
                ),
            ));
            return BackupMethod::Auto;
        }
    };
    if method == BackupMethod::Extract
        && let Some(uri) = storage
        && uri.scheme() != StorageScheme::Gs
    {
        errors.push(FieldError::new(
            "method",
            format!(
                "EXTRACT needs a gs:// destination: BigQuery's extract jobs write only to Cloud Storage, and {uri} is not; use STREAM or AUTO"
            ),
        ));
    }
    method
}

/// `value` as `T` if within `min..=max`, else an error on `field`.
fn in_range<T: TryFrom<i64>>(
    value: i64,
    min: i64,
    max: i64,
    field: &str,
    errors: &mut Vec<FieldError>,
) -> Option<T> {
    match T::try_from(value) {
        Ok(v) if (min..=max).contains(&value) => Some(v),
        _ => {
            errors.push(FieldError::new(
                field,
                format!("must be between {min} and {max}"),
            ));
            None
        }
    }
}

/// BigQuery's label rules: at most 64; keys 1–63 characters, values 0–63, made of lower-case
/// letters (international ones too), digits, `_` and `-`; keys start with a letter.
fn check_labels(labels: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    if labels.len() > MAX_LABELS {
        errors.push(FieldError::new(
            "labels",
            format!("at most {MAX_LABELS} labels (got {})", labels.len()),
        ));
    }
    let lower_letter = |c: char| c.is_alphabetic() && !c.is_uppercase();
    let allowed = |c: char| lower_letter(c) || c.is_numeric() || c == '_' || c == '-';
    for (key, value) in labels {
        let field = key_path("labels", key);
        let key_len = key.chars().count();
        let key_ok = (1..=MAX_LABEL_CHARS).contains(&key_len)
            && key.chars().next().is_some_and(lower_letter)
            && key.chars().all(allowed);
        if !key_ok {
            errors.push(FieldError::new(
                field.clone(),
                format!("label key `{key}` must have 1–63 lower-case letters, digits, `_` or `-`, starting with a letter"),
            ));
        }
        if value.chars().count() > MAX_LABEL_CHARS || !value.chars().all(allowed) {
            errors.push(FieldError::new(
                field,
                format!("label value `{value}` must have at most 63 lower-case letters, digits, `_` or `-`"),
            ));
        }
    }
}

#[cfg(test)]
mod tests;
