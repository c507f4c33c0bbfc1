#!/usr/bin/env python3
"""GCS XML-API write shim in front of fake-gcs-server (TEST HARNESS ONLY).

Why: the product writes gs:// through the `object_store` crate, whose GCS client
uses the GCS *XML* API for writes. fake-gcs-server 1.54 serves XML GET/HEAD/list
/DELETE but answers 400 "invalid uploadType" to XML PUT and has no XML
multipart upload. This proxy translates exactly the XML write calls object_store
0.14 makes into fake-gcs JSON-API calls, so gs:// runs the same storage test
suite as every other store. Product code runs object_store unchanged against
real GCS; nothing here is used in production.

Translated (everything else is forwarded unchanged, bodies streamed):
  PUT /b/o                       -> POST /upload/storage/v1/b/b/o?uploadType=multipart
                                    (x-goog-if-generation-match -> ifGenerationMatch;
                                    Content-Type, Cache-Control, Content-Disposition,
                                    Content-Encoding, Content-Language,
                                    x-goog-storage-class, x-goog-meta-* -> metadata)
  PUT /b/o + x-goog-copy-source  -> read source (JSON metadata + media), then the
                                    same conditional upload to the destination
  POST /b/o?uploads              -> new upload id; InitiateMultipartUploadResult XML
  PUT /b/o?partNumber=N&uploadId -> part stored in a temp dir; ETag = "md5hex"
  POST /b/o?uploadId=X           -> parts checked against CompleteMultipartUpload
                                    XML, concatenated and uploaded; result XML
  DELETE /b/o?uploadId=X         -> parts deleted, 204
Responses carry ETag (same form as fake-gcs GET: quoted etag) and
x-goog-generation; upstream JSON errors become XML <Error> with the same status.

A bucket that does not exist is answered as GCS answers it: 404 with the XML code
NoSuchBucket, for every call on it (fake-gcs answers a list on it with 500, and
an object call with a bare 404 that reads like a missing object). Checked only
when a call failed, and before a multipart upload starts (which fake-gcs never
sees until its completion).

fake-gcs 1.54 quirks handled: uploadType=media, copyTo, rewriteTo and compose
all ignore ifGenerationMatch (they overwrite), while uploadType=multipart
honours it (412) - so all writes use multipart/related uploads, and copies are
done as read + conditional upload, which keeps copy-if-not-exists atomic.
Request bodies must carry Content-Length (object_store always sends it).

Usage: python3 gcs_xml_shim.py --listen-port P --upstream http://127.0.0.1:U
"""
import argparse
import hashlib
import http.client
import http.server
import json
import os
import shutil
import signal
import sys
import tempfile
import urllib.parse
import uuid
import xml.etree.ElementTree as ET
from xml.sax.saxutils import escape

CHUNK = 1 << 20
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding",
              "te", "trailer", "upgrade", "host", "content-length"}
ATTR_HEADERS = {"cache-control": "cacheControl", "content-disposition": "contentDisposition",
                "content-encoding": "contentEncoding", "content-language": "contentLanguage",
                "x-goog-storage-class": "storageClass"}
COPY_FIELDS = ("contentType", "metadata", *ATTR_HEADERS.values())


class UpstreamError(Exception):
    def __init__(self, status, body):
        super().__init__(status)
        self.status, self.body = status, body


def q(s):
    return urllib.parse.quote(s, safe="")


def metadata_from_headers(headers):
    """JSON object resource fields for the XML attribute headers object_store sends."""
    meta = {"contentType": headers.get("Content-Type") or "application/octet-stream"}
    for h, field in ATTR_HEADERS.items():
        if headers.get(h):
            meta[field] = headers[h]
    user = {k[len("x-goog-meta-"):]: v for k, v in headers.items()
            if k.lower().startswith("x-goog-meta-")}
    if user:
        meta["metadata"] = user
    return meta


class Shim(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None  # urllib.parse.SplitResult, set in main()
    tmp_root = None
    # upload id -> {"bucket", "name", "meta", "dir", "parts": {n: etag}}; single dict
    # get/set/pop operations are atomic under the GIL, so no extra lock is needed.
    uploads = {}
    action = "-"  # translation applied, for the log line

    # ---------------------------------------------------------------- plumbing
    def log_message(self, fmt, *args):
        sys.stderr.write("gcs_xml_shim: %s\n" % (fmt % args))

    def log_request(self, code="-", size="-"):
        self.log_message("%s %s -> %s [%s]", self.command, self.path, code, self.action)

    def conn(self):
        return http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=300)

    def body_chunks(self):
        """Yields the request body in chunks (Content-Length only)."""
        left = int(self.headers.get("Content-Length") or 0)
        while left > 0:
            data = self.rfile.read(min(CHUNK, left))
            if not data:
                raise ConnectionError("client closed mid-body")
            left -= len(data)
            yield data

    def reply(self, status, body=b"", headers=None):
        self.send_response(status)
        for k, v in dict(headers or {}, **({"Content-Type": "application/xml"} if body else {})
                         ).items():
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def xml_error(self, status, code, message):
        body = ("<?xml version='1.0' encoding='UTF-8'?><Error><Code>%s</Code>"
                "<Message>%s</Message></Error>" % (code, escape(message))).encode()
        self.reply(status, body)

    def bucket_missing(self, bucket):
        """Whether fake-gcs has no bucket `bucket` (asked through its JSON API)."""
        if not bucket:
            return False
        c = self.conn()
        try:
            c.request("GET", "/storage/v1/b/%s" % q(bucket))
            r = c.getresponse()
            r.read()
        finally:
            c.close()
        return r.status == 404

    def no_such_bucket(self):
        self.xml_error(404, "NoSuchBucket", "The specified bucket does not exist.")

    def upstream_json(self, method, path, body=None, headers=None, length=None):
        """JSON-API call; returns the decoded JSON or raises UpstreamError."""
        headers = dict(headers or {}, **({} if length is None else {"Content-Length": str(length)}))
        c = self.conn()
        try:
            c.request(method, path, body=body, headers=headers)
            r = c.getresponse()
            data = r.read()
        finally:
            c.close()
        if r.status >= 300:
            raise UpstreamError(r.status, data)
        return json.loads(data) if data.strip() else {}

    def upload(self, bucket, name, meta, chunks, length, if_gen_match=None):
        """Streams `chunks` (total `length` bytes) into a multipart/related upload."""
        meta = dict(meta, name=name)
        boundary = uuid.uuid4().hex
        head = ("--%s\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n%s\r\n"
                "--%s\r\nContent-Type: %s\r\n\r\n" % (boundary, json.dumps(meta), boundary,
                                                      meta["contentType"])).encode()
        tail = ("\r\n--%s--\r\n" % boundary).encode()

        def body():
            yield head
            yield from chunks
            yield tail

        path = "/upload/storage/v1/b/%s/o?uploadType=multipart&name=%s" % (q(bucket), q(name))
        if if_gen_match is not None:
            path += "&ifGenerationMatch=" + q(if_gen_match)
        ctype = "multipart/related; boundary=" + boundary
        return self.upstream_json("POST", path, body(), {"Content-Type": ctype},
                                  len(head) + length + len(tail))

    @staticmethod
    def result_headers(obj):
        return {"ETag": '"%s"' % obj.get("etag", ""),
                "x-goog-generation": str(obj.get("generation", ""))}

    # ---------------------------------------------------------------- routing
    def route(self):
        u = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(u.query, keep_blank_values=True)
        bucket, _, name = (urllib.parse.unquote(x) for x in u.path.lstrip("/").partition("/"))
        if name and self.command == "PUT":
            if "x-goog-copy-source" in self.headers:
                return "copy", self.do_copy, bucket, name, query
            if "uploadId" in query:
                return "put-part", self.do_put_part, bucket, name, query
            return "put", self.do_put_object, bucket, name, query
        if name and self.command == "POST" and "uploads" in query:
            return "mpu-init", self.do_initiate, bucket, name, query
        if name and self.command == "POST" and "uploadId" in query:
            return "mpu-complete", self.do_complete, bucket, name, query
        if name and self.command == "DELETE" and "uploadId" in query:
            return "mpu-abort", self.do_abort, bucket, name, query
        return "forward", self.forward, bucket, name, query

    def handle_any(self):
        self.action = "-"
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            self.action = "rejected"
            self.close_connection = True
            return self.xml_error(411, "MissingContentLength", "send Content-Length")
        self.action, handler, bucket, name, query = self.route()
        try:
            handler(bucket, name, query)
        except UpstreamError as e:
            if self.bucket_missing(bucket):
                return self.no_such_bucket()
            try:
                msg = json.loads(e.body)["error"]["message"]
            except (ValueError, KeyError, TypeError):
                msg = e.body.decode("utf-8", "replace")
            codes = {404: "NoSuchKey", 412: "PreconditionFailed", 409: "Conflict"}
            self.xml_error(e.status, codes.get(e.status, "UpstreamError"), msg)
        except (ET.ParseError, KeyError, ValueError) as e:  # bad XML body or query
            self.close_connection = True
            self.xml_error(400, "InvalidArgument", "malformed request: %r" % e)
        except OSError as e:
            self.close_connection = True
            self.log_message("error: %r", e)
            try:
                self.xml_error(502, "BadGateway", str(e))
            except OSError:
                pass

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = handle_any

    # ---------------------------------------------------------------- handlers
    def forward(self, bucket, *_):
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
        length = self.headers.get("Content-Length")
        if length is not None:
            headers["Content-Length"] = length
        c = self.conn()
        try:
            c.request(self.command, self.path, body=self.body_chunks() if length else None,
                      headers=headers)
            r = c.getresponse()
            if r.status >= 400 and self.bucket_missing(bucket):
                r.read()
                return self.no_such_bucket()
            self.send_response(r.status, r.reason)
            for k, v in r.getheaders():  # send_response already wrote Date and Server
                if k.lower() not in HOP_BY_HOP | {"date", "server"}:
                    self.send_header(k, v)
            no_body = self.command == "HEAD" or r.status in (204, 304) or r.status < 200
            size = r.getheader("Content-Length")
            chunked = size is None and not no_body  # re-chunk what http.client de-chunked
            if size is not None:
                self.send_header("Content-Length", size)
            elif chunked:
                self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            while not no_body and (data := r.read(CHUNK)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        finally:
            c.close()

    def do_put_object(self, bucket, name, _query):
        obj = self.upload(bucket, name, metadata_from_headers(self.headers), self.body_chunks(),
                          int(self.headers.get("Content-Length") or 0),
                          self.headers.get("x-goog-if-generation-match"))
        self.reply(200, headers=self.result_headers(obj))

    def do_copy(self, bucket, name, _query):
        src = urllib.parse.unquote(self.headers["x-goog-copy-source"].lstrip("/"))
        src_bucket, _, src_name = src.partition("/")
        src_path = "/storage/v1/b/%s/o/%s" % (q(src_bucket), q(src_name))
        info = self.upstream_json("GET", src_path)
        meta = {k: info[k] for k in COPY_FIELDS if k in info}
        meta.setdefault("contentType", "application/octet-stream")
        c = self.conn()
        try:
            c.request("GET", "%s?alt=media&generation=%s" % (src_path, info["generation"]))
            r = c.getresponse()
            if r.status != 200:
                raise UpstreamError(r.status, r.read())
            chunks = iter(lambda: r.read(CHUNK), b"")
            obj = self.upload(bucket, name, meta, chunks, int(info["size"]),
                              self.headers.get("x-goog-if-generation-match"))
        finally:
            c.close()
        body = ("<?xml version='1.0' encoding='UTF-8'?><CopyObjectResult><ETag>\"%s\"</ETag>"
                "</CopyObjectResult>" % escape(obj.get("etag", ""))).encode()
        self.reply(200, body, self.result_headers(obj))

    def do_initiate(self, bucket, name, _query):
        list(self.body_chunks())
        if self.bucket_missing(bucket):
            return self.no_such_bucket()
        upload_id = uuid.uuid4().hex
        os.mkdir(os.path.join(self.tmp_root, upload_id))
        self.uploads[upload_id] = {"bucket": bucket, "name": name, "parts": {},
                                   "meta": metadata_from_headers(self.headers),
                                   "dir": os.path.join(self.tmp_root, upload_id)}
        body = ("<?xml version='1.0' encoding='UTF-8'?><InitiateMultipartUploadResult>"
                "<Bucket>%s</Bucket><Key>%s</Key><UploadId>%s</UploadId>"
                "</InitiateMultipartUploadResult>" % (escape(bucket), escape(name), upload_id))
        self.reply(200, body.encode())

    def find_upload(self, bucket, name, query):
        up = self.uploads.get(query["uploadId"][0])
        if up is None or (up["bucket"], up["name"]) != (bucket, name):
            list(self.body_chunks())
            self.xml_error(404, "NoSuchUpload", "no such upload id")
            return None
        return up

    def do_put_part(self, bucket, name, query):
        up = self.find_upload(bucket, name, query)
        if up is None:
            return
        number, md5 = int(query["partNumber"][0]), hashlib.md5()
        tmp = os.path.join(up["dir"], "part-%05d.%s" % (number, uuid.uuid4().hex))
        with open(tmp, "wb") as f:
            for data in self.body_chunks():
                md5.update(data)
                f.write(data)
        os.replace(tmp, os.path.join(up["dir"], "part-%05d" % number))
        up["parts"][number] = etag = '"%s"' % md5.hexdigest()
        self.reply(200, headers={"ETag": etag})

    def do_complete(self, bucket, name, query):
        up = self.find_upload(bucket, name, query)
        if up is None:
            return
        root = ET.fromstring(b"".join(self.body_chunks()))
        wanted = []
        for part in root.iter():
            if part.tag.rsplit("}", 1)[-1] == "Part":
                fields = {c.tag.rsplit("}", 1)[-1]: (c.text or "").strip() for c in part}
                wanted.append((int(fields["PartNumber"]), fields["ETag"].strip('"')))
        numbers = [n for n, _ in wanted]
        if not wanted or numbers != sorted(set(numbers)):
            return self.xml_error(400, "InvalidPartOrder", "parts must be ascending and unique")
        for n, etag in wanted:
            if up["parts"].get(n, "").strip('"') != etag:
                return self.xml_error(400, "InvalidPart", "part %d missing or ETag differs" % n)
        files = [os.path.join(up["dir"], "part-%05d" % n) for n in numbers]

        def chunks():
            for path in files:
                with open(path, "rb") as f:
                    while data := f.read(CHUNK):
                        yield data

        obj = self.upload(bucket, name, up["meta"], chunks(),
                          sum(os.path.getsize(p) for p in files))
        self.drop_upload(query["uploadId"][0])
        body = ("<?xml version='1.0' encoding='UTF-8'?><CompleteMultipartUploadResult>"
                "<Bucket>%s</Bucket><Key>%s</Key><ETag>\"%s\"</ETag>"
                "</CompleteMultipartUploadResult>"
                % (escape(bucket), escape(name), escape(obj.get("etag", ""))))
        self.reply(200, body.encode(), self.result_headers(obj))

    def do_abort(self, bucket, name, query):
        if self.find_upload(bucket, name, query) is None:
            return
        list(self.body_chunks())
        self.drop_upload(query["uploadId"][0])
        self.reply(204)

    def drop_upload(self, upload_id):
        up = self.uploads.pop(upload_id, None)
        if up:
            shutil.rmtree(up["dir"], ignore_errors=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen-port", type=int, required=True, help="0 picks a free port")
    ap.add_argument("--upstream", required=True, help="fake-gcs base URL, http://127.0.0.1:U")
    args = ap.parse_args()
    Shim.upstream = urllib.parse.urlsplit(args.upstream)
    if Shim.upstream.scheme != "http" or not Shim.upstream.port:
        ap.error("--upstream must be http://HOST:PORT")
    server = http.server.ThreadingHTTPServer(("127.0.0.1", args.listen_port), Shim)
    Shim.tmp_root = tempfile.mkdtemp(prefix="gcs_xml_shim-")  # after bind: nothing to leak
    server.daemon_threads, server.block_on_close = True, False  # never wait for idle clients
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stderr.write("gcs_xml_shim: listening on http://127.0.0.1:%d -> %s\n"
                     % (server.server_address[1], args.upstream))
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        shutil.rmtree(Shim.tmp_root, ignore_errors=True)
        sys.stderr.write("gcs_xml_shim: stopped\n")


if __name__ == "__main__":
    main()
