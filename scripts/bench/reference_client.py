"""The backup a user would write in Python, for bench-roundtrip.sh to time next to bq-backup's:
google-cloud-bigquery-storage's BigQueryReadClient opens one read session (Arrow format, up to
STREAMS streams), one thread per stream reads it and pyarrow writes that stream's rows to a
Parquet file of its own (snappy, pyarrow's default), one row group per Read API response, as
they arrive (memory stays bounded, as bq-backup's does).

    python reference_client.py GRPC_HOST:PORT PROJECT DATASET TABLE OUT_DIR [STREAMS]

The client talks to the emulator's Storage Read endpoint over an insecure channel with no
credentials (a channel given to the transport is used as it is). Prints one JSON line: rows,
files, bytes written, seconds after the imports and the imports' own seconds (the wrapper that
runs this script times the whole process, as a user would see it).
"""
import time

STARTED = time.monotonic()

# pylint: disable=wrong-import-position  (the imports are timed)
import json  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
from concurrent.futures import ThreadPoolExecutor  # noqa: E402

import grpc  # noqa: E402
import pyarrow.parquet as pq  # noqa: E402
from google.cloud.bigquery_storage_v1 import BigQueryReadClient, types  # noqa: E402
from google.cloud.bigquery_storage_v1.services.big_query_read.transports import (  # noqa: E402
    BigQueryReadGrpcTransport,
)

IMPORTED = time.monotonic()


def read_stream(client, session, stream, path):
    """Reads one stream to the end into a Parquet file; its (rows, bytes)."""
    rows = 0
    writer = None
    for page in client.read_rows(stream.name).rows(session).pages:
        batch = page.to_arrow()
        if writer is None:
            writer = pq.ParquetWriter(path, batch.schema, compression="snappy")
        writer.write_batch(batch)
        rows += batch.num_rows
    if writer is None:
        return 0, 0
    writer.close()
    return rows, os.path.getsize(path)


def main():
    if len(sys.argv) not in (6, 7):
        sys.exit(__doc__)
    target, project, dataset, table, out_dir = sys.argv[1:6]
    streams = int(sys.argv[6]) if len(sys.argv) == 7 else 4
    channel = grpc.insecure_channel(
        target,
        # Read API responses can exceed gRPC's 4 MiB default, as the real client allows too.
        options=[("grpc.max_receive_message_length", -1)],
    )
    client = BigQueryReadClient(transport=BigQueryReadGrpcTransport(channel=channel))
    session = client.create_read_session(
        parent=f"projects/{project}",
        read_session=types.ReadSession(
            table=f"projects/{project}/datasets/{dataset}/tables/{table}",
            data_format=types.DataFormat.ARROW,
        ),
        max_stream_count=streams,
    )
    os.makedirs(out_dir, exist_ok=True)
    with ThreadPoolExecutor(max_workers=max(1, len(session.streams))) as pool:
        done = list(pool.map(
            lambda i_s: read_stream(client, session, i_s[1], f"{out_dir}/part-{i_s[0]:03}.parquet"),
            enumerate(session.streams),
        ))
    channel.close()
    print(json.dumps({
        "rows": sum(r for r, _ in done),
        "files": sum(1 for _, b in done if b),
        "bytes": sum(b for _, b in done),
        "streams": len(session.streams),
        "seconds": time.monotonic() - IMPORTED,
        "import_seconds": IMPORTED - STARTED,
    }), flush=True)


if __name__ == "__main__":
    main()
