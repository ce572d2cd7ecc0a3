"""A cube around the North Pole (EPSG:3413): patches over the pole must find the Items that cover it."""

from __future__ import annotations

import numpy as np

from stacube import Cube
from stacube.testing.generate import SampleLayout, generate_sample
from stacube.testing.servers import serve_sample

from .conftest import dem_spec
from .test_load import items_of, odc_reference

POLAR = SampleLayout(origin=(-6_000.0, 6_000.0), rows=3, cols=3, tile_size=512, overlap=64)  # pole at (0, 0)


def test_patches_over_the_pole_are_filled_from_the_items_there(tmp_path):
    folder = generate_sample(tmp_path / "polar", POLAR)
    with serve_sample(folder) as (_, api):
        cube = Cube.create(tmp_path / "c", dem_spec(api.url, POLAR), catalog_dir=tmp_path / "cat")
        zone = POLAR.extent_geobox()
        tile = cube.load(zone)
        dem, _ = odc_reference(items_of(api.url), zone)
    state = cube.state()
    assert state.has_data.all()  # no patch was mistaken for one without source data
    pole_row, pole_col = (~zone.transform) @ (0.0, 0.0)
    assert np.isfinite(tile.dem.values[int(pole_row), int(pole_col)])
    np.testing.assert_array_equal(tile.dem.values, dem[0])
