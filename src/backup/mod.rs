//! Backup: a validated request becomes a [`BackupPlan`] (tables, snapshot time, layout, size
//! estimates (`estimate`), and with `includeDependents` the views and routines that read the
//! selection and what they read (`dependents`) — a dry run stops there), which [`run_backup`] executes: every table read at the one snapshot time, either
//! through the Storage Read API, encoded on rayon and streamed to the store with multipart
//! uploads (STREAM), or exported by BigQuery itself to gs:// from a snapshot (EXTRACT; see
//! `method` for which, `extract` for how), and the manifest written last.
//!
//! Depends on `bigquery`, `storage`, `formats`, `catalog`, `domain`; never on `api`.

mod dependents;
mod estimate;
mod extract;
pub mod incremental;
mod method;
mod partitions;
mod plan;
mod run;
pub mod shard;
mod table;
mod validate;
mod view_sql;
mod writer;

pub use dependents::Dependent;
pub use estimate::OutputEstimate;
pub use plan::{
    BackupPlan, BackupPreview, PlanTotals, PlannedDataset, PlannedRoutine, PlannedTable,
    plan_backup,
};
pub use run::{BackupContext, BackupReport, TableReport, ensure_can_start, run_backup};
pub use validate::{BackupOrder, validate_backup_request};
