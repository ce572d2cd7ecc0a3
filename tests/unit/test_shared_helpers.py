"""The small helpers that replaced copies spread over the package (issue 22, point 5): each edge case
the copies handled is pinned here, so the one home keeps behaving as every copy did."""

import datetime as dt
import math

import icechunk
import numpy as np
import pandas as pd
import pytest
import zarr

from stacube.history import METADATA_KEY, run_metadata
from stacube.layout import TIME_UNITS, chunk_exists, encode_times
from stacube.run import METADATA_KEY as RUN_METADATA_KEY
from stacube.store import BRANCH
from stacube.timeaxis import aware_utc, naive_utc, utc_now
from stacube.variables import Variable, is_nan, nodata_to_json

# --- is nodata NaN ----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [float("nan"), np.nan, np.float64("nan"), -float("nan")])
def test_a_nan_float_is_nan(value):
    assert is_nan(value) is True


@pytest.mark.parametrize("value", [
    None, 0, 0.0, -9999, -9999.0, 255, True, False, np.int64(0), np.uint8(255), float("inf"), -float("inf"),
    "nan", "NaN", pd.NaT,
    np.float32("nan"),  # not a float subclass: the copies never counted it (a Variable keeps Python floats)
])
def test_anything_else_is_not_nan(value):
    assert is_nan(value) is False


def test_nodata_as_json_writes_nan_as_text_and_keeps_everything_else():
    assert nodata_to_json(float("nan")) == "nan"
    assert nodata_to_json(np.float64("nan")) == "nan"
    for value in (None, 0, -9999, 0.5, False, True):
        out = nodata_to_json(value)
        assert out is value
    odd = np.float32("nan")
    assert nodata_to_json(odd) is odd


@pytest.mark.parametrize(("dtype", "nodata", "stored"), [
    ("float32", None, "nan"), ("float32", float("nan"), "nan"), ("float32", "nan", "nan"),
    ("float64", -9999, -9999.0), ("uint16", 0, 0), ("int16", -32768, -32768), ("bool", None, False),
])
def test_a_variable_round_trips_its_nodata_through_json(dtype, nodata, stored):
    variable = Variable(dtype, nodata=nodata)
    data = variable.to_json()
    assert data["nodata"] == stored
    back = Variable.from_json(data)
    if stored == "nan":
        assert isinstance(back.nodata, float) and math.isnan(back.nodata)
    else:
        assert back.nodata == variable.nodata and type(back.nodata) is type(variable.nodata)


# --- naive and aware UTC ----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("2021-06-03T01:00+05:00", pd.Timestamp("2021-06-02T20:00")),
    ("2021-06-03T01:00Z", pd.Timestamp("2021-06-03T01:00")),
    ("2021-06-03T01:00", pd.Timestamp("2021-06-03T01:00")),  # naive: taken as UTC already
    (pd.Timestamp("2021-01-01 12:00", tz="Europe/Paris"), pd.Timestamp("2021-01-01 11:00")),
    (dt.datetime(2021, 1, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=-3))), pd.Timestamp("2021-01-01 15:00")),
    (dt.datetime(2021, 1, 1, 12), pd.Timestamp("2021-01-01 12:00")),
    (np.datetime64("2021-01-01T12:00:00.123456789"), pd.Timestamp("2021-01-01T12:00:00.123456789")),
    (dt.date(2021, 1, 1), pd.Timestamp("2021-01-01")),
])
def test_naive_utc(value, expected):
    out = naive_utc(value)
    assert isinstance(out, pd.Timestamp) and out.tz is None
    assert out == expected


@pytest.mark.parametrize("value", [None, pd.NaT, np.datetime64("NaT", "ns"), "NaT"])
def test_naive_utc_keeps_a_missing_time_missing(value):
    assert naive_utc(value) is pd.NaT


def test_naive_utc_keeps_a_naive_timestamp_as_it_is():
    stamp = pd.Timestamp("2021-01-01T00:00:00.000001")
    assert naive_utc(stamp) == stamp and naive_utc(stamp).unit == stamp.unit


def test_naive_utc_of_an_index_converts_every_step():
    aware = pd.date_range("2021-01-01", periods=3, freq="D", tz="Europe/Paris")
    out = naive_utc(aware)
    assert isinstance(out, pd.DatetimeIndex) and out.tz is None
    assert list(out) == [pd.Timestamp("2020-12-31 23:00") + pd.Timedelta(days=i) for i in range(3)]
    naive = pd.date_range("2021-01-01", periods=3, freq="D")
    assert naive_utc(naive) is naive  # untouched, freq and all


@pytest.mark.parametrize(("value", "expected"), [
    ("2021-06-03T01:00+05:00", pd.Timestamp("2021-06-02T20:00", tz="UTC")),
    ("2021-06-03T01:00", pd.Timestamp("2021-06-03T01:00", tz="UTC")),  # naive: taken as UTC
    (pd.Timestamp("2021-01-01 12:00", tz="Europe/Paris"), pd.Timestamp("2021-01-01 11:00", tz="UTC")),
    (dt.datetime(2021, 1, 1, 12), pd.Timestamp("2021-01-01 12:00", tz="UTC")),
])
def test_aware_utc(value, expected):
    out = aware_utc(value)
    assert str(out.tz) == "UTC" and out == expected


@pytest.mark.parametrize("value", [None, pd.NaT])
def test_aware_utc_keeps_a_missing_time_missing(value):
    assert aware_utc(value) is pd.NaT


def test_aware_utc_of_the_earliest_time_is_the_earliest_utc_time():
    assert aware_utc(pd.Timestamp.min) == pd.Timestamp.min.tz_localize("UTC")


def test_utc_now_is_naive_utc():
    before = pd.Timestamp.now(tz="UTC").tz_localize(None)
    now = utc_now()
    after = pd.Timestamp.now(tz="UTC").tz_localize(None)
    assert now.tz is None and before <= now <= after


# --- the time axis as stored ------------------------------------------------------------------------


def test_a_time_axis_is_stored_as_microseconds_since_1970():
    assert TIME_UNITS == "microseconds since 1970-01-01"
    axis = pd.date_range("1970-01-01", periods=3, freq="D")
    out = encode_times(axis)
    assert out.dtype == np.int64
    assert out.tolist() == [0, 86_400_000_000, 172_800_000_000]
    assert encode_times(pd.DatetimeIndex(["1969-12-31T23:59:59"])).tolist() == [-1_000_000]
    assert encode_times(pd.DatetimeIndex([], dtype="datetime64[ns]")).tolist() == []


def test_a_stored_time_axis_decodes_to_the_same_steps():
    axis = pd.date_range("2024-01-01", periods=5, freq="MS")
    back = pd.to_datetime(encode_times(axis), unit="us")
    assert list(back) == list(axis)


# --- does this chunk exist, and the history walk ----------------------------------------------------


@pytest.fixture
def repo():
    return icechunk.Repository.create(icechunk.in_memory_storage())


def test_chunk_exists_only_for_chunks_written(repo):
    session = repo.writable_session(BRANCH)
    root = zarr.open_group(session.store, mode="w", zarr_format=3)
    array = root.create_group("zone").create_array("v", shape=(2, 4, 4), chunks=(1, 2, 2), dtype="int16",
                                                   fill_value=-1)
    array[1, 2:4, 0:2] = 7
    assert chunk_exists(session, "/zone/v", (1, 1, 0))
    assert chunk_exists(session, "/zone/v", [1, 1, 0])  # a list as well as a tuple
    assert not chunk_exists(session, "/zone/v", (0, 1, 0))
    assert not chunk_exists(session, "/zone/v", (1, 0, 0))


def test_run_metadata_walks_the_branch_newest_first(repo):
    session = repo.writable_session(BRANCH)
    zarr.open_group(session.store, mode="w", zarr_format=3).attrs["a"] = 1
    first = session.commit("first", metadata={METADATA_KEY: {"run_id": "r1", "stamp": 5}})
    session = repo.writable_session(BRANCH)
    zarr.open_group(session.store, mode="r+").attrs["a"] = 2
    second = session.commit("no stacube entry", metadata={"other": {"x": 1}})
    session = repo.writable_session(BRANCH)
    zarr.open_group(session.store, mode="r+").attrs["a"] = 3
    third = session.commit("third", metadata={METADATA_KEY: {"run_id": "r3"}})
    walked = list(run_metadata(repo))
    assert [snap.id for snap, _ in walked[:3]] == [third, second, first]
    assert [meta for _, meta in walked] == [{"run_id": "r3"}, {}, {"run_id": "r1", "stamp": 5}, {}]
    assert RUN_METADATA_KEY == METADATA_KEY == "stacube"
