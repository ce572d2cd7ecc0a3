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
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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


def _reproject(values: np.ndarray, src: GeoBox, dst: GeoBox, variable: Variable) -> np.ndarray:
    is_bool = values.dtype.kind == "b"
    work = values.astype("uint8") if is_bool else values
    nodata = int(variable.nodata) if is_bool else variable.nodata
    out = np.full(work.shape[:-2] + dst.shape.yx, nodata, dtype=work.dtype)
    for index in np.ndindex(work.shape[:-2]):
        rio_reproject(work[index], out[index], src, dst, variable.resampling, src_nodata=nodata, dst_nodata=nodata)
    return out.astype(bool) if is_bool else out


def read_tile(
    spec: CubeSpec,
    root: zarr.Group,
    roi: GeoBox | Geometry,
    geometry: Geometry,
    steps: Sequence[int] | None,
    variables: Sequence[str],
) -> xr.Dataset:
    """The Tile for ``roi`` from the zone groups under ``root`` (a session's store)."""
    dst = output_geobox(spec, roi, geometry)
    lead = (len(steps),) if steps is not None else ()
    out: dict[str, np.ndarray] = {}
    for grid, info in zones_met(spec, dst) if steps is None or steps else []:  # no steps: an empty time axis
        group = root[grid.name]
        src_box = grid.geobox[info.roi_src]
        paste = pastes(info)
        covers_tile = paste and dst[info.roi_dst].shape == dst.shape
        selection = (list(steps), *info.roi_src) if steps is not None else tuple(info.roi_src)

        def window(name: str, group=group, selection=selection, info=info, src_box=src_box, paste=paste) -> np.ndarray:
            values = group[name].get_orthogonal_selection(selection)
            return values if paste else _reproject(values, src_box, dst[info.roi_dst], spec.variables[name])

        # Variables read and warped side by side: decoding and GDAL's warp release the GIL.
        with ThreadPoolExecutor(max_workers=min(len(variables), os.cpu_count() or 1)) as pool:
            pieces = dict(zip(variables, pool.map(window, variables), strict=True))
        for name in variables:
            variable = spec.variables[name]
            piece = pieces.pop(name)
            if name not in out and covers_tile:
                out[name] = piece  # one zone covers the whole Tile on its own grid: no copy at all
                continue
            if name not in out:
                out[name] = np.full(lead + dst.shape.yx, variable.nodata, dtype=variable.numpy_dtype)
                out[name][(..., *info.roi_dst)] = piece
            else:  # a later zone only fills what earlier zones left empty
                target = out[name][(..., *info.roi_dst)]
                np.copyto(target, piece, where=~valid_mask(target, variable))
    for name in variables:
        if name not in out:
            variable = spec.variables[name]
            out[name] = np.full(lead + dst.shape.yx, variable.nodata, dtype=variable.numpy_dtype)
    return tile_dataset(spec, dst, steps, variables, out)


def tile_dataset(spec: CubeSpec, dst: GeoBox, steps: Sequence[int] | None, variables: Sequence[str],
                 values: dict[str, np.ndarray]) -> xr.Dataset:
    """The Tile as a Dataset: ``values`` per variable on ``dst`` (and the time ``steps``), with nodata and units."""
    coords = dict(xr_coords(dst))
    dims: tuple[str, ...] = ("y", "x")
    if steps is not None:
        coords["time"] = pd.DatetimeIndex(spec.time[list(steps)])
        dims = ("time", "y", "x")
    data_vars = {}
    for name in variables:
        variable = spec.variables[name]
        attrs: dict[str, Any] = {"nodata": variable.nodata}
        if variable.numpy_dtype.kind != "b":
            attrs["_FillValue"] = variable.nodata  # what xr.decode_cf masks
        attrs.update(convention_attrs(variable))
        data_vars[name] = xr.DataArray(values[name], dims=dims, attrs=attrs)
    return xr.Dataset(data_vars, coords=coords)
