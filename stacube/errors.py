"""Errors a user can act on: each names the bad value and what to do about it.

It also decides which failures a retry can fix (``is_permanent``) and which are the cube's or the
catalog's own storage refusing to be written (``storage_failure``): from exception types and OS error
numbers, never from the wording of a message, except where a library gives nothing else (Rust's
``(os error N)``, GDAL's HTTP status), which is read in one place each below.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
from collections.abc import Iterator


class StacubeError(Exception):
    """Base class of every error stacube raises on purpose."""


class PermanentError(StacubeError):
    """Marker of a failure that asking again cannot fix (bad input, a broken Item, a full disk)."""


class SpecError(PermanentError, ValueError):
    """The CubeSpec is inconsistent (bad dtype, nodata, chunks, zone, or source/variable mismatch)."""


class ROIError(PermanentError, ValueError):
    """The region of interest is unusable (no CRS, or outside every zone of the cube)."""


class TOIError(PermanentError, ValueError):
    """The time of interest is unusable (outside the time axis, or given to a cube without time)."""


class UnknownVariableError(PermanentError, KeyError):
    """A variable name the cube does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class CubeNotFoundError(StacubeError, FileNotFoundError):
    """No cube at the given path or URL."""


class CubeExistsError(StacubeError, FileExistsError):
    """A cube already exists where a new one was to be created."""


class CatalogError(StacubeError):
    """The source catalog could not be searched or synced (unreachable API, bad response)."""


class ParcelError(PermanentError, ValueError):
    """A parcel file or frame cannot be imported as it is (no id column, no CRS)."""


class ItemError(PermanentError, ValueError):
    """A catalog Item lacks what the cube needs (an asset, projection info)."""


class AssetReadError(StacubeError):
    """One asset of an Item could not be read; names its URL so the user can check that file."""

    def __init__(self, url: str, error: BaseException):
        from .signing import redact  # a signed URL or a password in one never reaches a log

        super().__init__(redact(f"{url}: {type(error).__name__}: {error}"))
        self.url = redact(url)
        # The verdict on the read failure, kept because the cause may be dropped (a signed URL in it)
        self.permanent = is_permanent(error)

    def __reduce__(self):  # pickled across processes (Prefect, Dask) with its message and verdict
        return _rebuilt_asset_error, (str(self), self.url, self.permanent)


class PatchReadError(StacubeError):
    """A patch could not be read from its source after retries; names the patch and the URL."""

    def __init__(self, message: str, patch_id: str, urls: list[str]):
        super().__init__(message)
        self.patch_id = patch_id
        self.urls = urls


class CubeDamagedError(PermanentError):
    """Stored chunks whose bytes no longer match their checksum: names the chunks, variable and snapshot."""


class StorageError(PermanentError, OSError):
    """The cube's or the catalog's storage refuses to be written: no space left, a read-only file
    system, permission denied, a file where a folder should be. Names the cause and the path; a retry
    cannot help, so none is made. ``errno`` is the OS error number, ``path`` the cube or catalog folder."""

    def __init__(self, message: str, path: str, code: int | None = None):
        super().__init__(message)
        self.path = path
        self.errno = code

    def __str__(self) -> str:  # OSError would format its own "[Errno n] ..." text
        return str(self.args[0]) if self.args else ""

    def __reduce__(self):
        return type(self), (str(self), self.path, self.errno)


def _rebuilt_asset_error(message: str, url: str, permanent: bool | None) -> AssetReadError:
    error = AssetReadError.__new__(AssetReadError)
    Exception.__init__(error, message)
    error.url, error.permanent = url, permanent
    return error


# --- which failures a retry can fix -----------------------------------------------------------------
# OS error numbers a retry cannot fix. The first ones are the storage refusing writes (the cube's or the
# catalog's: ``storage_failure``); ENOENT is a file that is not there (a source asset on disk).
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                            errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG})
PERMANENT_ERRNOS = STORAGE_ERRNOS | {errno.ENOENT}
# HTTP statuses that may answer differently when asked again; any other 4xx will not.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def http_status_permanent(status: int) -> bool:
    """A 4xx (a missing file, a refused credential, a bad query) is final; 408, 429 and 5xx are not."""
    return 400 <= status < 500 and status not in TRANSIENT_STATUS


def _rust_os_errno(error: BaseException) -> int | None:
    """The OS error number inside an error raised by a library written in Rust (Icechunk, rustac).

    They hand Python only text: Rust's ``std::io::Error`` prints itself as ``No space left on device
    (os error 28)``, and that suffix (a stable part of Rust's standard library) is the one piece of an
    Icechunk or rustac message stacube reads."""
    found = re.findall(r"\(os error (\d+)\)", str(error))
    return int(found[-1]) if found else None


def _gdal_verdict(error: BaseException) -> bool | None:
    """GDAL's failures, through rasterio: its error classes (``rasterio._err.CPLE_*``) say what kind of
    failure it was, but the HTTP status and the reason a file would not open are in the text only.
    This is the one place stacube reads GDAL's wording: an HTTP status (4xx final, 408/429/5xx not),
    "No such file or directory" and "Permission denied". A truncated or garbled download ("Cannot read
    TIFF header", or a file not recognised at all) is left to a retry."""
    err = sys.modules.get("rasterio._err")
    rio = sys.modules.get("rasterio.errors")
    if not ((err is not None and isinstance(error, err.CPLE_BaseError))
            or (rio is not None and isinstance(error, rio.RasterioError))):
        return None
    text = str(error)
    status = re.search(r"HTTP (?:response|error) code:? (\d{3})", text, re.IGNORECASE)
    if status:
        return http_status_permanent(int(status.group(1)))
    if err is not None and isinstance(error, (err.CPLE_AWSObjectNotFoundError, err.CPLE_AWSBucketNotFoundError,
                                              err.CPLE_AWSAccessDeniedError, err.CPLE_AWSInvalidCredentialsError,
                                              err.CPLE_AWSSignatureDoesNotMatchError, err.CPLE_NotSupportedError)):
        return True
    # (GDAL's "not recognized as a supported file format" is no verdict: a connection reset while it
    # read the header reads the same as a file of another format, so it is asked again)
    if re.search(r"no such file or directory|permission denied", text, re.IGNORECASE):
        return True
    return None


def _icechunk_verdict(error: BaseException) -> bool | None:
    ic = sys.modules.get("icechunk")
    if ic is None or not isinstance(error, ic.IcechunkError):
        return None
    if isinstance(error, ic.ConflictError):
        return False  # another writer moved the branch: asking again is how conflicts are settled
    if isinstance(error, ic.StorageError):
        if getattr(error, "kind", None) == "throttled":
            return False
        code = _rust_os_errno(error)
        return code in PERMANENT_ERRNOS if code is not None else None
    # A read-only repository or session, bad input, an unreadable format, something not found or
    # already there, a session in the wrong state: the same the next time.
    return isinstance(error, (ic.ReadOnlyError, ic.InvalidInputError, ic.FormatError, ic.NotFoundError,
                              ic.AlreadyExistsError, ic.SessionStateError))


def _http_verdict(error: BaseException) -> bool | None:
    """HTTP clients' errors that carry their status: pystac-client's APIError, requests' and urllib's."""
    status = getattr(error, "status_code", None)
    if status is None:
        status = getattr(getattr(error, "response", None), "status_code", None)
    if status is None and type(error).__name__ == "HTTPError":
        status = getattr(error, "code", None)
    return http_status_permanent(status) if isinstance(status, int) else None


def _verdict(error: BaseException) -> bool | None:
    """True: permanent, False: transient, None: this error alone does not say."""
    if isinstance(error, PermanentError):
        return True
    if isinstance(error, AssetReadError):
        return error.permanent
    for judge in (_gdal_verdict, _icechunk_verdict):
        verdict = judge(error)
        if verdict is not None:
            return verdict
    if isinstance(error, OSError) and isinstance(error.errno, int):
        return True if error.errno in PERMANENT_ERRNOS else None
    rustac = sys.modules.get("rustac")
    if rustac is not None and isinstance(error, rustac.RustacError):
        code = _rust_os_errno(error)
        return code in PERMANENT_ERRNOS if code is not None else None
    return _http_verdict(error)


def causes(error: BaseException) -> Iterator[BaseException]:
    """``error`` and the errors it came from (``raise ... from``, or raised while handling one, unless
    ``from None`` hid it), as a traceback shows them, once each."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or (None if current.__suppress_context__ else current.__context__)


def is_permanent(error: BaseException) -> bool:
    """Whether retrying cannot fix ``error``: the first error of its chain with a verdict decides.

    Permanent: stacube's bad-input and Item errors (``PermanentError``); OS errors out of space, read-only,
    permission denied, not a directory, no such file; Icechunk's read-only, invalid-input, format,
    not-found and session-state errors, and its storage errors caused by one of those OS errors; an
    HTTP 4xx other than 408/429 (GDAL, pystac-client, requests).
    Anything else (a 5xx, a 429, a reset or stalled connection, a truncated download, a file GDAL does
    not recognise, which a reset while it read the header also gives, a commit conflict, an error nobody
    classified) is worth another attempt."""
    for cause in causes(error):
        verdict = _verdict(cause)
        if verdict is not None:
            return verdict
    return False


def storage_failure(error: BaseException) -> int | None:
    """The OS error number when ``error`` comes from storage refusing a write (out of space, read-only,
    permission denied, a file in the way), else None. Looks through the whole chain (a PatchReadError
    from a chunk write that hit a full disk)."""
    for cause in causes(error):
        if isinstance(cause, StorageError):
            return cause.errno
        if isinstance(cause, StacubeError) and not isinstance(cause, PatchReadError):
            return None  # stacube said what it was already (a windows file that is a folder is a CatalogError)
        if _gdal_verdict(cause) is not None:
            return None  # a source that cannot be read, not our storage
        code = None
        if isinstance(cause, OSError) and isinstance(cause.errno, int):
            code = cause.errno
        elif any(m is not None and isinstance(cause, m) for m in _rust_error_types()):
            code = _rust_os_errno(cause)
        if code in STORAGE_ERRNOS:
            return code
    return None


def _rust_error_types() -> list[type]:
    ic, rustac = sys.modules.get("icechunk"), sys.modules.get("rustac")
    return [t for t in (getattr(ic, "StorageError", None), getattr(rustac, "RustacError", None)) if t is not None]


def _blocking_file(path: str) -> str | None:
    """The file standing where ``path`` (or one of its parent folders) should be a folder."""
    from pathlib import Path

    for candidate in [Path(path), *Path(path).parents]:
        if os.path.lexists(candidate):
            return None if candidate.is_dir() else str(candidate)
    return None


def storage_error(error: BaseException, path: str | os.PathLike, what: str) -> StorageError | None:
    """``error`` as a StorageError naming ``what`` (``"cube"``, ``"catalog folder"``) at ``path`` and the
    cause, when it is storage refusing a write; None otherwise."""
    code = storage_failure(error)
    if code is None:
        return None
    if isinstance(error, StorageError):
        return error
    path = os.fspath(path)
    cause = os.strerror(code)
    hint = {errno.ENOSPC: "free some space there (or move it elsewhere) and run again",
            errno.EDQUOT: "free some space within the quota (or move it elsewhere) and run again",
            errno.EROFS: "it can be read but not written: give a writable place to write to",
            errno.ENAMETOOLONG: "give a shorter path",
            }.get(code, "give a place this user can write to")
    if code in (errno.ENOTDIR, errno.EEXIST):
        blocking = _blocking_file(path)
        cause += f" ({blocking} is a file)" if blocking else ""
        hint = "give a folder, not a file"
    return StorageError(f"{cause}: cannot write the {what} {path}; {hint}", path, code)


@contextlib.contextmanager
def storage_errors(path: str | os.PathLike, what: str) -> Iterator[None]:
    """Turn storage refusing a write, wherever in the chain, into one StorageError naming the path."""
    try:
        yield
    except Exception as error:
        converted = storage_error(error, path, what)
        if converted is None or converted is error:
            raise
        raise converted from error
