"""fastavro writing the input table as an AVRO object container file: null codec, the logical
types BigQuery's own AVRO exports use (decimal(38,9) bytes, date, timestamp-micros), every
column a ["null", T] union.

usage: fastavro_write.py INPUT.parquet OUT [--ints]

Timed: turning each Arrow batch into Python dicts (`to_pylist`, which fastavro needs) plus
fastavro's writing; both shares are reported. Reading the input is reported apart.

By default dates and timestamps reach fastavro as `datetime.date` and tz-aware `datetime`
objects, as `to_pylist` gives them. With `--ints` they are cast to their day and microsecond
counts first (fastavro writes ints for these logical types as they are): the fastest way to
feed fastavro from Arrow, as pyarrow's tz-aware `datetime`s are slow to make.
"""

import sys
import time

import fastavro
import pyarrow as pa
import pyarrow.parquet as pq

from common import BATCH_ROWS, emit


def nullable(avro_type):
    return ["null", avro_type]


SCHEMA = fastavro.parse_schema({
    "type": "record",
    "name": "bench",
    "fields": [
        {"name": "int64", "type": nullable("long")},
        {"name": "float64", "type": nullable("double")},
        {"name": "numeric", "type": nullable(
            {"type": "bytes", "logicalType": "decimal", "precision": 38, "scale": 9})},
        {"name": "bool", "type": nullable("boolean")},
        {"name": "string", "type": nullable("string")},
        {"name": "date", "type": nullable({"type": "int", "logicalType": "date"})},
        {"name": "timestamp", "type": nullable(
            {"type": "long", "logicalType": "timestamp-micros"})},
    ],
})


def main():
    if len(sys.argv) not in (3, 4) or sys.argv[3:] not in ([], ["--ints"]):
        sys.exit(__doc__)
    source, out = sys.argv[1:3]
    ints = sys.argv[3:] == ["--ints"]
    reader = pq.ParquetFile(source)
    rows = 0
    reading = converting = writing = 0.0
    with open(out, "wb") as fo:
        writer = fastavro.write.Writer(fo, SCHEMA, codec="null")
        batches = reader.iter_batches(batch_size=BATCH_ROWS)
        while True:
            started = time.perf_counter()
            batch = next(batches, None)
            read = time.perf_counter()
            reading += read - started
            if batch is None:
                break
            if ints:
                batch = as_ints(batch)
            records = batch.to_pylist()
            converted = time.perf_counter()
            converting += converted - read
            for record in records:
                writer.write(record)
            writing += time.perf_counter() - converted
            rows += batch.num_rows
        started = time.perf_counter()
        writer.flush()
        fo.flush()
        writing += time.perf_counter() - started
    emit(
        "fastavro", "avro", "NONE", rows, converting + writing, out,
        read_seconds=reading, to_pylist_seconds=converting, write_seconds=writing,
        threads=1, includes_read=False, variant="ints" if ints else "objects",
    )


def as_ints(batch):
    """The batch with DATE as days and TIMESTAMP as microseconds since 1970 (zero-copy casts)."""
    columns = []
    for field, column in zip(batch.schema, batch.columns):
        if pa.types.is_date32(field.type):
            column = column.view(pa.int32())
        elif pa.types.is_timestamp(field.type):
            column = column.view(pa.int64())
        columns.append(column)
    return pa.RecordBatch.from_arrays(columns, names=batch.schema.names)


if __name__ == "__main__":
    main()
