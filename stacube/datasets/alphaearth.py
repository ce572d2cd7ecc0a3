"""Google's AlphaEarth annual satellite embeddings (Earth Engine), 64 float32 bands a year, per UTM zone.

Source: the Earth Engine ImageCollection ``GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL`` (bands A00-A63,
one image per calendar year and UTM tile, 10 m). The collection is open-ended: 2017-2024 were
published in 2025 and 2025 from 2026-01-29, zone by zone (earthengine-catalog,
GOOGLE_SATELLITE_EMBEDDING_V1_ANNUAL.jsonnet); pass ``years=`` for later ones. A year not yet
published where a patch lies comes back empty and is fetched again on a later run once the source's
publication lag has passed. The cube keeps each UTM zone on its own grid, so pixels are never
resampled on write.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence

import pandas as pd

from ..errors import SpecError
from ..sources import EARTH_ENGINE_URL, EarthEngineSource
from ..sources.earthengine.backend import nearest_only
from ..spec import CubeSpec, check_choices, check_resolution
from ..variables import Variable
from ..zones import utm_zones

ALPHAEARTH_COLLECTION = "GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL"
BANDS = [f"A{i:02d}" for i in range(64)]
YEARS = range(2017, 2026)


def _consecutive_years(years: Sequence[int]) -> list[int]:
    """``years`` as a list of ints, checked to be consecutive calendar years (at least one)."""
    try:
        given = list(years)
        found = [operator.index(year) for year in given if not isinstance(year, bool)]
    except TypeError:  # not a sequence, or a year that is no whole number
        given, found = [None], []
    if not found or len(found) != len(given) or found != list(range(found[0], found[0] + len(found))):
        raise SpecError(f"years {years!r} must be consecutive calendar years (whole numbers), "
                        "such as range(2017, 2026)")
    return found


def alphaearth_spec(bbox: tuple[float, float, float, float], *, project: str | None = None,
                    years: Sequence[int] = YEARS, resolution: float = 10.0, chunks: tuple[int, int] = (512, 512),
                    api_url: str = EARTH_ENGINE_URL, collection: str = ALPHAEARTH_COLLECTION,
                    bands: Sequence[str] = BANDS, resampling: str = "nearest") -> CubeSpec:
    """A cube of the embeddings over ``bbox`` (lon/lat; west > east crosses 180 degrees), one zone per UTM zone.

    Variables are the bands in lower case (``a00`` ... ``a63``, or the subset ``bands``), float32 with
    NaN where no image is, read with ``resampling``; the time axis has one step per year (``YS``).

    Parameters
    ----------
    bbox : tuple[float, float, float, float]
        West, south, east, north in degrees, inside the UTM domain (80 S to 84 N).
    project : str or None, optional
        The Google Cloud project Earth Engine bills (``EarthEngineSource.project``).
    years : Sequence[int], optional
        Consecutive calendar years, 2017 to 2025 by default; later ones as they are published.
    resolution : float, optional
        Metres per pixel of every zone (10: the images' own).
    chunks : tuple[int, int], optional
        Pixels (y, x) of a patch.
    api_url : str, optional
        Earth Engine's endpoint, or a test emulator's.
    collection : str, optional
        The ImageCollection (``ALPHAEARTH_COLLECTION``).
    bands : Sequence[str], optional
        Which of ``A00`` .. ``A63`` to hold (all by default), named as Earth Engine names them; a string
        is one band.
    resampling : str, optional
        Every variable's resampling: ``"nearest"`` only, what Earth Engine's pixel requests do (they pick
        source pixels by position; another value is a SpecError rather than ignored).

    Returns
    -------
    CubeSpec
        The spec named ``alphaearth``, its source published with a lag of 365 days.

    Raises
    ------
    SpecError
        If ``bands`` names no band or one that is not one of ``A00`` .. ``A63``; ``years`` is not whole
        numbers, empty or not consecutive; ``resolution`` is not a number above 0; ``bbox`` is not a
        lon/lat extent inside the UTM domain; or ``chunks`` or ``resampling`` make no valid spec.
        (A SpecError is a ValueError, which these were before.)
    """
    bands = check_choices("AlphaEarth bands", bands, BANDS, "A00 .. A63")
    years = _consecutive_years(years)
    resolution = check_resolution(resolution)
    nearest_only("every variable", resampling)
    return CubeSpec(
        name="alphaearth",
        zones=utm_zones(bbox, resolution),
        chunks=chunks,
        variables={band.lower(): Variable("float32", resampling=resampling) for band in bands},
        time=pd.date_range(f"{years[0]}-01-01", periods=len(years), freq="YS"),
        source=EarthEngineSource(collection, {band.lower(): band for band in bands}, project=project,
                                 api_url=api_url, publication_lag="365D"),
    )
