//! The stored plan of a sharded backup (`backups/{id}/plan.json`): what every worker runs and
//! what the commit completes. Written once, create-if-absent, before any worker starts.

use chrono::{DateTime, Utc};
use futures::{StreamExt, TryStreamExt};
use serde::{Deserialize, Serialize};

use super::super::plan::{BackupPlan, PlannedTable};
use super::super::run::manifest_of;
use super::super::table::table_resource;
use crate::bigquery::{BigQuery, ReadOptions, StoredSession};
use crate::catalog::{Manifest, TableEntry, encode_arrow_schema};
use crate::domain::{BackupId, ExportMethod};
use crate::error::Error;
use crate::storage::versioned::{self, VersionedFile};
use crate::storage::{Store, create_file, layout, read_file};

/// Read streams BigQuery gives one session at most.
const MAX_STREAMS_PER_SESSION: usize = 1_000;

/// Read sessions opened at once while planning.
const SESSIONS_AT_ONCE: usize = 8;

/// What every shard of a sharded backup runs, and what its commit completes.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StoredPlan {
    #[serde(default = "versioned::version_1")]
    pub version: u32,
    pub backup_id: BackupId,
    pub shards: u32,
    pub created_at: DateTime<Utc>,
    pub file_size_bytes: u64,
    /// The manifest the commit writes, once every shard's files are added to it: every table
    /// with its resource and Arrow schema, no files yet.
    pub manifest: Manifest,
    /// One read session per table with data, opened at the snapshot time.
    pub sessions: Vec<StoredSession>,
    /// Every stream of every session, each given to one shard.
    pub units: Vec<WorkUnit>,
}

impl VersionedFile for StoredPlan {
    const WHAT: &'static str = "sharded backup plan";
    const VERSION: u32 = 1;
}

/// One read stream of one table, and the shard that reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkUnit {
    /// Index into [`StoredPlan::sessions`].
    pub session: usize,
    /// Index into that session's streams.
    pub stream: usize,
    pub shard: u32,
    /// BigQuery's estimate of the bytes the stream reads (its session's share).
    pub estimated_bytes: u64,
}

impl StoredPlan {
    /// Shard `shard`'s units, grouped by session: `(session, [streams])`.
    pub fn units_of(&self, shard: u32) -> Vec<(usize, Vec<usize>)> {
        units_of(&self.units, shard)
    }
}

fn units_of(units: &[WorkUnit], shard: u32) -> Vec<(usize, Vec<usize>)> {
    let mut grouped: Vec<(usize, Vec<usize>)> = Vec::new();
    for unit in units.iter().filter(|u| u.shard == shard) {
        match grouped.iter_mut().find(|(s, _)| *s == unit.session) {
            Some((_, streams)) => streams.push(unit.stream),
            None => grouped.push((unit.session, vec![unit.stream])),
        }
    }
    grouped
}

/// Gives each stream of `sessions` to one of `shards` shards so that their estimated bytes are
/// as even as they can be: the largest streams first, each to the shard with the least so far
/// (ties to the lowest index). A big table's streams spread over shards; small tables fill the
/// gaps. The same input always gives the same assignment.
pub fn assign(sessions: &[StoredSession], shards: u32) -> Vec<WorkUnit> {
    let mut units: Vec<WorkUnit> = sessions
        .iter()
        .enumerate()
        .flat_map(|(session, s)| {
            let streams = s.streams.len().max(1) as u64;
            let share = u64::try_from(s.estimated_bytes).unwrap_or(0) / streams;
            (0..s.streams.len()).map(move |stream| WorkUnit {
                session,
                stream,
                shard: 0,
                // Every stream counts for something: empty estimates still spread.
                estimated_bytes: share.max(1),
            })
        })
        .collect();
    let weights: Vec<u64> = units.iter().map(|u| u.estimated_bytes).collect();
    for (unit, shard) in units.iter_mut().zip(crate::exec::balance(&weights, shards)) {
        unit.shard = shard;
    }
    units
}

/// Opens one read session per table of `plan` at its snapshot time (with at least as many
/// streams as shards, so that one big table spreads over every shard), and assigns their
/// streams to `shards` shards.
pub async fn prepare(
    bigquery: &BigQuery,
    plan: &BackupPlan,
    shards: u32,
    started_at: DateTime<Utc>,
) -> Result<StoredPlan, Error> {
    let streams = bigquery
        .config()
        .read_streams_per_table
        .max(shards as usize)
        .min(MAX_STREAMS_PER_SESSION);
    let sessions: Vec<_> = plan
        .tables
        .iter()
        .map(|planned| open_session(bigquery, plan, planned, streams))
        .collect();
    let opened: Vec<(StoredSession, TableEntry)> = futures::stream::iter(sessions)
        .buffered(SESSIONS_AT_ONCE)
        .try_collect()
        .await?;
    let (sessions, mut tables): (Vec<_>, Vec<_>) = opened.into_iter().unzip();
    tables.sort_by(|a: &TableEntry, b| a.table.cmp(&b.table));
    let units = assign(&sessions, shards);
    Ok(StoredPlan {
        version: StoredPlan::VERSION,
        backup_id: plan.backup_id,
        shards,
        created_at: started_at,
        file_size_bytes: plan.file_size_bytes,
        manifest: manifest_of(plan, started_at, tables)?,
        sessions,
        units,
    })
}

async fn open_session(
    bigquery: &BigQuery,
    plan: &BackupPlan,
    planned: &PlannedTable,
    streams: usize,
) -> Result<(StoredSession, TableEntry), Error> {
    let options = ReadOptions {
        snapshot_time: Some(plan.snapshot_time),
        max_streams: Some(streams),
        ..Default::default()
    };
    let reader = bigquery.open_read(&planned.table, &options).await?;
    let entry = TableEntry {
        table: planned.table.clone(),
        kind: planned.kind,
        resource: table_resource(planned)?,
        definition: None,
        arrow_schema: Some(encode_arrow_schema(&reader.schema())),
        rows: 0,
        bytes: 0,
        files: Vec::new(),
        format: None,
        method: Some(ExportMethod::Stream),
        partitions: None,
    };
    Ok((reader.stored(), entry))
}

/// Writes `plan` as `backups/{id}/plan.json`, create-if-absent: 409 when the id has a plan.
pub async fn write_plan(store: &Store, plan: &StoredPlan) -> Result<(), Error> {
    if create_file(store, &layout::plan(&plan.backup_id), plan).await? {
        return Ok(());
    }
    Err(Error::conflict(format!(
        "backup {} in {} has a sharded plan already: a plan is written once",
        plan.backup_id,
        store.uri()
    )))
}

/// The stored plan of backup `id`; `None` when it has none.
pub async fn read_plan(store: &Store, id: &BackupId) -> Result<Option<StoredPlan>, Error> {
    read_file(store, &layout::plan(id)).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::TableRef;

    fn session(table: &str, streams: usize, bytes: i64) -> StoredSession {
        StoredSession {
            table: TableRef::new("p", "d", table),
            arrow_schema: String::new(),
            streams: (0..streams).map(|i| format!("{table}/s{i}")).collect(),
            estimated_rows: 0,
            estimated_bytes: bytes,
        }
    }

    fn loads(units: &[WorkUnit], shards: u32) -> Vec<u64> {
        (0..shards)
            .map(|s| {
                units
                    .iter()
                    .filter(|u| u.shard == s)
                    .map(|u| u.estimated_bytes)
                    .sum()
            })
            .collect()
    }

    #[test]
    fn every_stream_goes_to_exactly_one_shard_in_range() {
        let sessions = [
            session("a", 4, 400),
            session("b", 1, 10),
            session("c", 0, 0),
        ];
        let units = assign(&sessions, 3);
        let mut seen: Vec<(usize, usize)> = units.iter().map(|u| (u.session, u.stream)).collect();
        seen.dedup();
        assert_eq!(seen, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0)]);
        assert!(units.iter().all(|u| u.shard < 3));
    }

    #[test]
    fn a_big_table_spreads_over_every_shard_and_small_ones_fill_the_gaps() {
        // One table of 8 streams of 100 bytes each and four of one stream of 50 bytes.
        let mut sessions = vec![session("big", 8, 800)];
        sessions.extend((0..4).map(|i| session(&format!("small{i}"), 1, 50)));
        let units = assign(&sessions, 4);
        assert_eq!(loads(&units, 4), [250, 250, 250, 250]);
        for shard in 0..4 {
            assert!(
                units.iter().any(|u| u.shard == shard && u.session == 0),
                "shard {shard} reads part of the big table"
            );
        }
    }

    #[test]
    fn skewed_tables_balance_within_the_largest_stream() {
        let sessions = [
            session("a", 3, 3_000),
            session("b", 5, 500),
            session("c", 2, 2_000),
        ];
        let units = assign(&sessions, 2);
        let loads = loads(&units, 2);
        let largest = units.iter().map(|u| u.estimated_bytes).max().unwrap_or(0);
        assert!(loads[0].abs_diff(loads[1]) <= largest, "{loads:?}");
        assert_eq!(loads.iter().sum::<u64>(), 5_500);
    }

    #[test]
    fn more_shards_than_streams_leaves_some_shards_without_work() {
        let units = assign(&[session("a", 2, 20)], 5);
        assert_eq!(loads(&units, 5), [10, 10, 0, 0, 0]);
    }

    #[test]
    fn the_assignment_is_the_same_every_time() {
        let sessions = [session("a", 7, 7_000), session("b", 3, 100)];
        assert_eq!(assign(&sessions, 3), assign(&sessions, 3));
    }

    #[test]
    fn a_shards_units_are_grouped_by_table() {
        let sessions = vec![session("a", 4, 400), session("b", 2, 20)];
        let units = assign(&sessions, 2);
        let mut all = Vec::new();
        for shard in 0..2 {
            let grouped = units_of(&units, shard);
            let mut tables: Vec<usize> = grouped.iter().map(|(s, _)| *s).collect();
            tables.dedup();
            assert_eq!(
                tables.len(),
                grouped.len(),
                "one group per table: {grouped:?}"
            );
            all.extend(
                grouped
                    .into_iter()
                    .flat_map(|(s, v)| v.into_iter().map(move |i| (s, i))),
            );
        }
        all.sort();
        assert_eq!(all, [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1)]);
    }
}
