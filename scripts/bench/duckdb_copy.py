"""DuckDB `COPY (SELECT * FROM read_parquet(input)) TO out (FORMAT f)` with DuckDB's defaults
(PARQUET: snappy; CSV and JSON: uncompressed, as the file name has no .gz).

usage: duckdb_copy.py INPUT.parquet parquet|csv|json|scan OUT [THREADS]

`scan` reads and hashes every column without writing anything: the share of the COPY figures
that is reading the input. The timed figure includes reading the input, which DuckDB cannot
separate from writing; it is also multi-threaded (THREADS, default: all cores).
"""

import sys
import time

import duckdb

from common import emit, peak_rss_mb

COMPRESSION = {"parquet": "SNAPPY", "csv": "NONE", "json": "NONE"}


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
    if fmt == "scan":
        con.execute(
            "SELECT sum(hash(int64, float64, numeric, bool, string, date, timestamp)) "
            f"FROM read_parquet('{source}')"
        ).fetchall()
        seconds = time.perf_counter() - started
        print(
            f'{{"tool": "duckdb-scan", "rows": {rows}, "seconds": {seconds}, '
            f'"threads": {threads}, "peak_rss_mb": {peak_rss_mb()}}}',
            flush=True,
        )
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
