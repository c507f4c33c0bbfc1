"""Starts bqemulator with a larger thread pool for its blocking handlers (test harness only).

bqemulator serves the Storage Read API's ReadRows with a synchronous generator, which grpc.aio
runs on the event loop's default executor: min(32, CPUs + 4) threads — six on a 2-core machine.
A thread stays blocked for good on a stream its client cancelled half way (bqemulator 1.4.0 /
grpcio: the pending write never resolves), so after six cancelled backups every later read hangs.
Real BigQuery has no such limit; the tests that cancel running backups would otherwise starve the
rest of the suite. Same arguments as `bqemulator`.
"""

import asyncio
import concurrent.futures
import sys

_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=512, thread_name_prefix="bqemu-blocking")
_run_in_executor = asyncio.base_events.BaseEventLoop.run_in_executor


def _run_in_big_pool(self, executor, func, *args):
    return _run_in_executor(self, executor or _POOL, func, *args)


asyncio.base_events.BaseEventLoop.run_in_executor = _run_in_big_pool

from bqemulator.cli import main  # noqa: E402 (after the patch, on purpose)

if __name__ == "__main__":
    sys.argv[0] = "bqemulator"
    sys.exit(main())
