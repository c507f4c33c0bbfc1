//! bq-backup: back up Google BigQuery datasets and tables to object storage (gs://, s3://, az://,
//! file://) and restore them faithfully.
//!
//! # Layout
//!
//! Data flows one way: request → validated order → plan → job → per-table tasks → manifest.
//!
//! - [`config`]: `Settings`, every module's settings read at once from the environment and an
//!   optional file, validated as a whole; each module declares its own variables (its
//!   `settings.rs`) with [`variables`].
//! - [`telemetry`]: logging (Cloud Logging JSON or human-readable).
//! - [`app`]: binds the socket ([`app::Application::build`]) and serves until shutdown.
//! - `api`: the HTTP routes; `api::error` is the only place errors become HTTP responses.
//! - [`engine`]: every operation (backup, restore, list, show, verify, delete, prune) with the
//!   same checks, locks, job records and follow-ups whichever entry point asks — HTTP, Pub/Sub
//!   push, a schedule, the CLI — which only translate to and from it.
//! - [`domain`]: request types, ids, formats — no I/O.
//! - [`bigquery`]: the BigQuery client (metadata, Storage Read API as Arrow), retries in one place.
//! - [`storage`]: `object_store` built from a URL (gs, s3, az, file, memory), confined for `serve`
//!   to `BQB_ALLOWED_STORAGE`.
//! - [`formats`]: Arrow ↔ AVRO/CSV/PARQUET/JSON bytes — no network.
//! - [`backup`]: request → [`backup::BackupPlan`] → files + manifest.
//! - [`catalog`]: the manifest (commit point of a backup).
//! - [`restore`]: request → [`restore::RestorePlan`] → tables recreated and loaded.
//! - [`jobs`]: job records in the state store, the bounded queue, cancel and shutdown.
//! - [`schedule`]: schedules the service runs itself (cron + time zone + request), one replica
//!   per tick.
//! - [`metrics`]: the Prometheus registry behind `GET /metrics` (jobs, rows, bytes, errors).
//! - [`recovery`]: after a restore whose process died, the empty tables and datasets it had
//!   created are removed by whichever instance notices first.
//!
//! Dependencies point one way, layer by layer: entry points (`app`, `api`, `config`, the binary)
//! → `engine` → operations (`backup`, `restore`, `catalog`, `jobs`, `schedule`, `recovery`) →
//! clients (`bigquery`, `storage`) → support (`formats`, `exec`, `metrics`, `telemetry`,
//! `variables`) → `domain` → `error`; only `app` (and `config`, for auth's settings) uses `api`. `tests/it/architecture.rs` enforces it (README,
//! "Architecture").

pub mod app;
pub mod backup;
pub mod bigquery;
pub mod catalog;
pub mod config;
pub mod domain;
pub mod encryption;
pub mod engine;
pub mod error;
pub mod exec;
pub mod formats;
pub mod jobs;
pub mod metrics;
pub mod recovery;
pub mod restore;
pub mod schedule;
pub mod storage;
pub mod telemetry;
pub mod time_travel;
pub mod variables;

mod api;

pub use error::{Error, ErrorKind, FieldError, Result};
