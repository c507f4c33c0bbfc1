#!/usr/bin/env python3
"""Independent reader for bq-backup data files (test harness only).

Reads backup files with libraries that share no code with bq-backup -- pyarrow.parquet for
PARQUET, fastavro for AVRO, the standard library (gzip, json, a small RFC 4180 tokenizer) for
CSV and newline-delimited JSON -- and prints every row as canonical JSON, sorted by `id`, so that
`tests/it/independent.rs` can compare it with the rows the fixture inserted.

Each cell is normalised by its BigQuery type (from the table resource's `schema.fields`):

    INT64      decimal string                      "-42"
    FLOAT64    Python repr, exponent without "+"   "1.5", "-0.0", "1e300", "NaN", "Infinity"
    NUMERIC    plain decimal, no exponent, trailing zeros stripped   "1.5", "0"
    BOOL       true / false
    STRING     string
    JSON       string (the JSON text as stored)
    GEOGRAPHY  string (WKT); bytes (WKB, what bqemulator returns) as lower-case hex
    BYTES      base64 (standard alphabet, padded)
    DATE       "YYYY-MM-DD"
    TIME       "HH:MM:SS.ffffff"
    DATETIME   "YYYY-MM-DDTHH:MM:SS.ffffff"
    TIMESTAMP  "YYYY-MM-DDTHH:MM:SS.ffffffZ" (UTC)
    RECORD     object, REPEATED list, NULL null

Usage:
    independent_read.py --format AVRO|PARQUET|CSV|JSON --compression NONE|GZIP|DEFLATE|...
        --schema-json FILE --csv-header true|false [--csv-delimiter ,] FILES...

Exits non-zero with a message on stderr when a library is missing or a file does not read:
the calling test must fail, never skip.
"""

import argparse
import base64
import datetime as dt
import decimal
import gzip
import json
import math
import sys

try:
    import fastavro
    import pyarrow.parquet as pq
except ImportError as e:  # pragma: no cover - the point is to fail loudly
    sys.exit(f"independent_read.py needs pyarrow and fastavro (the test venv): {e}")


UTC = dt.timezone.utc

# Legacy SQL names the REST API may return next to the standard SQL ones.
TYPE_ALIASES = {
    "INTEGER": "INT64",
    "FLOAT": "FLOAT64",
    "BOOLEAN": "BOOL",
    "DECIMAL": "NUMERIC",
    "BIGDECIMAL": "BIGNUMERIC",
    "STRUCT": "RECORD",
}


def bq_type(field):
    t = field["type"].upper()
    return TYPE_ALIASES.get(t, t)


# ---------------------------------------------------------------------------------------------
# Canonical forms


def canon_float(v):
    if isinstance(v, str):
        v = {"NaN": math.nan, "Infinity": math.inf, "-Infinity": -math.inf}.get(v, v)
        v = float(v)
    v = float(v)
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "Infinity" if v > 0 else "-Infinity"
    text = repr(v)
    if "e" in text:
        mantissa, exponent = text.split("e")
        exponent = int(exponent)
        text = f"{mantissa}e{exponent}"
    return text


def canon_decimal(v):
    d = v if isinstance(v, decimal.Decimal) else decimal.Decimal(str(v))
    if d.is_zero():
        return "0"
    text = format(d, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def canon_bool(v):
    if isinstance(v, bool):
        return v
    if isinstance(v, str) and v.lower() in ("true", "false"):
        return v.lower() == "true"
    raise ValueError(f"not a BOOL: {v!r}")


def canon_bytes(v):
    if isinstance(v, (bytes, bytearray)):
        raw = bytes(v)
    else:
        raw = base64.b64decode(v, validate=True)
    return base64.b64encode(raw).decode("ascii")


def canon_geography(v):
    if isinstance(v, (bytes, bytearray)):
        return bytes(v).hex()
    # Text files hold WKT, or -- when the source sent WKB, as bqemulator does -- the bytes in
    # base64. WKT always has a "(" or the word EMPTY; base64 never has either.
    if "(" in v or "EMPTY" in v.upper():
        return v
    return base64.b64decode(v, validate=True).hex()


def canon_date(v):
    if isinstance(v, dt.datetime):
        v = v.date()
    if isinstance(v, dt.date):
        return v.isoformat()
    return dt.date.fromisoformat(v).isoformat()


def parse_fraction(text):
    """`HH:MM:SS[.f{1,6}]` -> time (fromisoformat in 3.11 wants 3 or 6 digits)."""
    main, _, frac = text.partition(".")
    h, m, s = (int(x) for x in main.split(":"))
    micros = int((frac + "000000")[:6]) if frac else 0
    return dt.time(h, m, s, micros)


def canon_time(v):
    if not isinstance(v, dt.time):
        v = parse_fraction(v)
    return v.isoformat(timespec="microseconds")


def parse_naive_datetime(text):
    date_part, _, time_part = text.replace(" ", "T", 1).partition("T")
    t = parse_fraction(time_part) if time_part else dt.time()
    return dt.datetime.combine(dt.date.fromisoformat(date_part), t)


def canon_datetime(v):
    if isinstance(v, dt.datetime):
        if v.tzinfo is not None:
            raise ValueError(f"DATETIME with a time zone: {v!r}")
    else:
        v = parse_naive_datetime(v)
    return v.isoformat(timespec="microseconds")


def canon_timestamp(v):
    if isinstance(v, dt.datetime):
        if v.tzinfo is None:
            raise ValueError(f"TIMESTAMP without a time zone: {v!r}")
        v = v.astimezone(UTC)
    else:
        text = v.strip()
        offset = dt.timedelta(0)
        if text.endswith(" UTC"):
            text = text[:-4]
        elif text.endswith("Z"):
            text = text[:-1]
        elif len(text) > 6 and text[-6] in "+-" and text[-3] == ":":
            sign = 1 if text[-6] == "+" else -1
            offset = sign * dt.timedelta(hours=int(text[-5:-3]), minutes=int(text[-2:]))
            text = text[:-6]
        v = (parse_naive_datetime(text) - offset).replace(tzinfo=UTC)
    return v.replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


SCALARS = {
    "INT64": lambda v: str(int(v)),
    "FLOAT64": canon_float,
    "NUMERIC": canon_decimal,
    "BIGNUMERIC": canon_decimal,
    "BOOL": canon_bool,
    "STRING": str,
    # Kept as the file holds it: a JSON column must come back as the text it was, not an object.
    "JSON": lambda v: v,
    "GEOGRAPHY": canon_geography,
    "BYTES": canon_bytes,
    "DATE": canon_date,
    "TIME": canon_time,
    "DATETIME": canon_datetime,
    "TIMESTAMP": canon_timestamp,
}


def canon_value(field, v, repeated_ok=True):
    if repeated_ok and field.get("mode", "NULLABLE").upper() == "REPEATED":
        if v is None:
            return None
        return [canon_value(field, item, repeated_ok=False) for item in v]
    if v is None:
        return None
    t = bq_type(field)
    if t == "RECORD":
        return canon_record(field["fields"], v)
    try:
        return SCALARS[t](v)
    except KeyError:
        raise SystemExit(f"independent_read.py: unknown BigQuery type {field['type']}")


def canon_record(fields, record):
    if not isinstance(record, dict):
        raise ValueError(f"expected a record, got {record!r}")
    unknown = set(record) - {f["name"] for f in fields}
    if unknown:
        raise ValueError(f"columns not in the schema: {sorted(unknown)}")
    return {f["name"]: canon_value(f, record.get(f["name"])) for f in fields}


# ---------------------------------------------------------------------------------------------
# Readers: each yields rows as {column: value} in the library's own Python types.


def read_avro(path):
    with open(path, "rb") as f:
        yield from fastavro.reader(f)


def read_parquet(path):
    yield from pq.read_table(path).to_pylist()


def open_text(path, compression):
    with open(path, "rb") as f:
        data = f.read()
    if compression == "GZIP":
        data = gzip.decompress(data)
    elif compression != "NONE":
        raise SystemExit(f"independent_read.py: text files cannot be {compression}")
    return data.decode("utf-8")


def read_json(path, compression):
    for n, line in enumerate(open_text(path, compression).splitlines(), 1):
        if line.strip():
            row = json.loads(line)
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{n}: not a JSON object")
            yield row


def csv_records(text, delimiter):
    """RFC 4180 records as lists of (value, quoted). Python's csv module (3.11) cannot tell an
    empty quoted field (the empty string) from an empty unquoted one (NULL), so tokenize here."""
    i, n = 0, len(text)
    record, field, quoted = [], [], False
    while i < n:
        c = text[i]
        if c == '"' and not field and not quoted:
            quoted = True
            i += 1
            while True:
                if i >= n:
                    raise ValueError("unterminated quoted CSV field")
                if text[i] == '"':
                    if i + 1 < n and text[i + 1] == '"':
                        field.append('"')
                        i += 2
                        continue
                    i += 1
                    break
                field.append(text[i])
                i += 1
            continue
        if c == delimiter:
            record.append(("".join(field), quoted))
            field, quoted = [], False
            i += 1
        elif c in "\r\n":
            record.append(("".join(field), quoted))
            yield record
            record, field, quoted = [], [], False
            i += 2 if c == "\r" and i + 1 < n and text[i + 1] == "\n" else 1
        else:
            if quoted:
                raise ValueError("text after a closing quote in a CSV field")
            field.append(c)
            i += 1
    if field or quoted or record:
        record.append(("".join(field), quoted))
        yield record


def read_csv(path, compression, fields, header, delimiter):
    names = [f["name"] for f in fields]
    records = csv_records(open_text(path, compression), delimiter)
    if header:
        got = [v for v, _ in next(records)]
        if got != names:
            raise ValueError(f"{path}: header {got} is not the schema's columns {names}")
    for record in records:
        if len(record) != len(names):
            raise ValueError(f"{path}: a record has {len(record)} fields, the schema {len(names)}")
        # An empty unquoted field is NULL; "" is the empty string (or empty bytes).
        yield {name: (None if v == "" and not q else v) for name, (v, q) in zip(names, record)}


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--format", required=True, choices=["AVRO", "PARQUET", "CSV", "JSON"])
    p.add_argument("--compression", default="NONE")
    p.add_argument("--schema-json", required=True, help="file holding schema.fields (a list)")
    p.add_argument("--csv-header", default="true", choices=["true", "false"])
    p.add_argument("--csv-delimiter", default=",")
    p.add_argument("files", nargs="+")
    args = p.parse_args()

    with open(args.schema_json, encoding="utf-8") as f:
        fields = json.load(f)
    if isinstance(fields, dict):
        fields = fields.get("fields") or fields["schema"]["fields"]
    compression = args.compression.upper()

    rows = []
    for path in args.files:
        if args.format == "AVRO":
            source = read_avro(path)
        elif args.format == "PARQUET":
            source = read_parquet(path)
        elif args.format == "JSON":
            source = read_json(path, compression)
        else:
            source = read_csv(
                path, compression, fields, args.csv_header == "true", args.csv_delimiter
            )
        for n, row in enumerate(source):
            try:
                rows.append(canon_record(fields, row))
            except (ValueError, TypeError, decimal.InvalidOperation) as e:
                raise SystemExit(f"independent_read.py: {path}, row {n}: {e}")

    rows.sort(key=lambda r: int(r["id"]))
    json.dump(rows, sys.stdout, ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
