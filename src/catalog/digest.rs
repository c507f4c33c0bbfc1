//! A table's content as one value: the row count and the sum of every row's SHA-256 (in its
//! Arrow row encoding), so that the same rows give the same digest in any order and split into
//! any batches, files or read streams. What a restore drill compares: the rows decoded from a
//! backup's files against the rows read back from the table it restored.
//!
//! Both sides must be read with the same Arrow types: a batch whose columns differ in type from
//! the digest's schema is cast to it first (the nested field names and nullability the Storage
//! Read API and a file's schema may disagree on), and a batch that cannot be is an error.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::SchemaRef;
use arrow::row::{RowConverter, SortField};
use sha2::{Digest as _, Sha256};

/// An order-independent digest of rows.
pub struct RowDigest {
    schema: SchemaRef,
    converter: RowConverter,
    rows: u64,
    /// Four 64-bit lanes of the hashes, each summed with wrap-around.
    sum: [u64; 4],
}

impl RowDigest {
    /// A digest of rows of `schema`.
    pub fn new(schema: SchemaRef) -> Result<Self, String> {
        let fields = schema
            .fields()
            .iter()
            .map(|f| SortField::new(f.data_type().clone()))
            .collect();
        let converter = RowConverter::new(fields).map_err(|e| e.to_string())?;
        Ok(Self {
            schema,
            converter,
            rows: 0,
            sum: [0; 4],
        })
    }

    /// Adds every row of `batch` (its columns in the digest's order).
    pub fn add(&mut self, batch: &RecordBatch) -> Result<(), String> {
        if batch.num_columns() != self.schema.fields().len() {
            return Err(format!(
                "has {} columns, the table {}",
                batch.num_columns(),
                self.schema.fields().len()
            ));
        }
        let columns: Vec<ArrayRef> = batch
            .columns()
            .iter()
            .zip(self.schema.fields())
            .map(|(column, field)| {
                if column.data_type() == field.data_type() {
                    Ok(Arc::clone(column))
                } else {
                    cast(column, field.data_type()).map_err(|e| {
                        format!(
                            "column `{}` is {}, the table's is {}: {e}",
                            field.name(),
                            column.data_type(),
                            field.data_type()
                        )
                    })
                }
            })
            .collect::<Result<_, _>>()?;
        let rows = self
            .converter
            .convert_columns(&columns)
            .map_err(|e| e.to_string())?;
        for row in rows.iter() {
            let hash = Sha256::digest(row.as_ref());
            for (lane, chunk) in self.sum.iter_mut().zip(hash.chunks_exact(8)) {
                let mut bytes = [0u8; 8];
                bytes.copy_from_slice(chunk);
                *lane = lane.wrapping_add(u64::from_be_bytes(bytes));
            }
        }
        self.rows += batch.num_rows() as u64;
        Ok(())
    }

    pub fn rows(&self) -> u64 {
        self.rows
    }

    /// The digest as 64 hex digits.
    pub fn hex(&self) -> String {
        self.sum.iter().map(|lane| format!("{lane:016x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use arrow::array::{Array, Int64Array, ListArray, StringArray};
    use arrow::datatypes::{DataType, Field, Int64Type, Schema};

    use super::*;

    fn batch(ids: &[i64], names: &[&str]) -> RecordBatch {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("name", DataType::Utf8, true),
        ]));
        RecordBatch::try_new(
            schema,
            vec![
                Arc::new(Int64Array::from(ids.to_vec())),
                Arc::new(StringArray::from(names.to_vec())),
            ],
        )
        .unwrap()
    }

    fn digest(batches: &[RecordBatch]) -> (u64, String) {
        let mut digest = RowDigest::new(batches[0].schema()).unwrap();
        for b in batches {
            digest.add(b).unwrap();
        }
        (digest.rows(), digest.hex())
    }

    #[test]
    fn the_same_rows_in_any_order_and_batches_give_the_same_digest() {
        let one = digest(&[batch(&[1, 2, 3], &["a", "b", "c"])]);
        let other = digest(&[batch(&[3], &["c"]), batch(&[1, 2], &["a", "b"])]);
        assert_eq!(one, other);
        assert_eq!(one.0, 3);
        assert_eq!(one.1.len(), 64);
    }

    #[test]
    fn a_changed_missing_or_repeated_row_changes_the_digest() {
        let base = digest(&[batch(&[1, 2, 3], &["a", "b", "c"])]);
        assert_ne!(base, digest(&[batch(&[1, 2, 3], &["a", "b", "x"])]));
        assert_ne!(base.1, digest(&[batch(&[1, 2], &["a", "b"])]).1);
        assert_ne!(
            base.1,
            digest(&[batch(&[1, 2, 3, 3], &["a", "b", "c", "c"])]).1
        );
        // Swapping values between rows is a change too.
        assert_ne!(base, digest(&[batch(&[1, 2, 3], &["b", "a", "c"])]));
    }

    #[test]
    fn columns_of_another_but_castable_type_are_cast_to_the_tables() {
        let item =
            |name: &str, nullable: bool| Arc::new(Field::new(name, DataType::Int64, nullable));
        let list = |name: &str, nullable: bool| {
            ListArray::from_iter_primitive::<Int64Type, _, _>(vec![Some(vec![Some(1), Some(2)])])
                .to_data()
                .into_builder()
                .data_type(DataType::List(item(name, nullable)))
                .build()
                .map(ListArray::from)
                .unwrap()
        };
        let table = Arc::new(Schema::new(vec![Field::new(
            "tags",
            DataType::List(item("item", true)),
            true,
        )]));
        let file = RecordBatch::try_new(
            Arc::new(Schema::new(vec![Field::new(
                "tags",
                DataType::List(item("element", true)),
                true,
            )])),
            vec![Arc::new(list("element", true))],
        )
        .unwrap();
        let same = RecordBatch::try_new(table.clone(), vec![Arc::new(list("item", true))]).unwrap();
        let mut a = RowDigest::new(table.clone()).unwrap();
        a.add(&file).unwrap();
        let mut b = RowDigest::new(table).unwrap();
        b.add(&same).unwrap();
        assert_eq!(a.hex(), b.hex());
    }
}
