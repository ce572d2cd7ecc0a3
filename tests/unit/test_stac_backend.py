"""The STAC backend on local files: Items of different conventions in one patch, fills the source type cannot hold."""

import datetime as dt

import numpy as np
import pystac
import pytest
import rasterio
from affine import Affine
from odc.geo.geobox import GeoBox

from stacube.grid import PatchIndex
from stacube.sources.stac.backend import StacBackend
from stacube.spec import CubeSpec, StacSource, Variable

ZONE = GeoBox((64, 64), Affine(10, 0, 500_000, 0, -10, 5_000_000), "EPSG:32633")
FOOTPRINT = {"type": "Polygon", "coordinates": [[[14.9, 45.0], [15.1, 45.0], [15.1, 45.2], [14.9, 45.2], [14.9, 45.0]]]}


def _item(folder, n: int, value: int, offset: float, x0: float = 500_000, nodata: int | None = 0) -> pystac.Item:
    """A 32 x 32 uint16 COG-like GeoTIFF and its Item (scale 1e-4, the given offset)."""
    transform = Affine(10, 0, x0, 0, -10, 5_000_000)
    path = folder / f"item{n}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=1, dtype="uint16", crs="EPSG:32633",
                       transform=transform, nodata=nodata) as dst:
        dst.write(np.full((1, 32, 32), value, "uint16"))
    band = {"data_type": "uint16", "scale": 1e-4, "offset": offset}
    if nodata is not None:
        band["nodata"] = nodata
    item = pystac.Item(f"item{n}", FOOTPRINT, None, dt.datetime(2024, 1, 1, 10, n), {"proj:code": "EPSG:32633"})
    item.add_asset("b", pystac.Asset(str(path), extra_fields={"raster:bands": [band], "proj:shape": [32, 32],
                                                             "proj:transform": list(transform)[:6]}))
    return item


def _backend(variable: Variable) -> StacBackend:
    spec = CubeSpec("t", {"v": variable}, {"z": ZONE}, StacSource("https://x.invalid/", "c", {"v": "b"}),
                    chunks=(64, 64))
    return StacBackend(spec.source, spec.variables)


def test_an_item_in_the_cubes_convention_is_clipped_not_wrapped_when_another_item_needs_converting(tmp_path):
    backend = _backend(Variable("int16", nodata=-32768, scale_factor=1e-4, add_offset=0.0))
    saturated = _item(tmp_path, 1, 40_000, 0.0)  # the cube's convention, but past int16
    alone = backend.read(PatchIndex("z", 0, 0, ZONE, items=(saturated,)))
    beside = backend.read(PatchIndex("z", 0, 0, ZONE, items=(saturated, _item(tmp_path, 2, 5000, -0.1, 500_320))))
    assert alone["v"][0, 0] == 32767 and beside["v"][0, 0] == 32767  # the same value whoever shares the patch
    assert beside["v"][0, 40] == 4000 and beside.clipped == {"v": 32 * 32}  # the other Item converted: 5000 - 1000


@pytest.mark.parametrize("variable", [Variable("float32"), Variable("uint16", nodata=0, scale_factor=1e-4,
                                                                    add_offset=-0.1)])
def test_items_declaring_a_type_but_no_nodata_read_into_a_cube_whose_fill_that_type_cannot_hold(tmp_path, variable):
    backend = _backend(variable)
    items = (_item(tmp_path, 1, 2000, 0.0, nodata=None), _item(tmp_path, 2, 3000, -0.1, 500_320, nodata=None))
    out = backend.read(PatchIndex("z", 0, 0, ZONE, items=items))["v"]
    if variable.dtype == "float32":  # physical values; nowhere covered is NaN
        assert out[0, 0] == pytest.approx(0.2) and out[0, 40] == pytest.approx(0.2) and np.isnan(out[-1, -1])
    else:
        assert out[0, 0] == 3000 and out[0, 40] == 3000 and out[-1, -1] == 0
