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
