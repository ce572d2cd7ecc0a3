"""A Tile written to files refuses a format it does not know, or a GeoTIFF of several time steps, with an
error of the tree naming the value (issue 22.4), before it makes any folder."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from stacube.errors import PermanentError, SpecError, TOIError
from stacube.export import write_tile

GEOBOX = GeoBox.from_bbox((500_000, 5_200_000, 500_080, 5_200_080), "EPSG:32633", resolution=10)


def _tile(steps: int | None = None) -> xr.Dataset:
    values = np.arange(64, dtype="float32").reshape(8, 8)
    tile = xr.Dataset({"dem": (("y", "x"), values, {"nodata": np.nan})}, coords=xr_coords(GEOBOX))
    if steps is not None:
        tile = tile.expand_dims(time=pd.date_range("2024-05-01", periods=steps))
    return tile


@pytest.mark.parametrize(("name", "fmt", "named"), [
    ("tile.xyz", None, "'xyz'"), ("tile", None, "''"), ("tile.tif", "png", "'png'"), ("tile.tif", "XYZ", "'XYZ'"),
])
def test_an_unknown_format_is_a_spec_error_naming_it_and_nothing_is_made(tmp_path, name, fmt, named):
    out = tmp_path / "new" / name
    with pytest.raises(SpecError) as raised:
        write_tile(_tile(), out, fmt)
    assert f"unknown output format {named}" in str(raised.value) and isinstance(raised.value, ValueError)
    assert not (tmp_path / "new").exists()


def test_a_geotiff_of_several_time_steps_is_a_toi_error_and_nothing_is_made(tmp_path):
    out = tmp_path / "new" / "tile.tif"
    with pytest.raises(TOIError, match="has 2 time steps") as raised:
        write_tile(_tile(steps=2), out, None)
    assert isinstance(raised.value, PermanentError) and isinstance(raised.value, ValueError)
    assert not (tmp_path / "new").exists()


@pytest.mark.parametrize(("name", "fmt"), [("a.tif", None), ("a.TIFF", None), ("a.out", "GeoTIFF"), ("a.nc", None),
                                           ("a.zarr", None), ("a.x", "netcdf")])
def test_the_formats_it_knows_are_written_as_before(tmp_path, name, fmt):
    written = write_tile(_tile(steps=1), tmp_path / "new" / name, fmt)
    assert written == [tmp_path / "new" / name] and written[0].exists()
