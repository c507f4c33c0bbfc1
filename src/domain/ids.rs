//! Typed identifiers: backup ids, job ids, and BigQuery dataset/table references, plus the
//! BigQuery naming rules for datasets and tables. Pure: no I/O.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use chrono::{DateTime, NaiveDate, SubsecRound, Timelike, Utc};
use regex::Regex;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A malformed id; the message says what the expected form is, for the user to read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct InvalidId(String);

/// The id of one backup inside a backup repository: the UTC snapshot time as `yyyyMMdd_HHmmss`
/// (the Java service's `backupTimestamp` format, so its backups and ours share one namespace),
/// e.g. `20261121_075959`.
///
/// Two backups of the same second under one root would collide; the second one gets a sequence
/// suffix `-N` with N ≥ 2 (`20261121_075959-2`, then `-3`, …), see [`BackupId::next_sequence`].
/// Ids order chronologically, and within one second by sequence (no suffix first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct BackupId {
    // Field order matters: the derived `Ord` compares time first, then the sequence.
    snapshot: DateTime<Utc>,
    sequence: Option<u32>,
}

const BACKUP_ID_FORMAT: &str = "%Y%m%d_%H%M%S";

impl BackupId {
    /// The id for a snapshot at `snapshot`. Sub-second precision is dropped (truncated, never
    /// rounded up, so the id never names a time after the snapshot).
    pub fn from_snapshot(snapshot: DateTime<Utc>) -> Self {
        Self {
            snapshot: snapshot.trunc_subsecs(0),
            sequence: None,
        }
    }

    /// Parses `yyyyMMdd_HHmmss` or `yyyyMMdd_HHmmss-N` (N ≥ 2, no leading zeros), strictly: the
    /// text must be exactly what [`Display`](fmt::Display) would print, so ids round-trip.
    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        let invalid = || {
            InvalidId(format!(
                "`{text}` is not a backup id: expected yyyyMMdd_HHmmss (UTC), e.g. 20261121_075959, \
                 optionally followed by -N for a second backup of the same second"
            ))
        };
        let (stamp, sequence) = match text.split_once('-') {
            Some((stamp, seq)) => {
                let well_formed = !seq.is_empty()
                    && seq.bytes().all(|b| b.is_ascii_digit())
                    && !seq.starts_with('0');
                let n: u32 = if well_formed {
                    seq.parse().map_err(|_| invalid())?
                } else {
                    0
                };
                if n < 2 {
                    return Err(invalid());
                }
                (stamp, Some(n))
            }
            None => (text, None),
        };
        let bytes = stamp.as_bytes();
        let shape_ok = bytes.len() == 15
            && bytes[8] == b'_'
            && bytes
                .iter()
                .enumerate()
                .all(|(i, b)| i == 8 || b.is_ascii_digit());
        if !shape_ok {
            return Err(invalid());
        }
        // All 14 digit positions were checked above, so these parses cannot fail; any way, a
        // failure still maps to the user-facing error rather than a panic.
        let num =
            |range: std::ops::Range<usize>| stamp[range].parse::<u32>().map_err(|_| invalid());
        let year = i32::try_from(num(0..4)?).map_err(|_| invalid())?;
        let date = NaiveDate::from_ymd_opt(year, num(4..6)?, num(6..8)?).ok_or_else(invalid)?;
        let time = date
            .and_hms_opt(num(9..11)?, num(11..13)?, num(13..15)?)
            .ok_or_else(invalid)?;
        Ok(Self {
            snapshot: time.and_utc(),
            sequence,
        })
    }

    /// The snapshot time this backup captured (whole seconds, UTC).
    pub fn snapshot_time(&self) -> DateTime<Utc> {
        self.snapshot
    }

    /// The collision sequence number: `None` for the first backup of a second, then 2, 3, ….
    pub fn sequence(&self) -> Option<u32> {
        self.sequence
    }

    /// The id to try when this one is already taken under the same root: same second, next
    /// sequence number (`…-2` after no suffix, `…-3` after `-2`).
    pub fn next_sequence(&self) -> Self {
        Self {
            snapshot: self.snapshot,
            sequence: Some(self.sequence.map_or(2, |n| n.saturating_add(1))),
        }
    }
}

impl fmt::Display for BackupId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        debug_assert_eq!(self.snapshot.nanosecond(), 0);
        write!(f, "{}", self.snapshot.format(BACKUP_ID_FORMAT))?;
        if let Some(n) = self.sequence {
            write!(f, "-{n}")?;
        }
        Ok(())
    }
}

impl FromStr for BackupId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for BackupId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for BackupId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The id of one backup or restore job: `job-` followed by 16 lowercase hex digits (64 random
/// bits), e.g. `job-3f9a0c1be4d27781`. Safe in URLs and object keys without escaping.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct JobId(String);

const JOB_ID_PREFIX: &str = "job-";

impl JobId {
    /// A fresh random id. 64 random bits: ids only need to be unique among the jobs of one
    /// repository, where a collision is then about 1 in 10^19 per pair.
    pub fn generate() -> Self {
        // XOR of the two halves: the fixed version/variant bits of a v4 UUID sit in different
        // halves, so each result bit is XORed with at least one random bit.
        let (high, low) = uuid::Uuid::new_v4().as_u64_pair();
        Self::from_bits(high ^ low)
    }

    /// The id for given random bits; lets tests (and seeded generators) make predictable ids.
    pub fn from_bits(bits: u64) -> Self {
        Self(format!("{JOB_ID_PREFIX}{bits:016x}"))
    }

    /// Parses an id exactly as [`Display`](fmt::Display) prints it.
    pub fn parse(text: &str) -> Result<Self, InvalidId> {
        let hex = text.strip_prefix(JOB_ID_PREFIX).unwrap_or_default();
        let ok = hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(InvalidId(format!(
                "`{text}` is not a job id: expected job- followed by 16 lowercase hex digits"
            )))
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for JobId {
    type Err = InvalidId;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

impl Serialize for JobId {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for JobId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A BigQuery dataset. Serialized like BigQuery's own `DatasetReference`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct DatasetRef {
    #[serde(rename = "projectId")]
    pub project: String,
    #[serde(rename = "datasetId")]
    pub dataset: String,
}

impl DatasetRef {
    pub fn new(project: impl Into<String>, dataset: impl Into<String>) -> Self {
        Self {
            project: project.into(),
            dataset: dataset.into(),
        }
    }

    /// A table of this dataset.
    pub fn table(&self, table: impl Into<String>) -> TableRef {
        TableRef::new(&self.project, &self.dataset, table)
    }

    /// The REST resource name, `projects/p/datasets/d`.
    pub fn resource_name(&self) -> String {
        format!("projects/{}/datasets/{}", self.project, self.dataset)
    }
}

impl fmt::Display for DatasetRef {
    /// `project.dataset`, as in BigQuery SQL.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.project, self.dataset)
    }
}

/// A BigQuery table (or view). Serialized like BigQuery's own `TableReference`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct TableRef {
    #[serde(rename = "projectId")]
    pub project: String,
    #[serde(rename = "datasetId")]
    pub dataset: String,
    #[serde(rename = "tableId")]
    pub table: String,
}

impl TableRef {
    pub fn new(
        project: impl Into<String>,
        dataset: impl Into<String>,
        table: impl Into<String>,
    ) -> Self {
        Self {
            project: project.into(),
            dataset: dataset.into(),
            table: table.into(),
        }
    }

    pub fn dataset_ref(&self) -> DatasetRef {
        DatasetRef::new(&self.project, &self.dataset)
    }

    /// The REST / Storage API resource name, `projects/p/datasets/d/tables/t`. Table names may
    /// contain spaces and non-ASCII letters: callers putting this in a URL path must escape it.
    pub fn resource_name(&self) -> String {
        format!(
            "projects/{}/datasets/{}/tables/{}",
            self.project, self.dataset, self.table
        )
    }
}

impl fmt::Display for TableRef {
    /// `project.dataset.table`, as in BigQuery SQL (unquoted; for messages and logs).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.project, self.dataset, self.table)
    }
}

/// BigQuery's limit for dataset and table ids, in UTF-8 bytes.
const MAX_ID_BYTES: usize = 1024;

/// Dataset ids: ASCII letters, digits and underscores, 1–1024 bytes (BigQuery's rule).
pub fn is_valid_dataset_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= MAX_ID_BYTES
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Table ids, by BigQuery's rule: 1–1024 UTF-8 bytes of Unicode letters (L), marks (M),
/// numbers (N), connectors (Pc, incl. `_`), dashes (Pd) and spaces (Zs). So `events-2026`,
/// `daily sales` and `café_ventes` are valid, while `/`, `.` and `*` never are — which is what
/// lets us split `dataset.table` on the dot and use table names in object keys and globs.
pub fn is_valid_table_id(id: &str) -> bool {
    static TABLE_ID: LazyLock<Regex> = LazyLock::new(|| {
        Regex::new(r"^[\p{L}\p{M}\p{N}\p{Pc}\p{Pd}\p{Zs}]+$")
            .expect("a constant, tested regex always compiles")
    });
    !id.is_empty() && id.len() <= MAX_ID_BYTES && TABLE_ID.is_match(id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn backup_id_is_the_utc_snapshot_second() {
        let t = Utc.with_ymd_and_hms(2026, 11, 21, 7, 59, 59).unwrap()
            + chrono::Duration::milliseconds(999);
        let id = BackupId::from_snapshot(t);
        assert_eq!(id.to_string(), "20261121_075959");
        assert_eq!(
            id.snapshot_time(),
            Utc.with_ymd_and_hms(2026, 11, 21, 7, 59, 59).unwrap()
        );
    }

    #[test]
    fn backup_ids_round_trip_through_text_and_json() {
        for text in ["20261121_075959", "20261121_075959-2", "19991231_235959-17"] {
            let id = BackupId::parse(text).unwrap();
            assert_eq!(id.to_string(), text);
            let json = serde_json::to_string(&id).unwrap();
            assert_eq!(json, format!("\"{text}\""));
            assert_eq!(serde_json::from_str::<BackupId>(&json).unwrap(), id);
        }
    }

    #[test]
    fn malformed_backup_ids_are_rejected() {
        for bad in [
            "",
            "20261121075959",
            "20261121-075959",
            "2026112_075959",
            "20261321_075959",
            "20260230_075959",
            "20261121_245959",
            "20261121_075959-1",
            "20261121_075959-02",
            "20261121_075959-",
            "20261121_075959-x",
            "+2026121_075959",
            "latest",
        ] {
            assert!(BackupId::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<BackupId>("\"nope\"").is_err());
    }

    #[test]
    fn backup_ids_order_chronologically_then_by_sequence() {
        let a = BackupId::parse("20251231_235959").unwrap();
        let b = BackupId::parse("20260101_000000").unwrap();
        let b2 = b.next_sequence();
        let b3 = b2.next_sequence();
        assert_eq!(b2.to_string(), "20260101_000000-2");
        assert_eq!(b3.to_string(), "20260101_000000-3");
        let mut ids = vec![b3, b, a, b2];
        ids.sort();
        assert_eq!(ids, vec![a, b, b2, b3]);
    }

    #[test]
    fn job_ids_are_url_safe_and_parse_back() {
        let id = JobId::generate();
        assert!(id.as_str().starts_with("job-"));
        assert_eq!(id.as_str().len(), 20);
        assert_eq!(JobId::parse(id.as_str()).unwrap(), id);
        assert_eq!(JobId::from_bits(0xab).to_string(), "job-00000000000000ab");
        assert_ne!(JobId::generate(), JobId::generate());
        for bad in [
            "",
            "job-",
            "job-ABCDEF0123456789",
            "job-0123",
            "run-0123456789abcdef",
        ] {
            assert!(JobId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn table_refs_print_as_sql_names_and_resource_names() {
        let t = TableRef::new("test-project", "shop", "orders");
        assert_eq!(t.to_string(), "test-project.shop.orders");
        assert_eq!(
            t.resource_name(),
            "projects/test-project/datasets/shop/tables/orders"
        );
        assert_eq!(
            t.dataset_ref().resource_name(),
            "projects/test-project/datasets/shop"
        );
        assert_eq!(
            DatasetRef::new("p", "d").table("t"),
            TableRef::new("p", "d", "t")
        );
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            serde_json::json!({"projectId": "test-project", "datasetId": "shop", "tableId": "orders"})
        );
    }

    #[test]
    fn dataset_ids_allow_only_letters_digits_and_underscores() {
        for ok in ["shop", "Shop_2026", "_x", &"a".repeat(1024)] {
            assert!(is_valid_dataset_id(ok), "{ok}");
        }
        for bad in [
            "",
            "my-shop",
            "my shop",
            "shop.x",
            "café",
            &"a".repeat(1025),
        ] {
            assert!(!is_valid_dataset_id(bad), "{bad}");
        }
    }

    #[test]
    fn table_ids_allow_dashes_spaces_and_unicode_letters() {
        for ok in [
            "orders",
            "events-2026",
            "daily sales",
            "café_ventes",
            "表",
            "x\u{301}",
            "a\u{2014}b",
        ] {
            assert!(is_valid_table_id(ok), "{ok}");
        }
        for bad in [
            "",
            "a/b",
            "a.b",
            "events_*",
            "a$b",
            "tab\tbed",
            &"é".repeat(513),
        ] {
            assert!(!is_valid_table_id(bad), "{bad}");
        }
        assert!(is_valid_table_id(&"é".repeat(512)));
    }
}
