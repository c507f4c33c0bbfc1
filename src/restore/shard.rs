//! A restore sharded over worker processes, table by table (`"shards": N` on a restore request).
//!
//! The service plans the restore as usual, gives each table to one of N shards (the largest
//! first, each to the shard with the fewest bytes so far), and writes the plan to the state
//! store (`sharded-restores/{jobId}/plan.json`: the request with its backup id pinned, and the
//! tables of each shard). Each `bq-backup worker --restore-job JOB` runs its shard as an ordinary
//! restore of its tables — a job of its own, with its marker, its checks and its cleanup — and
//! then writes its report (`shards/{I}.json`). Once every shard reported, the service's job
//! recreates the views (they read tables of any shard) and ends with the whole report.
//!
//! A shard run again (the engines retry failed tasks) skips the tables an earlier run of it
//! restored: a table's restore is all or nothing, so a target that now holds exactly the
//! manifest's rows was restored by it. That is why a sharded restore cannot append.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::plan::RestorePlan;
use super::run::{RestoreContext, run_restore};
use crate::backup::shard::{Launcher, Work, launch};
use crate::domain::{BackupId, JobId, TableRef, WriteDisposition};
use crate::error::{Error, FieldError};
use crate::exec::ShardsProgress;
use crate::storage::versioned::{self, VersionedFile};
use crate::storage::{Store, create_file, delete_if_exists, layout, object_error, read_file};

/// How long the service's job follows the shards before it gives up.
pub const RESTORE_SHARDS_DEADLINE: Duration = Duration::from_secs(24 * 60 * 60);

/// What every shard of a sharded restore runs.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredRestorePlan {
    #[serde(default = "versioned::version_1")]
    pub version: u32,
    pub job_id: JobId,
    pub backup_id: BackupId,
    pub shards: u32,
    pub created_at: DateTime<Utc>,
    pub write_disposition: WriteDisposition,
    /// The request each shard runs for its tables: the original one, its backup id pinned (not
    /// `latest`), without `shards`, `tables`, `wait` and `dryRun`.
    pub request: Value,
    pub tables: Vec<ShardedTable>,
}

impl VersionedFile for StoredRestorePlan {
    const WHAT: &'static str = "sharded restore plan";
    const VERSION: u32 = 1;
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ShardedTable {
    pub source: TableRef,
    pub target: TableRef,
    /// The rows the manifest records: a target holding exactly these was restored.
    pub rows: u64,
    pub bytes: u64,
    pub shard: u32,
}

/// A shard's report: the tables it restored (its restore job's lines) and those an earlier run
/// of it had restored.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RestoreShardReport {
    #[serde(default = "versioned::version_1")]
    pub version: u32,
    pub job_id: JobId,
    pub shard: u32,
    pub finished_at: DateTime<Utc>,
    pub tables: Vec<Value>,
    pub restored_before: Vec<String>,
    pub rows: u64,
}

impl VersionedFile for RestoreShardReport {
    const WHAT: &'static str = "restore shard report";
    const VERSION: u32 = 1;
}

impl StoredRestorePlan {
    /// The plan of `plan` for `shards` shards, run by job `job_id`; `request` as received.
    pub fn of(plan: &RestorePlan, job_id: JobId, shards: u32, request: &Value) -> Self {
        let weights: Vec<u64> = plan.tables.iter().map(|t| t.bytes.max(1)).collect();
        let tables = plan
            .tables
            .iter()
            .zip(crate::exec::balance(&weights, shards))
            .map(|(t, shard)| ShardedTable {
                source: t.source.clone(),
                target: t.target.clone(),
                rows: t.rows,
                bytes: t.bytes,
                shard,
            })
            .collect();
        let mut request = request.clone();
        if let Some(fields) = request.as_object_mut() {
            for field in ["shards", "tables", "wait", "dryRun"] {
                fields.remove(field);
            }
            fields.insert("backupId".into(), plan.backup_id.to_string().into());
        }
        Self {
            version: Self::VERSION,
            job_id,
            backup_id: plan.backup_id,
            shards,
            created_at: Utc::now(),
            write_disposition: plan.disposition,
            request,
            tables,
        }
    }

    /// The restore request shard `shard` runs for `tables` (source `dataset.table` names).
    pub fn request_for(&self, tables: &[&ShardedTable]) -> Value {
        let mut request = self.request.clone();
        if let Some(fields) = request.as_object_mut() {
            let names: Vec<Value> = tables
                .iter()
                .map(|t| format!("{}.{}", t.source.dataset, t.source.table).into())
                .collect();
            fields.insert("tables".into(), names.into());
        }
        request
    }
}

pub async fn write_plan(state: &Store, plan: &StoredRestorePlan) -> Result<(), Error> {
    if create_file(state, &layout::sharded_restore_plan(&plan.job_id), plan).await? {
        return Ok(());
    }
    Err(Error::conflict(format!(
        "restore job {} has a sharded plan already",
        plan.job_id
    )))
}

pub async fn read_plan(state: &Store, job: &JobId) -> Result<Option<StoredRestorePlan>, Error> {
    read_file(state, &layout::sharded_restore_plan(job)).await
}

pub async fn read_report(
    state: &Store,
    job: &JobId,
    shard: u32,
) -> Result<Option<RestoreShardReport>, Error> {
    read_file(state, &layout::sharded_restore_report(job, shard)).await
}

/// Writes `report`, create-if-absent; `false` when the shard had reported already.
pub async fn write_report(state: &Store, report: &RestoreShardReport) -> Result<bool, Error> {
    create_file(
        state,
        &layout::sharded_restore_report(&report.job_id, report.shard),
        report,
    )
    .await
}

/// The tables of `plan` that shard `shard` still has to restore, and those an earlier run of it
/// restored (their target holds exactly the manifest's rows; with WRITE_TRUNCATE every table is
/// restored again, which gives the same table).
pub async fn remaining<'a>(
    bigquery: &crate::bigquery::BigQuery,
    plan: &'a StoredRestorePlan,
    shard: u32,
) -> Result<(Vec<&'a ShardedTable>, Vec<&'a ShardedTable>), Error> {
    let mut todo = Vec::new();
    let mut done = Vec::new();
    for table in plan.tables.iter().filter(|t| t.shard == shard) {
        let restored = plan.write_disposition == WriteDisposition::WriteEmpty
            && bigquery
                .find_table(&table.target)
                .await?
                .is_some_and(|t| t.num_rows.unwrap_or(0) == table.rows && table.rows > 0);
        if restored {
            done.push(table);
        } else {
            todo.push(table);
        }
    }
    Ok((todo, done))
}

/// Writes the plan, starts the workers (`launcher`) and follows their reports; once every shard
/// reported, restores the views of `plan` and answers with the whole report. A cancelled or
/// given-up restore removes its plan, so that no shard starts on it.
pub async fn plan_and_follow(
    plan: &RestorePlan,
    ctx: &RestoreContext,
    state: &Store,
    stored: &StoredRestorePlan,
    launcher: &Launcher,
) -> Result<Value, Error> {
    let started = Instant::now();
    write_plan(state, stored).await?;
    let work = Work {
        what: format!("restore job {}", stored.job_id),
        env: vec![("BQB_RESTORE_JOB", stored.job_id.to_string())],
        shards: stored.shards,
    };
    tracing::info!(job_id = %stored.job_id, shards = stored.shards, tables = stored.tables.len(), "sharded restore planned; waiting for its shards");
    let launched = match launch(launcher, &work).await {
        Ok(launched) => launched,
        Err(e) => {
            withdraw(state, stored).await;
            return Err(e);
        }
    };
    let mut reports: BTreeMap<u32, RestoreShardReport> = BTreeMap::new();
    loop {
        for shard in reported(state, &stored.job_id).await? {
            if !reports.contains_key(&shard)
                && let Some(report) = read_report(state, &stored.job_id, shard).await?
            {
                tell(ctx, stored, &report);
                reports.insert(shard, report);
            }
        }
        if let Some(progress) = &ctx.progress {
            progress.shards(&ShardsProgress {
                total: stored.shards,
                reported: reports.len() as u32,
                missing: (0..stored.shards)
                    .filter(|s| !reports.contains_key(s))
                    .take(ShardsProgress::MISSING_SHOWN)
                    .collect(),
                rows: reports.values().map(|r| r.rows).sum(),
                ..Default::default()
            });
        }
        if reports.len() as u32 >= stored.shards {
            break;
        }
        if started.elapsed() > RESTORE_SHARDS_DEADLINE {
            withdraw(state, stored).await;
            return Err(Error::new(
                crate::error::ErrorKind::Unavailable,
                format!(
                    "restore job {}: not every shard reported within {} hours; the tables restored stay",
                    stored.job_id,
                    RESTORE_SHARDS_DEADLINE.as_secs() / 3600
                ),
            ));
        }
        tokio::select! {
            () = ctx.cancel.cancelled() => {
                withdraw(state, stored).await;
                return Err(Error::cancelled(format!(
                    "sharded restore job {} was cancelled: its plan is removed, so no shard starts on it; tables its shards restored stay",
                    stored.job_id
                )));
            }
            () = tokio::time::sleep(ctx.lease.heartbeat) => {}
        }
    }
    // The views read tables of any shard: created once they are all there.
    let views = RestorePlan {
        tables: Vec::new(),
        ..plan.clone()
    };
    let mut report = serde_json::to_value(run_restore(&views, ctx).await?)
        .map_err(|e| Error::internal(format!("report: {e}")))?;
    let tables: Vec<Value> = reports
        .values()
        .flat_map(|r| r.tables.iter().cloned())
        .collect();
    report["tables"] = tables.into();
    report["rows"] = reports.values().map(|r| r.rows).sum::<u64>().into();
    report["restoredBefore"] = reports
        .values()
        .flat_map(|r| r.restored_before.iter().cloned())
        .collect::<Vec<_>>()
        .into();
    report["shards"] = json!(stored.shards);
    if let Some(launched) = launched {
        report["launched"] = launched;
    }
    report["durationMs"] = u64::try_from(started.elapsed().as_millis())
        .unwrap_or(u64::MAX)
        .into();
    Ok(report)
}

/// Tells the job's record that the tables of `report`'s shard are restored.
fn tell(ctx: &RestoreContext, stored: &StoredRestorePlan, report: &RestoreShardReport) {
    let Some(progress) = &ctx.progress else {
        return;
    };
    for table in stored.tables.iter().filter(|t| t.shard == report.shard) {
        progress.table_finished(&table.target.to_string(), table.rows, 0, 0);
    }
}

/// The shards of restore job `job` that have a report.
async fn reported(state: &Store, job: &JobId) -> Result<Vec<u32>, Error> {
    let dir = layout::sharded_restore_dir(job);
    let shards: Vec<u32> = state
        .object_store()
        .list(Some(&dir))
        .map_ok(|meta| layout::shard_of_restore_report(job, &meta.location))
        .try_collect::<Vec<_>>()
        .await
        .map_err(|e| object_error("listing", &dir, e))?
        .into_iter()
        .flatten()
        .collect();
    Ok(shards)
}

async fn withdraw(state: &Store, stored: &StoredRestorePlan) {
    let path = layout::sharded_restore_plan(&stored.job_id);
    if let Err(e) = delete_if_exists(state.object_store().as_ref(), &path).await {
        let e = object_error("deleting", &path, e);
        tracing::warn!(job_id = %stored.job_id, error = %e, "removing the plan of a sharded restore given up on failed");
    }
}

/// Checks a worker's shard against the plan; every problem named.
pub fn check_shard(plan: &StoredRestorePlan, shard: u32, shards: u32) -> Result<(), Error> {
    let mut problems = Vec::new();
    if shards != plan.shards {
        problems.push(FieldError::new(
            "shards",
            format!(
                "is {shards}, but restore job {} was planned with {} shards",
                plan.job_id, plan.shards
            ),
        ));
    }
    if shard >= plan.shards {
        problems.push(FieldError::new(
            "shard",
            format!(
                "is {shard}, but restore job {} has shards 0 to {}",
                plan.job_id,
                plan.shards.saturating_sub(1)
            ),
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(
            "the shard does not belong to the restore's plan",
            problems,
        ))
    }
}
