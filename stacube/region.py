"""An ROI checked once: what the user gave (a GeoBox or a Geometry) and its footprint, carried together.

``Region.of(roi)`` is where an ROI is checked (a CRS, finite coordinates, not empty: ``grid.roi_geometry``);
planning, the run's record and the Tile's grid then read the one value instead of an (roi, geometry) pair.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import shapely
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from .errors import ROIError
from .grid import ZoneGrid, roi_geometry, segment_length
from .lonlat import lonlat_bounds, lonlat_footprint


@dataclass(frozen=True, eq=False)
class Region:
    """An ROI and its footprint. Build it with ``Region.of`` (which checks the ROI), not directly."""

    roi: GeoBox | Geometry
    """The ROI as given: a GeoBox (then also the Tile's grid) or a Geometry."""
    geometry: Geometry
    """Its footprint, with its CRS: finite and not empty."""

    @classmethod
    def of(cls, roi: Region | GeoBox | Geometry) -> Region:
        """``roi`` checked once, so that everything after reads one value (``grid.roi_geometry``);
        a Region is returned as it is.

        Parameters
        ----------
        roi : Region, GeoBox or Geometry
            The ROI, with its CRS.

        Returns
        -------
        Region
            ``roi`` with its footprint.

        Raises
        ------
        ROIError
            If ``roi`` is no odc-geo GeoBox or Geometry, has no CRS, has coordinates (or a transform)
            that are not finite numbers, or is an empty geometry.
        """
        if isinstance(roi, Region):
            return roi
        return cls(roi, roi_geometry(roi))

    @property
    def geobox(self) -> GeoBox | None:
        """The ROI when it is a GeoBox, else None."""
        return self.roi if isinstance(self.roi, GeoBox) else None

    @cached_property
    def lonlat_bounds(self) -> tuple[float, float, float, float]:
        """The footprint's lon/lat bounds, right at the poles and across 180 degrees (``lonlat.lonlat_bounds``)."""
        return lonlat_bounds(self.geometry)

    @cached_property
    def lonlat_footprint(self) -> shapely.Geometry:
        """The footprint in lon/lat (``lonlat.lonlat_footprint``)."""
        return lonlat_footprint(self.geometry)

    def record(self, max_points: int = 256) -> dict[str, Any]:
        """The ROI as lon/lat GeoJSON to keep in a commit's metadata (what ``Cube.rois`` and the state picture
        show): its outline to a micro-degree, or its convex hull when the outline is long.

        Parameters
        ----------
        max_points : int, optional
            The most coordinates the outline may have before its convex hull is kept instead.

        Returns
        -------
        dict[str, Any]
            A GeoJSON geometry in EPSG:4326.
        """
        shape = self.lonlat_footprint
        if shapely.get_num_coordinates(shape) > max_points:
            shape = shape.convex_hull
        return json.loads(shapely.to_geojson(shapely.set_precision(shape, 1e-6)))

    def check_inside(self, outer: Region, what: str = "area") -> None:
        """Refuse this region where it reaches past ``outer`` (by more than a pixel of an ``outer`` GeoBox):
        an ``area`` that is not inside its ROI would fill patches the Tile never shows and leave the
        ROI's own patches unfilled, with no warning.

        Parameters
        ----------
        outer : Region
            The ROI it must lie inside.
        what : str, optional
            Its name in the error.

        Raises
        ------
        ROIError
            If it reaches past ``outer``; before anything is planned.
        """
        shape = outer.geometry
        slack = (max(abs(outer.geobox.resolution.x), abs(outer.geobox.resolution.y)) if outer.geobox is not None
                 else 1e-6 * max(shape.boundingbox.span_x, shape.boundingbox.span_y))
        try:
            step = segment_length(self.geometry, outer.geobox) if outer.geobox is not None else "auto"
            inner = self.geometry.to_crs(shape.crs, resolution=step)
            outside = inner.geom.difference(shape.geom.buffer(slack))
        except Exception:  # noqa: BLE001 - a shape that cannot be projected into the ROI's CRS: not judged here
            return
        if not outside.is_empty and outside.area > 0:
            raise ROIError(f"the {what} (bounds {tuple(round(v, 6) for v in self.geometry.boundingbox)} in "
                           f"{self.geometry.crs}) reaches past the ROI (bounds "
                           f"{tuple(round(v, 6) for v in shape.boundingbox)} in {shape.crs}): it must lie inside it")

    def tile_geobox(self, grids: Sequence[ZoneGrid]) -> GeoBox:
        """The Tile's grid: the ROI GeoBox itself, or for a Geometry the window on the pixel grid of the first
        of ``grids`` (a cube's ``zone_grids``, in spec order) that it meets, covering the whole ROI (where it
        reaches past that zone, the other zones fill the Tile). ROIError where it meets none.

        Parameters
        ----------
        grids : Sequence[ZoneGrid]
            The cube's zones, in spec order.

        Returns
        -------
        GeoBox
            The grid a load's Tile is on.

        Raises
        ------
        ROIError
            If the ROI is a Geometry that meets none of ``grids``.
        """
        if self.geobox is not None:
            return self.geobox
        for grid in grids:
            local = grid.local_roi(self.geometry)
            if local is not None:
                return grid.covering_geobox(local)
        raise ROIError(f"the ROI (bounds {tuple(round(v, 3) for v in self.geometry.boundingbox)} in "
                       f"{self.geometry.crs}) meets none of the zones {[grid.name for grid in grids]}")
