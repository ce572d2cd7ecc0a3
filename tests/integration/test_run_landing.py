"""A run's patches land once, with their values where the caller asked for them, then ONE commit."""

from __future__ import annotations

import time

import numpy as np
import pytest

from stacube.errors import SpecError
from stacube.plan import attach_items
from stacube.run import start_run
from stacube.runners import LocalRunner

from .test_load import items_of, odc_reference


def started(cube, roi, runner, keep_values=False):
    patches = attach_items(cube.spec, cube.catalog, cube.plan(roi).missing)
    backend = cube.spec.source.backend(cube.spec.variables)
    return start_run(cube.repo, cube.spec, patches, backend, runner, keep_values=keep_values)


def test_each_patch_lands_once_with_its_values_and_they_equal_the_source(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    roi = sample_layout.extent_geobox()[0:512, 0:768]  # 2 x 3 patches of 256 px
    began = time.perf_counter()
    run = started(cube, roi, LocalRunner(concurrency=2, progress=False), keep_values=True)
    before = cube.history()
    dem, _ = odc_reference(items_of(api.url), roi)
    seen = []
    for patch, written in run.landed():
        seen.append(patch.id)
        assert cube.history().equals(before)  # nothing committed while patches land
        assert written.nbytes  # every patch of this ROI holds data: each one's values are compared
        window = (slice(patch.iy * 256, patch.iy * 256 + 256), slice(patch.ix * 256, patch.ix * 256 + 256))
        np.testing.assert_array_equal(written.values["dem"], dem[0][window])
    assert sorted(seen) == sorted(p.id for p in run.reads) and len(seen) == 6
    report = run.commit()
    assert 0 < report.seconds < time.perf_counter() - began  # from start_run to the commit, not a clock reading
    assert sum(seconds for _, seconds in report.patch_figures.values()) > 0
    assert sorted(report.patches_written + report.patches_empty) == sorted(seen)
    assert len(cube.history()) == len(before) + 1
    with pytest.raises(RuntimeError, match="once"):
        next(run.landed())  # a second pass would merge every fork twice


def test_a_run_left_early_commits_nothing(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    run = started(cube, sample_layout.extent_geobox()[0:512, 0:768], LocalRunner(concurrency=2, progress=False))
    before = cube.history()
    landed = run.landed()
    next(landed)
    landed.close()
    with pytest.raises(RuntimeError, match="not all landed"):
        run.commit()
    assert cube.history().equals(before) and cube.state().empty


def test_a_runner_with_only_map_still_runs(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)

    class MapOnly:  # a runner written before Runner.imap
        name = "map-only"

        def map(self, task, patches):
            return LocalRunner(concurrency=2, progress=False).map(task, patches)

    report = started(cube, sample_layout.extent_geobox()[0:256, 0:512], MapOnly()).complete()
    assert len(report.patches_written) == 2 and report.runner == "map-only"
    meta = cube.repo.lookup_snapshot(report.snapshot_id).metadata["stacube"]
    assert meta["runner"] == "map-only" and sorted(meta["patches"]) == sorted(report.patches_written)


def test_values_asked_for_that_do_not_come_back_are_an_error_not_a_nodata_paste(servers, make_cube,
                                                                                 sample_layout):
    _, api = servers
    cube = make_cube(api.url)

    class LosesValues(LocalRunner):  # as a runner in other processes would, if it dropped them on the way back
        def imap(self, task, patches):
            for result in super().imap(task, patches):
                result.written.values = {}
                yield result

    run = started(cube, sample_layout.extent_geobox()[0:256, 0:256], LosesValues(progress=False), keep_values=True)
    before = cube.history()
    with pytest.raises(RuntimeError, match="did not come back"):
        list(run.landed())
    assert cube.history().equals(before)


def test_a_patch_a_runner_never_answered_for_is_an_error_not_recorded_as_filled_and_empty(servers, make_cube,
                                                                                          sample_layout):
    _, api = servers
    cube = make_cube(api.url)

    class DropsOne(LocalRunner):  # as the Prefect runner did with a negative patches_per_task: no batch at all
        def imap(self, task, patches):
            yield from super().imap(task, list(patches)[1:])

    run = started(cube, sample_layout.extent_geobox()[0:256, 0:512], DropsOne(progress=False))
    before = cube.history()
    with pytest.raises(RuntimeError, match="no result and no failure"):
        run.complete()
    assert cube.history().equals(before) and cube.state().empty
    with pytest.raises(SpecError, match="concurrency 0"):
        LocalRunner(concurrency=0)


def test_a_prefect_runner_refuses_counts_a_run_could_not_keep():
    from stacube.flows.runner import PrefectRunner

    for counts in ({"patches_per_task": -1}, {"concurrency": 0}, {"retries": -1}):
        with pytest.raises(SpecError, match=next(iter(counts))):
            PrefectRunner(**counts)
