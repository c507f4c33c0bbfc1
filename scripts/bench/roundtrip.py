"""Backup, restore and verify throughput, CPU and memory on the same data, through the real CLI
(bench-roundtrip.sh), at one or more table sizes, next to the backup a user would write in Python.

For each ROWS, creates a table of ROWS rows of 7 mixed-type columns inside the BigQuery emulator
with one `CREATE TABLE AS SELECT` (generated where the data lives: no upload, little emulator
memory), then runs, each as a process of its own:

0. `bq-backup backup`, not counted: the emulator's first read of a table costs it more;
1. `bq-backup backup` on every core (to file://, files of up to BQB_TEST_BENCH_FILE_SIZE bytes,
   1 GiB by default);
2. the same backup under `taskset -c 0` (one core; the emulator keeps both): 1 → 2 core scaling;
3. the Python reference client (reference_client.py: google-cloud-bigquery-storage, 4 streams,
   Arrow, pyarrow writing Parquet), when CLIENT_PYTHON is given and the format is PARQUET;
4. `bq-backup verify` and `bq-backup restore` of the first backup;

reading each one's wall time, CPU seconds (user + system) and peak RSS from getrusage
(RUSAGE_CHILDREN) in a wrapper process of its own, and the emulator's CPU seconds over the same
span from /proc/EMULATOR_PID/stat. Drops the datasets again before the next size. Prints a
Markdown table and the ratios of issue 13.

    python roundtrip.py BINARY REST_URL GRPC_HOST:PORT WORKDIR EMULATOR_PID CLIENT_PYTHON ROWS...

CLIENT_PYTHON: the interpreter with google-cloud-bigquery-storage and pyarrow, or "" to skip it.
"""
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.request

PROJECT = "test-project"
HERE = os.path.dirname(os.path.abspath(__file__))
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


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
# that command's alone: peak RSS and CPU seconds (user + system, every thread).
WRAPPER = """
import resource, subprocess, sys, time
started = time.monotonic()
out = subprocess.run(sys.argv[1:], stdin=sys.stdin, capture_output=True)
seconds = time.monotonic() - started
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
sys.stderr.buffer.write(out.stderr)
sys.stdout.buffer.write(out.stdout)
print(f"\\n@@ {seconds} {usage.ru_maxrss} {usage.ru_utime + usage.ru_stime} {out.returncode}")
"""


def cpu_seconds(pid):
    """User + system CPU seconds of process `pid` so far (0 when it cannot be read)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            # The fields after the parenthesised name: utime and stime are the 12th and 13th.
            fields = f.read().rpartition(")")[2].split()
        return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS
    except (OSError, ValueError, IndexError):
        return 0.0


class Run:
    """One measured command: its JSON answer, wall seconds, CPU seconds, peak RSS MB, and the
    emulator's CPU seconds over the same span."""

    def __init__(self, answer, seconds, cpu, rss_mb, emulator_cpu):
        self.answer, self.seconds, self.cpu = answer, seconds, cpu
        self.rss_mb, self.emulator_cpu = rss_mb, emulator_cpu


def run(command, request, env, emulator_pid):
    """Runs `command` (the request, if any, as JSON on stdin) in the wrapper."""
    before = cpu_seconds(emulator_pid)
    out = subprocess.run([sys.executable, "-c", WRAPPER, *command],
                         input=json.dumps(request).encode() if request else b"",
                         capture_output=True, env=env)
    emulator_cpu = cpu_seconds(emulator_pid) - before
    text = out.stdout.decode()
    body, _, tail = text.rpartition("\n@@ ")
    seconds, rss_kib, cpu, code = tail.split()
    if int(code) != 0:
        sys.exit(f"{' '.join(command[:2])} failed: {out.stderr.decode()[-2000:]}")
    return Run(json.loads(body), float(seconds), float(cpu), int(rss_kib) / 1024, emulator_cpu)


def measure(binary, rest, grpc, workdir, emulator_pid, client_python, rows, env):
    """(rows, MB written, files, [(key, operation, Run, MB)]) for one table size."""
    dataset = f"bench_{rows}_{int(time.time())}"
    t0 = time.monotonic()
    create(rest, dataset, rows)
    print(f"created {rows} rows in the emulator in {time.monotonic() - t0:.1f}s", file=sys.stderr)
    root = f"file://{workdir}/backups-{dataset}"
    one_core_root = f"file://{workdir}/backups-1core-{dataset}"
    warm_root = f"file://{workdir}/backups-warm-{dataset}"
    reference_dir = f"{workdir}/reference-{dataset}"
    fmt = os.environ.get("BQB_TEST_BENCH_FORMAT", "PARQUET")
    file_size = int(os.environ.get("BQB_TEST_BENCH_FILE_SIZE", str(1 << 30)))
    operations = []

    def backup_request(uri):
        return {"bigQuery": {"projectId": PROJECT, "tablesToBackup": [{"datasetName": dataset}]},
                "backupStorage": {"uri": uri, "exportOptions": {"format": fmt}},
                "fileSizeBytes": file_size}

    try:
        # The emulator's first read of a table costs it more than the next ones (about twice
        # its CPU at 500,000 rows): a backup first, not counted, so that the timed ones compare.
        warm = run([binary, "backup", "--request", "-"], backup_request(warm_root), env,
                   emulator_pid)
        operations.append(("warm-up", "backup, warm-up (first read; not in the ratios)", warm,
                           warm.answer["totals"]["bytes"] / 1e6))
        shutil.rmtree(warm_root.removeprefix("file://"), ignore_errors=True)
        backup = run([binary, "backup", "--request", "-"], backup_request(root), env, emulator_pid)
        mb = backup.answer["totals"]["bytes"] / 1e6
        operations.append(("backup", "backup", backup, mb))
        if (os.cpu_count() or 1) >= 2 and shutil.which("taskset"):
            one_core = run(["taskset", "-c", "0", binary, "backup", "--request", "-"],
                           backup_request(one_core_root), env, emulator_pid)
            operations.append(("backup-1core", "backup, 1 core (taskset -c 0)", one_core,
                               one_core.answer["totals"]["bytes"] / 1e6))
        if client_python and fmt == "PARQUET":
            reference = run([client_python, f"{HERE}/reference_client.py", grpc, PROJECT, dataset,
                             "sales", reference_dir, "4"], None, env, emulator_pid)
            assert reference.answer["rows"] == rows, reference.answer
            operations.append(("python", "Python client (Read API, 4 streams, pyarrow Parquet)",
                               reference, reference.answer["bytes"] / 1e6))
        verify = run([binary, "verify", backup.answer["backupId"], "--uri", root], None, env,
                     emulator_pid)
        assert verify.answer["ok"] and verify.answer["rowsChecked"] == rows, verify.answer
        operations.append(("verify", "verify", verify, mb))
        restore = run([binary, "restore", "--request", "-"], {
            "bigQuery": {"projectId": PROJECT, "datasetsToRestore": [dataset]},
            "restoreStorage": {"uri": root}, "backupId": backup.answer["backupId"]},
            env, emulator_pid)
        assert restore.answer["rows"] == rows, restore.answer
        operations.append(("restore", "restore", restore, mb))
    finally:
        drop(rest, dataset)
        drop(rest, f"restored_{dataset}")
        for path in (root, one_core_root, warm_root):
            shutil.rmtree(path.removeprefix("file://"), ignore_errors=True)
        shutil.rmtree(reference_dir, ignore_errors=True)
    return rows, mb, backup.answer["totals"]["files"], operations


def ratio(numerator, denominator):
    return f"{numerator / denominator:.2f}×" if denominator else "n/a"


def main():
    if len(sys.argv) < 8:
        sys.exit(__doc__)
    binary, rest, grpc, workdir, emulator_pid, client_python = sys.argv[1:7]
    sizes = [int(r) for r in sys.argv[7:]]
    env = {**os.environ, "BQB_PROJECT_ID": PROJECT, "BQB_LOG_LEVEL": "warn"}
    fmt = os.environ.get("BQB_TEST_BENCH_FORMAT", "PARQUET")
    file_size = int(os.environ.get("BQB_TEST_BENCH_FILE_SIZE", str(1 << 30)))
    results = [measure(binary, rest, grpc, workdir, emulator_pid, client_python, rows, env)
               for rows in sizes]

    print(f"| rows | {fmt} files | operation | seconds | CPU s | emulator CPU s | rows/s | MB/s "
          "| peak RSS MB |")
    print("|---:|---:|---|---:|---:|---:|---:|---:|---:|")
    for rows, mb, files, operations in results:
        for i, (_, operation, r, written) in enumerate(operations):
            size = f"{mb:.1f} MB in {files}" if i == 1 else ""
            print(f"| {rows:,} | {size} | {operation} | {r.seconds:.2f} | {r.cpu:.2f} "
                  f"| {r.emulator_cpu:.2f} | {rows / r.seconds:,.0f} | {written / r.seconds:.1f} "
                  f"| {r.rss_mb:.0f} |")
    print("\nCPU s: user + system seconds of that process (every thread); emulator CPU s: "
          "bqemulator's over the same span (it shares the cores). MB/s: the files written "
          "(backup, Python client) or read (verify, restore).")

    print("\n### Issue 13 ratios\n")
    print("| rows | measure | value | target |")
    print("|---:|---|---:|---|")
    for rows, _, _, operations in results:
        ops = {key: r for key, _, r, _ in operations}
        backup, restore = ops["backup"], ops["restore"]
        lines = []
        if "backup-1core" in ops:
            lines.append(("backup, 1 → 2 cores (wall on 1 core / on 2)",
                          ratio(ops["backup-1core"].seconds, backup.seconds), "≥ 1.8×"))
        if "python" in ops:
            py = ops["python"]
            lines += [
                ("backup vs Python client: wall (Python seconds / bq-backup seconds)",
                 ratio(py.seconds, backup.seconds), "≥ 3×"),
                (f"the same without Python's imports ({py.answer['import_seconds']:.2f} s)",
                 ratio(py.seconds - py.answer["import_seconds"], backup.seconds), "—"),
                ("backup vs Python client: CPU (bq-backup CPU s / Python CPU s)",
                 ratio(backup.cpu, py.cpu), "≤ 0.33×"),
                ("backup vs Python client: peak RSS MB",
                 f"{backup.rss_mb:.0f} vs {py.rss_mb:.0f}", "—"),
            ]
        lines.append((f"restore throughput / backup throughput ({fmt})",
                      ratio(backup.seconds, restore.seconds), "≥ 0.8×"))
        for measure_, value, target in lines:
            print(f"| {rows:,} | {measure_} | {value} | {target} |")

    if len(results) > 1:
        first, last = results[0], results[-1]
        print()
        for (_, operation, r0, _), (_, _, r1, _) in zip(first[3], last[3]):
            print(f"- {operation}: peak RSS {r0.rss_mb:.0f} MB at {first[0]:,} rows, "
                  f"{r1.rss_mb:.0f} MB at {last[0]:,} rows "
                  f"(×{r1.rss_mb / r0.rss_mb:.2f} for ×{last[0] / first[0]:.0f} rows)")
    print(f"\n{fmt}, fileSizeBytes {file_size}; emulator: bqemulator 1.4.0 on 127.0.0.1; "
          f"{os.cpu_count()} cores", file=sys.stderr)


if __name__ == "__main__":
    main()
