"""Backup, restore and verify throughput and memory on the same data, through the real CLI
(bench-roundtrip.sh).

Generates ROWS rows of mixed types with pyarrow, loads them into the BigQuery emulator with a load
job upload, then times `bq-backup backup` (to file://, files of up to BQB_TEST_BENCH_FILE_SIZE
bytes, 1 GiB by default), `bq-backup verify` and `bq-backup restore` of that backup as separate
processes, reading each one's peak RSS from getrusage(RUSAGE_CHILDREN).

    python roundtrip.py BINARY REST_URL ROWS WORKDIR
"""
import datetime
import decimal
import io
import json
import os
import random
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


# Runs one command in a wrapper process of its own, so that getrusage(RUSAGE_CHILDREN) there is
# the peak RSS of that command alone.
WRAPPER = """
import resource, subprocess, sys, time
started = time.monotonic()
out = subprocess.run(sys.argv[1:], stdin=sys.stdin, capture_output=True)
seconds = time.monotonic() - started
sys.stderr.buffer.write(out.stderr)
sys.stdout.buffer.write(out.stdout)
print(f"\\n@@ {seconds} {resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss} {out.returncode}")
"""


def run(binary, args, request, env):
    """Runs `binary args…` (the request, if any, on stdin); its JSON answer, seconds, peak RSS MB."""
    out = subprocess.run([sys.executable, "-c", WRAPPER, binary, *args],
                         input=json.dumps(request).encode() if request else b"", capture_output=True, env=env)
    text = out.stdout.decode()
    body, _, tail = text.rpartition("\n@@ ")
    seconds, rss_kib, code = tail.split()
    if int(code) != 0:
        sys.exit(f"{args[0]} failed: {out.stderr.decode()[-2000:]}")
    return json.loads(body), float(seconds), int(rss_kib) / 1024


def main():
    binary, rest, rows, workdir = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    dataset = f"bench_{int(time.time())}"
    t0 = time.monotonic()
    parquet = generate(rows)
    load(rest, dataset, parquet)
    print(f"loaded {rows} rows ({len(parquet) / 1e6:.1f} MB Parquet) in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    env = {**os.environ, "BQB_PROJECT_ID": PROJECT, "BQB_LOG_LEVEL": "warn"}
    root = f"file://{workdir}/backups-{dataset}"
    fmt = os.environ.get("BQB_TEST_BENCH_FORMAT", "PARQUET")
    file_size = int(os.environ.get("BQB_TEST_BENCH_FILE_SIZE", str(1 << 30)))
    backup, b_s, b_rss = run(binary, ["backup", "--request", "-"], {
        "bigQuery": {"projectId": PROJECT, "tablesToBackup": [{"datasetName": dataset}]},
        "backupStorage": {"uri": root, "exportOptions": {"format": fmt}},
        "fileSizeBytes": file_size}, env)
    verify, v_s, v_rss = run(binary, ["verify", backup["backupId"], "--uri", root], None, env)
    assert verify["ok"] and verify["rowsChecked"] == rows, verify
    restore, r_s, r_rss = run(binary, ["restore", "--request", "-"], {
        "bigQuery": {"projectId": PROJECT, "datasetsToRestore": [dataset]},
        "restoreStorage": {"uri": root}, "backupId": backup["backupId"]}, env)
    assert restore["rows"] == rows, restore
    mb = backup["totals"]["bytes"] / 1e6
    files = backup["totals"]["files"]
    print(f"| operation | rows | seconds | rows/s | MB/s ({fmt}) | peak RSS MB |")
    print(f"|---|---|---|---|---|---|")
    print(f"| backup (Read API → {fmt} → file://) | {rows} | {b_s:.1f} | {rows / b_s:,.0f} | {mb / b_s:.1f} | {b_rss:.0f} |")
    print(f"| verify (file:// → checksum, decode) | {rows} | {v_s:.1f} | {rows / v_s:,.0f} | {mb / v_s:.1f} | {v_rss:.0f} |")
    print(f"| restore (file:// → verify → load job) | {rows} | {r_s:.1f} | {rows / r_s:,.0f} | {mb / r_s:.1f} | {r_rss:.0f} |")
    print(f"\n{fmt} backup: {mb:.1f} MB in {files} file(s) (fileSizeBytes {file_size}); emulator: bqemulator 1.4.0 on 127.0.0.1",
          file=sys.stderr)


if __name__ == "__main__":
    main()
