//! Executes a [`RestorePlan`]: datasets, then tables (bounded fan-out; each all-or-nothing),
//! then views with their references pointed at the restored datasets.

use std::sync::Arc;
use std::time::Instant;

use chrono::{DateTime, Utc};
use futures::StreamExt;
use serde::Serialize;
use tokio_util::sync::CancellationToken;

use super::plan::{RestorePlan, RestoreTable};
use super::resources::{dataset_for_create, routine_for_create, table_for_create};
use super::sql_rewrite::rewrite_references;
use super::table::{LoadMethod, restore_table};
use crate::bigquery::BigQuery;
use crate::catalog::lease::{Lease, LeaseTiming};
use crate::domain::{DatasetRef, JobId, WriteDisposition};
use crate::error::{Error, FieldError, most_telling};
use crate::exec::Progress;
use crate::storage::Store;
use crate::storage::layout::SharedLease;

#[derive(Clone)]
pub struct RestoreContext {
    /// The restore's job: its staging tables carry its id, so that what a restore that died
    /// left behind can be told apart (`recovery`).
    pub job_id: JobId,
    pub bigquery: BigQuery,
    pub store: Store,
    pub cancel: CancellationToken,
    /// Told as each table starts and ends (job records, progress bars); tables by target name.
    pub progress: Option<Arc<dyn Progress>>,
    /// How often the restore's lease on the backup is refreshed.
    pub lease: LeaseTiming,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreReport {
    pub backup_id: String,
    pub status: &'static str,
    pub storage_uri: String,
    pub source_project: String,
    pub target_project: String,
    pub tables: Vec<TableRestoreReport>,
    pub views: Vec<String>,
    pub routines: Vec<String>,
    pub rows: u64,
    pub started_at: DateTime<Utc>,
    pub finished_at: DateTime<Utc>,
    pub duration_ms: u64,
    pub warnings: Vec<FieldError>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TableRestoreReport {
    pub source: String,
    pub target: String,
    pub rows: u64,
    pub method: LoadMethod,
    /// Every file's size, SHA-256 and row count matched the manifest. `false` for a backup in
    /// the Java layout, which records none of them: its files were decoded, not verified.
    pub verified: bool,
    pub duration_ms: u64,
}

pub async fn run_restore(plan: &RestorePlan, ctx: &RestoreContext) -> Result<RestoreReport, Error> {
    // While the restore reads the backup it holds a lease on it, so that no instance deletes or
    // prunes it underneath. Best effort: a restore may only have read access to the repository.
    let os = ctx.store.object_store().clone();
    let held = match Lease::hold(os, plan.backup_id, SharedLease::Restore, ctx.lease).await {
        Ok(lease) => Some(lease),
        Err(e) => {
            tracing::warn!(backup_id = %plan.backup_id, error = %e, "cannot write a restore lease; the backup is not protected from deletion while it is read");
            None
        }
    };
    // The plan was made from the manifest read before the lease existed: a delete or prune may
    // have slipped in between. Under the lease the backup can no longer go, so read it again.
    let result = match still_the_planned_backup(plan, ctx).await {
        Ok(()) => restore_all(plan, ctx).await,
        Err(e) => Err(e),
    };
    if let Some(lease) = held {
        lease.release().await;
    }
    result
}

async fn still_the_planned_backup(plan: &RestorePlan, ctx: &RestoreContext) -> Result<(), Error> {
    if plan.manifest.legacy {
        return Ok(());
    }
    if crate::catalog::prune::delete_in_progress(ctx.store.object_store(), &plan.backup_id).await? {
        return Err(Error::conflict(format!(
            "backup {} is being deleted; it cannot be restored",
            plan.backup_id
        )));
    }
    match crate::catalog::read_manifest(&ctx.store, &plan.backup_id).await? {
        Some(now) if now == *plan.manifest => Ok(()),
        Some(_) => Err(Error::conflict(format!(
            "backup {} changed after the restore was planned; start the restore again",
            plan.backup_id
        ))),
        None => Err(Error::not_found(format!(
            "backup {} was deleted after the restore was planned",
            plan.backup_id
        ))),
    }
}

/// Restores everything; when that fails, the datasets this restore created and left empty go
/// again (one with a restored table in it stays: its tables are complete).
async fn restore_all(plan: &RestorePlan, ctx: &RestoreContext) -> Result<RestoreReport, Error> {
    let mut created = Vec::new();
    let result = restore_into(plan, ctx, &mut created).await;
    if result.is_err() {
        for dataset in &created {
            match ctx.bigquery.delete_dataset_if_empty(dataset).await {
                Ok(true) => {
                    tracing::info!(dataset = %dataset, "removed the dataset a failed restore created")
                }
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(dataset = %dataset, error = %e, "removing the dataset a failed restore created failed")
                }
            }
        }
    }
    result
}

async fn restore_into(
    plan: &RestorePlan,
    ctx: &RestoreContext,
    created: &mut Vec<DatasetRef>,
) -> Result<RestoreReport, Error> {
    let started = Instant::now();
    let started_at = Utc::now();
    for ds in &plan.datasets {
        let recorded = plan
            .manifest
            .datasets
            .iter()
            .find(|d| d.dataset == ds.source.dataset)
            .map(|d| d.resource.clone())
            .unwrap_or_default();
        let resource = dataset_for_create(&recorded, &ds.target, ds.location.as_deref())
            .map_err(|e| plan.manifest.damaged_resource(&ds.source, e))?;
        if ctx.bigquery.create_dataset(&ds.target, resource).await? {
            tracing::info!(dataset = %ds.target, "dataset created");
            created.push(ds.target.clone());
        }
    }

    let restores: Vec<_> = plan
        .tables
        .iter()
        .map(|t| restore_one(plan, ctx, t))
        .collect();
    let results: Vec<(&RestoreTable, Result<TableRestoreReport, Error>)> =
        futures::stream::iter(restores)
            .buffer_unordered(plan.max_parallel_tables)
            .collect()
            .await;
    let mut tables = Vec::new();
    let mut failures = Vec::new();
    for (table, result) in results {
        match result {
            Ok(report) => tables.push(report),
            Err(e) => failures.push((table, e)),
        }
    }
    if let Some(lead) = most_telling(failures.iter().map(|(_, e)| e)) {
        let names: Vec<String> = failures.iter().map(|(t, _)| t.target.to_string()).collect();
        // A table's own details (the damaged file, the field) say more than its name.
        let details = failures
            .iter()
            .flat_map(|(t, e)| match e.details() {
                [] => vec![FieldError::new(t.target.to_string(), e.to_string())],
                own => own.to_vec(),
            })
            .collect();
        let restored = if tables.is_empty() {
            String::new()
        } else {
            format!("; {} other tables were restored", tables.len())
        };
        let (_, lead) = failures.swap_remove(lead);
        return Err(Error::new(
            lead.kind(),
            format!(
                "restoring {} failed: nothing of these tables was written{restored}",
                names.join(", ")
            ),
        )
        .with_details(details)
        .with_source(lead));
    }
    tables.sort_by(|a, b| a.target.cmp(&b.target));

    // Routines before views: a view may call a function.
    let (routines, kept) = restore_routines(plan, ctx).await?;
    let (views, skipped) = restore_views(plan, ctx).await?;
    let mut warnings = plan.warnings.clone();
    warnings.extend(kept);
    warnings.extend(skipped);
    Ok(RestoreReport {
        backup_id: plan.backup_id.to_string(),
        status: "SUCCEEDED",
        storage_uri: plan.storage_uri.clone(),
        source_project: plan.source_project.clone(),
        target_project: plan.target_project.clone(),
        rows: tables.iter().map(|t| t.rows).sum(),
        tables,
        views,
        routines,
        started_at,
        finished_at: Utc::now(),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        warnings,
    })
}

async fn restore_one<'a>(
    plan: &'a RestorePlan,
    ctx: &'a RestoreContext,
    table: &'a RestoreTable,
) -> (&'a RestoreTable, Result<TableRestoreReport, Error>) {
    let started = Instant::now();
    if ctx.cancel.is_cancelled() {
        return (table, Err(Error::cancelled("the restore was cancelled")));
    }
    let name = table.target.to_string();
    if let Some(progress) = &ctx.progress {
        progress.table_started(&name);
    }
    let result = restore_table(ctx, plan, table)
        .await
        .map(|(rows, method)| TableRestoreReport {
            source: table.source.to_string(),
            target: table.target.to_string(),
            rows,
            method,
            verified: !plan.manifest.legacy,
            duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        });
    if let Some(progress) = &ctx.progress {
        match &result {
            Ok(report) => progress.table_finished(&name, report.rows, 0, 0),
            Err(e) => progress.table_failed(&name, e),
        }
    }
    (table, result)
}

/// Views after the tables they read, their SQL pointed at the restored datasets (legacy SQL is
/// kept as written, with a warning when datasets were renamed). A view whose definition was not
/// recorded is skipped with a warning, never created as something else.
async fn restore_views(
    plan: &RestorePlan,
    ctx: &RestoreContext,
) -> Result<(Vec<String>, Vec<FieldError>), Error> {
    let mappings = dataset_mappings(plan);
    let mut done = Vec::new();
    let mut skipped = Vec::new();
    for view in &plan.views {
        let Some(entry) = plan.manifest.table(&view.source) else {
            continue;
        };
        let legacy = entry
            .resource
            .uses_legacy_sql()
            .map_err(|e| plan.manifest.damaged_resource(&view.source, e))?;
        let Some(query) = entry.definition.as_deref().map(|q| {
            if legacy {
                q.to_string()
            } else {
                rewrite_references(q, &view.source.project, &view.target.project, &mappings)
            }
        }) else {
            skipped.push(FieldError::new(
                view.target.to_string(),
                format!(
                    "view {} was backed up without its SQL definition and is not restored",
                    view.source
                ),
            ));
            continue;
        };
        if view.target_exists {
            if plan.disposition != WriteDisposition::WriteTruncate {
                continue;
            }
            ctx.bigquery.delete_table(&view.target).await?;
        }
        if legacy && mappings.iter().any(|(source, target)| source != target) {
            skipped.push(FieldError::new(
                view.target.to_string(),
                format!(
                    "view {} is legacy SQL, whose names are not rewritten: any name of a restored dataset in it still reads the source dataset",
                    view.source
                ),
            ));
        }
        let resource = table_for_create(&entry.resource, &view.target, Some(query), Utc::now())
            .map_err(|e| plan.manifest.damaged_resource(&view.source, e))?;
        ctx.bigquery.create_table(&view.target, resource).await?;
        done.push(view.target.to_string());
    }
    Ok((done, skipped))
}

/// Routines of the restored datasets, their bodies pointed at the restored datasets. An existing
/// routine is kept (with a warning) unless the request says WRITE_TRUNCATE.
async fn restore_routines(
    plan: &RestorePlan,
    ctx: &RestoreContext,
) -> Result<(Vec<String>, Vec<FieldError>), Error> {
    let mappings = dataset_mappings(plan);
    let mut done = Vec::new();
    let mut kept = Vec::new();
    for entry in &plan.manifest.routines {
        let Some((_, target)) = mappings.iter().find(|(s, _)| s.dataset == entry.dataset) else {
            continue;
        };
        let name = format!("{target}.{}", entry.routine);
        let routine = routine_for_create(
            &entry.resource,
            &entry.project,
            target,
            &entry.routine,
            &mappings,
        )
        .map_err(|e| {
            let source = format!("{}.{}.{}", entry.project, entry.dataset, entry.routine);
            plan.manifest.damaged_resource(&source, e)
        })?;
        if !ctx.bigquery.create_routine(target, &routine).await? {
            if plan.disposition != WriteDisposition::WriteTruncate {
                kept.push(FieldError::new(name.clone(), format!("routine {name} exists and was kept (writeDisposition WRITE_TRUNCATE replaces it)")));
                continue;
            }
            ctx.bigquery.delete_routine(target, &entry.routine).await?;
            ctx.bigquery.create_routine(target, &routine).await?;
        }
        done.push(name);
    }
    Ok((done, kept))
}

/// Source dataset → restored dataset, for rewriting references in views and routines.
fn dataset_mappings(plan: &RestorePlan) -> Vec<(DatasetRef, DatasetRef)> {
    plan.datasets
        .iter()
        .map(|d| (d.source.clone(), d.target.clone()))
        .collect()
}
