"""The parcel store on PostgreSQL with PostGIS, for scale: SQLAlchemy's asyncio engine over asyncpg.

The same tables as the DuckDB store, in the same ``stacube_fields`` schema; geometries are PostGIS
geometries (EPSG:4326, GiST-indexed) and observations are partitioned by month, each month's
partition created when the first row for it arrives. Calls are synchronous for the caller: the
engine runs on an event loop of its own thread, so the store also works inside a notebook's loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
from collections.abc import Coroutine, Iterable, Sequence
from typing import Any

import geopandas as gpd
import pandas as pd

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

_TABLES = [
    "CREATE EXTENSION IF NOT EXISTS postgis",
    f"CREATE SCHEMA IF NOT EXISTS {SCHEMA}",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.parcels (
        parcel_id TEXT PRIMARY KEY, group_id TEXT NOT NULL, utm_zone INTEGER NOT NULL,
        geometry geometry(Geometry, 4326) NOT NULL, minx DOUBLE PRECISION, miny DOUBLE PRECISION,
        maxx DOUBLE PRECISION, maxy DOUBLE PRECISION, repaired BOOLEAN, watched BOOLEAN NOT NULL,
        updated_at TIMESTAMPTZ DEFAULT now())""",
    f"CREATE INDEX IF NOT EXISTS parcels_group ON {SCHEMA}.parcels (group_id)",
    f"CREATE INDEX IF NOT EXISTS parcels_geometry ON {SCHEMA}.parcels USING gist (geometry)",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.observations (
        parcel_id TEXT NOT NULL, date DATE NOT NULL,
        ndvi_mean DOUBLE PRECISION, ndvi_median DOUBLE PRECISION, ndvi_std DOUBLE PRECISION,
        ndmi_mean DOUBLE PRECISION, ndmi_median DOUBLE PRECISION, ndmi_std DOUBLE PRECISION,
        valid_pixels INTEGER NOT NULL, total_pixels INTEGER NOT NULL, valid_fraction DOUBLE PRECISION NOT NULL,
        usable BOOLEAN NOT NULL, reason TEXT, run_id TEXT, PRIMARY KEY (parcel_id, date)) PARTITION BY RANGE (date)""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.quality (
        run_id TEXT NOT NULL, checked_at TIMESTAMP NOT NULL, period_start DATE, period_end DATE, kpi TEXT NOT NULL,
        value DOUBLE PRECISION, threshold DOUBLE PRECISION, ok BOOLEAN NOT NULL, PRIMARY KEY (run_id, kpi))""",
    f"""CREATE TABLE IF NOT EXISTS {SCHEMA}.runs (
        kind TEXT NOT NULL, target TEXT NOT NULL, run_id TEXT NOT NULL, period_start TIMESTAMP NOT NULL,
        period_end TIMESTAMP NOT NULL, finished_at TIMESTAMP NOT NULL, PRIMARY KEY (kind, target, run_id))""",
]

_PARCEL_COLUMNS = ["parcel_id", "group_id", "utm_zone", "geometry", "minx", "miny", "maxx", "maxy", "repaired",
                   "watched"]


def _records(frame: pd.DataFrame) -> list[tuple]:
    """Rows as tuples of plain Python values (None for missing) for asyncpg's binary COPY."""
    columns = []
    for name in frame.columns:
        values = frame[name].astype(object).where(frame[name].notna(), None).tolist()
        columns.append([v.item() if hasattr(v, "item") and not isinstance(v, bytes) else v for v in values])
    return list(zip(*columns, strict=True))


class PostgresParcelStore(ParcelStore):
    """Parcels and observations on a PostgreSQL/PostGIS server, for more parcels than one file holds well.

    Connects on creation and creates the PostGIS extension, the schema and the tables if missing.

    Parameters
    ----------
    url : str or os.PathLike
        ``postgresql+asyncpg://user@host/db``; ``postgresql://`` and ``postgres://`` mean the same.

    Raises
    ------
    ModuleNotFoundError
        If SQLAlchemy or asyncpg is missing (``pip install 'stacube[postgres]'``).
    OSError
        If the server cannot be reached (asyncpg's own errors for a refused login or a missing database).
    """

    def __init__(self, url: str | os.PathLike):
        from sqlalchemy.ext.asyncio import create_async_engine

        url = os.fspath(url)
        if url.startswith("postgres://"):
            url = "postgresql+asyncpg://" + url[len("postgres://"):]
        elif url.startswith("postgresql://"):
            url = "postgresql+asyncpg://" + url[len("postgresql://"):]
        self._engine = create_async_engine(url, pool_size=4)  # a malformed URL fails here, before any thread
        self._months: set[str] = set()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="stacube-postgres", daemon=True)
        self._thread.start()
        try:
            self._run(self._create())
        except BaseException:  # no store to close: stop the loop's thread here, and raise the connection's error
            with contextlib.suppress(Exception):
                self._run(self._engine.dispose())
            self._stop()
            raise

    def _run(self, coroutine: Coroutine[Any, Any, Any]) -> Any:
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    async def _execute(self, sql: str, params: Any = None, fetch: bool = False) -> Any:
        from sqlalchemy import text

        async with self._engine.begin() as connection:
            result = await connection.execute(text(sql), params) if params is not None else \
                await connection.execute(text(sql))
            return [dict(row._mapping) for row in result] if fetch else result.rowcount

    async def _create(self) -> None:
        from sqlalchemy import text

        async with self._engine.begin() as connection:
            for statement in _TABLES:
                await connection.execute(text(statement))

    async def _upsert(self, table: str, columns: list[str], records: list[tuple], insert_select: str) -> None:
        """COPY ``records`` into a temporary table, then one INSERT ... SELECT ... ON CONFLICT from it:
        the bulk path (a million observations a week), with the same upsert meaning as a plain INSERT."""
        from sqlalchemy import text

        async with self._engine.begin() as connection:
            await connection.execute(text(f"CREATE TEMP TABLE incoming ON COMMIT DROP AS "
                                          f"SELECT {', '.join(columns)} FROM {SCHEMA}.{table} WITH NO DATA"))
            raw = await connection.get_raw_connection()
            await raw.driver_connection.copy_records_to_table("incoming", records=records, columns=columns)
            await connection.execute(text(insert_select))

    def close(self) -> None:
        """Close the connections and stop the store's event-loop thread; closing again does nothing."""
        if self._loop.is_closed():
            return  # a stopped loop would never run the dispose, and this call would wait for it for ever
        self._run(self._engine.dispose())
        self._stop()

    def _stop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        if not self._thread.is_alive():
            self._loop.close()  # its selector and self-pipe

    # --- parcels ----------------------------------------------------------------------------
    def add_parcels(self, parcels: gpd.GeoDataFrame, watched: bool = True) -> int:
        """Insert or update parcels; an existing parcel keeps whether it is watched.

        Parameters, returns and errors as ``ParcelStore.add_parcels``."""
        rows = parcel_rows(parcels, watched)
        if rows.empty:
            return 0
        from sqlalchemy import text

        columns = ", ".join(_PARCEL_COLUMNS)

        async def write() -> None:
            async with self._engine.begin() as connection:  # the geometry arrives as WKB: a bytea column
                await connection.execute(text(
                    "CREATE TEMP TABLE incoming (parcel_id TEXT, group_id TEXT, utm_zone INTEGER, geometry BYTEA, "
                    "minx DOUBLE PRECISION, miny DOUBLE PRECISION, maxx DOUBLE PRECISION, maxy DOUBLE PRECISION, "
                    "repaired BOOLEAN, watched BOOLEAN) ON COMMIT DROP"))
                raw = await connection.get_raw_connection()
                await raw.driver_connection.copy_records_to_table("incoming", records=_records(rows[_PARCEL_COLUMNS]),
                                                                  columns=_PARCEL_COLUMNS)
                await connection.execute(text(f"""
                    INSERT INTO {SCHEMA}.parcels ({columns})
                    SELECT parcel_id, group_id, utm_zone, ST_GeomFromWKB(geometry, 4326), minx, miny, maxx, maxy,
                           repaired, watched FROM incoming
                    ON CONFLICT (parcel_id) DO UPDATE SET group_id = excluded.group_id, utm_zone = excluded.utm_zone,
                        geometry = excluded.geometry, minx = excluded.minx, miny = excluded.miny,
                        maxx = excluded.maxx, maxy = excluded.maxy, repaired = excluded.repaired"""))
                # updated_at stays: it is when watched last changed, which retention counts from

        self._run(write())
        return len(rows)

    def watch(self, parcel_ids: Iterable[str], watched: bool = True) -> int:
        """Watch (or stop watching) parcels.

        Parameters, returns and errors as ``ParcelStore.watch``."""
        ids = [str(p) for p in parcel_ids]
        return int(self._run(self._execute(
            f"UPDATE {SCHEMA}.parcels SET watched = :watched, updated_at = CASE WHEN watched = :watched "
            "THEN updated_at ELSE now() END WHERE parcel_id = ANY(:ids)",
            {"watched": watched, "ids": ids})))

    def parcels(self, group_id: str | None = None, watched_only: bool = True) -> gpd.GeoDataFrame:
        """Parcels (of one group, or all), as a GeoDataFrame in EPSG:4326.

        Parameters, returns and errors as ``ParcelStore.parcels``."""
        where, params = [], {}
        if watched_only:
            where.append("watched")
        if group_id is not None:
            where.append("group_id = :group_id")
            params["group_id"] = group_id
        rows = self._run(self._execute(
            f"SELECT parcel_id, group_id, utm_zone, watched, repaired, ST_AsBinary(geometry) AS geometry "
            f"FROM {SCHEMA}.parcels" + (" WHERE " + " AND ".join(where) if where else "") + " ORDER BY parcel_id",
            params, fetch=True))
        columns = ["parcel_id", "group_id", "utm_zone", "watched", "repaired", "geometry"]
        return parcels_frame(pd.DataFrame(rows, columns=columns))

    def groups(self, watched_only: bool = True) -> pd.DataFrame:
        """One row per group: id, UTM zone (EPSG code), parcels and the lon/lat bounding box.

        Parameters, returns and errors as ``ParcelStore.groups``."""
        rows = self._run(self._execute(f"""
            SELECT group_id, min(utm_zone) AS utm_zone, count(*) AS parcels,
                   min(minx) AS minx, min(miny) AS miny, max(maxx) AS maxx, max(maxy) AS maxy
            FROM {SCHEMA}.parcels {"WHERE watched" if watched_only else ""}
            GROUP BY group_id ORDER BY group_id""", {}, fetch=True))
        return pd.DataFrame(rows, columns=["group_id", "utm_zone", "parcels", "minx", "miny", "maxx", "maxy"])

    # --- observations -----------------------------------------------------------------------
    async def _partitions(self, months: Sequence[pd.Period]) -> None:
        for month in months:
            name = f"observations_{month.year}{month.month:02d}"
            if name in self._months:
                continue
            await self._execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA}.{name} PARTITION OF {SCHEMA}.observations "
                f"FOR VALUES FROM ('{month.start_time:%Y-%m-%d}') TO ('{(month + 1).start_time:%Y-%m-%d}')")
            self._months.add(name)

    def write_observations(self, rows: pd.DataFrame) -> int:
        """Insert or replace per-parcel, per-date statistics, each month's partition made on its first row.

        Parameters, returns and errors as ``ParcelStore.write_observations``."""
        if rows.empty:
            return 0
        frame = observation_rows(rows)
        months = sorted({pd.Period(d, "M") for d in frame["date"]})
        columns = ", ".join(OBSERVATION_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in OBSERVATION_COLUMNS[2:])

        async def write() -> None:
            await self._partitions(months)
            await self._upsert("observations", OBSERVATION_COLUMNS, _records(frame),
                               f"INSERT INTO {SCHEMA}.observations ({columns}) SELECT {columns} FROM incoming "
                               f"ON CONFLICT (parcel_id, date) DO UPDATE SET {updates}")

        self._run(write())
        return len(frame)

    def write_quality(self, run_id: str, start: pd.Timestamp, end: pd.Timestamp, report: pd.DataFrame) -> int:
        """Store a run's data-quality KPIs.

        Parameters, returns and errors as ``ParcelStore.write_quality``."""
        frame = quality_rows(run_id, start, end, report)
        records = frame.astype(object).where(frame.notna(), None).to_dict("records")
        for record in records:
            record["checked_at"] = record["checked_at"].to_pydatetime()
        columns = ", ".join(QUALITY_COLUMNS)
        values = ", ".join(f":{c}" for c in QUALITY_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in QUALITY_COLUMNS[1:] if c != "kpi")
        self._run(self._execute(f"INSERT INTO {SCHEMA}.quality ({columns}) VALUES ({values}) "
                                f"ON CONFLICT (run_id, kpi) DO UPDATE SET {updates}", records))
        return len(frame)

    def purge_unwatched(self, unwatched_before: pd.Timestamp) -> int:
        """Delete the time series of parcels unwatched since before ``unwatched_before``.

        Parameters, returns and errors as ``ParcelStore.purge_unwatched``.

        ``unwatched_before`` may be anything ``pd.Timestamp`` reads; naive is UTC."""
        stamp = pd.Timestamp(unwatched_before)
        stamp = stamp.tz_localize("UTC") if stamp.tz is None else stamp
        return int(self._run(self._execute(
            f"DELETE FROM {SCHEMA}.observations WHERE parcel_id IN (SELECT parcel_id FROM {SCHEMA}.parcels "
            "WHERE NOT watched AND updated_at < :before)", {"before": stamp.to_pydatetime()})))

    def record_run(self, kind: str, target: str, run_id: str, start: pd.Timestamp, end: pd.Timestamp,
                   as_of: pd.Timestamp | None = None) -> None:
        """Remember that a run covered ``start``..``end`` for ``target``.

        Parameters, returns and errors as ``ParcelStore.record_run``."""
        self._run(self._execute(
            f"INSERT INTO {SCHEMA}.runs VALUES (:kind, :target, :run_id, :start, :end, "
            "coalesce(CAST(:as_of AS TIMESTAMP), now() AT TIME ZONE 'UTC')) "
            "ON CONFLICT (kind, target, run_id) DO UPDATE SET period_start = excluded.period_start, "
            "period_end = excluded.period_end, finished_at = excluded.finished_at",
            {"kind": kind, "target": target, "run_id": run_id, "start": naive_utc(start).to_pydatetime(),
             "end": naive_utc(end).to_pydatetime(),
             "as_of": None if as_of is None else naive_utc(as_of).to_pydatetime()}))

    def runs(self, kind: str, target: str) -> pd.DataFrame:
        """Every recorded run of ``kind`` on ``target``, by ``finished_at``.

        Parameters, returns and errors as ``ParcelStore.runs``."""
        rows = self._run(self._execute(
            f"SELECT {', '.join(RUN_COLUMNS)} FROM {SCHEMA}.runs WHERE kind = :kind AND target = :target "
            "ORDER BY finished_at, run_id", {"kind": kind, "target": target}, fetch=True))
        return run_frame([tuple(row[c] for c in RUN_COLUMNS) for row in rows])

    def last_run(self, kind: str, target: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """The period of the latest-ending recorded run of ``kind`` for ``target``, or None.

        Parameters, returns and errors as ``ParcelStore.last_run``."""
        rows = self._run(self._execute(
            f"SELECT period_start, period_end FROM {SCHEMA}.runs WHERE kind = :kind AND target = :target "
            "ORDER BY period_end DESC, finished_at DESC LIMIT 1", {"kind": kind, "target": target}, fetch=True))
        return (pd.Timestamp(rows[0]["period_start"]), pd.Timestamp(rows[0]["period_end"])) if rows else None

    def quality(self) -> pd.DataFrame:
        """Every stored KPI, newest run first.

        Parameters, returns and errors as ``ParcelStore.quality``."""
        rows = self._run(self._execute(f"SELECT {', '.join(QUALITY_COLUMNS)} FROM {SCHEMA}.quality "
                                       "ORDER BY checked_at DESC, kpi", {}, fetch=True))
        return pd.DataFrame(rows, columns=QUALITY_COLUMNS)

    def observations(self, parcel_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """The stored statistics, ordered by parcel and date.

        Parameters, returns and errors as ``ParcelStore.observations``."""
        sql, params = f"SELECT {', '.join(OBSERVATION_COLUMNS)} FROM {SCHEMA}.observations", {}
        if parcel_ids is not None:
            sql += " WHERE parcel_id = ANY(:ids)"
            params["ids"] = [str(p) for p in parcel_ids]
        rows = self._run(self._execute(sql + " ORDER BY parcel_id, date", params, fetch=True))
        frame = pd.DataFrame(rows, columns=OBSERVATION_COLUMNS)
        frame["date"] = pd.to_datetime(frame["date"])
        for column in [*OBSERVATION_COLUMNS[2:8], "valid_fraction"]:
            frame[column] = frame[column].astype("float64")
        return frame
