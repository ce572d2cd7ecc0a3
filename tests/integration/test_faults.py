"""Flaky sources: a fault-injecting proxy between stacube and the STAC API and COG server."""

from __future__ import annotations

import numpy as np
import pytest

from stacube import Cube, PatchReadError
from stacube.testing.servers import Faults, fault_counts, serve_sample

from .conftest import dem_spec

ALL_KINDS = {"500", "503", "429", "reset", "stall", "truncated", "corrupt"}


@pytest.fixture(scope="module")
def clean_cube(servers, sample_layout, tmp_path_factory):
    """The whole sample downloaded without faults: what every faulty run must end up equal to."""
    folder = tmp_path_factory.mktemp("clean")
    cube = Cube.create(folder / "cube", dem_spec(servers[1].url, sample_layout), catalog_dir=folder / "catalog")
    cube.download(sample_layout.extent_geobox())
    return cube


def test_at_ten_percent_faults_every_run_completes_and_the_cube_equals_a_clean_one(
        sample_dir, sample_layout, clean_cube, tmp_path):
    zone = sample_layout.extent_geobox()
    half_y, half_x = zone.shape.y // 2, zone.shape.x // 2
    quarters = [zone[:half_y, :half_x], zone[:half_y, half_x:], zone[half_y:, :half_x], zone[half_y:, half_x:]]
    with serve_sample(sample_dir, faults=Faults(rate=0.1, stall_s=2.0, seed=7)) as (files, api):
        cube = Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "catalog")
        for quarter in quarters:  # four runs, default runner settings: each one completes
            report = cube.download(quarter)
            assert report.snapshot_id and not report.patches_failed
        injected = fault_counts(files)
    assert len(injected) >= 4 and sum(injected.values()) >= 15  # faults of many kinds (each kind: below)
    assert list(cube.state().id) == list(clean_cube.state().id)
    faulty, clean = cube.load(zone, offline=True), clean_cube.load(zone, offline=True)
    for name in ("dem", "datamask"):  # array for array
        np.testing.assert_array_equal(faulty[name].values, clean[name].values)


@pytest.mark.parametrize("kind", sorted(ALL_KINDS))
def test_each_kind_of_fault_is_survived_and_leaves_the_same_values(kind, sample_dir, sample_layout, clean_cube,
                                                                    tmp_path):
    roi = sample_layout.extent_geobox()[0:512, 0:512]
    with serve_sample(sample_dir, faults=Faults(rate=0.2, kinds=(kind,), stall_s=1.0, seed=11)) as (files, api):
        cube = Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "catalog")
        report = cube.download(roi)
        injected = fault_counts(files)
    assert injected.get(kind, 0) >= 1 and report.snapshot_id and len(report.patches_written) == 4
    faulty, clean = cube.load(roi, offline=True), clean_cube.load(roi, offline=True)
    for name in ("dem", "datamask"):
        np.testing.assert_array_equal(faulty[name].values, clean[name].values)


def test_a_flaky_stac_api_is_asked_again_and_the_catalog_ends_up_whole(sample_dir, sample_layout, clean_cube,
                                                                       tmp_path):
    faults = Faults(rate=0.2, kinds=("500", "503", "429", "reset", "truncated", "corrupt"), seed=14)
    with serve_sample(sample_dir, api_faults=faults) as (_files, api):
        cube = Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "catalog")
        cube.download(sample_layout.extent_geobox())
        injected = fault_counts(api)
    assert sum(injected.values()) >= 1  # the search met faults and was asked again
    assert {i.id for i in cube.catalog.search()} == {i.id for i in clean_cube.catalog.search()}  # all 16 Items
    assert len(cube.catalog) == 16


def test_a_source_that_always_fails_fails_the_run_naming_patch_item_and_url_and_commits_nothing(
        sample_dir, sample_layout, tmp_path):
    from stacube.runners import LocalRunner

    with serve_sample(sample_dir, faults=Faults(rate=0.0, always=("tile_r1_c1_dem.tif",))) as (files, api):
        cube = Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "catalog")
        before = cube.repo.lookup_branch("main")
        with pytest.raises(PatchReadError) as caught:
            cube.download(sample_layout.extent_geobox()[400:700, 400:700], runner=LocalRunner(retries=2,
                                                                                            backoff=0.01))
    message = str(caught.value)
    assert "failed after 3 attempt(s)" in message and "503" in message
    assert f"{files.url}/tile_r1_c1_dem.tif" in message and "tile_r1_c1" in message.split("items: ")[1]
    assert caught.value.patch_id in message
    assert cube.repo.lookup_branch("main") == before and len(cube.state()) == 0


def test_earth_engine_behind_the_fault_proxy_completes_every_run_with_the_same_values(tmp_path, monkeypatch):
    import pandas as pd

    from stacube import CubeSpec, EarthEngineSource, Variable
    from stacube.testing.earthengine import EarthEngineEmulator, serve_earthengine
    from stacube.testing.servers import start_fault_proxy

    from .test_earthengine import COLLECTION, _image, _patch_grid

    ee = pytest.importorskip("ee")
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", lambda: {})
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("STACUBE_EE_TOKEN", "fault-test-token")
    monkeypatch.setenv("STACUBE_EE_DEADLINE_S", "5")
    images = [_image(day, c) for day in ("2024-06-01", "2024-06-06", "2024-06-11") for c in (0, 1)]
    zone = _patch_grid(500000.0, 5200000.0, (64, 160))

    def cube_over(api_url: str, name: str) -> Cube:
        spec = CubeSpec(name="ee", zones=[zone], chunks=(16, 32),
                        time=pd.date_range("2024-06-01", periods=15, freq="D"),
                        variables={"red": Variable("uint16", nodata=0), "ndvi": Variable("float32")},
                        source=EarthEngineSource(COLLECTION, {"red": "B4", "ndvi": "NDVI"}, project="test-project",
                                                 api_url=api_url))
        return Cube.create(tmp_path / name, spec, catalog_dir=tmp_path / f"{name}-catalog")

    with serve_earthengine(EarthEngineEmulator(images, page_size=2)) as emulator:
        clean = cube_over(emulator.url, "clean")
        clean.download(zone)
        proxy = start_fault_proxy(emulator.url, Faults(rate=0.1, stall_s=1.0, seed=5))
        try:
            faulty = cube_over(proxy.url, "faulty")
            halves = [zone[:, :80], zone[:, 80:]]
            for half in halves:  # two runs (and two catalog syncs) through the proxy: each completes
                report = faulty.download(half)
                assert report.snapshot_id and not report.patches_failed
            injected = fault_counts(proxy)
        finally:
            proxy.stop()
    assert sum(injected.values()) >= 5 and len(injected) >= 3, injected
    assert list(faulty.state().id) == list(clean.state().id)
    ours, theirs = faulty.load(zone, offline=True), clean.load(zone, offline=True)
    for name in ("red", "ndvi"):
        np.testing.assert_array_equal(ours[name].values, theirs[name].values)
