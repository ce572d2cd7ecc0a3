"""Per-group work: load the cube under one group's parcels, compute their indices, store them.

A group's ROI is the window of the cube zone in the group's UTM CRS that covers its parcels, on
that zone's own grid (read without resampling; a parcel reaching into the next zone gets that
zone's pixels warped in, as any Tile does). Only the patches under the group are downloaded.
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

import pandas as pd
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box, unary_union

from ..cube import Cube
from ..errors import ROIError
from ..timeaxis import toi_intervals
from .indices import IndexSettings, no_acquisition, parcel_statistics
from .store import ParcelStore

log = logging.getLogger(__name__)


def groups_area(store: ParcelStore) -> Geometry:
    """The lon/lat boxes of every watched group, as one geometry: what an ingest downloads."""
    boxes = [box(g.minx, g.miny, g.maxx, g.maxy, "EPSG:4326") for g in store.groups().itertuples()]
    if not boxes:
        raise ValueError("no watched parcels: nothing to ingest")
    return unary_union(boxes)


def group_geobox(cube: Cube, parcels_bounds: tuple[float, float, float, float], utm_epsg: int) -> GeoBox:
    """The window of the cube's zone in ``EPSG:utm_epsg`` (else its first zone) around lon/lat bounds."""
    zones = list(cube.spec.zones.values())
    zone = next((z for z in zones if z.crs.epsg == utm_epsg), zones[0])
    area = box(*parcels_bounds, "EPSG:4326")
    if not zone.extent.intersects(area.to_crs(zone.crs)):
        raise ROIError(f"parcels within {tuple(round(v, 4) for v in parcels_bounds)} (lon/lat) lie outside the "
                       f"zones of cube {cube.spec.name!r}")
    window = zone.overlap_roi(GeoBox.from_bbox(area.to_crs(zone.crs).boundingbox, zone.crs,
                                               resolution=zone.resolution.x))
    return zone[window]


def compute_group(cube: Cube, store: ParcelStore, group_id: str, toi: Any, settings: IndexSettings | None = None,
                  run_id: str | None = None, offline: bool = False) -> pd.DataFrame:
    """NDVI/NDMI of the watched parcels of ``group_id`` for every acquisition in ``toi``, stored and returned.

    A period without any acquisition over the group is stored as one "no acquisition" row per parcel,
    dated at the period's start. ``offline`` reads only what the cube holds (the ingest flow has
    downloaded it, as one commit), never downloading per group.
    """
    settings = settings or IndexSettings()
    run_id = run_id or uuid.uuid4().hex
    parcels = store.parcels(group_id)
    if parcels.empty:
        return pd.DataFrame()
    bounds = tuple(parcels.total_bounds)
    roi = group_geobox(cube, bounds, int(parcels["utm_zone"].iloc[0]))
    tile = cube.load(roi, toi, variables=settings.variables, offline=offline)
    if tile.sizes.get("time", 0) == 0:
        rows = no_acquisition(parcels, toi_intervals(toi)[0][0], run_id)
    else:
        rows = parcel_statistics(tile, parcels, settings, run_id)
    store.write_observations(rows)
    log.info("group %s: %d parcels x %d dates, %d usable (run %s)", group_id, len(parcels),
             tile.sizes.get("time", 0), int(rows["usable"].sum()), run_id)
    return rows
