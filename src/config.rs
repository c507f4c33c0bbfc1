//! Settings: read once at start from the environment and an optional TOML file, validated as a
//! whole (every problem is reported, each naming its setting), then handed out as typed values.
//!
//! Every setting is declared once in [`SETTINGS`]; that table drives parsing, the "unknown setting"
//! check, `bq-backup config` and the table in docs/configuration.md. Depends on nothing but `error`.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::domain::StorageAllowList;

/// Default HTTP port when `PORT` is unset (Cloud Run always sets it).
pub const DEFAULT_PORT: u16 = 8080;
pub const DEFAULT_BIGQUERY_ENDPOINT: &str = "https://bigquery.googleapis.com";
pub const DEFAULT_BIGQUERY_STORAGE_ENDPOINT: &str = "https://bigquerystorage.googleapis.com";
/// Cloud Run's longest request timeout: a `wait=true` backup may take that long.
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(3600);
pub const DEFAULT_MAX_BODY_BYTES: usize = 1024 * 1024;
/// Cloud Run sends SIGKILL about 10 s after SIGTERM; leave a margin to flush logs and job state.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(8);
pub const DEFAULT_MAX_PARALLEL_TABLES: usize = 4;
pub const DEFAULT_READ_STREAMS_PER_TABLE: usize = 4;
pub const DEFAULT_AZURITE_URL: &str = "http://127.0.0.1:10000";
/// Where job records live when `BQB_STATE_URI` is unset: fine for one instance, not for several.
pub const DEFAULT_STATE_URI: &str = "file:///tmp/bq-backup-state";
pub const DEFAULT_MAX_RUNNING_JOBS: usize = 2;
pub const DEFAULT_MAX_QUEUED_JOBS: usize = 16;
pub const DEFAULT_JOB_HEARTBEAT: Duration = Duration::from_secs(10);
pub const DEFAULT_JOB_RETENTION_DAYS: u64 = 30;
/// Pub/Sub keeps redelivering an unacknowledged message for up to 7 days: its idempotency record
/// must outlive that.
pub const MIN_JOB_RETENTION_DAYS: u64 = 7;
/// Google's signing keys for OIDC tokens (Cloud Scheduler, Pub/Sub push).
pub const DEFAULT_AUTH_JWKS_URL: &str = "https://www.googleapis.com/oauth2/v3/certs";
pub const DEFAULT_AUTH_ISSUERS: &str = "https://accounts.google.com,accounts.google.com";

/// Environment variables with this prefix belong to the test harness, not to the binary.
const TEST_PREFIX: &str = "BQB_TEST_";
/// Every other variable with this prefix must be a known setting.
const PREFIX: &str = "BQB_";

/// One documented setting: its environment name, its key in the config file, default and meaning.
pub struct SettingDoc {
    pub env: &'static str,
    pub default: &'static str,
    pub description: &'static str,
}

impl SettingDoc {
    /// The key in the TOML file: the env name in lower case without the `BQB_` prefix.
    pub fn file_key(&self) -> String {
        self.env
            .strip_prefix(PREFIX)
            .unwrap_or(self.env)
            .to_ascii_lowercase()
    }
}

pub const SETTINGS: &[SettingDoc] = &[
    SettingDoc {
        env: "PORT",
        default: "8080",
        description: "HTTP port of `bq-backup serve` (Cloud Run sets it).",
    },
    SettingDoc {
        env: "BQB_HOST",
        default: "0.0.0.0",
        description: "Address `serve` binds to.",
    },
    SettingDoc {
        env: "BQB_CONFIG_FILE",
        default: "(none)",
        description: "Optional TOML file holding any of these settings by their file key (env name in lower case without `BQB_`, e.g. `port`, `bigquery_endpoint`). The environment wins over the file. Env only.",
    },
    SettingDoc {
        env: "BQB_LOG_FORMAT",
        default: "auto",
        description: "`json` (Cloud Logging: `severity`, `message`, trace), `pretty`, or `auto` (pretty on a terminal, JSON otherwise).",
    },
    SettingDoc {
        env: "BQB_LOG_LEVEL",
        default: "info",
        description: "Log filter, `tracing` directive syntax (`info`, `bq_backup=debug,info`).",
    },
    SettingDoc {
        env: "BQB_PROJECT_ID",
        default: "$GOOGLE_CLOUD_PROJECT",
        description: "Default Google Cloud project: billing project for read sessions and jobs, readiness probe, trace ids in logs.",
    },
    SettingDoc {
        env: "BQB_BIGQUERY_ENDPOINT",
        default: DEFAULT_BIGQUERY_ENDPOINT,
        description: "BigQuery REST endpoint (without `/bigquery/v2`). Point it at an emulator for tests.",
    },
    SettingDoc {
        env: "BQB_BIGQUERY_STORAGE_ENDPOINT",
        default: DEFAULT_BIGQUERY_STORAGE_ENDPOINT,
        description: "BigQuery Storage Read/Write gRPC endpoint. `http://` means plaintext (loopback emulators only).",
    },
    SettingDoc {
        env: "BQB_GOOGLE_ANONYMOUS",
        default: "false",
        description: "Send no Google credentials (emulators). Otherwise Application Default Credentials: metadata server, `GOOGLE_APPLICATION_CREDENTIALS`, gcloud user credentials, workload identity federation.",
    },
    SettingDoc {
        env: "STORAGE_EMULATOR_HOST",
        default: "(none)",
        description: "When set, gs:// goes to this GCS emulator over HTTP without credentials.",
    },
    SettingDoc {
        env: "BQB_S3_ENDPOINT",
        default: "(AWS)",
        description: "S3-compatible endpoint for s3:// (MinIO, R2, moto); path-style requests when set. Credentials and region come from the standard `AWS_*` variables.",
    },
    SettingDoc {
        env: "BQB_S3_ALLOW_HTTP",
        default: "false",
        description: "Allow a plain-HTTP `BQB_S3_ENDPOINT`.",
    },
    SettingDoc {
        env: "BQB_AZURE_USE_EMULATOR",
        default: "false",
        description: "az:// goes to Azurite with its well-known development account. Otherwise the standard `AZURE_STORAGE_*` variables apply.",
    },
    SettingDoc {
        env: "AZURITE_BLOB_STORAGE_URL",
        default: DEFAULT_AZURITE_URL,
        description: "Azurite blob endpoint used when `BQB_AZURE_USE_EMULATOR=true`.",
    },
    SettingDoc {
        env: "BQB_REQUEST_TIMEOUT_SECS",
        default: "3600",
        description: "Longest an HTTP request may take (a `wait=true` backup included).",
    },
    SettingDoc {
        env: "BQB_MAX_BODY_BYTES",
        default: "1048576",
        description: "Largest accepted request body; larger gets 413.",
    },
    SettingDoc {
        env: "BQB_SHUTDOWN_GRACE_SECS",
        default: "8",
        description: "After SIGTERM/SIGINT, how long in-flight requests may finish before the process exits.",
    },
    SettingDoc {
        env: "BQB_MAX_PARALLEL_TABLES",
        default: "4",
        description: "Tables backed up or restored at once (a request may ask for fewer).",
    },
    SettingDoc {
        env: "BQB_READ_STREAMS_PER_TABLE",
        default: "4",
        description: "Storage Read API streams read in parallel per table.",
    },
    SettingDoc {
        env: "BQB_STATE_URI",
        default: DEFAULT_STATE_URI,
        description: "Where the service keeps job records (`jobs/{jobId}.json`), Pub/Sub idempotency records and schedule leases: any storage URI. Every instance of one service must share it (a `gs://` or `s3://` URI on Cloud Run and GKE) so that any instance answers for any job.",
    },
    SettingDoc {
        env: "BQB_ALLOWED_STORAGE",
        default: "(gs, s3, az: any bucket)",
        description: "The storage `serve` may read and write for its callers, as comma-separated URI prefixes matched on whole path segments with the bucket exact: `gs://my-bucket/backups,s3://*,file:///var/lib/bq-backup`. `SCHEME://*` = every bucket of a scheme; `memory://` = in-memory stores (tests). Unset: every gs://, s3:// and az:// bucket (IAM decides), no `file://` and no `memory://`. A `file://` entry must be an absolute directory. `BQB_STATE_URI` needs no entry. The CLI is confined only when this is set. See \"Storage confinement\".",
    },
    SettingDoc {
        env: "BQB_MAX_RUNNING_JOBS",
        default: "2",
        description: "Jobs (backups and restores) one instance runs at once; later ones wait as PENDING.",
    },
    SettingDoc {
        env: "BQB_MAX_QUEUED_JOBS",
        default: "16",
        description: "PENDING jobs one instance accepts beyond the running ones; past that a new job gets 429 with `Retry-After`.",
    },
    SettingDoc {
        env: "BQB_JOB_HEARTBEAT_SECS",
        default: "10",
        description: "How often a running job saves its progress and looks for a cancel request. A RUNNING job not saved for 6 heartbeats belongs to an instance that died and is reported FAILED.",
    },
    SettingDoc {
        env: "BQB_JOB_RETENTION_DAYS",
        default: "30",
        description: "Job records and Pub/Sub `messageId` records not written for this many days are deleted from the state store (at most hourly, after a job ends). At least 7: Pub/Sub redelivers for up to 7 days.",
    },
    SettingDoc {
        env: "BQB_DEFAULT_TTL_DAYS",
        default: "(none)",
        description: "`expiresAt` of a backup whose request has no `ttlDays`; unset = backups do not expire.",
    },
    SettingDoc {
        env: "BQB_PRUNE_KEEP_LAST",
        default: "(none)",
        description: "When any `BQB_PRUNE_KEEP_*` is set, every successful backup is followed by a prune of its repository with this keep policy (and expired backups go too): keep the N newest backups.",
    },
    SettingDoc {
        env: "BQB_PRUNE_KEEP_DAILY",
        default: "(none)",
        description: "Keep policy after each backup: the newest backup of each of the last N days that have one.",
    },
    SettingDoc {
        env: "BQB_PRUNE_KEEP_WEEKLY",
        default: "(none)",
        description: "Keep policy after each backup: the newest backup of each of the last N ISO weeks that have one.",
    },
    SettingDoc {
        env: "BQB_PRUNE_KEEP_MONTHLY",
        default: "(none)",
        description: "Keep policy after each backup: the newest backup of each of the last N months that have one.",
    },
    SettingDoc {
        env: "AUTH_MODE",
        default: "none",
        description: "Who may call the API (`/healthz` and `/readyz` stay open): `none`; `bearer` (an `Authorization: Bearer` token equal to `BQB_AUTH_BEARER_TOKEN`); `google-oidc` (a Google-signed ID token, as Cloud Scheduler and Pub/Sub push send, with the right audience from an allowed service account).",
    },
    SettingDoc {
        env: "BQB_AUTH_BEARER_TOKEN",
        default: "(none)",
        description: "The shared secret for `AUTH_MODE=bearer` (required then). Never logged.",
    },
    SettingDoc {
        env: "BQB_AUTH_AUDIENCE",
        default: "(none)",
        description: "Accepted `aud` values of OIDC tokens, comma separated (required for `google-oidc`): usually the service URL.",
    },
    SettingDoc {
        env: "BQB_AUTH_ALLOWED_EMAILS",
        default: "(none)",
        description: "Service-account emails allowed to call with `google-oidc`, comma separated (required then); the token's `email` must be verified.",
    },
    SettingDoc {
        env: "BQB_AUTH_JWKS_URL",
        default: DEFAULT_AUTH_JWKS_URL,
        description: "Where OIDC signing keys are fetched (a JWKS document).",
    },
    SettingDoc {
        env: "BQB_AUTH_ISSUERS",
        default: DEFAULT_AUTH_ISSUERS,
        description: "Accepted `iss` values of OIDC tokens, comma separated.",
    },
    SettingDoc {
        env: "BQB_SCHEDULE_FILE",
        default: "(none)",
        description: "A TOML file of schedules (cron expression, time zone, backup or restore request) the service runs itself, for hosts without Cloud Scheduler. With several replicas, one runs each tick.",
    },
];

/// Log output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Auto,
    Json,
    Pretty,
}

/// Validated settings. The only secret it holds (the bearer token) is redacted from `Debug`;
/// Google, AWS and Azure credentials stay with the libraries that read them.
#[derive(Debug, Clone)]
pub struct Settings {
    pub port: u16,
    pub host: IpAddr,
    pub log_format: LogFormat,
    pub log_level: String,
    pub project_id: Option<String>,
    pub bigquery: BigQuerySettings,
    pub storage: StorageSettings,
    pub request_timeout: Duration,
    pub max_body_bytes: usize,
    pub shutdown_grace: Duration,
    pub max_parallel_tables: usize,
    pub read_streams_per_table: usize,
    pub jobs: JobSettings,
    pub auth: AuthSettings,
    pub schedule_file: Option<PathBuf>,
}

/// How the service runs jobs and keeps their records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobSettings {
    pub state_uri: String,
    pub max_running: usize,
    pub max_queued: usize,
    pub heartbeat: Duration,
    pub default_ttl_days: Option<u32>,
    /// Job and idempotency records older than this are swept from the state store.
    pub retention: Duration,
    pub prune_after_backup: Option<PruneAfterBackup>,
}

/// The keep policy applied after each successful backup (`BQB_PRUNE_KEEP_*`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PruneAfterBackup {
    pub keep_last: Option<u32>,
    pub keep_daily: Option<u32>,
    pub keep_weekly: Option<u32>,
    pub keep_monthly: Option<u32>,
}

/// Who may call the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMode {
    None,
    Bearer,
    GoogleOidc,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthSettings {
    pub mode: AuthMode,
    pub bearer_token: Option<Secret>,
    pub audiences: Vec<String>,
    pub allowed_emails: Vec<String>,
    pub jwks_url: String,
    pub issuers: Vec<String>,
}

/// A value that must never reach a log: `Debug` prints `"***"`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("\"***\"")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigQuerySettings {
    pub endpoint: String,
    pub storage_endpoint: String,
    pub anonymous: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StorageSettings {
    /// `BQB_ALLOWED_STORAGE` as given; `None` when unset (each command applies its own default).
    pub allowed: Option<StorageAllowList>,
    pub gcs_emulator_host: Option<String>,
    pub s3_endpoint: Option<String>,
    pub s3_allow_http: bool,
    pub azure_use_emulator: bool,
    pub azurite_url: String,
}

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

impl Settings {
    /// Reads the process environment (and `BQB_CONFIG_FILE` when set).
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(std::env::vars())
    }

    /// Reads settings from the given variables (and the file they name); used by tests.
    pub fn from_vars(
        vars: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, ConfigError> {
        let env: BTreeMap<String, String> = vars.into_iter().collect();
        let mut problems = Vec::new();
        let mut raw = RawSettings::default();

        if let Some(path) = env.get("BQB_CONFIG_FILE").filter(|p| !p.is_empty()) {
            match read_file(&PathBuf::from(path)) {
                Ok(values) => raw.values.extend(values),
                Err(p) => problems.extend(p),
            }
        }
        for (name, value) in &env {
            if SETTINGS.iter().any(|s| s.env == name) {
                if name != "BQB_CONFIG_FILE" {
                    raw.values.insert(name.clone(), value.clone());
                }
            } else if name.starts_with(PREFIX) && !name.starts_with(TEST_PREFIX) {
                problems.push(format!("{name}: unknown setting"));
            }
        }
        let fallback_project = env.get("GOOGLE_CLOUD_PROJECT").cloned();
        let settings = raw.parse(fallback_project, &mut problems);
        if problems.iter().any(|p| p.ends_with(": unknown setting")) {
            problems.push(format!(
                "known settings: {} (variables starting with {TEST_PREFIX} are ignored)",
                known_names().join(", ")
            ));
        }
        if problems.is_empty() {
            Ok(settings)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The settings for a process with an empty environment.
    pub fn defaults() -> Self {
        // The empty environment is valid by construction (every default parses).
        Self::from_vars(std::iter::empty()).expect("defaults are valid")
    }
}

fn known_names() -> Vec<&'static str> {
    SETTINGS.iter().map(|s| s.env).collect()
}

/// Reads a TOML config file into env-named raw values, rejecting unknown keys.
fn read_file(path: &PathBuf) -> Result<BTreeMap<String, String>, Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        vec![format!(
            "BQB_CONFIG_FILE: cannot read {}: {e}",
            path.display()
        )]
    })?;
    let table: toml::Table = text.parse().map_err(|e| {
        vec![format!(
            "BQB_CONFIG_FILE: {} is not valid TOML: {e}",
            path.display()
        )]
    })?;
    let mut values = BTreeMap::new();
    let mut problems = Vec::new();
    for (key, value) in table {
        let Some(doc) = SETTINGS
            .iter()
            .find(|s| s.file_key() == key && s.env != "BQB_CONFIG_FILE")
        else {
            problems.push(format!("{}: unknown setting `{key}`", path.display()));
            continue;
        };
        let text = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            other => {
                problems.push(format!(
                    "{}: `{key}` must be a string, integer or boolean, got {}",
                    path.display(),
                    other.type_str()
                ));
                continue;
            }
        };
        values.insert(doc.env.to_string(), text);
    }
    if problems.is_empty() {
        Ok(values)
    } else {
        Err(problems)
    }
}

#[derive(Default)]
struct RawSettings {
    values: BTreeMap<String, String>,
}

impl RawSettings {
    fn get(&self, name: &str) -> Option<&str> {
        self.values
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.trim().is_empty())
    }

    fn parsed<T: std::str::FromStr>(&self, name: &str, default: T, problems: &mut Vec<String>) -> T
    where
        T::Err: fmt::Display,
    {
        match self.get(name) {
            None => default,
            Some(v) => v.trim().parse().unwrap_or_else(|e| {
                problems.push(format!("{name}: `{v}` is not valid: {e}"));
                default
            }),
        }
    }

    fn flag(&self, name: &str, problems: &mut Vec<String>) -> bool {
        match self.get(name).map(|v| v.trim().to_ascii_lowercase()) {
            None => false,
            Some(v) => match v.as_str() {
                "1" | "true" | "yes" | "on" => true,
                "0" | "false" | "no" | "off" => false,
                _ => {
                    problems.push(format!("{name}: `{v}` is not a boolean (true/false)"));
                    false
                }
            },
        }
    }

    fn positive(&self, name: &str, default: usize, problems: &mut Vec<String>) -> usize {
        let v = self.parsed(name, default, problems);
        if v == 0 {
            problems.push(format!("{name}: must be at least 1"));
            return default;
        }
        v
    }

    /// An optional positive number (unset = `None`).
    fn optional_positive(&self, name: &str, problems: &mut Vec<String>) -> Option<u32> {
        let v: u32 = match self.get(name)?.trim().parse() {
            Ok(v) => v,
            Err(e) => {
                problems.push(format!("{name}: `{}` is not valid: {e}", self.get(name)?));
                return None;
            }
        };
        if v == 0 {
            problems.push(format!("{name}: must be at least 1"));
            return None;
        }
        Some(v)
    }

    /// A comma-separated list (blank items dropped).
    fn list(&self, name: &str, default: &str) -> Vec<String> {
        self.get(name)
            .unwrap_or(default)
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(String::from)
            .collect()
    }

    fn jobs(&self, problems: &mut Vec<String>) -> JobSettings {
        let state_uri = self
            .get("BQB_STATE_URI")
            .unwrap_or(DEFAULT_STATE_URI)
            .trim()
            .to_string();
        if let Err(e) = crate::domain::StorageUri::parse(&state_uri) {
            problems.push(format!("BQB_STATE_URI: {e}"));
        }
        let keep = PruneAfterBackup {
            keep_last: self.optional_positive("BQB_PRUNE_KEEP_LAST", problems),
            keep_daily: self.optional_positive("BQB_PRUNE_KEEP_DAILY", problems),
            keep_weekly: self.optional_positive("BQB_PRUNE_KEEP_WEEKLY", problems),
            keep_monthly: self.optional_positive("BQB_PRUNE_KEEP_MONTHLY", problems),
        };
        JobSettings {
            state_uri,
            max_running: self.positive("BQB_MAX_RUNNING_JOBS", DEFAULT_MAX_RUNNING_JOBS, problems),
            max_queued: self.parsed("BQB_MAX_QUEUED_JOBS", DEFAULT_MAX_QUEUED_JOBS, problems),
            heartbeat: Duration::from_secs(u64::from(
                self.optional_positive("BQB_JOB_HEARTBEAT_SECS", problems)
                    .unwrap_or(DEFAULT_JOB_HEARTBEAT.as_secs() as u32),
            )),
            default_ttl_days: self.optional_positive("BQB_DEFAULT_TTL_DAYS", problems),
            retention: {
                let days: u64 = self.parsed(
                    "BQB_JOB_RETENTION_DAYS",
                    DEFAULT_JOB_RETENTION_DAYS,
                    problems,
                );
                if days < MIN_JOB_RETENTION_DAYS {
                    problems.push(format!(
                        "BQB_JOB_RETENTION_DAYS: must be at least {MIN_JOB_RETENTION_DAYS} (Pub/Sub redelivers for up to 7 days)"
                    ));
                }
                Duration::from_secs(days.max(MIN_JOB_RETENTION_DAYS) * 86_400)
            },
            prune_after_backup: (keep != PruneAfterBackup::default()).then_some(keep),
        }
    }

    fn auth(&self, problems: &mut Vec<String>) -> AuthSettings {
        let mode = match self.get("AUTH_MODE").map(str::trim) {
            None | Some("none") => AuthMode::None,
            Some("bearer") => AuthMode::Bearer,
            Some("google-oidc") => AuthMode::GoogleOidc,
            Some(other) => {
                problems.push(format!(
                    "AUTH_MODE: `{other}` is not one of none, bearer, google-oidc"
                ));
                AuthMode::None
            }
        };
        let bearer_token = self
            .get("BQB_AUTH_BEARER_TOKEN")
            .map(|t| Secret::new(t.trim()));
        let audiences = self.list("BQB_AUTH_AUDIENCE", "");
        let allowed_emails = self.list("BQB_AUTH_ALLOWED_EMAILS", "");
        match mode {
            AuthMode::Bearer if bearer_token.is_none() => {
                problems.push("BQB_AUTH_BEARER_TOKEN: required when AUTH_MODE=bearer".into())
            }
            AuthMode::GoogleOidc => {
                if audiences.is_empty() {
                    problems.push(
                        "BQB_AUTH_AUDIENCE: required when AUTH_MODE=google-oidc (usually the service URL)".into(),
                    );
                }
                if allowed_emails.is_empty() {
                    problems.push(
                        "BQB_AUTH_ALLOWED_EMAILS: required when AUTH_MODE=google-oidc (the service accounts that may call)".into(),
                    );
                }
            }
            _ => {}
        }
        AuthSettings {
            mode,
            bearer_token,
            audiences,
            allowed_emails,
            jwks_url: self.endpoint("BQB_AUTH_JWKS_URL", DEFAULT_AUTH_JWKS_URL, problems),
            issuers: self.list("BQB_AUTH_ISSUERS", DEFAULT_AUTH_ISSUERS),
        }
    }

    fn endpoint(&self, name: &str, default: &str, problems: &mut Vec<String>) -> String {
        let v = self
            .get(name)
            .unwrap_or(default)
            .trim()
            .trim_end_matches('/')
            .to_string();
        match url::Url::parse(&v) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => v,
            _ => {
                problems.push(format!("{name}: `{v}` is not an http(s) URL"));
                default.to_string()
            }
        }
    }

    fn parse(&self, fallback_project: Option<String>, problems: &mut Vec<String>) -> Settings {
        let log_format = match self.get("BQB_LOG_FORMAT").map(str::trim) {
            None | Some("auto") => LogFormat::Auto,
            Some("json") => LogFormat::Json,
            Some("pretty") => LogFormat::Pretty,
            Some(other) => {
                problems.push(format!(
                    "BQB_LOG_FORMAT: `{other}` is not one of auto, json, pretty"
                ));
                LogFormat::Auto
            }
        };
        let log_level = self
            .get("BQB_LOG_LEVEL")
            .unwrap_or("info")
            .trim()
            .to_string();
        if let Err(e) = tracing_subscriber::EnvFilter::builder().parse(&log_level) {
            problems.push(format!(
                "BQB_LOG_LEVEL: `{log_level}` is not a valid filter: {e}"
            ));
        }
        let project_id = self
            .get("BQB_PROJECT_ID")
            .map(|s| s.trim().to_string())
            .or(fallback_project.filter(|p| !p.trim().is_empty()));
        if let Some(p) = &project_id
            && !crate::domain::is_valid_project_id(p)
        {
            problems.push(format!(
                "BQB_PROJECT_ID: `{p}` is not a valid Google Cloud project id"
            ));
        }
        let gcs_emulator_host = self.get("STORAGE_EMULATOR_HOST").map(|h| {
            let h = h.trim().trim_end_matches('/');
            if h.contains("://") {
                h.to_string()
            } else {
                format!("http://{h}")
            }
        });
        let s3_endpoint = self
            .get("BQB_S3_ENDPOINT")
            .map(|_| self.endpoint("BQB_S3_ENDPOINT", "", problems));
        let request_timeout_secs: u64 = self.parsed(
            "BQB_REQUEST_TIMEOUT_SECS",
            DEFAULT_REQUEST_TIMEOUT.as_secs(),
            problems,
        );
        let grace_secs: u64 = self.parsed(
            "BQB_SHUTDOWN_GRACE_SECS",
            DEFAULT_SHUTDOWN_GRACE.as_secs(),
            problems,
        );
        if request_timeout_secs == 0 {
            problems.push("BQB_REQUEST_TIMEOUT_SECS: must be at least 1".into());
        }
        Settings {
            port: self.parsed("PORT", DEFAULT_PORT, problems),
            host: self.parsed("BQB_HOST", IpAddr::from([0, 0, 0, 0]), problems),
            log_format,
            log_level,
            project_id,
            bigquery: BigQuerySettings {
                endpoint: self.endpoint(
                    "BQB_BIGQUERY_ENDPOINT",
                    DEFAULT_BIGQUERY_ENDPOINT,
                    problems,
                ),
                storage_endpoint: self.endpoint(
                    "BQB_BIGQUERY_STORAGE_ENDPOINT",
                    DEFAULT_BIGQUERY_STORAGE_ENDPOINT,
                    problems,
                ),
                anonymous: self.flag("BQB_GOOGLE_ANONYMOUS", problems),
            },
            storage: StorageSettings {
                allowed: self.get("BQB_ALLOWED_STORAGE").and_then(|text| {
                    StorageAllowList::parse(text)
                        .map_err(|errors| {
                            problems.extend(
                                errors
                                    .into_iter()
                                    .map(|e| format!("BQB_ALLOWED_STORAGE: {e}")),
                            )
                        })
                        .ok()
                }),
                gcs_emulator_host,
                s3_endpoint,
                s3_allow_http: self.flag("BQB_S3_ALLOW_HTTP", problems),
                azure_use_emulator: self.flag("BQB_AZURE_USE_EMULATOR", problems),
                azurite_url: self.endpoint(
                    "AZURITE_BLOB_STORAGE_URL",
                    DEFAULT_AZURITE_URL,
                    problems,
                ),
            },
            request_timeout: Duration::from_secs(request_timeout_secs.max(1)),
            max_body_bytes: self.positive("BQB_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, problems),
            shutdown_grace: Duration::from_secs(grace_secs),
            max_parallel_tables: self.positive(
                "BQB_MAX_PARALLEL_TABLES",
                DEFAULT_MAX_PARALLEL_TABLES,
                problems,
            ),
            read_streams_per_table: self.positive(
                "BQB_READ_STREAMS_PER_TABLE",
                DEFAULT_READ_STREAMS_PER_TABLE,
                problems,
            ),
            jobs: self.jobs(problems),
            auth: self.auth(problems),
            schedule_file: self
                .get("BQB_SCHEDULE_FILE")
                .map(|p| PathBuf::from(p.trim())),
        }
    }
}

/// The configuration table as Markdown (for `bq-backup config` and docs/configuration.md, which
/// the integration test `config` keeps equal to it).
pub fn settings_markdown() -> String {
    let mut out = String::from("| variable | file key | default | meaning |\n|---|---|---|---|\n");
    for s in SETTINGS {
        let key = if s.env == "BQB_CONFIG_FILE" {
            "—".to_string()
        } else {
            format!("`{}`", s.file_key())
        };
        out.push_str(&format!(
            "| `{}` | {} | `{}` | {} |\n",
            s.env, key, s.default, s.description
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn an_empty_environment_gives_the_documented_defaults() {
        let s = Settings::defaults();
        assert_eq!(s.port, DEFAULT_PORT);
        assert_eq!(s.bigquery.endpoint, DEFAULT_BIGQUERY_ENDPOINT);
        assert_eq!(s.max_parallel_tables, DEFAULT_MAX_PARALLEL_TABLES);
        assert!(!s.bigquery.anonymous);
        assert_eq!(s.log_format, LogFormat::Auto);
    }

    #[test]
    fn every_bad_setting_is_reported_by_name_at_once() {
        let err = Settings::from_vars(vars(&[
            ("PORT", "eighty"),
            ("BQB_MAX_PARALLEL_TABLES", "0"),
            ("BQB_BIGQUERY_ENDPOINT", "ftp://x"),
            ("BQB_LOG_FORMAT", "xml"),
            ("BQB_TYPO", "1"),
        ]))
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
    }

    #[test]
    fn test_harness_variables_are_not_settings() {
        let s =
            Settings::from_vars(vars(&[("BQB_TEST_SERVICES", "1"), ("HOME", "/root")])).unwrap();
        assert_eq!(s.port, DEFAULT_PORT);
    }

    #[test]
    fn the_file_is_read_and_the_environment_wins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bq-backup.toml");
        std::fs::write(
            &path,
            "port = 9000\nmax_parallel_tables = 2\nbigquery_endpoint = \"http://127.0.0.1:1\"\n",
        )
        .unwrap();
        let s = Settings::from_vars(vars(&[
            ("BQB_CONFIG_FILE", path.to_str().unwrap()),
            ("PORT", "9100"),
        ]))
        .unwrap();
        assert_eq!(s.port, 9100);
        assert_eq!(s.max_parallel_tables, 2);
        assert_eq!(s.bigquery.endpoint, "http://127.0.0.1:1");
    }

    #[test]
    fn an_unknown_key_in_the_file_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, "prot = 9000\n").unwrap();
        let err =
            Settings::from_vars(vars(&[("BQB_CONFIG_FILE", path.to_str().unwrap())])).unwrap_err();
        assert!(err.to_string().contains("unknown setting `prot`"), "{err}");
    }

    #[test]
    fn the_project_falls_back_to_google_cloud_project() {
        let s = Settings::from_vars(vars(&[("GOOGLE_CLOUD_PROJECT", "my-proj")])).unwrap();
        assert_eq!(s.project_id.as_deref(), Some("my-proj"));
    }

    #[test]
    fn auth_modes_require_their_settings() {
        let err = Settings::from_vars(vars(&[("AUTH_MODE", "bearer")])).unwrap_err();
        assert!(err.to_string().contains("BQB_AUTH_BEARER_TOKEN"), "{err}");
        let err = Settings::from_vars(vars(&[("AUTH_MODE", "google-oidc")])).unwrap_err();
        let text = err.to_string();
        assert!(text.contains("BQB_AUTH_AUDIENCE"), "{text}");
        assert!(text.contains("BQB_AUTH_ALLOWED_EMAILS"), "{text}");
        let err = Settings::from_vars(vars(&[("AUTH_MODE", "basic")])).unwrap_err();
        assert!(err.to_string().contains("AUTH_MODE: `basic`"), "{err}");
        let s = Settings::from_vars(vars(&[
            ("AUTH_MODE", "google-oidc"),
            ("BQB_AUTH_AUDIENCE", "https://svc.example, https://other"),
            ("BQB_AUTH_ALLOWED_EMAILS", "sched@p.iam.gserviceaccount.com"),
        ]))
        .unwrap();
        assert_eq!(s.auth.mode, AuthMode::GoogleOidc);
        assert_eq!(s.auth.audiences, ["https://svc.example", "https://other"]);
        assert_eq!(s.auth.issuers.len(), 2);
    }

    #[test]
    fn the_bearer_token_never_reaches_debug_output() {
        let s = Settings::from_vars(vars(&[
            ("AUTH_MODE", "bearer"),
            ("BQB_AUTH_BEARER_TOKEN", "s3cret-value"),
        ]))
        .unwrap();
        assert_eq!(
            s.auth.bearer_token.as_ref().map(Secret::expose),
            Some("s3cret-value")
        );
        assert!(!format!("{s:?}").contains("s3cret-value"));
    }

    #[test]
    fn a_keep_policy_setting_turns_on_prune_after_backup() {
        assert_eq!(Settings::defaults().jobs.prune_after_backup, None);
        let s = Settings::from_vars(vars(&[("BQB_PRUNE_KEEP_LAST", "3")])).unwrap();
        assert_eq!(s.jobs.prune_after_backup.and_then(|p| p.keep_last), Some(3));
        let err = Settings::from_vars(vars(&[
            ("BQB_PRUNE_KEEP_DAILY", "0"),
            ("BQB_STATE_URI", "ftp://x"),
            ("BQB_JOB_RETENTION_DAYS", "3"),
        ]))
        .unwrap_err();
        assert!(
            err.to_string()
                .contains("BQB_JOB_RETENTION_DAYS: must be at least 7"),
            "{err}"
        );
        let text = err.to_string();
        assert!(
            text.contains("BQB_PRUNE_KEEP_DAILY: must be at least 1"),
            "{text}"
        );
        assert!(text.contains("BQB_STATE_URI"), "{text}");
    }

    #[test]
    fn allowed_storage_is_parsed_and_each_bad_entry_named() {
        assert_eq!(Settings::defaults().storage.allowed, None);
        let s = Settings::from_vars(vars(&[(
            "BQB_ALLOWED_STORAGE",
            "gs://bkt/backups, file:///var/lib/bq-backup",
        )]))
        .unwrap();
        assert_eq!(
            s.storage.allowed.map(|a| a.to_string()).as_deref(),
            Some("gs://bkt/backups,file:///var/lib/bq-backup")
        );
        let err = Settings::from_vars(vars(&[(
            "BQB_ALLOWED_STORAGE",
            "file://relative,gs://bkt/../x",
        )]))
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("BQB_ALLOWED_STORAGE: `file://relative`: a file:// entry must be an absolute directory"),
            "{text}"
        );
        assert!(
            text.contains("BQB_ALLOWED_STORAGE: `gs://bkt/../x`"),
            "{text}"
        );
    }

    #[test]
    fn storage_emulator_host_without_scheme_means_http() {
        let s = Settings::from_vars(vars(&[("STORAGE_EMULATOR_HOST", "127.0.0.1:4443")])).unwrap();
        assert_eq!(
            s.storage.gcs_emulator_host.as_deref(),
            Some("http://127.0.0.1:4443")
        );
    }
}
