"""A stored chunk whose bytes changed on disk is an error naming it, never wrong values."""

from __future__ import annotations

import numpy as np
import pytest
import zarr

from stacube import Cube, CubeDamagedError


def test_a_flipped_byte_in_a_chunk_is_an_error_naming_the_chunk_variable_and_snapshot(servers, make_cube,
                                                                                     sample_layout, tmp_path):
    _, api = servers
    cube = make_cube(api.url)
    roi = sample_layout.extent_geobox()[0:512, 0:512]
    before = cube.load(roi)
    snapshot = cube.history().snapshot.iloc[0]
    root = zarr.open_group(cube.repo.readonly_session(snapshot_id=snapshot).store, mode="r")
    assert any(type(c).__name__ == "Crc32cCodec" for c in root["epsg3413"]["dem"].metadata.codecs)
    chunks = sorted((tmp_path / "cube.icechunk" / "chunks").iterdir(), key=lambda p: p.stat().st_size)
    assert len(chunks) >= 8  # 4 patches x 2 variables at least (small ones may be inlined in the manifest)
    victim = chunks[-1]  # the largest: a dem chunk
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit
    victim.write_bytes(bytes(data))
    reopened = Cube.open(tmp_path / "cube.icechunk", catalog_dir=tmp_path / "catalog")
    with pytest.raises(CubeDamagedError, match=rf"1 stored chunk\(s\) of variable 'dem' in zone 'epsg3413' are "
                                               rf"damaged .* at snapshot {snapshot}: chunk index\(es\) \[\(\d, \d\)\]"):
        reopened.load(roi, offline=True)
    assert reopened.history().snapshot.iloc[0] == snapshot  # nothing written
    lazy = reopened.load(roi, offline=True, chunks={"x": 256, "y": 256})  # lazily: the error when computed
    with pytest.raises(CubeDamagedError, match=rf"variable 'dem' in zone 'epsg3413' are damaged .* {snapshot}"):
        lazy.dem.compute()
    with pytest.raises(CubeDamagedError, match=rf"variable 'dem' in zone 'epsg3413' are damaged .* {snapshot}"):
        reopened.to_xarray().dem[0:512, 0:512].compute()  # the cube as a dataset says so too
    datamask = reopened.load(roi, variables="datamask", offline=True)  # the other variable still reads
    np.testing.assert_array_equal(datamask.datamask.values, before.datamask.values)


def _damage_largest_chunk(folder) -> None:
    victim = max((folder / "chunks").iterdir(), key=lambda p: p.stat().st_size)  # a dem chunk
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0x01
    victim.write_bytes(bytes(data))


def test_a_cold_load_that_meets_a_damaged_chunk_filled_earlier_names_it(servers, make_cube, sample_layout, tmp_path):
    """The cold path reads the cells its run did not write from the cube: checked, as every read is."""
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    cube.load(zone[0:256, 0:512])  # two patches, filled now
    _damage_largest_chunk(tmp_path / "cube.icechunk")
    reopened = Cube.open(tmp_path / "cube.icechunk", catalog_dir=tmp_path / "catalog")
    with pytest.raises(CubeDamagedError, match=r"variable 'dem' in zone 'epsg3413' are damaged"):
        reopened.load(zone[0:512, 0:512])  # two of its four patches were filled earlier


def test_merging_a_patch_into_a_damaged_chunk_names_it(servers, make_cube, sample_layout, tmp_path):
    """A write that must keep a chunk's valid pixels reads them first: a damaged chunk is named, not merged."""
    from stacube.cube import attach_items
    from stacube.write import write_patch

    _, api = servers
    cube = make_cube(api.url)
    roi = sample_layout.extent_geobox()[0:256, 0:256]
    cube.download(roi)
    _damage_largest_chunk(tmp_path / "cube.icechunk")
    reopened = Cube.open(tmp_path / "cube.icechunk", catalog_dir=tmp_path / "catalog")
    patch = attach_items(reopened.spec, reopened.catalog, reopened.plan_cells([("epsg3413", 0, 0)]).patches)[0]
    data = reopened.spec.source.backend(reopened.spec.variables).read(patch)
    data["dem"][..., :10, :] = np.nan  # some nodata: the chunk's stored values must be kept there
    session = reopened.repo.writable_session("main")
    with pytest.raises(CubeDamagedError, match=r"variable 'dem' in zone 'epsg3413' are damaged"):
        write_patch(session.store, reopened.spec, patch, data)


def test_a_large_warm_read_names_a_damaged_chunk_too(servers, make_cube, sample_layout, tmp_path):
    """Windows of over a million pixels are read straight from Icechunk as well (``read.read_large``); a
    checksum that fails there sends the read through zarr, which names the chunk: never wrong values."""
    import stacube.read

    _, api = servers
    cube = make_cube(api.url)
    roi = sample_layout.extent_geobox()
    assert roi.shape.x * roi.shape.y * 2 >= stacube.read.SMALL_READ  # the large-read path
    before = cube.load(roi)
    _damage_largest_chunk(tmp_path / "cube.icechunk")
    reopened = Cube.open(tmp_path / "cube.icechunk", catalog_dir=tmp_path / "catalog")
    with pytest.raises(CubeDamagedError, match=r"variable 'dem' in zone 'epsg3413' are damaged"):
        reopened.load(roi, offline=True)
    datamask = reopened.load(roi, variables="datamask", offline=True)
    np.testing.assert_array_equal(datamask.datamask.values, before.datamask.values)
