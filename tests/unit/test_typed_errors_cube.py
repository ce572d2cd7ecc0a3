"""The Cube's own methods refuse bad input with an error of the tree that names the value, and leave the
cube as it was (issue 22.4): a lock file that cannot be opened is the StorageError a run gives; a spec
that is no CubeSpec is a SpecError also when the cube exists; a chunk cell that is not (zone, row,
column) with whole numbers is an ROIError naming the cell. Valid input behaves as before."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest

from stacube import Cube, CubeSpec, StacSource, Variable
from stacube.errors import PermanentError, ROIError, SpecError, StorageError, TOIError
from stacube.store import LOCK_NAME
from stacube.testing.generate import SampleLayout

ZONE = "epsg3413"


def _spec(**overrides) -> CubeSpec:
    args = dict(name="dem", zones=[SampleLayout().extent_geobox()], chunks=(256, 256),
                variables={"dem": Variable("float32", units="m")},
                source=StacSource(api_url="http://127.0.0.1:9/api", collection="sample-dem", assets={"dem": "dem"}))
    args.update(overrides)
    return CubeSpec(**args)


def _cube(tmp_path, **overrides) -> Cube:
    return Cube.create(tmp_path / "cube.icechunk", _spec(**overrides), catalog_dir=tmp_path / "catalog")


# --- 1: the commit lock that cannot be opened --------------------------------------------------------
def _versions(cube: Cube) -> tuple[list[str], list[str]]:
    return list(cube.history().snapshot), sorted(cube.repo.list_tags())


@pytest.mark.parametrize("call", ["tag", "rollback", "expire", "extend_time"])
def test_a_lock_file_that_cannot_be_opened_is_a_storage_error_naming_the_cube(tmp_path, call):
    cube = _cube(tmp_path, time=pd.date_range("2021-06-01", periods=3, freq="D"))
    tip = cube.history().snapshot[0]
    before = _versions(cube)
    (tmp_path / "cube.icechunk" / LOCK_NAME).unlink(missing_ok=True)
    (tmp_path / "cube.icechunk" / LOCK_NAME).mkdir()  # what stands there cannot be opened as a file
    calls = {"tag": lambda: cube.tag("v1"), "rollback": lambda: cube.rollback(tip),
             "expire": lambda: cube.expire("0s", grace="0s"), "extend_time": lambda: cube.extend_time("2021-06-30")}
    with pytest.raises(StorageError) as raised:
        calls[call]()
    assert str(tmp_path / "cube.icechunk") in str(raised.value)
    assert isinstance(raised.value, OSError) and isinstance(raised.value, PermanentError)
    assert _versions(Cube.open(tmp_path / "cube.icechunk")) == before


def test_versions_still_work_where_the_lock_can_be_opened(tmp_path):
    cube = _cube(tmp_path, time=pd.date_range("2021-06-01", periods=3, freq="D"))
    first = cube.history().snapshot[0]
    grown = cube.extend_time("2021-06-05")
    assert grown is not None and len(cube.spec.time) == 5
    assert cube.tag("v1") == grown and cube.repo.list_tags() == {"v1"}
    assert cube.rollback(first) == first and len(Cube.open(cube.url).spec.time) == 3
    assert cube.expire("0s", grace="0s").snapshots_expired == 0  # the tag keeps the rolled-back snapshot
    assert cube.repo.lookup_tag("v1") == grown


def test_a_bad_tag_name_is_named_before_the_lock_is_asked_for(tmp_path):
    cube = _cube(tmp_path)
    (tmp_path / "cube.icechunk" / LOCK_NAME).unlink(missing_ok=True)
    (tmp_path / "cube.icechunk" / LOCK_NAME).mkdir()
    with pytest.raises(SpecError, match="'a/b'"):
        cube.tag("a/b")
    with pytest.raises(TOIError, match="older_than=30"):
        cube.expire(30)


# --- 2: open_or_create with something that is no CubeSpec ---------------------------------------------
@pytest.mark.parametrize("given", [None, {"name": "dem"}, "spec.json"])
def test_open_or_create_refuses_what_is_no_spec_where_the_cube_exists(tmp_path, given):
    cube = _cube(tmp_path)
    before = _versions(cube)
    with pytest.raises(SpecError) as raised:
        Cube.open_or_create(cube.url, given)
    assert f"got {type(given).__name__}" in str(raised.value)
    assert _versions(cube) == before


def test_open_or_create_refuses_what_is_no_spec_where_there_is_no_cube(tmp_path):
    with pytest.raises(SpecError, match="dict"):
        Cube.open_or_create(tmp_path / "new.icechunk", {"name": "dem"})
    assert not (tmp_path / "new.icechunk").exists()


def test_open_or_create_with_a_spec_opens_or_creates_as_before(tmp_path):
    made = Cube.open_or_create(tmp_path / "cube.icechunk", _spec())
    opened = Cube.open_or_create(tmp_path / "cube.icechunk", _spec())
    assert opened.spec.to_json() == made.spec.to_json() and len(opened.history()) == len(made.history())
    with pytest.raises(SpecError, match="different spec"):
        Cube.open_or_create(tmp_path / "cube.icechunk", _spec(name="other"))


# --- 3: plan_cells with cells that are no (zone, row, column) -----------------------------------------
@pytest.mark.parametrize(("cell", "named"), [
    ((ZONE, 0), "('epsg3413', 0)"),  # two values
    ((ZONE, 0, 0, 0), "('epsg3413', 0, 0, 0)"),  # four
    (5, "cell 5 "),  # not a sequence
    ("abc", "'abc'"),  # a string is no cell, even of three characters
    ((ZONE, "x", 0), "('epsg3413', 'x', 0)"),
    ((ZONE, "1", 0), "('epsg3413', '1', 0)"),  # a number as text
    ((ZONE, 1.5, 0), "('epsg3413', 1.5, 0)"),  # not a whole number
    ((ZONE, 0, float("nan")), "('epsg3413', 0, nan)"),
    ((ZONE, None, 0), "('epsg3413', None, 0)"),
    ((ZONE, True, 0), "('epsg3413', True, 0)"),
    ((3413, 0, 0), "(3413, 0, 0)"),  # a zone is named by its name
    (("nowhere", 0, 0), "'nowhere'"),  # no such zone
    ((ZONE, 99, 0), "('epsg3413', 99, 0)"),  # outside the zone's chunks
    ((ZONE, 0, -1), "('epsg3413', 0, -1)"),
])
def test_a_cell_that_is_no_chunk_of_the_cube_is_an_roi_error_naming_it(tmp_path, cell, named):
    cube = _cube(tmp_path)
    with pytest.raises(ROIError) as raised:
        cube.plan_cells([(ZONE, 0, 0), cell])
    assert named in str(raised.value)
    assert isinstance(raised.value, PermanentError) and isinstance(raised.value, ValueError)


@pytest.mark.parametrize("cells", [None, 5])
def test_cells_that_are_no_collection_are_an_roi_error_naming_them(tmp_path, cells):
    with pytest.raises(ROIError, match=rf"^cells {re.escape(repr(cells))}:"):
        _cube(tmp_path).plan_cells(cells)


def test_valid_cells_plan_as_before(tmp_path):
    cube = _cube(tmp_path)
    plan = cube.plan_cells([(ZONE, 0, 1), [ZONE, np.int64(0), np.int32(0)], (ZONE, 0, 1), (ZONE, 1.0, 2.0)])
    assert [(p.zone, p.iy, p.ix) for p in plan.patches] == [(ZONE, 0, 0), (ZONE, 0, 1), (ZONE, 1, 2)]
    assert all(type(p.iy) is int and type(p.ix) is int for p in plan.patches)
    assert [p.id for p in plan.missing] == [p.id for p in plan.patches]
    assert cube.plan_cells([]).patches == []


def test_an_area_reaching_past_its_roi_is_refused_before_anything_is_planned(tmp_path):
    from odc.geo.geom import box

    cube = _cube(tmp_path)
    zone = cube.spec.zones[ZONE]
    roi = zone[0:256, 0:256]
    outside = zone[1024:1280, 1024:1280].extent  # a review's case: 4 patches filled off the ROI, 8 left unfilled
    before = list(cube.history().snapshot)
    with pytest.raises(ROIError, match="reaches past the ROI"):
        cube.load(roi, area=outside)
    assert list(cube.history().snapshot) == before
    x0, y0, x1, y1 = roi.extent.boundingbox
    inside = box(x0 + 100, y0 + 100, x1 - 100, y1 - 100, roi.crs)
    assert cube.plan(inside).patches  # an area inside it is fine (planned alone, no network needed)
    with pytest.warns(UserWarning, match="not in the cube"):
        tile = cube.load(roi, area=inside, offline=True)
    assert tile.attrs["missing_patches"]


@pytest.mark.parametrize("until", [slice("2024", None), "2262-01-01"])
def test_extend_time_to_no_end_or_past_the_axis_limit_is_a_toi_error_and_changes_nothing(tmp_path, until):
    cube = _cube(tmp_path, time=pd.date_range("2024-01-01", periods=3, freq="min"))
    before = list(cube.history().snapshot)
    with pytest.raises(TOIError, match="cannot extend the time axis"):  # before: SpecError, or years of steps built
        cube.extend_time(until)
    assert list(cube.history().snapshot) == before and len(cube.spec.time) == 3


def test_the_repositorys_first_snapshot_is_no_version_to_roll_back_to_or_load(tmp_path):
    from stacube.errors import VersionNotFoundError

    cube = _cube(tmp_path)
    first = list(cube.history().snapshot)[-1]  # "Repository initialized": before the cube's spec was written
    before = list(cube.history().snapshot)
    with pytest.raises(VersionNotFoundError, match="holds no cube"):  # before: rolled back, and bricked
        cube.rollback(first)
    with pytest.raises(VersionNotFoundError, match="holds no cube"):  # before: zarr's GroupNotFoundError
        cube.load(cube.spec.zones[ZONE][0:8, 0:8], at=first)
    assert list(Cube.open(cube.url, catalog_dir=tmp_path / "catalog").history().snapshot) == before


def test_a_tag_written_as_a_snapshot_id_is_refused_as_it_would_hide_that_snapshot(tmp_path):
    cube = _cube(tmp_path)
    first, *_ = reversed(list(cube.history().snapshot))
    with pytest.raises(SpecError, match="written as a snapshot id"):
        cube.tag(first)
    assert not cube.repo.list_tags()
    assert cube.tag("v1") == cube.history().snapshot.iloc[0]  # a name is fine: the tip
