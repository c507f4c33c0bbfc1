//! Jobs: every backup and restore the service starts runs as a job whose record lives in the
//! state store (`BQB_STATE_URI`), so that any instance can report on it, and cancel it.
//!
//! - [`record`]: what a job looks like to callers (state, per-table progress, result or error).
//! - [`store`]: where records, cancel requests and selection locks are kept.
//! - [`manager`]: the bounded queue, heartbeats, cancel, and shutdown of this instance's jobs.
//! - `settings`: the `BQB_STATE_URI`, `BQB_*_JOBS`, `BQB_JOB_*` variables, and the defaults a
//!   backup job gets (`BQB_DEFAULT_TTL_DAYS`, the `BQB_PRUNE_KEEP_*` keep policy).
//!
//! Depends on `storage`, `domain`, `exec`, `config` and `error` (and `catalog` for the keep
//! policy type of its settings); knows nothing of backups or restores — the API hands it the
//! work to run.

pub mod manager;
pub mod record;
pub(crate) mod settings;
pub mod store;

pub use manager::{Cancelled, JobRun, Jobs, NewJob, Slot};
pub use record::{JobError, JobKind, JobRecord, JobState, TableProgress};
pub use settings::JobSettings;
pub use store::{DeliveryRecord, JobStore};
