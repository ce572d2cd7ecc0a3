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
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from typing import Any

import icechunk
import zarr

from .alignment import misaligned, warn_misaligned
from .errors import TOIError
from .grid import PatchIndex
from .history import METADATA_KEY
from .memory import release_freed
from .plan import unfilled
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
    patch_id: str
    fork: Any | None  # the ForkSession holding the patch's writes; None when there was nothing to write
    nbytes: int
    seconds: float
    clipped: dict[str, int] = field(default_factory=dict)  # variable -> pixels clipped into the dtype's range
    judged: dict[str, str] = field(default_factory=dict)  # Item -> how its pixels decided its convention


@dataclass
class RunReport:
    """What a run did: the snapshot it committed (None if there was nothing to do) and its figures."""

    snapshot_id: str | None
    run_id: str
    patches_written: list[str] = field(default_factory=list)
    patches_empty: list[str] = field(default_factory=list)
    patches_pending: list[str] = field(default_factory=list)  # recent and still empty: not recorded as filled
    patches_already_filled: int = 0
    item_ids: list[str] = field(default_factory=list)
    bytes_written: int = 0
    seconds: float = 0.0
    runner: str = "local"
    patch_figures: dict[str, tuple[int, float]] = field(default_factory=dict)  # id -> (bytes, seconds)
    patches_failed: dict[str, PatchFailure] = field(default_factory=dict)  # skipped failures, by patch id
    patches_kept_from_other_run: list[str] = field(default_factory=list)  # also written concurrently; theirs won
    items_superseded: list[str] = field(default_factory=list)  # reprocessed copies the duplicate rule left out
    clipped: dict[str, dict[str, int]] = field(default_factory=dict)  # patch -> variable -> pixels clipped
    judged: dict[str, str] = field(default_factory=dict)  # Item -> the convention its pixels showed, and why
    items_misaligned: list[str] = field(default_factory=list)  # on their zone's CRS but off its pixel grid
    # What the caller committed beside the run's own record: the ROI, a Prefect flow run's id, name and flow
    metadata: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        """The report as one JSON-ready value (plain dicts, lists, numbers and text), to cross a process
        boundary (a Prefect flow run's result, a deployment's return value); ``from_json`` reads it back."""
        record = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        record["patch_figures"] = {pid: [nbytes, seconds] for pid, (nbytes, seconds) in self.patch_figures.items()}
        record["patches_failed"] = [dataclasses.asdict(failure) for failure in self.patches_failed.values()]
        return json.loads(json.dumps(record))  # a copy that shares nothing with the report

    @classmethod
    def from_json(cls, record: dict[str, Any]) -> RunReport:
        """The report ``to_json`` wrote."""
        values = dict(record)
        values["patch_figures"] = {pid: (int(nbytes), float(seconds))
                                   for pid, (nbytes, seconds) in values.get("patch_figures", {}).items()}
        values["patches_failed"] = {f["patch_id"]: PatchFailure(**f) for f in values.get("patches_failed", [])}
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})

    @property
    def patches(self) -> int:
        return len(self.patches_written) + len(self.patches_empty)

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
    spec: CubeSpec
    backend: Backend
    # In-process runs only: told what each patch's chunks now hold (a load pastes them into its Tile).
    on_written: Callable[[PatchIndex, PatchWrite], None] | None = None
    token: str = field(default_factory=lambda: uuid.uuid4().hex, repr=False)

    def __dask_tokenize__(self) -> tuple:
        """One token per run's task, for Dask's task keys, instead of walking the spec and the fork."""
        return ("stacube.PatchTask", self.token)

    def __call__(self, patch: PatchIndex) -> PatchResult:
        started = time.perf_counter()
        fork = pickle.loads(self.fork_blob)
        data = self.backend.read(patch)
        done = write_patch(fork.store, self.spec, patch, data)
        if self.on_written is not None:
            self.on_written(patch, done)
        clipped, judged = dict(getattr(data, "clipped", {})), dict(getattr(data, "judged", {}))
        del data
        done.values = {}  # the patch's arrays: freed, and handed back to the OS (stacube.memory)
        release_freed()
        return PatchResult(patch.id, fork if done.nbytes else None, done.nbytes, time.perf_counter() - started,
                           clipped, judged)


def radiometry_record(spec: CubeSpec, patches: Sequence[PatchIndex], clipped: dict[str, dict[str, int]],
                      judged: dict[str, str] | None = None) -> dict[str, Any]:
    """What the commit says about the run's values: the policy, the Items converted into each variable's
    convention (by the convention their metadata gives), the pixels clipped into a dtype's range, and
    where Items' pixels had to decide a convention their metadata left open (per Item)."""
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


def execute_run(
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
    on_written: Callable[[PatchIndex, PatchWrite], None] | None = None,
    run_id: str | None = None,
) -> RunReport:
    """Read and write ``patches`` (which carry their Items) and commit them as one snapshot.

    ``on_written`` (for runners in this process) hears each patch's written values as they land.
    ``run_id`` (default: a new one) lets a caller name the run before it commits."""
    started = time.perf_counter()
    run_id = run_id or uuid.uuid4().hex
    report = RunReport(None, run_id, patches_already_filled=already_filled, runner=runner.name,
                       metadata=dict(extra_metadata or {}))
    if not patches:
        return report
    backend.check_items([item for p in patches for item in p.items])
    session = repo.writable_session(BRANCH)
    tip = zarr.open_group(session.store, mode="r")
    _check_time_axis(tip, patches, session.snapshot_id)
    # Another run may have filled some of them since the plan was made: do not fetch those again.
    still_missing = unfilled(tip, patches)
    report.patches_already_filled += len(patches) - len(still_missing)
    patches = still_missing
    if not patches:
        report.seconds = time.perf_counter() - started
        return report
    with_data = [p for p in patches if p.items]
    report.items_misaligned = misaligned(spec.zones, spec.source.assets.values(), with_data)
    warn_misaligned(report.items_misaligned)

    task = PatchTask(pickle.dumps(session.fork()), spec, backend, on_written)
    outcomes = runner.map(task, with_data)
    failed = {r.patch_id: r for r in outcomes if isinstance(r, PatchFailure)}
    results = [r for r in outcomes if not isinstance(r, PatchFailure)]
    patches = [p for p in patches if p.id not in failed]
    forks = [r.fork for r in results if r.fork is not None]
    if forks:
        session.merge(*forks)
    written = {r.patch_id for r in results if r.nbytes}
    empty = {p.id for p in patches if p.id not in written}
    # A recent step without data may still get Items: leave it unfilled, to be tried again later.
    settled_before = utc_now() - spec.source.lag
    pending = {p.id for p in patches if p.id in empty and p.time_range is not None and p.time_range[1] > settled_before}
    stamp = time.time_ns() // 1000
    mark_filled(session.store, [p for p in patches if p.id not in pending], stamp, empty)
    report.patches_written = sorted(written)
    report.patches_empty = sorted(empty - pending)
    report.patches_pending = sorted(pending)
    report.item_ids = sorted({item.id for p in patches for item in p.items})
    report.items_superseded = sorted({item.id for p in patches for item in p.superseded} - set(report.item_ids))
    report.clipped = {r.patch_id: r.clipped for r in results if r.clipped}
    report.judged = dict(sorted({item: why for r in results for item, why in r.judged.items()}.items()))
    report.bytes_written = sum(r.nbytes for r in results)
    report.patch_figures = {r.patch_id: (r.nbytes, round(r.seconds, 3)) for r in results}
    report.patches_failed = failed
    metadata = {
        METADATA_KEY: {
            "run_id": run_id,
            "runner": runner.name,
            "stamp": stamp,
            "source": spec.source.label,
            "patches": report.patches_written,
            "patches_empty": report.patches_empty,
            "items": report.item_ids,
            "bytes": report.bytes_written,
            "radiometry": radiometry_record(spec, patches, report.clipped, report.judged),
            **({"items_superseded": report.items_superseded} if report.items_superseded else {}),
            **({"items_misaligned": report.items_misaligned} if report.items_misaligned else {}),
            **({"patches_failed": sorted(failed)} if failed else {}),
            **(extra_metadata or {}),
        }
    }
    if not session.has_uncommitted_changes:  # only recent steps without data: nothing to record yet
        report.seconds = time.perf_counter() - started
        return report
    text = message or f"stacube: {len(written)} patches from {spec.source.collection}"
    with commit_lock():
        report.snapshot_id = commit_settling_overlaps(repo, session, spec, patches, text, metadata, METADATA_KEY)
    report.patches_kept_from_other_run = metadata[METADATA_KEY].get("overlap", {}).get("kept_other_run", [])
    report.seconds = time.perf_counter() - started
    log.info("%s", report)
    return report
