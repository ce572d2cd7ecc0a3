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


def _item(folder, n: int, value: int, offset: float, x0: float = 500_000, nodata: int | None = 0,
          dtype: str = "uint16") -> pystac.Item:
    """A 32 x 32 COG-like GeoTIFF and its Item (scale 1e-4, the given offset)."""
    transform = Affine(10, 0, x0, 0, -10, 5_000_000)
    path = folder / f"item{n}.tif"
    with rasterio.open(path, "w", driver="GTiff", width=32, height=32, count=1, dtype=dtype, crs="EPSG:32633",
                       transform=transform, nodata=nodata) as dst:
        dst.write(np.full((1, 32, 32), value, dtype))
    band = {"data_type": dtype, "scale": 1e-4, "offset": offset}
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
    assert alone.clipped == {"v": 32 * 32}  # and counted, alone too


def test_a_valid_value_the_cubes_type_cannot_hold_never_becomes_nodata_though_no_item_needs_converting(tmp_path):
    backend = _backend(Variable("uint16", nodata=0, scale_factor=1e-4, add_offset=0.0))
    below = _item(tmp_path, 1, -5, 0.0, nodata=100, dtype="int16")  # valid, below uint16's range
    out = backend.read(PatchIndex("z", 0, 0, ZONE, items=(below,)))
    assert out["v"][0, 0] == 1 and out["v"][-1, -1] == 0  # clipped to the least valid value, not to nodata
    assert out.clipped == {"v": 32 * 32}


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


@pytest.mark.parametrize("first_declares", [False, True])
def test_items_of_one_patch_that_differ_in_declaring_nodata_keep_nodata_and_each_others_data(tmp_path, first_declares):
    # an old-baseline Item (no offset) and a new one (-0.1), as Planetary Computer (nothing declared) and
    # Earth Search (nodata 0) publish them: where neither has data the cube holds nodata, never reflectance 0.0
    backend = _backend(Variable("uint16", nodata=0, scale_factor=1e-4, add_offset=-0.1))
    old = _item(tmp_path, 1, 1234, 0.0, nodata=0 if first_declares else None)
    new = _item(tmp_path, 2, 2234, -0.1, 500_160, nodata=None if first_declares else 0)
    with rasterio.open(old.assets["b"].href, "r+") as dst:  # its first four columns hold no data (DN 0)
        dst.write(np.zeros((1, 32, 4), "uint16"), window=((0, 32), (0, 4)))
    out = backend.read(PatchIndex("z", 0, 0, ZONE, items=(old, new)))["v"]
    np.testing.assert_array_equal(out[0, :4], 0)  # the old Item's own nodata
    np.testing.assert_array_equal(out[0, 4:32], 2234)  # 1234 brought to the cube's convention (+1000)
    np.testing.assert_array_equal(out[0, 32:48], 2234)  # where only the new Item reaches
    np.testing.assert_array_equal(out[0, 48:], 0)  # where no Item reaches
    np.testing.assert_array_equal(out[32:], 0)


def test_items_of_one_patch_declaring_different_nodata_are_an_item_error_naming_them(tmp_path):
    from stacube.errors import ItemError

    backend = _backend(Variable("uint16", nodata=0, scale_factor=1e-4, add_offset=-0.1))
    items = (_item(tmp_path, 1, 1234, -0.1, nodata=0), _item(tmp_path, 2, 2234, -0.1, 500_160, nodata=65535))
    mixed = (items[0], _item(tmp_path, 3, 2234, -0.1, 500_160, nodata=None), _item(tmp_path, 4, 1, -0.1, nodata=0))
    for item in mixed[1:]:
        item.datetime = item.datetime.replace(hour=11)
    assert backend.read(PatchIndex("z", 0, 0, ZONE, items=mixed))["v"][0, 40] == 2234  # one value, some silent: fine
    with pytest.raises(ItemError, match=r"declare different nodata for asset 'b' \(0: item1; 65535: item2\)"):
        backend.read(PatchIndex("z", 0, 0, ZONE, items=items))
