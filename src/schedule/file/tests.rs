use std::path::Path;

use chrono::{DateTime, Utc};
use serde_json::json;

use super::*;

const BACKUP: &str = r#"{ "bigQuery": { "projectId": "my-project", "tablesToBackup": [{ "datasetName": "shop" }] },
  "backupStorage": { "uri": "gs://my-backups/bigquery", "exportOptions": { "format": "PARQUET" } } }"#;
const RESTORE: &str = r#"{ "bigQuery": { "projectId": "my-dev" },
  "restoreStorage": { "uri": "gs://my-backups/bigquery" }, "backupId": "latest" }"#;

fn now() -> DateTime<Utc> {
    "2026-03-20T12:00:00Z".parse().expect("an instant")
}

fn parse(text: &str) -> Result<Vec<Schedule>, Vec<FieldError>> {
    parse_schedules(text, Path::new("/nonexistent"), now())
}

/// The problems of `text`, as `field: message` lines.
fn problems(text: &str) -> Vec<String> {
    match parse(text) {
        Ok(s) => panic!("accepted: {s:?}"),
        Err(problems) => problems
            .into_iter()
            .map(|p| format!("{}: {}", p.field, p.message))
            .collect(),
    }
}

fn assert_problem(text: &str, field: &str, needle: &str) {
    let found = problems(text);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with(&format!("{field}: ")) && p.contains(needle)),
        "no problem on {field} mentioning {needle:?} in {found:#?}"
    );
}

fn backup_schedule(extra: &str) -> String {
    format!(
        "[[schedule]]\nname = \"nightly\"\ncron = \"30 2 * * *\"\nkind = \"backup\"\n\
         request = '''{BACKUP}'''\n{extra}\n"
    )
}

#[test]
fn a_good_file_gives_every_schedule_with_its_defaults() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("restore-dev.json"), RESTORE).unwrap();
    let text = format!(
        r#"
[[schedule]]
name = "nightly-sales"
cron = "30 2 * * *"
timezone = "Europe/Berlin"
kind = "backup"
request = '''{BACKUP}'''

[[schedule]]
name = "refresh-dev"
cron = "0 6 * * MON-FRI"
kind = "restore"
enabled = false
request_file = "restore-dev.json"

[[schedule]]
name = "hourly-as-table"
cron = "0 * * * *"
kind = "backup"
[schedule.request]
bigQuery = {{ projectId = "my-project", tablesToBackup = [{{ datasetName = "shop", tables = ["orders"] }}] }}
backupStorage = {{ uri = "s3://my-backups/bq" }}
labels = {{ cadence = "hourly" }}
ttlDays = 7
"#
    );
    let schedules = parse_schedules(&text, dir.path(), now()).expect("valid");
    assert_eq!(schedules.len(), 3);

    let nightly = &schedules[0];
    assert_eq!(nightly.name, "nightly-sales");
    assert_eq!(nightly.kind, ScheduleKind::Backup);
    assert!(nightly.enabled);
    assert_eq!(nightly.cadence.timezone(), chrono_tz::Europe::Berlin);
    assert_eq!(nightly.cadence.expression(), "30 2 * * *");
    assert_eq!(nightly.request, BACKUP.as_bytes());

    let dev = &schedules[1];
    assert_eq!(dev.kind, ScheduleKind::Restore);
    assert!(!dev.enabled);
    assert_eq!(dev.cadence.timezone(), chrono_tz::Tz::UTC, "UTC by default");
    assert_eq!(dev.request, RESTORE.as_bytes());

    let hourly: serde_json::Value = serde_json::from_slice(&schedules[2].request).unwrap();
    assert_eq!(
        hourly,
        json!({
            "bigQuery": { "projectId": "my-project", "tablesToBackup": [{ "datasetName": "shop", "tables": ["orders"] }] },
            "backupStorage": { "uri": "s3://my-backups/bq" },
            "labels": { "cadence": "hourly" },
            "ttlDays": 7
        })
    );
}

#[test]
fn an_empty_file_has_no_schedules() {
    assert!(parse("").unwrap().is_empty());
    assert!(parse("# nothing scheduled yet\n").unwrap().is_empty());
}

#[test]
fn names_are_required_checked_and_unique() {
    assert_problem(
        "[[schedule]]\ncron = \"* * * * *\"\nkind = \"backup\"\n",
        "schedule[0].name",
        "is required",
    );
    assert_problem(
        &backup_schedule("").replace("\"nightly\"", "\"Nightly Sales\""),
        "schedule[0].name",
        "not a schedule name",
    );
    assert_problem(
        &backup_schedule("").replace("\"nightly\"", "\"-nightly\""),
        "schedule[0].name",
        "not a schedule name",
    );
    assert_problem(
        &backup_schedule("").replace("\"nightly\"", &format!("\"{}\"", "a".repeat(64))),
        "schedule[0].name",
        "not a schedule name",
    );
    assert_problem(
        &backup_schedule("").replace("\"nightly\"", "7"),
        "schedule[0].name",
        "must be a string",
    );
    let twice = format!("{}{}", backup_schedule(""), backup_schedule(""));
    assert_problem(&twice, "schedule[1].name", "also the name of schedule[0]");
}

#[test]
fn every_bad_field_is_named_with_its_schedule() {
    let bad = r#"
[[schedule]]
name = "nightly"
cron = "61 2 * * *"
timezone = "Europe/Atlantis"
kind = "snapshot"
enabled = "yes"
colour = "blue"
request = '{}'
"#;
    let found = problems(bad);
    for (field, needle) in [
        ("schedule[\"nightly\"].cron", "not a valid cron expression"),
        ("schedule[\"nightly\"].timezone", "IANA"),
        ("schedule[\"nightly\"].kind", "\"backup\" or \"restore\""),
        ("schedule[\"nightly\"].enabled", "true or false"),
        ("schedule[\"nightly\"].colour", "unknown key"),
    ] {
        assert!(
            found
                .iter()
                .any(|p| p.starts_with(&format!("{field}: ")) && p.contains(needle)),
            "{field} {needle:?} missing from {found:#?}"
        );
    }
}

#[test]
fn missing_fields_are_required() {
    let found = problems("[[schedule]]\nname = \"bare\"\n");
    for field in ["cron", "kind", "request"] {
        let prefix = format!("schedule[\"bare\"].{field}: is required");
        assert!(
            found.iter().any(|p| p.starts_with(&prefix)),
            "{prefix} missing from {found:#?}"
        );
    }
}

#[test]
fn cron_must_have_five_or_six_fields_and_match_some_day() {
    assert_problem(
        &backup_schedule("").replace("30 2 * * *", "* * * *"),
        "schedule[\"nightly\"].cron",
        "has 4 fields",
    );
    assert_problem(
        &backup_schedule("").replace("30 2 * * *", "0 0 30 2 *"),
        "schedule[\"nightly\"].cron",
        "never matches",
    );
    assert_problem(
        &backup_schedule("").replace("\"30 2 * * *\"", "30"),
        "schedule[\"nightly\"].cron",
        "must be a string",
    );
}

#[test]
fn the_request_is_checked_as_the_api_checks_it() {
    // A field inside the request is named by its JSON path under the schedule.
    let bad_uri = backup_schedule("").replace("gs://my-backups/bigquery", "ftp://nowhere");
    assert_problem(
        &bad_uri,
        "schedule[\"nightly\"].request.backupStorage.uri",
        "",
    );
    let bad_format = backup_schedule("").replace("PARQUET", "XLSX");
    assert_problem(
        &bad_format,
        "schedule[\"nightly\"].request.backupStorage.exportOptions.format",
        "",
    );
    let unknown_field = backup_schedule("").replace("\"bigQuery\"", "\"bigQuerry\"");
    assert_problem(
        &unknown_field,
        "schedule[\"nightly\"].request.bigQuerry",
        "unknown field",
    );
    let not_json = backup_schedule("").replace(BACKUP, "{ nope");
    assert_problem(&not_json, "schedule[\"nightly\"].request", "");
    // A restore request goes through the restore validation.
    let restore = format!(
        "[[schedule]]\nname = \"dev\"\ncron = \"0 6 * * *\"\nkind = \"restore\"\nrequest = '''{}'''\n",
        RESTORE.replace("\"latest\"", "\"yesterday\"")
    );
    assert_problem(&restore, "schedule[\"dev\"].request.backupId", "");
    // The same body as a backup is refused by the backup parser.
    let as_backup = restore.replace("\"restore\"", "\"backup\"");
    assert_problem(&as_backup, "schedule[\"dev\"].request.restoreStorage", "");
}

#[test]
fn requests_that_make_no_sense_on_a_schedule_are_refused() {
    for (key, value, needle) in [
        ("wait", "true", "never waits"),
        ("dryRun", "true", "dry run"),
        ("asOf", "\"2026-03-19T00:00:00Z\"", "time-travel"),
        (
            "backupTime",
            "{ \"localDateTime\": \"2026-03-19T00:00:00\" }",
            "time-travel",
        ),
    ] {
        let body = BACKUP.replacen('{', &format!("{{ \"{key}\": {value},"), 1);
        let text = backup_schedule("").replace(BACKUP, &body);
        assert_problem(
            &text,
            &format!("schedule[\"nightly\"].request.{key}"),
            needle,
        );
    }
    let restore = format!(
        "[[schedule]]\nname = \"dev\"\ncron = \"0 6 * * *\"\nkind = \"restore\"\nrequest = '''{}'''\n",
        RESTORE.replacen('{', "{ \"dryRun\": true,", 1)
    );
    assert_problem(&restore, "schedule[\"dev\"].request.dryRun", "dry run");
}

#[test]
fn request_and_request_file_are_exclusive_and_the_file_must_exist() {
    assert_problem(
        &backup_schedule("request_file = \"other.json\""),
        "schedule[\"nightly\"].request_file",
        "not together with request",
    );
    let missing = backup_schedule("").replace(
        &format!("request = '''{BACKUP}'''"),
        "request_file = \"gone.json\"",
    );
    assert_problem(
        &missing,
        "schedule[\"nightly\"].request_file",
        "cannot read /nonexistent/gone.json",
    );
    let number = backup_schedule("").replace(&format!("'''{BACKUP}'''"), "3");
    assert_problem(&number, "schedule[\"nightly\"].request", "JSON text");
}

#[test]
fn file_level_problems_are_named() {
    assert_problem("[[schedule]\nname = 1", "file", "not valid TOML");
    assert_problem("schedule = \"nightly\"\n", "schedule", "[[schedule]]");
    assert_problem(
        &format!("timezone = \"UTC\"\n{}", backup_schedule("")),
        "timezone",
        "unknown key",
    );
}

#[test]
fn every_problem_is_reported_at_once() {
    let text = format!(
        "{}[[schedule]]\nname = \"second\"\ncron = \"bad\"\nkind = \"backup\"\nrequest = '{{}}'\n",
        backup_schedule("").replace("30 2", "99 2")
    );
    let found = problems(&text);
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("schedule[\"nightly\"].cron"))
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("schedule[\"second\"].cron"))
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with("schedule[\"second\"].request.bigQuery.projectId")),
        "{found:#?}"
    );
}

#[test]
fn loading_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("schedules.toml");
    std::fs::write(&path, backup_schedule("").replace("30 2", "99 2")).unwrap();
    let err = load_schedule_file(&path, now()).unwrap_err();
    assert_eq!(err.kind(), crate::ErrorKind::InvalidInput);
    assert!(err.message().contains(&path.display().to_string()), "{err}");
    assert_eq!(err.details()[0].field, "schedule[\"nightly\"].cron");

    let missing = load_schedule_file(&dir.path().join("none.toml"), now()).unwrap_err();
    assert_eq!(missing.details()[0].field, "BQB_SCHEDULE_FILE");
    assert!(missing.to_string().contains("none.toml"), "{missing}");
}
