"""Tables ready for use: a weekly NDVI/NDMI series per parcel, gaps filled and flagged, as files.

A week's value is the mean of the parcel's usable acquisitions that week (weeks start on Monday).
Weeks between a parcel's first and last usable week that have none are filled by linear
interpolation in time and flagged ``filled``; nothing is extrapolated past either end. The series
are written as GeoParquet (with the parcel geometry) and CSV, and a PNG shows a sample of parcels.
"""

from __future__ import annotations

import os
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd

from ..errors import ParcelError
from ..spec import check_name

SERIES_COLUMNS = ["parcel_id", "week", "ndvi", "ndmi", "acquisitions", "filled"]


def weekly_series(observations: pd.DataFrame) -> pd.DataFrame:
    """One row per parcel and week from the first to the last week with a usable acquisition.

    Parameters
    ----------
    observations : pandas.DataFrame
        Stored statistics (``ParcelStore.observations``): ``parcel_id``, ``date``, ``usable``,
        ``ndvi_mean``, ``ndmi_mean``; rows not usable are ignored.

    Returns
    -------
    pandas.DataFrame
        ``SERIES_COLUMNS``: ``week`` (its Monday), ``ndvi`` and ``ndmi`` (mean of the week's usable
        acquisitions, interpolated in time where there is none), ``acquisitions`` (how many) and
        ``filled`` (True where interpolated); no row when nothing is usable.
    """
    usable = observations[observations["usable"].astype(bool)].copy()
    if usable.empty:  # typed as a full series is, so that an empty export's columns keep their types
        return pd.DataFrame({"parcel_id": pd.Series(dtype=str), "week": pd.Series(dtype="datetime64[us]"),
                             "ndvi": pd.Series(dtype=float), "ndmi": pd.Series(dtype=float),
                             "acquisitions": pd.Series(dtype="int64"), "filled": pd.Series(dtype=bool)}
                            )[SERIES_COLUMNS]
    usable["week"] = pd.to_datetime(usable["date"]).dt.to_period("W-SUN").dt.start_time
    weekly = usable.groupby(["parcel_id", "week"]).agg(ndvi=("ndvi_mean", "mean"), ndmi=("ndmi_mean", "mean"),
                                                       acquisitions=("ndvi_mean", "size")).reset_index()
    parts = []
    for parcel_id, rows in weekly.groupby("parcel_id", sort=True):
        weeks = pd.date_range(rows["week"].min(), rows["week"].max(), freq="7D")
        full = rows.set_index("week").reindex(weeks)
        full["filled"] = full["acquisitions"].isna()
        for column in ("ndvi", "ndmi"):
            full[column] = full[column].interpolate(method="time")
        full["acquisitions"] = full["acquisitions"].fillna(0).astype(int)
        full["parcel_id"] = parcel_id
        parts.append(full.rename_axis("week").reset_index())
    return pd.concat(parts, ignore_index=True)[SERIES_COLUMNS]


def export_series(series: pd.DataFrame, parcels: gpd.GeoDataFrame, folder: str | os.PathLike,
                  name: str = "parcel-series") -> dict[str, Path]:
    """Write ``name``.parquet (GeoParquet, with each parcel's geometry) and ``name``.csv into ``folder``.

    Parameters
    ----------
    series : pandas.DataFrame
        A weekly series (``weekly_series``).
    parcels : geopandas.GeoDataFrame
        The parcels, with ``parcel_id``: their geometries and CRS go into the GeoParquet.
    folder : str or os.PathLike
        Where to write (made if missing); files of the same name are overwritten.
    name : str, optional
        The files' stem: a file name, never a path.

    Returns
    -------
    dict[str, Path]
        The files written, as ``{"geoparquet": ..., "csv": ...}``.

    Raises
    ------
    SpecError
        If ``name`` is not an allowed name (separators, ``..``, other characters than letters, digits,
        ``_``, ``-`` and ``.``).
    ParcelError
        If a parcel of ``series`` is not among ``parcels`` (ids compared as text); nothing is written.
    """
    check_name("export", name)  # a file name inside ``folder``: never a path out of it
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    geometry = parcels.set_index(parcels["parcel_id"].astype(str)).geometry
    ids = series["parcel_id"].astype(str)
    unknown = sorted(set(ids) - set(geometry.index))
    if unknown:  # their rows would be written without a geometry
        raise ParcelError(f"{len(unknown)} parcel(s) of the series are not among the parcels given: {unknown[:5]}")
    table = gpd.GeoDataFrame(series.copy(), geometry=geometry.reindex(ids).values, crs=parcels.crs)
    paths = {"geoparquet": folder / f"{name}.parquet", "csv": folder / f"{name}.csv"}
    table.to_parquet(paths["geoparquet"])
    series.to_csv(paths["csv"], index=False, date_format="%Y-%m-%d")
    return paths


def plot_sample(series: pd.DataFrame, path: str | os.PathLike, parcels: int = 6, seed: int = 0) -> Path:
    """A PNG of the NDVI series of a sample of parcels, to glance at a run's result; filled weeks are hollow.

    Parameters
    ----------
    series : pandas.DataFrame
        A weekly series (``weekly_series``).
    path : str or os.PathLike
        The PNG to write (its folder is made; overwritten if it exists).
    parcels : int, optional
        How many parcels to draw, at most.
    seed : int, optional
        Seed of the random choice of parcels (the same seed draws the same parcels).

    Returns
    -------
    Path
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ids = sorted(series["parcel_id"].unique())
    chosen = list(np.random.default_rng(seed).choice(ids, size=min(parcels, len(ids)), replace=False))
    figure, axes = plt.subplots(figsize=(8, 4), dpi=100)
    for parcel_id in sorted(chosen):
        rows = series[series["parcel_id"] == parcel_id]
        line, = axes.plot(rows["week"], rows["ndvi"], label=str(parcel_id))
        measured = ~rows["filled"].astype(bool)
        axes.scatter(rows["week"][measured], rows["ndvi"][measured], color=line.get_color(), s=16)
        axes.scatter(rows["week"][~measured], rows["ndvi"][~measured], facecolors="none",
                     edgecolors=line.get_color(), s=16)
    # NDVI lies in (-1, 1): water, bare soil and snow go below 0, and a plot cut at 0 would hide them
    low = min(0.0, float(series.loc[series["parcel_id"].isin(chosen), "ndvi"].min()))
    axes.set(xlabel="week", ylabel="NDVI", ylim=(max(-1.0, low - 0.05) if low < 0 else 0.0, 1),
             title=f"Weekly NDVI, {len(chosen)} of {len(ids)} parcels")
    axes.legend(loc="upper left", fontsize="small", ncols=2)
    figure.autofmt_xdate()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path
