"""Serve a folder over HTTP with Range support (RangeHTTPServer's handler), optionally slowed down.

``--latency-ms`` adds a delay before every response, to measure what a load costs when the source
is a real remote server rather than loopback. Run as ``python -m stacube.sample.range_server``.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from http.server import ThreadingHTTPServer

from RangeHTTPServer import RangeRequestHandler


class _Handler(RangeRequestHandler):
    latency_s = 0.0

    def send_head(self):
        if self.latency_s:
            time.sleep(self.latency_s)
        return super().send_head()

    def log_message(self, format: str, *args) -> None:
        """Quiet: one line per request would drown the output of a demo or a benchmark."""


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--directory", default=os.getcwd())
    parser.add_argument("--latency-ms", type=float, default=0.0)
    args = parser.parse_args(argv)
    handler = type("Handler", (_Handler,), {"latency_s": args.latency_ms / 1000})
    server = ThreadingHTTPServer((args.bind, args.port), functools.partial(handler, directory=args.directory))
    server.daemon_threads = True
    server.serve_forever()


if __name__ == "__main__":
    main()
