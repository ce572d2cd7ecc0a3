"""TCTrend: Landsat Tasseled Cap trends 2000-2019 (Nitze et al., AWI), on one global EPSG:4326 grid.

Source: the Earth Engine ImageCollection ``users/ingmarnitze/TCTrend_SR_2000-2019_TCVIS``, the
layer of the "HotSpot TCVIS" viewer: 10 x 5 degree tiles exported at a 30 m scale without a CRS or
transform (initze/GEE_HotSpot, ``Export.image.toAsset({scale: 30, region: ...})``), hence on Earth
Engine's EPSG:4326 lattice: pixels of 30 m at the equator (1/3710.65 degree) whose edges are whole
multiples of the pixel size from (0, 0), the origin of the default projection that ``scale`` scales
(``Image.clipToBoundsAndScale``). Bands
``TCB_slope``, ``TCG_slope`` and ``TCW_slope`` hold the July-August trends of Tasseled Cap
brightness, greenness and wetness as 8-bit values: ``value / 255 * 0.24 - 0.12`` is the change per
decade in reflectance units, clipped to +-0.12. The cube declares that as its variables' convention
(CF ``scale_factor`` 0.24 / 255, ``add_offset`` -0.12; the images hold it already, radiometry
"as-cube"), so ``xr.decode_cf(tile)`` or ``tctrend_slopes`` gives the trends.

The cube is spatial-only (one trend for the whole period). Variables are uint8 with nodata 0: Earth
Engine sends masked pixels as 0, and the source's own scaling clips the steepest declines (below
-0.119 per decade) to 0 too, so 0 is "no usable trend" either way.
"""

from __future__ import annotations

import math

import numpy as np
import xarray as xr
from affine import Affine
from odc.geo.geobox import GeoBox

from ..sources import EARTH_ENGINE_URL, EarthEngineSource
from ..sources.earthengine.backend import nearest_only
from ..spec import CubeSpec
from ..variables import Variable

TCTREND_COLLECTION = "users/ingmarnitze/TCTrend_SR_2000-2019_TCVIS"
BANDS = ("TCB_slope", "TCG_slope", "TCW_slope")
# Earth Engine's degrees for a 30 m scale: 30 m over the length of a degree on the WGS84 equator.
PIXEL_DEGREES = 30.0 / (2 * math.pi * 6378137.0 / 360.0)
SLOPE_RANGE = 0.12  # the 8-bit values span -0.12 to +0.12 per decade


def tctrend_grid() -> GeoBox:
    """The global grid: EPSG:4326 at Earth Engine's 30 m scale on its lattice anchored at (0, 0), the whole
    pixels inside +-180, +-90 (180 and 90 degrees are not whole pixels: a grid from (-180, 90) would sit
    0.06 px west and 0.47 px north of the tiles' pixels).

    Returns
    -------
    GeoBox
        The grid, symmetric about (0, 0).
    """
    columns, rows = math.floor(180.0 / PIXEL_DEGREES), math.floor(90.0 / PIXEL_DEGREES)
    return GeoBox((2 * rows, 2 * columns), Affine(PIXEL_DEGREES, 0.0, -columns * PIXEL_DEGREES, 0.0, -PIXEL_DEGREES,
                                                  rows * PIXEL_DEGREES), "EPSG:4326")


def tctrend_spec(*, project: str | None = None, chunks: tuple[int, int] = (2048, 2048),
                 api_url: str = EARTH_ENGINE_URL, collection: str = TCTREND_COLLECTION,
                 resampling: str = "nearest") -> CubeSpec:
    """A spatial-only cube of the three trend bands on the global grid (variables ``tcb``, ``tcg``, ``tcw``).

    The grid is global; only the patches under the ROIs you load are ever fetched.

    Parameters
    ----------
    project : str or None, optional
        The Google Cloud project Earth Engine bills (``EarthEngineSource.project``).
    chunks : tuple[int, int], optional
        Pixels (y, x) of a patch.
    api_url : str, optional
        Earth Engine's endpoint, or a test emulator's.
    collection : str, optional
        The ImageCollection (``TCTREND_COLLECTION``).
    resampling : str, optional
        Every variable's resampling: ``"nearest"`` only, what Earth Engine's pixel requests do (they pick
        source pixels by position; another value is a SpecError rather than ignored).

    Returns
    -------
    CubeSpec
        The spec named ``tctrend``: uint8, nodata 0, in the images' convention (radiometry
        ``"as-cube"``), no time axis, the source's publication lag 0.

    Raises
    ------
    SpecError
        If ``chunks`` or ``resampling`` make no valid spec.
    """
    nearest_only("every variable", resampling)
    return CubeSpec(
        name="tctrend",
        zones=[tctrend_grid()],
        chunks=chunks,
        variables={band.split("_")[0].lower(): Variable("uint8", nodata=0, units="reflectance per decade",
                                                        resampling=resampling,
                                                        scale_factor=2 * SLOPE_RANGE / 255, add_offset=-SLOPE_RANGE)
                   for band in BANDS},
        time=None,
        source=EarthEngineSource(collection, {band.split("_")[0].lower(): band for band in BANDS}, project=project,
                                 api_url=api_url, publication_lag="0D", radiometry="as-cube"),
    )


def tctrend_slopes(tile: xr.Dataset) -> xr.Dataset:
    """The trends of a loaded Tile as float32 change per decade, NaN where the cube holds no data, by the
    convention the Tile carries (a cube made before conventions were declared: the source's, stated above).

    Parameters
    ----------
    tile : xarray.Dataset
        A Tile loaded from a TCTrend cube (any of ``tcb``, ``tcg``, ``tcw``; others are left out).

    Returns
    -------
    xarray.Dataset
        The variables of ``tile`` among ``tcb``, ``tcg``, ``tcw``, in reflectance units per decade,
        with ``tile``'s attributes.
    """
    out = xr.Dataset(attrs=tile.attrs)
    for name in ("tcb", "tcg", "tcw"):
        if name in tile:
            raw = tile[name]
            scale = float(raw.attrs.get("scale_factor", 2 * SLOPE_RANGE / 255))
            offset = float(raw.attrs.get("add_offset", -SLOPE_RANGE))
            slope = (raw.astype("float32") * np.float32(scale) + np.float32(offset)).where(raw != raw.attrs.get(
                "nodata", 0))
            out[name] = slope.assign_attrs(units="reflectance per decade")
    return out
