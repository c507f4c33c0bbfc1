//! The EXTRACT method: BigQuery writes a table's files to gs:// itself, and this service only
//! records them.
//!
//! 1. [`Snapshots::take`]: every EXTRACT table is snapshotted at the backup's snapshot time (a
//!    copy job with `operationType: SNAPSHOT` from `table@millis`) into a temporary dataset of
//!    its project and location, `_bqb_extract_{backupId}_{random}`, so that every table is read
//!    at the one point in time however long the extracts take. The dataset's tables expire
//!    after [`SNAPSHOT_LIFETIME`] by themselves, should this process die before it removes them.
//! 2. [`extract_table`]: one extract job per table (at most `maxParallelTables` at once, like
//!    streamed tables) writes `backups/{id}/{project}/{dataset}/{table}/part-*.parquet`: a
//!    single file `part-00000.parquet` when the table's logical size fits in one file (BigQuery
//!    writes at most 1 GB to a single file), else a wildcard URI, for which BigQuery numbers
//!    the files itself (`part-000000000000.parquet`, ...) and chooses their sizes.
//! 3. The files are listed with Cloud Storage's own checksums (CRC32C: GCS keeps one for every
//!    object, MD5 only for non-composite ones), and each file's Parquet footer — its last bytes,
//!    fetched with a range read — gives its row count and schema. The rows must add up to the
//!    snapshot's row count. Nothing else of a file passes through the service.
//! 4. [`Snapshots::remove`]: the temporary datasets are deleted with their snapshots, whether
//!    the backup succeeded, failed or was cancelled.
//!
//! A process killed mid-backup removes nothing: its snapshots expire after a day, its dataset
//! stays. Each temporary dataset is therefore labelled with its backup id and its repository
//! (a digest of the storage URI), and every EXTRACT backup first sweeps the temporary datasets
//! of its repository whose backup is dead — no live claim in the repository, or its own id,
//! whose claim it now holds — see [`Snapshots::sweep_dead`]. Another repository's datasets,
//! and a running backup's, are never touched.
//!
//! Depends on `bigquery`, `storage`, `formats`, `catalog` and `domain`.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use object_store::ObjectStoreExt;
use object_store::path::Path;
use tokio_util::sync::CancellationToken;

use super::plan::{BackupPlan, PlannedTable};
use super::table::table_resource;
use crate::bigquery::{BigQuery, ExtractJob, TableKind};
use crate::catalog::attempt::live_claim;
use crate::catalog::{FileEntry, TableEntry, encode_arrow_schema};
use crate::domain::{BackupId, DatasetRef, ExportMethod, TableRef};
use crate::error::Error;
use crate::exec::on_rayon;
use crate::formats::{ParquetFooter, file_extension, read_parquet_footer};
use crate::storage::{Store, layout, object_error};

/// Temporary datasets of EXTRACT backups start with this (hidden in BigQuery's console, skipped
/// when a backup selects every dataset of a project).
pub(crate) const EXTRACT_DATASET_PREFIX: &str = "_bqb_extract_";
/// Label keys of a temporary dataset: what it is, whose backup, which repository.
const PURPOSE_LABEL: (&str, &str) = ("bq-backup", "extract-snapshots");
const BACKUP_ID_LABEL: &str = "bq-backup-backup-id";
const REPOSITORY_LABEL: &str = "bq-backup-repository";
/// How long a snapshot may outlive its backup if nothing removes it.
const SNAPSHOT_LIFETIME: Duration = Duration::from_secs(24 * 3600);
/// BigQuery writes at most this much logical data to a single file; larger tables need a
/// wildcard URI.
const SINGLE_FILE_MAX_BYTES: u64 = 1_000_000_000;
/// Bytes fetched from a file's end for its footer at first; more when the footer is larger.
const FOOTER_PROBE_BYTES: u64 = 64 * 1024;
/// Footers read at once, per table.
const FOOTER_CONCURRENCY: usize = 8;

/// The temporary snapshots of one backup's EXTRACT tables.
#[derive(Debug, Default)]
pub(crate) struct Snapshots {
    /// Created so far (removed by [`Self::remove`]).
    datasets: Vec<DatasetRef>,
    /// Source table → the snapshot to extract from.
    by_table: HashMap<TableRef, TableRef>,
}

impl Snapshots {
    /// Snapshots every EXTRACT table of `plan` at its snapshot time. What was created is kept
    /// in `self` even when this fails, for [`Self::remove`].
    pub(crate) async fn take(
        &mut self,
        bigquery: &BigQuery,
        store: &Store,
        plan: &BackupPlan,
        cancel: &CancellationToken,
    ) -> Result<(), Error> {
        Self::sweep_dead(bigquery, store, plan).await;
        let repository = repository_label(store);
        let backup_id = plan.backup_id.to_string();
        let labels = [
            PURPOSE_LABEL,
            (BACKUP_ID_LABEL, backup_id.as_str()),
            (REPOSITORY_LABEL, repository.as_str()),
        ];
        let locations: HashMap<&DatasetRef, &str> = plan
            .datasets
            .iter()
            .map(|d| (&d.dataset, d.location.as_str()))
            .collect();
        // Table snapshots are immutable already: they are extracted as they are.
        let to_snapshot: Vec<(usize, &PlannedTable)> = plan
            .tables
            .iter()
            .enumerate()
            .filter(|(_, t)| t.method == Some(ExportMethod::Extract))
            .filter(|(_, t)| t.kind != TableKind::Snapshot)
            .collect();
        // One temporary dataset per project and location: a snapshot lives beside its source.
        let mut groups: BTreeMap<(String, String), DatasetRef> = BTreeMap::new();
        let run = uuid::Uuid::new_v4().simple().to_string();
        let id = plan.backup_id.to_string().replace('-', "_");
        for (_, planned) in &to_snapshot {
            let location = locations
                .get(&planned.table.dataset_ref())
                .copied()
                .unwrap_or_default()
                .to_string();
            let key = (planned.table.project.clone(), location);
            if groups.contains_key(&key) {
                continue;
            }
            let dataset = DatasetRef::new(
                &key.0,
                format!(
                    "{EXTRACT_DATASET_PREFIX}{id}_{}_{}",
                    &run[..8],
                    groups.len()
                ),
            );
            if cancel.is_cancelled() {
                return Err(Error::cancelled("cancelled"));
            }
            bigquery
                .create_temporary_dataset(
                    &dataset,
                    &key.1,
                    SNAPSHOT_LIFETIME,
                    &labels,
                    &format!(
                        "Temporary snapshots of bq-backup backup {}: removed when it ends, expiring by themselves otherwise",
                        plan.backup_id
                    ),
                )
                .await?;
            self.datasets.push(dataset.clone());
            groups.insert(key, dataset);
        }
        let expires = chrono::Utc::now()
            + chrono::Duration::from_std(SNAPSHOT_LIFETIME).unwrap_or(chrono::Duration::days(1));
        // Collected first (owned values in each future), so that the stream below holds no
        // closure borrowing from this frame.
        let jobs: Vec<_> = to_snapshot
            .iter()
            .map(|(index, planned)| {
                let location = locations
                    .get(&planned.table.dataset_ref())
                    .copied()
                    .unwrap_or_default()
                    .to_string();
                let dataset = &groups[&(planned.table.project.clone(), location.clone())];
                let snapshot =
                    TableRef::new(&dataset.project, &dataset.dataset, format!("t{index:05}"));
                let (bigquery, source, at, cancel) = (
                    bigquery.clone(),
                    planned.table.clone(),
                    plan.snapshot_time,
                    cancel.clone(),
                );
                async move {
                    let location = Some(location.as_str()).filter(|l| !l.is_empty());
                    bigquery
                        .snapshot_table(&source, at, &snapshot, expires, location, &cancel)
                        .await
                        .map(|()| (source, snapshot))
                }
            })
            .collect();
        let taken: Vec<(TableRef, TableRef)> = futures::stream::iter(jobs)
            .buffer_unordered(plan.max_parallel_tables.max(1))
            .try_collect()
            .await?;
        self.by_table.extend(taken);
        tracing::info!(backup_id = %plan.backup_id, snapshots = self.by_table.len(), "tables snapshotted for EXTRACT");
        Ok(())
    }

    /// Removes the temporary datasets that dead EXTRACT backups to `store` left in the projects
    /// of `plan`'s EXTRACT tables: those labelled with this repository whose backup has no live
    /// claim in it, and those of `plan`'s own backup id (an earlier, killed attempt: this backup
    /// holds the claim now, and has created nothing yet). Best effort: a failure is logged.
    pub(crate) async fn sweep_dead(bigquery: &BigQuery, store: &Store, plan: &BackupPlan) {
        let repository = repository_label(store);
        let projects: std::collections::BTreeSet<&str> = plan
            .tables
            .iter()
            .filter(|t| t.method == Some(ExportMethod::Extract))
            .map(|t| t.table.project.as_str())
            .collect();
        for project in projects {
            let found = match bigquery
                .datasets_labelled(project, EXTRACT_DATASET_PREFIX, PURPOSE_LABEL)
                .await
            {
                Ok(found) => found,
                Err(e) => {
                    tracing::warn!(project, error = %e, "listing temporary datasets of dead backups failed");
                    continue;
                }
            };
            for (dataset, labels) in found {
                if labels.get(REPOSITORY_LABEL) != Some(&repository) {
                    continue;
                }
                let Some(id) = labels
                    .get(BACKUP_ID_LABEL)
                    .and_then(|id| BackupId::parse(id).ok())
                else {
                    continue;
                };
                if id != plan.backup_id {
                    match live_claim(store, &id).await {
                        Ok(None) => {}
                        Ok(Some(_)) => continue,
                        Err(e) => {
                            tracing::warn!(backup_id = %id, error = %e, "reading a claim failed; its temporary dataset is kept");
                            continue;
                        }
                    }
                }
                match bigquery.delete_dataset_and_contents(&dataset).await {
                    Ok(()) => {
                        tracing::info!(dataset = %dataset, backup_id = %id, "temporary snapshots of a dead backup removed")
                    }
                    Err(e) => {
                        tracing::warn!(dataset = %dataset, error = %e, "removing temporary snapshots of a dead backup failed")
                    }
                }
            }
        }
    }

    /// The table to extract `table` from: its snapshot, or itself when it is a table snapshot.
    pub(crate) fn source_of<'a>(&'a self, table: &'a TableRef) -> &'a TableRef {
        self.by_table.get(table).unwrap_or(table)
    }

    /// Deletes the temporary datasets and their snapshots. Best effort: a failure is logged
    /// (the snapshots expire by themselves) and the backup's outcome stands.
    pub(crate) async fn remove(self, bigquery: &BigQuery) {
        for dataset in self.datasets {
            match bigquery.delete_dataset_and_contents(&dataset).await {
                Ok(()) => tracing::info!(dataset = %dataset, "temporary snapshots removed"),
                Err(e) => {
                    tracing::warn!(dataset = %dataset, error = %e, "removing temporary snapshots failed; they expire by themselves, the dataset must be deleted by hand")
                }
            }
        }
    }
}

/// Exports one table with an extract job from `source` (its snapshot) and records its files.
#[tracing::instrument(skip_all, fields(table = %planned.table, backup_id = %plan.backup_id))]
pub(crate) async fn extract_table(
    bigquery: &BigQuery,
    store: &Store,
    plan: &BackupPlan,
    planned: &PlannedTable,
    source: &TableRef,
    cancel: &CancellationToken,
) -> Result<TableEntry, Error> {
    let bucket = store.uri().bucket().unwrap_or_default();
    let root = match store.uri().prefix() {
        "" => format!("gs://{bucket}"),
        prefix => format!("gs://{bucket}/{prefix}"),
    };
    let dir = layout::table_dir(&plan.backup_id, &planned.table);
    let extension = file_extension(plan.encode.format, plan.encode.compression);
    let file = if planned.bytes <= SINGLE_FILE_MAX_BYTES.min(plan.file_size_bytes) {
        format!("part-00000.{extension}")
    } else {
        format!("part-*.{extension}")
    };
    let location = plan
        .datasets
        .iter()
        .find(|d| d.dataset == planned.table.dataset_ref())
        .map(|d| d.location.as_str())
        .filter(|l| !l.is_empty());
    let outcome = bigquery
        .extract_table(
            &ExtractJob {
                project: &source.project,
                location,
                source,
                destination_uris: vec![format!("{root}/{dir}/{file}")],
                format: plan.encode.format.as_str(),
                compression: plan.encode.compression.as_str(),
            },
            cancel,
        )
        .await?;

    let part = format!("{dir}/part-");
    let mut objects: Vec<_> = store
        .list_with_checksums(&dir)
        .await?
        .into_iter()
        .filter(|o| o.key.starts_with(&part) && o.key.ends_with(&format!(".{extension}")))
        .collect();
    objects.sort_by(|a, b| a.key.cmp(&b.key));
    let reported: u64 = outcome.file_counts.iter().sum();
    if objects.is_empty() || (!outcome.file_counts.is_empty() && reported != objects.len() as u64) {
        return Err(Error::upstream(format!(
            "extract job {} of {} reported {reported} files, {} are under {dir}",
            outcome.job_id,
            planned.table,
            objects.len()
        )));
    }
    let os = store.object_store().clone();
    let reads: Vec<_> = objects
        .iter()
        .map(|o| {
            let (os, key, size) = (os.clone(), o.key.clone(), o.size);
            async move { footer(&os, &key, size).await }
        })
        .collect();
    let footers: Vec<ParquetFooter> = futures::stream::iter(reads)
        .buffered(FOOTER_CONCURRENCY)
        .try_collect()
        .await?;
    // `objects` is not empty (checked above), so neither are the footers.
    let schema = footers[0].schema.clone();
    let mut files = Vec::with_capacity(objects.len());
    for (object, footer) in objects.into_iter().zip(&footers) {
        if footer.schema.fields() != schema.fields() {
            return Err(Error::upstream(format!(
                "the files BigQuery wrote for {} disagree on the schema ({} differs from the first)",
                planned.table, object.key
            )));
        }
        let crc32c = object.crc32c.ok_or_else(|| {
            Error::upstream(format!(
                "Cloud Storage reported no CRC32C for {}: the file cannot be recorded with a checksum",
                object.key
            ))
        })?;
        files.push(FileEntry {
            path: object.key,
            bytes: object.size,
            rows: footer.rows,
            sha256: String::new(),
            crc32c: Some(crc32c),
            plaintext_sha256: None,
            partition: None,
        });
    }
    let rows: u64 = files.iter().map(|f| f.rows).sum();
    // A snapshot's row count is exact: the files must hold every row of it.
    let expected = bigquery.get_table(source).await?.num_rows;
    if let Some(expected) = expected
        && expected != rows
    {
        return Err(Error::upstream(format!(
            "extract job {} wrote {rows} rows of {}, its snapshot holds {expected}",
            outcome.job_id, planned.table
        )));
    }
    let bytes = files.iter().map(|f| f.bytes).sum();
    tracing::info!(rows, bytes, files = files.len(), job_id = %outcome.job_id, "table extracted");
    Ok(TableEntry {
        table: planned.table.clone(),
        kind: planned.kind,
        resource: table_resource(planned)?,
        definition: None,
        arrow_schema: Some(encode_arrow_schema(&schema)),
        rows,
        bytes,
        files,
        format: None,
        method: Some(ExportMethod::Extract),
        partitions: None,
    })
}

/// A Parquet file's footer, from its last bytes (more of them when the footer is larger).
async fn footer(
    os: &std::sync::Arc<dyn object_store::ObjectStore>,
    key: &str,
    size: u64,
) -> Result<ParquetFooter, Error> {
    let path = Path::parse(key).map_err(|e| Error::upstream(format!("{key}: {e}")))?;
    let mut probe = FOOTER_PROBE_BYTES.min(size);
    loop {
        let tail = os
            .get_range(&path, size - probe..size)
            .await
            .map_err(|e| object_error("reading", &path, e))?;
        let found = on_rayon(move || read_parquet_footer(tail, size))
            .await?
            .map_err(|e| {
                Error::upstream(format!(
                    "{key}, written by BigQuery, has no readable Parquet footer: {e}"
                ))
            })?;
        match found {
            Some(footer) => return Ok(footer),
            None if probe < size => probe = (probe * 4).min(size),
            None => {
                return Err(Error::upstream(format!(
                    "{key}, written by BigQuery, has no complete Parquet footer"
                )));
            }
        }
    }
}

/// The repository's label value: the first 16 hex digits of the SHA-256 of its URI (a label
/// value holds at most 63 lowercase letters, digits, `_` and `-`; a URI does not fit).
fn repository_label(store: &Store) -> String {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(store.uri().to_string().as_bytes());
    hex::encode(&digest[..8])
}
