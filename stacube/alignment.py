"""Whether a source's pixels sit on a zone's pixel grid, and grids anchored where the source's are.

A zone keeps its data on its own grid. Where an Item's raster shares the zone's CRS but its pixel
edges fall between the zone's (Landsat's 30 m pixels sit 15 m off multiples of 30; most grids not
made by ``utm_zones`` are anchored somewhere else), every pixel is resampled by a fraction of a
pixel on write. That is never silent: a run warns once and lists those Items in its commit. Build
zones on the source's own grid instead with ``anchor_of`` (``utm_zones(..., anchor=...)``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence

import pystac
from affine import Affine
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox

from .errors import ItemError

log = logging.getLogger(__name__)
TOLERANCE = 1e-3  # of a pixel


def asset_grid(item: pystac.Item, key: str) -> tuple[CRS, Affine] | None:
    """The CRS and transform of an Item's asset from its ``proj:`` fields (the asset's, else the Item's)."""
    asset = item.assets.get(key)
    if asset is None:
        return None
    fields = {**item.properties, **asset.extra_fields}
    transform = fields.get("proj:transform")
    crs = declared_crs(fields)
    if not transform or len(transform) < 6 or crs is None:
        return None
    try:
        return crs, Affine(*[float(v) for v in transform[:6]])
    except Exception:  # noqa: BLE001 - a malformed transform: nothing to compare
        return None


def declared_crs(fields: dict) -> CRS | None:
    """The CRS that STAC ``proj:`` fields declare, in any of the extension's forms (``proj:code``,
    ``proj:epsg``, ``proj:wkt2``, ``proj:projjson``): a CRS without an EPSG code (an Earth Engine
    sinusoidal grid) comes as WKT. None when nothing is declared or PROJ cannot read it."""
    code = fields.get("proj:code") or (f"EPSG:{fields['proj:epsg']}" if fields.get("proj:epsg") else None)
    for value in (code, fields.get("proj:wkt2"), fields.get("proj:projjson")):
        if value:
            try:
                return CRS(value)
            except Exception:  # noqa: BLE001 - an unknown code: try the next form
                continue
    return None


def _whole(value: float) -> bool:
    return abs(value - round(value)) < TOLERANCE


def on_grid(zone: GeoBox, transform: Affine) -> bool:
    """Whether a raster's pixel edges and ``zone``'s coincide wherever the coarser of the two has one
    (same CRS assumed): axis-aligned, one pixel size a whole multiple of the other, and the origins a
    whole number of the finer pixels apart. A 20 m band on a 10 m zone is on its grid; so is a 10 m
    band read onto a 20 m zone (it is aggregated, not shifted)."""
    z = zone.transform
    if transform.b or transform.d:
        return False
    for source, target, offset in ((transform.a, z.a, transform.c - z.c), (transform.e, z.e, transform.f - z.f)):
        fine = min(abs(source), abs(target))
        if not (_whole(abs(source) / fine) and _whole(abs(target) / fine) and _whole(offset / fine)):
            return False
    return True


def misaligned(zones: Mapping[str, GeoBox], assets: Iterable[str], patches: Sequence) -> list[str]:
    """Items (as "id:asset") stored in a zone's CRS but off that zone's pixel grid, among ``patches``."""
    found: dict[str, None] = {}
    seen: set[tuple[str, str, str]] = set()
    for patch in patches:
        zone = zones[patch.zone]
        for item in patch.items:
            for key in assets:
                if (patch.zone, item.id, key) in seen:
                    continue
                seen.add((patch.zone, item.id, key))
                grid = asset_grid(item, key)
                if grid is not None and grid[0] == zone.crs and not on_grid(zone, grid[1]):
                    found[f"{item.id}:{key}"] = None
    return list(found)


def warn_misaligned(found: list[str]) -> None:
    """One warning per run for Items whose pixels the run resamples onto a zone's grid."""
    if found:
        shown = ", ".join(found[:5]) + (f" and {len(found) - 5} more" if len(found) > 5 else "")
        log.warning("%d asset(s) share their zone's CRS but not its pixel grid, and are resampled onto it by a "
                    "fraction of a pixel: %s. Anchor the zone on the source's grid (stacube.alignment.anchor_of) "
                    "to store them as they are", len(found), shown)


def grid_anchor(transform: Affine) -> tuple[float, float]:
    """Where a grid puts its pixel edges, as odc-geo's anchor: the fraction of a pixel its origin lies
    past a multiple of its resolution, x and y (Landsat: (0.5, 0.5); Sentinel-2: (0, 0))."""

    def fraction(origin: float, size: float) -> float:
        value = (origin / abs(size)) % 1.0
        return 0.0 if math.isclose(value, 1.0, abs_tol=TOLERANCE) or value < TOLERANCE else round(value, 6)

    return fraction(transform.c, transform.a), fraction(transform.f, transform.e)


def anchor_of(item: pystac.Item, key: str) -> tuple[float, float]:
    """Where ``item``'s asset ``key`` puts its pixel edges (``grid_anchor`` of its ``proj:transform``)."""
    grid = asset_grid(item, key)
    if grid is None:
        raise ItemError(f"Item {item.id!r} asset {key!r} has no proj:transform and CRS to anchor a grid on")
    return grid_anchor(grid[1])
