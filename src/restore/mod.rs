//! Restore: a validated request becomes a [`RestorePlan`] (which backup, which tables, under
//! which names, refusing to overwrite anything before any data moves — a dry run stops there),
//! which [`run_restore`] executes: datasets and tables recreated from the manifest (never schema
//! autodetect), every file verified (checksum, size, row count) while it streams into BigQuery
//! load jobs — all or nothing per table — views recreated last. Backups in the Java service's layout (no
//! manifest) get a manifest synthesized from their files (see `legacy`).
//!
//! Depends on `bigquery`, `storage`, `formats`, `catalog`, `domain`; never on `api`.

mod drill;
mod files;
mod legacy;
mod order;
mod plan;
pub(crate) mod resources;
mod run;
pub mod shard;
mod sql_rewrite;
mod table;

pub use drill::run_drill;
pub(crate) use files::staging_prefix;
pub use order::RestoreOrder;
pub use plan::{RestorePlan, RestorePreview, RestoreTable, plan_restore};
pub use run::{RestoreContext, RestoreReport, TableRestoreReport, run_restore};
pub use table::LoadMethod;
