"""Per-group work: load the cube under one group's parcels, compute their indices, store them.

A group's ROI is the window of the cube zone in the group's UTM CRS that covers its parcels, on
that zone's own grid (read without resampling; a parcel reaching into the next zone gets that
zone's pixels warped in, as any Tile does). Only the patches under the group are downloaded.
"""

from __future__ import annotations

import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable

import geopandas as gpd
import pandas as pd
import shapely
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box

from ..cube import Cube
from ..errors import GroupError, ROIError
from ..grid import covering_geobox, parse_patch_id, source_tile_name, zone_grid, zone_grids
from ..timeaxis import TOI, naive_utc, toi_span
from .indices import IndexSettings, no_acquisition, not_downloaded, parcel_statistics
from .store import ParcelStore

log = logging.getLogger(__name__)


ZoneChunk = tuple[str, int, int]  # (zone, chunk row, chunk column)


def parcel_cells(cube: Cube, parcels: gpd.GeoDataFrame) -> dict[ZoneChunk, set[str]]:
    """The cube's chunks under the parcels' bounding boxes, each with the groups it serves.

    This is what an ingest downloads: patches under watched parcels, not whole granules nor the
    empty land between a group's parcels. Vectorised over parcels (hundreds of thousands).

    Parameters
    ----------
    cube : Cube
        The cube (its zones and chunks).
    parcels : geopandas.GeoDataFrame
        The parcels, with a CRS and a ``group_id`` column (``ParcelStore.parcels``).

    Returns
    -------
    dict[tuple[str, int, int], set[str]]
        (zone, chunk row, chunk column) -> the ids of the groups whose parcels it lies under; empty
        where no parcel lies in a zone.
    """
    cells: dict[ZoneChunk, set[str]] = defaultdict(set)
    groups = parcels["group_id"].to_numpy()
    for grid in zone_grids(cube.spec):
        bounds = parcels.geometry.to_crs(grid.geobox.crs).bounds.to_numpy()
        for i, iy, ix in grid.cells_under_boxes(bounds):
            cells[(grid.name, iy, ix)].add(str(groups[i]))
    return dict(cells)


def group_tiles(cube: Cube, bounds: tuple[float, float, float, float], toi: TOI) -> list[str]:
    """The source tiles (Sentinel-2 MGRS tiles, else Item ids) over lon/lat ``bounds`` in ``toi``, from the
    local catalog only: what logs and failures name next to a group.

    Parameters
    ----------
    cube : Cube
        The cube whose local catalog is searched.
    bounds : tuple[float, float, float, float]
        West, south, east, north in degrees.
    toi : TOI
        The period (its span is searched).

    Returns
    -------
    list[str]
        The tiles, sorted; empty where the catalog cannot be searched (a failure here never hides the
        one being named).

    Raises
    ------
    TOIError
        If ``toi`` is not a time pandas reads (``toi_span``); names it.
    """
    start, end = toi_span(toi)
    try:
        items = cube.catalog.search(bbox=bounds, datetime=f"{start:%Y-%m-%dT%H:%M:%SZ}/{end:%Y-%m-%dT%H:%M:%SZ}")
    except Exception:  # noqa: BLE001 - naming tiles must never turn a failure into another one
        return []
    return sorted({source_tile_name(item.properties, item.id) for item in items})


def group_geobox(cube: Cube, parcels_bounds: tuple[float, float, float, float], utm_epsg: int) -> GeoBox:
    """The Tile for a group: the pixels of the cube's zone in ``EPSG:utm_epsg`` (else its first zone) that
    cover lon/lat bounds, on that zone's own grid wherever its pixel edges lie, reaching past the zone's
    extent where the parcels do (those pixels come from the zones that hold them).

    Parameters
    ----------
    cube : Cube
        The cube.
    parcels_bounds : tuple[float, float, float, float]
        The group's parcels' bounds: west, south, east, north in degrees.
    utm_epsg : int
        The EPSG code of the group's UTM zone.

    Returns
    -------
    GeoBox
        The Tile's grid, at least one pixel.

    Raises
    ------
    ROIError
        If the bounds meet none of the cube's zones.
    """
    zones = list(cube.spec.zones.values())
    zone = next((z for z in zones if z.crs.epsg == utm_epsg), zones[0])
    area = box(*parcels_bounds, "EPSG:4326").to_crs(zone.crs, resolution=0.0005)
    if not any(z.extent.intersects(area.to_crs(z.crs)) for z in zones):
        raise ROIError(f"parcels within {tuple(round(v, 4) for v in parcels_bounds)} (lon/lat) lie outside the "
                       f"zones of cube {cube.spec.name!r}")
    return covering_geobox(zone, tuple(area.boundingbox))


def missing_patch_areas(cube: Cube, patch_ids: Iterable[str]) -> list[tuple[pd.Timestamp | None, Geometry]]:
    """Each patch's step and ground (its chunk's extent, in its zone's CRS): where a Tile holds nodata
    because the patch is not in the cube (``missing_patches``), not because the source had none.

    Parameters
    ----------
    cube : Cube
        The cube the patches are in.
    patch_ids : Iterable[str]
        Patch ids (``grid.patch_id``).

    Returns
    -------
    list[tuple[pandas.Timestamp or None, Geometry]]
        (step, extent) per patch.
    """
    areas = []
    for patch in patch_ids:
        zone, when, iy, ix = parse_patch_id(patch)
        areas.append((when, zone_grid(cube.spec, zone).chunk_geobox(iy, ix).extent))
    return areas


def compute_group(cube: Cube, store: ParcelStore, group_id: str, toi: TOI, settings: IndexSettings | None = None,
                  run_id: str | None = None, offline: bool = False) -> pd.DataFrame:
    """NDVI/NDMI of the watched parcels of ``group_id`` for every acquisition in ``toi``, stored and returned.

    A period without any acquisition over the group is stored as one "no acquisition" row per parcel,
    dated at the period's start. ``offline`` reads only what the cube holds (the ingest flow has
    downloaded it, as one commit), never downloading per group.

    Parameters
    ----------
    cube : Cube
        The cube holding the group's bands (``settings.variables``).
    store : ParcelStore
        The parcel store: the group's parcels are read from it and their rows written to it.
    group_id : str
        The group.
    toi : TOI
        The period.
    settings : IndexSettings or None, optional
        Bands, masks and buffer; None: ``IndexSettings()``.
    run_id : str or None, optional
        The run the rows are stored under; None: a new id.
    offline : bool, optional
        Read only what the cube holds; False downloads what the group's parcels lack first.

    Returns
    -------
    pandas.DataFrame
        The rows stored, a row per parcel and acquisition (or per parcel for "no acquisition"); empty
        when the group has no watched parcel.

    Raises
    ------
    GroupError
        If loading the group's Tile, computing its indices or storing the rows failed: names the group,
        its tiles, the period and the run; its ``__cause__`` is the error (an ROIError, a TOIError, a
        RadiometryError, a PatchReadError, ...).
    TOIError
        If ``toi`` is not a time pandas reads, or ends before it starts (``toi_span``); names it, before
        the store is read or anything loaded.
    """
    toi_span(toi)  # a bad TOI fails here, as itself, not as a GroupError after the group's parcels are read
    settings = settings or IndexSettings()
    run_id = run_id or uuid.uuid4().hex
    parcels = store.parcels(group_id)
    if parcels.empty:
        return pd.DataFrame()
    bounds = tuple(parcels.total_bounds)
    tiles = group_tiles(cube, bounds, toi)
    try:
        roi = group_geobox(cube, bounds, int(parcels["utm_zone"].iloc[0]))
        # Planned over the parcels themselves: the chunks an ingest fetched (those under parcels), so a
        # neighbouring zone's chunks in the Tile's corners that no parcel meets never count as missing.
        area = Geometry(shapely.union_all(parcels.geometry.values), "EPSG:4326")
        tile = cube.load(roi, toi, variables=settings.variables, offline=offline, area=area)
        if tile.sizes.get("time", 0) == 0:
            rows = no_acquisition(parcels, toi_span(toi)[0], run_id)
        else:
            rows = parcel_statistics(tile, parcels, settings, run_id)
            missing = missing_patch_areas(cube, tile.attrs.get("missing_patches", []))
            rows = not_downloaded(rows, tile, parcels, missing, settings)
        store.write_observations(rows)
    except Exception as error:
        raise GroupError(f"group {group_id} (tiles {', '.join(tiles) or 'none in the catalog'}) for "
                         f"{describe_toi(toi)} in run {run_id}: {type(error).__name__}: {error}") from error
    dates = sorted({f"{d:%Y-%m-%d}" for d in pd.to_datetime(rows["date"])})
    log.info("run %s group %s tiles %s: %d parcels x %d dates (%s), %d usable", run_id, group_id,
             ",".join(tiles) or "-", len(parcels), tile.sizes.get("time", 0), ", ".join(dates),
             int(rows["usable"].sum()))
    return rows


def since_last(last: tuple[pd.Timestamp, pd.Timestamp] | None, now: pd.Timestamp, first: str = "7D") -> dict[str, str]:
    """The next ingest's TOI: from where the last recorded one ended up to ``now``; without one, the last
    ``first`` (a duration such as "7D").

    Parameters
    ----------
    last : tuple[pandas.Timestamp, pandas.Timestamp] or None
        The last ingest's recorded period (``ParcelStore.last_run``), or None.
    now : pandas.Timestamp
        The run's start.
    first : str, optional
        How far back the first ingest reaches.

    Returns
    -------
    dict[str, str]
        A TOI flow parameter: ``{"start", "end"}``, or ``{"last": first}``.
    """
    if last is None:
        return {"last": first}
    return {"start": f"{last[1]:%Y-%m-%dT%H:%M:%S}", "end": f"{naive_utc(now):%Y-%m-%dT%H:%M:%S}"}


def ingest_resume(last: tuple[pd.Timestamp, pd.Timestamp] | None, start: pd.Timestamp,
                  resume: pd.Timestamp, steps: pd.DatetimeIndex | None = None) -> pd.Timestamp:
    """Where the next default ingest starts, after one that covered from ``start`` and was complete up to ``resume``.

    A run that began after where the last one stopped (a manual run over a later period), leaving a
    step of the cube between them, left that time as it was: the next ingest still starts at the old
    place, never past a date that failed or was still pending there.

    Parameters
    ----------
    last : tuple[pandas.Timestamp, pandas.Timestamp] or None
        The latest-ending recorded ingest before this one (``ParcelStore.last_run``), or None.
    start : pandas.Timestamp
        This ingest's start.
    resume : pandas.Timestamp
        This ingest's first failed, pending or provisional step, else its end.
    steps : pandas.DatetimeIndex or None, optional
        The cube's time steps; None: any time between the two runs is a gap.

    Returns
    -------
    pandas.Timestamp
        The end to record for this ingest.
    """
    if last is None or start <= last[1]:
        return resume
    between = (steps > last[1]) & (steps < start) if steps is not None else [start > last[1]]
    return min(resume, last[1]) if any(between) else resume


def indices_period(ingested: pd.DataFrame, indexed: pd.DataFrame
                   ) -> tuple[pd.Timestamp, pd.Timestamp, pd.Timestamp] | None:
    """The default indices period: what every ingest recorded since the last default indices run wrote.

    An ingest records the data it wrote (``INGEST_DATA``: its start up to its first step still
    pending or provisional, failed steps included, as their parcels are marked "not downloaded").
    Indices that ran less often than ingests, or failed, or were not run after some ingest, cover every
    ingest since the last indices run recorded, so no ingested day is left out; a day an ingest
    repaired later is covered again with that ingest. With no ingest since, the last one's data again.

    Parameters
    ----------
    ingested : pandas.DataFrame
        ``ParcelStore.runs(INGEST_DATA, cube)``.
    indexed : pandas.DataFrame
        ``ParcelStore.runs(INDICES, cube)``: their ``finished_at`` is the latest ingest record they saw.

    Returns
    -------
    tuple[pandas.Timestamp, pandas.Timestamp, pandas.Timestamp] or None
        (start, end, as_of): the period, and the ``finished_at`` of the latest ingest record seen (what
        the indices run records as its own); None without any ingest recorded.
    """
    if ingested.empty:
        return None
    new = ingested if indexed.empty else ingested[ingested.finished_at > indexed.finished_at.max()]
    if new.empty:
        new = ingested.tail(1)
    return new.period_start.min(), new.period_end.max(), ingested.finished_at.max()


def period_toi(period: tuple[pd.Timestamp, pd.Timestamp] | None, otherwise: str = "7D") -> dict[str, str]:
    """A recorded run's period as a TOI (what the indices after an ingest cover); else the last ``otherwise``.

    Parameters
    ----------
    period : tuple[pandas.Timestamp, pandas.Timestamp] or None
        The recorded period, or None.
    otherwise : str, optional
        The duration to use without one.

    Returns
    -------
    dict[str, str]
        A TOI flow parameter: ``{"start", "end"}``, or ``{"last": otherwise}``.
    """
    if period is None:
        return {"last": otherwise}
    return {"start": f"{period[0]:%Y-%m-%dT%H:%M:%S}", "end": f"{period[1]:%Y-%m-%dT%H:%M:%S.%f}"}


def describe_toi(toi: TOI) -> str:
    """A TOI's span as a GroupError names it: ``YYYY-mm-dd..YYYY-mm-dd``.

    Parameters
    ----------
    toi : TOI
        The period.

    Returns
    -------
    str
        The first and last day it spans.

    Raises
    ------
    TOIError
        If ``toi`` is not a time pandas reads (``toi_span``).
    """
    start, end = toi_span(toi)
    return f"{start:%Y-%m-%d}..{end:%Y-%m-%d}"
