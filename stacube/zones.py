"""Zones for a lon/lat extent: the UTM zones it touches, each a GeoBox in its own CRS.

Collections such as Sentinel-2 and Google's annual embeddings are stored per UTM zone; a cube with
one zone per UTM zone keeps their pixels on their native grid (no resampling on write).
"""

from __future__ import annotations

from odc.geo.geobox import GeoBox
from odc.geo.geom import box

from .errors import SpecError


def _lon_intervals(west: float, east: float) -> list[tuple[float, float]]:
    """The bbox's longitudes as intervals (two when it crosses 180 degrees)."""
    return [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]


def utm_zones(bbox: tuple[float, float, float, float], resolution: float) -> list[GeoBox]:
    """One GeoBox per UTM zone (and hemisphere) that ``bbox`` (west, south, east, north; west > east
    crosses 180 degrees) touches, covering the part of the bbox in that zone on a grid of
    ``resolution`` metres whose pixel edges are multiples of the resolution."""
    west, south, east, north = bbox
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -80 <= south < north <= 84):
        raise SpecError(f"bbox {bbox!r} is not a lon/lat extent inside the UTM domain (80 S to 84 N)")
    zones = []
    for low, high in _lon_intervals(west, east):
        for number in range(int((low + 180) // 6) + 1, int((min(high, 179.999999) + 180) // 6) + 2):
            lon0 = -180.0 + (number - 1) * 6
            part_west, part_east = max(low, lon0), min(high, lon0 + 6)
            if part_west >= part_east:
                continue
            for hemisphere, lat_lo, lat_hi in (("6", max(south, 0.0), north), ("7", south, min(north, 0.0))):
                if lat_lo >= lat_hi:
                    continue
                crs = f"EPSG:32{hemisphere}{number:02d}"
                footprint = box(part_west, lat_lo, part_east, lat_hi, "EPSG:4326").to_crs(crs, resolution=0.05)
                zones.append(GeoBox.from_bbox(footprint.boundingbox, crs, resolution=resolution))
    return zones
