"""Flow parameters: ROIs and TOIs to and from the JSON values a deployment's parameters hold.

A deployment stores its parameters as JSON: an ROI travels as GeoJSON in its own CRS (plus that CRS),
a TOI as strings, a list of strings, ``{"start", "end"}`` for a slice, or a rolling window
``{"last": "30D"}`` that ends when the flow run was scheduled to start.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from prefect import runtime

from ..errors import ROIError, TOIError
from ..region import Region
from ..timeaxis import TOI, naive_utc

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


def roi_from_parameter(roi: GeoBox | Geometry | dict[str, Any]) -> GeoBox | Geometry:
    """An ROI from a flow parameter: a GeoBox or Geometry, or GeoJSON (``crs`` key, default EPSG:4326).

    Raises ROIError for anything else. The ROI is not checked here (``Region.of`` does that).

    Parameters
    ----------
    roi : GeoBox, Geometry or dict[str, Any]
        The parameter: a GeoJSON geometry has a ``type`` key.

    Returns
    -------
    GeoBox or Geometry
        The ROI.

    Raises
    ------
    ROIError
        If ``roi`` is neither a GeoBox, a Geometry nor a dict with a ``type`` key.
    """
    if isinstance(roi, (GeoBox, Geometry)):
        return roi
    if isinstance(roi, dict) and "type" in roi:
        geojson = {k: v for k, v in roi.items() if k != "crs"}
        return Geometry(geojson, roi.get("crs", "EPSG:4326"))
    raise ROIError(f"roi must be a GeoBox, a Geometry or a GeoJSON geometry dict, got {roi!r}")


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
        return None if value is None else (value if isinstance(value, str) else pd.Timestamp(value).isoformat())

    if toi is None or isinstance(toi, str):
        return toi
    if isinstance(toi, slice):
        return {"start": text(toi.start), "end": text(toi.stop)}
    if isinstance(toi, (list, tuple, pd.DatetimeIndex)):
        return [text(v) for v in toi]
    return text(toi)


def toi_from_parameter(toi: TOIParameter, now: pd.Timestamp | None = None) -> TOI | None:
    """The TOI a flow parameter stands for; ``{"last": duration}`` ends at ``now`` (default: the current time;
    flows pass ``run_start()``). Raises TOIError for a ``last`` that is not a duration.

    The TOI is not checked here: ``select_steps`` judges it against the cube's axis.

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
        If ``pd.Timedelta`` cannot read ``last`` (``"abc"``). A bare number is read as nanoseconds and
        None as NaT: neither is refused here.
    """
    if isinstance(toi, dict) and "last" in toi:
        try:
            span = pd.Timedelta(toi["last"])
        except ValueError as err:
            raise TOIError(f"toi {toi!r}: 'last' must be a duration such as '30D' or '12h'") from err
        end = naive_utc(now if now is not None else pd.Timestamp.now(tz="UTC"))  # as the cube's time axis
        return slice(end - span, end)
    if isinstance(toi, dict):
        return slice(toi.get("start"), toi.get("end"))
    return toi


def run_start() -> pd.Timestamp:
    """When this flow run was meant to start: a rolling TOI of a late or retried scheduled run keeps its window.

    Returns
    -------
    pandas.Timestamp
        The flow run's scheduled start (tz-aware); outside a flow run, Prefect's runtime gives now.
    """
    return pd.Timestamp(runtime.flow_run.scheduled_start_time)
