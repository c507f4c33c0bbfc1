"""Load generator of the serve benchmark (bench-load.sh; standard library only: threads + http.client).

    python3 load.py setup    REST PROJECT DATASET TABLES ROWS   create the dataset (insertAll)
    python3 load.py teardown REST PROJECT DATASET                delete it with its tables
    python3 load.py run --serve URL --pid PID --project P --dataset D --tables N --repo DIR
                        [--backups 200] [--health 500] [--slots 50] [--deadline 300] [--out FILE]

`run` opens BACKUPS + HEALTH connections at once (one thread each, released together by a
barrier): BACKUPS `POST /api/v1/backup` and HEALTH `GET /healthz`. Backup i writes to
file://REPO/slot-(i mod SLOTS) and always backs up the same two tables for a given slot, so two
requests of one slot are the same selection in the same repository (the second is a 409 while
the first is live) and requests of different slots never conflict. While the accepted jobs run,
one thread probes /healthz every 50 ms. Then it polls every accepted job
(`GET /api/v1/jobs/{id}`) until SUCCEEDED, FAILED or CANCELLED or until DEADLINE seconds after the
burst, reads the serve process's VmHWM / VmRSS from /proc, prints a report and writes it as JSON
to --out. Exit status 1 when anything is off: a 5xx or any status but 202/409/429, a connection
error, a 429 without Retry-After, a job that did not end in time or did not succeed.

The generator runs on the same two cores as serve and the emulator: its 700 threads take CPU
too, so latencies are upper bounds of what serve alone would show.
"""
import argparse
import collections
import datetime
import http.client
import json
import sys
import threading
import time
import urllib.parse
import urllib.request

TERMINAL = {"SUCCEEDED", "FAILED", "CANCELLED"}


# ------------------------------------------------------------------ dataset in the emulator
def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=300) as resp:
        text = resp.read()
        return json.loads(text) if text.strip() else None


def setup(rest, project, dataset, tables, rows):
    base = f"{rest}/bigquery/v2/projects/{project}"
    call("POST", f"{base}/datasets", {"datasetReference": {"projectId": project,
                                                           "datasetId": dataset}})
    fields = [{"name": "id", "type": "INT64", "mode": "REQUIRED"},
              {"name": "name", "type": "STRING"}, {"name": "amount", "type": "FLOAT64"},
              {"name": "day", "type": "DATE"}, {"name": "ts", "type": "TIMESTAMP"}]
    day0 = datetime.date(2026, 1, 1)
    for t in range(tables):
        name = f"t{t}"
        call("POST", f"{base}/datasets/{dataset}/tables", {
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": name},
            "schema": {"fields": fields}})
        for start in range(0, rows, 1000):
            batch = [{"json": {"id": i, "name": f"customer-{i:06d}", "amount": i * 0.25,
                               "day": str(day0 + datetime.timedelta(days=i % 365)),
                               "ts": f"2026-01-01T00:00:{i % 60:02d}Z"}}
                     for i in range(start, min(rows, start + 1000))]
            answer = call("POST", f"{base}/datasets/{dataset}/tables/{name}/insertAll",
                          {"rows": batch})
            if answer and answer.get("insertErrors"):
                sys.exit(f"insertAll into {name} failed: {answer['insertErrors'][:3]}")
    print(f"created {project}.{dataset}: {tables} tables x {rows} rows", file=sys.stderr)


def teardown(rest, project, dataset):
    call("DELETE", f"{rest}/bigquery/v2/projects/{project}/datasets/{dataset}?deleteContents=true")
    print(f"deleted {project}.{dataset}", file=sys.stderr)


# ------------------------------------------------------------------ the burst
class Client:
    """One short-lived connection per request, as independent callers would make."""

    def __init__(self, url):
        u = urllib.parse.urlsplit(url)
        self.host, self.port = u.hostname, u.port

    def request(self, method, path, body=None, timeout=120):
        """(status or None, headers dict, body bytes or error text, seconds)."""
        t0 = time.perf_counter()
        c = http.client.HTTPConnection(self.host, self.port, timeout=timeout)
        try:
            headers = {"Content-Type": "application/json"} if body is not None else {}
            c.request(method, path, body=None if body is None else json.dumps(body).encode(),
                      headers=headers)
            r = c.getresponse()
            data = r.read()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, data, \
                time.perf_counter() - t0
        except (OSError, http.client.HTTPException) as e:
            return None, {}, repr(e).encode(), time.perf_counter() - t0
        finally:
            c.close()


def percentiles(values):
    if not values:
        return None
    v = sorted(values)

    def p(q):  # nearest rank
        return v[min(len(v) - 1, max(0, int(round(q / 100 * len(v) + 0.5)) - 1))]
    ms = lambda s: round(s * 1000, 1)  # noqa: E731
    return {"count": len(v), "p50_ms": ms(p(50)), "p95_ms": ms(p(95)), "p99_ms": ms(p(99)),
            "max_ms": ms(v[-1])}


def proc_memory(pid):
    out = {}
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                key, _, value = line.partition(":")
                if key in ("VmHWM", "VmRSS"):
                    out[key] = int(value.split()[0]) // 1024  # kB -> MiB
    except OSError:
        pass
    return out


def backup_body(i, args):
    slot = i % args.slots
    tables = sorted({f"t{slot % args.tables}", f"t{(slot + 1) % args.tables}"})
    return {"bigQuery": {"projectId": args.project,
                         "tablesToBackup": [{"datasetName": args.dataset, "tables": tables}]},
            "backupStorage": {"uri": f"file://{args.repo}/slot-{slot:03d}"},
            "reason": f"bench-load request {i}"}


def run(args):
    client = Client(args.serve)
    memory_before = proc_memory(args.pid)
    n = args.backups + args.health
    barrier = threading.Barrier(n + 1)
    backups, health = [None] * args.backups, [None] * args.health

    def post(i):
        barrier.wait()
        backups[i] = client.request("POST", "/api/v1/backup", backup_body(i, args))

    def get(i):
        barrier.wait()
        health[i] = client.request("GET", "/healthz", timeout=60)

    threads = [threading.Thread(target=post, args=(i,)) for i in range(args.backups)]
    threads += [threading.Thread(target=get, args=(i,)) for i in range(args.health)]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    burst_s = time.perf_counter() - t0

    statuses = collections.Counter(str(b[0]) for b in backups)
    problems = []
    for status, count in sorted(statuses.items()):
        if status == "None":
            problems.append(f"{count} backup POST(s) got no answer (connection error)")
        elif status.startswith("5"):
            problems.append(f"!!! {count} backup POST(s) answered {status} (a 5xx is a bug)")
        elif status not in ("202", "409", "429"):
            problems.append(f"{count} backup POST(s) answered {status} (expected 202/409/429)")
    examples = {}
    for status, _, data, _ in backups:
        if status not in (202, None) and str(status) not in examples:
            examples[str(status)] = data[:300].decode("utf-8", "replace")
        if status is None and "error" not in examples:
            examples["error"] = data[:300].decode("utf-8", "replace")
    too_many = [h for s, h, _, _ in backups if s == 429]
    missing_retry = sum(1 for h in too_many if not h.get("retry-after"))
    if missing_retry:
        problems.append(f"{missing_retry} of {len(too_many)} 429 answer(s) lack Retry-After")
    retry_after = sorted({h.get("retry-after") for h in too_many if h.get("retry-after")})
    health_bad = collections.Counter(str(h[0]) for h in health if h[0] != 200)
    if health_bad:
        problems.append(f"/healthz during the burst answered {dict(health_bad)}")

    # Accepted jobs to the end; /healthz probed meanwhile.
    jobs = {}
    for status, _, data, _ in backups:
        if status == 202:
            body = json.loads(data)
            jobs[body["jobId"]] = None
    probe, stop = [], threading.Event()

    def prober():
        while not stop.is_set():
            status, _, _, took = client.request("GET", "/healthz", timeout=30)
            probe.append(took if status == 200 else None)
            stop.wait(0.05)
    probe_thread = threading.Thread(target=prober)
    probe_thread.start()
    t1 = time.perf_counter()
    deadline = time.monotonic() + args.deadline
    errors = {}
    while time.monotonic() < deadline and any(v not in TERMINAL for v in jobs.values()):
        for job_id, state in jobs.items():
            if state in TERMINAL:
                continue
            status, _, data, _ = client.request("GET", f"/api/v1/jobs/{job_id}", timeout=30)
            if status == 200:
                record = json.loads(data)
                jobs[job_id] = record.get("state")
                if record.get("state") in ("FAILED", "CANCELLED"):
                    errors[job_id] = json.dumps(record.get("error") or record.get("message"))[:300]
        time.sleep(0.5)
    drain_s = time.perf_counter() - t1
    stop.set()
    probe_thread.join()
    memory_after = proc_memory(args.pid)

    end_states = collections.Counter(state or "UNKNOWN" for state in jobs.values())
    unfinished = sum(1 for s in jobs.values() if s not in TERMINAL)
    if unfinished:
        problems.append(f"{unfinished} job(s) not ended after {args.deadline}s")
    for state in ("FAILED", "CANCELLED"):
        if end_states.get(state):
            problems.append(f"{end_states[state]} job(s) ended {state}")
    probe_ok = [t for t in probe if t is not None]
    if len(probe_ok) != len(probe):
        problems.append(f"{len(probe) - len(probe_ok)} /healthz probe(s) failed while jobs ran")

    report = {
        "backups": args.backups, "health": args.health, "slots": args.slots,
        "burst_seconds": round(burst_s, 2),
        "backup_status": dict(sorted(statuses.items())),
        "backup_latency": percentiles([b[3] for b in backups]),
        "status_examples": examples,
        "retry_after": {"429s": len(too_many), "missing": missing_retry, "values": retry_after},
        "jobs": {"accepted": len(jobs), "end_states": dict(sorted(end_states.items())),
                 "drain_seconds": round(drain_s, 1), "unfinished": unfinished, "errors": dict(list(errors.items())[:5])},
        "healthz_during_burst": percentiles([h[3] for h in health if h[0] == 200]),
        "healthz_while_jobs_run": percentiles(probe_ok),
        "serve_memory_mib": {"rss_before": memory_before.get("VmRSS"),
                             "peak_hwm": memory_after.get("VmHWM"),
                             "rss_after": memory_after.get("VmRSS")},
        "problems": problems,
    }
    print_report(report)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(report, f, indent=2)
            f.write("\n")
    return 1 if problems else 0


def print_report(r):
    def lat(p):
        return "n/a" if not p else "p50 %(p50_ms)s ms, p95 %(p95_ms)s ms, p99 %(p99_ms)s ms, " \
            "max %(max_ms)s ms (n=%(count)s)" % p
    w = sys.stdout.write
    w("\n== bench-load report\n")
    w(f"burst: {r['backups']} POST /api/v1/backup + {r['health']} GET /healthz at once, "
      f"all answered in {r['burst_seconds']} s\n")
    w("backup statuses: %s\n" % ", ".join(f"{k}: {v}" for k, v in r["backup_status"].items()))
    w(f"backup POST latency: {lat(r['backup_latency'])}\n")
    ra = r["retry_after"]
    w(f"429 with Retry-After: {ra['429s'] - ra['missing']}/{ra['429s']} (values {ra['values']})\n")
    j = r["jobs"]
    ended = "the last ended" if j["unfinished"] == 0 else f"{j['unfinished']} still running"
    w(f"accepted jobs: {j['accepted']}, end states {j['end_states']} "
      f"({ended} {j['drain_seconds']} s after the burst)\n")
    for job_id, err in j["errors"].items():
        w(f"  {job_id}: {err}\n")
    w(f"/healthz during the burst: {lat(r['healthz_during_burst'])}\n")
    w(f"/healthz while jobs ran (1 probe / 50 ms): {lat(r['healthz_while_jobs_run'])}\n")
    m = r["serve_memory_mib"]
    w(f"serve memory: RSS {m['rss_before']} MiB before, peak (VmHWM) {m['peak_hwm']} MiB, "
      f"RSS {m['rss_after']} MiB after\n")
    for status, text in r["status_examples"].items():
        w(f"example {status}: {text}\n")
    if r["problems"]:
        w("\n!!! PROBLEMS:\n" + "".join(f"  - {p}\n" for p in r["problems"]))
    else:
        w("no problems: only 202/409/429, every 429 with Retry-After, every job SUCCEEDED\n")
    sys.stdout.flush()


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "setup":
        rest, project, dataset, tables, rows = sys.argv[2:7]
        return setup(rest, project, dataset, int(tables), int(rows))
    if len(sys.argv) > 1 and sys.argv[1] == "teardown":
        return teardown(*sys.argv[2:5])
    ap = argparse.ArgumentParser(description="serve load benchmark (see the module doc)")
    ap.add_argument("command", choices=["run"])
    ap.add_argument("--serve", required=True, help="http://127.0.0.1:PORT of bq-backup serve")
    ap.add_argument("--pid", type=int, required=True, help="PID of serve (for /proc/PID/status)")
    ap.add_argument("--project", required=True)
    ap.add_argument("--dataset", required=True)
    ap.add_argument("--tables", type=int, required=True, help="tables t0..tN-1 in the dataset")
    ap.add_argument("--repo", required=True, help="directory under which the repositories go")
    ap.add_argument("--backups", type=int, default=200)
    ap.add_argument("--health", type=int, default=500)
    ap.add_argument("--slots", type=int, default=50, help="distinct repositories (selections)")
    ap.add_argument("--deadline", type=float, default=300, help="seconds for jobs to end")
    ap.add_argument("--out", help="write the report as JSON here")
    args = ap.parse_args()
    if not (0 < args.backups <= 2000 and 0 <= args.health <= 5000 and args.slots > 0):
        ap.error("--backups 1..2000, --health 0..5000, --slots >= 1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
