"""Many ROIs in one run: the union of their patches downloaded once, one commit, each Tile as soon as it is in."""

from __future__ import annotations

import dataclasses
import json
import shutil
import threading
import time
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box
from typer.testing import CliRunner

from stacube import Cube, CubeSpec, PatchReadError, ROIError, StacSource, Variable
from stacube.cli import app
from stacube.many import load_many
from stacube.testing.servers import serve_sample

from .conftest import dem_spec
from .test_load import items_of, odc_reference


def union_of(cube: Cube, rois, toi=None) -> tuple[set[str], set[str]]:
    """The patches under the ROIs, and those the cube lacks, planned ROI by ROI with ``Cube.plan``."""
    plans = [cube.plan(roi, toi) for roi in rois]
    return {p.id for plan in plans for p in plan.patches}, {p.id for plan in plans for p in plan.missing}


def assert_tile_equals_load(tile: xr.Dataset, expected: xr.Dataset, run_id: str | None) -> None:
    """Dims, coordinates, dtypes, values and attributes of ``cube.load``'s Tile (plus the run that made it)."""
    attrs = dict(tile.attrs)
    assert attrs.pop("stacube_run", None) == run_id
    assert attrs == expected.attrs
    xr.testing.assert_identical(tile.drop_attrs(deep=False), expected.drop_attrs(deep=False))
    for name in expected.data_vars:
        assert tile[name].dtype == expected[name].dtype and tile[name].attrs == expected[name].attrs


def test_tiles_equal_load_of_each_roi_in_the_order_given_from_one_commit(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    cube.load(zone[0:300, 0:300])  # fills y0x0 .. y1x1
    rois = [
        zone[900:1156, 1000:1256],  # 4 patches, shared with the next two
        zone[10:60, 20:90],  # on a patch filled earlier
        zone[1100:1356, 1200:1456],  # shares y4x4 with the first
        zone[950:980, 1010:1040],  # inside the first ROI's patch y3x3
        GeoBox.from_bbox(zone[1500:1700, 100:400].extent.to_crs("EPSG:3857").boundingbox, "EPSG:3857",
                         resolution=25),  # resampled: read from the committed snapshot
        box(*zone[200:456, 200:456].extent.boundingbox, zone.crs),  # a Geometry on filled patches
        zone[1800:1856, 1800:1856],  # the zone's last, partial patch
        zone[900:1156, 1000:1256],  # the first ROI again
    ]
    patches, missing = union_of(cube, rois)
    assert 0 < len(missing) < len(patches) < sum(len(cube.plan(r).patches) for r in rois)  # ROIs share patches
    before = cube.history()

    stream = cube.load_many(rois)
    tiles = list(stream)

    history = cube.history()
    assert len(history) == len(before) + 1  # ONE commit for the whole call
    report = stream.report
    assert report.snapshot_id == history.snapshot[0] and history.run_id[0] == report.run_id == stream.run_id
    assert sorted(report.patches_written + report.patches_empty) == sorted(missing)  # each patch once
    assert report.patches_already_filled == len(patches) - len(missing)
    assert (stream.patches, stream.patches_missing) == (len(patches), len(missing))
    meta = cube.repo.lookup_snapshot(report.snapshot_id).metadata["stacube"]
    assert sorted(meta["patches"]) == sorted(report.patches_written) and meta["runner"] == "local"
    assert meta["load_many"] == {"rois": len(rois), "patches": len(patches), "patches_missing": len(missing)}
    assert meta["roi"]["type"] in ("Polygon", "MultiPolygon")  # the ROIs' union, kept short
    assert len(json.dumps(meta["roi"])) < 20_000

    assert len(tiles) == len(rois) and stream.read_after_commit >= 1  # the resampled ROI at least
    for roi, tile in zip(rois, tiles, strict=True):
        if isinstance(roi, GeoBox):
            assert tile.odc.geobox == roi  # in the order given
        assert_tile_equals_load(tile, cube.load(roi), report.run_id)
        assert tile.attrs["stacube_snapshot"] == report.snapshot_id and tile.attrs["missing_patches"] == []
    dem, mask = odc_reference(items_of(api.url), rois[0])
    np.testing.assert_array_equal(tiles[0].dem.values, dem[0])
    np.testing.assert_array_equal(tiles[0].datamask.values, mask[0])
    assert np.isfinite(tiles[0].dem.values).mean() > 0.5

    # Nothing missing now: no run, no commit, the same Tiles from the snapshot they are in.
    again = cube.load_many(rois)
    for tile, earlier in zip(again, tiles, strict=True):
        assert "stacube_run" not in tile.attrs and tile.attrs["stacube_snapshot"] == report.snapshot_id
        xr.testing.assert_identical(tile, earlier.drop_attrs(deep=False).assign_attrs(
            {k: v for k, v in earlier.attrs.items() if k != "stacube_run"}))
    assert again.run_id is None and again.report is None and cube.history().equals(history)
    assert list(cube.load_many([])) == []


def test_the_first_tile_comes_before_the_last_patch_is_written(sample_dir, sample_layout, tmp_path, monkeypatch):
    import stacube.run

    written: list[float] = []
    write = stacube.run.write_patch

    def timed_write(*args, **kwargs):
        out = write(*args, **kwargs)
        written.append(time.monotonic())
        return out

    monkeypatch.setattr(stacube.run, "write_patch", timed_write)
    zone = sample_layout.extent_geobox()
    rois = [zone[0:100, 0:100]] + [zone[r:r + 256, c:c + 256] for r in (300, 812, 1324) for c in (300, 1068)]
    with serve_sample(sample_dir, latency_ms=150) as (_, api):  # a slow source
        cube = Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "catalog")
        stream = cube.load_many(rois, concurrency=2, progress=False)
        first = next(stream)
        yielded_at = time.monotonic()
        assert first.attrs["stacube_snapshot"] is None and first.attrs["stacube_run"] == stream.run_id
        assert len(cube.history()) == 2  # not committed yet
        rest = list(stream)
    assert len(written) == stream.patches_missing == 1 + 6 * 4
    assert yielded_at < max(written)  # yielded while the run was still writing
    assert sum(t > yielded_at for t in written) >= 10
    head = cube.history()
    assert len(head) == 3 and head.run_id[0] == stream.run_id
    # the Tiles yielded before the commit now name it
    assert first.attrs["stacube_snapshot"] == stream.report.snapshot_id == head.snapshot[0]
    assert all(t.attrs["stacube_snapshot"] == head.snapshot[0] for t in rest)
    assert stream.held_peak > 0
    for roi, tile in zip(rois, [first, *rest], strict=True):
        assert_tile_equals_load(tile, cube.load(roi, offline=True), stream.run_id)


def test_progress_counts_never_go_back_though_patches_land_on_several_threads(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    heard: list[tuple[int, int]] = []
    threads: set[int] = set()

    def on_patch(done: int, total: int) -> None:
        threads.add(threading.get_ident())
        if not heard:
            time.sleep(0.5)  # the first report is slow: the workers write on meanwhile
        heard.append((done, total))

    zone = sample_layout.extent_geobox()
    stream = load_many(cube, [zone[0:600, 0:600]], concurrency=3, progress=False, on_patch=on_patch)
    list(stream)
    total = stream.patches_missing
    assert total > 3 and heard and all(t == total for _, t in heard)
    assert [d for d, _ in heard] == list(range(1, total + 1))  # each count once, in order
    assert len(threads) == 1  # told from the run's one thread, never from the workers


def test_a_missing_asset_fails_the_run_after_the_tiles_yielded_and_commits_nothing(sample_dir, sample_layout,
                                                                                   tmp_path):
    folder = tmp_path / "sample"
    shutil.copytree(sample_dir, folder)
    (folder / "tile_r3_c3_dem.tif").unlink()  # the only tile under the zone's last rows and columns
    zone = sample_layout.extent_geobox()
    rois = [zone[0:100, 0:100], zone[1600:1700, 1600:1700], zone[100:200, 0:100]]
    with serve_sample(folder, latency_ms=500) as (_, api):
        cube = Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "catalog")
        before, state = cube.history(), cube.state()
        yielded = []
        with pytest.raises(PatchReadError, match=r"epsg3413/y6x6 failed .*tile_r3_c3_dem\.tif"):
            for tile in cube.load_many(rois, concurrency=1, progress=False):
                yielded.append(tile)
    assert len(yielded) == 1  # the first ROI's Tile came out before the run failed
    assert yielded[0].attrs["stacube_snapshot"] is None  # and is in no snapshot
    assert cube.history().equals(before) and cube.state().equals(state)  # nothing committed
    assert not [t for t in threading.enumerate() if t.name == "stacube-load-many"]


def test_leaving_the_loop_early_cancels_the_run(sample_dir, sample_layout, tmp_path):
    zone = sample_layout.extent_geobox()
    rois = [zone[0:100, 0:100]] + [zone[r:r + 256, c:c + 256] for r in (512, 1024) for c in (512, 1024)]
    with serve_sample(sample_dir, latency_ms=150) as (_, api):
        cube = Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "catalog")
        before = cube.history()
        started = time.monotonic()
        with cube.load_many(rois, concurrency=1, progress=False) as stream:
            for _ in stream:
                break
        assert time.monotonic() - started < 15
    assert cube.history().equals(before)
    assert not [t for t in threading.enumerate() if t.name == "stacube-load-many"]


def test_a_tile_yielded_before_a_concurrent_run_won_its_patch_never_names_the_snapshot(servers, make_cube, tmp_path,
                                                                                     sample_layout, monkeypatch):
    import contextlib

    import stacube.run
    from stacube.plan import attach_items
    from stacube.runners import LocalRunner

    from .test_concurrent import _Shifted

    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    contested, alone = zone[0:256, 0:256], zone[1024:1280, 1024:1280]
    start_run = stacube.run.start_run
    first_taken = threading.Event()

    def with_a_rival(repo, spec, patches, backend, runner, **kwargs):
        """This run reads +100 m; while it waits to commit, a run started later writes the first ROI's patch
        at +200 m and commits first: the later stamp wins that patch when this run settles overlaps."""
        lock = kwargs["commit_lock"]

        @contextlib.contextmanager
        def rival_first():
            assert first_taken.wait(30)  # the first Tile is out, before this commit
            other = Cube.open(cube.url, catalog_dir=tmp_path / "catalog")
            theirs = attach_items(other.spec, other.catalog, other.plan(contested).missing)
            start_run(other.repo, other.spec, theirs, _Shifted(other.spec.source.backend(other.spec.variables), 200.0),
                      LocalRunner(concurrency=1, progress=False)).complete()
            with lock():
                yield

        kwargs["commit_lock"] = rival_first
        return start_run(repo, spec, patches, _Shifted(backend, 100.0), runner, **kwargs)

    monkeypatch.setattr(stacube.run, "start_run", with_a_rival)
    stream = cube.load_many([contested, alone], progress=False, concurrency=1)
    tiles = []
    with pytest.warns(UserWarning, match="1 Tile.*before the commit.*replaced.*y0x0"):
        for tile in stream:
            tiles.append(tile)
            first_taken.set()
    assert stream.report.patches_kept_from_other_run == ["epsg3413/y0x0"]
    early, late = tiles
    assert early.attrs["stacube_snapshot"] is None and early.attrs["superseded_patches"] == ["epsg3413/y0x0"]
    committed = cube.load(contested, at=stream.report.snapshot_id, offline=True)
    assert not np.allclose(early.dem.values, committed.dem.values, equal_nan=True)  # what the attrs warn of
    assert "superseded_patches" not in late.attrs
    late_committed = cube.load(alone, at=late.attrs["stacube_snapshot"], offline=True)
    np.testing.assert_array_equal(late.dem.values, late_committed.dem.values)


def test_offline_never_downloads_and_lists_what_is_missing(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    cube.load(zone[0:256, 0:256])
    before, items = cube.history(), len(cube.catalog)
    rois = [zone[100:400, 100:400], zone[0:50, 0:50], zone[1030:1100, 1030:1100]]
    with pytest.warns(UserWarning, match=r"4 patch\(es\) under the ROIs are not in the cube"):
        tiles = list(cube.load_many(rois, offline=True))
    assert cube.history().equals(before) and len(cube.catalog) == items  # the source was not asked either
    for roi, tile in zip(rois, tiles, strict=True):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # load's own warning about missing patches
            expected = cube.load(roi, offline=True)
        assert_tile_equals_load(tile, expected, None)
    assert sorted(tiles[0].attrs["missing_patches"]) == ["epsg3413/y0x1", "epsg3413/y1x0", "epsg3413/y1x1"]
    assert tiles[1].attrs["missing_patches"] == [] and tiles[2].attrs["missing_patches"] == ["epsg3413/y4x4"]
    assert np.isnan(tiles[2].dem.values).all()


def test_bad_input_fails_at_the_call_naming_the_roi_and_downloads_nothing(servers, make_cube, sample_layout):
    from stacube import TOIError, UnknownVariableError

    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    before = cube.history()
    outside = GeoBox.from_bbox((100, 10, 101, 11), "EPSG:4326", resolution=0.01)
    with pytest.raises(ROIError, match=r"^ROI 2 \(of 3\): the ROI \(bounds .* is outside every zone of cube 'dem'"):
        cube.load_many([zone[0:10, 0:10], zone[10:20, 0:10], outside])
    with pytest.raises(ROIError, match=r"^ROI 1 \(of 2\): the ROI geometry .* has no CRS"):
        cube.load_many([zone[0:10, 0:10], Geometry(zone[0:10, 0:10].extent.geom)])
    with pytest.raises(UnknownVariableError, match="'slope'"):
        cube.load_many([zone[0:10, 0:10]], variables=["slope"])
    with pytest.raises(TOIError):
        cube.load_many([zone[0:10, 0:10]], toi="2024-01")  # a cube without time
    assert cube.history().equals(before) and len(cube.catalog) == 0  # not even the catalog was asked


def test_tiles_held_stay_within_the_budget_and_the_rest_is_read_after_the_commit(servers, make_cube,
                                                                                  sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    # a row of ROIs along the zone, then ROIs far back over the same patches: with room for two Tiles,
    # the later ones cannot be held when their patches are written and are read from the commit
    rois = [zone[r:r + 200, c:c + 200] for r in (0, 600, 1200) for c in (0, 500, 1000, 1500)]
    rois += [zone[r + 50:r + 150, c + 50:c + 150] for r in (0, 600) for c in (0, 1000)]
    tile_bytes = 200 * 200 * 5
    stream = load_many(cube, rois, hold_bytes=2 * tile_bytes, concurrency=3, progress=False)
    tiles = list(stream)
    assert 0 < stream.held_peak <= 2 * tile_bytes
    assert 0 < stream.read_after_commit < len(rois)  # the ROIs whose Tile was not held when their patch came
    assert len(cube.history()) == 3
    for roi, tile in zip(rois, tiles, strict=True):
        assert_tile_equals_load(tile, cube.load(roi), stream.run_id)


def test_a_time_series_cube_keeps_the_steps_load_keeps(time_servers, tmp_path):
    from ..conftest import TIME_LAYOUT

    _, api = time_servers
    spec = CubeSpec(
        name="series", zones=[TIME_LAYOUT.extent_geobox()], chunks=(256, 256),
        variables={"dem": Variable("float32"), "datamask": Variable("uint8", nodata=0)},
        time=pd.date_range("2021-06-01", periods=7, freq="D"),
        source=StacSource(api_url=api.url, collection="sample-series", assets={"dem": "dem", "datamask": "datamask"}),
    )
    cube = Cube.create(tmp_path / "series", spec, catalog_dir=tmp_path / "cat")
    zone = TIME_LAYOUT.extent_geobox()
    toi = slice("2021-06-02", "2021-06-05")
    cube.load(zone[0:256, 0:256], toi=slice("2021-06-03", "2021-06-03"))  # one step of one patch, filled earlier
    rois = [zone[100:300, 100:300], zone[10:50, 10:50], zone[500:700, 300:600]]
    before = len(cube.history())
    stream = cube.load_many(rois, toi, variables="dem", progress=False)
    tiles = list(stream)
    assert len(cube.history()) == before + 1
    for roi, tile in zip(rois, tiles, strict=True):
        assert list(tile.data_vars) == ["dem"]
        assert list(tile.time.dt.strftime("%m-%d").values) == ["06-03", "06-05"]  # days without Items left out
        assert_tile_equals_load(tile, cube.load(roi, toi, variables="dem"), stream.run_id)
    dem, _ = odc_reference(items_of(api.url, "sample-series"), rois[0], groupby="time")
    np.testing.assert_array_equal(tiles[0].dem.values, dem[1:3])

    # A source that may still publish for every step: the days without Items stay unfilled (pending), so
    # the ROIs over them wait for the commit and list them as missing, as load does.
    recent = dataclasses.replace(spec, name="recent", source=dataclasses.replace(spec.source,
                                                                                  publication_lag="100000D"))
    cube = Cube.create(tmp_path / "recent", recent, catalog_dir=tmp_path / "cat")
    stream = cube.load_many(rois, toi, progress=False)
    tiles, seen = [], []
    for tile in stream:
        tiles.append(tile)
        seen.append(tile.attrs["stacube_snapshot"])  # as yielded
    assert stream.report.patches_pending and seen == [stream.report.snapshot_id] * len(rois)  # after the commit
    for roi, tile in zip(rois, tiles, strict=True):
        assert list(tile.time.dt.strftime("%m-%d").values) == ["06-02", "06-03", "06-04", "06-05"]
        assert tile.attrs["missing_patches"] and all(p.split("/")[1][4:8] in ("0602", "0604")
                                                     for p in tile.attrs["missing_patches"])
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            assert_tile_equals_load(tile, cube.load(roi, toi, offline=True), stream.run_id)


# --- the command line -----------------------------------------------------------------------------
def cli(*args, ok: bool = True) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, [str(a) for a in args])
    if ok and result.exit_code != 0:
        raise AssertionError(f"exit {result.exit_code}: {result.stderr} {result.exception!r}")
    return result.exit_code, result.stdout, result.stderr


def roi_frame(sample_layout, windows, ids=None):
    import geopandas as gpd

    zone = sample_layout.extent_geobox()
    shapes = [zone[w].extent.geom for w in windows]
    data = {"chip": ids} if ids is not None else {}
    return gpd.GeoDataFrame(data, geometry=shapes, crs="EPSG:3413")


WINDOWS = [(slice(0, 256), slice(0, 256)), (slice(300, 556), slice(900, 1156)), (slice(100, 200), slice(50, 150))]


def test_cli_writes_a_cog_per_roi_named_by_the_id_column_from_one_commit(servers, make_cube, sample_layout,
                                                                         tmp_path):
    import rasterio

    _, api = servers
    cube = make_cube(api.url)
    path = tmp_path / "rois.geojson"
    roi_frame(sample_layout, WINDOWS, ["north/a", "b", "c"]).to_file(path)
    before = len(cube.history())
    _, out, _ = cli("cube", "load-many", cube.url, path, "--id-column", "chip", "--out", tmp_path / "chips",
                    "--catalog-dir", tmp_path / "catalog", "--json", "--quiet")
    summary = json.loads(out)
    history = cube.history()
    assert len(history) == before + 1 and summary["snapshot"] == history.snapshot[0]
    assert summary["rois"] == 3 and summary["written"] == 6 and summary["run_id"] == history.run_id[0]
    assert summary["patches_planned"] == summary["patches_missing"] == 1 + 4  # the third ROI is on y0x0 too
    zone = sample_layout.extent_geobox()
    for name, window in zip(["north_a", "b", "c"], WINDOWS, strict=True):
        expected = cube.load(box(*zone[window].extent.boundingbox, "EPSG:3413"))
        for variable in ("dem", "datamask"):
            with rasterio.open(tmp_path / "chips" / f"{name}_{variable}.tif") as cog:
                assert cog.crs.to_epsg() == 3413 and cog.dtypes[0] == str(expected[variable].dtype)
                np.testing.assert_array_equal(cog.read(1), expected[variable].values)
    # again, into one Zarr store from GeoParquet, by row index: nothing to download, no commit
    roi_frame(sample_layout, WINDOWS).to_parquet(tmp_path / "rois.parquet")
    _, out, _ = cli("cube", "load-many", cube.url, tmp_path / "rois.parquet", "--out", tmp_path / "chips.zarr",
                    "--variables", "dem", "--catalog-dir", tmp_path / "catalog", "--json")
    assert json.loads(out)["patches_missing"] == 0 and cube.history().equals(history)
    for index, window in enumerate(WINDOWS):
        stored = xr.open_zarr(tmp_path / "chips.zarr", group=str(index), consolidated=False)
        expected = cube.load(box(*zone[window].extent.boundingbox, "EPSG:3413"), variables="dem")
        np.testing.assert_array_equal(stored.dem.values, expected.dem.values)
        assert stored.attrs["stacube_snapshot"] == history.snapshot[0]


def test_cli_bad_input_is_one_line_and_leaves_the_cube_alone(servers, make_cube, sample_layout, tmp_path):
    _, api = servers
    cube = make_cube(api.url)
    before = cube.history()
    where = ["--out", tmp_path / "chips", "--catalog-dir", tmp_path / "catalog"]

    def error(rois) -> str:
        code, out, err = cli("cube", "load-many", cube.url, rois, *where, ok=False)
        assert code == 1 and out == "" and len(err.strip().splitlines()) == 1, err
        return err.strip()

    assert error(tmp_path / "nowhere.geojson").startswith("error: FileNotFoundError: ")
    assert "no such ROI file" in error(tmp_path / "nowhere.geojson")
    pd.DataFrame({"x": [1.0]}).to_parquet(tmp_path / "plain.parquet")
    assert error(tmp_path / "plain.parquet").startswith("error: ROIError: ") and "no geometry column" in error(
        tmp_path / "plain.parquet")
    roi_frame(sample_layout, WINDOWS).set_crs(None, allow_override=True).to_parquet(tmp_path / "nocrs.parquet")
    assert "has no CRS" in error(tmp_path / "nocrs.parquet")
    far = roi_frame(sample_layout, WINDOWS).to_crs("EPSG:4326")
    far.loc[1, "geometry"] = box(100, 10, 101, 11, "EPSG:4326").geom
    far.to_file(tmp_path / "far.geojson")
    assert error(tmp_path / "far.geojson").startswith("error: ROIError: ROI 1 (of 3): the ROI (bounds (100.0, 10.0")
    roi_frame(sample_layout, WINDOWS).to_file(tmp_path / "ok.geojson")
    assert "no column 'chip_id'" in error_with(cube, tmp_path / "ok.geojson", "--id-column", "chip_id", *where)
    # names whose COGs would be one file (on a file system that ignores case): refused, nothing downloaded
    roi_frame(sample_layout, WINDOWS, ["Chip", "chip", "x"]).to_file(tmp_path / "alike.geojson")
    clash = error_with(cube, tmp_path / "alike.geojson", "--id-column", "chip", *where)
    assert "overwrite one another (chip_dem.tif: ROI 'Chip' 'dem' and ROI 'chip' 'dem')" in clash
    assert cube.history().equals(before) and not (tmp_path / "chips").exists()


def error_with(cube, rois, *args) -> str:
    code, _, err = cli("cube", "load-many", cube.url, rois, *args, ok=False)
    assert code == 1 and len(err.strip().splitlines()) == 1
    return err


def test_cli_load_many_has_help_with_an_example():
    _, out, _ = cli("cube", "load-many", "--help")
    assert "Example:" in out and "Usage: stacube cube load-many" in " ".join(out.split())
