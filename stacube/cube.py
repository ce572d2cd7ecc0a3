"""The Cube: create/open, load an ROI (downloading what is missing), pre-download, state and history."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import os
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import icechunk
import numpy as np
import pandas as pd
import xarray as xr
import zarr
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from . import history
from .catalog import LocalCatalog, default_catalog_root
from .cold_tile import ColdTile
from .errors import (
    CubeChangedError,
    CubeExistsError,
    CubeNotFoundError,
    ROIError,
    SpecError,
    TOIError,
    UnknownVariableError,
    storage_errors,
)
from .grid import patch_id, zone_grids
from .layout import FILLED, SPEC_ATTR, create_layout, encode_times
from .lazy import block_sizes, check_fits, lazy_tile
from .lonlat import lonlat_footprint
from .opened import OpenedGroup
from .plan import Plan, attach_items, plan_cells, plan_patches
from .read import holding_data, read_tile, steps_with_data
from .redaction import redact_log_records
from .region import Region
from .run import METADATA_KEY, Run, RunReport, start_run
from .runners import LocalRunner, Runner, runner_named
from .spec import MAX_AXIS_LENGTH, CubeSpec, check_name
from .store import (
    BRANCH,
    commit_lock,
    create_repository,
    cube_url,
    initialized_chunks,
    is_bare,
    open_repository,
)
from .timeaxis import TOI, TimeLike, select_steps, utc_now

if TYPE_CHECKING:
    import geopandas as gpd

log = logging.getLogger(__name__)


class Cube:
    """A versioned raster cube in an Icechunk repository; see ``CubeSpec`` for what it holds.

    The one object a user works with: it plans, downloads, reads and versions the cube, so that a
    load of an ROI x TOI is all it takes to get a Tile. Make one with ``create``, ``open`` or
    ``open_or_create``, not directly: they check the location and read or store the spec.

    Parameters
    ----------
    url : str or os.PathLike
        The cube's location as ``store.cube_url`` spells it (kept as ``url``).
    repo : icechunk.Repository
        The cube's repository, opened.
    spec : CubeSpec
        The spec stored in the cube.
    catalog_dir : str or os.PathLike or None, optional
        The folder of the local catalogs (``LocalCatalog``); None: ``default_catalog_root()``.
    """

    def __init__(self, url: str | os.PathLike, repo: icechunk.Repository, spec: CubeSpec,
                 catalog_dir: str | os.PathLike | None = None):
        self.url = os.fspath(url)
        """The cube's location: an absolute local path or ``s3://bucket/prefix`` (Tiles name it as ``stacube_cube``)."""
        self.repo = repo
        """The cube's Icechunk repository."""
        self.spec = spec
        """The cube's spec; its time axis follows the branch tip's whenever a read there finds it changed
        (grown by ``extend_time`` here or in another process, or shorter after a rollback)."""
        self.catalog_dir = Path(catalog_dir) if catalog_dir else default_catalog_root()
        """The folder of the local catalogs the cube's source is synced into."""
        self._opened: tuple[str, OpenedGroup] | None = None  # the last snapshot read, opened

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_opened": None}  # an open session stays in its process

    # --- creating and opening -------------------------------------------------------------
    @classmethod
    def create(cls, url: str | os.PathLike, spec: CubeSpec, catalog_dir: str | os.PathLike | None = None) -> Cube:
        """A new, empty cube at ``url`` (a folder path or ``s3://bucket/prefix``); the spec is stored inside.

        The spec was checked whole when it was made. If creating fails anyway (a full disk, S3 down,
        an interrupt), nothing is left in the way of trying again; of several processes creating one
        cube at once, one does and the others get CubeExistsError (see ``store.create_repository``).

        Parameters
        ----------
        url : str or os.PathLike
            Where the cube goes: a local path (missing, or an empty folder), a ``file:`` URL or
            ``s3://bucket/prefix`` (credentials from the environment).
        spec : CubeSpec
            What the cube holds; stored in its first commit.
        catalog_dir : str or os.PathLike or None, optional
            The folder of the local catalogs; None: ``default_catalog_root()``.

        Returns
        -------
        Cube
            The new cube: every patch unfilled, one snapshot (its creation).

        Raises
        ------
        SpecError
            If ``spec`` is not a CubeSpec, ``url`` is no cube location as written (``store.cube_url``),
            or a ``STACUBE_CHUNK_REFS_CACHED`` or ``STACUBE_S3_*`` setting is unusable.
        CubeExistsError
            If a cube is there already (``open`` or ``open_or_create`` it), another process created it
            meanwhile, or something else is in the way (a file, a folder of other files, S3 objects that
            are no repository).
        StorageError
            If the place cannot be written (no space, read-only, permission denied, a file where a folder
            should be); nothing is left behind.
        S3AccessError
            If S3 does not answer after its tries.
        """
        if not isinstance(spec, CubeSpec):
            raise SpecError(f"Cube.create needs a CubeSpec, got {type(spec).__name__}")
        location = cube_url(url)

        def populate(repo: icechunk.Repository) -> None:
            session = repo.writable_session(BRANCH)
            create_layout(session.store, spec)
            session.commit(f"stacube: create cube {spec.name!r}", metadata={METADATA_KEY: {"event": "create"}})

        with storage_errors(location, "cube"):
            repo = create_repository(url, populate)
        return cls(location, repo, spec, catalog_dir)

    @classmethod
    def open(cls, url: str | os.PathLike, catalog_dir: str | os.PathLike | None = None) -> Cube:
        """An existing cube; needs nothing but its location, since the spec is stored inside.

        Parameters
        ----------
        url : str or os.PathLike
            The cube's location: a local path, a ``file:`` URL or ``s3://bucket/prefix``.
        catalog_dir : str or os.PathLike or None, optional
            The folder of the local catalogs; None: ``default_catalog_root()``.

        Returns
        -------
        Cube
            The cube, with the spec stored at its branch tip.

        Raises
        ------
        CubeNotFoundError
            If no repository is at ``url``, its creation is under way in another process or was
            interrupted (``create`` finishes it), or it is an Icechunk repository that is no stacube cube.
        SpecError
            If ``url`` is no cube location as written (``store.cube_url``), the cube holds a spec this
            stacube refuses (written by a newer one, malformed), or a ``STACUBE_*`` setting is unusable.
        S3AccessError
            If S3 does not answer after its tries.
        """
        location = cube_url(url)
        repo = open_repository(url)
        try:
            stored = zarr.open_group(repo.readonly_session(branch=BRANCH).store, mode="r").attrs[SPEC_ATTR]
        except (zarr.errors.GroupNotFoundError, KeyError) as err:
            if is_bare(repo):
                raise CubeNotFoundError(f"no cube at {os.fsdecode(url)!r} yet: its creation is under way in another "
                                        "process or was interrupted (Cube.create(path, spec) finishes it)") from err
            raise CubeNotFoundError(f"{os.fsdecode(url)!r} holds an Icechunk repository that is not a "
                                    "stacube cube") from err
        try:
            spec = CubeSpec.from_json(stored)
        except SpecError as err:
            raise SpecError(f"the cube at {os.fsdecode(url)!r} holds a spec stacube refuses: {err}") from err
        return cls(location, repo, spec, catalog_dir)

    @classmethod
    def open_or_create(cls, url: str | os.PathLike, spec: CubeSpec,
                       catalog_dir: str | os.PathLike | None = None) -> Cube:
        """Open the cube at ``url`` if there is one (its spec must equal ``spec``), else create it.

        Safe to call from several processes at once: one creates the cube, the others open it.

        Parameters
        ----------
        url : str or os.PathLike
            The cube's location, as for ``create``.
        spec : CubeSpec
            The cube's spec: stored if the cube is created; else the stored one must equal it
            (``to_json``), time axis included.
        catalog_dir : str or os.PathLike or None, optional
            The folder of the local catalogs; None: ``default_catalog_root()``.

        Returns
        -------
        Cube
            The cube, opened or new.

        Raises
        ------
        SpecError
            If ``spec`` is not a CubeSpec (before anything is opened or made), the cube there has another
            spec, or as ``open`` and ``create`` raise it.
        CubeExistsError
            If something that is no cube is in the way (a file, a folder of other files).
        StorageError
            If the cube is to be created and the place cannot be written.
        S3AccessError
            If S3 does not answer after its tries.
        """
        if not isinstance(spec, CubeSpec):  # before the cube is opened: compared below, or stored by create
            raise SpecError(f"Cube.open_or_create needs a CubeSpec, got {type(spec).__name__}")
        try:
            cube = cls.open(url, catalog_dir)
        except CubeNotFoundError:
            try:
                return cls.create(url, spec, catalog_dir)
            except CubeExistsError as exists:
                try:  # another process created it meanwhile
                    cube = cls.open(url, catalog_dir)
                except CubeNotFoundError:
                    raise exists from None  # something else is in the way (a folder of other files)
        if cube.spec.to_json() != spec.to_json():
            raise SpecError(f"the cube at {os.fsdecode(url)!r} has a different spec than the one given")
        return cube

    def __repr__(self) -> str:
        """The cube's name, location, variables and zones (CRS and shape): what a notebook shows."""
        from .crs import crs_label

        zones = ", ".join(f"{n} ({crs_label(g.crs)}, {g.shape.y}x{g.shape.x})" for n, g in self.spec.zones.items())
        return f"<stacube.Cube {self.spec.name!r} at {self.url!r}: {list(self.spec.variables)} in {zones}>"

    @property
    def catalog(self) -> LocalCatalog:
        """The local catalog of the cube's source (under ``catalog_dir``): what planning searches for the
        Items of each patch, and what a run syncs from the source first. Nothing is read or made until
        it is used; from the first call, this process's log records have URL signatures and user info
        redacted (libraries log Items' hrefs)."""
        source = self.spec.source
        redact_log_records()  # Items' hrefs may carry credentials, and libraries log Items at DEBUG
        return LocalCatalog(self.catalog_dir, source.api_url, source.collection)

    # --- reading and downloading ----------------------------------------------------------
    def _root(self, at: str | None = None, snapshot: str | None = None) -> tuple[OpenedGroup, str]:
        """The cube's root group at the branch tip (or ``at``, or the known snapshot id ``snapshot``: a run's
        own commit, which a concurrent commit may already have followed), and its snapshot id. A snapshot
        never changes, so the last one opened is kept: loads in a loop open a session and read the root's
        metadata once per commit, not once per load (most of a small warm load's fixed cost)."""
        if snapshot is None:
            snapshot = self.repo.lookup_branch(BRANCH) if at is None else history.resolve(self.repo, at)
        opened = self._opened
        if opened is not None and opened[0] == snapshot:
            return opened[1], snapshot
        try:
            group = zarr.open_group(self.repo.readonly_session(snapshot_id=snapshot).store, mode="r")
        except zarr.errors.GroupNotFoundError:
            if at is None:
                raise
            group = None
        if at is not None:  # the repository's first snapshot: a clear error, not zarr's (read once, here)
            history.check_cube_root(group, snapshot, at)
        root = OpenedGroup(group)
        self._opened = (snapshot, root)
        return root, snapshot

    def _session(self, at: str | None = None) -> icechunk.Session:
        if at is None:
            return self.repo.readonly_session(branch=BRANCH)
        return self.repo.readonly_session(snapshot_id=history.resolve(self.repo, at))

    def _spec_in(self, root: zarr.Group, at: str | None) -> CubeSpec:
        """The spec stored with the version under ``root``: its time axis may have grown (another
        process extended it) or be shorter (an old version). The branch's becomes this Cube's."""
        stored = root.attrs[SPEC_ATTR]
        if stored.get("time") == self.spec.time_json():
            return self.spec
        spec = CubeSpec.from_json(stored)
        if at is None:
            self.spec = spec
        return spec

    def _variables(self, variables: str | Sequence[str] | None) -> list[str]:
        if variables is None:
            return list(self.spec.variables)
        names = [variables] if isinstance(variables, str) else list(variables)
        for name in names:
            if name not in self.spec.variables:
                raise UnknownVariableError(
                    f"unknown variable {name!r}; cube {self.spec.name!r} holds {list(self.spec.variables)}"
                )
        return names

    def to_xarray(self, zone: str | None = None, at: str | None = None) -> xr.Dataset | dict[str, xr.Dataset]:
        """The cube as lazy xarray Datasets, for work in xarray, Dask or odc-geo without stacube's load path.

        One Dataset per zone, on the zone's own grid: its variables (Dask arrays read chunk by chunk as
        they are computed; never-filled chunks read as nodata), ``y``/``x`` coordinates, the time axis,
        ``spatial_ref`` (so ``ds.odc.geobox`` is the zone's GeoBox) and each variable's CF attributes
        (``_FillValue``, ``scale_factor``/``add_offset``, ``units``; numbers as stored, as in a Tile).
        stacube's own record of filled patches is left out. ``zone`` names one zone; without it a cube
        of one zone gives its Dataset and a cube of several a dict by zone name. ``at`` reads a
        snapshot or tag (see ``history``) instead of the branch head. Nothing is downloaded.

        Parameters
        ----------
        zone : str or None, optional
            The zone to give; None: every zone.
        at : str or None, optional
            A snapshot id or tag; None: the branch tip.

        Returns
        -------
        xarray.Dataset or dict[str, xarray.Dataset]
            The zone's Dataset (``zone`` given, or a cube of one zone), else one per zone by name. A
            stored chunk whose checksum fails raises CubeDamagedError when it is computed.

        Raises
        ------
        ROIError
            If the cube has no zone ``zone``; the message lists its zones.
        VersionNotFoundError
            If ``at`` names no snapshot or tag of this cube.
        """
        session = self._session(at)
        root = zarr.open_group(session.store, mode="r")
        spec = self._spec_in(root, at)
        names = list(spec.zones)
        if zone is not None and zone not in spec.zones:
            raise ROIError(f"cube {spec.name!r} has no zone {zone!r}; its zones are {names}")
        wanted = [zone] if zone is not None else names
        from .lazy import zone_dataset

        out = {name: zone_dataset(session, spec, name) for name in wanted}
        return out[wanted[0]] if len(wanted) == 1 else out

    def plan(self, roi: GeoBox | Geometry | Region, toi: TOI | None = None) -> Plan:
        """The patches under ROI x TOI and which the cube lacks; validates the ROI and TOI.

        What ``run`` downloads, read from the cube's own record of filled patches at the branch tip;
        nothing is downloaded or written, and only the patches under the ROI are listed.

        Parameters
        ----------
        roi : GeoBox, Geometry or Region
            The region of interest, with its CRS.
        toi : TOI or None, optional
            The time of interest (``stacube.timeaxis``); None: every step (or a cube without time).

        Returns
        -------
        Plan
            ``patches`` under ROI x TOI and the ``missing`` ones, with no Items attached yet.

        Raises
        ------
        ROIError
            If the ROI is no odc-geo GeoBox or Geometry, has no CRS or coordinates that are not finite,
            is an empty geometry, or lies outside every zone of the cube.
        TOIError
            If the TOI is not a time pandas reads, is empty, ends before it starts, lies outside the time
            axis, or is given to a cube without time.
        """
        region = Region.of(roi)
        root, _ = self._root()
        spec = self._spec_in(root, None)
        return plan_patches(spec, root, region, select_steps(spec.time, toi))

    def plan_cells(self, cells: Iterable[tuple[str, int, int]], toi: TOI | None = None) -> Plan:
        """The patches of chunk cells ``(zone, row, column)`` x TOI and which the cube lacks.

        For callers that know which chunks they need (the parcel ingest), where an ROI drawn around
        them would also catch a neighbouring zone's overlapping chunks (``plan.plan_cells``).

        Parameters
        ----------
        cells : Iterable[tuple[str, int, int]]
            Zone name, chunk row and chunk column of each chunk; repeats count once.
        toi : TOI or None, optional
            The time of interest; None: every step (or a cube without time).

        Returns
        -------
        Plan
            The cells' patches at each step of the TOI, and the ``missing`` ones.

        Raises
        ------
        ROIError
            If ``cells`` is no collection of cells, a cell is not three values (a zone name, then a row and
            a column that are whole numbers), names a zone the cube does not have, or lies outside its
            zone's chunks; the message names the cell.
        TOIError
            As for ``plan``.
        """
        root, _ = self._root()
        spec = self._spec_in(root, None)
        return plan_cells(spec, root, cells, select_steps(spec.time, toi))

    def _runner(self, runner: Runner | str | None, concurrency: int | None, progress: bool | None,
                skip_failed: bool = False) -> Runner:
        if isinstance(runner, str) or runner is None:
            return runner_named(runner or "local", concurrency=concurrency, progress=progress, skip_failed=skip_failed)
        return runner

    def run(self, plan: Plan, runner: Runner | str | None = None, *, message: str | None = None,
            metadata: dict[str, Any] | None = None, roi: GeoBox | Geometry | Region | None = None,
            concurrency: int | None = None,
            progress: bool | None = None, skip_failed: bool = False) -> RunReport:
        """Download the patches ``plan`` lacks (``plan.missing``) as ONE run: one commit, or none if a patch fails.

        ``plan`` comes from ``plan`` or ``plan_cells``; patches another run filled since are skipped.
        ``runner`` is a Runner, or a name (``runner_named``: "local", the default, or "prefect", which runs
        the run as a ``stacube-download`` flow run); ``concurrency``, ``progress`` and ``skip_failed`` set
        up a named runner. ``message`` is the commit message; ``metadata`` goes into the commit's metadata
        (and the report's) beside the run's own record, with ``roi`` (an ROI or Region) kept as lon/lat GeoJSON
        for ``rois``.

        The source is synced into the local catalog first where it does not cover the plan (``attach_items``).

        Parameters
        ----------
        plan : Plan
            What to download: its ``missing`` patches (``plan`` or ``plan_cells``).
        runner : Runner or str or None, optional
            A Runner, or a name ``runner_named`` knows; None: ``"local"``.
        message : str or None, optional
            The commit message; None: ``stacube: <n> patches from <collection>``.
        metadata : dict[str, Any] or None, optional
            Added to the commit's metadata and the report's ``metadata`` (wins over ``roi``'s record).
        roi : GeoBox, Geometry, Region or None, optional
            The ROI the plan was made for, recorded for ``rois`` and ``plot_state``; None: none recorded.
        concurrency : int or None, optional
            Patches in flight at once, for a named runner; None: its default (8).
        progress : bool or None, optional
            Whether a named runner shows progress; None: a bar when stderr is a terminal.
        skip_failed : bool, optional
            For a named runner: commit the other patches when one fails for good, listing the failures in
            ``report.patches_failed`` and leaving them unfilled for the next run.

        Returns
        -------
        RunReport
            What the run did; ``snapshot_id`` is None when it committed nothing (nothing missing, or only
            recent steps still without data).

        Raises
        ------
        SpecError
            If ``runner`` is a name nothing declares (or whose package is not installed).
        ROIError
            If ``roi`` is not a valid ROI.
        CatalogError
            If the source cannot be searched or synced, or the local catalog cannot be searched.
        ItemError
            If the source returned something that is no STAC Item, or an Item lacks what a read needs
            (an asset, projection info); nothing is read.
        RadiometryError
            If an Item's numbers cannot be brought into its variable's convention; nothing is read.
        TOIError
            If planned patches lie on time steps the cube no longer has (rolled back since the plan).
        PatchReadError
            If a patch failed for good, after its retries (unless ``skip_failed``); it names the patch,
            its Items and URLs, and its ``__cause__`` says why. Nothing is committed.
        CubeChangedError
            If other processes kept committing or changing the cube's structure under the commit.
            Nothing is committed.
        StorageError
            If the cube or the catalog folder cannot be written (no space, read-only, permission denied),
            also with ``skip_failed``. Nothing is committed.
        """
        runner = self._runner(runner, concurrency, progress, skip_failed)
        context = {**({"roi": Region.of(roi).record()} if roi is not None else {}), **(metadata or {})}

        def execute(runner: Runner, hosted: dict[str, Any]) -> RunReport:
            run = self._start_run(plan, runner, message, {**context, **hosted})
            with storage_errors(self.url, "cube"):  # a full disk or a read-only cube: one error naming it
                return run.complete()

        host = getattr(runner, "host", None)  # a HostingRunner holds the whole run (a Prefect flow run)
        if host is None:
            return execute(runner, {})
        about = {"patches": [p.id for p in plan.missing], "roi": context.get("roi"), "message": message}
        return host(execute, self, about)

    def _start_run(self, plan: Plan, runner: Runner, message: str | None, metadata: dict[str, Any],
                   keep_values: bool = False) -> Run:
        """The run of what ``plan`` lacks: its Items from the catalog (synced where it does not cover them),
        checked, and a session forked for the patches (``run.start_run``); nothing read yet."""
        as_of = utc_now()  # before the catalog is asked: Items published after it are not this run's
        patches = attach_items(self.spec, self.catalog, plan.missing)
        with storage_errors(self.url, "cube"):
            return start_run(self.repo, self.spec, patches, self.spec.source.backend(self.spec.variables), runner,
                             already_filled=len(plan.patches) - len(plan.missing), message=message,
                             commit_lock=functools.partial(commit_lock, self.url), extra_metadata=metadata,
                             keep_values=keep_values, as_of=as_of)

    def rois(self, last: int = 10) -> list[Any]:
        """The ROIs of the last ``last`` runs that wrote to the cube, newest first, as lon/lat shapely
        geometries (what ``plot_state`` draws). Loads served from the cube alone commit nothing, so
        they are not among them.

        Parameters
        ----------
        last : int, optional
            How many ROIs, at most (runs that recorded none, such as ``plan_cells`` runs, do not count).

        Returns
        -------
        list[shapely.Geometry]
            Each run's ROI as recorded (to a micro-degree, or its convex hull when long), newest first.
        """
        import shapely

        found = []
        for _, meta in history.run_metadata(self.repo):
            roi = meta.get("roi")
            if roi is not None:
                found.append(shapely.from_geojson(json.dumps(roi)))
                if len(found) == last:
                    break
        return found

    def download(self, aoi: GeoBox | Geometry, toi: TOI | None = None, *, concurrency: int | None = None,
                 runner: Runner | str | None = None, progress: bool | None = None,
                 message: str | None = None, skip_failed: bool = False) -> RunReport:
        """Fill every patch under AOI x TOI that the cube lacks, as one snapshot; returns what was done.

        ``runner="prefect"`` runs it as the ``stacube-download`` Prefect flow (a task per patch, or per
        batch of patches in large runs); any Runner, or a name ``runner_named`` knows, works (see ``run``).
        A patch that fails for good fails the whole run (nothing is committed), unless ``skip_failed``:
        then the others are committed, and the failures are listed in ``report.patches_failed`` and left
        unfilled for the next run.

        Parameters
        ----------
        aoi : GeoBox or Geometry
            The area to fill, with its CRS; recorded in the commit (``rois``).
        toi : TOI or None, optional
            The time of interest; None: every step (or a cube without time).
        concurrency : int or None, optional
            Patches (or Prefect tasks) in flight at once; None: the runner's default (8).
        runner : Runner or str or None, optional
            A Runner, or a name ``runner_named`` knows (``"local"``, ``"prefect"``); None: ``"local"``.
        progress : bool or None, optional
            Whether to show progress; None: a bar when stderr is a terminal.
        message : str or None, optional
            The commit message; None: ``stacube: <n> patches from <collection>``.
        skip_failed : bool, optional
            Commit what could be read and list the patches that failed for good, instead of failing.

        Returns
        -------
        RunReport
            What the run did; ``snapshot_id`` is None when it committed nothing (as for ``run``).

        Raises
        ------
        ROIError, TOIError
            As for ``plan``, before anything is downloaded.
        SpecError, CatalogError, ItemError, RadiometryError, PatchReadError, CubeChangedError, StorageError
            As for ``run``; nothing is committed.
        """
        region = Region.of(aoi)  # checked once, for the plan and the run's record
        return self.run(self.plan(region, toi), runner, message=message, roi=region, concurrency=concurrency,
                        progress=progress, skip_failed=skip_failed)

    def load_many(self, rois: Iterable[GeoBox | Geometry], toi: TOI | None = None, *,
                  variables: str | Sequence[str] | None = None, concurrency: int | None = None,
                  progress: bool | None = None, offline: bool = False) -> Iterator[xr.Dataset]:
        """The Tiles of many ROIs, in the order given, from one download run (one commit) of the union
        of the patches they lack: the many-small-ROIs workload (``stacube.many``).

        Every ROI is checked and planned at the call; the run starts with the first ``next`` and each
        Tile is yielded as soon as its patches are in. Each Tile equals what ``load`` would return.
        Iterating raises the run's error (as ``run`` raises it) after the Tiles already yielded; nothing
        is committed then.

        Parameters
        ----------
        rois : Iterable[GeoBox or Geometry]
            The ROIs, each with its CRS.
        toi : TOI or None, optional
            The time of interest; None: every step (or a cube without time).
        variables : str or Sequence[str] or None, optional
            The variables to read; None: all of them.
        concurrency : int or None, optional
            Patches in flight at once; None: 8.
        progress : bool or None, optional
            Whether to show the run's bar; None: when stderr is a terminal.
        offline : bool, optional
            Never download: missing patches come back as nodata, listed in ``missing_patches``.

        Returns
        -------
        TileStream
            An iterator of the Tiles (``xarray.Dataset``), which also counts the patches and names the run.

        Raises
        ------
        UnknownVariableError
            If ``variables`` names a variable the cube does not hold.
        TOIError
            As for ``plan``.
        ROIError
            If an ROI is not valid or lies outside every zone (the message names its position), or the
            largest Tile would not fit in the memory free now; nothing is downloaded.

        Warns
        -----
        UserWarning
            When ``offline`` and patches under the ROIs are not in the cube (they are nodata).
        """
        from .many import load_many

        return load_many(self, rois, toi, variables=variables, concurrency=concurrency, progress=progress,
                         offline=offline)

    def load(self, roi: GeoBox | Geometry, toi: TOI | None = None, *, variables: str | Sequence[str] | None = None,
             offline: bool = False, at: str | None = None, concurrency: int | None = None,
             runner: Runner | str | None = None, progress: bool | None = None,
             empty_steps: bool = False, area: GeoBox | Geometry | None = None,
             chunks: Mapping[str, int] | None = None) -> xr.Dataset:
        """The Tile for ROI x TOI, downloading missing patches first (unless ``offline`` or ``at``).

        With ``chunks`` (odc-stac's convention: ``{"x": 2048, "y": 2048}``, or ``latitude``/``longitude``
        on a geographic grid, and ``time``) the Tile comes back lazy, Dask arrays read from the cube
        as they are computed, for ROIs bigger than memory. Without it, a Tile that would not fit in
        the memory free now is refused before anything is downloaded.

        Time steps that no Item fed under the ROI (no acquisition that day) are left out, as
        odc-stac does, so a TOI of days without acquisitions gives an empty time axis;
        ``empty_steps=True`` keeps every step of the TOI. Offline, missing patches come back as
        nodata (their steps kept) and are listed in ``attrs['missing_patches']``, as are patches that
        failed and were skipped by a runner with ``skip_failed``. ``area`` (inside
        the ROI; default the whole ROI) is what matters: only patches meeting it are downloaded,
        counted as missing or decide which steps hold data; the rest of the Tile is what the cube holds.

        Parameters
        ----------
        roi : GeoBox or Geometry
            The region of interest, with its CRS. A GeoBox is the Tile's grid; a Geometry's Tile is on the
            native grid of the first zone it meets.
        toi : TOI or None, optional
            The time of interest; None: every step (or a cube without time).
        variables : str or Sequence[str] or None, optional
            The variables to read; None: all of them.
        offline : bool, optional
            Never download (nor touch the network): read what the cube holds.
        at : str or None, optional
            A snapshot id or tag to read (never downloads); None: the branch tip.
        concurrency : int or None, optional
            Patches in flight at once when downloading; None: the runner's default (8).
        runner : Runner or str or None, optional
            What downloads the missing patches, as for ``run``; None: ``"local"``.
        progress : bool or None, optional
            Whether to show the download's progress; None: a bar when stderr is a terminal.
        empty_steps : bool, optional
            Keep the steps no Item fed (all nodata) instead of leaving them out.
        area : GeoBox or Geometry or None, optional
            The part of the ROI that matters; None: the whole ROI.
        chunks : Mapping[str, int] or None, optional
            Block sizes of a lazy (Dask) Tile by dim name; None: an eager Tile.

        Returns
        -------
        xarray.Dataset
            The Tile: dims, coordinates and CRS of the ROI's GeoBox, each variable with its CF attributes;
            ``attrs`` name the cube (``stacube_cube``), the snapshot read (``stacube_snapshot``), the
            ``missing_patches`` and, when it downloaded, the run (``stacube_run``).

        Raises
        ------
        UnknownVariableError
            If ``variables`` names a variable the cube does not hold.
        ROIError
            If ``roi`` or ``area`` is not a valid ROI, ``area`` reaches past ``roi``, or lies outside every zone
            (a Geometry ``roi`` meeting no zone), an eager Tile would not fit in the memory free now, or
            ``chunks`` is no mapping, names a dim the Tile has not or gives a size that is not a whole number
            of at least 1 (``lazy.block_sizes``); before anything is downloaded.
        TOIError
            As for ``plan``.
        VersionNotFoundError
            If ``at`` names no snapshot or tag of this cube.
        SpecError, CatalogError, ItemError, RadiometryError, PatchReadError, CubeChangedError, StorageError
            As for ``run``, when patches are downloaded; nothing is committed then.
        CubeDamagedError
            If a stored chunk read for the Tile fails its checksum (for a lazy Tile, when computed).

        Warns
        -----
        UserWarning
            When patches under the ROI are not in the cube (offline, ``at``, no Items published yet, or
            failed and skipped): they are nodata in the Tile.
        """
        names = self._variables(variables)
        region = Region.of(roi)  # the Tile's grid
        wanted = Region.of(area) if area is not None else region  # what is planned, counted missing and recorded
        if area is not None:
            wanted.check_inside(region)
        root, snapshot = self._root(at)
        spec = self._spec_in(root, at)
        steps = select_steps(spec.time, toi)
        plan = plan_patches(spec, root, wanted, steps)
        dst = region.tile_geobox(zone_grids(spec))
        if chunks is None:
            check_fits(spec, dst, steps, names)
        else:
            block_sizes(dst, steps, chunks)  # a bad chunks is refused before anything is downloaded
        report, fresh = None, None
        if plan.missing and not offline and at is None:
            chosen = self._runner(runner, concurrency, progress)
            # A run in this process hands over what it writes, pasted straight into the Tile (no read-back).
            if isinstance(chosen, LocalRunner) and chunks is None:
                fresh = ColdTile.for_load(spec, dst, steps, names)
            if fresh is None:
                report = self.run(plan, chosen, roi=wanted)
            else:
                run = self._start_run(plan, chosen, None, {"roi": wanted.record()}, keep_values=True)
                with storage_errors(self.url, "cube"), contextlib.closing(run.landed()) as landed:
                    for patch, written in landed:
                        fresh.paste(patch, written)
                    report = run.commit()
            # the run's own snapshot: a run committing right after it may hold other values for these patches
            root, snapshot = self._root(snapshot=report.snapshot_id) if report.snapshot_id else self._root()
            unfilled = set(report.patches_pending) | set(report.patches_failed)  # failed: a skip_failed runner
            plan.missing = [p for p in plan.missing if p.id in unfilled]
        if steps is not None and not empty_steps:
            with_data = steps_with_data(root, names, plan.patches)
            steps = [step for step in steps if step in with_data]
        if chunks is not None:
            tile = lazy_tile(spec, root.store.session, dst, steps, names, chunks)
        elif fresh is not None:
            theirs = set(report.patches_kept_from_other_run)
            tile = fresh.finish(root, steps, stale=[p for p in plan.patches if p.id in theirs])
        else:
            tile = read_tile(spec, root, dst, steps, names)
        tile.attrs["stacube_cube"] = self.url
        tile.attrs["stacube_snapshot"] = snapshot
        provisional = holding_data(root, names, plan.missing)  # recent: shown, but read again by a download
        plan.missing = [p for p in plan.missing if p.id not in provisional]
        tile.attrs["missing_patches"] = [p.id for p in plan.missing]
        tile.attrs["provisional_patches"] = sorted(provisional)
        if plan.missing:
            failed = [p.id for p in plan.missing if report is not None and p.id in report.patches_failed]
            why = (f"{len(failed)} of them failed and were skipped, see the run's patches_failed" if failed
                   else "offline or historical load, or no Items published yet")
            warnings.warn(
                f"{len(plan.missing)} patch(es) under the ROI are not in the cube and were returned as nodata "
                f"({why}): {[p.id for p in plan.missing][:5]}",
                stacklevel=2,
            )
        if report is not None:
            tile.attrs["stacube_run"] = report.run_id
        return tile

    def extend_time(self, until: TimeLike, metadata: Mapping[str, Any] | None = None) -> str | None:
        """Grow the time axis at its end so that it reaches ``until`` (anything pandas reads as a time).

        Nothing already in the cube is rewritten: the arrays grow along time and the new steps start
        unfilled. One snapshot; returns its id, or None when the axis already reaches ``until``.

        Parameters
        ----------
        until : TimeLike
            The last instant the axis must cover; a partial date (``"2025-06"``) stands for its whole period.
        metadata : Mapping[str, Any] or None, optional
            More for the commit's metadata (a flow run names itself there).

        Returns
        -------
        str or None
            The id of the snapshot that grew the axis, or None when it already reached ``until``
            (perhaps grown by another process: ``spec`` is then brought up to date).

        Raises
        ------
        TOIError
            If the cube has no time axis, ``until`` is not a time pandas reads or has no end (an open slice), or the
            axis would grow past ``spec.MAX_AXIS_LENGTH`` steps.
        CubeChangedError
            If other runs kept committing while the axis was grown (10 attempts); nothing changed.
        StorageError
            If the cube cannot be written (read-only, no space, permission denied, its lock file cannot be
            opened); nothing changed.
        """
        from .timeaxis import toi_intervals

        if self.spec.time is None:
            raise TOIError(f"cube {self.spec.name!r} has no time axis to extend")
        try:
            end = toi_intervals(until)[-1][1]
        except (TypeError, ValueError, OverflowError) as err:
            raise TOIError(f"cannot extend the time axis to {until!r}: {err}") from err
        if end == pd.Timestamp.max:
            raise TOIError(f"cannot extend the time axis to {until!r}: it has no end (give a time: '2025-12-31')")
        first, step = self.spec.time[0], (self.spec.time[-1] - self.spec.time[0]) / max(len(self.spec.time) - 1, 1)
        if len(self.spec.time) > 1 and (end - first) / step > MAX_AXIS_LENGTH:  # before building it in memory
            raise TOIError(f"cannot extend the time axis to {until!r}: it would hold about {(end - first) / step:,.0f} "
                           f"steps, at most {MAX_AXIS_LENGTH:,}")
        for _ in range(10):  # on S3 there is no lock: a run committing meanwhile means starting again
            with storage_errors(self.url, "cube"), commit_lock(self.url):
                session = self.repo.writable_session(BRANCH)
                root = zarr.open_group(session.store, mode="r+")
                current = CubeSpec.from_json(root.attrs[SPEC_ATTR])  # another process may have grown it
                axis = pd.date_range(current.time[0], end, freq=current.time.freq)
                if len(axis) <= len(current.time):
                    self.spec = current
                    return None
                grown = dataclasses.replace(current, time=axis)
                for zone in grown.zones:
                    group = root[zone]
                    for name in [*grown.variables, FILLED]:
                        group[name].resize((len(axis), *group[name].shape[1:]))
                    group["time"].resize((len(axis),))
                    group["time"][:] = encode_times(axis)
                root.attrs[SPEC_ATTR] = grown.to_json()
                try:
                    snapshot = session.commit(
                        f"stacube: extend the time axis of {grown.name!r} to {axis[-1]:%Y-%m-%d %H:%M} "
                        f"({len(axis)} steps)", metadata={METADATA_KEY: {"event": "extend_time", "steps": len(axis),
                                                                  **(metadata or {})}})
                except icechunk.ConflictError:
                    continue
            self.spec = grown
            log.info("cube %s: time axis now %s .. %s (%d steps)", grown.name, axis[0], axis[-1], len(axis))
            return snapshot
        raise CubeChangedError(f"could not extend the time axis of {self.spec.name!r}: the cube kept changing")

    # --- what the cube holds --------------------------------------------------------------
    def _runs(self) -> dict[int, dict[str, Any]]:
        """Run stamp -> snapshot id, time and run id, from the commit metadata on the branch."""
        runs = {}
        for snap, meta in history.run_metadata(self.repo):
            if "stamp" in meta:
                runs[int(meta["stamp"])] = {"snapshot": snap.id, "committed": snap.written_at, "run_id": meta["run_id"]}
        return runs

    def state(self, at: str | None = None) -> gpd.GeoDataFrame:
        """Filled patches: id, zone, time, geometry (EPSG:4326), snapshot and whether they held data.

        Lists only the patches the record holds (its initialized chunks), never the whole grid.

        Parameters
        ----------
        at : str or None, optional
            A snapshot id or tag; None: the branch tip.

        Returns
        -------
        geopandas.GeoDataFrame
            A row per filled patch, sorted by zone, time and id: ``id``, ``zone``, ``time`` (None without a
            time axis), ``has_data`` (False: no Item had data there), ``snapshot`` and ``run_id`` of the
            run that filled it (None when no commit on the branch names it), and its chunk's outline as
            ``geometry`` (EPSG:4326).

        Raises
        ------
        VersionNotFoundError
            If ``at`` names no snapshot or tag of this cube.
        """
        import geopandas as gpd  # only here: it adds half a second to `import stacube`

        root, _ = self._root(at)
        spec = self._spec_in(root, at)
        runs = self._runs()
        rows = []
        for grid in zone_grids(spec):
            filled = root[grid.name][FILLED]
            cells = initialized_chunks(root.store.session, f"/{grid.name}/{FILLED}")
            if not cells:
                continue
            stamps = filled.get_coordinate_selection(tuple(np.array(cells).T))
            footprints: dict[tuple[int, int], Any] = {}  # a chunk's outline once, not once per time step
            for cell, stamp in zip(cells, stamps.tolist(), strict=True):
                step, (iy, ix) = (cell[0], cell[1:]) if spec.time is not None else (None, cell)
                when = spec.time[step] if step is not None else None
                run = runs.get(abs(stamp), {})
                if (iy, ix) not in footprints:
                    footprints[iy, ix] = lonlat_footprint(grid.chunk_geobox(iy, ix).extent)
                rows.append({
                    "id": patch_id(grid.name, iy, ix, when),
                    "zone": grid.name,
                    "time": when,
                    "has_data": stamp > 0,
                    "snapshot": run.get("snapshot"),
                    "run_id": run.get("run_id"),
                    "geometry": footprints[iy, ix],
                })
        columns = ["id", "zone", "time", "has_data", "snapshot", "run_id", "geometry"]
        frame = pd.DataFrame(rows, columns=columns).sort_values(["zone", "time", "id"], ignore_index=True)
        return gpd.GeoDataFrame(frame, geometry="geometry", crs="EPSG:4326")

    def zone_footprints(self) -> dict[str, Any]:
        """Each zone's extent as a lon/lat shapely geometry, by zone name: what ``plot_state`` and
        ``explore`` outline.

        Returns
        -------
        dict[str, shapely.Geometry]
            Zone name -> its extent in lon/lat (right at the poles and across 180 degrees).
        """
        return {grid.name: lonlat_footprint(grid.geobox.extent) for grid in zone_grids(self.spec)}

    def plot_state(self, color_by: str = "snapshot", at: str | None = None, rois: int = 10) -> Any:
        """A matplotlib Figure of what the cube holds: zone extents, filled patches coloured by
        ``color_by`` ("snapshot" or "time"), patches without source data hatched, and the last ``rois``
        ROIs that wrote to the cube. Save it with ``fig.savefig("state.png")``.

        Parameters
        ----------
        color_by : str, optional
            ``"snapshot"`` (default) or ``"time"`` (each place's latest filled step).
        at : str or None, optional
            A snapshot id or tag whose state to draw; None: the branch tip.
        rois : int, optional
            How many of the last runs' ROIs to draw (0: none).

        Returns
        -------
        matplotlib.figure.Figure
            The figure, built without pyplot.

        Raises
        ------
        SpecError
            If ``color_by`` is neither ``"snapshot"`` nor ``"time"``, before the state is read.
        VersionNotFoundError
            If ``at`` names no snapshot or tag of this cube.
        """
        from .pictures import check_color_by, plot_state

        check_color_by(color_by)  # before the state is read
        return plot_state(self.state(at), self.zone_footprints(), self.rois(rois) if rois else (),
                          color_by=color_by, title=f"cube {self.spec.name!r}" + (f" at {at}" if at else ""))

    def explore(self, at: str | None = None, rois: int = 10) -> Any:
        """An interactive folium map of the same layers as ``plot_state`` (``m.save("state.html")``).

        Parameters
        ----------
        at : str or None, optional
            A snapshot id or tag whose state to show; None: the branch tip.
        rois : int, optional
            How many of the last runs' ROIs to show (0: none).

        Returns
        -------
        folium.Map
            The map, with a tooltip per patch; no tile layer is fetched unless switched on.

        Raises
        ------
        VersionNotFoundError
            If ``at`` names no snapshot or tag of this cube.
        """
        from .pictures import explore

        return explore(self.state(at), self.zone_footprints(), self.rois(rois) if rois else ())

    # --- versions -------------------------------------------------------------------------
    def tag(self, name: str, snapshot: str | None = None) -> str:
        """Name a snapshot (default: the latest) so that it can be loaded, rolled back to and kept.

        Parameters
        ----------
        name : str
            The new tag: letters, digits, ``_``, ``-`` and ``.``. Tags never move.
        snapshot : str or None, optional
            The snapshot to name, as a tag or snapshot id; None: the branch tip.

        Returns
        -------
        str
            The snapshot id the tag names.

        Raises
        ------
        SpecError
            If ``name`` is not an allowed name, or a tag ``name`` exists already.
        VersionNotFoundError
            If ``snapshot`` names no tag or snapshot of this cube.
        StorageError
            If the cube cannot be written (read-only, no space, permission denied, its lock file cannot be
            opened); nothing changed.
        """
        check_name("tag", name)  # before the lock: a read-only cube still names a bad tag
        with storage_errors(self.url, "cube"), commit_lock(self.url):
            return history.tag(self.repo, name, snapshot)

    def rollback(self, to: str, *, if_tip: str | None = None) -> str:
        """Make the snapshot ``to`` (id or tag) the cube's current state again; returns its id.

        The filled-patch record rolls back with the data: later patches will be downloaded again.
        With ``if_tip`` (a snapshot id or tag read from ``history()``), nothing happens unless the
        cube is still there: a run that committed since is never discarded unseen.

        Parameters
        ----------
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
            If ``to`` or ``if_tip`` names no tag or snapshot of this cube, or ``to`` holds no cube (the
            repository's first snapshot, before the cube was created: nothing could open the cube after it).
        CubeChangedError
            If the branch no longer points at ``if_tip``: another process committed meanwhile; nothing moved.
        StorageError
            If the cube cannot be written (read-only, no space, permission denied, its lock file cannot be
            opened); nothing changed.
        """
        history.check_holds_cube(self.repo, history.resolve(self.repo, to), to)  # before the lock, as below
        if if_tip:
            history.resolve(self.repo, if_tip)
        with storage_errors(self.url, "cube"), commit_lock(self.url):
            return history.rollback(self.repo, to, if_tip)

    def expire(self, older_than: Any, keep_tags: bool = True, grace: Any = "24h") -> history.ExpireReport:
        """Drop snapshots older than ``older_than`` ('30D', a timedelta or a datetime) and free their bytes.

        Objects younger than ``grace`` stay, so runs in progress are never broken.

        Parameters
        ----------
        older_than : datetime, timedelta or str
            Snapshots written before this instant (naive: UTC), or this long before now (``"30D"``,
            ``"24h"``), expire; the branch tip never does.
        keep_tags : bool, optional
            Keep tagged snapshots and their tags (default); False expires them too and deletes their tags.
        grace : timedelta or str, optional
            Objects younger than this are never collected (default ``"24h"``).

        Returns
        -------
        history.ExpireReport
            How many snapshots expired and what garbage collection freed (``note`` says why nothing was).

        Raises
        ------
        TOIError
            If ``older_than`` or ``grace`` is neither a datetime nor a duration of 0 or more (a bare number
            has no unit); nothing is expired then.
        StorageError
            If the cube cannot be written (read-only, no space, permission denied, its lock file cannot be
            opened); nothing changed.
        """
        history.cutoff(older_than)  # both checked before the lock, as history.expire checks them again
        history.cutoff(grace, "grace")
        with storage_errors(self.url, "cube"), commit_lock(self.url):
            return history.expire(self.repo, older_than, keep_tags, grace)

    def history(self) -> pd.DataFrame:
        """Snapshots on the branch, newest first: id, time, message, stacube's run id, the Prefect flow
        run that made it (None for runs outside Prefect), patches written.

        Returns
        -------
        pandas.DataFrame
            A row per snapshot: ``snapshot``, ``time`` (tz-aware UTC), ``message``, ``run_id`` and
            ``flow_run_id`` (None where no run made it), ``patches_written``.
        """
        rows = []
        for snap, meta in history.run_metadata(self.repo):
            rows.append({
                "snapshot": snap.id,
                "time": pd.Timestamp(snap.written_at),
                "message": snap.message,
                "run_id": meta.get("run_id"),
                "flow_run_id": meta.get("flow_run_id"),
                "patches_written": len(meta.get("patches", [])),
            })
        return pd.DataFrame(rows, columns=["snapshot", "time", "message", "run_id", "flow_run_id", "patches_written"])

