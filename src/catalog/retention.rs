//! Which backups a keep policy keeps: pure arithmetic over snapshot times, so it is tested on
//! fixed dates. Newest first: `keepLast` keeps the N newest backups; `keepDaily` / `keepWeekly` /
//! `keepMonthly` keep the newest backup of each of the N most recent days / ISO weeks / months
//! that have one (UTC). A backup whose `expiresAt` has passed goes whatever the policy;
//! `expiredOnly` deletes only those.
//!
//! A policy must keep something ([`KeepPolicy::problems`]): `keepLast: 0`, or no rule at all,
//! would let a prune delete every backup of a repository, so they are refused rather than obeyed.

use std::collections::HashMap;

use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};

use crate::domain::BackupId;
use crate::error::FieldError;

/// How many backups to keep, by rule. `None` = the rule is not used.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KeepPolicy {
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
    /// No rule: delete expired backups only (and keep every other). Says so explicitly, so that
    /// a policy left empty by mistake is refused instead.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired_only: bool,
}

/// A counting rule of a keep policy, for code that sets rules by name: the service's
/// `BQB_PRUNE_KEEP_*` settings, whose problems are then named by variable instead of field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeepRule {
    Last,
    Daily,
    Weekly,
    Monthly,
}

impl KeepRule {
    pub const ALL: [KeepRule; 4] = [Self::Last, Self::Daily, Self::Weekly, Self::Monthly];

    /// The rule's field in a request body and in [`KeepPolicy::problems`].
    pub fn field(self) -> &'static str {
        match self {
            Self::Last => "keepLast",
            Self::Daily => "keepDaily",
            Self::Weekly => "keepWeekly",
            Self::Monthly => "keepMonthly",
        }
    }
}

impl KeepPolicy {
    /// Whether no counting rule is given (only expiry decides).
    pub fn is_empty(&self) -> bool {
        self.rules().iter().all(|(_, count)| count.is_none())
    }

    /// Sets a rule's count (`None` = the rule is not used).
    pub fn set(&mut self, rule: KeepRule, count: Option<u32>) {
        *match rule {
            KeepRule::Last => &mut self.keep_last,
            KeepRule::Daily => &mut self.keep_daily,
            KeepRule::Weekly => &mut self.keep_weekly,
            KeepRule::Monthly => &mut self.keep_monthly,
        } = count;
    }

    /// A rule's count (`None` = the rule is not used).
    pub fn count(&self, rule: KeepRule) -> Option<u32> {
        match rule {
            KeepRule::Last => self.keep_last,
            KeepRule::Daily => self.keep_daily,
            KeepRule::Weekly => self.keep_weekly,
            KeepRule::Monthly => self.keep_monthly,
        }
    }

    fn rules(&self) -> [(&'static str, Option<u32>); 4] {
        KeepRule::ALL.map(|rule| (rule.field(), self.count(rule)))
    }

    /// What is wrong with this policy, each problem naming its field (`keepLast`, …; `body` for
    /// the policy as a whole): the one check of a keep policy, for the API, the CLI and
    /// [`crate::catalog::prune::prune`] itself. Empty when it may be applied.
    pub fn problems(&self) -> Vec<FieldError> {
        let mut problems: Vec<FieldError> = self
            .rules()
            .iter()
            .filter(|(_, count)| *count == Some(0))
            .map(|(field, _)| {
                FieldError::new(
                    *field,
                    "must be at least 1: a rule that keeps 0 backups keeps nothing (leave it out)",
                )
            })
            .collect();
        match (self.is_empty(), self.expired_only) {
            (true, false) => problems.push(FieldError::new(
                "body",
                "a keep policy must keep something: give keepLast, keepDaily, keepWeekly or keepMonthly (at least 1), or expiredOnly: true to delete only expired backups",
            )),
            (false, true) => problems.push(FieldError::new(
                "expiredOnly",
                "cannot be combined with keep rules: expired backups go under any policy",
            )),
            _ => {}
        }
        problems
    }
}

/// One backup as retention sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: BackupId,
    pub snapshot: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
}

/// A decision about one backup, with the rules that made it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Decision {
    pub backup_id: String,
    pub keep: bool,
    pub reasons: Vec<String>,
}

/// The calendar bucket (day, ISO week or month) a snapshot time falls in.
type BucketOf = fn(&DateTime<Utc>) -> (i32, u32);

/// Decides for every candidate; newest first.
pub fn decide(candidates: &[Candidate], policy: &KeepPolicy, now: DateTime<Utc>) -> Vec<Decision> {
    let mut sorted: Vec<&Candidate> = candidates.iter().collect();
    sorted.sort_by_key(|c| std::cmp::Reverse(c.id));
    let mut reasons: Vec<Vec<String>> = vec![Vec::new(); sorted.len()];
    if let Some(n) = policy.keep_last {
        for r in reasons.iter_mut().take(n as usize) {
            r.push("keepLast".into());
        }
    }
    let buckets: [(&str, Option<u32>, BucketOf); 3] = [
        ("keepDaily", policy.keep_daily, |t| (t.year(), t.ordinal())),
        ("keepWeekly", policy.keep_weekly, |t| {
            (t.iso_week().year(), t.iso_week().week())
        }),
        ("keepMonthly", policy.keep_monthly, |t| {
            (t.year(), t.month())
        }),
    ];
    for (rule, count, bucket_of) in buckets {
        let Some(count) = count else { continue };
        let mut seen = Vec::new();
        for (i, c) in sorted.iter().enumerate() {
            let bucket = bucket_of(&c.snapshot);
            if seen.len() as u32 >= count {
                break;
            }
            if !seen.contains(&bucket) {
                seen.push(bucket);
                reasons[i].push(rule.into());
            }
        }
    }
    sorted
        .iter()
        .zip(reasons)
        .map(|(c, kept_by)| {
            let expired = c.expires_at.is_some_and(|e| e <= now);
            let (keep, why) = if expired {
                (
                    false,
                    vec![format!(
                        "expired at {}",
                        c.expires_at.map(|e| e.to_rfc3339()).unwrap_or_default()
                    )],
                )
            } else if policy.is_empty() {
                (true, vec!["not expired (expiredOnly)".into()])
            } else if kept_by.is_empty() {
                (false, vec!["kept by no rule".into()])
            } else {
                (true, kept_by)
            };
            Decision {
                backup_id: c.id.to_string(),
                keep,
                reasons: why,
            }
        })
        .collect()
}

/// Keeps every backup another backup that stays depends on (an incremental backup lists its
/// files), whatever the policy decided: a chain is never broken. `depends_on` maps a backup to
/// those it depends on; a backup kept for this says by which.
pub fn keep_bases(decisions: &mut [Decision], depends_on: &HashMap<BackupId, Vec<BackupId>>) {
    loop {
        let staying: Vec<BackupId> = depends_on
            .keys()
            .filter(|id| {
                !decisions
                    .iter()
                    .any(|d| d.backup_id == id.to_string() && !d.keep)
            })
            .copied()
            .collect();
        let mut changed = false;
        for decision in decisions.iter_mut().filter(|d| !d.keep) {
            let mut needed_by: Vec<String> = staying
                .iter()
                .filter(|s| {
                    depends_on[*s]
                        .iter()
                        .any(|base| base.to_string() == decision.backup_id)
                })
                .map(ToString::to_string)
                .collect();
            if needed_by.is_empty() {
                continue;
            }
            needed_by.sort();
            decision.keep = true;
            decision.reasons = vec![format!(
                "incremental backup {} depends on it (lists its files): kept as long as that is, although otherwise: {}",
                needed_by.join(", "),
                decision.reasons.join(", ")
            )];
            changed = true;
        }
        if !changed {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        format!("{text}Z").parse().unwrap()
    }

    fn candidates(times: &[&str]) -> Vec<Candidate> {
        times
            .iter()
            .map(|t| Candidate {
                id: BackupId::from_snapshot(at(t)),
                snapshot: at(t),
                expires_at: None,
            })
            .collect()
    }

    fn kept(decisions: &[Decision]) -> Vec<String> {
        decisions
            .iter()
            .filter(|d| d.keep)
            .map(|d| d.backup_id.clone())
            .collect()
    }

    /// Two backups a day from 2026-10-01 to 2026-11-20 (Thursday 2026-11-19 ... Friday 11-20).
    fn history() -> Vec<Candidate> {
        let mut out = Vec::new();
        let mut day = at("2026-10-01T00:00:00");
        while day <= at("2026-11-20T00:00:00") {
            for hour in [2, 14] {
                let t = day + chrono::Duration::hours(hour);
                out.push(Candidate {
                    id: BackupId::from_snapshot(t),
                    snapshot: t,
                    expires_at: None,
                });
            }
            day += chrono::Duration::days(1);
        }
        out
    }

    #[test]
    fn keep_last_keeps_the_newest_n() {
        let d = decide(
            &history(),
            &KeepPolicy {
                keep_last: Some(3),
                ..Default::default()
            },
            at("2026-11-21T00:00:00"),
        );
        assert_eq!(
            kept(&d),
            ["20261120_140000", "20261120_020000", "20261119_140000"]
        );
        assert_eq!(d.len(), 102);
    }

    #[test]
    fn keep_daily_keeps_the_newest_of_each_of_the_last_days() {
        let d = decide(
            &history(),
            &KeepPolicy {
                keep_daily: Some(3),
                ..Default::default()
            },
            at("2026-11-21T00:00:00"),
        );
        assert_eq!(
            kept(&d),
            ["20261120_140000", "20261119_140000", "20261118_140000"]
        );
    }

    #[test]
    fn keep_weekly_and_monthly_use_iso_weeks_and_calendar_months() {
        let policy = KeepPolicy {
            keep_weekly: Some(2),
            keep_monthly: Some(2),
            ..Default::default()
        };
        let d = decide(&history(), &policy, at("2026-11-21T00:00:00"));
        // ISO week 47 (Mon 11-16 ..) newest is 11-20; week 46 (11-09 .. 11-15) newest is 11-15.
        // November's newest is 11-20 (already kept); October's is 10-31.
        assert_eq!(
            kept(&d),
            ["20261120_140000", "20261115_140000", "20261031_140000"]
        );
        let newest = &d[0];
        assert_eq!(newest.reasons, ["keepWeekly", "keepMonthly"]);
    }

    #[test]
    fn rules_combine_and_expired_backups_always_go() {
        let mut all = candidates(&[
            "2026-11-20T10:00:00",
            "2026-11-19T10:00:00",
            "2026-11-18T10:00:00",
            "2026-11-01T10:00:00",
        ]);
        all[0].expires_at = Some(at("2026-11-20T12:00:00"));
        let policy = KeepPolicy {
            keep_last: Some(2),
            keep_monthly: Some(1),
            ..Default::default()
        };
        let d = decide(&all, &policy, at("2026-11-21T00:00:00"));
        // The newest is expired: it goes although keepLast would keep it.
        assert_eq!(kept(&d), ["20261119_100000"]);
        assert!(d[0].reasons[0].starts_with("expired"));
        assert_eq!(d[3].reasons, ["kept by no rule"]);
    }

    #[test]
    fn expired_only_deletes_only_expired_backups() {
        let mut all = candidates(&["2026-11-20T10:00:00", "2026-11-19T10:00:00"]);
        all[1].expires_at = Some(at("2026-11-19T11:00:00"));
        let policy = KeepPolicy {
            expired_only: true,
            ..Default::default()
        };
        assert!(policy.problems().is_empty());
        let d = decide(&all, &policy, at("2026-11-21T00:00:00"));
        assert_eq!(kept(&d), ["20261120_100000"]);
        assert_eq!(d[0].reasons, ["not expired (expiredOnly)"]);
    }

    #[test]
    fn a_policy_that_keeps_nothing_is_refused_naming_the_field() {
        let fields = |policy: KeepPolicy| -> Vec<String> {
            policy.problems().into_iter().map(|p| p.field).collect()
        };
        assert_eq!(
            fields(KeepPolicy {
                keep_last: Some(0),
                ..Default::default()
            }),
            ["keepLast"]
        );
        assert_eq!(
            fields(KeepPolicy {
                keep_daily: Some(0),
                keep_monthly: Some(0),
                ..Default::default()
            }),
            ["keepDaily", "keepMonthly"]
        );
        assert_eq!(fields(KeepPolicy::default()), ["body"]);
        assert_eq!(
            fields(KeepPolicy {
                keep_last: Some(3),
                keep_weekly: Some(0),
                ..Default::default()
            }),
            ["keepWeekly"]
        );
        assert_eq!(
            fields(KeepPolicy {
                keep_last: Some(3),
                expired_only: true,
                ..Default::default()
            }),
            ["expiredOnly"]
        );
        assert!(
            KeepPolicy {
                keep_last: Some(1),
                ..Default::default()
            }
            .problems()
            .is_empty()
        );
    }

    /// A rule's field is the one the policy is read and written with, so a problem named by
    /// `rule.field()` names what the caller sent.
    #[test]
    fn each_rule_is_set_and_serialized_under_its_field() {
        for rule in KeepRule::ALL {
            let mut policy = KeepPolicy::default();
            policy.set(rule, Some(2));
            assert_eq!(policy.count(rule), Some(2));
            assert_eq!(serde_json::to_value(policy).unwrap()[rule.field()], 2);
            let read: KeepPolicy =
                serde_json::from_value(serde_json::json!({ rule.field(): 0 })).unwrap();
            assert_eq!(read.count(rule), Some(0));
            assert_eq!(read.problems()[0].field, rule.field());
        }
    }

    #[test]
    fn a_base_stays_while_a_backup_that_stays_depends_on_it() {
        let id = |s: &str| BackupId::parse(s).unwrap();
        let decision = |s: &str, keep: bool| Decision {
            backup_id: s.into(),
            keep,
            reasons: vec!["older than keepLast".into()],
        };
        // full A <- incr B <- incr C; C stays, so B and A stay. D (full, alone) goes. E <- F
        // both go: nothing that stays needs E.
        let mut decisions = vec![
            decision("20260106_000000", false),
            decision("20260105_000000", false),
            decision("20260104_000000", false),
            decision("20260103_000000", true),
            decision("20260102_000000", false),
            decision("20260101_000000", false),
        ];
        let depends: HashMap<BackupId, Vec<BackupId>> = [
            (
                "20260103_000000",
                vec!["20260102_000000", "20260101_000000"],
            ),
            ("20260102_000000", vec!["20260101_000000"]),
            ("20260106_000000", vec!["20260105_000000"]),
        ]
        .into_iter()
        .map(|(k, v)| (id(k), v.into_iter().map(id).collect()))
        .collect();
        keep_bases(&mut decisions, &depends);
        let kept: Vec<(&str, bool)> = decisions
            .iter()
            .map(|d| (d.backup_id.as_str(), d.keep))
            .collect();
        assert_eq!(
            kept,
            [
                ("20260106_000000", false),
                ("20260105_000000", false),
                ("20260104_000000", false),
                ("20260103_000000", true),
                ("20260102_000000", true),
                ("20260101_000000", true),
            ]
        );
        assert!(
            decisions[4].reasons[0].contains("incremental backup 20260103_000000 depends on it")
        );
        assert!(decisions[5].reasons[0].contains("20260103_000000 depends on it"));
    }
}
