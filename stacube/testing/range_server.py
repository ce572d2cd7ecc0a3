"""Serve a folder over HTTP with Range support (RangeHTTPServer's handler), optionally slowed down.

``--latency-ms`` adds a delay before every response, to measure what a load costs when the source
is a real remote server rather than loopback; ``--fail-first N`` answers the first N requests for
each file with 503, to show that retries recover; ``--require-token T`` answers 403 to any request
without ``?sig=T``, as a store of signed URLs does. Run as ``python -m stacube.testing.range_server``.
"""

from __future__ import annotations

import argparse
import functools
import os
import threading
import time
from http.server import ThreadingHTTPServer
from typing import ClassVar
from urllib.parse import parse_qs, urlsplit

from RangeHTTPServer import RangeRequestHandler


class _Handler(RangeRequestHandler):
    latency_s = 0.0
    fail_first = 0  # answer the first N requests for each path with 503, as a flaky server does
    token = ""  # when set, only requests signed with ?sig=<token> are served
    _seen: ClassVar[dict[str, int]] = {}  # requests per path, shared by the handler instances
    _seen_lock = threading.Lock()

    def send_head(self):
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.token and parse_qs(urlsplit(self.path).query).get("sig") != [self.token]:
            self.send_error(403, "missing or wrong signature")
            return None
        if self.fail_first:
            with self._seen_lock:
                count = self._seen[self.path] = self._seen.get(self.path, 0) + 1
            if count <= self.fail_first:
                self.send_error(503, "injected failure")
                return None
        return super().send_head()

    def log_message(self, format: str, *args) -> None:
        """Quiet: one line per request would drown the output of a demo or a benchmark."""


class _Server(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: GDAL opening a few COGs from several threads at once
    # overflows it, and each dropped connection costs the client a 1 s SYN retransmit (a stall that
    # looked like a slow read in the benchmarks).
    request_queue_size = 128


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--directory", default=os.getcwd())
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--fail-first", type=int, default=0, help="503 for the first N requests of each path")
    parser.add_argument("--require-token", default="", help="serve only requests signed with ?sig=TOKEN")
    args = parser.parse_args(argv)
    handler = type("Handler", (_Handler,), {"latency_s": args.latency_ms / 1000, "fail_first": args.fail_first,
                                            "token": args.require_token, "_seen": {}})
    server = _Server((args.bind, args.port), functools.partial(handler, directory=args.directory))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
