//! Gives decoded batches exactly the schema recorded at backup time.
//!
//! Readers for container formats return their own idea of the schema: AVRO labels UTC
//! timestamps `+00:00` and knows no Arrow field metadata, list items may come back nullable, and
//! field names may have been sanitised. The values are the same, so columns are matched by
//! position and re-labelled; only a real type difference goes through an Arrow cast, and values
//! that do not fit the target (a NULL in a REQUIRED column) are an error.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, ListArray, RecordBatch, RecordBatchOptions, StructArray,
};
use arrow::datatypes::{DataType, Field, SchemaRef};

use super::{Format, FormatError};

/// `batch` with `schema`'s fields, column by column in order.
pub(super) fn conform_batch(
    batch: &RecordBatch,
    schema: &SchemaRef,
    format: Format,
) -> Result<RecordBatch, FormatError> {
    if batch.num_columns() != schema.fields().len() {
        return Err(mismatch(
            format,
            format!(
                "the file has {} columns, the table schema {}",
                batch.num_columns(),
                schema.fields().len()
            ),
        ));
    }
    let columns = batch
        .columns()
        .iter()
        .zip(schema.fields())
        .map(|(column, field)| conform_array(column, field, field.name(), format))
        .collect::<Result<Vec<_>, _>>()?;
    let options = RecordBatchOptions::new().with_row_count(Some(batch.num_rows()));
    RecordBatch::try_new_with_options(schema.clone(), columns, &options)
        .map_err(|e| mismatch(format, e.to_string()))
}

/// `array` re-labelled (or cast) as `target`'s type; `path` names the column in errors.
pub(super) fn conform_array(
    array: &ArrayRef,
    target: &Field,
    path: &str,
    format: Format,
) -> Result<ArrayRef, FormatError> {
    let conformed = match (array.data_type(), target.data_type()) {
        (actual, wanted) if actual == wanted => array.clone(),
        (DataType::Struct(actual), DataType::Struct(wanted)) => {
            if actual.len() != wanted.len() {
                return Err(mismatch(
                    format,
                    format!(
                        "column `{path}` has {} fields in the file, {} in the table schema",
                        actual.len(),
                        wanted.len()
                    ),
                ));
            }
            let array = array.as_struct();
            let children = array
                .columns()
                .iter()
                .zip(wanted)
                .map(|(child, field)| {
                    conform_array(child, field, &format!("{path}.{}", field.name()), format)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let conformed = StructArray::try_new(wanted.clone(), children, array.nulls().cloned())
                .map_err(|e| mismatch(format, format!("column `{path}`: {e}")))?;
            Arc::new(conformed)
        }
        (DataType::List(_), DataType::List(item)) => {
            let array = array.as_list::<i32>();
            let values = conform_array(array.values(), item, path, format)?;
            let conformed = ListArray::try_new(
                item.clone(),
                array.offsets().clone(),
                values,
                array.nulls().cloned(),
            )
            .map_err(|e| mismatch(format, format!("column `{path}`: {e}")))?;
            Arc::new(conformed)
        }
        (_, wanted) => arrow::compute::cast(array, wanted).map_err(|e| {
            mismatch(
                format,
                format!(
                    "column `{path}` is {} in the file, {wanted} in the table schema: {e}",
                    array.data_type()
                ),
            )
        })?,
    };
    Ok(conformed)
}

fn mismatch(format: Format, message: String) -> FormatError {
    FormatError::FileSchema { format, message }
}
