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

import numpy as np
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox
from odc.geo.overlap import ReprojectInfo, compute_reproject_roi
from odc.geo.roi import roi_is_empty
from odc.geo.warp import rio_reproject

from .checked import read_checked
from .errors import SpecError
from .grid import PatchIndex, PixelSlices, ZoneGrid, zone_grids
from .layout import FILLED, chunk_exists
from .small_read import ShardIndexes, read_windows
from .spec import CubeSpec
from .tile import tile_dataset, variable_attrs  # noqa: F401 - variable_attrs: lazy.py's, from here
from .variables import Variable, valid_mask


def zones_met(spec: CubeSpec, dst: GeoBox) -> list[tuple[ZoneGrid, ReprojectInfo]]:
    """The zones that hold pixels of the Tile ``dst``, each with how its pixels map onto it, in the order
    they fill it: zones on the Tile's own grid first, then the others in spec order.

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec.
    dst : GeoBox
        The Tile's grid.

    Returns
    -------
    list[tuple[ZoneGrid, ReprojectInfo]]
        Each zone met, with odc-geo's ``compute_reproject_roi`` of its grid onto ``dst``.
    """
    met = []
    for grid in zone_grids(spec):
        info = compute_reproject_roi(grid.geobox, dst)
        if not (roi_is_empty(info.roi_dst) or roi_is_empty(info.roi_src)):
            met.append((grid, info))
    return sorted(met, key=lambda found: not pastes(found[1]))  # stable: spec order within each kind


def pastes(info: ReprojectInfo) -> bool:
    """Whether the zone's pixels go into the Tile as they are: the same grid up to a whole-pixel shift.
    (odc-geo also calls an integer-factor coarser grid ``paste_ok``: that one is resampled here.)

    Parameters
    ----------
    info : ReprojectInfo
        A zone's ``compute_reproject_roi`` onto the Tile's grid.

    Returns
    -------
    bool
        True where the values are pasted, False where they are warped.
    """
    return info.paste_ok and info.read_shrink == 1


WARP_TOLERANCE = 0.01  # pixels


def reproject_values(values: np.ndarray, src: GeoBox, dst: GeoBox, variable: Variable, name: str = "") -> np.ndarray:
    """``values`` on ``src`` warped onto ``dst`` with the variable's resampling, layer by layer, so that a
    zone off the Tile's grid fills it as an eager and a lazy load alike do (booleans warped as 0/1).

    Parameters
    ----------
    values : numpy.ndarray
        The zone's pixels: (..., y, x) on ``src``.
    src : GeoBox
        Their grid.
    dst : GeoBox
        The grid to warp onto.
    variable : Variable
        Its ``resampling`` and ``nodata`` (read and written as nodata).
    name : str, optional
        The variable's name, for an error.

    Returns
    -------
    numpy.ndarray
        (..., y, x) on ``dst``, of ``values``'s dtype; nodata where ``src`` has no valid pixel. 64-bit
        integers keep their values exactly (``_warp_wide_integers``).

    Raises
    ------
    SpecError
        If 64-bit integers beyond 2**53 would be blended (a resampling other than nearest).
    """
    is_bool = values.dtype.kind == "b"
    work = values.astype("uint8") if is_bool else values
    # nodata as stored: a float32 holds -9999.9 as -9999.900390625, which GDAL must be told, or it blends
    # nodata into the values as data
    nodata = work.dtype.type(int(variable.nodata) if is_bool else variable.nodata)
    out = np.full(work.shape[:-2] + dst.shape.yx, nodata, dtype=work.dtype)
    for index in np.ndindex(work.shape[:-2]):
        if work.dtype.kind in "iu" and work.dtype.itemsize == 8:
            out[index] = _warp_wide_integers(work[index], src, dst, variable, nodata, name)
        else:
            _warp(work[index], out[index], src, dst, variable.resampling, nodata.item())
    return out.astype(bool) if is_bool else out


def _warp(values: np.ndarray, out: np.ndarray, src: GeoBox, dst: GeoBox, resampling: str, nodata: object) -> None:
    """GDAL's warp of one layer into ``out``, with its approximate transformer within 0.01 px (its default,
    1/8 px, let two warps of different extents, an eager Tile and a lazy one's blocks, pick different source
    pixels at 3-7% of a lon/lat grid's pixels; 0.01 px costs nothing measurable here and leaves ~0.2%)."""
    rio_reproject(values, out, src, dst, resampling, src_nodata=nodata, dst_nodata=nodata, tolerance=WARP_TOLERANCE)


EXACT_IN_FLOAT64 = 2**53
"""The largest magnitude up to which every integer is a float64: GDAL warps through float64."""


def _warp_wide_integers(values: np.ndarray, src: GeoBox, dst: GeoBox, variable: Variable, nodata: np.integer,
                        name: str) -> np.ndarray:
    """A 64-bit integer layer warped without GDAL's float64 rounding (2**53 + 1 came back as 2**53, and a
    nodata of 2**64 - 1 as 0). Nearest: GDAL picks each pixel's source position (warping their indices) and
    the values are taken as stored. Other resamplings blend values, which float64 holds exactly only up to
    2**53: beyond it, an error instead of rounded values."""
    if variable.resampling == "nearest":
        index = np.arange(values.size, dtype="int32" if values.size < 2**31 else "float64").reshape(values.shape)
        picks = np.full(dst.shape.yx, -1, dtype=index.dtype)
        rio_reproject(index, picks, src, dst, "nearest", src_nodata=None, dst_nodata=-1, tolerance=WARP_TOLERANCE)
        taken = picks >= 0
        out = np.full(dst.shape.yx, nodata, dtype=values.dtype)
        out[taken] = values.ravel()[picks[taken].astype("int64")]
        return out
    valid = valid_mask(values, variable)
    kept = values[valid]
    if (kept > EXACT_IN_FLOAT64).any() or (values.dtype.kind == "i" and (kept < -EXACT_IN_FLOAT64).any()):
        raise SpecError(f"variable {name!r} holds {values.dtype} values beyond 2**53, which cannot be warped with "
                        f"{variable.resampling!r} resampling without rounding them (GDAL warps through float64): "
                        "give it resampling='nearest', or load it on its zone's own grid")
    blended = np.full(dst.shape.yx, np.nan)
    _warp(np.where(valid, values, np.nan), blended, src, dst, variable.resampling, np.nan)
    out = np.full(dst.shape.yx, nodata, dtype=values.dtype)
    done = ~np.isnan(blended)
    out[done] = np.rint(blended[done]).astype(values.dtype)
    return out


def steps_with_data(root: zarr.Group, variables: Sequence[str], patches: Sequence[PatchIndex]) -> set[int]:
    """The time steps of ``patches`` that a Tile should show: a patch holds pixels of some variable,
    or is not filled yet. A step whose patches all came out empty (no Item fed them: no acquisition
    that day) is dropped.

    Parameters
    ----------
    root : zarr.Group
        The cube's root group, on an Icechunk session's store (only its manifest is asked).
    variables : Sequence[str]
        The variables the Tile shows.
    patches : Sequence[PatchIndex]
        The patches under the ROI (or its ``area``).

    Returns
    -------
    set[int]
        The steps to keep (positions on the time axis).
    """
    session = root.store.session
    keep: set[int] = set()
    for patch in patches:
        if patch.time_index in keep:
            continue
        if not chunk_exists(session, f"/{patch.zone}/{FILLED}", patch.cell) or any(
                chunk_exists(session, f"/{patch.zone}/{name}", patch.cell) for name in variables):
            keep.add(patch.time_index)
    return keep


def holding_data(root: zarr.Group, variables: Sequence[str], patches: Sequence[PatchIndex]) -> set[str]:
    """The ids of ``patches`` whose chunk holds data of some of ``variables``, asked of Icechunk's manifest:
    of patches not recorded as filled, those a recent run wrote (provisional) rather than none.

    Parameters
    ----------
    root : zarr.Group
        The cube's root group, on an Icechunk session's store.
    variables : Sequence[str]
        The variables a Tile shows.
    patches : Sequence[PatchIndex]
        The patches to ask about.

    Returns
    -------
    set[str]
        Their ids where some variable's chunk was written.
    """
    session = root.store.session
    return {p.id for p in patches if any(chunk_exists(session, f"/{p.zone}/{name}", p.cell) for name in variables)}


def _held(root: zarr.Group, grid: ZoneGrid, window: PixelSlices, steps: Sequence[int] | None,
          variables: Sequence[str]) -> PixelSlices | None:
    """The part of ``window`` (zone pixels) under chunks that hold data of some variable at some step,
    asked of Icechunk's manifest: chunks never written (no Item fed them) read as nodata anyway."""
    session = root.store.session
    leads = [[step] for step in steps] if steps is not None else [[]]
    paths = [f"/{grid.name}/{name}" for name in variables]
    rows, cols = [], []
    for iy, ix in grid.chunks_in(window):
        if any(chunk_exists(session, path, [*lead, iy, ix]) for lead in leads for path in paths):
            ys, xs = grid.chunk_slices(iy, ix)
            rows += [ys.start, ys.stop]
            cols += [xs.start, xs.stop]
    if not rows:
        return None
    r0, r1 = max(min(rows), window[0].start), min(max(rows), window[0].stop)
    c0, c1 = max(min(cols), window[1].start), min(max(cols), window[1].stop)
    return (slice(r0, r1), slice(c0, c1)) if r0 < r1 and c0 < c1 else None


def _empty(out: dict[str, np.ndarray], spec: CubeSpec, variables: Sequence[str]) -> PixelSlices | None:
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


def _pasted(info: ReprojectInfo, held: PixelSlices) -> PixelSlices:
    """Where the zone pixels ``held`` (inside ``info.roi_src``) go in the target, for a zone that pastes:
    what a second ``compute_reproject_roi`` on the held window would say, without its cost."""
    return tuple(slice(h.start - s.start + d.start, h.stop - s.start + d.start)
                 for h, s, d in zip(held, info.roi_src, info.roi_dst, strict=True))


def _shift(base: PixelSlices, inner: tuple[slice, ...]) -> PixelSlices:
    return tuple(slice(b.start + i.start, b.start + i.stop) for b, i in zip(base, inner, strict=True))


SMALL_READ = 1 << 20  # pixels: below this, variables are read one after the other
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()


def side_by_side(work: Callable[[str], np.ndarray], variables: Sequence[str], pixels: int) -> list[np.ndarray]:
    """``work`` for each variable: side by side on a pool this process keeps (decoding and GDAL's warp
    release the GIL), or one after the other for a small read, where handing work to threads costs
    more than it saves (a 1 px load spent most of its time starting and joining two threads).

    Parameters
    ----------
    work : Callable[[str], numpy.ndarray]
        Reads (and warps) one variable.
    variables : Sequence[str]
        The variables.
    pixels : int
        The pixels each ``work`` fills, to tell a small read.

    Returns
    -------
    list[numpy.ndarray]
        ``work``'s result per variable, in their order; whatever ``work`` raises is raised as it is.
    """
    global _pool
    if len(variables) < 2 or pixels * len(variables) < SMALL_READ:
        return [work(name) for name in variables]
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=os.cpu_count() or 1, thread_name_prefix="stacube-read")
    return list(_pool.map(work, variables))


def read_small(group: zarr.Group, variables: Sequence[str], selection: tuple,
               indexes: ShardIndexes | None = None) -> list[np.ndarray]:
    """Each variable's ``selection`` of the zone ``group``, all in one trip to Icechunk (``small_read``);
    what that cannot read, or finds damaged, goes through ``read_checked``, which names damaged chunks.

    Parameters
    ----------
    group : zarr.Group
        A zone's group.
    variables : Sequence[str]
        The variables to read.
    selection : tuple
        An orthogonal selection: (steps, rows, columns), or (rows, columns) without time.
    indexes : ShardIndexes or None, optional
        Shard indexes read before, kept with the opened snapshot (``OpenedGroup.shard_indexes``).

    Returns
    -------
    list[numpy.ndarray]
        One array per variable, in their order.

    Raises
    ------
    CubeDamagedError
        If a stored chunk under ``selection`` fails its checksum; names the chunks.
    """
    direct = read_windows([group[name] for name in variables], selection, indexes)
    return [values if values is not None else read_checked(group, name, selection)
            for name, values in zip(variables, direct, strict=True)]


DIRECT_READ = 1 << 26  # pixels of one variable: up to this, a large window is read straight from Icechunk too


def read_large(group: zarr.Group, name: str, selection: tuple, indexes: ShardIndexes | None = None) -> np.ndarray:
    """One variable's large ``selection``: straight from Icechunk (``small_read``) up to ``DIRECT_READ``
    pixels, else, and where that cannot read it or finds it damaged, through ``read_checked``. Through
    zarr a sharded patch is 64 inner chunks, each its own task (what that costs: README, Performance).

    Parameters
    ----------
    group : zarr.Group
        A zone's group.
    name : str
        The variable.
    selection : tuple
        An orthogonal selection: (steps, rows, columns), or (rows, columns) without time.
    indexes : ShardIndexes or None, optional
        Shard indexes read before, kept with the opened snapshot.

    Returns
    -------
    numpy.ndarray
        The selected values.

    Raises
    ------
    CubeDamagedError
        If a stored chunk under ``selection`` fails its checksum; names the chunks.
    """
    if _pixels(selection) <= DIRECT_READ:
        values = read_windows([group[name]], selection, indexes)[0]
        if values is not None:
            return values
    return read_checked(group, name, selection)


def _pixels(selection: tuple) -> int:
    return int(np.prod([len(p) if not isinstance(p, slice) else p.stop - p.start for p in selection]))


def read_tile(
    spec: CubeSpec,
    root: zarr.Group,
    dst: GeoBox,
    steps: Sequence[int] | None,
    variables: Sequence[str],
) -> xr.Dataset:
    """The Tile on the grid ``dst`` (``Region.tile_geobox``) from the zone groups under ``root`` (a session's store).

    Each zone is read only where it can still add something: over the chunks it holds data in, and,
    after the first zone, over the window of pixels the zones before it left empty.

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec, as stored with ``root``'s version.
    root : zarr.Group
        The cube's root group at the version read.
    dst : GeoBox
        The Tile's grid.
    steps : Sequence[int] or None
        Positions on the time axis to read (an empty list: a Tile without steps); None without time.
    variables : Sequence[str]
        The variables to read.

    Returns
    -------
    xarray.Dataset
        The Tile: each variable in its dtype, nodata where no zone holds data.

    Raises
    ------
    CubeDamagedError
        If a stored chunk read fails its checksum; names the chunks, the variable and the snapshot.
    """
    lead = (len(steps),) if steps is not None else ()
    whole = (slice(0, dst.shape.y), slice(0, dst.shape.x))
    out: dict[str, np.ndarray] = {}
    for grid, met in zones_met(spec, dst) if steps is None or steps else []:  # no steps: an empty time axis
        at = _empty(out, spec, variables) if out else whole
        if at is None:
            break  # every pixel of every variable holds data already
        target = dst if at == whole else dst[at]
        info = met if at == whole else compute_reproject_roi(grid.geobox, target)
        held = None if roi_is_empty(info.roi_src) else _held(root, grid, tuple(info.roi_src), steps, variables)
        if held is None:
            continue
        paste = pastes(info)
        if paste:  # whole pixels shifted: the held window lands where the shift puts it
            source, place = held, _shift(at, _pasted(info, held))
            src, part = None, None
        else:
            src_box = grid.geobox[held]
            info = compute_reproject_roi(src_box, target)
            if roi_is_empty(info.roi_dst) or roi_is_empty(info.roi_src):
                continue
            paste = pastes(info)
            source, place = _shift(held, tuple(info.roi_src)), _shift(at, tuple(info.roi_dst))
            src, part = src_box[info.roi_src], target[info.roi_dst]
        group = root[grid.name]
        covers_tile = not out and paste and place == whole
        selection = (list(steps), *source) if steps is not None else source

        if _pixels(selection) * len(variables) < SMALL_READ:  # one trip for all variables, then warps in turn
            read = read_small(group, variables, selection, getattr(root, "shard_indexes", None))
            pieces = {name: values if paste else reproject_values(values, src, part, spec.variables[name], name)
                      for name, values in zip(variables, read, strict=True)}
        else:
            def window(name: str, group=group, selection=selection, src=src, part=part, paste=paste) -> np.ndarray:
                values = read_large(group, name, selection, getattr(root, "shard_indexes", None))
                return values if paste else reproject_values(values, src, part, spec.variables[name], name)

            pieces = dict(zip(variables, side_by_side(window, variables, target.shape.y * target.shape.x),
                              strict=True))
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
