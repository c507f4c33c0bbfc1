//! Command line: `serve` runs the HTTP service; the other commands run the same engine without a
//! server. `anyhow` is used here and in `main` only.

use clap::{Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use bq_backup::app::{Application, cancel_on_signals};
use bq_backup::config::{Settings, settings_markdown};
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
    /// Print every setting with its default and meaning (Markdown), then check the current ones.
    Config,
}

impl Cli {
    pub async fn run(self) -> anyhow::Result<()> {
        match self.command {
            Command::Serve => serve().await,
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
