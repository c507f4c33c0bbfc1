//! Builds the application (clients, state, bound socket) and serves it until shutdown.
//!
//! `build` binds, `run_until_stopped` serves: tests bind port 0 and read the real port back.
//! Shutdown: a [`CancellationToken`] handed in by the caller (signals in `main`, the test harness
//! in tests). When it fires, readiness turns false, new connections stop being accepted, and
//! in-flight requests get `shutdown_grace` to finish before the server is dropped.
//!
//! With `BQB_SCHEDULE_FILE`, `build` reads and checks the schedules (a bad file is a startup
//! error naming the schedule and field) and `run_until_stopped` runs the scheduler beside the
//! server until the same token fires.
//!
//! `settings` declares the server's variables (`PORT`, `BQB_HOST`, request limits, grace).

pub(crate) mod settings;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, router};
use crate::backup::BackupOrder;
use crate::config::Settings;
use crate::engine::Engine;
use crate::error::{Error, ErrorKind, FieldError};
use crate::jobs::record::STALE_HEARTBEATS;
use crate::recovery::run_recovery;
use crate::restore::RestoreOrder;
use crate::schedule::{
    Claims, Schedule, ScheduleKind, Schedules, load_schedule_file, run_schedules,
};
use crate::storage::StorageConfig;
pub use settings::ServerSettings;

/// A schedule naming storage this server may not open would be refused at every tick: stop the
/// start instead, naming the schedule and the field, as for any other bad schedule.
fn check_schedule_storage(
    schedules: &[Schedule],
    storage: &StorageConfig,
    file: Option<&std::path::Path>,
) -> Result<(), Error> {
    let mut problems = Vec::new();
    for schedule in schedules {
        // The file's requests were validated when it was loaded; only the storage is left.
        let target = match schedule.kind {
            ScheduleKind::Backup => BackupOrder::from_json(&schedule.request, chrono::Utc::now())
                .ok()
                .map(|order| (order.spec.storage, order.spec.storage_field)),
            ScheduleKind::Restore => RestoreOrder::from_json(&schedule.request)
                .ok()
                .map(|order| (order.spec.storage, order.spec.storage_field)),
        };
        let Some((uri, field)) = target else { continue };
        if let Err(e) = storage.admit(&uri, &field) {
            let label = format!("schedule[{}].request", Value::String(schedule.name.clone()));
            problems.extend(
                Error::from(e)
                    .details()
                    .iter()
                    .map(|d| FieldError::new(format!("{label}.{}", d.field), d.message.clone())),
            );
        }
    }
    if problems.is_empty() {
        return Ok(());
    }
    let file = file.map(|f| f.display().to_string()).unwrap_or_default();
    Err(Error::invalid(
        format!("BQB_SCHEDULE_FILE {file} is invalid"),
        problems,
    ))
}

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Builds the clients and binds `settings.server.host:port` (port 0 = any free port).
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> Result<Self, Error> {
        // Callers name storage in their requests: confined to BQB_ALLOWED_STORAGE (by default
        // cloud buckets only), since they do not own this server's disk or memory.
        let storage = StorageConfig::for_service(&settings.storage);
        Self::build_with_storage(settings, storage, shutdown).await
    }

    /// [`Self::build`] with the storage clients made by `storage` (tests wrap them to inject
    /// faults; its confinement is the one in force).
    pub async fn build_with_storage(
        settings: Settings,
        storage: StorageConfig,
        shutdown: CancellationToken,
    ) -> Result<Self, Error> {
        // First: a bad schedule file should stop the start before any client is built.
        let schedules = match &settings.schedule.file {
            Some(path) => {
                let schedules = Schedules::new(load_schedule_file(path, chrono::Utc::now())?);
                tracing::info!(
                    schedules = schedules.list().len(),
                    file = %path.display(),
                    "schedules loaded"
                );
                schedules
            }
            None => Schedules::default(),
        };
        check_schedule_storage(
            schedules.list(),
            &storage,
            settings.schedule.file.as_deref(),
        )?;
        tracing::info!(allowed = %storage.confinement_text(), "storage callers may use");
        let settings = Arc::new(settings);
        let engine = Engine::build(settings.engine(), storage, shutdown.clone()).await?;
        let addr = SocketAddr::new(settings.server.host, settings.server.port);
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("cannot listen on {addr}: {e}"),
            )
        })?;
        let state = AppState {
            settings,
            engine,
            schedules,
            shutdown,
        };
        Ok(Self { listener, state })
    }

    pub fn local_addr(&self) -> SocketAddr {
        // A bound TcpListener always has a local address.
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// Serves until the shutdown token fires, then drains for at most `shutdown_grace`.
    pub async fn run_until_stopped(self) -> Result<(), Error> {
        let shutdown = self.state.shutdown.clone();
        let grace = self.state.settings.server.shutdown_grace;
        let jobs = self.state.engine.jobs().clone();
        let addr = self.local_addr();
        let scheduler = (!self.state.schedules.is_empty()).then(|| {
            tokio::spawn(run_schedules(
                self.state.schedules.clone(),
                Claims::new(jobs.store().store().clone()),
                Arc::new(self.state.engine.clone()),
                shutdown.clone(),
            ))
        });
        // Restores that died (on any instance) are looked for as often as a job goes stale.
        let recovery = tokio::spawn(run_recovery(
            jobs.clone(),
            self.state.engine.bigquery().clone(),
            (self.state.settings.jobs.heartbeat * STALE_HEARTBEATS).max(Duration::from_secs(1)),
            shutdown.clone(),
        ));
        let app = router(self.state);
        let server = axum::serve(self.listener, app)
            .with_graceful_shutdown(shutdown.clone().cancelled_owned());
        let mut server = tokio::spawn(async move { server.await });
        tracing::info!(%addr, "bq-backup listening");
        tokio::select! {
            result = &mut server => return flatten(result),
            () = shutdown.cancelled() => {}
        }
        tracing::info!(
            grace_secs = grace.as_secs(),
            jobs = jobs.active(),
            "shutting down: draining in-flight requests; unfinished jobs are marked FAILED"
        );
        // Jobs save their final record while requests drain; both within the grace period. The
        // scheduler only finishes recording the ticks it was submitting.
        let (served, (), (), _) = tokio::join!(
            tokio::time::timeout(grace, &mut server),
            jobs.drain(grace),
            stop_scheduler(scheduler, grace),
            tokio::time::timeout(grace, recovery)
        );
        match served {
            Ok(result) => flatten(result),
            Err(_) => {
                tracing::warn!("drain deadline passed; dropping the remaining connections");
                server.abort();
                Ok(())
            }
        }
    }
}

async fn stop_scheduler(scheduler: Option<tokio::task::JoinHandle<()>>, grace: Duration) {
    let Some(mut scheduler) = scheduler else {
        return;
    };
    match tokio::time::timeout(grace, &mut scheduler).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "the scheduler task failed"),
        Err(_) => {
            tracing::warn!("the scheduler did not stop within the grace period");
            scheduler.abort();
        }
    }
}

fn flatten(result: Result<std::io::Result<()>, tokio::task::JoinError>) -> Result<(), Error> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(Error::internal(format!("server failed: {e}"))),
        Err(e) => Err(Error::internal(format!("server task failed: {e}"))),
    }
}

/// Cancels `token` on SIGTERM (Cloud Run, Kubernetes) or SIGINT (Ctrl-C).
pub fn cancel_on_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let ctrl_c = tokio::signal::ctrl_c();
        #[cfg(unix)]
        let term = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut s) => {
                    s.recv().await;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "cannot listen for SIGTERM");
                    std::future::pending::<()>().await;
                }
            }
        };
        #[cfg(not(unix))]
        let term = std::future::pending::<()>();
        tokio::select! {
            _ = ctrl_c => tracing::info!("SIGINT received"),
            () = term => tracing::info!("SIGTERM received"),
        }
        token.cancel();
    });
}
