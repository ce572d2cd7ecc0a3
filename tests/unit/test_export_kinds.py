"""Every kind of Tile variable leaves in a file other tools read, with its values, its variable and its date:
booleans (as 0/1 bytes), float16, and the time step of a one-step Tile in a COG."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio
import xarray as xr
from odc.geo.geobox import GeoBox

from stacube import CubeSpec, StacSource, Variable
from stacube.export import write_tile
from stacube.tile import tile_dataset

UTM = GeoBox.from_bbox((500_000, 5_000_000, 500_400, 5_000_300), "EPSG:32632", resolution=10)  # 30 x 40 px
VARIABLES = {"dem": Variable("float32", units="m"), "wet": Variable("bool", nodata=False),
             "half": Variable("float16", nodata=-1.0)}


def _tile(time=None):
    spec = CubeSpec(name="t", zones=[UTM], chunks=(256, 256), variables=VARIABLES, time=time,
                    source=StacSource(api_url="http://127.0.0.1:1", collection="c", assets={k: k for k in VARIABLES}))
    values = {"dem": np.arange(1200, dtype="float32").reshape(30, 40), "wet": np.eye(30, 40, dtype=bool),
              "half": np.full((30, 40), 0.5, "float16")}
    steps = None
    if time is not None:
        steps, values = [1], {k: v[np.newaxis] for k, v in values.items()}
    return tile_dataset(spec, UTM, steps, list(values), values)


@pytest.mark.parametrize("lazy", [False, True], ids=["eager", "lazy"])
def test_a_cog_per_variable_of_every_kind_with_its_values_name_and_date(tmp_path, lazy):
    tile = _tile(pd.date_range("2024-05-01", periods=3, freq="D"))
    if lazy:
        tile = tile.chunk({"x": 16, "y": 16})
    paths = write_tile(tile, tmp_path / "t.tif", "cog")
    assert [p.name for p in paths] == ["t_dem.tif", "t_wet.tif", "t_half.tif"]
    expected = tile.isel(time=0).compute()
    for name, path in zip(VARIABLES, paths, strict=True):
        with rasterio.open(path) as cog:
            values = cog.read(1)
            tags = cog.tags()
        np.testing.assert_array_equal(values, expected[name].values.astype(values.dtype))
        assert tags["stacube_variable"] == name and tags["stacube_time"] == "2024-05-02T00:00:00"
        assert tags["TIFFTAG_DATETIME"] == "2024:05:02 00:00:00"
    with rasterio.open(paths[1]) as mask:
        assert mask.dtypes[0] == "uint8" and set(np.unique(mask.read(1))) == {0, 1}


def test_a_netcdf_of_a_tile_with_a_boolean_variable_reads_back_equal(tmp_path):
    tile = _tile()
    write_tile(tile, tmp_path / "t.nc", "netcdf")
    back = xr.open_dataset(tmp_path / "t.nc", engine="h5netcdf")
    for name in VARIABLES:
        np.testing.assert_array_equal(back[name].values, tile[name].values)
