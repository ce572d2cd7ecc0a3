"""Where a cube lives: an Icechunk repository on local disk or S3, chosen by the cube's path or URL."""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlparse

import icechunk

from .errors import CubeExistsError, CubeNotFoundError

if "ICECHUNK_LOG" not in os.environ:
    # Icechunk warns on every local repository open (concurrent-commit safety); keep users' logs to errors.
    icechunk.set_logs_filter("error")

BRANCH = "main"
# Icechunk caches the manifests it reads or writes, up to 15 million chunk references by default,
# at ~400 bytes each here. Every commit writes new manifests, so a process that commits run after
# run (a notebook, a soak, a long-lived worker) kept every superseded manifest: +1 MB per run,
# towards gigabytes (bench/soak.py). 250,000 references (~100 MB) still hold the current manifests
# of a cube of ~80,000 patches of three arrays; a larger cube re-reads some per load.
CHUNK_REFS_CACHED = 250_000


def _config() -> icechunk.RepositoryConfig:
    text = os.environ.get("STACUBE_CHUNK_REFS_CACHED", str(CHUNK_REFS_CACHED))
    if not text.isdigit():
        raise ValueError(f"STACUBE_CHUNK_REFS_CACHED={text!r} must be a whole number of chunk references")
    return icechunk.RepositoryConfig(caching=icechunk.CachingConfig(num_chunk_refs=int(text)))


def storage_for(url: str | os.PathLike) -> icechunk.Storage:
    """Icechunk storage for a local path or an ``s3://bucket/prefix`` URL (credentials from the environment)."""
    text = os.fspath(url)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        bucket, prefix = parsed.netloc, parsed.path.lstrip("/")
        if not bucket:
            raise CubeNotFoundError(f"the S3 URL {text!r} names no bucket")
        endpoint = os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")
        return icechunk.s3_storage(
            bucket=bucket,
            prefix=prefix,
            from_env=True,
            endpoint_url=endpoint,
            allow_http=bool(endpoint and endpoint.startswith("http://")),
            force_path_style=bool(endpoint),
        )
    if parsed.scheme not in ("", "file"):
        raise CubeNotFoundError(f"unsupported cube location {text!r}: use a local path or s3://bucket/prefix")
    path = Path(parsed.path if parsed.scheme == "file" else text).expanduser().resolve()
    return icechunk.local_filesystem_storage(str(path))


def is_local(url: str | os.PathLike) -> bool:
    return urlparse(os.fspath(url)).scheme in ("", "file")


def create_repository(url: str | os.PathLike) -> icechunk.Repository:
    storage = storage_for(url)
    if icechunk.Repository.exists(storage):
        raise CubeExistsError(f"a cube already exists at {os.fspath(url)!r}; use Cube.open or Cube.open_or_create")
    if is_local(url):
        path = Path(os.fspath(url)).expanduser()
        if path.exists() and any(path.iterdir()):
            raise CubeExistsError(f"{os.fspath(url)!r} exists and is not an empty folder")
    icechunk.Repository.create(storage)  # the cache bound is this process's choice: not stored in the cube
    return icechunk.Repository.open(storage, config=_config())


def open_repository(url: str | os.PathLike) -> icechunk.Repository:
    storage = storage_for(url)
    if not icechunk.Repository.exists(storage):
        raise CubeNotFoundError(f"no cube at {os.fspath(url)!r}; create one with Cube.create(path, spec)")
    return icechunk.Repository.open(storage, config=_config())


def initialized_chunks(session: icechunk.Session, array_path: str) -> list[tuple[int, ...]]:
    """Coordinates of the chunks an array holds, from Icechunk's manifest (no chunk is read)."""

    async def collect() -> list[tuple[int, ...]]:
        return [tuple(int(c) for c in coords) async for coords in session.chunk_coordinates(array_path)]

    # A thread of its own, so this works inside a running event loop too (a notebook).
    with ThreadPoolExecutor(max_workers=1) as pool:
        return sorted(pool.submit(asyncio.run, collect()).result())


@contextlib.contextmanager
def commit_lock(url: str | os.PathLike) -> Iterator[None]:
    """Serialise commits to a cube on local disk, across threads and processes.

    Icechunk's local filesystem storage has no conditional writes: two commits at the same moment
    can both move the branch and one is lost. Object stores (S3) have them and need no lock.
    """
    if not is_local(url):
        yield
        return
    path = Path(urlparse(os.fspath(url)).path if os.fspath(url).startswith("file:") else os.fspath(url))
    with open(path.expanduser() / "stacube-commit.lock", "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
