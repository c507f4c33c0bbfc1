//! When a schedule runs: a cron expression read in an IANA time zone.
//!
//! The dialect is Vixie cron's five fields (`minute hour day-of-month month day-of-week`), with an
//! optional leading seconds field, parsed by `croner`. Times are matched on the wall clock of the
//! schedule's time zone, so `30 2 * * *` in `Europe/Berlin` is 02:30 Berlin time in winter and
//! summer alike. Around daylight saving changes it follows Vixie cron:
//!
//! - a fixed time that does not exist (clocks go forward over it) runs at the first instant after
//!   the gap (`30 2 * * *` runs at 03:00 local on that day);
//! - a fixed time that happens twice (clocks go back over it) runs once, at its first occurrence;
//! - interval patterns (`*/15 * * * *`, `0 * * * *`) keep their pace in real time and run in both
//!   passes of a repeated hour.
//!
//! Pure: no I/O, no clock of its own (every function takes "now").

use std::fmt;
use std::str::FromStr;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use croner::Cron;
use croner::parser::{CronParser, Seconds, Year};

/// After this many missed ticks in a row (a suspended host, a clock jump), stop stepping through
/// them one by one and ask the cron for the newest one directly.
const MAX_STEPS: usize = 10_000;

/// A cron expression in a time zone.
#[derive(Clone)]
pub struct Cadence {
    expression: String,
    cron: Cron,
    timezone: Tz,
}

impl fmt::Debug for Cadence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cadence")
            .field("cron", &self.expression)
            .field("timezone", &self.timezone.name())
            .finish()
    }
}

/// What the newest due tick is, and how many older ones it replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Due {
    pub tick: DateTime<Utc>,
    /// Ticks between the last one run and `tick` that are not run (missed ticks are not
    /// replayed: only the newest due tick runs).
    pub skipped: usize,
}

impl Cadence {
    /// Parses `expression` (5 fields, or 6 with leading seconds; `@daily`-style nicknames) and
    /// checks that it matches at least once after `now`.
    pub fn parse(expression: &str, timezone: Tz, now: DateTime<Utc>) -> Result<Self, String> {
        let trimmed = expression.trim();
        let fields = trimmed.split_whitespace().count();
        if !trimmed.starts_with('@') && !(5..=6).contains(&fields) {
            return Err(format!(
                "`{trimmed}` has {fields} fields; expected 5 (minute hour day-of-month month \
                 day-of-week) or 6 (a leading seconds field first)"
            ));
        }
        let cron = CronParser::builder()
            .seconds(Seconds::Optional)
            .year(Year::Disallowed)
            .build()
            .parse(trimmed)
            .map_err(|e| format!("`{trimmed}` is not a valid cron expression: {e}"))?;
        let cadence = Self {
            expression: trimmed.to_string(),
            cron,
            timezone,
        };
        if cadence.next_after(now).is_none() {
            return Err(format!("`{trimmed}` never matches a date"));
        }
        Ok(cadence)
    }

    pub fn expression(&self) -> &str {
        &self.expression
    }

    pub fn timezone(&self) -> Tz {
        self.timezone
    }

    /// The first tick strictly after `t`; `None` when the expression never matches again.
    pub fn next_after(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let local = t.with_timezone(&self.timezone);
        self.cron
            .find_next_occurrence(&local, false)
            .ok()
            .map(|next| next.with_timezone(&Utc))
    }

    /// The next `n` ticks after `t`.
    pub fn upcoming(&self, t: DateTime<Utc>, n: usize) -> Vec<DateTime<Utc>> {
        let mut ticks = Vec::with_capacity(n);
        let mut cursor = t;
        while ticks.len() < n {
            let Some(next) = self.next_after(cursor) else {
                break;
            };
            ticks.push(next);
            cursor = next;
        }
        ticks
    }

    /// The newest tick in `(last, now]`, if any: what a scheduler that ran the tick at `last`
    /// and wakes at `now` should run. Older ticks in that range are counted as skipped.
    pub fn due(&self, last: DateTime<Utc>, now: DateTime<Utc>) -> Option<Due> {
        let mut tick = self.next_after(last).filter(|t| *t <= now)?;
        let mut skipped = 0;
        while let Some(next) = self.next_after(tick).filter(|t| *t <= now) {
            tick = next;
            skipped += 1;
            if skipped >= MAX_STEPS {
                // Far behind: jump to the newest tick (at or before now) in one search.
                let local = now.with_timezone(&self.timezone);
                if let Ok(newest) = self.cron.find_previous_occurrence(&local, true) {
                    tick = tick.max(newest.with_timezone(&Utc));
                }
                break;
            }
        }
        Some(Due { tick, skipped })
    }
}

/// An IANA time zone name (`Europe/Berlin`, `UTC`).
pub fn parse_timezone(name: &str) -> Result<Tz, String> {
    Tz::from_str(name.trim()).map_err(|_| {
        format!(
            "`{name}` is not an IANA time zone name (like `UTC`, `Europe/Berlin`, \
             `America/New_York`)"
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn utc(s: &str) -> DateTime<Utc> {
        s.parse().expect("an RFC 3339 instant")
    }

    fn berlin(expr: &str) -> Cadence {
        Cadence::parse(expr, chrono_tz::Europe::Berlin, utc("2026-01-01T00:00:00Z")).expect("valid")
    }

    #[test]
    fn five_fields_are_minutes_in_the_time_zone() {
        let c = berlin("30 2 * * *");
        // Winter: CET = UTC+1.
        assert_eq!(
            c.upcoming(utc("2026-01-10T12:00:00Z"), 2),
            vec![utc("2026-01-11T01:30:00Z"), utc("2026-01-12T01:30:00Z")]
        );
        // Summer: CEST = UTC+2.
        assert_eq!(
            c.next_after(utc("2026-07-10T12:00:00Z")),
            Some(utc("2026-07-11T00:30:00Z"))
        );
    }

    #[test]
    fn a_leading_sixth_field_is_seconds() {
        let c = Cadence::parse("*/10 * * * * *", Tz::UTC, utc("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(
            c.upcoming(utc("2026-01-01T00:00:01Z"), 3),
            vec![
                utc("2026-01-01T00:00:10Z"),
                utc("2026-01-01T00:00:20Z"),
                utc("2026-01-01T00:00:30Z")
            ]
        );
    }

    #[test]
    fn a_time_skipped_by_spring_forward_runs_right_after_the_gap() {
        // Last Sunday of March 2026 (the 29th): Berlin jumps from 02:00 CET to 03:00 CEST.
        let c = berlin("30 2 * * *");
        assert_eq!(
            c.upcoming(utc("2026-03-28T12:00:00Z"), 3),
            vec![
                utc("2026-03-29T01:00:00Z"), // 03:00 CEST, the first instant after the gap
                utc("2026-03-30T00:30:00Z"), // 02:30 CEST
                utc("2026-03-31T00:30:00Z"),
            ]
        );
    }

    #[test]
    fn a_time_repeated_by_fall_back_runs_once() {
        // Last Sunday of October 2026 (the 25th): Berlin goes from 03:00 CEST back to 02:00 CET.
        let c = berlin("30 2 * * *");
        assert_eq!(
            c.upcoming(utc("2026-10-24T12:00:00Z"), 3),
            vec![
                utc("2026-10-25T00:30:00Z"), // 02:30 CEST, the first pass
                utc("2026-10-26T01:30:00Z"), // 02:30 CET
                utc("2026-10-27T01:30:00Z"),
            ]
        );
        // And a scheduler waking through the whole repeated hour runs it only once.
        let mut last = utc("2026-10-24T23:00:00Z");
        let mut fired = Vec::new();
        let mut now = last;
        while now < utc("2026-10-25T04:00:00Z") {
            now += chrono::Duration::minutes(1);
            if let Some(due) = c.due(last, now) {
                fired.push(due.tick);
                last = due.tick;
            }
        }
        assert_eq!(fired, vec![utc("2026-10-25T00:30:00Z")]);
    }

    #[test]
    fn interval_patterns_keep_real_time_pace_across_dst_changes() {
        let c = berlin("0 * * * *");
        // Fall back: the hour 02:00–03:00 local happens twice, so hourly runs happen at every
        // UTC hour, none doubled, none lost.
        assert_eq!(
            c.upcoming(utc("2026-10-24T23:30:00Z"), 4),
            vec![
                utc("2026-10-25T00:00:00Z"), // 02:00 CEST
                utc("2026-10-25T01:00:00Z"), // 02:00 CET
                utc("2026-10-25T02:00:00Z"), // 03:00 CET
                utc("2026-10-25T03:00:00Z"),
            ]
        );
        // Spring forward: 02:00 local does not exist; the next hourly run is 03:00 CEST.
        assert_eq!(
            c.upcoming(utc("2026-03-28T23:30:00Z"), 3),
            vec![
                utc("2026-03-29T00:00:00Z"), // 01:00 CET
                utc("2026-03-29T01:00:00Z"), // 03:00 CEST
                utc("2026-03-29T02:00:00Z"),
            ]
        );
    }

    #[test]
    fn weekday_fields_follow_posix_numbering() {
        // 0 and 7 are Sunday; names work.
        let sunday = Utc.with_ymd_and_hms(2026, 3, 29, 10, 0, 0).unwrap();
        for expr in ["0 10 * * 0", "0 10 * * 7", "0 10 * * SUN"] {
            let c = Cadence::parse(expr, Tz::UTC, utc("2026-03-23T00:00:00Z")).unwrap();
            assert_eq!(
                c.next_after(utc("2026-03-23T00:00:00Z")),
                Some(sunday),
                "{expr}"
            );
        }
    }

    #[test]
    fn due_runs_only_the_newest_missed_tick() {
        let c = Cadence::parse("*/5 * * * *", Tz::UTC, utc("2026-01-01T00:00:00Z")).unwrap();
        let last = utc("2026-01-01T00:00:00Z");
        assert_eq!(c.due(last, utc("2026-01-01T00:04:59Z")), None);
        assert_eq!(
            c.due(last, utc("2026-01-01T00:05:00Z")),
            Some(Due {
                tick: utc("2026-01-01T00:05:00Z"),
                skipped: 0
            })
        );
        assert_eq!(
            c.due(last, utc("2026-01-01T00:17:00Z")),
            Some(Due {
                tick: utc("2026-01-01T00:15:00Z"),
                skipped: 2
            })
        );
    }

    #[test]
    fn due_after_a_long_stall_jumps_to_the_newest_tick() {
        let c = Cadence::parse("* * * * * *", Tz::UTC, utc("2026-01-01T00:00:00Z")).unwrap();
        let due = c
            .due(utc("2026-01-01T00:00:00Z"), utc("2026-01-02T00:00:00.5Z"))
            .unwrap();
        assert_eq!(due.tick, utc("2026-01-02T00:00:00Z"));
        assert!(due.skipped >= MAX_STEPS);
    }

    #[test]
    fn rare_dates_are_found() {
        let c = Cadence::parse("0 0 29 2 *", Tz::UTC, utc("2026-01-01T00:00:00Z")).unwrap();
        assert_eq!(
            c.next_after(utc("2026-01-01T00:00:00Z")),
            Some(utc("2028-02-29T00:00:00Z"))
        );
    }

    #[test]
    fn bad_expressions_say_what_is_wrong() {
        let now = utc("2026-01-01T00:00:00Z");
        for (expr, needle) in [
            ("* * * *", "has 4 fields"),
            (
                "0 0 1 1 * 2030",
                "`0 0 1 1 * 2030` is not a valid cron expression",
            ),
            ("* * * * * * *", "has 7 fields"),
            ("61 * * * *", "not a valid cron expression"),
            ("0 0 31 2 *", "never matches"),
            ("", "has 0 fields"),
        ] {
            let err = Cadence::parse(expr, Tz::UTC, now).unwrap_err();
            assert!(err.contains(needle), "{expr}: {err}");
        }
        assert!(Cadence::parse("@daily", Tz::UTC, now).is_ok());
    }

    #[test]
    fn time_zones_are_iana_names() {
        assert_eq!(
            parse_timezone("Europe/Berlin"),
            Ok(chrono_tz::Europe::Berlin)
        );
        assert_eq!(parse_timezone("UTC"), Ok(Tz::UTC));
        assert!(parse_timezone("Mars/Olympus").unwrap_err().contains("IANA"));
        assert!(parse_timezone("+01:00").is_err());
    }
}
