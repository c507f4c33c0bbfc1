//! Which way each table's data leaves BigQuery (`method`): STREAM (the Storage Read API, through
//! this service) or EXTRACT (a BigQuery extract job writing the files to gs:// itself: no byte
//! through the service, no Read API bill, BigQuery's shared slots).
//!
//! EXTRACT is only used where the files BigQuery writes are as faithful as our own, read back
//! with the exact types by restore (a load job over the files) and by verify:
//!
//! - PARQUET: yes. Parquet carries every BigQuery type with its exact type (NUMERIC and
//!   BIGNUMERIC as decimals, DATE/TIME/DATETIME/TIMESTAMP as their logical types, RECORD and
//!   REPEATED columns nested), any column name, and its footer says how many rows a file holds.
//!   RANGE and INTERVAL columns are the exception: nothing here has proven that they survive
//!   BigQuery's Parquet export and load, so such tables stream.
//! - AVRO: no. BigQuery's Avro follows its own conventions (DATETIME and GEOGRAPHY as strings,
//!   column names rewritten where Avro's name rules forbid them) that our restore and verify do
//!   not read as they read our own files, and an Avro file records no row count (counting means
//!   reading it whole).
//! - CSV: no. CSV cannot hold RECORD or REPEATED columns, carries no types, and BigQuery writes
//!   NULL as an empty field, which reads back as an empty string.
//! - JSON: no. BigQuery writes INT64 values as JSON strings, and BYTES as base64 strings: the
//!   files do not say the types back.
//!
//! Depends on `domain`, `formats` and the BigQuery model only.

use crate::bigquery::model::{Table, TableFieldSchema};
use crate::domain::{BackupMethod, ExportMethod, StorageScheme};
use crate::formats::Format;

/// Why BigQuery's export in `format` is not faithful enough to be a backup; `None` for PARQUET.
pub(crate) fn format_refusal(format: Format) -> Option<&'static str> {
    match format {
        Format::Parquet => None,
        Format::Avro => Some(
            "BigQuery's AVRO exports follow BigQuery's own Avro conventions (DATETIME and GEOGRAPHY as strings, column names rewritten to Avro's rules) that this service does not read back exactly, and an Avro file records no row count; use PARQUET for EXTRACT",
        ),
        Format::Csv => Some(
            "BigQuery's CSV exports cannot hold RECORD or REPEATED columns, carry no types, and write NULL like an empty string; use PARQUET for EXTRACT",
        ),
        Format::Json => Some(
            "BigQuery's JSON exports write INT64 values and BYTES as strings, so the files do not say the types back; use PARQUET for EXTRACT",
        ),
    }
}

/// Why `table`'s columns cannot be extracted faithfully; `None` when they can.
pub(crate) fn column_refusal(table: &Table) -> Option<String> {
    fn find(fields: &[TableFieldSchema], prefix: &str) -> Option<(String, String)> {
        fields.iter().find_map(|f| {
            let name = if prefix.is_empty() {
                f.name.clone()
            } else {
                format!("{prefix}.{}", f.name)
            };
            if matches!(f.r#type.as_str(), "RANGE" | "INTERVAL") {
                Some((name, f.r#type.clone()))
            } else {
                find(&f.fields, &name)
            }
        })
    }
    let fields = &table.schema.as_ref()?.fields;
    find(fields, "").map(|(column, kind)| {
        format!("column `{column}` is {kind}, which this service does not export with extract jobs (not proven to survive BigQuery's Parquet export and load); use STREAM or AUTO")
    })
}

/// The method for one table: `Err` with the reason when EXTRACT was asked for and cannot be done
/// faithfully (the storage scheme and the format were checked at validation).
pub(crate) fn choose(
    requested: BackupMethod,
    scheme: StorageScheme,
    format: Format,
    table: &Table,
) -> Result<ExportMethod, String> {
    match requested {
        BackupMethod::Stream => Ok(ExportMethod::Stream),
        BackupMethod::Auto => {
            let faithful = scheme == StorageScheme::Gs
                && format_refusal(format).is_none()
                && column_refusal(table).is_none();
            Ok(if faithful {
                ExportMethod::Extract
            } else {
                ExportMethod::Stream
            })
        }
        BackupMethod::Extract => match column_refusal(table) {
            Some(reason) => Err(reason),
            None => Ok(ExportMethod::Extract),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(fields: serde_json::Value) -> Table {
        serde_json::from_value(json!({ "schema": { "fields": fields } })).unwrap()
    }

    #[test]
    fn auto_extracts_parquet_to_gcs_and_streams_everything_else() {
        let flat = table(json!([{ "name": "id", "type": "INT64" }]));
        let auto = |scheme, format| choose(BackupMethod::Auto, scheme, format, &flat);
        assert_eq!(
            auto(StorageScheme::Gs, Format::Parquet),
            Ok(ExportMethod::Extract)
        );
        assert_eq!(
            auto(StorageScheme::S3, Format::Parquet),
            Ok(ExportMethod::Stream)
        );
        assert_eq!(
            auto(StorageScheme::File, Format::Parquet),
            Ok(ExportMethod::Stream)
        );
        for format in [Format::Avro, Format::Csv, Format::Json] {
            assert_eq!(
                auto(StorageScheme::Gs, format),
                Ok(ExportMethod::Stream),
                "{format}"
            );
            assert!(format_refusal(format).is_some(), "{format}");
        }
        assert_eq!(
            choose(
                BackupMethod::Stream,
                StorageScheme::Gs,
                Format::Parquet,
                &flat
            ),
            Ok(ExportMethod::Stream)
        );
    }

    #[test]
    fn a_range_column_streams_under_auto_and_is_refused_under_extract() {
        let ranged = table(json!([
            { "name": "id", "type": "INT64" },
            { "name": "r", "type": "RECORD", "fields": [{ "name": "span", "type": "RANGE" }] }
        ]));
        assert_eq!(
            choose(
                BackupMethod::Auto,
                StorageScheme::Gs,
                Format::Parquet,
                &ranged
            ),
            Ok(ExportMethod::Stream)
        );
        let refusal = choose(
            BackupMethod::Extract,
            StorageScheme::Gs,
            Format::Parquet,
            &ranged,
        )
        .unwrap_err();
        assert!(refusal.contains("`r.span`"), "{refusal}");
    }
}
