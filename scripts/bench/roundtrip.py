"""Backup and restore throughput on the same data, through the real CLI (bench-roundtrip.sh).

Generates ROWS rows of mixed types with pyarrow, loads them into the BigQuery emulator with a load
job upload, then times `bq-backup backup` (Parquet to file://) and `bq-backup restore` of that
backup as separate processes, reading each one's peak RSS from getrusage(RUSAGE_CHILDREN).

    python roundtrip.py BINARY REST_URL ROWS WORKDIR
"""
import datetime
import decimal
import io
import json
import os
import random
import resource
import subprocess
import sys
import time
import urllib.request

import pyarrow as pa
import pyarrow.parquet as pq

PROJECT = "test-project"


def call(method, url, body=None, headers=None, data=None):
    if body is not None:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json", **(headers or {})}
    req = urllib.request.Request(url, data=data, method=method, headers=headers or {})
    with urllib.request.urlopen(req, timeout=3600) as resp:
        text = resp.read()
        return json.loads(text) if text else None


def generate(rows):
    rnd = random.Random(42)
    base = datetime.datetime(2026, 1, 1, tzinfo=datetime.timezone.utc)
    batch = 100_000
    schema = pa.schema([
        ("id", pa.int64()), ("amount", pa.float64()), ("price", pa.decimal128(38, 9)),
        ("flag", pa.bool_()), ("name", pa.string()), ("day", pa.date32()),
        ("ts", pa.timestamp("us", tz="UTC")),
    ])
    sink = io.BytesIO()
    with pq.ParquetWriter(sink, schema) as writer:
        for start in range(0, rows, batch):
            n = min(batch, rows - start)
            ids = list(range(start, start + n))
            writer.write_table(pa.table({
                "id": ids,
                "amount": [rnd.random() * 1000 for _ in ids],
                "price": [decimal.Decimal(i % 100000) / 100 for i in ids],
                "flag": [i % 3 == 0 for i in ids],
                "name": [f"customer-{rnd.randrange(10**9):09d}" for _ in ids],
                "day": [datetime.date(2026, 1, 1) + datetime.timedelta(days=i % 365) for i in ids],
                "ts": [base + datetime.timedelta(seconds=i) for i in ids],
            }, schema=schema))
    return sink.getvalue()


def load(rest, dataset, parquet):
    call("POST", f"{rest}/bigquery/v2/projects/{PROJECT}/datasets",
         {"datasetReference": {"projectId": PROJECT, "datasetId": dataset}})
    fields = [{"name": "id", "type": "INT64"}, {"name": "amount", "type": "FLOAT64"},
              {"name": "price", "type": "NUMERIC"}, {"name": "flag", "type": "BOOL"},
              {"name": "name", "type": "STRING"}, {"name": "day", "type": "DATE"},
              {"name": "ts", "type": "TIMESTAMP"}]
    config = {"configuration": {"load": {
        "destinationTable": {"projectId": PROJECT, "datasetId": dataset, "tableId": "sales"},
        "schema": {"fields": fields}, "sourceFormat": "PARQUET"}}}
    boundary = "bqbbench"
    body = (f"--{boundary}\r\nContent-Type: application/json\r\n\r\n{json.dumps(config)}\r\n"
            f"--{boundary}\r\nContent-Type: application/octet-stream\r\n\r\n").encode() + parquet + f"\r\n--{boundary}--\r\n".encode()
    job = call("POST", f"{rest}/upload/bigquery/v2/projects/{PROJECT}/jobs?uploadType=multipart", data=body,
               headers={"Content-Type": f"multipart/related; boundary={boundary}"})
    if job["status"].get("errorResult"):
        sys.exit(f"loading the benchmark table failed: {job['status']['errorResult']}")


def run(binary, command, request, env):
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    started = time.monotonic()
    out = subprocess.run([binary, command, "--request", "-"], input=json.dumps(request).encode(),
                         capture_output=True, env=env)
    seconds = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"{command} failed: {out.stderr.decode()[-2000:]}")
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # KiB; the max over children so far
    return json.loads(out.stdout), seconds, peak / 1024, before


def main():
    binary, rest, rows, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    dataset = f"bench_{int(time.time())}"
    t0 = time.monotonic()
    parquet = generate(rows)
    load(rest, dataset, parquet)
    print(f"loaded {rows} rows ({len(parquet) / 1e6:.1f} MB Parquet) in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    env = {**os.environ, "BQB_PROJECT_ID": PROJECT, "BQB_LOG_LEVEL": "warn"}
    root = f"file://{workdir}/backups-{dataset}"
    backup, b_s, b_rss, _ = run(binary, "backup", {
        "bigQuery": {"projectId": PROJECT, "tablesToBackup": [{"datasetName": dataset}]},
        "backupStorage": {"uri": root, "exportOptions": {"format": "PARQUET"}}}, env)
    restore, r_s, r_rss, _ = run(binary, "restore", {
        "bigQuery": {"projectId": PROJECT, "datasetsToRestore": [dataset]},
        "restoreStorage": {"uri": root}, "backupId": backup["backupId"]}, env)
    assert restore["rows"] == rows, restore
    mb = backup["totals"]["bytes"] / 1e6
    print(f"| operation | rows | seconds | rows/s | MB/s (Parquet) | peak RSS MB |")
    print(f"|---|---|---|---|---|---|")
    print(f"| backup (Read API → Parquet → file://) | {rows} | {b_s:.1f} | {rows / b_s:,.0f} | {mb / b_s:.1f} | {b_rss:.0f} |")
    print(f"| restore (file:// → verify → load job) | {rows} | {r_s:.1f} | {rows / r_s:,.0f} | {mb / r_s:.1f} | {max(r_rss, b_rss):.0f} (max of both) |")
    print(f"\nParquet backup: {mb:.1f} MB in {backup['totals']['files']} file(s); emulator: bqemulator 1.4.0 on 127.0.0.1",
          file=sys.stderr)


if __name__ == "__main__":
    main()
