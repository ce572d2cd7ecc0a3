"""expire never drops the snapshot a run in progress stands on: one that was the branch tip within the grace,
however old it is (a cube last written two days ago, a run started on it, then another run landed)."""

from __future__ import annotations

import datetime as dt

import icechunk
import zarr

from stacube.history import expire, stood_on_since


def _commit(repo: icechunk.Repository, n: int) -> str:
    session = repo.writable_session("main")
    zarr.open_group(session.store, mode="a").attrs["n"] = n
    return session.commit(f"commit {n}")


def test_the_snapshots_a_run_may_stand_on_stay_and_older_ones_expire():
    repo = icechunk.Repository.create(icechunk.in_memory_storage())
    first = _commit(repo, 1)
    second = _commit(repo, 2)  # a run that started on `first` within the grace is still reading from it
    third = _commit(repo, 3)
    now = dt.datetime.now(dt.UTC)
    written = {info.id: info.written_at for info in repo.ancestry(branch="main")}
    assert stood_on_since(repo, now) == written[third]  # nothing committed since now: only the tip
    assert stood_on_since(repo, written[second]) == written[first]  # `first` was the tip until `second`
    report = expire(repo, "0s")  # default grace 24 h: every snapshot here was the tip within it
    assert report.snapshots_expired == 0
    repo.readonly_session(snapshot_id=first)  # still there
    assert expire(repo, "0s", grace="0s").snapshots_expired >= 2  # without a grace, all but the tip go
    assert next(info.id for info in repo.ancestry(branch="main")) == third


def test_a_tip_rolled_away_from_within_the_grace_keeps_what_a_run_on_it_reads():
    import time

    import numpy as np

    repo = icechunk.Repository.create(icechunk.in_memory_storage())
    session = repo.writable_session("main")
    zarr.create_array(session.store, name="v", shape=(4,), chunks=(1,), dtype="int32", fill_value=0)
    kept = session.commit("the array")
    session = repo.writable_session("main")
    zarr.open_array(session.store, path="v", mode="r+")[2] = 7  # a chunk only the next snapshot holds
    away = session.commit("a run's patch")
    time.sleep(2.5)  # `away` is now older than the grace below, and the tip: a run starts on it
    repo.reset_branch("main", kept, from_snapshot_id=away)  # then a rollback, and an expire right after
    expire(repo, "0s", grace="2s")
    values = zarr.open_array(repo.readonly_session(snapshot_id=away).store, path="v", mode="r")[:]
    assert np.array_equal(values, [0, 0, 7, 0])  # before: its chunk was collected, the run failed reading it
