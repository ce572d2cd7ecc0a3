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
