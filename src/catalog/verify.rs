//! Integrity: a backup's files against its manifest. One check per file — readable, size,
//! checksum (SHA-256, or CRC32C for files BigQuery wrote), decodes with the recorded schema,
//! row count — made while the file streams through ([`super::stream`]), shared by restore (which
//! stops at the first problem of a table) and `verify` (which collects every finding, each naming
//! its file).

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde::Serialize;

use super::manifest::{FileEntry, Manifest, TableEntry, decode_arrow_schema};
use super::stream::read_batches;
use crate::encryption::Identities;
use crate::error::Error;
use crate::formats::DecodeOptions;
use crate::storage::{Failure, Store, object_error};

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
    /// Files found with their recorded size (read in full or not).
    pub files_checked: u64,
    /// Files read in full: size, checksum, decoding and row count checked.
    pub files_read: u64,
    pub bytes_checked: u64,
    pub rows_checked: u64,
    /// The sample asked for; absent when every file was read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample: Option<Sample>,
    /// An incremental backup: the earlier backups whose files it lists, each checked to still
    /// be complete, their files checked with its own.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub chain: Vec<String>,
    pub findings: Vec<Finding>,
}

/// Which files a verify reads in full, in the spirit of restic's `check --read-data-subset`:
/// a share of them or a number, picked at random each time so that repeated samples cover the
/// backup. The others are only checked to exist with their recorded size.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub enum Sample {
    /// `"10%"`: this share of the files (at least one).
    #[serde(rename = "percent")]
    Percent(f64),
    /// `5`: this many files (all of them when there are fewer).
    #[serde(rename = "files")]
    Files(u64),
}

impl Sample {
    /// `"10%"` (more than 0, at most 100) or a whole number of files (at least 1), as a JSON
    /// string or number.
    pub fn parse(value: &serde_json::Value) -> Result<Self, String> {
        const EXPECTED: &str = "must be a share like \"10%\" or a number of files like 5";
        let text = match value {
            serde_json::Value::String(s) => s.trim().to_string(),
            serde_json::Value::Number(n) => n.to_string(),
            _ => return Err(EXPECTED.into()),
        };
        if let Some(share) = text.strip_suffix('%') {
            return match share.trim().parse::<f64>() {
                Ok(p) if p > 0.0 && p <= 100.0 => Ok(Self::Percent(p)),
                Ok(_) => Err("a share must be more than 0% and at most 100%".into()),
                Err(_) => Err(EXPECTED.into()),
            };
        }
        match text.parse::<u64>() {
            Ok(0) => Err("a number of files must be at least 1".into()),
            Ok(n) => Ok(Self::Files(n)),
            Err(_) => Err(EXPECTED.into()),
        }
    }

    /// How many of `total` files to read.
    fn count(self, total: usize) -> usize {
        match self {
            Self::Percent(p) => ((total as f64 * p / 100.0).ceil() as usize).clamp(1, total.max(1)),
            Self::Files(n) => usize::try_from(n).unwrap_or(usize::MAX).min(total),
        }
        .min(total)
    }

    /// `count` distinct indexes below `total`, picked uniformly at random (a partial
    /// Fisher–Yates shuffle seeded from the OS's randomness).
    fn pick(self, total: usize) -> std::collections::HashSet<usize> {
        let count = self.count(total);
        let mut seed = u64::from_le_bytes(
            uuid::Uuid::new_v4().as_bytes()[..8]
                .try_into()
                .unwrap_or([7; 8]),
        ) | 1;
        let mut next = move || {
            // xorshift64: plenty for choosing files.
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut order: Vec<usize> = (0..total).collect();
        for i in 0..count {
            let j = i + (next() % (total - i) as u64) as usize;
            order.swap(i, j);
        }
        order.into_iter().take(count).collect()
    }
}

/// How to decode the files of `entry` (the manifest was read strictly: its format and
/// compression are ones this service knows).
pub fn decode_options(manifest: &Manifest, entry: &TableEntry) -> DecodeOptions {
    manifest.format_of(entry).decode_options()
}

/// The Arrow schema the files of `entry` were written with (an unreadable one means the
/// manifest is damaged).
pub fn table_schema(manifest: &Manifest, entry: &TableEntry) -> Result<SchemaRef, Error> {
    decode_arrow_schema(entry.arrow_schema.as_deref().unwrap_or_default())
        .map(Arc::new)
        .map_err(|e| {
            Error::damaged(
                manifest.key(),
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

/// Re-reads every file of a backup (or, with `sample`, some of them; the others are only checked
/// to exist with their recorded size) and checks it; collects every finding instead of stopping
/// at the first. Views carry no files and are not counted.
pub async fn verify_backup(
    store: &Store,
    manifest: &Manifest,
    sample: Option<Sample>,
) -> Result<VerifyReport, Error> {
    // An encrypted backup is decrypted as it is read: 403 before anything is read when this
    // service cannot.
    let keys = super::keys::identities_for(store, manifest).await?;
    verify_with_keys(store, manifest, sample, keys).await
}

/// [`verify_backup`] with the identities of an encrypted backup already found
/// ([`super::keys::identities_for`]).
pub async fn verify_with_keys(
    store: &Store,
    manifest: &Manifest,
    sample: Option<Sample>,
    keys: Option<Arc<Identities>>,
) -> Result<VerifyReport, Error> {
    use futures::StreamExt;
    let os = store.object_store().clone();
    let all_files = manifest
        .tables
        .iter()
        .filter(|t| t.kind.holds_data())
        .flat_map(|t| &t.files);
    let to_read: Option<std::collections::HashSet<&str>> = sample.map(|sample| {
        let files: Vec<&str> = all_files.map(|f| f.path.as_str()).collect();
        sample
            .pick(files.len())
            .into_iter()
            .map(|i| files[i])
            .collect()
    });
    let mut findings = Vec::new();
    let mut jobs = Vec::new();
    let mut tables_checked = 0;
    for entry in manifest.tables.iter().filter(|t| t.kind.holds_data()) {
        tables_checked += 1;
        let table = entry.table.to_string();
        let options = decode_options(manifest, entry);
        let schema = match table_schema(manifest, entry) {
            Ok(schema) => schema,
            Err(e) => {
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
            let read = to_read
                .as_ref()
                .is_none_or(|r| r.contains(file.path.as_str()));
            let keys = keys.clone();
            let (os, schema, options, file, table) = (
                os.clone(),
                schema.clone(),
                options,
                file.clone(),
                table.clone(),
            );
            jobs.push(async move {
                if !read {
                    let result = check_presence(&os, &file).await.map(|()| None);
                    return (table, file, result);
                }
                let result = read_batches(&os, &file, schema, options, true, keys)
                    .count_rows()
                    .await
                    .map(Some)
                    .map_err(|problem| problem.describe());
                (table, file, result)
            });
        }
    }
    let results: Vec<_> = futures::stream::iter(jobs)
        .buffer_unordered(VERIFY_CONCURRENCY)
        .collect()
        .await;
    let (mut files_checked, mut files_read) = (0u64, 0u64);
    let (mut bytes_checked, mut rows_checked) = (0u64, 0u64);
    for (table, file, result) in results {
        files_checked += 1;
        match result {
            Ok(Some(rows)) => {
                files_read += 1;
                bytes_checked += file.bytes;
                rows_checked += rows;
            }
            Ok(None) => {}
            Err(problem) => findings.push(Finding {
                table,
                file: file.path,
                problem,
            }),
        }
    }
    let chain = manifest
        .incremental
        .as_ref()
        .map(|i| i.depends_on.clone())
        .unwrap_or_default();
    for id in &chain {
        let key = crate::storage::layout::manifest(id);
        let problem = match super::manifest::read_manifest(store, id).await {
            Ok(Some(_)) => continue,
            Ok(None) => format!(
                "this incremental backup lists files of backup {id}, which is no longer a complete backup (it has no manifest)"
            ),
            Err(e) => format!(
                "this incremental backup lists files of backup {id}, whose manifest cannot be read: {}",
                e.message()
            ),
        };
        findings.push(Finding {
            table: String::new(),
            file: key.to_string(),
            problem,
        });
    }
    findings.sort_by(|a, b| (&a.table, &a.file).cmp(&(&b.table, &b.file)));
    Ok(VerifyReport {
        backup_id: manifest.backup_id.to_string(),
        ok: findings.is_empty(),
        tables_checked,
        files_checked,
        files_read,
        bytes_checked,
        rows_checked,
        sample,
        chain: chain.iter().map(ToString::to_string).collect(),
        findings,
    })
}

/// A file not sampled for reading: it exists with its recorded size.
async fn check_presence(os: &Arc<dyn ObjectStore>, file: &FileEntry) -> Result<(), String> {
    let path = Path::parse(&file.path).map_err(|e| format!("is not a valid key: {e}"))?;
    match os.head(&path).await {
        Ok(meta) if meta.size == file.bytes => Ok(()),
        Ok(meta) => Err(format!(
            "has {} bytes, the manifest says {}",
            meta.size, file.bytes
        )),
        Err(e) => Err(match Failure::of(&e) {
            Failure::NotFound => "is missing".to_string(),
            _ => format!(
                "cannot be read: {}",
                object_error("reading", &path, e).message()
            ),
        }),
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::Sample;

    #[test]
    fn a_sample_is_a_share_or_a_number_of_files() {
        assert_eq!(Sample::parse(&json!("10%")), Ok(Sample::Percent(10.0)));
        assert_eq!(Sample::parse(&json!(" 2.5 % ")), Ok(Sample::Percent(2.5)));
        assert_eq!(Sample::parse(&json!("100%")), Ok(Sample::Percent(100.0)));
        assert_eq!(Sample::parse(&json!(5)), Ok(Sample::Files(5)));
        assert_eq!(Sample::parse(&json!("5")), Ok(Sample::Files(5)));
        for bad in [
            json!("0%"),
            json!("101%"),
            json!("-3%"),
            json!("ten%"),
            json!(0),
            json!(-1),
            json!(1.5),
            json!("all"),
            json!(true),
            json!(null),
        ] {
            assert!(Sample::parse(&bad).is_err(), "{bad} was accepted");
        }
    }

    #[test]
    fn a_sample_picks_distinct_files_and_at_least_one() {
        assert_eq!(Sample::Percent(10.0).pick(95).len(), 10);
        assert_eq!(Sample::Percent(0.1).pick(3).len(), 1);
        assert_eq!(Sample::Percent(100.0).pick(7).len(), 7);
        assert_eq!(Sample::Files(4).pick(3).len(), 3);
        assert!(Sample::Files(4).pick(0).is_empty());
        let picked = Sample::Files(20).pick(40);
        assert_eq!(picked.len(), 20);
        assert!(picked.iter().all(|i| *i < 40));
    }

    #[test]
    fn repeated_samples_cover_different_files() {
        let first = Sample::Files(5).pick(1000);
        assert!(
            (0..5).any(|_| Sample::Files(5).pick(1000) != first),
            "every sample picked the same files"
        );
    }
}
