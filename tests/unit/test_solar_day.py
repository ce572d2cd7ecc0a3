"""Which day an Item belongs to: its UTC day, or its local solar day (odc-stac's rule at the Item)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pystac
import pytest
from odc.geo.geobox import GeoBox

from stacube import CubeSpec, SpecError, StacSource, Variable
from stacube.plan import _grouping_time


def _item(when: str, west: float, east: float) -> pystac.Item:
    geometry = {"type": "Polygon", "coordinates": [[[west, 50], [east, 50], [east, 51], [west, 51], [west, 50]]]}
    return pystac.Item("i", geometry, [west, 50, east, 51], pd.Timestamp(when).to_pydatetime(), {})


@pytest.mark.parametrize(("when", "west", "east", "utc_day", "solar_day"), [
    ("2024-06-05T23:30:00", 149.0, 151.0, "2024-06-05", "2024-06-06"),  # +10 h: tomorrow, locally
    ("2024-06-06T00:30:00", -171.0, -169.0, "2024-06-06", "2024-06-05"),  # -11 h: yesterday, locally
    ("2024-06-05T10:30:00", 11.0, 13.0, "2024-06-05", "2024-06-05"),  # Europe at 10:30: the same day
    ("2024-06-05T23:30:00", 7.0, 7.4, "2024-06-05", "2024-06-05"),  # +0.48 h truncates to 0, as odc-stac does
])
def test_an_item_falls_on_its_local_solar_day(when, west, east, utc_day, solar_day):
    item = _item(when, west, east)
    assert str(_grouping_time(item, "time").astype("datetime64[D]")) == utc_day
    assert str(_grouping_time(item, "solar_day").astype("datetime64[D]")) == solar_day
    assert _grouping_time(item, "time").dtype == np.dtype("datetime64[us]")


def test_solar_days_need_a_daily_axis():
    zone = GeoBox.from_bbox((0, 0, 1000, 1000), "EPSG:32633", resolution=10)
    source = StacSource(api_url="http://127.0.0.1:1", collection="c", assets={"v": "v"})
    args = dict(name="c", zones=[zone], variables={"v": Variable("uint16", nodata=0)}, source=source)
    with pytest.raises(SpecError, match=r"solar_day.*daily"):
        CubeSpec(**args, time=pd.date_range("2024-01-01", periods=3, freq="MS"), group_by="solar_day")
    with pytest.raises(SpecError, match="group_by 'week'"):
        CubeSpec(**args, time=pd.date_range("2024-01-01", periods=3, freq="D"), group_by="week")
    spec = CubeSpec(**args, time=pd.date_range("2024-01-01", periods=3, freq="D"), group_by="solar_day")
    assert CubeSpec.from_json(spec.to_json()).group_by == "solar_day"


def test_an_item_across_the_antimeridian_is_dated_by_the_middle_of_its_span():
    """A footprint in two parts (as a repaired one placed by a bbox across 180 degrees) has its plain
    centroid near 0 degrees: its solar day would be the UTC day, off by up to one."""
    parts = {"type": "MultiPolygon", "coordinates": [[[[179, 0], [180, 0], [180, 1], [179, 1], [179, 0]]],
                                                     [[[-180, 0], [-178, 0], [-178, 1], [-180, 1], [-180, 0]]]]}
    item = pystac.Item("across", parts, [179, 0, -178, 1], pd.Timestamp("2024-06-01T05:00Z").to_pydatetime(), {})
    # -179.5 degrees: 11 hours behind UTC, so 05:00 UTC on 06-01 is 18:00 on 05-31 there (0 degrees: 06-01)
    assert str(_grouping_time(item, "solar_day")) == "2024-05-31T18:00:00.000000"


def test_an_item_split_at_the_antimeridian_with_a_full_width_bbox_is_dated_by_its_own_middle():
    """pystac and Earth Search give a footprint split at 180 degrees the bbox [-180, s, 180, n]: its middle is
    where its parts are (here -179.7), not the plain centroid far west of them."""
    east_of_180 = [[[-180, 64], [-178.6, 64], [-178.6, 65], [-180, 65], [-180, 64]]]
    parts = {"type": "MultiPolygon", "coordinates": [[[[179.6, 64], [180, 64], [180, 65], [179.6, 65], [179.6, 64]]],
                                                     east_of_180]}
    item = pystac.Item("split", parts, [-180, 64, 180, 65], pd.Timestamp("2024-06-01T23:00Z").to_pydatetime(), {})
    # about -179.3 degrees: 11 hours behind UTC, so 23:00 on 06-01 is 12:00 on 06-01 there (the planar centroid,
    # about -100 degrees, said 6 hours behind: 17:00)
    assert str(_grouping_time(item, "solar_day")) == "2024-06-01T12:00:00.000000"
    west = pystac.Item("west", {"type": "Polygon", "coordinates": [[[178.5, 64], [179.9, 64], [179.9, 65],
                                                                     [178.5, 65], [178.5, 64]]]},
                       [178.5, 64, 179.9, 65], pd.Timestamp("2024-06-01T23:00Z").to_pydatetime(), {})
    assert str(_grouping_time(west, "solar_day")) == "2024-06-02T10:00:00.000000"  # 11 hours ahead, the next day


def test_a_wide_footprint_that_does_not_cross_180_degrees_is_dated_by_its_own_centroid():
    """A polar swath from -100 to 95 degrees under its plain bbox is one polygon that never reaches 180: its
    middle is near -2.5 degrees (the UTC day), not 177.5 (the next day) as if it crossed the antimeridian."""
    swath = {"type": "Polygon", "coordinates": [[[-100, 80], [95, 80], [95, 81], [-100, 81], [-100, 80]]]}
    item = pystac.Item("swath", swath, [-180, 80, 180, 81], pd.Timestamp("2024-01-01T13:00Z").to_pydatetime(), {})
    assert str(_grouping_time(item, "solar_day").astype("datetime64[D]")) == "2024-01-01"  # was 2024-01-02
