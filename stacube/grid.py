"""Zone grids cut into chunk-aligned patches; find the patches under an ROI without enumerating the grid.

The grid owns a cube's geometry: ``zone_grids`` are the spec's zones in spec order, each a ``ZoneGrid``
whose chunk arithmetic is odc-geo's ``GeoboxTiles``; finding the chunks under an ROI (``chunks_under``)
is stacube's own, right at the poles and across 180 degrees.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import shapely
from affine import Affine
from odc.geo.geobox import GeoBox, GeoboxTiles
from odc.geo.geom import BoundingBox, Geometry

from .errors import ROIError
from .lonlat import in_zone, lonlat_bounds, too_big_to_project


def _meets(footprint: Geometry, roi: Geometry) -> bool:
    """An areal ROI must overlap with area (a shared edge is not enough); a point or line must touch."""
    if not footprint.intersects(roi):
        return False
    if roi.geom.area == 0:
        return True
    return footprint.intersection(roi).area > 0


def shape_in_zone(shape: Geometry, zone: GeoBox, resolution: float | None = None) -> Geometry | None:
    """``shape`` (an ROI, an Item's footprint) in ``zone``'s CRS, or None where it does not meet the zone.

    A lon/lat shape larger than the projection's domain (the globe, a polar cap, a box across 180
    degrees) cannot be projected whole: projected, it can come out finite and wrong. Such a shape, and
    one whose projection fails, is clipped to the zone's own lon/lat footprint first (see
    ``stacube.lonlat.in_zone``). ``resolution`` (degrees) densifies a geographic shape before it is
    projected, so that a lon/lat box around a pole is a disc in a polar CRS.

    Parameters
    ----------
    shape : Geometry
        The shape, with its CRS.
    zone : GeoBox
        The zone's grid.
    resolution : float or None, optional
        Segment length (degrees) to densify a geographic shape by before projecting it; None: as it is.

    Returns
    -------
    Geometry or None
        The shape in the zone's CRS (possibly reaching past the zone), or None where it does not meet
        the zone (an areal shape must overlap it with area; a point or line must touch it).
    """
    if not shape.crs.geographic and shape.crs != zone.crs:
        around = _around_pole_or_180(shape)
        if around is not None:  # projected straight, it would come out the long way round, or miss the pole
            return shape_in_zone(around, zone, resolution)
    if shape.crs.geographic and shape.crs != zone.crs and too_big_to_project(shape):
        clipped = in_zone(shape, zone)
        return clipped if clipped is not None and _meets(zone.extent, clipped) else None
    try:
        local = shape.to_crs(zone.crs, resolution=resolution, check_and_fix=resolution is not None)
        if not np.isfinite(shapely.get_coordinates(local.geom)).all():
            raise ValueError("non-finite coordinates")
        if local.is_empty or not local.is_valid:
            local = local.buffer(0)
        if _meets(zone.extent, local):
            return local
    except Exception:  # noqa: BLE001 - a region not representable as a whole in this CRS
        pass
    if not shape.crs.geographic:
        return None
    local = in_zone(shape, zone)
    return local if local is not None and _meets(zone.extent, local) else None


def pixel_bounds(geobox: GeoBox, bbox: tuple[float, float, float, float], slack: float = 0.0
                 ) -> tuple[int, int, int, int]:
    """Rows and columns ``(r0, c0, r1, c1)`` of ``geobox``'s pixel grid that cover ``bbox`` (in its CRS), not
    clipped to it, at least one pixel (a point or a line still covers one); ``slack`` (pixels) lets an edge
    that lies that close to a pixel edge count as on it.

    Parameters
    ----------
    geobox : GeoBox
        The grid.
    bbox : tuple[float, float, float, float]
        left, bottom, right, top in the grid's CRS.
    slack : float, optional
        Pixels of tolerance at each edge.

    Returns
    -------
    tuple[int, int, int, int]
        First row, first column, row and column past the last.
    """
    x0, y0, x1, y1 = bbox
    inverse = ~geobox.transform
    cols, rows = zip(*(inverse @ (x, y) for x in (x0, x1) for y in (y0, y1)), strict=True)
    r0, c0 = math.floor(min(rows) + slack), math.floor(min(cols) + slack)
    return r0, c0, max(math.ceil(max(rows) - slack), r0 + 1), max(math.ceil(max(cols) - slack), c0 + 1)


def covering_geobox(geobox: GeoBox, bbox: tuple[float, float, float, float], slack: float = 0.0) -> GeoBox:
    """The GeoBox on ``geobox``'s pixel grid that covers ``bbox`` (``pixel_bounds``), reaching past it if need be.

    Parameters
    ----------
    geobox : GeoBox
        The grid.
    bbox : tuple[float, float, float, float]
        left, bottom, right, top in the grid's CRS.
    slack : float, optional
        As for ``pixel_bounds``.

    Returns
    -------
    GeoBox
        At least one pixel.
    """
    r0, c0, r1, c1 = pixel_bounds(geobox, bbox, slack)
    return GeoBox((r1 - r0, c1 - c0), geobox.transform * Affine.translation(c0, r0), geobox.crs)


def _around_pole_or_180(shape: Geometry) -> Geometry | None:
    """A projected shape that holds a pole or crosses 180 degrees, in lon/lat: its polar cap (a box from its
    lowest latitude to the pole), or its parts split at 180 degrees; None for any other shape."""
    west, south, east, north = lonlat_bounds(shape)
    if (west, east) != (-180.0, 180.0):
        return None
    if north == 90.0 or south == -90.0:
        return Geometry(shapely.box(-180.0, south, 180.0, north), "EPSG:4326")
    x0, y0, x1, y1 = shape.boundingbox
    parts = shape.to_crs("EPSG:4326", resolution=max(x1 - x0, y1 - y0) / 256, wrapdateline=True)
    return parts if parts.is_valid and not parts.is_empty else None


def segment_length(shape: Geometry, zone: GeoBox, pixels: int = 64) -> float:
    """How finely to densify ``shape`` (in its CRS's units) before projecting it into ``zone``: segments of
    ``pixels`` zone pixels, so that a straight edge's bulge in the other CRS stays far below a pixel
    (a 64 px segment of 10 m pixels bows by centimetres), and at most about 4,000 points a side.

    Parameters
    ----------
    shape : Geometry
        The shape, with its CRS.
    zone : GeoBox
        The zone's grid.
    pixels : int, optional
        Zone pixels per segment.

    Returns
    -------
    float
        A segment length in ``shape``'s CRS units.
    """
    metres_per_degree = 111_320.0
    pixel = abs(zone.resolution.x) * (metres_per_degree if zone.crs.geographic else 1.0)  # metres
    step = pixel * pixels / (metres_per_degree if shape.crs.geographic else 1.0)
    x0, y0, x1, y1 = shape.boundingbox
    return max(step, max(x1 - x0, y1 - y0) / 4096)


PixelSlices = tuple[slice, slice]
"""Rows and columns of a zone's (or a Tile's) pixels: a window of a 2-D array."""


@dataclass(frozen=True)
class ZoneGrid:
    """One zone of a cube: its GeoBox cut into chunks of ``chunks`` = (ny, nx) pixels.

    The chunk arithmetic (counts, a chunk's pixels and GeoBox, the chunks under a window) is odc-geo's
    ``GeoboxTiles`` (``tiles``); which chunks an ROI meets (``chunks_under``) is stacube's own.
    """

    name: str
    """The zone's name in the cube (its Zarr group)."""
    geobox: GeoBox
    """The zone's whole grid: CRS, transform and shape."""
    chunks: tuple[int, int]
    """Pixels (y, x) per chunk: the patch size."""
    tiles: GeoboxTiles = field(init=False, repr=False, compare=False)
    """odc-geo's tiling of ``geobox`` by ``chunks`` (built from them, not given)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "tiles", GeoboxTiles(self.geobox, tuple(self.chunks)))

    @property
    def chunk_counts(self) -> tuple[int, int]:
        """How many chunks the zone has along y and x (edge chunks may be partial).

        Returns
        -------
        tuple[int, int]
            Chunk rows, chunk columns.
        """
        ny, nx = self.tiles.shape.yx
        return ny, nx

    def _check(self, iy: int, ix: int) -> None:
        # GeoboxTiles reads a negative index from the end, as Python does: chunk -1 would silently be
        # the last row (and a write would land there). A chunk index is never negative.
        if iy < 0 or ix < 0:
            raise IndexError(f"chunk ({iy}, {ix}) of zone {self.name!r}: chunk indices are never negative")

    def chunk_slices(self, iy: int, ix: int) -> PixelSlices:
        """The zone pixels of chunk (iy, ix); IndexError outside the zone.

        Parameters
        ----------
        iy, ix : int
            The chunk's row and column.

        Returns
        -------
        tuple[slice, slice]
            Its rows and columns of zone pixels (fewer at the zone's far edges).

        Raises
        ------
        IndexError
            If ``iy`` or ``ix`` is negative or past the zone's last chunk.
        """
        self._check(iy, ix)
        return self.tiles.roi[iy, ix]

    def chunk_geobox(self, iy: int, ix: int) -> GeoBox:
        """The GeoBox of chunk (iy, ix); IndexError outside the zone.

        Parameters
        ----------
        iy, ix : int
            The chunk's row and column.

        Returns
        -------
        GeoBox
            The chunk's pixels' grid: a patch's GeoBox.

        Raises
        ------
        IndexError
            If ``iy`` or ``ix`` is negative or past the zone's last chunk.
        """
        self._check(iy, ix)
        return self.tiles[iy, ix]

    def local_roi(self, roi: Geometry) -> Geometry | None:
        """``roi`` in this zone's CRS, or None where it does not meet the zone (see ``shape_in_zone``).

        The ROI is densified first (``segment_length``): projected by its corners alone, a lon/lat box's
        edge would be a straight line in the zone's CRS, where a parallel is a curve, and the chunks and
        pixels under the bulge (950 m for a 3 degree box at 60 N in UTM) would be left out.

        Parameters
        ----------
        roi : Geometry
            The ROI's footprint, with its CRS.

        Returns
        -------
        Geometry or None
            The ROI in the zone's CRS, or None.
        """
        return shape_in_zone(roi, self.geobox, segment_length(roi, self.geobox))

    def covering_geobox(self, local: Geometry) -> GeoBox:
        """The GeoBox on this zone's pixel grid that covers ``local`` (a shape in the zone's CRS) whole, even
        where it reaches past the zone: the Tile of a Geometry ROI, which other zones fill where this one ends.

        Parameters
        ----------
        local : Geometry
            The shape, in this zone's CRS (``local_roi``).

        Returns
        -------
        GeoBox
            At least one pixel; edges on this zone's pixel edges.
        """
        # a thousandth of a pixel of slack: an edge on a pixel edge, projected there and back, stays on it
        return covering_geobox(self.geobox, tuple(local.boundingbox), slack=1e-3)

    def pixel_window(self, roi: Geometry, pad: int = 0) -> PixelSlices | None:
        """The window of zone pixels that covers ``roi`` (plus ``pad`` pixels), or None if disjoint.

        Parameters
        ----------
        roi : Geometry
            The ROI's footprint, with its CRS.
        pad : int, optional
            Pixels added on every side, within the zone.

        Returns
        -------
        tuple[slice, slice] or None
            Rows and columns of zone pixels (at least one pixel for a point or a line), or None.
        """
        local = self.local_roi(roi)
        return None if local is None else self._window_of(local, pad)

    def _window_of(self, local: Geometry, pad: int = 0) -> PixelSlices | None:
        """``pixel_window`` of a shape already in this zone's CRS (``local_roi``'s)."""
        overlap = self.geobox.extent.intersection(local)
        r0, c0, r1, c1 = pixel_bounds(self.geobox, tuple(overlap.boundingbox))
        r0, c0, r1, c1 = r0 - pad, c0 - pad, r1 + pad, c1 + pad
        ny, nx = self.geobox.shape
        r0, c0, r1, c1 = max(0, min(r0, ny - 1)), max(0, min(c0, nx - 1)), min(ny, r1), min(nx, c1)
        if r0 >= r1 or c0 >= c1:
            return None
        return slice(r0, r1), slice(c0, c1)

    def chunks_under(self, roi: Geometry) -> Iterator[tuple[int, int]]:
        """Chunk indices (iy, ix) whose footprint meets ``roi``; bounded by the ROI, not the zone.

        Not ``GeoboxTiles.tiles``: that one cannot project the globe or a polar cap into a zone, finds
        no chunk for a point on a pixel edge, and counts an areal ROI that only shares an edge.

        Parameters
        ----------
        roi : Geometry
            The ROI's footprint, with its CRS.

        Yields
        ------
        tuple[int, int]
            Chunk row and column, row by row; none where the ROI does not meet the zone.
        """
        local = self.local_roi(roi)
        window = None if local is None else self._window_of(local)  # not pixel_window: local_roi once
        if window is None:
            return
        for iy, ix in self.chunks_in(window):
            if _meets(self.chunk_geobox(iy, ix).extent, local):
                yield iy, ix

    def chunks_in(self, window: PixelSlices) -> Iterator[tuple[int, int]]:
        """Chunk indices (iy, ix) that hold some pixel of ``window`` (rows, columns of this zone; not empty).

        Parameters
        ----------
        window : tuple[slice, slice]
            Rows and columns of zone pixels.

        Yields
        ------
        tuple[int, int]
            Chunk row and column, row by row.
        """
        rows, cols = window
        ys, xs = self.tiles.range_from_bbox(BoundingBox(cols.start, rows.start, cols.stop, rows.stop))  # pixel space
        for iy in ys:
            for ix in xs:
                yield iy, ix

    def cells_under_boxes(self, bounds: np.ndarray) -> Iterator[tuple[int, int, int]]:
        """(row of ``bounds``, iy, ix) for every chunk under each box of ``bounds`` (n x 4: minx, miny, maxx,
        maxy in this zone's CRS; non-finite rows are skipped): vectorised over hundreds of thousands of boxes.

        Parameters
        ----------
        bounds : numpy.ndarray
            One box per row: minx, miny, maxx, maxy in this zone's CRS.

        Yields
        ------
        tuple[int, int, int]
            The box's row in ``bounds``, and a chunk row and column under it; boxes outside the zone
            yield nothing.
        """
        inverse = ~self.geobox.transform
        cols_a, rows_a = inverse * (bounds[:, 0], bounds[:, 1])
        cols_b, rows_b = inverse * (bounds[:, 2], bounds[:, 3])
        r0, r1 = np.minimum(rows_a, rows_b), np.maximum(rows_a, rows_b)
        c0, c1 = np.minimum(cols_a, cols_b), np.maximum(cols_a, cols_b)
        ny, nx = self.geobox.shape
        inside = np.isfinite(r0) & (r1 > 0) & (r0 < ny) & (c1 > 0) & (c0 < nx)
        cy, cx = self.chunks
        counts_y, counts_x = self.chunk_counts
        for i in np.flatnonzero(inside):
            rows = range(max(0, math.floor(r0[i] / cy)), min(counts_y - 1, math.ceil(r1[i] / cy) - 1) + 1)
            columns = range(max(0, math.floor(c0[i] / cx)), min(counts_x - 1, math.ceil(c1[i] / cx) - 1) + 1)
            for iy in rows:
                for ix in columns:
                    yield int(i), iy, ix


class Zoned(Protocol):
    """What ``zone_grids`` reads of a cube's spec (``CubeSpec`` is one; the spec sits above the grid)."""

    @property
    def zones(self) -> Mapping[str, GeoBox]: ...

    @property
    def chunks(self) -> tuple[int, int]: ...


def zone_grids(spec: Zoned) -> list[ZoneGrid]:
    """The cube's zones as grids, in spec order. The order matters: a Geometry ROI's Tile is on the first
    zone it meets (``Region.tile_geobox``), and zones fill a Tile in it (``read.zones_met``). Never sort them.

    Parameters
    ----------
    spec : Zoned
        The cube's spec (its zones and chunk shape).

    Returns
    -------
    list[ZoneGrid]
        One grid per zone, in spec order.
    """
    return [ZoneGrid(name, geobox, spec.chunks) for name, geobox in spec.zones.items()]


def zone_grid(spec: Zoned, zone: str) -> ZoneGrid:
    """One zone of the cube as a grid (KeyError for a zone the spec does not have).

    Parameters
    ----------
    spec : Zoned
        The cube's spec.
    zone : str
        The zone's name.

    Returns
    -------
    ZoneGrid
        The zone's grid.

    Raises
    ------
    KeyError
        If the spec has no zone ``zone``.
    """
    return ZoneGrid(zone, spec.zones[zone], spec.chunks)


@dataclass(frozen=True, slots=True)
class PatchIndex:
    """The unit of download and write: one chunk of one zone at one time step, and the Items feeding it."""

    zone: str
    """The zone the patch lies in."""
    iy: int
    """Its chunk row in the zone."""
    ix: int
    """Its chunk column in the zone."""
    geobox: GeoBox
    """Its pixels' grid: the chunk's GeoBox."""
    time_index: int | None = None
    """Its step on the time axis; None in a cube without one."""
    time_range: tuple[pd.Timestamp, pd.Timestamp] | None = None
    """Its step's own span, [start, end) (``timeaxis.HalfOpenInterval``); None without a time axis."""
    items: tuple = field(default=(), compare=False)
    """The Items that feed it, in the order they are mosaicked (``plan.attach_items``)."""
    superseded: tuple = field(default=(), compare=False)
    """Items of the same acquisitions that the source's duplicate rule left out (named in the commit)."""

    @property
    def cell(self) -> tuple[int, ...]:
        """Where the patch sits in a zone's filled record (and its variables' chunk grid)."""
        return (self.time_index, self.iy, self.ix) if self.time_index is not None else (self.iy, self.ix)

    @property
    def id(self) -> str:
        """The patch's stable id (``patch_id``): what commit metadata, reports and ``Cube.state`` name it by."""
        return patch_id(self.zone, self.iy, self.ix, self.time_range[0] if self.time_range else None)

    def with_items(self, items: tuple, superseded: tuple = ()) -> PatchIndex:
        """The same patch fed by ``items`` (a PatchIndex is frozen: planning attaches Items to a copy).

        Parameters
        ----------
        items : tuple
            The Items that feed it, in the order they are mosaicked.
        superseded : tuple, optional
            Items the source's duplicate rule left out.

        Returns
        -------
        PatchIndex
            A new patch, equal to this one.
        """
        return PatchIndex(self.zone, self.iy, self.ix, self.geobox, self.time_index, self.time_range, tuple(items),
                          tuple(superseded))

    def __dask_tokenize__(self) -> tuple:
        """What tells two patches apart, for Dask's task keys: walking the GeoBox and Items costs ms each."""
        return ("stacube.PatchIndex", self.id, tuple(getattr(item, "id", item) for item in self.items))


def by_zone(patches: Iterable[PatchIndex]) -> dict[str, list[PatchIndex]]:
    """Patches grouped by zone, in the order given.

    Parameters
    ----------
    patches : Iterable[PatchIndex]
        The patches.

    Returns
    -------
    dict[str, list[PatchIndex]]
        Zone name -> its patches, zones in the order first met.
    """
    groups: dict[str, list[PatchIndex]] = {}
    for patch in patches:
        groups.setdefault(patch.zone, []).append(patch)
    return groups


def cell_selection(patches: Sequence[PatchIndex]) -> tuple[np.ndarray, ...]:
    """The patches' cells as a zarr coordinate selection (one array per dimension).

    Parameters
    ----------
    patches : Sequence[PatchIndex]
        Patches of one zone, all with a time step or all without.

    Returns
    -------
    tuple[numpy.ndarray, ...]
        (steps,) rows and columns, one entry per patch.
    """
    return tuple(np.array([p.cell for p in patches]).T)


def patch_id(zone: str, iy: int, ix: int, time: pd.Timestamp | None = None) -> str:
    """Stable id: zone, time step label (if any) and chunk row/column; survives growth of the time axis.

    Parameters
    ----------
    zone : str
        The zone's name.
    iy, ix : int
        The chunk's row and column.
    time : pandas.Timestamp or None, optional
        The step's start; None in a cube without time.

    Returns
    -------
    str
        ``<zone>/y<iy>x<ix>``, or ``<zone>/<YYYYmmddTHHMMSS>/y<iy>x<ix>`` with a time.
    """
    if time is None:
        return f"{zone}/y{iy}x{ix}"
    return f"{zone}/{pd.Timestamp(time):%Y%m%dT%H%M%S}/y{iy}x{ix}"


def parse_patch_id(patch: str) -> tuple[str, pd.Timestamp | None, int, int]:
    """(zone, time or None, chunk row, chunk column) of an id made by ``patch_id``.

    Parameters
    ----------
    patch : str
        A patch id.

    Returns
    -------
    tuple[str, pandas.Timestamp or None, int, int]
        Zone, step start (None without time), chunk row, chunk column.

    Raises
    ------
    ValueError
        If ``patch`` is not an id ``patch_id`` makes (its cell or its time does not parse).
    """
    parts = patch.split("/")
    cell = parts[-1]
    iy, ix = (int(v) for v in cell[1:].split("x"))
    when = pd.Timestamp(parts[1]) if len(parts) == 3 else None
    return parts[0], when, iy, ix


def source_tile_name(properties: Mapping[str, Any], item_id: str) -> str:
    """The source tile an Item is: ``32TPS`` from ``grid:code: MGRS-32TPS`` or ``s2:mgrs_tile``, else its id.

    What failures and logs name beside a patch, so that a user can tell which granule to look at.

    Parameters
    ----------
    properties : Mapping[str, Any]
        The Item's properties.
    item_id : str
        The Item's id.

    Returns
    -------
    str
        The MGRS tile, or ``item_id``.
    """
    code = str(properties.get("grid:code") or "")
    if code.startswith("MGRS-"):
        return code[len("MGRS-"):]
    return str(properties.get("s2:mgrs_tile") or item_id)


def _not_finite(values: Any) -> list[float]:
    """The values among ``values`` that are NaN or infinite, each once (as they print: nan, inf, -inf)."""
    values = np.asarray(values, dtype="float64").ravel()
    return sorted({repr(float(v)): float(v) for v in values[~np.isfinite(values)]}.values(), key=repr)


def roi_geometry(roi: GeoBox | Geometry) -> Geometry:
    """The ROI's footprint, with its CRS; anything without a CRS, or with coordinates that are not
    finite numbers (NaN, inf), is refused with a clear error.

    Parameters
    ----------
    roi : GeoBox or Geometry
        The ROI.

    Returns
    -------
    Geometry
        A GeoBox's extent, or the Geometry itself.

    Raises
    ------
    ROIError
        If ``roi`` is no odc-geo GeoBox or Geometry, has no CRS, has a transform or coordinates that
        are not finite numbers, or is an empty geometry.
    """
    if isinstance(roi, GeoBox):
        if roi.crs is None:
            raise ROIError(f"the ROI GeoBox {roi!r} has no CRS; build it with a crs=... argument")
        bad = _not_finite(tuple(roi.transform)[:6])
        if bad:
            raise ROIError(f"the ROI GeoBox's transform {tuple(roi.transform)[:6]} in {roi.crs} holds {bad}, not "
                           "finite numbers; build the GeoBox from finite bounds and resolution")
        return roi.extent
    if isinstance(roi, Geometry):
        if roi.crs is None:
            raise ROIError(f"the ROI geometry {roi.wkt[:80]}... has no CRS; pass crs=... to odc.geo.geom.Geometry")
        bad = _not_finite(shapely.get_coordinates(roi.geom))
        if bad:
            raise ROIError(f"the ROI geometry {roi.wkt[:80]} in {roi.crs} has coordinates {bad}, not finite "
                           "numbers; give finite bounds")
        if roi.is_empty:
            raise ROIError("the ROI geometry is empty")
        return roi
    raise ROIError(f"the ROI must be an odc-geo GeoBox or Geometry, got {type(roi).__name__}: {roi!r}")
