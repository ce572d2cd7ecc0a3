"""A cube's versions: name a snapshot, put the branch back on an older one, expire old ones.

Because the record of filled patches lives in the cube, every operation here moves the record
with the data: after a rollback, the patches the later runs wrote count as missing again.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import icechunk
import pandas as pd

from .errors import CubeChangedError, StacubeError, VersionNotFoundError
from .spec import check_name
from .store import BRANCH
from .timeaxis import aware_utc

METADATA_KEY = "stacube"  # stacube's entry in a snapshot's commit metadata (run id, stamp, patches, ROI, ...)


@dataclass(frozen=True)
class ExpireReport:
    """What ``expire`` removed: snapshots no longer reachable, and the bytes garbage-collected."""

    snapshots_expired: int
    bytes_freed: int
    chunks_deleted: int
    held_by_grace: bool = False  # snapshots expired, but their objects are younger than the grace period

    @property
    def note(self) -> str | None:
        """What a person should know that the figures do not say."""
        if self.held_by_grace:
            return (f"{self.snapshots_expired} snapshot(s) expired, but nothing was freed: objects younger than the "
                    "grace period are kept (a run in progress may need them); run expire again once they are older, "
                    "or pass a shorter grace")
        return None


def run_metadata(repo: icechunk.Repository,
                 branch: str = BRANCH) -> Iterator[tuple[icechunk.SnapshotInfo, dict[str, Any]]]:
    """The snapshots on ``branch``, newest first, each with stacube's entry of its commit metadata
    (``{}`` for a snapshot that has none, such as Icechunk's first). The one walk of the history."""
    for snap in repo.ancestry(branch=branch):
        yield snap, (snap.metadata or {}).get(METADATA_KEY, {})


def resolve(repo: icechunk.Repository, version: str) -> str:
    """The snapshot id of a tag or snapshot id; names the value if there is no such version."""
    if version in repo.list_tags():
        return repo.lookup_tag(version)
    try:
        return repo.lookup_snapshot(version).id
    except (icechunk.IcechunkError, ValueError) as err:
        tags = sorted(repo.list_tags())
        raise VersionNotFoundError(f"no snapshot or tag {version!r} in this cube (tags: {tags})") from err


def tag(repo: icechunk.Repository, name: str, snapshot: str | None = None) -> str:
    """Name ``snapshot`` (default: the branch tip); returns the snapshot id."""
    check_name("tag", name)
    if name in repo.list_tags():
        raise StacubeError(f"tag {name!r} exists already (at {repo.lookup_tag(name)}); tags never move")
    snapshot_id = resolve(repo, snapshot) if snapshot else repo.lookup_branch(BRANCH)
    repo.create_tag(name, snapshot_id)
    return snapshot_id


def rollback(repo: icechunk.Repository, to: str, if_tip: str | None = None) -> str:
    """Point the branch at ``to`` (a snapshot id or tag) again; returns that snapshot id.

    The reset only happens if the branch still points where it was read (``if_tip``, default: now),
    so a run that commits at the same moment is never silently discarded. Runs still in flight
    when the branch moves back commit on top of ``to`` with only their own patches.
    """
    snapshot_id = resolve(repo, to)
    expected = resolve(repo, if_tip) if if_tip else repo.lookup_branch(BRANCH)
    try:
        repo.reset_branch(BRANCH, snapshot_id, from_snapshot_id=expected)
    except icechunk.ConflictError as err:
        raise CubeChangedError(
            f"not rolled back to {to!r}: the cube moved past {expected} (now at {repo.lookup_branch(BRANCH)}); "
            "look at cube.history() again and retry"
        ) from err
    return snapshot_id


def cutoff(older_than: dt.datetime | dt.timedelta | str) -> dt.datetime:
    """A UTC instant from a datetime, a timedelta or a pandas duration string ('30D') before now."""
    if isinstance(older_than, dt.datetime):
        stamp = pd.Timestamp(older_than)
    else:
        try:
            stamp = pd.Timestamp.now(tz="UTC") - pd.Timedelta(older_than)
        except ValueError as err:
            raise StacubeError(f"older_than={older_than!r} is neither a datetime nor a duration") from err
    return aware_utc(stamp).to_pydatetime()


def expire(repo: icechunk.Repository, older_than: dt.datetime | dt.timedelta | str,
           keep_tags: bool = True, grace: dt.timedelta | str = "24h") -> ExpireReport:
    """Expire snapshots older than the cutoff (the branch tip and, unless told, tagged ones stay),
    then garbage-collect what nothing reaches any more.

    Objects younger than ``grace`` are never collected: a run in progress has written chunks that
    no snapshot references yet, and collecting them would break its commit.
    """
    when = cutoff(older_than)
    expired = repo.expire_snapshots(when, delete_expired_tags=not keep_tags)
    kept_after = cutoff(grace)
    summary = repo.garbage_collect(min(when, kept_after))
    held = bool(expired) and summary.bytes_deleted == 0 and kept_after < when
    return ExpireReport(len(expired), summary.bytes_deleted, summary.chunks_deleted, held)
