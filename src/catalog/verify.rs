//! Integrity: a backup's files against its manifest. One check per file — readable, size,
//! SHA-256, decodes with the recorded schema, row count — shared by restore (which stops at the
//! first problem of a table) and `verify` (which collects every finding, each naming its file).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use bytes::Bytes;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;
use sha2::{Digest, Sha256};

use super::manifest::{FileEntry, Manifest, TableEntry, decode_arrow_schema};
use crate::error::{Error, ErrorKind};
use crate::exec::on_rayon;
use crate::formats::{DecodeOptions, Format, decode};
use crate::storage::Store;

/// Files of one backup verified at once.
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
    /// The finding as an error that names the file.
    pub fn into_error(self) -> Error {
        let subject = if self.file.is_empty() {
            format!("table {}", self.table)
        } else {
            format!("file {}", self.file)
        };
        Error::new(ErrorKind::Upstream, format!("{subject} {}", self.problem))
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

/// How to decode the files of `entry`.
pub fn decode_options(manifest: &Manifest, entry: &TableEntry) -> Result<DecodeOptions, Error> {
    let recorded = manifest.format_of(entry);
    let format: Format = recorded
        .format
        .parse()
        .map_err(|e| Error::upstream(format!("manifest format: {e}")))?;
    let mut options = DecodeOptions::new(format);
    options.compression = recorded
        .compression
        .parse()
        .map_err(|e| Error::upstream(format!("manifest compression: {e}")))?;
    options.csv_header = recorded.csv_header;
    options.csv_delimiter = recorded.csv_delimiter.bytes().next().unwrap_or(b',');
    Ok(options)
}

/// The Arrow schema the files of `entry` were written with.
pub fn table_schema(entry: &TableEntry) -> Result<SchemaRef, Error> {
    decode_arrow_schema(entry.arrow_schema.as_deref().unwrap_or_default())
        .map(Arc::new)
        .map_err(|e| {
            Error::upstream(format!(
                "the manifest's Arrow schema of {} is unreadable: {e}",
                entry.table
            ))
        })
}

/// Reads a recorded file. Recorded paths are keys as object_store wrote or listed them (already
/// percent-encoded where needed), so they are parsed, not encoded again as `Path::from` would.
pub async fn read_file(os: &Arc<dyn ObjectStore>, recorded: &str) -> Result<Bytes, String> {
    let path = Path::parse(recorded).map_err(|e| format!("is not a valid key: {e}"))?;
    let result = os
        .get(&path)
        .await
        .map_err(|e| format!("cannot be read: {e}"))?;
    result
        .bytes()
        .await
        .map_err(|e| format!("cannot be read: {e}"))
}

/// Checks one file's bytes against its manifest entry (size, SHA-256, row count — skipped when
/// `recorded` is false, for backups that record none) and returns its decoded batches.
/// CPU-bound: call it on rayon.
pub fn check_file(
    bytes: Bytes,
    expected: &FileEntry,
    schema: SchemaRef,
    options: &DecodeOptions,
    recorded: bool,
) -> Result<Vec<RecordBatch>, String> {
    if recorded && bytes.len() as u64 != expected.bytes {
        return Err(format!(
            "has {} bytes, the manifest says {}",
            bytes.len(),
            expected.bytes
        ));
    }
    if recorded && hex::encode(Sha256::digest(&bytes)) != expected.sha256 {
        return Err("does not match its SHA-256 checksum in the manifest".into());
    }
    let batches = decode(bytes, schema, options).map_err(|e| format!("cannot be decoded: {e}"))?;
    let rows: u64 = batches.iter().map(|b| b.num_rows() as u64).sum();
    if recorded && rows != expected.rows {
        return Err(format!(
            "holds {rows} rows, the manifest says {}",
            expected.rows
        ));
    }
    Ok(batches)
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
        let (schema, options) = match (table_schema(entry), decode_options(manifest, entry)) {
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
                let result = match read_file(&os, &file.path).await {
                    Ok(bytes) => {
                        let expected = file.clone();
                        on_rayon(move || {
                            check_file(bytes, &expected, schema, &options, true)
                                .map(|b| b.iter().map(|b| b.num_rows() as u64).sum::<u64>())
                        })
                        .await
                        .unwrap_or_else(|e| Err(e.to_string()))
                    }
                    Err(problem) => Err(problem),
                };
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
