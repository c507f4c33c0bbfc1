//! The jobs' settings: where job records live, how many jobs run and wait, how often a running
//! job proves it is alive, how long records are kept; and what every backup job gets by default
//! (an expiry, a prune of its repository afterwards).

use std::time::Duration;

use crate::catalog::retention::{KeepPolicy, KeepRule};
use crate::variables::{Problem, Reader, Source, Variable};

/// Where job records live when `BQB_STATE_URI` is unset: fine for one instance, not for several.
pub(crate) const DEFAULT_STATE_URI: &str = "file:///tmp/bq-backup-state";
pub(crate) const DEFAULT_MAX_RUNNING_JOBS: usize = 2;
pub(crate) const DEFAULT_MAX_QUEUED_JOBS: usize = 16;
pub(crate) const DEFAULT_JOB_HEARTBEAT: Duration = Duration::from_secs(10);
pub(crate) const DEFAULT_JOB_RETENTION_DAYS: u64 = 30;
/// Pub/Sub keeps redelivering an unacknowledged message for up to 7 days: its idempotency record
/// must outlive that.
pub(crate) const MIN_JOB_RETENTION_DAYS: u64 = 7;

pub(crate) static STATE_URI: Variable = Variable {
    name: "BQB_STATE_URI",
    default: DEFAULT_STATE_URI,
    doc: "Where the service keeps job records (`jobs/{jobId}.json`), Pub/Sub idempotency records and schedule leases: any storage URI. Every instance of one service must share it (a `gs://` or `s3://` URI on Cloud Run and GKE) so that any instance answers for any job.",
};
pub(crate) static MAX_RUNNING_JOBS: Variable = Variable {
    name: "BQB_MAX_RUNNING_JOBS",
    default: "2",
    doc: "Jobs (backups and restores) one instance runs at once; later ones wait as PENDING.",
};
pub(crate) static MAX_QUEUED_JOBS: Variable = Variable {
    name: "BQB_MAX_QUEUED_JOBS",
    default: "16",
    doc: "PENDING jobs one instance accepts beyond the running ones; past that a new job gets 429 with `Retry-After`.",
};
pub(crate) static HEARTBEAT_SECS: Variable = Variable {
    name: "BQB_JOB_HEARTBEAT_SECS",
    default: "10",
    doc: "How often a running job saves its progress and looks for a cancel request. A RUNNING job not saved for 6 heartbeats belongs to an instance that died and is reported FAILED.",
};
pub(crate) static RETENTION_DAYS: Variable = Variable {
    name: "BQB_JOB_RETENTION_DAYS",
    default: "30",
    doc: "Job records and Pub/Sub `messageId` records not written for this many days are deleted from the state store (at most hourly, after a job ends). At least 7: Pub/Sub redelivers for up to 7 days.",
};
pub(crate) static DEFAULT_TTL_DAYS: Variable = Variable {
    name: "BQB_DEFAULT_TTL_DAYS",
    default: "(none)",
    doc: "`expiresAt` of a backup whose request has no `ttlDays`; unset = backups do not expire.",
};
pub(crate) static PRUNE_KEEP_LAST: Variable = Variable {
    name: "BQB_PRUNE_KEEP_LAST",
    default: "(none)",
    doc: "When any `BQB_PRUNE_KEEP_*` is set, every successful backup is followed by a prune of its repository with this keep policy (and expired backups go too): keep the N newest backups.",
};
pub(crate) static PRUNE_KEEP_DAILY: Variable = Variable {
    name: "BQB_PRUNE_KEEP_DAILY",
    default: "(none)",
    doc: "Keep policy after each backup: the newest backup of each of the last N days that have one.",
};
pub(crate) static PRUNE_KEEP_WEEKLY: Variable = Variable {
    name: "BQB_PRUNE_KEEP_WEEKLY",
    default: "(none)",
    doc: "Keep policy after each backup: the newest backup of each of the last N ISO weeks that have one.",
};
pub(crate) static PRUNE_KEEP_MONTHLY: Variable = Variable {
    name: "BQB_PRUNE_KEEP_MONTHLY",
    default: "(none)",
    doc: "Keep policy after each backup: the newest backup of each of the last N months that have one.",
};

/// The rule of the keep policy each `BQB_PRUNE_KEEP_*` variable sets.
static PRUNE_KEEP: [(&Variable, KeepRule); 4] = [
    (&PRUNE_KEEP_LAST, KeepRule::Last),
    (&PRUNE_KEEP_DAILY, KeepRule::Daily),
    (&PRUNE_KEEP_WEEKLY, KeepRule::Weekly),
    (&PRUNE_KEEP_MONTHLY, KeepRule::Monthly),
];

/// How the service runs jobs and keeps their records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    pub state_uri: String,
    pub max_running: usize,
    pub max_queued: usize,
    pub heartbeat: Duration,
    pub default_ttl_days: Option<u32>,
    /// Job and idempotency records older than this are swept from the state store.
    pub retention: Duration,
    /// The keep policy applied after each successful backup; `None` when no
    /// `BQB_PRUNE_KEEP_*` is set.
    pub prune_after_backup: Option<KeepPolicy>,
}

impl JobSettings {
    pub(crate) fn from_source(source: &Source) -> Result<Self, Vec<Problem>> {
        let mut read = Reader::new(source);
        let state_uri = read
            .text(&STATE_URI)
            .unwrap_or(DEFAULT_STATE_URI)
            .trim()
            .to_string();
        if let Err(e) = crate::domain::StorageUri::parse(&state_uri) {
            read.problem(&STATE_URI, e);
        }
        let prune_after_backup = prune_after_backup(&mut read);
        let max_running = read.positive(&MAX_RUNNING_JOBS, DEFAULT_MAX_RUNNING_JOBS);
        let max_queued = read.parsed(&MAX_QUEUED_JOBS, DEFAULT_MAX_QUEUED_JOBS);
        let heartbeat = read
            .optional_positive(&HEARTBEAT_SECS)
            .map_or(DEFAULT_JOB_HEARTBEAT, |secs| {
                Duration::from_secs(u64::from(secs))
            });
        let default_ttl_days = read.optional_positive(&DEFAULT_TTL_DAYS);
        let retention_days: u64 = read.parsed(&RETENTION_DAYS, DEFAULT_JOB_RETENTION_DAYS);
        if retention_days < MIN_JOB_RETENTION_DAYS {
            read.problem(
                &RETENTION_DAYS,
                format!(
                    "must be at least {MIN_JOB_RETENTION_DAYS} (Pub/Sub redelivers for up to 7 days)"
                ),
            );
        }
        let settings = Self {
            state_uri,
            max_running,
            max_queued,
            heartbeat,
            default_ttl_days,
            retention: Duration::from_secs(retention_days.max(MIN_JOB_RETENTION_DAYS) * 86_400),
            prune_after_backup,
        };
        read.finish(settings)
    }
}

/// The `BQB_PRUNE_KEEP_*` variables as one keep policy, checked by the policy's own check
/// ([`KeepPolicy::problems`]) with each problem named by its variable. None set = no prune.
fn prune_after_backup(read: &mut Reader<'_>) -> Option<KeepPolicy> {
    let mut policy = KeepPolicy::default();
    for (variable, rule) in PRUNE_KEEP {
        policy.set(rule, read.optional(variable));
    }
    if policy.is_empty() {
        return None;
    }
    for problem in policy.problems() {
        match PRUNE_KEEP
            .iter()
            .find(|(_, rule)| rule.field() == problem.field)
        {
            Some((variable, _)) => read.problem(variable, problem.message),
            // A policy of counting rules only (settings never set `expiredOnly`), not empty, can
            // only be wrong in one rule; should the check grow, its problem is still reported.
            None => read.problem_about(
                "BQB_PRUNE_KEEP_*",
                format!("{}: {}", problem.field, problem.message),
            ),
        }
    }
    Some(policy)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::variables::read_pairs;

    fn read(pairs: &[(&str, &str)]) -> Result<JobSettings, String> {
        read_pairs(pairs, JobSettings::from_source)
    }

    #[test]
    fn a_keep_policy_setting_turns_on_prune_after_backup() {
        assert_eq!(
            read_pairs(&[], JobSettings::from_source)
                .unwrap()
                .prune_after_backup,
            None
        );
        let s = read(&[
            ("BQB_PRUNE_KEEP_LAST", "3"),
            ("BQB_PRUNE_KEEP_MONTHLY", "12"),
        ])
        .unwrap();
        assert_eq!(
            s.prune_after_backup,
            Some(KeepPolicy {
                keep_last: Some(3),
                keep_monthly: Some(12),
                ..KeepPolicy::default()
            })
        );
        let err = read(&[
            ("BQB_PRUNE_KEEP_DAILY", "0"),
            ("BQB_PRUNE_KEEP_WEEKLY", "many"),
            ("BQB_STATE_URI", "ftp://x"),
            ("BQB_JOB_RETENTION_DAYS", "3"),
        ])
        .unwrap_err();
        let text = err;
        assert!(
            text.contains("BQB_JOB_RETENTION_DAYS: must be at least 7"),
            "{text}"
        );
        assert!(
            text.contains("BQB_PRUNE_KEEP_DAILY: must be at least 1"),
            "{text}"
        );
        assert!(
            text.contains("BQB_PRUNE_KEEP_WEEKLY: `many` is not valid"),
            "{text}"
        );
        assert!(text.contains("BQB_STATE_URI"), "{text}");
    }

    /// The policy's own check decides, and its problems are named by variable: a problem named
    /// by the policy's field (`keepDaily`) would tell an operator nothing.
    #[test]
    fn every_keep_rule_is_set_by_its_variable_and_its_problems_name_it() {
        for (variable, rule) in PRUNE_KEEP {
            let s = read(&[(variable.name, "5")]).unwrap();
            let policy = s.prune_after_backup.expect("a rule is set");
            assert_eq!(policy.count(rule), Some(5), "{}", variable.name);
            assert!(policy.problems().is_empty());
            let err = read(&[(variable.name, "0")]).unwrap_err();
            assert_eq!(
                err,
                (format!(
                    "{}: must be at least 1: a rule that keeps 0 backups keeps nothing (leave it out)",
                    variable.name
                ))
            );
        }
    }
}
