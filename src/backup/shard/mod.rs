//! A backup sharded over several processes (Cloud Run Jobs tasks, a Kubernetes Indexed Job,
//! or any N copies of `bq-backup worker`): planned once, run by shard, committed by whichever
//! shard finishes last.
//!
//! 1. **Plan** (`plan`): the service plans the backup as usual, opens one Storage Read API
//!    session per table at the snapshot time, gives each read stream to one shard (largest
//!    first, to the least-loaded shard), and writes it all — with the draft manifest — to
//!    `backups/{id}/plan.json`, create-if-absent.
//! 2. **Shards** (`worker`): each reads only its streams, writes its own files and then its
//!    report (`shards/{I}.json`, `report`). A rerun replaces only that shard's files.
//! 3. **Commit** (`commit`): after writing its report, each shard tries the commit: when every
//!    shard has reported, the manifest is written create-if-absent; one write wins.
//!
//! A backup with a shard missing has no manifest, so it is never listed or restored; DELETE of
//! its id removes what the shards wrote.
//!
//! Depends on `bigquery`, `storage`, `catalog`, `encryption` and the rest of `backup`.

mod commit;
mod follow;
mod launch;
mod plan;
mod report;
pub(crate) mod settings;
mod worker;

pub use commit::{Commit, commit_sharded};
pub use follow::{SHARDS_DEADLINE, plan_and_follow};
pub use launch::{Work, cloud_run_overrides, indexed_job, launch};
pub use plan::{StoredPlan, WorkUnit, assign, prepare, read_plan, write_plan};
pub use report::{ShardReport, ShardTable, read_report, reported_shards};
pub use settings::{Launcher, ShardSettings};
pub use worker::{
    SHARD_COUNT_VARIABLES, SHARD_INDEX_VARIABLES, ShardContext, ShardOrder, ShardOutcome,
    run_shard, shard_position,
};
