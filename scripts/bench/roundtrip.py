"""Backup, restore and verify throughput and memory on the same data, through the real CLI
(bench-roundtrip.sh), at one or more table sizes.

For each ROWS, creates a table of ROWS rows of 7 mixed-type columns inside the BigQuery emulator
with one `CREATE TABLE AS SELECT` (generated where the data lives: no upload, little emulator
memory), then times `bq-backup backup` (to file://, files of up to BQB_TEST_BENCH_FILE_SIZE bytes,
1 GiB by default), `bq-backup verify` and `bq-backup restore` of that backup as separate processes,
reading each one's peak RSS from getrusage(RUSAGE_CHILDREN), and drops the datasets again before
the next size.

    python roundtrip.py BINARY REST_URL WORKDIR ROWS [ROWS...]
"""
import json
import os
import subprocess
import sys
import time
import urllib.request

PROJECT = "test-project"


def call(method, url, body=None):
    data, headers = None, {}
    if body is not None:
        data = json.dumps(body).encode()
        headers = {"Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    with urllib.request.urlopen(req, timeout=3600) as resp:
        text = resp.read()
        return json.loads(text) if text else None


# Ids 0..rows-1; every other column derived from the id (RAND() for the doubles), so the table
# has the shape of a sales fact table: numbers, a decimal, a flag, a 18-character string, a date
# and a timestamp.
GENERATE = """CREATE TABLE `{dataset}.sales` AS
SELECT id,
       RAND() * 1000 AS amount,
       CAST(MOD(id, 100000) / 100 AS NUMERIC) AS price,
       MOD(id, 3) = 0 AS flag,
       CONCAT("customer-", FORMAT("%09d", MOD(id * 7919, 1000000000))) AS name,
       DATE_ADD(DATE "2026-01-01", INTERVAL MOD(id, 365) DAY) AS day,
       TIMESTAMP_ADD(TIMESTAMP "2026-01-01 00:00:00+00", INTERVAL id SECOND) AS ts
FROM UNNEST(GENERATE_ARRAY(0, {last})) AS id"""


def create(rest, dataset, rows):
    call("POST", f"{rest}/bigquery/v2/projects/{PROJECT}/datasets",
         {"datasetReference": {"projectId": PROJECT, "datasetId": dataset}})
    answer = call("POST", f"{rest}/bigquery/v2/projects/{PROJECT}/queries", {
        "query": GENERATE.format(dataset=dataset, last=rows - 1), "useLegacySql": False,
        "timeoutMs": 3_600_000})
    if answer.get("errors") or not answer.get("jobComplete"):
        sys.exit(f"creating the benchmark table failed: {answer}")


def drop(rest, dataset):
    try:
        call("DELETE", f"{rest}/bigquery/v2/projects/{PROJECT}/datasets/{dataset}?deleteContents=true")
    except OSError as e:
        print(f"dropping {dataset}: {e}", file=sys.stderr)


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


def measure(binary, rest, workdir, rows, env):
    """(rows, MB written, files, [(operation, seconds, peak RSS MB)]) for one table size."""
    dataset = f"bench_{rows}_{int(time.time())}"
    t0 = time.monotonic()
    create(rest, dataset, rows)
    print(f"created {rows} rows in the emulator in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    root = f"file://{workdir}/backups-{dataset}"
    fmt = os.environ.get("BQB_TEST_BENCH_FORMAT", "PARQUET")
    file_size = int(os.environ.get("BQB_TEST_BENCH_FILE_SIZE", str(1 << 30)))
    try:
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
    finally:
        drop(rest, dataset)
        drop(rest, f"restored_{dataset}")
    subprocess.run(["rm", "-rf", f"{workdir}/backups-{dataset}"], check=False)
    return (rows, backup["totals"]["bytes"] / 1e6, backup["totals"]["files"],
            [("backup", b_s, b_rss), ("verify", v_s, v_rss), ("restore", r_s, r_rss)])


def main():
    binary, rest, workdir = sys.argv[1], sys.argv[2], sys.argv[3]
    sizes = [int(r) for r in sys.argv[4:]] or [1_000_000]
    env = {**os.environ, "BQB_PROJECT_ID": PROJECT, "BQB_LOG_LEVEL": "warn"}
    fmt = os.environ.get("BQB_TEST_BENCH_FORMAT", "PARQUET")
    file_size = int(os.environ.get("BQB_TEST_BENCH_FILE_SIZE", str(1 << 30)))
    results = [measure(binary, rest, workdir, rows, env) for rows in sizes]
    print(f"| rows | {fmt} files | operation | seconds | rows/s | MB/s | peak RSS MB |")
    print("|---:|---:|---|---:|---:|---:|---:|")
    for rows, mb, files, operations in results:
        for i, (operation, seconds, rss) in enumerate(operations):
            written = f"{mb:.1f} MB in {files}" if i == 0 else ""
            print(f"| {rows:,} | {written} | {operation} | {seconds:.1f} | {rows / seconds:,.0f} "
                  f"| {mb / seconds:.1f} | {rss:.0f} |")
    if len(results) > 1:
        first, last = results[0], results[-1]
        print()
        for i, (operation, _, _) in enumerate(first[3]):
            print(f"- {operation}: peak RSS {first[3][i][2]:.0f} MB at {first[0]:,} rows, "
                  f"{last[3][i][2]:.0f} MB at {last[0]:,} rows "
                  f"(×{last[3][i][2] / first[3][i][2]:.2f} for ×{last[0] / first[0]:.0f} rows)")
    print(f"\n{fmt}, fileSizeBytes {file_size}; emulator: bqemulator 1.4.0 on 127.0.0.1",
          file=sys.stderr)


if __name__ == "__main__":
    main()
