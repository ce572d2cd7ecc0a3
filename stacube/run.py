"""One download run: read patches concurrently, each into a fork of one session, merge, ONE commit.

This is the core both runners drive (the local thread runner here, Prefect in ``stacube.flows``).
A run is atomic: if any patch fails, nothing is committed and the cube stays at its snapshot. A
runner that skips failures (``skip_failed``) instead hands back PatchFailures: those patches are
neither written nor recorded as filled (the next run tries them again) and are listed in the report
and the commit metadata.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import pickle
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import icechunk
import pandas as pd
import zarr

from .alignment import misaligned, warn_misaligned
from .errors import TOIError
from .grid import PatchIndex
from .history import METADATA_KEY
from .memory import release_freed
from .plan import settled, unfilled
from .radiometry import converted_items
from .runners import PatchFailure, Runner
from .settle import commit_settling_overlaps
from .sources import Backend
from .spec import CubeSpec
from .store import BRANCH
from .timeaxis import utc_now
from .write import PatchWrite, mark_filled, write_patch

log = logging.getLogger(__name__)


@dataclass
class PatchResult:
    """What one patch's task hands back to the run: its writes, to merge, and its figures."""

    patch_id: str
    """The patch's id."""
    fork: Any | None
    """The ForkSession holding the patch's writes; None when there was nothing to write."""
    nbytes: int
    """Uncompressed bytes written (0: the Items held no data there)."""
    seconds: float
    """How long the read and write took."""
    clipped: dict[str, int] = field(default_factory=dict)
    """Variable -> pixels clipped into the dtype's range."""
    judged: dict[str, str] = field(default_factory=dict)
    """Item -> how its pixels decided its convention."""
    written: PatchWrite = field(default_factory=PatchWrite)
    """What the write left in the patch's chunk; its ``values`` only when the run keeps them (``keep_values``)."""


@dataclass
class RunReport:
    """What a run did: the snapshot it committed (None if there was nothing to do) and its figures."""

    snapshot_id: str | None
    """The snapshot the run committed; None if it committed nothing (nothing to do, or only recent
    steps without data)."""
    run_id: str
    """The run's id, also in the commit metadata."""
    patches_written: list[str] = field(default_factory=list)
    """Ids of the patches written, sorted."""
    patches_empty: list[str] = field(default_factory=list)
    """Ids of the patches the source held no data for, recorded as filled (and empty), sorted."""
    patches_pending: list[str] = field(default_factory=list)
    """Recent and still empty: not recorded as filled (within the source's publication lag), so a later
    run asks again."""
    patches_provisional: list[str] = field(default_factory=list)
    """Recent and written: their data is in the cube, but their step may still get Items (within the
    source's publication lag), so they are not recorded as filled and a later run reads them again.
    Also in ``patches_written``."""
    patches_already_filled: int = 0
    """How many planned patches the cube held already (when planned, or filled by another run since)."""
    item_ids: list[str] = field(default_factory=list)
    """Ids of the Items the run read, sorted."""
    bytes_written: int = 0
    """Uncompressed bytes written, all patches together."""
    seconds: float = 0.0
    """How long the run took, from its start to its commit."""
    runner: str = "local"
    """The name of the runner that ran it (``Runner.name``)."""
    patch_figures: dict[str, tuple[int, float]] = field(default_factory=dict)
    """Patch id -> (bytes written, seconds taken), for the patches read."""
    patches_failed: dict[str, PatchFailure] = field(default_factory=dict)
    """Skipped failures, by patch id (a runner with ``skip_failed``): neither written nor recorded as
    filled, so the next run tries them again."""
    patches_kept_from_other_run: list[str] = field(default_factory=list)
    """Patches also written by a concurrent run, whose values won."""
    items_superseded: list[str] = field(default_factory=list)
    """Reprocessed copies the source's duplicate rule left out."""
    clipped: dict[str, dict[str, int]] = field(default_factory=dict)
    """Patch -> variable -> pixels whose converted values were clipped into the dtype's range."""
    judged: dict[str, str] = field(default_factory=dict)
    """Item -> the convention its pixels showed, and why (``stacube.radiometry``)."""
    items_misaligned: list[str] = field(default_factory=list)
    """Items (as ``id:asset``) on their zone's CRS but off its pixel grid, so resampled by a fraction of
    a pixel on write (``stacube.alignment``)."""
    metadata: dict[str, Any] = field(default_factory=dict)
    """What the caller committed beside the run's own record: the ROI, a Prefect flow run's id, name and flow."""

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON-ready value (plain dicts, lists, numbers and text), to cross a process
        boundary (a Prefect flow run's result, a deployment's return value); ``from_json`` reads it back.

        Returns
        -------
        dict[str, Any]
            Every field; ``patch_figures`` as lists, ``patches_failed`` as a list of PatchFailure fields.
        """
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        record["patch_figures"] = {pid: [nbytes, seconds] for pid, (nbytes, seconds) in self.patch_figures.items()}
        record["patches_failed"] = [dataclasses.asdict(failure) for failure in self.patches_failed.values()]
        return json.loads(json.dumps(record))  # a copy that shares nothing with the report

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> RunReport:
        """The report ``to_json`` wrote.

        Parameters
        ----------
        record : dict[str, Any]
            ``to_json``'s value; keys that are no field (a newer stacube's) are left out.

        Returns
        -------
        RunReport
            The report.

        Raises
        ------
        TypeError, KeyError
            If ``record`` lacks ``snapshot_id`` or ``run_id``, or a failure a PatchFailure field.
        """
        values = dict(record)
        values["patch_figures"] = {pid: (int(nbytes), float(seconds))
                                   for pid, (nbytes, seconds) in values.get("patch_figures", {}).items()}
        values["patches_failed"] = {f["patch_id"]: PatchFailure(**f) for f in values.get("patches_failed", [])}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def patches(self) -> int:
        """How many patches the run recorded as filled: written (and settled), or empty."""
        return len(self.patches_written) - len(self.patches_provisional) + len(self.patches_empty)

    def __str__(self) -> str:
        return (
            f"run {self.run_id}: {len(self.patches_written)} patches written, {len(self.patches_empty)} without data, "
            f"{self.patches_already_filled} already filled, {self.bytes_written / 1e6:.1f} MB in {self.seconds:.2f} s"
            f" -> snapshot {self.snapshot_id}"
            + (f"; {len(self.patches_failed)} patches FAILED and left for the next run" if self.patches_failed else "")
        )


@dataclass
class PatchTask:
    """Read one patch and write it into a fork of the run's session: what a runner maps over patches.

    It holds the fork pickled, and every call unpickles a fresh copy, so a retried attempt never
    merges the writes of a failed one, and the task ships as is to threads, processes or Dask.
    """

    fork_blob: bytes
    """The run's session fork, pickled."""
    spec: CubeSpec
    """The cube's spec."""
    backend: Backend
    """What reads a patch (``Source.backend``)."""
    keep_values: bool = False
    """Hand each patch's written values back in its result (runs in this process: a load pastes them into its
    Tile); otherwise they are freed in the worker."""
    token: str = field(default_factory=lambda: uuid.uuid4().hex, repr=False)
    """The task's id for Dask (``__dask_tokenize__``), new for each task."""

    def __dask_tokenize__(self) -> tuple:
        """One token per run's task, for Dask's task keys, instead of walking the spec and the fork."""
        return ("stacube.PatchTask", self.token)

    def __call__(self, patch: PatchIndex) -> PatchResult:
        """Read ``patch`` with the backend and write it into a fresh copy of the fork.

        Parameters
        ----------
        patch : PatchIndex
            The patch, with its Items.

        Returns
        -------
        PatchResult
            The fork (None when nothing was written) and the patch's figures.

        Raises
        ------
        SourceError, RadiometryError
            What ``Backend.read`` raises (see there).
        CubeDamagedError
            If a chunk the patch's values are merged into fails its checksum.
        """
        started = time.perf_counter()
        fork = pickle.loads(self.fork_blob)
        data = self.backend.read(patch)
        done = write_patch(fork.store, self.spec, patch, data)
        clipped, judged = dict(getattr(data, "clipped", {})), dict(getattr(data, "judged", {}))
        del data
        if not self.keep_values:
            done.values = {}  # the patch's arrays: freed, and handed back to the OS (stacube.memory)
        release_freed()
        return PatchResult(patch.id, fork if done.nbytes else None, done.nbytes, time.perf_counter() - started,
                           clipped, judged, done)


def radiometry_record(spec: CubeSpec, patches: Sequence[PatchIndex], clipped: dict[str, dict[str, int]],
                      judged: dict[str, str] | None = None) -> dict[str, Any]:
    """What the commit says about the run's values: the policy, the Items converted into each variable's
    convention (by the convention their metadata gives), the pixels clipped into a dtype's range, and
    where Items' pixels had to decide a convention their metadata left open (per Item).

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec (its variables' conventions and its source's policy).
    patches : Sequence[PatchIndex]
        The patches written, with their Items.
    clipped : dict[str, dict[str, int]]
        Patch -> variable -> pixels clipped (``RunReport.clipped``).
    judged : dict[str, str] or None, optional
        Item -> how its pixels decided its convention (``RunReport.judged``).

    Returns
    -------
    dict[str, Any]
        ``policy`` and ``conventions``, and where there are any ``converted``, ``clipped`` and
        ``judged_from_pixels``; clipped pixels and judged Items are also logged as warnings.
    """
    items = {item.id: item for p in patches for item in p.items}.values()
    record: dict[str, Any] = {"policy": spec.source.radiometry,
                              "conventions": {name: None if v.convention is None else
                                              {"scale_factor": v.scale_factor, "add_offset": v.add_offset}
                                              for name, v in spec.variables.items()}}
    # Items whose pixels decided their convention are listed under judged_from_pixels, with the outcome
    converted = converted_items(spec.variables, spec.source.assets, spec.source.radiometry,
                                [item for item in items if item.id not in (judged or {})])
    if converted:
        record["converted"] = converted
    if clipped:
        record["clipped"] = clipped
        log.warning("values outside the dtype's range were clipped: %s", clipped)
    if judged:
        record["judged_from_pixels"] = judged
        log.warning("conventions decided from the pixels where the metadata is unreliable: %s", judged)
    return record


def _check_time_axis(root: zarr.Group, patches: Sequence[PatchIndex], snapshot: str) -> None:
    """Patches planned on a time step the branch tip no longer has (rolled back past an ``extend_time``
    since the plan was made): a clear error before anything is read, not an index error blamed on the source."""
    lengths: dict[str, int] = {}
    beyond = []
    for patch in patches:
        if patch.time_index is None:
            continue
        if patch.zone not in lengths:
            lengths[patch.zone] = root[patch.zone]["time"].shape[0]
        if patch.time_index >= lengths[patch.zone]:
            beyond.append(patch.id)
    if beyond:
        raise TOIError(
            f"{len(beyond)} planned patch(es) are on time steps the cube no longer has: its time axis is "
            f"{max(lengths.values())} step(s) at snapshot {snapshot} (rolled back, or changed by another process, "
            f"since this run was planned), e.g. {beyond[:3]}; nothing was read or written: plan again")


def _results_of(runner: Runner, task: PatchTask, patches: Sequence[PatchIndex]) -> Iterator[Any]:
    """The runner's results as they land (``Runner.imap``); a runner written before ``imap`` (``map`` only)
    hands them over all at once, when every patch is done."""
    imap = getattr(runner, "imap", None)
    if imap is None:
        yield from runner.map(task, patches)
    else:
        yield from imap(task, patches)


class Run:
    """A run under way (``start_run``): ``landed()`` yields each patch's writes as its task ends, then
    ``commit()`` merges the forks and commits them as ONE snapshot.

    The two steps are apart so that a load takes each patch's values where the run hands them over
    (pasting them into its Tile) on its own thread, with no callback into the workers; ``complete()``
    does both, for a caller that only wants the commit (``Cube.run``). Leaving ``landed()`` early (an
    error, a ``break``, ``close()``) stops the patches not started, and a run whose ``landed()`` did not
    finish commits nothing.

    Attributes
    ----------
    report : RunReport
        What the run did, completed by ``commit()``.
    patches : list[PatchIndex]
        The patches the run fills (another run may have filled some since the plan); ``reads`` are read.
    """

    def __init__(self, repo: icechunk.Repository, spec: CubeSpec, runner: Runner, report: RunReport, *,
                 session: Any = None, patches: Sequence[PatchIndex] = (), task: PatchTask | None = None,
                 commit_lock: Callable[[], AbstractContextManager] = contextlib.nullcontext,
                 message: str | None = None, extra_metadata: dict[str, Any] | None = None, started: float = 0.0,
                 as_of: pd.Timestamp | None = None):
        self.repo, self.spec, self.runner, self.report = repo, spec, runner, report
        self._as_of = as_of if as_of is not None else utc_now()  # when the catalog answered (``plan.settled``)
        self.patches = list(patches)
        self._session, self._task, self._commit_lock = session, task, commit_lock
        self._message, self._extra_metadata, self._started = message, extra_metadata, started
        self._results: list[PatchResult | PatchFailure] = []
        self._landing = False  # landed() was called: a run's patches land once
        self._landed = task is None  # nothing to read: landed already

    @property
    def reads(self) -> list[PatchIndex]:
        """The patches the run reads (those with Items), each once."""
        return [p for p in self.patches if p.items]

    def landed(self) -> Iterator[tuple[PatchIndex, PatchWrite]]:
        """Each patch read, with what its write left in its chunk, as its task ends (the order patches finish).

        The write's ``values`` are there when the run keeps them (``start_run(keep_values=True)``), and only
        until the loop moves on: they are freed then.

        Yields
        ------
        tuple[PatchIndex, PatchWrite]
            The patch, and what the write left in its chunk (a patch skipped as failed is not yielded).

        Raises
        ------
        PatchReadError
            If a patch failed for good (``Runner.imap``): nothing will be committed.
        RuntimeError
            If called a second time (the patches would be read, and their forks merged, twice), or if a
            patch's values were to be kept but did not come back (a runner out of this process): a paste
            of them would be nodata.
        """
        if self._landing:
            raise RuntimeError("a run's patches land once: landed() was called already")
        self._landing = True
        if self._task is None:
            return
        by_id = {p.id: p for p in self.reads}
        with contextlib.closing(_results_of(self.runner, self._task, self.reads)) as results:
            for result in results:
                self._results.append(result)
                if isinstance(result, PatchFailure):
                    continue
                written, result.written = result.written, PatchWrite(result.nbytes, {}, result.written.unchanged)
                if self._task.keep_values and written.nbytes and not written.values:
                    raise RuntimeError(f"patch {result.patch_id}'s values did not come back from runner "
                                       f"{self.runner.name!r}: keep_values needs a runner in this process")
                yield by_id[result.patch_id], written
                if written.values:
                    written.values = {}  # taken: freed, and handed back to the OS (stacube.memory)
                    release_freed()
        self._landed = True

    def complete(self) -> RunReport:
        """Every patch landed (``landed()`` to its end), then ``commit()``: the whole run, for a caller that only
        wants the commit.

        Returns
        -------
        RunReport
            What the run did; ``snapshot_id`` None if it committed nothing.

        Raises
        ------
        PatchReadError
            If a patch failed for good (``Runner.imap``): nothing is committed.
        CubeChangedError
            As ``commit``: nothing is committed.
        """
        for _ in self.landed():
            pass
        return self.commit()

    def commit(self) -> RunReport:
        """Merge what the patches wrote, record them as filled and commit ONE snapshot (or none: nothing written
        and nothing to record).

        Returns
        -------
        RunReport
            What the run did; ``snapshot_id`` None if it committed nothing.

        Raises
        ------
        RuntimeError
            If ``landed()`` did not run to its end (the run is incomplete: nothing is committed), or the runner
            gave neither a result nor a failure for a patch it was given (nothing is committed).
        CubeChangedError
            If the cube was rolled back to a shorter time axis while the run read, or the commit kept meeting
            other runs' commits, or the cube's structure kept changing: nothing is committed.
        """
        if not self._landed:
            raise RuntimeError("the run's patches have not all landed (iterate landed() to its end first): "
                               "nothing is committed")
        report, spec, patches, session = self.report, self.spec, self.patches, self._session
        if session is None:
            report.seconds = time.perf_counter() - self._started
            return report
        answered = {r.patch_id for r in self._results}
        unanswered = [p.id for p in self.reads if p.id not in answered]
        if unanswered:  # recorded as filled, they would read as "no source data" for good
            raise RuntimeError(f"runner {self.runner.name!r} gave no result and no failure for {len(unanswered)} "
                               f"patch(es) it was given, {unanswered[:5]}: nothing is committed")
        failed = {r.patch_id: r for r in self._results if isinstance(r, PatchFailure)}
        results = [r for r in self._results if not isinstance(r, PatchFailure)]
        patches = [p for p in patches if p.id not in failed]
        forks = [r.fork for r in results if r.fork is not None]
        if forks:
            session.merge(*forks)
        written = {r.patch_id for r in results if r.nbytes}
        empty = {p.id for p in patches if p.id not in written}
        # A recent step may still get Items, whether this run found some or none: its patches are not
        # recorded as filled, so a later run reads them again (judged as of the catalog's answer, not now)
        recent = {p.id for p in patches if not settled(spec, p, self._as_of)}
        stamp = time.time_ns() // 1000
        mark_filled(session.store, [p for p in patches if p.id not in recent], stamp, empty,
                    provisional=[p for p in patches if p.id in recent and p.id in written])
        report.patches_written = sorted(written)
        report.patches_empty = sorted(empty - recent)
        report.patches_pending = sorted(empty & recent)
        report.patches_provisional = sorted(written & recent)
        report.item_ids = sorted({item.id for p in patches for item in p.items})
        report.items_superseded = sorted({item.id for p in patches for item in p.superseded} - set(report.item_ids))
        report.clipped = {r.patch_id: r.clipped for r in results if r.clipped}
        report.judged = dict(sorted({item: why for r in results for item, why in r.judged.items()}.items()))
        report.bytes_written = sum(r.nbytes for r in results)
        report.patch_figures = {r.patch_id: (r.nbytes, round(r.seconds, 3)) for r in results}
        report.patches_failed = failed
        metadata = {
            METADATA_KEY: {
                "run_id": report.run_id,
                "runner": self.runner.name,
                "stamp": stamp,
                "source": spec.source.label,
                "patches": report.patches_written,
                "patches_empty": report.patches_empty,
                **({"patches_provisional": report.patches_provisional} if report.patches_provisional else {}),
                "items": report.item_ids,
                "bytes": report.bytes_written,
                "radiometry": radiometry_record(spec, patches, report.clipped, report.judged),
                **({"items_superseded": report.items_superseded} if report.items_superseded else {}),
                **({"items_misaligned": report.items_misaligned} if report.items_misaligned else {}),
                **({"patches_failed": sorted(failed)} if failed else {}),
                **(self._extra_metadata or {}),
            }
        }
        if not session.has_uncommitted_changes:  # only recent steps without data: nothing to record yet
            report.seconds = time.perf_counter() - self._started
            return report
        text = self._message or f"stacube: {len(written)} patches from {spec.source.collection}"
        with self._commit_lock():
            report.snapshot_id = commit_settling_overlaps(self.repo, session, spec, patches, text, metadata,
                                                          METADATA_KEY)
        report.patches_kept_from_other_run = metadata[METADATA_KEY].get("overlap", {}).get("kept_other_run", [])
        report.seconds = time.perf_counter() - self._started
        log.info("%s", report)
        return report


def start_run(
    repo: icechunk.Repository,
    spec: CubeSpec,
    patches: Sequence[PatchIndex],
    backend: Backend,
    runner: Runner,
    *,
    already_filled: int = 0,
    commit_lock: Callable[[], AbstractContextManager] = contextlib.nullcontext,
    message: str | None = None,
    extra_metadata: dict[str, Any] | None = None,
    run_id: str | None = None,
    keep_values: bool = False,
    as_of: pd.Timestamp | None = None,
) -> Run:
    """Start a run of ``patches`` (which carry their Items): checks first, then a Run whose ``landed()`` reads
    and writes them and whose ``commit()`` commits them as one snapshot.

    Patches another run filled since the plan are skipped; patches without Items are recorded as filled
    and empty without a read, unless recent (within the source's publication lag). One commit, or none:
    if a patch fails for good, nothing is committed (unless the runner skips failures). Icechunk's
    errors where the storage fails are raised as they are (``Cube.run`` turns a full or read-only one
    into a StorageError).

    Parameters
    ----------
    repo : icechunk.Repository
        The cube's repository.
    spec : CubeSpec
        The cube's spec.
    patches : Sequence[PatchIndex]
        The patches to fill, with their Items attached (``plan.attach_items``).
    backend : Backend
        Reads a patch (``spec.source.backend(spec.variables)``).
    runner : Runner
        Runs the per-patch tasks.
    already_filled : int, optional
        Planned patches found filled before the run (counted in the report).
    commit_lock : Callable[[], AbstractContextManager], optional
        Held around the commit (the cube's lock across processes); by default none.
    message : str or None, optional
        The commit message; None: ``stacube: <n> patches from <collection>``.
    extra_metadata : dict[str, Any] or None, optional
        Goes into the commit's metadata and the report's beside the run's own record.
    run_id : str or None, optional
        The run's id; None: a new one.
    keep_values : bool, optional
        Hand each patch's written values to ``landed()`` (a runner in this process); otherwise they are
        freed where the patch was written.
    as_of : pd.Timestamp or None, optional
        When the catalog was asked for the patches' Items (naive UTC; taken before ``attach_items``): a
        patch whose step could still get Items after it is not recorded as filled (``plan.settled``).
        None: now (later than the catalog's answer, so a run spanning the lag's end could miss Items).

    Returns
    -------
    Run
        The run, nothing read yet.

    Raises
    ------
    ItemError
        If an Item lacks what a read needs (``Backend.check_items``), before anything is read.
    RadiometryError
        If an Item's numbers cannot be brought into its variable's convention, before anything is read.
    TOIError
        If patches lie on time steps the branch no longer has (rolled back since the plan).
    """
    started = time.perf_counter()
    as_of = as_of if as_of is not None else utc_now()
    run_id = run_id or uuid.uuid4().hex
    report = RunReport(None, run_id, patches_already_filled=already_filled, runner=runner.name,
                       metadata=dict(extra_metadata or {}))
    if not patches:
        return Run(repo, spec, runner, report, started=started)
    backend.check_items([item for p in patches for item in p.items])
    session = repo.writable_session(BRANCH)
    tip = zarr.open_group(session.store, mode="r")
    _check_time_axis(tip, patches, session.snapshot_id)
    # Another run may have filled some of them since the plan was made: do not fetch those again.
    still_missing = unfilled(tip, patches)
    report.patches_already_filled += len(patches) - len(still_missing)
    if not still_missing:
        return Run(repo, spec, runner, report, started=started)
    with_data = [p for p in still_missing if p.items]
    report.items_misaligned = misaligned(spec.zones, spec.source.assets.values(), with_data)
    warn_misaligned(report.items_misaligned)
    task = PatchTask(pickle.dumps(session.fork()), spec, backend, keep_values)
    return Run(repo, spec, runner, report, session=session, patches=still_missing, task=task,
               commit_lock=commit_lock, message=message, extra_metadata=extra_metadata, started=started,
               as_of=as_of)
