"""Item footprints a catalog can trust to say where an Item's pixels are.

Planning matches Items to patches by footprint, and a patch that no Item meets is recorded as filled
and empty, never fetched again. So an Item whose geometry is empty, missing or invalid (a bow-tie,
a ring that crosses itself) must not vanish from planning: it is placed by its ``bbox`` (a superset of
its pixels, so nothing is lost: the pixels decide the rest), else by its geometry repaired with
``make_valid``, else as covering the globe. The Item keeps a note of what was done in
``stacube:footprint``, and the repair is logged once per Item as it enters the local catalog.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import shapely
import shapely.geometry

log = logging.getLogger(__name__)
NOTE = "stacube:footprint"


def _problem(geometry: Any) -> tuple[str | None, shapely.Geometry | None]:
    """What is wrong with a GeoJSON geometry (None: nothing), and its shape when it could be read."""
    if not geometry:
        return "missing", None
    try:
        shape = shapely.geometry.shape(geometry)
    except Exception as err:  # noqa: BLE001 - shapely raises several kinds for malformed GeoJSON
        return f"unreadable ({type(err).__name__})", None
    if shape.is_empty:
        return "empty", shape
    if shape.geom_type not in ("Polygon", "MultiPolygon"):
        return f"a {shape.geom_type}, not an area", shape
    if not shape.is_valid:
        return f"invalid ({shapely.is_valid_reason(shape)})", shape
    return None, shape


def _bbox_shape(bbox: Any) -> shapely.Geometry | None:
    """The area a STAC bbox stands for (west > east crosses the antimeridian), or None if it is unusable."""
    if not isinstance(bbox, (list, tuple)) or len(bbox) not in (4, 6):
        return None
    try:
        values = [float(v) for v in bbox]
    except (TypeError, ValueError):
        return None
    west, south, east, north = (values[0], values[1], values[3], values[4]) if len(values) == 6 else values
    if not all(math.isfinite(v) for v in (west, south, east, north)) or south >= north or west == east:
        return None
    if west > east:
        return shapely.MultiPolygon([shapely.box(west, south, 180.0, north), shapely.box(-180.0, south, east, north)])
    return shapely.box(west, south, east, north)


def trusted(item: dict[str, Any]) -> dict[str, Any]:
    """``item`` with a footprint planning can rely on (the same dict when its own is sound).

    Parameters
    ----------
    item : dict[str, Any]
        A STAC Item as a dict.

    Returns
    -------
    dict[str, Any]
        ``item`` itself when its geometry is a valid, non-empty area; else a copy placed by its bbox,
        its geometry made valid, or the whole globe (in that order), with the repair noted under
        ``NOTE`` in its properties (and logged).
    """
    problem, shape = _problem(item.get("geometry"))
    if problem is None:
        return item
    placed = _bbox_shape(item.get("bbox"))
    how = "its bbox"
    if placed is None and shape is not None and not shape.is_empty:
        repaired = shapely.make_valid(shape)
        polygons = [g for g in getattr(repaired, "geoms", [repaired]) if g.geom_type in ("Polygon", "MultiPolygon")]
        placed = shapely.union_all(polygons) if polygons else None
        how = "its geometry made valid"
    if placed is None or placed.is_empty:
        placed, how = shapely.box(-180.0, -90.0, 180.0, 90.0), "the whole globe (neither geometry nor bbox is usable)"
    note = f"geometry {problem}: placed by {how}"
    log.warning("Item %s: %s", item.get("id"), note)
    return {**item, "geometry": shapely.geometry.mapping(placed), "bbox": item.get("bbox") or list(placed.bounds),
            "properties": {**item.get("properties", {}), NOTE: note}}
