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

from ..timeaxis import utc_now

SCHEMA = "stacube_fields"
OBSERVATION_COLUMNS = ["parcel_id", "date", "ndvi_mean", "ndvi_median", "ndvi_std", "ndmi_mean", "ndmi_median",
                       "ndmi_std", "valid_pixels", "total_pixels", "valid_fraction", "usable", "reason", "run_id"]

QUALITY_COLUMNS = ["run_id", "checked_at", "period_start", "period_end", "kpi", "value", "threshold", "ok"]


class ParcelStore(Protocol):
    """Parcels (watched or not) and their per-date NDVI/NDMI statistics, in the ``stacube_fields`` schema.

    What the field pipelines need of a store; ``open_parcel_store(url)`` (``stacube.fields.factory``)
    opens the implementation a URL names: ``duckdb_store.DuckDBParcelStore`` for one embedded file,
    ``postgres.PostgresParcelStore`` for a PostgreSQL/PostGIS server. Both keep the same tables. A
    store is a context manager that closes itself."""

    def __enter__(self) -> ParcelStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Release the connection (and the PostgreSQL store's event-loop thread)."""

    def add_parcels(self, parcels: gpd.GeoDataFrame, watched: bool = True) -> int:
        """Insert or update parcels (EPSG:4326, with ``parcel_id``, ``group_id``, ``utm_zone``); an existing
        parcel keeps whether it is watched. Returns how many were written."""

    def watch(self, parcel_ids: Iterable[str], watched: bool = True) -> int:
        """Watch (or stop watching) parcels; returns how many exist among ``parcel_ids``."""

    def parcels(self, group_id: str | None = None, watched_only: bool = True) -> gpd.GeoDataFrame:
        """Parcels (of one group, or all), as a GeoDataFrame in EPSG:4326."""

    def groups(self, watched_only: bool = True) -> pd.DataFrame:
        """One row per group: id, UTM zone (EPSG code), parcels and the lon/lat bounding box."""

    def write_observations(self, rows: pd.DataFrame) -> int:
        """Insert or replace per-parcel, per-date statistics (columns ``OBSERVATION_COLUMNS``)."""

    def write_quality(self, run_id: str, start: pd.Timestamp, end: pd.Timestamp, report: pd.DataFrame) -> int:
        """Store a run's data-quality KPIs (one row each; writing a run again replaces them)."""

    def purge_unwatched(self, unwatched_before: pd.Timestamp) -> int:
        """Delete the time series of parcels unwatched since before ``unwatched_before``; returns rows deleted."""

    def record_run(self, kind: str, target: str, run_id: str, start: pd.Timestamp, end: pd.Timestamp) -> None:
        """Remember that a run of ``kind`` covered ``start``..``end`` for ``target`` (a cube URL)."""

    def last_run(self, kind: str, target: str) -> tuple[pd.Timestamp, pd.Timestamp] | None:
        """The period of the latest-ending recorded run of ``kind`` for ``target``, or None."""

    def quality(self) -> pd.DataFrame:
        """Every stored KPI, newest run first."""

    def observations(self, parcel_ids: Sequence[str] | None = None) -> pd.DataFrame:
        """The stored statistics, ordered by parcel and date."""


def parcel_rows(parcels: gpd.GeoDataFrame, watched: bool) -> pd.DataFrame:
    """Parcels as rows to store: WKB geometry and its bounding box."""
    if parcels.crs is None or parcels.crs.to_epsg() != 4326:
        raise ValueError(f"parcels must be in EPSG:4326, got {parcels.crs}")
    bounds = parcels.geometry.bounds
    return pd.DataFrame({
        "parcel_id": parcels["parcel_id"].astype(str), "group_id": parcels["group_id"].astype(str),
        "utm_zone": parcels["utm_zone"].astype(int), "geometry": shapely.to_wkb(parcels.geometry.values),
        "minx": bounds.minx, "miny": bounds.miny, "maxx": bounds.maxx, "maxy": bounds.maxy,
        "repaired": parcels.get("repaired", pd.Series(False, index=parcels.index)).astype(bool),
        "watched": watched,
    })


def observation_rows(rows: pd.DataFrame) -> pd.DataFrame:
    """Observations as rows to store, checked for columns; dates as dates."""
    missing = set(OBSERVATION_COLUMNS) - set(rows.columns)
    if missing:
        raise ValueError(f"observations lack columns {sorted(missing)}")
    frame = rows[OBSERVATION_COLUMNS].copy()
    frame["date"] = pd.to_datetime(frame["date"]).dt.date
    return frame


def quality_rows(run_id: str, start: pd.Timestamp, end: pd.Timestamp, report: pd.DataFrame) -> pd.DataFrame:
    """A quality report (``stacube.fields.quality``) as rows to store."""
    frame = report[["kpi", "value", "threshold", "ok"]].copy()
    frame.insert(0, "period_end", pd.Timestamp(end).date())
    frame.insert(0, "period_start", pd.Timestamp(start).date())
    frame.insert(0, "checked_at", utc_now())
    frame.insert(0, "run_id", str(run_id))
    frame["ok"] = frame["ok"].astype(bool)
    return frame[QUALITY_COLUMNS]


def parcels_frame(frame: pd.DataFrame) -> gpd.GeoDataFrame:
    """Stored parcel rows (geometry as WKB) as a GeoDataFrame in EPSG:4326."""
    geometry = shapely.from_wkb(frame.pop("geometry").map(bytes).to_numpy()) if len(frame) else []
    return gpd.GeoDataFrame(frame, geometry=gpd.GeoSeries(geometry, index=frame.index, crs="EPSG:4326"))
