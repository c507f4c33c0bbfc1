//! A restore drill (`"drill": true`): proof that a backup restores. The backup is restored like
//! any other, into scratch datasets of the drill's own (`bqb_drill_{random}_{dataset}`, named by
//! the request's validation); then every restored table is read back through the Storage Read
//! API and compared with the backup: its row count with the manifest's, and its content digest
//! (every row, in any order: see `catalog::digest`) with that of the rows decoded from the
//! backup's files (whose sizes and checksums the restore checked on its way). The scratch
//! datasets are removed whatever happened, and the result — time to restore, rows per second,
//! pass or fail per table — is written beside the backup (`backups/{id}/drills/…`).
//!
//! A drill fails when the restore fails (a tampered file stops it, naming the file), when a
//! table differs, or when its scratch datasets cannot be removed; the job then fails too (422
//! for a backup that does not restore to what it records), with the result written all the same.

use std::time::Instant;

use chrono::Utc;
use futures::StreamExt;

use super::plan::{RestorePlan, RestoreTable};
use super::run::{RestoreContext, run_restore};
use crate::catalog::TableEntry;
use crate::catalog::digest::RowDigest;
use crate::catalog::drills::{DrillRecord, DrillTable, write_drill};
use crate::catalog::stream::read_batches;
use crate::catalog::verify::{decode_options, table_schema};
use crate::error::{Error, ErrorKind, FieldError};

/// Runs the drill `plan` (a restore plan whose targets are scratch datasets) and records it; the
/// record, and the error the drill's job fails with when it did not pass.
pub async fn run_drill(
    plan: &RestorePlan,
    ctx: &RestoreContext,
) -> (DrillRecord, Result<(), Error>) {
    let started_at = Utc::now();
    let started = Instant::now();
    let restored = run_restore(plan, ctx).await;
    let restore_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    let mut tables = Vec::new();
    let mut problem = None;
    match &restored {
        Ok(_) => {
            for table in &plan.tables {
                let Some(entry) = plan.manifest.table(&table.source) else {
                    continue;
                };
                if !entry.kind.holds_data() {
                    continue;
                }
                match compare(plan, ctx, table, entry).await {
                    Ok(compared) => tables.push(compared),
                    Err(e) => {
                        problem = Some(format!("comparing {}: {e}", table.source));
                        break;
                    }
                }
            }
        }
        Err(e) => problem = Some(format!("the restore failed: {e}")),
    }
    // The scratch datasets go, whatever happened (the restore removes what it created only
    // when it fails).
    for dataset in &plan.datasets {
        if let Err(e) = ctx.bigquery.delete_scratch_dataset(&dataset.target).await {
            tracing::warn!(dataset = %dataset.target, error = %e, "removing a drill's scratch dataset failed");
            problem.get_or_insert_with(|| {
                format!(
                    "removing the scratch dataset {} failed: {e}",
                    dataset.target
                )
            });
        }
    }
    let rows: u64 = tables.iter().map(|t| t.restored_rows).sum();
    let differing: Vec<&DrillTable> = tables.iter().filter(|t| !t.passed).collect();
    let passed = restored.is_ok() && problem.is_none() && differing.is_empty();
    let record = DrillRecord {
        version: 1,
        backup_id: plan.backup_id,
        job_id: ctx.job_id.to_string(),
        started_at,
        finished_at: Utc::now(),
        passed,
        restore_ms,
        rows,
        rows_per_second: rows as f64 / (restore_ms.max(1) as f64 / 1000.0),
        tables: tables.clone(),
        problem: problem.clone(),
    };
    if let Err(e) = write_drill(&ctx.store, &record).await {
        tracing::warn!(backup_id = %plan.backup_id, error = %e, "the drill's result could not be written beside the backup");
    }
    tracing::info!(backup_id = %plan.backup_id, passed, rows, restore_ms, "restore drill finished");
    if passed {
        return (record, Ok(()));
    }
    let details: Vec<FieldError> = differing
        .iter()
        .map(|t| {
            FieldError::new(
                t.table.clone(),
                format!(
                    "restored {} rows with content digest {}; the backup holds {} rows with digest {}",
                    t.restored_rows, t.restored_digest, t.expected_rows, t.expected_digest
                ),
            )
        })
        .collect();
    let what = problem.unwrap_or_else(|| {
        let names: Vec<&str> = differing.iter().map(|t| t.table.as_str()).collect();
        format!(
            "{} did not restore to what the backup holds",
            names.join(", ")
        )
    });
    let kind = match restored {
        Err(e) if e.kind() != ErrorKind::DamagedBackup => e.kind(),
        _ => ErrorKind::DamagedBackup,
    };
    let error = Error::new(
        kind,
        format!("restore drill of backup {} failed: {what}", plan.backup_id),
    )
    .with_details(details);
    (record, Err(error))
}

/// Reads `table`'s restored copy back and the backup's files of it, and compares them.
async fn compare(
    plan: &RestorePlan,
    ctx: &RestoreContext,
    table: &RestoreTable,
    entry: &TableEntry,
) -> Result<DrillTable, Error> {
    let reader = ctx
        .bigquery
        .open_read(&table.target, &Default::default())
        .await?;
    let schema = reader.schema();
    let mut restored = RowDigest::new(schema.clone()).map_err(Error::internal)?;
    let mut batches = reader.batches();
    while let Some(batch) = batches.next().await {
        restored
            .add(&batch?)
            .map_err(|e| Error::internal(format!("the restored table {}: {e}", table.target)))?;
    }
    let mut expected = RowDigest::new(schema).map_err(Error::internal)?;
    let file_schema = table_schema(&plan.manifest, entry)?;
    let options = decode_options(&plan.manifest, entry);
    let os = ctx.store.object_store();
    for file in &entry.files {
        let mut batches = read_batches(
            os,
            file,
            file_schema.clone(),
            options,
            true,
            plan.keys.clone(),
        );
        while let Some(batch) = batches
            .next()
            .await
            .map_err(|problem| problem.into_error(&file.path))?
        {
            expected
                .add(&batch)
                .map_err(|e| Error::damaged(&file.path, e))?;
        }
    }
    let passed = restored.rows() == entry.rows
        && expected.rows() == entry.rows
        && restored.hex() == expected.hex();
    Ok(DrillTable {
        table: table.source.to_string(),
        scratch: table.target.to_string(),
        expected_rows: entry.rows,
        restored_rows: restored.rows(),
        expected_digest: expected.hex(),
        restored_digest: restored.hex(),
        passed,
    })
}
