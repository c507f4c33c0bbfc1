#!/usr/bin/env python3
"""Self-test of scripts/fault_proxy.py (TEST HARNESS ONLY; standard library only).

Starts a throwaway upstream (http.server on port 0, in this process) and the proxy (a child
process on a port of its own choosing), then checks: pass-through of PUT/GET/HEAD/DELETE with
3 MiB bodies sent with Content-Length and chunked, chunked answers, keep-alive across requests,
503 at p=1 (the connection stays usable), reset-before at p=1 (the client sees a connection
error, the upstream saw nothing), reset-after at p=1 (the client sees a connection error, the
upstream DID act), delays, --only-methods / pathRegex at runtime, rejected configs, that
/__faults/ is never faulted, the stats counts, a client dying mid-body, 502 once the upstream is
gone, and that the proxy is still alive after all of it. Stops what it started; exits 1 on any
failure.

    python3 scripts/fault_proxy_selftest.py [-v]      (-v: print the proxy's log at the end)
"""
import hashlib
import http.client
import http.server
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
BIG = 3 * 1024 * 1024
failures = []


def check(ok, what):
    print("%s %s" % ("ok  " if ok else "FAIL", what), flush=True)
    if not ok:
        failures.append(what)


class Upstream(http.server.BaseHTTPRequestHandler):
    """An object store in a dict: PUT stores, GET/HEAD read, DELETE removes; every request seen
    is recorded as (method, path, framing)."""
    protocol_version = "HTTP/1.1"
    objects, seen, lock = {}, [], threading.Lock()

    def log_message(self, *_):
        pass

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b""):
                        pass
                    return "chunked", bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(n)
        if len(body) != n:
            raise ConnectionError("short body")  # never stored
        return ("length" if "Content-Length" in self.headers else "none"), body

    def answer(self, status, body=b"", chunked=False):
        self.send_response(status)
        self.send_header("X-Upstream", "yes")
        if chunked:
            self.send_header("Transfer-Encoding", "chunked")
        elif status not in (204, 304):
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command == "HEAD" or status in (204, 304):
            return
        if chunked:
            for i in range(0, len(body), 65536):
                part = body[i:i + 65536]
                self.wfile.write(b"%x\r\n%s\r\n" % (len(part), part))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.wfile.write(body)

    def any(self):
        framing, body = self.read_body()
        with self.lock:
            self.seen.append((self.command, self.path, framing, self.headers.get("Host")))
        name = self.path.split("?")[0]
        if self.command == "PUT":
            with self.lock:
                self.objects[name] = body
            return self.answer(200, json.dumps({"sha256": hashlib.sha256(body).hexdigest(),
                                                "framing": framing}).encode())
        if self.command == "DELETE":
            with self.lock:
                self.objects.pop(name, None)
            return self.answer(204)
        data = self.objects.get(name)
        if data is None:
            return self.answer(404, b'{"error":"not found"}')
        return self.answer(200, data, chunked="chunked=1" in self.path)

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = any


class QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, *_):
        pass  # broken connections are what this test makes on purpose


def start_proxy(upstream_port, log):
    proc = subprocess.Popen([sys.executable, os.path.join(HERE, "fault_proxy.py"), "--listen-port",
                             "0", "--upstream", "http://127.0.0.1:%d" % upstream_port,
                             "--seed", "7"], stdout=subprocess.DEVNULL, stderr=log)
    deadline = time.time() + 15
    while time.time() < deadline:
        with open(log.name) as f:
            for line in f:
                if "listening on http://127.0.0.1:" in line:
                    return proc, int(line.split("127.0.0.1:")[1].split()[0])
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    proc.kill()
    sys.exit("the proxy did not start:\n" + open(log.name).read())


def main():
    upstream = QuietServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    up_port = upstream.server_address[1]
    log = tempfile.NamedTemporaryFile("w+", prefix="fault_proxy_selftest-", suffix=".log")
    proc, port = start_proxy(up_port, log)
    print("upstream on %d, proxy (pid %d) on %d" % (up_port, proc.pid, port), flush=True)
    try:
        run(port, upstream, proc, log.name)
    except Exception as e:  # a crash of the test itself is a failure too
        check(False, "the self-test ran to the end (%r)" % e)
    finally:
        alive = proc.poll() is None
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        upstream.shutdown()
        upstream.server_close()
        log.seek(0)
        text = log.read()
        log.close()
        if failures or not alive or "-v" in sys.argv[1:]:
            print("---- proxy log ----\n" + text)
    print("\n%s: %d failure(s)" % ("FAILED" if failures else "PASSED", len(failures)))
    sys.exit(1 if failures else 0)


def run(port, upstream, proc, log_path):
    def conn():
        return http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def call(c, method, path, body=None, headers=None):
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        return r, r.read()

    def control(path, body=None):
        c = conn()
        try:
            r, data = call(c, "POST" if body is not None else "GET", "/__faults/" + path,
                           None if body is None else json.dumps(body).encode(),
                           {"Content-Type": "application/json"})
            return r.status, json.loads(data)
        finally:
            c.close()

    def seen_count():
        with Upstream.lock:
            return len(Upstream.seen)

    def connection_error(method, path, body=None, headers=None):
        c = conn()
        try:
            r, _ = call(c, method, path, body, headers)
            return "answered %d" % r.status
        except (ConnectionError, http.client.HTTPException, OSError) as e:
            return e
        finally:
            c.close()

    big = os.urandom(BIG)
    big_sha = hashlib.sha256(big).hexdigest()
    octet = {"Content-Type": "application/octet-stream"}

    status, _ = control("reset-stats", {})
    check(status == 200, "POST /__faults/reset-stats answers 200")

    # ---- pass-through, all on one keep-alive connection
    c = conn()
    r, data = call(c, "PUT", "/b/len", big, octet)
    check(r.status == 200 and json.loads(data) == {"sha256": big_sha, "framing": "length"},
          "PUT 3 MiB with Content-Length reaches the upstream intact")
    chunks = (big[i:i + 100_000] for i in range(0, BIG, 100_000))
    r, data = call(c, "PUT", "/b/chunked", chunks, octet)  # no length: http.client chunks it
    check(r.status == 200 and json.loads(data) == {"sha256": big_sha, "framing": "chunked"},
          "PUT 3 MiB chunked reaches the upstream intact (and chunked)")
    r, data = call(c, "GET", "/b/len")
    check(r.status == 200 and data == big and r.getheader("Content-Length") == str(BIG)
          and r.getheader("X-Upstream") == "yes", "GET 3 MiB with Content-Length comes back intact")
    r, data = call(c, "GET", "/b/chunked?chunked=1")
    check(r.status == 200 and data == big and r.getheader("Transfer-Encoding") == "chunked",
          "GET 3 MiB answered chunked comes back intact, chunked")
    r, data = call(c, "HEAD", "/b/len")
    check(r.status == 200 and data == b"" and r.getheader("Content-Length") == str(BIG),
          "HEAD keeps Content-Length and has no body")
    r, data = call(c, "DELETE", "/b/len")
    check(r.status == 204 and data == b"", "DELETE answers 204 without a body")
    r, data = call(c, "GET", "/b/len")
    check(r.status == 404, "the keep-alive connection still works after HEAD and 204 (GET -> 404)")
    c.close()
    with Upstream.lock:
        hosts = {h for *_, h in Upstream.seen}
    check(hosts == {"127.0.0.1:%d" % port}, "the client's Host header is forwarded (%s)" % hosts)
    check(len(Upstream.seen) == 7, "the upstream saw the 7 requests (%d)" % len(Upstream.seen))

    # ---- runtime config validation
    status, body = control("config", {"p503": 2})
    check(status == 400, "a rate above 1 is rejected (400)")
    status, body = control("config", {"pNope": 0.5, "p503": 0.5})
    check(status == 400 and control("config")[1]["p503"] == 0,
          "an unknown key is rejected and nothing changes")

    # ---- 503 at p=1
    status, cfg = control("config", {"p503": 1})
    check(status == 200 and cfg["p503"] == 1.0, "POST /__faults/config sets p503")
    before = seen_count()
    c = conn()
    r, data = call(c, "PUT", "/b/x", big, octet)
    check(r.status == 503 and b"ServiceUnavailable" in data and r.getheader("Retry-After") is None,
          "p503=1: PUT answered 503 with an XML body and no Retry-After")
    r, data = call(c, "GET", "/bigquery/v2/projects/p/datasets")
    check(r.status == 503 and json.loads(data)["error"]["code"] == 503,
          "p503=1: a BigQuery path gets a JSON 503 body, on the same keep-alive connection")
    c.close()
    check(seen_count() == before, "p503=1: nothing reached the upstream")
    status, stats = control("stats")
    check(status == 200, "the control endpoints are never faulted, even at p503=1")
    control("config", {"p503": 0, "p403": 1})
    before = seen_count()
    c = conn()
    r, data = call(c, "POST", "/bigquery/v2/projects/p/datasets", b"{}", octet)
    check(r.status == 403 and json.loads(data)["error"]["errors"][0]["reason"] == "accessDenied",
          "p403=1: a BigQuery path gets BigQuery's JSON 403 (accessDenied)")
    r, data = call(c, "PUT", "/b/x", b"abc", octet)
    check(r.status == 403 and b"AccessDenied" in data, "p403=1: an S3 path gets an XML 403")
    c.close()
    check(seen_count() == before, "p403=1: nothing reached the upstream")
    control("config", {"p403": 0, "p503": 1})

    # ---- method and path filters
    control("config", {"onlyMethods": "PUT,POST"})
    c = conn()
    r, _ = call(c, "GET", "/b/chunked")
    check(r.status == 200, "onlyMethods=PUT,POST: GET passes")
    r, _ = call(c, "PUT", "/b/y", b"abc", octet)
    check(r.status == 503, "onlyMethods=PUT,POST: PUT gets the 503")
    control("config", {"only_methods": "", "path-regex": "^/b/fault"})
    r, _ = call(c, "PUT", "/b/y", b"abc", octet)
    check(r.status == 200, "pathRegex=^/b/fault: other paths pass")
    r, _ = call(c, "PUT", "/b/fault-1", b"abc", octet)
    check(r.status == 503, "pathRegex=^/b/fault: matching paths get the fault")
    c.close()
    control("config", {"pathRegex": "", "p503": 0})

    # ---- reset before forwarding
    control("config", {"pResetBefore": 1})
    before = seen_count()
    err = connection_error("PUT", "/b/rb", big, octet)
    check(isinstance(err, Exception), "reset-before: a 3 MiB PUT sees a connection error (%r)" % err)
    err = connection_error("GET", "/b/chunked")
    check(isinstance(err, (ConnectionResetError, http.client.RemoteDisconnected)),
          "reset-before: a GET sees a connection reset (%r)" % err)
    time.sleep(0.2)
    check(seen_count() == before and "/b/rb" not in Upstream.objects,
          "reset-before: the upstream saw nothing")
    control("config", {"pResetBefore": 0})

    # ---- reset after the upstream acted
    control("config", {"pResetAfter": 1})
    before = seen_count()
    err = connection_error("PUT", "/b/ra", big, octet)
    check(isinstance(err, (ConnectionResetError, http.client.RemoteDisconnected)),
          "reset-after: the PUT sees a connection reset (%r)" % err)
    check(seen_count() == before + 1 and Upstream.objects.get("/b/ra") == big,
          "reset-after: the upstream DID receive and store the 3 MiB PUT")
    chunks = (big[i:i + 65536] for i in range(0, BIG, 65536))
    err = connection_error("PUT", "/b/ra2", chunks, octet)
    check(isinstance(err, Exception) and Upstream.objects.get("/b/ra2") == big,
          "reset-after: a chunked PUT lands upstream too, the client sees an error")
    control("config", {"pResetAfter": 0})

    # ---- delay
    control("config", {"pDelay": 1, "delaySecs": 0.5})
    c = conn()
    t0 = time.time()
    r, data = call(c, "GET", "/b/chunked")
    took = time.time() - t0
    c.close()
    check(r.status == 200 and data == big and took >= 0.5, "pDelay=1: answered after %.2fs" % took)
    control("config", {"pDelay": 0})

    # ---- seeded rates: about half of 200 requests, the same count for the same seed
    def half_run():
        control("config", {"seed": 42, "p503": 0.5})
        c = conn()
        n = 0
        for _ in range(200):
            r, _ = call(c, "GET", "/b/chunked")
            n += r.status == 503
        c.close()
        control("config", {"p503": 0})
        return n
    first, second = half_run(), half_run()
    check(60 < first < 140 and first == second,
          "p503=0.5 with seed 42: %d and %d of 200 (same seed, same count)" % (first, second))

    # ---- stats: every request above that was not a control call
    status, stats = control("stats")
    expected = {"requests": 7 + 2 + 2 + 4 + 2 + 2 + 1 + 400, "resetBefore": 2, "resetAfter": 2,
                "delayed": 1, "p503": 2 + 1 + 1 + first + second, "p403": 2}
    expected["forwarded"] = (expected["requests"] - expected["p503"] - expected["p403"]
                             - expected["resetBefore"])
    check(status == 200 and stats == expected, "stats %s == %s" % (stats, expected))
    with open(log_path) as f:
        lines = f.read().splitlines()
    logged = {k: sum(1 for line in lines if " fault %s " % k in line)
              for k in ("503", "reset-before", "reset-after", "delay")}
    check(logged == {"503": expected["p503"], "reset-before": 2, "reset-after": 2, "delay": 1},
          "one stderr line per injected fault (%s)" % logged)
    status, stats = control("reset-stats", {})
    status, stats = control("stats")
    check(stats == dict.fromkeys(expected, 0), "reset-stats zeroes the counts (%s)" % stats)

    # ---- robustness: a client dying mid-body, a bad Content-Length, a missing upstream
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PUT /b/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + b"x" * 10)
    s.close()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PUT /b/bad HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n")
    reply = s.recv(100)
    s.close()
    check(reply.startswith(b"HTTP/1.1 400"), "a bad Content-Length gets 400")
    time.sleep(0.3)
    status, _ = control("stats")
    check(status == 200 and proc.poll() is None, "the proxy survives a client dying mid-body")
    check("/b/cut" not in Upstream.objects, "a client dying mid-body lands nothing upstream")
    upstream.shutdown()
    upstream.server_close()
    c = conn()
    r, data = call(c, "GET", "/b/chunked")
    c.close()
    check(r.status == 502, "upstream gone: 502 (%d)" % r.status)
    status, _ = control("stats")
    check(status == 200 and proc.poll() is None, "the proxy is still alive at the end")


if __name__ == "__main__":
    main()
