"""Runs killed with SIGKILL, and four processes writing one cube at once (local disk and S3)."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from stacube import Cube

from .conftest import dem_spec
from .test_load import items_of, odc_reference

CHILD = Path(__file__).with_name("child_run.py")
BEFORE = [0, 512, 0, 512]  # pixels y0, y1, x0, x1 of the sample zone: committed before any kill
KILLED = [256, 1024, 0, 1024]  # the run that gets killed: 12 patches, 2 of them filled before


def child(url, catalog, roi, *extra) -> list[str]:
    return [sys.executable, str(CHILD), str(url), str(catalog), json.dumps(roi), *extra]


def window(zone, roi):
    y0, y1, x0, x1 = roi
    return zone[y0:y1, x0:x1]


def tip(cube: Cube) -> str:
    return cube.repo.lookup_branch("main")


def assert_cube_as_before(url, catalog, snapshot, state_ids, values, zone):
    """Opens, still at ``snapshot``, with the same filled record and the same values as before."""
    cube = Cube.open(url, catalog_dir=catalog)
    assert tip(cube) == snapshot
    assert set(cube.state().id) == state_ids
    again = cube.load(window(zone, BEFORE), offline=True)
    np.testing.assert_array_equal(again.dem.values, values)


def test_a_killed_run_leaves_the_previous_snapshot_and_the_next_run_completes(servers, sample_layout, tmp_path):
    _, api = servers
    zone = sample_layout.extent_geobox()
    url, catalog = tmp_path / "cube.icechunk", tmp_path / "catalog"
    cube = Cube.create(url, dem_spec(api.url, sample_layout), catalog_dir=catalog)
    cube.download(window(zone, BEFORE))
    before, before_ids = tip(cube), set(cube.state().id)
    before_values = cube.load(window(zone, BEFORE), offline=True).dem.values

    # Killed at each point of the run: inside the reads, after fork writes, after the merge, in the commit.
    for phase in ("read", "write", "merge"):
        done = subprocess.run(child(url, catalog, KILLED, "--kill-at", phase), capture_output=True, text=True)
        assert done.returncode == -signal.SIGKILL, (phase, done.stderr[-2000:])
        assert_cube_as_before(url, catalog, before, before_ids, before_values, zone)

    landed = []
    for delay_ms in (0.0, 2.0, 8.0):
        done = subprocess.run(child(url, catalog, KILLED, "--kill-at", "commit", "--kill-delay", str(delay_ms)),
                              capture_output=True, text=True)
        assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
        cube = Cube.open(url, catalog_dir=catalog)
        if tip(cube) != before:  # the commit was through when the kill came: then it landed whole
            landed.append(tip(cube))
            assert cube.repo.lookup_snapshot(tip(cube)).parent_id == before
            assert len(cube.state()) == len(before_ids) + 10
            cube.rollback(before)
        assert_cube_as_before(url, catalog, before, before_ids, before_values, zone)

    # Killed at random moments of the run (the child says when it starts downloading).
    rng = random.Random(8)
    started = time.perf_counter()
    subprocess.run(child(url, catalog, KILLED), check=True, capture_output=True)
    full_run = time.perf_counter() - started
    Cube.open(url, catalog_dir=catalog).rollback(before)
    for _ in range(4):
        proc = subprocess.Popen(child(url, catalog, KILLED), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        time.sleep(rng.uniform(0.2, full_run))
        proc.send_signal(signal.SIGKILL)
        proc.communicate()
        cube = Cube.open(url, catalog_dir=catalog)
        if tip(cube) != before:
            cube.rollback(before)
        assert_cube_as_before(url, catalog, before, before_ids, before_values, zone)

    # The next run needs no clean-up and ends where an uninterrupted run ends.
    cube = Cube.open(url, catalog_dir=catalog)
    report = cube.download(window(zone, KILLED))
    assert len(report.patches_written) == 10 and report.patches_already_filled == 2
    reference = Cube.create(tmp_path / "reference.icechunk", dem_spec(api.url, sample_layout), catalog_dir=catalog)
    reference.download(window(zone, BEFORE))
    reference.download(window(zone, KILLED))
    for roi in (BEFORE, KILLED):
        ours, theirs = cube.load(window(zone, roi), offline=True), reference.load(window(zone, roi), offline=True)
        for name in ("dem", "datamask"):
            np.testing.assert_array_equal(ours[name].values, theirs[name].values)
    assert set(cube.state().id) == set(reference.state().id)
    dem, _ = odc_reference(items_of(api.url), window(zone, KILLED))
    np.testing.assert_array_equal(cube.load(window(zone, KILLED), offline=True).dem.values, dem[0])
    leftovers = [p for p in Path(catalog).rglob("*.tmp")]
    assert leftovers == []


FOUR_ROIS = [[0, 768, 0, 768], [512, 1280, 512, 1280], [0, 768, 512, 1280], [512, 1280, 0, 768]]


@pytest.mark.parametrize("where", ["disk", "s3"])
def test_four_processes_loading_overlapping_rois_at_once(where, servers, sample_layout, tmp_path, request):
    _, api = servers
    zone = sample_layout.extent_geobox()
    if where == "s3":
        request.getfixturevalue("s3_endpoint")
        url = f"s3://cubes/four-{tmp_path.name}"
    else:
        url = tmp_path / "cube.icechunk"
    catalog = tmp_path / "catalog"  # empty: the four processes also sync the catalog at once
    Cube.create(url, dem_spec(api.url, sample_layout), catalog_dir=catalog)
    ready = tmp_path / "go"
    procs = [subprocess.Popen(child(url, catalog, roi, "--load", "--ready", str(ready)),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for roi in FOUR_ROIS]
    time.sleep(2)  # all four imported and waiting
    ready.touch()
    outputs = [proc.communicate(timeout=300) for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err[-3000:]
        assert "Traceback" not in err

    items = items_of(api.url)
    for roi, (out, _) in zip(FOUR_ROIS, outputs, strict=True):
        dem, mask = odc_reference(items, window(zone, roi))
        seen = json.loads(out.strip().splitlines()[-1])
        assert seen["valid"] == int((mask[0] > 0).sum())
        assert seen["dem_sum"] == pytest.approx(float(np.nansum(dem[0])), rel=1e-6)

    cube = Cube.open(url, catalog_dir=catalog)
    state = cube.state()
    assert len(state) == 25 and state.id.is_unique  # the 5 x 5 patches under the union, each once
    union = zone[0:1280, 0:1280]
    dem, mask = odc_reference(items, union)
    tile = cube.load(union, offline=True)
    np.testing.assert_array_equal(tile.dem.values, dem[0])
    np.testing.assert_array_equal(tile.datamask.values, mask[0])
    # Each patch's data came from one run, and that run's commit lists the patch.
    written_by = {}
    for snapshot in cube.repo.ancestry(branch="main"):
        meta = snapshot.metadata.get("stacube") or {}
        for patch in meta.get("patches", []):
            written_by.setdefault(patch, set()).add(snapshot.id)
    for patch, snapshot in zip(state.id, state.snapshot, strict=True):
        assert snapshot in written_by[patch]
    assert len(cube.catalog) == len(cube.catalog.item_ids()) >= 9  # four syncs at once: every Item held once
