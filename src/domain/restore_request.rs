//! The body of `POST /api/v1/restore`: the Java service's fields, unchanged, plus our extensions,
//! and [`RestoreRequest::validate`], which turns it into a checked [`RestoreSpec`] or lists every
//! problem with its JSON path.
//!
//! As for backups, every serde field is optional so that missing fields are reported together
//! with all other problems.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use super::ids::BackupId;
use super::is_valid_project_id;
use super::request_fields::{
    self, UriFields, check_project_at, lenient, normalize_name, parallelism_from_thread_pool,
    parse_field_delimiter,
};
use super::storage_uri::StorageUri;
use crate::error::FieldError;
use names::{check_naming, check_source_datasets, check_table_choices};
use schemas::check_schemas;

mod names;
mod schemas;

/// How the Java service named restored datasets (`restored_<dataset>`), kept as our default so
/// its users get the same result.
pub const DEFAULT_DATASET_PREFIX: &str = "restored_";

/// Parses a restore request body. Bad JSON, a wrong type or an unknown field becomes a
/// [`FieldError`] naming its path; everything else is checked by [`RestoreRequest::validate`].
pub fn parse_restore_request(body: &[u8]) -> Result<RestoreRequest, FieldError> {
    request_fields::parse_json(body)
}

/// `POST /api/v1/restore`, as sent. Java field names are kept exactly; the others are extensions.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub big_query: Option<BigQueryRestore>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_storage: Option<RestoreStorage>,
    /// A backup id, or `latest`; instead of Java's `backupTimestamp`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_id: Option<String>,
    /// Only these tables: `dataset.table`, or `table` in every restored dataset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// Prefix for restored dataset names; default `restored_`, `""` keeps the source names.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset_prefix: Option<String>,
    /// Explicit source → target dataset names; not together with `datasetPrefix`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_datasets: Option<BTreeMap<String, String>>,
    /// Alias of `importOptions.restoreRegion`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<String>,
    /// `dataset.table` → BigQuery schema fields, for backups that carry no schema (Java's
    /// CSV/JSON backups, which it restored with autodetect).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schemas: Option<BTreeMap<String, serde_json::Value>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
    /// Restore the tables in this many shards, each a `bq-backup worker --restore-job` process,
    /// 1 to 10,000; not with `WRITE_APPEND` (a shard run again would append twice).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub shards: Option<i64>,
    /// A restore drill: restore into scratch datasets, compare every table with the manifest
    /// (rows and content), remove the scratch datasets, and record the result beside the backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub drill: Option<bool>,
}

/// `bigQuery`: where to restore to.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BigQueryRestore {
    /// The target project.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    /// Source dataset names; empty or absent = every dataset of the backup.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datasets_to_restore: Option<Vec<String>>,
}

/// `restoreStorage`: where the backup is.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreStorage {
    /// Any supported store (gs, s3, az, file, memory).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gcs_options: Option<GcsRestoreOptions>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_options: Option<ImportOptions>,
}

/// `restoreStorage.gcsOptions` (Java).
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GcsRestoreOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    /// `yyyyMMdd_HHmmss`: the backup to restore.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub backup_timestamp: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id_of_backup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub import_options: Option<ImportOptions>,
}

/// `…importOptions` (Java field set). Booleans and integers accept Jackson-style strings.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ImportOptions {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub restore_region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub header: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field_delimiter: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::bool_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub ignore_unknown_values: Option<bool>,
    #[serde(
        default,
        deserialize_with = "lenient::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub max_bad_records: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_disposition: Option<String>,
    #[serde(
        default,
        deserialize_with = "lenient::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub thread_pool_size: Option<i64>,
    /// Accepted and ignored: our work queue is bounded once, by the service configuration.
    #[serde(
        default,
        deserialize_with = "lenient::int_opt",
        skip_serializing_if = "Option::is_none"
    )]
    pub thread_queue_capacity: Option<i64>,
}

/// What to do when a target table already has data (BigQuery's write dispositions).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum WriteDisposition {
    /// Refuse to restore into a table that has rows (the safe default).
    #[default]
    WriteEmpty,
    WriteTruncate,
    WriteAppend,
}

impl WriteDisposition {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WriteEmpty => "WRITE_EMPTY",
            Self::WriteTruncate => "WRITE_TRUNCATE",
            Self::WriteAppend => "WRITE_APPEND",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_uppercase().as_str() {
            "WRITE_EMPTY" => Some(Self::WriteEmpty),
            "WRITE_TRUNCATE" => Some(Self::WriteTruncate),
            "WRITE_APPEND" => Some(Self::WriteAppend),
            _ => None,
        }
    }
}

impl fmt::Display for WriteDisposition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which backup to restore.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupSelector {
    /// The newest committed backup under the storage root.
    Latest,
    Id(BackupId),
}

/// A table of the backup, by source dataset and name.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SourceTable {
    pub dataset: String,
    pub table: String,
}

/// One `tables[]` entry: a table in one dataset, or (without a dataset) in every restored one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableChoice {
    pub dataset: Option<String>,
    pub table: String,
}

/// A checked restore request: every value is valid and defaults are applied.
#[derive(Debug, Clone)]
pub struct RestoreSpec {
    pub target_project: String,
    pub storage: StorageUri,
    /// JSON path of the field that held the storage URI (`restoreStorage.gcsOptions.uri` or
    /// `restoreStorage.uri`), for errors about the place it names.
    pub storage_field: String,
    pub backup: BackupSelector,
    /// JSON path of the backup choice (`backupId` or `…gcsOptions.backupTimestamp`), for a 404.
    pub backup_field: String,
    /// The project the backup was taken from. `None`: take it from the manifest, or from the
    /// single project directory of a Java-layout backup.
    pub source_project: Option<String>,
    /// Source datasets to restore; `None` = every dataset of the backup.
    pub datasets: Option<Vec<String>>,
    /// Table subset; empty = every table of the chosen datasets.
    pub tables: Vec<TableChoice>,
    /// BigQuery location for created datasets (`restoreRegion` / `location`); `None` = the
    /// location recorded in the backup, else BigQuery's default.
    pub location: Option<String>,
    /// Upper-case format name when given; only needed for Java-layout backups without a
    /// manifest (and even there the file extension usually tells). Checked by the formats module.
    pub format: Option<String>,
    pub format_field: String,
    /// CSV: the files start with a header row (default true, matching how backups are written).
    pub csv_header: bool,
    pub field_delimiter: u8,
    pub ignore_unknown_values: bool,
    pub max_bad_records: u32,
    pub write_disposition: WriteDisposition,
    pub max_parallel_tables: Option<u32>,
    /// Schemas supplied for schemaless backups: a JSON array of BigQuery field objects each.
    pub schemas: BTreeMap<SourceTable, serde_json::Value>,
    pub dry_run: bool,
    pub wait: bool,
    /// `shards`: the tables are restored by that many worker processes.
    pub shards: Option<u32>,
    /// `drill`: restored into scratch datasets (named by a prefix of their own, `bqb_drill_…_`),
    /// compared with the manifest and removed again.
    pub drill: bool,
    pub warnings: Vec<FieldError>,
    dataset_prefix: String,
    target_datasets: BTreeMap<String, String>,
}

impl RestoreSpec {
    /// The target dataset name for a source dataset: its `targetDatasets` entry if any, else
    /// `datasetPrefix` + source (`restored_` + source by default). Datasets missing from a
    /// `targetDatasets` map keep the default prefix, as the Java service would name them.
    pub fn target_dataset(&self, source: &str) -> String {
        match self.target_datasets.get(source) {
            Some(target) => target.clone(),
            None => format!("{}{source}", self.dataset_prefix),
        }
    }

    /// Whether a source dataset of the backup is restored at all.
    pub fn selects_dataset(&self, dataset: &str) -> bool {
        let listed = self
            .datasets
            .as_ref()
            .is_none_or(|ds| ds.iter().any(|d| d == dataset));
        let has_tables = self.tables.is_empty()
            || self
                .tables
                .iter()
                .any(|t| t.dataset.as_deref().is_none_or(|d| d == dataset));
        listed && has_tables
    }

    /// Whether a table of the backup is restored.
    pub fn selects_table(&self, dataset: &str, table: &str) -> bool {
        self.selects_dataset(dataset)
            && (self.tables.is_empty()
                || self
                    .tables
                    .iter()
                    .any(|t| t.table == table && t.dataset.as_deref().is_none_or(|d| d == dataset)))
    }
}

impl RestoreRequest {
    /// Checks everything and applies defaults. Returns every problem found, each naming its JSON
    /// path — never only the first.
    pub fn validate(self) -> Result<RestoreSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let mut warnings = Vec::new();

        let big_query = self.big_query.unwrap_or_default();
        let target_project =
            check_project_at("bigQuery.projectId", big_query.project_id, &mut errors);
        let datasets = big_query
            .datasets_to_restore
            .filter(|ds| !ds.is_empty())
            .map(|ds| check_source_datasets(ds, &mut errors));

        let storage_given = self.restore_storage.is_some();
        let storage_section = self.restore_storage.unwrap_or_default();
        let gcs = storage_section.gcs_options.unwrap_or_default();
        let storage = if storage_given {
            request_fields::resolve_storage_uri(
                UriFields {
                    section: "restoreStorage",
                    uri: storage_section.uri.as_deref(),
                    gcs_uri: gcs.uri.as_deref(),
                    gcs_present: gcs.uri.is_some() || gcs.import_options.is_some(),
                },
                &mut errors,
            )
        } else {
            errors.push(FieldError::new("restoreStorage", "is required"));
            None
        };

        let (backup, backup_field) =
            check_backup_choice(self.backup_id, gcs.backup_timestamp, &mut errors);
        let source_project = gcs.project_id_of_backup.and_then(|p| {
            if is_valid_project_id(&p) {
                Some(p)
            } else {
                errors.push(FieldError::new(
                    "restoreStorage.gcsOptions.projectIdOfBackup",
                    format!("`{p}` is not a valid project id"),
                ));
                None
            }
        });

        let gcs_options_path = "restoreStorage.gcsOptions.importOptions";
        let (options, options_path) = match (gcs.import_options, storage_section.import_options) {
            (Some(java), Some(_)) => {
                errors.push(FieldError::new(
                    "restoreStorage.importOptions",
                    format!("give import options in one place: here or in {gcs_options_path}"),
                ));
                (java, gcs_options_path)
            }
            (Some(java), None) => (java, gcs_options_path),
            (None, Some(ext)) => (ext, "restoreStorage.importOptions"),
            (None, None) if gcs.uri.is_some() => (ImportOptions::default(), gcs_options_path),
            (None, None) => (ImportOptions::default(), "restoreStorage.importOptions"),
        };

        let location = match (options.restore_region, self.location) {
            (Some(_), Some(_)) => {
                errors.push(FieldError::new(
                    "location",
                    format!("give either location or {options_path}.restoreRegion, not both"),
                ));
                None
            }
            (Some(region), None) => check_location(
                region,
                &format!("{options_path}.restoreRegion"),
                &mut errors,
            ),
            (None, Some(location)) => check_location(location, "location", &mut errors),
            (None, None) => None,
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
        let max_bad_records = match options.max_bad_records {
            None => 0,
            Some(n) => u32::try_from(n).unwrap_or_else(|_| {
                errors.push(FieldError::new(
                    format!("{options_path}.maxBadRecords"),
                    "must be between 0 and 4294967295",
                ));
                0
            }),
        };
        let write_disposition = match options.write_disposition.as_deref() {
            None => WriteDisposition::default(),
            Some(text) => WriteDisposition::parse(text).unwrap_or_else(|| {
                errors.push(FieldError::new(
                    format!("{options_path}.writeDisposition"),
                    format!("`{text}` must be WRITE_EMPTY, WRITE_TRUNCATE or WRITE_APPEND"),
                ));
                WriteDisposition::default()
            }),
        };
        let max_parallel_tables = options.thread_pool_size.and_then(|pool| {
            parallelism_from_thread_pool(
                pool,
                &format!("{options_path}.threadPoolSize"),
                &mut errors,
                &mut warnings,
            )
        });

        let tables = check_table_choices(
            self.tables.unwrap_or_default(),
            datasets.as_ref(),
            &mut errors,
        );
        let drill = self.drill.unwrap_or(false);
        if drill {
            let given = DrillConflicts {
                dataset_prefix: self.dataset_prefix.is_some(),
                target_datasets: self.target_datasets.is_some(),
                write_disposition: options.write_disposition.is_some(),
                shards: self.shards.is_some(),
            };
            check_drill(given, options_path, &mut errors);
        }
        let (dataset_prefix, target_datasets) = check_naming(
            self.dataset_prefix,
            self.target_datasets.unwrap_or_default(),
            datasets.as_ref(),
            &mut errors,
        );
        let schemas = check_schemas(self.schemas.unwrap_or_default(), &mut errors);
        let shards = match self.shards {
            None => None,
            Some(n) if (1..=i64::from(super::MAX_SHARDS)).contains(&n) => u32::try_from(n).ok(),
            Some(_) => {
                errors.push(FieldError::new(
                    "shards",
                    format!("must be between 1 and {}", super::MAX_SHARDS),
                ));
                None
            }
        };
        if shards.is_some() && write_disposition == WriteDisposition::WriteAppend {
            errors.push(FieldError::new(
                "shards",
                "a sharded restore cannot append (WRITE_APPEND): a shard run again after a failure would append its rows twice; use WRITE_EMPTY or WRITE_TRUNCATE",
            ));
        }

        let (Some(target_project), Some((storage, storage_field)), Some(backup)) =
            (target_project, storage, backup)
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
        Ok(RestoreSpec {
            target_project,
            storage,
            storage_field,
            backup,
            backup_field,
            source_project,
            datasets,
            tables,
            location,
            format: normalize_name(options.format.as_deref()),
            format_field: format!("{options_path}.format"),
            csv_header: options.header.unwrap_or(true),
            field_delimiter,
            ignore_unknown_values: options.ignore_unknown_values.unwrap_or(false),
            max_bad_records,
            write_disposition,
            max_parallel_tables,
            schemas,
            dry_run: self.dry_run.unwrap_or(false),
            wait: self.wait.unwrap_or(false),
            shards,
            drill,
            warnings,
            // A drill's datasets are its own, named so that they never meet a user's.
            dataset_prefix: match drill {
                true => drill_prefix(),
                false => dataset_prefix,
            },
            target_datasets,
        })
    }
}

/// The start of every scratch dataset of restore drills.
pub const DRILL_DATASET_PREFIX: &str = "bqb_drill_";

/// `bqb_drill_{8 hex}_`: the scratch datasets of one drill.
fn drill_prefix() -> String {
    let random = uuid::Uuid::new_v4().simple().to_string();
    format!("{DRILL_DATASET_PREFIX}{}_", &random[..8])
}

/// Which fields a drill does not take were given.
#[derive(Debug, Clone, Copy)]
struct DrillConflicts {
    dataset_prefix: bool,
    target_datasets: bool,
    write_disposition: bool,
    shards: bool,
}

/// A drill restores into scratch datasets it creates and removes: it names its targets itself,
/// runs alone, and never writes into an existing table.
fn check_drill(given: DrillConflicts, options_path: &str, errors: &mut Vec<FieldError>) {
    let why = "a drill restores into scratch datasets of its own and removes them: leave it out";
    if given.dataset_prefix {
        errors.push(FieldError::new("datasetPrefix", why));
    }
    if given.target_datasets {
        errors.push(FieldError::new("targetDatasets", why));
    }
    if given.write_disposition {
        errors.push(FieldError::new(
            format!("{options_path}.writeDisposition"),
            why,
        ));
    }
    if given.shards {
        errors.push(FieldError::new(
            "shards",
            "a drill measures one restore by this service: leave out `shards`",
        ));
    }
}

/// Exactly one of `backupId` (extension; an id or `latest`) and Java's `backupTimestamp`.
fn check_backup_choice(
    backup_id: Option<String>,
    backup_timestamp: Option<String>,
    errors: &mut Vec<FieldError>,
) -> (Option<BackupSelector>, String) {
    const TIMESTAMP_FIELD: &str = "restoreStorage.gcsOptions.backupTimestamp";
    match (backup_id, backup_timestamp) {
        (Some(_), Some(_)) => {
            errors.push(FieldError::new(
                "backupId",
                format!("give either backupId or {TIMESTAMP_FIELD}, not both"),
            ));
            (None, "backupId".to_owned())
        }
        (None, None) => {
            errors.push(FieldError::new(
                "backupId",
                format!("is required (a backup id, `latest`, or {TIMESTAMP_FIELD})"),
            ));
            (None, "backupId".to_owned())
        }
        (Some(id), None) if id.trim().eq_ignore_ascii_case("latest") => {
            (Some(BackupSelector::Latest), "backupId".to_owned())
        }
        (Some(id), None) => match BackupId::parse(id.trim()) {
            Ok(id) => (Some(BackupSelector::Id(id)), "backupId".to_owned()),
            Err(err) => {
                errors.push(FieldError::new("backupId", format!("{err}, or `latest`")));
                (None, "backupId".to_owned())
            }
        },
        (None, Some(stamp)) => match BackupId::parse(stamp.trim()) {
            Ok(id) => (Some(BackupSelector::Id(id)), TIMESTAMP_FIELD.to_owned()),
            Err(err) => {
                errors.push(FieldError::new(TIMESTAMP_FIELD, err.to_string()));
                (None, TIMESTAMP_FIELD.to_owned())
            }
        },
    }
}

/// Locations are passed to BigQuery as given (it compares them case-insensitively: `EU`, `eu`,
/// `europe-west3`); we only reject what cannot be a location name.
fn check_location(location: String, field: &str, errors: &mut Vec<FieldError>) -> Option<String> {
    let ok = !location.is_empty()
        && location.len() <= 64
        && location
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if ok {
        Some(location)
    } else {
        errors.push(FieldError::new(
            field,
            format!("`{location}` is not a BigQuery location like EU, US or europe-west3"),
        ));
        None
    }
}

#[cfg(test)]
mod tests;
