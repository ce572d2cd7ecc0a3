"""Plan a run: ROI x TOI -> patches -> minus the filled ones -> each with the catalog Items that feed it."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import pystac
import shapely
import zarr
from odc.geo.geom import Geometry
from shapely.geometry import shape

from .catalog import LocalCatalog, Window, sync_window
from .errors import ROIError
from .grid import PatchIndex, ZoneGrid
from .layout import FILLED
from .spec import CubeSpec
from .timeaxis import step_range


def zone_grids(spec: CubeSpec) -> list[ZoneGrid]:
    return [ZoneGrid(name, geobox, spec.chunks) for name, geobox in spec.zones.items()]


@dataclass
class Plan:
    """The patches under an ROI x TOI, and which of them the cube does not hold yet."""

    patches: list[PatchIndex] = field(default_factory=list)
    missing: list[PatchIndex] = field(default_factory=list)

    @property
    def zones(self) -> list[str]:
        return sorted({p.zone for p in self.patches})


Period = tuple[pd.Timestamp, pd.Timestamp]


def _steps(spec: CubeSpec, steps: Sequence[int] | None) -> list[tuple[int | None, Period | None]]:
    if spec.time is None or steps is None:
        return [(None, None)]
    return [(s, step_range(spec.time, s)) for s in steps]


def iter_patches(spec: CubeSpec, roi: Geometry, steps: Sequence[int] | None) -> Iterator[PatchIndex]:
    """Every patch under ROI x TOI; a generator bounded by the ROI, never the whole grid."""
    for grid in zone_grids(spec):
        chunks = list(grid.chunks_under(roi))
        for step, period in _steps(spec, steps):
            for iy, ix in chunks:
                yield PatchIndex(grid.name, iy, ix, grid.chunk_geobox(iy, ix), step, period)


def plan_patches(spec: CubeSpec, root: zarr.Group, roi: Geometry, steps: Sequence[int] | None) -> Plan:
    """The patches under the ROI x TOI and those not yet filled, read from the cube's own record."""
    plan = Plan(patches=list(iter_patches(spec, roi, steps)))
    if not plan.patches:
        extents = {name: tuple(round(v, 3) for v in g.extent.boundingbox) for name, g in spec.zones.items()}
        raise ROIError(
            f"the ROI (bounds {tuple(round(v, 3) for v in roi.boundingbox)} in {roi.crs}) is outside every zone "
            f"of cube {spec.name!r}: {extents}"
        )
    for zone in plan.zones:
        in_zone = [p for p in plan.patches if p.zone == zone]
        filled = root[zone][FILLED]
        rows = [p.iy for p in in_zone]
        cols = [p.ix for p in in_zone]
        r0, c0 = min(rows), min(cols)
        window: tuple = (slice(r0, max(rows) + 1), slice(c0, max(cols) + 1))
        if spec.time is not None:
            steps_used = sorted({p.time_index for p in in_zone})
            block = filled.get_orthogonal_selection((steps_used, *window))
            step_pos = {s: i for i, s in enumerate(steps_used)}
            flags = [block[step_pos[p.time_index], p.iy - r0, p.ix - c0] for p in in_zone]
        else:
            block = filled[window]
            flags = [block[p.iy - r0, p.ix - c0] for p in in_zone]
        plan.missing.extend(p for p, flag in zip(in_zone, flags, strict=True) if flag == 0)
    return plan


def _footprints(patches: Sequence[PatchIndex]) -> list[shapely.Geometry]:
    return [p.geobox.extent.to_crs("EPSG:4326").geom for p in patches]


def search_window(spec: CubeSpec, patches: Sequence[PatchIndex]) -> Window:
    """One lon/lat bbox and time range around the patches: what the catalog must hold for them."""
    west, south, east, north = shapely.union_all(_footprints(patches)).bounds
    pad = 1e-6
    bbox = (max(west - pad, -180.0), max(south - pad, -90.0), min(east + pad, 180.0), min(north + pad, 90.0))
    periods = [p.time_range for p in patches if p.time_range is not None]
    if not periods:
        return Window(bbox)
    return Window(bbox, min(s for s, _ in periods), max(e for _, e in periods))


def attach_items(
    spec: CubeSpec, catalog: LocalCatalog, patches: Sequence[PatchIndex], sync: bool = True
) -> list[PatchIndex]:
    """Each patch with the Items whose footprint meets it (and whose datetime falls in its step).

    Syncs the window from the source first unless the catalog already covers it.
    """
    if not patches:
        return []
    window = search_window(spec, patches)
    if sync:
        sync_window(catalog, window, allow_local_hrefs=getattr(spec.source, "allow_local_hrefs", False))
    items = catalog.search(bbox=window.bbox, datetime=window.datetime_query(), filter=spec.source.filter)
    if not items:
        return [p.with_items(()) for p in patches]
    tree = shapely.STRtree([shape(item.geometry) for item in items])
    times = np.array([_item_time(item) for item in items], dtype="datetime64[us]")
    out = []
    for patch, footprint in zip(patches, _footprints(patches), strict=True):
        hits = tree.query(footprint, predicate="intersects")
        if patch.time_range is not None:
            start, end = (np.datetime64(t.to_datetime64(), "us") for t in patch.time_range)
            hits = [h for h in hits if start <= times[h] < end]
        chosen = sorted((items[h] for h in hits), key=lambda it: (_item_time(it), it.id))
        out.append(patch.with_items(tuple(chosen)))
    return out


def _item_time(item: pystac.Item) -> np.datetime64:
    when = item.datetime or item.common_metadata.start_datetime
    stamp = pd.Timestamp(when)
    if stamp.tz is not None:
        stamp = stamp.tz_convert("UTC").tz_localize(None)
    return np.datetime64(stamp.to_datetime64(), "us")
