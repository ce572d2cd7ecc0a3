"""Farm parcels in: read a vector file, keep a stable id, repair what can be repaired, report the rest.

One bad parcel never fails an import: a geometry that ``make_valid`` turns into a polygon is kept
(repaired), anything else (no geometry, no area, a duplicate or missing id, coordinates that cannot be
where their CRS says) goes into the rejected report with its reason. Ids are stored as text
(``parcel_id_text``), and judged as stored. Parcels come out in EPSG:4326 with their UTM zone and group.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely

from ..errors import ParcelError
from .groups import assign_groups, check_group_size


@dataclass
class ParcelImport:
    """What an import kept and what it rejected, so that one bad parcel never fails the import."""

    parcels: gpd.GeoDataFrame
    """The parcels kept, in EPSG:4326: ``parcel_id`` (str), geometry (a polygon or multipolygon),
    ``repaired`` (``make_valid`` fixed it), ``utm_zone`` (EPSG code) and ``group_id``."""
    rejected: pd.DataFrame
    """The parcels left out: ``parcel_id`` (``row <index>`` where it had none) and ``reason``."""

    def __repr__(self) -> str:
        repaired = int(self.parcels["repaired"].sum()) if len(self.parcels) else 0
        return (f"<ParcelImport: {len(self.parcels)} parcels ({repaired} repaired) in "
                f"{self.parcels['group_id'].nunique() if len(self.parcels) else 0} groups, "
                f"{len(self.rejected)} rejected>")


def _polygonal(geometry: shapely.Geometry | None) -> shapely.Geometry | None:
    """The polygonal part of a geometry (after repair), or None if it has no area."""
    if geometry is None or geometry.is_empty:
        return None
    if geometry.geom_type in ("Polygon", "MultiPolygon"):
        return geometry if geometry.area > 0 else None
    if geometry.geom_type == "GeometryCollection":
        parts = [g for g in geometry.geoms if g.geom_type in ("Polygon", "MultiPolygon") and g.area > 0]
        return shapely.union_all(parts) if parts else None
    return None


def parcel_id_text(value: object) -> str | None:
    """A parcel id as it is stored: text without surrounding spaces, a whole-number float as an integer
    (17.0 is 17: a column with an empty cell reads as floats); None for a missing or blank one.

    Parameters
    ----------
    value : object
        The id as read.

    Returns
    -------
    str or None
        The stored id.
    """
    if value is None or (not isinstance(value, str) and pd.isna(value)):
        return None
    if isinstance(value, float | np.floating) and float(value).is_integer():
        value = int(value)
    text = str(value).strip()
    return text or None


def _on_the_earth(parcels: gpd.GeoDataFrame) -> tuple[gpd.GeoDataFrame, list[dict[str, str]]]:
    """The parcels in EPSG:4326, and those rejected because their coordinates cannot be where they say:
    outside lon/lat's range there (metres labelled as degrees, swapped axes), or covering less than a
    square metre (degrees labelled as metres)."""
    lonlat = parcels.to_crs("EPSG:4326")
    bounds = lonlat.geometry.bounds
    finite = np.isfinite(bounds.to_numpy()).all(axis=1)
    inside = (finite & (bounds.minx >= -180) & (bounds.maxx <= 180) & (bounds.miny >= -90)
              & (bounds.maxy <= 90)).to_numpy()
    area = np.zeros(len(lonlat))
    area[inside] = lonlat[inside].to_crs("EPSG:6933").area.to_numpy()  # equal-area, square metres
    rejected = []
    for position in np.flatnonzero(~inside | (area < 1.0)):
        reason = (f"coordinates outside the Earth's lon/lat range once read in {parcels.crs.to_string()} "
                  "(metres labelled as degrees, or swapped axes?)" if not inside[position] else
                  f"covers {area[position]:.2g} m2 in {parcels.crs.to_string()}, less than 1 m2 "
                  "(degrees labelled as metres?)")
        rejected.append({"parcel_id": lonlat["parcel_id"].iloc[position], "reason": reason})
    return lonlat[inside & (area >= 1.0)], rejected


def clean_parcels(frame: gpd.GeoDataFrame, id_column: str, max_group_size: int = 2000) -> ParcelImport:
    """Validate, repair and group parcels already in memory.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        The parcels, in any CRS.
    id_column : str
        The column holding each parcel's stable id; a missing or duplicated id rejects the parcel.
    max_group_size : int, optional
        Most parcels in one group (``groups.assign_groups``).

    Returns
    -------
    ParcelImport
        The parcels kept (in EPSG:4326, grouped) and those rejected, with reasons.

    Raises
    ------
    ParcelError
        If ``frame`` has no column ``id_column``, or no CRS, or ``max_group_size`` is less than 1 or not a
        whole number.
    """
    check_group_size(max_group_size, "max_group_size")
    if id_column not in frame.columns:
        raise ParcelError(f"no parcel id column {id_column!r}; the columns are {list(frame.columns)}")
    if frame.crs is None:
        raise ParcelError("the parcels have no CRS; set one (for example frame.set_crs('EPSG:4326'))")
    rejected: list[dict[str, str]] = []
    # The ids as they are stored: 1 and "1", " P7" and "P7", 17 and 17.0 (a column with an empty cell reads
    # as floats) are one id there, so they are judged as one here
    ids = pd.Series([parcel_id_text(v) for v in frame[id_column]], index=frame.index, dtype=object)
    duplicated = (ids.duplicated(keep=False) & ids.notna()).to_numpy()  # by position: labels may repeat
    kept_rows = []
    for position, (index, given, shape) in enumerate(zip(frame.index, frame[id_column], frame.geometry,
                                                       strict=True)):
        parcel_id = ids.iloc[position]
        if parcel_id is None:
            rejected.append({"parcel_id": f"row {index}", "reason": f"no value in {id_column!r}"})
            continue
        if duplicated[position]:
            rejected.append({"parcel_id": parcel_id, "reason": f"duplicate {id_column} {given!r}"})
            continue
        original = shape if isinstance(shape, shapely.Geometry) else None  # a missing one may be NaN
        geometry = original
        repaired = False
        if geometry is not None and not geometry.is_valid:
            geometry, repaired = shapely.make_valid(geometry), True
        geometry = _polygonal(geometry)
        if geometry is None:
            what = "no geometry" if original is None or original.is_empty else \
                f"a {original.geom_type} without area" + (" after repair" if repaired else "")
            rejected.append({"parcel_id": str(parcel_id), "reason": what})
            continue
        kept_rows.append({"parcel_id": parcel_id, "geometry": geometry, "repaired": repaired})
    kept = gpd.GeoDataFrame(kept_rows, columns=["parcel_id", "geometry", "repaired"], geometry="geometry",
                            crs=frame.crs)
    kept, misplaced = _on_the_earth(kept)
    rejected += misplaced
    kept = assign_groups(kept, max_group_size)
    return ParcelImport(kept, pd.DataFrame(rejected, columns=["parcel_id", "reason"]))


def read_parcels(path: str | os.PathLike, id_column: str, *, layer: str | None = None,
                 max_group_size: int = 2000) -> ParcelImport:
    """Parcels from GeoParquet, GeoPackage or Shapefile (by extension), validated, repaired and grouped.

    Parameters
    ----------
    path : str or os.PathLike
        The file: ``.parquet``/``.geoparquet`` is read as GeoParquet, anything else by ``geopandas.read_file``.
    id_column : str
        The column holding each parcel's stable id.
    layer : str or None, optional
        The layer of a multi-layer file (GeoPackage); ignored for GeoParquet.
    max_group_size : int, optional
        Most parcels in one group.

    Returns
    -------
    ParcelImport
        As ``clean_parcels``.

    Raises
    ------
    ParcelError
        If the file has no column ``id_column``, or no CRS, or ``max_group_size`` is less than 1 or not a
        whole number (checked before the file is read).
    """
    check_group_size(max_group_size, "max_group_size")
    path = os.fspath(path)
    if path.lower().endswith((".parquet", ".geoparquet")):
        frame = gpd.read_parquet(path)
    else:
        frame = gpd.read_file(path, layer=layer)
    return clean_parcels(frame, id_column, max_group_size)
