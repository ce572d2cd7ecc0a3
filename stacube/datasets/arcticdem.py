"""ArcticDEM v4.1 mosaics (Polar Geospatial Center), from PGC's public STAC API.

Source: ``https://stac.pgc.umn.edu/api/v1/``, collections ``arcticdem-mosaics-v4.1-2m``, ``-10m``
and ``-32m``: tiled COG mosaics in EPSG:3413 (NSIDC Sea Ice Polar Stereographic North), with the
assets ``dem`` (float32 metres, nodata -9999 in the files, NaN here) and ``datamask`` (uint8, 1 where
the DEM holds data). The cube's one zone is the mosaics' whole grid, so every cube of one resolution
shares pixel edges with the source and with every other such cube (no resampling on write); the
zone is large but nothing is stored or planned outside the ROIs asked for.
"""

from __future__ import annotations

from odc.geo.geobox import GeoBox

from ..spec import CubeSpec, StacSource, Variable

PGC_STAC = "https://stac.pgc.umn.edu/api/v1/"
RESOLUTIONS = (2, 10, 32)
# The mosaics' extent in EPSG:3413 (metres); the grid snaps it outward to whole pixels, so pixel edges lie
# at multiples of the resolution, shared by every resolution that divides another.
EXTENT = (-3314693.24, -3314693.24, 3314693.24, 3314693.24)


def arcticdem_collection(resolution: int) -> str:
    """The PGC STAC collection of the mosaics at ``resolution`` metres."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"ArcticDEM mosaics come at {RESOLUTIONS} m, not {resolution!r}")
    return f"arcticdem-mosaics-v4.1-{resolution}m"


def arcticdem_grid(resolution: int = 32) -> GeoBox:
    """The mosaics' grid at ``resolution`` metres, in EPSG:3413."""
    arcticdem_collection(resolution)
    return GeoBox.from_bbox(EXTENT, "EPSG:3413", resolution=resolution)


def arcticdem_spec(resolution: int = 32, *, chunks: tuple[int, int] = (2048, 2048), api_url: str = PGC_STAC,
                   collection: str | None = None) -> CubeSpec:
    """A spatial-only cube of ArcticDEM (``dem`` in metres, ``datamask``) on the mosaics' own grid."""
    return CubeSpec(
        name=f"arcticdem-{resolution}m",
        zones={"epsg3413": arcticdem_grid(resolution)},
        chunks=chunks,
        variables={"dem": Variable("float32", units="m"), "datamask": Variable("uint8", nodata=0)},
        source=StacSource(api_url=api_url, collection=collection or arcticdem_collection(resolution),
                          assets={"dem": "dem", "datamask": "datamask"}),
    )
