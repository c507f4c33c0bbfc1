//! A time-travel recovery: planned while the caller waits (400 outside the dataset's window, 404
//! for a missing dataset, 409 for an existing target, before anything is created), then run as a
//! job of BigQuery operations — clones, copies, queries — that move no data through this service.

use chrono::{DateTime, Utc};

use super::{Accepted, Engine, Started, Submission};
use crate::domain::{RecoverSpec, parse_recover_request};
use crate::error::Error;
use crate::jobs::{JobKind, NewJob};
use crate::time_travel::{RecoverPlan, plan_recover, run_recover};

/// A recovery request that passed validation, and the request as received.
#[derive(Debug, Clone)]
pub struct RecoverOrder {
    pub spec: RecoverSpec,
    pub request: serde_json::Value,
}

impl RecoverOrder {
    /// Parses and validates a request body (HTTP, the CLI's request file); `now` bounds `asOf`.
    pub fn from_json(body: &[u8], now: DateTime<Utc>) -> Result<Self, Error> {
        let request = parse_recover_request(body).map_err(|f| {
            Error::invalid("the request body is not a valid recovery request", vec![f])
        })?;
        let spec = request
            .validate(now)
            .map_err(|problems| Error::invalid("the recovery request is invalid", problems))?;
        Ok(Self {
            spec,
            // It parsed as a request, so it is JSON.
            request: serde_json::from_slice(body).unwrap_or(serde_json::Value::Null),
        })
    }
}

impl Engine {
    /// Plans the recovery `order` asks for and, unless it is a dry run, accepts it as a job.
    pub async fn recover(
        &self,
        order: RecoverOrder,
        submission: Submission,
    ) -> Result<Started<RecoverPlan>, Error> {
        let RecoverOrder { spec, request } = order;
        let slot = (!spec.dry_run)
            .then(|| self.inner.jobs.reserve_slot())
            .transpose()?;
        let plan = plan_recover(&self.inner.bigquery, &spec, Utc::now()).await?;
        let Some(slot) = slot else {
            return Ok(Started::DryRun(plan));
        };
        let job = NewJob {
            kind: JobKind::Recover,
            backup_id: None,
            storage_uri: String::new(),
            tables: plan.tables.iter().map(|t| t.target.to_string()).collect(),
            request,
            trigger: submission.trigger,
            exclusive_key: None,
        };
        let bigquery = self.inner.bigquery.clone();
        let record = self
            .inner
            .jobs
            .submit(slot, job, move |_run| async move {
                let report = run_recover(&plan, &bigquery).await?;
                serde_json::to_value(report).map_err(|e| Error::internal(format!("report: {e}")))
            })
            .await?;
        Ok(Started::Job(Box::new(Accepted {
            record,
            wait: spec.wait,
        })))
    }
}
