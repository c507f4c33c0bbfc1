//! Settings: read once at start from the environment and an optional TOML file, validated as a
//! whole (every problem is reported, each naming its variable), then handed out as typed values.
//!
//! Each module declares its own settings beside its code, in its `settings.rs`: one [`Variable`]
//! per environment variable (name, default as documented, meaning), the defaults as named
//! constants, and a settings struct whose `from_source` reads every value through a `Reader`
//! by its `Variable` — so a variable's name is written once, and what is documented is what is
//! read. What they are made of (`Variable`, `Source`, `Reader`, `Problem`, `Secret`) is in
//! [`crate::variables`], below every module; this file, above every module, holds:
//!
//! - [`VARIABLES`]: the one registry of every module's variables, which drives that check, the
//!   file keys, `bq-backup config` and the configuration table in docs/configuration.md ([`settings_markdown`]);
//! - [`Settings`]: the aggregate of the modules' settings.
//!
//! | settings | variables and type |
//! |---|---|
//! | `settings.server` | [`crate::app::ServerSettings`] (`src/app/settings.rs`) |
//! | `settings.log` | [`crate::telemetry::LogSettings`] (`src/telemetry/settings.rs`) |
//! | `settings.bigquery` | [`crate::bigquery::BigQuerySettings`] (`src/bigquery/settings.rs`) |
//! | `settings.storage` | [`crate::storage::StorageSettings`] (`src/storage/settings.rs`) |
//! | `settings.max_parallel_tables` | `src/exec/settings.rs` |
//! | `settings.jobs` | [`crate::jobs::JobSettings`] (`src/jobs/settings.rs`) |
//! | `settings.auth` | [`AuthSettings`] (`src/api/auth/settings.rs`; `api` is private, so re-exported here) |
//! | `settings.schedule` | [`crate::schedule::ScheduleSettings`] (`src/schedule/settings.rs`) |
//!
//! The aggregate is the one place that knows every module, so it sits above them all (beside
//! `app` and the CLI); nothing but the entry points uses it, and each module is handed its own
//! part (`StorageConfig::from_settings(&settings.storage)`, [`Settings::engine`]).

use std::fmt;

use crate::api::auth::settings as auth;
use crate::app::ServerSettings;
use crate::app::settings as server;
use crate::backup::shard::ShardSettings;
use crate::backup::shard::settings as shards;
use crate::bigquery::BigQuerySettings;
use crate::bigquery::settings as bigquery;
use crate::encryption::settings as encryption;
use crate::engine::EngineSettings;
use crate::exec::settings as exec;
use crate::jobs::JobSettings;
use crate::jobs::settings as jobs;
use crate::schedule::ScheduleSettings;
use crate::schedule::settings as schedule;
use crate::storage::StorageSettings;
use crate::storage::settings as storage;
use crate::telemetry::LogSettings;
use crate::telemetry::settings as log;
pub use crate::variables::{COMMAND_VARIABLES, Secret, Variable};
use crate::variables::{CONFIG_FILE, Problem, Source, TEST_PREFIX};

/// `api` is private; its settings types are named here, beside the aggregate that holds them.
pub use crate::api::auth::{AuthMode, AuthSettings};

/// Every variable of every module, each once, in the order of the configuration table.
///
/// The order is the table's (users read it top to bottom: listening, logging, clouds, limits,
/// jobs, auth), not the modules'; a test checks that every variable a module reads is here, once,
/// and that nothing here goes unread.
pub static VARIABLES: &[&Variable] = &[
    &server::PORT,
    &server::HOST,
    &CONFIG_FILE,
    &log::LOG_FORMAT,
    &log::LOG_LEVEL,
    &bigquery::PROJECT_ID,
    &bigquery::ENDPOINT,
    &bigquery::STORAGE_ENDPOINT,
    &bigquery::GOOGLE_ANONYMOUS,
    &storage::GCS_EMULATOR_HOST,
    &storage::S3_ENDPOINT,
    &storage::S3_ALLOW_HTTP,
    &storage::AZURE_USE_EMULATOR,
    &storage::AZURITE_URL,
    &server::REQUEST_TIMEOUT_SECS,
    &server::MAX_BODY_BYTES,
    &server::SHUTDOWN_GRACE_SECS,
    &exec::MAX_PARALLEL_TABLES,
    &bigquery::READ_STREAMS_PER_TABLE,
    &bigquery::LOAD_FILES_PER_TABLE,
    &jobs::STATE_URI,
    &storage::ALLOWED_STORAGE,
    &encryption::RECIPIENTS,
    &encryption::IDENTITIES,
    &encryption::SECRET_MANAGER_ENDPOINT,
    &shards::LAUNCHER,
    &shards::CLOUD_RUN_JOB,
    &shards::CLOUD_RUN_ENDPOINT,
    &shards::KUBERNETES_ENDPOINT,
    &shards::KUBERNETES_NAMESPACE,
    &jobs::MAX_RUNNING_JOBS,
    &jobs::MAX_QUEUED_JOBS,
    &jobs::HEARTBEAT_SECS,
    &jobs::RETENTION_DAYS,
    &jobs::DEFAULT_TTL_DAYS,
    &jobs::PRUNE_KEEP_LAST,
    &jobs::PRUNE_KEEP_DAILY,
    &jobs::PRUNE_KEEP_WEEKLY,
    &jobs::PRUNE_KEEP_MONTHLY,
    &auth::AUTH_MODE,
    &auth::BEARER_TOKEN,
    &auth::AUDIENCE,
    &auth::ALLOWED_EMAILS,
    &auth::JWKS_URL,
    &auth::ISSUERS,
    &schedule::SCHEDULE_FILE,
];

/// Every problem found in the configuration, each naming its setting.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration:")?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Validated settings: each module's, as that module declares them. The only secret it holds
/// (the bearer token) is redacted from `Debug`; Google, AWS and Azure credentials stay with the
/// libraries that read them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub server: ServerSettings,
    pub log: LogSettings,
    pub bigquery: BigQuerySettings,
    pub storage: StorageSettings,
    /// Tables backed up or restored at once (`exec` declares it).
    pub max_parallel_tables: usize,
    pub jobs: JobSettings,
    pub auth: AuthSettings,
    pub schedule: ScheduleSettings,
    pub shards: ShardSettings,
}

impl Settings {
    /// The parts the engine is built from.
    pub fn engine(&self) -> EngineSettings {
        EngineSettings {
            bigquery: self.bigquery.clone(),
            jobs: self.jobs.clone(),
            max_parallel_tables: self.max_parallel_tables,
            shards: self.shards.clone(),
        }
    }

    /// Reads the process environment (and `BQB_CONFIG_FILE` when set).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads settings from the given variables (and the file they name); used by tests.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let (source, mut problems) = Source::new(vars.into_iter().collect(), VARIABLES);
        let settings = Self::from_source(&source)
            .map_err(|p| problems.extend(p))
            .ok();
        if source.unknown {
            let known: Vec<&str> = VARIABLES.iter().map(|v| v.name).collect();
            problems.push(Problem(format!(
                "known settings: {} (variables starting with {TEST_PREFIX} are ignored)",
                known.join(", ")
            )));
        }
        match settings {
            Some(settings) if problems.is_empty() => Ok(settings),
            _ => Err(ConfigError {
                problems: problems.iter().map(Problem::to_string).collect(),
            }),
        }
    }

    /// Settings from these variables alone (tests).
    #[cfg(test)]
    pub(crate) fn from_pairs(pairs: &[(&str, &str)]) -> Result<Self, ConfigError> {
        Self::from_vars(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    /// The settings for a process with an empty environment.
    pub fn defaults() -> Self {
        // The empty environment is valid by construction (every default parses).
        Self::from_vars(std::iter::empty()).expect("defaults are valid")
    }

    /// Every module's settings, or every problem any of them found.
    fn from_source(source: &Source) -> Result<Self, Vec<Problem>> {
        fn part<T>(read: Result<T, Vec<Problem>>, problems: &mut Vec<Problem>) -> Option<T> {
            read.map_err(|p| problems.extend(p)).ok()
        }
        let mut problems = Vec::new();
        let server = part(ServerSettings::from_source(source), &mut problems);
        let log = part(LogSettings::from_source(source), &mut problems);
        let bigquery = part(BigQuerySettings::from_source(source), &mut problems);
        let storage = part(StorageSettings::from_source(source), &mut problems);
        let max_parallel_tables = part(exec::max_parallel_tables(source), &mut problems);
        let jobs = part(JobSettings::from_source(source), &mut problems);
        let auth = part(AuthSettings::from_source(source), &mut problems);
        let schedule = part(ScheduleSettings::from_source(source), &mut problems);
        let shards = part(ShardSettings::from_source(source), &mut problems);
        let (
            Some(server),
            Some(log),
            Some(bigquery),
            Some(storage),
            Some(max_parallel_tables),
            Some(jobs),
            Some(auth),
            Some(schedule),
            Some(shards),
        ) = (
            server,
            log,
            bigquery,
            storage,
            max_parallel_tables,
            jobs,
            auth,
            schedule,
            shards,
        )
        else {
            return Err(problems);
        };
        Ok(Self {
            server,
            log,
            bigquery,
            storage,
            max_parallel_tables,
            jobs,
            auth,
            schedule,
            shards,
        })
    }
}

/// The configuration table as Markdown (for `bq-backup config` and docs/configuration.md, which
/// the integration test `config` keeps equal to it).
pub fn settings_markdown() -> String {
    let mut out = String::from("| variable | file key | default | meaning |\n|---|---|---|---|\n");
    for v in VARIABLES {
        let key = v
            .file_key()
            .map_or_else(|| "—".to_string(), |key| format!("`{key}`"));
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            v.name, key, v.default, v.doc
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::settings::DEFAULT_PORT;
    use crate::bigquery::settings::DEFAULT_BIGQUERY_ENDPOINT;
    use crate::exec::settings::DEFAULT_MAX_PARALLEL_TABLES;
    use crate::telemetry::LogFormat;

    #[test]
    fn an_empty_environment_gives_the_documented_defaults() {
        let s = Settings::defaults();
        assert_eq!(s.server.port, DEFAULT_PORT);
        assert_eq!(s.bigquery.endpoint, DEFAULT_BIGQUERY_ENDPOINT);
        assert_eq!(s.max_parallel_tables, DEFAULT_MAX_PARALLEL_TABLES);
        assert!(!s.bigquery.anonymous);
        assert_eq!(s.log.format, LogFormat::Auto);
    }

    #[test]
    fn every_bad_setting_is_reported_by_name_at_once() {
        let err = Settings::from_pairs(&[
            ("PORT", "eighty"),
            ("BQB_MAX_PARALLEL_TABLES", "0"),
            ("BQB_BIGQUERY_ENDPOINT", "ftp://x"),
            ("BQB_LOG_FORMAT", "xml"),
            ("BQB_TYPO", "1"),
        ])
        .unwrap_err();
        let text = err.to_string();
        for name in [
            "PORT",
            "BQB_MAX_PARALLEL_TABLES",
            "BQB_BIGQUERY_ENDPOINT",
            "BQB_LOG_FORMAT",
            "BQB_TYPO: unknown setting",
        ] {
            assert!(text.contains(name), "{name} missing from: {text}");
        }
        assert_eq!(
            err.problems.len(),
            6,
            "five problems and the list of known settings"
        );
        assert!(
            err.problems[5].starts_with("known settings: PORT, BQB_HOST, BQB_CONFIG_FILE,"),
            "the known names come last: {text}"
        );
    }

    #[test]
    fn test_harness_variables_are_not_settings() {
        let s = Settings::from_pairs(&[("BQB_TEST_SERVICES", "1"), ("HOME", "/root")]).unwrap();
        assert_eq!(s, Settings::defaults());
    }

    #[test]
    fn the_file_is_read_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bq-backup.toml");
        std::fs::write(
            &path,
            "port = 9000\nmax_parallel_tables = 2\nbigquery_endpoint = \"http://127.0.0.1:1\"\n\
             prune_keep_weekly = 3\nazurite_blob_storage_url = \"http://127.0.0.1:2\"\n",
        )
        .unwrap();
        let s = Settings::from_pairs(&[
            ("BQB_CONFIG_FILE", path.to_str().unwrap()),
            ("PORT", "9100"),
        ])
        .unwrap();
        assert_eq!(s.server.port, 9100);
        assert_eq!(s.max_parallel_tables, 2);
        assert_eq!(s.bigquery.endpoint, "http://127.0.0.1:1");
        assert_eq!(
            s.jobs.prune_after_backup.and_then(|p| p.keep_weekly),
            Some(3)
        );
        assert_eq!(s.storage.azurite_url, "http://127.0.0.1:2");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "prot = 9000\nconfig_file = \"x.toml\"\n").unwrap();
        let err = Settings::from_pairs(&[("BQB_CONFIG_FILE", path.to_str().unwrap())]).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("unknown setting `prot`"), "{text}");
        assert!(
            text.contains("unknown setting `config_file`"),
            "the file cannot name another file: {text}"
        );
    }

    #[test]
    fn every_variable_is_registered_once_with_a_default_and_a_doc() {
        let mut names = std::collections::BTreeSet::new();
        for v in VARIABLES {
            assert!(names.insert(v.name), "{} is registered twice", v.name);
            assert!(
                !v.default.trim().is_empty(),
                "{} has no default text",
                v.name
            );
            assert!(!v.doc.trim().is_empty(), "{} has no doc", v.name);
            assert!(
                !v.doc.contains('|') && !v.doc.contains('\n') && !v.default.contains('|'),
                "{}: a table cell cannot hold `|` or a line break",
                v.name
            );
        }
        let keys: std::collections::BTreeSet<_> =
            VARIABLES.iter().filter_map(|v| v.file_key()).collect();
        assert_eq!(keys.len(), VARIABLES.len() - 1, "file keys are unique");
    }

    /// Reading the settings reads every variable (none is read only on some path), so the
    /// variables read with nothing set are every variable any module declares and reads.
    #[test]
    fn the_registry_holds_exactly_the_variables_the_modules_read() {
        let (source, problems) = Source::new(std::collections::BTreeMap::new(), VARIABLES);
        assert!(problems.is_empty());
        Settings::from_source(&source).expect("defaults are valid");
        let read = source.read.borrow();
        for variable in read.iter() {
            let registered = VARIABLES
                .iter()
                .filter(|v| std::ptr::eq(**v, *variable))
                .count();
            // Two modules declaring one name would show here too: only one of the two
            // statics can be the registered one.
            assert_eq!(
                registered, 1,
                "{} is read by a module but registered {registered} times",
                variable.name
            );
        }
        for variable in VARIABLES {
            assert!(
                read.iter().any(|v| std::ptr::eq(*v, *variable)),
                "{} is registered but no module reads it",
                variable.name
            );
        }
    }

    /// The documented default is the one in force: setting a variable to its documented
    /// default changes nothing. (Defaults in parentheses or `$VAR` describe being unset.)
    #[test]
    fn each_documented_default_is_the_default_in_force() {
        let defaults = Settings::defaults();
        let mut checked = 0;
        for v in VARIABLES {
            if v.default.starts_with('(') || v.default.starts_with('$') {
                continue;
            }
            let set = Settings::from_pairs(&[(v.name, v.default)])
                .unwrap_or_else(|e| panic!("{}={}: {e}", v.name, v.default));
            assert_eq!(set, defaults, "{}={} is not the default", v.name, v.default);
            checked += 1;
        }
        assert!(checked > 20, "only {checked} defaults were values");
    }

    #[test]
    fn a_variable_only_one_module_declares_is_known_and_a_near_miss_is_not() {
        let s = Settings::from_pairs(&[("BQB_PRUNE_KEEP_WEEKLY", "2")]).unwrap();
        assert_eq!(
            s.jobs.prune_after_backup.and_then(|p| p.keep_weekly),
            Some(2)
        );
        let err = Settings::from_pairs(&[("BQB_PRUNE_KEEP_YEARLY", "2")]).unwrap_err();
        assert_eq!(
            err.problems[0], "BQB_PRUNE_KEEP_YEARLY: unknown setting",
            "{err}"
        );
        assert!(err.problems[1].contains("BQB_PRUNE_KEEP_WEEKLY"), "{err}");
    }

    #[test]
    fn the_table_has_one_row_per_variable_in_registry_order() {
        let table = settings_markdown();
        let rows: Vec<&str> = table.lines().skip(2).collect();
        assert_eq!(rows.len(), VARIABLES.len());
        for (row, v) in rows.iter().zip(VARIABLES) {
            assert!(row.starts_with(&format!("| `{}` |", v.name)), "{row}");
        }
        assert!(table.contains("| `BQB_CONFIG_FILE` | — | `(none)` |"));
        assert!(table.contains("| `PORT` | `port` | `8080` |"));
    }
}
