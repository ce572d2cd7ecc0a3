"""Bad input and failed runs: a clear error naming the value, and the cube left exactly as it was."""

from __future__ import annotations

import json

import numpy as np
import pytest
from odc.geo.geobox import GeoBox
from odc.geo.geom import box

from stacube import (
    CatalogError,
    Cube,
    ItemError,
    PatchReadError,
    ROIError,
    StacSource,
    TOIError,
    UnknownVariableError,
)
from stacube.catalog import Window
from stacube.runners import LocalRunner
from stacube.sources.stac.harvest import harvest
from stacube.testing.servers import free_port, start_stac_api

from .conftest import dem_spec


def snapshot_of(cube: Cube) -> str:
    return cube.repo.lookup_branch("main")


def test_harvest_follows_paging(servers):
    _, api = servers
    items = harvest(api.url, "sample-dem", Window((-180, -90, 180, 90)), page_size=3)
    assert len(items) == 16 and len({i["id"] for i in items}) == 16


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda c, z: c.load(box(0, 0, 1000, 1000, "EPSG:32633")), ROIError, r"outside every zone of cube 'dem'"),
        (lambda c, z: c.load(GeoBox((10, 10), z.transform, None)), ROIError, "has no CRS"),
        (lambda c, z: c.load(z[0:10, 0:10], toi="2024-01-01"), TOIError, "'2024-01-01' given, but this cube has no"),
        (lambda c, z: c.load(z[0:10, 0:10], variables=["dem", "slope"]), UnknownVariableError, "'slope'"),
        (lambda c, z: c.download(z[0:10, 0:10], toi=slice("2020", "2021")), TOIError, "no time axis"),
    ],
)
def test_bad_input_fails_before_any_download(servers, make_cube, sample_layout, call, error, message):
    _, api = servers
    cube = make_cube(api.url)
    before = snapshot_of(cube)
    with pytest.raises(error, match=message):
        call(cube, sample_layout.extent_geobox())
    assert snapshot_of(cube) == before
    assert not cube.catalog.folder.exists()  # nothing was even synced


def test_unreachable_catalog_names_the_url_and_leaves_the_cube(make_cube, sample_layout):
    url = f"http://127.0.0.1:{free_port()}"
    cube = make_cube(url)
    before = snapshot_of(cube)
    with pytest.raises(CatalogError, match=f"could not search the STAC API {url}"):
        cube.load(sample_layout.extent_geobox()[0:100, 0:100])
    assert snapshot_of(cube) == before and len(cube.state()) == 0


def test_item_without_the_asset_is_refused_before_download(servers, tmp_path, sample_layout):
    _, api = servers
    source = StacSource(api_url=api.url, collection="sample-dem", assets={"dem": "dem", "datamask": "mask"})
    cube = Cube.create(tmp_path / "c", dem_spec(api.url, sample_layout, source=source), catalog_dir=tmp_path / "cat")
    before = snapshot_of(cube)
    with pytest.raises(ItemError, match=r"Item 'tile_r0_c0' has no asset 'mask'"):
        cube.load(sample_layout.extent_geobox()[0:100, 0:100])
    assert snapshot_of(cube) == before


def test_item_without_projection_info_is_refused(private_servers, tmp_path, sample_layout):
    folder, _, _ = private_servers
    served = json.loads(next(folder.glob("items-*.json")).read_text())
    for feature in served["features"]:
        for key in ("proj:code", "proj:transform", "proj:bbox", "proj:shape"):
            feature["properties"].pop(key)
    (folder / "noproj.json").write_text(json.dumps(served))
    bare = start_stac_api(folder / "noproj.json")
    try:
        cube = Cube.create(tmp_path / "c", dem_spec(bare.url, sample_layout), catalog_dir=tmp_path / "cat")
        with pytest.raises(ItemError, match="lacks projection info"):
            cube.load(sample_layout.extent_geobox()[0:100, 0:100])
        assert len(cube.history()) == 2
    finally:
        bare.stop()


def test_a_corrupt_cog_fails_the_run_names_patch_and_url_and_commits_nothing(private_servers, tmp_path, sample_layout):
    folder, _, api = private_servers
    cube = Cube.create(tmp_path / "c", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "cat")
    zone = sample_layout.extent_geobox()
    good = cube.load(zone[0:256, 0:256])  # a first run that must survive the failed one
    before = snapshot_of(cube)
    state_before = cube.state()
    original = (folder / "tile_r3_c3_dem.tif").read_bytes()
    (folder / "tile_r3_c3_dem.tif").write_bytes(b"II*\x00" + b"\x00" * 200)  # a TIFF header and garbage
    with pytest.raises(PatchReadError, match=r"patch epsg3413/y\dx\d failed.*tile_r3_c3_dem\.tif") as caught:
        cube.download(zone, runner=LocalRunner(retries=1, backoff=0.01))  # the patches over tile r3c3 fail
    assert [url.rsplit("/", 1)[-1] for url in caught.value.urls] == ["tile_r3_c3_dem.tif"]  # that file only
    assert snapshot_of(cube) == before
    assert cube.state().id.tolist() == state_before.id.tolist()
    np.testing.assert_array_equal(cube.load(zone[0:256, 0:256], offline=True).dem.values, good.dem.values)
    # Asked to skip failures, a run commits every other patch and lists the failed ones, unfilled.
    skipping = cube.download(zone, runner=LocalRunner(retries=1, backoff=0.01, skip_failed=True))
    failed = set(skipping.patches_failed)
    assert failed and all(f.urls == [f.urls[0]] and f.urls[0].endswith("tile_r3_c3_dem.tif")
                          for f in skipping.patches_failed.values())
    assert all("tile_r3_c3" in f.items for f in skipping.patches_failed.values())
    assert len(skipping.patches_written) + len(skipping.patches_empty) + len(failed) == 63
    assert not failed & set(cube.state().id)
    assert cube.repo.lookup_snapshot(skipping.snapshot_id).metadata["stacube"]["patches_failed"] == sorted(failed)
    # Repaired, the next run completes and fills exactly what could not be read.
    (folder / "tile_r3_c3_dem.tif").write_bytes(original)
    report = cube.download(zone)
    assert set(report.patches_written) == failed and report.patches_already_filled == 64 - len(failed)


@pytest.mark.parametrize("shift", [0.0, 0.5], ids=["pasted", "read-back"])
def test_a_cold_load_that_skipped_failed_patches_names_them_missing_and_warns(private_servers, tmp_path,
                                                                             sample_layout, shift):
    folder, _, api = private_servers
    cube = Cube.create(tmp_path / "c", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "cat")
    (folder / "tile_r3_c3_dem.tif").write_bytes(b"II*\x00" + b"\x00" * 200)  # a TIFF header and garbage
    roi = sample_layout.extent_geobox()[1024:1535, 1024:1535]  # 4 patches (shifted too), one over tile r3c3
    roi = roi.translate_pix(shift, shift)  # by half a pixel: off the zone's grid, read back from the cube
    with pytest.warns(UserWarning, match="not in the cube") as caught:
        tile = cube.load(roi, runner=LocalRunner(retries=0, skip_failed=True, progress=False))
    report = cube.repo.lookup_snapshot(tile.attrs["stacube_snapshot"]).metadata["stacube"]
    assert report["patches_failed"] == ["epsg3413/y5x5"] == tile.attrs["missing_patches"]
    assert sorted(report["patches"]) == ["epsg3413/y4x4", "epsg3413/y4x5", "epsg3413/y5x4"]
    assert any("1 of them failed" in str(w.message) for w in caught)
    assert np.isnan(tile.dem.values[-1, -1]) and np.isfinite(tile.dem.values[0, 0])
    with pytest.warns(UserWarning, match="not in the cube"):
        warm = cube.load(roi, offline=True)
    assert sorted(warm.attrs["missing_patches"]) == sorted(tile.attrs["missing_patches"])  # as the cube says
    np.testing.assert_array_equal(tile.dem.values, warm.dem.values)


def test_transient_server_errors_are_retried_until_the_run_completes(servers, sample_dir, tmp_path, sample_layout):
    from stacube.testing.servers import serve_sample

    from .test_load import items_of, odc_reference

    zone = sample_layout.extent_geobox()
    roi = zone[0:512, 0:512]
    with serve_sample(sample_dir, fail_first=5) as (_, flaky_api):  # 503 five times: more than GDAL asks again
        cube = Cube.create(tmp_path / "c", dem_spec(flaky_api.url, sample_layout), catalog_dir=tmp_path / "cat")
        with pytest.raises(PatchReadError, match="503"):
            cube.download(roi, runner=LocalRunner(retries=0))
        assert len(cube.history()) == 2
        report = cube.download(roi, runner=LocalRunner(retries=3, backoff=0.01))
    assert len(report.patches_written) == 4
    dem, _ = odc_reference(items_of(servers[1].url), roi)
    np.testing.assert_array_equal(cube.load(roi, offline=True).dem.values, dem[0])


class FailsAfterAPartialWrite:
    """A backend whose first attempt at each patch hands over a bogus DEM (all 999) and then a datamask
    that breaks the write: the DEM is already in the attempt's fork when the attempt fails."""

    def __init__(self, backend):
        self.backend, self.tried = backend, set()

    def check_items(self, items):
        self.backend.check_items(items)

    def read(self, patch):
        data = self.backend.read(patch)
        if patch.id in self.tried:
            return data
        self.tried.add(patch.id)
        return {"dem": np.full_like(data["dem"], 999.0), "datamask": "not an array"}


def run_with_partial_failures(cube, roi, runner):
    """Download ``roi`` through ``runner`` with a backend that fails each patch once after a partial write."""
    from stacube.plan import attach_items
    from stacube.run import start_run

    patches = attach_items(cube.spec, cube.catalog, cube.plan(roi).missing)
    backend = FailsAfterAPartialWrite(cube.spec.source.backend(cube.spec.variables))
    return start_run(cube.repo, cube.spec, patches, backend, runner).complete()


def test_a_retried_patch_starts_from_a_fresh_fork(servers, make_cube, sample_layout):
    from .test_load import items_of, odc_reference

    _, api = servers
    cube = make_cube(api.url)
    roi = sample_layout.extent_geobox()[0:256, 0:512]  # at the zone's corner: its nodata border is in there
    report = run_with_partial_failures(cube, roi, LocalRunner(concurrency=2, backoff=0.01, progress=False))
    assert len(report.patches_written) == 2
    reference, _ = odc_reference(items_of(api.url), roi)
    assert np.isnan(reference[0]).any()  # the retry wrote nodata there: the failed attempt's 999s must be gone
    np.testing.assert_array_equal(cube.load(roi, offline=True).dem.values, reference[0])
