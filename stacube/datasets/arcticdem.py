"""ArcticDEM v4.1 mosaics (Polar Geospatial Center), from PGC's public STAC API.

Source: ``https://stac.pgc.umn.edu/api/v1/``, collections ``arcticdem-mosaics-v4.1-2m``, ``-10m``
and ``-32m``: tiled COG mosaics in EPSG:3413 (NSIDC Sea Ice Polar Stereographic North), with the
assets ``dem`` (float32 metres, nodata -9999 in the files, NaN here) and ``datamask`` (uint8, 1 where
the DEM holds data). The cube's one zone is the mosaics' whole grid, so every cube of one resolution
shares pixel edges with the source and with every other such cube (no resampling on write); the
zone is large but nothing is stored or planned outside the ROIs asked for.

The grid is PGC's published tile index: 100 km tiles (rows 07-81, columns 01-74) counted from
(-4,000,000, -4,000,000), each file buffered by 100 m, so the tiles span x -4,000,100 to 3,400,100 m
and y -3,400,100 to 4,100,100 m ("PGC_ArcticDEM_latest_Tile_Index": Full Extent XMin -4000100,
YMin -3400100, XMax 3400100, YMax 4100100). That reaches Kodiak, Kamchatka's southern cape and
Cape Farewell. Pixel edges lie on multiples of the resolution at every resolution: the 2 m and 10 m
files start 100 m outside their tile, the 32 m files 96 m (pgcdemtools snaps them onto the 32 m
lattice), and the grid here is snapped outward to whole pixels.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from odc.geo.geobox import GeoBox

from ..errors import SpecError
from ..sources import StacSource
from ..spec import CubeSpec
from ..variables import Variable

PGC_STAC = "https://stac.pgc.umn.edu/api/v1/"
RESOLUTIONS = (2, 10, 32)
# The published tiles' extent in EPSG:3413 (metres, 100 m tile buffer included); the grid snaps it outward to
# whole pixels, so pixel edges lie at multiples of the resolution, as the files' do.
EXTENT = (-4000100.0, -3400100.0, 3400100.0, 4100100.0)


def _mapping(what: str, value: Any) -> dict[str, Any]:
    """``value`` (None: empty) as a dict, or a SpecError naming it."""
    if value is not None and not isinstance(value, Mapping):
        raise SpecError(f"{what} {value!r} must be a mapping keyed by variable ('dem', 'datamask')")
    return dict(value or {})


def arcticdem_collection(resolution: int) -> str:
    """The PGC STAC collection of the mosaics at ``resolution`` metres.

    Parameters
    ----------
    resolution : int
        2, 10 or 32 metres.

    Returns
    -------
    str
        ``arcticdem-mosaics-v4.1-<resolution>m``.

    Raises
    ------
    SpecError
        If ``resolution`` is not one of ``RESOLUTIONS`` (a SpecError is a ValueError, which this was before).
    """
    if isinstance(resolution, bool) or resolution not in RESOLUTIONS:
        raise SpecError(f"ArcticDEM mosaics come at {RESOLUTIONS} m, not {resolution!r}")
    return f"arcticdem-mosaics-v4.1-{resolution}m"


def arcticdem_grid(resolution: int = 32) -> GeoBox:
    """The mosaics' grid at ``resolution`` metres, in EPSG:3413.

    Parameters
    ----------
    resolution : int, optional
        2, 10 or 32 metres.

    Returns
    -------
    GeoBox
        ``EXTENT`` snapped outward to whole pixels, pixel edges at multiples of ``resolution``.

    Raises
    ------
    SpecError
        If ``resolution`` is not one of ``RESOLUTIONS``.
    """
    arcticdem_collection(resolution)
    return GeoBox.from_bbox(EXTENT, "EPSG:3413", resolution=resolution)


def arcticdem_spec(resolution: int = 32, *, chunks: tuple[int, int] = (1024, 1024), api_url: str = PGC_STAC,
                   collection: str | None = None, assets: dict[str, str] | None = None,
                   resampling: dict[str, str] | None = None) -> CubeSpec:
    """A spatial-only cube of ArcticDEM (``dem`` in metres, ``datamask``) on the mosaics' own grid.

    Patches of 1024 px: in the README's measurements (Performance), the cheapest cold loads for both
    small training ROIs and large areas, and less stored than 2048 px patches around scattered small ROIs.

    ``assets`` maps the variables to other asset keys, ``resampling`` sets a variable's resampling
    (both "nearest" by default: the cube is on the source's grid).

    Parameters
    ----------
    resolution : int, optional
        The mosaics' resolution: 2, 10 or 32 metres.
    chunks : tuple[int, int], optional
        Pixels (y, x) of a patch.
    api_url : str, optional
        The STAC API (``PGC_STAC``).
    collection : str or None, optional
        The collection; None: ``arcticdem_collection(resolution)``.
    assets : dict[str, str] or None, optional
        ``dem`` and ``datamask`` -> other asset keys; None: the keys of the same names.
    resampling : dict[str, str] or None, optional
        ``dem`` and ``datamask`` -> another resampling than ``"nearest"``.

    Returns
    -------
    CubeSpec
        The spec named ``arcticdem-<resolution>m``: ``dem`` (float32 metres, NaN for no data) and
        ``datamask`` (uint8, nodata 0), one zone ``epsg3413``, no time axis.

    Raises
    ------
    SpecError
        If ``resolution`` is not one of ``RESOLUTIONS`` (a SpecError is a ValueError, which this was
        before), ``assets`` or ``resampling`` is not a mapping, or ``chunks`` or ``resampling`` make no
        valid spec.
    """
    keys = {"dem": "dem", "datamask": "datamask", **_mapping("assets", assets)}
    methods = {"dem": "nearest", "datamask": "nearest", **_mapping("resampling", resampling)}
    return CubeSpec(
        name=f"arcticdem-{resolution}m",
        zones={"epsg3413": arcticdem_grid(resolution)},
        chunks=chunks,
        variables={"dem": Variable("float32", units="m", resampling=methods["dem"]),
                   "datamask": Variable("uint8", nodata=0, resampling=methods["datamask"])},
        source=StacSource(api_url=api_url, collection=collection or arcticdem_collection(resolution),
                          assets={"dem": keys["dem"], "datamask": keys["datamask"]}),
    )
