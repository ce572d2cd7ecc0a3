"""The local stac-geoparquet catalog of one source collection: append-only parts, searched with rustac.

Planning only ever asks this catalog, so offline planning works. The catalog also records which
(bbox, time) windows it has synced from the source, so a warm load never contacts the API.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import itertools
import json
import math
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pystac
import rustac
import shapely
from shapely.geometry import box

from ..errors import CatalogError, ItemError, shown, storage_errors
from ..timeaxis import naive_utc, stamp_or_none, utc_now
from . import small_search
from .footprints import trusted


@dataclass(frozen=True)
class Window:
    """A search window: lon/lat bbox and half-open time range (None = any time); when it was synced."""

    bbox: tuple[float, float, float, float]
    """West, south, east, north in degrees (lon/lat)."""
    start: pd.Timestamp | None = None
    """The first instant of the time range (naive UTC); None with ``end`` None: any time."""
    end: pd.Timestamp | None = None
    """The instant the time range ends before (naive UTC); None with ``start`` None: any time."""
    synced_at: pd.Timestamp | None = None
    """When the window was synced (naive UTC), as the windows file records it; None for a window to sync."""

    def settled(self, lag: pd.Timedelta) -> bool:
        """Whether the source can no longer add Items to this window since it was synced, so that the
        sync counts as covering it: it has no time range, or was synced at least ``lag`` after its end.

        Parameters
        ----------
        lag : pandas.Timedelta
            How long after a date the source may still publish Items for it (``Source.lag``).

        Returns
        -------
        bool
            True if the sync holds every Item the source will have for the window.
        """
        if self.end is None:
            return True
        return self.synced_at is not None and self.synced_at >= self.end + lag

    def datetime_query(self) -> str | None:
        """The time range as a STAC API search's ``datetime``: ``start/end``, inclusive, the end one
        microsecond before ``end``; None without a time range."""
        if self.start is None or self.end is None:
            return None
        return f"{rfc3339(self.start)}/{rfc3339(self.end - pd.Timedelta(microseconds=1))}"

    def to_json(self) -> dict[str, Any]:
        """The window as the windows file keeps it: ``bbox`` and ISO 8601 ``start``, ``end``, ``synced_at``."""
        def iso(stamp: pd.Timestamp | None) -> str | None:
            return stamp.isoformat() if stamp is not None else None

        return {"bbox": list(self.bbox), "start": iso(self.start), "end": iso(self.end),
                "synced_at": iso(self.synced_at)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Window:
        """The window ``to_json`` wrote.

        Parameters
        ----------
        data : Mapping[str, Any]
            ``bbox`` and, where set, ``start``, ``end`` and ``synced_at``.

        Returns
        -------
        Window
            The window.

        Raises
        ------
        KeyError
            If ``data`` has no ``bbox``.
        ValueError
            If a time is not one pandas reads (``parse_windows`` turns both into a CatalogError).
        """
        def stamp(key: str) -> pd.Timestamp | None:
            return pd.Timestamp(data[key]) if data.get(key) else None

        return cls(tuple(data["bbox"]), stamp("start"), stamp("end"), stamp("synced_at"))


def rfc3339(stamp: pd.Timestamp) -> str:
    """A UTC RFC 3339 timestamp with microseconds (naive stamps are taken as UTC).

    Parameters
    ----------
    stamp : pandas.Timestamp
        The instant (tz-aware, or naive UTC).

    Returns
    -------
    str
        ``YYYY-MM-DDTHH:MM:SS.ffffffZ``.
    """
    return naive_utc(stamp).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@contextlib.contextmanager
def _dropped_on_failure(tmp: Path) -> Iterator[None]:
    """A temporary file half-written when the disk filled up is removed, so the catalog is as it was."""
    try:
        yield
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def parse_windows(data: bytes, path: Path) -> list[Window]:
    """The windows recorded in a catalog's windows file; anything else there (empty, binary, cut-off or
    other JSON) is a CatalogError naming the file and how to resync."""
    try:
        windows = json.loads(data.decode("utf-8"))["windows"]
        if not isinstance(windows, list):
            raise TypeError(f"'windows' is a {type(windows).__name__}, not a list")
        parsed = [Window.from_json(w) for w in windows]
        for window in parsed:
            if len(window.bbox) != 4 or not all(isinstance(v, int | float) and math.isfinite(v) for v in window.bbox):
                raise ValueError(f"bbox {list(window.bbox)!r} is not four finite numbers")
    except (UnicodeDecodeError, ValueError, TypeError, KeyError, AttributeError, OverflowError) as err:
        what = "it is empty" if not data.strip() else f"{type(err).__name__}: {err}"
        raise unreadable_windows(path, what) from err
    return parsed


def unreadable_windows(path: Path, what: str) -> CatalogError:
    """The error for a windows file ``path`` that cannot be read (``what`` says why), saying how to recover."""
    return CatalogError(f"the catalog's windows file {path} cannot be read ({what}). It only records which areas "
                        "and periods were synced: delete it and sync again (the Items held are kept; the next sync "
                        "asks the source again for those areas)")


_RFC3339 = re.compile(r"\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(?:\.\d+)?(?:[Zz]|[+-]\d{2}:\d{2})?")


def _time_problem(properties: Mapping[str, Any]) -> str | None:
    """What is wrong with an Item's time (STAC: an RFC 3339 datetime, or null with start and end), if anything."""
    stamps = {key: properties.get(key) for key in ("datetime", "start_datetime", "end_datetime")}
    if stamps["datetime"] is None and (stamps["start_datetime"] is None or stamps["end_datetime"] is None):
        return (f"datetime {stamps['datetime']!r} and start_datetime {stamps['start_datetime']!r} / end_datetime "
                f"{stamps['end_datetime']!r}: STAC needs a datetime, or both start_datetime and end_datetime")
    for key, value in stamps.items():
        if value is None:
            continue
        ok = isinstance(value, str) and _RFC3339.fullmatch(value) is not None
        if ok:
            try:
                datetime.fromisoformat(re.sub(r"\.\d+", "", value).replace("z", "Z"))
            except ValueError:
                ok = False
        if not ok:
            return f"{key} {value!r}, which is not an RFC 3339 date and time (like 2024-06-01T10:30:00Z)"
    return None


def check_item(item: Any, source: str) -> None:
    """An ItemError naming the Item (and its source) when it is not a STAC Item the catalog can hold:
    no id, no properties, no usable time. A footprint is not checked here: ``footprints.trusted``
    places an Item whose geometry is missing or broken."""
    if not isinstance(item, Mapping):
        raise ItemError(f"the source {source} returned {str(item)[:80]!r} where a STAC Item was expected")
    name = item.get("id")
    if not isinstance(name, str) or not name:
        links = [link.get("href") for link in item.get("links") or [] if isinstance(link, Mapping)]
        raise ItemError(f"an Item from {source} has id {name!r} (links {links[:2]}): every STAC Item needs an id; "
                        "nothing was added to the catalog")
    properties = item.get("properties")
    problem = (f"properties {properties!r}, not an object" if not isinstance(properties, Mapping)
               else _time_problem(properties))
    if problem is not None:
        raise ItemError(f"Item {name!r} from {source} has {problem}; nothing was added to the catalog")


DEFAULT_LAG = pd.Timedelta(days=3)  # how long after a date a source may still publish Items for it
_DUCKDB_LOCK = threading.Lock()
_DUCKDB: rustac.DuckdbClient | None = None


def _updated_of(item: Mapping[str, Any]) -> pd.Timestamp | None:
    return stamp_or_none((item.get("properties") or {}).get("updated"))


def _newer(item: Mapping[str, Any], held: pd.Timestamp | None) -> bool:
    """Whether ``item`` is a later publication of a held Item: its ``updated`` is after the held copy's. Without
    dates to compare, the held copy stays (a source that dates nothing cannot say which copy is newer)."""
    updated = _updated_of(item)
    return updated is not None and (held is None or updated > held)


def write_part(path: Path, items: list[dict[str, Any]]) -> None:
    """Items as one stac-geoparquet file (rustac's writer), its Arrow schema carrying the GeoParquet
    ``geo`` metadata too (``with_geo_schema``)."""
    rustac.write_sync(str(path), items, format="geoparquet")
    with_geo_schema(path)


def has_geo_schema(path: Path) -> bool:
    """Whether a part's Arrow schema carries the ``geo`` metadata (parts written before it did not)."""
    return b"geo" in (pq.read_schema(path).metadata or {})


def with_geo_schema(path: Path) -> None:
    """Rewrite a part so its Arrow schema holds the Parquet footer's ``geo`` and ``stac-geoparquet`` keys:
    pyarrow, and so geopandas, read a folder of parts by the first part's Arrow schema, and without them
    ``geopandas.read_parquet(items/)`` refused the folder (``Missing geo metadata``)."""
    footer = {k: v for k, v in (pq.ParquetFile(path).metadata.metadata or {}).items() if k != b"ARROW:schema"}
    table = pq.read_table(path)
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), **footer})
    pq.write_table(table, path, compression="zstd", compression_level=15)


def duckdb_client() -> rustac.DuckdbClient:
    """rustac's DuckDB client with the spatial extension shipped as a wheel, so it searches offline:
    ``duckdb_client().search("<catalog>/items/part-*.parquet", bbox=..., datetime=...)`` (one per process).

    Returns
    -------
    rustac.DuckdbClient
        The process's one client, made on first use (the one ``LocalCatalog.search`` uses).
    """
    return _duckdb()


def _duckdb() -> rustac.DuckdbClient:
    """One DuckDB client per process, with the spatial extension shipped as a wheel (no download)."""
    global _DUCKDB
    with _DUCKDB_LOCK:
        if _DUCKDB is None:
            import rustac_duckdb_extensions

            _DUCKDB = rustac.DuckdbClient(
                extension_directory=rustac_duckdb_extensions.extension_directory(),
                install_extensions=False,
                extensions=["spatial", "icu"],
            )
        return _DUCKDB


@functools.lru_cache(maxsize=4096)
def _has_time_ranges(part: Path) -> bool:
    """Whether a part's Items carry start/end_datetime columns (read from the Parquet schema only;
    parts are written once under unique names, so the answer is cached)."""
    return {"start_datetime", "end_datetime"} <= set(pq.read_schema(part).names)


def _overlap_filter(datetime: str) -> dict[str, Any]:
    """CQL2-JSON: Items whose [start_datetime, end_datetime], or whose datetime, meets ``start/end``."""
    start, _, end = datetime.partition("/")
    end = end or start
    ranged, instant = [], []
    if end not in ("", ".."):
        ranged.append({"op": "<=", "args": [{"property": "start_datetime"}, {"timestamp": end}]})
        instant.append({"op": "<=", "args": [{"property": "datetime"}, {"timestamp": end}]})
    if start not in ("", ".."):
        ranged.append({"op": ">=", "args": [{"property": "end_datetime"}, {"timestamp": start}]})
        instant.append({"op": ">=", "args": [{"property": "datetime"}, {"timestamp": start}]})
    return {"op": "or", "args": [{"op": "and", "args": ranged} if len(ranged) > 1 else ranged[0],
                                 {"op": "and", "args": instant} if len(instant) > 1 else instant[0]]}


def default_catalog_root() -> Path:
    """Where catalogs live unless told: $STACUBE_CATALOG_DIR, else the user's cache folder.

    Returns
    -------
    pathlib.Path
        ``$STACUBE_CATALOG_DIR``, else ``$XDG_CACHE_HOME/stacube/catalogs`` (``~/.cache`` without it);
        not made here.
    """
    env = os.environ.get("STACUBE_CATALOG_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(base) / "stacube" / "catalogs"


class LocalCatalog:
    """Items of one collection of one source, kept as stac-geoparquet parts in a folder.

    The folder holds ``items/part-*.parquet`` (each written once, never changed but to be upgraded),
    ``windows.json`` (the windows synced) and a lock file; other tools read the parts as they are.
    Writers take the lock, across threads and processes. Each method that writes raises a StorageError
    naming the folder where the storage refuses the write (no space, read-only, permission denied).
    """

    def __init__(self, root: str | Path, source_url: str, collection: str):
        """Nothing is read or made until the catalog is used.

        Parameters
        ----------
        root : str or pathlib.Path
            The folder of every catalog (``default_catalog_root()`` by default in ``Cube``).
        source_url : str
            The source's URL (``Source.api_url``); with ``collection`` it names the folder, so two
            sources' collections of one name never share one.
        collection : str
            The collection's id.
        """
        key = hashlib.sha256(source_url.rstrip("/").encode()).hexdigest()[:10]
        safe_collection = "".join(c if c.isalnum() or c in "-_." else "_" for c in collection).strip(".")
        self.folder = Path(root) / f"{safe_collection or 'collection'}-{key}"
        """The catalog's folder: ``<root>/<collection>-<hash of source_url>``."""
        self.source_url = source_url
        """The source's URL, as given."""
        self.collection = collection
        """The collection's id, as given."""

    @property
    def _parts(self) -> list[Path]:
        return sorted(self.folder.glob("items/part-*.parquet"))

    @property
    def _windows_file(self) -> Path:
        return self.folder / "windows.json"

    def windows(self) -> list[Window]:
        """The windows synced so far; a windows file that cannot be read is a CatalogError naming it.

        Returns
        -------
        list[Window]
            In the order they were recorded, each with its ``synced_at``; none before the first sync.

        Raises
        ------
        CatalogError
            If the windows file cannot be read or parsed; the message says to delete it and sync again.
        """
        try:
            data = self._windows_file.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return []
        except OSError as err:  # a folder where the file should be, a file this user may not read
            raise unreadable_windows(self._windows_file, f"{type(err).__name__}: {err.strerror}") from err
        return parse_windows(data, self._windows_file)

    def covers(self, window: Window, lag: pd.Timedelta = DEFAULT_LAG) -> bool:
        """True if earlier syncs together cover ``window`` in space and time.

        Recorded windows combine: pieces synced month by month cover a request for the year. A sync
        made before its period ended plus ``lag`` (how long the source may still publish Items for
        a date) does not count: that period is harvested again for what is new.

        Parameters
        ----------
        window : Window
            The window asked for; without a time range only windows synced without one count.
        lag : pandas.Timedelta, optional
            The source's publication lag (``Source.lag``).

        Returns
        -------
        bool
            True if no sync is needed.

        Raises
        ------
        CatalogError
            If the windows file cannot be read (``windows``).
        """
        settled = [w for w in self.windows() if w.settled(lag)]
        target = box(*window.bbox)
        if window.start is None or window.end is None:
            shapes = [box(*w.bbox) for w in settled if w.start is None]
            return bool(shapes) and bool(shapely.union_all(shapes).buffer(1e-9).covers(target))
        # Cut the requested period at every recorded edge; each piece must be covered in space.
        edges = {window.start, window.end}
        edges.update(t for w in settled for t in (w.start, w.end)
                     if t is not None and window.start < t < window.end)
        cuts = sorted(edges)
        for t0, t1 in itertools.pairwise(cuts):
            shapes = [box(*w.bbox) for w in settled if w.start is None or (w.start <= t0 and w.end >= t1)]
            if not shapes or not shapely.union_all(shapes).buffer(1e-9).covers(target):
                return False
        return True

    def item_ids(self) -> set[str]:
        """The ids of every Item held (read from the parts' ``id`` column)."""
        ids: set[str] = set()
        for part in self._parts:
            ids.update(pq.read_table(part, columns=["id"]).column("id").to_pylist())
        return ids

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time, across threads and processes (an advisory lock file). Storage refusing
        the writes (read-only, full, a file where the folder should be) is a StorageError naming the folder."""
        with storage_errors(self.folder, "catalog folder"):
            self.folder.mkdir(parents=True, exist_ok=True)
            handle = open(self.folder / ".lock", "a+")  # closed by the with below, after the writes
        with handle, storage_errors(self.folder, "catalog folder"):
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                # Holding the lock, any temporary file here is a dead writer's (a killed sync): drop it.
                for leftover in [*self.folder.glob("*.tmp"), *self.folder.glob("items/*.tmp")]:
                    leftover.unlink(missing_ok=True)
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    @property
    def _footprints_marker(self) -> Path:
        return self.folder / "footprints-checked"

    @property
    def _geo_schema_marker(self) -> Path:
        return self.folder / "geo-schema-checked"

    def _mark_checked(self) -> None:
        self._footprints_marker.write_text("Items' footprints checked (stacube.catalog.footprints)\n")
        self._geo_schema_marker.write_text("every part's Arrow schema carries the geo metadata\n")

    def _upgrade_parts(self) -> None:
        """Once per catalog, parts stored by an older stacube are brought up to what parts are now:
        an Item kept with an empty geometry (never found by a bbox search, so its patches were recorded
        filled without it) gets ``footprints.trusted``'s repair, and a part whose Arrow schema lacks the
        ``geo`` metadata (a folder read in geopandas fails on it) is rewritten with it."""
        done = self._footprints_marker.exists(), self._geo_schema_marker.exists()
        if all(done) or not self._parts:
            return
        with self._locked():
            footprints_done, geo_done = self._footprints_marker.exists(), self._geo_schema_marker.exists()
            for part in self._parts:
                if not footprints_done:
                    items = rustac.read_sync(str(part))["features"]
                    checked = [trusted(item) for item in items]
                    if any(after is not before for after, before in zip(checked, items, strict=True)):
                        tmp = part.with_name(part.name + ".tmp")
                        with _dropped_on_failure(tmp):
                            write_part(tmp, checked)
                            os.replace(tmp, part)
                        continue
                if not geo_done and not has_geo_schema(part):
                    tmp = part.with_name(part.name + ".tmp")
                    with _dropped_on_failure(tmp):
                        shutil.copyfile(part, tmp)
                        with_geo_schema(tmp)
                        os.replace(tmp, part)
            self._mark_checked()

    def append(self, items: Iterable[dict[str, Any]]) -> int:
        """Add the Items not already held (by id); returns how many were new. Atomic per part.

        Every Item is checked before anything is written, and given a footprint planning can trust
        (``footprints.trusted``); the new ones are written as one new part.

        Parameters
        ----------
        items : Iterable[dict[str, Any]]
            STAC Items as dicts.

        Returns
        -------
        int
            How many Items were new.

        Raises
        ------
        ItemError
            If an item is not a STAC Item the catalog can hold (no id, no properties, no usable time):
            nothing is added.
        StorageError
            If the catalog folder cannot be written.
        """
        self._upgrade_parts()
        with self._locked():
            known = self._held_versions()
            new = {}
            for item in items:
                check_item(item, self.source_url)
                item_id = item["id"]
                if item_id not in known or _newer(item, known[item_id]):
                    new[item_id] = trusted(item)  # a footprint that cannot say where pixels are: repaired
                    known[item_id] = _updated_of(item)
            if not self._parts:  # a new catalog: every Item enters through trusted() and write_part()
                self._mark_checked()
            if not new:
                return 0
            (self.folder / "items").mkdir(parents=True, exist_ok=True)
            stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%f")
            final = self.folder / "items" / f"part-{stamp}-{uuid.uuid4().hex[:8]}.parquet"
            older = [part for part in self._parts if part != final]
            tmp = final.with_name(final.name + ".tmp")
            with _dropped_on_failure(tmp):
                write_part(tmp, list(new.values()))
                os.replace(tmp, final)
            self._drop_copies(older, set(new))  # republished Items: the stale copies go
            return len(new)

    def _held_versions(self) -> dict[str, pd.Timestamp | None]:
        """Every held Item's id -> its ``updated`` (None where it has none), from the parts' columns."""
        held: dict[str, pd.Timestamp | None] = {}
        for part in self._parts:
            columns = ["id", "updated"] if "updated" in pq.read_schema(part).names else ["id"]
            table = pq.read_table(part, columns=columns).to_pydict()
            for index, item_id in enumerate(table["id"]):
                held[item_id] = stamp_or_none(table["updated"][index]) if "updated" in table else None
        return held

    def _drop_copies(self, parts: list[Path], ids: set[str]) -> None:
        """Rewrite the ``parts`` that hold a copy of ``ids`` without it (a part left empty is removed)."""
        for part in parts:
            if not ids & set(pq.read_table(part, columns=["id"]).column("id").to_pylist()):
                continue
            kept = [item for item in rustac.read_sync(str(part))["features"] if item["id"] not in ids]
            if not kept:
                part.unlink()
                continue
            tmp = part.with_name(part.name + ".tmp")
            with _dropped_on_failure(tmp):
                write_part(tmp, kept)
                os.replace(tmp, part)

    def sync(self, window: Window, lag: pd.Timedelta, fetch: Callable[[], Iterable[dict[str, Any]]]) -> int:
        """Add what ``fetch`` returns for ``window`` unless earlier syncs cover it, then record the window.

        The one sync mechanism every source kind uses; returns how many Items were new. Whatever
        ``fetch`` raises (a source kind's CatalogError) is raised as it is, and nothing is recorded.

        Parameters
        ----------
        window : Window
            The window to bring in.
        lag : pandas.Timedelta
            The source's publication lag (``covers``).
        fetch : Callable[[], Iterable[dict[str, Any]]]
            Asks the source for the window's Items; called only when the window is not covered.

        Returns
        -------
        int
            How many Items were new (0 when the window was covered: ``fetch`` is not called).

        Raises
        ------
        CatalogError
            If the windows file cannot be read.
        ItemError
            If ``fetch`` returned something that is not a STAC Item (nothing is added or recorded).
        StorageError
            If the catalog folder cannot be written.
        """
        if self.covers(window, lag):
            return 0
        added = self.append(fetch())
        self.record_window(window)
        return added

    def record_window(self, window: Window) -> None:
        """Remember that ``window`` was synced now.

        Parameters
        ----------
        window : Window
            The window synced (its ``synced_at`` is replaced by now).

        Raises
        ------
        CatalogError
            If the windows file there already cannot be read.
        StorageError
            If the catalog folder cannot be written.
        """
        window = Window(window.bbox, window.start, window.end, utc_now())
        with self._locked():
            windows = [w.to_json() for w in self.windows()] + [window.to_json()]
            tmp = self._windows_file.with_name(f"windows-{uuid.uuid4().hex[:8]}.tmp")
            with _dropped_on_failure(tmp):
                tmp.write_text(json.dumps({"source": self.source_url, "collection": self.collection,
                                           "windows": windows}))
                os.replace(tmp, self._windows_file)

    def search(
        self,
        bbox: tuple[float, float, float, float] | None = None,
        intersects: dict[str, Any] | None = None,
        datetime: str | None = None,
        filter: Mapping[str, Any] | None = None,
    ) -> list[pystac.Item]:
        """Items matching a bbox or geometry, an RFC 3339 datetime (range) and a CQL2-JSON filter.

        An Item with ``start_datetime`` and ``end_datetime`` matches a range it meets (a monthly
        composite belongs to every day of its month), not only one it lies inside. Small catalogs are
        searched in memory (``small_search``), large ones with rustac's DuckDB client.

        Parameters
        ----------
        bbox : tuple[float, float, float, float] or None, optional
            West, south, east, north in degrees; Items whose footprint meets it.
        intersects : dict[str, Any] or None, optional
            A GeoJSON geometry in lon/lat; Items whose footprint meets it.
        datetime : str or None, optional
            An RFC 3339 instant or ``start/end`` range, inclusive (``..`` or empty: open); None: any time.
        filter : Mapping[str, Any] or None, optional
            CQL2-JSON on the Items' properties (``Source.filter``).

        Returns
        -------
        list[pystac.Item]
            The matching Items (none in a catalog not synced yet).

        Raises
        ------
        SpecError
            If ``filter`` is not CQL2-JSON cql2 can read (``small_search.read_filter``), checked before
            anything is read; the message names it.
        CatalogError
            If DuckDB's search fails (a part it cannot read, a query it refuses: the message names the
            filter, if any).
        StorageError
            If parts stored by an older stacube need upgrading and the folder cannot be written.
        """
        filter = small_search.read_filter(filter) if filter else None
        self._upgrade_parts()
        parts = self._parts
        if not parts:
            return []
        kwargs: dict[str, Any] = {}
        if bbox is not None:
            kwargs["bbox"] = list(bbox)
        if intersects is not None:
            kwargs["intersects"] = intersects
        if filter:
            kwargs["filter"] = filter
        everything = str(self.folder / "items" / "part-*.parquet")
        if datetime is None or set(datetime.split("/")) <= {"..", ""}:
            return self._search(parts, everything, kwargs, filter)
        ranged = [_has_time_ranges(p) for p in parts]
        if not any(ranged):  # instants only: rustac's datetime search is exact for them
            return self._search(parts, everything, {**kwargs, "datetime": datetime}, filter)
        # Items with start/end_datetime must meet the query interval, not lie inside it (which is what
        # rustac's datetime search asks): a monthly composite belongs to every day of its month.
        overlap = _overlap_filter(datetime)
        by_overlap = {**kwargs, "filter": {"op": "and", "args": [kwargs["filter"], overlap]} if filter else overlap}
        if all(ranged):
            return self._search(parts, everything, by_overlap, filter)
        found: list[pystac.Item] = []  # parts of both kinds: each asked its own way
        for part, has_ranges in zip(parts, ranged, strict=True):
            found += self._search([part], str(part), by_overlap if has_ranges else {**kwargs, "datetime": datetime},
                                  filter)
        return found

    def _search(self, parts: list[Path], href: str, kwargs: dict[str, Any],
                given: dict[str, Any] | None = None) -> list[pystac.Item]:
        """``parts`` (``href`` names the same files for DuckDB): in memory when small (no DuckDB to
        start); when large, or for a query cql2 cannot decide, with rustac's DuckDB client. ``given`` is
        the caller's filter, which a failure names."""
        found = small_search.search(parts, kwargs)
        if found is None:
            try:
                found = _duckdb().search(href, **kwargs)
            except rustac.RustacError as err:
                with_filter = f" (filter {shown(given)})" if given else ""
                raise CatalogError(f"searching the local catalog {self.folder}{with_filter} failed: {err}") from err
        return [pystac.Item.from_dict(d, preserve_dict=False) for d in found]

    def __len__(self) -> int:
        """How many Items the catalog holds (from the parts' footers)."""
        return small_search.item_count(self._parts)


def split_window(window: Window, degrees: float = 1.0, period: pd.Timedelta | str = "31D") -> list[Window]:
    """Cut a search window into sub-windows of at most ``degrees`` x ``degrees`` and ``period``.

    Each sub-window is synced and recorded on its own, so a large sync runs them concurrently and
    a failed one resumes where it stopped (recorded sub-windows count as covered).

    Parameters
    ----------
    window : Window
        The window to cut (west < east).
    degrees : float, optional
        The widest and tallest a sub-window may be, in degrees (positive).
    period : pandas.Timedelta or str, optional
        The longest a sub-window's time range may be; ignored for a window without one.

    Returns
    -------
    list[Window]
        Sub-windows covering ``window`` once, period by period, each period's boxes in a row.

    Raises
    ------
    ValueError
        If ``period`` is not a pandas Timedelta.
    """
    west, south, east, north = window.bbox
    xs = [*np.arange(west, east, degrees).tolist(), east]
    ys = [*np.arange(south, north, degrees).tolist(), north]
    boxes = [(x0, y0, x1, y1) for x0, x1 in itertools.pairwise(xs) for y0, y1 in itertools.pairwise(ys)]
    if window.start is None or window.end is None:
        return [Window(b) for b in boxes]
    edges = list(pd.date_range(window.start, window.end, freq=pd.Timedelta(period)))
    if edges[-1] < window.end:
        edges.append(window.end)
    return [Window(b, t0, t1) for t0, t1 in itertools.pairwise(edges) for b in boxes]
