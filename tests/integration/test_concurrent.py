"""Two runs on one cube at the same time (a notebook and a scheduled job): both land, nothing is lost."""

from __future__ import annotations

import contextlib
import threading

import numpy as np

from stacube import Cube

from .conftest import dem_spec
from .test_load import items_of, odc_reference


def run_together(cube_path, catalog, rois):
    """Download each ROI from its own Cube handle, all started at once; returns reports and errors."""
    barrier = threading.Barrier(len(rois))
    reports, errors = [None] * len(rois), []

    def work(index, roi):
        cube = Cube.open(cube_path, catalog_dir=catalog)
        plan = cube.plan(roi)  # both plan from the same snapshot before either commits
        barrier.wait()
        try:
            reports[index] = cube.run(plan, concurrency=4, progress=False)
        except Exception as err:  # noqa: BLE001 - collected and asserted on below
            errors.append(err)

    threads = [threading.Thread(target=work, args=(i, roi)) for i, roi in enumerate(rois)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return reports, errors


def test_disjoint_concurrent_runs_both_land(servers, make_cube, sample_layout, tmp_path):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    reports, errors = run_together(tmp_path / "cube.icechunk", tmp_path / "catalog",
                                   [zone[0:512, 0:512], zone[1024:1536, 1024:1536]])
    assert errors == []
    state = cube.state()
    assert len(state) == 8 and set(state.snapshot) == {r.snapshot_id for r in reports}
    assert len(cube.history()) == 4  # root, create, and one commit per run


def test_overlapping_concurrent_runs_both_land_with_equal_values(servers, make_cube, sample_layout, tmp_path):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    reports, errors = run_together(tmp_path / "cube.icechunk", tmp_path / "catalog",
                                   [zone[0:512, 0:768], zone[256:768, 0:768]])
    assert errors == []
    assert all(r.snapshot_id for r in reports)
    overlap = [m for r in reports for m in [cube.repo.lookup_snapshot(r.snapshot_id).metadata["stacube"]]]
    assert any("overlap" in m for m in overlap)  # the later commit says it met the other run's patches
    tile = cube.load(zone[0:768, 0:768], offline=True)
    dem, _ = odc_reference(items_of(api.url), zone[0:768, 0:768])
    np.testing.assert_array_equal(tile.dem.values, dem[0])
    assert len(cube.state()) == 9


class _Shifted:
    """A backend that reads like the real one, then adds ``offset`` to the DEM: tells runs apart by value."""

    def __init__(self, backend, offset):
        self.backend, self.offset = backend, offset

    def check_items(self, items):
        self.backend.check_items(items)

    def read(self, patch):
        data = self.backend.read(patch)
        mask = np.where(data["datamask"] != 0, int(self.offset // 100) + 1, 0).astype("uint8")
        return {**data, "dem": data["dem"] + self.offset, "datamask": mask}


def _prepare(cube, roi, offset=0.0, empty=False):
    """A run's patches and backend, planned now (from the same snapshot as any other run prepared now)."""
    from stacube.plan import attach_items

    patches = attach_items(cube.spec, cube.catalog, cube.plan(roi).missing)
    if empty:  # this run finds no Items for its patches
        patches = [p.with_items(()) for p in patches]
    return patches, _Shifted(cube.spec.source.backend(cube.spec.variables), offset)


def _run(cube, prepared, commit_gate=None):
    from stacube.run import start_run
    from stacube.runners import LocalRunner

    patches, backend = prepared
    return start_run(cube.repo, cube.spec, patches, backend, LocalRunner(concurrency=2, progress=False),
                     commit_lock=commit_gate or contextlib.nullcontext).complete()


def _run_both(cube, early, late, later_commits_first):
    """Two runs from one snapshot: ``early`` is stamped first, then ``late``; they commit in the order asked."""
    reports = {}
    reached = {"early": threading.Event(), "late": threading.Event()}
    opened = {"early": threading.Event(), "late": threading.Event()}

    def run(name, prepared):
        @contextlib.contextmanager
        def gate():
            reached[name].set()
            assert opened[name].wait(60)
            yield

        reports[name] = _run(cube, prepared, gate)

    threads = {}
    for name, prepared in (("early", early), ("late", late)):
        threads[name] = threading.Thread(target=run, args=(name, prepared))
        threads[name].start()
        assert reached[name].wait(60)  # read, written into its session, stamped; waiting to commit
    for name in (("late", "early") if later_commits_first else ("early", "late")):
        opened[name].set()
        threads[name].join()
    return reports["early"], reports["late"]


def _meta(cube, report):
    return cube.repo.lookup_snapshot(report.snapshot_id).metadata["stacube"]


def test_same_patch_written_by_two_runs_keeps_the_later_run_whichever_commits_first(servers, sample_layout,
                                                                                   tmp_path):
    _, api = servers
    zone = sample_layout.extent_geobox()
    roi = zone[0:256, 0:256]  # one patch
    reference, _ = odc_reference(items_of(api.url), roi)
    for order in ("earlier run commits first", "later run commits first"):
        cube = Cube.create(tmp_path / order, dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "catalog")
        early, late = _prepare(cube, roi, offset=100.0), _prepare(cube, roi, offset=200.0)
        early_report, late_report = _run_both(cube, early, late, later_commits_first=order.startswith("later"))
        if order == "earlier run commits first":
            settled = _meta(cube, late_report)["overlap"]
            assert settled["kept_this_run"] == [late[0][0].id] and settled["kept_other_run"] == []
        else:
            settled = _meta(cube, early_report)["overlap"]
            assert settled["kept_other_run"] == [late[0][0].id] and settled["kept_this_run"] == []
        tile = cube.load(roi, offline=True)
        np.testing.assert_array_equal(tile.dem.values, reference[0] + 200.0)  # the later run's values...
        assert 3 in tile.datamask.values and set(np.unique(tile.datamask.values)) <= {0, 3}  # ...every variable...
        root, _ = cube._root()
        assert root[late[0][0].zone]["filled"][late[0][0].cell] == _meta(cube, late_report)["stamp"]  # ...and record
        state = cube.state()
        assert len(state) == 1


def test_a_run_that_found_a_patch_empty_never_replaces_data(servers, sample_layout, tmp_path):
    _, api = servers
    zone = sample_layout.extent_geobox()
    roi = zone[0:256, 0:256]
    reference, _ = odc_reference(items_of(api.url), roi)
    for empty_commits_first in (True, False):
        cube = Cube.create(tmp_path / f"cube-{empty_commits_first}", dem_spec(api.url, sample_layout),
                           catalog_dir=tmp_path / "catalog")
        with_data, without = _prepare(cube, roi), _prepare(cube, roi, empty=True)
        # the empty run has the later stamp: data must still win, whichever commits first
        data_report, empty_report = _run_both(cube, with_data, without, later_commits_first=empty_commits_first)
        if empty_commits_first:
            assert _meta(cube, data_report)["overlap"]["kept_this_run"] == [with_data[0][0].id]
        else:
            assert _meta(cube, empty_report)["overlap"]["kept_other_run"] == [without[0][0].id]
        root, _ = cube._root()
        filled = root[with_data[0][0].zone]["filled"][with_data[0][0].cell]
        assert filled == _meta(cube, data_report)["stamp"] > 0  # the record names the run whose data is there
        np.testing.assert_array_equal(cube.load(roi, offline=True).dem.values, reference[0])


def test_a_patch_filled_after_planning_is_not_fetched_again(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    stale = _prepare(cube, zone[0:256, 0:512])  # two patches, planned while both were missing
    other = cube.download(zone[0:256, 0:256])  # meanwhile another run fills the first one
    report = _run(cube, stale)
    assert report.patches_already_filled == 1
    assert report.patches_written == [stale[0][1].id] and other.patches_written == [stale[0][0].id]
    assert "overlap" not in _meta(cube, report)


def _series_cube(path, catalog, api_url):
    import pandas as pd

    from stacube import CubeSpec, StacSource, Variable

    from ..conftest import TIME_LAYOUT

    return Cube.create(path, CubeSpec(
        name="series", zones=[TIME_LAYOUT.extent_geobox()], chunks=(384, 384),
        variables={"dem": Variable("float32"), "datamask": Variable("uint8", nodata=0)},
        time=pd.date_range("2021-06-01", periods=4, freq="D"),
        source=StacSource(api_url=api_url, collection="sample-series", assets={"dem": "dem", "datamask": "datamask"})),
        catalog_dir=catalog)


def test_a_provisional_write_never_outlives_the_run_whose_record_a_patch_keeps(time_servers, tmp_path):
    """Run A judged the patch recent (its data written, its record left open); run B, from the same snapshot,
    judged it settled (written and recorded). Whichever commits first, the patch holds B's data under B's record:
    an open record never keeps data beside another run's filled one (a filled patch is never read again)."""
    import pandas as pd

    from stacube.plan import attach_items
    from stacube.run import start_run
    from stacube.runners import LocalRunner

    from ..conftest import TIME_LAYOUT

    _, api = time_servers
    roi = TIME_LAYOUT.extent_geobox()[0:384, 0:384]
    for b_first in (True, False):
        cube = _series_cube(tmp_path / f"cube-{b_first}", tmp_path / "catalog", api.url)
        patches = attach_items(cube.spec, cube.catalog, cube.plan(roi, "2021-06-01").missing)
        backend = cube.spec.source.backend(cube.spec.variables)
        runs = {"A": start_run(cube.repo, cube.spec, patches, _Shifted(backend, 100.0), LocalRunner(progress=False),
                               as_of=pd.Timestamp("2021-06-01T12:00")),  # within the step: provisional
                "B": start_run(cube.repo, cube.spec, patches, _Shifted(backend, 200.0), LocalRunner(progress=False))}
        reports = {name: runs[name].complete() for name in (("B", "A") if b_first else ("A", "B"))}
        assert reports["A"].patches_provisional == [patches[0].id] and reports["B"].patches_written == [patches[0].id]
        root, _ = cube._root()
        assert root[patches[0].zone]["filled"][patches[0].cell] == _meta(cube, reports["B"])["stamp"]
        tile = cube.load(roi, "2021-06-01", offline=True)
        b_snapshot = cube.load(roi, "2021-06-01", at=reports["B"].snapshot_id)
        np.testing.assert_array_equal(tile.dem.values, b_snapshot.dem.values)
        assert np.nanmean(tile.dem.values) > 150  # +200 m, B's (A's would be +100 m)
        assert tile.attrs["missing_patches"] == [] and tile.attrs["provisional_patches"] == []
        assert cube.plan(roi, "2021-06-01").missing == []


def test_a_provisional_write_survives_the_time_axis_growing_while_the_run_reads(time_servers, tmp_path):
    """When another process grows the time axis meanwhile, a run's patches are copied onto the new tip: the
    recent one (written, record left open) too, not only those it recorded as filled."""
    import pandas as pd

    from stacube.layout import chunk_exists
    from stacube.plan import attach_items
    from stacube.run import start_run
    from stacube.runners import LocalRunner

    from ..conftest import TIME_LAYOUT

    _, api = time_servers
    cube = _series_cube(tmp_path / "cube", tmp_path / "catalog", api.url)

    class GrowsTheAxis(LocalRunner):
        def imap(self, task, patches):
            Cube.open(cube.url, catalog_dir=tmp_path / "catalog").extend_time("2021-06-07")  # another process
            yield from super().imap(task, patches)

    roi = TIME_LAYOUT.extent_geobox()[0:384, 0:384]
    patches = attach_items(cube.spec, cube.catalog, cube.plan(roi, slice("2021-06-01", "2021-06-03")).missing)
    report = start_run(cube.repo, cube.spec, patches, cube.spec.source.backend(cube.spec.variables),
                       GrowsTheAxis(concurrency=1, progress=False),
                       as_of=pd.Timestamp("2021-06-03T12:00") + cube.spec.source.lag).complete()  # 06-03: recent
    assert report.patches_provisional == ["epsg3413/20210603T000000/y0x0"]
    session = cube.repo.readonly_session(branch="main")
    for patch in (p for p in patches if p.items):
        assert chunk_exists(session, f"/{patch.zone}/dem", patch.cell), patch.id
    assert cube.load(roi, "2021-06-03", offline=True).attrs["provisional_patches"] == report.patches_provisional


def test_a_cold_tile_names_its_own_runs_snapshot_though_another_run_commits_right_after(servers, sample_layout,
                                                                                       tmp_path, monkeypatch):
    import stacube.run

    _, api = servers
    roi = sample_layout.extent_geobox()[0:256, 0:256]
    cube = Cube.create(tmp_path / "cube", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "catalog")
    from stacube.run import start_run
    from stacube.runners import LocalRunner

    patches, backend = _prepare(Cube.open(cube.url, catalog_dir=tmp_path / "catalog"), roi, offset=200.0)
    rival = start_run(cube.repo, cube.spec, patches, backend, LocalRunner(progress=False))  # from the same snapshot
    commit = stacube.run.commit_settling_overlaps
    landed = {}

    def then_the_rival(*args, **kwargs):
        landed["load"] = commit(*args, **kwargs)
        monkeypatch.setattr(stacube.run, "commit_settling_overlaps", commit)
        landed["rival"] = rival.complete().snapshot_id  # stamped when it lands: later, so it wins the patch
        return landed["load"]

    monkeypatch.setattr(stacube.run, "commit_settling_overlaps", then_the_rival)
    tile = cube.load(roi)
    assert tile.attrs["stacube_snapshot"] == landed["load"] != landed["rival"]
    np.testing.assert_array_equal(tile.dem.values, cube.load(roi, at=landed["load"]).dem.values)
    assert not np.allclose(tile.dem.values, cube.load(roi, offline=True).dem.values, equal_nan=True)  # the rival's
