"""The Tile built from cached CRS attributes is identical to one built with odc-geo's ``xr_coords``."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from stacube import CubeSpec, StacSource, Variable
from stacube.tile import tile_dataset, variable_attrs


def _source(*names: str) -> StacSource:
    return StacSource(api_url="http://127.0.0.1:1", collection="c", assets={n: n for n in names})

LAEA = ("+proj=laea +lat_0=52 +lon_0=10 +x_0=4321000 +y_0=3210000 +ellps=GRS80 +units=m +no_defs")


def _odc_tile(spec, dst, steps, values):
    """What a Tile was before: odc-geo's coordinates and DataArrays."""
    coords = dict(xr_coords(dst))
    dims = tuple(dst.dimensions)
    if steps is not None:
        coords["time"] = pd.DatetimeIndex(spec.time[list(steps)])
        dims = ("time", *dims)
    data = {n: xr.DataArray(v, dims=dims, attrs=variable_attrs(spec.variables[n])) for n, v in values.items()}
    return xr.Dataset(data, coords=coords)


GRIDS = {
    "polar stereographic": GeoBox.from_bbox((-100_000, -200_000, 100_000, 0), "EPSG:3413", resolution=2),
    "utm": GeoBox.from_bbox((500_000, 5_000_000, 520_000, 5_010_000), "EPSG:32632", resolution=10),
    "lon/lat": GeoBox.from_bbox((10, 45, 11, 46), "EPSG:4326", resolution=0.001),
    "a CRS without an EPSG code": GeoBox.from_bbox((4e6, 3e6, 4.01e6, 3.01e6), LAEA, resolution=20),
    "rotated": GeoBox((40, 30), Affine.translation(500_000, 5_000_000) * Affine.rotation(15) * Affine.scale(10, -10),
                      "EPSG:32632"),
}


@pytest.mark.parametrize("name", list(GRIDS))
@pytest.mark.parametrize("timed", [False, True])
def test_a_tile_is_identical_to_one_with_odc_geos_coordinates(name, timed):
    zone = GRIDS[name]
    spec = CubeSpec(name="t", zones=[zone] if name != "rotated" else [GRIDS["utm"]], chunks=(256, 256),
                    variables={"dem": Variable("float32", units="m"), "mask": Variable("uint8", nodata=0),
                               "wet": Variable("bool", nodata=False)},
                    time=pd.date_range("2024-01-01", periods=5, freq="D") if timed else None,
                    source=_source("dem", "mask", "wet"))
    rng = np.random.default_rng(3)
    for dst in (zone[0:40, 0:30], zone[3:4, 7:8], zone[10:37, 2:29]):
        steps = [1, 3] if timed else None
        lead = (2,) if timed else ()
        values = {"dem": rng.random(lead + dst.shape.yx).astype("float32"),
                  "mask": rng.integers(0, 3, lead + dst.shape.yx).astype("uint8"),
                  "wet": rng.random(lead + dst.shape.yx) > 0.5}
        made = tile_dataset(spec, dst, steps, list(values), values)
        want = _odc_tile(spec, dst, steps, values)
        xr.testing.assert_identical(made, want)
        for coord in want.coords:
            assert made[coord].dtype == want[coord].dtype
            assert list(made[coord].attrs) == list(want[coord].attrs)  # the same attributes in the same order
        assert made.odc.geobox == want.odc.geobox
        assert made.dem.odc.crs == dst.crs


def test_tiles_do_not_share_their_crs_coordinate():
    zone = GRIDS["utm"]
    spec = CubeSpec(name="t", zones=[zone], chunks=(256, 256), variables={"dem": Variable("float32")},
                    source=_source("dem"))
    one = tile_dataset(spec, zone[0:2, 0:2], None, ["dem"], {"dem": np.zeros((2, 2), "float32")})
    two = tile_dataset(spec, zone[0:2, 0:2], None, ["dem"], {"dem": np.zeros((2, 2), "float32")})
    one.spatial_ref.attrs["GeoTransform"] = "changed"
    one.spatial_ref.values[...] = 1
    assert two.spatial_ref.attrs["GeoTransform"] != "changed" and int(two.spatial_ref) == 32632
