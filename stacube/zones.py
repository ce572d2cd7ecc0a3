"""Zones for a lon/lat extent: the UTM zones it touches, each a GeoBox in its own CRS.

Collections such as Sentinel-2 and Google's annual embeddings are stored per UTM zone; a cube with
one zone per UTM zone keeps their pixels on their native grid (no resampling on write).

Tiles of such collections do not stop at their zone's meridians: Sentinel-2's MGRS tiles reach
30-100 km into the neighbouring zone. A zone that stopped at the meridian would throw away what its
own granules hold there, and where the neighbour's granule is missing, filtered out or nodata, a
Tile would come back empty although data exists. ``reach`` extends each zone that far past its
meridians (zones then overlap; a Tile takes valid data from any zone that holds it).
"""

from __future__ import annotations

import math

from odc.geo import xy_
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box

from .errors import SpecError

# Sentinel-2 tiles are 109.8 km squares laid on MGRS's 100 km grid of each zone: the last column of
# squares that meets a zone reaches at most one square plus 9.8 km past its meridian.
MGRS_REACH = 110_000.0
_METRES_PER_DEGREE = 111_320.0


def _lon_intervals(west: float, east: float) -> list[tuple[float, float]]:
    """The bbox's longitudes as intervals (two when it crosses 180 degrees)."""
    return [(west, east)] if west <= east else [(west, 180.0), (-180.0, east)]


def _margin_degrees(reach: float, south: float, north: float) -> float:
    """Degrees of longitude that ``reach`` metres can span inside the bbox's latitudes (at its widest)."""
    if reach <= 0:
        return 0.0
    widest = max(abs(south), abs(north))
    return min(reach / (_METRES_PER_DEGREE * max(math.cos(math.radians(widest)), 0.05)), 30.0)


def _zone_region(crs: str, lon0: float, part: tuple[float, float, float, float], lat: tuple[float, float],
                 reach: float) -> Geometry | None:
    """The part of the bbox in the zone of central band ``lon0..lon0+6``, ``reach`` metres past its meridians."""
    west, south, east, north = part
    band = box(lon0, lat[0], lon0 + 6.0, lat[1], "EPSG:4326").to_crs(crs, resolution=0.05)
    wanted = box(west, south, east, north, "EPSG:4326").to_crs(crs, resolution=0.05)
    if reach > 0:
        band = Geometry(band.geom.buffer(reach, join_style="mitre"), crs)
    region = band.geom.intersection(wanted.geom)
    if region.is_empty or region.area == 0:
        return None
    return Geometry(region, crs)


def utm_zones(bbox: tuple[float, float, float, float], resolution: float, *, reach: float = 0.0,
              anchor: tuple[float, float] = (0.0, 0.0)) -> list[GeoBox]:
    """One GeoBox per UTM zone (and hemisphere) that ``bbox`` (west, south, east, north; west > east
    crosses 180 degrees) touches, covering the part of the bbox in that zone, and ``reach`` metres
    past the zone's meridians (``MGRS_REACH`` for Sentinel-2), on a grid of ``resolution`` metres
    whose pixel edges sit ``anchor`` (a fraction of a pixel, x and y) past multiples of the
    resolution: (0, 0) for Sentinel-2, (0.5, 0.5) for Landsat (see ``stacube.alignment.anchor_of``)."""
    west, south, east, north = bbox
    if not (-180 <= west <= 180 and -180 <= east <= 180 and -80 <= south < north <= 84):
        raise SpecError(f"bbox {bbox!r} is not a lon/lat extent inside the UTM domain (80 S to 84 N)")
    if not (reach >= 0 and math.isfinite(reach)):
        raise SpecError(f"reach {reach!r} must be a distance in metres, 0 or more")
    if len(anchor) != 2 or not all(0 <= a < 1 for a in anchor):
        raise SpecError(f"anchor {anchor!r} must be two fractions of a pixel in [0, 1)")
    margin = _margin_degrees(reach, south, north)
    parts: dict[str, list[Geometry]] = {}  # per zone, in the order met: a bbox across 180 meets one zone twice
    for low, high in _lon_intervals(west, east):
        # Zones past 180 degrees count on (61 is zone 1, 0 is zone 60): reach crosses the antimeridian too
        first = int((low - margin + 180) // 6) + 1
        last = int((min(high + margin, 540.0 - 1e-6) + 180) // 6) + 1
        for unwrapped in range(first, last + 1):
            lon0 = -180.0 + (unwrapped - 1) * 6  # its band on the bbox's side of 180 degrees
            number = (unwrapped - 1) % 60 + 1
            near = (max(low, lon0 - margin), south, min(high, lon0 + 6 + margin), north)
            if near[0] >= near[2]:
                continue
            for hemisphere, lat_lo, lat_hi in (("6", max(south, 0.0), north), ("7", south, min(north, 0.0))):
                if lat_lo >= lat_hi:
                    continue
                crs = f"EPSG:32{hemisphere}{number:02d}"
                part = (near[0], lat_lo, near[2], lat_hi)
                region = _zone_region(crs, lon0, part, (lat_lo, lat_hi), reach)
                if region is not None:
                    parts.setdefault(crs, []).append(region)
    zones = []
    for crs, regions in parts.items():  # each zone covers all its parts: its own band and its reach
        x0, y0, x1, y1 = zip(*(tuple(r.boundingbox) for r in regions), strict=True)
        zones.append(GeoBox.from_bbox((min(x0), min(y0), max(x1), max(y1)), crs, resolution=resolution,
                                      anchor=xy_(*anchor)))
    return zones
