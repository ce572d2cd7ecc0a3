"""The parcel pipeline refuses bad input with an error of the tree naming the value (issue 22.4):
SpecError for index settings and store URLs, ParcelError for group sizes and parcel frames; both are
still ValueErrors, as callers caught before. Valid values behave as before."""

from __future__ import annotations

import math

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import shapely
from odc.geo.geobox import GeoBox

from stacube.errors import ParcelError, PermanentError, SpecError
from stacube.fields import IndexSettings, assign_groups, clean_parcels, rasterize_parcels, read_parcels
from stacube.fields.duckdb_store import database_path
from stacube.fields.store import observation_rows, parcel_rows


@pytest.mark.parametrize(("settings", "named"), [
    ({"inward_buffer_m": -1}, "inward_buffer_m -1"), ({"inward_buffer_m": math.nan}, "inward_buffer_m nan"),
    ({"inward_buffer_m": math.inf}, "inward_buffer_m inf"), ({"inward_buffer_m": "10"}, "inward_buffer_m '10'"),
    ({"inward_buffer_m": None}, "inward_buffer_m None"),
    ({"min_valid_fraction": 1.5}, "min_valid_fraction 1.5"), ({"min_valid_fraction": -0.1}, "min_valid_fraction -0.1"),
    ({"min_valid_fraction": math.nan}, "min_valid_fraction nan"), ({"min_valid_fraction": "0.3"}, "'0.3'"),
])
def test_bad_index_settings_are_a_spec_error_naming_the_value(settings, named):
    with pytest.raises(SpecError) as raised:
        IndexSettings(**settings)
    assert named in str(raised.value) and isinstance(raised.value, ValueError)


def test_good_index_settings_are_taken_as_before():
    for settings in ({}, {"inward_buffer_m": 0}, {"inward_buffer_m": 10.5}, {"inward_buffer_m": np.float32(5)},
                     {"min_valid_fraction": 0}, {"min_valid_fraction": 1}, {"min_valid_fraction": np.float64(0.5)}):
        IndexSettings(**settings)


def test_an_inward_buffer_on_a_grid_not_in_metres_is_a_spec_error():
    geographic = GeoBox.from_bbox((10, 50, 10.01, 50.01), "EPSG:4326", resolution=0.001)
    parcels = gpd.GeoSeries([shapely.box(10.002, 50.002, 10.008, 50.008)], crs="EPSG:4326")
    with pytest.raises(SpecError, match=r"inward_buffer_m 10 .*EPSG:4326"):
        rasterize_parcels(parcels, geographic, 10)
    assert rasterize_parcels(parcels, geographic, 0).max() == 1


def _parcels(n: int = 3) -> gpd.GeoDataFrame:
    return gpd.GeoDataFrame({"parcel_id": [f"P{i}" for i in range(n)]},
                            geometry=[shapely.box(10 + i * 0.01, 50, 10.005 + i * 0.01, 50.005) for i in range(n)],
                            crs="EPSG:4326")


@pytest.mark.parametrize(("size", "named"), [(0, "0"), (-5, "-5"), (2.5, "2.5"), ("10", "'10'"), (True, "True"),
                                             (None, "None")])
def test_a_group_size_that_is_no_whole_number_of_parcels_is_a_parcel_error(size, named, tmp_path):
    with pytest.raises(ParcelError, match=f"max_size {named} must be") as raised:
        assign_groups(_parcels(), size)
    assert isinstance(raised.value, PermanentError) and isinstance(raised.value, ValueError)
    with pytest.raises(ParcelError, match=f"max_group_size {named} must be"):
        clean_parcels(_parcels(), "parcel_id", max_group_size=size)
    with pytest.raises(ParcelError, match=f"max_group_size {named} must be"):  # before the file is read
        read_parcels(tmp_path / "no-such-file.gpkg", "parcel_id", max_group_size=size)


def test_a_whole_group_size_groups_as_before():
    assert list(assign_groups(_parcels(), 2).group_id.str.rsplit("-", n=1).str[-1]) == ["0", "0", "1"]
    assert list(assign_groups(_parcels(), np.int64(2)).group_id) == list(assign_groups(_parcels(), 2).group_id)
    assert clean_parcels(_parcels(), "parcel_id", max_group_size=1).parcels.group_id.nunique() == 3


@pytest.mark.parametrize(("url", "named"), [("mysql://nowhere/db", "'mysql://nowhere/db'"),
                                            ("duckdb://", "'duckdb://'"), ("", "''")])
def test_a_parcel_store_url_that_names_no_duckdb_file_is_a_spec_error(url, named):
    with pytest.raises(SpecError) as raised:
        database_path(url)
    assert named in str(raised.value) and isinstance(raised.value, ValueError)
    assert str(database_path("duckdb:///data/fields.duckdb")) == "/data/fields.duckdb"


def test_frames_a_parcel_store_cannot_take_are_a_parcel_error():
    grouped = assign_groups(_parcels(), 10)
    with pytest.raises(ParcelError, match=r"EPSG:4326.*EPSG:32633"):
        parcel_rows(grouped.to_crs("EPSG:32633"), True)
    assert len(parcel_rows(grouped, True)) == 3
    with pytest.raises(ParcelError, match="ndvi_mean") as raised:
        observation_rows(pd.DataFrame({"parcel_id": ["P0"], "date": ["2024-05-01"]}))
    assert isinstance(raised.value, ValueError)
