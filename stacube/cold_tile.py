"""A cold load's Tile, pasted together from the chunks its own run writes, as they are written.

Without this a load would download, encode and commit its patches, then fetch and decode them all
again to build the Tile. Here each written patch is pasted into the Tile as the run hands it over
(``run.Run.landed``, on the load's thread); afterwards only the cells the run did not write are read
from the cube: patches filled earlier or by a concurrent run meanwhile, and patches where a
concurrent run's data won the overlap. The result equals ``read_tile`` of the committed snapshot.

It applies where pasting is exact: the ROI meets one zone and lies on that zone's own pixel grid.
Any other ROI (reprojected, or spanning zones) is read back from the cube with ``read_tile``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox

from .checked import read_checked
from .grid import PatchIndex, PixelSlices, ZoneGrid
from .read import pastes, tile_dataset, zones_met
from .spec import CubeSpec
from .write import PatchWrite

StepChunk = tuple[int | None, int, int]  # (time index or None, chunk row, chunk column)


def _overlap(a: slice, b: slice) -> slice | None:
    start, stop = max(a.start, b.start), min(a.stop, b.stop)
    return slice(start, stop) if start < stop else None


class ColdTile:
    """The Tile of one load, filled from the load's own run and then from the cube.

    Made by ``for_load``, which decides whether pasting is exact; ``out`` holds the Tile's arrays.

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec.
    grid : ZoneGrid
        The one zone the Tile lies on, on its own pixel grid.
    dst : GeoBox
        The Tile's grid.
    src_window : tuple[slice, slice]
        The Tile's pixels in the zone, equal in shape to the Tile.
    steps : Sequence[int] or None
        The load's time steps; None without time.
    variables : Sequence[str]
        The variables loaded.
    """

    def __init__(self, spec: CubeSpec, grid: ZoneGrid, dst: GeoBox, src_window: PixelSlices,
                 steps: Sequence[int] | None, variables: Sequence[str]):
        self.spec, self.grid, self.dst, self.variables = spec, grid, dst, list(variables)
        self.src_window = src_window  # the Tile's pixels in the zone, equal in shape to the Tile
        self.steps = list(steps) if steps is not None else None
        self._position = {step: i for i, step in enumerate(self.steps or [])}
        lead = (len(self.steps),) if self.steps is not None else ()
        # Not filled up front: the cells partition the Tile, and each is either pasted whole or read
        # whole in ``finish``, so every pixel is written once.
        self.out = {name: np.empty(lead + dst.shape.yx, dtype=spec.variables[name].numpy_dtype)
                    for name in self.variables}
        self.pasted: set[StepChunk] = set()

    @classmethod
    def for_load(cls, spec: CubeSpec, dst: GeoBox, steps: Sequence[int] | None,
                 variables: Sequence[str]) -> ColdTile | None:
        """The Tile on the grid ``dst`` (``Region.tile_geobox``) to assemble while its patches download, or
        None where pasting is not exact.

        Parameters
        ----------
        spec : CubeSpec
            The cube's spec.
        dst : GeoBox
            The Tile's grid.
        steps : Sequence[int] or None
            The load's time steps; None without time.
        variables : Sequence[str]
            The variables loaded.

        Returns
        -------
        ColdTile or None
            The Tile to paste into; None where the Tile meets several zones, lies off its zone's grid
            or reaches past it, or no step is selected (read it with ``read_tile`` instead).
        """
        if steps is not None and not steps:
            return None
        met = zones_met(spec, dst)
        if len(met) != 1 or not pastes(met[0][1]) or dst[met[0][1].roi_dst].shape != dst.shape:
            return None
        grid, info = met[0]
        return cls(spec, grid, dst, tuple(info.roi_src), steps, variables)

    def _windows(self, iy: int, ix: int) -> tuple[PixelSlices, PixelSlices, PixelSlices] | None:
        """The chunk's part of the Tile as slices into the chunk, into the Tile and into the zone, or None."""
        chunk = self.grid.chunk_slices(iy, ix)
        parts = [_overlap(c, w) for c, w in zip(chunk, self.src_window, strict=True)]
        if None in parts:
            return None
        in_chunk = tuple(slice(p.start - c.start, p.stop - c.start) for p, c in zip(parts, chunk, strict=True))
        in_tile = tuple(slice(p.start - w.start, p.stop - w.start) for p, w in zip(parts, self.src_window, strict=True))
        return in_chunk, in_tile, tuple(parts)

    def paste(self, patch: PatchIndex, written: PatchWrite) -> None:
        """Take a patch's written values, as the run hands them over (``run.Run.landed``).

        A patch of another zone or step, off the Tile, or whose chunk kept old values of a variable
        (``written.unchanged``) is left for ``finish`` to read from the cube.

        Parameters
        ----------
        patch : PatchIndex
            The patch written.
        written : PatchWrite
            What the write stored: each variable's values on the patch (None or missing: nodata).
        """
        if patch.zone != self.grid.name or (self.steps is not None and patch.time_index not in self._position):
            return
        if any(name in written.unchanged for name in self.variables):
            return  # that chunk's old values are not at hand: read the cell from the cube afterwards
        windows = self._windows(patch.iy, patch.ix)
        if windows is None:
            return
        in_chunk, in_tile, _ = windows
        lead = (self._position[patch.time_index],) if self.steps is not None else ()
        for name in self.variables:
            values = written.values.get(name)
            target = self.out[name][(*lead, *in_tile)]
            if values is None:  # nothing valid, and no chunk: nodata, as the Tile already holds
                target[...] = self.spec.variables[name].nodata
            else:
                target[...] = values[in_chunk]
        self.pasted.add((patch.time_index, patch.iy, patch.ix))

    def finish(self, root: zarr.Group, steps: Sequence[int] | None, stale: Iterable[PatchIndex] = ()) -> xr.Dataset:
        """The Tile at the snapshot ``root``, for the ``steps`` kept (a subset of the load's steps).

        ``stale`` are patches the run wrote but whose committed values came from a concurrent run.

        Parameters
        ----------
        root : zarr.Group
            The cube's root group at the snapshot the Tile is to equal.
        steps : Sequence[int] or None
            The steps the Tile shows, among the load's; None without time.
        stale : Iterable[PatchIndex], optional
            Pasted patches to read from ``root`` after all.

        Returns
        -------
        xarray.Dataset
            The Tile, equal to ``read_tile`` of ``root``.

        Raises
        ------
        CubeDamagedError
            If a stored chunk read for the cells not pasted fails its checksum.
        """
        self.pasted -= {(p.time_index, p.iy, p.ix) for p in stale}
        kept = list(steps) if steps is not None else [None]
        reads = []
        for iy, ix in self.grid.chunks_in(self.src_window):
            missing = [step for step in kept if (step, iy, ix) not in self.pasted]
            if missing:
                reads.append((iy, ix, missing))
        group = root[self.grid.name]

        def read(job: tuple[int, int, list]) -> None:
            iy, ix, missing = job
            _, in_tile, window = self._windows(iy, ix)
            for name in self.variables:
                if self.steps is None:
                    self.out[name][in_tile] = read_checked(group, name, window)
                else:
                    positions = [self._position[s] for s in missing]
                    self.out[name][(positions, *in_tile)] = read_checked(group, name, (missing, *window))

        if reads:
            with ThreadPoolExecutor(max_workers=min(len(reads), os.cpu_count() or 1)) as pool:
                list(pool.map(read, reads))
        out = self.out
        if self.steps is not None and kept != self.steps:
            positions = [self._position[s] for s in kept]
            out = {name: values[positions] for name, values in out.items()}
        return tile_dataset(self.spec, self.dst, steps, self.variables, out)
