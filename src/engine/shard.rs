//! The shards of a sharded backup, run anywhere the container runs (`bq-backup worker`), and
//! its commit by hand (`bq-backup commit`). The service's side — writing the plan and
//! following the shards — is the backup job itself (see `backup`).

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use super::Engine;
use crate::backup::shard::{self, Commit, ShardContext, ShardOrder, ShardOutcome, commit_sharded};
use crate::catalog::lease::LeaseTiming;
use crate::domain::{BackupId, StorageUri};
use crate::error::Error;
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
