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
use arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema, SchemaRef};

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

/// A schema read from a file written elsewhere, labelled as BigQuery's Read API labels it: UTC
/// timestamps carry the zone name `"UTC"` (readers say `"+00:00"`), and schema-level metadata of
/// the file format (`avro.schema`) is dropped.
pub(super) fn bigquery_labels(schema: &Schema) -> SchemaRef {
    let fields: Vec<Field> = schema.fields().iter().map(bigquery_field).collect();
    Arc::new(Schema::new(fields))
}

/// `field` as BigQuery's Read API would label it: UTC timestamps named `"UTC"`.
fn bigquery_field(field: &FieldRef) -> Field {
    let data_type = match field.data_type() {
        DataType::Timestamp(unit, Some(_)) => DataType::Timestamp(*unit, Some("UTC".into())),
        DataType::Struct(children) => DataType::Struct(Fields::from(
            children.iter().map(bigquery_field).collect::<Vec<_>>(),
        )),
        DataType::List(item) => DataType::List(Arc::new(bigquery_field(item))),
        other => other.clone(),
    };
    field.as_ref().clone().with_data_type(data_type)
}
