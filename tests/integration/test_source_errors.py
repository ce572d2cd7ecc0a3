"""Real sources on loopback failing for good or for now: the error is typed where it is caught, and
the runner and the harvest decide by that type (asked again, or not)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

from stacube import (
    AssetReadError,
    CatalogError,
    Cube,
    PatchReadError,
    PermanentSourceError,
    TransientSourceError,
)
from stacube.catalog import Window
from stacube.runners import LocalRunner
from stacube.sources.stac.harvest import harvest

from .conftest import dem_spec


@contextmanager
def answering(status: int) -> Iterator[tuple[str, list[str]]]:
    """A loopback HTTP server that answers ``status`` to every request; yields its URL and the paths asked."""
    asked: list[str] = []

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            asked.append(self.path)
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", asked
    finally:
        server.shutdown()
        server.server_close()


def test_an_asset_the_server_no_longer_has_fails_its_patch_without_a_retry(private_servers, tmp_path, sample_layout):
    folder, _, api = private_servers
    cube = Cube.create(tmp_path / "c", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "cat")
    zone = sample_layout.extent_geobox()
    (folder / "tile_r3_c3_dem.tif").unlink()  # the file server now answers 404 for it
    with pytest.raises(PatchReadError, match=r"failed after 1 attempt\(s\).*404") as caught:
        cube.download(zone, runner=LocalRunner(retries=3, backoff=0.01))
    cause = caught.value.__cause__
    assert isinstance(cause, AssetReadError) and cause.permanent and cause.status == 404
    assert cause.url.endswith("tile_r3_c3_dem.tif") and isinstance(cause.__cause__, PermanentSourceError)
    assert len(cube.history()) == 2  # nothing committed


@pytest.mark.parametrize(("status", "kind", "attempts"), [(404, PermanentSourceError, 1),
                                                          (403, PermanentSourceError, 1),
                                                          (503, TransientSourceError, 3)])
def test_a_stac_api_failing_is_asked_again_only_when_that_may_help(status, kind, attempts):
    with answering(status) as (url, asked):
        with pytest.raises(CatalogError, match=f"after {attempts} attempt") as caught:
            harvest(url, "c", Window((0.0, 0.0, 1.0, 1.0)), attempts=3, backoff=0.01)
    failure = caught.value.__cause__
    assert type(failure) is kind and failure.status == status and failure.url == url
    assert len(asked) == attempts  # pystac-client opens the landing page first: one request per attempt
