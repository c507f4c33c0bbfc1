//! A verify as a job: the backup is looked up while the caller waits (404 when there is none),
//! then its files are re-read in the background — a verify of a large backup outlives any HTTP
//! request — with the result in the job's record. An encrypted backup that this service's
//! identities do not open is a 403 while the caller waits.

use serde_json::json;

use super::{Accepted, Engine, Submission};
use crate::catalog::Sample;
use crate::catalog::keys::identities_for;
use crate::catalog::verify::verify_with_keys;
use crate::domain::BackupId;
use crate::error::Error;
use crate::jobs::{JobKind, NewJob};
use crate::storage::Store;

/// A verify request: which backup, and whether to read only a sample of its files.
#[derive(Debug, Clone)]
pub struct VerifyOrder {
    pub backup_id: BackupId,
    pub sample: Option<Sample>,
    /// Answer with the report rather than at once.
    pub wait: bool,
}

impl Engine {
    /// Accepts the verify of a backup of `store` as a job.
    pub async fn verify(
        &self,
        store: Store,
        order: VerifyOrder,
        submission: Submission,
    ) -> Result<Box<Accepted>, Error> {
        let slot = self.inner.jobs.reserve_slot()?;
        let manifest = self
            .inner
            .repositories
            .show(&store, &order.backup_id)
            .await?;
        // An encrypted backup this service cannot open: 403 now, not a failed job.
        let keys = identities_for(&store, &manifest)
            .await
            .map_err(|e| store.attribute(e))?;
        let job = NewJob {
            kind: JobKind::Verify,
            backup_id: Some(order.backup_id.to_string()),
            storage_uri: store.uri().to_string(),
            // Its progress is the report; no per-table entries.
            tables: Vec::new(),
            request: json!({ "backupId": order.backup_id, "sample": order.sample }),
            trigger: submission.trigger,
            exclusive_key: None,
        };
        let sample = order.sample;
        let record = self
            .inner
            .jobs
            .submit(slot, job, move |run| async move {
                let report = tokio::select! {
                    report = verify_with_keys(&store, &manifest, sample, keys) => {
                        report.map_err(|e| store.attribute(e))?
                    }
                    () = run.cancel.cancelled() => {
                        return Err(Error::cancelled(format!(
                            "the verify of backup {} was cancelled",
                            manifest.backup_id
                        )));
                    }
                };
                serde_json::to_value(report).map_err(|e| Error::internal(format!("report: {e}")))
            })
            .await?;
        Ok(Box::new(Accepted {
            record,
            wait: order.wait,
        }))
    }
}
