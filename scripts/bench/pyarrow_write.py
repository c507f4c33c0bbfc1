"""pyarrow writing the input table batch by batch: `pq.ParquetWriter` (pyarrow's defaults:
snappy, dictionary pages) or `pyarrow.csv.CSVWriter` (header, no compression).

usage: pyarrow_write.py INPUT.parquet parquet|csv OUT

Only writing is timed (write_batch and close); reading the input is reported apart.
"""

import sys
import time

import pyarrow.csv as pcsv
import pyarrow.parquet as pq

from common import BATCH_ROWS, emit


def main():
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    source, fmt, out = sys.argv[1:]
    reader = pq.ParquetFile(source)
    schema = reader.schema_arrow
    if fmt == "parquet":
        writer, compression = pq.ParquetWriter(out, schema, compression="snappy"), "SNAPPY"
    elif fmt == "csv":
        writer, compression = pcsv.CSVWriter(out, schema), "NONE"
    else:
        sys.exit(f"unknown format {fmt}")
    rows = 0
    reading = writing = 0.0
    batches = reader.iter_batches(batch_size=BATCH_ROWS)
    while True:
        started = time.perf_counter()
        batch = next(batches, None)
        read = time.perf_counter()
        reading += read - started
        if batch is None:
            break
        writer.write_batch(batch)
        writing += time.perf_counter() - read
        rows += batch.num_rows
    started = time.perf_counter()
    writer.close()
    writing += time.perf_counter() - started
    emit(
        "pyarrow", fmt, compression, rows, writing, out,
        read_seconds=reading, threads=1, includes_read=False,
    )


if __name__ == "__main__":
    main()
