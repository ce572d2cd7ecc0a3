"""Tiles bigger than memory: the cube read lazily, as Dask arrays over its chunks.

``Cube.load(..., chunks={...})`` downloads what is missing as an eager load does, then returns this
lazy Tile: the same dims, coordinates, attributes and values as the eager one (zones on the Tile's
grid pasted, the others resampled with odc-geo's Dask reprojection, first valid value wins in the
same zone order), computed chunk by chunk when written out (``tile.odc.write_cog``, ``to_zarr``) or
``.compute()``-d. An eager load whose Tile would not fit in the memory this machine has free is
refused before anything is downloaded.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import icechunk
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox
from odc.geo.overlap import compute_reproject_roi
from odc.geo.roi import roi_is_empty
from odc.geo.xr import xr_coords

from .errors import ROIError
from .layout import FILLED, convention_attrs
from .read import CheckedArray, pastes, read_checked, reproject_values, zones_met
from .spec import CubeSpec, Variable

SPATIAL_NAMES = {"y", "x", "latitude", "longitude"}


def zone_dataset(session: icechunk.Session, spec: CubeSpec, zone: str) -> xr.Dataset:
    """One zone group as a lazy Dataset on the zone's own grid (see ``Cube.to_xarray``)."""
    ds = xr.open_zarr(session.store, group=zone, consolidated=False, chunks={}, mask_and_scale=False,
                      decode_times=True)
    ds = ds.drop_vars([FILLED], errors="ignore").set_coords("spatial_ref")
    for name in spec.variables:
        variable = spec.variables[name]
        ds[name].attrs.pop("coordinates", None)  # xarray keeps coordinates in encoding, not attrs
        ds[name].attrs["nodata"] = variable.nodata  # stored as JSON ("nan"): the value itself, as in a Tile
        if variable.numpy_dtype.kind != "b":
            ds[name].attrs.setdefault("_FillValue", variable.nodata)
        ds[name].encoding.pop("_FillValue", None)
    ds.attrs = {"stacube_cube": spec.name, "stacube_zone": zone, "stacube_snapshot": session.snapshot_id}
    return ds


def available_memory() -> int | None:
    """Bytes of memory this machine can still give (Linux's MemAvailable), or None where unknown."""
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


def check_fits(spec: CubeSpec, dst: GeoBox, steps: Sequence[int] | None, names: Sequence[str]) -> None:
    """Refuse, before any download, an eager Tile larger than the memory free now."""
    pixels = dst.shape.y * dst.shape.x * (len(steps) if steps is not None else 1)
    need = pixels * sum(spec.variables[n].numpy_dtype.itemsize for n in names)
    free = available_memory()
    if free is not None and need > free:
        raise ROIError(
            f"the Tile of this ROI ({dst.shape.y} x {dst.shape.x} px, {len(steps) if steps is not None else 1} "
            f"step(s), {len(names)} variable(s)) would take {need / 2**30:.2f} GiB, more than the "
            f"{free / 2**30:.2f} GiB of memory free; load it lazily with chunks={{'x': 2048, 'y': 2048}} "
            "(or latitude/longitude on a geographic grid) and write it out chunk by chunk")


def _warp_part(group: zarr.Group, name: str, zone: GeoBox, steps: Sequence[int] | None, part: GeoBox,
               variable: Variable) -> np.ndarray:
    """One block of a resampled zone: the zone's pixels under ``part`` read and warped as an eager load does."""
    lead = () if steps is None else (len(steps),)
    info = compute_reproject_roi(zone, part)
    if roi_is_empty(info.roi_src) or roi_is_empty(info.roi_dst):
        return np.full(lead + part.shape.yx, variable.nodata, dtype=variable.numpy_dtype)
    selection = (list(steps), *info.roi_src) if steps is not None else tuple(info.roi_src)
    return reproject_values(read_checked(group, name, selection), zone[info.roi_src], part, variable)


def _warped(group: zarr.Group, name: str, zone: GeoBox, steps: Sequence[int] | None, dst: GeoBox,
            variable: Variable, chunks: Mapping[str, int]) -> Any:
    """A zone resampled onto ``dst`` as a Dask array of blocks the size ``chunks`` asks for, each block
    reading only the zone pixels under it (odc-geo's Dask reprojection picked other source pixels than
    an eager warp at some 6% of a lon/lat grid's pixels here; this one agrees with it)."""
    import dask
    import dask.array as da

    y_dim, x_dim = dst.dimensions
    rows = chunks.get(y_dim, chunks.get("y", dst.shape.y))
    columns = chunks.get(x_dim, chunks.get("x", dst.shape.x))
    lead = () if steps is None else (len(steps),)
    grid = []
    for r0 in range(0, dst.shape.y, rows):
        line = []
        for c0 in range(0, dst.shape.x, columns):
            part = dst[r0 : min(r0 + rows, dst.shape.y), c0 : min(c0 + columns, dst.shape.x)]  # GeoBoxes do not clip
            task = dask.delayed(_warp_part, pure=True)(group, name, zone, steps, part, variable)
            line.append(da.from_delayed(task, lead + part.shape.yx, dtype=variable.numpy_dtype))
        grid.append(line)
    return da.block(grid)


def _valid(values: xr.DataArray, nodata: Any) -> xr.DataArray:
    if isinstance(nodata, float) and np.isnan(nodata):
        return values.notnull()
    return values != nodata


def lazy_tile(spec: CubeSpec, session: icechunk.Session, dst: GeoBox, steps: Sequence[int] | None,
              names: Sequence[str], chunks: Mapping[str, int]) -> xr.Dataset:
    """The Tile of ``dst`` as Dask arrays chunked by ``chunks`` (dims as the Tile names them)."""
    import dask.array as da  # only lazy loads pay for importing Dask
    coords = dict(xr_coords(dst))
    spatial = tuple(dst.dimensions)
    dims = spatial if steps is None else ("time", *spatial)
    lead = () if steps is None else (len(steps),)
    out: dict[str, xr.DataArray] = {}
    for grid, info in zones_met(spec, dst) if steps is None or steps else []:
        group = zarr.open_group(session.store, mode="r")[grid.name]
        for name in names:
            variable = spec.variables[name]
            if pastes(info):
                stored = CheckedArray(group, name)
                source = da.from_array(stored, chunks=stored.chunks, name=f"stacube-{session.snapshot_id}-"
                                       f"{grid.name}-{name}", asarray=True, fancy=False)
                if steps is not None:
                    source = source[list(steps)]
                part = source[(..., *info.roi_src)]
                pad = [(0, 0)] * len(lead) + [(s.start, n - s.stop) for s, n in zip(info.roi_dst, dst.shape.yx,
                                                                                     strict=True)]
                data = da.pad(part, pad, mode="constant", constant_values=variable.nodata)
                piece = xr.DataArray(data, dims=dims)
            else:
                piece = xr.DataArray(_warped(group, name, grid.geobox, steps, dst, variable, chunks), dims=dims)
            if name not in out:
                out[name] = piece
            else:  # a later zone only fills what earlier zones left empty
                out[name] = out[name].where(_valid(out[name], variable.nodata), piece)
    data_vars = {}
    if steps is not None:
        coords["time"] = pd.DatetimeIndex(spec.time[list(steps)])
    for name in names:
        variable = spec.variables[name]
        if name in out:
            values = out[name].data.astype(variable.numpy_dtype)
        else:
            values = da.full(lead + dst.shape.yx, variable.nodata, dtype=variable.numpy_dtype)
        attrs: dict[str, Any] = {"nodata": variable.nodata, "grid_mapping": "spatial_ref"}
        if variable.numpy_dtype.kind != "b":
            attrs["_FillValue"] = variable.nodata
        attrs.update(convention_attrs(variable))
        data_vars[name] = xr.DataArray(values, dims=dims, attrs=attrs)
    tile = xr.Dataset(data_vars, coords=coords)
    aliases = {"y": spatial[0], "x": spatial[1], "latitude": spatial[0], "longitude": spatial[1]}
    wanted = {aliases.get(dim, dim): size for dim, size in chunks.items() if aliases.get(dim, dim) in tile.dims}
    unknown = sorted(set(chunks) - set(tile.dims) - SPATIAL_NAMES)  # y/x or latitude/longitude: either suits
    if unknown:
        raise ROIError(f"chunks names {unknown}, which this Tile does not have; its dims are {list(tile.dims)}")
    return tile.chunk(wanted) if wanted else tile

