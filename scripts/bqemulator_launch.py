"""Starts bqemulator with a larger thread pool for its blocking handlers, and with its extract
and snapshot jobs bridged to the rest of the test services (test harness only).

bqemulator serves the Storage Read API's ReadRows with a synchronous generator, which grpc.aio
runs on the event loop's default executor: min(32, CPUs + 4) threads — six on a 2-core machine.
A thread stays blocked for good on a stream its client cancelled half way (bqemulator 1.4.0 /
grpcio: the pending write never resolves), so after six cancelled backups every later read hangs.
Real BigQuery has no such limit; the tests that cancel running backups would otherwise starve the
rest of the suite. Same arguments as `bqemulator`.

Extract jobs (the EXTRACT backup method): bqemulator writes a job's gs:// destination under its
local root (BQEMU_GCS_LOCAL_ROOT) with DuckDB, which neither creates the object's "directories"
(GCS has none, so real extract jobs need none) nor makes the file visible to fake-gcs-server,
where the service lists and reads gs://. Wrapped here: the parent directory is created first,
and each file written is then uploaded to fake-gcs (BQEMU_MIRROR_GCS_URL, its JSON API) before
the job answers DONE, as if both were one Cloud Storage. fake-gcs computes the objects' CRC32C
and MD5 from the bytes itself. The file stays under the local root too, where the emulator's
load jobs read gs:// (a restore's load job finds it there).

Snapshot copy jobs: BigQuery snapshots a table as of a past instant from the time-travel
decorator `table@millis`; bqemulator has no decorators (404). The decorator is dropped here, so
the emulator snapshots the table as it is now: the tests change no data between a backup's
snapshot time and its snapshots, which is all this limitation costs.
"""

import asyncio
import concurrent.futures
import sys

_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=512, thread_name_prefix="bqemu-blocking")
_run_in_executor = asyncio.base_events.BaseEventLoop.run_in_executor


def _run_in_big_pool(self, executor, func, *args):
    return _run_in_executor(self, executor or _POOL, func, *args)


asyncio.base_events.BaseEventLoop.run_in_executor = _run_in_big_pool

import os  # noqa: E402
import urllib.parse  # noqa: E402
import urllib.request  # noqa: E402

import bqemulator.api.routes.jobs as _routes  # noqa: E402
from bqemulator.jobs import executor as _executor  # noqa: E402

_MIRROR = os.environ.get("BQEMU_MIRROR_GCS_URL", "").rstrip("/")
_extract = _routes.execute_extract_job
_copy = _routes.execute_copy_job


def _gs_uris(config):
    return [u for u in config.get("extract", {}).get("destinationUris", []) if u.startswith("gs://")]


async def _extract_and_mirror(project_id, job_id, config, ctx):
    for uri in _gs_uris(config):
        os.makedirs(os.path.dirname(_executor._resolve_uri(uri, ctx)), exist_ok=True)
    meta = await _extract(project_id, job_id, config, ctx)
    if _MIRROR:
        for uri in _gs_uris(config):
            path = _executor._resolve_uri(uri, ctx)
            if not os.path.isfile(path):
                continue
            bucket, _, name = uri[len("gs://"):].partition("/")
            url = "%s/upload/storage/v1/b/%s/o?uploadType=media&name=%s" % (
                _MIRROR, urllib.parse.quote(bucket, safe=""), urllib.parse.quote(name, safe=""))
            with open(path, "rb") as f:
                body = f.read()
            request = urllib.request.Request(url, data=body, method="POST",
                                             headers={"Content-Type": "application/octet-stream"})
            with urllib.request.urlopen(request, timeout=60) as answer:
                answer.read()
    return meta


async def _copy_without_decorator(project_id, job_id, config, ctx):
    copy = config.get("copy", {})
    source = copy.get("sourceTable") or {}
    if copy.get("operationType") == "SNAPSHOT" and "@" in source.get("tableId", ""):
        source["tableId"] = source["tableId"].split("@", 1)[0]
    return await _copy(project_id, job_id, config, ctx)


_routes.execute_extract_job = _extract_and_mirror
_routes.execute_copy_job = _copy_without_decorator

from bqemulator.cli import main  # noqa: E402 (after the patch, on purpose)

if __name__ == "__main__":
    sys.argv[0] = "bqemulator"
    sys.exit(main())
