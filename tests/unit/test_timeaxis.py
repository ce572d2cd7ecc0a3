import pandas as pd
import pytest

from stacube import TOIError
from stacube.timeaxis import select_steps, step_range

DAILY = pd.date_range("2024-01-01", periods=60, freq="D")


@pytest.mark.parametrize(
    ("toi", "expected"),
    [
        ("2024-01-05", [4]),
        ("2024-01", list(range(31))),
        (slice("2024-02-27", "2024-03-10"), [57, 58, 59]),
        (["2024-01-02", "2024-01-04"], [1, 3]),
        (pd.Timestamp("2024-01-03T15:00"), [2]),
        (pd.DatetimeIndex(["2024-01-10", "2024-01-11"]), [9, 10]),
        (None, list(range(60))),
    ],
)
def test_toi_selects_steps(toi, expected):
    assert select_steps(DAILY, toi) == expected


@pytest.mark.parametrize("toi", ["2023-12-01", slice("2025-01-01", "2025-02-01"), pd.Timestamp("2024-03-01T00:00")])
def test_toi_outside_the_axis_names_the_value_and_the_axis(toi):
    with pytest.raises(TOIError, match=r"2024-01-01 00:00, 2024-02-29 00:00"):
        select_steps(DAILY, toi)


MONTHLY = pd.date_range("2024-01-01", periods=6, freq="MS")


@pytest.mark.parametrize(
    ("toi", "expected"),
    [
        ("2024-01-15", [0]),  # a day inside January's period selects January
        (pd.Timestamp("2024-01-15"), [0]),  # the same, as a Timestamp
        (slice("2024-01-15", "2024-03-15"), [0, 1, 2]),  # every month the span meets
        ("2024", [0, 1, 2, 3, 4, 5]),
    ],
)
def test_every_toi_form_selects_the_steps_whose_period_it_meets(toi, expected):
    assert select_steps(MONTHLY, toi) == expected


def test_a_time_of_day_string_and_a_timestamp_agree():
    assert select_steps(DAILY, "2024-01-03T15:00") == select_steps(DAILY, pd.Timestamp("2024-01-03T15:00")) == [2]
    assert select_steps(DAILY, "2024-01-03T15:00:00+01:00") == [2]


def test_a_toi_that_is_not_a_time_is_refused_with_its_value():
    with pytest.raises(TOIError, match="'not-a-date'"):
        select_steps(DAILY, "not-a-date")
    with pytest.raises(TOIError, match="ends before it starts"):
        select_steps(DAILY, slice("2024-02-01", "2024-01-01"))


def test_toi_on_a_cube_without_time_is_refused():
    with pytest.raises(TOIError, match="no time axis"):
        select_steps(None, "2024-01-01")
    assert select_steps(None, None) is None


def test_step_range_is_half_open_period():
    assert step_range(DAILY, 3) == (pd.Timestamp("2024-01-04"), pd.Timestamp("2024-01-05"))


SERIES = pd.date_range("2021-06-01", periods=7, freq="D")


@pytest.mark.parametrize("written, utc", [
    ("2021-06-03T01:00+05:00", "2021-06-02T20:00"),  # the day before, in UTC
    ("2021-06-02T23:00-02:00", "2021-06-03T01:00"),  # the day after
    ("2021-06-03T01Z", "2021-06-03T01:00"),
    ("2021-06-03T23:30:00-00:45", "2021-06-04T00:15"),
])
def test_a_time_with_an_offset_selects_the_day_of_its_utc_instant(written, utc):
    assert select_steps(SERIES, written) == select_steps(SERIES, pd.Timestamp(written)) == \
        select_steps(SERIES, pd.Timestamp(utc))


def test_a_slice_with_offsets_starts_and_ends_at_its_utc_instants():
    assert select_steps(SERIES, slice("2021-06-02T23:00-02:00", "2021-06-03")) == [2]  # 06-03 01:00 UTC on
    assert select_steps(SERIES, slice("2021-06-02", "2021-06-04T01:00+02:00")) == [1, 2]  # to 06-03 23:00:59 UTC
    assert select_steps(SERIES, slice("2021-06-02", "2021-06-04T01+02:00")) == [1, 2]  # the hour 23:00-23:59 UTC
    assert select_steps(SERIES, slice("2021-06-02", "2021-06-04T03:00+02:00")) == [1, 2, 3]  # 06-04 01:00 UTC


def test_offsets_are_read_the_same_by_the_cli_and_by_flow_parameters():
    from stacube.cli import parse_time
    from stacube.flows.download import toi_from_parameter

    assert select_steps(SERIES, parse_time("2021-06-02T23:00-02:00/2021-06-03")) == [2]
    assert select_steps(SERIES, toi_from_parameter({"start": "2021-06-02T23:00-02:00", "end": "2021-06-03"})) == [2]
    assert select_steps(SERIES, toi_from_parameter("2021-06-03T01:00+05:00")) == [1]


@pytest.mark.parametrize("empty", [[], (), pd.DatetimeIndex([])])
def test_an_empty_toi_is_refused_by_name(empty):
    with pytest.raises(TOIError, match="is empty and selects nothing; pass toi=None"):
        select_steps(SERIES, empty)


def test_a_list_toi_with_a_time_outside_the_axis_is_refused_not_shortened():
    import pandas as pd

    from stacube.errors import TOIError
    from stacube.timeaxis import select_steps

    axis = pd.date_range("2021-06-01", periods=4, freq="D")
    assert select_steps(axis, ["2021-06-01", "2021-06-03"]) == [0, 2]
    with pytest.raises(TOIError, match=r"1 of the TOI's 2 times \(2021-06-05 00:00:00\) are outside .*extend_time"):
        select_steps(axis, ["2021-06-01", "2021-06-05"])  # it used to load 06-01 alone
    assert select_steps(axis, slice("2021-05-01", "2021-06-02")) == [0, 1]  # a range reaching past it: clipped
