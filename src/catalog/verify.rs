//! Integrity: a backup's files against its manifest. One check per file — readable, size,
//! SHA-256, decodes with the recorded schema, row count — made while the file streams through
//! ([`super::stream`]), shared by restore (which stops at the first problem of a table) and
//! `verify` (which collects every finding, each naming its file).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use super::manifest::{Manifest, TableEntry, decode_arrow_schema};
use super::stream::read_batches;
use crate::error::Error;
use crate::formats::{DecodeOptions, Format};
use crate::storage::{Failure, Store, layout, object_error};

/// Files of one backup verified at once. Each is streamed (see [`super::stream`]): memory is a
/// few batches per file (and one row group for PARQUET), whatever the files' sizes.
const VERIFY_CONCURRENCY: usize = 4;

/// One problem with one file (or table), in words a user can act on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    pub table: String,
    /// The file's key, relative to the storage URI (empty for a table-level finding).
    pub file: String,
    pub problem: String,
}

impl Finding {
    /// The finding as a damaged-backup error naming the file (or the table, for a table-level
    /// finding).
    pub fn into_error(self) -> Error {
        if self.file.is_empty() {
            Error::damaged(format!("table {}", self.table), self.problem)
        } else {
            Error::damaged(self.file, self.problem)
        }
    }
}

/// Why a recorded file could not be used.
#[derive(Debug)]
pub enum FileProblem {
    /// The file is not what its manifest records: missing, or its key is unusable. The backup
    /// is damaged.
    Damaged(String),
    /// The store failed to answer (a missing bucket, refused access, a store that is down):
    /// nothing says the file itself is wrong.
    Storage(Error),
}

impl FileProblem {
    /// The problem in words, for a verify finding.
    pub fn describe(&self) -> String {
        match self {
            Self::Damaged(problem) => problem.clone(),
            Self::Storage(e) => format!("cannot be read: {}", e.message()),
        }
    }

    /// The problem as an error about the file at `recorded`.
    pub fn into_error(self, recorded: &str) -> Error {
        match self {
            Self::Damaged(problem) => Error::damaged(recorded, problem),
            Self::Storage(e) => e,
        }
    }
}

/// What `verify` found.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct VerifyReport {
    pub backup_id: String,
    /// True when there is no finding.
    pub ok: bool,
    pub tables_checked: u64,
    pub files_checked: u64,
    pub bytes_checked: u64,
    pub rows_checked: u64,
    pub findings: Vec<Finding>,
}

/// How to decode the files of `entry`. A format the manifest names but this service does not
/// know means the manifest is damaged.
pub fn decode_options(manifest: &Manifest, entry: &TableEntry) -> Result<DecodeOptions, Error> {
    let recorded = manifest.format_of(entry);
    let damaged = |what: &str, e: String| {
        Error::damaged(
            layout::manifest(&manifest.backup_id).to_string(),
            format!("records an unknown {what} for {}: {e}", entry.table),
        )
    };
    let format: Format = recorded
        .format
        .parse()
        .map_err(|e| damaged("format", format!("{e}")))?;
    let mut options = DecodeOptions::new(format);
    options.compression = recorded
        .compression
        .parse()
        .map_err(|e| damaged("compression", format!("{e}")))?;
    options.csv_header = recorded.csv_header;
    options.csv_delimiter = recorded.csv_delimiter.bytes().next().unwrap_or(b',');
    Ok(options)
}

/// The Arrow schema the files of `entry` were written with (an unreadable one means the
/// manifest is damaged).
pub fn table_schema(manifest: &Manifest, entry: &TableEntry) -> Result<SchemaRef, Error> {
    decode_arrow_schema(entry.arrow_schema.as_deref().unwrap_or_default())
        .map(Arc::new)
        .map_err(|e| {
            Error::damaged(
                layout::manifest(&manifest.backup_id).to_string(),
                format!(
                    "records an unreadable Arrow schema for {}: {e}",
                    entry.table
                ),
            )
        })
}

/// Opens a recorded file. Recorded paths are keys as object_store wrote or listed them (already
/// percent-encoded where needed), so they are parsed, not encoded again as `Path::from` would.
/// A file the manifest records that is not there is damage; any other failure is the store's.
pub async fn open_file(
    os: &Arc<dyn ObjectStore>,
    recorded: &str,
) -> Result<object_store::GetResult, FileProblem> {
    let path = Path::parse(recorded)
        .map_err(|e| FileProblem::Damaged(format!("is not a valid key: {e}")))?;
    os.get(&path).await.map_err(|e| match Failure::of(&e) {
        Failure::NotFound => FileProblem::Damaged("is missing".into()),
        _ => FileProblem::Storage(object_error("reading", &path, e)),
    })
}

/// Re-reads every file of a backup and checks it; collects every finding instead of stopping at
/// the first. Views carry no files and are not counted.
pub async fn verify_backup(store: &Store, manifest: &Manifest) -> Result<VerifyReport, Error> {
    use futures::StreamExt;
    let os = store.object_store().clone();
    let mut findings = Vec::new();
    let mut jobs = Vec::new();
    let mut tables_checked = 0;
    for entry in manifest.tables.iter().filter(|t| t.kind.holds_data()) {
        tables_checked += 1;
        let table = entry.table.to_string();
        let (schema, options) = match (
            table_schema(manifest, entry),
            decode_options(manifest, entry),
        ) {
            (Ok(s), Ok(o)) => (s, o),
            (Err(e), _) | (_, Err(e)) => {
                findings.push(Finding {
                    table,
                    file: String::new(),
                    problem: e.to_string(),
                });
                continue;
            }
        };
        let file_rows: u64 = entry.files.iter().map(|f| f.rows).sum();
        if file_rows != entry.rows {
            findings.push(Finding {
                table: table.clone(),
                file: String::new(),
                problem: format!(
                    "records {} rows but its files record {file_rows}",
                    entry.rows
                ),
            });
        }
        for file in &entry.files {
            let (os, schema, options, file, table) = (
                os.clone(),
                schema.clone(),
                options,
                file.clone(),
                table.clone(),
            );
            jobs.push(async move {
                let result = read_batches(&os, &file, schema, options, true)
                    .count_rows()
                    .await
                    .map_err(|problem| problem.describe());
                (table, file, result)
            });
        }
    }
    let results: Vec<_> = futures::stream::iter(jobs)
        .buffer_unordered(VERIFY_CONCURRENCY)
        .collect()
        .await;
    let (mut files_checked, mut bytes_checked, mut rows_checked) = (0u64, 0u64, 0u64);
    for (table, file, result) in results {
        files_checked += 1;
        match result {
            Ok(rows) => {
                bytes_checked += file.bytes;
                rows_checked += rows;
            }
            Err(problem) => findings.push(Finding {
                table,
                file: file.path,
                problem,
            }),
        }
    }
    findings.sort_by(|a, b| (&a.table, &a.file).cmp(&(&b.table, &b.file)));
    Ok(VerifyReport {
        backup_id: manifest.backup_id.to_string(),
        ok: findings.is_empty(),
        tables_checked,
        files_checked,
        bytes_checked,
        rows_checked,
        findings,
    })
}
