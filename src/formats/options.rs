//! The choices a caller makes about a file — format, compression, CSV header and delimiter —
//! and their validation against a table's schema. Pure data: no encoding happens here.

use std::fmt;
use std::str::FromStr;

use arrow::datatypes::{DataType, Field, Schema, TimeUnit};

use super::FormatError;
use crate::error::FieldError;

/// A file format for table data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Format {
    Avro,
    Csv,
    Parquet,
    Json,
}

/// A compression applied to a file: inside the container for AVRO (per block) and PARQUET (per
/// page), around the whole file for CSV and JSON (gzip).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum Compression {
    None,
    Gzip,
    Deflate,
    Snappy,
    Zstd,
}

impl Format {
    pub const ALL: [Format; 4] = [Format::Avro, Format::Csv, Format::Parquet, Format::Json];

    /// The compression used when a request names none: BigQuery's own export default (SNAPPY for
    /// PARQUET, none for the others), so the extract fast path and the streamed path agree.
    pub fn default_compression(self) -> Compression {
        match self {
            Format::Parquet => Compression::Snappy,
            Format::Avro | Format::Csv | Format::Json => Compression::None,
        }
    }

    /// The compressions BigQuery accepts for this format on export (and so do we).
    pub fn allowed_compressions(self) -> &'static [Compression] {
        use Compression::*;
        match self {
            Format::Avro => &[None, Deflate, Snappy, Zstd],
            Format::Parquet => &[None, Snappy, Gzip, Zstd],
            Format::Csv | Format::Json => &[None, Gzip],
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Avro => "AVRO",
            Format::Csv => "CSV",
            Format::Parquet => "PARQUET",
            Format::Json => "JSON",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The name was not one of the known values; the message lists them.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {kind} `{value}`: expected one of {expected}")]
pub struct ParseNameError {
    kind: &'static str,
    value: String,
    expected: &'static str,
}

impl FromStr for Format {
    type Err = ParseNameError;

    /// Any case: `avro`, `Avro`, `AVRO`. `NEWLINE_DELIMITED_JSON` (BigQuery's name) means JSON.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "AVRO" => Ok(Format::Avro),
            "CSV" => Ok(Format::Csv),
            "PARQUET" => Ok(Format::Parquet),
            "JSON" | "NEWLINE_DELIMITED_JSON" => Ok(Format::Json),
            _ => Err(ParseNameError {
                kind: "format",
                value: s.to_string(),
                expected: "AVRO, CSV, PARQUET, JSON",
            }),
        }
    }
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "NONE",
            Compression::Gzip => "GZIP",
            Compression::Deflate => "DEFLATE",
            Compression::Snappy => "SNAPPY",
            Compression::Zstd => "ZSTD",
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Compression {
    type Err = ParseNameError;

    /// Any case: `gzip`, `GZIP`. `ZSTANDARD` is accepted for ZSTD.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_uppercase().as_str() {
            "NONE" => Ok(Compression::None),
            "GZIP" => Ok(Compression::Gzip),
            "DEFLATE" => Ok(Compression::Deflate),
            "SNAPPY" => Ok(Compression::Snappy),
            "ZSTD" | "ZSTANDARD" => Ok(Compression::Zstd),
            _ => Err(ParseNameError {
                kind: "compression",
                value: s.to_string(),
                expected: "NONE, GZIP, DEFLATE, SNAPPY, ZSTD",
            }),
        }
    }
}

/// The file name extension, including the outer compression suffix for the formats whose
/// compression wraps the whole file: `avro`, `parquet`, `csv`, `csv.gz`, `json`, `json.gz`.
/// AVRO and PARQUET compress inside the container, so their extension never changes.
pub fn file_extension(format: Format, compression: Compression) -> String {
    match (format, compression) {
        (Format::Avro, _) => "avro".to_string(),
        (Format::Parquet, _) => "parquet".to_string(),
        (Format::Csv, Compression::Gzip) => "csv.gz".to_string(),
        (Format::Csv, _) => "csv".to_string(),
        (Format::Json, Compression::Gzip) => "json.gz".to_string(),
        (Format::Json, _) => "json".to_string(),
    }
}

/// Default CSV field delimiter (BigQuery's).
pub const DEFAULT_CSV_DELIMITER: u8 = b',';

/// How to encode one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeOptions {
    pub format: Format,
    pub compression: Compression,
    /// CSV only: write a header line with the column names.
    pub csv_header: bool,
    /// CSV only: the field delimiter, one ASCII character other than `"`, CR and LF.
    pub csv_delimiter: u8,
}

impl EncodeOptions {
    /// Options for `format` with its default compression, a CSV header and `,`.
    pub fn new(format: Format) -> Self {
        Self {
            format,
            compression: format.default_compression(),
            csv_header: true,
            csv_delimiter: DEFAULT_CSV_DELIMITER,
        }
    }

    /// Every problem with these options for a table of `schema`, each named by the request field
    /// (`format`, `compression`, `fieldDelimiter`) or by the column (`record.inner.x`).
    pub fn validate(&self, schema: &Schema) -> Result<(), Vec<FieldError>> {
        let mut problems = Vec::new();
        check_compression(self.format, self.compression, &mut problems);
        if self.format == Format::Csv {
            check_delimiter(self.csv_delimiter, &mut problems);
        }
        check_columns(self.format, schema, &mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

/// How to decode one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DecodeOptions {
    pub format: Format,
    /// For CSV and JSON, gzip is also recognised from the bytes themselves, so files of a backup
    /// made without a manifest decode whatever their name says. AVRO and PARQUET name their
    /// compression inside the file.
    pub compression: Compression,
    /// CSV only: the first line is a header (checked against the schema's column names).
    pub csv_header: bool,
    pub csv_delimiter: u8,
    /// Rows per decoded batch (at least 1).
    pub batch_size: usize,
}

/// Default rows per decoded batch.
pub const DEFAULT_BATCH_SIZE: usize = 8192;

impl DecodeOptions {
    pub fn new(format: Format) -> Self {
        Self {
            format,
            compression: format.default_compression(),
            csv_header: true,
            csv_delimiter: DEFAULT_CSV_DELIMITER,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }

    /// The options that read back what `opts` wrote.
    pub fn matching(opts: &EncodeOptions) -> Self {
        Self {
            format: opts.format,
            compression: opts.compression,
            csv_header: opts.csv_header,
            csv_delimiter: opts.csv_delimiter,
            batch_size: DEFAULT_BATCH_SIZE,
        }
    }

    pub(super) fn validate(&self) -> Result<(), FormatError> {
        let mut problems = Vec::new();
        check_compression(self.format, self.compression, &mut problems);
        if self.format == Format::Csv {
            check_delimiter(self.csv_delimiter, &mut problems);
        }
        if self.batch_size == 0 {
            problems.push(FieldError::new("batchSize", "must be at least 1"));
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(FormatError::InvalidOptions(problems))
        }
    }
}

/// Why `format` cannot be compressed with `compression`, or `None` when it can.
pub fn disallowed_compression(format: Format, compression: Compression) -> Option<String> {
    if format.allowed_compressions().contains(&compression) {
        return None;
    }
    let allowed: Vec<&str> = format
        .allowed_compressions()
        .iter()
        .map(|c| c.as_str())
        .collect();
    Some(format!(
        "{compression} is not available for {format}; use one of {}",
        allowed.join(", ")
    ))
}

fn check_compression(format: Format, compression: Compression, problems: &mut Vec<FieldError>) {
    if let Some(message) = disallowed_compression(format, compression) {
        problems.push(FieldError::new("compression", message));
    }
}

fn check_delimiter(delimiter: u8, problems: &mut Vec<FieldError>) {
    if !delimiter.is_ascii() || matches!(delimiter, b'"' | b'\r' | b'\n' | 0) {
        problems.push(FieldError::new(
            "fieldDelimiter",
            "must be one ASCII character other than a double quote, CR, LF or NUL",
        ));
    }
}

/// Columns whose type this module cannot write in `format`: CSV has no nested or repeated
/// values, and only the Arrow types BigQuery's Read API produces are known everywhere.
fn check_columns(format: Format, schema: &Schema, problems: &mut Vec<FieldError>) {
    for field in schema.fields() {
        match field.data_type() {
            DataType::Struct(_) | DataType::List(_) if format == Format::Csv => {
                problems.push(FieldError::new(
                    field.name(),
                    "CSV cannot hold RECORD or REPEATED columns; use AVRO, PARQUET or JSON",
                ))
            }
            _ => check_type(field, field.name(), problems),
        }
    }
}

fn check_type(field: &Field, path: &str, problems: &mut Vec<FieldError>) {
    match field.data_type() {
        DataType::Struct(children) => {
            for child in children {
                check_type(child, &format!("{path}.{}", child.name()), problems);
            }
        }
        DataType::List(item) => check_type(item, path, problems),
        dt if is_bigquery_leaf(dt) => {}
        other => problems.push(FieldError::new(
            path,
            format!("Arrow type {other} is not a BigQuery type this service can back up"),
        )),
    }
}

/// The leaf types of BigQuery's Read API schema (see the table in the module docs).
fn is_bigquery_leaf(data_type: &DataType) -> bool {
    matches!(
        data_type,
        DataType::Int64
            | DataType::Float64
            | DataType::Decimal128(_, _)
            | DataType::Decimal256(_, _)
            | DataType::Boolean
            | DataType::Utf8
            | DataType::Binary
            | DataType::Date32
            | DataType::Time64(TimeUnit::Microsecond)
            | DataType::Timestamp(TimeUnit::Microsecond, _)
    )
}
