"""History, tags, rollback and expiry: the data and the filled-patch record move together."""

from __future__ import annotations

import numpy as np
import pytest

from stacube import CubeChangedError, StacubeError, VersionNotFoundError


def test_rollback_then_redownload_restores_the_data_exactly(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    first = cube.download(zone[0:512, 0:512])
    cube.tag("first-run")
    full = cube.load(zone[0:512, 0:1024])
    second_snapshot = full.attrs["stacube_snapshot"]
    assert cube.rollback("first-run") == first.snapshot_id
    assert cube.history().snapshot[0] == first.snapshot_id
    assert len(cube.state()) == 4  # the record rolled back with the data
    again = cube.download(zone[0:512, 0:1024])
    assert sorted(again.patches_written) == ["epsg3413/y0x2", "epsg3413/y0x3", "epsg3413/y1x2", "epsg3413/y1x3"]
    restored = cube.load(zone[0:512, 0:1024], offline=True)
    np.testing.assert_array_equal(restored.dem.values, full.dem.values)
    np.testing.assert_array_equal(cube.load(zone[0:512, 0:1024], at=second_snapshot).dem.values, full.dem.values)


def test_bad_versions_are_named(servers, make_cube):
    _, api = servers
    cube = make_cube(api.url)
    with pytest.raises(VersionNotFoundError, match="'nope'"):
        cube.rollback("nope")
    cube.tag("v1")
    with pytest.raises(StacubeError, match="tag 'v1' exists already"):
        cube.tag("v1")
    with pytest.raises(StacubeError, match="not allowed"):
        cube.tag("../v2")


def test_expire_frees_the_bytes_of_rolled_back_runs_and_keeps_tags(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    cube.download(zone[0:256, 0:256])
    cube.tag("keep")
    cube.download(zone[0:1024, 0:1024])  # 15 more patches...
    cube.rollback("keep")  # ...that no branch or tag reaches any more
    assert cube.expire("0s").bytes_freed == 0  # within the default 24 h grace nothing is collected
    report = cube.expire("0s", grace="0s")
    assert report.bytes_freed > 0 and report.chunks_deleted >= 15
    assert cube.load(zone[0:256, 0:256], offline=True, at="keep").attrs["missing_patches"] == []
    assert len(cube.state()) == 1


def test_rollback_never_discards_a_run_it_has_not_seen(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    first = cube.download(zone[0:256, 0:256])
    seen = cube.history().snapshot.iloc[0]  # the user reads the history...
    assert seen == first.snapshot_id
    second = cube.download(zone[0:256, 256:512])  # ...a scheduled run lands...
    with pytest.raises(CubeChangedError, match=second.snapshot_id):
        cube.rollback(first.snapshot_id, if_tip=seen)  # ...and the rollback the user decided on is refused
    assert cube.history().snapshot.iloc[0] == second.snapshot_id  # nothing moved
    cube.tag("before-rollback")
    assert cube.rollback(first.snapshot_id, if_tip="before-rollback") == first.snapshot_id
    assert cube.history().snapshot.iloc[0] == first.snapshot_id


def test_a_run_in_flight_during_a_rollback_lands_on_top_with_only_its_patches(servers, make_cube, sample_layout):
    from stacube.plan import attach_items
    from stacube.run import start_run
    from stacube.runners import LocalRunner

    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    first = cube.download(zone[0:256, 0:256])
    cube.download(zone[0:256, 256:512])
    in_flight = attach_items(cube.spec, cube.catalog, cube.plan(zone[256:512, 0:256]).missing)

    class RollsBackMidway(LocalRunner):
        def imap(self, work, patches):
            yield from super().imap(work, patches)
            cube.rollback(first.snapshot_id)  # the user rolls back while this run is reading


    backend = cube.spec.source.backend(cube.spec.variables)
    report = start_run(cube.repo, cube.spec, in_flight, backend, RollsBackMidway(progress=False)).complete()
    assert list(cube.history().snapshot[:2]) == [report.snapshot_id, first.snapshot_id]
    assert sorted(cube.state().id) == sorted(first.patches_written + report.patches_written)
