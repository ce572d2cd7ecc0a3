"""Reads of stored chunks that check them: a chunk whose checksum fails is a CubeDamagedError naming it.

Every read of a cube's arrays (Tiles, lazy blocks, the merge of a patch into a chunk that exists)
goes through here, never a bare codec ``ValueError`` or wrong values.
"""

from __future__ import annotations

import itertools

import numpy as np
import zarr

from .errors import CubeDamagedError
from .layout import stored_chunks


def read_checked(group: zarr.Group, name: str, selection: tuple) -> np.ndarray:
    """``group[name]`` at an orthogonal ``selection``; a chunk whose checksum fails is a CubeDamagedError
    naming it, never a bare codec error or wrong values."""
    try:
        return group[name].get_orthogonal_selection(selection)
    except ValueError as err:
        if "checksum" not in str(err):
            raise
        raise damaged(group, name, selection) from err


def damaged(group: zarr.Group, name: str, selection: tuple) -> CubeDamagedError:
    """The error for a read that met a chunk whose checksum fails: each damaged chunk under ``selection``
    found by reading the chunks one by one (only on this path), named with the variable, zone and snapshot."""
    array = group[name]
    axes = []
    for part, size, chunk in zip(selection, array.shape, stored_chunks(array), strict=True):
        if isinstance(part, slice):
            start, stop, _ = part.indices(size)
            axes.append(range(start // chunk, (stop - 1) // chunk + 1))
        else:
            axes.append(sorted({int(i) // chunk for i in part}))
    bad = []
    for index in itertools.product(*axes):
        region = tuple(slice(i * c, min((i + 1) * c, n)) for i, c, n in zip(index, stored_chunks(array), array.shape,
                                                                              strict=True))
        try:
            array[region]
        except ValueError:
            bad.append(index)
    snapshot = getattr(getattr(group.store, "session", None), "snapshot_id", "?")
    return CubeDamagedError(
        f"{len(bad)} stored chunk(s) of variable {name!r} in zone {group.basename!r} are damaged (their bytes no "
        f"longer match the checksum written with them) at snapshot {snapshot}: chunk index(es) {bad[:10]}. Restore "
        "the repository's chunk files from a copy, or roll back to a snapshot written before them")
