//! A schedule's tick starts its job through the engine, as `POST /api/v1/backup` and `/restore`
//! do, without waiting.

use futures::future::BoxFuture;

use super::{Engine, Started, Submission, Trigger};
use crate::error::Error;
use crate::jobs::JobKind;
use crate::schedule::{Schedule, ScheduleKind, Submit, Submitted};

impl Submit for Engine {
    fn submit(
        &self,
        schedule: &Schedule,
        trigger: Trigger,
    ) -> BoxFuture<'static, Result<Submitted, Error>> {
        let engine = self.clone();
        let body = schedule.request.clone();
        let kind = match schedule.kind {
            ScheduleKind::Backup => JobKind::Backup,
            ScheduleKind::Restore => JobKind::Restore,
        };
        Box::pin(async move {
            match Engine::submit(&engine, kind, &body, Submission::from(trigger)).await? {
                Started::Job(job) => Ok(Submitted {
                    job_id: job.record.job_id.to_string(),
                    backup_id: job.record.backup_id,
                }),
                // The schedule file rejects `dryRun`.
                Started::DryRun(_) => Err(Error::internal(
                    "a schedule's request was a dry run, which the schedule file refuses",
                )),
            }
        })
    }
}
