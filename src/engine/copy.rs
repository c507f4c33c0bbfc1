//! A copy of a backup to another repository as a job: checked while the caller waits (400 for
//! a target that is the source, 404 for a backup that is not there, 409 for an id the target
//! holds already or is writing), then run in the background ([`crate::catalog::copy`]) with its
//! record in the state store like any other job.
//!
//! Needs the job store and the repositories, not BigQuery: the CLI's `copy`, `download` and
//! `upload` run it through [`Copies`] without a BigQuery client.

use std::sync::Arc;

use serde_json::json;

use super::{Accepted, Engine, Repositories, Submission};
use crate::catalog::copy::{
    CopyContext, CopyPlan, Encrypting, Existing, Identity, Transform, check_target, read_source,
    run_copy,
};
use crate::catalog::keys::identities_for;
use crate::catalog::lease::LeaseTiming;
use crate::domain::{BackupId, StorageUri};
use crate::encryption::Recipients;
use crate::error::{Error, ErrorKind, FieldError};
use crate::jobs::{JobKind, Jobs, NewJob};
use crate::storage::Access;

/// A copy request.
#[derive(Debug, Clone)]
pub struct CopyOrder {
    pub backup_id: BackupId,
    /// The repository the backup is in, and the field (or flag) that named it.
    pub from: StorageUri,
    pub from_field: String,
    /// The repository to copy it to, and the field (or flag) that named it.
    pub to: StorageUri,
    pub to_field: String,
    /// What the target may already hold ([`Existing::AcceptIdentical`] for a download).
    pub existing: Existing,
    /// Answer with the report rather than at once.
    pub wait: bool,
    /// Encrypt every file for these recipients at the target (re-encrypting an encrypted
    /// backup); `None` keeps the files as they are.
    pub encryption: Option<Arc<Recipients>>,
}

/// Starts copies as jobs. Cheap to clone.
#[derive(Clone)]
pub struct Copies {
    jobs: Jobs,
    repositories: Repositories,
}

impl Copies {
    pub fn new(jobs: Jobs, repositories: Repositories) -> Self {
        Self { jobs, repositories }
    }

    pub fn jobs(&self) -> &Jobs {
        &self.jobs
    }

    pub fn repositories(&self) -> &Repositories {
        &self.repositories
    }

    /// Checks `order` and accepts it as a job.
    pub async fn submit(
        &self,
        order: CopyOrder,
        submission: Submission,
    ) -> Result<Box<Accepted>, Error> {
        if same_repository(&order.from, &order.to) {
            return Err(Error::invalid(
                "the copy request is invalid",
                vec![FieldError::new(
                    order.to_field.clone(),
                    format!(
                        "`{}` is the repository the backup is copied from ({}): name another one",
                        order.to, order.from_field
                    ),
                )],
            ));
        }
        let slot = self.jobs.reserve_slot()?;
        let repositories = &self.repositories;
        let source = repositories.open(&order.from, &order.from_field, Access::Read)?;
        let target = repositories.open(&order.to, &order.to_field, Access::Write)?;
        let backup = read_source(&source, &order.backup_id).await?;
        // Re-encrypting an encrypted backup needs identities that open it: 403 now, not later.
        let transform: Arc<dyn Transform> = match &order.encryption {
            None => Arc::new(Identity),
            Some(recipients) => Arc::new(Encrypting {
                recipients: recipients.clone(),
                identities: identities_for(&source, &backup.manifest).await?,
            }),
        };
        // Refused while the caller waits when it can be seen now; an answer that may change (the
        // target failing right now) refuses nothing: the job checks again under its claim.
        let seen = match target.check_reachable().await {
            Ok(()) => check_target(&target, &backup, order.existing)
                .await
                .map(|_| ()),
            Err(e) => Err(e),
        };
        match seen {
            Err(e) if matches!(e.kind(), ErrorKind::Unavailable | ErrorKind::Upstream) => {
                tracing::warn!(error = %e, backup_id = %order.backup_id, "the copy's target could not be checked before the copy; the job will try");
            }
            other => other?,
        }
        let job = NewJob {
            kind: JobKind::Copy,
            backup_id: Some(order.backup_id.to_string()),
            storage_uri: order.to.to_string(),
            tables: backup
                .manifest
                .tables
                .iter()
                .filter(|t| t.kind.holds_data())
                .map(|t| t.table.to_string())
                .collect(),
            request: json!({
                "backupId": order.backup_id,
                "from": order.from.to_string(),
                "to": order.to.to_string(),
                "encryption": order.encryption.as_ref().map(|r| json!({"recipients": r.keys()})),
            }),
            trigger: submission.trigger,
            exclusive_key: None,
        };
        let plan = CopyPlan {
            backup_id: order.backup_id,
            source,
            target,
            backup,
            existing: order.existing,
        };
        let lease = LeaseTiming::new(self.jobs.settings().heartbeat);
        let observer = submission.observer;
        let record = self
            .jobs
            .submit(slot, job, move |run| async move {
                let ctx = CopyContext {
                    cancel: run.cancel,
                    progress: Some(Engine::progress(run.progress, observer)),
                    lease,
                    transform,
                };
                let report = run_copy(&plan, &ctx).await?;
                serde_json::to_value(report).map_err(|e| Error::internal(format!("report: {e}")))
            })
            .await?;
        Ok(Box::new(Accepted {
            record,
            wait: order.wait,
        }))
    }
}

/// Whether two URIs name the same repository: equal once written canonically, or two `file://`
/// URIs that lead to the same directory.
fn same_repository(a: &StorageUri, b: &StorageUri) -> bool {
    if a == b {
        return true;
    }
    // `file_path` is `Some` for file:// URIs only.
    match (a.file_path(), b.file_path()) {
        (Some(a), Some(b)) => {
            let resolve = |p: &str| std::fs::canonicalize(p).unwrap_or_else(|_| p.into());
            resolve(&a) == resolve(&b)
        }
        _ => false,
    }
}

impl Engine {
    /// Copies are started without BigQuery: see [`Copies`].
    pub fn copies(&self) -> Copies {
        Copies::new(self.inner.jobs.clone(), self.inner.repositories.clone())
    }

    /// Accepts the copy `order` asks for as a job (see [`Copies::submit`]).
    pub async fn copy(
        &self,
        order: CopyOrder,
        submission: Submission,
    ) -> Result<Box<Accepted>, Error> {
        self.copies().submit(order, submission).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn uri(text: &str) -> StorageUri {
        StorageUri::parse(text).unwrap()
    }

    #[test]
    fn a_repository_is_the_same_however_it_is_written() {
        assert!(same_repository(&uri("s3://bkt/p"), &uri("s3://bkt/p/")));
        assert!(!same_repository(&uri("s3://bkt/p"), &uri("gs://bkt/p")));
        assert!(!same_repository(&uri("s3://bkt/p"), &uri("s3://bkt/q")));
        let dir = std::env::temp_dir();
        let dir = dir.to_string_lossy();
        assert!(same_repository(
            &uri(&format!("file://{dir}")),
            &uri(&format!("file://{dir}/")),
        ));
    }
}
