//! The schedule file (`BQB_SCHEDULE_FILE`): TOML, one `[[schedule]]` table per schedule.
//!
//! ```toml
//! [[schedule]]
//! name = "nightly-sales"          # unique; a-z, 0-9 and -, at most 63 characters
//! cron = "30 2 * * *"             # 5 fields, or 6 with leading seconds
//! timezone = "Europe/Berlin"      # IANA name; default UTC
//! kind = "backup"                 # or "restore"
//! enabled = true                  # default true
//! request = '''{ "bigQuery": { "projectId": "my-project" }, … }'''
//! # or: request_file = "nightly-sales.json"   (relative to this file)
//! # or: [schedule.request] … (a TOML table, read as the same JSON)
//! ```
//!
//! Everything is checked when the service starts — the request with the same parse and
//! validation as `POST /api/v1/backup` and `/restore` — and every problem is reported at once,
//! each naming its schedule and field, so that a bad schedule stops the service at deploy time
//! rather than failing at 2 a.m.
//!
//! Depends on `domain`, `backup` (request validation) and `formats` (format names); no I/O but
//! reading the files it names.

use std::collections::BTreeMap;
use std::path::Path;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::Value;

use super::cadence::{Cadence, parse_timezone};
use crate::backup::validate_backup_request;
use crate::domain::{parse_backup_request, parse_restore_request};
use crate::error::{Error, FieldError};
use crate::formats::Format;

/// The longest schedule name (it becomes part of object keys and log fields).
const MAX_NAME_LEN: usize = 63;
const KEYS: &[&str] = &[
    "name",
    "cron",
    "timezone",
    "kind",
    "enabled",
    "request",
    "request_file",
];

/// What a schedule starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ScheduleKind {
    Backup,
    Restore,
}

impl ScheduleKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Backup => "backup",
            Self::Restore => "restore",
        }
    }
}

/// One checked schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub name: String,
    pub kind: ScheduleKind,
    pub cadence: Cadence,
    pub enabled: bool,
    /// The request body (JSON), exactly what `POST /api/v1/{kind}` would take.
    pub request: Vec<u8>,
}

/// Reads and checks the schedule file at `path`. The error names the file and lists every
/// problem, each as `schedule["name"].field` (or `schedule[index].field` when the name itself
/// is missing or wrong).
pub fn load_schedule_file(path: &Path, now: DateTime<Utc>) -> Result<Vec<Schedule>, Error> {
    let invalid = |problems| {
        Error::invalid(
            format!("BQB_SCHEDULE_FILE {} is invalid", path.display()),
            problems,
        )
    };
    let text = std::fs::read_to_string(path).map_err(|e| {
        invalid(vec![FieldError::new(
            "BQB_SCHEDULE_FILE",
            format!("cannot read {}: {e}", path.display()),
        )])
    })?;
    let base = path.parent().unwrap_or_else(|| Path::new("."));
    parse_schedules(&text, base, now).map_err(invalid)
}

/// Parses schedule-file text; `request_file` paths are relative to `base_dir`.
pub fn parse_schedules(
    text: &str,
    base_dir: &Path,
    now: DateTime<Utc>,
) -> Result<Vec<Schedule>, Vec<FieldError>> {
    let table: toml::Table = text
        .parse()
        .map_err(|e| vec![FieldError::new("file", format!("not valid TOML: {e}"))])?;
    let mut problems = Vec::new();
    for key in table.keys().filter(|k| k.as_str() != "schedule") {
        problems.push(FieldError::new(
            key.as_str(),
            "unknown key; the file holds [[schedule]] tables only",
        ));
    }
    let entries: &[toml::Value] = match table.get("schedule") {
        None => &[],
        Some(toml::Value::Array(entries)) => entries,
        Some(_) => {
            problems.push(FieldError::new(
                "schedule",
                "must be an array of tables: write each schedule as [[schedule]]",
            ));
            &[]
        }
    };
    let mut schedules = Vec::new();
    let mut names: BTreeMap<String, usize> = BTreeMap::new();
    for (index, entry) in entries.iter().enumerate() {
        let Some(entry) = entry.as_table() else {
            problems.push(FieldError::new(
                format!("schedule[{index}]"),
                "must be a table",
            ));
            continue;
        };
        if let Some(schedule) = check_entry(index, entry, base_dir, now, &mut names, &mut problems)
        {
            schedules.push(schedule);
        }
    }
    if problems.is_empty() {
        Ok(schedules)
    } else {
        Err(problems)
    }
}

/// Checks one `[[schedule]]` table; its problems go to `problems` (then `None`).
fn check_entry(
    index: usize,
    entry: &toml::Table,
    base_dir: &Path,
    now: DateTime<Utc>,
    names: &mut BTreeMap<String, usize>,
    problems: &mut Vec<FieldError>,
) -> Option<Schedule> {
    let before = problems.len();
    let raw_name = entry.get("name").and_then(toml::Value::as_str);
    let name = check_name(raw_name, index, names, problems);
    // The name, when it is one, says which schedule clearer than an index.
    let label = match &name {
        Some(n) => format!("schedule[{}]", Value::String(n.clone())),
        None => format!("schedule[{index}]"),
    };
    let field = |key: &str| format!("{label}.{key}");
    if raw_name.is_none() {
        problems.push(FieldError::new(
            field("name"),
            if entry.contains_key("name") {
                "must be a string"
            } else {
                "is required"
            },
        ));
    }
    for key in entry.keys().filter(|k| !KEYS.contains(&k.as_str())) {
        problems.push(FieldError::new(
            field(key),
            format!("unknown key; a schedule has {}", KEYS.join(", ")),
        ));
    }

    let timezone = match entry.get("timezone") {
        None => Some(Tz::UTC),
        Some(toml::Value::String(s)) => parse_timezone(s)
            .map_err(|e| problems.push(FieldError::new(field("timezone"), e)))
            .ok(),
        Some(_) => {
            problems.push(FieldError::new(
                field("timezone"),
                "must be a string (an IANA time zone name)",
            ));
            None
        }
    };
    let cadence = match entry.get("cron") {
        None => {
            problems.push(FieldError::new(field("cron"), "is required"));
            None
        }
        Some(toml::Value::String(s)) => {
            // Checked in UTC when the time zone is bad: its own problem is reported already.
            Cadence::parse(s, timezone.unwrap_or(Tz::UTC), now)
                .map_err(|e| problems.push(FieldError::new(field("cron"), e)))
                .ok()
        }
        Some(_) => {
            problems.push(FieldError::new(
                field("cron"),
                "must be a string like \"30 2 * * *\"",
            ));
            None
        }
    };
    let kind = match entry.get("kind").map(|v| v.as_str()) {
        None => {
            problems.push(FieldError::new(
                field("kind"),
                "is required: \"backup\" or \"restore\"",
            ));
            None
        }
        Some(Some("backup")) => Some(ScheduleKind::Backup),
        Some(Some("restore")) => Some(ScheduleKind::Restore),
        Some(_) => {
            problems.push(FieldError::new(
                field("kind"),
                "must be \"backup\" or \"restore\"",
            ));
            None
        }
    };
    let enabled = match entry.get("enabled") {
        None => true,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => {
            problems.push(FieldError::new(field("enabled"), "must be true or false"));
            true
        }
    };
    let request = read_request(entry, base_dir, &field, problems);
    if let (Some(kind), Some(request)) = (kind, &request) {
        check_request(kind, request, now, problems);
    }

    if problems.len() > before {
        return None;
    }
    Some(Schedule {
        name: name?,
        kind: kind?,
        cadence: cadence?,
        enabled,
        request: request?.body,
    })
}

fn check_name(
    name: Option<&str>,
    index: usize,
    names: &mut BTreeMap<String, usize>,
    problems: &mut Vec<FieldError>,
) -> Option<String> {
    let name = name?;
    let field = format!("schedule[{index}].name");
    let valid = !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        problems.push(FieldError::new(
            field,
            format!(
                "`{name}` is not a schedule name: use 1 to {MAX_NAME_LEN} of a-z, 0-9 and -, \
                 neither first nor last a -"
            ),
        ));
        return None;
    }
    if let Some(first) = names.get(name) {
        problems.push(FieldError::new(
            field,
            format!("`{name}` is also the name of schedule[{first}]; names must be unique"),
        ));
        return None;
    }
    names.insert(name.to_string(), index);
    Some(name.to_string())
}

/// A schedule's request body, and the field to name in its problems.
struct RequestBody {
    body: Vec<u8>,
    field: String,
}

/// `request` (JSON text, or a TOML table read as JSON) or `request_file`: exactly one.
fn read_request(
    entry: &toml::Table,
    base_dir: &Path,
    field: &dyn Fn(&str) -> String,
    problems: &mut Vec<FieldError>,
) -> Option<RequestBody> {
    match (entry.get("request"), entry.get("request_file")) {
        (None, None) => {
            problems.push(FieldError::new(
                field("request"),
                "is required: the request as JSON text or a table, or request_file naming a \
                 JSON file",
            ));
            None
        }
        (Some(_), Some(_)) => {
            problems.push(FieldError::new(
                field("request_file"),
                "not together with request: give one of them",
            ));
            None
        }
        (Some(toml::Value::String(text)), None) => Some(RequestBody {
            body: text.clone().into_bytes(),
            field: field("request"),
        }),
        (Some(toml::Value::Table(table)), None) => {
            match toml_to_json(&toml::Value::Table(table.clone())) {
                Ok(json) => Some(RequestBody {
                    body: json.to_string().into_bytes(),
                    field: field("request"),
                }),
                Err((path, why)) => {
                    problems.push(FieldError::new(format!("{}{path}", field("request")), why));
                    None
                }
            }
        }
        (Some(_), None) => {
            problems.push(FieldError::new(
                field("request"),
                "must be JSON text ('''{ … }''') or a table",
            ));
            None
        }
        (None, Some(toml::Value::String(path))) => {
            let full = base_dir.join(path);
            match std::fs::read(&full) {
                Ok(body) => Some(RequestBody {
                    body,
                    field: field("request_file"),
                }),
                Err(e) => {
                    problems.push(FieldError::new(
                        field("request_file"),
                        format!("cannot read {}: {e}", full.display()),
                    ));
                    None
                }
            }
        }
        (None, Some(_)) => {
            problems.push(FieldError::new(
                field("request_file"),
                "must be a string: a path relative to the schedule file",
            ));
            None
        }
    }
}

/// The request as the API would check it, plus what makes no sense on a schedule.
fn check_request(
    kind: ScheduleKind,
    request: &RequestBody,
    now: DateTime<Utc>,
    problems: &mut Vec<FieldError>,
) {
    // A problem inside the request is named by its JSON path under the schedule's field:
    // `schedule["nightly"].request.backupStorage.uri`.
    let inner = |e: FieldError| {
        let path = if e.field == "body" || e.field.is_empty() {
            request.field.clone()
        } else {
            format!("{}.{}", request.field, e.field)
        };
        FieldError::new(path, e.message)
    };
    let mut unsuitable = |given: bool, key: &str, why: &str| {
        if given {
            problems.push(FieldError::new(
                format!("{}.{key}", request.field),
                why.to_string(),
            ));
        }
    };
    const WAIT: &str = "a schedule never waits for its job: remove it";
    const DRY_RUN: &str = "a scheduled dry run would plan and discard the plan: remove it";
    match kind {
        ScheduleKind::Backup => match parse_backup_request(&request.body) {
            Err(e) => problems.push(inner(e)),
            Ok(parsed) => {
                unsuitable(parsed.wait == Some(true), "wait", WAIT);
                unsuitable(parsed.dry_run == Some(true), "dryRun", DRY_RUN);
                let fixed = "a schedule backs up as of each run: a fixed snapshot time would \
                             leave BigQuery's 7-day time-travel window";
                unsuitable(parsed.backup_time.is_some(), "backupTime", fixed);
                unsuitable(parsed.as_of.is_some(), "asOf", fixed);
                if let Err(e) = validate_backup_request(parsed, now) {
                    problems.extend(e.details().iter().cloned().map(inner));
                }
            }
        },
        ScheduleKind::Restore => match parse_restore_request(&request.body) {
            Err(e) => problems.push(inner(e)),
            Ok(parsed) => {
                unsuitable(parsed.wait == Some(true), "wait", WAIT);
                unsuitable(parsed.dry_run == Some(true), "dryRun", DRY_RUN);
                match parsed.validate() {
                    Err(errors) => problems.extend(errors.into_iter().map(inner)),
                    Ok(spec) => {
                        if let Some(format) = &spec.format
                            && let Err(e) = format.parse::<Format>()
                        {
                            problems.push(inner(FieldError::new(
                                spec.format_field.clone(),
                                e.to_string(),
                            )));
                        }
                    }
                }
            }
        },
    }
}

/// A TOML value as JSON; `Err((path, why))` for what JSON cannot hold (NaN, infinities).
fn toml_to_json(value: &toml::Value) -> Result<Value, (String, String)> {
    Ok(match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => serde_json::Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| (String::new(), format!("{f} is not a JSON number")))?,
        toml::Value::Boolean(b) => Value::Bool(*b),
        // Date-times (`asOf`, `backupTime.localDateTime`) travel as strings in the JSON API.
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(i, v)| toml_to_json(v).map_err(|(p, why)| (format!("[{i}]{p}"), why)))
                .collect::<Result<_, _>>()?,
        ),
        toml::Value::Table(table) => Value::Object(
            table
                .iter()
                .map(|(k, v)| {
                    toml_to_json(v)
                        .map(|j| (k.clone(), j))
                        .map_err(|(p, why)| (format!(".{k}{p}"), why))
                })
                .collect::<Result<_, _>>()?,
        ),
    })
}

#[cfg(test)]
mod tests;
