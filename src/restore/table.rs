//! Restores one table: create it from the manifest when missing, then load its files by one of
//! three paths. gs:// PARQUET: BigQuery reads the files itself once their checksums are checked
//! (`GCS_LOAD_JOB`). Other PARQUET backups of ours: each file's bytes go to a load job unchanged
//! (`UPLOAD_FILES`, see [`super::files`]). Everything else (AVRO, CSV, JSON, the Java layout):
//! every file is streamed — decoded a batch at a time while its checksum and size are computed
//! on the way, re-encoded as Parquet, row count checked at its end — into one load job with the
//! recorded schema (`UPLOAD`). Memory holds a few batches, a row group on each side and an
//! upload chunk, whatever the file size. Files of a legacy (Java-layout) manifest have no
//! recorded size, checksum or rows: they are only decoded (a file that does not decode still
//! fails the table). The job is created by the upload's final chunk, so a file that fails
//! verification means no job at all; a table this restore created is then removed again.

use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::files::{loads_as_they_are, upload_files};
use super::plan::{RestorePlan, RestoreTable};
use super::resources::table_for_create;
use super::run::RestoreContext;
use crate::bigquery::{BigQuery, LoadOutcome};
use crate::catalog::TableEntry;
use crate::catalog::checksum::FileHasher;
use crate::catalog::stream::read_batches;
use crate::catalog::verify::{decode_options, open_file, table_schema};
use crate::domain::{StorageScheme, WriteDisposition};
use crate::error::Error;
use crate::exec::on_rayon;
use crate::formats::{Compression, EncodeOptions, Encoded, FileEncoder, Format};
use crate::storage::{Store, object_error};

/// How a table's data reached BigQuery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum LoadMethod {
    /// Decoded and re-encoded through the service into one load job (every store).
    Upload,
    /// Each file's bytes sent unchanged to a load job of its own; several files through a
    /// staging table and one copy job (every store but gs://, PARQUET backups of ours).
    UploadFiles,
    /// Loaded by BigQuery from the gs:// files themselves.
    GcsLoadJob,
    /// Nothing to load (an empty table).
    None,
}

/// Restores `table`; returns the rows loaded and how.
#[tracing::instrument(skip_all, fields(table = %table.target, backup_id = %plan.backup_id))]
pub(crate) async fn restore_table(
    ctx: &RestoreContext,
    plan: &RestorePlan,
    table: &RestoreTable,
) -> Result<(u64, LoadMethod), Error> {
    let (bigquery, store, cancel) = (&ctx.bigquery, &ctx.store, &ctx.cancel);
    let entry = plan
        .manifest
        .table(&table.source)
        .ok_or_else(|| Error::internal(format!("{} vanished from the manifest", table.source)))?;
    let created = if table.target_exists {
        false
    } else {
        let resource = table_for_create(&entry.resource, &table.target, None, chrono::Utc::now())
            .map_err(|e| plan.manifest.damaged_resource(&table.source, e))?;
        bigquery.create_table(&table.target, resource).await?;
        true
    };
    let result = match server_side_format(store, plan, entry) {
        _ if entry.files.is_empty() => load_files(bigquery, store, plan, table, entry, cancel)
            .await
            .map(|r| (r, LoadMethod::None)),
        Some(format) => load_from_gcs(bigquery, store, plan, table, entry, format, cancel)
            .await
            .map(|r| (r, LoadMethod::GcsLoadJob)),
        None if loads_as_they_are(plan, entry) => upload_files(ctx, plan, table, entry, created)
            .await
            .map(|r| (r, LoadMethod::UploadFiles)),
        None => load_files(bigquery, store, plan, table, entry, cancel)
            .await
            .map(|r| (r, LoadMethod::Upload)),
    };
    if result.is_err() && created {
        // Nothing of a failed table stays behind: the table we created goes again.
        if let Err(e) = bigquery.delete_table(&table.target).await {
            tracing::warn!(error = %e, "removing the table of a failed restore failed");
        }
    }
    result
}

/// gs:// backups in PARQUET are loaded by BigQuery itself from the files (no data through the
/// service): Parquet carries exact types and any column name. AVRO is not: Avro's name rules make
/// the files carry sanitised names for BigQuery's flexible column names (mapped back only by our
/// decoder); text formats are typed by our decoder too. Those stream through the service, and
/// so do the files of a Java-layout backup: no size, checksum or row count was recorded to
/// check first, so decoding each file with the table's schema is the only check there is. The
/// format is the table's own (a Java-layout backup mixes formats).
fn server_side_format(store: &Store, plan: &RestorePlan, entry: &TableEntry) -> Option<Format> {
    let format = plan.manifest.format_of(entry).format;
    (!plan.manifest.legacy
        && plan.keys.is_none()
        && store.uri().scheme() == StorageScheme::Gs
        && format == Format::Parquet)
        .then_some(format)
}

/// Verifies every file (size and checksum, streamed) and then runs one load job over all of them.
async fn load_from_gcs(
    bigquery: &BigQuery,
    store: &Store,
    plan: &RestorePlan,
    table: &RestoreTable,
    entry: &TableEntry,
    format: Format,
    cancel: &CancellationToken,
) -> Result<u64, Error> {
    let os = store.object_store().clone();
    for file in &entry.files {
        stop_if_cancelled(cancel, table)?;
        let opened = open_file(&os, &file.path)
            .await
            .map_err(|problem| problem.into_error(&file.path))?;
        let location = opened.meta.location.clone();
        let mut stream = opened.into_stream();
        let mut hasher = FileHasher::for_entry(file);
        let mut size = 0u64;
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|e| object_error("reading", &location, e))?;
            size += chunk.len() as u64;
            hasher.update(&chunk);
        }
        if size != file.bytes {
            return Err(Error::damaged(
                &file.path,
                format!("has {size} bytes, the manifest says {}", file.bytes),
            ));
        }
        hasher
            .check()
            .map_err(|problem| Error::damaged(&file.path, problem))?;
    }
    let uri = store.uri();
    let base = match uri.prefix() {
        "" => format!("gs://{}", uri.bucket().unwrap_or_default()),
        prefix => format!("gs://{}/{prefix}", uri.bucket().unwrap_or_default()),
    };
    let uris: Vec<String> = entry
        .files
        .iter()
        .map(|f| format!("{base}/{}", f.path))
        .collect();
    let mut configuration = load_configuration(plan, table, entry)?;
    let load = &mut configuration["load"];
    load["sourceUris"] = json!(uris);
    load["sourceFormat"] = json!(format.as_str());
    let outcome = bigquery
        .load_from_uris(
            &table.target.project,
            plan.location.as_deref(),
            configuration,
        )
        .await?;
    check_loaded_rows(plan, table, &outcome, entry.rows)?;
    tracing::info!(rows = entry.rows, job_id = %outcome.job_id, "table restored by a load job from gs://");
    Ok(entry.rows)
}

async fn load_files(
    bigquery: &BigQuery,
    store: &Store,
    plan: &RestorePlan,
    table: &RestoreTable,
    entry: &TableEntry,
    cancel: &CancellationToken,
) -> Result<u64, Error> {
    if entry.files.is_empty() {
        if entry.rows != 0 {
            return Err(Error::damaged(
                plan.manifest.key(),
                format!(
                    "records {} rows but no files for {}",
                    entry.rows, table.source
                ),
            ));
        }
        return Ok(0);
    }
    let schema: SchemaRef = table_schema(&plan.manifest, entry)?;
    let decode_options = decode_options(&plan.manifest, entry);
    // A legacy manifest records no sizes, checksums or row counts to check against.
    let verify = !plan.manifest.legacy;
    let mut upload = bigquery
        .start_load_upload(
            &table.target.project,
            plan.location.as_deref(),
            load_configuration(plan, table, entry)?,
        )
        .await?;
    let mut encoder = Some(
        FileEncoder::new(
            schema.clone(),
            &EncodeOptions {
                compression: Compression::Snappy,
                ..EncodeOptions::new(Format::Parquet)
            },
        )
        .map_err(|e| Error::internal(format!("parquet encoder for {}: {e}", table.target)))?,
    );
    let os = store.object_store().clone();
    let mut rows = 0u64;
    for file in &entry.files {
        // Before each file: the load job starts only with the last chunk, so stopping here
        // loads nothing (and the table we created is removed).
        stop_if_cancelled(cancel, table)?;
        // Streamed: a batch at a time is decoded, re-encoded and uploaded while the file's
        // checks run on the way; they end before the next file starts, so a damaged file
        // stops the table before the upload's last chunk creates any job.
        let mut batches = read_batches(
            &os,
            file,
            schema.clone(),
            decode_options,
            verify,
            plan.keys.clone(),
        );
        while let Some(batch) = batches
            .next()
            .await
            .map_err(|problem| problem.into_error(&file.path))?
        {
            stop_if_cancelled(cancel, table)?;
            rows += batch.num_rows() as u64;
            let mut enc = encoder
                .take()
                .ok_or_else(|| Error::internal("encoder lost"))?;
            let path = file.path.clone();
            let (enc, output) = on_rayon(move || -> Result<(FileEncoder, Encoded), Error> {
                enc.write(&batch)
                    .map_err(|e| Error::internal(format!("re-encoding {path}: {e}")))?;
                let output = enc.take_output();
                Ok((enc, output))
            })
            .await??;
            encoder = Some(enc);
            for chunk in output.chunks() {
                upload.write(chunk).await?;
            }
        }
    }
    if verify && rows != entry.rows {
        // Each file held the rows recorded for it: the table's own count disagrees.
        return Err(Error::damaged(
            plan.manifest.key(),
            format!(
                "records {} rows for {}, its files hold {rows}",
                entry.rows, table.source
            ),
        ));
    }
    let encoder = encoder.ok_or_else(|| Error::internal("encoder lost"))?;
    let tail = on_rayon(move || encoder.finish())
        .await?
        .map_err(|e| Error::internal(format!("finishing the load file: {e}")))?;
    for chunk in tail.chunks() {
        upload.write(chunk).await?;
    }
    let outcome = upload.finish().await?;
    check_loaded_rows(plan, table, &outcome, rows)?;
    tracing::info!(rows, job_id = %outcome.job_id, "table restored");
    Ok(rows)
}

/// A load job must have written exactly `rows` rows, unless it appended to a table that
/// already held some (then BigQuery's count includes nothing to compare with).
pub(super) fn check_loaded_rows(
    plan: &RestorePlan,
    table: &RestoreTable,
    outcome: &LoadOutcome,
    rows: u64,
) -> Result<(), Error> {
    let exact = plan.disposition != WriteDisposition::WriteAppend || !table.target_exists;
    if exact && outcome.output_rows != rows {
        return Err(Error::upstream(format!(
            "load job {} wrote {} rows into {}, expected {rows}",
            outcome.job_id, outcome.output_rows, table.target
        )));
    }
    Ok(())
}

pub(super) fn stop_if_cancelled(
    cancel: &CancellationToken,
    table: &RestoreTable,
) -> Result<(), Error> {
    if cancel.is_cancelled() {
        return Err(Error::cancelled(format!(
            "the restore of {} was cancelled before its data was loaded",
            table.target
        )));
    }
    Ok(())
}

/// Sends the last chunk and waits for the job. With `exact`, the job must report exactly the
/// rows sent; when appending to a table that had rows, the files' verification and the job's
/// atomicity are the guarantee (what a job reports as `outputRows` there varies by server).
/// The load job: the recorded schema (never autodetect), Parquet with list inference so that
/// REPEATED fields load as arrays, and the requested write disposition.
pub(super) fn load_configuration(
    plan: &RestorePlan,
    table: &RestoreTable,
    entry: &TableEntry,
) -> Result<Value, Error> {
    let fields = entry
        .resource
        .schema_fields()
        .map_err(|e| plan.manifest.damaged_resource(&table.source, e))?;
    Ok(json!({
        "load": {
            "destinationTable": { "projectId": table.target.project, "datasetId": table.target.dataset, "tableId": table.target.table },
            "schema": { "fields": fields },
            "sourceFormat": "PARQUET",
            "parquetOptions": { "enableListInference": true },
            "autodetect": false,
            "createDisposition": "CREATE_NEVER",
            "writeDisposition": plan.disposition.as_str(),
        }
    }))
}
