"""The embedded parcel store: one DuckDB file, the tables in the ``stacube_fields`` schema.

``duckdb:///path/fields.duckdb`` (or a plain path) opens or creates the file.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path

import geopandas as gpd
import pandas as pd

from ..errors import SpecError
from ..timeaxis import naive_utc
from .store import (
    OBSERVATION_COLUMNS,
    QUALITY_COLUMNS,
    RUN_COLUMNS,
    SCHEMA,
    ParcelStore,
    observation_rows,
    parcel_rows,
    parcels_frame,
    quality_rows,
    run_frame,
)

_TABLES = f"""
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.parcels (
    parcel_id VARCHAR PRIMARY KEY, group_id VARCHAR NOT NULL, utm_zone INTEGER NOT NULL, geometry BLOB NOT NULL,
    minx DOUBLE, miny DOUBLE, maxx DOUBLE, maxy DOUBLE, repaired BOOLEAN, watched BOOLEAN NOT NULL,
    updated_at TIMESTAMP DEFAULT current_timestamp);
CREATE TABLE IF NOT EXISTS {SCHEMA}.observations (
    parcel_id VARCHAR NOT NULL, date DATE NOT NULL,
    ndvi_mean DOUBLE, ndvi_median DOUBLE, ndvi_std DOUBLE, ndmi_mean DOUBLE, ndmi_median DOUBLE, ndmi_std DOUBLE,
    valid_pixels INTEGER NOT NULL, total_pixels INTEGER NOT NULL, valid_fraction DOUBLE NOT NULL,
    usable BOOLEAN NOT NULL, reason VARCHAR, run_id VARCHAR, PRIMARY KEY (parcel_id, date));
CREATE TABLE IF NOT EXISTS {SCHEMA}.quality (
    run_id VARCHAR NOT NULL, checked_at TIMESTAMP NOT NULL, period_start DATE, period_end DATE,
    kpi VARCHAR NOT NULL, value DOUBLE, threshold DOUBLE, ok BOOLEAN NOT NULL, PRIMARY KEY (run_id, kpi));
CREATE TABLE IF NOT EXISTS {SCHEMA}.runs (
    kind VARCHAR NOT NULL, target VARCHAR NOT NULL, run_id VARCHAR NOT NULL, period_start TIMESTAMP NOT NULL,
    period_end TIMESTAMP NOT NULL, finished_at TIMESTAMP NOT NULL, PRIMARY KEY (kind, target, run_id));
"""


def database_path(url: str | os.PathLike) -> Path:
    """The file a ``duckdb:///path`` URL (or a plain path) names.

    Parameters
    ----------
    url : str or os.PathLike
        ``duckdb:///path/to/fields.duckdb`` (``duckdb://relative.duckdb`` is relative), or a plain path.

    Returns
    -------
    Path
        The database file.

    Raises
    ------
    SpecError
        If ``url`` has another scheme, or names no file.
    """
    text = os.fspath(url)
    if text.startswith("duckdb://"):
        text = text[len("duckdb://"):]
    elif "://" in text:
        raise SpecError(f"unsupported parcel store URL {os.fspath(url)!r}; use duckdb:///path/to/fields.duckdb "
                        "or postgresql://user@host/db")
    if not text:
        raise SpecError(f"the parcel store URL {os.fspath(url)!r} names no file: duckdb:///path/to/fields.duckdb")
    return Path(text)


def _id_frame(parcel_ids: Iterable[str]) -> pd.DataFrame:
    """Parcel ids as a one-column frame DuckDB reads as text, even when empty (an empty float column made
    ``parcel_id IN (...)`` a type error)."""
    return pd.DataFrame({"parcel_id": pd.Series([str(p) for p in parcel_ids], dtype=object).astype("string")})


class DuckDBParcelStore(ParcelStore):
    """The embedded store: one DuckDB file, made with its folder and tables if missing.

    Calls from several threads are serialised; only one process at a time may open the file.

    Parameters
    ----------
    url : str or os.PathLike
        ``duckdb:///path/to/fields.duckdb`` or a plain path.

    Raises
    ------
    SpecError
        If ``url`` has another scheme than ``duckdb://``, or names no file (``database_path``).
    duckdb.IOException
        If the file cannot be opened: another process holds it, or it is not a DuckDB database.
    """

    def __init__(self, url: str | os.PathLike):
        import duckdb

        self.path = database_path(url)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = duckdb.connect(str(self.path))
        # DuckDB turns now() into a TIMESTAMP in the process's time zone; the store keeps UTC, as PostgreSQL's
        # does and as the retention flow's cutoff is, so a purge on a machine west of UTC never takes
        # parcels unwatched moments ago for parcels unwatched hours ago.
        self._db.execute("SET TimeZone = 'UTC'")
        self._lock = threading.Lock()
        self._db.execute(_TABLES)

    def close(self) -> None:
        """Close the DuckDB connection."""
        self._db.close()

    # --- parcels ----------------------------------------------------------------------------
    def add_parcels(self, parcels: gpd.GeoDataFrame, watched: bool = True) -> int:
        """Insert or update parcels; an existing parcel keeps whether it is watched.

        Parameters, returns and errors as ``ParcelStore.add_parcels``."""
        rows = parcel_rows(parcels, watched)
        with self._lock:
            self._db.register("incoming", rows)
            self._db.execute(f"""
                INSERT INTO {SCHEMA}.parcels (parcel_id, group_id, utm_zone, geometry, minx, miny, maxx, maxy,
                                              repaired, watched)
                SELECT parcel_id, group_id, utm_zone, geometry, minx, miny, maxx, maxy, repaired, watched FROM incoming
                ON CONFLICT (parcel_id) DO UPDATE SET group_id = excluded.group_id, utm_zone = excluded.utm_zone,
                    geometry = excluded.geometry, minx = excluded.minx, miny = excluded.miny, maxx = excluded.maxx,
                    maxy = excluded.maxy, repaired = excluded.repaired""")  # updated_at: when watched changed
            self._db.unregister("incoming")
        return len(rows)

    def watch(self, parcel_ids: Iterable[str], watched: bool = True) -> int:
        """Watch (or stop watching) parcels.

        Parameters, returns and errors as ``ParcelStore.watch``."""
        ids = _id_frame(parcel_ids)
        with self._lock:
            self._db.register("chosen", ids)
            found = self._db.execute(f"SELECT count(*) FROM {SCHEMA}.parcels WHERE parcel_id IN "
                                     "(SELECT parcel_id FROM chosen)").fetchone()[0]
            self._db.execute(f"UPDATE {SCHEMA}.parcels SET watched = ?, "
                             "updated_at = CASE WHEN watched = ? THEN updated_at ELSE now()::TIMESTAMP END "
                             "WHERE parcel_id IN (SELECT parcel_id FROM chosen)", [watched, watched])
            self._db.unregister("chosen")
        return int(found)

    def parcels(self, group_id: str | None = None, watched_only: bool = True) -> gpd.GeoDataFrame:
        """Parcels (of one group, or all), as a GeoDataFrame in EPSG:4326.

        Parameters, returns and errors as ``ParcelStore.parcels``."""
        where, params = [], []
        if watched_only:
            where.append("watched")
        if group_id is not None:
            where.append("group_id = ?")
            params.append(group_id)
        sql = (f"SELECT parcel_id, group_id, utm_zone, watched, repaired, geometry FROM {SCHEMA}.parcels"
               + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY parcel_id")
        with self._lock:
            return parcels_frame(self._db.execute(sql, params).df())

    def groups(self, watched_only: bool = True) -> pd.DataFrame:
        """One row per group: id, UTM zone (EPSG code), parcels and the lon/lat bounding box.

        Parameters, returns and errors as ``ParcelStore.groups``."""
        with self._lock:
            return self._db.execute(f"""
                SELECT group_id, min(utm_zone) AS utm_zone, count(*) AS parcels,
                       min(minx) AS minx, min(miny) AS miny, max(maxx) AS maxx, max(maxy) AS maxy
                FROM {SCHEMA}.parcels {"WHERE watched" if watched_only else ""}
                GROUP BY group_id ORDER BY group_id""").df()

    # --- observations -----------------------------------------------------------------------
    def write_observations(self, rows: pd.DataFrame) -> int:
        """Insert or replace per-parcel, per-date statistics.

        Parameters, returns and errors as ``ParcelStore.write_observations``."""
        if rows.empty:
            return 0
        frame = observation_rows(rows)
        columns = ", ".join(OBSERVATION_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in OBSERVATION_COLUMNS[2:])
        with self._lock:
            self._db.register("incoming", frame)
            self._db.execute(f"INSERT INTO {SCHEMA}.observations ({columns}) SELECT {columns} FROM incoming "
                             f"ON CONFLICT (parcel_id, date) DO UPDATE SET {updates}")
            self._db.unregister("incoming")
        return len(frame)

    def write_quality(self, run_id: str, start: pd.Timestamp, end: pd.Timestamp, report: pd.DataFrame) -> int:
        """Store a run's data-quality KPIs.

        Parameters, returns and errors as ``ParcelStore.write_quality``."""
        frame = quality_rows(run_id, start, end, report)
        columns = ", ".join(QUALITY_COLUMNS)
        with self._lock:
            self._db.register("incoming", frame)
            self._db.execute(f"INSERT OR REPLACE INTO {SCHEMA}.quality ({columns}) SELECT {columns} FROM incoming")
            self._db.unregister("incoming")
        return len(frame)

    def purge_unwatched(self, unwatched_before: pd.Timestamp) -> int:
        """Delete the time series of parcels unwatched since before ``unwatched_before``.

        Parameters, returns and errors as ``ParcelStore.purge_unwatched``.

        ``updated_at`` is stored in UTC; ``unwatched_before`` is read as ``naive_utc`` reads it (naive: UTC)."""
        with self._lock:
            sql = (f"DELETE FROM {SCHEMA}.observations WHERE parcel_id IN (SELECT parcel_id FROM {SCHEMA}.parcels "
                   "WHERE NOT watched AND updated_at < ?)")
            count = self._db.execute(sql.replace("DELETE FROM", "SELECT count(*) FROM", 1),
                                     [naive_utc(unwatched_before).to_pydatetime()]).fetchone()[0]
            self._db.execute(sql, [naive_utc(unwatched_before).to_pydatetime()])
        return int(count)

    # --- runs -------------------------------------------------------------------------------
    def record_run(self, kind: str, target: str, run_id: str, start: pd.Timestamp, end: pd.Timestamp,
                   as_of: pd.Timestamp | None = None) -> None:
        """Remember that a run of ``kind`` (``"ingest"``) covered ``start``..``end`` for ``target`` (a cube URL),
        so that the next run starts where this one ended.

        Parameters, returns and errors as ``ParcelStore.record_run``."""
        stamp = None if as_of is None else naive_utc(as_of).to_pydatetime()
        with self._lock:
            self._db.execute(f"INSERT OR REPLACE INTO {SCHEMA}.runs VALUES (?, ?, ?, ?, ?, "
                             "coalesce(?::TIMESTAMP, now()::TIMESTAMP))",
                             [kind, target, run_id, *(naive_utc(t).to_pydatetime() for t in (start, end)), stamp])

    def runs(self, kind: str, target: str) -> pd.DataFrame:
        """Every recorded run of ``kind`` on ``target``, by ``finished_at``.

        Parameters, returns and errors as ``ParcelStore.runs``."""
        with self._lock:
            rows = self._db.execute(f"SELECT {', '.join(RUN_COLUMNS)} FROM {SCHEMA}.runs WHERE kind = ? "
                                    "AND target = ? ORDER BY finished_at, run_id", [kind, target]).fetchall()
        return run_frame(rows)

    def last_run(self, kind: str, target: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """The period of the latest-ending recorded run of ``kind`` for ``target``, or None.

        Parameters, returns and errors as ``ParcelStore.last_run``."""
        with self._lock:
            rows = self._db.execute(f"SELECT period_start, period_end FROM {SCHEMA}.runs WHERE kind = ? AND target = ? "
                                    "ORDER BY period_end DESC, finished_at DESC LIMIT 1", [kind, target]).fetchall()
        return None if not rows else (pd.Timestamp(rows[0][0]), pd.Timestamp(rows[0][1]))

    def quality(self) -> pd.DataFrame:
        """Every stored KPI, newest run first.

        Parameters, returns and errors as ``ParcelStore.quality``."""
        with self._lock:
            return self._db.execute(f"SELECT * FROM {SCHEMA}.quality ORDER BY checked_at DESC, kpi").df()

    def observations(self, parcel_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """The stored statistics, ordered by parcel and date.

        Parameters, returns and errors as ``ParcelStore.observations``."""
        sql = f"SELECT * FROM {SCHEMA}.observations"
        with self._lock:
            if parcel_ids is not None:
                self._db.register("chosen", _id_frame(parcel_ids))
                sql += " WHERE parcel_id IN (SELECT parcel_id FROM chosen)"
            frame = self._db.execute(sql + " ORDER BY parcel_id, date").df()
            if parcel_ids is not None:
                self._db.unregister("chosen")
        return frame
