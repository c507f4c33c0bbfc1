//! Test fixtures for the format tests: encode helpers and a flat (CSV-compatible) batch.

use arrow::array::RecordBatch;
use bytes::{Bytes, BytesMut};

use super::sample::all_types_batch;
use super::{EncodeOptions, FileEncoder};

/// The whole file for `batches`, streamed out through `take_output` after every write.
pub(crate) fn encode(batches: &[RecordBatch], opts: &EncodeOptions) -> Bytes {
    let schema = batches[0].schema();
    let mut encoder = FileEncoder::new(schema, opts).unwrap();
    let mut file = BytesMut::new();
    for batch in batches {
        encoder.write(batch).unwrap();
        file.extend_from_slice(&encoder.take_output().to_bytes());
    }
    file.extend_from_slice(&encoder.finish().unwrap().to_bytes());
    file.freeze()
}

/// [`all_types_batch`] without its RECORD and REPEATED columns.
pub(crate) fn flat_batch(rows: usize) -> RecordBatch {
    let batch = all_types_batch(rows);
    let flat: Vec<usize> = batch
        .schema()
        .fields()
        .iter()
        .enumerate()
        .filter(|(_, f)| f.data_type().is_primitive() || !f.data_type().is_nested())
        .map(|(i, _)| i)
        .collect();
    batch.project(&flat).unwrap()
}
