//! Leases: small objects an operation writes under a backup's directory and refreshes while it
//! runs, so that other instances (sharing nothing but the store) can tell a live operation from
//! one that died. The backup claim (`_claim.json`: the id is being written) and restore leases
//! (`_restore-*.json`: the backup is being read, so it must not be deleted) are leases.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use tokio_util::sync::CancellationToken;

use crate::domain::BackupId;
use crate::error::Error;

/// A holder refreshes its lease this often...
pub const HEARTBEAT: Duration = Duration::from_secs(60);
/// ...so a lease not refreshed for this long belongs to an operation that died.
pub const STALE_AFTER: chrono::Duration = chrono::Duration::minutes(5);

/// The lease object's content.
pub fn body(id: &BackupId, purpose: &str) -> PutPayload {
    let host = std::env::var("HOSTNAME").unwrap_or_else(|_| "unknown".into());
    PutPayload::from(
        serde_json::json!({ "backupId": id, "purpose": purpose, "heartbeatAt": Utc::now(), "host": host }).to_string(),
    )
}

/// When the lease at `path` was last refreshed; `None` when absent or unreadable.
pub async fn last_heartbeat(os: &Arc<dyn ObjectStore>, path: &Path) -> Option<DateTime<Utc>> {
    let bytes = os.get(path).await.ok()?.bytes().await.ok()?;
    let lease: serde_json::Value = serde_json::from_slice(&bytes).ok()?;
    lease["heartbeatAt"].as_str()?.parse().ok()
}

/// Whether a lease last refreshed at `heartbeat` is still held.
pub fn is_live(heartbeat: Option<DateTime<Utc>>, now: DateTime<Utc>) -> bool {
    heartbeat.is_some_and(|at| now - at < STALE_AFTER)
}

/// A lease this process holds: refreshed in the background until released.
pub struct Lease {
    os: Arc<dyn ObjectStore>,
    path: Path,
    stop: CancellationToken,
    refresher: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Writes the lease at `path` and keeps it refreshed.
    pub async fn hold(
        os: Arc<dyn ObjectStore>,
        path: Path,
        id: BackupId,
        purpose: &'static str,
    ) -> Result<Self, Error> {
        os.put(&path, body(&id, purpose))
            .await
            .map_err(|e| Error::upstream(format!("writing {path} failed")).with_source(e))?;
        Ok(Self::refresh(os, path, id, purpose))
    }

    /// Keeps an already written lease refreshed.
    pub fn refresh(
        os: Arc<dyn ObjectStore>,
        path: Path,
        id: BackupId,
        purpose: &'static str,
    ) -> Self {
        let stop = CancellationToken::new();
        let (task_os, task_path, task_stop) = (os.clone(), path.clone(), stop.clone());
        let refresher = tokio::spawn(async move {
            loop {
                tokio::select! {
                    () = task_stop.cancelled() => return,
                    () = tokio::time::sleep(HEARTBEAT) => {}
                }
                if let Err(e) = task_os.put(&task_path, body(&id, purpose)).await {
                    tracing::warn!(backup_id = %id, object_key = %task_path, error = %e, "refreshing a lease failed");
                }
            }
        });
        Self {
            os,
            path,
            stop,
            refresher,
        }
    }

    /// Stops refreshing and removes the lease.
    pub async fn release(self) {
        self.stop.cancel();
        let _ = self.refresher.await;
        if let Err(e) = self.os.delete(&self.path).await {
            tracing::warn!(object_key = %self.path, error = %e, "removing a lease failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lease_is_live_until_it_goes_stale() {
        let now = Utc::now();
        assert!(is_live(Some(now - chrono::Duration::seconds(30)), now));
        assert!(!is_live(
            Some(now - STALE_AFTER - chrono::Duration::seconds(1)),
            now
        ));
        assert!(!is_live(None, now));
    }
}
