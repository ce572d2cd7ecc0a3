"""Local servers for the sample collection: COGs over HTTP with Range support, and a STAC API.

Both are real programs started as subprocesses on 127.0.0.1 (``RangeHTTPServer`` and
``rustac serve``), so the demo and the integration tests exercise real HTTP.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from .generate import publish_items


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for(url: str, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server for {url} exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return  # it answered, if only with an error status: it is up
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise TimeoutError(f"server for {url} did not answer within {timeout} s")


@dataclass
class ServerProcess:
    """A started server: its base URL and process; ``stop()`` ends it."""

    url: str
    """Where the server answers, on 127.0.0.1."""
    process: subprocess.Popen
    """The server's process (stopped by ``stop``)."""

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_file_server(folder: str | Path, port: int | None = None, latency_ms: float = 0.0,
                      fail_first: int = 0, require_token: str = "") -> ServerProcess:
    """Serve ``folder`` over HTTP with Range support (RangeHTTPServer's handler) on 127.0.0.1; with
    ``require_token``, only to requests signed with ``?sig=<token>``."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "stacube.testing.range_server", str(port), "--directory", str(Path(folder).resolve()),
         "--latency-ms", str(latency_ms), "--fail-first", str(fail_first), "--require-token", require_token],
        cwd=folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_for(url + "/", process)
    return ServerProcess(url, process)


def rustac_executable() -> str:
    candidate = Path(sys.executable).with_name("rustac")
    found = str(candidate) if candidate.exists() else shutil.which("rustac")
    if not found:
        raise FileNotFoundError("the 'rustac' command (from the rustac wheel) is not installed")
    return found


def start_stac_api(items_json: str | Path, port: int | None = None) -> ServerProcess:
    """Serve an ItemCollection as a STAC API with ``rustac serve`` (memory backend, pages results)."""
    port = port or free_port()
    process = subprocess.Popen(
        [rustac_executable(), "serve", str(items_json), "--addr", f"127.0.0.1:{port}", "--create-collections"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_for(url + "/", process)
    return ServerProcess(url, process)


@dataclass(frozen=True)
class Faults:
    """What a fault proxy injects (see ``stacube.testing.fault_proxy``): the share of requests that fail,
    the kinds drawn from, path parts that always fail, how long a stall lasts, the random seed."""

    rate: float = 0.1
    """The share of requests that fail (0 to 1)."""
    kinds: tuple[str, ...] = ("500", "503", "429", "reset", "stall", "truncated", "corrupt")
    """The kinds of fault drawn from."""
    always: tuple[str, ...] = ()
    """Path parts whose requests always fail."""
    stall_s: float = 5.0
    """How long a stall lasts, in seconds."""
    seed: int = 0
    """The random seed: the same faults for the same requests."""


def start_fault_proxy(upstream: str, faults: Faults, port: int | None = None) -> ServerProcess:
    """A fault-injecting proxy in front of ``upstream`` on 127.0.0.1."""
    port = port or free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "stacube.testing.fault_proxy", str(port), "--upstream", upstream,
         "--rate", str(faults.rate), "--kinds", ",".join(faults.kinds), "--always", ",".join(faults.always),
         "--stall-s", str(faults.stall_s), "--seed", str(faults.seed)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    _wait_for(url + "/_faults", process)
    return ServerProcess(url, process)


def fault_counts(proxy: ServerProcess) -> dict[str, int]:
    """How many faults of each kind a proxy has injected so far."""
    with urllib.request.urlopen(proxy.url + "/_faults", timeout=10) as response:
        return json.loads(response.read())


@contextlib.contextmanager
def serve_sample(folder: str | Path, latency_ms: float = 0.0, fail_first: int = 0, faults: Faults | None = None,
                 api_faults: Faults | None = None,
                 require_token: str = "") -> Iterator[tuple[ServerProcess, ServerProcess]]:
    """Serve a generated sample: yields (file server, STAC API) and stops both on exit.

    ``latency_ms`` delays every COG response, to stand in for a remote server; ``fail_first``
    answers the first requests for each COG with 503, to stand in for a flaky one. With ``faults``,
    a fault proxy sits in front of each (the Items point at the file proxy) and those are yielded;
    ``api_faults`` sets the STAC API's proxy apart (default: ``faults`` with another seed).
    """
    folder = Path(folder)
    started: list[ServerProcess] = []
    try:
        files = start_file_server(folder, latency_ms=latency_ms, fail_first=fail_first, require_token=require_token)
        started.append(files)
        if faults is not None:
            files = start_fault_proxy(files.url, faults)
            started.append(files)
        served = publish_items(folder, files.url, folder / f"items-{files.url.rsplit(':', 1)[-1]}.json")
        api = start_stac_api(served)
        started.append(api)
        if faults is not None or api_faults is not None:
            api = start_fault_proxy(api.url, api_faults or dataclasses.replace(faults, seed=faults.seed + 1))
            started.append(api)
        yield files, api
    finally:
        for server in reversed(started):
            server.stop()
