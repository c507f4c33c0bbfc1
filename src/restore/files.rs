//! Restores a table whose files BigQuery loads as they are (`"method": "UPLOAD_FILES"`): the
//! PARQUET files of a bq-backup manifest, whose schema is the recorded one. No decoding, no
//! re-encoding: each file's bytes go from the store to a load job of their own, read in ranges
//! of one upload chunk (the next range is read while the current one is sent and hashed), its
//! size checked before anything is sent and its checksum and footer row count before the last
//! chunk, which is what creates the job. Memory per file in flight: two chunks.
//!
//! One file loads straight into the target. Several load in parallel (at most
//! `BQB_LOAD_FILES_PER_TABLE` at once), each appending to one staging table in the target's
//! dataset, which one copy job then moves into the target with the requested write disposition:
//! a copy job is atomic, so the target sees every file or none, however many load jobs ran. The
//! staging table is removed whatever happens (and expires after a day should that fail).
//!
//! Why one staging table and not one per file with a single multi-source copy: bqemulator 1.4.0
//! copies only the first of a copy job's `sourceTables`, which would silently lose rows there;
//! one single-source copy works alike on both. Its load jobs count against the staging table's
//! daily quota of table operations, never the target's.

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use serde_json::json;

use super::plan::{RestorePlan, RestoreTable};
use super::resources::staging_table_for_create;
use super::run::RestoreContext;
use super::table::{check_loaded_rows, load_configuration, stop_if_cancelled};
use crate::bigquery::{LoadOutcome, UPLOAD_CHUNK};
use crate::catalog::checksum::FileHasher;
use crate::catalog::stream::store_problem;
use crate::catalog::{FileEntry, TableEntry};
use crate::domain::{JobId, TableRef, WriteDisposition};
use crate::error::Error;
use crate::exec::on_rayon;
use crate::formats::{FooterParse, Format, ParquetLayout};

/// How long a staging table lives should its removal fail: far longer than any restore of one
/// table takes, short enough that a forgotten one goes by itself.
const STAGING_TTL: chrono::Duration = chrono::Duration::hours(24);
/// The last bytes of each file kept to read its footer's row count: enough for the footer of
/// any file bq-backup writes (a larger footer is left to the load job's own count).
const FOOTER_TAIL: usize = 1024 * 1024;

/// The most files of one table loaded as they are, each by a load job of its own. Every load
/// job counts against the staging table's 1,500 daily table operations, and a table read
/// partition by partition has a file per partition at least: beyond this, its files are decoded
/// into one load job instead (`UPLOAD`).
pub(super) const MAX_FILES_AS_THEY_ARE: usize = 100;

/// Whether `entry`'s files can be handed to BigQuery as they are: PARQUET files in clear of a
/// manifest of ours (a Java-layout backup records no checksum to check first, and an encrypted
/// backup's files must be decrypted, so those are decoded), not too many of them.
pub(super) fn loads_as_they_are(plan: &RestorePlan, entry: &TableEntry) -> bool {
    !plan.manifest.legacy
        && plan.keys.is_none()
        && plan.manifest.format_of(entry).format == Format::Parquet
        && entry.files.len() <= MAX_FILES_AS_THEY_ARE
}

/// Loads every file of `entry` (at least one) into `table.target`. `created`: this restore
/// created the target (it is empty).
pub(super) async fn upload_files(
    ctx: &RestoreContext,
    plan: &RestorePlan,
    table: &RestoreTable,
    entry: &TableEntry,
    created: bool,
) -> Result<u64, Error> {
    let [file] = entry.files.as_slice() else {
        return through_staging(ctx, plan, table, entry, created).await;
    };
    // One file: one load job straight into the target, as atomic as the copy would be.
    let configuration = load_configuration(plan, table, entry)?;
    let outcome = upload_file(ctx, plan, table, file, configuration).await?;
    check_loaded_rows(plan, table, &outcome, entry.rows)?;
    tracing::info!(rows = entry.rows, job_id = %outcome.job_id, "table restored from its file");
    Ok(entry.rows)
}

/// The start of the name of every staging table restore job `job` creates: `recovery` removes
/// those of a restore that died by it. The rest of a name is random, so none can clash.
pub(crate) fn staging_prefix(job: &JobId) -> String {
    format!("bqb_staging_{}_", job.as_str().replace('-', "_"))
}

/// Several files: loaded in parallel into a staging table, then one copy job into the target.
async fn through_staging(
    ctx: &RestoreContext,
    plan: &RestorePlan,
    table: &RestoreTable,
    entry: &TableEntry,
    created: bool,
) -> Result<u64, Error> {
    let bigquery = &ctx.bigquery;
    let target = &table.target;
    let random = uuid::Uuid::new_v4().simple().to_string();
    let staging = TableRef::new(
        &target.project,
        &target.dataset,
        format!("{}{}", staging_prefix(&ctx.job_id), &random[..12]),
    );
    let staging = &staging;
    // A copy needs the partitioning and clustering of a target that was there before.
    let existing = match created {
        true => None,
        false => bigquery.find_table(target).await?,
    };
    let now = chrono::Utc::now();
    let resource = staging_table_for_create(
        &entry.resource,
        staging,
        target,
        existing.as_ref(),
        now,
        now + STAGING_TTL,
    )
    .map_err(|e| plan.manifest.damaged_resource(&table.source, e))?;
    stop_if_cancelled(&ctx.cancel, table)?;
    bigquery.create_table(staging, resource).await?;
    tracing::info!(staging = %staging, files = entry.files.len(), "staging table created");
    let result = stage_and_copy(ctx, plan, table, entry, created, staging).await;
    // Whatever happened (done, failed, cancelled): the staging table goes. Its expiration
    // removes it should this fail too.
    if let Err(e) = bigquery.delete_table(staging).await {
        tracing::warn!(staging = %staging, error = %e, "removing the staging table failed; it expires within a day");
    }
    result
}

async fn stage_and_copy(
    ctx: &RestoreContext,
    plan: &RestorePlan,
    table: &RestoreTable,
    entry: &TableEntry,
    created: bool,
    staging: &TableRef,
) -> Result<u64, Error> {
    let bigquery = &ctx.bigquery;
    let mut configuration = load_configuration(plan, table, entry)?;
    let load = &mut configuration["load"];
    load["destinationTable"] = json!({ "projectId": staging.project, "datasetId": staging.dataset, "tableId": staging.table });
    load["writeDisposition"] = json!(WriteDisposition::WriteAppend.as_str());
    let parallel = bigquery.config().load_files_per_table.max(1);
    // The first file that fails stops the others (their uploads are dropped before their last
    // chunk: no job) and the table with them.
    // Collected first: a stream built from a borrowing closure is not `Send` for every lifetime.
    let uploads: Vec<_> = entry
        .files
        .iter()
        .map(|file| upload_file(ctx, plan, table, file, configuration.clone()))
        .collect();
    let loads: Vec<LoadOutcome> = futures::stream::iter(uploads)
        .buffer_unordered(parallel)
        .try_collect()
        .await?;
    // What the copy moves is what the staging table holds: it must be every recorded row. (A
    // load job's own `outputRows` cannot say it here: jobs appending to one table at once may
    // report the table's rows at their end rather than their own.)
    let staged = bigquery
        .find_table(staging)
        .await?
        .and_then(|t| t.num_rows)
        .unwrap_or(0);
    if staged != entry.rows {
        return Err(Error::upstream(format!(
            "staging table {staging} holds {staged} rows after {} load jobs, the manifest records {} for {}",
            loads.len(),
            entry.rows,
            table.source
        )));
    }
    // The last moment to stop: the copy is where the target changes.
    stop_if_cancelled(&ctx.cancel, table)?;
    // A table this restore created is empty: WRITE_EMPTY keeps it as created and refuses
    // should anything else have written to it meanwhile.
    let disposition = match created {
        true => WriteDisposition::WriteEmpty,
        false => plan.disposition,
    };
    let job_id = bigquery
        .copy_table(
            staging,
            &table.target,
            disposition.as_str(),
            plan.location.as_deref(),
        )
        .await
        .map_err(|e| refused_as_not_empty(e, table, disposition))?;
    tracing::info!(
        rows = entry.rows,
        files = loads.len(),
        job_id,
        "table restored from its files through a staging table"
    );
    Ok(entry.rows)
}

/// A copy BigQuery refused because the target holds rows (written since the restore was
/// planned, or rows `tables.get` did not count): a conflict naming the table, as the planner
/// reports a target it sees is not empty. BigQuery answers a duplicate (409); bqemulator a 400
/// saying so.
fn refused_as_not_empty(e: Error, table: &RestoreTable, disposition: WriteDisposition) -> Error {
    let not_empty =
        e.kind() == crate::error::ErrorKind::Conflict || e.message().contains("is not empty");
    if disposition != WriteDisposition::WriteEmpty || !not_empty {
        return e;
    }
    Error::conflict(format!(
        "table {} is not empty; set writeDisposition WRITE_TRUNCATE or WRITE_APPEND to write into it",
        table.target
    ))
    .with_source(e)
}

/// Sends one file's bytes unchanged to a load job configured by `configuration`, and waits for
/// the job. The job is created only after the file's size, checksum and footer row count matched
/// its manifest entry: a damaged file creates no job.
async fn upload_file(
    ctx: &RestoreContext,
    plan: &RestorePlan,
    table: &RestoreTable,
    file: &FileEntry,
    configuration: serde_json::Value,
) -> Result<LoadOutcome, Error> {
    let (bigquery, os, cancel) = (&ctx.bigquery, ctx.store.object_store(), &ctx.cancel);
    let damaged = |problem: String| Error::damaged(&file.path, problem);
    stop_if_cancelled(cancel, table)?;
    let path = Path::parse(&file.path).map_err(|e| damaged(format!("is not a valid key: {e}")))?;
    let size = os
        .head(&path)
        .await
        .map_err(|e| store_problem(&path, e).into_error(&file.path))?
        .size;
    // Before anything is sent.
    if size != file.bytes {
        return Err(damaged(format!(
            "has {size} bytes, the manifest says {}",
            file.bytes
        )));
    }
    let mut ranges = (0..size)
        .step_by(UPLOAD_CHUNK)
        .map(|start| start..(start + UPLOAD_CHUNK as u64).min(size));
    let Some(first) = ranges.next() else {
        return Err(damaged("is empty".into()));
    };
    let mut upload = bigquery
        .start_load_upload(
            &table.target.project,
            plan.location.as_deref(),
            configuration,
        )
        .await?;
    let mut hasher = FileHasher::for_entry(file);
    let mut tail = Tail::default();
    let mut current = read_range(os, &path, &file.path, first).await?;
    for next in ranges {
        stop_if_cancelled(cancel, table)?;
        tail.keep(&current);
        // Hashed on rayon while it is sent and the next range is read.
        let hashing = hash(hasher, current.clone());
        let (hashed, sent, read) = tokio::join!(
            hashing,
            upload.write_chunk(current),
            read_range(os, &path, &file.path, next)
        );
        hasher = hashed?;
        sent?;
        current = read?;
    }
    // `current` is the last range: it goes with the job, after the checks.
    tail.keep(&current);
    let hasher = hash(hasher, current.clone()).await?;
    hasher.check().map_err(damaged)?;
    check_footer_rows(tail, size, file).await?;
    stop_if_cancelled(cancel, table)?;
    upload.write(&current).await?;
    upload.finish().await
}

/// `range` of the file at `path` (`recorded`: its key as the manifest has it).
async fn read_range(
    os: &Arc<dyn ObjectStore>,
    path: &Path,
    recorded: &str,
    range: std::ops::Range<u64>,
) -> Result<Bytes, Error> {
    os.get_range(path, range)
        .await
        .map_err(|e| store_problem(path, e).into_error(recorded))
}

/// `hasher` with `bytes` added, on rayon (CPU work stays off the async workers).
async fn hash(mut hasher: FileHasher, bytes: Bytes) -> Result<FileHasher, Error> {
    on_rayon(move || {
        hasher.update(&bytes);
        hasher
    })
    .await
}

/// The rows the file's footer records must be the manifest's, as they are for every file
/// restored by decoding. The checksum matched, so a footer that does not parse is one the
/// backup wrote unreadable: damage as well.
async fn check_footer_rows(tail: Tail, size: u64, file: &FileEntry) -> Result<(), Error> {
    let tail = Bytes::from(tail.bytes);
    let parsed = on_rayon(move || ParquetLayout::parse(&tail, size)).await?;
    match parsed {
        Ok(FooterParse::Parsed(footer)) if footer.rows() != file.rows => Err(Error::damaged(
            &file.path,
            format!(
                "holds {} rows, the manifest says {}",
                footer.rows(),
                file.rows
            ),
        )),
        Ok(FooterParse::Parsed(_)) => Ok(()),
        Ok(FooterParse::NeedTail(needed)) => {
            tracing::debug!(object_key = %file.path, needed, "the footer is larger than the bytes kept for it; the load job counts the rows");
            Ok(())
        }
        Err(e) => Err(Error::damaged(
            &file.path,
            format!("cannot be decoded: {e}"),
        )),
    }
}

/// The last [`FOOTER_TAIL`] bytes seen.
#[derive(Default)]
struct Tail {
    bytes: Vec<u8>,
}

impl Tail {
    fn keep(&mut self, chunk: &[u8]) {
        if chunk.len() >= FOOTER_TAIL {
            self.bytes.clear();
            self.bytes
                .extend_from_slice(&chunk[chunk.len() - FOOTER_TAIL..]);
            return;
        }
        self.bytes.extend_from_slice(chunk);
        let excess = self.bytes.len().saturating_sub(FOOTER_TAIL);
        self.bytes.drain(..excess);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_bytes_across_chunks() {
        let mut tail = Tail::default();
        tail.keep(&[1, 2, 3]);
        assert_eq!(tail.bytes, [1, 2, 3]);
        let big = vec![7u8; FOOTER_TAIL + 5];
        tail.keep(&big);
        assert_eq!(tail.bytes.len(), FOOTER_TAIL);
        tail.keep(&[9, 9]);
        assert_eq!(tail.bytes.len(), FOOTER_TAIL);
        assert_eq!(&tail.bytes[FOOTER_TAIL - 3..], [7, 9, 9]);
    }
}
