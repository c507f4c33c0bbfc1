//! One shard of a sharded backup (`bq-backup worker`): reads only the streams the plan gave it,
//! writes its own files (`shard-{I}-part-{n}`), then its report, then tries the commit.
//!
//! A shard runs under a claim of its own (`shards/_claim-{I}`), so two runs of one shard never
//! write at once. A run that finds the shard's report there already did its work: it only tries
//! the commit. Otherwise it first removes every file an earlier, interrupted run of the same
//! shard left (the engines retry failed tasks), and never touches another shard's files.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use chrono::Utc;
use futures::{StreamExt, TryStreamExt};
use tokio_util::sync::CancellationToken;

use super::commit::{Commit, commit_sharded};
use super::plan::{StoredPlan, read_plan};
use super::report::{ShardReport, ShardTable, read_report, write_report};
use crate::backup::table::export_streams;
use crate::backup::writer::TableFiles;
use crate::bigquery::BigQuery;
use crate::catalog::lease::{Claim, Claimed, LeaseTiming};
use crate::catalog::{self};
use crate::domain::BackupId;
use crate::encryption::Recipients;
use crate::error::{Error, FieldError};
use crate::storage::{Store, delete_if_exists, layout, object_error};

/// What a shard runs with.
#[derive(Clone)]
pub struct ShardContext {
    pub bigquery: BigQuery,
    pub store: Store,
    pub cancel: CancellationToken,
    /// How often the shard's claim is refreshed (and so when a dead run's claim goes stale).
    pub lease: LeaseTiming,
    /// Tables of the shard read at once.
    pub max_parallel_tables: usize,
}

/// Which shard to run: `shard` of `shards` (the count is checked against the plan's, so that
/// a job started with another count fails at once instead of leaving streams unread).
#[derive(Debug, Clone, Copy)]
pub struct ShardOrder {
    pub backup_id: BackupId,
    pub shard: u32,
    pub shards: u32,
}

/// What a shard's run did.
#[derive(Debug)]
pub struct ShardOutcome {
    /// The shard's report: written by this run, or found from an earlier one.
    pub report: Option<ShardReport>,
    /// Whether this run wrote the report (false: an earlier run had, or the backup was
    /// committed already).
    pub ran: bool,
    pub commit: Commit,
}

/// Runs shard `order.shard` of backup `order.backup_id` (see the module documentation).
pub async fn run_shard(ctx: &ShardContext, order: ShardOrder) -> Result<ShardOutcome, Error> {
    let id = order.backup_id;
    if let Some(manifest) = catalog::read_manifest(&ctx.store, &id).await? {
        tracing::info!(backup_id = %id, shard = order.shard, "the backup is committed already; nothing to do");
        return Ok(ShardOutcome {
            report: None,
            ran: false,
            commit: Commit::Committed(Box::new(manifest)),
        });
    }
    let plan = read_plan(&ctx.store, &id).await?.ok_or_else(|| {
        Error::not_found(format!(
            "backup {id} in {} has no sharded plan ({}): plan it first (a backup request with \"shards\")",
            ctx.store.uri(),
            layout::plan(&id)
        ))
    })?;
    check_order(&plan, order)?;
    if let Some(report) = read_report(&ctx.store, &id, order.shard).await? {
        tracing::info!(backup_id = %id, shard = order.shard, "the shard reported already; only committing");
        let commit = commit_sharded(&ctx.store, &id).await?;
        return Ok(ShardOutcome {
            report: Some(report),
            ran: false,
            commit,
        });
    }
    let os = ctx.store.object_store().clone();
    let claim = match Claim::acquire(os, layout::shard_claim_dir(&id, order.shard), id, ctx.lease)
        .await?
    {
        Claimed::Held(claim) => claim,
        Claimed::Busy(holder) => {
            return Err(Error::conflict(format!(
                "shard {} of backup {id} is being run by another worker right now (its claim was refreshed at {}); retry later",
                order.shard,
                holder.heartbeat_at.to_rfc3339()
            )));
        }
    };
    let (cancel, watcher) = claim.cancel_on_loss(&ctx.cancel);
    let run = ShardContext {
        cancel: cancel.clone(),
        ..ctx.clone()
    };
    let result = run_claimed(&run, &plan, order, &claim).await;
    cancel.cancel();
    let _ = watcher.await;
    let report = match result {
        Ok(report) => report,
        Err(e) => {
            tracing::warn!(backup_id = %id, shard = order.shard, error = %e, "shard failed; removing its files");
            if !claim.lost().is_cancelled()
                && let Err(cleanup) = remove_shard_files(&ctx.store, &id, order.shard).await
            {
                tracing::warn!(backup_id = %id, shard = order.shard, error = %cleanup, "removing the shard's files failed; its next run removes them");
            }
            claim.release().await;
            return Err(e);
        }
    };
    claim.release().await;
    let commit = commit_sharded(&ctx.store, &id).await?;
    Ok(ShardOutcome {
        report: Some(report),
        ran: true,
        commit,
    })
}

fn check_order(plan: &StoredPlan, order: ShardOrder) -> Result<(), Error> {
    let mut problems = Vec::new();
    if order.shards != plan.shards {
        problems.push(FieldError::new(
            "shards",
            format!(
                "is {}, but backup {} was planned with {} shards",
                order.shards, plan.backup_id, plan.shards
            ),
        ));
    }
    if order.shard >= plan.shards {
        problems.push(FieldError::new(
            "shard",
            format!(
                "is {}, but backup {} has shards 0 to {}",
                order.shard,
                plan.backup_id,
                plan.shards.saturating_sub(1)
            ),
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::invalid(
            "the shard does not belong to the backup's plan",
            problems,
        ))
    }
}

/// Under the shard's claim: removes what an earlier run left, writes the shard's files, then
/// its report.
async fn run_claimed(
    ctx: &ShardContext,
    plan: &StoredPlan,
    order: ShardOrder,
    claim: &Claim,
) -> Result<ShardReport, Error> {
    let id = order.backup_id;
    // Reported while we waited for the claim: done by the run that held it.
    if let Some(report) = read_report(&ctx.store, &id, order.shard).await? {
        return Ok(report);
    }
    let removed = remove_shard_files(&ctx.store, &id, order.shard).await?;
    if removed > 0 {
        tracing::warn!(backup_id = %id, shard = order.shard, files = removed, "removed the files an interrupted run of this shard left");
    }
    let started_at = Utc::now();
    let encode = plan.manifest.format.encode_options();
    let encryption = match &plan.manifest.encryption {
        Some(entry) => Some(Arc::new(
            Recipients::parse_at("encryption.recipients", &entry.recipients)
                .map_err(|p| Error::invalid("the plan's encryption recipients do not parse", p))?,
        )),
        None => None,
    };
    let units = plan.units_of(order.shard);
    tracing::info!(backup_id = %id, shard = order.shard, shards = order.shards, tables = units.len(), streams = units.iter().map(|(_, s)| s.len()).sum::<usize>(), "shard started");
    let exports = units.into_iter().map(|(session, streams)| {
        let encryption = encryption.clone();
        async move {
            let stored = plan.sessions.get(session).ok_or_else(|| {
                Error::damaged(
                    layout::plan(&id).as_ref(),
                    format!("names read session {session}, which it does not hold"),
                )
            })?;
            let reader = ctx.bigquery.resume_read(stored)?;
            let files = TableFiles {
                store: ctx.store.object_store().clone(),
                backup_id: id,
                table: stored.table.clone(),
                schema: reader.schema(),
                encode,
                encryption,
                file_size_bytes: plan.file_size_bytes,
                shard: Some(order.shard),
                partition: None,
                // A shard reads each table in one group: numbering from 0 is unique within the
                // shard's own file names.
                next_index: AtomicUsize::new(0),
            };
            let written = export_streams(&reader, &streams, files, &ctx.cancel)
                .await
                .map_err(|e| {
                    let message = format!("{}: {}", stored.table, e.message());
                    e.with_message(message)
                })?;
            Ok::<_, Error>(ShardTable {
                table: stored.table.clone(),
                files: written,
            })
        }
    });
    let mut tables: Vec<ShardTable> = futures::stream::iter(exports)
        .buffer_unordered(ctx.max_parallel_tables.max(1))
        .try_collect()
        .await?;
    if ctx.cancel.is_cancelled() {
        return Err(Error::cancelled(format!(
            "shard {} of backup {id} was cancelled",
            order.shard
        )));
    }
    tables.sort_by(|a, b| a.table.cmp(&b.table));
    let report = ShardReport {
        version: 1,
        backup_id: id,
        shard: order.shard,
        shards: order.shards,
        started_at,
        finished_at: Utc::now(),
        tables,
    };
    if !claim.confirm().await? {
        return Err(Error::conflict(format!(
            "shard {} of backup {id} lost its claim to another run of the same shard: no report was written",
            order.shard
        )));
    }
    if !write_report(&ctx.store, &report).await? {
        return Err(Error::conflict(format!(
            "shard {} of backup {id} was reported by another run meanwhile",
            order.shard
        )));
    }
    tracing::info!(backup_id = %id, shard = order.shard, rows = report.rows(), bytes = report.bytes(), files = report.files().count(), "shard finished");
    Ok(report)
}

/// Removes every data file shard `shard` of backup `id` wrote; how many. Other shards' files,
/// the plan and the reports are never touched.
async fn remove_shard_files(store: &Store, id: &BackupId, shard: u32) -> Result<u64, Error> {
    let dir = layout::backup_dir(id);
    let os = store.object_store();
    let paths: Vec<_> = os
        .list(Some(&dir))
        .map_ok(|meta| meta.location)
        .try_filter(|path| futures::future::ready(layout::is_shard_data_file(id, path, shard)))
        .try_collect()
        .await
        .map_err(|e| object_error("listing", &dir, e))?;
    for path in &paths {
        delete_if_exists(os.as_ref(), path)
            .await
            .map_err(|e| object_error("deleting", path, e))?;
    }
    Ok(paths.len() as u64)
}

/// The variables that tell a container which task it is, in the order they are read: Cloud Run
/// Jobs (`CLOUD_RUN_TASK_INDEX`), Kubernetes Indexed Jobs (`JOB_COMPLETION_INDEX`).
pub const SHARD_INDEX_VARIABLES: [&str; 2] = ["CLOUD_RUN_TASK_INDEX", "JOB_COMPLETION_INDEX"];
/// The variables that tell the number of tasks, in the order they are read: ours (a Kubernetes
/// Indexed Job has no such variable; its manifest sets it to `completions`), Cloud Run Jobs'.
pub const SHARD_COUNT_VARIABLES: [&str; 2] = ["BQB_SHARDS", "CLOUD_RUN_TASK_COUNT"];

/// The shard index and count of this process: the flags when given, else the first of
/// [`SHARD_INDEX_VARIABLES`] / [`SHARD_COUNT_VARIABLES`] that is set. Every problem names the
/// flag or variable it is about.
pub fn shard_position(
    shard: Option<u32>,
    shards: Option<u32>,
    var: impl Fn(&str) -> Option<String>,
) -> Result<(u32, u32), Error> {
    let mut problems = Vec::new();
    let mut read = |flag: &str, given: Option<u32>, names: &[&str]| -> Option<u32> {
        if given.is_some() {
            return given;
        }
        for name in names {
            if let Some(value) = var(name).filter(|v| !v.trim().is_empty()) {
                return match value.trim().parse::<u32>() {
                    Ok(n) => Some(n),
                    Err(_) => {
                        problems.push(FieldError::new(
                            *name,
                            format!("is {value:?}, not a whole number"),
                        ));
                        None
                    }
                };
            }
        }
        problems.push(FieldError::new(
            flag,
            format!("is required (or set {})", names.join(" or ")),
        ));
        None
    };
    let index = read("--shard", shard, &SHARD_INDEX_VARIABLES);
    let count = read("--shards", shards, &SHARD_COUNT_VARIABLES);
    if let (Some(index), Some(count)) = (index, count) {
        if count == 0 || count > crate::domain::MAX_SHARDS {
            problems.push(FieldError::new(
                "--shards",
                format!("must be between 1 and {}", crate::domain::MAX_SHARDS),
            ));
        } else if index >= count {
            problems.push(FieldError::new(
                "--shard",
                format!(
                    "is {index}, but there are {count} shards (0 to {})",
                    count - 1
                ),
            ));
        }
        if problems.is_empty() {
            return Ok((index, count));
        }
    }
    Err(Error::invalid("which shard to run is unclear", problems))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| {
            pairs
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        }
    }

    fn fields(e: &Error) -> Vec<&str> {
        e.details().iter().map(|d| d.field.as_str()).collect()
    }

    #[test]
    fn flags_win_over_the_engines_variables() {
        let env = vars(&[("CLOUD_RUN_TASK_INDEX", "3"), ("CLOUD_RUN_TASK_COUNT", "9")]);
        assert_eq!(shard_position(Some(1), Some(2), &env).ok(), Some((1, 2)));
    }

    #[test]
    fn cloud_run_jobs_and_indexed_jobs_name_the_shard() {
        let cloud_run = vars(&[
            ("CLOUD_RUN_TASK_INDEX", "4"),
            ("CLOUD_RUN_TASK_COUNT", "10"),
        ]);
        assert_eq!(shard_position(None, None, &cloud_run).ok(), Some((4, 10)));
        let kubernetes = vars(&[("JOB_COMPLETION_INDEX", "2"), ("BQB_SHARDS", "3")]);
        assert_eq!(shard_position(None, None, &kubernetes).ok(), Some((2, 3)));
    }

    #[test]
    fn a_missing_or_bad_position_names_the_flag_or_variable() {
        let e = shard_position(None, None, vars(&[])).expect_err("nothing set");
        assert_eq!(fields(&e), ["--shard", "--shards"]);
        let e = shard_position(None, Some(3), vars(&[("JOB_COMPLETION_INDEX", "x")]))
            .expect_err("not a number");
        assert_eq!(fields(&e), ["JOB_COMPLETION_INDEX"]);
        let e = shard_position(Some(3), Some(3), vars(&[])).expect_err("out of range");
        assert_eq!(fields(&e), ["--shard"]);
        let e = shard_position(Some(0), Some(0), vars(&[])).expect_err("no shards");
        assert_eq!(fields(&e), ["--shards"]);
    }
}
