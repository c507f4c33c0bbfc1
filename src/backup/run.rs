//! Executes a [`BackupPlan`]: claims the backup id, exports the tables with bounded fan-out,
//! writes the manifest last (create-if-absent), and on failure removes what it wrote so that a
//! failed backup can never be mistaken for a complete one.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use object_store::ObjectStore;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::extract::{Snapshots, extract_table};
use super::plan::{BackupPlan, PlannedTable};
use super::table::{export_table, table_resource};
use crate::bigquery::BigQuery;
use crate::catalog::attempt::{Keep, live_claim};
use crate::catalog::lease::{Claim, Claimed, Lease, LeaseRecord, LeaseTiming};
use crate::catalog::{
    self, DatasetEntry, FormatEntry, Manifest, ManifestStatus, RoutineEntry, TableEntry, Totals,
};
use crate::domain::{BackupId, BackupMethod, ExportMethod, TableRef};
use crate::error::{Error, ErrorKind, FieldError, most_telling};
use crate::exec::Progress;
use crate::storage::layout::SharedLease;
use crate::storage::{Store, layout};

/// One table's outcome.
type TableOutcome = (TableRef, Result<(TableEntry, TableReport), Error>);

/// What a backup runs with.
#[derive(Clone)]
pub struct BackupContext {
    pub bigquery: BigQuery,
    pub store: Store,
    /// Cancelled to stop the backup (job cancel, shutdown): no manifest is written.
    pub cancel: CancellationToken,
    /// Told as each table starts and ends (job records, progress bars).
    pub progress: Option<Arc<dyn Progress>>,
    /// How often the backup claim is refreshed (and so when a dead backup's claim goes stale).
    pub lease: LeaseTiming,
}

/// The answer to a finished backup.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BackupReport {
    pub backup_id: String,
    pub status: &'static str,
    pub snapshot_time: DateTime<Utc>,
    pub storage_uri: String,
    pub format: String,
    pub compression: String,
    pub manifest: String,
    pub tables: Vec<TableReport>,
    pub views: Vec<String>,
    pub totals: Totals,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub warnings: Vec<FieldError>,
    /// A sharded backup's workers, as the service started them (`BQB_SHARD_LAUNCHER`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub launched: Option<serde_json::Value>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableReport {
    pub table: String,
    /// `STREAM` or `EXTRACT`.
    pub method: ExportMethod,
    pub rows: u64,
    pub bytes: u64,
    pub files: usize,
    pub duration_ms: u64,
    /// A table read partition by partition: how many were read, reused and dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub partitions: Option<crate::catalog::PartitionsEntry>,
}

pub async fn run_backup(plan: &BackupPlan, ctx: &BackupContext) -> Result<BackupReport, Error> {
    let started = Instant::now();
    let started_at = Utc::now();
    let os = ctx.store.object_store().clone();
    let claim = claim(&os, plan, ctx).await?;
    tracing::info!(backup_id = %plan.backup_id, tables = plan.tables.len(), "backup started");

    let (cancel, watcher) = claim.cancel_on_loss(&ctx.cancel);
    let run = BackupContext {
        cancel: cancel.clone(),
        ..ctx.clone()
    };
    // An incremental backup keeps the backups whose files it lists from being deleted until
    // its manifest names them (from then on, delete and prune see it depend on them).
    let bases = match plan.incremental.as_ref() {
        Some(incremental) => hold_bases(&ctx.store, incremental, ctx.lease).await,
        None => Ok(Vec::new()),
    };
    let result = match bases {
        Ok(leases) => {
            let result = match export_with_snapshots(plan, &run, &os).await {
                Ok(exported) => commit(plan, &run, &claim, started_at, exported.entries)
                    .await
                    .map(|manifest| (manifest, exported.reports, exported.warnings)),
                Err(e) => Err(e),
            };
            for lease in leases {
                lease.release().await;
            }
            result
        }
        Err(e) => Err(e),
    };
    cancel.cancel();
    let _ = watcher.await;
    let result = match result {
        Ok(done) => done,
        Err(e) => {
            tracing::warn!(backup_id = %plan.backup_id, error = %e, "backup failed; removing its files");
            // The claim is released only after the cleanup: until then no other backup may
            // start writing the same id.
            if !claim.lost().is_cancelled() {
                remove_attempt(&ctx.store, &plan.backup_id).await;
            }
            claim.release().await;
            return Err(e);
        }
    };
    claim.release().await;
    let (manifest, tables, fallback) = result;
    tracing::info!(backup_id = %plan.backup_id, rows = manifest.totals.rows, bytes = manifest.totals.bytes, "backup complete");
    let mut report = BackupReport::of(plan, &manifest, tables, started, started_at);
    report.warnings.extend(fallback);
    Ok(report)
}

impl BackupReport {
    /// The answer to the backup `plan` once `manifest` is written, with `tables`' lines and the
    /// plan's warnings.
    pub(crate) fn of(
        plan: &BackupPlan,
        manifest: &Manifest,
        tables: Vec<TableReport>,
        started: Instant,
        started_at: DateTime<Utc>,
    ) -> Self {
        Self {
            backup_id: plan.backup_id.to_string(),
            status: "SUCCEEDED",
            snapshot_time: plan.snapshot_time,
            storage_uri: plan.storage.to_string(),
            format: plan.encode.format.as_str().to_string(),
            compression: plan.encode.compression.as_str().to_string(),
            manifest: format!("{}/{}", plan.storage, layout::manifest(&plan.backup_id)),
            tables,
            views: plan
                .definitions
                .iter()
                .map(|d| d.table.to_string())
                .collect(),
            totals: manifest.totals,
            started_at,
            finished_at: manifest.finished_at,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            warnings: plan.warnings.clone(),
            launched: None,
        }
    }
}

/// Takes the backup id, refusing one that is committed (always) or being written by a live
/// backup (always). The files of an attempt that died (its claim went stale) are removed first:
/// an incomplete backup holds nothing a user can restore, so replacing it loses nothing.
async fn claim(
    os: &Arc<dyn ObjectStore>,
    plan: &BackupPlan,
    ctx: &BackupContext,
) -> Result<Claim, Error> {
    ensure_not_committed(&ctx.store, plan).await?;
    // A live claim is never taken over: two writers would mix their files.
    let claim = match Claim::acquire(
        os.clone(),
        layout::claim_dir(&plan.backup_id),
        plan.backup_id,
        ctx.lease,
    )
    .await?
    {
        Claimed::Held(claim) => claim,
        Claimed::Busy(holder) => return Err(being_written(plan, &holder)),
    };
    // Committed between the first look and the claim (a holder that finished meanwhile).
    if let Err(e) = ensure_not_committed(&ctx.store, plan).await {
        claim.release().await;
        return Err(e);
    }
    if claim.took_over {
        tracing::warn!(backup_id = %plan.backup_id, "an earlier attempt at this backup id died; removing its files");
        remove_attempt(&ctx.store, &plan.backup_id).await;
    }
    Ok(claim)
}

/// Refuses, before any work starts, a backup id that cannot be written now: one that is
/// committed, or claimed by a live backup. [`run_backup`] makes the same checks again under its
/// claim, and those are the ones that count (another backup may commit or claim the id in
/// between); this one lets the API answer such a conflict while the caller waits, instead of
/// accepting a job that can only fail.
pub async fn ensure_can_start(store: &Store, plan: &BackupPlan) -> Result<(), Error> {
    ensure_not_committed(store, plan).await?;
    match live_claim(store, &plan.backup_id).await? {
        Some(holder) => Err(being_written(plan, &holder)),
        None => Ok(()),
    }
}

fn being_written(plan: &BackupPlan, holder: &LeaseRecord) -> Error {
    Error::conflict(format!(
        "backup {} in {} is being written by another backup right now (its claim was refreshed at {}); retry later",
        plan.backup_id,
        plan.storage,
        holder.heartbeat_at.to_rfc3339()
    ))
}

async fn ensure_not_committed(store: &Store, plan: &BackupPlan) -> Result<(), Error> {
    if catalog::read_manifest(store, &plan.backup_id)
        .await?
        .is_some()
    {
        return Err(Error::conflict(format!(
            "backup {} already exists in {}: a complete backup is never overwritten",
            plan.backup_id, plan.storage
        )));
    }
    // A sharded backup of the id is under way (or was given up on: DELETE of the id removes it).
    if super::shard::read_plan(store, &plan.backup_id)
        .await?
        .is_some()
    {
        return Err(Error::conflict(format!(
            "backup {} in {} is planned as a sharded backup (it has a plan.json): its shards write it; delete the backup id to start over",
            plan.backup_id, plan.storage
        )));
    }
    Ok(())
}

/// What the tables' export gave: their manifest entries and report lines, and warnings about
/// how it went (a method fallen back on).
struct Exported {
    entries: Vec<TableEntry>,
    reports: Vec<TableReport>,
    warnings: Vec<FieldError>,
}

/// [`export_all`], with the EXTRACT tables snapshotted first (see `extract`) and the snapshots
/// removed afterwards, whatever the outcome (a cancel included).
///
/// A backup that chose EXTRACT by itself (`AUTO`) and is refused the snapshots for want of
/// permission (creating the temporary dataset needs `bigquery.datasets.create`, which a
/// read-only service account lacks) streams its tables instead, with a warning saying what to
/// grant: a backup that used to work with STREAM keeps working. An EXTRACT the caller asked for
/// fails instead, naming the permission.
async fn export_with_snapshots(
    plan: &BackupPlan,
    ctx: &BackupContext,
    os: &Arc<dyn ObjectStore>,
) -> Result<Exported, Error> {
    let extracts = plan
        .tables
        .iter()
        .any(|t| t.method == Some(ExportMethod::Extract));
    let exported = |(entries, reports)| Exported {
        entries,
        reports,
        warnings: Vec::new(),
    };
    if !extracts {
        return export_all(plan, ctx, os, &Snapshots::default())
            .await
            .map(exported);
    }
    let mut snapshots = Snapshots::default();
    let taken = snapshots
        .take(&ctx.bigquery, &ctx.store, plan, &ctx.cancel)
        .await;
    let result = match taken {
        Ok(()) => export_all(plan, ctx, os, &snapshots).await.map(exported),
        Err(e) if ctx.cancel.is_cancelled() => Err(Error::cancelled(format!(
            "backup {} was cancelled",
            plan.backup_id
        ))
        .with_source(e)),
        Err(e) if plan.method == BackupMethod::Auto && e.kind() == ErrorKind::PermissionDenied => {
            tracing::warn!(backup_id = %plan.backup_id, error = %e, "EXTRACT refused for want of permission; streaming every table instead");
            // What was snapshotted before the refusal goes before the long part starts.
            std::mem::take(&mut snapshots).remove(&ctx.bigquery).await;
            let streamed = plan.streaming_only();
            let warning = FieldError::new(
                "method",
                format!(
                    "AUTO chose EXTRACT, but BigQuery refused the table snapshots it needs ({}); every table was streamed instead (billed by the Storage Read API). Grant the service account bigquery.datasets.create, bigquery.tables.createSnapshot, bigquery.tables.export and bigquery.tables.delete on the project (roles/bigquery.user and roles/bigquery.dataEditor hold them), or ask for \"method\": \"STREAM\"",
                    e.message()
                ),
            );
            export_all(&streamed, ctx, os, &Snapshots::default())
                .await
                .map(|(entries, reports)| Exported {
                    entries,
                    reports,
                    warnings: vec![warning],
                })
        }
        Err(e) => Err(Error::new(
            e.kind(),
            format!(
                "backup {} failed while snapshotting its tables for EXTRACT ({}): no manifest was written",
                plan.backup_id,
                e.message()
            ),
        )
        .with_source(e)),
    };
    snapshots.remove(&ctx.bigquery).await;
    result
}

/// Exports every table, at most `max_parallel_tables` at once. The first failure cancels the
/// others, which stop at their next batch; every table that failed is named in the error.
async fn export_all(
    plan: &BackupPlan,
    ctx: &BackupContext,
    os: &Arc<dyn ObjectStore>,
    snapshots: &Snapshots,
) -> Result<(Vec<TableEntry>, Vec<TableReport>), Error> {
    let stop = ctx.cancel.child_token();
    let exports: Vec<_> = plan
        .tables
        .iter()
        .map(|planned| export_one(plan, ctx, os, planned, snapshots, stop.clone()))
        .collect();
    let results: Vec<TableOutcome> = futures::stream::iter(exports)
        .buffer_unordered(plan.max_parallel_tables.max(1))
        .collect()
        .await;

    if ctx.cancel.is_cancelled() {
        return Err(Error::cancelled(format!(
            "backup {} was cancelled",
            plan.backup_id
        )));
    }
    let mut entries = Vec::new();
    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for (table, result) in results {
        match result {
            Ok((entry, report)) => {
                entries.push(entry);
                reports.push(report);
            }
            // Tables stopped because another failed are not failures of their own.
            Err(e) if e.is_cancelled() => {}
            Err(e) => failures.push((table, e)),
        }
    }
    if failures.is_empty() {
        entries.sort_by(|a, b| a.table.cmp(&b.table));
        reports.sort_by(|a, b| a.table.cmp(&b.table));
        return Ok((entries, reports));
    }
    let lead = most_telling(failures.iter().map(|(_, e)| e)).unwrap_or_default();
    let details = failures
        .iter()
        .map(|(t, e)| FieldError::new(t.to_string(), e.to_string()))
        .collect::<Vec<_>>();
    let names = failures
        .iter()
        .map(|(t, _)| t.to_string())
        .collect::<Vec<_>>()
        .join(", ");
    // The source is the leading failure, so that a storage failure can still be attributed to
    // the request field that named the repository (`Store::attribute`).
    let (_, lead) = failures.swap_remove(lead);
    Err(Error::new(
        lead.kind(),
        format!(
            "backup {} failed for {}: no manifest was written",
            plan.backup_id, names
        ),
    )
    .with_details(details)
    .with_source(lead))
}

/// One table of [`export_all`]: skipped once `stop` fired, and firing it when it fails.
async fn export_one(
    plan: &BackupPlan,
    ctx: &BackupContext,
    os: &Arc<dyn ObjectStore>,
    planned: &PlannedTable,
    snapshots: &Snapshots,
    stop: CancellationToken,
) -> TableOutcome {
    let started = Instant::now();
    let name = planned.table.to_string();
    let result = if stop.is_cancelled() {
        Err(Error::cancelled("cancelled"))
    } else {
        if let Some(progress) = &ctx.progress {
            progress.table_started(&name);
        }
        match planned.method {
            Some(ExportMethod::Extract) => {
                let source = snapshots.source_of(&planned.table);
                extract_table(&ctx.bigquery, &ctx.store, plan, planned, source, &stop).await
            }
            _ => export_table(&ctx.bigquery, os.clone(), plan, planned, &stop).await,
        }
    };
    let result = result.map(|entry| {
        let report = TableReport {
            table: planned.table.to_string(),
            method: entry.method.unwrap_or_default(),
            rows: entry.rows,
            bytes: entry.bytes,
            files: entry.files.len(),
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            partitions: entry.partitions,
        };
        if let Some(progress) = &ctx.progress {
            progress.table_finished(&name, report.rows, report.bytes, report.files as u64);
        }
        (entry, report)
    });
    if let Err(e) = &result {
        if let Some(progress) = &ctx.progress
            && !e.is_cancelled()
        {
            progress.table_failed(&name, e);
        }
        stop.cancel();
    }
    (planned.table.clone(), result)
}

/// The manifest of `plan` with the data tables' entries `tables` (views and other definitions
/// are added from the plan), finished now. A sharded backup builds its draft the same way, with
/// each table's files still empty.
pub(crate) fn manifest_of(
    plan: &BackupPlan,
    started_at: DateTime<Utc>,
    mut tables: Vec<TableEntry>,
) -> Result<Manifest, Error> {
    for planned in &plan.definitions {
        tables.push(TableEntry {
            table: planned.table.clone(),
            kind: planned.kind,
            resource: table_resource(planned)?,
            definition: planned
                .resource
                .view
                .as_ref()
                .map(|v| v.query.clone())
                .or_else(|| {
                    planned
                        .resource
                        .materialized_view
                        .as_ref()
                        .map(|m| m.query.clone())
                }),
            arrow_schema: None,
            rows: 0,
            bytes: 0,
            files: Vec::new(),
            format: None,
            method: None,
            partitions: None,
        });
    }
    let totals = totals_of(&tables);
    let encryption = plan
        .encryption
        .as_ref()
        .map(|r| catalog::EncryptionEntry::age(r.keys()));
    let incremental = plan
        .incremental
        .as_ref()
        .map(|i| catalog::IncrementalEntry {
            base: i.base,
            depends_on: i.depends_on.clone(),
        });
    let manifest = Manifest {
        manifest_version: catalog::manifest::version_for(
            &tables,
            encryption.as_ref(),
            incremental.as_ref(),
        ),
        backup_id: plan.backup_id,
        status: ManifestStatus::Complete,
        snapshot_time: plan.snapshot_time,
        created_at: started_at,
        finished_at: Utc::now(),
        expires_at: plan.expires_at,
        reason: plan.reason.clone(),
        labels: plan.labels.clone(),
        tool: format!("bq-backup {}", env!("CARGO_PKG_VERSION")),
        request: plan.request.clone(),
        format: FormatEntry::of(&plan.encode),
        totals,
        datasets: plan
            .datasets
            .iter()
            .map(|d| DatasetEntry {
                project: d.dataset.project.clone(),
                dataset: d.dataset.dataset.clone(),
                location: d.location.clone(),
                resource: d.resource.clone(),
            })
            .collect(),
        tables,
        routines: plan
            .routines
            .iter()
            .map(|r| RoutineEntry {
                project: r.dataset.project.clone(),
                dataset: r.dataset.dataset.clone(),
                routine: r.routine.clone(),
                resource: r.resource.clone(),
            })
            .collect(),
        legacy: false,
        encryption,
        incremental,
    };
    Ok(manifest)
}

/// The totals of a manifest's tables: those that hold data, their rows, bytes and files.
pub(crate) fn totals_of(tables: &[TableEntry]) -> Totals {
    let data: Vec<&TableEntry> = tables.iter().filter(|t| t.kind.holds_data()).collect();
    Totals {
        tables: data.len() as u64,
        rows: data.iter().map(|t| t.rows).sum(),
        bytes: data.iter().map(|t| t.bytes).sum(),
        files: data.iter().map(|t| t.files.len() as u64).sum(),
    }
}

async fn commit(
    plan: &BackupPlan,
    ctx: &BackupContext,
    claim: &Claim,
    started_at: DateTime<Utc>,
    tables: Vec<TableEntry>,
) -> Result<Manifest, Error> {
    let manifest = manifest_of(plan, started_at, tables)?;
    if ctx.cancel.is_cancelled() {
        return Err(Error::cancelled(format!(
            "backup {} was cancelled",
            plan.backup_id
        )));
    }
    if !claim.confirm().await? {
        return Err(Error::conflict(format!(
            "backup {} lost its claim to another backup of the same id: no manifest was written",
            plan.backup_id
        )));
    }
    catalog::write_manifest(&ctx.store, &manifest).await?;
    Ok(manifest)
}

/// Holds a base lease on every backup an incremental backup lists files of, then checks that
/// each is still complete and not being deleted: a delete that started first is seen here (its
/// intent), one that starts later sees the lease. Releases what it took when it fails.
async fn hold_bases(
    store: &Store,
    incremental: &super::incremental::IncrementalPlan,
    timing: LeaseTiming,
) -> Result<Vec<Lease>, Error> {
    let os = store.object_store();
    let mut held = Vec::new();
    let result = async {
        for id in &incremental.depends_on {
            held.push(Lease::hold(os.clone(), *id, SharedLease::Base, timing).await?);
            let gone = if crate::catalog::prune::delete_in_progress(os, id).await? {
                "is being deleted"
            } else if catalog::read_manifest(store, id).await?.is_none() {
                "was deleted"
            } else {
                continue;
            };
            return Err(Error::conflict(format!(
                "backup {id}, which this incremental backup takes partitions from (its base {}), {gone}; no manifest was written",
                incremental.base
            )));
        }
        Ok(())
    }
    .await;
    match result {
        Ok(()) => Ok(held),
        Err(e) => {
            for lease in held {
                lease.release().await;
            }
            Err(e)
        }
    }
}

/// Best effort: removes what a failed or dead attempt at backup `id` wrote, never the claim
/// (held by this backup) or a manifest; a failure is logged (DELETE of the id removes the rest).
async fn remove_attempt(store: &Store, id: &BackupId) {
    if let Err(e) = catalog::attempt::remove_attempt(store, id, Keep::Claim).await {
        tracing::warn!(backup_id = %id, error = %e, "removing a failed attempt's files failed; delete the backup id to remove them");
    }
}
