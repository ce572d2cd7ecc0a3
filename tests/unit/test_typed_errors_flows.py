"""What the Prefect flows read from their parameters: bad input is an error of the tree naming the value, raised
before any work (issue 22.4); TOIError, ROIError and SpecError are still ValueErrors. Valid values read as before."""

from __future__ import annotations

import datetime as dt
import json
import os
import re

import numpy as np
import pandas as pd
import pytest
import shapely
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from stacube.errors import (
    CatalogError,
    ItemError,
    PermanentSourceError,
    ROIError,
    SpecError,
    StorageError,
    TOIError,
    TransientSourceError,
)
from stacube.timeaxis import select_steps, toi_intervals, toi_span

pytest.importorskip("prefect")
from stacube.flows import credentials, parameters, sync, tasks

NOW = pd.Timestamp("2026-11-22T03:00:00", tz="UTC")


# --- toi_span and toi_intervals -----------------------------------------------------------------------
@pytest.mark.parametrize(("toi", "named"), [
    ("not-a-date", "'not-a-date'"), (5, "TOI 5 "), (None, "TOI None "), ([], "TOI []"), ({"a": 1}, "{'a': 1}"),
    (slice("2024-01", None, 2), "slice('2024-01', None, 2)"), (["2024-06-01", 7], "['2024-06-01', 7]"),
    (slice("2024-06-10", "2024-06-01"), "ends before it starts"), ("99999-01-01", "'99999-01-01'"),
])
def test_a_toi_that_is_no_time_is_a_toi_error_naming_it(toi, named):
    for read in (toi_span, toi_intervals):
        with pytest.raises(TOIError) as raised:
            read(toi)
        assert named in str(raised.value) and isinstance(raised.value, ValueError)


def test_good_tois_span_what_they_spanned_before():
    june = pd.Period("2024-06")
    assert toi_span("2024-06") == (june.start_time, june.end_time)
    assert toi_span(slice("2024-06-01", "2024-06-03")) == (pd.Timestamp("2024-06-01"),
                                                            pd.Period("2024-06-03").end_time)
    assert toi_span(slice(None, "2024-06-03"))[0] == pd.Timestamp.min
    assert toi_span(pd.DatetimeIndex(["2024-06-01T10:00", "2024-06-05T10:00"])) == (
        pd.Timestamp("2024-06-01T10:00"), pd.Timestamp("2024-06-05T10:00"))
    # a list out of order spans from its earliest to its latest time (it spanned backwards before)
    assert toi_span(["2024-06-05", "2024-06-01"]) == (pd.Timestamp("2024-06-01"), pd.Period("2024-06-05").end_time)
    assert toi_span(dt.date(2024, 6, 1))[0] == pd.Timestamp("2024-06-01")
    assert toi_span(np.datetime64("2024-06-01T12:00")) == (pd.Timestamp("2024-06-01T12:00"),) * 2


def test_select_steps_still_names_a_bad_toi_once():
    axis = pd.date_range("2024-01-01", periods=3, freq="D")
    with pytest.raises(TOIError, match=r"^TOI 'not-a-date' is not a time pandas understands: ") as raised:
        select_steps(axis, "not-a-date")
    assert str(raised.value).count("not-a-date") == 2  # the TOI, then pandas' own words: no TOI named twice over
    with pytest.raises(TOIError, match=r"ends before it starts"):
        select_steps(axis, slice("2024-01-03", "2024-01-01"))
    assert select_steps(axis, slice("2024-01-02", None)) == [1, 2]


# --- roi_from_parameter -------------------------------------------------------------------------------
SQUARE = [[[10.0, 50.0], [10.1, 50.0], [10.1, 50.1], [10.0, 50.1], [10.0, 50.0]]]


@pytest.mark.parametrize(("roi", "named"), [
    ({"type": "Polygon", "coordinates": "x"}, "'coordinates': 'x'"),  # was a RecursionError
    ({"type": "Polygon", "coordinates": [["a", "b"]]}, "[['a', 'b']]"),
    ({"type": "Polygon"}, "{'type': 'Polygon'}"),
    ({"type": "Polygon", "coordinates": [[0, 0]]}, "[[0, 0]]"),
    ({"type": "Hexagon", "coordinates": SQUARE}, "type 'Hexagon'"),  # was shapely's GeometryTypeError
    ({"type": "Polygon", "coordinates": [[[0, 0], [1, 1]]]}, "[[[0, 0], [1, 1]]]"),  # too few points
    ({"type": "Polygon", "coordinates": SQUARE, "crs": "EPSG:999999"}, "crs 'EPSG:999999'"),  # was pyproj's CRSError
    ({"type": "Polygon", "coordinates": SQUARE, "crs": "not a crs"}, "crs 'not a crs'"),
    ({"type": "Polygon", "coordinates": SQUARE, "crs": None}, "crs None"),
    ({"type": 5, "coordinates": SQUARE}, "type 5"),
    ({"coordinates": SQUARE}, "GeoJSON geometry dict"), ("POLYGON ((0 0, 1 0, 1 1, 0 0))", "'POLYGON"),
])
def test_an_roi_parameter_that_is_no_geometry_is_an_roi_error_naming_it(roi, named):
    with pytest.raises(ROIError) as raised:
        parameters.roi_from_parameter(roi)
    assert named in str(raised.value) and isinstance(raised.value, ValueError)


def test_good_roi_parameters_are_read_as_before():
    polygon = parameters.roi_from_parameter({"type": "Polygon", "coordinates": SQUARE})
    assert polygon.crs == "EPSG:4326" and polygon.geom.equals(shapely.Polygon(SQUARE[0]))
    utm = parameters.roi_from_parameter({"type": "Point", "coordinates": [500000, 5200000], "crs": "EPSG:32633"})
    assert utm.crs == "EPSG:32633"
    feature = {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": SQUARE}}
    assert parameters.roi_from_parameter(feature).geom.equals(polygon.geom)  # odc-geo reads Features: still
    multi = {"type": "MultiPolygon", "coordinates": [SQUARE], "crs": 4326}
    assert parameters.roi_from_parameter(multi).geom.area == pytest.approx(polygon.geom.area)
    box = GeoBox.from_bbox((10, 50, 10.1, 50.1), "EPSG:4326", resolution=0.01)
    assert parameters.roi_from_parameter(box) is box
    geometry = Geometry(shapely.Polygon(SQUARE[0]), "EPSG:4326")
    assert parameters.roi_from_parameter(geometry) is geometry
    back = parameters.roi_from_parameter(parameters.roi_to_parameter(box))
    assert back.crs == box.crs and back.boundingbox == box.extent.boundingbox


# --- toi_from_parameter and durations -----------------------------------------------------------------
@pytest.mark.parametrize(("last", "why"), [
    (5, "has no unit"), (5.0, "has no unit"), ("30", "has no unit"), (" 2.5e1 ", "has no unit"),  # nanoseconds
    (None, "is no duration"), ("NaT", "is no duration"), ("", "is no duration"),  # NaT
    ("-7D", "is negative"), (dt.timedelta(days=-1), "is negative"), ("a fortnight", "no duration pandas reads"),
    (True, "no duration pandas reads"), ([1], "no duration pandas reads"),
])
def test_a_rolling_toi_whose_last_is_no_duration_is_a_toi_error(last, why):
    toi = {"last": last}
    with pytest.raises(TOIError) as raised:
        parameters.toi_from_parameter(toi, now=NOW)
    assert str(raised.value).startswith(f"toi {toi!r}: 'last' must be a duration") and why in str(raised.value)


@pytest.mark.parametrize(("last", "span"), [
    ("30D", pd.Timedelta(days=30)), ("12h", pd.Timedelta(hours=12)), ("P1W", pd.Timedelta(weeks=1)),
    ("1 days 06:00:00", pd.Timedelta(hours=30)), (dt.timedelta(days=2), pd.Timedelta(days=2)),
    (pd.Timedelta("3D"), pd.Timedelta(days=3)), (np.timedelta64(4, "D"), pd.Timedelta(days=4)),
    ("0D", pd.Timedelta(0)),
])
def test_a_rolling_toi_with_a_duration_ends_at_the_run_start(last, span):
    end = NOW.tz_localize(None)
    assert parameters.toi_from_parameter({"last": last}, now=NOW) == slice(end - span, end)


@pytest.mark.parametrize(("toi", "named"), [
    ({"strat": "2024-06-01"}, "not ['strat']"), ({"last": "7D", "end": "2024-06-01"}, "'last' alone"),
    ({"start": "2024-06-10", "end": "2024-06-01"}, "ends before it starts"),
    ({"start": "someday"}, "is not a time pandas understands"), ("someday", "TOI 'someday'"), ([], "TOI []"),
])
def test_a_toi_parameter_pandas_cannot_read_is_a_toi_error_naming_it(toi, named):
    with pytest.raises(TOIError, match=re.escape(named)) as raised:
        parameters.toi_from_parameter(toi, now=NOW)
    assert repr(toi) in str(raised.value)


@pytest.mark.parametrize("toi", [None, "2024-06", ["2024-06-01", "2024-06-03"], {"start": "2024-06-01"},
                                 {"end": "2024-06-01"}, {}, slice("2024-06-01", "2024-06-30"),
                                 pd.Timestamp("2024-06-01")])
def test_good_toi_parameters_are_read_as_before(toi):
    read = parameters.toi_from_parameter(toi, now=NOW)
    assert read == (slice(toi.get("start"), toi.get("end")) if isinstance(toi, dict) else toi)


@pytest.mark.parametrize(("value", "positive", "why"), [
    (30, False, "has no unit"), ("30", False, "has no unit"), (None, False, "is no duration"),
    ("-1D", False, "is negative"), ("0D", True, "must be more than 0"), ("abc", False, "is no duration pandas reads"),
])
def test_a_duration_parameter_is_read_by_the_rule_of_expire(value, positive, why):
    with pytest.raises(TOIError, match=f"^keep_files={value!r} {why}") as raised:
        parameters.duration_from_parameter(value, "keep_files", positive=positive)
    assert isinstance(raised.value, ValueError)
    assert parameters.duration_from_parameter("180D", "keep_files") == pd.Timedelta(days=180)
    assert parameters.duration_from_parameter("0D", "keep_files") == pd.Timedelta(0)


@pytest.mark.parametrize("degrees", [0, 0.0, -1, float("nan"), float("inf"), "1", None, True])
def test_split_degrees_that_are_no_positive_number_are_a_spec_error(degrees):
    with pytest.raises(SpecError, match=f"split_degrees {degrees!r} must be") as raised:
        parameters.split_degrees_from_parameter(degrees)
    assert isinstance(raised.value, ValueError)
    assert parameters.split_degrees_from_parameter(0.2) == 0.2 and parameters.split_degrees_from_parameter(2) == 2.0


# --- the sync window task's retries -------------------------------------------------------------------
class _Failed:
    """A task run's failed state, as Prefect hands it to a retry condition."""

    def __init__(self, error: BaseException):
        self.error = error

    def result(self):
        raise self.error


def _caused(error: Exception, cause: Exception) -> Exception:
    error.__cause__ = cause
    return error


@pytest.mark.parametrize(("error", "retried"), [
    (ItemError("item x is no STAC Item"), False),
    (StorageError("no space left on device", "/catalog", 28), False),
    (_caused(CatalogError("could not search"), PermanentSourceError("403", "https://stac.example", 403)), False),
    (_caused(CatalogError("could not search"), TransientSourceError("503", "https://stac.example", 503)), True),
    (ConnectionError("reset"), True),
])
def test_the_sync_window_task_retries_only_what_a_retry_can_fix(error, retried):
    condition = sync.sync_window_task.retry_condition_fn
    assert condition is tasks.retry_unless_permanent
    assert condition(None, None, _Failed(error)) is retried
    # with_options (how the flow sets its retries) keeps the decision
    assert sync.sync_window_task.with_options(retries=1).retry_condition_fn is condition


# --- the Earth Engine secret block --------------------------------------------------------------------
def _secret_load(value=None, error: Exception | None = None):
    class Loaded:
        def get(self):
            return value

    def load(name):
        if error is not None:
            raise error
        return Loaded()

    return load


def test_a_missing_earth_engine_secret_block_is_a_spec_error_naming_it(monkeypatch):
    from prefect.blocks.system import Secret
    from prefect.exceptions import ObjectNotFound

    try:  # what Prefect raises: a ValueError from an ObjectNotFound
        raise ValueError("Unable to find block document named ee-key for block type secret") from \
            ObjectNotFound(RuntimeError("404"))
    except ValueError as err:
        missing = err
    monkeypatch.setattr(Secret, "load", _secret_load(error=missing))
    with pytest.raises(SpecError, match="earthengine_secret 'ee-key': there is no Prefect Secret block") as raised, \
            credentials.use_earthengine_secret("ee-key"):
        pass
    assert raised.value.__cause__ is missing and isinstance(raised.value, ValueError)


def test_a_secret_that_is_no_json_key_is_a_spec_error_that_never_shows_it(monkeypatch):
    from prefect.blocks.system import Secret

    planted = '{"private_key": "planted-7f3a9c", oops'
    monkeypatch.setattr(Secret, "load", _secret_load(planted))
    with pytest.raises(SpecError, match=r"'ee-key'.*no JSON service-account key") as raised, \
            credentials.use_earthengine_secret("ee-key"):
        pass
    assert "planted" not in str(raised.value) and raised.value.__cause__ is None
    assert raised.value.__suppress_context__


def test_a_good_secret_is_used_as_before(monkeypatch):
    from prefect.blocks.system import Secret

    monkeypatch.delenv("STACUBE_EE_TOKEN", raising=False)
    monkeypatch.delenv("STACUBE_EE_KEY_FILE", raising=False)
    monkeypatch.setattr(Secret, "load", _secret_load("a-token"))
    with credentials.use_earthengine_secret("ee-token"):
        assert os.environ["STACUBE_EE_TOKEN"] == "a-token"
    monkeypatch.setattr(Secret, "load", _secret_load('{"type": "service_account"}'))
    with credentials.use_earthengine_secret("ee-key"):
        path = os.environ["STACUBE_EE_KEY_FILE"]
        assert json.loads(open(path).read()) == {"type": "service_account"} and "STACUBE_EE_TOKEN" not in os.environ
    # the run over: no copy of the key on disk, and the environment as it was (before: one file per run, left)
    assert not os.path.exists(path) and "STACUBE_EE_KEY_FILE" not in os.environ and "STACUBE_EE_TOKEN" not in os.environ


# --- the field pipeline -------------------------------------------------------------------------------
class _Untouchable:
    """A cube or parcel store that fails any use: the error must come before it is read."""

    def __getattr__(self, name):
        raise AssertionError(f"{name} was used before the TOI was checked")


@pytest.mark.parametrize("toi", ["not-a-date", 5, slice("2024-06-10", "2024-06-01"), {"start": "2024-06-01"}])
def test_compute_group_refuses_a_bad_toi_before_the_store_is_read(toi):
    from stacube.fields import compute_group
    from stacube.fields.run import describe_toi, group_tiles

    with pytest.raises(TOIError) as raised:
        compute_group(_Untouchable(), _Untouchable(), "g", toi)
    assert repr(toi) in str(raised.value) and isinstance(raised.value, ValueError)
    with pytest.raises(TOIError):
        group_tiles(_Untouchable(), (10, 50, 11, 51), toi)
    with pytest.raises(TOIError):
        describe_toi(toi)
    assert describe_toi(slice("2024-06-01", "2024-06-07")) == "2024-06-01..2024-06-07"


@pytest.mark.parametrize(("thresholds", "named"), [
    ((1.5, 0.2, 0.5, 4), "min_parcels_covered 1.5"), ((0.5, -0.2, 0.5, 4), "min_cloud_free_fraction -0.2"),
    ((0.5, 0.2, float("nan"), 4), "max_stale_parcels nan"), ((0.5, 0.2, "0.5", 4), "max_stale_parcels '0.5'"),
    ((0.5, 0.2, 0.5, 0), "stale_weeks 0"), ((0.5, 0.2, 0.5, 2.5), "stale_weeks 2.5"),
    ((0.5, True, 0.5, 4), "min_cloud_free_fraction True"),
])
def test_kpi_thresholds_that_are_no_shares_are_a_spec_error(thresholds, named):
    from stacube.fields.quality import QualityThresholds  # checked where they are made, the flow or not

    with pytest.raises(SpecError, match=named):
        QualityThresholds(*thresholds)
    assert QualityThresholds(0, 1, 0.5, 1).stale_weeks == 1 and QualityThresholds(stale_weeks=np.int64(2))
