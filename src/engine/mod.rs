//! The engine: every operation bq-backup offers — backup, restore, and on a repository list,
//! show, verify, copy, delete and prune — with the same checks, locks, job records and follow-ups
//! whoever asks. The entry points (HTTP in `api`, Pub/Sub push, the schedules, the CLI) only
//! translate their input into the engine's typed orders and its typed answers back.
//!
//! A backup or restore runs as a job ([`crate::jobs`]): a record in the state store that any
//! instance reports on, a place in the bounded queue, the selection lock of a backup, the keep
//! policy applied after it (`BQB_PRUNE_AFTER_BACKUP_*`), and a restore's marker for recovery.
//!
//! Depends on `backup`, `restore`, `catalog`, `jobs`, `recovery`, `bigquery`, `storage`,
//! `config`; never on `api`, `app` or the CLI.

mod backup;
mod copy;
mod recover;
mod repository;
mod restore;
mod schedule;
mod shard;
mod verify;

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

use crate::backup::BackupOrder;
use crate::backup::shard::ShardSettings;
use crate::bigquery::{BigQuery, BigQueryConfig, BigQuerySettings};
use crate::domain::{JobId, StorageUri};
use crate::error::Error;
use crate::exec::{BothProgress, Progress};
use crate::jobs::{JobKind, JobRecord, JobSettings, JobStore, Jobs};
use crate::metrics::Metrics;
use crate::restore::RestoreOrder;
use crate::storage::{Access, StorageConfig, Store};

pub use backup::selection_key;
pub use copy::{Copies, CopyOrder};
pub use recover::RecoverOrder;
pub use repository::Repositories;
pub use verify::VerifyOrder;

/// How a job came to be, recorded in its `trigger`: `source` (`http`, `pubsub`, `schedule`,
/// `cli`) and what that source knows (a message id, a schedule's tick).
pub type Trigger = BTreeMap<String, String>;

/// The engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    settings: EngineSettings,
    bigquery: BigQuery,
    repositories: Repositories,
    jobs: Jobs,
}

/// What the engine is built from: the parts of the settings its operations read, each declared
/// by its own module (`config::Settings::engine` picks them out).
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub bigquery: BigQuerySettings,
    pub jobs: JobSettings,
    /// Tables backed up or restored at once, at most (`BQB_MAX_PARALLEL_TABLES`).
    pub max_parallel_tables: usize,
    /// Who starts a sharded backup's workers (`BQB_SHARD_LAUNCHER`).
    pub shards: ShardSettings,
}

/// What submitting a backup or restore gives.
#[derive(Debug)]
pub enum Started<P> {
    /// A dry run (`dryRun`): the plan; nothing was started.
    DryRun(P),
    /// Accepted as a job.
    Job(Box<Accepted>),
}

/// A job the engine accepted.
#[derive(Debug)]
pub struct Accepted {
    pub record: JobRecord,
    /// The request asked to be answered with the job's outcome (`wait`) rather than at once.
    pub wait: bool,
}

/// Where a job comes from and who else follows it.
#[derive(Default)]
pub struct Submission {
    pub trigger: Trigger,
    /// Told of each table besides the job's record (the CLI's progress bar).
    pub observer: Option<Arc<dyn Progress>>,
}

impl Submission {
    pub fn from(trigger: Trigger) -> Self {
        Self {
            trigger,
            observer: None,
        }
    }
}

impl Engine {
    /// Builds the BigQuery client and the job state store (`BQB_STATE_URI`) from `settings`;
    /// repositories are opened through `storage` (confined or not, as the caller decides).
    /// `shutdown` stops every job this engine runs.
    pub async fn build(
        settings: EngineSettings,
        storage: StorageConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, Error> {
        let bigquery = BigQueryConfig::from_settings(&settings.bigquery)
            .build()
            .await?;
        let jobs = Jobs::new(
            JobStore::open(&storage, &settings.jobs.state_uri)?,
            settings.jobs.clone(),
            shutdown,
            Metrics::new(),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                settings,
                bigquery,
                repositories: Repositories::new(storage),
                jobs,
            }),
        })
    }

    pub fn bigquery(&self) -> &BigQuery {
        &self.inner.bigquery
    }

    pub fn jobs(&self) -> &Jobs {
        &self.inner.jobs
    }

    /// Starts the backup or restore in a request body, whoever delivered it: the same
    /// validation, planning and job as [`Self::backup`] and [`Self::restore`]. A dry run
    /// answers `{"dryRun": true, "plan": …}`.
    pub async fn submit(
        &self,
        kind: JobKind,
        body: &[u8],
        submission: Submission,
    ) -> Result<Started<Value>, Error> {
        Ok(match kind {
            JobKind::Backup => {
                let order = BackupOrder::from_json(body, chrono::Utc::now())?;
                match self.backup(order, submission).await? {
                    Started::DryRun(plan) => Started::DryRun(dry_run_answer(&plan.preview())?),
                    Started::Job(job) => Started::Job(job),
                }
            }
            JobKind::Verify => {
                return Err(Error::invalid(
                    "a verify is started by POST /api/v1/backups/{id}:verify",
                    vec![],
                ));
            }
            JobKind::Copy => {
                return Err(Error::invalid(
                    "a copy is started by POST /api/v1/backups/{id}:copy",
                    vec![],
                ));
            }
            JobKind::Recover => {
                let order = RecoverOrder::from_json(body, chrono::Utc::now())?;
                match self.recover(order, submission).await? {
                    Started::DryRun(plan) => Started::DryRun(dry_run_answer(&plan)?),
                    Started::Job(job) => Started::Job(job),
                }
            }
            JobKind::Restore => {
                let order = RestoreOrder::from_json(body)?;
                match self.restore(order, submission).await? {
                    Started::DryRun(plan) => Started::DryRun(dry_run_answer(&plan.preview())?),
                    Started::Job(job) => Started::Job(job),
                }
            }
        })
    }

    /// Waits for a job this engine accepted to end, and gives its final record.
    pub async fn finished(&self, record: JobRecord) -> Result<JobRecord, Error> {
        if let Some(ended) = self.inner.jobs.wait(&record.job_id).await {
            return Ok(ended);
        }
        // Ended before the wait began: its stored record is final.
        Ok(self.inner.jobs.get(&record.job_id).await?.unwrap_or(record))
    }

    /// Cancels job `id` wherever it runs (see [`Jobs::cancel`]).
    pub async fn cancel(&self, id: &JobId) -> Result<crate::jobs::Cancelled, Error> {
        self.inner.jobs.cancel(id).await
    }

    /// Opens the repository whose URI the caller gave in `field` (see [`Repositories::open`]).
    pub fn repository(
        &self,
        uri: &StorageUri,
        field: &str,
        access: Access,
    ) -> Result<Store, Error> {
        self.inner.repositories.open(uri, field, access)
    }

    /// The catalog of repositories: list, show, verify, delete, prune.
    pub fn repositories(&self) -> &Repositories {
        &self.inner.repositories
    }

    fn progress(run: Arc<dyn Progress>, observer: Option<Arc<dyn Progress>>) -> Arc<dyn Progress> {
        match observer {
            Some(observer) => Arc::new(BothProgress(run, observer)),
            None => run,
        }
    }
}

fn dry_run_answer(preview: &impl serde::Serialize) -> Result<Value, Error> {
    Ok(json!({
        "dryRun": true,
        "plan": serde_json::to_value(preview).map_err(|e| Error::internal(format!("plan: {e}")))?,
    }))
}
