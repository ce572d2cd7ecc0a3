"""Write patches into a cube store, and record which patches are filled.

A patch write never lets nodata overwrite valid data already in the chunk: the new values are
merged over the existing ones only where they are valid. Where two writes both hold valid data for
a pixel, the later one wins; both come from the same Items through the same deterministic mosaic,
so they agree unless the source changed in between.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import zarr

from .checked import read_checked
from .grid import PatchIndex, by_zone, cell_selection, zone_grid
from .layout import FILLED, chunk_exists
from .spec import CubeSpec
from .variables import valid_mask
from .zarr_sync import run_on_zarr_loop


def _chunk_selection(spec: CubeSpec, patch: PatchIndex) -> tuple:
    """The patch's pixels in its zone's arrays: exactly one chunk (IndexError for a chunk outside the zone)."""
    ys, xs = zone_grid(spec, patch.zone).chunk_slices(patch.iy, patch.ix)
    return (patch.time_index, ys, xs) if patch.time_index is not None else (ys, xs)


def _chunk_exists(store: Any, name: str, patch: PatchIndex) -> bool:
    """Whether the patch's chunk of variable ``name`` was ever written (see ``layout.chunk_exists``)."""
    return chunk_exists(store.session, f"/{patch.zone}/{name}", patch.cell)


@dataclass
class PatchWrite:
    """What a patch write left in its chunk: for each variable it wrote, the chunk's values; and the
    variables that had nothing valid here in a chunk that already existed (their values not at hand).
    A variable in neither holds nodata (nothing valid was read, and no chunk was there)."""

    nbytes: int = 0
    """Uncompressed bytes written (0: nothing valid was read)."""
    values: dict[str, np.ndarray] = field(default_factory=dict)
    """Variable -> the chunk's values after the write, for each variable written."""
    unchanged: list[str] = field(default_factory=list)
    """Variables with nothing valid read here whose chunk already existed (values not at hand)."""


def write_patch(store: Any, spec: CubeSpec, patch: PatchIndex, data: dict[str, np.ndarray]) -> PatchWrite:
    """Merge ``data`` into the patch's chunk; ``nbytes`` counts uncompressed bytes written (0: all nodata)."""
    group = zarr.open_group(store, path=patch.zone, mode="r+")
    selection = _chunk_selection(spec, patch)
    done = PatchWrite()
    for name, values in data.items():
        variable = spec.variables[name]
        valid = valid_mask(values, variable)
        if not valid.any():
            if _chunk_exists(store, name, patch):
                done.unchanged.append(name)
            continue
        array = group[name]
        merged = values
        if not valid.all() and _chunk_exists(store, name, patch):
            merged = np.where(valid, values, read_checked(group, name, selection))
        merged = merged.astype(variable.numpy_dtype, copy=False)
        array[selection] = merged
        done.values[name] = merged
        done.nbytes += merged.nbytes
    return done


def mark_filled(store: Any, patches: Sequence[PatchIndex], stamp: int, empty: set[str],
                provisional: Sequence[PatchIndex] = ()) -> None:
    """Record the patches as filled by the run ``stamp`` (negative for patches with no source data), and the
    ``provisional`` ones (written, but recent) as not filled: their record's chunk is deleted, a change of
    this run that settling with concurrent runs weighs (an open record ranks below any filled one), so
    their data never outlives the run whose record a cell keeps."""
    root = zarr.open_group(store, mode="r+")
    for zone, in_zone in by_zone(patches).items():
        values = np.array([-stamp if p.id in empty else stamp for p in in_zone], dtype="int64")
        root[zone][FILLED].set_coordinate_selection(cell_selection(in_zone), values)
    for zone, in_zone in by_zone(provisional).items():
        record = root[zone][FILLED]
        for patch in in_zone:
            run_on_zarr_loop(store.delete(f"{record.path}/{record.metadata.encode_chunk_key(patch.cell)}"))
