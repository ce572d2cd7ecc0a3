"""Commit a run over runs that committed meanwhile, settling patches both wrote one by one.

Runs that wrote different patches rebase cleanly. When another run committed some of the same
patches, each such patch gets one winner, by a rule that depends only on the two runs and never on
which of them commits first: a patch with data beats a patch found empty, and between two of a kind
the run with the later stamp wins (equal stamps: this run). The winner's chunks are kept for every
variable and for the filled record, so data and record always come from the same run, and the
commit metadata names every settled patch.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import icechunk
import zarr

from .grid import PatchIndex
from .layout import FILLED
from .spec import CubeSpec
from .store import BRANCH

log = logging.getLogger(__name__)
RULE = "a patch with data beats an empty one; between two of a kind the run with the later stamp wins"


def _rank(stamp: int) -> tuple[int, int]:
    """Order of preference of a filled-record value: data (>0) over empty (<0) over unfilled (0), then later."""
    return (2 if stamp > 0 else 1 if stamp < 0 else 0, abs(int(stamp)))


def _cells(changes: dict[str, list[list[int]]], path: str) -> set[tuple[int, ...]]:
    return {tuple(c) for c in changes.get(path, [])}


def _copy_chunk(source: zarr.Group | None, target: zarr.Group, name: str, cell: tuple[int, ...]) -> None:
    """Make ``target``'s chunk ``cell`` of ``name`` what it is in ``source`` (absent there: absent here)."""
    array = target[name]
    key = f"{array.path}/{array.metadata.encode_chunk_key(cell)}"
    if source is not None and source.store.session.chunk_type(f"/{array.path}", list(cell)) != \
            icechunk.ChunkType.uninitialized:
        array.blocks[cell] = source[name].blocks[cell]
    else:
        zarr.core.sync.sync(target.store.delete(key))


def settle(repo: icechunk.Repository, session: icechunk.Session, spec: CubeSpec, patches: Sequence[PatchIndex],
           theirs_from: str, theirs_to: str) -> dict[str, str]:
    """Settle the patches this session and the commits ``theirs_from..theirs_to`` both wrote.

    Where the other run wins, this session's chunks of that patch are made equal to the other run's
    (or to the base, for chunks only this run wrote), so that rebasing with "ours" keeps the winner.
    Returns patch id -> "this run" or "other run".
    """
    ours = session.status().updated_chunks
    theirs = repo.diff(from_snapshot_id=theirs_from, to_snapshot_id=theirs_to).updated_chunks
    ids = {(p.zone, p.cell): p.id for p in patches}
    mine = zarr.open_group(session.store, mode="r+")
    other = zarr.open_group(repo.readonly_session(snapshot_id=theirs_to).store, mode="r")
    base = zarr.open_group(repo.readonly_session(snapshot_id=theirs_from).store, mode="r")
    names = [*spec.variables, FILLED]
    decisions: dict[str, str] = {}
    for zone in spec.zones:
        filled_path = f"/{zone}/{FILLED}"
        for cell in sorted(_cells(ours, filled_path) & _cells(theirs, filled_path)):
            our_stamp = int(mine[zone][FILLED][cell])
            their_stamp = int(other[zone][FILLED][cell])
            theirs_win = _rank(their_stamp) > _rank(our_stamp)
            for name in names:
                path = f"/{zone}/{name}"
                if theirs_win and cell in _cells(ours, path):
                    _copy_chunk(other[zone], mine[zone], name, cell)
                elif not theirs_win and cell in _cells(theirs, path) and cell not in _cells(ours, path):
                    _copy_chunk(base[zone], mine[zone], name, cell)
            decisions[ids.get((zone, cell), f"{zone}/{cell}")] = "other run" if theirs_win else "this run"
    return decisions


def commit_settling_overlaps(repo: icechunk.Repository, session: icechunk.Session, spec: CubeSpec,
                             patches: Sequence[PatchIndex], message: str, metadata: dict[str, Any],
                             key: str, tries: int = 50) -> str:
    """Commit ``session``; if other runs wrote some of the same patches meanwhile, settle them first."""
    try:
        return session.commit(message, metadata=metadata, rebase_with=icechunk.ConflictDetector())
    except icechunk.RebaseFailedError:
        base = session.snapshot_id  # commits up to here rebased cleanly; settle from here on
    decisions: dict[str, str] = {}
    keep_ours = icechunk.BasicConflictSolver(on_chunk_conflict=icechunk.VersionSelection.UseOurs)
    for _ in range(tries):
        tip = repo.lookup_branch(BRANCH)
        decisions.update(settle(repo, session, spec, patches, base, tip))
        session.rebase(keep_ours)
        base = tip
        if session.snapshot_id != tip:  # yet another run committed while we settled: settle it too
            continue
        metadata[key]["overlap"] = {
            "rule": RULE,
            "kept_this_run": sorted(p for p, who in decisions.items() if who == "this run"),
            "kept_other_run": sorted(p for p, who in decisions.items() if who == "other run"),
        }
        log.warning("%d patch(es) were also written by a concurrent run; settled: %s", len(decisions), decisions)
        try:
            return session.commit(message, metadata=metadata)
        except icechunk.ConflictError:
            continue
    raise RuntimeError(f"could not commit after settling overlaps with concurrent runs {tries} times")

