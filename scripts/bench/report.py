"""Turns the encode benchmark's JSON result lines into the Markdown table in docs/benchmarks.md.

usage: report.py INPUT.json RESULTS.jsonl "LOAD AT START" "LOAD AT END"

ratio = bq-backup's seconds / the other tool's seconds for the same format: below 1 means
bq-backup is faster.
"""

import json
import sys

ORDER = ["AVRO", "CSV", "PARQUET", "JSON"]
TOOLS = ["bq-backup", "duckdb", "pyarrow", "fastavro"]


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    source_path, results_path, load_start, load_end = sys.argv[1:]
    with open(source_path) as f:
        source = json.load(f)
    with open(results_path) as f:
        results = [json.loads(line) for line in f if line.strip()]
    runs = [r for r in results if r["tool"] in TOOLS]
    scans = [r for r in results if r["tool"] == "duckdb-scan"]
    input_mb = source["input_bytes"] / 1e6
    ours = {r["format"]: r for r in runs if r["tool"] == "bq-backup"}

    print(f"{source['rows']:,} rows; {input_mb:,.0f} MB as Arrow in memory "
          f"(int64, float64, decimal(38,9), bool, utf8 ~20 chars, date32, timestamp[us, UTC]; "
          f"5% NULLs in float64, numeric, string).\n")
    print("| format | tool | compression | seconds | rows/s | MB/s (in) | output MB "
          "| peak RSS MB | ratio |")
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    runs.sort(key=lambda r: (ORDER.index(r["format"]), TOOLS.index(r["tool"]), -r.get("threads", 1),
                             r.get("variant", "")))
    for r in runs:
        tool = r["tool"]
        if tool == "duckdb":
            tool += f" ({r['threads']} thread{'s' if r['threads'] > 1 else ''})"
        elif r.get("variant") == "ints":
            tool += " (date/timestamp as ints)"
        mine = ours.get(r["format"])
        ratio = "—" if r["tool"] == "bq-backup" or not mine else \
            f"{mine['seconds'] / r['seconds']:.2f}"
        print(f"| {r['format']} | {tool} | {r['compression']} | {r['seconds']:.1f} "
              f"| {r['rows'] / r['seconds'] / 1e6:.2f} M | {input_mb / r['seconds']:.0f} "
              f"| {r['output_bytes'] / 1e6:,.0f} | {r['peak_rss_mb']:.0f} | {ratio} |")

    print("\nratio = bq-backup seconds / that tool's seconds (below 1: bq-backup faster).")
    print("bq-backup, pyarrow and fastavro times cover encoding and writing the file only; "
          "DuckDB's COPY also reads the input Parquet, which it cannot separate.")
    for r in scans:
        print(f"DuckDB reading and hashing the input alone ({r['threads']} threads): "
              f"{r['seconds']:.1f} s.")
    generated = ", ".join(f"{r['format']} {r['generate_seconds']:.1f} s"
                          for r in runs if r["tool"] == "bq-backup")
    print(f"bq-backup generating the data, not counted: {generated}.")
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
