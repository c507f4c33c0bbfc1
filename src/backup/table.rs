//! Exports one table: one read session at the snapshot time, its streams read and written in
//! parallel (one file sequence per stream), the table's manifest entry assembled at the end.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use object_store::ObjectStore;
use tokio_util::sync::CancellationToken;

use super::plan::{BackupPlan, PlannedTable};
use super::writer::TableFiles;
use crate::bigquery::{BigQuery, ReadOptions, TableResource};
use crate::catalog::TableEntry;
use crate::error::Error;

#[tracing::instrument(skip_all, fields(table = %planned.table, backup_id = %plan.backup_id))]
pub(crate) async fn export_table(
    bigquery: &BigQuery,
    store: Arc<dyn ObjectStore>,
    plan: &BackupPlan,
    planned: &PlannedTable,
    cancel: &CancellationToken,
) -> Result<TableEntry, Error> {
    let options = ReadOptions {
        snapshot_time: Some(plan.snapshot_time),
        ..Default::default()
    };
    let reader = bigquery.open_read(&planned.table, &options).await?;
    let schema = reader.schema();
    let files = Arc::new(TableFiles {
        store,
        backup_id: plan.backup_id,
        table: planned.table.clone(),
        schema: schema.clone(),
        encode: plan.encode,
        file_size_bytes: plan.file_size_bytes,
        next_index: AtomicUsize::new(0),
    });
    // One stream failing stops its siblings through `streams_stop`, and every stream is awaited
    // to its end: a stream that stops aborts its unfinished upload, where a dropped future
    // would leave the upload's parts behind in the store.
    let streams_stop = cancel.child_token();
    let streams = (0..reader.stream_count()).map(|i| {
        let files = files.clone();
        let stream = reader.stream(i);
        let stop = streams_stop.clone();
        async move {
            let result = files.export_stream(stream, &stop).await;
            if result.is_err() {
                stop.cancel();
            }
            result
        }
    });
    let results = futures::future::join_all(streams).await;
    let mut entries = Vec::new();
    let mut first_error: Option<Error> = None;
    for result in results {
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

    let rows = entries.iter().map(|f| f.rows).sum();
    let bytes = entries.iter().map(|f| f.bytes).sum();
    tracing::info!(rows, bytes, files = entries.len(), "table exported");
    Ok(TableEntry {
        table: planned.table.clone(),
        kind: planned.kind,
        resource: table_resource(planned)?,
        definition: None,
        arrow_schema: Some(crate::catalog::encode_arrow_schema(&schema)),
        rows,
        bytes,
        files: entries,
        format: None,
        method: Some(crate::domain::ExportMethod::Stream),
    })
}

/// The table resource as stored in the manifest.
pub(crate) fn table_resource(planned: &PlannedTable) -> Result<TableResource, Error> {
    TableResource::of(&planned.resource)
}
