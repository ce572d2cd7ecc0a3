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
import numpy as np
import zarr

from .errors import CubeChangedError
from .grid import PatchIndex
from .layout import FILLED, chunk_exists
from .spec import CubeSpec
from .store import BRANCH
from .zarr_sync import run_on_zarr_loop

log = logging.getLogger(__name__)
RULE = "a patch with data beats an empty one; between two of a kind the run with the later stamp wins"


def _rank(stamp: int) -> tuple[int, int]:
    """Order of preference of a filled-record value: data (>0) over empty (<0) over unfilled (0), then later."""
    return (2 if stamp > 0 else 1 if stamp < 0 else 0, abs(int(stamp)))


def _cell_sets(changes: dict[str, list[list[int]]]) -> dict[str, set[tuple[int, ...]]]:
    return {path: {tuple(c) for c in cells} for path, cells in changes.items()}


def _stamps(array: zarr.Array, cells: list[tuple[int, ...]]) -> list[int]:
    """The filled-record values at ``cells``, in one read."""
    return array.get_coordinate_selection(tuple(np.array(cells).T)).tolist() if cells else []


def _copy_chunk(source: zarr.Group | None, target: zarr.Group, name: str, cell: tuple[int, ...]) -> None:
    """Make ``target``'s chunk ``cell`` of ``name`` what it is in ``source`` (absent there: absent here)."""
    array = target[name]
    key = f"{array.path}/{array.metadata.encode_chunk_key(cell)}"
    if source is not None and chunk_exists(source.store.session, f"/{array.path}", cell):
        array.blocks[cell] = source[name].blocks[cell]
    else:
        run_on_zarr_loop(target.store.delete(key))


def _replay_on_tip(repo: icechunk.Repository, session: icechunk.Session,
                   spec: CubeSpec) -> tuple[icechunk.Session, dict[str, list[tuple[int, ...]]]]:
    """A fresh session at the branch tip holding this session's patches, settled by the same rule:
    where the tip already holds a patch that ranks higher, the tip's is kept. Returns the session
    and the cells that both had written."""
    ours = _cell_sets(session.status().updated_chunks)
    fresh = repo.writable_session(BRANCH)
    mine = zarr.open_group(session.store, mode="r")
    target = zarr.open_group(fresh.store, mode="r+")
    settled: dict[str, list[tuple[int, ...]]] = {}
    for zone in spec.zones:
        cells = sorted(ours.get(f"/{zone}/{FILLED}", set()))
        if not cells:
            continue
        for cell, our_stamp, tip_stamp in zip(cells, _stamps(mine[zone][FILLED], cells),
                                              _stamps(target[zone][FILLED], cells), strict=True):
            if tip_stamp != 0:
                settled.setdefault(zone, []).append(cell)
            if _rank(tip_stamp) > _rank(our_stamp):
                continue
            for name in [*spec.variables, FILLED]:
                if cell in ours.get(f"/{zone}/{name}", ()) or tip_stamp != 0:
                    _copy_chunk(mine[zone], target[zone], name, cell)
    return fresh, settled


def settle(repo: icechunk.Repository, session: icechunk.Session, spec: CubeSpec,
           theirs_from: str, theirs_to: str) -> dict[str, list[tuple[int, ...]]]:
    """Settle the patches this session and the commits ``theirs_from..theirs_to`` both wrote.

    Where the other run wins, this session's chunks of that patch are made equal to the other run's
    (or to the base, for chunks only this run wrote), so that rebasing with "ours" keeps the winner.
    Returns the settled cells per zone.
    """
    ours = _cell_sets(session.status().updated_chunks)
    theirs = _cell_sets(repo.diff(from_snapshot_id=theirs_from, to_snapshot_id=theirs_to).updated_chunks)
    mine = zarr.open_group(session.store, mode="r+")
    other = zarr.open_group(repo.readonly_session(snapshot_id=theirs_to).store, mode="r")
    base = zarr.open_group(repo.readonly_session(snapshot_id=theirs_from).store, mode="r")
    settled: dict[str, list[tuple[int, ...]]] = {}
    for zone in spec.zones:
        filled_path = f"/{zone}/{FILLED}"
        cells = sorted(ours.get(filled_path, set()) & theirs.get(filled_path, set()))
        if not cells:
            continue
        settled[zone] = cells
        mine_zone, other_zone, base_zone = mine[zone], other[zone], base[zone]
        paths = {name: f"/{zone}/{name}" for name in [*spec.variables, FILLED]}
        for cell, our_stamp, their_stamp in zip(cells, _stamps(mine_zone[FILLED], cells),
                                                _stamps(other_zone[FILLED], cells), strict=True):
            theirs_win = _rank(their_stamp) > _rank(our_stamp)
            for name, path in paths.items():
                wrote_it, they_wrote_it = cell in ours.get(path, ()), cell in theirs.get(path, ())
                if theirs_win and wrote_it:
                    _copy_chunk(other_zone, mine_zone, name, cell)
                elif not theirs_win and they_wrote_it and not wrote_it:
                    _copy_chunk(base_zone, mine_zone, name, cell)
    return settled


def _common_base(repo: icechunk.Repository, base: str, tip: str) -> str:
    """``base`` if the branch still descends from it; after a rollback, the newest snapshot both share."""
    mine = {info.id for info in repo.ancestry(snapshot_id=base)}
    return next(info.id for info in repo.ancestry(snapshot_id=tip) if info.id in mine)


def commit_settling_overlaps(repo: icechunk.Repository, session: icechunk.Session, spec: CubeSpec,
                             patches: Sequence[PatchIndex], message: str, metadata: dict[str, Any],
                             key: str, tries: int = 50) -> str:
    """Commit ``session``; if other runs wrote some of the same patches meanwhile, settle them first.

    Every commit is made on a view of the tip it lands on that was checked to hold the run's time
    steps (``_refuse_lost_steps``): a rollback to a shorter axis while the run read fails the run."""
    for _ in range(tries):
        _refuse_lost_steps(session, patches)
        try:
            return session.commit(message, metadata=metadata)
        except icechunk.ConflictError:  # the branch moved: rebase onto it, then look again
            pass
        try:
            session.rebase(icechunk.ConflictDetector())
        except icechunk.RebaseFailedError:
            break
    else:
        raise CubeChangedError(f"could not commit: the branch moved under this run {tries} times")
    base = session.snapshot_id  # commits up to here rebased cleanly; settle from here on
    settled: dict[str, set[tuple[int, ...]]] = {}
    keep_ours = icechunk.BasicConflictSolver(on_chunk_conflict=icechunk.VersionSelection.UseOurs)
    replays = 0
    for _ in range(tries):
        tip = repo.lookup_branch(BRANCH)
        try:
            found = settle(repo, session, spec, base, tip)
        except icechunk.IcechunkError:  # rolled back meanwhile: the tip no longer descends from base
            found = settle(repo, session, spec, _common_base(repo, base, tip), tip)
        for zone, cells in found.items():
            settled.setdefault(zone, set()).update(cells)
        try:
            session.rebase(keep_ours)
        except icechunk.RebaseFailedError as err:
            # The cube's structure changed under this run (its time axis grew): no rebase carries chunks
            # across an array's new shape, so this run's patches are copied onto the new tip instead.
            if replays >= 3:
                raise CubeChangedError(f"the cube's structure kept changing under this run ({err}); "
                                   "nothing was committed") from err
            replays += 1
            session, found = _replay_on_tip(repo, session, spec)
            for zone, cells in found.items():
                settled.setdefault(zone, set()).update(cells)
            base = session.snapshot_id
            if not settled:
                _refuse_lost_steps(session, patches)
                try:
                    return session.commit(message, metadata=metadata)
                except icechunk.ConflictError:
                    continue
            tip = base
        base = tip
        if session.snapshot_id != tip:  # yet another run committed while we settled: settle it too
            continue
        metadata[key]["overlap"] = _outcome(session, settled, patches, metadata[key]["stamp"])
        log.warning("patches also written by a concurrent run, settled: %s", metadata[key]["overlap"])
        _refuse_lost_steps(session, patches)
        try:
            return session.commit(message, metadata=metadata)
        except icechunk.ConflictError:
            continue
    raise CubeChangedError(f"could not commit after settling overlaps with concurrent runs {tries} times")


def _refuse_lost_steps(session: icechunk.Session, patches: Sequence[PatchIndex]) -> None:
    """A CubeChangedError when the tip this session now stands on has no place for some of the run's
    patches: the cube was rolled back to a shorter time axis while the run read. Committing would
    record them as written (commit metadata, filled record) where no read can reach them."""
    timed = [p for p in patches if p.time_index is not None]
    if not timed:
        return
    root = zarr.open_group(session.store, mode="r")
    lengths = {zone: root[zone]["time"].shape[0] for zone in {p.zone for p in timed}}
    lost = [p.id for p in timed if p.time_index >= lengths[p.zone]]
    if lost:
        raise CubeChangedError(
            f"the cube was rolled back to a time axis of {max(lengths.values())} step(s) while this run read "
            f"(or another process shortened it): {len(lost)} of its patches lie on later steps, e.g. {lost[:3]}; "
            "nothing was committed. Run again to fetch what the cube now lacks")


def _outcome(session: icechunk.Session, settled: dict[str, set[tuple[int, ...]]], patches: Sequence[PatchIndex],
             stamp: int) -> dict[str, Any]:
    """Which settled patches kept this run's data: judged from the final record, not from each pass."""
    ids = {(p.zone, p.cell): p.id for p in patches}
    root = zarr.open_group(session.store, mode="r")
    kept_ours, kept_theirs = [], []
    for zone, cells in settled.items():
        ordered = sorted(cells)
        for cell, value in zip(ordered, _stamps(root[zone][FILLED], ordered), strict=True):
            (kept_ours if abs(int(value)) == stamp else kept_theirs).append(ids.get((zone, cell), f"{zone}/{cell}"))
    return {"rule": RULE, "kept_this_run": sorted(kept_ours), "kept_other_run": sorted(kept_theirs)}
