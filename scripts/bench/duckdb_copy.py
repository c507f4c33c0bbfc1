"""DuckDB `COPY (SELECT * FROM read_parquet(input)) TO out (FORMAT f)` with DuckDB's defaults
(PARQUET: snappy; CSV and JSON: uncompressed, as the file name has no .gz).

usage: duckdb_copy.py INPUT.parquet parquet|csv|json|read OUT [THREADS]

A COPY reads the input and encodes it in one pipeline, so its time includes reading, which
DuckDB cannot report apart (its profiler times the scan at one thread but not reliably at two).
`read` measures that share instead, with the same threads and nothing written: `SELECT min(c)`
of every column, which decodes every value of every column for one comparison per value (on 2M
rows: about as long as `count(c)` of every column, less than hashing every value, half a
`CREATE TABLE AS` in memory, which also stores the rows). The report subtracts it from each COPY
at the same threads: DuckDB's encode alone. THREADS defaults to all cores.
"""

import json
import sys
import time

import duckdb

from common import emit, peak_rss_mb

COMPRESSION = {"parquet": "SNAPPY", "csv": "NONE", "json": "NONE"}
COLUMNS = ["int64", "float64", "numeric", "bool", "string", "date", "timestamp"]


def main():
    if len(sys.argv) not in (4, 5):
        sys.exit(__doc__)
    source, fmt, out = sys.argv[1:4]
    con = duckdb.connect()
    # TIMESTAMP WITH TIME ZONE is printed in the session zone: UTC, like the other tools.
    con.execute("SET TimeZone = 'UTC'")
    if len(sys.argv) == 5:
        con.execute(f"SET threads = {int(sys.argv[4])}")
    threads = con.execute("SELECT current_setting('threads')").fetchone()[0]
    rows = con.execute(f"SELECT count(*) FROM read_parquet('{source}')").fetchone()[0]
    started = time.perf_counter()
    if fmt == "read":
        mins = ", ".join(f"min({c})" for c in COLUMNS)
        con.execute(f"SELECT {mins} FROM read_parquet('{source}')").fetchall()
        seconds = time.perf_counter() - started
        print(json.dumps({"tool": "duckdb-read", "rows": rows, "seconds": seconds,
                          "threads": threads, "peak_rss_mb": peak_rss_mb()}), flush=True)
        return
    con.execute(
        f"COPY (SELECT * FROM read_parquet('{source}')) TO '{out}' (FORMAT {fmt})"
    )
    seconds = time.perf_counter() - started
    emit(
        "duckdb", fmt, COMPRESSION[fmt], rows, seconds, out,
        threads=threads, includes_read=True,
    )


if __name__ == "__main__":
    main()
