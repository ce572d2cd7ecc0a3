"""Creating a cube: one place per path, nothing left in the way of a retry, one winner of a race.

- A path means one thing: ``<dir>/missing/../c`` is ``<dir>/c`` for the storage, the commit lock
  and ``Cube.url``; an S3 prefix with ``.``, ``..`` or empty segments is refused.
- A creation that fails after it started writing leaves the target as it was (absent, or the same
  empty folder), so the retry succeeds; a repository an interrupted creation left is finished.
- Processes creating one cube at once (on disk and on S3): one gets it, the others CubeExistsError.
- A failing S3 endpoint is reported in well under a second or two, naming the endpoint.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import socket
import threading
import time
from pathlib import Path

import icechunk
import pytest
from typer.testing import CliRunner

import stacube.cube
from stacube import Cube, CubeExistsError, CubeNotFoundError, CubeSpec, S3AccessError, SpecError
from stacube.cli import app
from stacube.store import S3_CONNECT_TIMEOUT, S3_MAX_TRIES, S3_READ_TIMEOUT, s3_settings, storage_for
from stacube.testing.servers import free_port

from .conftest import dem_spec
from .test_bad_input import files_under


@pytest.fixture
def spec(sample_layout) -> CubeSpec:
    return dem_spec("http://127.0.0.1:1/stac", sample_layout)


def s3_keys(prefix: str = "") -> list[str]:
    import boto3

    listing = boto3.client("s3").list_objects_v2(Bucket="cubes", Prefix=prefix)
    return sorted(o["Key"] for o in listing.get("Contents", []))


# --- one place per path -------------------------------------------------------------------------

def test_a_path_through_a_missing_folder_is_one_place_for_storage_lock_and_url(servers, sample_layout, tmp_path):
    """Before, the storage resolved '..' and the commit lock did not: the first download failed at its commit."""
    _, api = servers
    cube = Cube.create(f"{tmp_path}/missing/../c", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "cat")
    assert cube.url == str(tmp_path / "c") and not (tmp_path / "missing").exists()
    report = cube.download(sample_layout.extent_geobox()[0:256, 0:256])
    assert report.snapshot_id and report.patches_written == ["epsg3413/y0x0"]
    again = Cube.open(f"{tmp_path}/other/./../c/")
    assert again.url == cube.url and len(again.state()) == 1
    assert not (tmp_path / "other").exists()


def test_a_home_or_file_url_path_is_reported_resolved(spec, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    assert Cube.create("~/c", spec).url == str(tmp_path / "c")
    assert Cube.open(f"file://{tmp_path}/c").url == str(tmp_path / "c")


S3_BAD_URLS = ["s3://cubes/a/../../x", "s3://cubes/a/..", "s3://cubes/./x", "s3://cubes/a//b", "s3://cubes//x",
               "s3://cubes/x//", "s3://cubes", "s3://cubes/", "s3://cubes/x?versionId=1"]


@pytest.mark.parametrize("url", S3_BAD_URLS)
def test_an_s3_prefix_that_is_not_one_place_is_refused(s3_endpoint, spec, url):
    before = s3_keys()
    for attempt in (lambda: Cube.create(url, spec), lambda: Cube.open(url), lambda: Cube.open_or_create(url, spec)):
        with pytest.raises(SpecError) as caught:
            attempt()
        assert repr(url) in str(caught.value)
    assert s3_keys() == before


def test_an_s3_url_with_credentials_is_refused_without_showing_them(spec):
    with pytest.raises(SpecError) as caught:
        Cube.create("s3://AKIAKEY:hunter2@cubes/x", spec)
    assert "hunter2" not in str(caught.value) and "AKIAKEY" not in str(caught.value)
    assert "cubes/x" in str(caught.value)


def test_one_trailing_slash_names_the_same_s3_cube(s3_endpoint, spec):
    cube = Cube.create("s3://cubes/trailing/", spec)
    assert cube.url == "s3://cubes/trailing"
    assert Cube.open("s3://cubes/trailing").spec.to_json() == spec.to_json()
    with pytest.raises(CubeExistsError):
        Cube.create("s3://cubes/trailing", spec)


# --- nothing left in the way of a retry ---------------------------------------------------------

def fail_in_layout(monkeypatch, error: BaseException) -> None:
    """The layout is written whole into the session, then creating fails (before the commit)."""
    real = stacube.cube.create_layout

    def layout_then_fail(store, the_spec):
        real(store, the_spec)
        raise error

    monkeypatch.setattr(stacube.cube, "create_layout", layout_then_fail)


def fail_in_commit(monkeypatch, error: BaseException) -> None:
    def commit(self, *args, **kwargs):
        raise error

    monkeypatch.setattr(icechunk.Session, "commit", commit)


FAILURES = {
    "layout error": lambda mp: fail_in_layout(mp, RuntimeError("disk on fire")),
    "interrupt": lambda mp: fail_in_layout(mp, KeyboardInterrupt()),
    "commit error": lambda mp: fail_in_commit(mp, RuntimeError("commit refused")),
}


@pytest.mark.parametrize("failure", FAILURES)
@pytest.mark.parametrize("target_kind", ["missing, with missing parents", "an empty folder"])
def test_a_failed_create_leaves_the_target_as_it_was_and_a_retry_succeeds(spec, tmp_path, monkeypatch, failure,
                                                                           target_kind):
    root = tmp_path / "root"
    root.mkdir()
    if target_kind == "an empty folder":
        target = root / "cube"
        target.mkdir()
    else:
        target = root / "a" / "b" / "cube"
    listing = sorted(p.name for p in root.iterdir())
    FAILURES[failure](monkeypatch)
    with pytest.raises((RuntimeError, KeyboardInterrupt)):
        Cube.create(target, spec)
    assert sorted(p.name for p in root.iterdir()) == listing  # no staging folder, no parents left behind
    if target_kind == "an empty folder":
        assert list(target.iterdir()) == []
    else:
        assert not (root / "a").exists()
    monkeypatch.undo()
    cube = Cube.create(target, spec)
    assert Cube.open(target).spec.to_json() == spec.to_json() and len(cube.history()) == 2


def test_a_repository_an_interrupted_create_left_is_finished_by_the_next(spec, tmp_path):
    """A stacube before this one left an empty Icechunk repository when create_layout failed."""
    target = tmp_path / "cube"
    icechunk.Repository.create(icechunk.local_filesystem_storage(str(target)))
    with pytest.raises(CubeNotFoundError) as caught:
        Cube.open(target)
    assert str(target) in str(caught.value) and "interrupted" in str(caught.value)
    cube = Cube.create(target, spec)
    assert Cube.open(target).spec.to_json() == spec.to_json() and len(cube.history()) == 2
    with pytest.raises(CubeExistsError):
        Cube.create(target, spec)


@pytest.mark.parametrize("what", ["a file", "a folder of other files"])
def test_something_else_in_the_way_is_named_and_left_alone(spec, tmp_path, what):
    target = tmp_path / "cube"
    if what == "a file":
        target.write_text("mine")
    else:
        target.mkdir()
        (target / "notes.txt").write_text("mine")
    before = files_under(tmp_path)
    for attempt in (lambda: Cube.create(target, spec), lambda: Cube.open_or_create(target, spec)):
        with pytest.raises(CubeExistsError) as caught:
            attempt()
        assert str(target) in str(caught.value)
    assert files_under(tmp_path) == before and sorted(p.name for p in tmp_path.iterdir()) == ["cube"]


def test_a_failed_create_on_s3_is_finished_by_the_retry(s3_endpoint, spec, monkeypatch):
    """S3 offers stacube no delete: the repository left holds no cube, and the next creation takes it."""
    url = "s3://cubes/failed-once"
    fail_in_layout(monkeypatch, RuntimeError("network gone"))
    with pytest.raises(RuntimeError, match="network gone"):
        Cube.create(url, spec)
    monkeypatch.undo()
    with pytest.raises(CubeNotFoundError, match="interrupted"):
        Cube.open(url)
    cube = Cube.create(url, spec)
    assert Cube.open(url).spec.to_json() == spec.to_json() and len(cube.history()) == 2


def test_bad_spec_files_are_refused_by_the_cli_before_the_cube_is_touched(spec, tmp_path):
    good = spec.to_json()
    rows = {
        "chunks-ab": (good | {"chunks": "ab"}, "'ab'"),
        "nodata-x": (good | {"variables": {"dem": {"dtype": "float32", "nodata": "x"}, **{
            k: v for k, v in good["variables"].items() if k != "dem"}}}, "'x'"),
        "variable-x": (good | {"variables": {"x": good["variables"]["dem"], "datamask": good["variables"]["datamask"]},
                               "source": good["source"] | {"assets": {"x": "dem", "datamask": "datamask"}}}, "'x'"),
        "nodata-1e40": (good | {"variables": {**good["variables"], "dem": {"dtype": "float32", "nodata": 1e40}}},
                        "1e+40"),
        "nan-transform": (good | {"zones": {name: zone | {"transform": [math.nan, *zone["transform"][1:]]}
                                            for name, zone in good["zones"].items()}}, "nan"),
    }
    for label, (data, named) in rows.items():
        path = tmp_path / f"{label}.json"
        path.write_text(json.dumps(data))
        result = CliRunner().invoke(app, ["cube", "create", str(tmp_path / "cube"), "--spec", str(path)])
        assert result.exit_code == 1 and "Traceback" not in result.stderr, (label, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and "SpecError" in result.stderr, (label, result.stderr)
        assert named in result.stderr, (label, result.stderr)
        assert not (tmp_path / "cube").exists(), label


# --- one winner of a race -----------------------------------------------------------------------

def _create_in_child(urls: list[str], spec_json: dict, how: str, barrier, results) -> None:
    from stacube import Cube, CubeExistsError, CubeSpec

    spec = CubeSpec.from_json(spec_json)
    for url in urls:
        barrier.wait(timeout=120)
        try:
            cube = Cube.create(url, spec) if how == "create" else Cube.open_or_create(url, spec)
            results.put((url, "created" if how == "create" else "has a cube", cube.url))
        except CubeExistsError:
            try:  # by the time the loser hears of it, the winner's cube is there to open
                results.put((url, "CubeExistsError", Cube.open(url).url))
            except Exception as err:  # noqa: BLE001 - reported to the test, which names it
                results.put((url, f"CubeExistsError, then {type(err).__name__}: {err}", None))
        except Exception as err:  # noqa: BLE001 - reported to the test, which names it
            results.put((url, f"{type(err).__name__}: {err}", None))


def race(urls: list[str], spec: CubeSpec, how: str, processes: int = 3) -> dict[str, list[str]]:
    context = multiprocessing.get_context("spawn")
    barrier, results = context.Barrier(processes), context.Queue()
    children = [context.Process(target=_create_in_child, args=(urls, spec.to_json(), how, barrier, results))
                for _ in range(processes)]
    for child in children:
        child.start()
    outcomes: dict[str, list[str]] = {url: [] for url in urls}
    try:
        for _ in range(processes * len(urls)):
            url, outcome, _ = results.get(timeout=180)
            outcomes[url].append(outcome)
    finally:
        for child in children:
            child.join(timeout=30)
            if child.is_alive():
                child.kill()
    return outcomes


@pytest.mark.parametrize("how", ["create", "open_or_create"])
def test_processes_creating_one_cube_on_disk_at_once_make_exactly_one(spec, tmp_path, how):
    existing = tmp_path / "empty-folder"
    existing.mkdir()
    urls = [str(tmp_path / "fresh-1"), str(existing), str(tmp_path / "fresh-2" / "nested")]
    outcomes = race(urls, spec, how)
    for url, seen in outcomes.items():
        expected = ["CubeExistsError", "CubeExistsError", "created"] if how == "create" else ["has a cube"] * 3
        assert sorted(seen) == expected, (url, seen)
        assert len(Cube.open(url).history()) == 2  # Icechunk's first snapshot and the one creation
    assert sorted(p.name for p in tmp_path.iterdir()) == ["empty-folder", "fresh-1", "fresh-2"]  # no staging left


def test_processes_creating_one_cube_on_s3_at_once_make_exactly_one(s3_endpoint, spec):
    urls = ["s3://cubes/race-1", "s3://cubes/race-2"]
    outcomes = race(urls, spec, "create")
    for url, seen in outcomes.items():
        assert sorted(seen) == ["CubeExistsError", "CubeExistsError", "created"], (url, seen)
        assert len(Cube.open(url).history()) == 2


# --- a failing S3 endpoint ----------------------------------------------------------------------

def test_s3_settings_default_to_short_tries_and_come_from_the_environment(monkeypatch):
    for name in ("STACUBE_S3_MAX_TRIES", "STACUBE_S3_CONNECT_TIMEOUT", "STACUBE_S3_READ_TIMEOUT"):
        monkeypatch.delenv(name, raising=False)
    settings = s3_settings()
    assert settings.retries.max_tries == S3_MAX_TRIES == 3
    assert settings.timeouts.connect_timeout_ms == S3_CONNECT_TIMEOUT * 1000 == 3000
    assert settings.timeouts.read_timeout_ms == S3_READ_TIMEOUT * 1000 == 60_000
    monkeypatch.setenv("STACUBE_S3_MAX_TRIES", "10")
    monkeypatch.setenv("STACUBE_S3_CONNECT_TIMEOUT", "0.5")
    monkeypatch.setenv("STACUBE_S3_READ_TIMEOUT", "300")
    settings = s3_settings()
    assert (settings.retries.max_tries, settings.timeouts.connect_timeout_ms,
            settings.timeouts.read_timeout_ms) == (10, 500, 300_000)
    for name, bad in (("STACUBE_S3_MAX_TRIES", "lots"), ("STACUBE_S3_MAX_TRIES", "2.5"),
                      ("STACUBE_S3_READ_TIMEOUT", "-1"), ("STACUBE_S3_CONNECT_TIMEOUT", "nan")):
        monkeypatch.setenv(name, bad)
        with pytest.raises(ValueError, match=f"{name}='{bad}'"):
            s3_settings()
        monkeypatch.delenv(name)


def test_this_process_s3_settings_are_not_stored_in_the_cube(s3_endpoint, spec, monkeypatch):
    monkeypatch.setenv("STACUBE_S3_MAX_TRIES", "7")
    cube = Cube.create("s3://cubes/settings", spec)
    assert cube.repo.config.storage.retries.max_tries == 7  # this process uses them
    stored = icechunk.Repository.fetch_config(storage_for("s3://cubes/settings"))
    assert stored is None or stored.storage is None or stored.storage.retries is None


def broken_endpoint(monkeypatch, endpoint: str) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", endpoint)
    monkeypatch.delenv("AWS_ENDPOINT_URL_S3", raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIASTACUBETEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "the-secret-key")
    monkeypatch.setenv("AWS_REGION", "us-east-1")


def within(seconds: float, call):
    """``call()``'s error, failing the test if it takes longer than ``seconds`` (it may hang forever)."""
    outcome: list[BaseException | None] = []

    def run():
        try:
            call()
            outcome.append(None)
        except BaseException as err:  # noqa: BLE001 - handed to the test
            outcome.append(err)

    started = time.monotonic()
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    assert outcome, f"still waiting after {seconds} s"
    return outcome[0], time.monotonic() - started


def test_a_refused_s3_endpoint_is_reported_at_once_naming_it(spec, monkeypatch):
    port = free_port()  # nothing listens there
    broken_endpoint(monkeypatch, f"http://user:endpoint-password@127.0.0.1:{port}")
    for call in (lambda: Cube.open("s3://cubes/nowhere"), lambda: Cube.create("s3://cubes/nowhere", spec),
                 lambda: Cube.open_or_create("s3://cubes/nowhere", spec)):
        error, took = within(8, call)
        assert isinstance(error, S3AccessError), repr(error)
        message = str(error)
        assert f"127.0.0.1:{port}" in message and "'s3://cubes/nowhere'" in message
        assert "STACUBE_S3_MAX_TRIES" in message and "Connection refused" in message
        assert "endpoint-password" not in message and "the-secret-key" not in message
        assert took < 3, took  # Icechunk's defaults took 11-16 s


def test_a_silent_s3_endpoint_times_out_as_set(spec, monkeypatch):
    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen(16)  # accepts connections (the kernel does), never answers
    try:
        broken_endpoint(monkeypatch, f"http://127.0.0.1:{silent.getsockname()[1]}")
        monkeypatch.setenv("STACUBE_S3_READ_TIMEOUT", "0.5")
        monkeypatch.setenv("STACUBE_S3_MAX_TRIES", "2")
        error, took = within(20, lambda: Cube.open("s3://cubes/silent"))
        assert isinstance(error, S3AccessError), repr(error)
        assert f"127.0.0.1:{silent.getsockname()[1]}" in str(error) and "read timeout 0.5 s" in str(error)
        assert "2 tries" in str(error) and took < 10, took  # Icechunk's defaults never gave up
    finally:
        silent.close()


def test_the_readme_names_the_s3_settings():
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    for name in ("STACUBE_S3_MAX_TRIES", "STACUBE_S3_CONNECT_TIMEOUT", "STACUBE_S3_READ_TIMEOUT"):
        assert name in readme
