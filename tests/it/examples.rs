//! `examples/`: every request file there is one the service accepts — parsed and validated with
//! the same library calls the handlers make — and together they show every format, every
//! compression and every store. Then a running service plans each one as a dry run against the
//! BigQuery emulator — backups on datasets created for them, restores from real backups of those
//! datasets in every store (and a Java-layout backup for the example that restores one) — and the
//! planned tables must be exactly the ones the request selects.
//!
//! The directory decides what a file is: `backup/` and `restore/` hold requests, `pubsub/` push
//! envelopes (`backup-*` / `restore-*` by the request inside), `java-compat/` the Java service's
//! requests (`backup_*` / `restore_*`); `schedules.toml` at the top is a schedule file, loaded
//! by the service's own loader. Anything else under `examples/` fails the test.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use bq_backup::backup::validate_backup_request;
use bq_backup::domain::{
    BackupSelector, BackupSpec, RestoreSpec, StorageScheme, WriteDisposition, parse_backup_request,
    parse_push_envelope, parse_restore_request,
};
use bq_backup::formats::{Compression, Format};
use bq_backup::schedule::{ScheduleKind, load_schedule_file};
use chrono::{DateTime, Utc};
use serde_json::Value;

mod dry_runs;

/// "Now" for validation: the snapshot examples (`asOf`, `backupTime`) name times within BigQuery's
/// 7-day time-travel window before it.
const NOW: &str = "2026-11-23T12:00:00Z";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RequestKind {
    Backup,
    Restore,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Request(RequestKind),
    /// A Pub/Sub push envelope around a request of this kind.
    Envelope(RequestKind),
    /// A schedule file (`BQB_SCHEDULE_FILE`).
    Schedules,
}

struct Example {
    /// Relative to `examples/`, with `/` separators: `backup/avro-gcs.json`.
    name: String,
    kind: Kind,
    body: Vec<u8>,
}

/// The example schedule file, at the top of `examples/`.
const SCHEDULES: &str = "schedules.toml";

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples")
}

/// What a file under `examples/` is, from its directory (and, where one directory holds both
/// kinds, its name); `None` for a file that has no place there.
fn kind_of(name: &str) -> Option<Kind> {
    if name == SCHEDULES {
        return Some(Kind::Schedules);
    }
    let (dir, file) = name.split_once('/')?;
    if file.contains('/') || !file.ends_with(".json") {
        return None;
    }
    let by_prefix = |backup: &str, restore: &str| {
        if file.starts_with(backup) {
            Some(RequestKind::Backup)
        } else if file.starts_with(restore) {
            Some(RequestKind::Restore)
        } else {
            None
        }
    };
    match dir {
        "backup" => Some(Kind::Request(RequestKind::Backup)),
        "restore" => Some(Kind::Request(RequestKind::Restore)),
        "pubsub" => by_prefix("backup-", "restore-").map(Kind::Envelope),
        "java-compat" => by_prefix("backup_", "restore_").map(Kind::Request),
        _ => None,
    }
}

/// Every file under `examples/` except its README, sorted. Panics listing every file that is
/// not a recognised example.
fn examples() -> Vec<Example> {
    fn walk(dir: &Path, root: &Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                walk(&path, root, out);
            } else {
                let rel = path.strip_prefix(root).expect("under examples/");
                out.push(rel.to_string_lossy().replace('\\', "/"));
            }
        }
    }
    let root = examples_dir();
    let mut names = Vec::new();
    walk(&root, &root, &mut names);
    names.sort();
    names.retain(|n| n != "README.md");

    let unknown: Vec<&String> = names.iter().filter(|n| kind_of(n).is_none()).collect();
    assert!(
        unknown.is_empty(),
        "files under examples/ that are no backup, restore or Pub/Sub envelope example \
         (backup/*.json, restore/*.json, pubsub/{{backup,restore}}-*.json, \
         java-compat/{{backup,restore}}_*.json) nor {SCHEDULES}: {unknown:?}"
    );
    names
        .into_iter()
        .map(|name| Example {
            body: std::fs::read(root.join(&name)).unwrap_or_else(|e| panic!("{name}: {e}")),
            kind: kind_of(&name).expect("checked above"),
            name,
        })
        .collect()
}

fn now() -> DateTime<Utc> {
    NOW.parse().expect("a valid time")
}

fn check_backup(
    body: &[u8],
    now: DateTime<Utc>,
) -> Result<(BackupSpec, Format, Compression), String> {
    let request = parse_backup_request(body).map_err(|e| format!("{}: {}", e.field, e.message))?;
    let order = validate_backup_request(request, now).map_err(|e| {
        let details: Vec<String> = e
            .details()
            .iter()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect();
        format!("{e} {details:?}")
    })?;
    Ok((order.spec, order.encode.format, order.encode.compression))
}

fn check_restore(body: &[u8]) -> Result<RestoreSpec, String> {
    let request = parse_restore_request(body).map_err(|e| format!("{}: {}", e.field, e.message))?;
    let spec = request.validate().map_err(|errors| {
        let details: Vec<String> = errors
            .iter()
            .map(|d| format!("{}: {}", d.field, d.message))
            .collect();
        format!("{details:?}")
    })?;
    // The restore's format, when given, is checked by the formats module at planning time.
    if let Some(format) = &spec.format {
        format
            .parse::<Format>()
            .map_err(|e| format!("{}: {e}", spec.format_field))?;
    }
    Ok(spec)
}

/// What the examples show, together.
#[derive(Default)]
struct Coverage {
    formats: BTreeSet<&'static str>,
    compressions: BTreeSet<&'static str>,
    backup_stores: BTreeSet<&'static str>,
    restore_stores: BTreeSet<&'static str>,
    envelopes: BTreeSet<&'static str>,
    dispositions: BTreeSet<&'static str>,
    selectors: BTreeSet<&'static str>,
}

impl Coverage {
    fn backup(&mut self, spec: &BackupSpec, format: Format, compression: Compression) {
        self.formats.insert(format.as_str());
        self.compressions.insert(compression.as_str());
        self.backup_stores.insert(spec.storage.scheme().as_str());
    }

    fn restore(&mut self, spec: &RestoreSpec) {
        self.restore_stores.insert(spec.storage.scheme().as_str());
        self.dispositions.insert(spec.write_disposition.as_str());
        self.selectors.insert(match spec.backup {
            BackupSelector::Latest => "latest",
            BackupSelector::Id(_) => "id",
        });
    }
}

/// Checks one example; what it covers goes into `coverage`.
fn check_example(example: &Example, coverage: &mut Coverage) -> Result<(), String> {
    let file = example.name.rsplit('/').next().unwrap_or_default();
    match example.kind {
        Kind::Request(RequestKind::Backup) => {
            let (spec, format, compression) = check_backup(&example.body, now())?;
            // A file named after a switch must set it.
            if file == "dry-run.json" && !spec.dry_run {
                return Err("dry-run.json does not set dryRun".into());
            }
            if file == "wait.json" && !spec.wait {
                return Err("wait.json does not set wait".into());
            }
            coverage.backup(&spec, format, compression);
        }
        Kind::Request(RequestKind::Restore) => {
            let spec = check_restore(&example.body)?;
            if file == "dry-run.json" && !spec.dry_run {
                return Err("dry-run.json does not set dryRun".into());
            }
            if file == "wait.json" && !spec.wait {
                return Err("wait.json does not set wait".into());
            }
            coverage.restore(&spec);
        }
        Kind::Schedules => {
            // Loaded as the service loads BQB_SCHEDULE_FILE: request files relative to it.
            let schedules = load_schedule_file(&examples_dir().join(&example.name), now())
                .map_err(|e| {
                    let details: Vec<String> = e
                        .details()
                        .iter()
                        .map(|d| format!("{}: {}", d.field, d.message))
                        .collect();
                    format!("{e} {details:?}")
                })?;
            let kinds: BTreeSet<&str> = schedules.iter().map(|s| s.kind.as_str()).collect();
            if kinds != BTreeSet::from(["backup", "restore"]) {
                return Err(format!("shows only {kinds:?} schedules"));
            }
            if schedules.iter().all(|s| s.enabled) {
                return Err("shows no disabled schedule".into());
            }
            for schedule in &schedules {
                match schedule.kind {
                    ScheduleKind::Backup => {
                        let (spec, format, compression) = check_backup(&schedule.request, now())
                            .map_err(|e| format!("{}: {e}", schedule.name))?;
                        coverage.backup(&spec, format, compression);
                    }
                    ScheduleKind::Restore => {
                        let spec = check_restore(&schedule.request)
                            .map_err(|e| format!("{}: {e}", schedule.name))?;
                        coverage.restore(&spec);
                    }
                }
            }
        }
        Kind::Envelope(inner) => {
            let message = parse_push_envelope(&example.body).map_err(|errors| {
                let details: Vec<String> = errors
                    .iter()
                    .map(|d| format!("{}: {}", d.field, d.message))
                    .collect();
                format!("not a valid push envelope: {details:?}")
            })?;
            match inner {
                RequestKind::Backup => {
                    let (spec, format, compression) = check_backup(&message.data, now())
                        .map_err(|e| format!("message.data: {e}"))?;
                    coverage.backup(&spec, format, compression);
                    coverage.envelopes.insert("backup");
                }
                RequestKind::Restore => {
                    let spec =
                        check_restore(&message.data).map_err(|e| format!("message.data: {e}"))?;
                    coverage.restore(&spec);
                    coverage.envelopes.insert("restore");
                }
            }
        }
    }
    Ok(())
}

#[test]
fn every_example_is_a_request_the_service_accepts() {
    let examples = examples();
    let mut coverage = Coverage::default();
    let failures: Vec<String> = examples
        .iter()
        .filter_map(|e| {
            check_example(e, &mut coverage)
                .err()
                .map(|why| format!("{}: {why}", e.name))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "examples the service would refuse:\n{}",
        failures.join("\n")
    );

    let per_kind = |kind: Kind| examples.iter().filter(|e| e.kind == kind).count();
    assert!(per_kind(Kind::Request(RequestKind::Backup)) >= 10);
    assert!(per_kind(Kind::Request(RequestKind::Restore)) >= 10);

    let all = |names: &[&'static str]| names.iter().copied().collect::<BTreeSet<_>>();
    let formats: Vec<&'static str> = Format::ALL.iter().map(|f| f.as_str()).collect();
    assert_eq!(coverage.formats, all(&formats), "formats shown");
    let compressions: Vec<&'static str> = [
        Compression::None,
        Compression::Gzip,
        Compression::Deflate,
        Compression::Snappy,
        Compression::Zstd,
    ]
    .iter()
    .map(|c| c.as_str())
    .collect();
    assert_eq!(
        coverage.compressions,
        all(&compressions),
        "compressions shown"
    );
    let stores = [
        StorageScheme::Gs,
        StorageScheme::S3,
        StorageScheme::Az,
        StorageScheme::File,
    ]
    .map(StorageScheme::as_str);
    assert_eq!(coverage.backup_stores, all(&stores), "stores backed up to");
    assert_eq!(
        coverage.restore_stores,
        all(&stores),
        "stores restored from"
    );
    assert_eq!(coverage.envelopes, all(&["backup", "restore"]), "envelopes");
    let dispositions = [
        WriteDisposition::WriteEmpty,
        WriteDisposition::WriteTruncate,
        WriteDisposition::WriteAppend,
    ]
    .map(WriteDisposition::as_str);
    assert_eq!(
        coverage.dispositions,
        all(&dispositions),
        "write dispositions"
    );
    assert_eq!(coverage.selectors, all(&["id", "latest"]), "backup choices");
}

#[test]
fn the_examples_readme_lists_every_example() {
    let readme = std::fs::read_to_string(examples_dir().join("README.md"))
        .expect("examples/README.md exists");
    let missing: Vec<String> = examples()
        .into_iter()
        .map(|e| e.name)
        .filter(|name| !readme.contains(&format!("`{name}`")))
        .collect();
    assert!(
        missing.is_empty(),
        "examples/README.md does not list: {missing:?}"
    );
}

#[test]
fn files_outside_the_known_kinds_are_not_examples() {
    for name in [
        "notes.txt",
        "backup/notes.txt",
        "backup/nested/avro.json",
        "other/avro.json",
        "pubsub/envelope.json",
        "java-compat/request.json",
    ] {
        assert_eq!(kind_of(name), None, "{name}");
    }
    assert_eq!(
        kind_of("pubsub/restore-envelope.json"),
        Some(Kind::Envelope(RequestKind::Restore))
    );
    assert_eq!(
        kind_of("java-compat/backup_request.json"),
        Some(Kind::Request(RequestKind::Backup))
    );
    assert_eq!(kind_of("schedules.toml"), Some(Kind::Schedules));
    for name in ["other.toml", "backup/schedules.toml"] {
        assert_eq!(kind_of(name), None, "{name}");
    }
}

/// The request bodies of the examples of one kind (envelopes unpacked), by example name.
fn requests_of(kind: RequestKind) -> Vec<(String, Value)> {
    examples()
        .into_iter()
        .filter_map(|example| {
            let body = match example.kind {
                Kind::Request(k) if k == kind => example.body,
                Kind::Envelope(k) if k == kind => {
                    parse_push_envelope(&example.body)
                        .expect("a valid envelope")
                        .data
                }
                _ => return None,
            };
            let body: Value = serde_json::from_slice(&body).expect("JSON");
            Some((example.name, body))
        })
        .collect()
}
