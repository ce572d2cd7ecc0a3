"""The write rule: nodata never overwrites valid data, for every dtype, whatever the write order."""

import itertools

import icechunk
import numpy as np
import pytest
import zarr
from odc.geo.geobox import GeoBox

from stacube import CubeSpec, StacSource, Variable
from stacube.grid import PatchIndex, ZoneGrid
from stacube.layout import create_layout
from stacube.variables import valid_mask
from stacube.write import mark_filled, write_patch

ZONE = GeoBox.from_bbox((0, 0, 640, 640), "EPSG:32633", resolution=10)  # 64 x 64 px
VARIABLES = {
    "f": Variable("float32"),
    "i": Variable("int16", nodata=-9999),
    "u": Variable("uint8", nodata=0),
    "b": Variable("bool"),
}


def make_store(tmp_path):
    spec = CubeSpec(name="t", zones=[ZONE], chunks=(32, 32), variables=VARIABLES,
                    source=StacSource(api_url="http://127.0.0.1:1", collection="c", assets={k: k for k in VARIABLES}))
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "cube")))
    session = repo.writable_session("main")
    create_layout(session.store, spec)
    session.commit("layout")
    return spec, repo


def halves(dtype_name, nodata, left_value, right_value):
    """Two writes of one chunk: one valid on the left half only, one on the right half only."""
    dtype = np.dtype(dtype_name)
    left = np.full((32, 32), nodata, dtype=dtype)
    right = np.full((32, 32), nodata, dtype=dtype)
    left[:, :16] = left_value
    right[:, 16:] = right_value
    return left, right


@pytest.mark.parametrize("order", list(itertools.permutations(range(2))))
def test_nodata_never_overwrites_valid_data_in_any_order(tmp_path, order):
    spec, repo = make_store(tmp_path)
    grid = ZoneGrid("epsg32633", ZONE, spec.chunks)
    patch = PatchIndex("epsg32633", 0, 1, grid.chunk_geobox(0, 1))
    writes = [{}, {}]
    for name, value in (("f", 1.5), ("i", -7), ("u", 3), ("b", True)):
        var = VARIABLES[name]
        a, b = halves(var.dtype, var.nodata, value, value)
        writes[0][name], writes[1][name] = a, b
    session = repo.writable_session("main")
    for index in order:  # sequential writes to one store
        done = write_patch(session.store, spec, patch, writes[index])
    session.commit("two writes")
    group = zarr.open_group(repo.readonly_session(branch="main").store, path="epsg32633", mode="r")
    for name, value in (("f", 1.5), ("i", -7), ("u", 3), ("b", True)):
        chunk = group[name][0:32, 32:64]
        np.testing.assert_array_equal(done.values[name], chunk)  # what the write reports is what the chunk holds
        assert chunk.dtype == np.dtype(VARIABLES[name].dtype)
        assert (chunk == value).all(), name
        untouched = group[name][0:32, 0:32]
        assert not valid_mask(untouched, VARIABLES[name]).any()


def test_all_nodata_patch_writes_no_chunk(tmp_path):
    spec, repo = make_store(tmp_path)
    grid = ZoneGrid("epsg32633", ZONE, spec.chunks)
    patch = PatchIndex("epsg32633", 1, 1, grid.chunk_geobox(1, 1))
    session = repo.writable_session("main")
    data = {name: np.full((32, 32), var.nodata, dtype=var.dtype) for name, var in VARIABLES.items()}
    done = write_patch(session.store, spec, patch, data)
    assert (done.nbytes, done.values, done.unchanged) == (0, {}, [])
    assert not session.has_uncommitted_changes


def test_a_variable_without_data_over_an_existing_chunk_is_reported_unchanged(tmp_path):
    spec, repo = make_store(tmp_path)
    grid = ZoneGrid("epsg32633", ZONE, spec.chunks)
    patch = PatchIndex("epsg32633", 1, 0, grid.chunk_geobox(1, 0))
    session = repo.writable_session("main")
    first = {name: np.full((32, 32), 1, dtype=var.dtype) for name, var in VARIABLES.items()}
    assert write_patch(session.store, spec, patch, first).nbytes == sum(v.nbytes for v in first.values())
    second = {name: np.full((32, 32), var.nodata, dtype=var.dtype) for name, var in VARIABLES.items()}
    second["u"][0, 0] = 9
    done = write_patch(session.store, spec, patch, second)
    assert sorted(done.unchanged) == ["b", "f", "i"]
    assert list(done.values) == ["u"]
    assert done.values["u"][0, 0] == 9 and (done.values["u"].ravel()[1:] == 1).all()


def test_filled_record_marks_patches_and_empties(tmp_path):
    spec, repo = make_store(tmp_path)
    grid = ZoneGrid("epsg32633", ZONE, spec.chunks)
    patches = [PatchIndex("epsg32633", iy, ix, grid.chunk_geobox(iy, ix)) for iy, ix in ((0, 0), (1, 1))]
    session = repo.writable_session("main")
    mark_filled(session.store, patches, 1234, empty={patches[1].id})
    filled = zarr.open_array(session.store, path="epsg32633/filled")[...]
    assert filled.tolist() == [[1234, 0], [0, -1234]]
