//! The `bq-backup` binary: parse the command line, run it. Configuration errors end the process
//! with exit code 2 and a message naming every bad setting.

mod cli;

use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    keep_large_buffers_out_of_malloc_arenas();
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

/// glibc's malloc raises its mmap threshold to the largest block freed so far (up to 32 MiB):
/// once a row group or an upload chunk has been freed, every smaller buffer (batches, pages,
/// chunks) comes from per-thread arenas that glibc seldom gives back, and a restore's resident
/// memory crept up with the size of the file it read (a 129 MiB file: 152 MiB peak, 131 MiB for
/// one of 32 MiB). With the threshold fixed, such buffers get mappings of their own, returned when
/// freed (93 and 95 MiB). `MALLOC_MMAP_THRESHOLD_` in the environment still wins.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_buffers_out_of_malloc_arenas() {
    const MMAP_THRESHOLD: libc::c_int = 1024 * 1024;
    if std::env::var_os("MALLOC_MMAP_THRESHOLD_").is_none() {
        // SAFETY: mallopt only sets one of glibc's tuning values; it takes no pointers and is
        // safe to call while other threads allocate. Its result (0 on failure) changes nothing
        // but memory use.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, MMAP_THRESHOLD);
        }
    }
}
