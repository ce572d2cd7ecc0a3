"""Failures a retry cannot fix are not retried, and read as what they are.

A cube on a full disk, a read-only one or one without write permission, and a catalog folder that
cannot be written: the command line prints one line naming the cause and the path, logs no retry,
exits with 1, and the cube (and the catalog) hold byte for byte what they held. Real file systems:
a small tmpfs filled up, and read-only mounts (the tests run as root, where chmod alone does not stop
writes: the permission test drops root's override with setpriv); skipped where that is not permitted.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from stacube import Cube, StorageError
from stacube.catalog import LocalCatalog
from stacube.errors import AssetReadError, PatchReadError, is_permanent, storage_failure
from stacube.runners import LocalRunner

from .conftest import dem_spec


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here ({done.stderr.strip() or done.returncode}): mount {' '.join(args)}")


def _umount(path: Path) -> None:
    subprocess.run(["umount", "-l", str(path)], capture_output=True)


@contextlib.contextmanager
def tmpfs(path: Path, size: str) -> Iterator[Path]:
    """A real file system of ``size`` at ``path`` (skips the test where mounting is not permitted)."""
    path.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path))
    try:
        yield path
    finally:
        _umount(path)


@contextlib.contextmanager
def read_only_view(folder: Path, at: Path) -> Iterator[Path]:
    """``folder`` seen read-only at ``at`` (a read-only bind mount: even root cannot write there)."""
    at.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(folder), str(at))
    try:
        _mount("-o", "remount,bind,ro", str(at))
        yield at
    finally:
        _umount(at)


def fill_up(folder: Path) -> None:
    """Write to ``folder``'s file system until it has no byte left."""
    with open(folder / f"filler-{uuid.uuid4().hex[:6]}", "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * 65536)
                handle.flush()
        except OSError as error:
            assert error.errno == errno.ENOSPC
    # the last bytes of a page: small files until even those fail
    for i in range(64):
        try:
            (folder / f"crumb-{i}").write_bytes(b"\0" * 512)
        except OSError:
            break


def files_under(*folders: Path) -> dict[str, tuple[int, int, bytes]]:
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns, p.read_bytes())
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def stacube_cli(*args: object, prefix: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """The installed command in its own process, as a user runs it (logging and stderr as they are)."""
    return subprocess.run([*prefix, sys.executable, "-m", "stacube.cli", *map(str, args)], capture_output=True,
                          text=True, timeout=300)


def without_permission_override() -> tuple[str, ...]:
    """A command prefix that runs root without the power to ignore file permissions (so that a folder
    without write permission refuses root too), or a skip where that cannot be done."""
    if os.geteuid() != 0:
        return ()  # an ordinary user: permissions apply already
    drop = "-dac_override,-dac_read_search"
    prefix = ("setpriv", "--bounding-set", drop, "--inh-caps", drop)
    try:
        done = subprocess.run([*prefix, "true"], capture_output=True, timeout=30)
    except FileNotFoundError:
        pytest.skip("no setpriv here to run without root's permission override")
    if done.returncode != 0:
        pytest.skip(f"setpriv cannot drop capabilities here: {done.stderr.decode().strip()}")
    return prefix


def assert_one_line(done: subprocess.CompletedProcess, *named: str) -> str:
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1, done.stderr
    assert len(lines) == 1, f"{len(lines)} lines on stderr:\n{done.stderr}"
    line = lines[0]
    assert line.startswith("error: StorageError: "), line
    for text in named:
        assert text.lower() in line.lower(), line
    assert "attempt" not in line and "retrying" not in done.stderr and "Traceback" not in done.stderr
    return line


@pytest.fixture
def spec_file(servers, sample_layout, tmp_path) -> Path:
    path = tmp_path / "spec.json"
    path.write_text(json.dumps(dem_spec(servers[1].url, sample_layout).to_json()))
    return path


def _bbox(sample_layout, rows: slice, cols: slice) -> str:
    return ",".join(repr(v) for v in sample_layout.extent_geobox()[rows, cols].extent.boundingbox)


@contextlib.contextmanager
def cube_on_a_full_disk(spec_file: Path, tmp_path: Path) -> Iterator[Path]:
    """An empty cube on a small tmpfs that is then filled up; its catalog (elsewhere) already holds every
    Item, so a run only has the cube to write."""
    catalog = tmp_path / "catalog"
    with tmpfs(tmp_path / "disk", "4m") as disk:
        cube = disk / "dem"
        assert stacube_cli("cube", "create", cube, "--spec", spec_file, "--catalog-dir", catalog).returncode == 0
        assert stacube_cli("catalog", "sync", cube, "--catalog-dir", catalog).returncode == 0  # the whole source
        fill_up(disk)
        yield cube


def test_a_cube_on_a_full_disk_fails_at_once_naming_the_cause_and_the_cube(spec_file, sample_layout, tmp_path,
                                                                             caplog):
    catalog = tmp_path / "catalog"
    bbox = _bbox(sample_layout, slice(0, 1024), slice(0, 1024))
    with cube_on_a_full_disk(spec_file, tmp_path) as cube:
        before = files_under(cube, catalog)
        done = stacube_cli("cube", "download", cube, "--bbox", bbox, "--crs", "EPSG:3413", "--catalog-dir", catalog)
        line = assert_one_line(done, "no space left on device", str(cube))
        assert files_under(cube, catalog) == before, line
        # The API says the same, as a StorageError (an OSError with the errno), after one attempt.
        with pytest.raises(StorageError, match="No space left on device") as caught:
            Cube.open(cube, catalog_dir=catalog).download(sample_layout.extent_geobox()[0:512, 0:512],
                                                          runner=LocalRunner(retries=3, backoff=5.0))
        assert caught.value.errno == errno.ENOSPC and caught.value.path == str(cube)
        assert isinstance(caught.value, OSError) and is_permanent(caught.value)
        assert not [r for r in caplog.records if "retrying" in r.getMessage()]  # one attempt, no backoff
        assert files_under(cube, catalog) == before


def test_a_full_disk_is_not_skipped_patch_by_patch(spec_file, sample_layout, tmp_path):
    """With --skip-failed a full disk still ends the run: every patch would fail alike."""
    catalog = tmp_path / "catalog"
    bbox = _bbox(sample_layout, slice(0, 1024), slice(0, 1024))
    with cube_on_a_full_disk(spec_file, tmp_path) as cube:
        before = files_under(cube)
        done = stacube_cli("cube", "download", cube, "--bbox", bbox, "--crs", "EPSG:3413", "--catalog-dir", catalog,
                           "--skip-failed")
        assert_one_line(done, "no space left on device", str(cube))
        assert files_under(cube) == before


def test_a_read_only_cube_fails_at_once_naming_the_cause_and_the_cube(spec_file, sample_layout, tmp_path, caplog):
    catalog = tmp_path / "catalog"
    bbox = _bbox(sample_layout, slice(0, 1024), slice(0, 1024))
    cube = tmp_path / "dem"
    assert stacube_cli("cube", "create", cube, "--spec", spec_file, "--catalog-dir", catalog).returncode == 0
    assert stacube_cli("catalog", "sync", cube, "--catalog-dir", catalog).returncode == 0  # the whole source
    first = _bbox(sample_layout, slice(0, 256), slice(0, 256))
    assert stacube_cli("cube", "download", cube, "--bbox", first, "--crs", "EPSG:3413",
                       "--catalog-dir", catalog).returncode == 0
    with read_only_view(cube, tmp_path / "read-only-dem") as view:
        before = files_under(view, catalog)
        for command in (["cube", "download", view, "--bbox", bbox], ["cube", "load", view, "--bbox", bbox]):
            done = stacube_cli(*command, "--crs", "EPSG:3413", "--catalog-dir", catalog)
            assert_one_line(done, "read-only file system", str(view))
        done = stacube_cli("cube", "tag", view, "v1")  # not a run: a plain write of the repository
        assert_one_line(done, "read-only file system", str(view))
        assert files_under(view, catalog) == before
        # Reading what the cube holds needs no write.
        assert stacube_cli("cube", "load", view, "--bbox", first, "--crs", "EPSG:3413", "--catalog-dir", catalog,
                           "--offline", "--out", tmp_path / "out.tif").returncode == 0
        with pytest.raises(StorageError, match="Read-only file system") as caught:
            Cube.open(view, catalog_dir=catalog).download(sample_layout.extent_geobox()[0:1024, 0:1024],
                                                          runner=LocalRunner(retries=3, backoff=5.0))
        assert caught.value.errno == errno.EROFS and str(view) in str(caught.value)
        assert not [r for r in caplog.records if "retrying" in r.getMessage()]
        assert files_under(view, catalog) == before


def test_a_cube_without_write_permission_fails_at_once_naming_the_cause_and_the_cube(spec_file, sample_layout,
                                                                                     tmp_path):
    prefix = without_permission_override()
    catalog, cube = tmp_path / "catalog", tmp_path / "dem"
    assert stacube_cli("cube", "create", cube, "--spec", spec_file, "--catalog-dir", catalog).returncode == 0
    assert stacube_cli("catalog", "sync", cube, "--catalog-dir", catalog).returncode == 0  # the whole source
    bbox = _bbox(sample_layout, slice(0, 1024), slice(0, 1024))
    modes = {p: p.stat().st_mode for p in [cube, *cube.rglob("*")]}
    try:
        for path in modes:
            path.chmod(0o555 if path.is_dir() else 0o444)
        before = files_under(cube, catalog)
        done = stacube_cli("cube", "download", cube, "--bbox", bbox, "--crs", "EPSG:3413", "--catalog-dir", catalog,
                           prefix=prefix)
        assert_one_line(done, "permission denied", str(cube))
        assert files_under(cube, catalog) == before
    finally:
        for path, mode in modes.items():
            path.chmod(mode)


def test_a_catalog_on_a_full_disk_names_the_catalog_folder_and_is_left_as_it_was(spec_file, sample_layout,
                                                                                  tmp_path):
    cube = tmp_path / "dem"
    with tmpfs(tmp_path / "disk", "1m") as disk:
        catalog = disk / "catalog"
        assert stacube_cli("cube", "create", cube, "--spec", spec_file, "--catalog-dir", catalog).returncode == 0
        assert stacube_cli("catalog", "sync", cube, "--bbox", _bbox(sample_layout, slice(0, 64), slice(0, 64)),
                           "--crs", "EPSG:3413", "--catalog-dir", catalog).returncode == 0
        fill_up(disk)
        before = files_under(cube, catalog)
        done = stacube_cli("cube", "download", cube, "--bbox", _bbox(sample_layout, slice(1200, 1500),
                                                                      slice(1200, 1500)),
                           "--crs", "EPSG:3413", "--catalog-dir", catalog)
        line = assert_one_line(done, "no space left on device", str(catalog))
        assert "catalog folder" in line
        assert files_under(cube, catalog) == before


# --- the classification itself, by type ---------------------------------------------------------------
def test_permanent_and_transient_are_told_apart_by_type_not_by_wording():
    import icechunk
    import rasterio.errors
    from pystac_client.exceptions import APIError

    from stacube import CatalogError, ItemError, ROIError

    def api_error(status: int) -> APIError:
        error = APIError("the API said no")
        error.status_code = status
        return error

    permanent = [OSError(errno.ENOSPC, "No space left on device"), PermissionError(errno.EACCES, "denied"),
                 OSError(errno.EROFS, "Read-only file system"), FileNotFoundError(errno.ENOENT, "gone"),
                 ItemError("x"), ROIError("x"), api_error(404), api_error(403),
                 icechunk.StorageError("Unable to copy data to file: No space left on device (os error 28)",
                                       "object-store"),
                 icechunk.ReadOnlyError("read only session", "read-only-session"),
                 rasterio.errors.RasterioIOError("HTTP response code: 404")]
    transient = [OSError(errno.ECONNRESET, "reset"), TimeoutError("stalled"), api_error(503), api_error(429),
                 icechunk.StorageError("connection reset by peer", "object-store"),
                 icechunk.StorageError("slow down: too many requests", "throttled"),
                 icechunk.ConflictError("snapshot A", "snapshot B"),
                 rasterio.errors.RasterioIOError("HTTP response code: 503"),
                 rasterio.errors.RasterioIOError("Cannot read TIFF header"), CatalogError("unreachable"),
                 ValueError("no space left on device")]  # the words alone decide nothing
    assert [e for e in permanent if not is_permanent(e)] == []
    assert [e for e in transient if is_permanent(e)] == []
    # Wrapped (a patch that failed on a full disk; an asset whose cause was dropped), the cause decides.
    try:
        try:
            raise permanent[0]
        except OSError as error:
            raise PatchReadError("patch z/y0x0 failed", "z/y0x0", []) from error
    except PatchReadError as wrapped:
        assert is_permanent(wrapped) and storage_failure(wrapped) == errno.ENOSPC
    asset = AssetReadError("https://example.com/a.tif", rasterio.errors.RasterioIOError("HTTP response code: 404"))
    assert is_permanent(asset) and storage_failure(asset) is None
    import pickle

    assert is_permanent(pickle.loads(pickle.dumps(asset)))  # across processes (Prefect, Dask) too
    assert storage_failure(permanent[8]) == errno.ENOSPC and storage_failure(permanent[3]) is None


def test_a_catalog_folder_read_only_is_a_storage_error_but_reading_it_works(servers, tmp_path):
    _, api = servers
    catalog = LocalCatalog(tmp_path / "catalog", api.url, "sample-dem")
    from stacube.catalog import Window
    from stacube.sources.stac.harvest import sync_window

    assert sync_window(catalog, Window((-180.0, -90.0, 180.0, 90.0))) == 16
    shutil.copytree(tmp_path / "catalog", tmp_path / "copy")
    with read_only_view(tmp_path / "copy", tmp_path / "read-only") as view:
        frozen = LocalCatalog(view, api.url, "sample-dem")
        assert len(frozen.search()) == 16 and len(frozen.windows()) == 1
        before = files_under(view)
        with pytest.raises(StorageError, match="Read-only file system: cannot write the catalog folder") as caught:
            frozen.record_window(Window((0.0, 0.0, 1.0, 1.0)))
        assert str(frozen.folder) in str(caught.value) and caught.value.errno == errno.EROFS
        assert files_under(view) == before
