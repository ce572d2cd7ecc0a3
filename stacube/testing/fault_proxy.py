"""A fault-injecting HTTP proxy on 127.0.0.1, to show that stacube survives flaky sources.

It forwards every request to one upstream server and, at ``--rate``, answers with a fault instead:
``500``, ``503``, ``429`` (with ``Retry-After``), ``reset`` (the connection is dropped), ``stall``
(nothing is sent for ``--stall-s`` seconds, then the connection is dropped), ``truncated`` (half the
body, then the connection is dropped) or ``corrupt`` (an HTML error page with status 200 instead of
the TIFF or JSON asked for). Bytes garbled inside a compressed TIFF tile are not among them: GDAL
can decode those into wrong values without an error, and no client can tell without checksums.
``--always SUBSTRING`` makes every request whose path contains it fail with 503, to stand in
for a source that never recovers. The upstream's own URL inside a body (a STAC API's
``next`` and ``self`` links) is rewritten to the proxy's, so paging stays behind the proxy. Faults
are drawn from ``--seed``; their counts are served at ``/_faults`` (JSON). Run as
``python -m stacube.testing.fault_proxy PORT --upstream URL``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import random
import socket
import struct
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import urlparse

KINDS = ("500", "503", "429", "reset", "stall", "truncated", "corrupt")
CORRUPT_BODY = b"<html><body><h1>Service temporarily unavailable</h1></body></html>\n" * 40
HOP_HEADERS = {"connection", "keep-alive", "transfer-encoding", "content-length", "proxy-connection", "upgrade"}


class FaultHandler(BaseHTTPRequestHandler):
    upstream: ClassVar[str] = ""
    public: ClassVar[str] = ""
    rate: ClassVar[float] = 0.0
    kinds: ClassVar[tuple[str, ...]] = KINDS
    always: ClassVar[tuple[str, ...]] = ()
    stall_s: ClassVar[float] = 5.0
    draws: ClassVar[random.Random] = random.Random(0)
    lock: ClassVar[threading.Lock] = threading.Lock()
    counts: ClassVar[Counter] = Counter()
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args) -> None:
        """Quiet."""

    def _draw(self) -> str | None:
        if any(part in self.path for part in self.always):
            return "always"
        with self.lock:
            if self.draws.random() >= self.rate:
                return None
            return self.draws.choice(self.kinds)

    def _drop(self) -> None:
        """Close the connection at once, with a TCP reset."""
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.close_connection = True

    def _send(self, status: int, headers: list[tuple[str, str]], body: bytes, length: int | None = None) -> None:
        self.send_response(status)
        for name, value in headers:
            self.send_header(name, value)
        if self.command == "HEAD" and getattr(self, "head_length", None) is not None:
            length = self.head_length
        self.send_header("Content-Length", str(len(body) if length is None else length))
        self.send_header("Connection", "close")
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)
        self.close_connection = True

    def _forward(self) -> tuple[int, list[tuple[str, str]], bytes]:
        target = urlparse(self.upstream)
        connection = http.client.HTTPConnection(target.hostname, target.port, timeout=60)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else None
        headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_HEADERS | {"host"}}
        connection.request(self.command, self.path, body=body, headers=headers)
        response = connection.getresponse()
        data = response.read()
        connection.close()
        kept = [(k, v) for k, v in response.getheaders() if k.lower() not in HOP_HEADERS]
        if self.command == "HEAD":  # no body: keep the size the upstream announces
            self.head_length = int(response.getheader("Content-Length") or 0)
        if self.upstream.encode() in data:
            data = data.replace(self.upstream.encode(), self.public.encode())
        return response.status, kept, data

    def _handle(self) -> None:
        if self.path == "/_faults":
            with self.lock:
                body = json.dumps(dict(self.counts)).encode()
            self._send(200, [("Content-Type", "application/json")], body)
            return
        fault = self._draw()
        if fault is not None:
            with self.lock:
                self.counts[fault] += 1
        if fault in ("500", "503", "always"):
            self._send(503 if fault != "500" else 500, [("Content-Type", "text/plain")], b"injected fault")
            return
        if fault == "429":
            self._send(429, [("Retry-After", "1"), ("Content-Type", "text/plain")], b"slow down")
            return
        if fault == "reset":
            self._drop()
            return
        if fault == "stall":
            time.sleep(self.stall_s)
            self._drop()
            return
        status, headers, data = self._forward()
        if fault == "truncated" and len(data) > 1:
            self._send(status, headers, data[: len(data) // 2], length=len(data))
            self._drop()
            return
        if fault == "corrupt":  # what a CDN or captive portal sends: an error page, as a 200
            self._send(200, [("Content-Type", "text/html")], CORRUPT_BODY)
            return
        self._send(status, headers, data)

    do_GET = do_HEAD = do_POST = _handle


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--upstream", required=True, help="the server to forward to, e.g. http://127.0.0.1:8000")
    parser.add_argument("--rate", type=float, default=0.1, help="share of requests answered with a fault")
    parser.add_argument("--kinds", default=",".join(KINDS), help=f"faults to draw from: {', '.join(KINDS)}")
    parser.add_argument("--always", default="", help="comma-separated path parts that always fail (503)")
    parser.add_argument("--stall-s", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    kinds = tuple(k for k in args.kinds.split(",") if k)
    unknown = set(kinds) - set(KINDS)
    if unknown:
        parser.error(f"unknown fault kinds {sorted(unknown)}; choose from {KINDS}")
    handler = type("Handler", (FaultHandler,), {
        "upstream": args.upstream.rstrip("/"), "public": f"http://127.0.0.1:{args.port}", "rate": args.rate,
        "kinds": kinds, "always": tuple(p for p in args.always.split(",") if p), "stall_s": args.stall_s,
        "draws": random.Random(args.seed), "lock": threading.Lock(), "counts": Counter()})
    server = ThreadingHTTPServer(("127.0.0.1", args.port), handler)
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
