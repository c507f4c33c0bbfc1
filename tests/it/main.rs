//! One integration test binary. Every test here talks to the real servers started by
//! `scripts/test-services.sh` (bqemulator, fake-gcs-server behind the XML shim, moto, azurite);
//! none is mocked. Without them every test fails loudly: a skipped integration test is a failure.
//! (`architecture`, `docs` and parts of `config` read the sources and documentation instead.)

mod action;
mod architecture;
mod auth;
mod backup;
mod bigquery;
mod catalog;
mod cli;
mod config;
mod confinement;
mod copy;
mod crash;
mod dependents;
mod deploy;
mod docs;
mod drills;
mod encryption;
mod errors;
mod examples;
mod extract;
mod faults;
mod health;
mod helpers;
mod incremental;
mod independent;
mod jobs;
mod legacy;
mod memory;
mod metrics;
mod openapi;
mod pubsub;
mod recover;
mod restore;
mod restore_files;
mod schedules;
mod shards;
mod storage;
