"""--time as the command line reads it: open ends as STAC writes them, ends inclusive to the microsecond."""

import pandas as pd

from stacube.cli import _window, parse_time


def test_an_open_end_is_a_range_to_tomorrow_or_from_1950_not_an_overflow():
    for text in ("2024-05-01/", "2024-05-01/.."):
        window = _window(None, "EPSG:4326", text)  # before: OutOfBoundsDatetime
        assert window.start == pd.Timestamp("2024-05-01") and window.end > pd.Timestamp.now().normalize()
    assert parse_time("../2024-05-01") == slice(None, "2024-05-01")
    assert _window(None, "EPSG:4326", "/2024-05-01").start == pd.Timestamp("1950-01-01")


def test_a_month_is_searched_to_its_last_microsecond():
    window = _window(None, "EPSG:4326", "2024-05")
    assert window.end == pd.Timestamp("2024-06-01")  # before: 23:59:59.999999001, searched to ...999998
    assert window.datetime_query() == "2024-05-01T00:00:00.000000Z/2024-05-31T23:59:59.999999Z"
