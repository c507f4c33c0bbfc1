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
use bq_backup::config::{Settings, settings_markdown};
use bq_backup::domain::{parse_backup_request, parse_restore_request};
use bq_backup::restore::{RestoreContext, plan_restore, run_restore};
use bq_backup::storage::StorageConfig;
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
    /// Print every setting with its default and meaning (Markdown), then check the current ones.
    Config,
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve => serve().await,
            Command::Backup { request, dry_run } => backup(&request, dry_run).await,
            Command::Restore { request, dry_run } => restore(&request, dry_run).await,
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
    let app = Application::build(settings, shutdown).await?;
    app.run_until_stopped().await?;
    tracing::info!("stopped");
    Ok(())
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
    spec.dry_run |= dry_run;
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
    let store = StorageConfig::from_settings(&settings).open(&plan.storage)?;
    let cancel = CancellationToken::new();
    cancel_on_signals(cancel.clone());
    // Hidden automatically when stderr is not a terminal.
    let bar = ProgressBar::new(plan.tables.len() as u64);
    bar.set_style(
        ProgressStyle::with_template("{spinner} {pos}/{len} tables [{elapsed_precise}] {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar.set_message(format!("backup {}", plan.backup_id));
    let tick = bar.clone();
    let ctx = BackupContext {
        bigquery,
        store,
        cancel,
        on_table_done: Some(Arc::new(move |t| {
            tick.inc(1);
            tick.set_message(format!("{} ({} rows)", t.table, t.rows));
        })),
    };
    let report = run_backup(&plan, &ctx).await;
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
    let store = StorageConfig::from_settings(&settings).open(&spec.storage)?;
    let plan = plan_restore(&bigquery, &store, &spec, settings.max_parallel_tables).await?;
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
            store,
            cancel,
        },
    )
    .await;
    bar.finish_and_clear();
    println!("{}", serde_json::to_string_pretty(&report?)?);
    Ok(())
}
