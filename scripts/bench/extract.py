"""EXTRACT against STREAM on one table, through the real CLI (bench-extract.sh).

Creates ROWS generated rows (roundtrip.py's table) inside the BigQuery emulator, then backs the table
up to gs:// in PARQUET with `"method": "STREAM"` and with `"method": "EXTRACT"`, each in its own
process, twice: once timed, once under strace to count the bytes the process sent and received
on TCP sockets (every byte through the service: for STREAM the Read API's rows and the uploads,
for EXTRACT the REST calls, the object listing and the Parquet footers).

    python extract.py BINARY REST_URL ROWS BUCKET
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(__file__))
from roundtrip import PROJECT, create  # noqa: E402

# `fd<TCP:[...]>` lines of socket reads and writes, and their byte counts (one file per thread,
# `strace -ff`, so that no call is split into "unfinished" and "resumed" lines).
SYSCALL = re.compile(r"^(\w+)\(\d+<TCP:\[.*\) = (\d+)$")
IN = {"read", "recvfrom", "recvmsg", "readv"}
OUT = {"write", "sendto", "sendmsg", "writev"}


def request(dataset, root, method):
    return {"bigQuery": {"projectId": PROJECT, "tablesToBackup": [{"datasetName": dataset}]},
            "backupStorage": {"uri": root, "exportOptions": {"format": "PARQUET"}},
            "method": method}


def run(command, body, env):
    started = time.monotonic()
    out = subprocess.run(command, input=json.dumps(body).encode(), capture_output=True, env=env)
    seconds = time.monotonic() - started
    if out.returncode != 0:
        sys.exit(f"{command[0]} failed: {out.stderr.decode()[-2000:]}")
    return json.loads(out.stdout), seconds


def traced_bytes(binary, body, env):
    with tempfile.TemporaryDirectory() as traces:
        run(["strace", "-ff", "-qq", "-yy", "-s", "0", "-o", os.path.join(traces, "t"),
             "-e", "trace=read,write,readv,writev,recvfrom,sendto,recvmsg,sendmsg",
             binary, "backup", "--request", "-"], body, env)
        received = sent = 0
        for name in os.listdir(traces):
            with open(os.path.join(traces, name), errors="replace") as lines:
                for line in lines:
                    match = SYSCALL.match(line.strip())
                    if not match:
                        continue
                    if match.group(1) in IN:
                        received += int(match.group(2))
                    elif match.group(1) in OUT:
                        sent += int(match.group(2))
        return received, sent


def main():
    binary, rest, rows, bucket = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
    dataset = f"bench_extract_{int(time.time())}"
    create(rest, dataset, rows)
    env = {**os.environ, "BQB_PROJECT_ID": PROJECT, "BQB_LOG_LEVEL": "warn"}
    print("| method | rows | seconds | files | file MB | MB received by the service | MB sent by the service |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for method in ["STREAM", "EXTRACT"]:
        root = f"gs://{bucket}/bench-extract-{dataset}-{method.lower()}"
        report, seconds = run([binary, "backup", "--request", "-"], request(dataset, root, method), env)
        used = {t["method"] for t in report["tables"]}
        assert used == {method}, report
        # A second backup of the same table (another root): the one counted, slowed by strace.
        received, sent = traced_bytes(binary, request(dataset, root + "-traced", method), env)
        totals = report["totals"]
        print(f"| {method} | {rows:,} | {seconds:.1f} | {totals['files']} | {totals['bytes'] / 1e6:.1f} "
              f"| {received / 1e6:.2f} | {sent / 1e6:.2f} |")


if __name__ == "__main__":
    main()
