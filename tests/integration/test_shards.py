"""Patches stored as shards of 256 px inner chunks: the same values, one object per patch, small reads.

A patch larger than 256 px (a multiple of it) is one Zarr v3 shard: still one chunk key in
Icechunk (the unit of download, commit, conflict and the filled record), but a small ROI decodes
only the inner chunks under it.
"""

from __future__ import annotations

import re

import icechunk
import numpy as np
import pytest
import xarray as xr
import zarr

from stacube import Cube, CubeDamagedError
from stacube.layout import inner_chunks

from .test_load import items_of, odc_reference


def _rchar() -> int:
    with open("/proc/self/io") as io:
        return next(int(line.split()[1]) for line in io if line.startswith("rchar:"))


@pytest.fixture
def sharded(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url, chunks=(512, 512))
    cube.download(sample_layout.extent_geobox()[0:1024, 0:1024])
    return cube


def test_the_layout_shards_patches_that_divide_into_inner_chunks():
    assert inner_chunks((2048, 2048)) == (256, 256)
    assert inner_chunks((512, 1024)) == (256, 256)
    assert inner_chunks((256, 256)) is None  # a patch of one inner chunk: stored plainly
    assert inner_chunks((300, 300)) is None  # does not divide
    assert inner_chunks((512, 300)) is None


def test_a_sharded_cube_holds_odc_stacs_values_with_one_object_per_patch(servers, sharded, sample_layout, tmp_path):
    _, api = servers
    array = zarr.open_group(sharded.repo.readonly_session("main").store, mode="r")["epsg3413"]["dem"]
    assert array.shards == (512, 512) and array.chunks == (256, 256)
    session = sharded.repo.readonly_session("main")
    assert session.chunk_type("/epsg3413/dem", [0, 0]) != icechunk.ChunkType.uninitialized  # one key per patch
    stored = [p for p in (tmp_path / "cube.icechunk" / "chunks").iterdir()]
    assert len(stored) <= 2 * 4 + 4  # 4 patches x 2 variables (plus small ones Icechunk may keep apart)
    items = items_of(api.url)
    for window in [(slice(0, 1024), slice(0, 1024)), (slice(3, 11), slice(700, 708)), (slice(250, 262), slice(0, 1))]:
        roi = sample_layout.extent_geobox()[window]
        tile = sharded.load(roi, offline=True)
        dem, datamask = odc_reference(items, roi)
        np.testing.assert_array_equal(tile.dem.values, dem[0])
        np.testing.assert_array_equal(tile.datamask.values, datamask[0])
        assert tile.dem.dims == ("y", "x") and tile.dem.dtype == np.float32
    lazy = sharded.load(sample_layout.extent_geobox()[0:1024, 0:1024], offline=True, chunks={"x": 512, "y": 512})
    xr.testing.assert_identical(lazy.compute(), sharded.load(sample_layout.extent_geobox()[0:1024, 0:1024],
                                                             offline=True))
    assert sharded.to_xarray().dem.data.chunksize == (512, 512)  # Dask chunks are patches, not inner chunks


def test_a_small_roi_reads_a_fraction_of_its_patch(sharded, sample_layout, tmp_path):
    zone = sample_layout.extent_geobox()
    sharded.load(zone[600:608, 600:608], offline=True)  # warm: metadata and the manifest read once
    patch_bytes = max(p.stat().st_size for p in (tmp_path / "cube.icechunk" / "chunks").iterdir())
    before = _rchar()
    sharded.load(zone[100:108, 100:108], offline=True)
    read = _rchar() - before
    assert read < patch_bytes / 2, (read, patch_bytes)  # about one inner chunk of each variable, not the patch


def test_a_flipped_bit_in_a_shard_is_an_error_naming_the_patch(sharded, sample_layout, tmp_path):
    victim = max((tmp_path / "cube.icechunk" / "chunks").iterdir(), key=lambda p: p.stat().st_size)
    data = bytearray(victim.read_bytes())
    data[len(data) // 3] ^= 0x01
    victim.write_bytes(bytes(data))
    reopened = Cube.open(tmp_path / "cube.icechunk", catalog_dir=tmp_path / "catalog")
    with pytest.raises(CubeDamagedError, match=r"variable 'dem' .* chunk index\(es\) \[\(\d, \d\)\]") as raised:
        reopened.load(sample_layout.extent_geobox()[0:1024, 0:1024], offline=True)
    named = re.search(r"chunk index\(es\) \[\((\d+), (\d+)\)\]", str(raised.value))
    assert all(0 <= int(i) < 2 for i in named.groups())  # a patch (512 px shard) index, not an inner chunk's
