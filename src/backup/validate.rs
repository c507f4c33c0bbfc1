//! Request → checked values, listing every problem at once: the domain's field rules plus the
//! format × compression rules the formats module owns.

use std::sync::Arc;

use chrono::{DateTime, Utc};

use super::method::format_refusal;
use crate::domain::{BackupMethod, BackupRequest, BackupSpec, ExportOptions, parse_backup_request};
use crate::encryption::Recipients;
use crate::error::{Error, FieldError};
use crate::formats::{Compression, EncodeOptions, Format, disallowed_compression};

/// A backup request that passed validation: what to back up, how to encode it, and the request
/// itself (recorded in the manifest).
#[derive(Debug, Clone)]
pub struct BackupOrder {
    pub spec: BackupSpec,
    pub encode: EncodeOptions,
    /// The request as received: the body itself when it came as JSON
    /// ([`BackupOrder::from_json`]), else the parsed request.
    pub request: serde_json::Value,
    /// `encryption.recipients`, parsed; `None` = the service's default (set by the engine).
    pub encryption: Option<Arc<Recipients>>,
}

impl BackupOrder {
    /// Parses and validates a request body, whoever delivered it (HTTP, a Pub/Sub message, a
    /// schedule, the CLI's request file). The error (400) lists every problem by JSON path.
    pub fn from_json(body: &[u8], now: DateTime<Utc>) -> Result<Self, Error> {
        let request = parse_backup_request(body).map_err(|f| {
            Error::invalid("the request body is not a valid backup request", vec![f])
        })?;
        let mut order = validate_backup_request(request, now)?;
        // It parsed as a request, so it is JSON.
        order.request = serde_json::from_slice(body).unwrap_or(order.request);
        Ok(order)
    }
}

/// Validates a parsed backup request. The error (400) lists every problem by JSON path.
pub fn validate_backup_request(
    request: BackupRequest,
    now: DateTime<Utc>,
) -> Result<BackupOrder, Error> {
    let received = serde_json::to_value(&request).unwrap_or(serde_json::Value::Null);
    let (export, base) = export_options(&request);
    let fallback = FormatChoice {
        format: export
            .and_then(|e| e.format.clone())
            .filter(|f| !f.trim().is_empty())
            .unwrap_or_else(|| "AVRO".into()),
        format_field: format!("{base}.format"),
        compression: export
            .and_then(|e| e.compression.clone())
            .filter(|c| !c.trim().is_empty() && !c.eq_ignore_ascii_case("none")),
        compression_field: format!("{base}.compression"),
    };
    let encryption = match &request.encryption {
        None => Ok(None),
        Some(e) => {
            Recipients::parse_at("encryption.recipients", &e.recipients).map(|r| Some(Arc::new(r)))
        }
    };
    match (request.validate(now), encryption) {
        (Ok(_), Err(problems)) => Err(Error::invalid("the backup request is invalid", problems)),
        (Ok(spec), Ok(encryption)) => {
            let choice = FormatChoice {
                format: spec.format.clone(),
                format_field: spec.format_field.clone(),
                compression: spec.compression.clone(),
                compression_field: spec.compression_field.clone(),
            };
            let mut encode = choice
                .check()
                .map_err(|p| Error::invalid("the backup request is invalid", p))?;
            encode.csv_header = spec.csv_header;
            encode.csv_delimiter = spec.field_delimiter;
            if spec.method == BackupMethod::Extract
                && let Some(reason) = format_refusal(encode.format)
            {
                return Err(Error::invalid(
                    "the backup request is invalid",
                    vec![FieldError::new(
                        "method",
                        format!("EXTRACT cannot write {}: {reason}", encode.format),
                    )],
                ));
            }
            if spec.method == BackupMethod::Extract && encryption.is_some() {
                return Err(Error::invalid(
                    "the backup request is invalid",
                    vec![FieldError::new(
                        "encryption",
                        "BigQuery's extract jobs write files in clear: an encrypted backup needs method STREAM or AUTO",
                    )],
                ));
            }
            Ok(BackupOrder {
                spec,
                encode,
                request: received,
                encryption,
            })
        }
        (Err(mut problems), encryption) => {
            if let Err(more) = encryption {
                problems.extend(more);
            }
            if let Err(more) = fallback.check() {
                for m in more {
                    if !problems.iter().any(|p| p.field == m.field) {
                        problems.push(m);
                    }
                }
            }
            Err(Error::invalid("the backup request is invalid", problems))
        }
    }
}

/// Where the export options are (either place; the domain rejects both at once).
fn export_options(request: &BackupRequest) -> (Option<&ExportOptions>, &'static str) {
    let storage = request.backup_storage.as_ref();
    if let Some(e) = storage
        .and_then(|s| s.gcs_options.as_ref())
        .and_then(|g| g.export_options.as_ref())
    {
        return (Some(e), "backupStorage.gcsOptions.exportOptions");
    }
    if let Some(e) = storage.and_then(|s| s.export_options.as_ref()) {
        return (Some(e), "backupStorage.exportOptions");
    }
    let uses_gcs = storage.is_some_and(|s| s.gcs_options.is_some());
    (
        None,
        if uses_gcs {
            "backupStorage.gcsOptions.exportOptions"
        } else {
            "backupStorage.exportOptions"
        },
    )
}

struct FormatChoice {
    format: String,
    format_field: String,
    compression: Option<String>,
    compression_field: String,
}

impl FormatChoice {
    fn check(&self) -> Result<EncodeOptions, Vec<FieldError>> {
        let format = self
            .format
            .parse::<Format>()
            .map_err(|e| vec![FieldError::new(self.format_field.clone(), e.to_string())])?;
        let compression = match &self.compression {
            None => format.default_compression(),
            Some(c) => c.parse::<Compression>().map_err(|e| {
                vec![FieldError::new(
                    self.compression_field.clone(),
                    e.to_string(),
                )]
            })?,
        };
        if let Some(message) = disallowed_compression(format, compression) {
            return Err(vec![FieldError::new(
                self.compression_field.clone(),
                message,
            )]);
        }
        let mut encode = EncodeOptions::new(format);
        encode.compression = compression;
        Ok(encode)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        "2026-11-21T08:00:00Z".parse().unwrap()
    }

    fn check(body: serde_json::Value) -> Result<(BackupSpec, EncodeOptions), Error> {
        BackupOrder::from_json(body.to_string().as_bytes(), now()).map(|o| (o.spec, o.encode))
    }

    #[test]
    fn the_java_examples_validate_with_their_formats() {
        let (_, encode) = check(
            serde_json::from_str(include_str!(
                "../../examples/java-compat/backup_request.json"
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (encode.format, encode.compression),
            (Format::Csv, Compression::Gzip)
        );
        let (_, encode) = check(
            serde_json::from_str(include_str!(
                "../../examples/java-compat/backup_request_minimal.json"
            ))
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (encode.format, encode.compression),
            (Format::Avro, Format::Avro.default_compression())
        );
    }

    #[test]
    fn a_compression_the_format_cannot_use_is_named() {
        let err = check(serde_json::json!({
            "bigQuery": {"projectId": "test-project"},
            "backupStorage": {"uri": "s3://bqb-test/p", "exportOptions": {"format": "CSV", "compression": "SNAPPY"}}
        }))
        .unwrap_err();
        assert_eq!(
            err.details()[0].field,
            "backupStorage.exportOptions.compression"
        );
        assert!(err.details()[0].message.contains("SNAPPY"), "{err}");
    }

    #[test]
    fn extract_in_a_format_bigquery_cannot_export_faithfully_is_refused_naming_method() {
        for format in ["AVRO", "CSV", "JSON"] {
            let err = check(serde_json::json!({
                "bigQuery": {"projectId": "test-project"},
                "backupStorage": {"uri": "gs://bucket-1/p", "exportOptions": {"format": format}},
                "method": "EXTRACT"
            }))
            .unwrap_err();
            assert_eq!(err.details()[0].field, "method", "{format}");
            assert!(err.details()[0].message.contains(format), "{err}");
        }
        let (spec, encode) = check(serde_json::json!({
            "bigQuery": {"projectId": "test-project"},
            "backupStorage": {"uri": "gs://bucket-1/p", "exportOptions": {"format": "PARQUET"}},
            "method": "EXTRACT"
        }))
        .unwrap();
        assert_eq!(
            (spec.method, encode.format),
            (BackupMethod::Extract, Format::Parquet)
        );
    }

    #[test]
    fn format_problems_are_listed_with_every_other_problem() {
        let err = check(serde_json::json!({
            "bigQuery": {"projectId": "BAD"},
            "backupStorage": {"gcsOptions": {"uri": "gs://b", "exportOptions": {"format": "XML"}}}
        }))
        .unwrap_err();
        let fields: Vec<&str> = err.details().iter().map(|d| d.field.as_str()).collect();
        assert!(fields.contains(&"bigQuery.projectId"), "{fields:?}");
        assert!(
            fields.contains(&"backupStorage.gcsOptions.exportOptions.format"),
            "{fields:?}"
        );
    }
}
