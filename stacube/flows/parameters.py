"""Flow parameters: ROIs and TOIs to and from the JSON values a deployment's parameters hold.

A deployment stores its parameters as JSON: an ROI travels as GeoJSON in its own CRS (plus that CRS),
a TOI as strings, a list of strings, ``{"start", "end"}`` for a slice, or a rolling window
``{"last": "30D"}`` that ends when the flow run was scheduled to start.
"""

from __future__ import annotations

import math
import numbers
from datetime import date, datetime
from typing import Any

import pandas as pd
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from prefect import runtime
from pyproj.exceptions import CRSError
from shapely.errors import ShapelyError

from ..errors import ROIError, SpecError, TOIError, shown
from ..history import duration_problem
from ..region import Region
from ..timeaxis import TOI, naive_utc, toi_intervals

TOIParameter = Any
"""A flow's ``toi`` parameter: a ``TOI`` or its JSON form (``toi_from_parameter``). ``Any``, not ``TOI``:
Prefect validates annotated flow parameters with pydantic, which would refuse ``{"last": "30D"}`` and has
no schema for a slice."""
ROIParameter = Any
"""A flow's ``roi`` parameter: a GeoBox, a Geometry or GeoJSON (``roi_from_parameter``); ``Any`` for Prefect."""


def roi_to_parameter(roi: GeoBox | Geometry | Region) -> dict[str, Any]:
    """An ROI as a JSON flow parameter: its footprint as GeoJSON in its own CRS, plus that CRS.

    Parameters
    ----------
    roi : GeoBox, Geometry or Region
        The ROI.

    Returns
    -------
    dict[str, Any]
        A GeoJSON geometry with a ``crs`` key (``roi_from_parameter`` reads it back).

    Raises
    ------
    ROIError
        If ``roi`` is not a valid ROI (``Region.of``).
    """
    geometry = Region.of(roi).geometry
    return {**geometry.json, "crs": str(geometry.crs)}


def _register_roi_encoders() -> None:
    """Teach the encoder Prefect records flow parameters with (FastAPI's ``jsonable_encoder``) that an ROI is its
    GeoJSON (``roi_to_parameter``): it takes a GeoBox for a sequence, and since indexing a GeoBox never ends,
    a flow called with one spun for ever before it started. The flow itself still gets the object given."""
    from fastapi.encoders import ENCODERS_BY_TYPE

    ENCODERS_BY_TYPE.setdefault(GeoBox, roi_to_parameter)
    ENCODERS_BY_TYPE.setdefault(Geometry, roi_to_parameter)


_register_roi_encoders()


# What shapely and odc-geo raise for GeoJSON they cannot read: a wrong type or shape of coordinates, a
# missing key, an unknown geometry type (shapely's GeometryTypeError), too few points; a string where a
# list of coordinates should be makes odc-geo's force_2d recurse without end.
_BAD_GEOJSON = (ValueError, TypeError, KeyError, IndexError, AttributeError, AssertionError, RecursionError,
                ShapelyError)


_GEOMETRY_TYPES = {"point", "multipoint", "linestring", "multilinestring", "polygon", "multipolygon"}
_OTHER_TYPES = {"geometrycollection", "feature", "featurecollection"}  # odc-geo reads these too


def _nested_numbers(value: Any, depth: int = 0) -> bool:
    """Whether ``value`` is GeoJSON coordinates: lists (at most 4 deep) whose leaves are numbers."""
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        return depth > 0
    return isinstance(value, (list, tuple)) and depth < 4 and all(_nested_numbers(v, depth + 1) for v in value)


def roi_from_parameter(roi: GeoBox | Geometry | dict[str, Any]) -> GeoBox | Geometry:
    """An ROI from a flow parameter: a GeoBox or Geometry, or GeoJSON (``crs`` key, default EPSG:4326).

    Raises ROIError, naming the value, for anything else. The ROI's extent is not checked here
    (``Region.of`` does that).

    Parameters
    ----------
    roi : GeoBox, Geometry or dict[str, Any]
        The parameter: a GeoJSON geometry (or Feature) has a ``type`` key.

    Returns
    -------
    GeoBox or Geometry
        The ROI.

    Raises
    ------
    ROIError
        If ``roi`` is neither a GeoBox, a Geometry nor a dict with a ``type`` key, its ``crs`` is no
        CRS pyproj knows, or the GeoJSON cannot be read as a geometry (an unknown type, coordinates of
        the wrong shape). An ROIError is a ValueError.
    """
    if isinstance(roi, (GeoBox, Geometry)):
        return roi
    if not isinstance(roi, dict) or "type" not in roi:
        raise ROIError(f"roi must be a GeoBox, a Geometry or a GeoJSON geometry dict, got {shown(roi, 200)}")
    crs = roi.get("crs", "EPSG:4326")
    try:
        CRS(crs)
    except (CRSError, ValueError, TypeError) as err:
        raise ROIError(f"roi {shown(roi, 200)}: crs {crs!r} is no CRS pyproj knows ({err})") from err
    kind = roi["type"].lower() if isinstance(roi["type"], str) else roi["type"]
    if kind not in _GEOMETRY_TYPES | _OTHER_TYPES:
        raise ROIError(f"roi {shown(roi, 200)}: type {roi['type']!r} is no GeoJSON geometry type (Polygon, "
                       f"MultiPolygon, Point, ...)")
    if kind in _GEOMETRY_TYPES and not _nested_numbers(roi.get("coordinates")):
        raise ROIError(f"roi {shown(roi, 200)}: a GeoJSON {roi['type']} needs 'coordinates' as nested lists of numbers")
    geojson = {k: v for k, v in roi.items() if k != "crs"}
    try:
        return Geometry(geojson, crs)
    except _BAD_GEOJSON as err:
        raise ROIError(f"roi {shown(roi, 200)} is no GeoJSON geometry odc-geo reads: {type(err).__name__}: "
                       f"{str(err)[:200]}") from None


def toi_to_parameter(toi: TOI | None) -> TOIParameter:
    """A TOI as a JSON flow parameter: strings, lists of strings, or {"start", "end"} for a slice.

    Deployments can also use a rolling window, ``{"last": "30D"}``: the 30 days up to the run's start.

    Parameters
    ----------
    toi : TOI or None
        The TOI.

    Returns
    -------
    str, list, dict or None
        Times as ISO strings (strings kept as given), in the TOI's shape.
    """
    def text(value: Any) -> str | None:
        if value is None or isinstance(value, str):
            return value
        if isinstance(value, date) and not isinstance(value, datetime):
            return value.isoformat()  # "2024-01-15": the whole day, as the TOI meant, not its midnight
        return pd.Timestamp(value).isoformat()

    if toi is None or isinstance(toi, str):
        return toi
    if isinstance(toi, slice):
        return {"start": text(toi.start), "end": text(toi.stop)}
    if isinstance(toi, (list, pd.DatetimeIndex)):
        return [text(v) for v in toi]
    return text(toi)


def duration_from_parameter(value: Any, name: str, positive: bool = False) -> pd.Timedelta:
    """A duration flow parameter (``"30D"``, ``"12h"``, ``"P1W"``, a timedelta) as a ``pd.Timedelta``, refused
    as ``history.cutoff`` refuses it: a number without a unit (``30``, ``"30"``, which pandas would read as
    nanoseconds), None, ``""`` or NaT, and a negative one.

    Parameters
    ----------
    value : Any
        The parameter's value.
    name : str
        The parameter's name, for the message.
    positive : bool, optional
        Refuse 0 too.

    Returns
    -------
    pandas.Timedelta
        The duration, 0 or more (more than 0 with ``positive``).

    Raises
    ------
    TOIError
        If ``value`` is no such duration; names it (a TOIError is a ValueError).
    """
    span, problem = duration_problem(value, positive)
    if span is None:
        least = "more than 0" if positive else "0 or more"
        raise TOIError(f"{name}={value!r} {problem}: give a duration such as '30D' or '12h', {least}")
    return span


def toi_from_parameter(toi: TOIParameter, now: pd.Timestamp | None = None) -> TOI | None:
    """The TOI a flow parameter stands for; ``{"last": duration}`` ends at ``now`` (default: the current time;
    flows pass ``run_start()``). Raises TOIError for a ``last`` that is not a duration, or a dict with
    other keys.

    The TOI's times are read here (``toi_intervals``), so that a flow refuses one pandas cannot read before
    it opens anything; ``select_steps`` judges it against the cube's axis later.

    Parameters
    ----------
    toi : TOIParameter
        A TOI, ``{"start", "end"}`` (either may be left out: open), or ``{"last": duration}``.
    now : pandas.Timestamp or None, optional
        Where a rolling window ends; None: now.

    Returns
    -------
    TOI or None
        A slice for a dict, else ``toi`` as given.

    Raises
    ------
    TOIError
        If ``last`` is no duration of 0 or more that ``pd.Timedelta`` reads with a unit (``"abc"``, ``5``,
        ``"30"``, None, ``"-7D"``: as ``duration_from_parameter``), a dict has keys other than ``start``
        and ``end``, or ``last`` alone, or the TOI is no time pandas reads, is empty or ends before it
        starts (``toi_intervals``). Each names the value.
    """
    if isinstance(toi, dict) and "last" in toi:
        if set(toi) != {"last"}:
            raise TOIError(f"toi {toi!r}: a rolling window takes 'last' alone (or give 'start' and 'end')")
        span, problem = duration_problem(toi["last"], positive=False)
        if span is None:
            raise TOIError(f"toi {toi!r}: 'last' must be a duration such as '30D' or '12h', 0 or more "
                           f"({toi['last']!r} {problem})")
        end = naive_utc(now if now is not None else pd.Timestamp.now(tz="UTC"))  # as the cube's time axis
        return slice(end - span, end)
    if isinstance(toi, dict):
        if not set(toi) <= {"start", "end"}:
            raise TOIError(f"toi {toi!r}: a dict takes 'start' and 'end' (either may be left out), or 'last' "
                           f"alone; not {sorted(set(toi) - {'start', 'end'})}")
        try:
            return _read(slice(toi.get("start"), toi.get("end")))
        except TOIError as err:  # named as the parameter holds it
            raise TOIError(f"toi {toi!r}: {err}") from err
    return _read(toi)


def _read(toi: TOI | None) -> TOI | None:
    if toi is not None:
        toi_intervals(toi)  # a TOIError naming it where pandas cannot read it
    return toi


def split_degrees_from_parameter(value: Any) -> float:
    """The sync flow's ``split_degrees``: a finite number of degrees above 0.

    Parameters
    ----------
    value : Any
        The parameter's value.

    Returns
    -------
    float
        ``value``.

    Raises
    ------
    SpecError
        If ``value`` is no number, or is 0, negative, NaN or infinite; names it (a SpecError is a ValueError).
    """
    if not isinstance(value, numbers.Real) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
        raise SpecError(f"split_degrees {value!r} must be a number of degrees above 0 (such as 1.0)")
    return float(value)


def run_start() -> pd.Timestamp:
    """When this flow run was meant to start: a rolling TOI of a late or retried scheduled run keeps its window.

    Returns
    -------
    pandas.Timestamp
        The flow run's scheduled start (tz-aware); outside a flow run, Prefect's runtime gives now.
    """
    return pd.Timestamp(runtime.flow_run.scheduled_start_time)
