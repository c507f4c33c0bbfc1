//! Jobs: every backup and restore the service starts runs as a job whose record lives in the
//! state store (`BQB_STATE_URI`), so that any instance can report on it, and cancel it.
//!
//! - [`record`]: what a job looks like to callers (state, per-table progress, result or error).
//! - [`store`]: where records, cancel requests and selection locks are kept.
//! - [`manager`]: the bounded queue, heartbeats, cancel, and shutdown of this instance's jobs.
//!
//! Depends on `storage`, `domain`, `exec` and `error`; knows nothing of backups or restores —
//! the API hands it the work to run.

pub mod manager;
pub mod record;
pub mod store;

pub use manager::{Cancelled, JobRun, Jobs, NewJob, Slot};
pub use record::{JobError, JobKind, JobRecord, JobState, TableProgress};
pub use store::{DeliveryRecord, JobStore};
