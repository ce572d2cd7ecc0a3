"""Zone footprints in lon/lat, and lon/lat shapes in a zone's CRS, right at the poles and across 180 degrees.

A plain ``to_crs`` of a polar-stereographic chunk around the pole, of a chunk crossing 180 degrees,
or of a lon/lat box larger than a projection's domain (the globe into a UTM zone) gives a polygon
that is wrong or empty; these functions are what planning and Item matching use instead.
"""

from __future__ import annotations

import numpy as np
import shapely
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from pyproj import Transformer


def lonlat_bounds(footprint: Geometry) -> tuple[float, float, float, float]:
    """Lon/lat bounds of a projected footprint that stay right at the poles and across the antimeridian.

    A plain ``to_crs`` of a polar-stereographic chunk around the pole, or of a chunk crossing
    180 degrees, gives a polygon that misses Items it covers; searching too wide is safe instead,
    because Items are matched to patches exactly in the zone's own CRS afterwards.
    """
    crs = footprint.crs
    hull = footprint.geom if footprint.geom.geom_type == "Polygon" else footprint.geom.convex_hull
    ring = hull.exterior if hull.geom_type == "Polygon" else hull  # a point or a line: itself
    outline = shapely.segmentize(ring, max(ring.length / 256, 1e-9)) if ring.length else ring
    xs, ys = np.asarray(outline.coords).T
    to_lonlat = Transformer.from_crs(crs.proj, "EPSG:4326", always_xy=True)
    lon, lat = to_lonlat.transform(xs, ys)
    ok = np.isfinite(lon) & np.isfinite(lat)
    lon, lat = lon[ok], lat[ok]
    west, south, east, north = float(lon.min()), float(lat.min()), float(lon.max()), float(lat.max())
    if np.abs(np.diff(lon)).max(initial=0) > 180:  # the outline jumps across the antimeridian
        west, east = -180.0, 180.0
    from_lonlat = Transformer.from_crs("EPSG:4326", crs.proj, always_xy=True)
    for pole in (90.0, -90.0):
        px, py = from_lonlat.transform(0.0, pole)
        if np.isfinite(px) and np.isfinite(py) and footprint.geom.contains(shapely.Point(px, py)):
            west, east = -180.0, 180.0
            north, south = (90.0, south) if pole > 0 else (north, -90.0)
    return west, south, east, north


def lonlat_footprint(footprint: Geometry) -> shapely.Geometry:
    """A projected footprint in lon/lat: its outline, or its lon/lat box around a pole or across 180 degrees."""
    west, south, east, north = lonlat_bounds(footprint)
    if east - west >= 180:
        return shapely.box(west, south, east, north)
    return footprint.to_crs("EPSG:4326", resolution=max(footprint.geom.length / 64, 1e-9)).geom


def in_zone(shape: Geometry, zone: GeoBox) -> Geometry | None:
    """A geographic ``shape`` in ``zone``'s CRS, clipped first to the zone's own lon/lat footprint so that
    a shape larger than the projection's domain (a world box, a polar cap) keeps the part the zone
    covers; None where it does not meet the zone."""
    lonlat = shape.to_crs("EPSG:4326") if shape.crs != "EPSG:4326" else shape
    reach = lonlat_footprint(zone.extent)
    part = lonlat.geom if lonlat.geom.is_valid else lonlat.geom.buffer(0)
    part = part.intersection(reach)
    if part.is_empty:
        return None
    if part.contains(reach) or part.equals(reach):  # the whole zone: no projection of the shape needed
        return zone.extent
    try:
        local = Geometry(part, "EPSG:4326").to_crs(zone.crs, resolution=0.05, check_and_fix=True)
    except Exception:  # noqa: BLE001 - a part PROJ cannot map into this CRS does not touch it
        return None
    geom = local.geom if local.geom.is_valid else local.geom.buffer(0)
    geom = geom.intersection(zone.extent.geom)
    return None if geom.is_empty else Geometry(geom, zone.crs)


def too_big_to_project(shape: Geometry, span: float = 20.0, polar: float = 80.0) -> bool:
    """Whether a geographic shape must be clipped to a zone before it is projected: wider or taller than
    ``span`` degrees, or reaching past ``polar`` degrees of latitude. Projected whole, such a shape can
    come out finite and wrong (the globe in a UTM zone is a sliver outside it; a polar cap in a polar
    stereographic zone a fraction of the cap), so no error says so."""
    west, south, east, north = shape.boundingbox
    return east - west > span or north - south > span or north > polar or south < -polar
