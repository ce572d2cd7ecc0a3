"""Two runs on one cube at the same time (a notebook and a scheduled job): both land, nothing is lost."""

from __future__ import annotations

import threading

import numpy as np

from stacube import Cube

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
            reports[index] = cube._download(plan, cube._runner(None, 4, False), None)
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
