//! Prometheus metrics for `GET /metrics`: jobs by kind and state, rows and bytes moved, job
//! durations, errors by code, HTTP requests by route.
//!
//! One [`Metrics`] per application, not a process-global registry: a process runs one
//! application in production, and tests run several in one process, each asserting exact counts
//! on its own. Job events come from `jobs::manager`, HTTP events from `api::metrics`; the gauges of
//! live jobs are set from the job table at scrape time, so they cannot drift.
//!
//! Built on `prometheus-client`, the Prometheus project's own Rust client (typed label sets,
//! histograms, the OpenMetrics text encoding Prometheus and Google Managed Prometheus scrape),
//! with no optional features: a hand-rolled registry would be shorter today, but escaping, bucket
//! bookkeeping and the exposition format are exactly what is easy to get subtly wrong.
//!
//! Depends only on `error`; it knows nothing of jobs, HTTP or BigQuery — callers hand it plain
//! labels.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Registry, Unit};

use crate::error::ErrorKind;

/// The `Content-Type` of [`Metrics::render`]'s output.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Every family name starts with this (and `_`).
const PREFIX: &str = "bqbackup";

/// The route label of requests that matched no route: one series, whatever the path.
pub const UNMATCHED_ROUTE: &str = "unmatched";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindStateLabels {
    kind: &'static str,
    state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ErrorLabels {
    /// `http` (an error response) or `job` (a job that ended FAILED).
    source: &'static str,
    /// The `errorCode` callers see (`RESOURCE_NOT_FOUND`, `UPSTREAM_ERROR`, …).
    code: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    /// The route template (`/api/v1/jobs/{id}`), never the raw path: bounded cardinality.
    route: String,
    method: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DrillLabels {
    /// The backup repository's URI.
    repository: String,
    /// `passed` or `failed`.
    result: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RepositoryLabels {
    repository: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: String,
    method: &'static str,
}

/// A job that has just ended, as the metrics see it.
pub struct JobEnded {
    /// `BACKUP` or `RESTORE`.
    pub kind: &'static str,
    /// The final state: `SUCCEEDED`, `FAILED` or `CANCELLED`.
    pub state: &'static str,
    /// From start (or acceptance, for a job that never started) to end.
    pub duration: Duration,
    /// Totals over the job's tables.
    pub rows: u64,
    pub bytes: u64,
    /// Why it failed; `None` for a job that succeeded or was cancelled.
    pub error: Option<ErrorKind>,
}

/// One HTTP request, as the metrics see it.
pub struct RequestServed<'a> {
    /// The matched route template, or [`UNMATCHED_ROUTE`].
    pub route: &'a str,
    pub method: &'a http::Method,
    pub status: u16,
    pub duration: Duration,
    /// The response's `errorCode`, for an error response.
    pub error_code: Option<&'static str>,
}

/// This application's metrics. Cheap to clone.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    jobs_started: Family<KindLabels, Counter>,
    jobs_ended: Family<KindStateLabels, Counter>,
    jobs_active: Family<KindLabels, Gauge>,
    jobs_queued: Family<KindLabels, Gauge>,
    job_duration: Family<KindStateLabels, Histogram, fn() -> Histogram>,
    rows: Family<KindLabels, Counter>,
    bytes: Family<KindLabels, Counter>,
    errors: Family<ErrorLabels, Counter>,
    requests: Family<RequestLabels, Counter>,
    request_duration: Family<RouteLabels, Histogram, fn() -> Histogram>,
    drills: Family<DrillLabels, Counter>,
    drill_last_success: Family<RepositoryLabels, Gauge>,
}

impl fmt::Debug for Metrics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

/// Job durations: 0.5 s to about 4.5 hours, doubling.
fn job_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.5, 2.0, 16))
}

/// Request durations: 5 ms to about 80 s (a waited-for backup), doubling.
fn request_duration_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 15))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A fresh registry with every family registered (and no samples yet).
    pub fn new() -> Self {
        let jobs_started = Family::<KindLabels, Counter>::default();
        let jobs_ended = Family::<KindStateLabels, Counter>::default();
        let jobs_active = Family::<KindLabels, Gauge>::default();
        let jobs_queued = Family::<KindLabels, Gauge>::default();
        let job_duration: Family<KindStateLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(job_duration_histogram);
        let rows = Family::<KindLabels, Counter>::default();
        let bytes = Family::<KindLabels, Counter>::default();
        let errors = Family::<ErrorLabels, Counter>::default();
        let requests = Family::<RequestLabels, Counter>::default();
        let request_duration: Family<RouteLabels, Histogram, fn() -> Histogram> =
            Family::new_with_constructor(request_duration_histogram);
        let drills = Family::<DrillLabels, Counter>::default();
        let drill_last_success = Family::<RepositoryLabels, Gauge>::default();

        let mut registry = Registry::with_prefix(PREFIX);
        registry.register(
            "jobs_started",
            "Jobs accepted by this instance, by kind",
            jobs_started.clone(),
        );
        registry.register(
            "jobs_ended",
            "Jobs that ended on this instance, by kind and final state",
            jobs_ended.clone(),
        );
        registry.register(
            "jobs_active",
            "Jobs accepted by this instance and not yet ended (running or queued), by kind",
            jobs_active.clone(),
        );
        registry.register(
            "jobs_queued",
            "Jobs waiting for a slot on this instance (BQB_MAX_RUNNING_JOBS), by kind",
            jobs_queued.clone(),
        );
        registry.register_with_unit(
            "job_duration",
            "Time from a job's start to its end, by kind and final state",
            Unit::Seconds,
            job_duration.clone(),
        );
        registry.register(
            "job_rows",
            "Rows written by backups or loaded by restores, by job kind",
            rows.clone(),
        );
        registry.register_with_unit(
            "job",
            "Bytes written by backups (restores count rows only), by job kind",
            Unit::Bytes,
            bytes.clone(),
        );
        registry.register(
            "errors",
            "Error responses (source=http) and failed jobs (source=job), by errorCode",
            errors.clone(),
        );
        registry.register(
            "http_requests",
            "HTTP requests by route template, method and status",
            requests.clone(),
        );
        registry.register_with_unit(
            "http_request_duration",
            "HTTP request latency by route template and method",
            Unit::Seconds,
            request_duration.clone(),
        );
        registry.register(
            "drills",
            "Restore drills that ended on this instance, by repository and result",
            drills.clone(),
        );
        registry.register_with_unit(
            "drill_last_success_timestamp",
            "When the last restore drill that passed on this instance ended (Unix time), by repository: alert when it grows old",
            Unit::Seconds,
            drill_last_success.clone(),
        );
        Self {
            inner: Arc::new(Inner {
                registry,
                jobs_started,
                jobs_ended,
                jobs_active,
                jobs_queued,
                job_duration,
                rows,
                bytes,
                errors,
                requests,
                request_duration,
                drills,
                drill_last_success,
            }),
        }
    }

    /// A restore drill of a backup of `repository` ended at `at` (Unix seconds).
    pub fn drill_ended(&self, repository: &str, passed: bool, at: i64) {
        let result = if passed { "passed" } else { "failed" };
        self.inner
            .drills
            .get_or_create(&DrillLabels {
                repository: repository.to_string(),
                result,
            })
            .inc();
        if passed {
            self.inner
                .drill_last_success
                .get_or_create(&RepositoryLabels {
                    repository: repository.to_string(),
                })
                .set(at);
        }
    }

    /// A job was accepted (saved PENDING).
    pub fn job_started(&self, kind: &'static str) {
        self.inner
            .jobs_started
            .get_or_create(&KindLabels { kind })
            .inc();
    }

    /// A job reached its final state.
    pub fn job_ended(&self, job: &JobEnded) {
        let inner = &self.inner;
        let labels = KindStateLabels {
            kind: job.kind,
            state: job.state,
        };
        inner.jobs_ended.get_or_create(&labels).inc();
        inner
            .job_duration
            .get_or_create(&labels)
            .observe(job.duration.as_secs_f64());
        let kind = KindLabels { kind: job.kind };
        inner.rows.get_or_create(&kind).inc_by(job.rows);
        inner.bytes.get_or_create(&kind).inc_by(job.bytes);
        if let Some(error) = job.error {
            // Counted under the code its `GET /api/v1/jobs/{id}` shows.
            self.count_error("job", error.code());
        }
    }

    /// Gives every job counter of `kind` a series (0 until its first job), so that rates and
    /// alerts work from the first scrape.
    pub fn declare_job_kind(&self, kind: &'static str, final_states: &[&'static str]) {
        let inner = &self.inner;
        let labels = KindLabels { kind };
        // Adding 0 creates the series without changing it.
        inner.jobs_started.get_or_create(&labels).inc_by(0);
        inner.rows.get_or_create(&labels).inc_by(0);
        inner.bytes.get_or_create(&labels).inc_by(0);
        for &state in final_states {
            inner
                .jobs_ended
                .get_or_create(&KindStateLabels { kind, state })
                .inc_by(0);
        }
    }

    /// Sets the live-job gauges of `kind` (called at scrape time from the job table).
    pub fn set_live_jobs(&self, kind: &'static str, active: usize, queued: usize) {
        let labels = KindLabels { kind };
        let as_gauge = |n: usize| i64::try_from(n).unwrap_or(i64::MAX);
        self.inner
            .jobs_active
            .get_or_create(&labels)
            .set(as_gauge(active));
        self.inner
            .jobs_queued
            .get_or_create(&labels)
            .set(as_gauge(queued));
    }

    /// An HTTP request was answered.
    pub fn request_served(&self, request: &RequestServed<'_>) {
        let method = method_label(request.method);
        self.inner
            .requests
            .get_or_create(&RequestLabels {
                route: request.route.to_string(),
                method,
                status: request.status,
            })
            .inc();
        self.inner
            .request_duration
            .get_or_create(&RouteLabels {
                route: request.route.to_string(),
                method,
            })
            .observe(request.duration.as_secs_f64());
        if let Some(code) = request.error_code {
            self.count_error("http", code);
        }
    }

    fn count_error(&self, source: &'static str, code: &'static str) {
        self.inner
            .errors
            .get_or_create(&ErrorLabels { source, code })
            .inc();
    }

    /// Every family in the OpenMetrics text format ([`CONTENT_TYPE`]).
    pub fn render(&self) -> String {
        let mut text = String::new();
        // Writing into a String cannot fail; an encoder error would be a bug in a label value.
        if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &self.inner.registry) {
            tracing::error!(error = %e, "encoding the metrics failed");
        }
        text
    }
}

/// The method as a label: the standard ones by name, anything else as `OTHER` (bounded).
fn method_label(method: &http::Method) -> &'static str {
    const KNOWN: [&str; 9] = [
        "GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE",
    ];
    KNOWN
        .into_iter()
        .find(|m| *m == method.as_str())
        .unwrap_or("OTHER")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ended_job_counts_its_state_rows_bytes_and_error() {
        let metrics = Metrics::new();
        metrics.job_started("BACKUP");
        metrics.job_ended(&JobEnded {
            kind: "BACKUP",
            state: "FAILED",
            duration: Duration::from_secs(3),
            rows: 10,
            bytes: 2048,
            error: Some(ErrorKind::NotFound),
        });
        metrics.set_live_jobs("RESTORE", 2, 1);
        let text = metrics.render();
        for line in [
            r#"bqbackup_jobs_started_total{kind="BACKUP"} 1"#,
            r#"bqbackup_jobs_ended_total{kind="BACKUP",state="FAILED"} 1"#,
            r#"bqbackup_job_rows_total{kind="BACKUP"} 10"#,
            r#"bqbackup_job_bytes_total{kind="BACKUP"} 2048"#,
            r#"bqbackup_errors_total{source="job",code="RESOURCE_NOT_FOUND"} 1"#,
            r#"bqbackup_jobs_active{kind="RESTORE"} 2"#,
            r#"bqbackup_jobs_queued{kind="RESTORE"} 1"#,
            r#"bqbackup_job_duration_seconds_count{kind="BACKUP",state="FAILED"} 1"#,
            r#"bqbackup_job_duration_seconds_bucket{le="4.0",kind="BACKUP",state="FAILED"} 1"#,
            "# EOF",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing `{line}` in:\n{text}"
            );
        }
    }

    #[test]
    fn an_unusual_method_is_one_label() {
        let metrics = Metrics::new();
        let method = http::Method::from_bytes(b"BREW").unwrap();
        metrics.request_served(&RequestServed {
            route: UNMATCHED_ROUTE,
            method: &method,
            status: 405,
            duration: Duration::from_millis(1),
            error_code: Some("METHOD_NOT_ALLOWED"),
        });
        let text = metrics.render();
        assert!(
            text.contains(
                r#"bqbackup_http_requests_total{route="unmatched",method="OTHER",status="405"} 1"#
            ),
            "{text}"
        );
        assert!(
            text.contains(r#"bqbackup_errors_total{source="http",code="METHOD_NOT_ALLOWED"} 1"#),
            "{text}"
        );
    }
}
