//! Every key this service reads or writes — in a backup repository and in the state store — is
//! built here and nowhere else, so that the layout below is the whole truth about both stores.
//! Keys are relative to the store's URI.
//!
//! A backup repository (`backupStorage.uri`):
//!
//! ```text
//! backups/{backupId}/manifest.json                     written last; presence = committed
//! backups/{backupId}/_claim/{epoch:020}.json           the backup being written (an exclusive slot)
//! backups/{backupId}/_restore-{token}.json             a restore reading it (a shared lease)
//! backups/{backupId}/_deleting-{token}.json            a delete under way (a shared lease)
//! backups/{backupId}/_base-{token}.json                an incremental backup being written on it (a shared lease)
//! backups/{backupId}/drills/{yyyyMMddTHHmmssZ}-{jobId}.json   a restore drill's result
//! backups/{backupId}/{project}/{dataset}/{table}/part-{index:05}.{ext}
//! backups/{backupId}/{project}/{dataset}/{table}/partition-{partitionId}-part-{index:05}.{ext}
//! backups/{backupId}/plan.json                         a sharded backup's stored plan
//! backups/{backupId}/shards/{shard:05}.json            a shard's report (its files), once it finished
//! backups/{backupId}/shards/_claim-{shard:05}/{epoch:020}.json   a shard being run (an exclusive slot)
//! backups/{backupId}/{project}/{dataset}/{table}/shard-{shard:05}-part-{index:05}.{ext}
//! backups/{backupId}/{project}/{dataset}/{table}-{n}.{ext}   read only: the Java service's layout
//! ```
//!
//! The state store (`BQB_STATE_URI`):
//!
//! ```text
//! jobs/{jobId}.json                                    a job's record
//! jobs/{jobId}.cancel                                  a cancel request for it
//! jobs/_selections/{key}/{epoch:020}.json              the job backing up a selection (an exclusive slot)
//! idempotency/pubsub-{kind}-{messageId}.json           what a Pub/Sub delivery started
//! restores/{jobId}.json                                a running restore's marker
//! sharded-restores/{jobId}/plan.json                   a sharded restore's plan
//! sharded-restores/{jobId}/shards/{shard:05}.json      a shard's report, once its tables are restored
//! schedules/{name}/{tick:yyyyMMddTHHmmssZ}.json        the claim of one schedule tick
//! ```
//!
//! Each name component is one object_store path part: characters that are not allowed in a key
//! (`/`, control characters, non-ASCII, `%`, ...) are percent-encoded, so table names with spaces,
//! dashes or non-ASCII letters always map to exactly one key and back. Every key that is read
//! back from a listing has its inverse here too (`backup_id_of`, `job_id_of`, `slot_epoch`,
//! `schedule_tick_of`, `backup_object`, `java_layout_file`).
//!
//! Depends on `domain` only.

use chrono::{DateTime, NaiveDateTime, Utc};
use object_store::path::{Path, PathPart};

use crate::domain::{BackupId, JobId, TableRef};

// ---- the backup repository ----

pub const BACKUPS: &str = "backups";
pub const MANIFEST: &str = "manifest.json";
/// `backups/{id}/_claim`: the records of the claim of a backup being written.
pub const CLAIM: &str = "_claim";
/// `backups/{id}/plan.json`: the stored plan a sharded backup's workers run.
pub const PLAN: &str = "plan.json";
/// `backups/{id}/shards`: the reports and claims of a sharded backup's shards.
pub const SHARDS: &str = "shards";
/// `backups/{id}/drills`: the results of the restore drills of a backup.
pub const DRILLS: &str = "drills";
const SHARD_CLAIM_PREFIX: &str = "_claim-";
const SHARD_FILE_PREFIX: &str = "shard-";
const RESTORE_LEASE_PREFIX: &str = "_restore-";
const DELETE_INTENT_PREFIX: &str = "_deleting-";
const BASE_LEASE_PREFIX: &str = "_base-";
const PARTITION_FILE_PREFIX: &str = "partition-";
const JSON: &str = ".json";

/// `backups`: every backup of a repository lives below it.
pub fn backups_root() -> Path {
    Path::from(BACKUPS)
}

/// `backups/{id}`: everything of one backup lives below it.
pub fn backup_dir(id: &BackupId) -> Path {
    Path::from_iter([BACKUPS, &id.to_string()])
}

/// The backup id of `backups/{id}` (a common prefix of a listing of [`backups_root`]); `None`
/// for anything else, so that foreign directories in a repository are ignored.
pub fn backup_id_of(dir: &Path) -> Option<BackupId> {
    let mut parts = dir.parts();
    let (Some(root), Some(id), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if root.as_ref() != BACKUPS {
        return None;
    }
    BackupId::parse(id.as_ref()).ok()
}

/// The backup a key below `backups/{id}/` belongs to: whose files an incremental backup lists.
pub fn backup_of_key(key: &Path) -> Option<BackupId> {
    let mut parts = key.parts();
    let (Some(root), Some(id)) = (parts.next(), parts.next()) else {
        return None;
    };
    (root.as_ref() == BACKUPS)
        .then(|| BackupId::parse(id.as_ref()).ok())
        .flatten()
}

pub fn manifest(id: &BackupId) -> Path {
    backup_dir(id).join(MANIFEST)
}

pub fn claim_dir(id: &BackupId) -> Path {
    backup_dir(id).join(CLAIM)
}

/// The leases a backup's directory holds, one record per holder (each named by its token).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SharedLease {
    /// A restore is reading the backup: it must not be deleted.
    Restore,
    /// A delete of the backup is under way: it must not be restored.
    Delete,
    /// An incremental backup whose files will include some of this backup's is being
    /// written: it must not be deleted.
    Base,
}

impl SharedLease {
    fn prefix(self) -> &'static str {
        match self {
            Self::Restore => RESTORE_LEASE_PREFIX,
            Self::Delete => DELETE_INTENT_PREFIX,
            Self::Base => BASE_LEASE_PREFIX,
        }
    }
}

/// `backups/{id}/_restore-{token}.json` or `backups/{id}/_deleting-{token}.json`.
pub fn shared_lease(id: &BackupId, lease: SharedLease, token: &str) -> Path {
    backup_dir(id).join(format!("{}{token}{JSON}", lease.prefix()).as_str())
}

/// `backups/{id}/{project}/{dataset}/{table}`.
pub fn table_dir(id: &BackupId, table: &TableRef) -> Path {
    backup_dir(id)
        .join(PathPart::from(table.project.as_str()))
        .join(PathPart::from(table.dataset.as_str()))
        .join(PathPart::from(table.table.as_str()))
}

/// `backups/{id}/{project}/{dataset}/{table}/part-{index:05}.{extension}`.
pub fn data_file(id: &BackupId, table: &TableRef, index: usize, extension: &str) -> Path {
    table_dir(id, table).join(format!("part-{index:05}.{extension}").as_str())
}

/// `backups/{id}/{project}/{dataset}/{table}/partition-{partition}-part-{index:05}.{extension}`:
/// a data file of partition `partition` (BigQuery's partition id) of a table read partition by
/// partition (each partition numbers its own files).
pub fn partition_data_file(
    id: &BackupId,
    table: &TableRef,
    partition: &str,
    index: usize,
    extension: &str,
) -> Path {
    table_dir(id, table)
        .join(format!("{PARTITION_FILE_PREFIX}{partition}-part-{index:05}.{extension}").as_str())
}

/// `backups/{id}/{project}/{dataset}/{table}/shard-{shard:05}-part-{index:05}.{extension}`: a
/// data file written by shard `shard` of a sharded backup (each shard numbers its own files).
pub fn shard_data_file(
    id: &BackupId,
    table: &TableRef,
    shard: u32,
    index: usize,
    extension: &str,
) -> Path {
    table_dir(id, table)
        .join(format!("{}{index:05}.{extension}", shard_file_prefix(shard)).as_str())
}

/// What the names of shard `shard`'s data files start with.
fn shard_file_prefix(shard: u32) -> String {
    format!("{SHARD_FILE_PREFIX}{shard:05}-part-")
}

/// Whether `key` is a data file shard `shard` of backup `id` wrote.
pub fn is_shard_data_file(id: &BackupId, key: &Path, shard: u32) -> bool {
    backup_object(id, key) == BackupObject::Data
        && key
            .filename()
            .is_some_and(|name| name.starts_with(&shard_file_prefix(shard)))
}

/// `backups/{id}/drills`.
pub fn drills_dir(id: &BackupId) -> Path {
    backup_dir(id).join(DRILLS)
}

/// `backups/{id}/drills/{yyyyMMddTHHmmssZ}-{jobId}.json`: the result of restore drill `job`,
/// which started at `at`; names sort by start.
pub fn drill_record(id: &BackupId, at: DateTime<Utc>, job: &JobId) -> Path {
    drills_dir(id).join(format!("{}-{}{JSON}", at.format(TICK_FORMAT), job.as_str()).as_str())
}

/// `backups/{id}/plan.json`.
pub fn plan(id: &BackupId) -> Path {
    backup_dir(id).join(PLAN)
}

/// `backups/{id}/shards`.
pub fn shards_dir(id: &BackupId) -> Path {
    backup_dir(id).join(SHARDS)
}

/// `backups/{id}/shards/{shard:05}.json`.
pub fn shard_report(id: &BackupId, shard: u32) -> Path {
    shards_dir(id).join(format!("{shard:05}{JSON}").as_str())
}

/// The shard a [`shard_report`] key of backup `id` reports on; `None` for any other key.
pub fn shard_of_report(id: &BackupId, key: &Path) -> Option<u32> {
    shard_in(&shards_dir(id), key)
}

/// The shard of a `{dir}/{shard:05}.json` key; `None` for any other key.
fn shard_in(dir: &Path, key: &Path) -> Option<u32> {
    let rest: Vec<PathPart<'_>> = key.prefix_match(dir)?.collect();
    let [name] = rest.as_slice() else {
        return None;
    };
    let digits = name.as_ref().strip_suffix(JSON)?;
    if digits.len() != 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// `backups/{id}/shards/_claim-{shard:05}`: the claim of shard `shard` being run.
pub fn shard_claim_dir(id: &BackupId, shard: u32) -> Path {
    shards_dir(id).join(format!("{SHARD_CLAIM_PREFIX}{shard:05}").as_str())
}

/// A data file of a backup in the Java service's layout
/// (`backups/{id}/{project}/{dataset}/{file}`, no manifest): the names its key holds, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JavaLayoutFile {
    pub project: String,
    pub dataset: String,
    /// The file name (`{table}-{n}.{ext}`), for the caller to parse.
    pub file: String,
}

/// The names of a [`JavaLayoutFile`] key of backup `id`; `None` for keys at any other depth.
pub fn java_layout_file(id: &BackupId, key: &Path) -> Option<JavaLayoutFile> {
    let rest: Vec<String> = key
        .prefix_match(&backup_dir(id))?
        .map(|p| decode_part(p.as_ref()))
        .collect();
    match <[String; 3]>::try_from(rest) {
        Ok([project, dataset, file]) => Some(JavaLayoutFile {
            project,
            dataset,
            file,
        }),
        Err(_) => None,
    }
}

/// A key part as the name it encodes (object_store percent-encodes what keys should not hold).
fn decode_part(part: &str) -> String {
    percent_encoding::percent_decode_str(part)
        .decode_utf8_lossy()
        .into_owned()
}

/// What an object below `backups/{id}/` is, told by where its key sits: records only ever lie
/// directly in the backup's directory (or in `_claim/`), data files four levels down, so a table
/// named like a record is never taken for one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BackupObject {
    Manifest,
    /// A record of the backup's claim (`_claim/{epoch}.json`).
    Claim,
    Lease(SharedLease),
    /// A sharded backup's stored plan.
    Plan,
    /// A shard's report or a record of its claim (`shards/…`).
    Shard,
    /// The result of a restore drill (`drills/…`).
    Drill,
    /// A data file (or, on `file://`, the staging file of an unfinished upload of one).
    Data,
    /// Not below `backups/{id}/`, or nothing this service writes.
    Other,
}

pub fn backup_object(id: &BackupId, key: &Path) -> BackupObject {
    let Some(rest) = key.prefix_match(&backup_dir(id)) else {
        return BackupObject::Other;
    };
    let rest: Vec<PathPart<'_>> = rest.collect();
    match rest.as_slice() {
        [name] if name.as_ref() == MANIFEST => BackupObject::Manifest,
        [name] if name.as_ref() == PLAN => BackupObject::Plan,
        [dir, _] if dir.as_ref() == CLAIM => BackupObject::Claim,
        [dir, _] if dir.as_ref() == SHARDS => BackupObject::Shard,
        [dir, _] if dir.as_ref() == DRILLS => BackupObject::Drill,
        [dir, claim, _]
            if dir.as_ref() == SHARDS && claim.as_ref().starts_with(SHARD_CLAIM_PREFIX) =>
        {
            BackupObject::Shard
        }
        [name] => [SharedLease::Restore, SharedLease::Delete, SharedLease::Base]
            .into_iter()
            .find(|lease| {
                name.as_ref()
                    .strip_prefix(lease.prefix())
                    .is_some_and(|rest| rest.ends_with(JSON))
            })
            .map_or(BackupObject::Other, BackupObject::Lease),
        [_project, _dataset, _table, _file] => BackupObject::Data,
        _ => BackupObject::Other,
    }
}

// ---- exclusive slots (both stores) ----

/// `{dir}/{epoch:020}.json`: a holder record of an exclusive slot, zero-padded so that names
/// sort like epochs (see [`super::exclusive`]).
pub fn slot_record(dir: &Path, epoch: u64) -> Path {
    dir.clone().join(format!("{epoch:020}{JSON}").as_str())
}

/// The epoch of a [`slot_record`] key; `None` for anything else in the slot's directory.
pub fn slot_epoch(key: &Path) -> Option<u64> {
    let digits = key.filename()?.strip_suffix(JSON)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

// ---- the state store ----

const JOBS: &str = "jobs";
const SELECTIONS: &str = "_selections";
const CANCEL: &str = ".cancel";
const IDEMPOTENCY: &str = "idempotency";
const RESTORES: &str = "restores";
const SHARDED_RESTORES: &str = "sharded-restores";
const SCHEDULES: &str = "schedules";
const TICK_FORMAT: &str = "%Y%m%dT%H%M%SZ";

/// `jobs`: job records and cancel requests (listed without recursion: the selections below it
/// are in a directory of their own).
pub fn jobs_dir() -> Path {
    Path::from(JOBS)
}

/// `jobs/{jobId}.json`.
pub fn job_record(id: &JobId) -> Path {
    jobs_dir().join(format!("{id}{JSON}").as_str())
}

/// The job id of a [`job_record`] key; `None` for cancel requests and anything else.
pub fn job_id_of(key: &Path) -> Option<JobId> {
    let mut parts = key.parts();
    let (Some(dir), Some(name), None) = (parts.next(), parts.next(), parts.next()) else {
        return None;
    };
    if dir.as_ref() != JOBS {
        return None;
    }
    JobId::parse(name.as_ref().strip_suffix(JSON)?).ok()
}

/// `jobs/{jobId}.cancel`.
pub fn job_cancel(id: &JobId) -> Path {
    jobs_dir().join(format!("{id}{CANCEL}").as_str())
}

/// `jobs/_selections/{key}`: the slot of the job backing up one selection.
pub fn selection_dir(key: &str) -> Path {
    jobs_dir().join(SELECTIONS).join(key)
}

/// `idempotency`: records of at-least-once deliveries.
pub fn idempotency_dir() -> Path {
    Path::from(IDEMPOTENCY)
}

/// `idempotency/pubsub-{kind}-{messageId}.json`: what the Pub/Sub message `message_id`, pushed
/// to the endpoint of job kind `kind` (`backup`, `restore`), started.
pub fn pubsub_delivery(kind: &str, message_id: &str) -> Path {
    idempotency_dir().join(format!("pubsub-{kind}-{message_id}{JSON}").as_str())
}

/// `restores`: markers of running restores.
pub fn restores_dir() -> Path {
    Path::from(RESTORES)
}

/// `restores/{jobId}.json`.
pub fn restore_marker(job: &JobId) -> Path {
    restores_dir().join(format!("{job}{JSON}").as_str())
}

/// `sharded-restores/{jobId}`: a sharded restore's plan and its shards' reports.
pub fn sharded_restore_dir(job: &JobId) -> Path {
    Path::from(SHARDED_RESTORES).join(job.to_string().as_str())
}

/// `sharded-restores/{jobId}/plan.json`.
pub fn sharded_restore_plan(job: &JobId) -> Path {
    sharded_restore_dir(job).join(PLAN)
}

/// `sharded-restores/{jobId}/shards/{shard:05}.json`.
pub fn sharded_restore_report(job: &JobId, shard: u32) -> Path {
    sharded_restore_dir(job)
        .join(SHARDS)
        .join(format!("{shard:05}{JSON}").as_str())
}

/// The shard a [`sharded_restore_report`] key of job `job` reports on; `None` for any other key.
pub fn shard_of_restore_report(job: &JobId, key: &Path) -> Option<u32> {
    shard_in(&sharded_restore_dir(job).join(SHARDS), key)
}

/// `schedules/{name}`: the claims of one schedule's ticks.
pub fn schedule_dir(schedule: &str) -> Path {
    Path::from(SCHEDULES).join(schedule)
}

/// `schedules/{name}/{yyyyMMddTHHmmssZ}.json`: keys sort like ticks.
pub fn schedule_claim(schedule: &str, tick: DateTime<Utc>) -> Path {
    schedule_dir(schedule).join(format!("{}{JSON}", tick.format(TICK_FORMAT)).as_str())
}

/// The tick of a [`schedule_claim`] key; `None` for anything else.
pub fn schedule_tick_of(key: &Path) -> Option<DateTime<Utc>> {
    let stamp = key.filename()?.strip_suffix(JSON)?;
    NaiveDateTime::parse_from_str(stamp, TICK_FORMAT)
        .ok()
        .map(|t| t.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> BackupId {
        BackupId::parse("20261121_075959").unwrap()
    }

    #[test]
    fn repository_keys_follow_the_documented_layout() {
        let t = TableRef::new("p-1", "shop", "orders");
        assert_eq!(
            manifest(&id()).as_ref(),
            "backups/20261121_075959/manifest.json"
        );
        assert_eq!(
            data_file(&id(), &t, 3, "csv.gz").as_ref(),
            "backups/20261121_075959/p-1/shop/orders/part-00003.csv.gz"
        );
        assert_eq!(
            slot_record(&claim_dir(&id()), 1).as_ref(),
            "backups/20261121_075959/_claim/00000000000000000001.json"
        );
        assert_eq!(
            shared_lease(&id(), SharedLease::Restore, "abc").as_ref(),
            "backups/20261121_075959/_restore-abc.json"
        );
        assert_eq!(
            shared_lease(&id(), SharedLease::Delete, "abc").as_ref(),
            "backups/20261121_075959/_deleting-abc.json"
        );
        let base = shared_lease(&id(), SharedLease::Base, "abc");
        assert_eq!(base.as_ref(), "backups/20261121_075959/_base-abc.json");
        assert_eq!(
            backup_object(&id(), &base),
            BackupObject::Lease(SharedLease::Base)
        );
        let file = partition_data_file(&id(), &t, "20240131", 0, "parquet");
        assert_eq!(
            file.as_ref(),
            "backups/20261121_075959/p-1/shop/orders/partition-20240131-part-00000.parquet"
        );
        assert_eq!(backup_object(&id(), &file), BackupObject::Data);
        assert_eq!(backup_of_key(&file), Some(id()));
        assert_eq!(backup_of_key(&Path::from("jobs/x.json")), None);
    }

    #[test]
    fn a_sharded_backup_keeps_its_plan_reports_and_claims_apart_from_its_data() {
        let t = TableRef::new("p-1", "shards", "orders");
        let plan = plan(&id());
        assert_eq!(plan.as_ref(), "backups/20261121_075959/plan.json");
        assert_eq!(backup_object(&id(), &plan), BackupObject::Plan);
        let report = shard_report(&id(), 7);
        assert_eq!(report.as_ref(), "backups/20261121_075959/shards/00007.json");
        assert_eq!(backup_object(&id(), &report), BackupObject::Shard);
        assert_eq!(shard_of_report(&id(), &report), Some(7));
        assert_eq!(shard_of_report(&id(), &plan), None);
        let claim = slot_record(&shard_claim_dir(&id(), 7), 1);
        assert_eq!(
            claim.as_ref(),
            "backups/20261121_075959/shards/_claim-00007/00000000000000000001.json"
        );
        assert_eq!(backup_object(&id(), &claim), BackupObject::Shard);
        assert_eq!(shard_of_report(&id(), &claim), None);
        // A dataset named `shards` holds data files like any other.
        let file = shard_data_file(&id(), &t, 7, 2, "avro");
        assert_eq!(
            file.as_ref(),
            "backups/20261121_075959/p-1/shards/orders/shard-00007-part-00002.avro"
        );
        assert_eq!(backup_object(&id(), &file), BackupObject::Data);
        assert!(is_shard_data_file(&id(), &file, 7));
        assert!(!is_shard_data_file(&id(), &file, 70));
        assert!(!is_shard_data_file(
            &id(),
            &data_file(&id(), &t, 2, "avro"),
            7
        ));
    }

    #[test]
    fn state_store_keys_follow_the_documented_layout() {
        let job = JobId::parse("job-00000000000000b1").unwrap();
        assert_eq!(job_record(&job).as_ref(), "jobs/job-00000000000000b1.json");
        assert_eq!(
            job_cancel(&job).as_ref(),
            "jobs/job-00000000000000b1.cancel"
        );
        assert_eq!(
            slot_record(&selection_dir("ab12"), 2).as_ref(),
            "jobs/_selections/ab12/00000000000000000002.json"
        );
        assert_eq!(
            pubsub_delivery("backup", "123").as_ref(),
            "idempotency/pubsub-backup-123.json"
        );
        assert_eq!(
            restore_marker(&job).as_ref(),
            "restores/job-00000000000000b1.json"
        );
        let tick = "2026-03-29T01:00:00Z".parse().unwrap();
        assert_eq!(
            schedule_claim("nightly", tick).as_ref(),
            "schedules/nightly/20260329T010000Z.json"
        );
    }

    #[test]
    fn keys_read_back_from_listings_give_back_what_built_them() {
        assert_eq!(backup_id_of(&backup_dir(&id())), Some(id()));
        assert_eq!(backup_id_of(&Path::from("backups/not-an-id")), None);
        assert_eq!(backup_id_of(&Path::from("other/20261121_075959")), None);

        let job = JobId::generate();
        assert_eq!(job_id_of(&job_record(&job)), Some(job.clone()));
        assert_eq!(job_id_of(&job_cancel(&job)), None);
        assert_eq!(job_id_of(&restore_marker(&job)), None);

        for epoch in [1, 42, u64::MAX] {
            assert_eq!(
                slot_epoch(&slot_record(&claim_dir(&id()), epoch)),
                Some(epoch)
            );
        }
        assert_eq!(slot_epoch(&Path::from("slot/1.json")), None);
        assert_eq!(
            slot_epoch(&Path::from("slot/0000000000000000000x.json")),
            None
        );

        let tick: DateTime<Utc> = "2026-03-30T01:02:03Z".parse().unwrap();
        assert_eq!(schedule_tick_of(&schedule_claim("a b/c", tick)), Some(tick));
        assert_eq!(
            schedule_tick_of(&Path::from("schedules/x/notes.json")),
            None
        );
    }

    #[test]
    fn every_object_of_a_backup_is_told_by_its_place() {
        let t = TableRef::new("p", "d", "t");
        let of = |key: &Path| backup_object(&id(), key);
        assert_eq!(of(&manifest(&id())), BackupObject::Manifest);
        assert_eq!(of(&slot_record(&claim_dir(&id()), 7)), BackupObject::Claim);
        for lease in [SharedLease::Restore, SharedLease::Delete] {
            assert_eq!(
                of(&shared_lease(&id(), lease, "tok")),
                BackupObject::Lease(lease)
            );
        }
        assert_eq!(of(&data_file(&id(), &t, 0, "avro")), BackupObject::Data);
        // Tables named like records are data, not records.
        for name in ["_claim", "manifest.json", "_restore-x.json"] {
            let odd = TableRef::new("p", "d", name);
            assert_eq!(of(&data_file(&id(), &odd, 0, "avro")), BackupObject::Data);
        }
        let other = BackupId::parse("20261121_080000").unwrap();
        assert_eq!(of(&manifest(&other)), BackupObject::Other);
    }

    #[test]
    fn java_layout_files_are_named_by_their_decoded_key_parts() {
        let key = backup_dir(&id())
            .join("p-1")
            .join("my data/set")
            .join("orders-0.csv.gz");
        assert_eq!(
            java_layout_file(&id(), &key),
            Some(JavaLayoutFile {
                project: "p-1".into(),
                dataset: "my data/set".into(),
                file: "orders-0.csv.gz".into(),
            })
        );
        let t = TableRef::new("p", "d", "t");
        assert_eq!(
            java_layout_file(&id(), &data_file(&id(), &t, 0, "avro")),
            None
        );
        assert_eq!(java_layout_file(&id(), &manifest(&id())), None);
    }

    #[test]
    fn odd_table_names_map_to_one_key_each() {
        let a = table_dir(&id(), &TableRef::new("p", "d", "my table-ü"));
        let b = table_dir(&id(), &TableRef::new("p", "d", "my table/ü"));
        assert_ne!(a, b);
        assert_eq!(a.parts().count(), 5, "{a}");
        assert_eq!(
            b.parts().count(),
            5,
            "a slash in a name does not add a level: {b}"
        );
    }
}
