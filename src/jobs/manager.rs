//! Runs jobs: a bounded queue per instance, at most `BQB_MAX_RUNNING_JOBS` at once, each job's
//! record saved at every state change and heartbeat, cancel requests from any instance, and a
//! shutdown that marks every unfinished job FAILED before the process goes.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use chrono::Utc;
use serde_json::Value;
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::record::{JobError, JobKind, JobRecord, JobState, TableProgress};
use super::settings::JobSettings;
use super::store::{JobStore, SelectionLock};
use crate::domain::JobId;
use crate::error::{Error, ErrorKind};
use crate::exec::{Progress, ShardsProgress};
use crate::metrics::{JobEnded, Metrics};
use crate::storage::versioned::VersionedFile;

/// How long `DELETE /api/v1/jobs/{id}` waits for a job running here to stop.
const CANCEL_WAIT: Duration = Duration::from_secs(30);
/// How often one instance sweeps old job records (after a job ends).
const SWEEP_EVERY: Duration = Duration::from_secs(3600);
/// Attempts at saving a job's final record.
const FINAL_SAVE_ATTEMPTS: u32 = 3;

/// What a caller asks to run.
pub struct NewJob {
    pub kind: JobKind,
    pub backup_id: Option<String>,
    pub storage_uri: String,
    /// The tables the job will process, for per-table progress.
    pub tables: Vec<String>,
    pub request: Value,
    pub trigger: BTreeMap<String, String>,
    /// When set, no second live job may hold the same key (a backup of the same selection).
    pub exclusive_key: Option<String>,
}

/// What a job's work gets: its cancel token (cancel request or shutdown) and where to report
/// per-table progress.
pub struct JobRun {
    pub job_id: JobId,
    pub cancel: CancellationToken,
    pub progress: Arc<dyn Progress>,
}

/// The jobs of this instance. Cheap to clone.
#[derive(Clone)]
pub struct Jobs {
    inner: Arc<Inner>,
}

struct Inner {
    store: JobStore,
    settings: JobSettings,
    slots: Arc<Semaphore>,
    local: Mutex<HashMap<JobId, LocalJob>>,
    /// Places in the queue taken by requests still being planned ([`Slot`]s not yet turned
    /// into jobs). Changed up only while `local` is locked, so that count and check agree.
    reserved: AtomicUsize,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    instance: String,
    /// When this instance last swept old records from the state store.
    last_sweep: Mutex<Option<Instant>>,
    metrics: Metrics,
}

struct LocalJob {
    cancel: CancellationToken,
    live: Arc<LiveRecord>,
    done: watch::Receiver<Option<JobRecord>>,
}

/// The record of a job running here, updated in memory and saved at each heartbeat.
struct LiveRecord {
    record: Mutex<JobRecord>,
}

impl LiveRecord {
    fn lock(&self) -> MutexGuard<'_, JobRecord> {
        // A panic while holding this lock cannot leave the record half-updated in a way that
        // matters more than losing it: keep going with what is there.
        self.record.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn snapshot(&self) -> JobRecord {
        self.lock().clone()
    }

    fn update_table(&self, table: &str, f: impl FnOnce(&mut TableProgress)) {
        let mut record = self.lock();
        if let Some(t) = record.tables.iter_mut().find(|t| t.table == table) {
            f(t);
        } else {
            let mut t = TableProgress::pending(table);
            f(&mut t);
            record.tables.push(t);
        }
    }
}

impl Progress for LiveRecord {
    fn table_started(&self, table: &str) {
        self.update_table(table, |t| t.state = JobState::Running);
    }

    fn table_finished(&self, table: &str, rows: u64, bytes: u64, files: u64) {
        self.update_table(table, |t| {
            t.state = JobState::Succeeded;
            t.rows = rows;
            t.bytes = bytes;
            t.files = files;
        });
    }

    fn table_failed(&self, table: &str, error: &Error) {
        self.update_table(table, |t| {
            t.state = JobState::Failed;
            t.error = Some(error.to_string());
        });
    }

    fn shards(&self, progress: &ShardsProgress) {
        self.lock().shards = Some(progress.clone());
    }
}

/// The answer to a cancel request.
pub enum Cancelled {
    /// The job has stopped: its final record.
    Stopped(JobRecord),
    /// The request is recorded; the instance running the job stops it at its next heartbeat.
    Requested(JobRecord),
}

impl Jobs {
    pub fn new(
        store: JobStore,
        settings: JobSettings,
        shutdown: CancellationToken,
        metrics: Metrics,
    ) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        Self {
            inner: Arc::new(Inner {
                store,
                slots: Arc::new(Semaphore::new(settings.max_running.max(1))),
                settings,
                local: Mutex::new(HashMap::new()),
                reserved: AtomicUsize::new(0),
                shutdown,
                tracker: TaskTracker::new(),
                instance: format!("{host}/{}", std::process::id()),
                last_sweep: Mutex::new(None),
                metrics,
            }),
        }
    }

    pub fn store(&self) -> &JobStore {
        &self.inner.store
    }

    pub fn settings(&self) -> &JobSettings {
        &self.inner.settings
    }

    /// Where this instance's job events are counted (`GET /metrics`).
    pub fn metrics(&self) -> &Metrics {
        &self.inner.metrics
    }

    /// How many jobs of `kind` this instance has accepted and not yet ended, and how many of
    /// those wait for a slot (still PENDING).
    pub fn live_count(&self, kind: JobKind) -> (usize, usize) {
        let local = self.local();
        let states: Vec<JobState> = local
            .values()
            .filter_map(|j| {
                let record = j.live.lock();
                (record.kind == kind).then_some(record.state)
            })
            .collect();
        let queued = states.iter().filter(|s| **s == JobState::Pending).count();
        (states.len(), queued)
    }

    fn local(&self) -> MutexGuard<'_, HashMap<JobId, LocalJob>> {
        self.inner.local.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether job `id` was accepted by this instance and has not ended: its record's heartbeat
    /// may lag (a loaded machine), but it is alive.
    pub fn runs_here(&self, id: &JobId) -> bool {
        self.local().contains_key(id)
    }

    /// Jobs accepted by this instance and not yet ended (running and queued).
    pub fn active(&self) -> usize {
        self.local().len()
    }

    /// Jobs waiting for a slot on this instance.
    pub fn queued(&self) -> usize {
        self.active()
            .saturating_sub(self.inner.settings.max_running - self.inner.slots.available_permits())
    }

    /// Takes a place in this instance's queue for a job about to be planned: 429 (with
    /// `Retry-After`) when running, queued and reserved jobs already fill it. Taken before
    /// planning, so that a burst against a full instance is answered without one BigQuery call
    /// (a check without a reservation would let every request of the burst through to plan);
    /// dropping the slot, when planning fails, gives the place back.
    pub fn reserve_slot(&self) -> Result<Slot, Error> {
        let local = self.local();
        self.capacity_error(local.len() + self.inner.reserved.load(Ordering::SeqCst))?;
        self.inner.reserved.fetch_add(1, Ordering::SeqCst);
        drop(local);
        Ok(Slot {
            inner: self.inner.clone(),
        })
    }

    fn capacity_error(&self, active: usize) -> Result<(), Error> {
        let limit = self.inner.settings.max_running + self.inner.settings.max_queued;
        if active >= limit {
            return Err(Error::too_many_requests(
                format!(
                    "this instance already has {active} jobs running, queued or being planned (BQB_MAX_RUNNING_JOBS + BQB_MAX_QUEUED_JOBS = {limit}); retry later"
                ),
                self.inner.settings.heartbeat.max(Duration::from_secs(10)) * 3,
            ));
        }
        if self.inner.shutdown.is_cancelled() {
            return Err(Error::too_many_requests(
                "this instance is shutting down; retry (another instance will take it)",
                Duration::from_secs(5),
            ));
        }
        Ok(())
    }

    /// 409 when selection `key` is held by a live job: a look before other checks, so that the
    /// caller hears of the running job first. [`Self::submit`] takes the selection for real.
    pub async fn ensure_selection_free(&self, key: &str) -> Result<(), Error> {
        match self.inner.store.selection_holder(key).await? {
            Some(holder) => Err(selection_conflict(&holder)),
            None => Ok(()),
        }
    }

    /// Accepts a job in the place `slot` holds: 409 when `exclusive_key` is held by a live job;
    /// otherwise saves it PENDING and runs `work` as soon as a runner is free.
    pub async fn submit<W, Fut>(&self, slot: Slot, job: NewJob, work: W) -> Result<JobRecord, Error>
    where
        W: FnOnce(JobRun) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, Error>> + Send + 'static,
    {
        let id = JobId::generate();
        let now = Utc::now();
        let record = JobRecord {
            version: JobRecord::VERSION,
            job_id: id.clone(),
            kind: job.kind,
            state: JobState::Pending,
            backup_id: job.backup_id,
            storage_uri: job.storage_uri,
            created_at: now,
            started_at: None,
            finished_at: None,
            updated_at: now,
            heartbeat_secs: self.inner.settings.heartbeat.as_secs(),
            instance: self.inner.instance.clone(),
            cancel_requested: false,
            message: None,
            trigger: job.trigger,
            tables: job.tables.into_iter().map(TableProgress::pending).collect(),
            result: None,
            error: None,
            request: job.request,
            shards: None,
        };
        let live = Arc::new(LiveRecord {
            record: Mutex::new(record.clone()),
        });
        let cancel = self.inner.shutdown.child_token();
        let (done_tx, done_rx) = watch::channel(None);
        {
            // The slot's place becomes the job's in one step, so the count never dips between.
            let mut local = self.local();
            drop(slot);
            local.insert(
                id.clone(),
                LocalJob {
                    cancel: cancel.clone(),
                    live: live.clone(),
                    done: done_rx,
                },
            );
        }
        if let Err(e) = self
            .reserve(&id, job.exclusive_key.as_deref(), &record)
            .await
        {
            self.local().remove(&id);
            return Err(e);
        }
        tracing::info!(job_id = %id, kind = record.kind.as_str(), backup_id = ?record.backup_id, "job accepted");
        self.inner.metrics.job_started(record.kind.as_str());
        let runner = Runner {
            jobs: self.clone(),
            id,
            live,
            cancel,
            exclusive_key: job.exclusive_key,
            done: done_tx,
        };
        self.inner.tracker.spawn(runner.run(work));
        Ok(record)
    }

    async fn reserve(
        &self,
        id: &JobId,
        key: Option<&str>,
        record: &JobRecord,
    ) -> Result<(), Error> {
        let store = &self.inner.store;
        if let Some(key) = key
            && let SelectionLock::HeldBy(holder) = store.lock_selection(key, id).await?
        {
            return Err(selection_conflict(&holder));
        }
        if let Err(e) = store.save(record).await {
            if let Some(key) = key {
                store.unlock_selection(key, id).await;
            }
            return Err(e);
        }
        Ok(())
    }

    /// The job's record: live from memory when it runs here, else from the store (a job whose
    /// instance died is reported FAILED).
    pub async fn get(&self, id: &JobId) -> Result<Option<JobRecord>, Error> {
        let local = self.local().get(id).map(|j| j.live.snapshot());
        if let Some(record) = local {
            return Ok(Some(record));
        }
        let stored = self.inner.store.load(id).await?;
        let Some(record) = stored else {
            return Ok(None);
        };
        let mut record = record.effective(Utc::now());
        if !record.state.is_terminal() && self.inner.store.cancel_requested(id).await? {
            record.cancel_requested = true;
        }
        Ok(Some(record))
    }

    /// Every job in the store, newest first, as callers should see them.
    pub async fn list(&self) -> Result<Vec<JobRecord>, Error> {
        let now = Utc::now();
        let mut records: Vec<JobRecord> = self
            .inner
            .store
            .list()
            .await?
            .into_iter()
            .map(|r| {
                let live = self.local().get(&r.job_id).map(|j| j.live.snapshot());
                live.unwrap_or_else(|| r.effective(now))
            })
            .collect();
        records.sort_by(|a, b| {
            b.created_at
                .cmp(&a.created_at)
                .then_with(|| b.job_id.cmp(&a.job_id))
        });
        Ok(records)
    }

    /// Waits until job `id`, accepted by this instance, ends; `None` if it is not running here.
    pub async fn wait(&self, id: &JobId) -> Option<JobRecord> {
        let mut done = self.local().get(id).map(|j| j.done.clone())?;
        done.wait_for(Option::is_some).await.ok()?.clone()
    }

    /// Cancels job `id`: at once when it runs here (waiting up to 30 s for it to stop), through
    /// a cancel request in the store when another instance runs it. 404 for an unknown job,
    /// 409 for one that has already ended.
    pub async fn cancel(&self, id: &JobId) -> Result<Cancelled, Error> {
        let local = self.local().get(id).map(|j| {
            j.live.lock().cancel_requested = true;
            j.cancel.cancel();
        });
        if local.is_some() {
            tracing::info!(job_id = %id, "job cancel requested");
            return Ok(
                match tokio::time::timeout(CANCEL_WAIT, self.wait(id)).await {
                    Ok(Some(record)) => Cancelled::Stopped(record),
                    _ => match self.get(id).await? {
                        Some(record) if record.state.is_terminal() => Cancelled::Stopped(record),
                        Some(record) => Cancelled::Requested(record),
                        None => return Err(Error::not_found(format!("no job {id}"))),
                    },
                },
            );
        }
        let Some(mut record) = self.get(id).await? else {
            return Err(Error::not_found(format!("no job {id}")));
        };
        if record.state.is_terminal() {
            return Err(Error::conflict(format!(
                "job {id} has already ended ({}); there is nothing to cancel",
                record.state.as_str()
            )));
        }
        self.inner.store.request_cancel(id).await?;
        tracing::info!(job_id = %id, instance = %record.instance, "job cancel requested from another instance");
        record.cancel_requested = true;
        Ok(Cancelled::Requested(record))
    }

    /// Deletes records older than `BQB_JOB_RETENTION_DAYS` in the background, at most once per
    /// [`SWEEP_EVERY`] per instance.
    fn sweep_now_and_then(&self) {
        {
            let mut last = self
                .inner
                .last_sweep
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if last.is_some_and(|at| at.elapsed() < SWEEP_EVERY) {
                return;
            }
            *last = Some(Instant::now());
        }
        let store = self.inner.store.clone();
        let retention = chrono::Duration::from_std(self.inner.settings.retention)
            .unwrap_or(chrono::Duration::MAX);
        tokio::spawn(async move {
            match store.sweep(Utc::now() - retention).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, "old job records swept from the state store"),
                Err(e) => tracing::warn!(error = %e, "sweeping old job records failed"),
            }
        });
    }

    /// After shutdown fired: waits (at most `deadline`) for every job to save its final record.
    pub async fn drain(&self, deadline: Duration) {
        self.inner.tracker.close();
        if tokio::time::timeout(deadline, self.inner.tracker.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                jobs = self.active(),
                "shutdown deadline passed before every job saved its record; other instances will report them FAILED once their heartbeat is stale"
            );
        }
    }
}

fn selection_conflict(holder: &JobId) -> Error {
    Error::conflict(format!(
        "a backup of the same tables to the same repository is already running as job {holder}; wait for it, cancel it, or set allowConcurrent: true"
    ))
}

/// A place in this instance's queue (see [`Jobs::reserve_slot`]), given back when dropped:
/// by [`Jobs::submit`] as the job takes the place, or when planning fails.
pub struct Slot {
    inner: Arc<Inner>,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.inner.reserved.fetch_sub(1, Ordering::SeqCst);
    }
}

/// One job's life on this instance.
struct Runner {
    jobs: Jobs,
    id: JobId,
    live: Arc<LiveRecord>,
    cancel: CancellationToken,
    exclusive_key: Option<String>,
    done: watch::Sender<Option<JobRecord>>,
}

enum Outcome {
    Finished(Result<Value, Error>),
    Cancelled,
    Interrupted,
}

impl Runner {
    async fn run<W, Fut>(self, work: W)
    where
        W: FnOnce(JobRun) -> Fut + Send + 'static,
        Fut: Future<Output = Result<Value, Error>> + Send + 'static,
    {
        let inner = self.jobs.inner.clone();
        let heartbeat_stop = CancellationToken::new();
        let heartbeat = tokio::spawn(heartbeat(
            inner.store.clone(),
            self.id.clone(),
            self.live.clone(),
            inner.settings.heartbeat,
            self.cancel.clone(),
            heartbeat_stop.clone(),
        ));

        let outcome = tokio::select! {
            permit = inner.slots.clone().acquire_owned() => match permit {
                Ok(permit) => {
                    let outcome = self.work(work).await;
                    drop(permit);
                    outcome
                }
                Err(_) => Outcome::Finished(Err(Error::internal("the job queue is closed"))),
            },
            () = self.cancel.cancelled() => self.stop_reason(),
        };
        heartbeat_stop.cancel();
        let _ = heartbeat.await;

        let record = self.finish(outcome);
        save_final(&inner.store, &record).await;
        if let Some(key) = &self.exclusive_key {
            inner.store.unlock_selection(key, &self.id).await;
        }
        if record.cancel_requested {
            inner.store.clear_cancel(&self.id).await;
        }
        tracing::info!(job_id = %self.id, state = record.state.as_str(), "job ended");
        self.jobs.local().remove(&self.id);
        // After the removal: a scrape that sees the job ended no longer sees it active.
        inner.metrics.job_ended(&job_ended(&record));
        let _ = self.done.send(Some(record));
        self.jobs.sweep_now_and_then();
    }

    fn stop_reason(&self) -> Outcome {
        if self.jobs.inner.shutdown.is_cancelled() {
            Outcome::Interrupted
        } else {
            Outcome::Cancelled
        }
    }

    async fn work<W, Fut>(&self, work: W) -> Outcome
    where
        W: FnOnce(JobRun) -> Fut,
        Fut: Future<Output = Result<Value, Error>>,
    {
        {
            let mut record = self.live.lock();
            record.state = JobState::Running;
            record.started_at = Some(Utc::now());
            record.updated_at = Utc::now();
        }
        let running = self.live.snapshot();
        if let Err(e) = self.jobs.inner.store.save(&running).await {
            tracing::warn!(job_id = %self.id, error = %e, "saving the RUNNING record failed");
        }
        tracing::info!(job_id = %self.id, "job started");
        let run = JobRun {
            job_id: self.id.clone(),
            cancel: self.cancel.clone(),
            progress: self.live.clone(),
        };
        let work = work(run);
        tokio::pin!(work);
        let shutdown = self.jobs.inner.shutdown.clone();
        tokio::select! {
            result = &mut work => {
                match result {
                    Err(_) if self.cancel.is_cancelled() => self.stop_reason(),
                    result => Outcome::Finished(result),
                }
            }
            () = shutdown.cancelled() => {
                // Save FAILED first (the platform may kill us within seconds), then let the work
                // remove its partial files for what is left of the grace period.
                let record = self.finish(Outcome::Interrupted);
                save_final(&self.jobs.inner.store, &record).await;
                let _ = tokio::time::timeout(self.jobs.inner.settings.heartbeat, &mut work).await;
                Outcome::Interrupted
            }
        }
    }

    /// The final record for `outcome`.
    fn finish(&self, outcome: Outcome) -> JobRecord {
        let mut record = self.live.lock();
        let now = Utc::now();
        record.finished_at = Some(now);
        record.updated_at = now;
        let (state, error, message) = match outcome {
            Outcome::Finished(Ok(result)) => {
                record.result = Some(result);
                (JobState::Succeeded, None, None)
            }
            Outcome::Finished(Err(e)) => (JobState::Failed, Some(JobError::from(&e)), None),
            Outcome::Cancelled => {
                let note = "cancelled on request; nothing was committed (a cancelled backup has no manifest and its files were removed)";
                (
                    JobState::Cancelled,
                    Some(JobError {
                        kind: ErrorKind::Conflict,
                        message: note.into(),
                        details: Vec::new(),
                    }),
                    Some(note.to_string()),
                )
            }
            Outcome::Interrupted => {
                let note = "interrupted: the service instance shut down (SIGTERM) before the job finished; nothing was committed — start it again";
                (
                    JobState::Failed,
                    Some(JobError {
                        kind: ErrorKind::Upstream,
                        message: note.into(),
                        details: Vec::new(),
                    }),
                    Some(note.to_string()),
                )
            }
        };
        record.state = state;
        record.error = error;
        if message.is_some() {
            record.message = message;
        }
        let table_state = match state {
            JobState::Succeeded | JobState::Cancelled => JobState::Cancelled,
            _ => JobState::Failed,
        };
        for t in &mut record.tables {
            if !t.state.is_terminal() {
                t.state = table_state;
            }
        }
        record.clone()
    }
}

/// Saves the running record every `interval` and turns a stored cancel request into a cancel.
async fn heartbeat(
    store: JobStore,
    id: JobId,
    live: Arc<LiveRecord>,
    interval: Duration,
    cancel: CancellationToken,
    stop: CancellationToken,
) {
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(interval) => {}
        }
        match store.cancel_requested(&id).await {
            Ok(true) if !cancel.is_cancelled() => {
                tracing::info!(job_id = %id, "cancel request found in the state store");
                live.lock().cancel_requested = true;
                cancel.cancel();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(job_id = %id, error = %e, "checking for a cancel request failed")
            }
        }
        let record = {
            let mut record = live.lock();
            record.updated_at = Utc::now();
            record.clone()
        };
        if stop.is_cancelled() {
            return;
        }
        if let Err(e) = store.save(&record).await {
            tracing::warn!(job_id = %id, error = %e, "saving job progress failed");
        }
    }
}

async fn save_final(store: &JobStore, record: &JobRecord) {
    for attempt in 1..=FINAL_SAVE_ATTEMPTS {
        match store.save(record).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(job_id = %record.job_id, attempt, error = %e, "saving the final job record failed");
                tokio::time::sleep(Duration::from_millis(200 * u64::from(attempt))).await;
            }
        }
    }
    tracing::error!(job_id = %record.job_id, state = record.state.as_str(), "the final job record could not be saved; the job will be reported FAILED once its heartbeat is stale");
}

/// A final record as the metrics count it.
fn job_ended(record: &JobRecord) -> JobEnded {
    let start = record.started_at.unwrap_or(record.created_at);
    let end = record.finished_at.unwrap_or(record.updated_at);
    JobEnded {
        kind: record.kind.as_str(),
        state: record.state.as_str(),
        duration: (end - start).to_std().unwrap_or_default(),
        rows: record.tables.iter().map(|t| t.rows).sum(),
        bytes: record.tables.iter().map(|t| t.bytes).sum(),
        error: record
            .error
            .as_ref()
            .filter(|_| record.state == JobState::Failed)
            .map(|e| e.kind),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::StorageConfig;

    fn new_job() -> NewJob {
        NewJob {
            kind: JobKind::Backup,
            backup_id: None,
            storage_uri: "memory://backups".into(),
            tables: vec!["p.d.t".into()],
            request: Value::Null,
            trigger: BTreeMap::new(),
            exclusive_key: None,
        }
    }

    #[tokio::test]
    async fn live_jobs_are_counted_until_they_end_and_then_in_the_metrics() {
        let settings = JobSettings {
            state_uri: "memory://jobs".into(),
            max_running: 1,
            max_queued: 5,
            heartbeat: Duration::from_secs(60),
            default_ttl_days: None,
            prune_after_backup: None,
            retention: Duration::from_secs(30 * 86_400),
        };
        let store = JobStore::open(&StorageConfig::default(), &settings.state_uri).unwrap();
        let metrics = Metrics::new();
        let jobs = Jobs::new(store, settings, CancellationToken::new(), metrics.clone());
        let release = CancellationToken::new();
        let gate = release.clone();
        let first = jobs
            .submit(
                jobs.reserve_slot().unwrap(),
                new_job(),
                move |run| async move {
                    run.progress.table_finished("p.d.t", 7, 70, 1);
                    gate.cancelled().await;
                    Ok(Value::Null)
                },
            )
            .await
            .unwrap();
        let second = jobs
            .submit(jobs.reserve_slot().unwrap(), new_job(), |_| async {
                Err(Error::not_found("gone"))
            })
            .await
            .unwrap();
        // One runs, the other waits for the only slot.
        tokio::time::timeout(Duration::from_secs(10), async {
            while jobs.live_count(JobKind::Backup) != (2, 1) {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        })
        .await
        .expect("one job running, one queued");
        assert_eq!(jobs.live_count(JobKind::Restore), (0, 0));

        release.cancel();
        jobs.wait(&first.job_id).await;
        jobs.wait(&second.job_id).await;
        assert_eq!(jobs.live_count(JobKind::Backup), (0, 0));
        let text = metrics.render();
        for line in [
            r#"bqbackup_jobs_started_total{kind="BACKUP"} 2"#,
            r#"bqbackup_jobs_ended_total{kind="BACKUP",state="SUCCEEDED"} 1"#,
            r#"bqbackup_jobs_ended_total{kind="BACKUP",state="FAILED"} 1"#,
            r#"bqbackup_job_rows_total{kind="BACKUP"} 7"#,
            r#"bqbackup_job_bytes_total{kind="BACKUP"} 70"#,
            r#"bqbackup_errors_total{source="job",code="RESOURCE_NOT_FOUND"} 1"#,
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
    }

    fn jobs_with(max_running: usize, max_queued: usize) -> Jobs {
        let settings = JobSettings {
            state_uri: format!("memory://jobs-{}", uuid::Uuid::new_v4().simple()),
            max_running,
            max_queued,
            heartbeat: Duration::from_secs(60),
            default_ttl_days: None,
            prune_after_backup: None,
            retention: Duration::from_secs(30 * 86_400),
        };
        let store = JobStore::open(&StorageConfig::default(), &settings.state_uri).unwrap();
        Jobs::new(store, settings, CancellationToken::new(), Metrics::new())
    }

    #[tokio::test]
    async fn a_slot_is_held_from_before_planning_and_given_back_when_planning_fails() {
        let jobs = jobs_with(1, 1);
        let planning = jobs.reserve_slot().expect("an empty queue has room");
        let _other = jobs.reserve_slot().expect("one running and one queued");
        // Both places are held by requests still planning: a third is refused at once.
        let refused = jobs.reserve_slot().err().expect("the queue is full");
        assert_eq!(refused.kind(), ErrorKind::TooManyRequests);
        assert!(refused.retry_after().is_some());

        // Planning failed: its place is free again.
        drop(planning);
        let slot = jobs.reserve_slot().expect("the place was given back");

        // A slot turned into a job keeps its place while the job lives, and no longer after.
        let release = CancellationToken::new();
        let gate = release.clone();
        let job = jobs
            .submit(slot, new_job(), move |_| async move {
                gate.cancelled().await;
                Ok(Value::Null)
            })
            .await
            .unwrap();
        assert_eq!(jobs.active(), 1);
        assert!(jobs.reserve_slot().is_err(), "one job and one slot fill it");
        release.cancel();
        jobs.wait(&job.job_id).await;
        assert!(jobs.reserve_slot().is_ok());
    }
}
