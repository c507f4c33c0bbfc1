//! Reading a partitioned table partition by partition: for each partition BigQuery lists
//! (`INFORMATION_SCHEMA.PARTITIONS`), the Storage Read API row restriction that reads exactly
//! its rows, and the restriction of the rest: the rows outside every listed partition, which is
//! empty unless a partition appeared between the snapshot and the listing. Reading the rest too
//! means no row is ever lost to that race, whatever the listing said.
//!
//! Tables partitioned on a column by time (`HOUR`, `DAY`, `MONTH`, `YEAR` on a `DATE`,
//! `TIMESTAMP` or `DATETIME` column) or by integer range are read this way. Ingestion-time
//! partitioned tables are read whole: their partition is not a column of the rows.
//!
//! Pure: no I/O.

use chrono::{Datelike, Months, NaiveDate, NaiveDateTime, TimeDelta};
use serde_json::Value;

use crate::bigquery::TableResource;

/// BigQuery's partition of rows whose partitioning column is NULL.
pub const NULL_PARTITION: &str = "__NULL__";
/// Rows outside an integer range's bounds; for time partitioning, the streaming buffer.
pub const UNPARTITIONED: &str = "__UNPARTITIONED__";

/// How a table is partitioned, as far as reading it partition by partition goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scheme {
    Time {
        column: String,
        unit: TimeUnit,
        column_type: ColumnType,
    },
    Range {
        column: String,
        start: i64,
        end: i64,
        interval: i64,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeUnit {
    Hour,
    Day,
    Month,
    Year,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Date,
    Timestamp,
    Datetime,
}

/// One partition's bounds: `[start, end)` of the partitioning column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Bound {
    Time(NaiveDateTime),
    Int(i64),
}

impl Scheme {
    /// How `resource` (a table resource as `tables.get` answers it) is partitioned; `Err` says
    /// why the table is read whole instead.
    pub fn of(resource: &TableResource) -> Result<Self, String> {
        let map = resource.as_map();
        if let Some(time) = map.get("timePartitioning") {
            let Some(column) = time.get("field").and_then(Value::as_str) else {
                return Err("partitioned by ingestion time: its partitions are not a column of its rows, so it is read whole".into());
            };
            let unit = match time.get("type").and_then(Value::as_str).unwrap_or("DAY") {
                "HOUR" => TimeUnit::Hour,
                "DAY" => TimeUnit::Day,
                "MONTH" => TimeUnit::Month,
                "YEAR" => TimeUnit::Year,
                other => {
                    return Err(format!(
                        "partitioned by `{other}`, which this service does not know: read whole"
                    ));
                }
            };
            let column_type = match column_type_of(map, column).as_deref() {
                Some("DATE") => ColumnType::Date,
                Some("TIMESTAMP") => ColumnType::Timestamp,
                Some("DATETIME") => ColumnType::Datetime,
                other => {
                    return Err(format!(
                        "partitioned on column `{column}` of type {}, which this service does not read by partition: read whole",
                        other.unwrap_or("unknown")
                    ));
                }
            };
            return Ok(Self::Time {
                column: column.to_string(),
                unit,
                column_type,
            });
        }
        if let Some(range) = map.get("rangePartitioning") {
            let column = range.get("field").and_then(Value::as_str);
            let number = |name: &str| {
                range
                    .get("range")
                    .and_then(|r| r.get(name))
                    .and_then(|v| match v {
                        Value::String(s) => s.parse::<i64>().ok(),
                        other => other.as_i64(),
                    })
            };
            return match (column, number("start"), number("end"), number("interval")) {
                (Some(column), Some(start), Some(end), Some(interval))
                    if interval > 0 && start < end =>
                {
                    Ok(Self::Range {
                        column: column.to_string(),
                        start,
                        end,
                        interval,
                    })
                }
                _ => Err(format!(
                    "its rangePartitioning {range} is not one this service reads by partition: read whole"
                )),
            };
        }
        Err("not partitioned".into())
    }

    fn column(&self) -> String {
        let name = match self {
            Self::Time { column, .. } | Self::Range { column, .. } => column,
        };
        format!("`{}`", name.replace('`', "\\`"))
    }

    /// The bounds of partition `id` (`None` for `__NULL__`); `Err` when `id` is not one of this
    /// scheme's partitions.
    fn bounds(&self, id: &str) -> Result<Option<(Bound, Bound)>, String> {
        if id == NULL_PARTITION {
            return Ok(None);
        }
        let bad = || format!("partition `{id}` is not a partition of this table's partitioning");
        match self {
            Self::Time { unit, .. } => {
                let digits = match unit {
                    TimeUnit::Hour => 10,
                    TimeUnit::Day => 8,
                    TimeUnit::Month => 6,
                    TimeUnit::Year => 4,
                };
                if id.len() != digits || !id.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(bad());
                }
                let number =
                    |range: std::ops::Range<usize>| id[range].parse::<u32>().map_err(|_| bad());
                let year = i32::try_from(number(0..4)?).map_err(|_| bad())?;
                let month = if digits >= 6 { number(4..6)? } else { 1 };
                let day = if digits >= 8 { number(6..8)? } else { 1 };
                let hour = if digits >= 10 { number(8..10)? } else { 0 };
                let start = NaiveDate::from_ymd_opt(year, month, day)
                    .and_then(|d| d.and_hms_opt(hour, 0, 0))
                    .ok_or_else(bad)?;
                let end = match unit {
                    TimeUnit::Hour => start.checked_add_signed(TimeDelta::hours(1)),
                    TimeUnit::Day => start.checked_add_signed(TimeDelta::days(1)),
                    TimeUnit::Month => start.checked_add_months(Months::new(1)),
                    TimeUnit::Year => start.with_year(year + 1),
                }
                .ok_or_else(bad)?;
                Ok(Some((Bound::Time(start), Bound::Time(end))))
            }
            Self::Range {
                start,
                end,
                interval,
                ..
            } => {
                let low: i64 = id.parse().map_err(|_| bad())?;
                let aligned = low >= *start && low < *end && (low - start) % interval == 0;
                if !aligned {
                    return Err(bad());
                }
                Ok(Some((
                    Bound::Int(low),
                    Bound::Int(low.saturating_add(*interval).min(*end)),
                )))
            }
        }
    }

    fn literal(&self, bound: Bound) -> String {
        match (bound, self) {
            (Bound::Int(n), _) => n.to_string(),
            (Bound::Time(t), Self::Time { column_type, .. }) => match column_type {
                ColumnType::Date => format!("DATE '{}'", t.format("%Y-%m-%d")),
                ColumnType::Timestamp => {
                    format!("TIMESTAMP '{}+00'", t.format("%Y-%m-%d %H:%M:%S"))
                }
                ColumnType::Datetime => format!("DATETIME '{}'", t.format("%Y-%m-%d %H:%M:%S")),
            },
            (Bound::Time(t), Self::Range { .. }) => t.and_utc().timestamp().to_string(),
        }
    }

    fn between(&self, (low, high): (Bound, Bound)) -> String {
        let column = self.column();
        format!(
            "{column} >= {} AND {column} < {}",
            self.literal(low),
            self.literal(high)
        )
    }

    /// The row restriction reading exactly partition `id`'s rows. `Err` for a partition that
    /// cannot be read by itself (a time-partitioned table's streaming buffer), or that is not one
    /// of this scheme's.
    pub fn restriction(&self, id: &str) -> Result<String, String> {
        let column = self.column();
        if id == UNPARTITIONED {
            return match self {
                Self::Range { start, end, .. } => Ok(format!("({column} < {start} OR {column} >= {end})")),
                Self::Time { .. } => Err("it has rows in its streaming buffer (partition __UNPARTITIONED__), which no restriction reads apart: read whole".into()),
            };
        }
        match self.bounds(id)? {
            None => Ok(format!("{column} IS NULL")),
            Some(bounds) => Ok(self.between(bounds)),
        }
    }

    /// The row restriction reading every row outside the partitions `ids` (each one that
    /// [`Self::restriction`] accepts), or `None` when that is the whole table (no partition
    /// listed). Adjacent partitions are merged, so the restriction stays short for any number of
    /// consecutive partitions.
    pub fn rest(&self, ids: &[String]) -> Result<Option<String>, String> {
        let column = self.column();
        let mut ranges = Vec::new();
        let mut null = false;
        let mut outside = false;
        for id in ids {
            if id == UNPARTITIONED {
                outside = true;
                continue;
            }
            match self.bounds(id)? {
                None => null = true,
                Some(bounds) => ranges.push(bounds),
            }
        }
        ranges.sort();
        let mut merged: Vec<(Bound, Bound)> = Vec::new();
        for (low, high) in ranges {
            match merged.last_mut() {
                Some(last) if last.1 >= low => last.1 = last.1.max(high),
                _ => merged.push((low, high)),
            }
        }
        let mut covered: Vec<String> = merged
            .into_iter()
            .map(|b| format!("({})", self.between(b)))
            .collect();
        if outside && let Self::Range { start, end, .. } = self {
            covered.push(format!("({column} < {start} OR {column} >= {end})"));
        }
        // Three-valued logic: a NULL column makes every comparison NULL, so NULLs are sorted
        // out before the NOT.
        Ok(match (covered.is_empty(), null) {
            (true, false) => None,
            (true, true) => Some(format!("{column} IS NOT NULL")),
            (false, true) => Some(format!(
                "{column} IS NOT NULL AND NOT ({})",
                covered.join(" OR ")
            )),
            (false, false) => Some(format!(
                "{column} IS NULL OR NOT ({})",
                covered.join(" OR ")
            )),
        })
    }
}

/// The type of top-level column `column` in `resource`'s `schema.fields`.
fn column_type_of(map: &serde_json::Map<String, Value>, column: &str) -> Option<String> {
    map.get("schema")?
        .get("fields")?
        .as_array()?
        .iter()
        .find(|f| f.get("name").and_then(Value::as_str) == Some(column))?
        .get("type")?
        .as_str()
        .map(|t| t.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn resource(value: Value) -> TableResource {
        serde_json::from_value(value).unwrap()
    }

    fn time(unit: &str, column_type: &str) -> Scheme {
        Scheme::of(&resource(json!({
            "timePartitioning": {"type": unit, "field": "c"},
            "schema": {"fields": [{"name": "id", "type": "INTEGER"}, {"name": "c", "type": column_type}]}
        })))
        .unwrap()
    }

    fn range() -> Scheme {
        Scheme::of(&resource(json!({
            "rangePartitioning": {"field": "k", "range": {"start": "0", "end": "100", "interval": "10"}},
            "schema": {"fields": [{"name": "k", "type": "INTEGER"}]}
        })))
        .unwrap()
    }

    #[test]
    fn each_time_unit_and_column_type_restricts_to_its_partition() {
        assert_eq!(
            time("DAY", "DATE").restriction("20240229").unwrap(),
            "`c` >= DATE '2024-02-29' AND `c` < DATE '2024-03-01'"
        );
        assert_eq!(
            time("HOUR", "TIMESTAMP").restriction("2024123123").unwrap(),
            "`c` >= TIMESTAMP '2024-12-31 23:00:00+00' AND `c` < TIMESTAMP '2025-01-01 00:00:00+00'"
        );
        assert_eq!(
            time("MONTH", "DATETIME").restriction("202412").unwrap(),
            "`c` >= DATETIME '2024-12-01 00:00:00' AND `c` < DATETIME '2025-01-01 00:00:00'"
        );
        assert_eq!(
            time("YEAR", "DATE").restriction("2024").unwrap(),
            "`c` >= DATE '2024-01-01' AND `c` < DATE '2025-01-01'"
        );
        assert_eq!(
            time("DAY", "DATE").restriction(NULL_PARTITION).unwrap(),
            "`c` IS NULL"
        );
        assert_eq!(
            range().restriction("90").unwrap(),
            "`k` >= 90 AND `k` < 100"
        );
        assert_eq!(
            range().restriction(UNPARTITIONED).unwrap(),
            "(`k` < 0 OR `k` >= 100)"
        );
    }

    #[test]
    fn ids_that_are_not_the_schemes_partitions_are_refused() {
        for bad in [
            "2024010",
            "202401011",
            "2024-01-01",
            "20241301",
            "20240230",
            "",
        ] {
            assert!(time("DAY", "DATE").restriction(bad).is_err(), "{bad}");
        }
        for bad in ["5", "100", "-10", "x"] {
            assert!(range().restriction(bad).is_err(), "{bad}");
        }
        // A time-partitioned table's streaming buffer has no restriction of its own.
        assert!(time("DAY", "DATE").restriction(UNPARTITIONED).is_err());
    }

    #[test]
    fn tables_that_are_not_read_by_partition_say_why() {
        let ingestion = resource(json!({"timePartitioning": {"type": "DAY"}}));
        assert!(
            Scheme::of(&ingestion)
                .unwrap_err()
                .contains("ingestion time")
        );
        assert_eq!(
            Scheme::of(&resource(json!({}))).unwrap_err(),
            "not partitioned"
        );
        let odd = resource(
            json!({"rangePartitioning": {"field": "k", "range": {"start": "0", "end": "0", "interval": "1"}}}),
        );
        assert!(Scheme::of(&odd).is_err());
    }

    #[test]
    fn the_rest_merges_adjacent_partitions_and_keeps_nulls_apart() {
        let day = time("DAY", "DATE");
        let ids: Vec<String> = ["20240103", "20240101", "20240102", "20240110"]
            .map(String::from)
            .to_vec();
        assert_eq!(
            day.rest(&ids).unwrap().unwrap(),
            "`c` IS NULL OR NOT ((`c` >= DATE '2024-01-01' AND `c` < DATE '2024-01-04') OR (`c` >= DATE '2024-01-10' AND `c` < DATE '2024-01-11'))"
        );
        let with_null: Vec<String> = ["20240101", NULL_PARTITION].map(String::from).to_vec();
        assert_eq!(
            day.rest(&with_null).unwrap().unwrap(),
            "`c` IS NOT NULL AND NOT ((`c` >= DATE '2024-01-01' AND `c` < DATE '2024-01-02'))"
        );
        assert_eq!(
            day.rest(&[NULL_PARTITION.to_string()]).unwrap().unwrap(),
            "`c` IS NOT NULL"
        );
        assert_eq!(day.rest(&[]).unwrap(), None);
        let all: Vec<String> = ["0", "10", UNPARTITIONED].map(String::from).to_vec();
        assert_eq!(
            range().rest(&all).unwrap().unwrap(),
            "`k` IS NULL OR NOT ((`k` >= 0 AND `k` < 20) OR (`k` < 0 OR `k` >= 100))"
        );
    }

    #[test]
    fn ten_thousand_consecutive_days_make_a_short_rest() {
        let day = time("DAY", "DATE");
        let start = NaiveDate::from_ymd_opt(2000, 1, 1).unwrap();
        let ids: Vec<String> = (0..10_000)
            .map(|n| (start + TimeDelta::days(n)).format("%Y%m%d").to_string())
            .collect();
        assert!(day.rest(&ids).unwrap().unwrap().len() < 200);
    }
}
