#!/usr/bin/env python3
"""HTTP fault-injection reverse proxy in front of one test service (TEST HARNESS ONLY).

Why: the retry and idempotency paths of the product (BigQuery calls, object_store writes) only run
when a dependency misbehaves, and the emulators never do. This proxy sits between the binary and
one emulator and, per request, from a seeded RNG, answers 503 itself, resets the connection
before forwarding, resets it after the upstream acted (the write landed but the answer was
lost), or sleeps first. All rates start at whatever the command line says (0 from
test-services.sh) and are changed at runtime, so a test sets up its data through a quiet proxy
and then turns faults on.

Forwarding is a plain HTTP/1.1 reverse proxy: keep-alive towards the client, one upstream
connection per request, Content-Length and chunked bodies streamed both ways (request bodies
are never held in memory), no body for HEAD, 1xx, 204 and 304, the client's Host header kept
(signatures and self-links stay valid), hop-by-hop headers dropped, `Expect: 100-continue`
answered here.

Per eligible request (method in --only-methods, target matching --path-regex, never /__faults/)
two numbers are drawn under one lock: the first decides the delay, the second the fault, taken
in this order from one uniform draw: 503 (p503), 403 permission denied (p403: a request the
caller's credentials may not make), reset before forwarding (pResetBefore), reset after the
upstream answered (pResetAfter), else forwarded untouched; so the rates are shares of
the requests, and past a sum of 1 the later ones are cut short. Concurrent requests draw in
arrival order, so a seed reproduces a run only when the requests come one at a time.

Control endpoints (answered here, never faulted, never forwarded):
  GET  /__faults/stats        {"requests":N,"forwarded":N,"p503":N,"p403":N,"resetBefore":N,
                               "resetAfter":N,"delayed":N}   (requests = every proxied request;
                               forwarded includes the reset-after ones)
  POST /__faults/reset-stats  zeroes the counts, answers them
  GET  /__faults/config       the current settings
  POST /__faults/config       JSON object with any of: p503, p403, pResetBefore, pResetAfter, pDelay,
                              delaySecs, seed, onlyMethods ("PUT,POST" or a list; "" = all),
                              pathRegex ("" = all); answers the new settings. Keys are matched
                              ignoring case, '-' and '_' (so "p_reset_after" works); an unknown
                              key or a rate outside [0, 1] is a 400 and changes nothing.
Every injected fault is logged as one line on stderr.

Usage: python3 fault_proxy.py --listen-port P --upstream http://127.0.0.1:U [--seed N]
         [--p503 F] [--p-reset-before F] [--p-reset-after F] [--p-delay F] [--delay-secs S]
         [--only-methods PUT,POST,DELETE] [--path-regex RE] [--error-format auto|json|xml]
"""
import argparse
import http.client
import http.server
import io
import json
import random
import re
import signal
import socket
import struct
import sys
import threading
import time
import urllib.parse

CHUNK = 1 << 20
HOP_BY_HOP = {"connection", "keep-alive", "proxy-connection", "transfer-encoding", "te",
              "trailer", "upgrade", "content-length", "expect", "proxy-authorization",
              "proxy-authenticate"}
CONTROL_PREFIX = "/__faults/"
RATES = ("p503", "p403", "pResetBefore", "pResetAfter", "pDelay")
COUNTERS = ("requests", "forwarded", "p503", "p403", "resetBefore", "resetAfter", "delayed")


class ClientGone(Exception):
    """The client closed or broke its connection while we read its request body."""


class Faults:
    """Settings, RNG and counters shared by all handler threads, behind one lock."""

    def __init__(self, args):
        self.lock = threading.Lock()
        self.settings = {"p503": args.p503, "p403": 0.0, "pResetBefore": args.p_reset_before,
                         "pResetAfter": args.p_reset_after, "pDelay": args.p_delay,
                         "delaySecs": args.delay_secs, "seed": args.seed,
                         "onlyMethods": parse_methods(args.only_methods),
                         "pathRegex": args.path_regex or ""}
        self.rng = random.Random(args.seed)
        self.regex = re.compile(self.settings["pathRegex"]) if self.settings["pathRegex"] else None
        self.counts = dict.fromkeys(COUNTERS, 0)

    def snapshot(self):
        with self.lock:
            s = dict(self.settings)
        s["onlyMethods"] = ",".join(s["onlyMethods"])
        return s

    def stats(self, reset=False):
        with self.lock:
            counts = dict(self.counts)
            if reset:
                self.counts = dict.fromkeys(COUNTERS, 0)
        return counts

    def count(self, name):
        with self.lock:
            self.counts[name] += 1

    def update(self, changes):
        """Validates every change first, then applies them all; returns a list of problems."""
        if not isinstance(changes, dict):
            return ["the body must be a JSON object"]
        names = {norm(k): k for k in ("p503", "p403", "pResetBefore", "pResetAfter", "pDelay",
                                      "delaySecs", "seed", "onlyMethods", "pathRegex")}
        new, problems, regex = {}, [], None
        for key, value in changes.items():
            name = names.get(norm(key))
            if name is None:
                problems.append("%s: unknown setting (known: %s)" % (key, ", ".join(names.values())))
            elif name in RATES or name == "delaySecs":
                if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0 \
                        or (name in RATES and value > 1):
                    problems.append("%s: expected a number %s" % (
                        key, "between 0 and 1" if name in RATES else ">= 0"))
                else:
                    new[name] = float(value)
            elif name == "seed":
                if isinstance(value, bool) or not isinstance(value, int):
                    problems.append("%s: expected an integer" % key)
                else:
                    new[name] = value
            elif name == "onlyMethods":
                if isinstance(value, list) and all(isinstance(m, str) for m in value):
                    value = ",".join(value)
                if not isinstance(value, str):
                    problems.append("%s: expected \"PUT,POST\" or a list of methods" % key)
                else:
                    new[name] = parse_methods(value)
            else:  # pathRegex
                try:
                    regex = re.compile(value) if value else None
                    new[name] = value or ""
                except (re.error, TypeError) as e:
                    problems.append("%s: not a regular expression: %s" % (key, e))
        if problems:
            return problems
        with self.lock:
            self.settings.update(new)
            if "seed" in new:
                self.rng = random.Random(new["seed"])
            if "pathRegex" in new:
                self.regex = regex
        return []

    def draw(self, method, target):
        """(delay seconds or 0, fault name or None) for one proxied request; counts it."""
        with self.lock:
            self.counts["requests"] += 1
            s = self.settings
            if (s["onlyMethods"] and method not in s["onlyMethods"]) \
                    or (self.regex is not None and not self.regex.search(target)):
                return 0, None
            delay = s["delaySecs"] if self.rng.random() < s["pDelay"] else 0
            u, edge, fault = self.rng.random(), 0.0, None
            for name, key in (("p503", "p503"), ("p403", "p403"), ("resetBefore", "pResetBefore"),
                              ("resetAfter", "pResetAfter")):
                edge += s[key]
                if u < edge:
                    fault = name
                    break
            if delay:
                self.counts["delayed"] += 1
            if fault:
                self.counts[fault] += 1
            return delay, fault


def norm(key):
    return str(key).replace("-", "").replace("_", "").lower()


def parse_methods(text):
    return sorted({m.strip().upper() for m in (text or "").split(",") if m.strip()})


class Proxy(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    upstream = None      # urllib.parse.SplitResult, set in main()
    faults = None        # Faults, set in main()
    error_format = "auto"

    # ---------------------------------------------------------------- plumbing
    def log_message(self, fmt, *args):
        sys.stderr.write("fault_proxy[%d]: %s\n" % (self.server.server_address[1], fmt % args))
        sys.stderr.flush()

    def log_request(self, code="-", size="-"):
        pass  # one line per fault and per error only: the tests send thousands of requests

    def reply(self, status, body=b"", content_type="application/json", headers=None):
        self.send_response(status)
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        if body:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def reply_json(self, status, value):
        self.reply(status, json.dumps(value).encode() + b"\n")

    def body_chunks(self):
        """Yields the request body as it arrives (Content-Length or chunked, de-chunked)."""
        try:
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                while True:
                    line = self.rfile.readline(1024)
                    if not line.endswith(b"\n"):
                        raise ClientGone("bad or cut chunk header")
                    size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                    if size == 0:
                        while self.rfile.readline(8192) not in (b"\r\n", b"\n", b""):
                            pass  # trailers: dropped
                        return
                    left = size
                    while left > 0:
                        data = self.rfile.read(min(CHUNK, left))
                        if not data:
                            raise ClientGone("client closed mid-chunk")
                        left -= len(data)
                        yield data
                    self.rfile.readline(8)  # CRLF after the chunk
            else:
                left = int(self.headers.get("Content-Length") or 0)
                while left > 0:
                    data = self.rfile.read(min(CHUNK, left))
                    if not data:
                        raise ClientGone("client closed mid-body")
                    left -= len(data)
                    yield data
        except (OSError, ValueError) as e:
            raise ClientGone(repr(e)) from e

    def has_body(self):
        return "chunked" in self.headers.get("Transfer-Encoding", "").lower() \
            or int(self.headers.get("Content-Length") or 0) > 0

    def bad_framing(self):
        """A Content-Length that is not a number: 400 and close (the body cannot be delimited)."""
        try:
            if int(self.headers.get("Content-Length") or 0) >= 0:
                return False
        except ValueError:
            pass
        self.close_connection = True
        self.reply_json(400, {"error": {"code": 400, "message": "fault_proxy: bad Content-Length"}})
        return True

    def reset_client(self):
        """Sends RST instead of FIN: SO_LINGER 0, then the real close of the socket."""
        self.close_connection = True
        try:
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        except OSError:
            pass
        # The buffered reader holds a reference to the socket; the descriptor (and the RST)
        # only goes once both are closed. Stand-ins keep the base class's flush/close happy.
        for f in (self.rfile, self.connection):
            try:
                f.close()
            except OSError:
                pass
        self.rfile, self.wfile = io.BytesIO(), io.BytesIO()

    # ---------------------------------------------------------------- routing
    def handle_any(self):
        if self.bad_framing():
            return
        if self.path.startswith(CONTROL_PREFIX):
            return self.control()
        delay, fault = self.faults.draw(self.command, self.path)
        try:
            if delay:
                self.log_message("fault delay %.1fs %s %s", delay, self.command, self.path)
                time.sleep(delay)
            if fault == "p503":
                self.log_message("fault 503 %s %s", self.command, self.path)
                for _ in self.body_chunks():  # read it all, so the connection stays usable
                    pass
                return self.unavailable()
            if fault == "p403":
                self.log_message("fault 403 %s %s", self.command, self.path)
                for _ in self.body_chunks():
                    pass
                return self.denied()
            if fault == "resetBefore":
                self.log_message("fault reset-before %s %s", self.command, self.path)
                return self.reset_client()
            self.forward(reset_after=fault == "resetAfter")
        except ClientGone as e:
            self.close_connection = True
            self.log_message("client gone during %s %s: %s", self.command, self.path, e)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = do_PATCH = do_OPTIONS = handle_any

    def unavailable(self):
        fmt = self.error_format
        if fmt == "auto":  # BigQuery and the GCS JSON API speak JSON; S3 and GCS XML speak XML
            json_api = self.path.startswith(("/bigquery/", "/upload/", "/storage/", "/batch/"))
            fmt = "json" if json_api else "xml"
        message = "injected by fault_proxy: service unavailable"
        if fmt == "json":
            body = json.dumps({"error": {"code": 503, "message": message, "status": "UNAVAILABLE",
                                         "errors": [{"reason": "backendError",
                                                     "message": message}]}}).encode()
            self.reply(503, body, "application/json")
        else:
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>ServiceUnavailable"
                    "</Code><Message>%s</Message></Error>" % message).encode()
            self.reply(503, body, "application/xml")

    def denied(self):
        """A 403 as BigQuery and the GCS JSON API answer one (XML otherwise, as S3 does)."""
        message = "injected by fault_proxy: permission denied"
        if self.path.startswith(("/bigquery/", "/upload/", "/storage/", "/batch/")):
            body = json.dumps({"error": {"code": 403, "message": message,
                                         "status": "PERMISSION_DENIED",
                                         "errors": [{"reason": "accessDenied",
                                                     "message": message}]}}).encode()
            self.reply(403, body, "application/json")
        else:
            body = ("<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>AccessDenied"
                    "</Code><Message>%s</Message></Error>" % message).encode()
            self.reply(403, body, "application/xml")

    def control(self):
        route = urllib.parse.urlsplit(self.path).path[len(CONTROL_PREFIX):]
        try:
            raw = b"".join(self.body_chunks())
        except ClientGone:
            self.close_connection = True
            return
        if route == "stats" and self.command == "GET":
            return self.reply_json(200, self.faults.stats())
        if route == "reset-stats" and self.command == "POST":
            return self.reply_json(200, self.faults.stats(reset=True))
        if route == "config" and self.command == "GET":
            return self.reply_json(200, self.faults.snapshot())
        if route == "config" and self.command == "POST":
            try:
                changes = json.loads(raw or b"{}")
            except ValueError as e:
                return self.reply_json(400, {"problems": ["the body is not JSON: %s" % e]})
            problems = self.faults.update(changes)
            if problems:
                return self.reply_json(400, {"problems": problems})
            self.log_message("config %s", json.dumps(self.faults.snapshot(), sort_keys=True))
            return self.reply_json(200, self.faults.snapshot())
        self.reply_json(404, {"problems": ["unknown control endpoint %s %s (GET stats, POST "
                                           "reset-stats, GET/POST config)" % (self.command,
                                                                              self.path)]})

    # ---------------------------------------------------------------- forwarding
    def forward(self, reset_after):
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP]
        if "Host" not in self.headers:  # HTTP/1.0 clients may leave it out
            headers.append(("Host", self.upstream.netloc))
        length = self.headers.get("Content-Length")
        if length is not None and "chunked" not in self.headers.get("Transfer-Encoding", "").lower():
            headers.append(("Content-Length", length))
        # Without a Content-Length, http.client sends an iterable body chunked itself.
        body = self.body_chunks() if self.has_body() else None
        c = http.client.HTTPConnection(self.upstream.hostname, self.upstream.port, timeout=300)
        try:
            try:
                c.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                for k, v in headers:
                    c.putheader(k, v)
                if body is not None and length is None:
                    c.putheader("Transfer-Encoding", "chunked")
                c.endheaders()
                for data in body or ():
                    c.send(b"%x\r\n%s\r\n" % (len(data), data) if length is None else data)
                if body is not None and length is None:
                    c.send(b"0\r\n\r\n")
                r = c.getresponse()
            except ClientGone:
                # RST, not FIN: the upstream must see a broken request, never a short body.
                if c.sock is not None:
                    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                raise
            except (OSError, http.client.HTTPException) as e:
                self.log_message("upstream error on %s %s: %r", self.command, self.path, e)
                self.close_connection = True
                return self.reply_json(502, {"error": {"code": 502, "message":
                                                       "fault_proxy: upstream failed: %r" % e}})
            self.faults.count("forwarded")
            if reset_after:
                while r.read(CHUNK):  # the upstream finishes its answer; the client never sees it
                    pass
                self.log_message("fault reset-after %s %s -> %d (upstream acted, answer dropped)",
                                 self.command, self.path, r.status)
                return self.reset_client()
            self.relay(r)
        finally:
            c.close()

    def relay(self, r):
        self.send_response(r.status, r.reason)
        for k, v in r.getheaders():  # send_response already wrote Date and Server
            if k.lower() not in HOP_BY_HOP | {"date", "server"}:
                self.send_header(k, v)
        no_body = self.command == "HEAD" or r.status in (204, 304) or r.status < 200
        size = r.getheader("Content-Length")
        chunked = size is None and not no_body and self.request_version == "HTTP/1.1"
        if size is not None:
            self.send_header("Content-Length", size)
        elif chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif not no_body:
            self.close_connection = True  # HTTP/1.0 client, unknown length: ends with the close
        self.end_headers()
        try:
            while not no_body and (data := r.read(CHUNK)):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data) if chunked else data)
            if chunked:
                self.wfile.write(b"0\r\n\r\n")
        except (OSError, http.client.HTTPException) as e:
            # Headers are out: the only honest signal left is a broken connection.
            self.log_message("relay of %s %s broke: %r", self.command, self.path, e)
            self.reset_client()


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False        # never wait for idle keep-alive clients on stop
    request_queue_size = 256      # bursts of hundreds of connections (the default is 5)

    def handle_error(self, request, client_address):
        # One line, not a traceback: a broken connection must never look like a proxy crash.
        sys.stderr.write("fault_proxy[%d]: connection from %s failed: %r\n"
                         % (self.server_address[1], client_address[0], sys.exc_info()[1]))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listen-port", type=int, required=True, help="0 picks a free port")
    ap.add_argument("--upstream", required=True, help="base URL, http://127.0.0.1:U")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--p503", type=float, default=0.0)
    ap.add_argument("--p-reset-before", type=float, default=0.0)
    ap.add_argument("--p-reset-after", type=float, default=0.0)
    ap.add_argument("--p-delay", type=float, default=0.0)
    ap.add_argument("--delay-secs", type=float, default=2.0)
    ap.add_argument("--only-methods", default="", help="e.g. PUT,POST,DELETE (default: all)")
    ap.add_argument("--path-regex", default="", help="searched in the request target (path?query)")
    ap.add_argument("--error-format", choices=("auto", "json", "xml"), default="auto",
                    help="body of injected 503s; auto: JSON for /bigquery/, /upload/, /storage/")
    args = ap.parse_args()
    for name in ("p503", "p_reset_before", "p_reset_after", "p_delay"):
        if not 0 <= getattr(args, name) <= 1:
            ap.error("--%s must lie between 0 and 1" % name.replace("_", "-"))
    Proxy.upstream = urllib.parse.urlsplit(args.upstream)
    if Proxy.upstream.scheme != "http" or not Proxy.upstream.port:
        ap.error("--upstream must be http://HOST:PORT")
    try:
        re.compile(args.path_regex)
    except re.error as e:
        ap.error("--path-regex: %s" % e)
    Proxy.faults = Faults(args)
    Proxy.error_format = args.error_format
    server = Server(("127.0.0.1", args.listen_port), Proxy)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    sys.stderr.write("fault_proxy: listening on http://127.0.0.1:%d -> %s %s\n"
                     % (server.server_address[1], args.upstream,
                        json.dumps(Proxy.faults.snapshot(), sort_keys=True)))
    sys.stderr.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
        sys.stderr.write("fault_proxy: stopped\n")


if __name__ == "__main__":
    main()
