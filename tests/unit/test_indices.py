"""Parcel statistics on a small Tile: the convention read from the Tile, the inward buffer, too-small parcels."""

import geopandas as gpd
import numpy as np
import pytest
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from stacube.fields import IndexSettings
from stacube.fields.indices import parcel_statistics
from stacube.radiometry import RadiometryError

BOX = GeoBox.from_bbox((500_000, 5_200_000, 500_400, 5_200_300), "EPSG:32633", resolution=10)  # 40 x 30 px


def _tile(red=2000, nir=4000, swir=3000, attrs=None):
    attrs = {"nodata": 0, "_FillValue": 0, "scale_factor": 0.0001, "add_offset": -0.1} if attrs is None else attrs
    values = {"B04": red, "B08": nir, "B11": swir}
    data = {name: xr.DataArray(np.full((1, 30, 40), value, "uint16"), dims=("time", "y", "x"), attrs=dict(attrs))
            for name, value in values.items()}
    data["SCL"] = xr.DataArray(np.full((1, 30, 40), 4, "uint8"), dims=("time", "y", "x"), attrs={"nodata": 0})
    coords = {**xr_coords(BOX), "time": np.array(["2024-06-01"], dtype="datetime64[ns]")}
    return xr.Dataset(data, coords=coords)


def _parcels(*polygons):
    return gpd.GeoDataFrame({"parcel_id": [f"P{i}" for i in range(len(polygons))]}, geometry=list(polygons),
                            crs="EPSG:32633").to_crs("EPSG:4326")


def test_reflectance_comes_from_the_tiles_convention():
    rows = parcel_statistics(_tile(), _parcels(shapely.box(500_100, 5_200_100, 500_300, 5_200_250)))
    assert rows.ndvi_mean.iloc[0] == pytest.approx((0.3 - 0.1) / (0.3 + 0.1))  # stored 2000, 4000 -> 0.1, 0.3
    assert rows.total_pixels.iloc[0] == 300


def test_an_inward_buffer_leaves_edge_pixels_out_and_a_parcel_with_none_left_is_smaller_than_a_pixel():
    parcel = shapely.box(500_100, 5_200_100, 500_300, 5_200_250)  # 20 x 15 pixels
    thin = shapely.box(500_100, 5_200_020, 500_300, 5_200_040)  # 20 m wide: nothing survives 10 m inward
    rows = parcel_statistics(_tile(), _parcels(parcel, thin), IndexSettings(inward_buffer_m=10))
    assert rows.total_pixels.tolist() == [18 * 13, 0]  # a pixel off each side
    assert rows.reason.isna().tolist() == [True, False] and rows.reason.iloc[1] == "smaller than a pixel"
    assert rows.usable.tolist() == [True, False]
    with pytest.raises(ValueError, match="inward_buffer_m"):
        IndexSettings(inward_buffer_m=-1)


def test_a_cube_without_a_declared_convention_needs_one_given_and_a_declared_one_is_never_contradicted():
    legacy = _tile(attrs={"nodata": 0, "stacube_convention": "as read"})
    parcels = _parcels(shapely.box(500_100, 5_200_100, 500_300, 5_200_250))
    with pytest.raises(RadiometryError, match=r"B04.*as read.*IndexSettings"):
        parcel_statistics(legacy, parcels)
    rows = parcel_statistics(legacy, parcels, IndexSettings(scale=0.0001, offset=0.0))
    assert rows.ndvi_mean.iloc[0] == pytest.approx((0.4 - 0.2) / (0.4 + 0.2))
    with pytest.raises(RadiometryError, match="contradicts"):
        parcel_statistics(_tile(), parcels, IndexSettings(scale=0.0001, offset=0.0))
