"""Times a cube would hold otherwise than written are refused when the spec or the TOI is made."""

import datetime as dt
import os
import time
import warnings

import pandas as pd
import pytest
from odc.geo.geobox import GeoBox

from stacube import CubeSpec, SpecError, StacSource, TOIError, Variable
from stacube.timeaxis import duration_problem, select_steps

ZONE = GeoBox.from_bbox((0, 0, 10_000, 10_000), "EPSG:32633", resolution=10)


def _spec(time, group_by="time", **source):
    return CubeSpec(name="t", zones=[ZONE], chunks=(256, 256), variables={"v": Variable("uint16", nodata=0)},
                    source=StacSource(api_url="http://127.0.0.1:1", collection="c", assets={"v": "v"}, **source),
                    time=time, group_by=group_by)


@pytest.mark.parametrize("freq", [pd.offsets.Week(), pd.DateOffset(months=1)])
def test_an_axis_whose_frequency_would_be_stored_as_other_steps_is_refused(freq):
    # Week() from a Wednesday is stored as 'W' (W-SUN): reopened, every patch would be another week
    with pytest.raises(SpecError, match="frequency"):
        _spec(pd.date_range("2024-01-03", periods=3, freq=freq))
    assert _spec(pd.date_range("2024-01-03", periods=3, freq="W-WED")).time[0] == pd.Timestamp("2024-01-03")


@pytest.mark.parametrize(("freq", "twin"), [("ME", "MS"), ("QE", "QS"), ("YE", "YS")])
def test_period_end_labels_are_refused_and_a_stored_cube_with_them_still_opens(freq, twin):
    with pytest.raises(SpecError, match=f"use '{twin}'"):
        _spec(pd.date_range("2024-01-31", periods=3, freq=freq))
    stored = _spec(pd.date_range("2024-01-01", periods=3, freq="MS")).to_json()
    stored["time"]["freq"], stored["time"]["start"] = freq, "2024-01-31T00:00:00"
    with pytest.warns(UserWarning, match="keeps working"):
        opened = CubeSpec.from_json(stored)
    assert opened.time.freqstr.startswith(freq[0])


def test_a_solar_day_axis_must_be_dates_and_the_sentinel2_preset_keeps_the_dates_written():
    from stacube.datasets import sentinel2_l2a_spec

    with pytest.raises(SpecError, match="00:00 UTC"):
        _spec(pd.date_range("2024-05-31T22:00", periods=3, freq="D"), group_by="solar_day")
    spec = sentinel2_l2a_spec((11.5, 46.8, 12.5, 47.4), "2024-06-01T00:00+02:00", "2024-06-03T23:30-05:00")
    assert list(spec.time) == list(pd.date_range("2024-06-01", "2024-06-03", freq="D"))  # was 22:00 / a TypeError


@pytest.mark.parametrize("lag", ["3", 3, "P1M"])
def test_a_publication_lag_without_a_unit_or_in_months_is_refused(lag):
    # "3" is 3 ns to pandas and "P1M" one minute: yesterday's patches would be recorded as settled for good
    with pytest.raises(SpecError, match="publication_lag"):
        _spec(pd.date_range("2024-01-01", periods=3, freq="D"), publication_lag=lag)


def test_iso_months_and_years_are_no_duration_but_iso_minutes_are():
    assert duration_problem("P1M")[1].startswith("counts months") and duration_problem("P1Y")[1]
    assert duration_problem("PT1M")[0] == pd.Timedelta(minutes=1)
    assert duration_problem("P2W")[0] == pd.Timedelta(days=14)


def test_a_date_flow_parameter_stays_the_whole_day():
    from stacube.flows.parameters import toi_from_parameter, toi_to_parameter

    hours = pd.date_range("2024-01-14", periods=72, freq="h")
    day = dt.date(2024, 1, 15)
    assert toi_to_parameter(day) == "2024-01-15"
    assert select_steps(hours, toi_from_parameter(toi_to_parameter(day))) == select_steps(hours, day)
    assert len(select_steps(hours, toi_from_parameter(toi_to_parameter(slice(day, day))))) == 24


def test_now_and_today_are_utc_whatever_the_machines_time_zone():
    hours = pd.date_range(pd.Timestamp.now(tz="UTC").tz_localize(None).floor("D") - pd.Timedelta(days=1),
                          periods=72, freq="h")
    before = os.environ.get("TZ")
    os.environ["TZ"] = "Asia/Tokyo"  # 9 h ahead: "now" read as the local wall clock lands 9 steps late
    time.tzset()
    try:
        now = select_steps(hours, "now")
        today = select_steps(hours, "today")
    finally:
        if before is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = before
        time.tzset()
    utc_hour = pd.Timestamp.now(tz="UTC").tz_localize(None).floor("h")
    assert [hours[i] for i in now] in ([utc_hour], [utc_hour - pd.Timedelta(hours=1)])
    assert [hours[i].floor("D") for i in today] == [utc_hour.floor("D")] * 24 or utc_hour.hour == 0


def test_a_tuple_toi_is_refused_not_read_as_two_times():
    days = pd.date_range("2024-01-01", periods=10, freq="D")
    with pytest.raises(TOIError, match="slice"):
        select_steps(days, ("2024-01-02", "2024-01-05"))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert select_steps(days, ["2024-01-02", "2024-01-05"]) == [1, 4]


def test_an_axis_given_in_a_local_time_zone_warns_that_it_is_held_in_utc():
    with pytest.warns(UserWarning, match="held in UTC"):
        spec = _spec(pd.date_range("2024-01-01", periods=3, freq="D", tz="Europe/Berlin"))
    assert spec.time[0] == pd.Timestamp("2023-12-31T23:00")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _spec(pd.date_range("2024-01-01", periods=3, freq="D", tz="UTC"))


def test_an_empty_string_toi_says_it_is_empty():
    with pytest.raises(TOIError, match="empty string is no time"):  # was "NaTType does not support utcoffset"
        select_steps(pd.date_range("2024-01-01", periods=3, freq="D"), slice("", "2024-01-02"))


@pytest.mark.parametrize("percent", [0, -5, 150])
def test_a_cloud_cover_limit_outside_0_to_100_percent_is_refused(percent):
    from stacube.datasets import sentinel2_l2a_spec

    with pytest.raises(SpecError, match="max_cloud_cover"):  # 0 or below kept no granule: every load empty
        sentinel2_l2a_spec((11.5, 46.8, 12.5, 47.4), "2024-06-01", "2024-06-03", max_cloud_cover=percent)
