"""The error tree: every error class lives in stacube.errors, the tree its docstring draws is the real one,
and each retry decision is made by type where a source's error is caught (one test per decision)."""

from __future__ import annotations

import ast
import errno
import pickle
import re
import urllib.error
from pathlib import Path

import pytest

import stacube
from stacube import errors
from stacube.errors import (
    AssetReadError,
    CatalogError,
    NotAllowedFormat,
    PatchReadError,
    PermanentError,
    PermanentSourceError,
    RunCancelled,
    SourceError,
    StacubeError,
    TransientSourceError,
    gdal_source_error,
    is_permanent,
    source_error,
    storage_failure,
)

PACKAGE = Path(stacube.__file__).parent


# --- where the classes live, and the drawing of the tree ------------------------------------------------
def _error_classes_outside_errors_py() -> list[str]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "errors.py" and path.parent == PACKAGE:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not node.name.startswith("_"):
                bases = [ast.unparse(b) for b in node.bases]
                if any(re.search(r"(Error|Exception|Cancelled)$", b) for b in bases):
                    found.append(f"{path.relative_to(PACKAGE)}:{node.name}")
    return found


def test_every_error_class_lives_in_errors_py():
    assert _error_classes_outside_errors_py() == []




def _bare_raises() -> dict[str, list[int]]:
    """Where stacube raises StacubeError or PermanentError itself: classes a handler cannot act on."""
    found: dict[str, list[int]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Raise) and isinstance(node.exc, ast.Call) and \
                    ast.unparse(node.exc.func).split(".")[-1] in ("StacubeError", "PermanentError"):
                found.setdefault(str(path.relative_to(PACKAGE)), []).append(node.lineno)
    return found


def test_every_error_raised_on_purpose_is_drawn_in_a_group_of_the_tree():
    assert _bare_raises() == {}


def test_old_import_paths_still_work():
    from stacube.history import CubeChangedError, VersionNotFoundError
    from stacube.many import LoadCancelled
    from stacube.radiometry import RadiometryError
    from stacube.runners import RunCancelled as runner_cancelled
    from stacube.sources.stac.backend import NotAllowedFormat as stac_refusal
    from stacube.store import S3AccessError

    assert stac_refusal is NotAllowedFormat and runner_cancelled is RunCancelled
    for cls in (CubeChangedError, VersionNotFoundError, LoadCancelled, RadiometryError, S3AccessError):
        assert getattr(errors, cls.__name__) is cls and getattr(stacube, cls.__name__) is cls


def _drawn_tree() -> list[tuple[str, str, list[str]]]:
    """(class, parent, other bases named in parentheses) for every class the docstring's tree draws."""
    rows, stack = [], [(-1, "StacubeError")]
    for line in errors.__doc__.splitlines():
        found = re.match(r"^(\s*[│ ]*)[├└]── (\w+)\s*(?:\(([\w, ]+)\))?", line)
        if not found:
            continue
        depth = len(found.group(1))
        while stack[-1][0] >= depth:
            stack.pop()
        rows.append((found.group(2), stack[-1][1], [b.strip() for b in (found.group(3) or "").split(",") if b]))
        stack.append((depth, found.group(2)))
    return rows


def test_the_tree_in_the_docstring_is_the_class_tree():
    rows = _drawn_tree()
    drawn = {name for name, _, _ in rows}
    public = {name for name, value in vars(errors).items()
              if isinstance(value, type) and issubclass(value, StacubeError) and not name.startswith("_")}
    assert public - {"StacubeError", "PermanentError"} == drawn  # every class drawn, nothing drawn that is not one
    for name, parent, bases in rows:
        cls = getattr(errors, name)
        assert issubclass(cls, getattr(errors, parent)), name  # drawn under a class it derives from
        # and its other direct bases are the ones the line names in parentheses
        assert {b.__name__ for b in cls.__bases__} - {parent} == set(bases) - {parent}, name
        assert issubclass(cls, PermanentError) == ("PermanentError" in bases
                                                   or issubclass(getattr(errors, parent), PermanentError)), name


def test_run_cancelled_is_an_ordinary_stacube_error_without_a_verdict():
    cancelled = RunCancelled("not written: patch z/y0x0 of the same task failed")
    assert isinstance(cancelled, StacubeError) and isinstance(cancelled, Exception)
    assert not is_permanent(cancelled) and storage_failure(cancelled) is None
    assert str(pickle.loads(pickle.dumps(cancelled))) == str(cancelled)


# --- HTTP: decided where pystac-client, requests, urllib or Earth Engine's client raised -------------------
def _api_error(status: int | None):
    from pystac_client.exceptions import APIError

    error = APIError("the API said no")
    if status is not None:
        error.status_code = status
    return error


@pytest.mark.parametrize(("status", "kind"), [(404, PermanentSourceError), (403, PermanentSourceError),
                                              (401, PermanentSourceError), (400, PermanentSourceError),
                                              (410, PermanentSourceError), (408, TransientSourceError),
                                              (425, TransientSourceError), (429, TransientSourceError),
                                              (500, TransientSourceError), (503, TransientSourceError),
                                              (504, TransientSourceError)])
def test_an_http_status_from_the_source_decides_by_type(status, kind):
    failure = source_error(_api_error(status), "https://stac.example/api")
    assert type(failure) is kind and failure.status == status and failure.url == "https://stac.example/api"
    assert is_permanent(failure) is (kind is PermanentSourceError) and str(failure) == "the API said no"
    wrapped = CatalogError("could not search the STAC API")
    wrapped.__cause__ = failure
    assert is_permanent(wrapped) is (kind is PermanentSourceError)  # the CatalogError's cause decides


def test_a_connection_reset_or_a_timeout_is_transient():
    import requests

    try:
        try:
            raise requests.ConnectionError("('Connection aborted.', ConnectionResetError(104, 'reset by peer'))")
        except requests.ConnectionError as err:
            raise _api_error(None) from err  # what pystac-client raises for it: an APIError without a status
    except Exception as raised:  # noqa: BLE001
        reset = raised
    for error in (reset, ConnectionResetError(errno.ECONNRESET, "reset"), TimeoutError("stalled"),
                  urllib.error.URLError("refused")):
        failure = source_error(error)
        assert type(failure) is TransientSourceError and failure.__cause__ is error, error
        assert not is_permanent(failure)


def test_requests_and_urllib_statuses_are_read_too():
    import requests

    response = requests.Response()
    response.status_code = 404
    assert type(source_error(requests.HTTPError("404 Client Error", response=response))) is PermanentSourceError
    response.status_code = 502
    assert type(source_error(requests.HTTPError("502 Server Error", response=response))) is TransientSourceError
    gone = urllib.error.HTTPError("https://x.example/a", 410, "Gone", {}, None)
    assert type(source_error(gone)) is PermanentSourceError


def _earth_engine_error(status: int | None):
    """What ``ee.data`` raises: an EEException raised while handling googleapiclient's HttpError."""
    import ee
    import httplib2
    from googleapiclient.errors import HttpError

    try:
        try:
            if status is not None:
                raise HttpError(httplib2.Response({"status": status}), b'{"error": {"message": "no"}}')
            raise ValueError("a client-side failure")
        except (HttpError, ValueError):  # as ee.data does: raised while handling it, not `from` it
            raise ee.EEException("Image.load: Asset 'x' not found (does not exist or caller does not have access).")  # noqa: B904
    except ee.EEException as error:
        return error


@pytest.mark.parametrize(("status", "kind"), [(404, PermanentSourceError), (403, PermanentSourceError),
                                              (400, PermanentSourceError), (429, TransientSourceError),
                                              (503, TransientSourceError), (None, TransientSourceError)])
def test_an_earth_engine_answer_decides_by_the_status_of_the_request_under_it(status, kind):
    error = _earth_engine_error(status)
    failure = source_error(error)
    assert type(failure) is kind and failure.status == status and str(failure) == str(error)
    assert is_permanent(error) is (kind is PermanentSourceError)  # unwrapped, the chain says the same


def test_what_is_no_source_answer_is_left_as_it_is():
    assert source_error(ValueError("a bug")) is None and source_error(KeyError("band")) is None
    full = OSError(errno.ENOSPC, "No space left on device")  # the storage's, not the source's
    assert source_error(full) is None and storage_failure(full) == errno.ENOSPC
    own = errors.ItemError("Item x has no asset 'b'")
    assert source_error(own) is None
    decided = TransientSourceError("HTTP response code: 503", "https://x.example/a.tif", 503)
    assert source_error(decided) is decided
    try:
        try:
            raise decided
        except TransientSourceError:
            raise ValueError("while handling it") from None
    except ValueError as later:
        assert source_error(later) is None  # `from None`: nothing of the source left in its chain


# --- GDAL: the one place its words are read --------------------------------------------------------------
def _gdal(text: str, cls_name: str = "CPLE_HttpResponseError"):
    """A RasterioIOError with GDAL's error class as its cause, as rasterio raises them."""
    import rasterio._err
    import rasterio.errors

    try:
        try:
            raise getattr(rasterio._err, cls_name)(11, 1, text)
        except rasterio._err.CPLE_BaseError as cause:
            raise rasterio.errors.RasterioIOError(text) from cause
    except rasterio.errors.RasterioIOError as error:
        return error


@pytest.mark.parametrize(("text", "kind", "status"), [
    ("HTTP response code: 404", PermanentSourceError, 404),
    ("HTTP response code: 403", PermanentSourceError, 403),
    ("HTTP response code: 503", TransientSourceError, 503),
    ("HTTP response code: 429", TransientSourceError, 429),
    ("CURL error: Recv failure: Connection reset by peer", TransientSourceError, None),
    ("CURL error: Operation timed out after 30000 milliseconds", TransientSourceError, None),
    ("Cannot read TIFF header", TransientSourceError, None),  # a truncated download
    ("'/vsicurl/https://x.example/a.tif' not recognized as being in a supported file format.", NotAllowedFormat, None),
    ("/data/a.tif: No such file or directory", PermanentSourceError, None),
    ("/data/a.tif: Permission denied", PermanentSourceError, None),
])
def test_gdal_failures_become_source_errors(text, kind, status):
    error = _gdal(text)
    failure = gdal_source_error(error, "https://x.example/a.tif")
    assert type(failure) is kind and failure.status == status and str(failure) == text
    assert failure.__cause__ is error and is_permanent(failure) is (kind is PermanentSourceError)
    assert is_permanent(error) is (kind is PermanentSourceError)  # a raw GDAL error is judged alike
    assert storage_failure(failure) is None and storage_failure(error) is None  # a source, not our storage


def test_gdals_s3_errors_are_permanent_by_their_class():
    failure = gdal_source_error(_gdal("Access Denied", "CPLE_AWSAccessDeniedError"))
    assert type(failure) is PermanentSourceError


def test_only_gdal_errors_are_read_as_gdals():
    assert gdal_source_error(ValueError("HTTP response code: 404")) is None
    assert not is_permanent(ValueError("HTTP response code: 404"))  # words alone decide nothing


def test_a_429_or_5xx_is_not_read_again_at_once_as_gdal_asked_again_already():
    from stacube.sources.stac.backend import _asked_again_by_gdal

    assert _asked_again_by_gdal(gdal_source_error(_gdal("HTTP response code: 503")))
    assert _asked_again_by_gdal(gdal_source_error(_gdal("HTTP response code: 429")))
    assert not _asked_again_by_gdal(gdal_source_error(_gdal("CURL error: Connection reset by peer")))
    assert not _asked_again_by_gdal(gdal_source_error(_gdal("HTTP response code: 404")))
    assert not _asked_again_by_gdal(None)


def test_source_errors_keep_their_kind_status_and_url_across_processes_but_never_a_signature():
    signed = "https://x.blob.example/a.tif?se=2030&sig=SECRET"
    for failure in (TransientSourceError(f"HTTP response code: 503 for {signed}", signed, 503),
                    PermanentSourceError("HTTP response code: 404", signed, 404),
                    NotAllowedFormat(f"{signed} does not open with GDAL's GTiff driver", signed, ("GTiff",))):
        if isinstance(failure, NotAllowedFormat):
            failure.opened = signed  # the URL as GDAL opened it, for the process that raised it only
        copy = pickle.loads(pickle.dumps(failure))
        assert type(copy) is type(failure) and copy.status == failure.status and copy.url == failure.url
        assert is_permanent(copy) is is_permanent(failure) and b"SECRET" not in pickle.dumps(failure)
    assert pickle.loads(pickle.dumps(NotAllowedFormat("x", signed, ("GTiff",)))).drivers == ("GTiff",)
    asset = AssetReadError(signed, PermanentSourceError("HTTP response code: 404", signed, 404))
    copy = pickle.loads(pickle.dumps(asset))
    assert isinstance(copy, SourceError) and copy.permanent and copy.status == 404 and is_permanent(copy)


# --- the STAC backend on local files: GDAL's real errors, decided where it catches them -------------------
def _backend_and_item(tmp_path):
    from stacube.spec import Variable

    from .test_stac_backend import _backend, _item

    return _backend(Variable("uint16", nodata=0)), _item(tmp_path, 1, 100, 0.0)


def _read_error(tmp_path, damage) -> BaseException:
    from stacube.grid import PatchIndex

    from .test_stac_backend import ZONE

    backend, item = _backend_and_item(tmp_path)
    damage(Path(item.assets["b"].href))
    with pytest.raises(StacubeError) as raised:
        backend.read(PatchIndex("z", 0, 0, ZONE, items=(item,)))
    return raised.value


def test_a_source_file_that_is_not_there_is_permanent(tmp_path):
    error = _read_error(tmp_path, Path.unlink)
    assert isinstance(error, AssetReadError) and error.url.endswith("item1.tif") and is_permanent(error)
    assert "PermanentSourceError" in str(error) and "No such file or directory" in str(error)


def test_a_truncated_source_file_is_transient(tmp_path):
    error = _read_error(tmp_path, lambda path: path.write_bytes(b"II*\x00" + b"\x00" * 200))  # a header, then nothing
    assert isinstance(error, SourceError) and not is_permanent(error), error


def test_a_file_no_allowed_driver_opens_is_a_format_refusal_that_is_asked_again(tmp_path):
    error = _read_error(tmp_path, lambda path: path.write_text("<VRTDataset/> or anything but a GeoTIFF"))
    assert isinstance(error, AssetReadError) and not is_permanent(error)
    assert "NotAllowedFormat" in str(error) and "'item1'" in str(error) and "GTiff" in str(error)


# --- the runner decides by type -------------------------------------------------------------------------
def _run(failure: BaseException, retries: int = 2, skip_failed: bool = False):
    from stacube.grid import PatchIndex
    from stacube.runners import LocalRunner

    calls = []

    def task(patch):
        calls.append(patch.id)
        raise failure

    runner = LocalRunner(concurrency=1, retries=retries, backoff=0.001, progress=False, skip_failed=skip_failed)
    try:
        result = runner.map(task, [PatchIndex("z", 0, 0, None)])
    except PatchReadError as raised:
        result = raised
    return len(calls), result


@pytest.mark.parametrize(("failure", "attempts"), [
    (PermanentSourceError("HTTP response code: 404", "https://x.example/a.tif", 404), 1),
    (TransientSourceError("HTTP response code: 503", "https://x.example/a.tif", 503), 3),
    (AssetReadError("https://x.example/a.tif", PermanentSourceError("HTTP response code: 403", status=403)), 1),
    (AssetReadError("https://x.example/a.tif", TransientSourceError("CURL error: Connection reset by peer")), 3),
    (errors.ItemError("Item x has no asset 'b'"), 1),
    (ValueError("nobody classified this"), 3),
])
def test_the_runner_retries_by_type(failure, attempts):
    calls, raised = _run(failure)
    assert calls == attempts and isinstance(raised, PatchReadError)
    assert f"failed after {attempts} attempt(s)" in str(raised) and raised.__cause__ is failure


def test_a_format_refusal_is_retried_then_fails_the_run_or_is_skipped():
    refusal = AssetReadError("https://x.example/a.tif", NotAllowedFormat("Item 'a' asset 'b' is not a GTiff",
                                                                         "https://x.example/a.tif", ("GTiff",)))
    calls, raised = _run(refusal, retries=2)
    assert calls == 3 and "NotAllowedFormat" in str(raised) and "failed after 3 attempt(s)" in str(raised)
    from stacube.runners import PatchFailure

    calls, skipped = _run(refusal, retries=2, skip_failed=True)  # a PatchFailure: tried again by the next run
    assert calls == 3 and isinstance(skipped[0], PatchFailure) and "NotAllowedFormat" in skipped[0].message
