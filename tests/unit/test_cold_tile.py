"""A load's Tile pasted from its own run's writes equals the Tile read back from the committed cube."""

import icechunk
import numpy as np
import pandas as pd
import pytest
import xarray as xr
import zarr
from affine import Affine
from odc.geo.geobox import GeoBox

from stacube import CubeSpec, StacSource, Variable
from stacube.cold_tile import ColdTile
from stacube.grid import PatchIndex, ZoneGrid
from stacube.layout import create_layout
from stacube.read import read_tile
from stacube.write import write_patch

ZONE = GeoBox.from_bbox((0, 0, 640, 640), "EPSG:32633", resolution=10)  # 64 x 64 px, chunks of 32
EAST = GeoBox.from_bbox((600, 0, 1240, 640), "EPSG:32633", resolution=10)  # a second zone, overlapping
VARIABLES = {"f": Variable("float32"), "u": Variable("uint8", nodata=0)}
ROI = ZONE[5:60, 3:50]
RNG = np.random.default_rng(7)


def make_spec(time=None, zones=(ZONE,)):
    return CubeSpec(name="t", zones=list(zones), chunks=(32, 32), variables=VARIABLES, time=time,
                    source=StacSource(api_url="http://127.0.0.1:1", collection="c", assets={k: k for k in VARIABLES}))


def make_repo(tmp_path, spec):
    repo = icechunk.Repository.create(icechunk.local_filesystem_storage(str(tmp_path / "cube")))
    session = repo.writable_session("main")
    create_layout(session.store, spec)
    session.commit("layout")
    return repo


def patch(spec, iy, ix, step=None):
    grid = ZoneGrid("epsg32633", ZONE, spec.chunks)
    return PatchIndex("epsg32633", iy, ix, grid.chunk_geobox(iy, ix), step)


def data(valid_fraction=0.7):
    """Random values with nodata holes, per variable."""
    holes = RNG.random((32, 32)) > valid_fraction
    f = RNG.normal(size=(32, 32)).astype("float32")
    f[holes] = np.nan
    u = RNG.integers(1, 255, size=(32, 32), dtype="uint8")
    u[holes] = 0
    return {"f": f, "u": u}


def tiles_equal(a: xr.Dataset, b: xr.Dataset) -> None:
    xr.testing.assert_identical(a, b)
    for name in VARIABLES:
        assert a[name].dtype == b[name].dtype


def commit_writes(repo, spec, writes, fresh=None):
    session = repo.writable_session("main")
    for p, values in writes:
        done = write_patch(session.store, spec, p, values)
        if fresh is not None:
            fresh.paste(p, done)
    session.commit("writes")
    return zarr.open_group(repo.readonly_session(branch="main").store, mode="r")


def test_pasted_cells_and_cells_read_from_the_cube_make_the_committed_tile(tmp_path):
    spec = make_spec()
    repo = make_repo(tmp_path, spec)
    commit_writes(repo, spec, [(patch(spec, 1, 0), data())])  # filled by an earlier run
    fresh = ColdTile.for_load(spec, ROI, None, list(VARIABLES))
    assert fresh is not None
    # this run: two cells, one of them over data that must survive where the new read has none
    root = commit_writes(repo, spec, [(patch(spec, 0, 0), data()), (patch(spec, 0, 1), data(0.2))], fresh)
    assert fresh.pasted == {(None, 0, 0), (None, 0, 1)}  # cell (1, 1) never written: read (as nodata)
    tiles_equal(fresh.finish(root, None), read_tile(spec, root, ROI, None, list(VARIABLES)))


def test_stale_and_unchanged_cells_are_read_back(tmp_path):
    spec = make_spec()
    repo = make_repo(tmp_path, spec)
    commit_writes(repo, spec, [(patch(spec, 0, 1), data())])
    fresh = ColdTile.for_load(spec, ROI, None, list(VARIABLES))
    session = repo.writable_session("main")
    # a cell whose committed values came from a concurrent run: what this run pasted is not the cube's
    fresh.paste(patch(spec, 0, 0), write_patch(session.store, spec, patch(spec, 0, 0), data()))
    # a cell with nothing valid for one variable over an existing chunk: its values are not at hand
    nothing = {"f": np.full((32, 32), np.nan, "float32"), "u": data()["u"]}
    done = write_patch(session.store, spec, patch(spec, 0, 1), nothing)
    assert done.unchanged == ["f"]
    fresh.paste(patch(spec, 0, 1), done)
    assert fresh.pasted == {(None, 0, 0)}
    session.commit("this run")
    theirs = repo.writable_session("main")
    write_patch(theirs.store, spec, patch(spec, 0, 0), data(1.0))
    theirs.commit("the concurrent run's data won")
    root = zarr.open_group(repo.readonly_session(branch="main").store, mode="r")
    tile = fresh.finish(root, None, stale=[patch(spec, 0, 0)])
    tiles_equal(tile, read_tile(spec, root, ROI, None, list(VARIABLES)))
    assert np.isfinite(tile["f"].values[:27, :29]).all()  # the winner's full chunk, not this run's holes


def test_time_steps_left_out_after_the_run_are_dropped_and_the_rest_read(tmp_path):
    spec = make_spec(time=pd.date_range("2024-01-01", periods=4, freq="D"))
    repo = make_repo(tmp_path, spec)
    commit_writes(repo, spec, [(patch(spec, 1, 1, step=3), data())])
    fresh = ColdTile.for_load(spec, ROI, [0, 1, 3], list(VARIABLES))
    writes = [(patch(spec, iy, ix, step=0), data()) for iy in (0, 1) for ix in (0, 1)]
    root = commit_writes(repo, spec, [*writes, (patch(spec, 0, 0, step=3), data())], fresh)
    kept = [0, 3]  # step 1 had no data: the load drops it
    tiles_equal(fresh.finish(root, kept), read_tile(spec, root, ROI, kept, list(VARIABLES)))


@pytest.mark.parametrize("roi", [
    GeoBox.from_bbox((100, 100, 500, 500), "EPSG:32633", resolution=20),  # coarser: resampled
    GeoBox.from_geopolygon(ZONE.extent.to_crs("EPSG:32632").buffer(-100), resolution=10),  # another CRS
    GeoBox((40, 40), Affine(10, 0, 105, 0, -10, 500), "EPSG:32633"),  # half a pixel off the grid
], ids=["coarser", "other-crs", "off-grid"])
def test_rois_that_need_resampling_are_read_back_instead(roi, tmp_path):
    spec = make_spec()
    assert ColdTile.for_load(spec, roi, None, list(VARIABLES)) is None
    root = commit_writes(make_repo(tmp_path, spec), spec, [(patch(spec, 1, 0), data(1.0))])
    tile = read_tile(spec, root, roi, None, list(VARIABLES))
    assert tile["u"].shape == roi.shape.yx and (tile["u"].values > 0).any()  # read, and resampled


def test_an_roi_over_two_zones_is_read_back_instead():
    spec = make_spec(zones=(ZONE, EAST))
    roi = ZONE[10:20, 40:64]
    assert ColdTile.for_load(spec, roi, None, list(VARIABLES)) is None
    inside = ZONE[10:20, 10:30]
    assert ColdTile.for_load(spec, inside, None, list(VARIABLES)) is not None
