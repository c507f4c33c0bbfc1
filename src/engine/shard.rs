//! The shards of a sharded backup or restore, run anywhere the container runs
//! (`bq-backup worker`), and a sharded backup's commit by hand (`bq-backup commit`). The
//! service's side — writing the plan and following the shards — is the backup or restore job
//! itself (see `backup` and `restore`).

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::{Engine, Started, Submission, Trigger};
use crate::backup::shard::{self, Commit, ShardContext, ShardOrder, ShardOutcome, commit_sharded};
use crate::catalog::lease::LeaseTiming;
use crate::domain::{BackupId, JobId, StorageUri};
use crate::error::Error;
use crate::jobs::Cancelled;
use crate::restore::RestoreOrder;
use crate::restore::shard::{self as restore_shard, RestoreShardReport};
use crate::storage::{Access, Store, layout};

impl Engine {
    /// Runs one shard of the sharded backup in `repository` (`field` names where the URI was
    /// given, for errors about it), then tries its commit.
    pub async fn run_shard(
        &self,
        repository: &StorageUri,
        field: &str,
        order: ShardOrder,
        cancel: CancellationToken,
    ) -> Result<Value, Error> {
        let store = self.repository(repository, field, Access::Write)?;
        let ctx = ShardContext {
            bigquery: self.inner.bigquery.clone(),
            store: store.clone(),
            cancel,
            lease: LeaseTiming::new(self.inner.settings.jobs.heartbeat),
            max_parallel_tables: self.inner.settings.max_parallel_tables,
        };
        let outcome = shard::run_shard(&ctx, order)
            .await
            .map_err(|e| store.attribute(e))?;
        Ok(shard_answer(&store, order, &outcome))
    }

    /// Writes the manifest of the sharded backup `id` if every shard has reported.
    pub async fn commit_sharded(
        &self,
        repository: &StorageUri,
        field: &str,
        id: BackupId,
    ) -> Result<Value, Error> {
        let store = self.repository(repository, field, Access::Write)?;
        let commit = commit_sharded(&store, &id)
            .await
            .map_err(|e| store.attribute(e))?;
        Ok(commit_answer(&store, &id, &commit))
    }
}

fn shard_answer(store: &Store, order: ShardOrder, outcome: &ShardOutcome) -> Value {
    let mut answer = json!({
        "backupId": order.backup_id.to_string(),
        "shard": order.shard,
        "shards": order.shards,
        "ran": outcome.ran,
    });
    if let Some(report) = &outcome.report {
        answer["rows"] = report.rows().into();
        answer["bytes"] = report.bytes().into();
        answer["files"] = (report.files().count() as u64).into();
        answer["report"] = format!(
            "{}/{}",
            store.uri(),
            layout::shard_report(&order.backup_id, order.shard)
        )
        .into();
    }
    answer["commit"] = commit_answer(store, &order.backup_id, &outcome.commit);
    answer
}

fn commit_answer(store: &Store, id: &BackupId, commit: &Commit) -> Value {
    match commit {
        Commit::Written(m) | Commit::Committed(m) => json!({
            "status": if matches!(commit, Commit::Written(_)) { "WRITTEN" } else { "COMMITTED" },
            "manifest": format!("{}/{}", store.uri(), layout::manifest(id)),
            "rows": m.totals.rows,
            "bytes": m.totals.bytes,
            "files": m.totals.files,
        }),
        Commit::Waiting { missing, shards } => json!({
            "status": "WAITING",
            "shards": shards,
            "missing": missing,
        }),
    }
}

impl Engine {
    /// Runs shard `shard` of the sharded restore job `job` (its plan in the state store): the
    /// tables of the shard an earlier run did not restore, as a restore job of this engine, then
    /// the shard's report. A stop (`cancel`) cancels that job, which cleans up after itself.
    pub async fn run_restore_shard(
        &self,
        job: JobId,
        shard: u32,
        shards: u32,
        cancel: CancellationToken,
    ) -> Result<Value, Error> {
        let state = self.inner.jobs.store().store().clone();
        let plan = restore_shard::read_plan(&state, &job).await?.ok_or_else(|| {
            Error::not_found(format!(
                "restore job {job} has no sharded plan in the state store {} (BQB_STATE_URI must be the service's; the plan goes when its job is cancelled)",
                state.uri()
            ))
        })?;
        restore_shard::check_shard(&plan, shard, shards)?;
        if let Some(report) = restore_shard::read_report(&state, &job, shard).await? {
            return Ok(restore_shard_answer(&report, false));
        }
        let (todo, done) = restore_shard::remaining(&self.inner.bigquery, &plan, shard).await?;
        let mut tables = Vec::new();
        let mut rows = 0;
        if !todo.is_empty() {
            let body = serde_json::to_vec(&plan.request_for(&todo))
                .map_err(|e| Error::internal(format!("the shard's request: {e}")))?;
            let order = RestoreOrder::from_json(&body)?;
            let trigger = Trigger::from([
                ("source".to_string(), "shard".to_string()),
                ("restoreJob".to_string(), job.to_string()),
                ("shard".to_string(), shard.to_string()),
            ]);
            let Started::Job(accepted) = self.restore(order, Submission::from(trigger)).await?
            else {
                return Err(Error::internal(
                    "a shard's restore was planned as a dry run",
                ));
            };
            let id = accepted.record.job_id.clone();
            let ended = tokio::select! {
                ended = self.inner.jobs.wait(&id) => match ended {
                    Some(ended) => ended,
                    None => self.inner.jobs.get(&id).await?.unwrap_or(accepted.record),
                },
                () = cancel.cancelled() => match self.inner.jobs.cancel(&id).await? {
                    Cancelled::Stopped(record) | Cancelled::Requested(record) => record,
                },
            };
            let result = ended.outcome()?;
            tables = result["tables"].as_array().cloned().unwrap_or_default();
            rows = result["rows"].as_u64().unwrap_or(0);
        }
        let report = RestoreShardReport {
            version: 1,
            job_id: job,
            shard,
            finished_at: chrono::Utc::now(),
            tables,
            restored_before: done.iter().map(|t| t.target.to_string()).collect(),
            rows,
        };
        restore_shard::write_report(&state, &report).await?;
        Ok(restore_shard_answer(&report, true))
    }
}

fn restore_shard_answer(report: &RestoreShardReport, ran: bool) -> Value {
    json!({
        "restoreJob": report.job_id.to_string(),
        "shard": report.shard,
        "ran": ran,
        "rows": report.rows,
        "tables": report.tables.len(),
        "restoredBefore": report.restored_before,
    })
}
