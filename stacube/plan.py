"""Plan a run: ROI x TOI -> patches -> minus the filled ones -> each with the catalog Items that feed it.

``window_for`` (and ``patch_window`` under it) is the one route from an ROI x TOI, or from patches, to the
catalog ``Window`` a load searches: the CLI's ``catalog sync``, the sync flow and planning all take it, and
it is the one place a solar-day cube's window gets its 12 h either side.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pystac
import shapely
import zarr
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from .alignment import declared_crs
from .catalog import LocalCatalog, Window
from .duplicates import drop_duplicates
from .errors import ROIError
from .grid import PatchIndex, shape_in_zone, zone_grids
from .layout import FILLED, chunk_exists
from .lonlat import lonlat_bounds
from .region import Region
from .spec import CubeSpec
from .timeaxis import TOI, HalfOpenInterval, naive_utc, select_steps, step_range


@dataclass
class Plan:
    """The patches under an ROI x TOI, and which of them the cube does not hold yet."""

    patches: list[PatchIndex] = field(default_factory=list)
    """Every patch under the ROI x TOI."""
    missing: list[PatchIndex] = field(default_factory=list)
    """Those the cube's filled record does not hold yet: what a run downloads."""


def _steps(spec: CubeSpec, steps: Sequence[int] | None) -> list[tuple[int | None, HalfOpenInterval | None]]:
    if spec.time is None or steps is None:
        return [(None, None)]
    return [(s, step_range(spec.time, s)) for s in steps]


def iter_patches(spec: CubeSpec, region: Region, steps: Sequence[int] | None) -> Iterator[PatchIndex]:
    """Every patch under ROI x TOI; a generator bounded by the ROI, never the whole grid.

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec (its zones, chunks and time axis).
    region : Region
        The ROI, checked.
    steps : Sequence[int] or None
        Positions on the time axis (``select_steps``); None for a cube without time.

    Yields
    ------
    PatchIndex
        Zone by zone in spec order, step by step, the chunks meeting the ROI; no Items attached.
    """
    for grid in zone_grids(spec):
        boxes = {(iy, ix): grid.chunk_geobox(iy, ix) for iy, ix in grid.chunks_under(region.geometry)}  # once
        for step, period in _steps(spec, steps):
            for (iy, ix), box in boxes.items():
                yield PatchIndex(grid.name, iy, ix, box, step, period)


def outside_every_zone(spec: CubeSpec, region: Region) -> ROIError:
    """The error for an ROI under no patch of the cube, naming the cube's zones (to be raised by the caller).

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec.
    region : Region
        The ROI.

    Returns
    -------
    ROIError
        Naming the ROI's bounds and CRS, and each zone's extent.
    """
    roi = region.geometry
    extents = {name: tuple(round(v, 3) for v in g.extent.boundingbox) for name, g in spec.zones.items()}
    return ROIError(f"the ROI (bounds {tuple(round(v, 3) for v in roi.boundingbox)} in {roi.crs}) is outside every "
                    f"zone of cube {spec.name!r}: {extents}")


def plan_patches(spec: CubeSpec, root: zarr.Group, region: Region, steps: Sequence[int] | None) -> Plan:
    """The patches under the ROI x TOI and those not yet filled, read from the cube's own record.

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec, as stored with ``root``'s version.
    root : zarr.Group
        The cube's root group at the version planned on (a session's store).
    region : Region
        The ROI, checked.
    steps : Sequence[int] or None
        Positions on the time axis (``select_steps``); None for a cube without time.

    Returns
    -------
    Plan
        Every patch under ROI x TOI, and those the filled record does not hold.

    Raises
    ------
    ROIError
        If the ROI lies under no patch of the cube (outside every zone).
    """
    plan = Plan(patches=list(iter_patches(spec, region, steps)))
    if not plan.patches:
        raise outside_every_zone(spec, region)
    plan.missing = unfilled(root, plan.patches)
    return plan


def plan_cells(spec: CubeSpec, root: zarr.Group, cells: Iterable[tuple[str, int, int]],
               steps: Sequence[int] | None) -> Plan:
    """The patches of the given chunk cells (zone, row, column) x TOI, and those not yet filled.

    For callers that know exactly which chunks they need (the parcel ingest: chunks under parcels),
    where an ROI drawn around them would also catch a neighbouring zone's overlapping chunks.

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec.
    root : zarr.Group
        The cube's root group at the version planned on.
    cells : Iterable[tuple[str, int, int]]
        Zone name, chunk row and chunk column of each chunk; repeats count once.
    steps : Sequence[int] or None
        Positions on the time axis; None for a cube without time.

    Returns
    -------
    Plan
        The cells' patches (sorted by zone, row, column, then step), and those not yet filled.

    Raises
    ------
    ROIError
        If ``cells`` is no collection of cells, a cell is not three values (a zone name, then a row and a
        column that are whole numbers), names a zone the cube does not have, or lies outside its zone's
        chunks; the message names the cell.
    """
    grids = {grid.name: grid for grid in zone_grids(spec)}
    patches = []
    if isinstance(cells, str | bytes) or not isinstance(cells, Iterable):
        raise ROIError(f"cells {cells!r}: give a list of (zone, row, column) chunk cells")
    for zone, iy, ix in sorted({_cell(cell) for cell in cells}):
        grid = grids.get(zone)
        if grid is None:
            raise ROIError(f"cell ({zone!r}, {iy}, {ix}): cube {spec.name!r} has no zone {zone!r}; "
                           f"its zones are {sorted(grids)}")
        rows, columns = grid.chunk_counts
        if not (0 <= iy < rows and 0 <= ix < columns):
            raise ROIError(f"cell ({zone!r}, {iy}, {ix}) is outside zone {zone!r} of {rows} x {columns} chunks")
        box = grid.chunk_geobox(iy, ix)
        patches += [PatchIndex(zone, iy, ix, box, step, period) for step, period in _steps(spec, steps)]
    plan = Plan(patches=patches)
    plan.missing = unfilled(root, plan.patches)
    return plan


def _whole(value: object) -> int | None:
    """``value`` as an int when it is a whole number (an integer, or a float without a fraction), else None."""
    if isinstance(value, bool | np.bool_):
        return None
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real) and math.isfinite(value) and float(value).is_integer():
        return int(value)
    return None


def _cell(cell: object) -> tuple[str, int, int]:
    """A chunk cell as (zone, row, column), checked: an ROIError names a cell that is none."""
    values = None
    if not isinstance(cell, str | bytes | Mapping):
        try:
            values = tuple(cell)  # type: ignore[call-overload]
        except TypeError:
            pass
    if values is None or len(values) != 3:
        raise ROIError(f"cell {cell!r} is not three values: give (zone, row, column)")
    zone, row, column = values[0], _whole(values[1]), _whole(values[2])
    if not isinstance(zone, str) or row is None or column is None:
        raise ROIError(f"cell {cell!r}: give a zone's name, then its chunk row and column as whole numbers")
    return str(zone), row, column


def unfilled(root: zarr.Group, patches: Sequence[PatchIndex]) -> list[PatchIndex]:
    """The ``patches`` that the filled record under ``root`` does not hold yet (its chunk was never written).
    One session and one path per zone for all of them: at tens of thousands of patches a year, building
    them per patch cost as much as asking the manifest.

    Parameters
    ----------
    root : zarr.Group
        The cube's root group, on an Icechunk session's store.
    patches : Sequence[PatchIndex]
        The patches to look up.

    Returns
    -------
    list[PatchIndex]
        Those not filled, in the order given.
    """
    session = root.store.session
    paths: dict[str, str] = {}
    missing = []
    for patch in patches:
        path = paths.get(patch.zone)
        if path is None:
            path = paths[patch.zone] = f"/{patch.zone}/{FILLED}"
        if not chunk_exists(session, path, patch.cell):
            missing.append(patch)
    return missing


SOLAR_SLACK = pd.Timedelta(hours=12)
"""How far a solar day reaches past its UTC day (a UTC day shifted by up to 12 h either way)."""
_WORLD = (-180.0, -90.0, 180.0, 90.0)


def settled(spec: CubeSpec, patch: PatchIndex, as_of: pd.Timestamp) -> bool:
    """Whether the source can publish nothing more for ``patch`` after ``as_of`` (naive UTC): its step's end,
    plus a solar-day cube's 12 h (the last Items of a solar day lie up to 12 h past its UTC end), plus the
    source's publication lag, has passed. A patch without time is settled. Only a settled patch is recorded
    as filled: an unsettled one may still get Items, with data or without (``Run.commit``).

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec (``group_by`` and the source's lag).
    patch : PatchIndex
        The patch.
    as_of : pd.Timestamp
        When the catalog was asked for its Items (naive UTC): what was published by then is all a run read.

    Returns
    -------
    bool
        True where nothing more can come.
    """
    if patch.time_range is None:
        return True
    end = patch.time_range[1] + (SOLAR_SLACK if spec.group_by == "solar_day" else pd.Timedelta(0))
    return end <= as_of - spec.source.lag  # not end + lag: a lag of centuries would pass pandas' last date


def _window(spec: CubeSpec, bbox: tuple[float, float, float, float],
            periods: Iterable[HalfOpenInterval | None]) -> Window:
    """A Window over ``bbox`` and the span of the steps' ``periods``, and, for ``group_by="solar_day"``,
    the 12 h either side that an Item of those solar days may lie in UTC. The ONE place the slack is added:
    without it a patch of a solar day would be filled without the Items whose UTC day is the next or the
    one before (a pass at 23:00 UTC at 180 degrees) and recorded as filled for good."""
    spans = [period for period in periods if period is not None]
    if not spans:
        return Window(bbox)
    start, end = min(s for s, _ in spans), max(e for _, e in spans)
    if spec.group_by == "solar_day":
        start, end = start - SOLAR_SLACK, end + SOLAR_SLACK
    return Window(bbox, start, end)


def patch_window(spec: CubeSpec, patches: Sequence[PatchIndex]) -> Window:
    """What the catalog must hold for ``patches``: one lon/lat bbox around their chunks (each chunk's bounds
    once, whatever the steps), the span of their steps, and the solar-day slack (``_window``).

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec (its ``group_by`` decides the slack).
    patches : Sequence[PatchIndex]
        The patches, at least one.

    Returns
    -------
    Window
        The bbox (padded by a micro-degree, within the globe) and, for a cube with time, the span from
        the first step's start to the last step's end.
    """
    chunks = {(p.zone, p.iy, p.ix): p.geobox for p in patches}
    bounds = np.array([lonlat_bounds(box.extent) for box in chunks.values()])
    pad = 1e-6
    bbox = (
        max(float(bounds[:, 0].min()) - pad, -180.0),
        max(float(bounds[:, 1].min()) - pad, -90.0),
        min(float(bounds[:, 2].max()) + pad, 180.0),
        min(float(bounds[:, 3].max()) + pad, 90.0),
    )
    return _window(spec, bbox, {p.time_range for p in patches})


def window_for(spec: CubeSpec, region: Region | None, toi: TOI | None = None) -> Window:
    """The catalog window a load of ``region`` x ``toi`` searches: ``patch_window`` of the patches under them.

    ``region`` None is the whole globe over the TOI's steps (no patch is listed: that would enumerate the
    grid). A TOI on a cube without a time axis is a TOIError, an ROI under no patch an ROIError, as for a load.

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec.
    region : Region or None
        The ROI, checked; None: the whole globe.
    toi : TOI or None, optional
        The time of interest; None: every step (or a cube without time).

    Returns
    -------
    Window
        The lon/lat bbox and time span to search or sync.

    Raises
    ------
    TOIError
        If the TOI is not a time pandas reads, is empty, lies outside the time axis, or is given to a
        cube without time (``select_steps``).
    ROIError
        If ``region`` lies under no patch of the cube.
    """
    steps = select_steps(spec.time, toi)
    if region is None:
        return _window(spec, _WORLD, (period for _, period in _steps(spec, steps)))
    patches = list(iter_patches(spec, region, steps))
    if not patches:
        raise outside_every_zone(spec, region)
    return patch_window(spec, patches)


def _footprints_in(zone: GeoBox, items: Sequence[pystac.Item]) -> list[shapely.Geometry]:
    """Item footprints in a zone's CRS (empty where an Item does not meet the zone), densified first
    (0.05 degree segments) and clipped to the zone where too big to project whole (``shape_in_zone``)."""
    out = []
    for item in items:
        local = shape_in_zone(Geometry(item.geometry, "EPSG:4326"), zone, resolution=0.05) if item.geometry else None
        out.append(local.geom if local is not None else shapely.Polygon())
    return out


def attach_items(
    spec: CubeSpec, catalog: LocalCatalog, patches: Sequence[PatchIndex], sync: bool = True
) -> list[PatchIndex]:
    """Each patch with the Items whose footprint meets it (and whose datetime falls in its step).

    Syncs the window from the source first unless the catalog already covers it. Items are matched
    in each zone's own CRS, so polar and antimeridian patches find every Item they touch. The
    source's duplicate rule then leaves out reprocessed copies (kept in ``patch.superseded``).

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec (its source's filter and duplicate rule, its zones, ``group_by``).
    catalog : LocalCatalog
        The source's local catalog (``Cube.catalog``).
    patches : Sequence[PatchIndex]
        The patches to feed.
    sync : bool, optional
        Sync the window from the source first, unless the catalog covers it (default); False: search
        the local catalog only.

    Returns
    -------
    list[PatchIndex]
        The patches in the order given, each with its Items in (datetime, id) order; none where no
        Item meets it.

    Raises
    ------
    CatalogError
        If the source cannot be searched or synced, or the local catalog cannot be searched.
    ItemError
        If the source returned something that is not a STAC Item the catalog can hold.
    StorageError
        If the catalog folder cannot be written.
    """
    if not patches:
        return []
    window = patch_window(spec, patches)  # with a solar-day cube's slack
    if sync:
        spec.source.sync(catalog, window)
    items = catalog.search(bbox=window.bbox, datetime=window.datetime_query(), filter=spec.source.filter)
    times = np.array([_grouping_time(item, spec.group_by) for item in items], dtype="datetime64[us]")
    feeds = _zone_items(spec, items)
    trees: dict[str, shapely.STRtree] = {}
    out = []
    for patch in patches:
        candidates = feeds[patch.zone]
        if not candidates:
            out.append(patch.with_items(()))
            continue
        if patch.zone not in trees:
            trees[patch.zone] = shapely.STRtree(_footprints_in(spec.zones[patch.zone],
                                                               [items[i] for i in candidates]))
        tree = trees[patch.zone]
        footprint = patch.geobox.extent.geom
        hits = [candidates[h] for h in tree.query(footprint, predicate="intersects")
                if tree.geometries[h].intersection(footprint).area > 0]
        if patch.time_range is not None:
            start, end = (np.datetime64(t.to_datetime64(), "us") for t in patch.time_range)
            hits = [h for h in hits if start <= times[h] < end]
        chosen = sorted((items[h] for h in hits), key=lambda it: (_item_time(it), it.id))
        kept, superseded = drop_duplicates(chosen, spec.source.duplicates)
        out.append(patch.with_items(tuple(kept), tuple(superseded)))
    return out


def native_crs(item: pystac.Item, assets: Sequence[str] = ()) -> CRS | None:
    """The CRS an Item's rasters are stored in (``proj:*`` of the Item or its assets); None when none is
    declared or PROJ cannot read it: the Item is then matched by footprint only.

    Parameters
    ----------
    item : pystac.Item
        The Item.
    assets : Sequence[str], optional
        The asset keys whose ``proj:*`` fields count, after the Item's properties.

    Returns
    -------
    odc.geo.crs.CRS or None
        The CRS of the Item's properties if they declare one, else of the first of ``assets`` that does
        (None where PROJ cannot read it); None where none declares one.
    """
    for fields in [item.properties] + [item.assets[a].extra_fields for a in assets if a in item.assets]:
        if any(key in fields for key in ("proj:code", "proj:epsg", "proj:wkt2", "proj:projjson")):
            return declared_crs(fields)
    return None


def _zone_items(spec: CubeSpec, items: Sequence[pystac.Item]) -> dict[str, list[int]]:
    """Which Items may feed each zone: an Item stored in the CRS of some zone feeds only the zones of
    that CRS (a zone keeps its data on its native grid, never resampled from a neighbour's CRS); an
    Item in a CRS no zone has feeds every zone it meets, resampled."""
    zone_crs = {name: geobox.crs for name, geobox in spec.zones.items()}
    assets = list(spec.source.assets.values())
    feeds: dict[str, list[int]] = {name: [] for name in zone_crs}
    for index, item in enumerate(items):
        crs = native_crs(item, assets)
        homes = [name for name, zcrs in zone_crs.items() if crs is not None and zcrs == crs]
        for name in homes or zone_crs:
            feeds[name].append(index)
    return feeds


def _grouping_time(item: pystac.Item, group_by: str) -> np.datetime64:
    """The time that puts an Item in a step: its UTC time, or its local solar time (by centroid longitude)."""
    when = _item_time(item)
    if group_by != "solar_day":
        return when
    # odc-stac's rule (whole hours, truncated towards zero) at the Item's own centroid, so that an Item
    # falls on the same day whatever ROI asks for it (odc-stac takes the longitude of the load's centre)
    return when + np.timedelta64(int(_centre_longitude(item) / 15), "h")


def _centre_longitude(item: pystac.Item) -> float:
    """An Item's centroid longitude; across the antimeridian (a bbox whose west is east of its east, or a
    footprint in parts on both sides of 180 degrees under a [-180, s, 180, n] bbox) the middle of its span,
    not the plain centroid far from it."""
    bbox = item.bbox or []
    if len(bbox) in (4, 6):
        west, east = bbox[0], bbox[len(bbox) // 2]
        if west > east:  # across 180 degrees
            middle = west + ((east - west) % 360) / 2
            return middle - 360 if middle > 180 else middle
    if not item.geometry:
        return 0.0
    shape = shapely.geometry.shape(item.geometry)
    west, _, east, _ = shape.bounds
    parts = getattr(shape, "geoms", [shape])
    split = (len(parts) > 1 and any(p.bounds[2] >= 180 - 1e-9 for p in parts)
             and any(p.bounds[0] <= -180 + 1e-9 for p in parts))
    if east - west > 180 and split:  # parts on both sides of 180 degrees ([-180, s, 180, n]): measured eastwards
        middle = shapely.transform(shape, lambda xy: xy + np.where(xy[:, :1] < 0, [360.0, 0.0], [0.0, 0.0])).centroid.x
        return middle - 360 if middle > 180 else middle
    return shape.centroid.x


def _item_time(item: pystac.Item) -> np.datetime64:
    when = item.datetime or item.common_metadata.start_datetime
    return np.datetime64(naive_utc(when).to_datetime64(), "us")
