"""What the command line reads: --time with open ends as STAC writes them, ends inclusive to the microsecond,
bboxes around a pole and across 180 degrees."""

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


def test_a_polar_bbox_searches_the_polar_cap_not_a_sliver():
    window = _window("-100000,-100000,100000,100000", "EPSG:3413", None)
    west, south, east, north = window.bbox
    assert (west, east, north) == (-180.0, 180.0, 90.0) and 88.5 < south < 88.8  # before: (-180, 88.69, 90, 88.69)


def test_a_spec_bbox_across_180_degrees_is_read_as_its_help_says():
    import json

    from typer.testing import CliRunner

    from stacube.cli import app

    result = CliRunner().invoke(app, ["spec", "sentinel2", "--bbox", "179.5,-17,-179.5,-16.5", "--start",
                                      "2024-01-01", "--end", "2024-01-02"])
    assert result.exit_code == 0, result.output  # before: "minx must be below maxx"
    assert list(json.loads(result.stdout)["zones"]) == ["epsg32760", "epsg32701"]
