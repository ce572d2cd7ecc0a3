"""Tiles bigger than memory: the cube read lazily, as Dask arrays over its chunks.

``Cube.load(..., chunks={...})`` downloads what is missing as an eager load does, then returns this
lazy Tile: the same dims, coordinates, attributes and values as the eager one (zones on the Tile's
grid pasted, the others warped block by block as an eager load warps them, first valid value wins in
the same zone order), computed chunk by chunk when written out (``tile.odc.write_cog``, ``to_zarr``) or
``.compute()``-d. An eager load whose Tile would not fit in the memory this machine has free is
refused before anything is downloaded, and so is a lazy load's ``chunks`` that ``block_sizes`` refuses.
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

from .checked import read_checked
from .errors import ROIError
from .layout import FILLED, stored_chunks
from .read import pastes, reproject_values, variable_attrs, zones_met
from .spec import CubeSpec
from .variables import Variable, is_nan

SPATIAL_NAMES = {"y", "x", "latitude", "longitude"}


def zone_dataset(session: icechunk.Session, spec: CubeSpec, zone: str) -> xr.Dataset:
    """One zone group as a lazy Dataset on the zone's own grid (see ``Cube.to_xarray``).

    Parameters
    ----------
    session : icechunk.Session
        A read-only session on the version to read.
    spec : CubeSpec
        The cube's spec, as stored with that version.
    zone : str
        The zone's name (a zone of ``spec``).

    Returns
    -------
    xarray.Dataset
        The zone's variables as Dask arrays read through ``read_checked`` (a damaged chunk raises
        CubeDamagedError when computed), its coordinates, and attrs naming the cube, zone and snapshot.
    """
    # chunks=None: xarray's own lazy arrays, replaced below by Dask arrays that read through
    # read_checked (a damaged chunk is then a CubeDamagedError naming it), one graph per variable
    ds = xr.open_zarr(session.store, group=zone, consolidated=False, chunks=None, mask_and_scale=False,
                      decode_times=True)
    ds = ds.drop_vars([FILLED], errors="ignore").set_coords("spatial_ref")
    group = zarr.open_group(session.store, mode="r")[zone]
    for name in spec.variables:
        variable = spec.variables[name]
        ds[name] = ds[name].copy(data=_checked_dask(group, name, stored_chunks(group[name]), session.snapshot_id, zone))
        ds[name].attrs.pop("coordinates", None)  # xarray keeps coordinates in encoding, not attrs
        ds[name].attrs["nodata"] = variable.nodata  # stored as JSON ("nan"): the value itself, as in a Tile
        if variable.numpy_dtype.kind != "b":
            ds[name].attrs.setdefault("_FillValue", variable.nodata)
        ds[name].encoding.pop("_FillValue", None)
    ds.attrs = {"stacube_cube": spec.name, "stacube_zone": zone, "stacube_snapshot": session.snapshot_id}
    return ds


class _Stored:
    """A stored variable as ``dask.array.from_array`` wants it, every block read through ``read_checked``."""

    def __init__(self, group: zarr.Group, name: str):
        array = group[name]
        self.group, self.name = group, name
        self.shape, self.dtype, self.ndim = array.shape, array.dtype, array.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        return read_checked(self.group, self.name, key if isinstance(key, tuple) else (key,))


def _checked_dask(group: zarr.Group, name: str, chunks: Any, snapshot: str, zone: str) -> Any:
    import dask.array as da

    return da.from_array(_Stored(group, name), chunks=chunks, name=f"stacube-{snapshot}-{zone}-{name}",
                         asarray=True, fancy=False)


def _cgroup_room() -> int | None:
    """Bytes left under this process's cgroup (v2) memory limit, or None where there is none."""
    try:
        limit = open("/sys/fs/cgroup/memory.max").read().strip()
        if limit == "max":
            return None
        return max(0, int(limit) - int(open("/sys/fs/cgroup/memory.current").read().strip()))
    except (OSError, ValueError):
        return None


def available_memory() -> int | None:
    """Bytes of memory this process can still get: Linux's MemAvailable, or less where a container's
    cgroup limit leaves less; None where unknown.

    Returns
    -------
    int or None
        The bytes; without ``/proc/meminfo``, the cgroup's room, else psutil's figure; None where
        neither is at hand.
    """
    room = _cgroup_room()
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    free = int(line.split()[1]) * 1024
                    return free if room is None else min(free, room)
    except OSError:
        pass
    if room is not None:
        return room
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return None


SURELY_FITS = 1 << 20  # bytes: a Tile this small is never refused


def check_fits(spec: CubeSpec, dst: GeoBox, steps: Sequence[int] | None, names: Sequence[str]) -> None:
    """Refuse, before any download, an eager Tile larger than the memory free now.

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec (its variables' dtypes).
    dst : GeoBox
        The Tile's grid.
    steps : Sequence[int] or None
        The time steps selected; None without time.
    names : Sequence[str]
        The variables to load.

    Raises
    ------
    ROIError
        If the Tile would take more bytes than ``available_memory`` (never for 1 MiB or less); the
        message says to load it lazily with ``chunks``.
    """
    pixels = dst.shape.y * dst.shape.x * (len(steps) if steps is not None else 1)
    need = pixels * sum(spec.variables[n].numpy_dtype.itemsize for n in names)
    if need <= SURELY_FITS:
        return  # asking the kernel (three files read) was a twentieth of a warm 1 px load
    free = available_memory()
    if free is not None and need > free:
        raise ROIError(
            f"the Tile of this ROI ({dst.shape.y} x {dst.shape.x} px, {len(steps) if steps is not None else 1} "
            f"step(s), {len(names)} variable(s)) would take {need / 2**30:.2f} GiB, more than the "
            f"{free / 2**30:.2f} GiB of memory free; load it lazily with chunks={{'x': 2048, 'y': 2048}} "
            "(or latitude/longitude on a geographic grid) and write it out chunk by chunk")


def _zone_part(group: zarr.Group, name: str, zone: GeoBox, steps: Sequence[int] | None, part: GeoBox,
               variable: Variable) -> np.ndarray:
    """One block of a zone on the Tile's grid, as an eager load makes it: the zone's pixels under ``part``
    pasted where the grids agree, warped otherwise, nodata where the zone has none."""
    lead = () if steps is None else (len(steps),)
    out = np.full(lead + part.shape.yx, variable.nodata, dtype=variable.numpy_dtype)
    info = compute_reproject_roi(zone, part)
    if roi_is_empty(info.roi_src) or roi_is_empty(info.roi_dst):
        return out
    selection = (list(steps), *info.roi_src) if steps is not None else tuple(info.roi_src)
    values = read_checked(group, name, selection)
    if pastes(info):
        out[(..., *info.roi_dst)] = values
        return out
    return reproject_values(values, zone[info.roi_src], part, variable, name)


def block_sizes(dst: GeoBox, steps: Sequence[int] | None, chunks: Mapping[str, Any]) -> tuple[int, int, int]:
    """Time steps, rows and columns of a lazy Tile's blocks, from ``chunks`` (y/x or latitude/longitude
    for the grid's axes, ``time``); what it leaves out is whole. Sizes must be positive integers.

    Parameters
    ----------
    dst : GeoBox
        The Tile's grid (its dims name the spatial axes).
    steps : Sequence[int] or None
        The time steps selected; None without time.
    chunks : Mapping[str, Any]
        Block sizes by dim name.

    Returns
    -------
    tuple[int, int, int]
        Steps, rows and columns per block.

    Raises
    ------
    ROIError
        If ``chunks`` is no mapping, names a dim other than ``time``, ``y``, ``x``, ``latitude`` or
        ``longitude``, or a size is not a whole number of at least 1.
    """
    y_dim, x_dim = dst.dimensions
    if not isinstance(chunks, Mapping):
        raise ROIError(f"chunks={chunks!r}: give block sizes by dim name, e.g. {{'x': 2048, 'y': 2048}}")
    unknown = sorted(set(chunks) - SPATIAL_NAMES - {"time"})
    if unknown:
        raise ROIError(f"chunks names {unknown}; a Tile's dims are time and y/x (latitude/longitude)")
    for dim, size in chunks.items():
        if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 1:
            raise ROIError(f"chunks[{dim!r}] = {size!r}: give a number of pixels (or steps) of at least 1")
    steps_n = len(steps) if steps is not None else 1
    return (int(chunks.get("time", steps_n)), int(chunks.get(y_dim, chunks.get("y", dst.shape.y))),
            int(chunks.get(x_dim, chunks.get("x", dst.shape.x))))


def _zone_blocks(group: zarr.Group, name: str, zone: GeoBox, steps: Sequence[int] | None, dst: GeoBox,
                 variable: Variable, sizes: tuple[int, int, int]) -> Any:
    """A zone on ``dst`` as a Dask array of blocks of ``sizes``, each block a task that reads only the zone
    pixels (and steps) under it: the graph grows with the Tile, never with the zone. (odc-geo's Dask
    reprojection picked other source pixels than an eager warp at some 6% of a lon/lat grid's pixels
    here; these blocks warp as an eager load does.)"""
    import dask
    import dask.array as da

    per_step, rows, columns = sizes
    step_groups = [None] if steps is None else [list(steps[i : i + per_step]) for i in range(0, len(steps), per_step)]
    stacks = []
    for chosen in step_groups:
        lead = () if chosen is None else (len(chosen),)
        grid = []
        for r0 in range(0, dst.shape.y, rows):
            line = []
            for c0 in range(0, dst.shape.x, columns):  # (a GeoBox does not clip a slice past its edge)
                part = dst[r0 : min(r0 + rows, dst.shape.y), c0 : min(c0 + columns, dst.shape.x)]
                task = dask.delayed(_zone_part, pure=True)(group, name, zone, chosen, part, variable)
                line.append(da.from_delayed(task, lead + part.shape.yx, dtype=variable.numpy_dtype))
            grid.append(line)
        stacks.append(grid)
    return da.block(stacks if steps is not None else stacks[0])


def _valid(values: xr.DataArray, nodata: Any) -> xr.DataArray:
    if is_nan(nodata):
        return values.notnull()
    return values != nodata


def lazy_tile(spec: CubeSpec, session: icechunk.Session, dst: GeoBox, steps: Sequence[int] | None,
              names: Sequence[str], chunks: Mapping[str, int]) -> xr.Dataset:
    """The Tile of ``dst`` as Dask arrays chunked by ``chunks`` (dims as the Tile names them).

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec, as stored with ``session``'s version.
    session : icechunk.Session
        A read-only session on the version to read.
    dst : GeoBox
        The Tile's grid.
    steps : Sequence[int] or None
        Positions on the time axis; None without time.
    names : Sequence[str]
        The variables.
    chunks : Mapping[str, int]
        Block sizes by dim name (``block_sizes``).

    Returns
    -------
    xarray.Dataset
        The Tile, lazy: the values an eager load gives, computed block by block (a damaged chunk
        raises CubeDamagedError then).

    Raises
    ------
    ROIError
        If ``chunks`` is refused (``block_sizes``).
    """
    import dask.array as da  # only lazy loads pay for importing Dask
    coords = dict(xr_coords(dst))
    spatial = tuple(dst.dimensions)
    dims = spatial if steps is None else ("time", *spatial)
    lead = () if steps is None else (len(steps),)
    sizes = block_sizes(dst, steps, chunks)
    out: dict[str, xr.DataArray] = {}
    for grid, _ in zones_met(spec, dst) if steps is None or steps else []:
        group = zarr.open_group(session.store, mode="r")[grid.name]
        for name in names:
            variable = spec.variables[name]
            piece = xr.DataArray(_zone_blocks(group, name, grid.geobox, steps, dst, variable, sizes), dims=dims)
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
            values = da.full(lead + dst.shape.yx, variable.nodata, dtype=variable.numpy_dtype,
                             chunks=((sizes[0],) if steps is not None else ()) + sizes[1:])
        data_vars[name] = xr.DataArray(values, dims=dims, attrs=variable_attrs(variable))
    tile = xr.Dataset(data_vars, coords=coords)
    per_step, rows, columns = sizes
    return tile.chunk({**({"time": per_step} if steps is not None else {}), spatial[0]: rows, spatial[1]: columns})
