"""A model-checked cube: random sequences of cube operations, every snapshot compared with a plain model.

Hypothesis drives a ``RuleBasedStateMachine`` (in the spirit of icechunk's own stateful tests, which
check repositories against a model) over a small cube filled from a sample served on 127.0.0.1: a daily
time series (``series``: 3 x 3 patches a step, 4 steps growing to 8) and a DEM without time (``dem``:
5 x 5 patches). Rules: download / load of random AOIs (often chunk-aligned, so edge-sharing ones come up)
and TOIs (None, a day, a slice, a list, an instant), offline loads (eager or lazy, with or without empty
steps), historical loads and ``to_xarray`` at a snapshot or tag, tag (and a tag in use refused), rollback
(plain, with ``if_tip``, to an expired snapshot refused), expire (a random cutoff or now, no grace, tags
kept), ``extend_time``, a TOI past the axis refused, and three races, each side through its own handle in
its own thread: two downloads of overlapping AOIs, ``extend_time`` during a download, a rollback during a
download.

The model knows nothing of stacube's internals. Per snapshot it holds which patches must be recorded
filled (and by which run's snapshot) and how long the time axis is; per branch and tag, the history.
What a filled patch must hold is read from the sample's COG files with rasterio alone (odc-stac's
mosaic rule spelled out in numpy). After every step: the history (ids, in order) and tags, ``state()``
(ids, has_data, zone, time, the run's snapshot), the stored time axis (through a fresh ``Cube.open``),
and every pixel of an offline load of the whole zone (filled patches: the source's values; the others:
nodata, and listed in ``missing_patches``); ``every_version_matches`` does the same at every snapshot a
rollback may still name and every tag.

``bench/model.py`` runs the same machine with many more examples.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
import threading
import warnings
from collections import Counter
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import rasterio
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from odc.geo.geobox import GeoBox

from stacube import (
    Cube,
    CubeChangedError,
    CubeSpec,
    StacSource,
    StacubeError,
    TOIError,
    Variable,
    VersionNotFoundError,
)

ROOT_SNAPSHOT = "1CECHNKREP0F1RSTCMT0"  # Icechunk's first snapshot: every cube's history ends with it
FILLED_RECORD = "filled"  # the README: "stacube's `filled` record left out" of to_xarray
ZONE_NAME = "epsg3413"  # the README's patch ids: `epsg3413/y3x7`, `utm33/20240501T000000/y0x1`

Window = tuple[int, int, int, int]  # y0, y1, x0, x1: zone pixels, ends exclusive
Key = tuple[int | None, int, int]  # a patch: time step (None without a time axis), chunk row, chunk column


# --- the source, read without stacube ------------------------------------------------------------

def _item_time(feature: dict) -> pd.Timestamp:
    return pd.Timestamp(feature["properties"]["datetime"]).tz_convert("UTC").tz_localize(None)


def source_mosaic(folder: Path, zone: GeoBox, start: pd.Timestamp | None = None,
                  end: pd.Timestamp | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(dem, datamask) on the whole zone as the sample's COGs give them: the Items dated in [start, end)
    (all without bounds), ordered by (datetime, id), the first valid pixel winning (odc-stac's rule);
    nodata where none is valid (NaN for the float DEM, 0 for the mask). Read with rasterio alone."""
    features = json.loads((folder / "items.json").read_text())["features"]
    chosen = sorted((f for f in features if start is None or start <= _item_time(f) < end),
                    key=lambda f: (_item_time(f), f["id"]))
    dem = np.full(zone.shape.yx, np.nan, dtype="float32")
    mask = np.zeros(zone.shape.yx, dtype="uint8")
    res = zone.transform.a
    for feature in chosen:
        for key, out in (("dem", dem), ("datamask", mask)):
            with rasterio.open(folder / feature["assets"][key]["href"].rsplit("/", 1)[-1]) as src:
                values, nodata, where = src.read(1), src.nodata, src.transform
            row, col = (zone.transform.f - where.f) / res, (where.c - zone.transform.c) / res
            assert row.is_integer() and col.is_integer(), "the sample's tiles sit on the zone's grid"
            r0, c0 = int(row), int(col)
            part = out[r0 : r0 + values.shape[0], c0 : c0 + values.shape[1]]
            valid = values != nodata
            if values.dtype.kind == "f":
                valid &= ~np.isnan(values)
            empty = np.isnan(part) if part.dtype.kind == "f" else part == 0
            take = valid & empty
            part[take] = values[take]
    return dem, mask


@dataclasses.dataclass
class World:
    """What a machine runs against: a served sample, its zone, the cube's shape, a folder for cubes."""

    label: str
    folder: Path  # the sample as served: COGs and items.json
    api_url: str
    collection: str
    zone: GeoBox
    workdir: Path
    chunks: tuple[int, int] = (384, 384)
    start: str | None = None  # first day of a daily time axis; None: a cube without time
    steps: int = 0  # the axis' length when the cube is created
    max_steps: int = 0  # how long extend_time may make it
    stats: Counter = dataclasses.field(default_factory=Counter)

    @property
    def timed(self) -> bool:
        return self.start is not None

    def day(self, step: int) -> pd.Timestamp:
        return pd.Timestamp(self.start) + pd.Timedelta(days=step)

    def spec(self) -> CubeSpec:
        time = pd.date_range(self.start, periods=self.steps, freq="D") if self.timed else None
        return CubeSpec(name=f"model-{self.label}", zones=[self.zone], chunks=self.chunks, time=time,
                        variables={"dem": Variable("float32", units="m"), "datamask": Variable("uint8", nodata=0)},
                        source=StacSource(api_url=self.api_url, collection=self.collection,
                                          assets={"dem": "dem", "datamask": "datamask"}))

    @cached_property
    def _mosaics(self) -> dict[int | None, tuple[np.ndarray, np.ndarray]]:
        if not self.timed:
            return {None: source_mosaic(self.folder, self.zone)}
        return {s: source_mosaic(self.folder, self.zone, self.day(s), self.day(s + 1)) for s in range(self.max_steps)}

    def truth(self, step: int | None) -> tuple[np.ndarray, np.ndarray]:
        return self._mosaics[step]

    @property
    def grid(self) -> tuple[int, int]:
        (ny, nx), (cy, cx) = self.zone.shape.yx, self.chunks
        return -(-ny // cy), -(-nx // cx)

    def cell_window(self, iy: int, ix: int) -> Window:
        (ny, nx), (cy, cx) = self.zone.shape.yx, self.chunks
        return iy * cy, min(ny, (iy + 1) * cy), ix * cx, min(nx, (ix + 1) * cx)

    def has_data(self, key: Key) -> bool:
        y0, y1, x0, x1 = self.cell_window(key[1], key[2])
        dem, mask = self.truth(key[0])
        return bool(np.isfinite(dem[y0:y1, x0:x1]).any() or mask[y0:y1, x0:x1].any())

    def patch_id(self, key: Key) -> str:
        step, iy, ix = key
        when = "" if step is None else f"{self.day(step):%Y%m%dT%H%M%S}/"
        return f"{ZONE_NAME}/{when}y{iy}x{ix}"

    def keys_under(self, window: Window, steps: list[int | None]) -> list[Key]:
        """The patches an areal AOI of zone pixels covers: chunks sharing pixels with it (an edge is not enough)."""
        (cy, cx), (y0, y1, x0, x1) = self.chunks, window
        cells = [(iy, ix) for iy in range(y0 // cy, (y1 - 1) // cy + 1) for ix in range(x0 // cx, (x1 - 1) // cx + 1)]
        return [(s, iy, ix) for s in steps for iy, ix in cells]

    def roi(self, window: Window) -> GeoBox:
        y0, y1, x0, x1 = window
        return self.zone[y0:y1, x0:x1]


# --- the model -------------------------------------------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Version:
    """What one snapshot must hold: the patches recorded filled, each with the snapshots that may have
    recorded it (two only where two concurrent runs both wrote it), and the time axis length."""

    filled: Mapping[Key, frozenset[str]]
    steps: int | None

    def with_filled(self, keys, snapshot: str | frozenset[str]) -> Version:
        by = frozenset([snapshot]) if isinstance(snapshot, str) else snapshot
        return Version({**self.filled, **{k: by for k in keys}}, self.steps)


def windows(world: World) -> st.SearchStrategy[Window]:
    """Small AOIs of zone pixels; starts and sizes often chunk-aligned, so AOIs that only share an edge
    with a neighbouring chunk come up."""
    (ny, nx), (cy, cx) = world.zone.shape.yx, world.chunks

    def starts(n: int, c: int) -> st.SearchStrategy[int]:
        return st.one_of(st.integers(0, n - 1), st.sampled_from(range(0, n, c)))

    sizes = st.one_of(st.integers(1, 420), st.sampled_from([1, cy]))
    return st.builds(lambda y0, x0, h, w: (y0, min(ny, y0 + h), x0, min(nx, x0 + w)),
                     starts(ny, cy), starts(nx, cx), sizes, sizes)


def around(world: World, window: Window) -> st.SearchStrategy[Window]:
    """An AOI that overlaps ``window``: it holds one of its pixels."""
    (ny, nx), (y0, y1, x0, x1) = world.zone.shape.yx, window
    reach = st.integers(0, 400)
    return st.builds(lambda py, px, up, down, left, right: (max(0, py - up), min(ny, py + down + 1),
                                                            max(0, px - left), min(nx, px + right + 1)),
                     st.integers(y0, y1 - 1), st.integers(x0, x1 - 1), reach, reach, reach, reach)


def tois(world: World, steps: int, explicit: bool = False) -> st.SearchStrategy[tuple[object, list[int | None]]]:
    """(TOI, the steps it must select) in the forms pandas reads: None (every step; not when ``explicit``:
    a run racing a change of the axis may see either), a day, a slice, a list, an instant."""
    if not world.timed:
        return st.just((None, [None]))
    day = lambda i: f"{world.day(i):%Y-%m-%d}"  # noqa: E731
    index = st.integers(0, steps - 1)
    return st.one_of(
        st.nothing() if explicit else st.just((None, list(range(steps)))),
        index.map(lambda i: (day(i), [i])),
        st.tuples(index, index).map(sorted).map(lambda ab: (slice(day(ab[0]), day(ab[1])),
                                                            list(range(ab[0], ab[1] + 1)))),
        st.lists(index, min_size=1, max_size=3).map(lambda ix: ([day(i) for i in ix], sorted(set(ix)))),
        index.map(lambda i: (world.day(i) + pd.Timedelta(hours=10, minutes=30), [i])),
    )


class CubeModel(RuleBasedStateMachine):
    """Random sequences of cube operations on one cube, checked against ``Version``s after every step."""

    world: World  # set on the subclass ``machine_for`` makes

    # --- the model's bookkeeping -----------------------------------------------------------------
    @initialize()
    def create(self) -> None:
        self.world.stats["examples"] += 1
        self.folder = self.world.workdir / f"example-{self.world.stats['examples']}"
        shutil.rmtree(self.folder, ignore_errors=True)
        self.url, self.catalog_dir = self.folder / "cube.icechunk", self.folder / "catalog"
        self.cube = Cube.create(self.url, self.world.spec(), catalog_dir=self.catalog_dir)
        created, root = list(self.cube.history().snapshot)
        assert root == ROOT_SNAPSHOT
        self.versions: dict[str, Version] = {created: Version({}, self.world.steps if self.world.timed else None)}
        self.ancestry: dict[str, tuple[str, ...]] = {root: (root,), created: (created, root)}
        self.written_at: dict[str, dt.datetime] = {s: self.cube.repo.lookup_snapshot(s).written_at
                                                   for s in (root, created)}
        self.tip = created
        self.tags: dict[str, str] = {}
        self.alive: set[str] = {created}  # snapshots a rollback or historical load may name
        self.gone: set[str] = set()  # expired and collected

    def teardown(self) -> None:
        shutil.rmtree(getattr(self, "folder", self.world.workdir / "none"), ignore_errors=True)

    @property
    def now(self) -> Version:
        return self.versions[self.tip]

    def _commit(self, snapshot: str, version: Version, parent: str | None = None, tip: bool = True) -> None:
        """A new snapshot on ``parent`` (default: the tip); it becomes the tip unless told."""
        assert snapshot not in self.versions, f"snapshot {snapshot} committed twice"
        parent = parent or self.tip
        self.versions[snapshot] = version
        self.ancestry[snapshot] = (snapshot, *self.ancestry[parent])
        self.written_at[snapshot] = self.cube.repo.lookup_snapshot(snapshot).written_at
        self.alive.add(snapshot)
        if tip:
            self.tip = snapshot

    def _recorded(self, report, planned: list[Key]) -> set[Key]:
        """The patches a run's report says it recorded filled (with data or empty), as model keys."""
        by_id = {self.world.patch_id(k): k for k in planned}
        ids = [*report.patches_written, *report.patches_empty]
        assert set(ids) <= set(by_id), f"the run recorded patches it was not asked for: {set(ids) - set(by_id)}"
        return {by_id[i] for i in ids}

    def _oldest_first(self, snapshots) -> list[str]:
        """In commit order, not by id: ids are random, and the same draws must pick the same snapshots."""
        return sorted(snapshots, key=self.written_at.__getitem__)

    def _targets(self) -> list[str]:
        """Snapshots and tags to roll back to or load, the tip's parent first (Hypothesis tries the first
        choice most), then the rest of its history, other snapshots, tags."""
        history = [s for s in self.ancestry[self.tip][1:] if s in self.alive]
        return [*history, *self._oldest_first(self.alive - {*history}), *sorted(self.tags)]

    def _reachable(self) -> set[str]:
        return {s for ref in (self.tip, *self.tags.values()) for s in self.ancestry[ref]}

    def _step(self, name: str) -> None:
        self.world.stats["steps"] += 1
        self.world.stats[name] += 1

    # --- what a Tile must hold -------------------------------------------------------------------
    def expected_tile(self, version: Version, window: Window, steps: list[int | None]):
        """(dem, datamask) stacked over ``steps``: the source where the patch is filled, nodata elsewhere."""
        y0, y1, x0, x1 = window
        dems, masks = [], []
        for step in steps:
            dem, mask = (a[y0:y1, x0:x1].copy() for a in self.world.truth(step))
            for key in self.world.keys_under(window, [step]):
                if key not in version.filled:
                    cy0, cy1, cx0, cx1 = self.world.cell_window(key[1], key[2])
                    part = (slice(max(cy0, y0) - y0, min(cy1, y1) - y0), slice(max(cx0, x0) - x0, min(cx1, x1) - x0))
                    dem[part], mask[part] = np.nan, 0
            dems.append(dem)
            masks.append(mask)
        if not self.world.timed:
            return dems[0], masks[0]
        shape = (0, y1 - y0, x1 - x0)
        return (np.stack(dems) if dems else np.empty(shape, "float32"),
                np.stack(masks) if masks else np.empty(shape, "uint8"))

    def check_tile(self, tile, version: Version, window: Window, steps: list[int | None], what: str) -> None:
        if self.world.timed:
            labels = [self.world.day(s) for s in steps]
            assert list(pd.DatetimeIndex(tile.time.values)) == labels, f"{what}: time steps {tile.time.values}"
        else:
            assert "time" not in tile.dims, f"{what}: a cube without time gave a time axis"
        dem, mask = self.expected_tile(version, window, steps)
        assert tile.dem.dtype == np.float32 and tile.datamask.dtype == np.uint8, f"{what}: dtypes"
        np.testing.assert_array_equal(tile.dem.values, dem, err_msg=f"{what}: dem values differ from the source")
        np.testing.assert_array_equal(tile.datamask.values, mask, err_msg=f"{what}: datamask differs from the source")

    def shown_steps(self, version: Version, window: Window, steps: list[int | None]) -> list[int | None]:
        """The steps a Tile keeps without ``empty_steps``: a patch under the AOI is unfilled or holds data."""
        if not self.world.timed:
            return steps
        return [s for s in steps if any(k not in version.filled or self.world.has_data(k)
                                        for k in self.world.keys_under(window, [s]))]

    def load(self, window: Window, toi, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "N patch(es) under the ROI are not in the cube": asserted below
            return self.cube.load(self.world.roi(window), toi, concurrency=4, progress=False, **kwargs)

    # --- rules -----------------------------------------------------------------------------------
    @rule(data=st.data(), reopen=st.booleans())
    def download(self, data, reopen) -> None:
        self._step("download")
        if reopen:  # through a fresh handle on the folder: the cube holds everything it needs
            self.cube = Cube.open(self.url, catalog_dir=self.catalog_dir)
        window = data.draw(windows(self.world), label="aoi")
        toi, steps = data.draw(tois(self.world, self.now.steps or 0), label="toi")
        planned = self.world.keys_under(window, steps)
        missing = [k for k in planned if k not in self.now.filled]
        report = self.cube.download(self.world.roi(window), toi, concurrency=4, progress=False)
        ids = self.world.patch_id
        assert sorted(report.patches_written) == sorted(ids(k) for k in missing if self.world.has_data(k)), \
            f"download: patches written {report.patches_written}"
        assert sorted(report.patches_empty) == sorted(ids(k) for k in missing if not self.world.has_data(k)), \
            f"download: patches without data {report.patches_empty}"
        assert report.patches_already_filled == len(planned) - len(missing)
        assert (report.snapshot_id is None) == (not missing), "download: one snapshot exactly when patches were missing"
        if missing:
            self._commit(report.snapshot_id, self.now.with_filled(missing, report.snapshot_id))

    @rule(data=st.data())
    def load_online(self, data) -> None:
        self._step("load_online")
        window = data.draw(windows(self.world), label="roi")
        toi, steps = data.draw(tois(self.world, self.now.steps or 0), label="toi")
        missing = [k for k in self.world.keys_under(window, steps) if k not in self.now.filled]
        tile = self.load(window, toi)
        if missing:
            assert tile.attrs["stacube_snapshot"] not in self.versions, "load: the run made no new snapshot"
            self._commit(tile.attrs["stacube_snapshot"], self.now.with_filled(missing, tile.attrs["stacube_snapshot"]))
        else:
            assert "stacube_run" not in tile.attrs and tile.attrs["stacube_snapshot"] == self.tip, "warm load ran"
        assert tile.attrs["missing_patches"] == []
        self.check_tile(tile, self.now, window, self.shown_steps(self.now, window, steps), "load")

    @rule(data=st.data(), empty_steps=st.booleans(), lazy=st.booleans())
    def load_offline(self, data, empty_steps, lazy) -> None:
        self._step("load_offline")
        window = data.draw(windows(self.world), label="roi")
        toi, steps = data.draw(tois(self.world, self.now.steps or 0), label="toi")
        chunks = {"y": 200, "x": 300} if lazy else None  # Dask-backed, read block by block when computed
        tile = self.load(window, toi, offline=True, empty_steps=empty_steps, chunks=chunks)
        if lazy:
            assert tile.dem.chunks is not None, "a load with chunks= gave an eager Tile"
            tile = tile.compute()
        missing = [self.world.patch_id(k) for k in self.world.keys_under(window, steps) if k not in self.now.filled]
        assert sorted(tile.attrs["missing_patches"]) == sorted(missing), "offline load: missing patches"
        assert tile.attrs["stacube_snapshot"] == self.tip
        shown = steps if empty_steps else self.shown_steps(self.now, window, steps)
        self.check_tile(tile, self.now, window, shown, "offline load")

    @rule(data=st.data(), as_dataset=st.booleans())
    def load_at(self, data, as_dataset) -> None:
        """A historical load (``at=`` a snapshot or tag) of the whole zone, the record there, and optionally
        the cube itself as a Dataset (``to_xarray``) there: that version's values, patches and time axis."""
        self._step("load_at")
        at = data.draw(st.sampled_from(self._targets()), label="at")
        self.check_values(at)
        self.check_filled_record(at)
        if as_dataset:
            version = self.versions[self.tags.get(at, at)]
            dataset = self.cube.to_xarray(at=at)
            assert FILLED_RECORD not in dataset, "to_xarray shows stacube's own record"
            if self.world.timed:
                dataset = dataset.assign_coords(time=pd.DatetimeIndex(dataset.time.values))
            whole = (0, self.world.zone.shape.y, 0, self.world.zone.shape.x)
            steps = list(range(version.steps)) if self.world.timed else [None]
            self.check_tile(dataset.compute(), version, whole, steps, f"to_xarray(at={at!r})")

    @rule(data=st.data())
    def tag(self, data) -> None:
        self._step("tag")
        name = f"t{len(self.tags)}"
        target = data.draw(st.one_of(st.none(), st.sampled_from(self._oldest_first(self.alive))), label="snapshot")
        assert self.cube.tag(name, target) == (target or self.tip)
        self.tags[name] = target or self.tip

    @precondition(lambda self: self.tags)
    @rule(data=st.data())
    def tag_again(self, data) -> None:
        """Tags never move: naming a snapshot with a tag in use is refused."""
        self._step("tag_again")
        name = data.draw(st.sampled_from(sorted(self.tags)), label="tag")
        with pytest.raises(StacubeError, match="exists already"):
            self.cube.tag(name)

    @rule(data=st.data())
    def rollback(self, data) -> None:
        self._step("rollback")
        to = data.draw(st.sampled_from(self._targets()), label="to")
        assert self.cube.rollback(to) == self.tags.get(to, to)
        self.tip = self.tags.get(to, to)

    @rule(data=st.data())
    def rollback_if_tip(self, data) -> None:
        """With ``if_tip``, a rollback happens only if the cube is still where the caller saw it."""
        self._step("rollback_if_tip")
        to = data.draw(st.sampled_from(self._targets()), label="to")
        seen = data.draw(st.sampled_from([self.tip, *self._oldest_first(self.alive - {self.tip})]), label="if_tip")
        if seen != self.tip:
            with pytest.raises(CubeChangedError):
                self.cube.rollback(to, if_tip=seen)
            return
        assert self.cube.rollback(to, if_tip=seen) == self.tags.get(to, to)
        self.tip = self.tags.get(to, to)

    @precondition(lambda self: self.gone)
    @rule(data=st.data())
    def rollback_to_an_expired_snapshot(self, data) -> None:
        """An expired snapshot is gone: rolling back to it or loading it is refused, naming it; nothing moves."""
        self._step("rollback_to_an_expired_snapshot")
        gone = data.draw(st.sampled_from(self._oldest_first(self.gone)), label="to")
        with pytest.raises(VersionNotFoundError, match=gone):
            self.cube.rollback(gone)
        with pytest.raises(VersionNotFoundError, match=gone):
            self.load((0, 1, 0, 1), None, at=gone)

    @rule(data=st.data())
    def expire(self, data) -> None:
        """Expire with no grace, keeping tags: snapshots older than the cutoff leave every history
        (root, tip and tagged ones stay), and what no branch or tag reaches any more is collected."""
        self._step("expire")
        reachable = self._oldest_first(self._reachable())
        choice = data.draw(st.one_of(st.just("now"), st.sampled_from(reachable)), label="older_than")
        older_than = "0s" if choice == "now" else self.written_at[choice]
        cutoff = dt.datetime.now(dt.UTC) if choice == "now" else older_than
        # Icechunk expires every snapshot it holds, reachable or not (a rolled-back run's too), except these
        protected = {ROOT_SNAPSHOT, self.tip, *self.tags.values()}
        expired = {s for s in self.alive - protected if self.written_at[s] < cutoff}
        report = self.cube.expire(older_than, keep_tags=True, grace="0s")
        assert report.snapshots_expired == len(expired), \
            f"expire: {report.snapshots_expired} snapshots expired, not {len(expired)}"
        for snapshot, chain in self.ancestry.items():
            # Icechunk cuts each history at its first expired snapshot and goes on at the root: a tagged
            # snapshot older than an expired one stays (its tag works) but leaves the histories it was in
            cut = next((i for i, s in enumerate(chain) if s in expired), None)
            self.ancestry[snapshot] = chain if cut is None else (*chain[:cut], ROOT_SNAPSHOT)
        self.alive -= expired  # collected (no grace): a rollback to them is refused from now on
        self.gone |= expired

    @precondition(lambda self: self.world.timed)
    @rule(until=st.integers(0, 7))
    def extend_time(self, until) -> None:
        self._step("extend_time")
        until = min(until, self.world.max_steps - 1)
        grown = max(self.now.steps, until + 1)
        snapshot = self.cube.extend_time(f"{self.world.day(until):%Y-%m-%d}")
        assert (snapshot is None) == (grown == self.now.steps), f"extend_time to step {until}: {snapshot}"
        assert len(self.cube.spec.time) == grown
        if snapshot is not None:
            self._commit(snapshot, Version(self.now.filled, grown))

    @precondition(lambda self: self.world.timed)
    @rule(beyond=st.integers(0, 3))
    def toi_beyond_the_axis(self, beyond) -> None:
        """A TOI past the axis' end is refused before anything is downloaded."""
        self._step("toi_beyond_the_axis")
        day = f"{self.world.day(self.now.steps + beyond):%Y-%m-%d}"
        with pytest.raises(TOIError, match="outside the time axis"):
            self.cube.download(self.world.zone, day, progress=False)

    @rule(data=st.data())
    def concurrent_downloads(self, data) -> None:
        """Two runs at once, each through its own handle, on overlapping AOIs: both land, nothing is lost."""
        self._step("concurrent_downloads")
        first = data.draw(windows(self.world), label="aoi 1")
        second = data.draw(around(self.world, first), label="aoi 2")
        toi, steps = data.draw(tois(self.world, self.now.steps or 0), label="toi")
        missing = [[k for k in self.world.keys_under(w, steps) if k not in self.now.filled] for w in (first, second)]
        reports = self._together(*[lambda cube, w=w: cube.download(self.world.roi(w), toi, concurrency=2,
                                                                    progress=False) for w in (first, second)])
        assert not any(isinstance(r, Exception) for r in reports), f"concurrent downloads failed: {reports!r}"
        union = set(missing[0]) | set(missing[1])
        recorded = [self._recorded(r, self.world.keys_under(w, steps)) for r, w in zip(reports, (first, second),
                                                                                          strict=True)]
        assert recorded[0] | recorded[1] == union, "concurrent downloads: patches recorded"
        committed = {r.snapshot_id: i for i, r in enumerate(reports) if r.snapshot_id}
        assert (len(committed) > 0) == bool(union), "concurrent downloads: a snapshot exactly when patches were missing"
        order = list(self.cube.history().snapshot[: len(committed)])[::-1]  # oldest first
        assert set(order) == set(committed), f"concurrent downloads: {order} on top, runs committed {committed}"
        if len(order) == 2:  # both committed: the first with all it missed; patches both wrote were settled
            early, late = order
            mine = recorded[committed[early]]
            assert mine == set(missing[committed[early]]), "concurrent downloads: the first to commit lost patches"
            self._commit(early, self.now.with_filled(mine, early))
            both = frozenset(order)
            self._commit(late, Version({**self.now.filled, **{k: frozenset([late]) for k in union - mine},
                                        **{k: both for k in recorded[committed[late]] & mine}}, self.now.steps))
        elif len(order) == 1:  # the other found everything it planned already there
            self._commit(order[0], self.now.with_filled(union, order[0]))

    def _together(self, *jobs) -> list:
        """Run each job (a function of a fresh Cube handle) in its own thread, started at once; their
        results, or the exception each raised."""
        barrier, results = threading.Barrier(len(jobs)), [None] * len(jobs)

        def run(index: int) -> None:
            cube = Cube.open(self.url, catalog_dir=self.catalog_dir)
            barrier.wait()
            try:
                results[index] = jobs[index](cube)
            except Exception as err:  # noqa: BLE001 - the caller asserts on it
                results[index] = err

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return results

    @precondition(lambda self: self.world.timed and self.now.steps < self.world.max_steps)
    @rule(data=st.data(), more=st.integers(1, 4))
    def extend_time_during_a_run(self, data, more) -> None:
        """extend_time while a download is in flight: both land, the run's patches survive the arrays' new shape."""
        self._step("extend_time_during_a_run")
        grown = min(self.now.steps + more, self.world.max_steps)
        window = data.draw(windows(self.world), label="aoi")
        toi, steps = data.draw(tois(self.world, self.now.steps, explicit=True), label="toi")
        planned = self.world.keys_under(window, steps)
        missing = {k for k in planned if k not in self.now.filled}
        until = f"{self.world.day(grown - 1):%Y-%m-%d}"
        run, extended = self._together(
            lambda cube: cube.download(self.world.roi(window), toi, concurrency=2, progress=False),
            lambda cube: cube.extend_time(until))
        assert not isinstance(run, Exception), f"a run during extend_time failed: {run!r}"
        assert isinstance(extended, str), f"extend_time during a run: {extended!r}"
        assert self._recorded(run, planned) == missing, "a run during extend_time: patches recorded"
        history = list(self.cube.history().snapshot)
        if run.snapshot_id is None:
            assert not missing and history[0] == extended
            self._commit(extended, Version(self.now.filled, grown))
        elif history[:2] == [run.snapshot_id, extended]:  # the axis grew first; the run landed on top
            self._commit(extended, Version(self.now.filled, grown))
            self._commit(run.snapshot_id, self.now.with_filled(missing, run.snapshot_id))
        else:
            assert history[:2] == [extended, run.snapshot_id], f"history {history[:2]} after extend_time and a run"
            self._commit(run.snapshot_id, self.now.with_filled(missing, run.snapshot_id))
            self._commit(extended, Version(self.now.filled, grown))

    @rule(data=st.data())
    def rollback_during_a_run(self, data) -> None:
        """A rollback while a download is in flight. Either the run landed first (the rollback leaves it
        behind, or refuses when the run committed between its look at the cube and its move), or the
        rollback did: the run lands on top of the snapshot rolled back to, with its own patches only."""
        self._step("rollback_during_a_run")
        to = data.draw(st.sampled_from(self._targets()), label="to")
        target, old = self.tags.get(to, to), self.tip
        # The TOI may reach past the axis of the snapshot rolled back to; it is explicit (None is every step
        # of whichever axis the run sees). Such a run either lands before the rollback, or fails naming the
        # rollback (TOIError before it reads, CubeChangedError when it read first) and commits nothing: it
        # once failed blaming the source, or committed patches the cube could not hold (found here).
        axis = self.now.steps if self.world.timed else 0
        window = data.draw(windows(self.world), label="aoi")
        toi, steps = data.draw(tois(self.world, axis, explicit=True), label="toi")
        planned = self.world.keys_under(window, steps)
        before, after = self.now.filled, self.versions[target].filled
        run, moved = self._together(
            lambda cube: cube.download(self.world.roi(window), toi, concurrency=2, progress=False),
            lambda cube: cube.rollback(to))
        if isinstance(run, TOIError | CubeChangedError):
            past = self.world.timed and max(steps) >= self.versions[target].steps
            assert past and moved == target, f"a run during a rollback failed: {run!r} (rollback: {moved!r})"
            assert self.cube.history().snapshot[0] == target, "a run that failed committed"
            self.world.stats["runs refused after a rollback"] += 1
            self.tip = target
            return
        assert not isinstance(run, Exception), f"a run during a rollback failed: {run!r}"
        recorded = self._recorded(run, planned)
        history = list(self.cube.history().snapshot)
        snapshot = run.snapshot_id
        if moved == target and (snapshot is None or history[0] == snapshot):
            # the run planned on the rolled-back axis: a slice of days reaching past it selects its steps only
            planned = [k for k in planned if k[0] is None or k[0] < self.versions[target].steps]
        assert {k for k in planned if k not in before and k not in after} <= recorded, \
            "a run during a rollback: patches neither version holds were not recorded"
        assert (snapshot is None) == (not recorded)
        if isinstance(moved, CubeChangedError):  # the run committed while the rollback looked
            assert snapshot and history[:2] == [snapshot, old], f"history {history[:2]}: refused rollback"
            self._commit(snapshot, self.now.with_filled(recorded, snapshot))
            return
        assert moved == target, f"a rollback during a run: {moved!r}"
        if snapshot is None:
            self.tip = target
        elif history[0] == snapshot:  # rolled back first: the run landed on top of the target
            assert history[1] == target, f"history {history[:2]}: the run did not land on {target}"
            assert recorded <= {k for k in planned if k not in before or k not in after}
            either = {k: after[k] | {snapshot} for k in recorded if k in after}  # settled: either run's
            self.tip = target
            self._commit(snapshot, Version({**after, **{k: frozenset([snapshot]) for k in recorded}, **either},
                                           self.versions[target].steps))
        else:  # the run landed first, then the branch moved back past it
            assert snapshot not in history and recorded <= {k for k in planned if k not in before}
            self._commit(snapshot, self.now.with_filled(recorded, snapshot), tip=False)
            self.tip = target

    @rule()
    def every_version_matches(self) -> None:
        """Every snapshot a rollback or a load may still name, and every tag, holds what the model says."""
        self._step("every_version_matches")
        for at in [*self._oldest_first(self.alive), *sorted(self.tags)]:
            self.check_filled_record(at)
            self.check_values(at)

    # --- invariants ------------------------------------------------------------------------------
    @invariant()
    def cube_matches_model(self) -> None:
        self.check_history()
        self.check_filled_record()
        self.check_time_axis()
        self.check_values()

    def check_history(self) -> None:
        history = list(self.cube.history().snapshot)
        assert history == list(self.ancestry[self.tip]), f"history {history} != model {list(self.ancestry[self.tip])}"
        repo = self.cube.repo
        tags = {name: repo.lookup_tag(name) for name in repo.list_tags()}
        assert tags == self.tags, f"tags {tags} != model {self.tags}"

    def check_filled_record(self, at: str | None = None) -> None:
        """``state()`` (at the tip, or ``at`` a snapshot or tag) lists exactly the model's filled patches."""
        version = self.versions[self.tags.get(at, at)] if at else self.now
        state = self.cube.state(at=at)
        expected = {self.world.patch_id(k): k for k in version.filled}
        differ = sorted(set(state.id) ^ set(expected))
        assert not differ, f"filled record{f' at {at}' if at else ''}: cube has {differ} unlike the model"
        history = set(self.ancestry[self.tip])  # runs are named from the branch's history, whatever ``at`` is
        for row in state.itertuples():
            key = expected[row.id]
            assert row.has_data == self.world.has_data(key), f"filled record: {row.id} has_data={row.has_data}"
            assert row.zone == ZONE_NAME and (row.time == self.world.day(key[0]) if self.world.timed
                                              else pd.isna(row.time)), f"filled record: {row.id} at {row.time}"
            # a run whose snapshot left the history (expired) is no longer named
            recorders = {s if s in history else None for s in version.filled[key]}
            shown = None if pd.isna(row.snapshot) else row.snapshot  # pandas makes some None NaN
            assert shown in recorders, f"filled record: {row.id} recorded by {row.snapshot}, not {recorders}"

    def check_time_axis(self) -> None:
        if not self.world.timed:
            return
        fresh = Cube.open(self.url, catalog_dir=self.catalog_dir)
        assert len(fresh.spec.time) == self.now.steps, f"time axis: {len(fresh.spec.time)} steps, not {self.now.steps}"
        assert fresh.spec.time[0] == self.world.day(0) and fresh.spec.time.freqstr == "D"

    def check_values(self, at: str | None = None) -> None:
        """An offline load of the whole zone (at the tip, or ``at``): every pixel, and the missing patches."""
        version = self.versions[self.tags.get(at, at)] if at else self.now
        whole = (0, self.world.zone.shape.y, 0, self.world.zone.shape.x)
        steps = list(range(version.steps)) if self.world.timed else [None]
        tile = self.load(whole, None, offline=True, empty_steps=True, at=at)
        missing = [self.world.patch_id(k) for k in self.world.keys_under(whole, steps) if k not in version.filled]
        assert sorted(tile.attrs["missing_patches"]) == sorted(missing), \
            f"offline load of the zone{f' at {at}' if at else ''}: missing patches"
        assert tile.attrs["stacube_snapshot"] == (self.tags.get(at, at) if at else self.tip)
        self.check_tile(tile, version, whole, steps, f"offline load of the zone{f' at {at}' if at else ''}")


def machine_for(world: World, only: list[str] | None = None) -> type[CubeModel]:
    """The machine on ``world``; with ``only``, the other rules left out."""
    hidden = {} if only is None else {name: None for name in RULES if name not in only}
    return type(f"CubeModel_{world.label}", (CubeModel,), {"world": world, **hidden})


RULES = [name for name, value in vars(CubeModel).items() if hasattr(value, "hypothesis_stateful_rule")]


def run_machine(world: World, only: list[str] | None = None, **overrides) -> None:
    # No shrinking by default: steps cost tenths of a second, and Hypothesis would shrink for up to 5 minutes
    # (bench/model.py --shrink does it); the failing sequence is printed step by step either way.
    options = dict(max_examples=3, stateful_step_count=10, deadline=None, database=None, print_blob=True,
                   phases=[Phase.explicit, Phase.reuse, Phase.generate],
                   suppress_health_check=[HealthCheck.too_slow], report_multiple_bugs=False)
    options.update(overrides)
    run_state_machine_as_test(machine_for(world, only), settings=settings(**options))


# --- worlds and tests ----------------------------------------------------------------------------

def series_world(folder: Path, api_url: str, workdir: Path) -> World:
    """The served time series (2 x 2 tiles; acquisitions on June 1, 3 and 5): a daily axis of 4 steps
    that extend_time may grow to 8; 3 x 3 chunks per step, the last row and column partial."""
    from ..conftest import TIME_LAYOUT

    return World("series", folder, api_url, "sample-series", TIME_LAYOUT.extent_geobox(), workdir,
                 start="2021-06-01", steps=4, max_steps=8)


def dem_world(folder: Path, api_url: str, workdir: Path) -> World:
    """The served DEM mosaic (4 x 4 overlapping tiles), no time axis: 5 x 5 chunks."""
    from stacube.testing.generate import SampleLayout

    return World("dem", folder, api_url, "sample-dem", SampleLayout().extent_geobox(), workdir)


@pytest.fixture
def series(time_servers, time_sample_dir, tmp_path):
    return series_world(time_sample_dir, time_servers[1].url, tmp_path)


@pytest.fixture
def dem(servers, sample_dir, tmp_path):
    return dem_world(sample_dir, servers[1].url, tmp_path)


def test_a_time_series_cube_matches_its_model(series):
    run_machine(series, max_examples=6, stateful_step_count=15)
    assert series.stats["examples"] >= 3


def test_a_cube_without_time_matches_its_model(dem):
    run_machine(dem, max_examples=3, stateful_step_count=15)
    assert dem.stats["examples"] >= 2


# --- the machine catches planted bugs ------------------------------------------------------------

FIND_FAST = dict(max_examples=30, stateful_step_count=10, derandomize=True)


def failure_of(world: World, **options) -> AssertionError:
    """The assertion the machine fails with (Hypothesis wraps it in a FlakyFailure when the replay of the
    failing sequence goes otherwise, as two concurrent runs may)."""
    with pytest.raises((AssertionError, ExceptionGroup)) as caught:
        run_machine(world, **FIND_FAST, **options)
    error = caught.value
    while isinstance(error, ExceptionGroup):
        error = error.exceptions[0]
    assert isinstance(error, AssertionError), repr(error)
    return error


def test_the_machine_catches_a_run_that_records_one_patch_too_many(series, monkeypatch):
    import stacube.run

    real = stacube.run.mark_filled  # run.py imported it by name: patch it where it is called

    def one_more(store, patches, stamp, empty, **kwargs):
        taken = {p.cell for p in patches}
        rows, cols = series.grid
        spare = [dataclasses.replace(p, iy=iy, ix=ix) for p in patches for iy in range(rows) for ix in range(cols)
                 if (p.time_index, iy, ix) not in taken]  # a patch of the same step that the run did not plan
        real(store, [*patches, *spare[:1]], stamp, empty, **kwargs)

    monkeypatch.setattr(stacube.run, "mark_filled", one_more)
    assert "filled record" in str(failure_of(series, only=["download", "load_online", "concurrent_downloads"]))


def test_the_machine_catches_a_rollback_to_the_wrong_snapshot(series, monkeypatch):
    import stacube.history

    real = stacube.history.rollback

    def one_short(repo, to, if_tip=None):
        """Off by one: stops at the snapshot after ``to`` on the branch (if there is one)."""
        target = stacube.history.resolve(repo, to)
        branch = [s.id for s in repo.ancestry(branch=stacube.history.BRANCH)]
        where = branch.index(target) if target in branch else 0
        real(repo, branch[max(where - 1, 0)] if where else target, if_tip)
        return target  # and says it went where it was asked

    monkeypatch.setattr(stacube.history, "rollback", one_short)
    error = failure_of(series, only=["download", "rollback"])
    assert str(error).startswith("history"), error


def test_the_machine_catches_a_patch_written_with_wrong_values(series, monkeypatch):
    import stacube.run

    real = stacube.run.write_patch

    def off_by_a_tile(store, spec, patch, data):  # as if the mosaic took the next tile's value (+0.25 m)
        return real(store, spec, patch, {**data, "dem": data["dem"] + np.float32(0.25)})

    monkeypatch.setattr(stacube.run, "write_patch", off_by_a_tile)
    assert "dem values differ from the source" in str(failure_of(series, only=["download", "load_offline"]))
