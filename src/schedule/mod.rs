//! Schedules the service runs itself (`BQB_SCHEDULE_FILE`), for hosts without Cloud Scheduler:
//! a cron expression in a time zone, and the backup or restore request to start at each tick.
//!
//! - [`cadence`]: cron expression + IANA time zone → tick instants (DST handled here). Pure.
//! - [`file`]: the TOML file, checked at startup with the API's own request validation.
//! - [`claims`]: tick leases in the state store, so one replica runs each tick.
//! - [`runner`]: the task that sleeps until the next tick, claims it and submits the job.
//!
//! Depends on `domain`, `backup` (validation), `formats`, `storage` and `error`; never on the
//! HTTP layer — the app hands the runner a [`Submit`] that starts jobs the way the API does.

pub mod cadence;
pub mod claims;
pub mod file;
pub mod runner;
pub(crate) mod settings;

pub use cadence::{Cadence, Due, parse_timezone};
pub use claims::{Claim, ClaimError, Claims};
pub use file::{Schedule, ScheduleKind, load_schedule_file, parse_schedules};
pub use runner::{Schedules, Submit, Submitted, TickError, run_schedules};
pub use settings::ScheduleSettings;
