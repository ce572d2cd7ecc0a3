"""Read a Tile: the ROI's window of each zone it touches, pasted or reprojected onto the ROI GeoBox.

Where the ROI GeoBox is pixel-aligned with a zone (same CRS and resolution, whole-pixel offset),
chunks are pasted without resampling. Otherwise each variable is reprojected with its own
resampling method.

Zones overlap (UTM zones reach past their meridians, as their source's tiles do). A Tile takes valid
data from any zone that holds it, in this order: first the zones on the Tile's own pixel grid (their
values as stored), then the others in spec order (west to east for ``utm_zones``), each filling only
what the zones before it left without data.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import icechunk
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from odc.geo.overlap import ReprojectInfo, compute_reproject_roi
from odc.geo.roi import roi_is_empty
from odc.geo.warp import rio_reproject
from odc.geo.xr import xr_coords

from .checked import read_checked
from .grid import ZoneGrid
from .layout import convention_attrs
from .plan import zone_grids
from .spec import CubeSpec, Variable
from .write import valid_mask


def output_geobox(spec: CubeSpec, roi: GeoBox | Geometry, geometry: Geometry) -> GeoBox:
    """The Tile's grid: the ROI GeoBox itself, or for a Geometry the native window of the first zone it meets."""
    if isinstance(roi, GeoBox):
        return roi
    for grid in zone_grids(spec):
        window = grid.pixel_window(geometry)
        if window is not None:
            return grid.geobox[window]
    raise AssertionError("planning guarantees the ROI meets a zone")


def zones_met(spec: CubeSpec, dst: GeoBox) -> list[tuple[ZoneGrid, ReprojectInfo]]:
    """The zones that hold pixels of the Tile ``dst``, each with how its pixels map onto it, in the order
    they fill it: zones on the Tile's own grid first, then the others in spec order."""
    met = []
    for grid in zone_grids(spec):
        info = compute_reproject_roi(grid.geobox, dst)
        if not (roi_is_empty(info.roi_dst) or roi_is_empty(info.roi_src)):
            met.append((grid, info))
    return sorted(met, key=lambda found: not pastes(found[1]))  # stable: spec order within each kind


def pastes(info: ReprojectInfo) -> bool:
    """Whether the zone's pixels go into the Tile as they are: the same grid up to a whole-pixel shift.
    (odc-geo also calls an integer-factor coarser grid ``paste_ok``: that one is resampled here.)"""
    return info.paste_ok and info.read_shrink == 1


WARP_TOLERANCE = 0.01  # pixels


def reproject_values(values: np.ndarray, src: GeoBox, dst: GeoBox, variable: Variable) -> np.ndarray:
    is_bool = values.dtype.kind == "b"
    work = values.astype("uint8") if is_bool else values
    nodata = int(variable.nodata) if is_bool else variable.nodata
    out = np.full(work.shape[:-2] + dst.shape.yx, nodata, dtype=work.dtype)
    for index in np.ndindex(work.shape[:-2]):
        # GDAL's approximate transformer within 0.01 px (its default, 1/8 px, let two warps of different
        # extents, an eager Tile and a lazy one's blocks, pick different source pixels at 3-7% of a lon/lat
        # grid's pixels; 0.01 px costs nothing measurable here and leaves ~0.2%)
        rio_reproject(work[index], out[index], src, dst, variable.resampling, src_nodata=nodata, dst_nodata=nodata,
                      tolerance=WARP_TOLERANCE)
    return out.astype(bool) if is_bool else out


Window = tuple[slice, slice]  # rows, columns


def _held(root: zarr.Group, grid: ZoneGrid, window: Window, steps: Sequence[int] | None,
          variables: Sequence[str]) -> Window | None:
    """The part of ``window`` (zone pixels) under chunks that hold data of some variable at some step,
    asked of Icechunk's manifest: chunks never written (no Item fed them) read as nodata anyway."""
    session = root.store.session
    uninitialized = icechunk.ChunkType.uninitialized
    leads = [[step] for step in steps] if steps is not None else [[]]
    paths = [f"/{grid.name}/{name}" for name in variables]
    rows, cols = [], []
    for iy, ix in grid.chunks_in(window):
        if any(session.chunk_type(path, [*lead, iy, ix]) != uninitialized for lead in leads for path in paths):
            ys, xs = grid.chunk_slices(iy, ix)
            rows += [ys.start, ys.stop]
            cols += [xs.start, xs.stop]
    if not rows:
        return None
    r0, r1 = max(min(rows), window[0].start), min(max(rows), window[0].stop)
    c0, c1 = max(min(cols), window[1].start), min(max(cols), window[1].stop)
    return (slice(r0, r1), slice(c0, c1)) if r0 < r1 and c0 < c1 else None


def _empty(out: dict[str, np.ndarray], spec: CubeSpec, variables: Sequence[str]) -> Window | None:
    """The bounding window of the Tile's pixels that some variable still holds no data for (any step)."""
    empty = None
    for name in variables:
        invalid = ~valid_mask(out[name], spec.variables[name])
        invalid = invalid.reshape(-1, *invalid.shape[-2:]).any(axis=0)
        empty = invalid if empty is None else empty | invalid
    if empty is None or not empty.any():
        return None
    rows, cols = np.flatnonzero(empty.any(axis=1)), np.flatnonzero(empty.any(axis=0))
    return slice(int(rows[0]), int(rows[-1]) + 1), slice(int(cols[0]), int(cols[-1]) + 1)


def _shift(base: Window, inner: tuple[slice, ...]) -> Window:
    return tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(base, inner, strict=True))


SMALL_READ = 1 << 20  # pixels: below this, variables are read one after the other
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def side_by_side(work: Callable[[str], np.ndarray], variables: Sequence[str], pixels: int) -> list[np.ndarray]:
    """``work`` for each variable: side by side on a pool this process keeps (decoding and GDAL's warp
    release the GIL), or one after the other for a small read, where handing work to threads costs
    more than it saves (a 1 px load spent most of its time starting and joining two threads)."""
    global _pool
    if len(variables) < 2 or pixels * len(variables) < SMALL_READ:
        return [work(name) for name in variables]
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="stacube-read")
    return list(_pool.map(work, variables))


def read_tile(
    spec: CubeSpec,
    root: zarr.Group,
    roi: GeoBox | Geometry,
    geometry: Geometry,
    steps: Sequence[int] | None,
    variables: Sequence[str],
) -> xr.Dataset:
    """The Tile for ``roi`` from the zone groups under ``root`` (a session's store).

    Each zone is read only where it can still add something: over the chunks it holds data in, and,
    after the first zone, over the window of pixels the zones before it left empty."""
    dst = output_geobox(spec, roi, geometry)
    lead = (len(steps),) if steps is not None else ()
    whole = (slice(0, dst.shape.y), slice(0, dst.shape.x))
    out: dict[str, np.ndarray] = {}
    for grid, _ in zones_met(spec, dst) if steps is None or steps else []:  # no steps: an empty time axis
        at = _empty(out, spec, variables) if out else whole
        if at is None:
            break  # every pixel of every variable holds data already
        target = dst[at]
        info = compute_reproject_roi(grid.geobox, target)
        held = None if roi_is_empty(info.roi_src) else _held(root, grid, tuple(info.roi_src), steps, variables)
        if held is None:
            continue
        src_box = grid.geobox[held]
        info = compute_reproject_roi(src_box, target)
        if roi_is_empty(info.roi_dst) or roi_is_empty(info.roi_src):
            continue
        group = root[grid.name]
        paste = pastes(info)
        place = _shift(at, tuple(info.roi_dst))
        covers_tile = not out and paste and place == whole
        source = _shift(held, tuple(info.roi_src))
        selection = (list(steps), *source) if steps is not None else source

        def window(name: str, group=group, selection=selection, src=src_box[info.roi_src],
                   part=target[info.roi_dst], paste=paste) -> np.ndarray:
            values = read_checked(group, name, selection)
            return values if paste else reproject_values(values, src, part, spec.variables[name])

        pieces = dict(zip(variables, side_by_side(window, variables, target.shape.y * target.shape.x), strict=True))
        first = not out
        for name in variables:
            variable = spec.variables[name]
            piece = pieces.pop(name)
            if first and covers_tile:
                out[name] = piece  # one zone covers the whole Tile on its own grid: no copy at all
                continue
            if first:
                out[name] = np.full(lead + dst.shape.yx, variable.nodata, dtype=variable.numpy_dtype)
                out[name][(..., *place)] = piece
            else:  # a later zone only fills what earlier zones left empty
                target_values = out[name][(..., *place)]
                np.copyto(target_values, piece, where=~valid_mask(target_values, variable))
    for name in variables:
        if name not in out:
            variable = spec.variables[name]
            out[name] = np.full(lead + dst.shape.yx, variable.nodata, dtype=variable.numpy_dtype)
    return tile_dataset(spec, dst, steps, variables, out)


def variable_attrs(variable: Variable) -> dict[str, Any]:
    """A Tile variable's attributes, eager or lazy: nodata, the CF ``grid_mapping`` (so GDAL finds the
    CRS in a .nc), ``_FillValue`` (what ``xr.decode_cf`` masks) and the variable's convention."""
    attrs: dict[str, Any] = {"nodata": variable.nodata, "grid_mapping": "spatial_ref"}
    if variable.numpy_dtype.kind != "b":
        attrs["_FillValue"] = variable.nodata
    attrs.update(convention_attrs(variable))
    return attrs


def tile_dataset(spec: CubeSpec, dst: GeoBox, steps: Sequence[int] | None, variables: Sequence[str],
                 values: dict[str, np.ndarray]) -> xr.Dataset:
    """The Tile as a Dataset: ``values`` per variable on ``dst`` (and the time ``steps``), with nodata and units."""
    coords = dict(xr_coords(dst))  # odc-geo's: y/x for a projected CRS, latitude/longitude for a geographic one
    dims: tuple[str, ...] = tuple(dst.dimensions)
    if steps is not None:
        coords["time"] = pd.DatetimeIndex(spec.time[list(steps)])
        dims = ("time", *dims)
    data_vars = {}
    for name in variables:
        variable = spec.variables[name]
        data_vars[name] = xr.DataArray(values[name], dims=dims, attrs=variable_attrs(variable))
    return xr.Dataset(data_vars, coords=coords)
