//! Builds the application (clients, state, bound socket) and serves it until shutdown.
//!
//! `build` binds, `run_until_stopped` serves: tests bind port 0 and read the real port back.
//! Shutdown: a [`CancellationToken`] handed in by the caller (signals in `main`, the test harness
//! in tests). When it fires, readiness turns false, new connections stop being accepted, and
//! in-flight requests get `shutdown_grace` to finish before the server is dropped.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::api::{AppState, error_code, router};
use crate::bigquery::BigQueryConfig;
use crate::config::Settings;
use crate::error::{Error, ErrorKind};
use crate::jobs::{JobStore, Jobs};
use crate::metrics::Metrics;
use crate::storage::StorageConfig;

pub struct Application {
    listener: TcpListener,
    state: AppState,
}

impl Application {
    /// Builds the clients and binds `settings.host:settings.port` (port 0 = any free port).
    pub async fn build(settings: Settings, shutdown: CancellationToken) -> Result<Self, Error> {
        let bigquery = BigQueryConfig::from_settings(&settings).build().await?;
        let storage = StorageConfig::from_settings(&settings);
        let jobs = Jobs::new(
            JobStore::open(&storage, &settings.jobs.state_uri)?,
            settings.jobs.clone(),
            shutdown.clone(),
            Metrics::new(error_code),
        );
        let addr = SocketAddr::new(settings.host, settings.port);
        let listener = TcpListener::bind(addr).await.map_err(|e| {
            Error::new(
                ErrorKind::InvalidInput,
                format!("cannot listen on {addr}: {e}"),
            )
        })?;
        let state = AppState {
            settings: Arc::new(settings),
            bigquery,
            storage,
            jobs,
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
        let grace = self.state.settings.shutdown_grace;
        let jobs = self.state.jobs.clone();
        let addr = self.local_addr();
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
        // Jobs save their final record while requests drain; both within the grace period.
        let (served, ()) =
            tokio::join!(tokio::time::timeout(grace, &mut server), jobs.drain(grace));
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
