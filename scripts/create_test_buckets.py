#!/usr/bin/env python3
"""Idempotently creates the test bucket/container in the local test services.

TEST HARNESS ONLY. Creates `--name` in each service given:
  --gcs URL      fake-gcs-server: JSON API POST /storage/v1/b?project=test-project
  --s3 URL       moto: path-style PUT /NAME (any credentials; Content-Type sent)
  --azurite URL  azurite: PUT /devstoreaccount1/NAME?restype=container, SharedKey
                 signed with the well-known development account key
"Already exists" answers (409, or moto's 200 for a bucket it already owns) count
as success. Exits non-zero if any creation fails.

Usage: python3 create_test_buckets.py --gcs http://127.0.0.1:19070 \
           --s3 http://127.0.0.1:19080 --azurite http://127.0.0.1:19090 --name bqb-test
"""
import argparse
import base64
import email.utils
import hashlib
import hmac
import json
import sys
import urllib.error
import urllib.parse
import urllib.request

AZURITE_ACCOUNT = "devstoreaccount1"
AZURITE_KEY = ("Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/"
               "K1SZFPTOtr/KBHBeksoGMGw==")
AZURE_VERSION = "2021-08-06"


def send(method, url, body=b"", headers=None):
    """Returns (status, body text) without raising on HTTP error statuses."""
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode("utf-8", "replace")


def create_gcs(base, name):
    body = json.dumps({"name": name}).encode()
    return send("POST", base.rstrip("/") + "/storage/v1/b?project=test-project", body,
                {"Content-Type": "application/json"})


def create_s3(base, name):
    return send("PUT", "%s/%s" % (base.rstrip("/"), urllib.parse.quote(name)), b"",
                {"Content-Type": "application/octet-stream",
                 "Authorization": "AWS4-HMAC-SHA256 Credential=test/20240101/us-east-1/s3/"
                                  "aws4_request, SignedHeaders=host, Signature=0"})


def create_azurite(base, name):
    base = base.rstrip("/")
    if not base.endswith("/" + AZURITE_ACCOUNT):
        base += "/" + AZURITE_ACCOUNT
    ms = {"x-ms-date": email.utils.formatdate(usegmt=True), "x-ms-version": AZURE_VERSION}
    # SharedKey string-to-sign (version >= 2015-02-21): zero Content-Length is "";
    # Content-Type is set explicitly because urllib would add its own, unsigned.
    ctype = "application/octet-stream"
    string_to_sign = "\n".join(
        ["PUT", "", "", "", "", ctype] + [""] * 6
        + ["%s:%s" % (k, ms[k]) for k in sorted(ms)]
        + ["/%s%s/%s\nrestype:container"
           % (AZURITE_ACCOUNT, urllib.parse.urlsplit(base).path, name)])
    sig = base64.b64encode(hmac.new(base64.b64decode(AZURITE_KEY),
                                    string_to_sign.encode(), hashlib.sha256).digest()).decode()
    headers = dict(ms, Authorization="SharedKey %s:%s" % (AZURITE_ACCOUNT, sig))
    headers["Content-Type"] = ctype
    return send("PUT", "%s/%s?restype=container" % (base, urllib.parse.quote(name)), b"",
                headers)


def main():
    ap = argparse.ArgumentParser(description="Create the test bucket in local test services.")
    ap.add_argument("--gcs", help="fake-gcs-server base URL")
    ap.add_argument("--s3", help="moto base URL")
    ap.add_argument("--azurite", help="azurite blob base URL")
    ap.add_argument("--name", required=True, help="bucket / container name")
    args = ap.parse_args()
    todo = [(label, fn, url) for label, fn, url in (("gcs", create_gcs, args.gcs),
                                                   ("s3", create_s3, args.s3),
                                                   ("azurite", create_azurite, args.azurite))
            if url]
    if not todo:
        ap.error("give at least one of --gcs, --s3, --azurite")
    failed = False
    for label, fn, url in todo:
        try:
            status, text = fn(url, args.name)
        except OSError as e:
            status, text = 0, str(e)
        if 200 <= status < 300:
            outcome = "created (or already owned)"
        elif status == 409:
            outcome = "already exists"
        else:
            outcome, failed = "FAILED: %s" % text.strip()[:300], True
        print("%s %s: %s %s" % (label, args.name, status, outcome))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
