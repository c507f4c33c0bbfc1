//! Backup: a validated request becomes a [`BackupPlan`] (tables, snapshot time, layout — a dry run
//! stops there), which [`run_backup`] executes: every table read through the Storage Read API at
//! the one snapshot time, encoded on rayon, streamed to the store with multipart uploads, and the
//! manifest written last.
//!
//! Depends on `bigquery`, `storage`, `formats`, `catalog`, `domain`; never on `api`.

mod plan;
mod run;
mod table;
mod validate;
mod writer;

pub use plan::{BackupPlan, PlannedDataset, PlannedRoutine, PlannedTable, plan_backup};
pub use run::{BackupContext, BackupReport, TableDoneCallback, TableReport, run_backup};
pub use table::decode_arrow_schema;
pub(crate) use table::encode_arrow_schema;
pub use validate::validate_backup_request;

/// Runs CPU-bound work (encoding, hashing) on the rayon pool, never on the async runtime's
/// threads, and awaits its result. A panic in `f` becomes an internal error.
pub async fn on_rayon<F, R>(f: F) -> Result<R, crate::Error>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    let (tx, rx) = tokio::sync::oneshot::channel();
    rayon::spawn(move || {
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
        // The receiver is gone only if the awaiting task was dropped (cancelled); nothing to do.
        let _ = tx.send(result);
    });
    match rx.await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(_)) => Err(crate::Error::internal("an encoding task panicked")),
        Err(_) => Err(crate::Error::internal("an encoding task was lost")),
    }
}
