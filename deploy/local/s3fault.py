#!/usr/bin/env python3
"""A fault-injecting HTTP proxy in front of an S3-compatible server, for rade's S3 tests.

Every request is forwarded unchanged (method, path and query as sent, every header including
Host, the body) so that SigV4 signatures still verify; the client points its endpoint here.
Faults are chosen at runtime through a control endpoint that no S3 path can shadow (bucket
names cannot start with an underscore):

  GET  /_fault            the mode and what was done so far (JSON)
  POST /_fault            set the mode (JSON body, every field optional):
       {"mode": "pass" | "flaky" | "outage",
        "every": 3,                  flaky: every Nth matching request gets a fault
        "methods": ["PUT"],          requests that can get a fault (default PUT; [] = all)
        "paths": ["_delta_log/"],    ... and whose path holds one of these (default [] = any)
        "faults": ["503", "500"]}    cycled through; one of
            503           answer 503 SlowDown without forwarding
            500           answer 500 InternalError without forwarding
            503-after     forward, then answer 503 instead of the server's answer: the
                          client cannot tell that its write was stored
            close         read the request, close the connection without an answer
            reset         read the request, reset the connection (TCP RST)
       outage fails every request (matching or not) with the first of `faults`.

Each fault is logged as one line on stderr; `GET /_fault` counts them by kind.

    s3fault.py --upstream http://127.0.0.1:9400 [--listen 127.0.0.1:0]

prints `{"listening": PORT}` on stdout once it accepts connections.
Python standard library only.
"""

import argparse
import http.client
import http.server
import json
import socket
import struct
import sys
import threading
import time
import urllib.parse

# Headers of one hop, never forwarded (RFC 9110, 7.6.1).
HOP_BY_HOP = {
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
}
FAULTS = {"503", "500", "503-after", "close", "reset"}
MODES = {"pass", "flaky", "outage"}


class State:
    """The mode, set through the control endpoint, and the counts of what was done."""

    def __init__(self):
        self.lock = threading.Lock()
        self.mode = "pass"
        self.every = 3
        self.methods = ["PUT"]
        self.paths = []
        self.faults = ["503"]
        self.matching = 0
        self.forwarded = 0
        self.injected = {}
        self.next_fault = 0

    def configure(self, spec):
        """Applies a control request; returns an error message or None."""
        mode = spec.get("mode", self.mode)
        every = spec.get("every", self.every)
        methods = spec.get("methods", self.methods)
        paths = spec.get("paths", self.paths)
        faults = spec.get("faults", self.faults)
        if mode not in MODES:
            return f"mode must be one of {sorted(MODES)}"
        if not isinstance(every, int) or every < 1:
            return "every must be an integer of at least 1"
        if not isinstance(methods, list) or not all(isinstance(m, str) for m in methods):
            return "methods must be a list of HTTP methods"
        if not isinstance(paths, list) or not all(isinstance(p, str) for p in paths):
            return "paths must be a list of strings"
        if not isinstance(faults, list) or not faults or not all(f in FAULTS for f in faults):
            return f"faults must be a non-empty list of {sorted(FAULTS)}"
        with self.lock:
            self.mode, self.every = mode, every
            self.methods = [m.upper() for m in methods]
            self.paths = list(paths)
            self.faults = list(faults)
            self.matching = 0
            self.next_fault = 0
        return None

    def decide(self, method, path):
        """The fault for this request, or None to forward it as it is."""
        with self.lock:
            if self.mode == "outage":
                return self.faults[0]
            if self.mode != "flaky" or (self.methods and method not in self.methods):
                return None
            if self.paths and not any(p in path for p in self.paths):
                return None
            self.matching += 1
            if self.matching % self.every:
                return None
            fault = self.faults[self.next_fault % len(self.faults)]
            self.next_fault += 1
            return fault

    def count(self, fault):
        with self.lock:
            if fault is None:
                self.forwarded += 1
            else:
                self.injected[fault] = self.injected.get(fault, 0) + 1

    def snapshot(self):
        with self.lock:
            return {
                "mode": self.mode,
                "every": self.every,
                "methods": self.methods,
                "paths": self.paths,
                "faults": self.faults,
                "forwarded": self.forwarded,
                "injected": dict(self.injected),
                "injected_total": sum(self.injected.values()),
            }


def log(**fields):
    fields = {"at": round(time.time(), 3), **fields}
    sys.stderr.write(json.dumps(fields) + "\n")
    sys.stderr.flush()


def s3_error(code, message):
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{code}</Code><Message>{message}</Message>"
        "<RequestId>s3fault</RequestId></Error>"
    ).encode()


class Handler(http.server.BaseHTTPRequestHandler):
    # Keep-alive like a real S3 endpoint, so that pooled connections see the faults too.
    protocol_version = "HTTP/1.1"
    state = None  # set by main
    upstream = None  # (host, port)

    def log_message(self, format, *args):  # noqa: A002 - the base class's name
        pass  # one line per fault from `log`, not one per request

    def read_body(self):
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline().strip():
                        pass  # trailers
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def handle_any(self):
        body = self.read_body()
        if urllib.parse.urlsplit(self.path).path.rstrip("/") == "/_fault":
            return self.control(body)
        fault = self.state.decide(self.command, self.path)
        if fault in ("close", "reset"):
            self.state.count(fault)
            log(fault=fault, method=self.command, path=self.path)
            self.drop(reset=fault == "reset")
            return
        if fault in ("503", "500"):
            self.state.count(fault)
            log(fault=fault, method=self.command, path=self.path)
            if fault == "503":
                self.answer(503, s3_error("SlowDown", "Please reduce your request rate. (s3fault)"))
            else:
                self.answer(500, s3_error("InternalError", "We encountered an internal error. (s3fault)"))
            return
        try:
            status, reason, headers, payload = self.forward(body)
        except OSError as e:
            log(error=f"upstream: {e}", method=self.command, path=self.path)
            self.answer(502, s3_error("BadGateway", f"s3fault cannot reach the server: {e}"))
            return
        if fault == "503-after":
            self.state.count(fault)
            log(fault=fault, method=self.command, path=self.path, upstream_status=status)
            self.answer(503, s3_error("SlowDown", "Please reduce your request rate. (s3fault, after)"))
            return
        self.state.count(None)
        self.send_response_only(status, reason)
        for name, value in headers:
            if name.lower() not in HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        if self.command == "HEAD" or status in (204, 304) or 100 <= status < 200:
            # No body; a HEAD answer keeps the length of the object it describes.
            length = next((v for n, v in headers if n.lower() == "content-length"), None)
            if length is not None and self.command == "HEAD":
                self.send_header("Content-Length", length)
            self.end_headers()
        else:
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        self.wfile.flush()

    def forward(self, body):
        conn = http.client.HTTPConnection(*self.upstream, timeout=60)
        try:
            conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
            for name, value in self.headers.items():
                # `Expect: 100-continue` was answered here already.
                if name.lower() not in HOP_BY_HOP and name.lower() != "expect":
                    conn.putheader(name, value)
            if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
                conn.putheader("Content-Length", str(len(body)))
            conn.endheaders(body if body else None)
            resp = conn.getresponse()
            payload = resp.read()
            return resp.status, resp.reason, resp.getheaders(), payload
        finally:
            conn.close()

    def answer(self, status, payload, content_type="application/xml"):
        self.send_response_only(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(payload)
        self.wfile.flush()

    def drop(self, reset):
        if reset:
            # Linger 0: close sends RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        else:
            self.connection.shutdown(socket.SHUT_RDWR)
        self.close_connection = True
        self.connection.close()

    def control(self, body):
        if self.command == "POST":
            try:
                spec = json.loads(body or b"{}")
                error = self.state.configure(spec) if isinstance(spec, dict) else "a JSON object"
            except ValueError as e:
                error = f"not JSON: {e}"
            if error:
                self.answer(400, json.dumps({"error": error}).encode(), "application/json")
                return
            log(control=self.state.snapshot())
        elif self.command != "GET":
            self.answer(405, b'{"error": "GET or POST"}', "application/json")
            return
        self.answer(200, json.dumps(self.state.snapshot()).encode(), "application/json")

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = handle_any


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        log(error=f"handler: {sys.exc_info()[1]!r}", client=str(client_address))


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--upstream", required=True, help="the S3 server, http://host:port")
    parser.add_argument("--listen", default="127.0.0.1:0", help="host:port (port 0: any free port)")
    args = parser.parse_args()
    up = urllib.parse.urlsplit(args.upstream)
    if up.scheme != "http" or not up.hostname:
        parser.error("--upstream must be http://host:port")
    host, _, port = args.listen.rpartition(":")
    Handler.state = State()
    Handler.upstream = (up.hostname, up.port or 80)
    server = Server((host or "127.0.0.1", int(port)), Handler)
    print(json.dumps({"listening": server.server_address[1]}), flush=True)
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
