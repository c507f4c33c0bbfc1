//! Restore: a validated request becomes a [`RestorePlan`] (which backup, which tables, under
//! which names, refusing to overwrite anything before any data moves — a dry run stops there),
//! which [`run_restore`] executes: datasets and tables recreated from the manifest (never schema
//! autodetect), every file verified (SHA-256, row count, decodes) while it streams into one
//! BigQuery load job per table, views recreated last. Backups in the Java service's layout (no
//! manifest) get a manifest synthesized from their files (see `legacy`).
//!
//! Depends on `bigquery`, `storage`, `formats`, `catalog`, `domain`; never on `api`.

mod legacy;
mod order;
mod plan;
mod resources;
mod run;
mod sql_rewrite;
mod table;

pub use order::RestoreOrder;
pub use plan::{RestorePlan, RestorePreview, RestoreTable, plan_restore};
pub use run::{RestoreContext, RestoreReport, TableRestoreReport, run_restore};
pub use table::LoadMethod;
