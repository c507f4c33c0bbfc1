//! After a restore whose process died (SIGKILL, out of memory, a lost node): the tables and
//! datasets it had created but not yet filled are removed, by whichever instance notices first.
//!
//! A running restore keeps a marker in the state store (`restores/{jobId}.json`) naming the
//! tables and datasets it may create; it removes the marker when it ends by itself (a restore
//! that fails cleans up after itself). A marker whose job record went stale is a restore that
//! died: every instance looks for those every few heartbeats ([`run_recovery`]). A target is
//! removed only when it was created while the dead job ran (creation time between its start and
//! its last heartbeat: never a table that existed before, nor one a rerun created since) and is
//! empty (a table gets its rows from one load or copy job, all at once, so an empty one is one
//! the restore created and never filled). The dead job's staging tables (their names carry its
//! id) go first. A dataset goes only when nothing is left in it. A restore drill's scratch
//! datasets (`bqb_drill_…`, named for it alone) go whole, filled tables and all: nobody else's
//! data can be in them, and the drill would have removed them itself.
//!
//! Joins the job store (`jobs`), restore plans (`restore`) and BigQuery, which know nothing of
//! each other: `api` keeps a restore job's marker, `app` runs the periodic pass.

use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::bigquery::BigQuery;
use crate::domain::{DatasetRef, JobId, TableRef};
use crate::error::Error;
use crate::jobs::{JobStore, Jobs};
use crate::restore::{RestorePlan, staging_prefix};
use crate::storage::versioned::{self, VersionedFile};
use crate::storage::{delete_if_exists, layout, object_error};

/// Clock skew between this service and BigQuery that the creation-time window allows.
const SKEW: chrono::Duration = chrono::Duration::seconds(5);

/// What a running restore may create, as kept in its marker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RestoreMarker {
    /// Markers written before this field are version 1.
    #[serde(default = "versioned::version_1")]
    pub version: u32,
    pub job_id: JobId,
    pub started_at: DateTime<Utc>,
    /// Target tables that did not exist when the restore was planned.
    pub tables: Vec<TableRef>,
    pub datasets: Vec<DatasetRef>,
    /// A restore drill: its datasets are scratch datasets of its own.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub drill: bool,
}

impl VersionedFile for RestoreMarker {
    const WHAT: &'static str = "restore marker";
    const VERSION: u32 = 1;
}

/// The marker of a running restore, removed by [`ActiveRestore::end`].
pub struct ActiveRestore {
    jobs: JobStore,
    path: Path,
}

impl ActiveRestore {
    /// Records that job `job` is about to restore `plan` (before it creates anything); `drill`:
    /// it is a restore drill, whose datasets are scratch datasets of its own.
    pub async fn begin(
        jobs: &JobStore,
        job: JobId,
        plan: &RestorePlan,
        drill: bool,
    ) -> Result<Self, Error> {
        let path = layout::restore_marker(&job);
        let marker = RestoreMarker {
            version: RestoreMarker::VERSION,
            job_id: job,
            started_at: Utc::now(),
            tables: plan
                .tables
                .iter()
                .filter(|t| !t.target_exists)
                .map(|t| t.target.clone())
                .collect(),
            datasets: plan.datasets.iter().map(|d| d.target.clone()).collect(),
            drill,
        };
        let body = versioned::encode(&marker)?;
        jobs.store()
            .object_store()
            .put(&path, PutPayload::from(body))
            .await
            .map_err(|e| object_error("writing", &path, e))?;
        Ok(Self {
            jobs: jobs.clone(),
            path,
        })
    }

    /// The restore ended by itself (it cleaned up after itself if it failed).
    pub async fn end(self) {
        let os = self.jobs.store().object_store();
        if let Err(e) = delete_if_exists(os.as_ref(), &self.path).await {
            tracing::warn!(object_key = %self.path, error = %e, "removing a restore marker failed")
        }
    }
}

/// What one pass of [`recover_dead_restores`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Recovered {
    pub restores: usize,
    pub tables_removed: Vec<String>,
    pub datasets_removed: Vec<String>,
}

/// A restore whose job died: its marker, and when what it created was created.
struct DeadRestore {
    path: Path,
    marker: RestoreMarker,
    window: (DateTime<Utc>, DateTime<Utc>),
}

/// The markers of restores whose job died. A job this instance runs is never one of them,
/// however late its record's heartbeat (a loaded machine): only another instance's can be
/// judged by its record. The markers of jobs that ended are removed on the way.
async fn dead_restores(
    jobs: &JobStore,
    runs_here: &(dyn Fn(&JobId) -> bool + Sync),
    now: DateTime<Utc>,
) -> Result<Vec<DeadRestore>, Error> {
    let os = jobs.store().object_store().clone();
    let prefix = layout::restores_dir();
    let markers: Vec<Path> = os
        .list(Some(&prefix))
        .map_ok(|m| m.location)
        .try_collect()
        .await
        .map_err(|e| object_error("listing", &prefix, e))?;
    let mut dead = Vec::new();
    for path in markers {
        let Some(bytes) = crate::storage::get_if_exists(os.as_ref(), &path)
            .await
            .map_err(|e| object_error("reading", &path, e))?
        else {
            continue;
        };
        // One marker this instance cannot read (a newer instance's, during a rolling upgrade)
        // must not stop the recovery of the others: it is left to an instance that can.
        let marker = match versioned::decode::<RestoreMarker>(&bytes) {
            Ok(marker) => marker,
            Err(e) => {
                tracing::warn!(object_key = %path, error = %e, "a restore marker this instance cannot read is left alone");
                continue;
            }
        };
        if runs_here(&marker.job_id) {
            continue;
        }
        let Some(record) = jobs.load(&marker.job_id).await? else {
            continue;
        };
        if !record.is_stale(now) {
            // Running, or ended by itself (a live instance removes its own marker).
            if record.state.is_terminal() {
                let _ = os.delete(&path).await;
            }
            continue;
        }
        // Created between the start and one heartbeat after the last sign of life.
        let until = record.updated_at
            + chrono::Duration::seconds(i64::try_from(record.heartbeat_secs).unwrap_or(0))
            + SKEW;
        let window = (marker.started_at - SKEW, until);
        dead.push(DeadRestore {
            path,
            marker,
            window,
        });
    }
    Ok(dead)
}

/// One pass: every marker whose job died is cleaned up and removed. `runs_here` tells the jobs
/// this instance runs, which are never taken for dead.
pub async fn recover_dead_restores(
    jobs: &JobStore,
    bigquery: &BigQuery,
    runs_here: &(dyn Fn(&JobId) -> bool + Sync),
) -> Result<Recovered, Error> {
    let os = jobs.store().object_store().clone();
    let mut recovered = Recovered::default();
    for dead in dead_restores(jobs, runs_here, Utc::now()).await? {
        cleanup(bigquery, &dead.marker, dead.window, &mut recovered).await?;
        recovered.restores += 1;
        delete_if_exists(os.as_ref(), &dead.path)
            .await
            .map_err(|e| object_error("deleting", &dead.path, e))?;
        tracing::warn!(job_id = %dead.marker.job_id, tables = ?recovered.tables_removed, datasets = ?recovered.datasets_removed, "cleaned up after a restore that died");
    }
    Ok(recovered)
}

async fn cleanup(
    bigquery: &BigQuery,
    marker: &RestoreMarker,
    (from, until): (DateTime<Utc>, DateTime<Utc>),
    recovered: &mut Recovered,
) -> Result<(), Error> {
    let created_then =
        |ms: i64| DateTime::from_timestamp_millis(ms).is_some_and(|at| at >= from && at <= until);
    // The dead job's staging tables, by the job id in their names (in the target datasets,
    // whether the restore created them or not): never anyone's data.
    if marker.drill {
        for dataset in &marker.datasets {
            if bigquery.find_dataset(dataset).await?.is_some() {
                bigquery.delete_scratch_dataset(dataset).await?;
                recovered.datasets_removed.push(dataset.to_string());
            }
        }
        return Ok(());
    }
    let staging = staging_prefix(&marker.job_id);
    for dataset in &marker.datasets {
        if bigquery.find_dataset(dataset).await?.is_none() {
            continue;
        }
        for found in bigquery.list_tables(dataset).await? {
            if found.table.table.starts_with(&staging) {
                bigquery.delete_table(&found.table).await?;
                recovered.tables_removed.push(found.table.to_string());
            }
        }
    }
    for table in &marker.tables {
        let Some(found) = bigquery.find_table(table).await? else {
            continue;
        };
        if created_then(found.creation_time) && found.num_rows.is_none_or(|n| n == 0) {
            bigquery.delete_table(table).await?;
            recovered.tables_removed.push(table.to_string());
        }
    }
    for dataset in &marker.datasets {
        let Some(found) = bigquery.find_dataset(dataset).await? else {
            continue;
        };
        if created_then(found.creation_time) && bigquery.delete_dataset_if_empty(dataset).await? {
            recovered.datasets_removed.push(dataset.to_string());
        }
    }
    Ok(())
}

/// Looks for restores that died every `every` until `shutdown`.
pub async fn run_recovery(
    jobs: Jobs,
    bigquery: BigQuery,
    every: Duration,
    shutdown: CancellationToken,
) {
    let runs_here = |id: &JobId| jobs.runs_here(id);
    loop {
        if let Err(e) = recover_dead_restores(jobs.store(), &bigquery, &runs_here).await {
            tracing::warn!(error = %e, "looking for restores that died failed");
        }
        tokio::select! {
            () = shutdown.cancelled() => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_written_before_versioning_still_read_and_new_ones_say_their_version() {
        let old = br#"{"jobId":"job-00000000000000b1","startedAt":"2026-03-01T00:00:00Z",
            "tables":[{"projectId":"p","datasetId":"d","tableId":"t"}],"datasets":[]}"#;
        let marker: RestoreMarker = versioned::decode(old).unwrap();
        assert_eq!(marker.version, 1);
        assert_eq!(marker.tables, [TableRef::new("p", "d", "t")]);
        let written: serde_json::Value =
            serde_json::from_slice(&versioned::encode(&marker).unwrap()).unwrap();
        assert_eq!(written["version"], 1);
        let newer = br#"{"version":2,"jobId":"job-00000000000000b1"}"#;
        assert!(
            versioned::decode::<RestoreMarker>(newer)
                .unwrap_err()
                .is_newer()
        );
    }

    /// A restore marker of job `id`, whose record was last saved a minute ago (stale).
    async fn stale_restore(jobs: &JobStore, id: JobId) {
        let now = Utc::now();
        let record: crate::jobs::JobRecord = serde_json::from_value(serde_json::json!({
            "jobId": id, "kind": "RESTORE", "state": "RUNNING", "storageUri": "memory://x",
            "createdAt": now - chrono::Duration::minutes(2),
            "updatedAt": now - chrono::Duration::minutes(1),
            "heartbeatSecs": 1, "instance": "host-1", "tables": []
        }))
        .unwrap();
        jobs.save(&record).await.unwrap();
        let marker = RestoreMarker {
            version: RestoreMarker::VERSION,
            job_id: id.clone(),
            started_at: now - chrono::Duration::minutes(2),
            tables: vec![TableRef::new("p", "d", "t")],
            datasets: vec![],
            drill: false,
        };
        jobs.store()
            .object_store()
            .put(
                &layout::restore_marker(&id),
                PutPayload::from(versioned::encode(&marker).unwrap()),
            )
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn a_stale_record_is_a_dead_restore_unless_this_instance_runs_the_job() {
        let uri = format!("memory://jobs-{}", uuid::Uuid::new_v4().simple());
        let jobs = JobStore::open(&crate::storage::StorageConfig::default(), &uri).unwrap();
        let (here, elsewhere) = (JobId::from_bits(1), JobId::from_bits(2));
        stale_restore(&jobs, here.clone()).await;
        stale_restore(&jobs, elsewhere.clone()).await;
        let runs_here = |id: &JobId| *id == here;
        let dead = dead_restores(&jobs, &runs_here, Utc::now()).await.unwrap();
        let ids: Vec<&JobId> = dead.iter().map(|d| &d.marker.job_id).collect();
        assert_eq!(ids, [&elsewhere]);
        // Without the instance's word, both records read as dead.
        let nobody = |_: &JobId| false;
        assert_eq!(
            dead_restores(&jobs, &nobody, Utc::now())
                .await
                .unwrap()
                .len(),
            2
        );
    }
}
