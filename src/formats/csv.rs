//! CSV (RFC 4180), optionally gzipped: flat tables only.
//!
//! | BigQuery type | written as |
//! |---|---|
//! | every leaf type | the text in [`super::text`] (`-42`, `NaN`, `1.5`, base64 BYTES, `2024-02-29T12:34:56.000001Z`) |
//! | NULL | an empty, unquoted field |
//! | empty STRING / BYTES | `""` (quoted, so it differs from NULL) |
//! | STRUCT, REPEATED | rejected: CSV cannot hold them (BigQuery refuses them too) |
//!
//! Fields are quoted when they hold the delimiter, `"` (doubled inside), CR or LF; lines end
//! with LF; the optional header holds the column names. Reading checks the header against the
//! schema, accepts CRLF line ends, tells a quoted empty field from an unquoted one, and refuses
//! a file that does not end with a line break (the only sign CSV gives of a cut-off file).

use std::sync::Arc;

use arrow::array::{ArrayBuilder, ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::SchemaRef;
use bytes::Bytes;

use super::compression::{TextSink, maybe_gunzip};
use super::text::LeafFormatter;
use super::{Compression, DecodeOptions, EncodeOptions, Format, FormatError};

pub(super) struct CsvEncoder {
    schema: SchemaRef,
    delimiter: u8,
    sink: TextSink,
    /// Rows written before the current batch, to name rows in errors.
    rows: usize,
}

impl CsvEncoder {
    /// `opts` have been validated (no nested columns, a usable delimiter).
    pub(super) fn new(schema: SchemaRef, opts: &EncodeOptions) -> Result<Self, FormatError> {
        let mut sink = TextSink::new(opts.compression == Compression::Gzip);
        if opts.csv_header {
            let mut line = Vec::new();
            for (i, field) in schema.fields().iter().enumerate() {
                if i > 0 {
                    line.push(opts.csv_delimiter);
                }
                write_field(&mut line, field.name().as_bytes(), opts.csv_delimiter);
            }
            line.push(b'\n');
            sink.write_all(&line).map_err(encode_error)?;
        }
        Ok(Self {
            schema,
            delimiter: opts.csv_delimiter,
            sink,
            rows: 0,
        })
    }

    pub(super) fn write(&mut self, batch: &RecordBatch) -> Result<(), FormatError> {
        if batch.schema().fields() != self.schema.fields() {
            return Err(FormatError::SchemaMismatch {
                format: Format::Csv,
                message: "the batch's columns differ from the file's".to_string(),
            });
        }
        let columns = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| {
                LeafFormatter::new(column).ok_or_else(|| FormatError::SchemaMismatch {
                    format: Format::Csv,
                    message: format!("column `{}` is not a flat BigQuery type", field.name()),
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut text = Vec::with_capacity(batch.get_array_memory_size());
        let mut value = Vec::new();
        for row in 0..batch.num_rows() {
            for (i, column) in columns.iter().enumerate() {
                if i > 0 {
                    text.push(self.delimiter);
                }
                if column.is_null(row) {
                    continue;
                }
                value.clear();
                column
                    .write(row, &mut value)
                    .map_err(|message| FormatError::Value {
                        format: Format::Csv,
                        column: self.schema.field(i).name().clone(),
                        row: self.rows + row,
                        message,
                    })?;
                write_field(&mut text, &value, self.delimiter);
            }
            text.push(b'\n');
        }
        self.rows += batch.num_rows();
        self.sink.write_all(&text).map_err(encode_error)
    }

    pub(super) fn take_output(&mut self) -> Bytes {
        self.sink.take()
    }

    pub(super) fn pending_size(&self) -> u64 {
        self.sink.pending_size() as u64
    }

    pub(super) fn finish(self) -> Result<Bytes, FormatError> {
        self.sink.finish().map_err(encode_error)
    }
}

fn encode_error(e: std::io::Error) -> FormatError {
    FormatError::Encode {
        format: Format::Csv,
        message: e.to_string(),
    }
}

/// Appends `value`, quoted when it must be: empty (so it is not NULL), or holding the
/// delimiter, a quote, CR or LF.
fn write_field(out: &mut Vec<u8>, value: &[u8], delimiter: u8) {
    let needs_quotes = value.is_empty()
        || value
            .iter()
            .any(|&b| b == delimiter || matches!(b, b'"' | b'\n' | b'\r'));
    if !needs_quotes {
        out.extend_from_slice(value);
        return;
    }
    out.push(b'"');
    for &b in value {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Decodes a whole CSV file (gzipped or not) into batches of `schema`.
pub(super) fn decode(
    bytes: &[u8],
    schema: &SchemaRef,
    opts: &DecodeOptions,
) -> Result<Vec<RecordBatch>, FormatError> {
    let text = maybe_gunzip(bytes).map_err(|e| corrupt(format!("gzip: {e}")))?;
    let columns = schema.fields().len();
    if columns == 0 {
        return Err(FormatError::FileSchema {
            format: Format::Csv,
            message: "the table schema has no columns".to_string(),
        });
    }
    // Every record ends with a line break; a file that does not was cut off mid-record, and
    // CSV has no other framing to notice it by.
    if !text.is_empty() && !text.ends_with(b"\n") {
        return Err(corrupt(
            "the file does not end with a line break (truncated?)".to_string(),
        ));
    }
    let mut parser = Parser {
        input: &text,
        pos: 0,
        delimiter: opts.csv_delimiter,
    };
    if opts.csv_header {
        check_header(&mut parser, schema)?;
    }
    let mut batches = Vec::new();
    let mut builders = new_builders(columns);
    let mut record = Vec::with_capacity(columns);
    let mut line = usize::from(opts.csv_header);
    while parser.next_record(&mut record)? {
        line += 1;
        if record.len() != columns {
            return Err(corrupt(format!(
                "record {line} has {} fields, the table has {columns} columns",
                record.len()
            )));
        }
        for (builder, field) in builders.iter_mut().zip(&record) {
            match field {
                // An empty unquoted field is NULL; `""` is the empty string.
                Field {
                    text,
                    quoted: false,
                } if text.is_empty() => builder.append_null(),
                Field { text, .. } => {
                    let text = std::str::from_utf8(text)
                        .map_err(|_| corrupt(format!("record {line} is not UTF-8")))?;
                    builder.append_value(text);
                }
            }
        }
        if builders.first().map_or(0, |b| b.len()) >= opts.batch_size {
            batches.push(finish_batch(
                &mut builders,
                schema,
                batches.len() * opts.batch_size,
            )?);
        }
    }
    if builders.first().is_some_and(|b| b.len() > 0) {
        batches.push(finish_batch(
            &mut builders,
            schema,
            batches.len() * opts.batch_size,
        )?);
    }
    Ok(batches)
}

fn new_builders(columns: usize) -> Vec<StringBuilder> {
    (0..columns).map(|_| StringBuilder::new()).collect()
}

fn finish_batch(
    builders: &mut [StringBuilder],
    schema: &SchemaRef,
    first_row: usize,
) -> Result<RecordBatch, FormatError> {
    let columns = builders
        .iter_mut()
        .zip(schema.fields())
        .map(|(builder, field)| {
            let texts = builder.finish();
            super::text::parse_leaf(&texts, field.data_type()).map_err(|(row, message)| {
                FormatError::Value {
                    format: Format::Csv,
                    column: field.name().clone(),
                    row: first_row + row,
                    message,
                }
            })
        })
        .collect::<Result<Vec<ArrayRef>, _>>()?;
    RecordBatch::try_new(Arc::clone(schema), columns).map_err(|e| FormatError::FileSchema {
        format: Format::Csv,
        message: e.to_string(),
    })
}

fn check_header(parser: &mut Parser<'_>, schema: &SchemaRef) -> Result<(), FormatError> {
    let mut header = Vec::new();
    if !parser.next_record(&mut header)? {
        return Ok(());
    }
    let names: Vec<&[u8]> = header.iter().map(|f| f.text.as_ref()).collect();
    let expected: Vec<&[u8]> = schema
        .fields()
        .iter()
        .map(|f| f.name().as_bytes())
        .collect();
    if names != expected {
        return Err(FormatError::FileSchema {
            format: Format::Csv,
            message: format!(
                "the header names {} columns that differ from the table's {} columns (in name or order)",
                names.len(),
                expected.len()
            ),
        });
    }
    Ok(())
}

fn corrupt(message: String) -> FormatError {
    FormatError::Corrupt {
        format: Format::Csv,
        message,
    }
}

struct Field<'a> {
    text: std::borrow::Cow<'a, [u8]>,
    quoted: bool,
}

/// An RFC 4180 record reader that, unlike `csv`/`arrow-csv`, says whether a field was quoted.
struct Parser<'a> {
    input: &'a [u8],
    pos: usize,
    delimiter: u8,
}

impl<'a> Parser<'a> {
    /// Reads the next record into `record`; `false` at the end of the input.
    fn next_record(&mut self, record: &mut Vec<Field<'a>>) -> Result<bool, FormatError> {
        record.clear();
        if self.pos >= self.input.len() {
            return Ok(false);
        }
        loop {
            let field = self.next_field()?;
            record.push(field);
            match self.input.get(self.pos) {
                Some(&b) if b == self.delimiter => self.pos += 1,
                Some(b'\r') if self.input.get(self.pos + 1) == Some(&b'\n') => {
                    self.pos += 2;
                    return Ok(true);
                }
                Some(b'\n') => {
                    self.pos += 1;
                    return Ok(true);
                }
                None => return Ok(true),
                Some(_) => {
                    return Err(corrupt(format!(
                        "unexpected character after a quoted field at byte {}",
                        self.pos
                    )));
                }
            }
        }
    }

    fn next_field(&mut self) -> Result<Field<'a>, FormatError> {
        let input = self.input;
        if input.get(self.pos) != Some(&b'"') {
            let start = self.pos;
            while let Some(&b) = input.get(self.pos) {
                if b == self.delimiter
                    || b == b'\n'
                    || (b == b'\r' && input.get(self.pos + 1) == Some(&b'\n'))
                {
                    break;
                }
                self.pos += 1;
            }
            return Ok(Field {
                text: std::borrow::Cow::Borrowed(&input[start..self.pos]),
                quoted: false,
            });
        }
        let opening = self.pos;
        self.pos += 1;
        let mut text = Vec::new();
        loop {
            match input.get(self.pos) {
                Some(b'"') if input.get(self.pos + 1) == Some(&b'"') => {
                    text.push(b'"');
                    self.pos += 2;
                }
                Some(b'"') => {
                    self.pos += 1;
                    return Ok(Field {
                        text: std::borrow::Cow::Owned(text),
                        quoted: true,
                    });
                }
                Some(&b) => {
                    text.push(b);
                    self.pos += 1;
                }
                None => {
                    return Err(corrupt(format!(
                        "the quoted field opened at byte {opening} never closes"
                    )));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::formats::testdata::{encode, flat_batch};
    use crate::formats::{FileEncoder, decode as decode_file};
    use arrow::datatypes::{DataType, Field as ArrowField, Schema};

    fn csv(delimiter: u8, header: bool) -> EncodeOptions {
        EncodeOptions {
            format: Format::Csv,
            compression: Compression::None,
            csv_header: header,
            csv_delimiter: delimiter,
        }
    }

    #[test]
    fn csv_rejects_a_repeated_column() {
        let schema = Arc::new(Schema::new(vec![ArrowField::new(
            "tags",
            DataType::List(Arc::new(ArrowField::new("item", DataType::Utf8, false))),
            false,
        )]));
        let Err(FormatError::InvalidOptions(problems)) = FileEncoder::new(schema, &csv(b',', true))
        else {
            panic!("a repeated column must be rejected");
        };
        assert_eq!(problems[0].field, "tags");
    }

    #[test]
    fn csv_rejects_a_nested_column() {
        let batch = crate::formats::sample::all_types_batch(1);
        let problems = csv(b',', true).validate(&batch.schema()).unwrap_err();
        let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(fields, ["record", "repeated_int64", "repeated_record"]);
    }

    #[test]
    fn csv_writes_the_header_and_delimiter_it_is_given() {
        let batch = flat_batch(3);
        let text = encode(std::slice::from_ref(&batch), &csv(b'|', true));
        let first_line = text.split(|b| *b == b'\n').next().unwrap();
        let expected: Vec<String> = batch
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        assert_eq!(std::str::from_utf8(first_line).unwrap(), expected.join("|"));

        let without_header = encode(std::slice::from_ref(&batch), &csv(b'\t', false));
        assert!(!without_header.starts_with(expected[0].as_bytes()));
        let mut opts = DecodeOptions::matching(&csv(b'\t', false));
        opts.batch_size = 2;
        let back = decode_file(without_header, batch.schema(), &opts).unwrap();
        assert_eq!(
            arrow::compute::concat_batches(&batch.schema(), &back).unwrap(),
            batch
        );
    }

    #[test]
    fn csv_tells_null_from_the_empty_string() {
        let schema = Arc::new(Schema::new(vec![ArrowField::new(
            "s",
            DataType::Utf8,
            true,
        )]));
        let column = arrow::array::StringArray::from(vec![Some(""), None, Some("x")]);
        let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(column)]).unwrap();
        let text = encode(std::slice::from_ref(&batch), &csv(b',', false));
        assert_eq!(&text[..], b"\"\"\n\nx\n");
        let back = decode_file(text, schema, &DecodeOptions::matching(&csv(b',', false))).unwrap();
        assert_eq!(back, vec![batch]);
    }

    #[test]
    fn csv_with_a_header_that_does_not_match_the_schema_is_refused() {
        let batch = flat_batch(2);
        let mut text = b"wrong,".to_vec();
        text.extend_from_slice(&encode(std::slice::from_ref(&batch), &csv(b',', true))[5..]);
        let err = decode_file(
            text.into(),
            batch.schema(),
            &DecodeOptions::matching(&csv(b',', true)),
        )
        .unwrap_err();
        assert!(matches!(err, FormatError::FileSchema { .. }), "{err}");
    }

    #[test]
    fn csv_with_a_bad_value_names_the_column_and_row() {
        let schema = Arc::new(Schema::new(vec![
            ArrowField::new("a", DataType::Int64, true),
            ArrowField::new("b", DataType::Date32, true),
        ]));
        let text = Bytes::from_static(b"a,b\n1,2024-01-01\n2,yesterday\n");
        let err =
            decode_file(text, schema, &DecodeOptions::matching(&csv(b',', true))).unwrap_err();
        let FormatError::Value { column, row, .. } = &err else {
            panic!("expected a value error, got {err}");
        };
        assert_eq!((column.as_str(), *row), ("b", 1));
        assert!(
            !err.to_string().contains("yesterday"),
            "errors must not echo data: {err}"
        );
    }
}
