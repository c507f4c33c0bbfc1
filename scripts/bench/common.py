"""Shared by the encode benchmark's helpers: one JSON result line per run, peak RSS, timing.

Each helper runs in its own process so that its peak RSS (ru_maxrss) is its own.
"""

import json
import os
import resource
import sys

# Rows per batch read from the input, as the Rust benchmark generates them.
BATCH_ROWS = 65_536


def peak_rss_mb():
    """Peak resident set of this process in MB (ru_maxrss is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / 1e6


def emit(tool, fmt, compression, rows, seconds, out_path, **extra):
    """Prints one result line in the same shape as the Rust benchmark's."""
    line = {
        "tool": tool,
        "format": fmt.upper(),
        "compression": compression,
        "rows": rows,
        "seconds": seconds,
        "rows_per_s": rows / seconds,
        "output_bytes": os.path.getsize(out_path),
        "peak_rss_mb": peak_rss_mb(),
        **extra,
    }
    print(json.dumps(line), flush=True)


def die(message):
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)
