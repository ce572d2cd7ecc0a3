"""The errors stacube raises, grouped by what a caller does about them.

Every error stacube raises on purpose is a ``StacubeError``. ``PermanentError`` is mixed into those a
retry cannot fix: a runner never asks again for them (``is_permanent``). Where a library's error is
caught (GDAL through rasterio, an HTTP client, Earth Engine), it is turned into a ``SourceError`` of
the kind it is, transient or permanent, so that what follows decides by type (``source_error``).

The tree (bases after the name; a runner retries what is not a ``PermanentError``)::

    StacubeError
    │   fix the input, then call again
    ├── SpecError                   (PermanentError, ValueError)  a spec, or another argument or setting
    ├── ROIError                    (PermanentError, ValueError)
    ├── TOIError                    (PermanentError, ValueError)  a time or a duration
    ├── UnknownVariableError        (PermanentError, KeyError)
    ├── ParcelError                 (PermanentError, ValueError)
    ├── ItemError                   (PermanentError, ValueError)  fix the Item, or the source's settings
    │   └── RadiometryError         an Item's numbers cannot take the variable's convention
    │   name a cube or version that exists
    ├── CubeNotFoundError           (FileNotFoundError)
    ├── CubeExistsError             (FileExistsError)
    ├── VersionNotFoundError        (LookupError)
    │   the source failed to answer: retry later, or give up on that file
    ├── SourceError                 names the URL, and the HTTP status where there was one
    │   ├── TransientSourceError    retry later (runners do, with backoff): 408, 425, 429, 5xx, a reset or
    │   │   │                       stalled connection, a truncated or garbled answer
    │   │   └── NotAllowedFormat    no driver the source allows opens the file; retried, since a reset
    │   │                           while GDAL read the header looks the same; fails the run after them
    │   ├── PermanentSourceError    (PermanentError) the source refuses for good: any other 4xx, no such
    │   │                           file, access denied; tell the source's owner, or skip the patch
    │   └── AssetReadError          one asset, named by URL; ``permanent`` holds its cause's verdict
    ├── CatalogError                searching or syncing the catalog failed; its cause says whether
    │                               again may help (harvests already asked again)
    │   the place the cube is kept
    ├── StorageError                (PermanentError, OSError) no space, read-only, permission denied:
    │                               give a place that can be written
    ├── S3AccessError               (ConnectionError) the cube's S3 endpoint failed after its tries:
    │                               retry later, or change the settings it names
    │   the cube is damaged
    ├── CubeDamagedError            (PermanentError) restore the chunk files, or roll back
    │   another process changed the cube
    ├── CubeChangedError            look at ``history()`` again and retry
    │   a run failed: the error it wraps (``__cause__``) says why, and what to do
    ├── PatchReadError              a patch after its retries: names the patch, its Items and URLs
    ├── GroupError                  a parcel group's indices: names the group, its tiles and the run
    ├── QualityBreachError          a run's data-quality KPIs breached their thresholds: its values are
    │                               stored and the KPIs kept (``store.quality()``); look there first
    │   a run stopped before its end: nothing is committed
    ├── RunCancelled                a patch not attempted because another patch of the run failed
    └── LoadCancelled               (PermanentError) the loop over ``load_many``'s Tiles ended early

``RunCancelled`` is an ordinary error, not a ``BaseException`` signal like ``KeyboardInterrupt``: it
never has to get past a caller's ``except Exception`` (a runner raises it in its own code, before a
patch's task runs, and catches it itself), it travels as a value (a skipped patch's ``PatchFailure``
names it) and across processes, and Prefect counts a ``BaseException`` in a task as a crash rather
than a failure. It carries no verdict: the patch was not tried, and the next run tries it.

``is_permanent`` decides from these types first. For a library's error that reached it unwrapped
(Icechunk's, an OS error, or one a task raised itself) it reads exception types and OS error numbers,
never the wording of a message, except where a library gives nothing else (Rust's ``(os error N)``,
GDAL's HTTP status and open failures), which is read in one place each below.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import sys
from collections.abc import Iterator

from .redaction import redact


class StacubeError(Exception):
    """Base class of every error stacube raises on purpose."""


class PermanentError(StacubeError):
    """Marker of a failure that asking again cannot fix (bad input, a broken Item, a full disk)."""


# --- fix the input, then call again -------------------------------------------------------------------
class SpecError(PermanentError, ValueError):
    """The CubeSpec is inconsistent (bad dtype, nodata, chunks, zone, or source/variable mismatch), or
    another argument or setting is unusable as given: a malformed cube or store URL, an output format,
    a tag name (or one in use), a ``STACUBE_*`` environment variable. Names the value."""


class ROIError(PermanentError, ValueError):
    """The region of interest is unusable (no CRS, or outside every zone of the cube)."""


class TOIError(PermanentError, ValueError):
    """The time of interest is unusable (outside the time axis, or given to a cube without time), or
    another time or duration given is (``expire``'s ``older_than``, a Tile's time step to show)."""


class UnknownVariableError(PermanentError, KeyError):
    """A variable name the cube does not hold."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else ""


class ParcelError(PermanentError, ValueError):
    """A parcel file or frame cannot be imported as it is (no id column, no CRS), a group size is no
    whole number of parcels, or a frame given to a parcel store lacks what it must hold."""


class ItemError(PermanentError, ValueError):
    """A catalog Item lacks what the cube needs (an asset, projection info)."""


class RadiometryError(ItemError):
    """An Item's numbers cannot be brought into a variable's convention (unknown, or precision lost)."""


# --- name a cube or version that exists ---------------------------------------------------------------
class CubeNotFoundError(StacubeError, FileNotFoundError):
    """No cube at the given path or URL."""


class CubeExistsError(StacubeError, FileExistsError):
    """A cube already exists where a new one was to be created."""


class VersionNotFoundError(StacubeError, LookupError):
    """A snapshot id or tag the cube does not have."""


# --- the source failed to answer ----------------------------------------------------------------------
class SourceError(StacubeError):
    """A source (a STAC API, a file or object server, Earth Engine) failed a request; raised as one of
    its subclasses, decided where the source's own error was caught (``source_error``).

    ``url`` names what was asked and ``status`` is the HTTP status where there was one (both may be
    None); the message is the source's own words, with any signature or credential in a URL redacted."""

    def __init__(self, message: str, url: str | None = None, status: int | None = None):
        super().__init__(redact(message))
        self.url = redact(url) if url else None
        self.status = status


class TransientSourceError(SourceError):
    """The source may answer next time: a 408, 425, 429 or 5xx, a dropped, refused or stalled connection,
    a truncated or garbled answer. Runners retry it with backoff."""


class NotAllowedFormat(TransientSourceError):
    """No GDAL driver the source allows opens the file (``drivers``): it is corrupt, cut off, or of
    another format (a VRT naming local files is never followed). Retried, because a connection reset
    while GDAL read the header looks the same; after the runner's retries it fails the run, naming the file."""

    def __init__(self, message: str, url: str | None = None, drivers: tuple[str, ...] = ()):
        super().__init__(message, url)
        self.drivers = tuple(drivers)
        self.opened: str | None = None  # the URL as GDAL opened it (signed): this process only, never pickled

    def __reduce__(self):
        return type(self), (str(self), self.url, self.drivers)


class PermanentSourceError(SourceError, PermanentError):
    """The source refuses for good: an HTTP 4xx other than 408, 425 and 429 (the file is gone, the
    credential refused, the query wrong), a file that does not exist or may not be read. Not retried."""


class AssetReadError(SourceError):
    """One asset of an Item could not be read; names its URL so the user can check that file.
    ``permanent`` is the verdict on the error it wraps, kept because that cause may be dropped (a
    signed URL in it) and is not pickled."""

    def __init__(self, url: str, error: BaseException):
        super().__init__(f"{url}: {type(error).__name__}: {error}", url,
                         error.status if isinstance(error, SourceError) else None)
        self.permanent = is_permanent(error)

    def __reduce__(self):  # pickled across processes (Prefect, Dask) with its message and verdict
        return _rebuilt_asset_error, (str(self), self.url, self.permanent, self.status)


def _rebuilt_asset_error(message: str, url: str, permanent: bool | None, status: int | None = None
                         ) -> AssetReadError:
    error = AssetReadError.__new__(AssetReadError)
    Exception.__init__(error, message)
    error.url, error.permanent, error.status = url, permanent, status
    return error


class CatalogError(StacubeError):
    """The source catalog could not be searched or synced (unreachable API, bad response); where a
    source failed, its ``__cause__`` is the SourceError that says whether asking again may help."""


# --- the place the cube is kept -----------------------------------------------------------------------
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


class S3AccessError(StacubeError, ConnectionError):
    """The S3 endpoint holding a cube failed a request after its tries: refused, timed out, or answered
    with an error. Names the endpoint (never credentials), the cube's URL and the settings to change."""


# --- the cube is damaged, or another process changed it -----------------------------------------------
class CubeDamagedError(PermanentError):
    """Stored chunks whose bytes no longer match their checksum: names the chunks, variable and snapshot."""


class CubeChangedError(StacubeError):
    """The cube's branch moved (a run committed) between reading it and acting on it."""


# --- a run failed, or stopped before its end ----------------------------------------------------------
class PatchReadError(StacubeError):
    """A patch could not be read from its source after retries; names the patch and the URL."""

    def __init__(self, message: str, patch_id: str, urls: list[str]):
        super().__init__(message)
        self.patch_id = patch_id
        self.urls = urls


class GroupError(StacubeError):
    """A group's indices could not be computed: names the group, its tiles, the period and the run."""


class QualityBreachError(StacubeError):
    """A run's data-quality KPIs breached their thresholds (``fields.quality``): the run's values are stored
    and its KPIs kept beside them, and the run fails so that the breach is seen, not only logged."""


class RunCancelled(StacubeError):
    """A patch not attempted (or not retried) because another patch of the run failed. No verdict of
    its own: the patch was not tried, and the next run tries it (see the module docstring for why this
    is an ordinary error and not a BaseException)."""


class LoadCancelled(PermanentError):
    """The loop over ``load_many``'s Tiles ended early: the run stops and commits nothing."""


# --- which failures a retry can fix -----------------------------------------------------------------
# OS error numbers a retry cannot fix. The first ones are the storage refusing writes (the cube's or the
# catalog's: ``storage_failure``); ENOENT is a file that is not there (a source asset on disk).
STORAGE_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOTDIR,
                            errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG})
PERMANENT_ERRNOS = STORAGE_ERRNOS | {errno.ENOENT}
# HTTP statuses that may answer differently when asked again; any other 4xx will not.
TRANSIENT_STATUS = frozenset({408, 425, 429, 500, 502, 503, 504})


def shown(value: object, limit: int = 300) -> str:
    """A value as an error message names it: its ``repr``, cut to ``limit`` characters (a filter, an ROI)."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def http_status_permanent(status: int) -> bool:
    """A 4xx (a missing file, a refused credential, a bad query) is final; 408, 425, 429 and 5xx are not."""
    return 400 <= status < 500 and status not in TRANSIENT_STATUS


def _by_status(status: int) -> type[SourceError]:
    return PermanentSourceError if http_status_permanent(status) else TransientSourceError


def _rust_os_errno(error: BaseException) -> int | None:
    """The OS error number inside an error raised by a library written in Rust (Icechunk, rustac).

    They hand Python only text: Rust's ``std::io::Error`` prints itself as ``No space left on device
    (os error 28)``, and that suffix (a stable part of Rust's standard library) is the one piece of an
    Icechunk or rustac message stacube reads."""
    found = re.findall(r"\(os error (\d+)\)", str(error))
    return int(found[-1]) if found else None


def _is_gdal(error: BaseException) -> bool:
    err, rio = sys.modules.get("rasterio._err"), sys.modules.get("rasterio.errors")
    return bool((err is not None and isinstance(error, err.CPLE_BaseError))
                or (rio is not None and isinstance(error, rio.RasterioError)))


_GDAL_STATUS = re.compile(r"HTTP (?:response|error) code:? (\d{3})", re.IGNORECASE)
_GDAL_OTHER_FORMAT = re.compile(r"not recognized as|not a supported file format", re.IGNORECASE)
_GDAL_NO_FILE = re.compile(r"no such file or directory|permission denied", re.IGNORECASE)


def _gdal_reading(error: BaseException) -> tuple[type[SourceError], int | None] | None:
    """What one GDAL failure (through rasterio) says: the kind of source error and the HTTP status; None
    for an error that is not GDAL's, or a GDAL failure that does not say.

    The one place stacube reads GDAL's wording. rasterio's error classes (``rasterio._err.CPLE_*``, the
    ``__cause__`` of a RasterioIOError) carry GDAL's error number, which tells an HTTP failure
    (CPLE_HttpResponseError, also a CURL error: refused, reset, timed out) or a file that did not open
    (CPLE_OpenFailedError) from others, but not the HTTP status, nor why a file did not open: those
    are in the text only. An HTTP status (4xx permanent, 408/425/429/5xx transient); "not recognized as
    a supported file format" (NotAllowedFormat: a connection reset while GDAL read the header reads
    the same as a file of another format, so it is asked again); "No such file or directory" and
    "Permission denied" (permanent). The S3 errors that name a missing object, a refused credential or
    bucket, and GDAL's "not supported", are permanent by their class. A truncated or garbled download
    ("Cannot read TIFF header") and a CURL error do not say: the caller makes them transient."""
    if not _is_gdal(error):
        return None
    text = str(error)
    status = _GDAL_STATUS.search(text)
    if status:
        return _by_status(int(status.group(1))), int(status.group(1))
    err = sys.modules.get("rasterio._err")
    if err is not None and isinstance(error, (err.CPLE_AWSObjectNotFoundError, err.CPLE_AWSBucketNotFoundError,
                                              err.CPLE_AWSAccessDeniedError, err.CPLE_AWSInvalidCredentialsError,
                                              err.CPLE_AWSSignatureDoesNotMatchError, err.CPLE_NotSupportedError)):
        return PermanentSourceError, None
    if _GDAL_OTHER_FORMAT.search(text):
        return NotAllowedFormat, None
    if _GDAL_NO_FILE.search(text):
        return PermanentSourceError, None
    return None


def gdal_source_error(error: BaseException, url: str | None = None,
                      drivers: tuple[str, ...] = ()) -> SourceError | None:
    """``error`` as the source error it is when GDAL raised it (anywhere in its chain): the first GDAL
    failure of the chain that says (``_gdal_reading``) decides, else it is transient; None when GDAL is
    not in the chain. Keeps the message, and the original as ``__cause__``."""
    gdal = [cause for cause in causes(error) if _is_gdal(cause)]
    if not gdal:
        return None
    kind, status = next((found for found in map(_gdal_reading, gdal) if found is not None),
                        (TransientSourceError, None))
    failure = NotAllowedFormat(str(error), url, drivers) if kind is NotAllowedFormat else kind(str(error), url, status)
    failure.__cause__ = error
    return failure


def _http_status(error: BaseException) -> int | None:
    """The status of an HTTP client's error that carries one: pystac-client's APIError, requests' and
    httpx's (on their ``response``), urllib's HTTPError, googleapiclient's HttpError (Earth Engine's
    client raises its EEException while handling one)."""
    status = getattr(error, "status_code", None)
    if status is None:
        status = getattr(getattr(error, "response", None), "status_code", None)
    if status is None and type(error).__name__ == "HTTPError":
        status = getattr(error, "code", None)
    return status if isinstance(status, int) and 100 <= status < 600 else None


def _answer_failed(error: BaseException) -> bool:
    """Whether ``error`` is a request that got no usable answer (nothing says it would fail again): a
    timeout, a refused, reset or dropped connection, an HTTP client's transport error, Earth Engine's
    own error without a status. An OS error whose number says it is final (``PERMANENT_ERRNOS``) is not
    one: it stays what it is (a full disk is the storage's, not the source's)."""
    if isinstance(error, (TimeoutError, ConnectionError, EOFError)):
        return True
    if isinstance(error, OSError):  # requests' errors and urllib's URLError are OSErrors without a number
        return error.errno not in PERMANENT_ERRNOS
    kinds = [("ee.ee_exception", "EEException"), ("httpx", "TransportError"), ("httplib2", "HttpLib2Error"),
             ("pystac_client.exceptions", "APIError")]
    return any(isinstance(error, getattr(sys.modules.get(module), name, ())) for module, name in kinds)


def source_error(error: BaseException, url: str | None = None) -> SourceError | None:
    """``error``, caught where a source was asked, as a TransientSourceError or a PermanentSourceError
    (which keeps the message, and ``error`` as its ``__cause__``); None when nothing in its chain is a
    source's answer (a bug, memory, a full disk, stacube's own error): that is raised as it is.

    A source error already decided stays; GDAL's failures are read by ``gdal_source_error``; an HTTP
    status decides by ``http_status_permanent``; a request without a usable answer is transient."""
    for cause in causes(error):
        if isinstance(cause, StacubeError):  # decided already (a source error), or stacube's own
            return cause if cause is error and isinstance(cause, SourceError) else None
    gdal = gdal_source_error(error, url)
    if gdal is not None:
        return gdal
    for cause in causes(error):
        status = _http_status(cause)
        if status is not None:
            failure = _by_status(status)(str(error), url, status)
            break
    else:
        if not any(_answer_failed(cause) for cause in causes(error)):
            return None
        failure = TransientSourceError(str(error), url)
    failure.__cause__ = error
    return failure


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


def _verdict(error: BaseException) -> bool | None:
    """True: permanent, False: transient, None: this error alone does not say."""
    # stacube's own errors decide by type: the source errors were decided where they were caught
    if isinstance(error, AssetReadError):
        return error.permanent
    if isinstance(error, PermanentError):
        return True
    if isinstance(error, TransientSourceError):
        return False
    # a library's error that reached here unwrapped (Icechunk's, an OS error, one a task raised itself)
    gdal = _gdal_reading(error)
    if gdal is not None:
        return issubclass(gdal[0], PermanentError)
    verdict = _icechunk_verdict(error)
    if verdict is not None:
        return verdict
    if isinstance(error, OSError) and isinstance(error.errno, int):
        return True if error.errno in PERMANENT_ERRNOS else None
    rustac = sys.modules.get("rustac")
    if rustac is not None and isinstance(error, rustac.RustacError):
        code = _rust_os_errno(error)
        return code in PERMANENT_ERRNOS if code is not None else None
    status = _http_status(error)
    return http_status_permanent(status) if status is not None else None


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

    Permanent: every ``PermanentError`` (bad input, a broken Item, a source refusing for good, storage
    refusing writes, a damaged cube), an AssetReadError whose cause was. For a library's error that was
    not wrapped: OS errors out of space, read-only, permission denied, not a directory, no such file;
    Icechunk's read-only, invalid-input, format, not-found and session-state errors, and its storage
    errors caused by one of those OS errors; an HTTP 4xx other than 408/425/429 (GDAL, pystac-client,
    requests, Earth Engine's client).
    Anything else (a TransientSourceError: a 5xx, a 429, a reset or stalled connection, a truncated
    download, a file GDAL does not recognise, which a reset while it read the header also gives; a commit
    conflict; an error nobody classified) is worth another attempt."""
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
        if _gdal_reading(cause) is not None:
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
