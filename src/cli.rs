//! Command line: `serve` runs the HTTP service; `backup` runs the same engine without a server.
//! `anyhow` is used here and in `main` only.

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use clap::{Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use tokio_util::sync::CancellationToken;

use bq_backup::app::{Application, cancel_on_signals};
use bq_backup::backup::{BackupContext, plan_backup, run_backup, validate_backup_request};
use bq_backup::bigquery::BigQueryConfig;
use bq_backup::catalog::lease::LeaseTiming;
use bq_backup::catalog::{self, BackupSummary, ListFilter};
use bq_backup::config::{ConfigError, Settings, settings_markdown};
use bq_backup::domain::{BackupId, StorageUri, parse_backup_request, parse_restore_request};
use bq_backup::exec::Progress;
use bq_backup::restore::{RestoreContext, plan_restore, run_restore};
use bq_backup::storage::{Access, StorageConfig};
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
    /// Print every setting with its default and meaning (Markdown), then check the current ones.
    Config,
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve => serve().await,
            Command::Backup { request, dry_run } => backup(&request, dry_run).await,
            Command::Restore { request, dry_run } => restore(&request, dry_run).await,
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
            Command::Verify { id, uri } => verify(&id, &uri).await,
            Command::Delete { id, uri } => {
                let store = open_repository(&uri)?;
                let id = BackupId::parse(&id).map_err(|e| anyhow::anyhow!("id: {e}"))?;
                let report = catalog::prune::delete_backup(&store, &id)
                    .await
                    .map_err(|e| store.attribute(e))?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
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
                let store = open_repository(&uri)?;
                let report = catalog::prune::prune(&store, &policy, dry_run, chrono::Utc::now())
                    .await
                    .map_err(|e| store.attribute(e))?;
                println!("{}", serde_json::to_string_pretty(&report)?);
                Ok(())
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
    telemetry::init(&settings);
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

async fn backup(path: &PathBuf, dry_run: bool) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings);
    let body = read_request(path)?;
    let now = chrono::Utc::now();
    let request =
        parse_backup_request(&body).map_err(|f| anyhow::anyhow!("{}: {}", f.field, f.message))?;
    let request_json: serde_json::Value = serde_json::from_slice(&body)?;
    let (mut spec, encode) = validate_backup_request(request, now)?;
    let storage = StorageConfig::from_settings(&settings);
    storage
        .admit(&spec.storage, &spec.storage_field)
        .map_err(bq_backup::Error::from)?;
    let storage_field = spec.storage_field.clone();
    spec.dry_run |= dry_run;
    spec.ttl_days = spec.ttl_days.or(settings.jobs.default_ttl_days);
    let bigquery = BigQueryConfig::from_settings(&settings).build().await?;
    let dry_run = spec.dry_run;
    let plan = plan_backup(
        &bigquery,
        spec,
        encode,
        request_json,
        now,
        settings.max_parallel_tables,
    )
    .await?;
    if dry_run {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "dryRun": true, "plan": plan }))?
        );
        return Ok(());
    }
    let store = storage
        .open(&plan.storage, &storage_field, Access::Write)
        .map_err(bq_backup::Error::from)?;
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    // Hidden automatically when stderr is not a terminal.
    let bar = ProgressBar::new(plan.tables.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} tables [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("backup {}", plan.backup_id));
    let ctx = BackupContext {
        bigquery,
        store,
        cancel,
        progress: Some(Arc::new(BarProgress(bar.clone()))),
        lease: LeaseTiming::new(settings.jobs.heartbeat),
    };
    let report = run_backup(&plan, &ctx)
        .await
        .map_err(|e| ctx.store.attribute(e));
    bar.finish_and_clear();
    let report = report?;
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

async fn restore(path: &PathBuf, dry_run: bool) -> anyhow::Result<()> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings);
    let body = read_request(path)?;
    let request =
        parse_restore_request(&body).map_err(|f| anyhow::anyhow!("{}: {}", f.field, f.message))?;
    let spec = request.validate().map_err(|problems| {
        anyhow::anyhow!(bq_backup::Error::invalid(
            "the restore request is invalid",
            problems
        ))
    })?;
    let bigquery = BigQueryConfig::from_settings(&settings).build().await?;
    let store = StorageConfig::from_settings(&settings)
        .open(&spec.storage, &spec.storage_field, Access::Read)
        .map_err(bq_backup::Error::from)?;
    let plan = plan_restore(&bigquery, &store, &spec, settings.max_parallel_tables)
        .await
        .map_err(|e| store.attribute(e))?;
    if dry_run || spec.dry_run {
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({ "dryRun": true, "plan": plan }))?
        );
        return Ok(());
    }
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    let bar = ProgressBar::new_spinner();
    bar.set_message(format!(
        "restoring {} tables of backup {}",
        plan.tables.len(),
        plan.backup_id
    ));
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    let report = run_restore(
        &plan,
        &RestoreContext {
            bigquery,
            store: store.clone(),
            cancel,
            progress: None,
            lease: LeaseTiming::new(settings.jobs.heartbeat),
        },
    )
    .await
    .map_err(|e| store.attribute(e));
    bar.finish_and_clear();
    println!("{}", serde_json::to_string_pretty(&report?)?);
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

fn open_repository(uri: &str) -> anyhow::Result<bq_backup::storage::Store> {
    let settings = Settings::from_env()?;
    telemetry::init(&settings);
    let uri = StorageUri::parse(uri).map_err(|e| anyhow::anyhow!("--uri: {e}"))?;
    // Through the crate error, so that a refusal names the flag that held the URI.
    StorageConfig::from_settings(&settings)
        .open(&uri, "--uri", Access::Read)
        .map_err(|e| bq_backup::Error::from(e).into())
}

async fn list(
    uri: &str,
    filter: &ListFilter,
    limit: usize,
    output: Option<Output>,
) -> anyhow::Result<()> {
    let store = open_repository(uri)?;
    let page = catalog::list_backups(
        &store,
        filter,
        limit.clamp(1, catalog::list::MAX_PAGE_SIZE),
        None,
        chrono::Utc::now(),
    )
    .await
    .map_err(|e| store.attribute(e))?;
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
        }
    }
    Ok(())
}

async fn show(id: &str, uri: &str, output: Option<Output>) -> anyhow::Result<()> {
    let store = open_repository(uri)?;
    let id = BackupId::parse(id).map_err(|e| anyhow::anyhow!("id: {e}"))?;
    let manifest = catalog::read_manifest(&store, &id)
        .await
        .map_err(|e| store.attribute(e))?
        .ok_or_else(|| anyhow::anyhow!("no complete backup {id} in {}", store.uri()))?;
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

async fn verify(id: &str, uri: &str) -> anyhow::Result<()> {
    let store = open_repository(uri)?;
    let id = BackupId::parse(id).map_err(|e| anyhow::anyhow!("id: {e}"))?;
    let manifest = catalog::read_manifest(&store, &id)
        .await
        .map_err(|e| store.attribute(e))?
        .ok_or_else(|| anyhow::anyhow!("no complete backup {id} in {}", store.uri()))?;
    let report = catalog::verify_backup(&store, &manifest)
        .await
        .map_err(|e| store.attribute(e))?;
    println!("{}", serde_json::to_string_pretty(&report)?);
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
