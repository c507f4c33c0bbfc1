//! The service's side of a sharded backup: writes the stored plan, then follows the shards'
//! reports until the manifest is there (whichever shard finished last wrote it), telling the
//! job record how many shards reported and what they wrote.
//!
//! The workers are started by whatever runs N copies of the container (a Cloud Run Job, a
//! Kubernetes Indexed Job, processes started by hand): the plan names them
//! `bq-backup worker --repository URI --backup-id ID --shard I --shards N`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::Utc;
use object_store::ObjectStoreExt;

use super::commit::{Commit, commit_sharded};
use super::launch::{Work, launch};
use super::plan::{StoredPlan, prepare, write_plan};
use super::report::{ShardReport, read_report, reported_shards};
use super::settings::Launcher;
use crate::backup::plan::BackupPlan;
use crate::backup::run::{BackupContext, BackupReport, TableReport, ensure_can_start};
use crate::catalog::Manifest;
use crate::domain::ExportMethod;
use crate::error::Error;
use crate::exec::ShardsProgress;
use crate::storage::{Store, delete_if_exists, layout, object_error};

/// How long the shards have, from the plan, to report: BigQuery's read sessions expire six
/// hours after they are created, and a stream cannot be read after that.
pub const SHARDS_DEADLINE: Duration = Duration::from_secs(6 * 60 * 60);

/// Writes the plan of `plan` for `shards` shards and follows them until the manifest is
/// written, the deadline passes, or the job is cancelled. A cancelled or timed-out backup's
/// plan is removed, so that no shard starts on it and none can commit it.
pub async fn plan_and_follow(
    plan: &BackupPlan,
    ctx: &BackupContext,
    shards: u32,
    launcher: &Launcher,
) -> Result<BackupReport, Error> {
    let started = Instant::now();
    let started_at = Utc::now();
    // A complete backup of the id, or one being written by a single process, is never mixed
    // with shards' files.
    ensure_can_start(&ctx.store, plan).await?;
    let stored = prepare(&ctx.bigquery, plan, shards, started_at).await?;
    write_plan(&ctx.store, &stored).await?;
    tracing::info!(
        backup_id = %plan.backup_id,
        shards,
        streams = stored.units.len(),
        worker = %format!("bq-backup worker --repository {} --backup-id {} --shard I --shards {shards}", plan.storage, plan.backup_id),
        "sharded backup planned; waiting for its shards"
    );
    let work = Work {
        what: format!("backup {}", plan.backup_id),
        env: vec![
            ("BQB_BACKUP_ID", plan.backup_id.to_string()),
            ("BQB_REPOSITORY", plan.storage.to_string()),
        ],
        shards,
    };
    let launched = match launch(launcher, &work).await {
        Ok(launched) => launched,
        Err(e) => {
            withdraw(&ctx.store, &stored).await;
            return Err(e);
        }
    };
    if let Some(launched) = &launched {
        tracing::info!(backup_id = %plan.backup_id, launched = %launched, "shard workers started");
    }
    let mut follower = Follower::new(&stored, ctx);
    let poll = ctx.lease.heartbeat;
    let manifest = loop {
        match follower.poll(&ctx.store).await? {
            Some(manifest) => break manifest,
            None if started.elapsed() > SHARDS_DEADLINE => {
                withdraw(&ctx.store, &stored).await;
                return Err(Error::new(
                    crate::error::ErrorKind::Unavailable,
                    format!(
                        "backup {}: shards {:?} did not report within {} hours of the plan, when its read sessions expire; no manifest was written (delete the backup id to remove what the shards wrote, and plan it again with more shards)",
                        plan.backup_id,
                        follower.progress.missing,
                        SHARDS_DEADLINE.as_secs() / 3600
                    ),
                ));
            }
            None => {}
        }
        tokio::select! {
            () = ctx.cancel.cancelled() => {
                withdraw(&ctx.store, &stored).await;
                return Err(Error::cancelled(format!(
                    "sharded backup {} was cancelled: its plan is removed, so no shard commits it; shards still running fail, and deleting the backup id removes what they wrote",
                    plan.backup_id
                )));
            }
            () = tokio::time::sleep(poll) => {}
        }
    };
    if let Some(progress) = &ctx.progress {
        for table in manifest.tables.iter().filter(|t| t.kind.holds_data()) {
            progress.table_finished(
                &table.table.to_string(),
                table.rows,
                table.bytes,
                table.files.len() as u64,
            );
        }
    }
    let mut report = report(plan, &manifest, started, started_at);
    report.launched = launched;
    Ok(report)
}

/// What the job knows of the shards so far: the reports read once each.
struct Follower<'a> {
    ctx: &'a BackupContext,
    plan: &'a StoredPlan,
    reports: BTreeMap<u32, ShardReport>,
    progress: ShardsProgress,
}

impl<'a> Follower<'a> {
    fn new(plan: &'a StoredPlan, ctx: &'a BackupContext) -> Self {
        let progress = ShardsProgress {
            total: plan.shards,
            missing: (0..plan.shards)
                .take(ShardsProgress::MISSING_SHOWN)
                .collect(),
            ..Default::default()
        };
        Self {
            ctx,
            plan,
            reports: BTreeMap::new(),
            progress,
        }
    }

    /// Reads the new reports and tells the job; the manifest once it is written.
    async fn poll(&mut self, store: &Store) -> Result<Option<Manifest>, Error> {
        let id = self.plan.backup_id;
        let plan = layout::plan(&id);
        match store.object_store().head(&plan).await {
            Ok(_) => {}
            Err(object_store::Error::NotFound { .. }) => {
                // Committed meanwhile (the plan stays with the manifest), or deleted.
                return match commit_sharded(store, &id).await {
                    Ok(Commit::Written(manifest) | Commit::Committed(manifest)) => {
                        Ok(Some(*manifest))
                    }
                    _ => Err(Error::conflict(format!(
                        "the plan of sharded backup {id} was removed (the backup id was deleted): no manifest will be written"
                    ))),
                };
            }
            Err(e) => return Err(object_error("reading", &plan, e)),
        }
        let reported = reported_shards(store, &id).await?;
        for shard in &reported {
            if !self.reports.contains_key(shard)
                && let Some(report) = read_report(store, &id, *shard).await?
            {
                self.reports.insert(*shard, report);
            }
        }
        self.progress = ShardsProgress {
            total: self.plan.shards,
            reported: self.reports.len() as u32,
            missing: (0..self.plan.shards)
                .filter(|s| !self.reports.contains_key(s))
                .take(ShardsProgress::MISSING_SHOWN)
                .collect(),
            rows: self.reports.values().map(ShardReport::rows).sum(),
            bytes: self.reports.values().map(ShardReport::bytes).sum(),
            files: self
                .reports
                .values()
                .map(|r| r.files().count() as u64)
                .sum(),
        };
        if let Some(progress) = &self.ctx.progress {
            progress.shards(&self.progress);
        }
        if (self.reports.len() as u32) < self.plan.shards {
            return Ok(None);
        }
        // Every shard reported: the last one commits; committing here too changes nothing
        // when it did, and finishes the backup when its commit failed.
        match commit_sharded(store, &id).await? {
            Commit::Written(manifest) | Commit::Committed(manifest) => Ok(Some(*manifest)),
            Commit::Waiting { .. } => Ok(None),
        }
    }
}

/// Removes the plan of a backup given up on (best effort; logged).
async fn withdraw(store: &Store, plan: &StoredPlan) {
    let path = layout::plan(&plan.backup_id);
    if let Err(e) = delete_if_exists(store.object_store().as_ref(), &path).await {
        let e = object_error("deleting", &path, e);
        tracing::warn!(backup_id = %plan.backup_id, error = %e, "removing the plan of a sharded backup given up on failed");
    }
}

/// The backup's answer, its tables' lines from the manifest (the shards read each table).
fn report(
    plan: &BackupPlan,
    manifest: &Manifest,
    started: Instant,
    started_at: chrono::DateTime<Utc>,
) -> BackupReport {
    let tables = manifest
        .tables
        .iter()
        .filter(|t| t.kind.holds_data())
        .map(|t| TableReport {
            table: t.table.to_string(),
            method: ExportMethod::Stream,
            rows: t.rows,
            bytes: t.bytes,
            files: t.files.len(),
            duration_ms: 0,
            partitions: t.partitions,
        })
        .collect();
    BackupReport::of(plan, manifest, tables, started, started_at)
}
