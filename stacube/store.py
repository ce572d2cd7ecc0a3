"""Where a cube lives: an Icechunk repository on local disk or S3, chosen by the cube's path or URL."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import fcntl
import itertools
import math
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote, urlparse

import icechunk

from .errors import CubeExistsError, CubeNotFoundError, S3AccessError, SpecError

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


# S3 requests. Icechunk's own defaults (10 tries, backoff up to 3 minutes, no timeouts) took 11-16 s
# to report an endpoint that refuses connections and never reported one that accepts and stays
# silent. These are the AWS SDKs' standard: 3 tries, a 3 s connect timeout. The read timeout counts
# from sending a request to the first byte of its answer, so it includes uploading a chunk: 60 s is
# 8 MB at ~1 Mbit/s. Each can be set in the environment (README, "Cubes on S3").
S3_MAX_TRIES = 3
S3_CONNECT_TIMEOUT = 3.0  # seconds
S3_READ_TIMEOUT = 60.0  # seconds
SETTINGS_HELP = "STACUBE_S3_MAX_TRIES, STACUBE_S3_CONNECT_TIMEOUT and STACUBE_S3_READ_TIMEOUT"


# What Icechunk's settings hold: tries as a 16-bit, timeouts as 32-bit milliseconds (~49 days).
MOST_TRIES = 65_535
MOST_SECONDS = 4_294_967


def _setting(name: str, default: float, whole: bool = False) -> float:
    text = os.environ.get(name, "").strip()
    if not text:
        return default
    try:
        value = float(int(text)) if whole else float(text)
    except (ValueError, OverflowError):  # OverflowError: a whole number past what a float holds
        value = math.nan
    most = MOST_TRIES if whole else MOST_SECONDS
    if not (math.isfinite(value) and 0 < value <= most):
        raise SpecError(f"{name}={text!r} must be a positive {'whole number' if whole else 'number of seconds'}, "
                        f"at most {most:,}")
    return value


def s3_settings() -> icechunk.StorageSettings:
    """How Icechunk talks to S3: tries and timeouts, from the environment or stacube's defaults above.

    Icechunk's own defaults take long to report an endpoint that refuses connections and never report
    one that stays silent; these fail a run in seconds with an error naming the settings.

    Returns
    -------
    icechunk.StorageSettings
        ``STACUBE_S3_MAX_TRIES`` tries, ``STACUBE_S3_CONNECT_TIMEOUT`` and ``STACUBE_S3_READ_TIMEOUT``
        seconds (``S3_MAX_TRIES``, ``S3_CONNECT_TIMEOUT``, ``S3_READ_TIMEOUT`` where unset).

    Raises
    ------
    SpecError
        If one of those variables is set to anything but a positive number (a whole one for the tries).
    """
    connect = _setting("STACUBE_S3_CONNECT_TIMEOUT", S3_CONNECT_TIMEOUT)
    read = _setting("STACUBE_S3_READ_TIMEOUT", S3_READ_TIMEOUT)
    return icechunk.StorageSettings(
        retries=icechunk.StorageRetriesSettings(
            max_tries=int(_setting("STACUBE_S3_MAX_TRIES", S3_MAX_TRIES, whole=True)),
            initial_backoff_ms=200, max_backoff_ms=5_000),
        timeouts=icechunk.StorageTimeoutSettings(connect_timeout_ms=math.ceil(connect * 1000),
                                                 read_timeout_ms=math.ceil(read * 1000)),
    )


def _config(url: str | None = None) -> icechunk.RepositoryConfig:
    """This process's settings for a repository: never stored in the cube (other readers choose their own).

    Raises SpecError if ``STACUBE_CHUNK_REFS_CACHED`` or an ``STACUBE_S3_*`` setting is unusable."""
    text = os.environ.get("STACUBE_CHUNK_REFS_CACHED", str(CHUNK_REFS_CACHED))
    if not (text.isascii() and text.isdigit() and len(text) <= 20 and int(text) < 2**64):  # Icechunk: 64 bits
        raise SpecError(f"STACUBE_CHUNK_REFS_CACHED={text!r} must be a whole number of chunk references")
    return icechunk.RepositoryConfig(caching=icechunk.CachingConfig(num_chunk_refs=int(text)),
                                     storage=s3_settings() if url and not is_local(url) else None)


def cube_url(url: str | os.PathLike) -> str:
    """The one spelling of a cube's location that its storage, its commit lock and ``Cube.url`` use.

    A local path (or ``file:`` URL) becomes absolute, with ``~``, ``.``, ``..`` and symbolic links
    resolved: ``<dir>/missing/../c`` is ``<dir>/c`` for every one of them. ``s3://bucket/prefix`` keeps
    its prefix, less one trailing ``/`` (Icechunk reads ``a/`` as ``a``); a prefix with ``.``, ``..``
    or empty segments is refused, since S3 keys are not paths: ``a/../b`` would be a folder named
    ``..`` to S3 and another place to a reader who resolves it.

    Parameters
    ----------
    url : str or os.PathLike
        A local path, a ``file:`` URL or ``s3://bucket/prefix``.

    Returns
    -------
    str
        An absolute local path, or ``s3://bucket/prefix``.

    Raises
    ------
    SpecError
        If ``url`` is no cube location as written, whether a cube is there or not: its scheme is neither
        ``s3`` nor ``file`` (nor none); an S3 URL names no bucket, carries credentials, has a ``;``, ``?``
        or ``#`` part, names no prefix or has an empty, ``.`` or ``..`` segment in it; a local path is
        empty. (A well-formed location where no cube is is ``open_repository``'s CubeNotFoundError.)
    """
    text = os.fsdecode(url)
    parsed = urlparse(text)
    if parsed.scheme == "s3":
        if not parsed.netloc:
            raise SpecError(f"the S3 URL {text!r} names no bucket: name a cube as s3://bucket/prefix")
        if "@" in parsed.netloc:
            raise SpecError(f"the S3 URL {_without_userinfo(text)!r} carries credentials: S3 credentials come from "
                            "the environment (AWS_ACCESS_KEY_ID, AWS_PROFILE, ...), never from a cube's URL")
        if parsed.params or parsed.query or parsed.fragment:
            raise SpecError(f"the S3 URL {text!r} has a ';', '?' or '#' part: name a cube as s3://bucket/prefix")
        prefix = parsed.path[1:]
        prefix = prefix[:-1] if prefix.endswith("/") else prefix
        if not prefix:
            raise SpecError(f"the S3 URL {text!r} names no prefix: a cube lives in a folder of its bucket, "
                            "s3://bucket/prefix")
        if any(segment in ("", ".", "..") for segment in prefix.split("/")):
            raise SpecError(f"the S3 URL {text!r} has an empty, '.' or '..' segment in its prefix: S3 keys are "
                            "not paths; spell the prefix as it is, e.g. s3://bucket/cubes/dem")
        return f"s3://{parsed.netloc}/{prefix}"
    if parsed.scheme not in ("", "file"):
        raise SpecError(f"unsupported cube location {_without_userinfo(text)!r}: use a local path or "
                        "s3://bucket/prefix")
    path = unquote(parsed.path) if parsed.scheme == "file" else text
    if not path.strip():
        raise SpecError(f"the cube path {text!r} is empty")
    return os.path.realpath(os.path.expanduser(path))


def _without_userinfo(url: str) -> str:
    return re.sub(r"(?<=://)[^/@]*@", "***@", url)


def storage_for(url: str | os.PathLike) -> icechunk.Storage:
    """Icechunk storage for a local path or an ``s3://bucket/prefix`` URL: the one place storage is chosen.

    On S3, credentials and region come from the environment (``AWS_*``); ``AWS_ENDPOINT_URL_S3`` or
    ``AWS_ENDPOINT_URL`` names another endpoint (MinIO, a proxy), addressed path-style.

    Parameters
    ----------
    url : str or os.PathLike
        The cube's location, as ``cube_url`` reads it.

    Returns
    -------
    icechunk.Storage
        Local filesystem storage, or S3 storage.

    Raises
    ------
    SpecError
        If ``url`` is not a cube location ``cube_url`` accepts.
    """
    location = cube_url(url)
    if location.startswith("s3://"):
        bucket, prefix = location[len("s3://"):].split("/", 1)
        endpoint = _endpoint()
        return icechunk.s3_storage(
            bucket=bucket,
            prefix=prefix,
            from_env=True,
            endpoint_url=endpoint,
            allow_http=bool(endpoint and endpoint.startswith("http://")),
            force_path_style=bool(endpoint),
        )
    return icechunk.local_filesystem_storage(location)


def _endpoint() -> str | None:
    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL")


def is_local(url: str | os.PathLike) -> bool:
    """Whether ``url`` is on local disk, where commits need ``commit_lock`` and S3 settings do not apply.

    Parameters
    ----------
    url : str or os.PathLike
        A cube's location.

    Returns
    -------
    bool
        True for a path or a ``file:`` URL; False for ``s3://`` or any other scheme.
    """
    return urlparse(os.fsdecode(url)).scheme in ("", "file")


@contextlib.contextmanager
def _s3_errors(url: str | os.PathLike) -> Iterator[None]:
    """Icechunk's S3 failures as one S3AccessError naming the endpoint, the cube and the settings."""
    try:
        yield
    except icechunk.StorageError as error:
        if is_local(url):
            raise
        endpoint = _endpoint()
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION")
        where = (_without_userinfo(endpoint) if endpoint
                 else "AWS's S3 endpoint" + (f" for region {region}" if region else ""))
        detail = _without_userinfo(str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__)
        tries = int(_setting("STACUBE_S3_MAX_TRIES", S3_MAX_TRIES, whole=True))
        raise S3AccessError(
            f"S3 at {where} failed for the cube {os.fsdecode(url)!r} after {tries} tries (connect timeout "
            f"{_setting('STACUBE_S3_CONNECT_TIMEOUT', S3_CONNECT_TIMEOUT):g} s, read timeout "
            f"{_setting('STACUBE_S3_READ_TIMEOUT', S3_READ_TIMEOUT):g} s; set {SETTINGS_HELP} to change them): "
            f"{detail}") from error


def exists(url: str | os.PathLike) -> bool:
    """Whether an Icechunk repository is at ``url``, so that opening and creating can tell the cases apart.

    Parameters
    ----------
    url : str or os.PathLike
        The cube's location (a local path, a ``file:`` URL or ``s3://bucket/prefix``).

    Returns
    -------
    bool
        False for nothing there, or a local file rather than a folder.

    Raises
    ------
    SpecError
        If ``url`` is not a cube location ``cube_url`` accepts.
    S3AccessError
        If S3 does not answer after its tries (``s3_settings``).
    SpecError
        If an ``STACUBE_S3_*`` setting is not a positive number (S3 only).
    """
    if is_local(url) and not os.path.isdir(cube_url(url)):
        return False  # nothing there, or a file: Icechunk would fail on "not a directory"
    with _s3_errors(url):
        return icechunk.Repository.exists(storage_for(url), s3_settings() if not is_local(url) else None)


def _open(url: str | os.PathLike) -> icechunk.Repository:
    with _s3_errors(url):
        return icechunk.Repository.open(storage_for(url), config=_config(cube_url(url)))


def is_bare(repo: icechunk.Repository) -> bool:
    """Whether ``repo`` holds nothing but Icechunk's first, empty snapshot: a cube creation that never
    committed (interrupted, or under way in another process). Cube.create takes such a one over.

    Parameters
    ----------
    repo : icechunk.Repository
        An opened repository.

    Returns
    -------
    bool
        True for one snapshot, the ``main`` branch alone and no tag.
    """
    first = list(itertools.islice(repo.ancestry(branch=BRANCH), 2))
    return len(first) == 1 and set(repo.list_branches()) == {BRANCH} and not repo.list_tags()


def create_repository(url: str | os.PathLike, populate: Callable[[icechunk.Repository], None]) -> icechunk.Repository:
    """A new repository at ``url`` holding what ``populate`` commits into it, or a CubeExistsError.

    Of several processes creating one cube at once exactly one gets it; the others get CubeExistsError,
    by which time the cube can be opened. A creation that fails leaves nothing in the way of the next:
    on disk, what it created is removed (the folder is as it was, or absent); on S3, where stacube can
    neither move nor delete, the repository it left holds no cube, and the next creation takes it over.
    Whatever ``populate`` raises is raised as it is, after that cleanup.

    Parameters
    ----------
    url : str or os.PathLike
        Where the cube goes: a local path (missing, or an empty folder) or ``s3://bucket/prefix``.
    populate : Callable[[icechunk.Repository], None]
        Writes the cube's layout into the new repository and commits it.

    Returns
    -------
    icechunk.Repository
        The new repository, opened with this process's settings.

    Raises
    ------
    CubeExistsError
        If a cube is there already, another process created it meanwhile, or something else is in the
        way (a file, a folder holding other files, S3 objects that are not a repository).
    SpecError
        If ``url`` is not a cube location ``cube_url`` accepts.
    S3AccessError
        If S3 does not answer after its tries.
    OSError
        If the folder cannot be made or written (``Cube.create`` turns it into a ``StorageError``).
    SpecError
        If ``STACUBE_CHUNK_REFS_CACHED`` is not a whole number, or an ``STACUBE_S3_*`` setting not a
        positive number.
    """
    given, location = os.fsdecode(url), cube_url(url)
    if not is_local(location):
        return _create_s3(given, location, populate)
    target = Path(location)
    if not os.path.lexists(target):
        with contextlib.suppress(_TargetAppeared):
            return _create_by_rename(given, target, populate)
    if not target.is_dir():
        raise CubeExistsError(f"{given!r} exists and is not a folder")
    return _create_in_place(given, target, populate)


class _TargetAppeared(Exception):
    """The target folder was made by someone else while a cube was being staged for it."""


def _create_by_rename(given: str, target: Path, populate: Callable[[icechunk.Repository], None]
                      ) -> icechunk.Repository:
    """Build the cube in a hidden sibling folder and move it into place whole: a rename is atomic, so
    no reader ever sees half a cube, and of two creators the one whose rename lands wins."""
    made = _make_folders(target.parent)
    staging = target.parent / f".{target.name}.stacube-creating-{uuid.uuid4().hex[:12]}"
    try:
        os.mkdir(staging)
        populate(icechunk.Repository.create(icechunk.local_filesystem_storage(str(staging))))
        try:
            os.rename(staging, target)
        except OSError as err:
            if err.errno not in (errno.ENOTEMPTY, errno.EEXIST, errno.ENOTDIR, errno.EISDIR, errno.EBUSY,
                                 errno.EXDEV):
                raise
            raise _TargetAppeared() from err  # a cube, a file or a mount point: decided in place
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        for folder in reversed(made):
            with contextlib.suppress(OSError):
                folder.rmdir()  # only ours, and only while empty
        raise
    return _open(target)


def _make_folders(folder: Path) -> list[Path]:
    """``mkdir -p folder``; the folders it made, outermost first."""
    missing = [p for p in (folder, *folder.parents) if not os.path.lexists(p)][::-1]
    made = []
    for path in missing:
        try:
            path.mkdir()
        except FileExistsError:
            continue
        made.append(path)
    return made


LOCK_NAME = "stacube-commit.lock"


@contextlib.contextmanager
def _folder_lock(folder: Path) -> Iterator[bool]:
    """The commit lock of the cube in ``folder``, held; yields whether this call made the lock file.

    Whoever made it may delete it (a failed creation leaving the folder as it found it): a process
    that was waiting on the deleted file sees it is no longer the lock file and takes the new one.
    """
    path = folder / LOCK_NAME
    while True:
        try:
            fd, made = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666), True
        except FileExistsError:
            try:
                fd, made = os.open(path, os.O_RDWR), False
            except FileNotFoundError:
                continue
        fcntl.flock(fd, fcntl.LOCK_EX)
        try:
            current = os.stat(path).st_ino
        except FileNotFoundError:
            current = None
        if current == os.fstat(fd).st_ino:
            break
        os.close(fd)
    try:
        yield made
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def _create_in_place(given: str, target: Path, populate: Callable[[icechunk.Repository], None]
                     ) -> icechunk.Repository:
    """Create in an existing folder (it may be a mount point, or its parent read-only), under the
    cube's commit lock: empty, it gets a cube, and is emptied again if that fails; holding a
    repository a creation never committed to, the creation is finished; anything else is in the way."""
    storage = icechunk.local_filesystem_storage(str(target))
    names = {p.name for p in target.iterdir()}
    if names and LOCK_NAME not in names and not icechunk.Repository.exists(storage):
        # other files, and no creation under way (it would hold the lock): leave it as it is, no lock file
        raise CubeExistsError(f"{given!r} exists and is not an empty folder")
    with _folder_lock(target) as made_lock:
        empty = not any(p.name != LOCK_NAME for p in target.iterdir())
        try:
            if empty:
                # the lock file is the one thing in the folder: checked just now, under the lock
                repo = icechunk.Repository.create(storage, check_clean_root=False)
            elif not icechunk.Repository.exists(storage):
                raise CubeExistsError(f"{given!r} exists and is not an empty folder")
            else:
                repo = _open(target)
                if not is_bare(repo):
                    raise CubeExistsError(f"a cube already exists at {given!r}; use Cube.open or "
                                          "Cube.open_or_create")
            populate(repo)
        except BaseException:
            if empty:  # all in it is ours
                for child in target.iterdir():
                    if child.name != LOCK_NAME:
                        shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()
            if made_lock:
                (target / LOCK_NAME).unlink(missing_ok=True)
            raise
    return _open(target)


CREATE_WAIT = 20.0  # seconds a create waits for another process's create of the same S3 repository


def _appears(location: str, wait: float = CREATE_WAIT) -> bool:
    """Whether a repository exists at ``location`` now or within ``wait`` seconds."""
    deadline = time.monotonic() + wait
    while True:
        if exists(location):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.1)


def _create_s3(given: str, location: str, populate: Callable[[icechunk.Repository], None]) -> icechunk.Repository:
    """Icechunk's conditional writes pick the winner on S3: of the processes creating the repository
    only one succeeds, and of those committing a cube into it only the first."""
    storage = storage_for(location)
    with _s3_errors(location):
        if not exists(location):
            try:
                icechunk.Repository.create(storage)  # without this process's settings: those are not stored
            except icechunk.IcechunkError as err:
                # Another process may be creating it: its first objects are written ("repositories can only
                # be created in clean prefixes") before the repository can be opened. Wait for it to finish.
                if not _appears(location):
                    raise CubeExistsError(f"{given!r} holds objects that are not a cube (or another process's "
                                          f"create did not finish within {CREATE_WAIT:g} s): {err}") from err
        repo = _open(location)
        if not is_bare(repo):
            raise CubeExistsError(f"a cube already exists at {given!r}; use Cube.open or Cube.open_or_create")
        try:
            populate(repo)
        except icechunk.ConflictError as err:
            raise CubeExistsError(f"a cube was created at {given!r} by another process meanwhile") from err
    return repo


def open_repository(url: str | os.PathLike) -> icechunk.Repository:
    """The repository of an existing cube, opened with this process's settings (cache size, S3 tries).

    Parameters
    ----------
    url : str or os.PathLike
        The cube's location (a local path, a ``file:`` URL or ``s3://bucket/prefix``).

    Returns
    -------
    icechunk.Repository
        The opened repository.

    Raises
    ------
    CubeNotFoundError
        If ``url`` is a well-formed location holding no repository.
    SpecError
        If ``url`` is no cube location as written: another scheme, an S3 URL without a bucket or with
        a malformed prefix, an empty path (``cube_url``).
    S3AccessError
        If S3 does not answer after its tries.
    SpecError
        If ``STACUBE_CHUNK_REFS_CACHED`` is not a whole number, or an ``STACUBE_S3_*`` setting not a
        positive number.
    """
    if not exists(url):
        raise CubeNotFoundError(f"no cube at {os.fsdecode(url)!r}; create one with Cube.create(path, spec)")
    return _open(url)


def initialized_chunks(session: icechunk.Session, array_path: str) -> list[tuple[int, ...]]:
    """Coordinates of the chunks an array holds, from Icechunk's manifest (no chunk is read).

    Parameters
    ----------
    session : icechunk.Session
        A session on the snapshot to ask.
    array_path : str
        The array's path in the repository (``/zone/name``).

    Returns
    -------
    list[tuple[int, ...]]
        The coordinates of every written chunk, sorted.
    """

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

    Parameters
    ----------
    url : str or os.PathLike
        The cube's location; for ``s3://`` the context does nothing.

    Raises
    ------
    OSError
        If the lock file in the cube's folder cannot be opened (no such folder, not writable).
    SpecError
        If ``url`` is an empty path.
    """
    if not is_local(url):
        yield
        return
    with open(Path(cube_url(url)) / LOCK_NAME, "a+") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
