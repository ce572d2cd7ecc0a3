"""The catalog window of a load (``plan.window_for`` / ``patch_window``): its chunks' lon/lat bounds once per
chunk, its steps' span, and a solar-day cube's 12 h either side, the one place that slack is added."""

from __future__ import annotations

import pandas as pd
import pytest
from odc.geo.geobox import GeoBox

from stacube import CubeSpec, StacSource, Variable
from stacube import plan as planning
from stacube.plan import attach_items, iter_patches, patch_window, window_for
from stacube.region import Region

ZONE = GeoBox.from_bbox((399960, 4990200, 509760, 5100000), "EPSG:32633", resolution=10)
DAYS = pd.date_range("2024-06-01", periods=10, freq="D")
ROI = ZONE[100:300, 100:300]  # one 512 px chunk


def _spec(group_by: str) -> CubeSpec:
    source = StacSource(api_url="http://127.0.0.1:1", collection="c", assets={"v": "v"})
    return CubeSpec(name="c", zones=[ZONE], chunks=(512, 512), variables={"v": Variable("uint16", nodata=0)},
                    source=source, time=DAYS, group_by=group_by)


def test_a_solar_day_window_starts_12_hours_before_its_first_step_and_ends_12_after_its_last():
    slack = pd.Timedelta(hours=12)
    window = window_for(_spec("solar_day"), Region.of(ROI), slice("2024-06-03", "2024-06-05"))
    assert (window.start, window.end) == (pd.Timestamp("2024-06-03") - slack, pd.Timestamp("2024-06-06") + slack)
    world = window_for(_spec("solar_day"), None, "2024-06-03")
    assert world.bbox == (-180, -90, 180, 90)
    assert (world.start, world.end) == (pd.Timestamp("2024-06-03") - slack, pd.Timestamp("2024-06-04") + slack)
    utc = window_for(_spec("time"), Region.of(ROI), slice("2024-06-03", "2024-06-05"))
    assert (utc.start, utc.end) == (pd.Timestamp("2024-06-03"), pd.Timestamp("2024-06-06"))
    assert utc.bbox == window.bbox


class _Catalog:
    """A catalog that records what it is searched for and holds nothing."""

    def __init__(self) -> None:
        self.searched: list[dict] = []

    def search(self, **query):
        self.searched.append(query)
        return []


def test_planning_searches_a_solar_day_cube_with_the_slack():
    """An Item whose UTC day is not its solar day (a pass at 23:00 UTC at 180 degrees) must be searched,
    or its patch is recorded as filled without it."""
    spec = _spec("solar_day")
    steps = [2, 3, 4]
    patches = list(iter_patches(spec, Region.of(ROI), steps))
    catalog = _Catalog()
    attach_items(spec, catalog, patches, sync=False)
    (query,) = catalog.searched
    assert query["datetime"].startswith("2024-06-02T12:00:00") and "/2024-06-06T11:59:59" in query["datetime"]
    assert query["bbox"] == window_for(spec, Region.of(ROI), slice("2024-06-03", "2024-06-05")).bbox


def test_a_chunk_over_many_steps_is_bounded_once_and_as_over_one_step(monkeypatch):
    spec = _spec("time")
    region = Region.of(ROI)
    one = patch_window(spec, list(iter_patches(spec, region, [0])))
    calls = []
    bounds = planning.lonlat_bounds
    monkeypatch.setattr(planning, "lonlat_bounds", lambda footprint: calls.append(footprint) or bounds(footprint))
    many = patch_window(spec, list(iter_patches(spec, region, list(range(len(DAYS))))))
    assert len(calls) == 1  # one chunk: its lon/lat bounds once, not once per step
    assert many.bbox == one.bbox
    assert (many.start, many.end) == (DAYS[0], DAYS[-1] + pd.Timedelta(days=1))
    assert (one.start, one.end) == (DAYS[0], DAYS[1])


def test_a_window_outside_every_zone_or_with_a_toi_on_a_timeless_cube_is_refused():
    from odc.geo.geom import box

    from stacube.errors import ROIError, TOIError

    with pytest.raises(ROIError, match="outside every zone"):
        window_for(_spec("time"), Region.of(box(-60, -30, -59, -29, "EPSG:4326")), "2024-06-03")
    timeless = CubeSpec(name="c", zones=[ZONE], chunks=(512, 512), variables={"v": Variable("uint16", nodata=0)},
                        source=StacSource(api_url="http://127.0.0.1:1", collection="c", assets={"v": "v"}))
    with pytest.raises(TOIError, match="no time axis"):
        window_for(timeless, Region.of(ROI), "2024-06-03")
    assert window_for(timeless, Region.of(ROI)).start is None
