//! Logging: Cloud Logging structured JSON (one object per line with `severity`, `message`,
//! `timestamp`, span fields, and `logging.googleapis.com/trace` when the request carried a trace
//! header), or human-readable output on a terminal.
//!
//! Logs go to stderr: the CLI's stdout carries only its JSON result (`bq-backup backup … | jq`),
//! and Cloud Run and GKE read structured JSON from stderr as from stdout.
//!
//! `settings` declares `BQB_LOG_FORMAT` and `BQB_LOG_LEVEL`. Depends only on `config`.

pub(crate) mod settings;

use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::{Event, Level, Subscriber, field::Field};
use tracing_subscriber::fmt::format::{JsonFields, Writer};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, FormattedFields};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::registry::LookupSpan;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, Layer};

use settings::DEFAULT_LOG_LEVEL;
pub use settings::{LogFormat, LogSettings};

/// The span field the HTTP layer fills from `X-Cloud-Trace-Context` / `traceparent`.
pub const TRACE_FIELD: &str = "trace";

/// Installs the global subscriber; JSON logs name traces under `project_id`
/// (`projects/{id}/traces/…`). Safe to call more than once (later calls do nothing), so tests
/// that build several apps in one process can all call it.
pub fn init(settings: &LogSettings, project_id: Option<&str>) {
    let filter = EnvFilter::builder()
        .parse(&settings.level)
        .unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_LEVEL));
    let json = match settings.format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let layer = if json {
        tracing_subscriber::fmt::layer()
            .fmt_fields(JsonFields::new())
            .event_format(CloudLogging {
                project_id: project_id.map(str::to_string),
            })
            .with_writer(std::io::stderr)
            .boxed()
    } else {
        tracing_subscriber::fmt::layer()
            .with_target(false)
            .with_writer(std::io::stderr)
            .boxed()
    };
    // Err only means a subscriber is already installed (a second app in the same test process).
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(layer)
        .try_init();
}

/// Parses a trace id out of `X-Cloud-Trace-Context` (`TRACE_ID/SPAN_ID;o=1`) or W3C
/// `traceparent` (`00-TRACE_ID-SPAN_ID-01`) header values.
pub fn trace_id_from_headers(
    cloud_trace: Option<&str>,
    traceparent: Option<&str>,
) -> Option<String> {
    let valid = |id: &str| id.len() == 32 && id.chars().all(|c| c.is_ascii_hexdigit());
    if let Some(v) = cloud_trace {
        let id = v.split('/').next().unwrap_or_default().trim();
        if valid(id) {
            return Some(id.to_ascii_lowercase());
        }
    }
    let mut parts = traceparent?.trim().split('-');
    let (_version, id) = (parts.next()?, parts.next()?);
    valid(id).then(|| id.to_ascii_lowercase())
}

/// Formats events as Cloud Logging structured JSON.
struct CloudLogging {
    project_id: Option<String>,
}

fn severity(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => "ERROR",
        Level::WARN => "WARNING",
        Level::INFO => "INFO",
        Level::DEBUG | Level::TRACE => "DEBUG",
    }
}

impl<S, N> FormatEvent<S, N> for CloudLogging
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let meta = event.metadata();
        let mut out = Map::new();
        out.insert("severity".into(), severity(meta.level()).into());
        out.insert(
            "timestamp".into(),
            chrono::Utc::now()
                .to_rfc3339_opts(chrono::SecondsFormat::Micros, true)
                .into(),
        );
        out.insert("target".into(), meta.target().into());
        // Span fields (job_id, backup_id, request_id, trace, ...) from the outermost span inwards,
        // so inner spans win. They were recorded by `JsonFields`, hence stored as JSON objects.
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                let extensions = span.extensions();
                if let Some(fields) = extensions.get::<FormattedFields<N>>()
                    && let Ok(Value::Object(map)) = serde_json::from_str::<Value>(fields)
                {
                    out.extend(map);
                }
            }
        }
        event.record(&mut JsonVisitor(&mut out));
        if let Some(Value::String(trace)) = out.remove(TRACE_FIELD) {
            let value = match &self.project_id {
                Some(p) => format!("projects/{p}/traces/{trace}"),
                None => trace,
            };
            out.insert("logging.googleapis.com/trace".into(), value.into());
        }
        let line = serde_json::to_string(&Value::Object(out)).map_err(|_| std::fmt::Error)?;
        writeln!(writer, "{line}")
    }
}

struct JsonVisitor<'a>(&'a mut Map<String, Value>);

impl tracing::field::Visit for JsonVisitor<'_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().into(), value.into());
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0.insert(field.name().into(), value.to_string().into());
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().into(), format!("{value:?}").into());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trace_ids_come_from_either_header() {
        let id = "105445aa7843bc8bf206b12000100000";
        assert_eq!(
            trace_id_from_headers(Some(&format!("{id}/1;o=1")), None).as_deref(),
            Some(id)
        );
        assert_eq!(
            trace_id_from_headers(None, Some(&format!("00-{id}-00f067aa0ba902b7-01"))).as_deref(),
            Some(id)
        );
        assert_eq!(trace_id_from_headers(Some("garbage"), None), None);
        assert_eq!(trace_id_from_headers(None, None), None);
    }

    #[test]
    fn json_lines_carry_severity_message_span_fields_and_trace() {
        use std::sync::{Arc, Mutex};
        #[derive(Clone, Default)]
        struct Buf(Arc<Mutex<Vec<u8>>>);
        impl std::io::Write for Buf {
            fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
                self.0.lock().unwrap().extend_from_slice(b);
                Ok(b.len())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::registry().with(
            tracing_subscriber::fmt::layer()
                .fmt_fields(JsonFields::new())
                .event_format(CloudLogging {
                    project_id: Some("p1".into()),
                })
                .with_writer(move || writer.clone()),
        );
        tracing::subscriber::with_default(subscriber, || {
            let span = tracing::info_span!("request", request_id = "r-1", trace = "abc");
            let _g = span.enter();
            tracing::warn!(rows = 5u64, "table done");
        });
        let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        let v: Value = serde_json::from_str(text.trim()).unwrap();
        assert_eq!(v["severity"], "WARNING");
        assert_eq!(v["message"], "table done");
        assert_eq!(v["rows"], 5);
        assert_eq!(v["request_id"], "r-1");
        assert_eq!(v["logging.googleapis.com/trace"], "projects/p1/traces/abc");
    }
}
