//! Command line: `serve` runs the HTTP service; every other command runs the same engine
//! ([`bq_backup::engine`]) without a server and prints what it answers.
//! `anyhow` is used here and in `main` only.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use bq_backup::app::{Application, cancel_on_signals};
use bq_backup::backup::BackupOrder;
use bq_backup::backup::shard::{ShardOrder, shard_position};
use bq_backup::catalog::copy::{Existing, read_source};
use bq_backup::catalog::{self, BackupSummary, ListFilter, Sample};
use bq_backup::config::{ConfigError, Settings, settings_markdown};
use bq_backup::domain::{BackupId, JobId, StorageUri};
use bq_backup::encryption::Recipients;
use bq_backup::engine::{
    Accepted, Copies, CopyOrder, Engine, RecoverOrder, Repositories, Started, Submission, Trigger,
};
use bq_backup::exec::Progress;
use bq_backup::jobs::{Cancelled, JobStore, Jobs};
use bq_backup::metrics::Metrics;
use bq_backup::restore::RestoreOrder;
use bq_backup::storage::layout as catalog_layout;
use bq_backup::storage::{Access, StorageConfig, Store};
use bq_backup::telemetry;

#[derive(Debug, Parser)]
#[command(
    name = "bq-backup",
    version,
    about = "Back up BigQuery datasets to object storage and restore them."
)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// How listings are printed: a table for people, JSON for programs (default: table on a
/// terminal, JSON otherwise).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Output {
    Table,
    Json,
}

impl Output {
    fn resolve(choice: Option<Self>) -> Self {
        use std::io::IsTerminal;
        choice.unwrap_or(if std::io::stdout().is_terminal() {
            Self::Table
        } else {
            Self::Json
        })
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP service on $PORT (default 8080).
    Serve,
    /// Run a backup from a request file (the body `POST /api/v1/backup` takes), without a server.
    /// Prints a progress bar on a terminal and the JSON result on stdout.
    Backup {
        /// The request JSON file (`-` for standard input).
        #[arg(long, short)]
        request: PathBuf,
        /// Only print the plan; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Run a restore from a request file (the body `POST /api/v1/restore` takes), without a
    /// server. Prints the JSON result on stdout.
    Restore {
        /// The request JSON file (`-` for standard input).
        #[arg(long, short)]
        request: PathBuf,
        /// Only print the plan; write nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Bring tables back as they were at an instant inside BigQuery's time-travel window, from
    /// a request file (the body `POST /api/v1/recover` takes), without a backup. Prints the JSON
    /// result on stdout.
    Recover {
        /// The request JSON file (`-` for standard input).
        #[arg(long, short)]
        request: PathBuf,
        /// Only print the plan; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// List the complete backups of a repository, newest first.
    List {
        /// The repository (e.g. gs://bucket/prefix, s3://…, az://…, file:///path).
        #[arg(long)]
        uri: String,
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        dataset: Option<String>,
        /// `key` or `key:value`.
        #[arg(long)]
        label: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[arg(long, value_enum)]
        output: Option<Output>,
    },
    /// Show one backup: its tables, rows, bytes, files, reason, labels, snapshot time, expiry.
    Show {
        id: String,
        #[arg(long)]
        uri: String,
        #[arg(long, value_enum)]
        output: Option<Output>,
    },
    /// Re-read every file of a backup and check sizes, checksums, row counts and decoding;
    /// exits 1 when anything is wrong, listing every finding.
    Verify {
        id: String,
        #[arg(long)]
        uri: String,
        /// Read only a sample of the files in full: a share (`10%`) or a number of files,
        /// picked at random; the others are only checked to exist with their recorded size.
        #[arg(long)]
        sample: Option<String>,
    },
    /// Copy a backup to another repository: every file streamed and checked against the
    /// manifest, the manifest written last. Refused when the target holds the id already.
    /// Prints a progress bar on a terminal and the JSON result on stdout.
    Copy {
        id: String,
        /// The repository the backup is in.
        #[arg(long)]
        from: String,
        /// The repository to copy it to.
        #[arg(long)]
        to: String,
        /// Encrypt every file of the copy for this age recipient (`age1…`) or SSH public key;
        /// repeat for several. An encrypted backup is decrypted with BQB_ENCRYPTION_IDENTITIES
        /// and encrypted again.
        #[arg(long = "recipient")]
        recipients: Vec<String>,
    },
    /// Copy a backup into a local directory (a `file://` repository: DIR/backups/ID/…), checked
    /// file by file, manifest last. Running it again after it finished does nothing; anything
    /// else already in DIR/backups/ID is refused.
    Download {
        id: String,
        /// The repository the backup is in.
        #[arg(long)]
        uri: String,
        /// The local directory to write it to.
        #[arg(long)]
        to: PathBuf,
    },
    /// Copy a backup from a local directory (as `download` writes it) to a repository, checked
    /// file by file before and while uploading, manifest last. Refused when the repository holds
    /// the id already.
    Upload {
        /// The directory: a repository (DIR/backups/ID/manifest.json) or one backup's own
        /// directory (DIR/manifest.json).
        dir: PathBuf,
        /// The repository to copy it to.
        #[arg(long)]
        uri: String,
        /// The backup, when DIR holds several.
        #[arg(long)]
        id: Option<String>,
    },
    /// Delete one backup: its manifest first, then its files. Refused while a restore reads it.
    Delete {
        id: String,
        #[arg(long)]
        uri: String,
    },
    /// Delete the backups a keep policy lets go (and every expired one); `--dry-run` only lists.
    /// The policy must keep something: at least one `--keep-*` of 1 or more, or
    /// `--expired-only`. A backup a restore is reading is kept.
    Prune {
        #[arg(long)]
        uri: String,
        #[arg(long)]
        keep_last: Option<u32>,
        #[arg(long)]
        keep_daily: Option<u32>,
        #[arg(long)]
        keep_weekly: Option<u32>,
        #[arg(long)]
        keep_monthly: Option<u32>,
        /// Delete only expired backups (no keep rule).
        #[arg(long)]
        expired_only: bool,
        #[arg(long)]
        dry_run: bool,
    },
    /// Run one shard of a sharded backup (planned by a backup request with `"shards": N`): read
    /// the streams the plan gives this shard, write its files and report, and commit the backup
    /// when it is the last shard to finish. Idempotent: a rerun of a shard replaces that
    /// shard's files only. Prints the JSON result on stdout.
    Worker {
        /// The repository holding the backup's plan (`backups/ID/plan.json`); a backup's shard.
        #[arg(long, env = "BQB_REPOSITORY")]
        repository: Option<String>,
        /// The sharded backup (with `--repository`).
        #[arg(long, env = "BQB_BACKUP_ID")]
        backup_id: Option<String>,
        /// The sharded restore's job instead (its plan is in the state store, BQB_STATE_URI).
        #[arg(long, env = "BQB_RESTORE_JOB", conflicts_with_all = ["repository", "backup_id"])]
        restore_job: Option<String>,
        /// This shard, 0 to N-1. Default: CLOUD_RUN_TASK_INDEX (Cloud Run Jobs) or
        /// JOB_COMPLETION_INDEX (a Kubernetes Indexed Job).
        #[arg(long)]
        shard: Option<u32>,
        /// N, the number of shards the backup was planned with. Default: BQB_SHARDS or
        /// CLOUD_RUN_TASK_COUNT.
        #[arg(long)]
        shards: Option<u32>,
    },
    /// Write the manifest of a sharded backup whose shards have all reported (the last shard
    /// does it by itself); prints which shards are missing otherwise.
    Commit {
        #[arg(long, env = "BQB_REPOSITORY")]
        repository: String,
        #[arg(long, env = "BQB_BACKUP_ID")]
        backup_id: String,
    },
    /// Print every setting with its default and meaning (Markdown), then check the current ones.
    Config,
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve => serve().await,
            Command::Backup { request, dry_run } => backup(&request, dry_run).await,
            Command::Restore { request, dry_run } => restore(&request, dry_run).await,
            Command::Recover { request, dry_run } => recover(&request, dry_run).await,
            Command::List {
                uri,
                project,
                dataset,
                label,
                limit,
                output,
            } => {
                let filter = ListFilter {
                    project,
                    dataset,
                    label: label.map(|l| match l.split_once(':') {
                        Some((k, v)) => (k.to_string(), Some(v.to_string())),
                        None => (l, None),
                    }),
                    status: None,
                };
                list(&uri, &filter, limit, output).await
            }
            Command::Show { id, uri, output } => show(&id, &uri, output).await,
            Command::Verify { id, uri, sample } => verify(&id, &uri, sample.as_deref()).await,
            Command::Copy {
                id,
                from,
                to,
                recipients,
            } => {
                let from = parse_uri(&from, "--from")?;
                let to = parse_uri(&to, "--to")?;
                let encryption = if recipients.is_empty() {
                    None
                } else {
                    let parsed =
                        Recipients::parse_at("--recipient", &recipients).map_err(|errors| {
                            let text: Vec<String> = errors
                                .iter()
                                .map(|e| format!("{}: {}", e.field, e.message))
                                .collect();
                            anyhow::anyhow!(text.join("; "))
                        })?;
                    Some(Arc::new(parsed))
                };
                copy(
                    &id,
                    (from, "--from"),
                    (to, "--to"),
                    Existing::Refuse,
                    encryption,
                )
                .await
            }
            Command::Download { id, uri, to } => {
                let from = parse_uri(&uri, "--uri")?;
                let to = local_repository(&to)?;
                copy(
                    &id,
                    (from, "--uri"),
                    (to, "--to"),
                    Existing::AcceptIdentical,
                    None,
                )
                .await
            }
            Command::Upload { dir, uri, id } => {
                let (from, id) = local_backup(&dir, id.as_deref())?;
                let to = parse_uri(&uri, "--uri")?;
                copy(
                    &id.to_string(),
                    (from, "DIR"),
                    (to, "--uri"),
                    Existing::Refuse,
                    None,
                )
                .await
            }
            Command::Delete { id, uri } => {
                let (repositories, store) = open_repository(&uri)?;
                let id = BackupId::parse(&id).map_err(|e| anyhow::anyhow!("id: {e}"))?;
                print_json(&repositories.delete(&store, &id).await?)
            }
            Command::Prune {
                uri,
                keep_last,
                keep_daily,
                keep_weekly,
                keep_monthly,
                expired_only,
                dry_run,
            } => {
                let policy = catalog::retention::KeepPolicy {
                    keep_last,
                    keep_daily,
                    keep_weekly,
                    keep_monthly,
                    expired_only,
                };
                let problems = policy.problems();
                if !problems.is_empty() {
                    let lines: Vec<String> = problems
                        .iter()
                        .map(|p| format!("{}: {}", flag_of(&p.field), p.message))
                        .collect();
                    anyhow::bail!("the keep policy is invalid:\n  {}", lines.join("\n  "));
                }
                let (repositories, store) = open_repository(&uri)?;
                print_json(&repositories.prune(&store, &policy, dry_run).await?)
            }
            Command::Worker {
                repository,
                backup_id,
                restore_job,
                shard,
                shards,
            } => {
                let (shard, shards) =
                    shard_position(shard, shards, |name| std::env::var(name).ok())?;
                // SIGTERM (a Cloud Run task stopped, a pod evicted) stops the shard, which
                // removes what it wrote; the engine's retry runs it again.
                let cancel = CancellationToken::new();
                cancel_on_signals(cancel.clone());
                if let Some(job) = restore_job {
                    let job =
                        JobId::parse(&job).map_err(|e| anyhow::anyhow!("--restore-job: {e}"))?;
                    let engine = engine().await?;
                    return print_json(
                        &engine.run_restore_shard(job, shard, shards, cancel).await?,
                    );
                }
                let (Some(repository), Some(backup_id)) = (repository, backup_id) else {
                    anyhow::bail!(
                        "--repository and --backup-id (a backup's shard), or --restore-job (a restore's shard), are required"
                    );
                };
                let uri = parse_uri(&repository, "--repository")?;
                let backup_id =
                    BackupId::parse(&backup_id).map_err(|e| anyhow::anyhow!("--backup-id: {e}"))?;
                let engine = engine().await?;
                let order = ShardOrder {
                    backup_id,
                    shard,
                    shards,
                };
                print_json(
                    &engine
                        .run_shard(&uri, "--repository", order, cancel)
                        .await?,
                )
            }
            Command::Commit {
                repository,
                backup_id,
            } => {
                let uri = parse_uri(&repository, "--repository")?;
                let backup_id =
                    BackupId::parse(&backup_id).map_err(|e| anyhow::anyhow!("--backup-id: {e}"))?;
                let engine = engine().await?;
                print_json(
                    &engine
                        .commit_sharded(&uri, "--repository", backup_id)
                        .await?,
                )
            }
            Command::Config => {
                print!("{}", settings_markdown());
                Settings::from_env()?;
                eprintln!("current configuration: valid");
                Ok(())
            }
        }
    }
}

async fn serve() -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings.log, settings.bigquery.project_id.as_deref());
    let shutdown = CancellationToken::new();
    cancel_on_signals(shutdown.clone());
    let app = Application::build(settings, shutdown)
        .await
        .map_err(startup_error)?;
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
}

/// A start refused for bad input (the schedule file, the state URI, the listen address) is a
/// configuration error: exit code 2 and one line per problem, as for bad settings.
fn startup_error(e: bq_backup::Error) -> anyhow::Error {
    if e.kind() != bq_backup::ErrorKind::InvalidInput {
        return e.into();
    }
    let problems = if e.details().is_empty() {
        vec![e.to_string()]
    } else {
        e.details()
            .iter()
            .map(|d| format!("{}: {}: {}", e.message(), d.field, d.message))
            .collect()
    };
    ConfigError { problems }.into()
}

fn read_request(path: &PathBuf) -> anyhow::Result<Vec<u8>> {
    if path.as_os_str() == "-" {
        let mut buf = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut buf)?;
        return Ok(buf);
    }
    std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))
}

/// The engine as the CLI uses it: repositories opened as `BQB_ALLOWED_STORAGE` says (any when
/// unset), job records in `BQB_STATE_URI` like the service's, so that the selection lock,
/// prune-after-backup and the job's record apply as they do to `POST /api/v1/backup`.
async fn engine() -> anyhow::Result<Engine> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings.log, settings.bigquery.project_id.as_deref());
    let storage = StorageConfig::from_settings(&settings.storage);
    // Nothing shuts the engine down: a signal cancels the job instead (see `follow`).
    Ok(Engine::build(settings.engine(), storage, CancellationToken::new()).await?)
}

fn cli_submission(observer: Option<Arc<dyn Progress>>) -> Submission {
    Submission {
        trigger: Trigger::from([("source".to_string(), "cli".to_string())]),
        observer,
    }
}

async fn backup(path: &PathBuf, dry_run: bool) -> anyhow::Result<()> {
    let engine = engine().await?;
    let mut order = BackupOrder::from_json(&read_request(path)?, chrono::Utc::now())?;
    order.spec.dry_run |= dry_run;
    // Hidden automatically when stderr is not a terminal.
    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} tables [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let observer: Arc<dyn Progress> = Arc::new(BarProgress(bar.clone()));
    match engine.backup(order, cli_submission(Some(observer))).await? {
        Started::DryRun(plan) => {
            print_json(&serde_json::json!({ "dryRun": true, "plan": plan.preview() }))
        }
        Started::Job(job) => {
            bar.set_length(job.record.tables.len() as u64);
            bar.set_message(format!(
                "backup {}",
                job.record.backup_id.as_deref().unwrap_or_default()
            ));
            follow(engine.jobs(), job, bar).await
        }
    }
}

async fn restore(path: &PathBuf, dry_run: bool) -> anyhow::Result<()> {
    let engine = engine().await?;
    let mut order = RestoreOrder::from_json(&read_request(path)?)?;
    order.spec.dry_run |= dry_run;
    match engine.restore(order, cli_submission(None)).await? {
        Started::DryRun(plan) => {
            print_json(&serde_json::json!({ "dryRun": true, "plan": plan.preview() }))
        }
        Started::Job(job) => {
            let bar = ProgressBar::new_spinner();
            bar.set_message(format!(
                "restoring {} tables of backup {}",
                job.record.tables.len(),
                job.record.backup_id.as_deref().unwrap_or_default()
            ));
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            follow(engine.jobs(), job, bar).await
        }
    }
}

async fn recover(path: &PathBuf, dry_run: bool) -> anyhow::Result<()> {
    let engine = engine().await?;
    let mut order = RecoverOrder::from_json(&read_request(path)?, chrono::Utc::now())?;
    order.spec.dry_run |= dry_run;
    match engine.recover(order, cli_submission(None)).await? {
        Started::DryRun(plan) => print_json(&serde_json::json!({ "dryRun": true, "plan": plan })),
        Started::Job(job) => {
            let bar = ProgressBar::new_spinner();
            bar.set_message(format!("recovering {} tables", job.record.tables.len()));
            bar.enable_steady_tick(std::time::Duration::from_millis(200));
            follow(engine.jobs(), job, bar).await
        }
    }
}

/// Waits for the job to end and prints its result; Ctrl-C or SIGTERM cancels it (its record
/// then says CANCELLED) and waits for it to stop.
async fn follow(jobs: &Jobs, job: Box<Accepted>, bar: ProgressBar) -> anyhow::Result<()> {
    let signals = CancellationToken::new();
    cancel_on_signals(signals.clone());
    let id = job.record.job_id.clone();
    let finished = async {
        match jobs.wait(&id).await {
            Some(ended) => Ok::<_, bq_backup::Error>(ended),
            // Ended before the wait began: its stored record is final.
            None => Ok(jobs.get(&id).await?.unwrap_or(job.record)),
        }
    };
    let ended = tokio::select! {
        ended = finished => ended?,
        () = signals.cancelled() => match jobs.cancel(&id).await? {
            Cancelled::Stopped(record) | Cancelled::Requested(record) => record,
        },
    };
    bar.finish_and_clear();
    print_json(&ended.outcome()?)
}

fn print_json(value: &impl serde::Serialize) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// The backup progress bar: one tick per table.
struct BarProgress(ProgressBar);

impl Progress for BarProgress {
    fn table_started(&self, _table: &str) {}

    fn table_finished(&self, table: &str, rows: u64, _bytes: u64, _files: u64) {
        self.0.inc(1);
        self.0.set_message(format!("{table} ({rows} rows)"));
    }

    fn table_failed(&self, table: &str, _error: &bq_backup::Error) {
        self.0.set_message(format!("{table} failed"));
    }
}

/// The job runner of the CLI's copies: job records in `BQB_STATE_URI` like every other job's,
/// repositories opened as `BQB_ALLOWED_STORAGE` says (any when unset), and no BigQuery client
/// (a copy needs none, so a laptop without Google credentials can download and upload).
fn copies() -> anyhow::Result<Copies> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings.log, settings.bigquery.project_id.as_deref());
    let storage = StorageConfig::from_settings(&settings.storage);
    let jobs = Jobs::new(
        JobStore::open(&storage, &settings.jobs.state_uri)?,
        settings.jobs.clone(),
        // Nothing shuts it down: a signal cancels the job instead (see `follow`).
        CancellationToken::new(),
        Metrics::new(),
    );
    Ok(Copies::new(jobs, Repositories::new(storage)))
}

fn parse_uri(uri: &str, flag: &str) -> anyhow::Result<StorageUri> {
    StorageUri::parse(uri).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
}

/// `DIR` as the `file://` repository it is (absolute, so that the result names it fully).
fn local_repository(dir: &std::path::Path) -> anyhow::Result<StorageUri> {
    let dir = std::path::absolute(dir).with_context(|| format!("{}", dir.display()))?;
    let text = dir
        .to_str()
        .ok_or_else(|| anyhow::anyhow!("{}: not a UTF-8 path", dir.display()))?;
    StorageUri::parse(&format!("file://{}", text.trim_end_matches('/')))
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))
}

/// The local repository and backup id of `dir`: one backup's directory
/// (`…/backups/{id}/manifest.json`), or a repository holding it (`DIR/backups/{id}/…`, the one
/// backup there or the one `--id` names). Anything else is refused, saying what was expected.
fn local_backup(dir: &std::path::Path, id: Option<&str>) -> anyhow::Result<(StorageUri, BackupId)> {
    let wanted = id
        .map(|id| BackupId::parse(id).map_err(|e| anyhow::anyhow!("--id: {e}")))
        .transpose()?;
    let dir = std::fs::canonicalize(dir).with_context(|| format!("DIR {}", dir.display()))?;
    if dir.join(catalog_layout::MANIFEST).is_file() {
        let named = dir
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| BackupId::parse(n).ok());
        let root = dir
            .parent()
            .filter(|p| p.file_name().is_some_and(|n| n == catalog_layout::BACKUPS))
            .and_then(|p| p.parent());
        let (Some(found), Some(root)) = (named, root) else {
            anyhow::bail!(
                "DIR {} holds a manifest but is not `…/backups/<backup id>`: upload the directory `download` wrote",
                dir.display()
            );
        };
        if wanted.is_some_and(|w| w != found) {
            anyhow::bail!(
                "DIR {} is backup {found}, not the one --id names",
                dir.display()
            );
        }
        return Ok((local_repository(root)?, found));
    }
    let backups = dir.join(catalog_layout::BACKUPS);
    let mut found: Vec<BackupId> = std::fs::read_dir(&backups)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.path().join(catalog_layout::MANIFEST).is_file())
                .filter_map(|e| e.file_name().to_str().and_then(|n| BackupId::parse(n).ok()))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    let id = match (wanted, found.as_slice()) {
        (Some(w), found) if found.contains(&w) => w,
        (Some(w), _) => anyhow::bail!(
            "DIR {} holds no complete backup {w} (no {}/{w}/manifest.json)",
            dir.display(),
            backups.display()
        ),
        (None, [one]) => *one,
        (None, []) => anyhow::bail!(
            "DIR {} holds no complete backup: expected DIR/backups/<backup id>/manifest.json (as `download` writes it) or a backup's own directory",
            dir.display()
        ),
        (None, several) => anyhow::bail!(
            "DIR {} holds several backups ({}): name one with --id",
            dir.display(),
            several
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    Ok((local_repository(&dir)?, id))
}

/// Runs a copy (also `download` and `upload`) as a job in this process, with a progress bar in
/// bytes on a terminal, and prints its result. Each side comes with the flag that named it.
async fn copy(
    id: &str,
    (from, from_flag): (StorageUri, &str),
    (to, to_flag): (StorageUri, &str),
    existing: Existing,
    encryption: Option<Arc<Recipients>>,
) -> anyhow::Result<()> {
    let copies = copies()?;
    let backup_id = BackupId::parse(id).map_err(|e| anyhow::anyhow!("ID: {e}"))?;
    // The bar's length: the bytes the manifest records (read again by the job; a small file).
    let source = copies.repositories().open(&from, from_flag, Access::Read)?;
    let total = read_source(&source, &backup_id)
        .await?
        .manifest
        .totals
        .bytes;
    // Hidden automatically when stderr is not a terminal.
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] [{bar:30}] {bytes}/{total_bytes} ({bytes_per_sec}, {eta}) {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> "),
    );
    bar.set_message(format!("backup {backup_id}"));
    let observer: Arc<dyn Progress> = Arc::new(BytesProgress(bar.clone()));
    let order = CopyOrder {
        backup_id,
        from,
        from_field: from_flag.into(),
        to,
        to_field: to_flag.into(),
        existing,
        wait: true,
        encryption,
    };
    let job = copies.submit(order, cli_submission(Some(observer))).await?;
    follow(copies.jobs(), job, bar).await
}

/// The copy progress bar: bytes written.
struct BytesProgress(ProgressBar);

impl Progress for BytesProgress {
    fn table_started(&self, _table: &str) {}

    fn table_finished(&self, table: &str, _rows: u64, _bytes: u64, _files: u64) {
        self.0.set_message(table.to_string());
    }

    fn table_failed(&self, table: &str, _error: &bq_backup::Error) {
        self.0.set_message(format!("{table} failed"));
    }

    fn bytes_written(&self, bytes: u64) {
        self.0.inc(bytes);
    }
}

/// The repository named by `--uri`, and the catalog that answers for it (no BigQuery client
/// needed). A refusal names the flag.
fn open_repository(uri: &str) -> anyhow::Result<(Repositories, Store)> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings.log, settings.bigquery.project_id.as_deref());
    let uri = StorageUri::parse(uri).map_err(|e| anyhow::anyhow!("--uri: {e}"))?;
    let repositories = Repositories::new(StorageConfig::from_settings(&settings.storage));
    let store = repositories.open(&uri, "--uri", Access::Read)?;
    Ok((repositories, store))
}

async fn list(
    uri: &str,
    filter: &ListFilter,
    limit: usize,
    output: Option<Output>,
) -> anyhow::Result<()> {
    let (repositories, store) = open_repository(uri)?;
    let page = repositories
        .list(
            &store,
            filter,
            limit.clamp(1, catalog::list::MAX_PAGE_SIZE),
            None,
        )
        .await?;
    match Output::resolve(output) {
        Output::Json => println!("{}", serde_json::to_string_pretty(&page)?),
        Output::Table => {
            println!(
                "{:<18} {:<9} {:<20} {:>10} {:>6}  REASON",
                "ID", "STATUS", "CREATED AT", "SIZE", "TABLES"
            );
            for b in &page.backups {
                println!(
                    "{:<18} {:<9} {:<20} {:>10} {:>6}  {}",
                    b.backup_id,
                    b.status,
                    b.created_at.format("%Y-%m-%d %H:%M:%S"),
                    human_bytes(b.bytes),
                    b.tables,
                    b.reason.as_deref().unwrap_or("")
                );
            }
            for d in &page.damaged {
                println!("{:<18} {:<9} {}", d.backup_id, "DAMAGED", d.problem);
            }
        }
    }
    Ok(())
}

async fn show(id: &str, uri: &str, output: Option<Output>) -> anyhow::Result<()> {
    let (repositories, store) = open_repository(uri)?;
    let id = BackupId::parse(id).map_err(|e| anyhow::anyhow!("id: {e}"))?;
    let manifest = repositories.show(&store, &id).await?;
    let summary = BackupSummary::of(&manifest, chrono::Utc::now());
    match Output::resolve(output) {
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(
                &serde_json::json!({ "backup": summary, "tables": manifest.tables.iter().map(|t| serde_json::json!({ "table": t.table, "kind": t.kind, "rows": t.rows, "bytes": t.bytes, "files": t.files.len() })).collect::<Vec<_>>() })
            )?
        ),
        Output::Table => {
            println!(
                "backup    {}  {}  snapshot {}",
                summary.backup_id, summary.status, summary.snapshot_time
            );
            println!(
                "format    {}/{}   {} rows   {}   {} files",
                summary.format,
                summary.compression,
                summary.rows,
                human_bytes(summary.bytes),
                summary.files
            );
            if let Some(reason) = &summary.reason {
                println!("reason    {reason}");
            }
            if let Some(expires) = summary.expires_at {
                println!("expires   {expires}");
            }
            println!(
                "\n{:<50} {:<18} {:>12} {:>10} {:>6}",
                "TABLE", "KIND", "ROWS", "SIZE", "FILES"
            );
            for t in &manifest.tables {
                println!(
                    "{:<50} {:<18} {:>12} {:>10} {:>6}",
                    t.table.to_string(),
                    t.kind.as_str(),
                    t.rows,
                    human_bytes(t.bytes),
                    t.files.len()
                );
            }
        }
    }
    Ok(())
}

async fn verify(id: &str, uri: &str, sample: Option<&str>) -> anyhow::Result<()> {
    let sample = sample
        .map(|s| Sample::parse(&serde_json::Value::String(s.to_string())))
        .transpose()
        .map_err(|e| anyhow::anyhow!("--sample: {e}"))?;
    let (repositories, store) = open_repository(uri)?;
    let id = BackupId::parse(id).map_err(|e| anyhow::anyhow!("id: {e}"))?;
    let report = repositories.verify(&store, &id, sample).await?;
    print_json(&report)?;
    if report.ok {
        Ok(())
    } else {
        anyhow::bail!("backup {id}: {} finding(s)", report.findings.len())
    }
}

/// The command-line flag of a keep-policy field (`keepLast` → `--keep-last`).
fn flag_of(field: &str) -> String {
    if field == "body" {
        return "--keep-last/--keep-daily/--keep-weekly/--keep-monthly or --expired-only".into();
    }
    let mut flag = String::from("--");
    for c in field.chars() {
        if c.is_ascii_uppercase() {
            flag.push('-');
        }
        flag.push(c.to_ascii_lowercase());
    }
    flag
}

fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
