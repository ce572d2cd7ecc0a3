"""Small windows read straight from Icechunk equal zarr's reads, for every layout stacube writes."""

from __future__ import annotations

import icechunk
import numpy as np
import pytest
import zarr
from zarr.codecs import ZstdCodec

from stacube.layout import COMPRESSORS
from stacube.small_read import ShardIndexes, read_windows, stored_layout

SHAPE = (150, 170)  # not a multiple of the shards: edge shards and edge inner chunks


def _repo(tmp_path):
    return icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "repo")))


def _write(session, time_steps: int = 0) -> dict[str, np.ndarray]:
    """Arrays in the layouts stacube writes (sharded, plain, old cubes without a checksum), partly written."""
    root = zarr.open_group(session.store, mode="w", zarr_format=3)
    rng = np.random.default_rng(5)
    lead = (time_steps,) if time_steps else ()
    ones = (1,) if time_steps else ()
    kinds = {
        "sharded": dict(chunks=(*ones, 16, 16), shards=(*ones, 64, 64), dtype="float32", fill_value=np.nan),
        "plain": dict(chunks=(*ones, 32, 32), dtype="int16", fill_value=-9),
        "mask": dict(chunks=(*ones, 16, 16), shards=(*ones, 64, 64), dtype="uint8", fill_value=0),
        "wet": dict(chunks=(*ones, 16, 16), shards=(*ones, 64, 64), dtype="bool", fill_value=False),
        "unchecked": dict(chunks=(*ones, 16, 16), shards=(*ones, 32, 32), dtype="float64", fill_value=0.0,
                          compressors=COMPRESSORS[:1]),
    }
    written = {}
    for name, kind in kinds.items():
        array = root.create_array(name, shape=(*lead, *SHAPE), compressors=kind.pop("compressors", COMPRESSORS),
                                  **kind)
        values = np.full(array.shape, array.fill_value, dtype=array.dtype)
        region = (..., slice(5, 120), slice(0, 100))  # part of the array never written: missing shards/chunks
        if array.dtype == bool:
            values[region] = rng.random(values[region].shape) > 0.5
        else:
            values[region] = rng.integers(0, 100, values[region].shape).astype(array.dtype)
        values[..., 40:56, 0:16] = array.fill_value  # an inner chunk of fill values only: zarr does not store it
        array[...] = values
        written[name] = values
    return written


WINDOWS = [(slice(0, 1), slice(0, 1)), (slice(7, 8), slice(99, 100)), (slice(30, 95), slice(10, 90)),
           (slice(0, 150), slice(0, 170)), (slice(140, 150), slice(160, 170)), (slice(60, 60), slice(0, 5)),
           (slice(40, 56), slice(0, 16)), (slice(120, 150), slice(100, 170))]


def _check(arrays, selection, indexes=None):
    got = read_windows(arrays, selection, indexes)
    for array, values in zip(arrays, got, strict=True):
        want = array.get_orthogonal_selection(selection)
        assert values is not None, array.path
        assert values.dtype == want.dtype and values.shape == want.shape
        np.testing.assert_array_equal(values, want)


def test_windows_equal_zarrs_reads(tmp_path):
    repo = _repo(tmp_path)
    session = repo.writable_session("main")
    written = _write(session)
    session.commit("data")
    root = zarr.open_group(repo.readonly_session("main").store, mode="r")
    arrays = [root[name] for name in written]
    assert all(stored_layout(a) is not None for a in arrays)
    indexes = ShardIndexes()
    for window in WINDOWS:
        _check(arrays, window, indexes)
    _check(arrays, WINDOWS[2], indexes)  # with every index held
    assert len(indexes) > 0
    np.testing.assert_array_equal(read_windows([root["sharded"]], (slice(0, 150), slice(0, 170)))[0],
                                  written["sharded"])


def test_windows_with_a_time_axis_equal_zarrs_reads(tmp_path):
    repo = _repo(tmp_path)
    session = repo.writable_session("main")
    written = _write(session, time_steps=4)
    session.commit("data")
    root = zarr.open_group(repo.readonly_session("main").store, mode="r")
    arrays = [root[name] for name in written]
    for steps in ([0], [1, 3], [3, 0], np.array([2])):
        for rows, cols in WINDOWS[:4]:
            _check(arrays, (steps, rows, cols))


def test_a_layout_or_selection_it_does_not_know_is_left_to_zarr(tmp_path):
    repo = _repo(tmp_path)
    session = repo.writable_session("main")
    root = zarr.open_group(session.store, mode="w", zarr_format=3)
    zstd = root.create_array("zstd", shape=SHAPE, chunks=(32, 32), dtype="float32", compressors=ZstdCodec())
    zstd[...] = 1.0
    plain = root.create_array("plain", shape=SHAPE, chunks=(32, 32), dtype="float32", compressors=COMPRESSORS)
    plain[...] = 2.0
    assert stored_layout(zstd) is None
    got = read_windows([zstd, plain], (slice(0, 3), slice(0, 3)))
    assert got[0] is None and (got[1] == 2.0).all()
    assert read_windows([plain], (slice(0, 9, 2), slice(0, 3))) == [None]  # a step: zarr's
    assert read_windows([plain], (3, slice(0, 3))) == [None]  # an integer drops a dimension: zarr's


def test_a_damaged_chunk_is_left_to_zarr_which_names_it(tmp_path):
    repo = _repo(tmp_path)
    session = repo.writable_session("main")
    written = _write(session)
    session.commit("data")
    chunks = sorted((tmp_path / "repo" / "chunks").iterdir(), key=lambda p: p.stat().st_size)
    victim = chunks[-1]
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0x01
    victim.write_bytes(bytes(data))
    root = zarr.open_group(repo.readonly_session("main").store, mode="r")
    arrays = [root[name] for name in written]
    got = read_windows(arrays, (slice(0, 150), slice(0, 170)))
    damaged = [a.path for a, v in zip(arrays, got, strict=True) if v is None]
    assert len(damaged) == 1
    for array, values in zip(arrays, got, strict=True):
        if values is not None:
            np.testing.assert_array_equal(values, written[array.path])
    with pytest.raises(ValueError, match="checksum"):
        root[damaged[0]][...]


def test_indexes_are_kept_only_for_a_snapshot_and_never_for_a_writable_session(tmp_path):
    repo = _repo(tmp_path)
    session = repo.writable_session("main")
    _write(session)
    first = session.commit("data")
    indexes = ShardIndexes()
    window = (slice(0, 150), slice(0, 170))
    old = zarr.open_group(repo.readonly_session(snapshot_id=first).store, mode="r")["sharded"]
    before = read_windows([old], window, indexes)[0]
    held = len(indexes)
    assert held > 0 and all(key[0] == first for key in indexes._held)

    session = repo.writable_session("main")
    array = zarr.open_group(session.store, mode="r+")["sharded"]
    array[...] = 7.0  # every shard rewritten, at new offsets
    assert (read_windows([array], window, indexes)[0] == 7.0).all()
    assert len(indexes) == held  # nothing kept from a session that can still change
    second = session.commit("more")
    new = zarr.open_group(repo.readonly_session(snapshot_id=second).store, mode="r")["sharded"]
    assert (read_windows([new], window, indexes)[0] == 7.0).all()  # the same cache, the new snapshot's shards
    np.testing.assert_array_equal(read_windows([old], window, indexes)[0], before)  # and the old one's still


def test_the_cache_drops_the_least_recently_used_index():
    indexes = ShardIndexes(limit=2)
    for n in range(3):
        indexes.put(("s", "a", (n,)), None)
    assert len(indexes) == 2 and not indexes.get(("s", "a", (0,)))[0] and indexes.get(("s", "a", (2,)))[0]


def test_an_array_at_the_store_root_reads_too(tmp_path):
    repo = _repo(tmp_path)
    session = repo.writable_session("main")
    array = zarr.create_array(session.store, shape=SHAPE, chunks=(16, 16), shards=(64, 64), dtype="float32",
                              compressors=COMPRESSORS, zarr_format=3)
    array[...] = np.arange(SHAPE[0] * SHAPE[1], dtype="float32").reshape(SHAPE)
    session.commit("root array")
    _check([zarr.open_array(repo.readonly_session("main").store, mode="r")], (slice(3, 90), slice(60, 170)))
