//! Rough size of a backup before it runs, for the dry run: a table's logical bytes (BigQuery's
//! `numBytes` plus its streaming buffer) times a per-format, per-compression factor.
//!
//! **A rough estimate, not a promise.** Encoded size depends on the data far more than on the
//! format: repetitive values compress ten-fold, random ones not at all. The factors below are
//! measured, rounded, on two kinds of data — a 20,000-row mixed table with realistic repetition
//! (categorical strings, short free text, numbers, dates; 1.83 MB logical) backed up with every
//! format and compression, and the 10,000,000-row random table of the encode benchmark (docs/benchmarks.md,
//! default compressions) — and sit between the two. Expect real output within about ×0.5–×2.
//!
//! Pure: no I/O.

use serde::Serialize;

use crate::bigquery::model::{Table, TableFieldSchema};
use crate::formats::{Compression, Format};

/// Output bytes per 1,000 logical bytes. Measured (sample / benchmark), then rounded:
///
/// | format | compression | sample | benchmark | factor |
/// |---|---|---:|---:|---:|
/// | AVRO | NONE | 0.81 | 0.88 | 0.85 |
/// | AVRO | DEFLATE | 0.32 | | 0.35 |
/// | AVRO | SNAPPY | 0.44 | | 0.50 |
/// | AVRO | ZSTD | 0.35 | | 0.35 |
/// | PARQUET | NONE | 0.48 | | 0.60 |
/// | PARQUET | SNAPPY | 0.48 | 0.85 | 0.60 |
/// | PARQUET | GZIP | 0.34 | | 0.35 |
/// | PARQUET | ZSTD | 0.36 | | 0.35 |
/// | JSON | NONE | 2.23 | 2.78 | 2.50 |
/// | JSON | GZIP | 0.31 | | 0.30 |
/// | CSV | NONE | 1.10 | 1.66 | 1.30 |
/// | CSV | GZIP | 0.26 | | 0.25 |
///
/// Combinations a format does not allow (rejected before planning) get the uncompressed factor.
pub(crate) fn output_per_mille(format: Format, compression: Compression) -> u64 {
    use Compression::*;
    match (format, compression) {
        (Format::Avro, Deflate | Zstd) => 350,
        (Format::Avro, Snappy) => 500,
        (Format::Avro, _) => 850,
        (Format::Parquet, Gzip | Zstd) => 350,
        (Format::Parquet, _) => 600,
        (Format::Json, Gzip) => 300,
        (Format::Json, _) => 2500,
        (Format::Csv, Gzip) => 250,
        (Format::Csv, _) => 1300,
    }
}

/// Assumed average size of a value of a variable-size type (STRING, BYTES, JSON, GEOGRAPHY),
/// BigQuery's 2-byte overhead included, when the size must come from the schema.
const ASSUMED_VARIABLE_BYTES: u64 = 32;
/// Assumed number of elements of a REPEATED field, when the size must come from the schema.
const ASSUMED_REPEATED_ELEMENTS: u64 = 2;

/// What a dry run tells about one table's output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OutputEstimate {
    /// The logical bytes the estimate starts from (see [`logical_bytes`]).
    pub logical_bytes: u64,
    /// Rough size of the table's files in the chosen format and compression.
    pub estimated_output_bytes: u64,
    /// Files of at most `fileSizeBytes` that output fills (0 for an empty table). A lower bound:
    /// each Read API stream writes its own files.
    pub estimated_files: u64,
}

impl OutputEstimate {
    pub(crate) fn of(
        table: &Table,
        format: Format,
        compression: Compression,
        file_size_bytes: u64,
    ) -> Self {
        let logical = logical_bytes(table);
        let output = u64::try_from(
            u128::from(logical) * u128::from(output_per_mille(format, compression)) / 1000,
        )
        .unwrap_or(u64::MAX);
        Self {
            logical_bytes: logical,
            estimated_output_bytes: output,
            estimated_files: if output == 0 {
                0
            } else {
                output.div_ceil(file_size_bytes.max(1))
            },
        }
    }
}

/// The table's logical bytes: BigQuery's `numBytes` plus its streaming buffer's estimate. When
/// BigQuery reports rows but no bytes (data still only in the streaming buffer without an
/// estimate, or a server that does not count bytes), rows × a row size from the schema, with
/// BigQuery's documented sizes per type (INT64 8, NUMERIC 16, STRING 2 + length…) and the
/// assumptions above for variable-size values.
pub(crate) fn logical_bytes(table: &Table) -> u64 {
    let buffer = table.streaming_buffer.as_ref();
    let bytes = table
        .num_bytes
        .and_then(|b| u64::try_from(b).ok())
        .unwrap_or(0)
        .saturating_add(buffer.map_or(0, |b| b.estimated_bytes));
    if bytes > 0 {
        return bytes;
    }
    let rows = table
        .num_rows
        .unwrap_or(0)
        .saturating_add(buffer.map_or(0, |b| b.estimated_rows));
    let row = table.schema.as_ref().map_or(0, |s| fields_bytes(&s.fields));
    rows.saturating_mul(row)
}

fn fields_bytes(fields: &[TableFieldSchema]) -> u64 {
    fields.iter().map(field_bytes).sum()
}

/// One value of `field` (all elements of a REPEATED one), by BigQuery's data size rules.
fn field_bytes(field: &TableFieldSchema) -> u64 {
    let one = match field.r#type.as_str() {
        "BOOL" | "BOOLEAN" => 1,
        "INT64" | "INTEGER" | "FLOAT64" | "FLOAT" | "DATE" | "DATETIME" | "TIME" | "TIMESTAMP" => 8,
        "NUMERIC" | "INTERVAL" | "RANGE" => 16,
        "BIGNUMERIC" => 32,
        "RECORD" | "STRUCT" => fields_bytes(&field.fields),
        _ => ASSUMED_VARIABLE_BYTES,
    };
    if field.mode == "REPEATED" {
        one * ASSUMED_REPEATED_ELEMENTS
    } else {
        one
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn table(value: serde_json::Value) -> Table {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn every_allowed_combination_has_a_factor_and_compression_shrinks_output() {
        for format in Format::ALL {
            let plain = output_per_mille(format, Compression::None);
            for &compression in format.allowed_compressions() {
                let factor = output_per_mille(format, compression);
                assert!((100..=3000).contains(&factor), "{format} {compression:?}");
                assert!(factor <= plain, "{format} {compression:?}");
            }
        }
        assert!(
            output_per_mille(Format::Json, Compression::None)
                > output_per_mille(Format::Csv, Compression::None)
        );
        assert!(
            output_per_mille(Format::Csv, Compression::None)
                > output_per_mille(Format::Avro, Compression::None)
        );
    }

    #[test]
    fn the_estimate_starts_from_num_bytes_and_the_streaming_buffer() {
        let t = table(json!({ "numRows": "1000", "numBytes": "100000",
                              "streamingBuffer": { "estimatedBytes": "20000", "estimatedRows": "200" } }));
        assert_eq!(logical_bytes(&t), 120_000);
        let e = OutputEstimate::of(&t, Format::Json, Compression::None, 64 * 1024);
        assert_eq!(e.logical_bytes, 120_000);
        assert_eq!(e.estimated_output_bytes, 300_000);
        assert_eq!(e.estimated_files, 5, "300,000 bytes in 65,536-byte files");
        let e = OutputEstimate::of(&t, Format::Parquet, Compression::Zstd, 256 << 20);
        assert_eq!(e.estimated_output_bytes, 42_000);
        assert_eq!(e.estimated_files, 1);
    }

    #[test]
    fn without_byte_counts_the_schema_gives_the_row_size() {
        let t = table(json!({
            "numRows": "10", "numBytes": "0",
            "schema": { "fields": [
                { "name": "id", "type": "INTEGER", "mode": "REQUIRED" },
                { "name": "ok", "type": "BOOLEAN" },
                { "name": "price", "type": "NUMERIC" },
                { "name": "name", "type": "STRING" },
                { "name": "tags", "type": "STRING", "mode": "REPEATED" },
                { "name": "address", "type": "RECORD", "fields": [
                    { "name": "zip", "type": "INT64" }, { "name": "at", "type": "TIMESTAMP" } ] }
            ] }
        }));
        // 8 + 1 + 16 + 32 + 2 × 32 + (8 + 8) = 137 bytes a row.
        assert_eq!(logical_bytes(&t), 1370);
    }

    #[test]
    fn an_empty_table_has_no_files() {
        let t = table(json!({ "numRows": "0", "numBytes": "0",
                              "schema": { "fields": [{ "name": "id", "type": "INT64" }] } }));
        let e = OutputEstimate::of(&t, Format::Avro, Compression::None, 1 << 20);
        assert_eq!(
            e,
            OutputEstimate {
                logical_bytes: 0,
                estimated_output_bytes: 0,
                estimated_files: 0
            }
        );
    }
}
