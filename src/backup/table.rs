//! Exports one table: one read session at the snapshot time, its streams read in parallel into
//! one bounded queue of batches, which a few writers (one per core, never more than streams)
//! encode and upload as files, the table's manifest entry assembled at the end.
//!
//! Readers and writers are decoupled so that memory does not follow the number of streams (each
//! writer holds a Parquet row group in progress and its upload; a stream only the batch it is
//! handing over), and so that the next batches are read while the current ones are encoded.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use object_store::ObjectStore;
use tokio::sync::{Mutex, mpsc};
use tokio_util::sync::CancellationToken;

use super::incremental::TablePartitions;
use super::partitions::Scheme;
use super::plan::{BackupPlan, PlannedTable};
use super::writer::TableFiles;
use crate::bigquery::{BatchStream, BigQuery, ReadOptions, TableReader, TableResource};
use crate::catalog::{FileEntry, PartitionsEntry, TableEntry};
use crate::error::Error;

/// Writers (files being written at once) of a table with `streams` read streams: one per rayon
/// thread, as each encodes on one, and never more than the streams, so that a table read
/// through one stream is still one file (below `fileSizeBytes`).
fn writer_count(streams: usize) -> usize {
    streams.min(rayon::current_num_threads()).max(1)
}

#[tracing::instrument(skip_all, fields(table = %planned.table, backup_id = %plan.backup_id))]
pub(crate) async fn export_table(
    bigquery: &BigQuery,
    store: Arc<dyn ObjectStore>,
    plan: &BackupPlan,
    planned: &PlannedTable,
    cancel: &CancellationToken,
) -> Result<TableEntry, Error> {
    let by_partition = planned
        .partitions
        .as_ref()
        .and_then(|p| p.scheme.as_ref().map(|scheme| (p, scheme)));
    let (files, arrow_schema, partitions) = match by_partition {
        None => {
            let read = Read {
                bigquery,
                store: &store,
                plan,
                planned,
            };
            let (files, schema) = read.part(None, None, cancel).await?;
            (files, crate::catalog::encode_arrow_schema(&schema), None)
        }
        Some((partitions, scheme)) => {
            let read = Read {
                bigquery,
                store: &store,
                plan,
                planned,
            };
            export_partitions(&read, partitions, scheme, cancel).await?
        }
    };
    let rows = files.iter().map(|f| f.rows).sum();
    let bytes = files.iter().map(|f| f.bytes).sum();
    tracing::info!(rows, bytes, files = files.len(), "table exported");
    Ok(TableEntry {
        table: planned.table.clone(),
        kind: planned.kind,
        resource: table_resource(planned)?,
        definition: None,
        arrow_schema: Some(arrow_schema),
        rows,
        bytes,
        files,
        format: None,
        method: Some(crate::domain::ExportMethod::Stream),
        partitions,
    })
}

/// Partitions of one table read at once: each is a read session of its own, and most are
/// small, so a few at once hide the sessions' latency; few, because each has its writers.
const PARTITIONS_AT_ONCE: usize = 4;

/// What one table's reads share.
struct Read<'a> {
    bigquery: &'a BigQuery,
    store: &'a Arc<dyn ObjectStore>,
    plan: &'a BackupPlan,
    planned: &'a PlannedTable,
}

impl Read<'_> {
    /// Reads the rows `restriction` selects (all without one) at the snapshot into files of
    /// `partition` (none: the table's own numbering); the files and the Arrow schema.
    async fn part(
        &self,
        restriction: Option<String>,
        partition: Option<&str>,
        cancel: &CancellationToken,
    ) -> Result<(Vec<FileEntry>, SchemaRef), Error> {
        let options = ReadOptions {
            snapshot_time: Some(self.plan.snapshot_time),
            row_restriction: restriction.unwrap_or_default(),
            ..Default::default()
        };
        let reader = self
            .bigquery
            .open_read(&self.planned.table, &options)
            .await?;
        let files = TableFiles {
            store: self.store.clone(),
            backup_id: self.plan.backup_id,
            table: self.planned.table.clone(),
            schema: reader.schema(),
            encode: self.plan.encode,
            encryption: self.plan.encryption.clone(),
            file_size_bytes: self.plan.file_size_bytes,
            shard: None,
            partition: partition.map(str::to_string),
            next_index: AtomicUsize::new(0),
        };
        let streams: Vec<usize> = (0..reader.stream_count()).collect();
        let entries = export_streams(&reader, &streams, files, cancel).await?;
        Ok((entries, reader.schema()))
    }
}

/// Reads a partitioned table partition by partition (a few at once), then the rest: the rows
/// outside every partition BigQuery listed (none, unless a partition appeared between the
/// snapshot and the listing). The files are the reused ones (an incremental backup's unchanged
/// partitions) and those read. A failure stops the other reads, and each is awaited to its end
/// so that none leaves an unfinished upload behind.
async fn export_partitions(
    read: &Read<'_>,
    partitions: &TablePartitions,
    scheme: &Scheme,
    cancel: &CancellationToken,
) -> Result<(Vec<FileEntry>, String, Option<PartitionsEntry>), Error> {
    let stop = cancel.child_token();
    let restricted = |id: &str| {
        scheme
            .restriction(id)
            .map_err(|e| Error::internal(format!("{}: partition {id}: {e}", read.planned.table)))
    };
    let mut parts = Vec::with_capacity(partitions.read.len() + 1);
    for id in &partitions.read {
        parts.push((Some(restricted(id)?), Some(id.as_str())));
    }
    let rest = scheme.rest(&partitions.listed).map_err(|e| {
        Error::internal(format!(
            "{}: the rest of its partitions: {e}",
            read.planned.table
        ))
    })?;
    parts.push((rest, None));
    let reads: Vec<_> = parts
        .into_iter()
        .map(|(restriction, partition)| {
            let stop = stop.clone();
            async move {
                if stop.is_cancelled() {
                    return Err(Error::cancelled("cancelled"));
                }
                let result = read.part(restriction, partition, &stop).await;
                if result.is_err() {
                    stop.cancel();
                }
                result
            }
        })
        .collect();
    let results: Vec<_> = futures::stream::iter(reads)
        .buffer_unordered(PARTITIONS_AT_ONCE)
        .collect()
        .await;
    let mut files = partitions.reuse.clone();
    let mut schema = None;
    let mut first_error: Option<Error> = None;
    let mut outside = 0;
    for result in results {
        match result {
            Ok((read, read_schema)) => {
                outside += read.iter().filter(|f| f.partition.is_none()).count();
                files.extend(read);
                schema = Some(read_schema);
            }
            Err(e) => match &first_error {
                Some(kept) if !kept.is_cancelled() || e.is_cancelled() => {}
                _ => first_error = Some(e),
            },
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    if outside > 0 {
        tracing::warn!(
            files = outside,
            "rows outside every listed partition (a partition made while the backup started): kept, but this table is no base for an incremental backup"
        );
    }
    files.sort_by(|a, b| a.path.cmp(&b.path));
    let arrow_schema = schema
        .map(|s| crate::catalog::encode_arrow_schema(&s))
        .or_else(|| partitions.base_arrow_schema.clone())
        .ok_or_else(|| Error::internal(format!("{}: no read gave a schema", read.planned.table)))?;
    let summary = PartitionsEntry {
        read: partitions.partitions_to_read,
        reused: partitions.partitions_reused,
        dropped: partitions.partitions_dropped,
    };
    Ok((files, arrow_schema, Some(summary)))
}

/// Reads `streams` (indexes into `reader`'s streams) in parallel into one bounded queue that
/// the writers of `files` drain; the files written, sorted by key. A whole table passes every
/// stream; a shard of a sharded backup passes the streams assigned to it.
pub(crate) async fn export_streams(
    reader: &TableReader,
    streams: &[usize],
    files: TableFiles,
    cancel: &CancellationToken,
) -> Result<Vec<FileEntry>, Error> {
    let files = Arc::new(files);
    let writers = writer_count(streams.len());
    // One batch waiting per writer: enough for a writer to find the next batch ready when it
    // finishes one, few enough that queued batches stay a small part of memory.
    let (queue, batches) = mpsc::channel::<RecordBatch>(writers);
    let batches = Arc::new(Mutex::new(batches));
    // A reader or writer failing stops the others through `stop`, and every one of them is
    // awaited to its end: a writer that stops aborts its unfinished upload, where a dropped
    // future would leave the upload's parts behind in the store.
    let stop = cancel.child_token();
    let readers: Vec<_> = streams
        .iter()
        .map(|&i| {
            let stream = reader.stream(i);
            let queue = queue.clone();
            let stop = stop.clone();
            async move {
                let result = read_stream(stream, queue, &stop).await;
                if result.is_err() {
                    stop.cancel();
                }
                result
            }
        })
        .collect();
    // Once every reader is done, the queue closes and the writers finish their files.
    drop(queue);
    let writing = (0..writers).map(|_| {
        let files = files.clone();
        let batches = batches.clone();
        let stop = stop.clone();
        async move {
            let result = files.write_batches(&batches, &stop).await;
            if result.is_err() {
                stop.cancel();
            }
            result
        }
    });
    let (read, written) = futures::future::join(
        futures::future::join_all(readers),
        futures::future::join_all(writing),
    )
    .await;
    let mut entries = Vec::new();
    let mut first_error: Option<Error> = None;
    let read = read.into_iter().map(|r| r.map(|()| Vec::new()));
    for result in read.chain(written) {
        match result {
            Ok(files) => entries.extend(files),
            // A sibling's stop is not the cause; keep the error that caused it.
            Err(e) => match &first_error {
                Some(kept) if !kept.is_cancelled() || e.is_cancelled() => {}
                _ => first_error = Some(e),
            },
        }
    }
    if let Some(e) = first_error {
        return Err(e);
    }
    entries.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(entries)
}

/// The table resource as stored in the manifest.
pub(crate) fn table_resource(planned: &PlannedTable) -> Result<TableResource, Error> {
    TableResource::of(&planned.resource)
}

/// Hands every batch of `stream` to the writers, waiting while the queue is full.
async fn read_stream(
    mut stream: BatchStream,
    queue: mpsc::Sender<RecordBatch>,
    cancel: &CancellationToken,
) -> Result<(), Error> {
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return Err(Error::cancelled("cancelled")),
            next = stream.next() => next,
        };
        let Some(batch) = next else { return Ok(()) };
        let batch = batch?;
        if batch.num_rows() == 0 {
            continue;
        }
        tokio::select! {
            () = cancel.cancelled() => return Err(Error::cancelled("cancelled")),
            sent = queue.send(batch) => {
                // Every writer is gone: one failed and stopped the others.
                if sent.is_err() {
                    return Err(Error::cancelled("cancelled"));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_table_gets_a_writer_per_core_but_never_more_than_its_streams() {
        let cores = rayon::current_num_threads();
        assert_eq!(writer_count(0), 1);
        assert_eq!(writer_count(1), 1);
        assert_eq!(writer_count(64), cores.min(64));
    }
}
