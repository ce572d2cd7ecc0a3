"""The Zarr v3 layout of a cube: spec in the root attributes, one group per zone with the same variables.

Each zone group holds the variables (dims ``time, y, x`` or ``y, x``, one chunk per patch), the
``x``/``y``/``time`` coordinates, a ``spatial_ref`` with the CRS (CF grid mapping, as odc-geo and
rioxarray expect), and ``filled``: the record of which patches are filled, kept in the cube so
that rolling back the data rolls back the record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import icechunk
import numpy as np
import pandas as pd
import zarr
from odc.geo.geobox import GeoBox
from zarr.codecs import BloscCodec, Crc32cCodec

from .spec import CubeSpec, Variable, nodata_to_json

SPEC_ATTR = "stacube"
# Byte-shuffled LZ4 in Blosc: rasters shrink to about a quarter here and decode at memory speed,
# which is what makes a warm load fast; zarr's default (Zstd) writes 2-4x slower for a similar size.
# A CRC32C of each stored chunk (Zarr v3's crc32c codec, after compression): a damaged chunk is an error
# on read instead of wrong values (cubes made before it have none).
COMPRESSORS = (BloscCodec(cname="lz4", clevel=5, shuffle="shuffle"), Crc32cCodec())
FILLED = "filled"  # one 8-byte chunk per patch: inlined in Icechunk's manifest, and two runs that fill
# different patches never write the same chunk, so their commits rebase without conflict.
TIME_UNITS = "microseconds since 1970-01-01"
# Each patch is stored as one Zarr v3 shard of 256 px inner chunks (where the patch divides into them):
# the patch stays the unit of download, commit and the filled record (one stored object, one chunk key
# in Icechunk, so concurrent runs conflict exactly as before), while a small ROI decodes only the inner
# chunks under it (a 1 px read of a 2048 px patch: 155 KB instead of 9.6 MB). 256 over 512: small
# reads 1.5-1.8x cheaper for +15-30% CPU on whole-patch reads (measured; README, Performance).
INNER_CHUNK = 256


def encode_times(axis: pd.DatetimeIndex) -> np.ndarray:
    """A time axis as a zone's ``time`` array stores it: the one encoding, at creation and when the axis grows.

    Parameters
    ----------
    axis : pd.DatetimeIndex
        The cube's time axis (naive, UTC).

    Returns
    -------
    np.ndarray
        int64 microseconds since 1970-01-01 (``TIME_UNITS``).
    """
    return axis.values.astype("datetime64[us]").astype("int64")


def chunk_exists(session: icechunk.Session, path: str, cell: Sequence[int]) -> bool:
    """Whether chunk ``cell`` of the array at ``path`` was ever written, asked of Icechunk's manifest
    without opening the array (a year of daily patches is planned without reading a chunk). The one
    test of "does this chunk exist".

    Parameters
    ----------
    session : icechunk.Session
        A session on the snapshot to ask.
    path : str
        The array's path in the repository (``/zone/name``).
    cell : Sequence[int]
        The chunk's coordinates (the shard's, for a sharded array).

    Returns
    -------
    bool
        True if the manifest holds the chunk (stored, inline or virtual).
    """
    return session.chunk_type(path, cell) != icechunk.ChunkType.uninitialized


def inner_chunks(chunks: tuple[int, int]) -> tuple[int, int] | None:
    """The inner chunk shape a patch of ``chunks`` is sharded into, or None to store it as one chunk.

    Parameters
    ----------
    chunks : tuple[int, int]
        The patch's (y, x) size in pixels.

    Returns
    -------
    tuple[int, int] or None
        ``(INNER_CHUNK, INNER_CHUNK)`` where both sides are larger than it and divide by it, else None.
    """
    cy, cx = chunks
    if cy > INNER_CHUNK and cx > INNER_CHUNK and cy % INNER_CHUNK == 0 and cx % INNER_CHUNK == 0:
        return INNER_CHUNK, INNER_CHUNK
    return None


def stored_chunks(array: zarr.Array) -> tuple[int, ...]:
    """The shape of the unit an array stores, one per patch: the shard where it is sharded, else the chunk.

    Parameters
    ----------
    array : zarr.Array
        A cube array.

    Returns
    -------
    tuple[int, ...]
        The shard shape, or the chunk shape of an array that is not sharded.
    """
    return tuple(array.shards or array.chunks)


def _grid_mapping_attrs(geobox: GeoBox) -> dict[str, Any]:
    wkt = geobox.crs.to_wkt()
    return {"crs_wkt": wkt, "spatial_ref": wkt, "GeoTransform": " ".join(str(v) for v in geobox.transform.to_gdal())}


def create_layout(store: Any, spec: CubeSpec) -> zarr.Group:
    """Write the empty cube structure (no chunks) into ``store``: what ``Cube.create`` commits first.

    Parameters
    ----------
    store : Any
        A Zarr store (an Icechunk session's ``store``); what it holds at its root is replaced.
    spec : CubeSpec
        The cube's spec: stored in the root attributes, and one group per zone made from it.

    Returns
    -------
    zarr.Group
        The root group.
    """
    root = zarr.open_group(store, mode="w", zarr_format=3)
    root.attrs[SPEC_ATTR] = spec.to_json()
    cy, cx = spec.chunks
    for zone_name, geobox in spec.zones.items():
        group = root.create_group(zone_name)
        group.attrs["crs"] = str(geobox.crs)
        ny, nx = geobox.shape
        # odc-geo names a geographic grid's axes latitude/longitude; a cube calls every grid's axes y/x
        coords = dict(zip(("y", "x"), (geobox.coords[dim].values for dim in geobox.dimensions), strict=True))
        for axis, size in (("y", ny), ("x", nx)):
            arr = group.create_array(axis, shape=(size,), chunks=(size,), dtype="float64", dimension_names=(axis,))
            arr[:] = coords[axis]
            arr.attrs.update({"units": str(geobox.crs.units[0] if axis == "x" else geobox.crs.units[1]),
                              "standard_name": "projection_x_coordinate" if axis == "x" else "projection_y_coordinate"})
        ref = group.create_array("spatial_ref", shape=(), dtype="int32", fill_value=0)
        ref.attrs.update(_grid_mapping_attrs(geobox))
        ref[...] = geobox.crs.epsg or 0
        spatial_dims: tuple[str, ...] = ("y", "x")
        leading: tuple[int, ...] = ()
        if spec.time is not None:
            nt = len(spec.time)
            time = group.create_array("time", shape=(nt,), chunks=(nt,), dtype="int64", dimension_names=("time",))
            time[:] = encode_times(spec.time)
            time.attrs.update({"units": TIME_UNITS, "calendar": "proleptic_gregorian", "freq": spec.time.freqstr})
            spatial_dims = ("time", "y", "x")
            leading = (nt,)
        inner = inner_chunks((cy, cx))
        ones = tuple(1 for _ in leading)
        for name, var in spec.variables.items():
            arr = group.create_array(
                name,
                shape=(*leading, ny, nx),
                chunks=(*ones, *inner) if inner else (*ones, cy, cx),
                shards=(*ones, cy, cx) if inner else None,
                dtype=var.numpy_dtype,
                fill_value=var.nodata,
                dimension_names=spatial_dims,
                compressors=COMPRESSORS,
            )
            arr.attrs.update({"nodata": nodata_to_json(var.nodata), "grid_mapping": "spatial_ref",
                              "coordinates": " ".join(d for d in spatial_dims if d != "time") + " spatial_ref"})
            arr.attrs.update(convention_attrs(var))
        ncy, ncx = -(-ny // cy), -(-nx // cx)
        group.create_array(
            FILLED,
            shape=(*leading, ncy, ncx),
            chunks=(*(1 for _ in leading), 1, 1),
            dtype="int64",
            fill_value=0,
            compressors=None,
            dimension_names=(*("time" for _ in leading), "chunk_y", "chunk_x"),
        ).attrs["description"] = "0: not filled; >0: microsecond stamp of the run that filled it; <0: filled, no data"
    return root


AS_READ = ("as read: each Item's numbers unconverted (a cube made before stacube declared conventions; "
           "Items of different scale or offset may be mixed)")


def convention_attrs(variable: Variable) -> dict[str, Any]:
    """A variable's units and convention as attributes: CF ``scale_factor``/``add_offset`` where stored
    numbers are not physical values, so ``xr.decode_cf`` gives physical values; ``stacube_convention``
    where the cube never declared one.

    Parameters
    ----------
    variable : Variable
        The cube variable.

    Returns
    -------
    dict[str, Any]
        ``units`` (if any), and ``scale_factor``/``add_offset`` or ``stacube_convention`` (``AS_READ``).
    """
    attrs: dict[str, Any] = {}
    if variable.units:
        attrs["units"] = variable.units
    if variable.convention is None:
        attrs["stacube_convention"] = AS_READ
    elif variable.scaled:
        attrs["scale_factor"] = variable.scale_factor
        attrs["add_offset"] = variable.add_offset
    return attrs
