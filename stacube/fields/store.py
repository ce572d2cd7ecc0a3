"""The parcel store's contract: the ``ParcelStore`` protocol, its schema and the rows both stores write.

Tables live in the ``stacube_fields`` schema, never the default one, so a database can be shared
with other tools. Parcels keep their geometry as WKB plus its bounding box (for queries without a
spatial extension); observations are keyed by (parcel, date), so writing a date again replaces it
and a re-run changes nothing. The implementations (``duckdb_store``, ``postgres``) import this
module; ``factory.open_parcel_store`` picks one by URL.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import geopandas as gpd
import pandas as pd
import shapely

from ..errors import ParcelError
from ..timeaxis import utc_now

SCHEMA = "stacube_fields"
OBSERVATION_COLUMNS = ["parcel_id", "date", "ndvi_mean", "ndvi_median", "ndvi_std", "ndmi_mean", "ndmi_median",
                       "ndmi_std", "valid_pixels", "total_pixels", "valid_fraction", "usable", "reason", "run_id"]

QUALITY_COLUMNS = ["run_id", "checked_at", "period_start", "period_end", "kpi", "value", "threshold", "ok"]
RUN_COLUMNS = ["run_id", "period_start", "period_end", "finished_at"]


class ParcelStore(Protocol):
    """Parcels (watched or not) and their per-date NDVI/NDMI statistics, in the ``stacube_fields`` schema.

    What the field pipelines need of a store; ``open_parcel_store(url)`` (``stacube.fields.factory``)
    opens the implementation a URL names: ``duckdb_store.DuckDBParcelStore`` for one embedded file,
    ``postgres.PostgresParcelStore`` for a PostgreSQL/PostGIS server. Both keep the same tables. A
    store is a context manager that closes itself.

    Each method also raises what its database driver raises when the database fails (DuckDB's, or
    SQLAlchemy's and asyncpg's); the errors listed are those the store raises itself."""

    def __enter__(self) -> ParcelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection (and the PostgreSQL store's event-loop thread)."""

    def add_parcels(self, parcels: gpd.GeoDataFrame, watched: bool = True) -> int:
        """Insert or update parcels; an existing parcel keeps whether it is watched.

        Parameters
        ----------
        parcels : geopandas.GeoDataFrame
            In EPSG:4326, with ``parcel_id``, ``group_id``, ``utm_zone`` and optionally ``repaired``
            (as ``ParcelImport.parcels``).
        watched : bool, optional
            Whether new parcels are watched.

        Returns
        -------
        int
            How many parcels were written.

        Raises
        ------
        ParcelError
            If ``parcels`` are not in EPSG:4326, or hold an id twice.
        """

    def watch(self, parcel_ids: Iterable[str], watched: bool = True) -> int:
        """Watch (or stop watching) parcels: only watched parcels are computed, and the time series of
        parcels unwatched long enough are purged (``purge_unwatched``).

        Parameters
        ----------
        parcel_ids : Iterable[str]
            The parcels; ids the store does not hold are ignored.
        watched : bool, optional
            True to watch, False to stop watching.

        Returns
        -------
        int
            How many of ``parcel_ids`` the store holds (and so were changed).
        """

    def parcels(self, group_id: str | None = None, watched_only: bool = True) -> gpd.GeoDataFrame:
        """Stored parcels, as a GeoDataFrame in EPSG:4326.

        Parameters
        ----------
        group_id : str or None, optional
            Only this group's parcels; None: every group's.
        watched_only : bool, optional
            Only watched parcels (default), or all.

        Returns
        -------
        geopandas.GeoDataFrame
            ``parcel_id``, ``group_id``, ``utm_zone``, ``watched``, ``repaired`` and geometry, by ``parcel_id``.
        """

    def groups(self, watched_only: bool = True) -> pd.DataFrame:
        """The groups to compute, each with what is needed to load its Tile.

        Parameters
        ----------
        watched_only : bool, optional
            Count only watched parcels, and list only groups that have one (default).

        Returns
        -------
        pandas.DataFrame
            One row per group, by ``group_id``: ``group_id``, ``utm_zone`` (EPSG code), ``parcels`` (how
            many) and the lon/lat bounding box ``minx``, ``miny``, ``maxx``, ``maxy`` in degrees.
        """

    def write_observations(self, rows: pd.DataFrame) -> int:
        """Insert or replace per-parcel, per-date statistics: writing a date again replaces it, so a re-run
        changes nothing.

        Parameters
        ----------
        rows : pandas.DataFrame
            With the columns ``OBSERVATION_COLUMNS`` (``indices.parcel_statistics``); others are ignored.

        Returns
        -------
        int
            How many rows were written (0 for no rows).

        Raises
        ------
        ParcelError
            If ``rows`` (not empty) lack one of ``OBSERVATION_COLUMNS``.
        """

    def write_quality(self, run_id: str, start: pd.Timestamp, end: pd.Timestamp, report: pd.DataFrame) -> int:
        """Store a run's data-quality KPIs (one row each; writing a run again replaces them).

        Parameters
        ----------
        run_id : str
            The run the KPIs are of.
        start, end : pd.Timestamp
            The run's period (stored as dates).
        report : pandas.DataFrame
            ``quality.quality_report``'s table: ``kpi``, ``value``, ``threshold``, ``ok``.

        Returns
        -------
        int
            How many KPIs were written.
        """

    def purge_unwatched(self, unwatched_before: pd.Timestamp) -> int:
        """Delete the time series of parcels unwatched since before ``unwatched_before`` (retention); the
        parcels themselves stay.

        Parameters
        ----------
        unwatched_before : pd.Timestamp
            Parcels not watched since before this instant (naive: UTC; re-importing a parcel does not reset it)
            lose their observations.

        Returns
        -------
        int
            How many observation rows were deleted.
        """

    def record_run(self, kind: str, target: str, run_id: str, start: pd.Timestamp, end: pd.Timestamp,
                   as_of: pd.Timestamp | None = None) -> None:
        """Remember that a run covered a period, so that the next run starts where this one ended.

        Parameters
        ----------
        kind : str
            What ran (``"ingest"``).
        target : str
            What it ran on (a cube URL).
        run_id : str
            The run; recording the same run again replaces its period.
        start, end : pd.Timestamp
            The period the run covered (naive: UTC; stored as naive UTC).
        as_of : pd.Timestamp or None, optional
            The record's ``finished_at``; None: the store's clock now. A run that read other runs' records
            passes the latest ``finished_at`` it saw (a time of the store's own clock), so that runs
            recorded while it worked count as after it.
        """

    def runs(self, kind: str, target: str) -> pd.DataFrame:
        """Every recorded run of ``kind`` on ``target``, in the order they were recorded.

        Parameters
        ----------
        kind : str
            What ran (``"ingest"``).
        target : str
            What it ran on (a cube URL).

        Returns
        -------
        pandas.DataFrame
            The columns ``run_id``, ``period_start``, ``period_end`` and ``finished_at`` (naive UTC), by
            ``finished_at``.
        """

    def last_run(self, kind: str, target: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """The period of the latest-ending recorded run, where the next one starts.

        Parameters
        ----------
        kind : str
            What ran (``"ingest"``).
        target : str
            What it ran on (a cube URL).

        Returns
        -------
        tuple[pd.Timestamp, pd.Timestamp] or None
            (start, end) in naive UTC; None if no such run was recorded.
        """

    def quality(self) -> pd.DataFrame:
        """Every stored KPI, newest run first.

        Returns
        -------
        pandas.DataFrame
            The columns ``QUALITY_COLUMNS``, by ``checked_at`` (newest first) then ``kpi``.
        """

    def observations(self, parcel_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """The stored statistics, ordered by parcel and date.

        Parameters
        ----------
        parcel_ids : Sequence[str] or None, optional
            Only these parcels'; None: every parcel's.

        Returns
        -------
        pandas.DataFrame
            The columns ``OBSERVATION_COLUMNS``.
        """


def parcel_rows(parcels: gpd.GeoDataFrame, watched: bool) -> pd.DataFrame:
    """Parcels as rows to store: WKB geometry and its bounding box, for queries without a spatial extension.

    Parameters
    ----------
    parcels : geopandas.GeoDataFrame
        In EPSG:4326, with ``parcel_id``, ``group_id``, ``utm_zone`` and optionally ``repaired``.
    watched : bool
        The ``watched`` of every row.

    Returns
    -------
    pandas.DataFrame
        ``parcel_id``, ``group_id``, ``utm_zone``, ``geometry`` (WKB), ``minx``, ``miny``, ``maxx``,
        ``maxy`` (degrees), ``repaired``, ``watched``.

    Raises
    ------
    ParcelError
        If ``parcels`` have no CRS, or another than EPSG:4326, or an id twice.
    """
    if parcels.crs is None or parcels.crs.to_epsg() != 4326:
        raise ParcelError(f"parcels must be in EPSG:4326 (as clean_parcels leaves them), got {parcels.crs}")
    ids = parcels["parcel_id"].astype(str)
    if ids.duplicated().any():  # one would silently replace the other in the store
        raise ParcelError(f"parcel ids given more than once: {sorted(set(ids[ids.duplicated()]))[:5]} "
                          "(clean_parcels rejects such parcels)")
    bounds = parcels.geometry.bounds
    return pd.DataFrame({
        "parcel_id": parcels["parcel_id"].astype(str), "group_id": parcels["group_id"].astype(str),
        "utm_zone": parcels["utm_zone"].astype(int), "geometry": shapely.to_wkb(parcels.geometry.values),
        "minx": bounds.minx, "miny": bounds.miny, "maxx": bounds.maxx, "maxy": bounds.maxy,
        "repaired": parcels.get("repaired", pd.Series(False, index=parcels.index)).astype(bool),
        "watched": watched,
    })


def observation_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Observations as rows to store, checked for columns; dates as dates.

    Parameters
    ----------
    rows : pandas.DataFrame
        Per-parcel, per-date statistics.

    Returns
    -------
    pandas.DataFrame
        A copy holding ``OBSERVATION_COLUMNS`` only, ``date`` as ``datetime.date``; one row per parcel and
        day (the latest of several steps on one day).

    Raises
    ------
    ParcelError
        If ``rows`` lack one of ``OBSERVATION_COLUMNS``.
    """
    missing = set(OBSERVATION_COLUMNS) - set(rows.columns)
    if missing:
        raise ParcelError(f"observations lack columns {sorted(missing)}; they have {list(rows.columns)}")
    frame = rows[OBSERVATION_COLUMNS].copy()
    when = pd.to_datetime(frame["date"])
    frame["date"] = when.dt.date
    # a store keeps one row per parcel and day: of several steps on one day (a sub-daily axis), the latest
    # is kept, in both stores alike (DuckDB kept the first silently; PostgreSQL refused the batch)
    frame = frame.assign(_when=when).sort_values("_when", kind="stable")
    frame = frame.drop_duplicates(["parcel_id", "date"], keep="last").drop(columns="_when")
    return frame.sort_index()


def quality_rows(run_id: str, start: pd.Timestamp, end: pd.Timestamp, report: pd.DataFrame) -> pd.DataFrame:
    """A quality report (``stacube.fields.quality``) as rows to store.

    Parameters
    ----------
    run_id : str
        The run the KPIs are of.
    start, end : pd.Timestamp
        The run's period (kept as dates).
    report : pandas.DataFrame
        ``quality.quality_report``'s table.

    Returns
    -------
    pandas.DataFrame
        The columns ``QUALITY_COLUMNS``; ``checked_at`` is now, in naive UTC.
    """
    frame = report[["kpi", "value", "threshold", "ok"]].copy()
    frame.insert(0, "period_end", pd.Timestamp(end).date())
    frame.insert(0, "period_start", pd.Timestamp(start).date())
    frame.insert(0, "checked_at", utc_now())
    frame.insert(0, "run_id", str(run_id))
    frame["ok"] = frame["ok"].astype(bool)
    return frame[QUALITY_COLUMNS]


def parcels_frame(frame: pd.DataFrame) -> gpd.GeoDataFrame:
    """Stored parcel rows (geometry as WKB) as a GeoDataFrame in EPSG:4326.

    Parameters
    ----------
    frame : pandas.DataFrame
        Rows read from the ``parcels`` table; its ``geometry`` column is taken out (the frame changes).

    Returns
    -------
    geopandas.GeoDataFrame
        The other columns, with the geometries decoded.
    """
    geometry = shapely.from_wkb(frame.pop("geometry").map(bytes).to_numpy()) if len(frame) else []
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geometry, index=frame.index, crs="EPSG:4326"))


def run_frame(rows: Iterable[Sequence]) -> pd.DataFrame:
    """Recorded runs as ``ParcelStore.runs`` returns them, whatever driver read them: timestamps as naive UTC.

    Parameters
    ----------
    rows : Iterable[Sequence]
        Rows of ``RUN_COLUMNS``.

    Returns
    -------
    pandas.DataFrame
        The columns ``RUN_COLUMNS``.
    """
    frame = pd.DataFrame([tuple(row) for row in rows], columns=RUN_COLUMNS)
    for column in RUN_COLUMNS[1:]:
        frame[column] = pd.to_datetime(frame[column]).astype("datetime64[us]")
    frame["run_id"] = frame["run_id"].astype(str)
    return frame
