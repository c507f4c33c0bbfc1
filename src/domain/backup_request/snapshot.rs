//! The snapshot time of a backup: from `asOf` (RFC 3339) or the Java `backupTime` (a local
//! date-time in a time zone), and the window BigQuery time travel can read.

use chrono::{DateTime, Duration, FixedOffset, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

use super::BackupTime;
use crate::error::FieldError;

/// BigQuery time travel reaches back at most 7 days (less if the dataset is configured so;
/// BigQuery itself reports that case when the snapshot is read).
const MAX_SNAPSHOT_AGE: Duration = Duration::days(7);
/// Clock skew tolerated between the caller and us before a snapshot counts as "in the future".
const FUTURE_TOLERANCE: Duration = Duration::minutes(1);

/// The requested snapshot instant and the field it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub at: DateTime<Utc>,
    /// `asOf` or `backupTime.localDateTime`.
    pub field: &'static str,
}

pub(super) fn snapshot_window_error(snapshot: &Snapshot, now: DateTime<Utc>) -> Option<FieldError> {
    let at = snapshot.at.to_rfc3339();
    if snapshot.at > now + FUTURE_TOLERANCE {
        Some(FieldError::new(
            snapshot.field,
            format!("the snapshot time {at} is in the future"),
        ))
    } else if snapshot.at < now - MAX_SNAPSHOT_AGE {
        Some(FieldError::new(
            snapshot.field,
            format!(
                "the snapshot time {at} is more than 7 days ago; BigQuery time travel keeps at most 7 days"
            ),
        ))
    } else {
        None
    }
}

/// The snapshot from `asOf` or `backupTime`, with its field.
pub(super) fn check_snapshot(
    as_of: Option<String>,
    backup_time: Option<BackupTime>,
    errors: &mut Vec<FieldError>,
) -> Option<Snapshot> {
    if let (Some(_), Some(_)) = (&as_of, &backup_time) {
        errors.push(FieldError::new(
            "asOf",
            "give either asOf or backupTime, not both",
        ));
        return None;
    }
    if let Some(text) = as_of {
        return match DateTime::parse_from_rfc3339(text.trim()) {
            Ok(t) => Some(Snapshot {
                at: t.with_timezone(&Utc),
                field: "asOf",
            }),
            Err(_) => {
                errors.push(FieldError::new(
                    "asOf",
                    format!("`{text}` is not an RFC 3339 time like 2026-11-21T07:59:00Z"),
                ));
                None
            }
        };
    }
    let backup_time = backup_time?;
    let zone = match backup_time.timezone.as_deref().map(str::trim) {
        None | Some("") => Some(Zone::Named(Tz::UTC)),
        Some(name) => {
            let zone = parse_zone(name);
            if zone.is_none() {
                errors.push(FieldError::new(
                    "backupTime.timezone",
                    format!("`{name}` is not a time zone: use an IANA name like America/Los_Angeles, or an offset like +01:00"),
                ));
            }
            zone
        }
    };
    // Java semantics: without a local date-time the backup is taken now.
    let text = backup_time.local_date_time?;
    const FIELD: &str = "backupTime.localDateTime";
    let Some(local) = parse_local_date_time(text.trim()) else {
        errors.push(FieldError::new(
            FIELD,
            format!("`{text}` is not a local date-time like 2026-11-20T23:59:00 (no offset; the zone goes in backupTime.timezone)"),
        ));
        return None;
    };
    let at = match zone? {
        Zone::Named(tz) => resolve_local(&tz, &local),
        Zone::Fixed(offset) => resolve_local(&offset, &local),
    };
    match at {
        Some(at) => Some(Snapshot { at, field: FIELD }),
        None => {
            errors.push(FieldError::new(
                FIELD,
                format!(
                    "{text} does not exist in that time zone (it falls in a daylight-saving gap)"
                ),
            ));
            None
        }
    }
}

/// A local time that happens twice (the hour repeated when clocks go back) resolves to the
/// earlier instant — the first time the wall clock showed it, which is also what
/// `java.time.ZonedDateTime.of` picks, so Java requests keep meaning the same instant. A local
/// time that never happens (skipped when clocks go forward) is `None`: guessing would back up a
/// different instant from the one asked for.
fn resolve_local<Z: TimeZone>(zone: &Z, local: &NaiveDateTime) -> Option<DateTime<Utc>> {
    match zone.from_local_datetime(local) {
        LocalResult::Single(t) => Some(t.with_timezone(&Utc)),
        LocalResult::Ambiguous(earliest, _) => Some(earliest.with_timezone(&Utc)),
        LocalResult::None => None,
    }
}

enum Zone {
    Named(Tz),
    Fixed(FixedOffset),
}

/// IANA names (`America/Los_Angeles`, `UTC`), `Z`, and offsets as `java.time.ZoneId` accepts
/// them: `+01:00`, `+0100`, `+01`, optionally after `UTC`/`GMT`/`UT`.
fn parse_zone(name: &str) -> Option<Zone> {
    if let Ok(tz) = name.parse::<Tz>() {
        return Some(Zone::Named(tz));
    }
    if name == "Z" {
        return FixedOffset::east_opt(0).map(Zone::Fixed);
    }
    let offset = ["UTC", "GMT", "UT"]
        .iter()
        .find_map(|p| name.strip_prefix(p))
        .unwrap_or(name);
    let (sign, digits) = match offset.as_bytes().first() {
        Some(b'+') => (1, &offset[1..]),
        Some(b'-') => (-1, &offset[1..]),
        _ => return None,
    };
    let digits = digits.replace(':', "");
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let (hours, minutes) = match digits.len() {
        1 | 2 => (digits.parse::<i32>().ok()?, 0),
        4 => (
            digits[..2].parse::<i32>().ok()?,
            digits[2..].parse::<i32>().ok()?,
        ),
        _ => return None,
    };
    if hours > 18 || minutes > 59 {
        return None;
    }
    FixedOffset::east_opt(sign * (hours * 3600 + minutes * 60)).map(Zone::Fixed)
}

/// `2026-11-20T23:59:00`, with optional fractional seconds, or without seconds
/// (`2026-11-20T23:59`) as Java's `LocalDateTime.toString()` prints a time with zero seconds.
fn parse_local_date_time(text: &str) -> Option<NaiveDateTime> {
    NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.f")
        .or_else(|_| NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M"))
        .ok()
}
