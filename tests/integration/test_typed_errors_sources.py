"""A source's bad filter and Earth Engine's refused credentials, end to end: a clear stacube error naming
the value, nothing retried that cannot succeed, and the cube left as it was."""

from __future__ import annotations

import re
import time

import pandas as pd
import pytest
from affine import Affine

from stacube import CatalogError, Cube, PatchReadError, SpecError, StacSource
from stacube.errors import PermanentSourceError
from stacube.runners import LocalRunner

from .conftest import dem_spec


def snapshot_of(cube: Cube) -> str:
    return cube.repo.lookup_branch("main")


def dem_source(api_url: str, **settings) -> StacSource:
    return StacSource(api_url=api_url, collection="sample-dem", assets={"dem": "dem", "datamask": "datamask"},
                      **settings)


def test_a_filter_cql2_cannot_read_fails_before_a_cube_is_made(servers, sample_layout, tmp_path):
    _, api = servers
    with pytest.raises(SpecError, match=re.escape("filter {'nonsense': 1}")):
        Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout, source=dem_source(api.url,
                                                                                          filter={"nonsense": 1})))
    assert not (tmp_path / "cube").exists()


def test_a_filter_the_catalog_refuses_names_it_and_leaves_the_cube(servers, sample_layout, make_cube):
    _, api = servers
    refused = {"op": "frobnicate", "args": [{"property": "id"}]}  # cql2 reads it; DuckDB knows no such function
    cube = make_cube(api.url, source=dem_source(api.url, filter=refused))
    before = snapshot_of(cube)
    with pytest.raises(CatalogError, match=re.escape("filter {'op': 'frobnicate'")):
        cube.download(sample_layout.extent_geobox()[0:100, 0:100])
    assert snapshot_of(cube) == before and len(cube.state()) == 0


# --- Earth Engine: credentials refused between the sync and the read ------------------------------------
ee = pytest.importorskip("ee")
COLLECTION = "TEST/SENTINEL_LIKE"


@pytest.fixture
def emulator(monkeypatch):
    import numpy as np

    from stacube.testing.earthengine import EarthEngineEmulator, EmulatedImage, serve_earthengine

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", lambda: {})  # never the public address
    for variable in ("STACUBE_EE_KEY_FILE", "GOOGLE_APPLICATION_CREDENTIALS", "STACUBE_EE_DEADLINE_S",
                     "STACUBE_EE_MAX_RETRIES"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("STACUBE_EE_TOKEN", "test")
    image = EmulatedImage(asset_id=f"{COLLECTION}/20240606_c0", start=pd.Timestamp("2024-06-06T10:00:00"),
                          end=pd.Timestamp("2024-06-06T10:00:01"), crs="EPSG:32633",
                          transform=Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5200000.0),
                          bands={"B4": np.arange(48 * 64, dtype="uint16").reshape(48, 64)})
    with serve_earthengine(EarthEngineEmulator([image])) as running:
        yield running


def test_a_credential_refused_during_a_read_fails_the_run_at_once_and_commits_nothing(emulator, tmp_path,
                                                                                       monkeypatch):
    from odc.geo.geobox import GeoBox

    from stacube import CubeSpec, EarthEngineSource, Variable
    from stacube.plan import attach_items

    zone = GeoBox((32, 64), Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5200000.0), "EPSG:32633")
    spec = CubeSpec(name="ee", zones=[zone], chunks=(32, 64), variables={"red": Variable("uint16", nodata=0)},
                    time=pd.date_range("2024-06-06", periods=1, freq="D"),
                    source=EarthEngineSource(COLLECTION, {"red": "B4"}, project="test-project", api_url=emulator.url))
    cube = Cube.create(tmp_path / "ee", spec, catalog_dir=tmp_path / "catalog")
    plan = cube.plan(zone)
    assert len(attach_items(spec, cube.catalog, plan.missing)[0].items) == 1  # synced with the token
    before = snapshot_of(cube)
    broken = tmp_path / "sa.json"
    broken.write_text("{not json")
    monkeypatch.delenv("STACUBE_EE_TOKEN")
    monkeypatch.setenv("STACUBE_EE_KEY_FILE", str(broken))  # the credential the read starts Earth Engine with
    started = time.perf_counter()
    with pytest.raises(PatchReadError, match=r"failed after 1 attempt.*STACUBE_EE_KEY_FILE names .*sa\.json") as raised:
        cube.run(plan, runner=LocalRunner(retries=3, backoff=5.0, progress=False))
    assert isinstance(raised.value.__cause__, PermanentSourceError)
    assert time.perf_counter() - started < 5  # no backoff: asking again cannot help
    assert snapshot_of(cube) == before and len(cube.state()) == 0
