"""Group parcels the way Sentinel-2 is tiled, so that work is done per group, never for all at once.

A group is the parcels whose representative point lies in one 100 km square of one UTM zone (the
grid MGRS tiles follow), cut into parts of at most ``max_size`` parcels along a Z-order curve, so a
part stays spatially compact: its pixels come from a few cube chunks. Group ids read
``32N-6-52-0``: zone and hemisphere, the square's column and row (x and y in 100 km), the part.
"""

from __future__ import annotations

import numbers

import geopandas as gpd
import numpy as np
from pyproj import Transformer

from ..errors import ParcelError


def utm_epsg(lon: np.ndarray, lat: np.ndarray) -> np.ndarray:
    """The EPSG code of the UTM zone of each point (326xx north, 327xx south): the grid a group is computed on.

    Parameters
    ----------
    lon, lat : np.ndarray
        Longitudes and latitudes in degrees (EPSG:4326).

    Returns
    -------
    np.ndarray
        One EPSG code per point: the plain 6-degree zones (Norway's and Svalbard's exceptions are not made).
    """
    zone = np.clip(np.floor((np.asarray(lon) + 180.0) / 6.0).astype(int) + 1, 1, 60)
    return np.where(np.asarray(lat) >= 0, 32600, 32700) + zone


def _z_order(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Interleaved bits of 16-bit x and y: points close on the ground are close in this order."""
    def spread(v: np.ndarray) -> np.ndarray:
        v = v.astype(np.uint64) & 0xFFFF
        v = (v | (v << 8)) & 0x00FF00FF
        v = (v | (v << 4)) & 0x0F0F0F0F
        v = (v | (v << 2)) & 0x33333333
        return (v | (v << 1)) & 0x55555555

    return spread(x) | (spread(y) << np.uint64(1))


def check_group_size(max_size: int, name: str = "max_size") -> int:
    """``max_size`` if it is a whole number of parcels, 1 or more, checked before any parcel is worked on.

    Raises
    ------
    ParcelError
        If ``max_size`` is less than 1, or not a whole number (a float, a string, a bool); the message
        names it as ``name``.
    """
    if not (isinstance(max_size, numbers.Integral) and not isinstance(max_size, bool) and max_size >= 1):
        raise ParcelError(f"{name} {max_size!r} must be a whole number of parcels, at least 1")
    return int(max_size)


def assign_groups(parcels: gpd.GeoDataFrame, max_size: int = 2000) -> gpd.GeoDataFrame:
    """``parcels`` with ``utm_zone`` and ``group_id`` columns added, so that work is done per group.

    Parameters
    ----------
    parcels : geopandas.GeoDataFrame
        In EPSG:4326, with ``parcel_id``.
    max_size : int, optional
        Most parcels in one group: a 100 km square holding more is cut into parts along a Z-order curve.

    Returns
    -------
    geopandas.GeoDataFrame
        A copy with ``utm_zone`` (EPSG code of the UTM zone of each parcel's representative point) and
        ``group_id`` (``32N-6-52-0``: zone and hemisphere, the square's column and row, the part).

    Raises
    ------
    ParcelError
        If ``max_size`` is less than 1, or not a whole number (``check_group_size``).
    """
    max_size = check_group_size(max_size)
    out = parcels.copy()
    if out.empty:
        out["utm_zone"], out["group_id"] = np.array([], dtype=int), np.array([], dtype=object)
        return out
    points = out.geometry.representative_point()
    lon, lat = points.x.to_numpy(), points.y.to_numpy()
    epsg = utm_epsg(lon, lat)
    x, y = np.empty(len(out)), np.empty(len(out))
    for code in np.unique(epsg):
        here = epsg == code
        x[here], y[here] = Transformer.from_crs("EPSG:4326", f"EPSG:{code}", always_xy=True).transform(
            lon[here], lat[here])
    col, row = np.floor(x / 100_000).astype(int), np.floor(y / 100_000).astype(int)
    square = [f"{code % 100:02d}{'N' if code < 32700 else 'S'}-{c}-{r}" for code, c, r in zip(epsg, col, row,
                                                                                               strict=True)]
    cell = _z_order((x - col * 100_000) / 100_000 * 65535, (y - row * 100_000) / 100_000 * 65535)
    order = np.lexsort((out["parcel_id"].to_numpy(), cell, np.asarray(square)))
    group = np.empty(len(out), dtype=object)
    position: dict[str, int] = {}
    for index in order:
        n = position.get(square[index], 0)
        group[index] = f"{square[index]}-{n // max_size}"
        position[square[index]] = n + 1
    out["utm_zone"] = epsg
    out["group_id"] = group
    return out
