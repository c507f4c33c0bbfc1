"""What an incremental backup saves (bench-incremental.sh): a full backup of a table of ROWS rows
in 100 daily partitions, then ROWS/1000 rows (like the others) added to one partition, which so
grows by a tenth and holds 1.1% of the table (late rows arriving for a day), then an incremental
backup against the full one, each through the real CLI as a process of its own.

Creates the table inside the BigQuery emulator with one `CREATE TABLE … PARTITION BY … AS SELECT`
(generated where the data lives), reads each backup's wall time, CPU seconds and peak RSS in a
wrapper process (as roundtrip.py does), the emulator's CPU seconds over the same span, and the
bytes each backup wrote under its own directory (what it cost the store: files reused from the
base are listed in its manifest, not written again). Checks that the incremental backup read one
partition and reused 99, and that a restore of it gives the table's rows. Prints a Markdown table.

Also times, alone, the `INFORMATION_SCHEMA.PARTITIONS` query every backup of a partitioned table
sends once (the median of three): the emulator computes that view by scanning the table, where
BigQuery keeps it as metadata, so the time ratio is also given with that listing taken out of
both backups.

    python incremental.py BINARY REST_URL WORKDIR EMULATOR_PID ROWS
"""
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from roundtrip import PROJECT, call, drop, run  # noqa: E402

PARTITIONS = 100

GENERATE = """CREATE TABLE `{dataset}.events` PARTITION BY day AS
SELECT id,
       DATE_ADD(DATE "2026-01-01", INTERVAL MOD(id, {partitions}) DAY) AS day,
       RAND() * 1000 AS amount,
       CONCAT("customer-", FORMAT("%09d", MOD(id * 7919, 1000000000))) AS name,
       TIMESTAMP_ADD(TIMESTAMP "2026-01-01 00:00:00+00", INTERVAL id SECOND) AS ts
FROM UNNEST(GENERATE_ARRAY(0, {last})) AS id"""

CHANGE = """INSERT INTO `{dataset}.events` (id, day, amount, name, ts)
SELECT id, DATE "2026-01-01", RAND() * 1000,
       CONCAT("customer-", FORMAT("%09d", MOD(id * 7919, 1000000000))),
       TIMESTAMP_ADD(TIMESTAMP "2026-01-01 00:00:00+00", INTERVAL id SECOND)
FROM UNNEST(GENERATE_ARRAY({first}, {last})) AS id"""


def query(rest, sql):
    answer = call("POST", f"{rest}/bigquery/v2/projects/{PROJECT}/queries",
                  {"query": sql, "useLegacySql": False, "timeoutMs": 3_600_000})
    if answer.get("errors") or answer.get("error") or not answer.get("jobComplete"):
        sys.exit(f"the query failed: {answer}")


def listing_seconds(rest, dataset):
    """The median wall time of the partition listing a backup sends (src/bigquery/partitions.rs)."""
    sql = (f"SELECT table_name, partition_id, total_rows, UNIX_MILLIS(last_modified_time) "
           f"FROM `{PROJECT}`.{dataset}.INFORMATION_SCHEMA.PARTITIONS")
    times = []
    for _ in range(3):
        t0 = time.monotonic()
        query(rest, sql)
        times.append(time.monotonic() - t0)
    return sorted(times)[1]


def written(root, backup_id):
    """Bytes under backups/{backup_id}/ (its own files and manifest)."""
    total = 0
    for folder, _, names in os.walk(f"{root.removeprefix('file://')}/backups/{backup_id}"):
        total += sum(os.path.getsize(os.path.join(folder, n)) for n in names)
    return total


def main():
    if len(sys.argv) != 6:
        sys.exit(__doc__)
    binary, rest, workdir, emulator_pid, rows = sys.argv[1:6]
    rows = int(rows)
    env = {**os.environ, "BQB_PROJECT_ID": PROJECT, "BQB_LOG_LEVEL": "warn"}
    dataset = f"bench_incr_{int(time.time())}"
    root = f"file://{workdir}/repo"
    call("POST", f"{rest}/bigquery/v2/projects/{PROJECT}/datasets",
         {"datasetReference": {"projectId": PROJECT, "datasetId": dataset}})
    try:
        t0 = time.monotonic()
        query(rest, GENERATE.format(dataset=dataset, partitions=PARTITIONS, last=rows - 1))
        print(f"created {rows} rows in {PARTITIONS} partitions in {time.monotonic() - t0:.1f}s",
              file=sys.stderr)
        request = {"bigQuery": {"projectId": PROJECT, "tablesToBackup": [{"datasetName": dataset}]},
                   "backupStorage": {"uri": root, "exportOptions": {"format": "PARQUET"}}}
        backup = [binary, "backup", "--request", "-"]
        full = run(backup, request, env, emulator_pid)
        changed = rows // (PARTITIONS * 10)
        query(rest, CHANGE.format(dataset=dataset, first=rows, last=rows + changed - 1))
        time.sleep(1.1)  # backup ids are per second
        incremental = run(backup, {**request, "incremental": {"base": "latest"}}, env,
                          emulator_pid)
        parts = incremental.answer["tables"][0]["partitions"]
        if (parts["read"], parts["reused"]) != (1, PARTITIONS - 1):
            sys.exit(f"the incremental backup did not read 1 partition and reuse 99: {parts}")
        restore = {"bigQuery": {"projectId": PROJECT, "datasetsToRestore": [dataset]},
                   "restoreStorage": {"uri": root},
                   "backupId": incremental.answer["backupId"]}
        restored = run([binary, "restore", "--request", "-"], restore, env, emulator_pid)
        if restored.answer["tables"][0]["rows"] != rows + changed:
            sys.exit(f"the restore of the incremental backup lost rows: {restored.answer}")
        listing = listing_seconds(rest, dataset)
        lines = []
        for name, r in (("full", full), ("incremental (1 of 100 partitions changed)", incremental)):
            own = written(root, r.answer["backupId"])
            lines.append((name, r, own, r.answer["totals"]["rows"]))
        print("| backup | seconds | CPU s | emulator CPU s | bytes written | rows listed "
              "| peak RSS MB |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, r, own, listed in lines:
            print(f"| {name} | {r.seconds:.2f} | {r.cpu:.2f} | {r.emulator_cpu:.2f} "
                  f"| {own:,} | {listed:,} | {r.rss_mb:.0f} |")
        (_, f, f_bytes, _), (_, i, i_bytes, _) = lines
        print(f"\nincremental / full: time {i.seconds / f.seconds:.3f}, "
              f"CPU {i.cpu / f.cpu:.3f}, emulator CPU {i.emulator_cpu / max(f.emulator_cpu, 1e-9):.3f}, "
              f"bytes written {i_bytes / f_bytes:.3f}; restore of the chain: "
              f"{restored.seconds:.2f} s, {rows + changed:,} rows")
        print(f"the emulator's partition listing alone: {listing:.2f} s (median of 3); time "
              f"without it in either backup: {(i.seconds - listing) / (f.seconds - listing):.3f}")
    finally:
        drop(rest, dataset)


if __name__ == "__main__":
    main()
