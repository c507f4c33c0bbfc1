"""Throughput of one sharded backup as the number of worker processes grows (bench-shards.sh).

Creates a table of ROWS rows inside the BigQuery emulator (as roundtrip.py does), then for each N
of WORKERS (default 1 2 4): starts `bq-backup backup` with `"shards": N` (the CLI plans the backup,
writes backups/{id}/plan.json and follows the shards), waits for the plan, starts N
`bq-backup worker` processes at once, and times from their start until the last one exits (the
last to finish commits the manifest). Each worker runs in a wrapper reading its CPU seconds and
peak RSS; the emulator's CPU seconds are read over the same span. Prints a Markdown table with
rows/s and the speed-up against one worker. BQB_TEST_BENCH_PIN=1 pins worker i to core i mod
cores (`taskset`): each worker as if on a one-core machine of its own.

    python shards.py BINARY REST_URL WORKDIR EMULATOR_PID ROWS WORKERS...
"""
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from roundtrip import PROJECT, WRAPPER, cpu_seconds, create, drop  # noqa: E402


def wrapped(command, env):
    return subprocess.Popen([sys.executable, "-c", WRAPPER, *command], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env)


def finished(process):
    """(answer, seconds, peak RSS MB, CPU s) of a wrapped process, which must have succeeded."""
    out, err = process.communicate()
    body, _, tail = out.decode().rpartition("\n@@ ")
    seconds, rss_kib, cpu, code = tail.split()
    if int(code) != 0:
        sys.exit(f"a worker failed: {err.decode()[-2000:]}")
    return json.loads(body), float(seconds), int(rss_kib) / 1024, float(cpu)


def sharded_backup(binary, env, dataset, root, shards, emulator_pid, rows):
    request = {"bigQuery": {"projectId": PROJECT, "tablesToBackup": [{"datasetName": dataset}]},
               "backupStorage": {"uri": root, "exportOptions": {"format": "PARQUET"}},
               "shards": shards}
    planner = subprocess.Popen([binary, "backup", "--request", "-"], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    planner.stdin.write(json.dumps(request).encode())
    planner.stdin.close()
    backups = root.removeprefix("file://") + "/backups"
    deadline = time.monotonic() + 600
    plan = None
    while plan is None:
        if planner.poll() is not None:
            sys.exit(f"the planner ended early: {planner.stderr.read().decode()[-2000:]}")
        if time.monotonic() > deadline:
            sys.exit("no plan after 600 s")
        for backup_id in os.listdir(backups) if os.path.isdir(backups) else []:
            if os.path.exists(f"{backups}/{backup_id}/plan.json"):
                plan = backup_id
        time.sleep(0.05)
    emulator_before = cpu_seconds(emulator_pid)
    started = time.monotonic()
    cores = os.cpu_count() or 1

    def pinned(i):
        # One core per worker, as if each had a machine of one core of its own.
        return ["taskset", "-c", str(i % cores)] if os.environ.get("BQB_TEST_BENCH_PIN") else []

    workers = [wrapped([*pinned(i), binary, "worker", "--repository", root, "--backup-id", plan,
                        "--shard", str(i), "--shards", str(shards)], env) for i in range(shards)]
    results = [finished(w) for w in workers]
    seconds = time.monotonic() - started
    emulator_cpu = cpu_seconds(emulator_pid) - emulator_before
    out, err = planner.stdout.read(), planner.stderr.read()
    planner.wait(timeout=120)
    if planner.returncode != 0:
        sys.exit(f"the sharded backup failed: {err.decode()[-2000:]}")
    report = json.loads(out)
    assert report["totals"]["rows"] == rows, report["totals"]
    return {
        "seconds": seconds,
        "cpu": sum(r[3] for r in results),
        "rss": max(r[2] for r in results),
        "emulator_cpu": emulator_cpu,
        "files": report["totals"]["files"],
        "mb": report["totals"]["bytes"] / 1e6,
    }


def main():
    if len(sys.argv) < 6:
        sys.exit(__doc__)
    binary, rest, workdir, emulator_pid, rows = sys.argv[1:6]
    rows = int(rows)
    counts = [int(n) for n in sys.argv[6:]] or [1, 2, 4]
    env = {**os.environ, "BQB_PROJECT_ID": PROJECT, "BQB_LOG_LEVEL": "warn",
           "BQB_JOB_HEARTBEAT_SECS": "1"}
    dataset = f"bench_shards_{rows}_{int(time.time())}"
    create(rest, dataset, rows)
    measured = []
    try:
        # The emulator's first read of a table costs it more: one run first, not counted.
        sharded_backup(binary, env, dataset, f"file://{workdir}/warm", counts[0], emulator_pid, rows)
        shutil.rmtree(f"{workdir}/warm", ignore_errors=True)
        for n in counts:
            time.sleep(1.1)  # backup ids are per second
            root = f"file://{workdir}/shards-{n}"
            measured.append((n, sharded_backup(binary, env, dataset, root, n, emulator_pid, rows)))
            shutil.rmtree(root.removeprefix("file://"), ignore_errors=True)
    finally:
        drop(rest, dataset)
    base = measured[0][1]["seconds"]
    print("| workers | seconds | rows/s | speed-up vs 1 | workers' CPU s | emulator CPU s "
          "| peak RSS per worker MB | files |")
    print("|---:|---:|---:|---:|---:|---:|---:|---:|")
    for n, r in measured:
        print(f"| {n} | {r['seconds']:.2f} | {rows / r['seconds']:,.0f} | "
              f"{base / r['seconds']:.2f}× | {r['cpu']:.2f} | {r['emulator_cpu']:.2f} | "
              f"{r['rss']:.0f} | {r['files']} |")
    pinning = ("each worker pinned to one core (worker i to core i mod cores)"
               if os.environ.get("BQB_TEST_BENCH_PIN") else "workers on every core")
    print(f"\n{rows:,} rows, PARQUET, {pinning}; the emulator shares the same "
          f"{os.cpu_count()} cores", file=sys.stderr)


if __name__ == "__main__":
    main()
