"""Cubes on S3 through Icechunk's S3 storage, against a local moto_server."""

from __future__ import annotations

import numpy as np
import pytest

from stacube import Cube, CubeNotFoundError

from .conftest import dem_spec
from .test_concurrent import run_together
from .test_load import items_of, odc_reference


def test_a_cube_on_s3_loads_like_one_on_disk(servers, s3_endpoint, sample_layout, tmp_path):
    _, api = servers
    zone = sample_layout.extent_geobox()
    url = "s3://cubes/dem-one"
    cube = Cube.create(url, dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "cat")
    tile = cube.load(zone[0:600, 0:600])
    dem, _ = odc_reference(items_of(api.url), zone[0:600, 0:600])
    np.testing.assert_array_equal(tile.dem.values, dem[0])
    again = Cube.open(url, catalog_dir=tmp_path / "cat").load(zone[0:600, 0:600], offline=True)
    np.testing.assert_array_equal(again.dem.values, dem[0])
    assert len(Cube.open(url).state()) == 9
    with pytest.raises(CubeNotFoundError, match="s3://cubes/nothing-here"):
        Cube.open("s3://cubes/nothing-here")


def test_concurrent_runs_on_s3_both_land(servers, s3_endpoint, sample_layout, tmp_path):
    _, api = servers
    zone = sample_layout.extent_geobox()
    url = "s3://cubes/dem-two"
    cube = Cube.create(url, dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "cat")
    reports, errors = run_together(url, tmp_path / "cat", [zone[0:512, 0:512], zone[256:768, 0:512]])
    assert errors == [] and all(r.snapshot_id for r in reports)
    assert len(cube.state()) == 6 and len(cube.history()) == 4


def test_a_lazy_tile_of_a_cube_on_s3_is_read_on_dask_workers(servers, s3_endpoint, sample_layout, tmp_path):
    """A lazy Tile's graph carries the cube's Icechunk session: workers in other processes read S3 themselves."""
    import xarray as xr
    from distributed import Client, LocalCluster, get_task_stream
    from odc.geo.geobox import GeoBox

    _, api = servers
    zone = sample_layout.extent_geobox()
    cube = Cube.create("s3://cubes/dem-lazy", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "cat")
    window = zone[100:900, 100:900]
    geographic = GeoBox.from_bbox(window.extent.to_crs("EPSG:4326").boundingbox, "EPSG:4326", resolution=0.0003)
    eager = cube.load(window)
    lazy = cube.load(window, offline=True, chunks={"x": 256, "y": 256})
    warped = cube.load(geographic, offline=True, chunks={"latitude": 128, "longitude": 128})
    here = warped.compute()  # the same graph computed in this process
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, \
            Client(cluster) as client, get_task_stream(client) as stream:
        on_workers, warped_on_workers = client.compute([lazy, warped], sync=True)
        workers = set(cluster.scheduler_info["workers"])
    xr.testing.assert_identical(on_workers.drop_attrs(), eager.drop_attrs())
    xr.testing.assert_identical(warped_on_workers.drop_attrs(), here.drop_attrs())
    ran = {task["worker"] for task in stream.data}
    assert ran and ran <= workers  # every task, reads included, ran in a worker process
    # every block of both Tiles read there: 4 x 4 blocks of 256 px x 2 variables for the pasted one alone
    assert sum("zone_part" in str(task["key"]) for task in stream.data) >= 32
