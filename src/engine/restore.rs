//! A restore: planned while the caller waits (400/404/409 before any data moves), then run as a
//! job whose marker lets any instance clean up after it if its process dies (`recovery`).

use super::{Accepted, Engine, Started, Submission};
use crate::catalog::lease::LeaseTiming;
use crate::error::{Error, FieldError};
use crate::jobs::{JobKind, NewJob};
use crate::recovery::ActiveRestore;
use crate::restore::shard::{self, StoredRestorePlan};
use crate::restore::{
    RestoreContext, RestoreOrder, RestorePlan, plan_restore, run_drill, run_restore,
};
use crate::storage::Access;

impl Engine {
    /// Plans the restore `order` asks for and, unless it is a dry run, accepts it as a job.
    pub async fn restore(
        &self,
        order: RestoreOrder,
        submission: Submission,
    ) -> Result<Started<RestorePlan>, Error> {
        let RestoreOrder { spec, request } = order;
        // Refused or missing storage before anything else; no network call yet. A drill writes
        // its result beside the backup.
        let access = match spec.drill {
            true => Access::Write,
            false => Access::Read,
        };
        let store = self.repository(&spec.storage, &spec.storage_field, access)?;
        // Shed load before planning reads BigQuery (a dry run starts no job).
        let slot = (!spec.dry_run)
            .then(|| self.inner.jobs.reserve_slot())
            .transpose()?;
        let plan = plan_restore(
            &self.inner.bigquery,
            &store,
            &spec,
            self.inner.settings.max_parallel_tables,
        )
        .await
        .map_err(|e| store.attribute(e))?;
        if spec.drill && plan.manifest.legacy {
            return Err(Error::invalid(
                "a drill compares the restored tables with the backup's manifest",
                vec![FieldError::new(
                    spec.backup_field.clone(),
                    format!(
                        "backup {} is in the Java service's layout, which records no row counts or checksums to compare with: restore it without `drill`",
                        plan.backup_id
                    ),
                )],
            ));
        }
        let Some(slot) = slot else {
            return Ok(Started::DryRun(plan));
        };
        let job_request = request.clone();
        let job = NewJob {
            kind: JobKind::Restore,
            backup_id: Some(plan.backup_id.to_string()),
            storage_uri: store.uri().to_string(),
            tables: plan.tables.iter().map(|t| t.target.to_string()).collect(),
            request,
            trigger: submission.trigger,
            exclusive_key: None,
        };
        let bigquery = self.inner.bigquery.clone();
        let lease = LeaseTiming::new(self.inner.settings.jobs.heartbeat);
        let job_store = self.inner.jobs.store().clone();
        let observer = submission.observer;
        let launcher = self.inner.settings.shards.launcher.clone();
        let shards = spec.shards;
        let drill = spec.drill;
        let metrics = self.inner.jobs.metrics().clone();
        let record = self
            .inner
            .jobs
            .submit(slot, job, move |run| async move {
                let sharded = shards
                    .map(|n| StoredRestorePlan::of(&plan, run.job_id.clone(), n, &job_request));
                // Written before anything is created: if this process dies, another instance
                // removes what the restore created and never filled (`recovery`). A sharded
                // restore's tables are its workers' (each with a marker of its own): this job's
                // marker names none of them.
                let views_only;
                let marked = match &sharded {
                    Some(_) => {
                        views_only = RestorePlan {
                            tables: Vec::new(),
                            ..plan.clone()
                        };
                        &views_only
                    }
                    None => &plan,
                };
                let marker =
                    ActiveRestore::begin(&job_store, run.job_id.clone(), marked, drill).await?;
                let ctx = RestoreContext {
                    job_id: run.job_id,
                    bigquery,
                    store: store.clone(),
                    cancel: run.cancel,
                    progress: Some(Engine::progress(run.progress, observer)),
                    lease,
                };
                let report = match &sharded {
                    _ if drill => {
                        let (record, outcome) = run_drill(&plan, &ctx).await;
                        metrics.drill_ended(
                            &store.uri().to_string(),
                            record.passed,
                            record.finished_at.timestamp(),
                        );
                        outcome.and_then(|()| {
                            serde_json::to_value(record)
                                .map_err(|e| Error::internal(format!("report: {e}")))
                        })
                    }
                    Some(stored) => {
                        shard::plan_and_follow(&plan, &ctx, job_store.store(), stored, &launcher)
                            .await
                    }
                    None => run_restore(&plan, &ctx).await.and_then(|report| {
                        serde_json::to_value(report)
                            .map_err(|e| Error::internal(format!("report: {e}")))
                    }),
                };
                marker.end().await;
                report.map_err(|e| store.attribute(e))
            })
            .await?;
        Ok(Started::Job(Box::new(Accepted {
            record,
            wait: spec.wait,
        })))
    }
}
