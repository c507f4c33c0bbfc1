"""Demo helper (stdlib only): creates the sample dataset in the BigQuery emulator, and prints row
counts and content checksums of tables through the REST API (tabledata.list).

    python3 sample.py create REST_URL PROJECT DATASET
    python3 sample.py checksum REST_URL PROJECT DATASET TABLE   -> "<rows> <sha256-prefix>"
"""
import hashlib
import json
import sys
import urllib.request


def call(method, url, body=None):
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req) as resp:
        return json.loads(resp.read() or b"null")


def create(rest, project, dataset):
    base = f"{rest}/bigquery/v2/projects/{project}"
    call("POST", f"{base}/datasets", {
        "datasetReference": {"projectId": project, "datasetId": dataset},
        "description": "bq-backup demo dataset", "labels": {"env": "demo"}, "location": "US"})

    def table(name, fields, rows, **extra):
        call("POST", f"{base}/datasets/{dataset}/tables", {
            "tableReference": {"projectId": project, "datasetId": dataset, "tableId": name},
            "schema": {"fields": fields}, **extra})
        if rows:
            call("POST", f"{base}/datasets/{dataset}/tables/{name}/insertAll",
                 {"rows": [{"json": r} for r in rows]})

    # Every type bqemulator can store and load back (see docs/testing.md: GEOGRAPHY and BIGNUMERIC are
    # covered by the format unit tests instead).
    table("all_types", [
        {"name": "id", "type": "INT64", "mode": "REQUIRED", "description": "row id"},
        {"name": "f", "type": "FLOAT64"}, {"name": "n", "type": "NUMERIC"}, {"name": "b", "type": "BOOL"},
        {"name": "s", "type": "STRING"}, {"name": "by", "type": "BYTES"}, {"name": "d", "type": "DATE"},
        {"name": "t", "type": "TIME"}, {"name": "dt", "type": "DATETIME"}, {"name": "ts", "type": "TIMESTAMP"},
        {"name": "j", "type": "JSON"},
        {"name": "rec", "type": "RECORD", "fields": [
            {"name": "name", "type": "STRING"},
            {"name": "sub", "type": "RECORD", "fields": [{"name": "x", "type": "INT64"}]}]},
        {"name": "tags", "type": "STRING", "mode": "REPEATED"},
    ], [
        {"id": 1, "f": 1.5, "n": "12345.678901234", "b": True, "s": "hello", "by": "AAEC/w==", "d": "2026-11-20",
         "t": "23:59:58.123456", "dt": "2026-11-20T12:34:56.789012", "ts": "2026-11-20T12:34:56.789012Z",
         "j": "{\"a\":1}", "rec": {"name": "r1", "sub": {"x": 7}}, "tags": ["a", "b"]},
        {"id": 2, "f": -0.25, "n": "-1.5", "b": False, "s": "żółw 🐢", "by": "", "d": "0001-01-01",
         "t": "00:00:00", "dt": "9999-12-31T23:59:59.999999", "ts": "1970-01-01T00:00:00Z", "j": "[1,2]",
         "rec": {"name": None, "sub": None}, "tags": []},
        {"id": 3},
    ], description="every type", labels={"kind": "demo"})
    table("events", [
        {"name": "id", "type": "INT64", "mode": "REQUIRED"}, {"name": "ts", "type": "TIMESTAMP", "mode": "REQUIRED"},
        {"name": "country", "type": "STRING"}, {"name": "amount", "type": "NUMERIC"},
    ], [{"id": i, "ts": f"2026-11-{10 + i % 10:02d}T0{i % 10}:00:00Z", "country": ["PL", "DE", "US"][i % 3],
         "amount": f"{i}.25"} for i in range(1, 201)],
        description="partitioned by day, clustered by country",
        timePartitioning={"type": "DAY", "field": "ts"}, clustering={"fields": ["country"]})
    table("customers", [{"name": "id", "type": "INT64"}, {"name": "name", "type": "STRING"}],
          [{"id": i, "name": f"customer {i}"} for i in range(1, 51)])
    call("POST", f"{base}/datasets/{dataset}/tables", {
        "tableReference": {"projectId": project, "datasetId": dataset, "tableId": "big_spenders"},
        "view": {"query": f"SELECT id, amount FROM `{project}.{dataset}.events` WHERE amount > 100",
                 "useLegacySql": False}})


def checksum(rest, project, dataset, table):
    url = f"{rest}/bigquery/v2/projects/{project}/datasets/{dataset}/tables/{table}/data?formatOptions.useInt64Timestamp=true"
    rows, token = [], None
    while True:
        page = call("GET", url + (f"&pageToken={token}" if token else ""))
        rows.extend(json.dumps(r, sort_keys=True) for r in page.get("rows", []))
        token = page.get("pageToken")
        if not token:
            break
    digest = hashlib.sha256("\n".join(sorted(rows)).encode()).hexdigest()[:16]
    print(f"{len(rows)} {digest}")


if __name__ == "__main__":
    {"create": create, "checksum": checksum}[sys.argv[1]](*sys.argv[2:])
