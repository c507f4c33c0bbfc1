"""Turns the encode benchmark's JSON result lines into the Markdown tables in docs/benchmarks.md.

usage: report.py INPUT.json RESULTS.jsonl "LOAD AT START" "LOAD AT END"

Compared at equal threads, encode against encode: DuckDB's COPY reads the input as it encodes,
so its encode time is its COPY time less the time it takes to read the same input alone at the
same threads (duckdb_copy.py `read`). bq-backup ×N = the other tool's encode seconds / bq-backup's
at the same threads, as in issue 13's table: at or above 1, bq-backup is at least as fast.
"""

import json
import sys

ORDER = ["AVRO", "CSV", "PARQUET", "JSON"]
TOOLS = ["bq-backup", "duckdb", "pyarrow", "fastavro"]


def encode_seconds(run, reads):
    """Seconds spent encoding: DuckDB's COPY less its read at the same threads, when measured."""
    if run["tool"] != "duckdb":
        return run["seconds"]
    read = reads.get(run["threads"])
    if read is None or read["seconds"] >= run["seconds"]:
        return None
    return run["seconds"] - read["seconds"]


def times(x):
    return "n/a" if x is None else f"{x:.2f}×"


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    source_path, results_path, load_start, load_end = sys.argv[1:]
    with open(source_path) as f:
        source = json.load(f)
    with open(results_path) as f:
        results = [json.loads(line) for line in f if line.strip()]
    runs = [r for r in results if r["tool"] in TOOLS]
    for r in runs:
        r.setdefault("threads", 1)
    reads = {r["threads"]: r for r in results if r["tool"] == "duckdb-read"}
    input_mb = source["input_bytes"] / 1e6
    ours = {(r["format"], r["threads"]): r for r in runs if r["tool"] == "bq-backup"}

    def speedup(other, fmt=None, threads=None):
        """The other run's encode seconds / bq-backup's at the same threads (None: not measured)."""
        if other is None:
            return None
        mine = ours.get((fmt or other["format"], threads or other["threads"]))
        theirs = encode_seconds(other, reads)
        if mine is None or theirs is None:
            return None
        return theirs / mine["seconds"]

    def find(tool, fmt, threads, variant=None):
        return next((r for r in runs if r["tool"] == tool and r["format"] == fmt
                     and r["threads"] == threads and r.get("variant") == variant), None)

    print(f"{source['rows']:,} rows; {input_mb:,.0f} MB as Arrow in memory "
          f"(int64, float64, decimal(38,9), bool, utf8 ~20 chars, date32, timestamp[us, UTC]; "
          f"5% NULLs in float64, numeric, string).\n")
    print("| format | tool | threads | compression | seconds | encode s | rows/s | MB/s (in) "
          "| output MB | peak RSS MB | bq-backup × |")
    print("|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    runs.sort(key=lambda r: (ORDER.index(r["format"]), TOOLS.index(r["tool"]), r["threads"],
                             r.get("variant", "")))
    for r in runs:
        tool = r["tool"]
        if r.get("variant") == "ints":
            tool += " (date/timestamp as ints)"
        encode = encode_seconds(r, reads)
        rate = f"{r['rows'] / encode / 1e6:.2f} M" if encode else "n/a"
        mbs = f"{input_mb / encode:.0f}" if encode else "n/a"
        ratio = "—" if r["tool"] == "bq-backup" else times(speedup(r))
        print(f"| {r['format']} | {tool} | {r['threads']} | {r['compression']} "
              f"| {r['seconds']:.2f} | {'n/a' if encode is None else f'{encode:.2f}'} | {rate} "
              f"| {mbs} | {r['output_bytes'] / 1e6:,.0f} | {r['peak_rss_mb']:.0f} | {ratio} |")

    print("\nseconds: the run as timed (DuckDB's COPY includes reading the input Parquet); "
          "encode s: DuckDB's COPY less its read alone at the same threads, the others' seconds. "
          "rows/s and MB/s are per encode second. bq-backup × = that tool's encode seconds / "
          "bq-backup's at the same threads (≥ 1: bq-backup at least as fast).")
    for threads, r in sorted(reads.items()):
        print(f"DuckDB reading the input alone (min of every column), {threads} thread"
              f"{'s' if threads > 1 else ''}: {r['seconds']:.2f} s.")

    print("\n### Issue 13 ratios (bq-backup × = other seconds / bq-backup seconds)\n")
    print("| measure | bq-backup × | target |")
    print("|---|---:|---|")
    parquet_duck1 = find("duckdb", "PARQUET", 1)
    rows = [
        ("PARQUET, 1 thread, vs DuckDB's encode alone (COPY less read)",
         speedup(parquet_duck1), "≥ 1.0×"),
        ("PARQUET, 1 thread, vs DuckDB's COPY including its read",
         None if parquet_duck1 is None or ours.get(("PARQUET", 1)) is None
         else parquet_duck1["seconds"] / ours[("PARQUET", 1)]["seconds"], "(reference)"),
        ("PARQUET, 1 thread, vs pyarrow", speedup(find("pyarrow", "PARQUET", 1)), "≥ 1.5×"),
        ("PARQUET, 2 threads, vs DuckDB's encode alone", speedup(find("duckdb", "PARQUET", 2)),
         "≥ 1.0×"),
        ("JSON, 1 thread, vs DuckDB's encode alone", speedup(find("duckdb", "JSON", 1)), "≥ 1.0×"),
        ("JSON, 2 threads, vs DuckDB's encode alone", speedup(find("duckdb", "JSON", 2)),
         "≥ 1.0×"),
        ("CSV, 1 thread, vs DuckDB's encode alone", speedup(find("duckdb", "CSV", 1)), "—"),
        ("CSV, 2 threads, vs DuckDB's encode alone", speedup(find("duckdb", "CSV", 2)), "—"),
        ("CSV, 1 thread, vs pyarrow", speedup(find("pyarrow", "CSV", 1)), "—"),
        ("AVRO, 1 thread, vs fastavro (date/timestamp as ints, its faster way)",
         speedup(find("fastavro", "AVRO", 1, "ints")), "—"),
    ]
    for fmt in ORDER:
        one, two = ours.get((fmt, 1)), ours.get((fmt, 2))
        if one and two:
            rows.append((f"bq-backup {fmt}, 1 → 2 threads (seconds at 1 / at 2)",
                         one["seconds"] / two["seconds"], "—"))
    for label, value, target in rows:
        print(f"| {label} | {times(value)} | {target} |")

    print()
    generated = ", ".join(f"{r['format']} ({r['threads']} thr) {r['generate_seconds']:.1f} s"
                          for r in runs if r["tool"] == "bq-backup")
    print(f"bq-backup generating the data, not counted: {generated}. With 2 threads each thread "
          "encodes half the batches into a file of its own (as a backup does per read stream); "
          "its seconds are the slower half's.")
    for r in runs:
        if r["tool"] == "fastavro":
            print(f"fastavro ({r['variant']}): {r['to_pylist_seconds']:.1f} s in pyarrow's "
                  f"to_pylist, {r['write_seconds']:.1f} s in fastavro; reading "
                  f"{r['read_seconds']:.1f} s, not counted.")
        elif r["tool"] == "pyarrow":
            print(f"pyarrow {r['format']}: reading the input, not counted: "
                  f"{r['read_seconds']:.1f} s.")
    print(f"Load (uptime) at start: {load_start.strip()}; at end: {load_end.strip()}.")


if __name__ == "__main__":
    main()
