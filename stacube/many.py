"""Many small ROIs in one run: plan the union of their patches, download it once, yield each Tile.

The training-patch workload: thousands of 256 px ROIs cut out of one cube. A loop of ``Cube.load``
pays a plan, a run and a commit per ROI, and fetches a patch that ten ROIs meet in ten runs (or reads
it back ten times). ``load_many`` plans every ROI first (bad input fails before anything is
downloaded), takes the union of the patches under them, each patch once, and downloads those the
cube lacks in ONE run with ONE commit, through ``start_run`` as ``Cube.download`` does (so the
commit metadata, the filled record, failures and the skip rules are the same).

Tiles come out in the order the ROIs were given, each as soon as its patches are in: the run works
on a background thread, patches in the order the ROIs first need them, and pastes each patch it
writes into the held Tiles of the ROIs it meets (``ColdTile``, as a cold ``load`` does); a Tile is
yielded once every patch under it is written or was filled before. ROIs whose Tile cannot be pasted
(it needs resampling, or spans zones), ROIs whose Tile did not fit in the memory budget when one of
their patches was written, and ROIs over patches whose outcome only the commit settles (a patch
another run filled meanwhile; a recent step still without data) are read from the committed
snapshot once the run has committed, as ``load`` reads.

Memory: the Tiles held for ROIs not yet yielded never take more than ``hold_bytes`` together (or one
Tile, when a single Tile is larger), on top of the run's patches in flight (about ``concurrency``
patches) and a few hundred bytes of bookkeeping per ROI (its ROI, Tile grid and patch ids). Tiles already
yielded are the caller's: nothing here keeps them.
"""

from __future__ import annotations

import contextlib
import functools
import math
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from .errors import LoadCancelled, ROIError, TOIError, storage_errors
from .grid import PatchIndex
from .region import Region
from .runners import LocalRunner
from .timeaxis import TOI, utc_now

if TYPE_CHECKING:
    import icechunk
    import xarray as xr
    import zarr
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import Geometry

    from .catalog import LocalCatalog
    from .cold_tile import ColdTile
    from .opened import OpenedGroup
    from .run import RunReport
    from .spec import CubeSpec
    from .write import PatchWrite



class Cube(Protocol):
    """What ``load_many`` and ``export_many`` use of a cube: ``stacube.Cube`` is one (``Cube.load_many``
    calls in here, so this module names the surface it needs instead of importing the class)."""

    url: str
    repo: icechunk.Repository

    @property
    def catalog(self) -> LocalCatalog: ...

    def _variables(self, variables: str | Sequence[str] | None) -> list[str]: ...

    def _root(self, at: str | None = None) -> tuple[OpenedGroup, str]: ...

    def _spec_in(self, root: Any, at: str | None) -> CubeSpec: ...


HOLD_BYTES = 256 * 2**20  # Tiles held for ROIs not yet yielded, at most (or one Tile larger than that)


def load_many(cube: Cube, rois: Iterable[GeoBox | Geometry], toi: TOI | None = None, *,
              variables: str | Sequence[str] | None = None, concurrency: int | None = None,
              progress: bool | None = None, offline: bool = False, hold_bytes: int = HOLD_BYTES,
              retries: int = 3, extra_metadata: dict[str, Any] | None = None,
              on_patch: Callable[[int, int], None] | None = None) -> TileStream:
    """The Tiles of ``rois`` in the order given, from ONE run (one commit) of the patches they lack.

    Every ROI is planned at the call (an ROI outside the cube, without a CRS or not finite is an
    ROIError naming its position, before anything is downloaded); the run starts with the first
    ``next``. A Tile equals what ``cube.load(roi, toi, variables=...)`` returns afterwards: dims,
    coordinates, dtypes, values and attributes (``stacube_cube``, ``stacube_snapshot``,
    ``missing_patches``, and ``stacube_run`` when a run downloaded something).

    ``stacube_snapshot`` of a Tile yielded while the run is still going is None: its values are the
    run's and will be in the run's commit, the snapshot whose metadata holds ``run_id ==
    tile.attrs["stacube_run"]``. When the run commits, the attrs of the Tiles yielded before are set
    to that snapshot in place (the loop's last ``next`` waits for the commit). The exception: a patch
    under such a Tile that a concurrent run also wrote and won when the commit settled the overlap
    (``report.patches_kept_from_other_run``); that Tile keeps None, lists those patches in
    ``superseded_patches``, and a warning says to load it again. Tiles yielded after the commit carry
    the snapshot they were read from.

    If the run fails, iterating raises the run's error after the Tiles already yielded, and nothing
    is committed. Leaving the loop early (``break``, an exception, Ctrl-C) or ``close()`` cancels the
    run: nothing is committed, unless the commit had begun (every patch in), which then lands whole.
    ``offline=True`` never downloads: missing patches come back as nodata
    and are listed in each Tile's ``missing_patches``. With nothing missing there is no run and no
    commit. ``progress`` shows the run's bar (patches); ``hold_bytes`` bounds the Tiles held (see the
    module's docstring); ``on_patch(written, total)`` hears each patch written (from the run's thread).

    Parameters
    ----------
    cube : Cube
        The cube to read and fill (``stacube.Cube``).
    rois : Iterable[GeoBox or Geometry]
        The ROIs, each with its CRS; read whole at the call.
    toi : TOI or None, optional
        The time of interest; None: every step (or a cube without time).
    variables : str or Sequence[str] or None, optional
        The variables to read; None: all of them.
    concurrency : int or None, optional
        Patches in flight at once; None: 8.
    progress : bool or None, optional
        Whether to show the run's bar; None: when stderr is a terminal.
    offline : bool, optional
        Never download: missing patches are nodata, listed in ``missing_patches``.
    hold_bytes : int, optional
        The most bytes of Tiles held for ROIs not yet yielded (one larger Tile is held alone).
    retries : int, optional
        How many times a failing patch is tried again (a permanent failure is not).
    extra_metadata : dict[str, Any] or None, optional
        Added to the commit's metadata beside the run's record (the ROIs' union and counts).
    on_patch : Callable[[int, int], None] or None, optional
        Called with (patches written, patches the run writes) after each patch, from the run's thread (one
        call at a time, counts in order).

    Returns
    -------
    TileStream
        The Tiles, in the order of ``rois``, with the counts and the run's id.

    Raises
    ------
    UnknownVariableError
        If ``variables`` names a variable the cube does not hold.
    TOIError
        If the TOI is not a time pandas reads, is empty, lies outside the time axis, or is given to a
        cube without time.
    ROIError
        If an ROI is no odc-geo GeoBox or Geometry, has no CRS or coordinates that are not finite, is
        empty, or lies outside every zone (the message names its position), or the largest Tile would
        not fit in the memory free now. Nothing is downloaded.

    Warns
    -----
    UserWarning
        When ``offline`` and patches under the ROIs are not in the cube (they are nodata).
    """
    return TileStream(cube, list(rois), toi, variables=variables, concurrency=concurrency, progress=progress,
                      offline=offline, hold_bytes=hold_bytes, retries=retries, extra_metadata=extra_metadata,
                      on_patch=on_patch)


@dataclass(eq=False)
class _Roi:
    region: Region | None
    """The ROI given, checked (None once its Tile is yielded)."""
    dst: GeoBox | None
    """Its Tile's grid (None once its Tile is yielded)."""
    patches: tuple[str, ...]
    """Ids of the patches planned under it."""
    nbytes: int
    """Its Tile's size."""
    fresh: ColdTile | None = None
    """Its Tile, held while the run pastes into it."""
    waits: set[str] = field(default_factory=set)
    """Patches under its Tile that the run has still to write."""
    cold: bool = False
    """A patch under it was written while its Tile was not held: read it after the commit."""


class TileStream(Iterator["xr.Dataset"]):
    """What ``load_many`` returns: iterate it for the Tiles (or use it in a ``with`` block, which
    cancels an unfinished run on exit).

    ``patches`` and ``patches_missing`` count the union planned (each patch once) and the part of it
    the cube lacked; ``run_id`` names the run (None when nothing is downloaded); ``report`` is the
    run's RunReport once it has committed; ``held_peak`` is the most bytes of Tiles held at once, and
    ``read_after_commit`` counts the Tiles of a run read from its commit rather than pasted as it wrote.
    ``steps`` are the positions the TOI selects on the time axis (None without one), and
    ``base_snapshot`` the snapshot the ROIs were planned on.

    Made by ``load_many``, which documents the parameters and what is raised while they are checked
    (the ROIs are planned here, at construction).
    """

    def __init__(self, cube: Cube, rois: list, toi: TOI | None, *, variables: str | Sequence[str] | None,
                 concurrency: int | None, progress: bool | None, offline: bool, hold_bytes: int, retries: int,
                 extra_metadata: dict[str, Any] | None, on_patch: Callable[[int, int], None] | None):
        from .grid import zone_grids
        from .lazy import check_fits
        from .plan import iter_patches, outside_every_zone, unfilled
        from .timeaxis import select_steps

        self.cube = cube
        self.names = cube._variables(variables)
        root, snapshot = cube._root()
        spec = cube._spec_in(root, None)
        self.spec, self.steps = spec, select_steps(spec.time, toi)
        self.base_root, self.base_snapshot = root, snapshot
        self.union: dict[str, PatchIndex] = {}  # in the order the ROIs first meet them
        self.needers: dict[str, list[int]] = {}  # patch id -> the ROIs planned over it
        self.records: list[_Roi] = []
        itemsize = sum(spec.variables[n].numpy_dtype.itemsize for n in self.names)
        layers = len(self.steps) if self.steps is not None else 1
        largest = None
        grids = zone_grids(spec)
        for index, roi in enumerate(rois):
            try:
                region = Region.of(roi)
                ids = []
                for patch in iter_patches(spec, region, self.steps):
                    self.union.setdefault(patch.id, patch)
                    self.needers.setdefault(patch.id, []).append(index)
                    ids.append(patch.id)
                if not ids:
                    raise outside_every_zone(spec, region)
                dst = region.tile_geobox(grids)
            except ROIError as err:
                raise ROIError(f"ROI {index} (of {len(rois)}): {err}") from None
            nbytes = dst.shape.y * dst.shape.x * layers * itemsize
            if largest is None or nbytes > largest[0]:
                largest = (nbytes, dst)
            self.records.append(_Roi(region, dst, tuple(dict.fromkeys(ids)), nbytes))
        if largest is not None:
            check_fits(spec, largest[1], self.steps, self.names)
        self.missing = unfilled(root, list(self.union.values()))
        self.missing_ids = {p.id for p in self.missing}
        self.patches, self.patches_missing = len(self.union), len(self.missing)
        self.hold_bytes, self.held, self.held_peak = hold_bytes, 0, 0
        self.concurrency, self.progress, self.retries = concurrency or 8, progress, retries
        self.extra_metadata, self.on_patch = extra_metadata, on_patch
        self.run_id = uuid.uuid4().hex if self.missing and not offline else None
        self.read_after_commit = 0  # Tiles read back from the committed snapshot rather than pasted
        self.report: RunReport | None = None
        if offline and self.missing:
            from .read import holding_data

            held = holding_data(root, self.names, self.missing)  # recent patches: shown, provisional
            ids = [p.id for p in self.missing if p.id not in held]
        if offline and self.missing and ids:
            warnings.warn(f"{len(ids)} patch(es) under the ROIs are not in the cube and are returned as nodata "
                          f"(offline): {ids[:5]}", stacklevel=4)
        self._lock = threading.Condition()
        self._frontier = 0  # ROIs before it have had their Tile allocated (or were found not to need one)
        self._head = 0  # the next ROI to yield
        self._holders: dict[str, list[int]] = {}  # patch id -> held ROIs waiting for it
        self._written: set[str] = set()
        self._has_data: dict[str, bool] = {}  # written patch -> holds data of a requested variable
        self._deferred: set[str] = set()  # patches whose outcome only the commit settles
        self._run_ids: set[str] = set()  # the missing patches that have Items: the ones the run writes
        self._cells: dict[tuple, str] = {}  # (zone, step, row, column) -> id, for the patches the run writes
        self._items_known = False
        self._done = False
        self._error: BaseException | None = None
        self._cancelled = False
        self._as_of: Any = None  # when the run asked the catalog (set by ``_run``)
        # attrs and patch ids of the Tiles yielded before the commit, stamped with its snapshot when it lands
        self._early: list[tuple[dict, list[str]]] = []
        self._gen = self._read_all() if self.run_id is None else self._stream()

    # --- iterating --------------------------------------------------------------------------
    def __iter__(self) -> TileStream:
        return self

    def __next__(self) -> xr.Dataset:
        """The next ROI's Tile, in the order given; the first call starts the run.

        Returns
        -------
        xarray.Dataset
            The Tile, as ``Cube.load`` returns it (``stacube_snapshot`` None while the run is going).

        Raises
        ------
        StopIteration
            After the last Tile (a run has committed by then).
        CatalogError, ItemError, RadiometryError, TOIError, PatchReadError, CubeChangedError, StorageError
            The run's error, as ``Cube.run`` raises it, once the Tiles before it are yielded; nothing is
            committed.
        CubeDamagedError
            If a stored chunk read for the Tile fails its checksum.
        """
        return next(self._gen)

    def close(self) -> None:
        """Stop: a run still going is cancelled (nothing is committed) and waited for."""
        self._gen.close()

    def __enter__(self) -> TileStream:
        """The stream itself; leaving the block calls ``close``."""
        return self

    def __exit__(self, *exc: object) -> None:
        """``close``: an unfinished run is cancelled and nothing is committed."""
        self.close()

    def __len__(self) -> int:
        """How many ROIs (and Tiles) there are."""
        return len(self.records)

    # --- without a run ----------------------------------------------------------------------
    def _read_all(self) -> Iterator[xr.Dataset]:
        """Offline, or nothing missing: every Tile read from the snapshot planned on, as ``load`` reads it."""
        for rec in self.records:
            missing = [p for p in rec.patches if p in self.missing_ids]
            yield self._attrs(self._read(self.base_root, rec), self.base_snapshot, missing, self.base_root)

    def _read(self, root: zarr.Group, rec: _Roi) -> xr.Dataset:
        from .read import read_tile

        return read_tile(self.spec, root, rec.dst, self._kept(root, rec), self.names)

    def _kept(self, root: zarr.Group, rec: _Roi) -> list[int] | None:
        """The ROI's steps that a Tile shows, read from ``root`` (``load``'s rule: steps no Item fed are left out)."""
        from .read import steps_with_data

        if self.steps is None:
            return None
        with_data = steps_with_data(root, self.names, [self.union[p] for p in rec.patches])
        return [step for step in self.steps if step in with_data]

    def _stamp_early(self) -> None:
        """Name the committed snapshot in the Tiles yielded before the commit, except where it holds other
        values: a patch under the Tile that a concurrent run also wrote and whose values won (the settle
        rule) is not what the Tile shows. Such a Tile keeps ``stacube_snapshot`` None, lists the patches in
        ``superseded_patches``, and a warning says to load it again."""
        snapshot = self.report.snapshot_id if self.report and self.report.snapshot_id else self._root_after[1]
        theirs = set(self.report.patches_kept_from_other_run) if self.report else set()
        superseded = 0
        provisional = set(self.report.patches_provisional) if self.report else set()
        for attrs, patches in self._early:
            attrs["provisional_patches"] = sorted(provisional.intersection(patches))
            replaced = sorted(theirs.intersection(patches))
            if replaced:
                attrs["superseded_patches"] = replaced
                superseded += 1
            else:
                attrs["stacube_snapshot"] = snapshot
        self._early = []
        if superseded:
            warnings.warn(f"{superseded} Tile(s) yielded before the commit hold values that a concurrent run's "
                          f"commit replaced ({sorted(theirs)[:5]}): their stacube_snapshot stays None and their "
                          "superseded_patches name them; load those ROIs again for the cube's values", stacklevel=3)

    def _attrs(self, tile: xr.Dataset, snapshot: str | None, unfilled: list[str],
               root: zarr.Group | None) -> xr.Dataset:
        """A Tile's attrs, as ``load`` sets them: of the patches not recorded as filled, those whose chunks hold
        data (recent: ``provisional_patches``) and those that are nodata (``missing_patches``)."""
        from .read import holding_data

        held = holding_data(root, self.names, [self.union[p] for p in unfilled]) if root is not None and unfilled \
            else set()
        tile.attrs["stacube_cube"] = self.cube.url
        tile.attrs["stacube_snapshot"] = snapshot
        tile.attrs["missing_patches"] = [p for p in unfilled if p not in held]
        tile.attrs["provisional_patches"] = sorted(held)
        if self.run_id is not None:
            tile.attrs["stacube_run"] = self.run_id
        return tile

    # --- with a run -------------------------------------------------------------------------
    def _stream(self) -> Iterator[xr.Dataset]:
        thread = threading.Thread(target=self._run, name="stacube-load-many", daemon=True)
        thread.start()
        finished = False
        try:
            for index, rec in enumerate(self.records):
                with self._lock:
                    self._head = index
                    self._advance()
                    while not (self._error or self._done or self._ready(rec)):
                        self._lock.wait(1.0)
                    error, done = self._error, self._done
                if error is not None:
                    raise error
                tile = self._after_run(rec) if done else self._before_commit(rec)
                with self._lock:
                    if rec.fresh is not None:
                        rec.fresh = None
                        self.held -= rec.nbytes
                rec.region = rec.dst = None  # nothing of a yielded ROI is kept but its patch ids
                yield tile
            thread.join()
            if self._error is not None:
                raise self._error
            finished = True
            self._stamp_early()
        finally:
            if not finished:
                with self._lock:
                    self._cancelled = True
                    self._lock.notify_all()
                thread.join()

    def _run(self) -> None:
        """The run, on its own thread: Items, then ``start_run`` of the union's missing patches, each patch
        pasted into the held Tiles that wait for it as it lands, then the commit."""
        from .plan import attach_items
        from .run import start_run
        from .store import commit_lock

        try:
            metadata = {"roi": Region.of(self._union_shape()).record(),
                        "load_many": {"rois": len(self.records), "patches": self.patches,
                                      "patches_missing": self.patches_missing},
                        **(self.extra_metadata or {})}
            self._as_of = utc_now()  # before the catalog is asked (``plan.settled``)
            patches = attach_items(self.spec, self.cube.catalog, self.missing)
            with self._lock:
                if self._cancelled:
                    return
                self._know_items(patches)
            runner = LocalRunner(concurrency=self.concurrency, progress=self.progress, retries=self.retries)
            with storage_errors(self.cube.url, "cube"):
                backend = self.spec.source.backend(self.spec.variables)
                run = start_run(self.cube.repo, self.spec, patches, backend, runner,
                                already_filled=self.patches - self.patches_missing,
                                commit_lock=functools.partial(commit_lock, self.cube.url),
                                extra_metadata=metadata, run_id=self.run_id, keep_values=True, as_of=self._as_of)
                self._attempting(run.reads)
                with contextlib.closing(run.landed()) as landed:
                    for patch, written in landed:
                        self._stop_if_cancelled()  # closing the run's patches stops those not started
                        self._landed(patch, written)
                self._stop_if_cancelled()  # the loop may have ended after the last patch landed: no commit
                report = run.commit()
            # the run's own snapshot (a run committing right after it may hold other values); the tip without one
            self._root_after = self.cube._root(snapshot=report.snapshot_id) if report.snapshot_id else self.cube._root()
            with self._lock:
                self.report = report
        except BaseException as error:  # noqa: BLE001 - handed to the loop, which raises it
            with self._lock:
                self._error = error
        finally:
            with self._lock:
                self._done = True
                self._lock.notify_all()

    def _union_shape(self) -> Geometry:
        """The ROIs' union, for the commit's ``roi`` record (``Region.record`` keeps it to 256 points)."""
        from odc.geo.geom import unary_union

        shapes = [rec.region.geometry for rec in self.records]
        crs = shapes[0].crs
        if any(shape.crs != crs for shape in shapes):
            shapes = [shape.to_crs("EPSG:4326") for shape in shapes]
        try:
            return unary_union(shapes)
        except Exception:  # noqa: BLE001 - an invalid outline (a bow-tie from a file): their boxes instead
            return unary_union([shape.envelope for shape in shapes])

    def _know_items(self, patches: Sequence[PatchIndex]) -> None:
        """The run's patches, with their Items: those without any are written by no one (nodata)."""
        for patch in patches:
            if patch.items:
                self._run_ids.add(patch.id)
                self._cells[(patch.zone, patch.time_index, patch.iy, patch.ix)] = patch.id
            elif self._pending(patch):
                self._deferred.add(patch.id)  # left unfilled or recorded empty: the commit decides
        self._items_known = True
        self._advance()

    def _pending(self, patch: PatchIndex) -> bool:
        """Whether the run would leave this patch unfilled were it empty (a recent step: ``Run.commit``'s rule,
        ``plan.settled``, as of the same moment the run judges by)."""
        from .plan import settled

        return not settled(self.spec, patch, self._as_of)

    def _advance(self) -> None:
        """Allocate the Tiles of the next ROIs while they fit in the budget (at least the head's)."""
        from .cold_tile import ColdTile

        if not self._items_known:
            return
        while self._frontier < len(self.records):
            rec = self.records[self._frontier]
            if self._frontier > self._head and self.held + rec.nbytes > self.hold_bytes:
                break
            self._frontier += 1
            if rec.cold or rec.dst is None:
                continue
            fresh = ColdTile.for_load(self.spec, rec.dst, self.steps, self.names)
            if fresh is None:  # not on a zone's grid (resampled, or over zones): read after the commit
                continue
            zone, steps = fresh.grid.name, self.steps if self.steps is not None else [None]
            waits = {self._cells[key] for iy, ix in fresh.grid.chunks_in(fresh.src_window) for step in steps
                     if (key := (zone, step, iy, ix)) in self._cells}
            if waits & self._written:
                rec.cold = True
                continue
            rec.fresh, rec.waits = fresh, waits
            for patch in waits:
                self._holders.setdefault(patch, []).append(self._frontier - 1)
            self.held += rec.nbytes
            self.held_peak = max(self.held_peak, self.held)

    def _ready(self, rec: _Roi) -> bool:
        """Whether the ROI's Tile is complete before the commit."""
        return (self._items_known and rec.fresh is not None and not rec.cold and not rec.waits
                and not self._deferred.intersection(rec.patches))

    def _stop_if_cancelled(self) -> None:
        """End the run, committing nothing, once the loop over the Tiles has ended early."""
        with self._lock:
            if self._cancelled:
                raise LoadCancelled("the loop over load_many's Tiles ended before the run did: nothing is committed")

    def _attempting(self, patches: Sequence[PatchIndex]) -> None:
        """The patches the run will write: those it skips were filled by another run meanwhile."""
        attempted = {p.id for p in patches}
        with self._lock:
            self._deferred |= self._run_ids - attempted
            self._lock.notify_all()

    def _landed(self, patch: PatchIndex, done: PatchWrite) -> None:
        """A patch is written (told on the run's thread): paste it into the held Tiles that wait for it."""
        with self._lock:
            if patch.id in self._written:
                return  # each patch lands once; a guard, so that a patch is never counted twice
            self._written.add(patch.id)
            self._has_data[patch.id] = any(n in done.values or n in done.unchanged for n in self.names)
            if not done.nbytes and self._pending(patch):
                self._deferred.add(patch.id)
            holders = [self.records[i] for i in self._holders.pop(patch.id, [])]
            for index in self.needers.get(patch.id, []):
                if index >= self._frontier:
                    self.records[index].cold = True  # its Tile is not held: read after the commit
            count = len(self._written)
        for rec in holders:
            rec.fresh.paste(patch, done)
        with self._lock:
            for rec in holders:
                rec.waits.discard(patch.id)
            self._lock.notify_all()
        if self.on_patch is not None:
            self.on_patch(count, len(self._run_ids))

    def _before_commit(self, rec: _Roi) -> xr.Dataset:
        """A held Tile whose patches are all in: the rest of it is what the cube held before the run."""
        from .read import steps_with_data

        kept = None
        if self.steps is not None:
            before = [self.union[p] for p in rec.patches if p not in self.missing_ids]
            with_data = steps_with_data(self.base_root, self.names, before)
            with_data |= {self.union[p].time_index for p in rec.patches if self._has_data.get(p)}
            kept = [step for step in self.steps if step in with_data]
        tile = self._attrs(rec.fresh.finish(self.base_root, kept), None, [], None)
        self._early.append((tile.attrs, list(rec.patches)))
        return tile

    def _after_run(self, rec: _Roi) -> xr.Dataset:
        """After the commit: as ``load`` reads its Tile then (pasted cells kept, the rest from the snapshot)."""
        root, snapshot = self._root_after
        report = self.report
        pending = set(report.patches_pending)
        theirs = set(report.patches_kept_from_other_run)
        if rec.fresh is not None and not rec.cold:
            tile = rec.fresh.finish(root, self._kept(root, rec), stale=[self.union[p] for p in rec.patches
                                                                        if p in theirs])
        else:
            tile = self._read(root, rec)
            self.read_after_commit += 1
        unfilled = pending | set(report.patches_provisional)
        return self._attrs(tile, snapshot, [p for p in rec.patches if p in unfilled], root)


# --- files: the command line and the flow ---------------------------------------------------------
@dataclass
class RoiFile:
    """ROIs read from a file, with the name each one's output takes."""

    rois: list
    """The ROIs: GeoBoxes (with a resolution) or odc-geo Geometries, in the file's CRS."""
    names: list[str]
    """Each ROI's output name (from the id column, or its row number), safe as a file name."""


def _safe(name: str) -> str:
    import re

    return re.sub(r"[^A-Za-z0-9._-]", "_", name).strip(".") or "_"


def read_rois(path: str | Path, id_column: str | None = None, resolution: float | None = None) -> RoiFile:
    """The ROIs of a GeoJSON, GeoPackage or GeoParquet file, in its CRS: each row's geometry (or, with
    ``resolution``, the GeoBox of its bounds at that pixel size), named by ``id_column`` or the row
    index (zero-padded). A missing file, no geometry column, no CRS, an empty geometry or duplicate
    names are errors naming the file (and row).

    Parameters
    ----------
    path : str or pathlib.Path
        The file: ``.parquet``, ``.geoparquet`` or ``.pq`` is read as GeoParquet, anything else by GDAL.
    id_column : str or None, optional
        The column naming each ROI's output (made safe as a file name); None: the row number.
    resolution : float or None, optional
        A pixel size in the file's CRS units, to make each ROI a GeoBox; None: Geometries.

    Returns
    -------
    RoiFile
        The ROIs and their names, in the file's order.

    Raises
    ------
    FileNotFoundError
        If ``path`` is not a file.
    ROIError
        If the file has no geometry column or no CRS, holds no ROI, lacks ``id_column``, names two rows
        alike, has a row without geometry, or ``resolution`` is not a positive finite number.
    """
    import geopandas as gpd
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import Geometry

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{str(path)!r}: no such ROI file")
    try:
        if path.suffix.lower() in (".parquet", ".geoparquet", ".pq"):
            frame = gpd.read_parquet(path)
        else:
            frame = gpd.read_file(path)
    except ValueError as err:  # a Parquet file without GeoParquet's geo metadata, or no geometry column
        raise ROIError(f"{str(path)!r} has no geometry column ({str(err).splitlines()[0]}); give GeoParquet, "
                       "GeoJSON or GeoPackage with one geometry per ROI") from None
    if not isinstance(frame, gpd.GeoDataFrame) or frame.geometry.name not in frame.columns:
        raise ROIError(f"{str(path)!r} has no geometry column")
    if frame.crs is None:
        raise ROIError(f"{str(path)!r} has no CRS: write the file with one (GeoParquet's crs, a .prj, "
                       "GeoJSON is EPSG:4326)")
    if frame.empty:
        raise ROIError(f"{str(path)!r} holds no ROIs")
    if id_column is not None and id_column not in frame.columns:
        raise ROIError(f"{str(path)!r} has no column {id_column!r}; its columns are "
                       f"{[c for c in frame.columns if c != frame.geometry.name]}")
    width = len(str(len(frame) - 1))
    names = ([_safe(str(v)) for v in frame[id_column]] if id_column is not None
             else [f"{i:0{width}d}" for i in range(len(frame))])
    seen: dict[str, int] = {}
    for row, name in enumerate(names):
        if name in seen:
            raise ROIError(f"{str(path)!r}: rows {seen[name]} and {row} are both named {name!r} "
                           f"(column {id_column!r}); each ROI needs its own name")
        seen[name] = row
    rois = []
    for row, shape in enumerate(frame.geometry):
        if shape is None or shape.is_empty:
            raise ROIError(f"{str(path)!r}: row {row} ({names[row]}) has no geometry")
        geometry = Geometry(shape, frame.crs)
        if resolution is not None:
            if not (resolution > 0 and math.isfinite(resolution)):
                raise ROIError(f"resolution {resolution!r} must be a positive, finite pixel size in {frame.crs} "
                               "units")
            rois.append(GeoBox.from_bbox(geometry.boundingbox, frame.crs, resolution=resolution))
        else:
            rois.append(geometry)
    return RoiFile(rois, names)


def _clashing_files(names: Sequence[str], variables: Sequence[str]) -> str:
    """The COG file names two (ROI, variable) pairs share (``write_one``'s ``<name>_<variable>.tif``, compared
    without case, as some file systems do), described; empty when each pair has a file of its own."""
    seen: dict[str, tuple[str, str]] = {}
    for name in names:
        for variable in variables:
            file = f"{name}.tif" if len(variables) == 1 else f"{name}_{variable}.tif"
            other = seen.setdefault(file.casefold(), (name, variable))
            if other != (name, variable):
                return f"{file}: ROI {other[0]!r} {other[1]!r} and ROI {name!r} {variable!r}"
    return ""


def _output_kind(out: Path) -> str:
    return "zarr" if out.suffix.lower() == ".zarr" else "cog"


def write_one(tile: xr.Dataset, out: Path, name: str) -> list[Path]:
    """One ROI's Tile into ``out``: COGs ``<out>/<name>.tif`` (``<name>_<variable>.tif`` for several
    variables), or group ``name`` of the Zarr store ``out``.

    Parameters
    ----------
    tile : xarray.Dataset
        The Tile (one time step at most for COGs).
    out : pathlib.Path
        A folder for COGs, or a store whose name ends in ``.zarr``.
    name : str
        The ROI's name (``RoiFile.names``).

    Returns
    -------
    list[pathlib.Path]
        The files written (the group's path for Zarr); an existing file or group is replaced.

    Raises
    ------
    TOIError
        If a COG is asked for a Tile of more than one time step.
    """
    from .export import write_tile

    if _output_kind(out) == "cog":
        return write_tile(tile, out / f"{name}.tif", "cog")
    tile = tile.copy()
    tile.attrs = {k: v for k, v in tile.attrs.items() if isinstance(v, str | int | float)}
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Consolidated metadata")
        tile.to_zarr(out, group=name, mode="w", consolidated=False)
    return [out / name]


def export_many(cube: Cube, rois_path: str | Path, out: str | Path, toi: TOI | None = None, *,
                variables: str | Sequence[str] | None = None, id_column: str | None = None,
                resolution: float | None = None, concurrency: int | None = None, progress: bool | None = None,
                offline: bool = False, retries: int = 3, extra_metadata: dict[str, Any] | None = None,
                on_patch: Callable[[int, int], None] | None = None,
                on_tile: Callable[[int, int, str], None] | None = None) -> dict[str, Any]:
    """``load_many`` of the ROIs in a file, each Tile written as it comes (``write_one``): a folder of
    COGs, or one Zarr store (``out`` ending in ``.zarr``) with a group per ROI. Returns a summary.

    A COG holds one time step: a TOI of several steps is refused before anything is downloaded.

    Parameters
    ----------
    cube : Cube
        The cube to read and fill.
    rois_path : str or pathlib.Path
        The ROI file (``read_rois``).
    out : str or pathlib.Path
        A folder for COGs, or a Zarr store (a name ending in ``.zarr``); made if missing.
    toi : TOI or None, optional
        The time of interest; None: every step (or a cube without time).
    variables : str or Sequence[str] or None, optional
        The variables to write; None: all of them.
    id_column : str or None, optional
        The column naming each ROI's output; None: the row number.
    resolution : float or None, optional
        A pixel size in the file's CRS units, to make each ROI a GeoBox; None: Geometries.
    concurrency : int or None, optional
        Patches in flight at once; None: 8.
    progress : bool or None, optional
        Whether to show the run's bar; None: when stderr is a terminal.
    offline : bool, optional
        Never download: missing patches are written as nodata.
    retries : int, optional
        How many times a failing patch is tried again.
    extra_metadata : dict[str, Any] or None, optional
        Added to the commit's metadata (a flow run's id, name and flow).
    on_patch : Callable[[int, int], None] or None, optional
        Called with (patches written, patches the run writes) after each patch, from the run's thread (one
        call at a time, counts in order).
    on_tile : Callable[[int, int, str], None] or None, optional
        Called with (Tiles written, ROIs, the ROI's name) after each Tile.

    Returns
    -------
    dict[str, Any]
        ``rois``, ``written`` (files), ``rois_without_data`` (COG ROIs whose TOI held no acquisition:
        no file), ``out``, ``format`` (``"cog"`` or ``"zarr"``), ``snapshot`` (what the Tiles hold),
        ``run_id`` (None without a run), ``patches_planned``, ``patches_missing``, ``patches_written``,
        ``patches_empty``, ``bytes_written`` and ``seconds``.

    Raises
    ------
    FileNotFoundError, ROIError
        As ``read_rois`` raises them, before anything is downloaded.
    UnknownVariableError, TOIError, ROIError
        As ``load_many`` raises them, before anything is downloaded.
    TOIError
        If ``out`` is a COG folder and the TOI selects several time steps, before anything is downloaded
        (as ``export.write_tile`` refuses a GeoTIFF of several steps).
    CatalogError, ItemError, RadiometryError, PatchReadError, CubeChangedError, StorageError
        The run's error, as ``Cube.run`` raises it; nothing is committed (Tiles written before it stay).
    OSError
        If ``out`` cannot be made or written.
    """
    started = time.perf_counter()
    out = Path(out)
    listed = read_rois(rois_path, id_column, resolution)
    stream = load_many(cube, listed.rois, toi, variables=variables, concurrency=concurrency, progress=progress,
                       offline=offline, retries=retries, extra_metadata=extra_metadata, on_patch=on_patch)
    if _output_kind(out) == "cog" and stream.steps is not None and len(stream.steps) > 1:
        stream.close()  # never started: nothing was downloaded
        raise TOIError(f"the TOI selects {len(stream.steps)} time steps and a COG holds one: narrow it to one "
                       f"step, or write a Zarr store ({str(out)!r} ending in .zarr)")
    if _output_kind(out) == "cog":
        clash = _clashing_files(listed.names, stream.names)
        if clash:
            stream.close()
            raise ROIError(f"the ROIs' COGs would overwrite one another ({clash}): give --id-column names that do "
                           "not end in '_<variable>' of another ROI, or write a Zarr store")
        out.mkdir(parents=True, exist_ok=True)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
    files = empty = 0
    snapshot = None
    with stream:
        for index, (name, tile) in enumerate(zip(listed.names, stream, strict=True)):
            if "time" in tile.dims and tile.sizes["time"] == 0 and _output_kind(out) == "cog":
                empty += 1  # no acquisition under this ROI in the TOI: nothing to write
            else:
                files += len(write_one(tile, out, name))
            snapshot = tile.attrs.get("stacube_snapshot") or snapshot
            if on_tile is not None:
                on_tile(index + 1, len(listed.names), name)
    report = stream.report
    if report is not None and report.snapshot_id:
        snapshot = report.snapshot_id
    return {"rois": len(listed.names), "written": files, "rois_without_data": empty, "out": str(out),
            "format": _output_kind(out),
            "snapshot": snapshot or stream.base_snapshot, "run_id": stream.run_id,
            "patches_planned": stream.patches, "patches_missing": stream.patches_missing,
            "patches_written": len(report.patches_written) if report else 0,
            "patches_empty": len(report.patches_empty) if report else 0,
            "bytes_written": report.bytes_written if report else 0,
            "seconds": round(time.perf_counter() - started, 3)}
