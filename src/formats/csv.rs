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

use std::io::Read;
use std::sync::Arc;

use arrow::array::{ArrayBuilder, ArrayRef, RecordBatch, StringBuilder};
use arrow::datatypes::SchemaRef;

use super::compression::{Encoded, TextSink, maybe_gunzip};
use super::text::LeafFormatter;
use super::{Compression, DecodeOptions, EncodeOptions, Format, FormatError};

pub(super) struct CsvEncoder {
    schema: SchemaRef,
    delimiter: u8,
    /// Which bytes make a field need quotes: the delimiter, `"`, CR and LF.
    special: [bool; 256],
    /// Whether the delimiter can occur in the text of other types than STRING (digits, signs,
    /// `.`, `:`, letters, base64): only then are their values looked at for quoting.
    delimiter_in_values: bool,
    sink: TextSink,
    /// Rows written before the current batch, to name rows in errors.
    rows: usize,
    /// Text bytes per row of the last batch, to size the next batch's buffer.
    bytes_per_row: usize,
}

impl CsvEncoder {
    /// `opts` have been validated (no nested columns, a usable delimiter).
    pub(super) fn new(schema: SchemaRef, opts: &EncodeOptions) -> Result<Self, FormatError> {
        let mut sink = TextSink::new(opts.compression == Compression::Gzip);
        let mut special = [false; 256];
        for b in [opts.csv_delimiter, b'"', b'\r', b'\n'] {
            special[usize::from(b)] = true;
        }
        if opts.csv_header {
            let mut line = Vec::new();
            for (i, field) in schema.fields().iter().enumerate() {
                if i > 0 {
                    line.push(opts.csv_delimiter);
                }
                let start = line.len();
                line.extend_from_slice(field.name().as_bytes());
                quote_if_needed(&mut line, start, &special);
            }
            line.push(b'\n');
            sink.write_all(&line).map_err(encode_error)?;
        }
        Ok(Self {
            schema,
            delimiter: opts.csv_delimiter,
            special,
            delimiter_in_values: opts.csv_delimiter.is_ascii_alphanumeric()
                || b"+-./:=".contains(&opts.csv_delimiter),
            sink,
            rows: 0,
            bytes_per_row: 0,
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
        let rows = batch.num_rows();
        let capacity = match self.bytes_per_row {
            0 => batch.get_array_memory_size(),
            // A little over the last batch's rate, so that one reservation is usually enough.
            known => rows * (known + known / 8 + 1),
        };
        // Per column: whether its values may need quotes (STRING and BYTES always: they may be
        // empty, and a STRING may hold any byte).
        let scan: Vec<bool> = columns
            .iter()
            .map(|c| c.can_be_empty() || self.delimiter_in_values)
            .collect();
        let (delimiter, special, schema, first_row) =
            (self.delimiter, &self.special, &self.schema, self.rows);
        let mut written = 0;
        self.sink.write_batch(
            capacity,
            |text| {
                let start = text.len();
                for row in 0..rows {
                    for (i, column) in columns.iter().enumerate() {
                        if i > 0 {
                            text.push(delimiter);
                        }
                        if column.is_null(row) {
                            continue;
                        }
                        let value_start = text.len();
                        column
                            .write(row, text)
                            .map_err(|message| FormatError::Value {
                                format: Format::Csv,
                                column: schema.field(i).name().clone(),
                                row: first_row + row,
                                message,
                            })?;
                        if scan[i] {
                            quote_if_needed(text, value_start, special);
                        }
                    }
                    text.push(b'\n');
                }
                written = text.len() - start;
                Ok(())
            },
            encode_error,
        )?;
        self.rows += rows;
        self.bytes_per_row = written.div_ceil(rows.max(1));
        Ok(())
    }

    pub(super) fn take_output(&mut self) -> Encoded {
        self.sink.take().into()
    }

    pub(super) fn pending_size(&self) -> u64 {
        self.sink.pending_size() as u64
    }

    pub(super) fn finish(self) -> Result<Encoded, FormatError> {
        self.sink.finish().map(Encoded::from).map_err(encode_error)
    }
}

fn encode_error(e: std::io::Error) -> FormatError {
    FormatError::Encode {
        format: Format::Csv,
        message: e.to_string(),
    }
}

/// Quotes the field `out[start..]` (just written) when it must be: empty (so that it is not
/// NULL), or holding a `special` byte (the delimiter, a quote, CR or LF); quotes inside are
/// doubled. Most fields need nothing, so they are written first and looked at after.
fn quote_if_needed(out: &mut Vec<u8>, start: usize, special: &[bool; 256]) {
    let value = &out[start..];
    if !value.is_empty() && !value.iter().any(|&b| special[usize::from(b)]) {
        return;
    }
    let value = out.split_off(start);
    out.push(b'"');
    for b in value {
        if b == b'"' {
            out.push(b'"');
        }
        out.push(b);
    }
    out.push(b'"');
}

/// Bytes read from the input at a time (more when one record is longer).
const READ_CHUNK: usize = 64 * 1024;

/// Decodes CSV (gzipped or not) from `input` as it is read, a batch of `schema` at a time:
/// memory holds one batch of text and the record being read, never the file.
pub(super) fn decode<'a>(
    input: impl Read + 'a,
    schema: &SchemaRef,
    opts: &DecodeOptions,
) -> Result<CsvDecoder<'a>, FormatError> {
    if schema.fields().is_empty() {
        return Err(FormatError::FileSchema {
            format: Format::Csv,
            message: "the table schema has no columns".to_string(),
        });
    }
    let input = maybe_gunzip(input).map_err(|e| corrupt(format!("gzip: {e}")))?;
    Ok(CsvDecoder {
        input,
        buf: Vec::new(),
        pos: 0,
        offset: 0,
        eof: false,
        last_byte: None,
        delimiter: opts.csv_delimiter,
        header: opts.csv_header,
        schema: schema.clone(),
        batch_size: opts.batch_size,
        builders: new_builders(schema.fields().len()),
        record: Record::default(),
        records: 0,
        rows: 0,
        done: false,
    })
}

/// The streaming CSV reader: an iterator of batches.
pub(super) struct CsvDecoder<'a> {
    input: Box<dyn Read + 'a>,
    /// Text read and not yet parsed starts at `pos`.
    buf: Vec<u8>,
    pos: usize,
    /// Offset in the (uncompressed) text of `buf[0]`, for messages.
    offset: u64,
    eof: bool,
    last_byte: Option<u8>,
    delimiter: u8,
    /// A header line is still to be read and checked.
    header: bool,
    schema: SchemaRef,
    batch_size: usize,
    builders: Vec<StringBuilder>,
    record: Record,
    /// Records read, the header included (to name a record in errors).
    records: usize,
    /// Rows returned in earlier batches (to name a row in value errors).
    rows: usize,
    done: bool,
}

impl Iterator for CsvDecoder<'_> {
    type Item = Result<RecordBatch, FormatError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let batch = self.next_batch();
        if !matches!(batch, Some(Ok(_))) {
            self.done = true;
        }
        batch
    }
}

impl CsvDecoder<'_> {
    fn next_batch(&mut self) -> Option<Result<RecordBatch, FormatError>> {
        if self.header {
            self.header = false;
            if let Err(e) = self.check_header() {
                return Some(Err(e));
            }
        }
        let columns = self.schema.fields().len();
        while self.builders.first().map_or(0, |b| b.len()) < self.batch_size {
            match self.next_record() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => return Some(Err(e)),
            }
            self.records += 1;
            let record = &self.record;
            if record.fields.len() != columns {
                return Some(Err(corrupt(format!(
                    "record {} has {} fields, the table has {columns} columns",
                    self.records,
                    record.fields.len()
                ))));
            }
            for (builder, field) in self.builders.iter_mut().zip(&record.fields) {
                let text = &record.text[field.start..field.end];
                // An empty unquoted field is NULL; `""` is the empty string.
                if text.is_empty() && !field.quoted {
                    builder.append_null();
                    continue;
                }
                let Ok(text) = std::str::from_utf8(text) else {
                    return Some(Err(corrupt(format!(
                        "record {} is not UTF-8",
                        self.records
                    ))));
                };
                builder.append_value(text);
            }
        }
        if self.builders.first().is_none_or(|b| b.len() == 0) {
            return None;
        }
        let first_row = self.rows;
        self.rows += self.builders.first().map_or(0, |b| b.len());
        Some(finish_batch(&mut self.builders, &self.schema, first_row))
    }

    fn check_header(&mut self) -> Result<(), FormatError> {
        if !self.next_record()? {
            return Ok(());
        }
        self.records += 1;
        let record = &self.record;
        let names: Vec<&[u8]> = record
            .fields
            .iter()
            .map(|f| &record.text[f.start..f.end])
            .collect();
        let expected: Vec<&[u8]> = self
            .schema
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

    /// Reads the next record into `self.record`, reading more input while the text at hand
    /// ends inside it; `false` at the end of the input.
    fn next_record(&mut self) -> Result<bool, FormatError> {
        loop {
            let at = self.offset + self.pos as u64;
            match parse_record(
                &self.buf[self.pos..],
                self.eof,
                self.delimiter,
                at,
                &mut self.record,
            )? {
                Parsed::Record(len) => {
                    self.pos += len;
                    return Ok(true);
                }
                Parsed::End => return Ok(false),
                Parsed::NeedMore => self.fill()?,
            }
        }
    }

    /// Reads more input after what is still unparsed (at least as much again as that, so a
    /// long record is not scanned over and over).
    fn fill(&mut self) -> Result<(), FormatError> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.offset += self.pos as u64;
            self.pos = 0;
        }
        let have = self.buf.len();
        self.buf.resize(have + READ_CHUNK.max(have), 0);
        let read = loop {
            match self.input.read(&mut self.buf[have..]) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(have);
                    return Err(corrupt(format!("reading the file failed: {e}")));
                }
            }
        };
        self.buf.truncate(have + read);
        if read == 0 {
            self.eof = true;
            // Every record ends with a line break; a file that does not was cut off
            // mid-record, and CSV has no other framing to notice it by.
            if self.last_byte.is_some_and(|b| b != b'\n') {
                return Err(corrupt(
                    "the file does not end with a line break (truncated?)".to_string(),
                ));
            }
        } else {
            self.last_byte = self.buf.last().copied();
        }
        Ok(())
    }
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

fn corrupt(message: String) -> FormatError {
    FormatError::Corrupt {
        format: Format::Csv,
        message,
    }
}

/// One record's fields: their text one after the other, quotes removed.
#[derive(Default)]
struct Record {
    text: Vec<u8>,
    fields: Vec<Field>,
}

struct Field {
    start: usize,
    end: usize,
    quoted: bool,
}

enum Parsed {
    /// A whole record of this many bytes.
    Record(usize),
    /// No input left.
    End,
    /// The input ends inside a record (or on a CR or quote whose meaning the next byte decides).
    NeedMore,
}

/// Parses one RFC 4180 record from the start of `input` into `record`. Unlike `csv`/`arrow-csv`
/// it says whether a field was quoted. `eof`: nothing follows `input`. `at`: the offset of
/// `input` in the file, for messages.
fn parse_record(
    input: &[u8],
    eof: bool,
    delimiter: u8,
    at: u64,
    record: &mut Record,
) -> Result<Parsed, FormatError> {
    let need_more = if eof {
        Parsed::Record(input.len())
    } else {
        Parsed::NeedMore
    };
    if input.is_empty() {
        return Ok(if eof { Parsed::End } else { Parsed::NeedMore });
    }
    record.text.clear();
    record.fields.clear();
    let mut pos = 0;
    loop {
        let start = record.text.len();
        let quoted = input.get(pos) == Some(&b'"');
        if quoted {
            let opening = pos;
            pos += 1;
            loop {
                match input.get(pos) {
                    Some(b'"') => match input.get(pos + 1) {
                        Some(b'"') => {
                            record.text.push(b'"');
                            pos += 2;
                        }
                        None if !eof => return Ok(Parsed::NeedMore),
                        _ => {
                            pos += 1;
                            break;
                        }
                    },
                    Some(&b) => {
                        record.text.push(b);
                        pos += 1;
                    }
                    None if eof => {
                        return Err(corrupt(format!(
                            "the quoted field opened at byte {} never closes",
                            at + opening as u64
                        )));
                    }
                    None => return Ok(Parsed::NeedMore),
                }
            }
        } else {
            let from = pos;
            while let Some(&b) = input.get(pos) {
                if b == delimiter || b == b'\n' {
                    break;
                }
                if b == b'\r' {
                    match input.get(pos + 1) {
                        Some(b'\n') => break,
                        None if !eof => return Ok(Parsed::NeedMore),
                        _ => {}
                    }
                }
                pos += 1;
            }
            record.text.extend_from_slice(&input[from..pos]);
        }
        record.fields.push(Field {
            start,
            end: record.text.len(),
            quoted,
        });
        match input.get(pos) {
            Some(&b) if b == delimiter => pos += 1,
            Some(b'\n') => return Ok(Parsed::Record(pos + 1)),
            Some(b'\r') => match input.get(pos + 1) {
                Some(b'\n') => return Ok(Parsed::Record(pos + 2)),
                None if !eof => return Ok(Parsed::NeedMore),
                _ => {
                    return Err(corrupt(format!(
                        "unexpected character after a quoted field at byte {}",
                        at + pos as u64
                    )));
                }
            },
            None => return Ok(need_more),
            Some(_) => {
                return Err(corrupt(format!(
                    "unexpected character after a quoted field at byte {}",
                    at + pos as u64
                )));
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
    use bytes::Bytes;

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
    fn every_allowed_delimiter_round_trips_every_flat_type() {
        // Many occur inside numbers, dates, timestamps, base64 or column names, whose fields
        // must then be quoted.
        let batch = flat_batch(40);
        for delimiter in *b",;|\t -.:+/=TZe5a" {
            let opts = csv(delimiter, true);
            let text = encode(std::slice::from_ref(&batch), &opts);
            let back = decode_file(text, batch.schema(), &DecodeOptions::matching(&opts))
                .unwrap_or_else(|e| panic!("delimiter {:?}: {e}", char::from(delimiter)));
            assert_eq!(
                arrow::compute::concat_batches(&batch.schema(), &back).unwrap(),
                batch,
                "delimiter {:?}",
                char::from(delimiter)
            );
        }
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
