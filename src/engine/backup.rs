//! A backup: planned while the caller waits (400/404/409 name what is wrong before anything
//! is written), then run as a job under the selection lock, followed by the configured keep
//! policy.

use chrono::Utc;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::{Accepted, Engine, Started, Submission};
use crate::backup::incremental::plan_partitions;
use crate::backup::{
    BackupContext, BackupOrder, BackupPlan, ensure_can_start, plan_backup, run_backup, shard,
};
use crate::catalog::lease::LeaseTiming;
use crate::catalog::prune::prune;
use crate::catalog::retention::KeepPolicy;
use crate::error::{Error, ErrorKind};
use crate::jobs::{JobKind, NewJob};
use crate::storage::{Access, Store};

impl Engine {
    /// Plans the backup `order` asks for and, unless it is a dry run, accepts it as a job.
    pub async fn backup(
        &self,
        mut order: BackupOrder,
        submission: Submission,
    ) -> Result<Started<BackupPlan>, Error> {
        let settings = &self.inner.settings;
        let now = Utc::now();
        order.spec.ttl_days = order.spec.ttl_days.or(settings.jobs.default_ttl_days);
        if order.encryption.is_none() {
            order.encryption = self
                .inner
                .repositories
                .storage()
                .settings
                .encryption
                .default_recipients
                .clone();
        }
        let (dry_run, wait) = (order.spec.dry_run, order.spec.wait);
        // A dry run too: a plan names where it would write.
        self.inner
            .repositories
            .storage()
            .admit(&order.spec.storage, &order.spec.storage_field)?;
        // Shed load before the metadata calls of planning (a dry run starts no job).
        let slot = (!dry_run)
            .then(|| self.inner.jobs.reserve_slot())
            .transpose()?;
        let base = order.spec.incremental;
        let mut plan = plan_backup(
            &self.inner.bigquery,
            order,
            now,
            settings.max_parallel_tables,
        )
        .await?;
        // The base is looked for in the repository (a dry run reads it too).
        let reading = match base {
            Some(_) => Some(self.repository(&plan.storage, &plan.storage_field, Access::Read)?),
            None => None,
        };
        plan_partitions(&self.inner.bigquery, reading.as_ref(), &mut plan, base)
            .await
            .map_err(|e| match &reading {
                Some(store) => store.attribute(e),
                None => e,
            })?;
        let Some(slot) = slot else {
            return Ok(Started::DryRun(plan));
        };
        let store = self.repository(&plan.storage, &plan.storage_field, Access::Write)?;
        let exclusive_key = (!plan.allow_concurrent).then(|| selection_key(&plan));
        self.refuse_early(&store, &plan, exclusive_key.as_deref())
            .await?;
        let job = NewJob {
            kind: JobKind::Backup,
            backup_id: Some(plan.backup_id.to_string()),
            storage_uri: plan.storage.to_string(),
            tables: plan.tables.iter().map(|t| t.table.to_string()).collect(),
            request: plan.request.clone(),
            trigger: submission.trigger,
            exclusive_key,
        };
        let bigquery = self.inner.bigquery.clone();
        let prune_after = settings.jobs.prune_after_backup;
        let lease = LeaseTiming::new(settings.jobs.heartbeat);
        let observer = submission.observer;
        let launcher = settings.shards.launcher.clone();
        let record = self
            .inner
            .jobs
            .submit(slot, job, move |run| async move {
                let ctx = BackupContext {
                    bigquery,
                    store: store.clone(),
                    cancel: run.cancel,
                    progress: Some(Engine::progress(run.progress, observer)),
                    lease,
                };
                let report = match plan.shards {
                    Some(shards) => shard::plan_and_follow(&plan, &ctx, shards, &launcher).await,
                    None => run_backup(&plan, &ctx).await,
                }
                .map_err(|e| store.attribute(e))?;
                let mut result = serde_json::to_value(report)
                    .map_err(|e| Error::internal(format!("report: {e}")))?;
                if let Some(policy) = prune_after {
                    result["prune"] = prune_after_backup(&store, policy).await;
                }
                Ok(result)
            })
            .await?;
        Ok(Started::Job(Box::new(Accepted { record, wait })))
    }

    /// Refuses, while the caller waits, what can be seen before the job starts, instead of an
    /// accepted job that can only fail: a running backup of the same selection (409 naming
    /// it), a repository that cannot be reached (404/403 naming the field that holds its URI),
    /// a backup id that is committed or claimed by a live backup (409). An answer that may
    /// change — the store failing right now — refuses nothing: the job has its own retries and
    /// checks again under its claim.
    async fn refuse_early(
        &self,
        store: &Store,
        plan: &BackupPlan,
        selection: Option<&str>,
    ) -> Result<(), Error> {
        if let Some(key) = selection {
            self.inner.jobs.ensure_selection_free(key).await?;
        }
        let seen = match store.check_reachable().await {
            Ok(()) => ensure_can_start(store, plan)
                .await
                .map_err(|e| store.attribute(e)),
            Err(e) => Err(e),
        };
        match seen {
            Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Upstream) => {
                tracing::warn!(error = %e, backup_id = %plan.backup_id, "the repository could not be checked before the backup; the job will try");
                Ok(())
            }
            other => other,
        }
    }
}

/// Two backups of the same tables to the same repository: one key.
pub fn selection_key(plan: &BackupPlan) -> String {
    let mut names: Vec<String> = plan
        .tables
        .iter()
        .chain(&plan.definitions)
        .map(|t| t.table.to_string())
        .collect();
    names.sort();
    let mut hasher = Sha256::new();
    hasher.update(plan.storage.to_string().trim_end_matches('/').as_bytes());
    for name in names {
        hasher.update(b"\n");
        hasher.update(name.as_bytes());
    }
    hex::encode(hasher.finalize())
}

/// The configured keep policy, applied to the repository just written. A failure is reported
/// in the result, never turned into a failed backup: the backup itself is complete.
async fn prune_after_backup(store: &Store, policy: KeepPolicy) -> Value {
    match prune(store, &policy, false, Utc::now()).await {
        Ok(report) => {
            json!({ "policy": policy, "deleted": report.deleted, "skipped": report.skipped })
        }
        Err(e) => {
            tracing::warn!(error = %e, "pruning after the backup failed");
            json!({ "policy": policy, "error": e.to_string() })
        }
    }
}
