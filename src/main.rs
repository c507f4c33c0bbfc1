//! The `bq-backup` binary: parse the command line, run it. Configuration errors end the process
//! with exit code 2 and a message naming every bad setting.

mod cli;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    // Two rustls crypto providers end up in the binary (aws-lc-rs via google-cloud-auth, ring via
    // object_store's reqwest); rustls panics at first TLS use unless one is chosen up front.
    // Err only means one is installed already.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    match cli::Cli::parse().run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bq-backup: {e:#}");
            if e.downcast_ref::<bq_backup::config::ConfigError>().is_some() {
                std::process::ExitCode::from(2)
            } else {
                std::process::ExitCode::FAILURE
            }
        }
    }
}
