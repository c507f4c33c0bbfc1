//! The scheduler: one task per service instance that sleeps until the next tick of any schedule,
//! claims the tick in the state store, and — on the one instance whose claim wins — submits the
//! schedule's request as a job.
//!
//! - It wakes at least once a minute, so a clock that jumps or a host that slept is noticed.
//! - Ticks missed while the service was down are not replayed; after a stall (a suspended host,
//!   a clock jump forward) only the newest due tick of a schedule runs, the older ones are
//!   logged as skipped.
//! - A tick whose submission fails (a full queue, the same backup still running, BigQuery
//!   unreachable) is logged, written into its claim and kept as the schedule's `lastError` on
//!   this instance; it is not retried — the next tick is the next try.
//! - A tick still being submitted when the next one comes makes this instance sit that one out;
//!   another instance may take it.
//!
//! Knows nothing of HTTP: the app hands it a [`Submit`] that starts jobs.

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument;

use super::claims::{Claim, ClaimError, Claims, KEEP_CLAIMS};
use super::file::Schedule;
use crate::error::{Error, ErrorKind};

/// The longest the scheduler sleeps between looks at the clock.
const MAX_SLEEP: Duration = Duration::from_secs(60);

/// Starts a schedule's job. Implemented by the engine, which starts it as `POST /api/v1/backup`
/// and `/restore` do.
pub trait Submit: Send + Sync + 'static {
    fn submit(
        &self,
        schedule: &Schedule,
        trigger: BTreeMap<String, String>,
    ) -> BoxFuture<'static, Result<Submitted, Error>>;
}

/// The job a tick started.
#[derive(Debug, Clone)]
pub struct Submitted {
    pub job_id: String,
    pub backup_id: Option<String>,
}

/// The most recent tick of a schedule that failed on this instance.
#[derive(Debug, Clone, PartialEq)]
pub struct TickError {
    pub tick: DateTime<Utc>,
    pub at: DateTime<Utc>,
    pub kind: ErrorKind,
    pub message: String,
}

/// The service's schedules and what this instance saw of them. Cheap to clone.
#[derive(Clone)]
pub struct Schedules {
    inner: Arc<Inner>,
}

/// No schedules (no `BQB_SCHEDULE_FILE`).
impl Default for Schedules {
    fn default() -> Self {
        Self::new(Vec::new())
    }
}

struct Inner {
    schedules: Vec<Schedule>,
    /// This instance, as written into claims: `{HOSTNAME}/{pid}/{random}` (the random part
    /// tells apart several services in one process, as tests run them).
    instance: String,
    last_errors: Mutex<HashMap<String, TickError>>,
}

impl Schedules {
    pub fn new(schedules: Vec<Schedule>) -> Self {
        let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "localhost".into());
        let random = uuid::Uuid::new_v4().simple().to_string();
        Self {
            inner: Arc::new(Inner {
                schedules,
                instance: format!("{host}/{}/{}", std::process::id(), &random[..8]),
                last_errors: Mutex::new(HashMap::new()),
            }),
        }
    }

    pub fn list(&self) -> &[Schedule] {
        &self.inner.schedules
    }

    pub fn is_empty(&self) -> bool {
        self.inner.schedules.is_empty()
    }

    pub fn instance(&self) -> &str {
        &self.inner.instance
    }

    /// The most recent failed tick of schedule `name` on this instance (kept after later
    /// successes; compare its tick with the newest claim's).
    pub fn last_error(&self, name: &str) -> Option<TickError> {
        self.errors().get(name).cloned()
    }

    fn errors(&self) -> std::sync::MutexGuard<'_, HashMap<String, TickError>> {
        // A panic while holding this lock leaves at worst a stale error message.
        self.inner
            .last_errors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    fn set_error(&self, name: &str, error: TickError) {
        self.errors().insert(name.to_string(), error);
    }
}

/// Runs the enabled schedules until `shutdown` fires. Returns at once when none is enabled.
pub async fn run_schedules(
    schedules: Schedules,
    claims: Claims,
    submit: Arc<dyn Submit>,
    shutdown: CancellationToken,
) {
    let enabled: Vec<&Schedule> = schedules.list().iter().filter(|s| s.enabled).collect();
    if enabled.is_empty() {
        return;
    }
    tracing::info!(
        schedules = enabled.len(),
        instance = schedules.instance(),
        "scheduler started"
    );
    let tracker = TaskTracker::new();
    let started = Utc::now();
    // Ticks at or before the start are not run: missed ticks are not replayed.
    let mut last: Vec<DateTime<Utc>> = vec![started; enabled.len()];
    let busy: Vec<Arc<AtomicBool>> = enabled.iter().map(|_| Arc::default()).collect();
    loop {
        let now = Utc::now();
        for (i, schedule) in enabled.iter().enumerate() {
            let Some(due) = schedule.cadence.due(last[i], now) else {
                continue;
            };
            last[i] = due.tick;
            if due.skipped > 0 {
                tracing::warn!(
                    schedule = %schedule.name,
                    skipped = due.skipped,
                    tick = %due.tick,
                    "ticks were missed (the host slept or the clock jumped); running only the newest"
                );
            }
            if busy[i].swap(true, Ordering::AcqRel) {
                tracing::warn!(
                    schedule = %schedule.name,
                    tick = %due.tick,
                    "the previous tick is still being submitted here; leaving this one to other instances"
                );
                continue;
            }
            let tick = Tick {
                schedule: (*schedule).clone(),
                at: due.tick,
                schedules: schedules.clone(),
                claims: claims.clone(),
                submit: submit.clone(),
                busy: BusyGuard(busy[i].clone()),
            };
            let span = tracing::info_span!("schedule", schedule = %schedule.name, tick = %due.tick);
            tracker.spawn(tick.run(shutdown.clone()).instrument(span));
        }
        let next = enabled
            .iter()
            .filter_map(|s| s.cadence.next_after(now))
            .min();
        let sleep = next
            .map(|t| (t - now).to_std().unwrap_or(Duration::ZERO))
            .unwrap_or(MAX_SLEEP)
            .min(MAX_SLEEP);
        tokio::select! {
            () = tokio::time::sleep(sleep) => {}
            () = shutdown.cancelled() => break,
        }
    }
    tracker.close();
    tracker.wait().await;
    tracing::info!("scheduler stopped");
}

/// Clears a schedule's busy flag however its tick ends.
struct BusyGuard(Arc<AtomicBool>);

impl Drop for BusyGuard {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// One due tick of one schedule on this instance.
struct Tick {
    schedule: Schedule,
    at: DateTime<Utc>,
    schedules: Schedules,
    claims: Claims,
    submit: Arc<dyn Submit>,
    busy: BusyGuard,
}

impl Tick {
    async fn run(self, shutdown: CancellationToken) {
        let name = self.schedule.name.as_str();
        let mut claim = Claim::new(name, self.at, self.schedules.instance());
        match self.claims.claim(&claim).await {
            Ok(true) => {}
            Ok(false) => {
                tracing::debug!(schedule = name, tick = %self.at, "another instance runs this tick");
                return;
            }
            Err(e) => {
                tracing::warn!(schedule = name, tick = %self.at, error = %e, "cannot claim the tick; not running it here");
                self.failed(&e);
                return;
            }
        }
        let trigger = BTreeMap::from([
            ("source".to_string(), "schedule".to_string()),
            ("schedule".to_string(), name.to_string()),
            ("tick".to_string(), self.at.to_rfc3339()),
            ("instance".to_string(), claim.instance.clone()),
        ]);
        let outcome = tokio::select! {
            outcome = self.submit.submit(&self.schedule, trigger) => outcome,
            () = shutdown.cancelled() => Err(Error::new(
                ErrorKind::TooManyRequests,
                "the instance shut down before the job was submitted",
            )),
        };
        match outcome {
            Ok(submitted) => {
                tracing::info!(schedule = name, tick = %self.at, job_id = %submitted.job_id, backup_id = ?submitted.backup_id, "scheduled job submitted");
                claim.job_id = Some(submitted.job_id);
                claim.backup_id = submitted.backup_id;
                claim.submitted_at = Some(Utc::now());
            }
            Err(e) => {
                tracing::warn!(schedule = name, tick = %self.at, error = %e, kind = ?e.kind(), "the scheduled job could not start; the next tick tries again");
                self.failed(&e);
                claim.error = Some(ClaimError {
                    kind: e.kind(),
                    message: e.to_string(),
                });
            }
        }
        if let Err(e) = self.claims.record(&claim).await {
            tracing::warn!(schedule = name, tick = %self.at, error = %e, "recording the tick's outcome failed");
        }
        self.claims.prune(name, KEEP_CLAIMS).await;
        drop(self.busy);
    }

    fn failed(&self, e: &Error) {
        self.schedules.set_error(
            &self.schedule.name,
            TickError {
                tick: self.at,
                at: Utc::now(),
                kind: e.kind(),
                message: e.to_string(),
            },
        );
    }
}
