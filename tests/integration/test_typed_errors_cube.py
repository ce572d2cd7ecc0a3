"""Bad input to a Cube gets an error of the tree naming the value, checked before anything is downloaded
or committed, and the cube stays as it was (issue 22.4): a read-only cube refuses tag, rollback,
expire and extend_time with the StorageError a run gives; a COG export of several time steps is a
TOIError (as ``export.write_tile`` gives); a bad ``chunks`` of a lazy load is refused before the
download. Valid input behaves as before."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from typer.testing import CliRunner

from stacube import Cube, CubeSpec, ROIError, SpecError, StacSource, StorageError, TOIError, Variable
from stacube.cli import app
from stacube.many import export_many

from ..conftest import TIME_LAYOUT
from .test_load_many import roi_frame
from .test_permanent_failures import files_under, read_only_view


def series_cube(api_url: str, tmp_path) -> Cube:
    spec = CubeSpec(
        name="series", zones=[TIME_LAYOUT.extent_geobox()], chunks=(256, 256),
        variables={"dem": Variable("float32")}, time=pd.date_range("2021-06-01", periods=7, freq="D"),
        source=StacSource(api_url=api_url, collection="sample-series", assets={"dem": "dem"}),
    )
    return Cube.create(tmp_path / "series.icechunk", spec, catalog_dir=tmp_path / "catalog")


def test_a_read_only_cube_refuses_versions_with_a_storage_error_and_stays_as_it_was(time_servers, tmp_path):
    cube = series_cube(time_servers[1].url, tmp_path)
    cube.load(TIME_LAYOUT.extent_geobox()[0:64, 0:64], "2021-06-03")  # a run: a snapshot to roll back from
    first = cube.history().snapshot.iloc[-2]  # the cube as created (the last is the repository's own first)
    before = files_under(tmp_path / "series.icechunk")
    with read_only_view(tmp_path / "series.icechunk", tmp_path / "read-only") as view:
        seen = Cube.open(view, catalog_dir=tmp_path / "catalog")
        calls = {"tag": lambda: seen.tag("v1"), "rollback": lambda: seen.rollback(first),
                 "expire": lambda: seen.expire("0s", grace="0s"), "extend_time": lambda: seen.extend_time("2021-06-30")}
        for name, call in calls.items():
            with pytest.raises(StorageError) as raised:
                call()
            assert str(view) in str(raised.value) and "Read-only file system" in str(raised.value), name
            assert isinstance(raised.value, OSError), name
        with pytest.raises(SpecError, match="'a/b'"):  # bad input is still named first
            seen.tag("a/b")
    assert files_under(tmp_path / "series.icechunk") == before
    assert cube.tag("v1") == cube.history().snapshot[0]  # where it can be written, as before


def test_a_cog_export_of_several_steps_is_a_toi_error_before_anything_is_downloaded(time_servers, tmp_path):
    cube = series_cube(time_servers[1].url, tmp_path)
    roi_frame(TIME_LAYOUT, [(slice(0, 64), slice(0, 64)), (slice(300, 400), slice(300, 400))]).to_file(
        tmp_path / "rois.geojson")
    history = cube.history()
    toi = slice("2021-06-02", "2021-06-04")
    with pytest.raises(TOIError) as raised:
        export_many(cube, tmp_path / "rois.geojson", tmp_path / "chips", toi, progress=False)
    assert "3 time steps" in str(raised.value) and str(tmp_path / "chips") in str(raised.value)
    result = CliRunner().invoke(app, ["cube", "load-many", cube.url, str(tmp_path / "rois.geojson"), "--out",
                                      str(tmp_path / "chips"), "--time", "2021-06-02/2021-06-04",
                                      "--catalog-dir", str(tmp_path / "catalog")])
    assert result.exit_code == 1 and result.stderr.startswith("error: TOIError: the TOI selects 3 time steps")
    assert cube.history().equals(history) and not (tmp_path / "chips").exists()
    assert not (tmp_path / "catalog").exists()  # nothing synced either

    # one step: written as before, from one run
    summary = export_many(cube, tmp_path / "rois.geojson", tmp_path / "chips", "2021-06-03", progress=False)
    assert summary["written"] == 2 and len(cube.history()) == len(history) + 1
    # several steps into a Zarr store: as before
    summary = export_many(cube, tmp_path / "rois.geojson", tmp_path / "chips.zarr", toi, progress=False)
    assert summary["written"] == 2 and len(cube.history()) == len(history) + 2


@pytest.mark.parametrize(("chunks", "named"), [
    ({"x": 0}, "chunks['x'] = 0"), ({"y": 2.5}, "chunks['y'] = 2.5"), ({"x": True}, "chunks['x'] = True"),
    ({"band": 4}, "['band']"), ({"x": "64"}, "chunks['x'] = '64'"), (64, "chunks=64"),
    ([("x", 64)], "chunks=[('x', 64)]"),
])
def test_a_bad_chunks_is_refused_before_anything_is_downloaded(servers, make_cube, sample_layout, tmp_path, chunks,
                                                               named):
    cube = make_cube(servers[1].url)
    tip = cube.repo.lookup_branch("main")
    roi = sample_layout.extent_geobox()[0:300, 0:300]
    assert cube.plan(roi).missing  # online, with patches to download
    with pytest.raises(ROIError, match=re.escape(named)):
        cube.load(roi, chunks=chunks)
    assert cube.repo.lookup_branch("main") == tip and cube.plan(roi).missing == cube.plan(roi).patches
    assert not (tmp_path / "catalog").exists()  # nothing synced


def test_good_chunks_load_lazily_as_before(servers, make_cube, sample_layout):
    cube = make_cube(servers[1].url)
    roi = sample_layout.extent_geobox()[0:300, 0:300]
    lazy = cube.load(roi, chunks={"x": 128, "y": 100})
    assert lazy.dem.chunks == ((100, 100, 100), (128, 128, 44)) and lazy.attrs["stacube_run"]
    eager = cube.load(roi)
    np.testing.assert_array_equal(lazy.dem.values, eager.dem.values)
    xr.testing.assert_identical(lazy.compute().drop_attrs(deep=False), eager.drop_attrs(deep=False))  # dims, coords
    assert {k: v for k, v in lazy.attrs.items() if k != "stacube_run"} == eager.attrs  # the same snapshot, no run
    assert cube.load(roi, chunks={}).dem.chunks == ((300,), (300,))
