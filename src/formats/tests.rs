//! Behaviour every format shares: round trips for every allowed compression, option checks,
//! streaming, size estimates, and corrupt input.

use arrow::array::RecordBatch;
use arrow::compute::concat_batches;
use bytes::Bytes;

use super::sample::all_types_batch;
use super::testdata::{encode, flat_batch};
use super::*;

/// The batch each format can hold: everything, or the flat columns for CSV.
fn sample_for(format: Format, rows: usize) -> RecordBatch {
    match format {
        Format::Csv => flat_batch(rows),
        _ => all_types_batch(rows),
    }
}

fn options(format: Format, compression: Compression) -> EncodeOptions {
    EncodeOptions {
        compression,
        ..EncodeOptions::new(format)
    }
}

fn round_trip(batches: &[RecordBatch], opts: &EncodeOptions) -> RecordBatch {
    let schema = batches[0].schema();
    let bytes = encode(batches, opts);
    let mut decode_opts = DecodeOptions::matching(opts);
    decode_opts.batch_size = 7;
    let decoded = decode(bytes, schema.clone(), &decode_opts)
        .unwrap_or_else(|e| panic!("{:?}/{:?}: {e}", opts.format, opts.compression));
    for batch in &decoded {
        assert_eq!(batch.schema(), schema);
    }
    concat_batches(&schema, &decoded).unwrap()
}

#[test]
fn every_format_and_compression_gives_back_every_value() {
    for format in Format::ALL {
        for &compression in format.allowed_compressions() {
            let batch = sample_for(format, 48);
            let back = round_trip(std::slice::from_ref(&batch), &options(format, compression));
            assert_eq!(back.num_rows(), batch.num_rows());
            for (i, field) in batch.schema().fields().iter().enumerate() {
                assert_eq!(
                    back.column(i).as_ref(),
                    batch.column(i).as_ref(),
                    "{format}/{compression}: column {}",
                    field.name()
                );
            }
            assert_eq!(back, batch, "{format}/{compression}");
        }
    }
}

#[test]
fn invalid_compressions_are_rejected_naming_the_field() {
    let schema = flat_batch(1).schema();
    for (format, compression) in [
        (Format::Csv, Compression::Snappy),
        (Format::Avro, Compression::Gzip),
        (Format::Parquet, Compression::Deflate),
        (Format::Json, Compression::Zstd),
    ] {
        let problems = options(format, compression).validate(&schema).unwrap_err();
        assert_eq!(problems.len(), 1);
        assert_eq!(problems[0].field, "compression");
        assert!(problems[0].message.contains(compression.as_str()));
        assert!(FileEncoder::new(schema.clone(), &options(format, compression)).is_err());
    }
}

#[test]
fn a_bad_csv_delimiter_is_rejected_as_field_delimiter() {
    let mut opts = EncodeOptions::new(Format::Csv);
    opts.csv_delimiter = b'"';
    let problems = opts.validate(&flat_batch(1).schema()).unwrap_err();
    assert_eq!(problems[0].field, "fieldDelimiter");
}

#[test]
fn every_problem_is_listed_at_once() {
    let opts = EncodeOptions {
        format: Format::Csv,
        compression: Compression::Zstd,
        csv_header: true,
        csv_delimiter: b'\n',
    };
    let problems = opts.validate(&all_types_batch(1).schema()).unwrap_err();
    let fields: Vec<&str> = problems.iter().map(|p| p.field.as_str()).collect();
    assert_eq!(
        fields,
        [
            "compression",
            "fieldDelimiter",
            "record",
            "repeated_int64",
            "repeated_record"
        ]
    );
}

#[test]
fn names_parse_in_any_case_and_serialize_in_upper_case() {
    assert_eq!("parquet".parse::<Format>(), Ok(Format::Parquet));
    assert_eq!("Json".parse::<Format>(), Ok(Format::Json));
    assert_eq!("zstd".parse::<Compression>(), Ok(Compression::Zstd));
    assert!("xml".parse::<Format>().is_err());
    assert_eq!(serde_json::to_string(&Format::Avro).unwrap(), "\"AVRO\"");
    assert_eq!(
        serde_json::from_str::<Compression>("\"SNAPPY\"").unwrap(),
        Compression::Snappy
    );
}

#[test]
fn file_extensions_name_the_outer_compression_only() {
    assert_eq!(file_extension(Format::Avro, Compression::Snappy), "avro");
    assert_eq!(
        file_extension(Format::Parquet, Compression::Gzip),
        "parquet"
    );
    assert_eq!(file_extension(Format::Csv, Compression::Gzip), "csv.gz");
    assert_eq!(file_extension(Format::Csv, Compression::None), "csv");
    assert_eq!(file_extension(Format::Json, Compression::Gzip), "json.gz");
    assert_eq!(file_extension(Format::Json, Compression::None), "json");
}

#[test]
fn a_streamed_multi_batch_file_reads_back_whole() {
    for format in Format::ALL {
        for &compression in format.allowed_compressions() {
            let batches: Vec<RecordBatch> = (1..=4).map(|n| sample_for(format, n * 10)).collect();
            let back = round_trip(&batches, &options(format, compression));
            let expected = concat_batches(&batches[0].schema(), &batches).unwrap();
            assert_eq!(back, expected, "{format}/{compression}");
        }
    }
}

#[test]
fn estimated_size_grows_as_batches_are_written_and_counts_taken_bytes() {
    for format in Format::ALL {
        let opts = EncodeOptions::new(format);
        let batch = sample_for(format, 200);
        let mut encoder = FileEncoder::new(batch.schema(), &opts).unwrap();
        let mut last = encoder.estimated_size();
        let mut taken = 0;
        for round in 1..=3 {
            encoder.write(&batch).unwrap();
            let size = encoder.estimated_size();
            assert!(size > last, "{format}: {size} after {last}");
            last = size;
            if round == 2 {
                taken += encoder.take_output().len() as u64;
                assert_eq!(
                    encoder.estimated_size(),
                    size,
                    "{format}: taking keeps the size"
                );
            }
        }
        assert_eq!(encoder.rows(), 600);
        let total = taken + encoder.finish().unwrap().len() as u64;
        assert!(total > 0);
    }
}

#[test]
fn an_empty_file_reads_back_as_no_rows() {
    for format in Format::ALL {
        let batch = sample_for(format, 1);
        let encoder = FileEncoder::new(batch.schema(), &EncodeOptions::new(format)).unwrap();
        let bytes = encoder.finish().unwrap().to_bytes();
        let back = decode(bytes, batch.schema(), &DecodeOptions::new(format)).unwrap();
        assert_eq!(
            back.iter().map(|b| b.num_rows()).sum::<usize>(),
            0,
            "{format}"
        );
    }
}

#[test]
fn corrupt_or_truncated_files_give_an_error_not_a_panic() {
    for format in Format::ALL {
        for &compression in format.allowed_compressions() {
            let batch = sample_for(format, 30);
            let opts = options(format, compression);
            let bytes = encode(std::slice::from_ref(&batch), &opts);
            let decode_opts = DecodeOptions::matching(&opts);
            let mut broken: Vec<Bytes> = vec![
                bytes.slice(..bytes.len() / 2),
                bytes.slice(..bytes.len().saturating_sub(3)),
                Bytes::from_static(b"\x00\x01garbage\xff"),
            ];
            let mut flipped = bytes.to_vec();
            for i in (flipped.len() / 3..flipped.len()).step_by(17) {
                flipped[i] ^= 0x5a;
            }
            broken.push(flipped.into());
            for (i, bad) in broken.into_iter().enumerate() {
                let result = decode(bad, batch.schema(), &decode_opts);
                // Flipped bytes may land in a text value and still decode; what must never
                // happen is a panic, or a silent success on truncated or foreign bytes.
                if i != 3 {
                    assert!(result.is_err(), "{format}/{compression}: case {i} decoded");
                }
            }
        }
    }
}

#[test]
fn errors_convert_to_crate_errors_with_their_kind() {
    use crate::error::ErrorKind;
    let err = FileEncoder::new(
        all_types_batch(1).schema(),
        &options(Format::Csv, Compression::None),
    )
    .err()
    .unwrap();
    let err: crate::error::Error = err.into();
    assert_eq!(err.kind(), ErrorKind::InvalidInput);
    assert_eq!(err.details().len(), 3);
}

#[test]
fn the_encoder_can_move_to_another_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<FileEncoder>();
}

#[test]
fn sliced_batches_are_written_from_their_offset() {
    for format in Format::ALL {
        let batch = sample_for(format, 40).slice(5, 17);
        let back = round_trip(std::slice::from_ref(&batch), &EncodeOptions::new(format));
        assert_eq!(back, batch, "{format}");
    }
}

#[test]
fn batches_whose_fields_differ_only_in_metadata_are_accepted() {
    use arrow::datatypes::Schema;
    use std::collections::HashMap;
    use std::sync::Arc;
    let batch = all_types_batch(9);
    // The Read API adds its own metadata keys (the emulator adds `bqemu.*`).
    let fields: Vec<_> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| {
            let mut metadata = f.metadata().clone();
            metadata.insert("bqemu.mode".to_string(), "NULLABLE".to_string());
            f.as_ref().clone().with_metadata(metadata)
        })
        .collect();
    let extra = Arc::new(Schema::new_with_metadata(fields, HashMap::new()));
    let relabelled = RecordBatch::try_new(extra, batch.columns().to_vec()).unwrap();
    for format in [Format::Avro, Format::Parquet, Format::Json] {
        let mut encoder = FileEncoder::new(batch.schema(), &EncodeOptions::new(format)).unwrap();
        encoder.write(&relabelled).unwrap();
        let bytes = encoder.finish().unwrap().to_bytes();
        let back = decode(bytes, batch.schema(), &DecodeOptions::new(format)).unwrap();
        assert_eq!(back, vec![batch.clone()], "{format}");
    }
}

#[test]
fn a_batch_of_another_table_is_refused() {
    let batch = all_types_batch(3);
    let mut encoder =
        FileEncoder::new(flat_batch(3).schema(), &EncodeOptions::new(Format::Json)).unwrap();
    assert!(matches!(
        encoder.write(&batch),
        Err(FormatError::SchemaMismatch { .. })
    ));
}

#[test]
fn a_file_decoded_with_too_few_columns_is_refused() {
    for format in [Format::Avro, Format::Parquet, Format::Csv] {
        let batch = sample_for(format, 5);
        let bytes = encode(std::slice::from_ref(&batch), &EncodeOptions::new(format));
        let fewer = std::sync::Arc::new(batch.schema().project(&[0, 1]).unwrap());
        let result = decode(bytes, fewer, &DecodeOptions::new(format));
        assert!(result.is_err(), "{format}");
    }
}

#[test]
fn records_of_the_same_name_in_different_columns_round_trip() {
    use arrow::array::{ArrayRef, Int64Array, StructArray};
    use arrow::datatypes::{DataType, Field, Fields, Schema};
    use std::sync::Arc;
    let inner_a = Fields::from(vec![Field::new("x", DataType::Int64, true)]);
    let inner_b = Fields::from(vec![Field::new("y", DataType::Int64, true)]);
    let outer_a = Fields::from(vec![Field::new(
        "inner",
        DataType::Struct(inner_a.clone()),
        true,
    )]);
    let outer_b = Fields::from(vec![Field::new(
        "inner",
        DataType::Struct(inner_b.clone()),
        true,
    )]);
    let schema = Arc::new(Schema::new(vec![
        Field::new("a", DataType::Struct(outer_a.clone()), true),
        Field::new("b", DataType::Struct(outer_b.clone()), true),
    ]));
    let int = || Arc::new(Int64Array::from(vec![Some(1), None])) as ArrayRef;
    let ia = StructArray::new(inner_a, vec![int()], None);
    let ib = StructArray::new(inner_b, vec![int()], None);
    let a = StructArray::new(outer_a, vec![Arc::new(ia)], None);
    let b = StructArray::new(outer_b, vec![Arc::new(ib)], None);
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(a), Arc::new(b)]).unwrap();
    // Avro record names must be unique in a schema; both columns hold a record named `inner`.
    for format in [Format::Avro, Format::Parquet, Format::Json] {
        let bytes = encode(std::slice::from_ref(&batch), &EncodeOptions::new(format));
        let back = decode(bytes, schema.clone(), &DecodeOptions::new(format)).unwrap();
        assert_eq!(back, vec![batch.clone()], "{format}");
    }
}
