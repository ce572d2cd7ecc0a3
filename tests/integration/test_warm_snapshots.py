"""Warm loads keep what a snapshot holds (opened arrays, shard indexes) and never serve it for another:
a commit or a rollback between two loads of one Cube is seen by the next load."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from stacube import Cube


@pytest.fixture
def sharded(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url, chunks=(512, 512))  # 512 px patches as shards of 256 px inner chunks
    cube.download(sample_layout.extent_geobox()[0:512, 0:512])
    return cube


def _bump(cube: Cube, by: float) -> str:
    """A commit that rewrites the dem of the first patch (its shard, at new offsets) by ``by``."""
    session = cube.repo.writable_session("main")
    dem = zarr.open_group(session.store, mode="r+")["epsg3413"]["dem"]
    dem[0:512, 0:512] = dem[0:512, 0:512] + np.float32(by)
    return session.commit(f"dem + {by}")


def test_a_commit_or_a_rollback_between_two_warm_loads_is_seen(sharded, sample_layout, tmp_path):
    zone = sample_layout.extent_geobox()
    rois = [zone[100:101, 200:201], zone[0:256, 0:256], zone[200:456, 100:356]]
    first = [sharded.load(roi, offline=True) for roi in rois]  # the snapshot's arrays and indexes now held
    start = first[0].attrs["stacube_snapshot"]
    assert all(np.isfinite(tile.dem.values).any() for tile in first)

    bumped = _bump(sharded, 1.0)
    for roi, before in zip(rois, first, strict=True):
        after = sharded.load(roi, offline=True)
        assert after.attrs["stacube_snapshot"] == bumped
        np.testing.assert_array_equal(after.dem.values, before.dem.values + np.float32(1.0))
        np.testing.assert_array_equal(after.datamask.values, before.datamask.values)

    other = Cube.open(tmp_path / "cube.icechunk", catalog_dir=tmp_path / "catalog")  # another writer, say
    twice = _bump(other, 2.0)
    np.testing.assert_array_equal(sharded.load(rois[1], offline=True).dem.values, first[1].dem.values + 3)

    sharded.rollback(start)
    for roi, before in zip(rois, first, strict=True):
        again = sharded.load(roi, offline=True)
        assert again.attrs["stacube_snapshot"] == start
        np.testing.assert_array_equal(again.dem.values, before.dem.values)

    # historical loads between tip loads: each read from its own snapshot
    for _ in range(2):
        np.testing.assert_array_equal(sharded.load(rois[2], at=twice).dem.values, first[2].dem.values + 3)
        np.testing.assert_array_equal(sharded.load(rois[2], offline=True).dem.values, first[2].dem.values)
        np.testing.assert_array_equal(sharded.load(rois[2], at=bumped).dem.values, first[2].dem.values + 1)
