"""A cube's versions: name a snapshot, put the branch back on an older one, expire old ones.

Because the record of filled patches lives in the cube, every operation here moves the record
with the data: after a rollback, the patches the later runs wrote count as missing again.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import icechunk
import pandas as pd

from .errors import CubeChangedError, SpecError, TOIError, VersionNotFoundError
from .layout import SPEC_ATTR
from .spec import check_name
from .store import BRANCH
from .timeaxis import aware_utc, duration_problem

METADATA_KEY = "stacube"  # stacube's entry in a snapshot's commit metadata (run id, stamp, patches, ROI, ...)


@dataclass(frozen=True)
class ExpireReport:
    """What ``expire`` removed: snapshots no longer reachable, and the bytes garbage-collected."""

    snapshots_expired: int
    """How many snapshots were expired (no longer reachable from the branch or a kept tag)."""
    bytes_freed: int
    """Bytes garbage collection deleted from the cube's storage."""
    chunks_deleted: int
    """How many chunk objects garbage collection deleted."""
    held_by_grace: bool = False
    """True when snapshots expired but nothing was freed because their objects are younger than the grace
    period (``expire``'s ``grace``): a later ``expire`` frees them."""
    kept_as_recent_tips: int = 0
    """Snapshots older than the cutoff that stayed because they were the branch tip within the grace period:
    a run that started on one still reads from it (a later ``expire`` drops them)."""

    @property
    def note(self) -> str | None:
        """What a person should know that the figures do not say: why nothing was freed, or None."""
        notes = []
        if self.kept_as_recent_tips:
            notes.append(f"{self.kept_as_recent_tips} snapshot(s) older than the cutoff were kept: they were the "
                         "branch tip within the grace period, and a run in progress may stand on them")
        if self.held_by_grace:
            notes.append(f"{self.snapshots_expired} snapshot(s) expired, but nothing was freed: objects younger than "
                         "the grace period are kept (a run in progress may need them)")
        if notes:
            return "; ".join(notes) + "; run expire again once they are older, or pass a shorter grace"
        return None


def run_metadata(repo: icechunk.Repository,
                 branch: str = BRANCH) -> Iterator[tuple[icechunk.SnapshotInfo, dict[str, Any]]]:
    """The snapshots on ``branch``, newest first, each with stacube's entry of its commit metadata.

    The one walk of the history: ``Cube.history``, ``Cube.state`` and the last ROIs all read it.

    Parameters
    ----------
    repo : icechunk.Repository
        The cube's repository.
    branch : str, optional
        The branch to walk (stacube's one branch, ``main``, by default).

    Returns
    -------
    Iterator[tuple[icechunk.SnapshotInfo, dict[str, Any]]]
        Each snapshot with the ``stacube`` entry of its commit metadata (run id, stamp, patches, ROI, ...),
        ``{}`` for a snapshot that has none, such as Icechunk's first.
    """
    for snap in repo.ancestry(branch=branch):
        yield snap, (snap.metadata or {}).get(METADATA_KEY, {})


def resolve(repo: icechunk.Repository, version: str) -> str:
    """The snapshot id a version names, so that every command takes a tag or a snapshot id alike.

    Parameters
    ----------
    repo : icechunk.Repository
        The cube's repository.
    version : str
        A tag, or a snapshot id (a tag wins where both match).

    Returns
    -------
    str
        The snapshot id.

    Raises
    ------
    VersionNotFoundError
        If ``version`` is neither a tag nor a snapshot of this cube; the message lists the tags.
    """
    if version in repo.list_tags():
        return repo.lookup_tag(version)
    try:
        return repo.lookup_snapshot(version).id
    except (icechunk.IcechunkError, ValueError) as err:
        tags = sorted(repo.list_tags())
        raise VersionNotFoundError(f"no snapshot or tag {version!r} in this cube (tags: {tags})") from err


_SNAPSHOT_ID = re.compile(r"[0-9A-HJKMNP-TV-Z]{20}")  # Icechunk's: 20 characters of Crockford's base32


def check_holds_cube(repo: icechunk.Repository, snapshot_id: str, version: str) -> None:
    """Refuse a snapshot that holds no cube: the repository's first one ("Repository initialized"), made before
    the cube's spec was written. Rolled back to, it would leave a cube nothing can open again.

    Parameters
    ----------
    repo : icechunk.Repository
        The cube's repository.
    snapshot_id : str
        The snapshot (``resolve``'s answer).
    version : str
        What the caller named it, for the message.

    Raises
    ------
    VersionNotFoundError
        If the snapshot holds no cube root with its spec.
    """
    import zarr

    try:
        root = zarr.open_group(repo.readonly_session(snapshot_id=snapshot_id).store, mode="r")
    except (zarr.errors.GroupNotFoundError, FileNotFoundError, KeyError):
        root = None
    check_cube_root(root, snapshot_id, version)


def check_cube_root(root: Any, snapshot_id: str, version: str) -> None:
    """Refuse a snapshot's root group (None: it has none) that holds no cube's spec (``check_holds_cube``), for a
    caller that opened the group already.

    Parameters
    ----------
    root : zarr.Group or None
        The snapshot's root group, or None where it has none.
    snapshot_id : str
        The snapshot.
    version : str
        What the caller named it, for the message.

    Raises
    ------
    VersionNotFoundError
        If there is no root, or it holds no spec.
    """
    if root is None or SPEC_ATTR not in root.attrs:
        raise VersionNotFoundError(f"snapshot {version!r} ({snapshot_id}) holds no cube: it is the repository's "
                                   "first snapshot, from before the cube was created; choose a later one in "
                                   "cube.history()")


def tag(repo: icechunk.Repository, name: str, snapshot: str | None = None) -> str:
    """Name a snapshot for good, so that it can be loaded, rolled back to and kept by ``expire``.

    Parameters
    ----------
    repo : icechunk.Repository
        The cube's repository.
    name : str
        The new tag: letters, digits, ``_``, ``-`` and ``.``. Tags never move.
    snapshot : str or None, optional
        The snapshot to name, as a tag or snapshot id; None (or empty): the branch tip.

    Returns
    -------
    str
        The snapshot id the tag names.

    Raises
    ------
    SpecError
        If ``name`` is not an allowed name, is written as a snapshot id is (20 characters of Crockford's base32),
        or a tag ``name`` exists already (on any snapshot).
    VersionNotFoundError
        If ``snapshot`` names no tag or snapshot of this cube.
    """
    check_name("tag", name)
    if _SNAPSHOT_ID.fullmatch(name):  # resolve() prefers tags: it would hide the snapshot of that id
        raise SpecError(f"tag {name!r} is written as a snapshot id is: choose a name that cannot be one")
    if name in repo.list_tags():
        raise SpecError(f"tag {name!r} exists already (at {repo.lookup_tag(name)}); tags never move: "
                        "choose another name")
    snapshot_id = resolve(repo, snapshot) if snapshot else repo.lookup_branch(BRANCH)
    repo.create_tag(name, snapshot_id)
    return snapshot_id


def rollback(repo: icechunk.Repository, to: str, if_tip: str | None = None) -> str:
    """Point the branch at an older snapshot again: the data and the record of filled patches go back together.

    The reset only happens if the branch still points where it was read (``if_tip``, default: now),
    so a run that commits at the same moment is never silently discarded. Runs still in flight
    when the branch moves back commit on top of ``to`` with only their own patches.

    Parameters
    ----------
    repo : icechunk.Repository
        The cube's repository.
    to : str
        The snapshot to go back to, as a tag or snapshot id.
    if_tip : str or None, optional
        Where the caller saw the branch (tag or snapshot id); None: where it is now.

    Returns
    -------
    str
        The snapshot id the branch now points at.

    Raises
    ------
    VersionNotFoundError
        If ``to`` or ``if_tip`` names no tag or snapshot of this cube, or ``to`` holds no cube (the repository's
        first snapshot).
    CubeChangedError
        If the branch no longer points at ``if_tip``: another process committed meanwhile; nothing moved.
    """
    snapshot_id = resolve(repo, to)
    check_holds_cube(repo, snapshot_id, to)
    expected = resolve(repo, if_tip) if if_tip else repo.lookup_branch(BRANCH)
    try:
        repo.reset_branch(BRANCH, snapshot_id, from_snapshot_id=expected)
    except icechunk.ConflictError as err:
        raise CubeChangedError(
            f"not rolled back to {to!r}: the cube moved past {expected} (now at {repo.lookup_branch(BRANCH)}); "
            "look at cube.history() again and retry"
        ) from err
    return snapshot_id




def cutoff(older_than: dt.datetime | dt.timedelta | str, name: str = "older_than") -> dt.datetime:
    """The instant before which ``expire`` drops snapshots, from whatever the user gave.

    Parameters
    ----------
    older_than : datetime, timedelta or str
        An instant (naive: taken as UTC), or how long before now, 0 or more: a timedelta or anything
        ``pd.Timedelta`` reads with a unit (``"30D"``, ``"24h"``).
    name : str, optional
        The parameter's name, for the error message (``expire`` passes ``"grace"`` too).

    Returns
    -------
    datetime.datetime
        A tz-aware UTC instant.

    Raises
    ------
    TOIError
        If ``older_than`` is neither a datetime nor a duration ``pd.Timedelta`` reads (``"abc"``, a date,
        None, ``""``), is a number without a unit (``30``, ``"30"``), is negative, or is NaT.
    """
    given = f"{name}={older_than!r}"
    neither = f"{given} is neither a datetime nor a duration such as '30D' or '24h'"
    try:
        if isinstance(older_than, dt.datetime):  # pd.Timestamp too (and pd.NaT, refused below)
            stamp = pd.Timestamp(older_than)
        else:
            age, problem = duration_problem(older_than)
            if problem == "has no unit":
                raise TOIError(f"{given} has no unit: give a duration such as '30D' or '24h', a timedelta or a "
                               "datetime")
            if problem == "is negative":
                raise TOIError(f"{given} is negative: give how long before now, 0 or more (e.g. '30D')")
            stamp = pd.NaT if age is None else pd.Timestamp.now(tz="UTC") - age
    except (ValueError, TypeError, OverflowError) as err:
        if isinstance(err, TOIError):
            raise
        raise TOIError(neither) from err
    if pd.isna(stamp):
        raise TOIError(neither)
    return aware_utc(stamp).to_pydatetime()


def stood_on_since(repo: icechunk.Repository, since: dt.datetime) -> dt.datetime | None:
    """When the oldest snapshot that was still the branch tip at ``since`` or later was written: a run that
    started since then stands on it, or on a newer one. None for a branch without snapshots.

    Parameters
    ----------
    repo : icechunk.Repository
        The cube's repository.
    since : datetime.datetime
        A tz-aware instant (``expire``'s grace before now).

    Returns
    -------
    datetime.datetime or None
        That snapshot's ``written_at``.
    """
    oldest, child_written = None, None
    for info in repo.ancestry(branch=BRANCH):  # newest first
        if child_written is not None and child_written < since:
            break  # its successor came before ``since``: it was no longer the tip then
        oldest, child_written = info.written_at, info.written_at
    return oldest


def rolled_away_since(repo: icechunk.Repository, since: dt.datetime) -> dt.datetime | None:
    """When the oldest snapshot was written that only a tip the branch was reset away from (``rollback``) at
    ``since`` or later still reaches: a run that started on that tip reads from it. None if there is none.

    Parameters
    ----------
    repo : icechunk.Repository
        The cube's repository.
    since : datetime.datetime
        A tz-aware instant (``expire``'s grace before now).

    Returns
    -------
    datetime.datetime or None
        That snapshot's ``written_at``.
    """
    on_branch = None
    oldest = None
    for update in repo.ops_log():  # newest first
        if update.updated_at < since:
            break
        kind = update.kind
        if type(kind).__name__ != "BranchReset" or getattr(kind, "name", None) != BRANCH:
            continue
        if on_branch is None:
            on_branch = {info.id for info in repo.ancestry(branch=BRANCH)}
        try:
            for info in repo.ancestry(snapshot_id=kind.previous_snap_id):  # newest first, down to the branch
                if info.id in on_branch:
                    break
                oldest = info.written_at if oldest is None else min(oldest, info.written_at)
        except icechunk.IcechunkError:  # collected already: nothing of it left to keep
            continue
    return oldest


def expire(repo: icechunk.Repository, older_than: dt.datetime | dt.timedelta | str,
           keep_tags: bool = True, grace: dt.timedelta | str = "24h") -> ExpireReport:
    """Expire snapshots older than the cutoff (the branch tip and, unless told, tagged ones stay),
    then garbage-collect what nothing reaches any more, so that an old cube's storage stops growing.

    Objects younger than ``grace`` are never collected: a run in progress has written chunks that
    no snapshot references yet, and collecting them would break its commit. Nor does a snapshot that
    was the branch tip within ``grace`` expire, however old: a run in progress may have started on it
    and still read from it (``stood_on_since``); that holds for a tip a rollback moved the branch away
    from within ``grace`` too (``rolled_away_since``, from the repository's log of branch updates).

    Parameters
    ----------
    repo : icechunk.Repository
        The cube's repository.
    older_than : datetime, timedelta or str
        Snapshots written before this instant (or this long before now) expire; see ``cutoff``.
    keep_tags : bool, optional
        Keep tagged snapshots and their tags (default); False expires them too and deletes their tags.
    grace : timedelta or str, optional
        Objects younger than this are never collected (default ``"24h"``).

    Returns
    -------
    ExpireReport
        How many snapshots expired and what garbage collection freed.

    Raises
    ------
    TOIError
        If ``older_than`` or ``grace`` is neither a datetime nor a duration of 0 or more (``cutoff``);
        nothing is expired then.
    """
    when = cutoff(older_than)
    kept_after = cutoff(grace, "grace")  # both checked before anything expires
    standing = stood_on_since(repo, kept_after)
    kept, expire_before = 0, when
    if standing is not None and standing < when:  # a run that started within the grace stands on it
        snapshots = list(repo.ancestry(branch=BRANCH))  # newest first: the tip never expires anyway
        kept = sum(1 for info in snapshots[1:] if standing <= info.written_at < when and info.parent_id is not None)
        expire_before = standing
    expired = repo.expire_snapshots(expire_before, delete_expired_tags=not keep_tags)
    # what the branch and kept tags reach stays whatever its age; the rest goes once older than both cutoffs,
    # and older than what a tip rolled away from within the grace reaches (a run may stand on it)
    rolled_away = rolled_away_since(repo, kept_after)
    summary = repo.garbage_collect(min(when, kept_after, *([rolled_away] if rolled_away is not None else [])))
    held = bool(expired) and summary.bytes_deleted == 0 and kept_after < when
    return ExpireReport(len(expired), summary.bytes_deleted, summary.chunks_deleted, held, kept)
