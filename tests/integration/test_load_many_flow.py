"""The load-many flow: a ROI file cut out of a cube into COGs, what the cube lacks downloaded as one commit."""

from __future__ import annotations

import shutil
import time

import numpy as np
import pytest
import rasterio
from odc.geo.geom import box

from stacube import Cube
from stacube.testing.servers import serve_sample

from .conftest import dem_spec
from .test_load_many import WINDOWS, roi_frame

prefect = pytest.importorskip("prefect")


@pytest.fixture(autouse=True)
def _prefect(prefect_api):
    """Every test here runs against the session's temporary Prefect API."""


def _api(path: str, query: dict) -> list[dict]:
    import httpx
    from prefect.settings import PREFECT_API_URL

    return httpx.post(f"{PREFECT_API_URL.value()}{path}", json=query).raise_for_status().json()


def test_the_flow_writes_a_cog_per_roi_from_one_commit_naming_the_flow_run(servers, make_cube, sample_layout,
                                                                         tmp_path):
    from stacube.flows.many import load_many

    _, api = servers
    cube = make_cube(api.url)
    path = tmp_path / "rois.parquet"
    roi_frame(sample_layout, WINDOWS, ["a", "b", "c"]).to_parquet(path)
    before = len(cube.history())
    summary = load_many(cube.url, str(path), str(tmp_path / "chips"), catalog_dir=str(tmp_path / "catalog"),
                        id_column="chip", variables=["dem"], concurrency=2)
    history = cube.history()
    assert len(history) == before + 1 and summary["snapshot"] == history.snapshot[0]
    meta = cube.repo.lookup_snapshot(summary["snapshot"]).metadata["stacube"]
    assert meta["flow_run_id"] == summary["flow_run_id"] and meta["flow"] == "stacube-load-many"
    assert meta["load_many"] == {"rois": 3, "patches": 5, "patches_missing": 5} and meta["run_id"] == summary["run_id"]
    assert summary["rois"] == summary["written"] == 3 and summary["patches_written"] == 5
    zone = sample_layout.extent_geobox()
    for name, window in zip("abc", WINDOWS, strict=True):
        expected = cube.load(box(*zone[window].extent.boundingbox, "EPSG:3413"), variables="dem")
        with rasterio.open(tmp_path / "chips" / f"{name}.tif") as cog:  # one variable: <name>.tif
            np.testing.assert_array_equal(cog.read(1), expected.dem.values)
    # the flow run's log says how far it got, and its artifact what it wrote
    logs: list[str] = []
    for _ in range(60):  # Prefect ships logs to its API in batches, in the background
        logs = [log["message"] for log in _api("/logs/filter", {
            "logs": {"flow_run_id": {"any_": [summary["flow_run_id"]]}}, "limit": 200})]
        if any(m.startswith("load-many into") for m in logs):
            break
        time.sleep(0.5)
    assert "load-many: 5/5 patches written, 3/3 Tiles written" in logs
    (artifact,) = _api("/artifacts/filter", {"artifacts": {"key": {"any_": ["stacube-load-many"]}, "flow_run_id": {
        "any_": [summary["flow_run_id"]]}}, "limit": 5})
    assert summary["snapshot"] in artifact["data"] and "| 5 | 5 | 5 | 0 |" in artifact["data"]
    # run again: nothing to download, no commit, the same files
    again = load_many(cube.url, str(path), str(tmp_path / "chips"), catalog_dir=str(tmp_path / "catalog"),
                      id_column="chip", variables=["dem"])
    assert again["patches_missing"] == 0 and again["run_id"] is None and cube.history().equals(history)
    assert again["snapshot"] == summary["snapshot"]


def test_a_flow_run_over_a_missing_asset_fails_and_commits_nothing(sample_dir, sample_layout, tmp_path):
    from stacube.flows.many import load_many

    folder = tmp_path / "sample"
    shutil.copytree(sample_dir, folder)
    (folder / "tile_r3_c3_dem.tif").unlink()
    with serve_sample(folder) as (_, api):
        cube = Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "catalog")
        before = cube.history()
        path = tmp_path / "rois.geojson"
        roi_frame(sample_layout, [*WINDOWS, (slice(1600, 1700), slice(1600, 1700))]).to_file(path)
        state = load_many(cube.url, str(path), str(tmp_path / "chips"), catalog_dir=str(tmp_path / "catalog"),
                          return_state=True)
    assert state.is_failed()
    with pytest.raises(Exception, match=r"epsg3413/y6x6 failed .*tile_r3_c3_dem\.tif"):
        state.result()
    assert cube.history().equals(before)
