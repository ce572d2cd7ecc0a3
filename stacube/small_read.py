"""Small windows of a snapshot's arrays, every variable in one trip to Icechunk.

Through zarr, a 1 px read of one variable cost ~3 ms of CPU: a hop onto zarr's event loop per
array, a task per chunk, and the shard index fetched again on every read, several times what
Icechunk takes to hand over the bytes. A warm small load is mostly that. For the layouts stacube
writes (``layout.py``: Zarr v3 shards whose index sits at the end, or plain chunks; chunk bytes
encoded ``bytes -> blosc -> crc32c``, each step optional after ``bytes``), this module reads a window
of several arrays itself, as the Zarr v3 specs define the bytes: one hop fetches the shard indexes
it does not hold yet, one more fetches every inner chunk under the window for all arrays at once.

Indexes are kept per snapshot (``ShardIndexes``, keyed by snapshot id): a snapshot never changes,
and a writable session's indexes are never kept. A layout it does not know, a selection other than
slices and lists of indices, or a chunk whose checksum fails gives None for that array: the caller
reads it through zarr (``checked.read_checked``), which names a damaged chunk.
"""

from __future__ import annotations

import asyncio
import itertools
import math
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import google_crc32c
import numpy as np
import zarr
from numcodecs import blosc
from zarr.abc.store import RangeByteRequest, SuffixByteRequest
from zarr.codecs import BloscCodec, BytesCodec, Crc32cCodec, ShardingCodec
from zarr.core.buffer import default_buffer_prototype

from .zarr_sync import run_on_zarr_loop

NO_CHUNK = np.uint64(2**64 - 1)  # the sharding spec's (offset, nbytes) of an inner chunk never written


@dataclass(frozen=True)
class StoredLayout:
    """How one array's chunks are stored, for the layouts this module reads itself."""

    path: str
    """The array's key prefix in the store."""
    metadata: Any
    """Zarr's ArrayV3Metadata (it encodes chunk keys)."""
    dtype: np.dtype
    """As the bytes hold it."""
    fill_value: Any
    """What a missing chunk holds."""
    unit: tuple[int, ...]
    """One stored object: the shard, or the chunk where the array is not sharded."""
    inner: tuple[int, ...]
    """One encoded piece: the inner chunk (the chunk itself where not sharded)."""
    blosc: bool
    """Whether pieces are Blosc-compressed."""
    crc32c: bool
    """Whether each piece ends in a CRC32C checksum."""

    @property
    def per_unit(self) -> tuple[int, ...]:
        return tuple(u // i for u, i in zip(self.unit, self.inner, strict=True))

    @property
    def index_nbytes(self) -> int:
        return 16 * math.prod(self.per_unit) + 4  # (offset, nbytes) as uint64 each, then its crc32c

    def key(self, unit_coords: tuple[int, ...]) -> str:
        key = self.metadata.encode_chunk_key(unit_coords)
        return f"{self.path}/{key}" if self.path else key


def _chunk_codecs(codecs: Sequence[Any]) -> tuple[bool, bool, str | None] | None:
    """(blosc?, crc32c?, endian) of a ``bytes [-> blosc] [-> crc32c]`` chain, or None for anything else."""
    if not codecs or not isinstance(codecs[0], BytesCodec):
        return None
    endian = None if codecs[0].endian is None else str(getattr(codecs[0].endian, "value", codecs[0].endian))
    rest = list(codecs[1:])
    has_blosc = bool(rest) and isinstance(rest[0], BloscCodec)
    rest = rest[1:] if has_blosc else rest
    has_crc = bool(rest) and isinstance(rest[0], Crc32cCodec)
    rest = rest[1:] if has_crc else rest
    if rest or endian not in (None, "little"):
        return None
    return has_blosc, has_crc, endian


def stored_layout(array: zarr.Array) -> StoredLayout | None:
    """The array's layout where this module can read it, else None (zarr reads it)."""
    metadata = array.metadata
    if getattr(metadata, "zarr_format", None) != 3 or type(metadata.chunk_grid).__name__ != "RegularChunkGridMetadata":
        return None
    codecs = list(metadata.codecs)
    unit = tuple(metadata.chunk_grid.chunk_shape)
    inner = unit
    if len(codecs) == 1 and isinstance(codecs[0], ShardingCodec):
        sharding = codecs[0]
        if str(getattr(sharding.index_location, "value", sharding.index_location)) != "end":
            return None
        index = _chunk_codecs(sharding.index_codecs)
        if index is None or index[0] or not index[1] or index[2] != "little":
            return None
        inner, codecs = tuple(sharding.chunk_shape), list(sharding.codecs)
        if any(u % i for u, i in zip(unit, inner, strict=True)):
            return None
    chain = _chunk_codecs(codecs)
    if chain is None:
        return None
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biuf" or (dtype.itemsize > 1 and chain[2] != "little"):
        return None
    return StoredLayout(array.path, metadata, dtype.newbyteorder("<") if dtype.itemsize > 1 else dtype,
                        array.fill_value, unit, inner, chain[0], chain[1])


class ShardIndexes:
    """Shard indexes already read, by (snapshot, array path, shard): a snapshot's shards never change.
    Bounded (least recently used out first): an index is 16 bytes per inner chunk (1 KB for 64)."""

    def __init__(self, limit: int = 8192):
        self._limit = limit
        self._held: OrderedDict[tuple, np.ndarray | None] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> tuple[bool, np.ndarray | None]:
        with self._lock:
            if key not in self._held:
                return False, None
            self._held.move_to_end(key)
            return True, self._held[key]

    def put(self, key: tuple, index: np.ndarray | None) -> None:
        with self._lock:
            self._held[key] = index
            self._held.move_to_end(key)
            while len(self._held) > self._limit:
                self._held.popitem(last=False)

    def __len__(self) -> int:
        return len(self._held)


Axis = list[tuple[int, Any, Any]]  # per chunk of one dimension: (chunk index, where in the output, where in the chunk)


def _axes(selection: tuple, shape: tuple[int, ...], inner: tuple[int, ...]) -> list[Axis] | None:
    """Each dimension's selection split by inner chunk; None for a selection this module does not read."""
    if len(selection) != len(shape):
        return None
    axes = []
    for part, size, chunk in zip(selection, shape, inner, strict=True):
        axis: Axis = []
        if isinstance(part, slice):
            start, stop, step = part.indices(size)
            if step != 1:
                return None
            for c in range(start // chunk, (stop - 1) // chunk + 1) if stop > start else ():
                lo, hi = max(start, c * chunk), min(stop, (c + 1) * chunk)
                axis.append((c, slice(lo - start, hi - start), slice(lo - c * chunk, hi - c * chunk)))
        elif isinstance(part, (list, tuple, np.ndarray)) and np.ndim(part) == 1:
            for j, i in enumerate(int(v) for v in part):
                if not 0 <= i < size:
                    return None
                axis.append((i // chunk, j, i % chunk))
        else:
            return None
        axes.append(axis)
    return axes


def _out_shape(selection: tuple, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(len(range(*p.indices(n))) if isinstance(p, slice) else len(p) for p, n in zip(selection, shape,
                                                                                              strict=True))


def _checked(data: np.ndarray) -> np.ndarray | None:
    """``data`` (uint8) without its trailing crc32c, or None where the checksum fails."""
    if len(data) < 4 or google_crc32c.value(data[:-4]) != int.from_bytes(data[-4:].tobytes(), "little"):
        return None
    return data[:-4]


def _decode(layout: StoredLayout, data: np.ndarray) -> np.ndarray | None:
    """One encoded chunk (uint8) as an array of the inner chunk's shape; None where its checksum fails."""
    view: np.ndarray | None = _checked(data) if layout.crc32c else data
    if view is None:
        return None
    raw = blosc.decompress(view) if layout.blosc else view
    values = np.frombuffer(raw, dtype=layout.dtype)
    if values.size != math.prod(layout.inner):
        return None
    return values.reshape(layout.inner)


def _parse_index(layout: StoredLayout, data: np.ndarray) -> np.ndarray | None:
    """A shard's index as (offset, nbytes) rows in C order of its inner chunks; None where its checksum fails."""
    view = _checked(data) if len(data) == layout.index_nbytes else None
    return None if view is None else view.view("<u8").reshape(-1, 2)


async def _get_all(store: Any, requests: Sequence[tuple[str, Any]]) -> list[Any]:
    """Each request's buffer, None where the key does not exist."""
    prototype = default_buffer_prototype()
    if all(byte_range is not None for _, byte_range in requests):
        try:  # one call into Icechunk for all: ~15% cheaper than a get each
            return list(await store.get_partial_values(prototype, requests))
        except Exception:  # noqa: BLE001 - e.g. a key that does not exist: ask one by one, which says so
            pass
    return list(await asyncio.gather(*(store.get(key, prototype, byte_range) for key, byte_range in requests)))


MAX_GAP = 64 << 10  # bytes: a local Icechunk get costs ~0.3 ms plus ~3 us per KB, so one get across a gap
# this size costs no more than two gets (inner chunks are written in Morton order: 2 x 2 neighbours touch)


def _fetch(store: Any, requests: Sequence[tuple[str, RangeByteRequest | None]]) -> list[np.ndarray | None]:
    """The bytes of each (key, byte range) request as uint8 arrays (None: no such key), in one hop;
    ranges of one object less than ``MAX_GAP`` apart are fetched as one."""
    merged: list[tuple[str, RangeByteRequest | None]] = []
    where: list[tuple[int, int, int]] = [(0, 0, 0)] * len(requests)  # per request: merged get, start, stop in it
    by_key: dict[str, list[int]] = {}
    for number, (key, byte_range) in enumerate(requests):
        if byte_range is None:
            where[number] = (len(merged), 0, -1)
            merged.append((key, None))
        else:
            by_key.setdefault(key, []).append(number)
    for key, numbers in by_key.items():
        numbers.sort(key=lambda n: requests[n][1].start)
        group: list[int] = []
        for number in [*numbers, None]:
            byte_range = None if number is None else requests[number][1]
            if group and (byte_range is None or byte_range.start - requests[group[-1]][1].end > MAX_GAP):
                start = requests[group[0]][1].start
                stop = max(requests[n][1].end for n in group)
                for n in group:
                    where[n] = (len(merged), requests[n][1].start - start, requests[n][1].end - start)
                merged.append((key, RangeByteRequest(start, stop)))
                group = []
            if number is not None:
                group.append(number)
    got = run_on_zarr_loop(_get_all(store, merged))
    out: list[np.ndarray | None] = []
    for get, start, stop in where:
        data = None if got[get] is None else got[get].as_numpy_array()
        out.append(data if data is None or stop < 0 else data[start:stop])
    return out


def _snapshot_of(store: Any) -> str | None:
    """The snapshot a store reads, where its content can never change (a read-only session); else None."""
    session = getattr(store, "session", None)
    if session is None or not getattr(session, "read_only", False):
        return None
    return session.snapshot_id


def read_windows(arrays: Sequence[zarr.Array], selection: tuple, indexes: ShardIndexes | None = None,
                 ) -> list[np.ndarray | None]:
    """``selection`` (slices and lists of indices) of each of ``arrays`` (one store), as zarr's
    ``get_orthogonal_selection`` gives it; None for an array to read through zarr instead."""
    if not arrays:
        return []
    store = arrays[0].store
    snapshot = _snapshot_of(store)
    indexes = indexes if indexes is not None and snapshot is not None else ShardIndexes()
    layouts = [stored_layout(array) for array in arrays]
    plans: list[list | None] = []
    for array, layout in zip(arrays, layouts, strict=True):
        axes = None if layout is None else _axes(selection, tuple(array.shape), layout.inner)
        plans.append(None if axes is None else list(itertools.product(*axes)))

    # the shard indexes not held yet, one hop for all of them
    wanted: dict[tuple, tuple[StoredLayout, tuple[int, ...]]] = {}
    for layout, plan in zip(layouts, plans, strict=True):
        if plan is None or layout.unit == layout.inner:
            continue
        per = layout.per_unit
        for combo in plan:
            unit = tuple(c // p for (c, _, _), p in zip(combo, per, strict=True))
            key = (snapshot, layout.path, unit)
            if key not in wanted and not indexes.get(key)[0]:
                wanted[key] = (layout, unit)
    failed: set[str] = set()
    if wanted:
        got = run_on_zarr_loop(_get_all(store, [(layout.key(unit), SuffixByteRequest(layout.index_nbytes))
                                                for layout, unit in wanted.values()]))
        got = [None if buffer is None else buffer.as_numpy_array() for buffer in got]
        for (key, (layout, _)), buffer in zip(wanted.items(), got, strict=True):
            if buffer is None:
                indexes.put(key, None)  # a shard never written: all fill value
                continue
            index = _parse_index(layout, buffer)
            if index is None:
                failed.add(layout.path)  # zarr reads it and says what is wrong
            else:
                indexes.put(key, index)

    # every inner chunk under the window, one hop for all arrays
    requests: dict[tuple[str, Any], int] = {}
    pieces: list[list[tuple[int | None, tuple, tuple]]] = []  # per array: (request number, out index, in index)
    for layout, plan in zip(layouts, plans, strict=True):
        if plan is None or layout.path in failed:
            pieces.append([])
            continue
        per = layout.per_unit
        mine = []
        for combo in plan:
            chunk = tuple(c for c, _, _ in combo)
            unit = tuple(c // p for c, p in zip(chunk, per, strict=True))
            if layout.unit == layout.inner:
                request: tuple[str, Any] | None = (layout.key(unit), None)
            else:
                index = indexes.get((snapshot, layout.path, unit))[1]
                if index is None:
                    request = None
                else:
                    local = tuple(c % p for c, p in zip(chunk, per, strict=True))
                    offset, nbytes = index[np.ravel_multi_index(local, per)]
                    request = None if offset == NO_CHUNK and nbytes == NO_CHUNK else (
                        layout.key(unit), RangeByteRequest(int(offset), int(offset + nbytes)))
            number = None if request is None else requests.setdefault(request, len(requests))
            mine.append((number, tuple(o for _, o, _ in combo), tuple(i for _, _, i in combo)))
        pieces.append(mine)
    got = _fetch(store, list(requests)) if requests else []

    out: list[np.ndarray | None] = []
    for array, layout, plan, mine in zip(arrays, layouts, plans, pieces, strict=True):
        if plan is None or layout.path in failed:
            out.append(None)
            continue
        values = np.full(_out_shape(selection, tuple(array.shape)), layout.fill_value, dtype=layout.dtype)
        decoded: dict[int, np.ndarray | None] = {}
        for number, at, within in mine:
            if number is None or got[number] is None:
                continue  # never written: the fill value, as zarr reads it
            if number not in decoded:
                decoded[number] = _decode(layout, got[number])
            chunk = decoded[number]
            if chunk is None:
                values = None  # a checksum failed: zarr reads it and names the chunk
                break
            values[at] = chunk[within]
        out.append(None if values is None else values.astype(array.dtype, copy=False))
    return out
