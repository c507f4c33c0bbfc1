//! The body of `POST /api/v1/recover` (and CLI `recover`): tables of one dataset brought back
//! as they were at an instant inside BigQuery's time-travel window, by BigQuery itself, without
//! a backup and without their data passing through this service.
//!
//! ```json
//! {"projectId": "my-project", "dataset": "shop", "tables": ["orders"],
//!  "asOf": "2026-12-02T08:00:00Z"}
//! ```
//!
//! Every problem is reported at once, each naming its JSON path.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use super::ids::{is_valid_dataset_id, is_valid_table_id};
use super::request_fields::{self, check_project_at, invalid_dataset_message, normalize_name};
use super::restore_request::WriteDisposition;
use crate::error::FieldError;

/// BigQuery keeps at most 7 days of time travel (a dataset may keep fewer: checked against its
/// `maxTimeTravelHours` when the recovery is planned).
pub const MAX_TIME_TRAVEL: Duration = Duration::days(7);
/// Clock skew tolerated before an instant counts as "in the future".
const FUTURE_TOLERANCE: Duration = Duration::minutes(1);

pub fn parse_recover_request(body: &[u8]) -> Result<RecoverRequest, FieldError> {
    request_fields::parse_json(body)
}

/// `POST /api/v1/recover`, as sent.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RecoverRequest {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dataset: Option<String>,
    /// Tables to recover; absent = every table the dataset holds now.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tables: Option<Vec<String>>,
    /// The instant (RFC 3339) to bring the tables back to, or `BEFORE_DROP`: each of the named
    /// (dropped) tables as it was just before its last `DROP TABLE`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub as_of: Option<String>,
    /// Where the recovered tables go; default the source dataset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target_dataset: Option<String>,
    /// Appended to each table's name; default `_recovered_{asOf as yyyyMMddHHmmss}`, or nothing
    /// when recovering in place.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub table_suffix: Option<String>,
    /// `WRITE_EMPTY` (default: the target must not exist) or `WRITE_TRUNCATE` (replace it; with
    /// no `targetDataset` and no `tableSuffix`, the tables themselves are replaced: in place).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub write_disposition: Option<String>,
    /// `AUTO` (default), `CLONE`, `COPY` or `QUERY`: see [`RecoverMethod`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub wait: Option<bool>,
}

/// How BigQuery brings a table back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum RecoverMethod {
    /// CLONE for a table that exists (a new target), COPY for a dropped one and in place.
    #[default]
    Auto,
    /// `CREATE TABLE target CLONE source FOR SYSTEM_TIME AS OF …`: no data copied, nothing
    /// billed until the clone diverges; everything of the table kept (schema, partitioning,
    /// clustering, descriptions, labels).
    Clone,
    /// A copy job from `source@{ms}` (the snapshot decorator): also brings back a dropped table.
    Copy,
    /// The table created with its schema as it is now, then `INSERT … SELECT * FROM source FOR
    /// SYSTEM_TIME AS OF …` (billed as a query scanning the table); in place through a staging
    /// table and an atomic copy.
    Query,
}

impl RecoverMethod {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Auto => "AUTO",
            Self::Clone => "CLONE",
            Self::Copy => "COPY",
            Self::Query => "QUERY",
        }
    }
}

/// The instant `asOf` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecoverInstant {
    At(DateTime<Utc>),
    /// `BEFORE_DROP`: each named table as it was just before its last `DROP TABLE` statement,
    /// found in the project's `INFORMATION_SCHEMA.JOBS` when the recovery is planned.
    BeforeDrop,
}

impl RecoverInstant {
    pub const BEFORE_DROP: &'static str = "BEFORE_DROP";
}

impl Serialize for RecoverInstant {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::At(at) => at.serialize(serializer),
            Self::BeforeDrop => serializer.serialize_str(Self::BEFORE_DROP),
        }
    }
}

/// A checked recovery request.
#[derive(Debug, Clone)]
pub struct RecoverSpec {
    pub project: String,
    pub dataset: String,
    /// Empty = every table the dataset holds now.
    pub tables: Vec<String>,
    pub as_of: RecoverInstant,
    pub target_dataset: String,
    pub table_suffix: String,
    pub write_disposition: WriteDisposition,
    pub method: RecoverMethod,
    pub dry_run: bool,
    pub wait: bool,
}

impl RecoverSpec {
    /// Whether the tables replace themselves.
    pub fn in_place(&self) -> bool {
        self.target_dataset == self.dataset && self.table_suffix.is_empty()
    }

    /// The target name of `table`.
    pub fn target_table(&self, table: &str) -> String {
        format!("{table}{}", self.table_suffix)
    }
}

impl RecoverRequest {
    /// Checks everything and applies defaults; every problem at once. `now` bounds `asOf`.
    pub fn validate(self, now: DateTime<Utc>) -> Result<RecoverSpec, Vec<FieldError>> {
        let mut errors = Vec::new();
        let project = check_project_at("projectId", self.project_id, &mut errors);
        let dataset = match self.dataset.map(|d| d.trim().to_string()) {
            None => {
                errors.push(FieldError::new("dataset", "is required"));
                None
            }
            Some(d) if !is_valid_dataset_id(&d) => {
                errors.push(FieldError::new("dataset", invalid_dataset_message(&d)));
                None
            }
            Some(d) => Some(d),
        };
        let tables = self.tables.unwrap_or_default();
        for (i, table) in tables.iter().enumerate() {
            if !is_valid_table_id(table) {
                errors.push(FieldError::new(
                    format!("tables[{i}]"),
                    format!("`{table}` is not a valid table name"),
                ));
            }
        }
        let as_of = match self.as_of.as_deref().map(str::trim) {
            None | Some("") => {
                errors.push(FieldError::new(
                    "asOf",
                    "is required: the RFC 3339 instant to bring the tables back to, within the dataset's time-travel window (at most 7 days ago), or BEFORE_DROP",
                ));
                None
            }
            Some(text) if text.eq_ignore_ascii_case(RecoverInstant::BEFORE_DROP) => {
                Some(RecoverInstant::BeforeDrop)
            }
            Some(text) => match DateTime::parse_from_rfc3339(text) {
                Ok(at) => {
                    let at = at.with_timezone(&Utc);
                    if at > now + FUTURE_TOLERANCE {
                        errors.push(FieldError::new(
                            "asOf",
                            format!("{} is in the future", at.to_rfc3339()),
                        ));
                    } else if at < now - MAX_TIME_TRAVEL {
                        errors.push(FieldError::new(
                            "asOf",
                            format!(
                                "{} is more than 7 days ago: outside BigQuery's time-travel window; only a backup can bring it back",
                                at.to_rfc3339()
                            ),
                        ));
                    }
                    Some(RecoverInstant::At(at))
                }
                Err(_) => {
                    errors.push(FieldError::new(
                        "asOf",
                        format!("`{text}` is not an RFC 3339 time like 2026-12-02T08:00:00Z, nor BEFORE_DROP"),
                    ));
                    None
                }
            },
        };
        let target_dataset = match self.target_dataset.map(|d| d.trim().to_string()) {
            Some(d) if !is_valid_dataset_id(&d) => {
                errors.push(FieldError::new(
                    "targetDataset",
                    invalid_dataset_message(&d),
                ));
                None
            }
            other => other,
        };
        if let Some(suffix) = &self.table_suffix
            && !suffix.is_empty()
            && !is_valid_table_id(&format!("t{suffix}"))
        {
            errors.push(FieldError::new(
                "tableSuffix",
                format!("`{suffix}` cannot end a table name: letters, marks, numbers, `_`, dashes and spaces"),
            ));
        }
        let write_disposition = match normalize_name(self.write_disposition.as_deref()).as_deref() {
            None | Some("WRITE_EMPTY") => WriteDisposition::WriteEmpty,
            Some("WRITE_TRUNCATE") => WriteDisposition::WriteTruncate,
            Some(other) => {
                errors.push(FieldError::new(
                    "writeDisposition",
                    format!("`{other}` must be WRITE_EMPTY (the target must not exist) or WRITE_TRUNCATE (replace it)"),
                ));
                WriteDisposition::WriteEmpty
            }
        };
        let method = match normalize_name(self.method.as_deref()).as_deref() {
            None | Some("AUTO") => RecoverMethod::Auto,
            Some("CLONE") => RecoverMethod::Clone,
            Some("COPY") => RecoverMethod::Copy,
            Some("QUERY") => RecoverMethod::Query,
            Some(other) => {
                errors.push(FieldError::new(
                    "method",
                    format!("`{other}` must be AUTO, CLONE, COPY or QUERY"),
                ));
                RecoverMethod::Auto
            }
        };
        if as_of == Some(RecoverInstant::BeforeDrop) {
            if tables.is_empty() {
                errors.push(FieldError::new(
                    "tables",
                    "is required with asOf BEFORE_DROP: name the dropped tables (a dataset lists only the tables it holds now)",
                ));
            }
            if !matches!(method, RecoverMethod::Auto | RecoverMethod::Copy) {
                errors.push(FieldError::new(
                    "method",
                    format!(
                        "`{}` cannot bring back a dropped table: with asOf BEFORE_DROP only a copy of its snapshot decorator can (COPY, or AUTO)",
                        method.as_str()
                    ),
                ));
            }
        }
        let (Some(project), Some(dataset), Some(as_of)) = (project, dataset, as_of) else {
            return Err(errors);
        };
        // A dropped table comes back under a name stamped with the time it was asked for.
        let stamp = match as_of {
            RecoverInstant::At(at) => at,
            RecoverInstant::BeforeDrop => now,
        };
        // In place only when asked with WRITE_TRUNCATE; otherwise a new name by default.
        let table_suffix = match self.table_suffix {
            Some(suffix) => suffix,
            None if write_disposition == WriteDisposition::WriteTruncate
                && target_dataset.as_ref().is_none_or(|t| *t == dataset) =>
            {
                String::new()
            }
            None => format!("_recovered_{}", stamp.format("%Y%m%d%H%M%S")),
        };
        let target_dataset = target_dataset.unwrap_or_else(|| dataset.clone());
        if target_dataset == dataset
            && table_suffix.is_empty()
            && write_disposition != WriteDisposition::WriteTruncate
        {
            errors.push(FieldError::new(
                "writeDisposition",
                "recovering the tables in place replaces them: say so with WRITE_TRUNCATE, or give a tableSuffix or targetDataset",
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(RecoverSpec {
            project,
            dataset,
            tables,
            as_of,
            target_dataset,
            table_suffix,
            write_disposition,
            method,
            dry_run: self.dry_run.unwrap_or(false),
            wait: self.wait.unwrap_or(false),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-12-02T12:00:00Z")
            .unwrap()
            .to_utc()
    }

    fn spec(body: serde_json::Value) -> Result<RecoverSpec, Vec<FieldError>> {
        parse_recover_request(body.to_string().as_bytes())
            .unwrap()
            .validate(now())
    }

    fn fields(body: serde_json::Value) -> Vec<String> {
        spec(body)
            .unwrap_err()
            .into_iter()
            .map(|e| e.field)
            .collect()
    }

    #[test]
    fn a_new_name_by_default_in_place_only_with_write_truncate() {
        let base =
            json!({ "projectId": "my-project", "dataset": "shop", "asOf": "2026-12-02T08:00:00Z" });
        let s = spec(base.clone()).unwrap();
        assert_eq!(s.target_table("orders"), "orders_recovered_20261202080000");
        assert!(!s.in_place());
        let mut truncate = base.clone();
        truncate["writeDisposition"] = json!("write_truncate");
        let s = spec(truncate).unwrap();
        assert!(s.in_place());
        assert_eq!(s.target_table("orders"), "orders");
        let mut elsewhere = base.clone();
        elsewhere["targetDataset"] = json!("shop_copy");
        elsewhere["writeDisposition"] = json!("WRITE_TRUNCATE");
        let s = spec(elsewhere).unwrap();
        assert_eq!(s.target_table("orders"), "orders_recovered_20261202080000");
        let mut empty_suffix = base;
        empty_suffix["tableSuffix"] = json!("");
        assert_eq!(fields(empty_suffix), ["writeDisposition"]);
    }

    #[test]
    fn every_problem_is_named_at_once() {
        let problems = fields(json!({
            "projectId": "X", "dataset": "bad-name", "tables": ["ok", "bad.name"],
            "asOf": "yesterday", "writeDisposition": "WRITE_APPEND", "method": "MAGIC",
            "targetDataset": "no-dash", "tableSuffix": "/x"
        }));
        assert_eq!(
            problems,
            [
                "projectId",
                "dataset",
                "tables[1]",
                "asOf",
                "targetDataset",
                "tableSuffix",
                "writeDisposition",
                "method"
            ]
        );
        assert_eq!(fields(json!({})), ["projectId", "dataset", "asOf"]);
    }

    #[test]
    fn before_drop_names_its_tables_copies_them_and_stamps_their_names_with_now() {
        let base = json!({ "projectId": "my-project", "dataset": "shop", "asOf": "before_drop", "tables": ["orders"] });
        let s = spec(base.clone()).unwrap();
        assert_eq!(s.as_of, RecoverInstant::BeforeDrop);
        assert_eq!(s.target_table("orders"), "orders_recovered_20261202120000");
        assert_eq!(serde_json::to_value(s.as_of).unwrap(), json!("BEFORE_DROP"));
        let mut no_tables = base.clone();
        no_tables["tables"] = json!([]);
        assert_eq!(fields(no_tables), ["tables"]);
        let mut by_query = base;
        by_query["method"] = json!("QUERY");
        assert_eq!(fields(by_query), ["method"]);
    }

    #[test]
    fn the_instant_must_be_inside_the_time_travel_window() {
        let at = |t: &str| json!({ "projectId": "my-project", "dataset": "shop", "asOf": t });
        let old = spec(at("2026-11-25T11:00:00Z")).unwrap_err();
        assert!(
            old[0]
                .message
                .contains("outside BigQuery's time-travel window"),
            "{old:?}"
        );
        let future = spec(at("2026-12-02T13:00:00Z")).unwrap_err();
        assert!(future[0].message.contains("in the future"));
        assert!(spec(at("2026-11-25T13:00:00+01:00")).is_ok());
    }
}
