"""Parcel statistics on a small Tile: the convention read from the Tile, the inward buffer, too-small parcels."""

import geopandas as gpd
import numpy as np
import pandas as pd
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


def _pixels(red, nir, swir, scl=4):
    """A Tile whose first row holds the given DNs from its first column on (the rest: red 2000, NIR 4000)."""
    tile = _tile()
    for name, values in (("B04", red), ("B08", nir), ("B11", swir), ("SCL", scl)):
        values = np.atleast_1d(values)
        tile[name].values[0, 0, :len(values)] = values
    return tile


def test_a_pixel_with_no_positive_reflectance_is_left_out_not_averaged_as_a_huge_ratio():
    # stored DN -> reflectance DN * 0.0001 - 0.1: red 910 / NIR 1090 is -0.009 / +0.009, whose sum is 0 by hand but
    # 1.4e-17 in floating point (an NDVI of -6.5e14); red 950 / NIR 1051 is -0.005 / +0.0051 (an NDVI of 101)
    parcel = _parcels(shapely.box(500_000, 5_200_280, 500_030, 5_200_300))  # the first 3 pixels of the top 2 rows
    for red, nir, swir in [((2000, 910, 2000), (4000, 1090, 4000), (3000, 3000, 3000)),
                           ((2000, 950, 2000), (4000, 1051, 4000), (3000, 3000, 3000)),
                           ((2000, 2000, 2000), (4000, 4000, 4000), (3000, 1000, 3000))]:  # SWIR reflectance 0
        row = parcel_statistics(_pixels(red, nir, swir), parcel).iloc[0]
        assert row.total_pixels == 6 and row.valid_pixels == 5, (red, nir, swir)
        assert row.ndvi_mean == pytest.approx(0.5) and row.ndvi_median == pytest.approx(0.5)
        assert row.ndmi_mean == pytest.approx((0.3 - 0.2) / (0.3 + 0.2))


def test_every_index_of_any_stored_numbers_lies_between_minus_one_and_one():
    rng = np.random.default_rng(7)
    tile = _tile()
    for name in ("B04", "B08", "B11"):
        tile[name].values[...] = rng.integers(1, 2400, tile[name].shape, dtype="uint16")  # around the 0.0 reflectance
    parcels = _parcels(*(shapely.box(500_000 + 40 * i, 5_200_000, 500_040 + 40 * i, 5_200_300) for i in range(10)))
    rows = parcel_statistics(tile, parcels)
    assert rows.valid_pixels.sum() > 0
    for column in ("ndvi_mean", "ndvi_median", "ndmi_mean", "ndmi_median"):
        assert rows[column].between(-1, 1).all(), rows[column].describe()


def test_a_parcel_without_a_valid_pixel_is_never_usable_even_when_no_share_is_required():
    cloudy = _tile()
    cloudy["SCL"].values[...] = 9  # cloud, high probability
    rows = parcel_statistics(cloudy, _parcels(shapely.box(500_100, 5_200_100, 500_300, 5_200_250)),
                             IndexSettings(min_valid_fraction=0.0))
    assert rows.valid_pixels.iloc[0] == 0 and not rows.usable.iloc[0] and rows.reason.iloc[0] == "clouds"


def test_a_parcel_lacking_pixels_under_a_missing_patch_is_not_downloaded_not_nodata_or_partial():
    from odc.geo.geom import box as geo_box

    from stacube.fields.indices import not_downloaded

    tile = _tile()
    for name in ("B04", "B08", "B11", "SCL"):
        tile[name].values[0, :, 20:] = 0  # the east half: a patch that failed (nodata in every band)
    west = shapely.box(500_050, 5_200_100, 500_150, 5_200_250)  # wholly in the west half
    across = shapely.box(500_150, 5_200_100, 500_300, 5_200_250)  # half of its pixels in the east half
    east = shapely.box(500_250, 5_200_100, 500_350, 5_200_250)  # wholly in the east half
    parcels = _parcels(west, across, east)
    rows = parcel_statistics(tile, parcels)
    # Without the missing patches, the row across reads as usable from half its pixels, the east one as "nodata"
    assert rows.usable.tolist() == [True, True, False] and rows.reason.iloc[2] == "nodata"
    when = pd.Timestamp("2024-06-01")
    failed = geo_box(500_200, 5_200_000, 500_400, 5_200_300, "EPSG:32633")
    marked = not_downloaded(rows, tile, parcels, [(when, failed)])
    assert pd.isna(marked.reason.iloc[0]) and marked.usable.tolist() == [True, False, False]
    assert marked.reason.tolist()[1:] == ["not downloaded", "not downloaded"]
    assert marked.ndvi_mean.iloc[1:].isna().all() and (marked.valid_pixels.iloc[1:] == 0).all()
    assert marked.ndvi_mean.iloc[0] == rows.ndvi_mean.iloc[0]
    # Another date's patch, or a missing patch whose pixels another zone filled, leaves the rows as they were
    assert not_downloaded(rows, tile, parcels, [(pd.Timestamp("2024-06-02"), failed)]).equals(rows)
    filled = _tile()
    assert not_downloaded(parcel_statistics(filled, parcels), filled, parcels, [(when, failed)]).reason.isna().all()
