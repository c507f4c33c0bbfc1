//! Formats: Arrow `RecordBatch`es to and from AVRO, CSV, PARQUET and JSON bytes. Pure: no network.
