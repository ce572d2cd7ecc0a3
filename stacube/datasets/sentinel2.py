"""Sentinel-2 L2A: a daily, multi-zone cube on each UTM zone's native grid, from Earth Search or
Planetary Computer.

Sources (``provider``):

``earth-search``
    Element 84's public STAC API, collection ``sentinel-2-l2a`` (or the reprocessed
    ``sentinel-2-c1-l2a``, which Element 84 recommend), assets ``blue``, ``red``, ``nir``, ... as
    Cloud-Optimized GeoTIFFs in the UTM zone of their MGRS tile.
``planetary-computer``
    Microsoft's STAC API, collection ``sentinel-2-l2a``, assets ``B02``, ``B04``, ``B08``, ...; asset
    URLs are signed at read time with ``planetary_computer.sign`` (``pip install planetary-computer``),
    never stored signed.

Each UTM zone the bbox touches is a zone of the cube, reaching as far past its meridians as MGRS
tiles do (``zones.MGRS_REACH``), fed only by the granules stored in it, so pixels are never
resampled on write and nothing a zone's own granules hold is lost at a border. Bands coarser than
``resolution`` are brought to it bilinearly, the scene classification (SCL) by nearest neighbour
(its values are classes); ``resampling`` overrides either per band.

Values: reflectance bands are uint16, nodata 0, in one convention for the whole cube, CF
``scale_factor=0.0001``, ``add_offset=-0.1`` (``xr.decode_cf(tile)`` gives reflectance). ESA's
granules from before processing baseline 04.00 store reflectance as DN * 0.0001, later ones (and
every reprocessed Collection-1 granule) as DN * 0.0001 - 0.1; each granule is brought into the
cube's convention from its own ``s2:processing_baseline`` (radiometry policy
``sentinel-2-baseline``: Planetary Computer declares no offsets, Earth Search's Collection 1 declares
them right). Earth Search's older ``sentinel-2-l2a`` holds some granules with the offset already
subtracted by Element 84 and declares -0.1 on all of them; its policy ``earth-search-l2a`` follows
``earthsearch:boa_offset_applied`` and, where that flag is known to be unreliable, the pixels (see
``stacube.radiometry``). A granule without the offset gains 1000 DN; the few saturated values that
would pass 65535 are clipped there and counted in the commit. SCL keeps its classes, nodata 0.

Reprocessed copies of one acquisition (Earth Search's ``..._0_L2A`` and ``..._1_L2A``) are read once:
the newest processing wins (the ``newest-processing`` duplicate rule); the commit lists the others.

Time: one step per day, with each granule on its local solar day (``group_by="solar_day"``), so
the granules of one pass fall on one day even where it crosses midnight UTC; granules of one day
in one zone are mosaicked first valid pixel wins, in (acquisition time, id) order. Days without
an acquisition are left out of a loaded Tile. Extend the axis with ``Cube.extend_time`` as new
days are published. ``eo:cloud_cover`` filters the granules (default: below 60 %).
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import pandas as pd

from ..errors import SpecError
from ..radiometry import S2_OFFSET, S2_SCALE
from ..sources import StacSource
from ..spec import CubeSpec, check_choices, check_resolution
from ..variables import Variable
from ..zones import MGRS_REACH, utm_zones

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
PLANETARY_COMPUTER = "https://planetarycomputer.microsoft.com/api/stac/v1"
SENTINEL2_COLLECTION = "sentinel-2-l2a"
SENTINEL2_C1_COLLECTION = "sentinel-2-c1-l2a"
NATIVE_RESOLUTION = {"B02": 10, "B03": 10, "B04": 10, "B08": 10, "B11": 20, "B12": 20, "SCL": 20}
# cube variable -> asset key, per provider
ASSET_KEYS = {
    "earth-search": {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16", "B12": "swir22",
                     "SCL": "scl"},
    "planetary-computer": {band: band for band in NATIVE_RESOLUTION},
}
PROVIDERS = {"earth-search": (EARTH_SEARCH, SENTINEL2_COLLECTION, None),
             "planetary-computer": (PLANETARY_COMPUTER, SENTINEL2_COLLECTION, "planetary-computer")}
BANDS = {band: (ASSET_KEYS["earth-search"][band], resolution) for band, resolution in NATIVE_RESOLUTION.items()}


def radiometry_policy(provider: str, collection: str) -> str:
    """Earth Search's Collection 0 (``sentinel-2-l2a``) needs its own rule; ESA's numbers elsewhere."""
    return "earth-search-l2a" if provider == "earth-search" and collection == SENTINEL2_COLLECTION \
        else "sentinel-2-baseline"


def cloud_cover_below(percent: float) -> dict[str, Any]:
    """CQL2-JSON keeping granules whose ``eo:cloud_cover`` is below ``percent``.

    Parameters
    ----------
    percent : float
        The cloud cover, in percent, that a granule must be below.

    Returns
    -------
    dict[str, Any]
        The filter, for ``StacSource.filter``.

    Raises
    ------
    SpecError
        If ``percent`` is not a finite number above 0 and at most 100.
    """
    try:
        value = float(percent)
    except (TypeError, ValueError) as err:
        raise SpecError(f"max_cloud_cover {percent!r} is not a number of percent") from err
    if isinstance(percent, bool) or not math.isfinite(value):
        raise SpecError(f"max_cloud_cover {percent!r} must be a finite number of percent (None keeps every granule)")
    if not 0 < value <= 100:  # 0 or below would keep no granule at all: every load empty, without a word
        raise SpecError(f"max_cloud_cover {percent!r} must be a percent above 0 and at most 100 (None keeps every "
                        "granule)")
    return {"op": "<", "args": [{"property": "eo:cloud_cover"}, value]}


def _day(what: str, value: Any) -> pd.Timestamp:
    """``value`` as the Timestamp pandas reads it (with a UTC offset: its date as written there, since a
    solar-day axis counts dates, not instants), or a SpecError naming it."""
    try:
        day = pd.Timestamp(value)
    except (TypeError, ValueError, OverflowError) as err:
        raise SpecError(f"{what} {value!r} is not a date pandas reads: {err}") from err
    if pd.isna(day):
        raise SpecError(f"{what} {value!r} is no date")
    return day.tz_localize(None) if day.tz is not None else day


def _mapping(what: str, value: Any) -> dict[str, Any]:
    """``value`` (None: empty) as a dict, or a SpecError naming it."""
    if value is not None and not isinstance(value, Mapping):
        raise SpecError(f"{what} {value!r} must be a mapping keyed by band, such as {{'B04': ...}}")
    return dict(value or {})


def sentinel2_l2a_spec(bbox: tuple[float, float, float, float], start: Any = "2017-01-01", end: Any = None, *,
                       max_cloud_cover: float | None = 60.0, chunks: tuple[int, int] = (1024, 1024),
                       provider: str = "earth-search", api_url: str | None = None, collection: str | None = None,
                       bands: tuple[str, ...] = tuple(NATIVE_RESOLUTION), resolution: float = 10.0,
                       assets: Mapping[str, str] | None = None, resampling: Mapping[str, str] | None = None,
                       reach: float = MGRS_REACH) -> CubeSpec:
    """A cube of Sentinel-2 L2A over ``bbox`` (lon/lat; west > east crosses 180 degrees), daily from
    ``start`` to ``end`` (default: today, UTC), one zone per UTM zone at ``resolution`` metres.

    ``provider`` is "earth-search" or "planetary-computer" (``api_url`` and ``collection`` override
    its defaults, e.g. ``collection="sentinel-2-c1-l2a"``); ``bands`` picks a subset of B02, B03,
    B04, B08, B11, B12 and SCL; ``assets`` maps bands to other asset keys; ``resampling`` sets a
    band's resampling; ``max_cloud_cover=None`` keeps every granule.

    Parameters
    ----------
    bbox : tuple[float, float, float, float]
        West, south, east, north in degrees, inside the UTM domain (80 S to 84 N).
    start : Any, optional
        The first day of the time axis (anything ``pd.Timestamp`` reads).
    end : Any, optional
        The last day; None: today (UTC).
    max_cloud_cover : float or None, optional
        Keep only granules whose ``eo:cloud_cover`` is below this percentage; None: every granule.
    chunks : tuple[int, int], optional
        Pixels (y, x) of a patch.
    provider : str, optional
        ``"earth-search"`` or ``"planetary-computer"``.
    api_url : str or None, optional
        The STAC API; None: the provider's.
    collection : str or None, optional
        The collection; None: ``sentinel-2-l2a``. Earth Search's ``sentinel-2-l2a`` is read with
        radiometry policy ``earth-search-l2a``, anything else with ``sentinel-2-baseline``.
    bands : tuple[str, ...], optional
        The variables, a subset of B02, B03, B04, B08, B11, B12 and SCL (all by default); a string is
        one band.
    resolution : float, optional
        Metres per pixel of every zone (10: the finest bands' own).
    assets : Mapping[str, str] or None, optional
        Band -> another asset key than the provider's.
    resampling : Mapping[str, str] or None, optional
        Band -> another resampling than the default (bilinear for bands coarser than ``resolution``,
        nearest otherwise and for SCL).
    reach : float, optional
        Metres each zone reaches past its UTM zone's meridians (``zones.MGRS_REACH``: as far as MGRS
        tiles do).

    Returns
    -------
    CubeSpec
        The spec named ``sentinel-2-l2a``: daily, ``group_by="solar_day"``, the newest processing of
        each acquisition read (``duplicates="newest-processing"``).

    Raises
    ------
    SpecError
        If ``provider`` is unknown; ``bands`` names no band or another band; ``start`` or ``end`` is not
        a date pandas reads; ``resolution`` is not a number above 0; ``max_cloud_cover`` is not a
        finite number; ``assets`` or ``resampling`` is not a mapping; ``reach`` is not a number of 0 or
        more; ``bbox`` is not a lon/lat extent inside the UTM domain; ``end`` is before ``start`` (an
        empty time axis); or ``chunks`` or ``resampling`` make no valid spec. (A SpecError is a
        ValueError, which the first ones were before.)
    """
    if not isinstance(provider, str) or provider not in PROVIDERS:
        raise SpecError(f"unknown Sentinel-2 provider {provider!r}; choose from {list(PROVIDERS)}")
    bands = check_choices("Sentinel-2 bands", bands, list(NATIVE_RESOLUTION))
    resolution = check_resolution(resolution)
    if isinstance(reach, bool) or not isinstance(reach, numbers.Real):
        raise SpecError(f"reach {reach!r} must be a distance in metres, 0 or more")
    start = _day("start", start)
    end = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() if end is None else _day("end", end)
    resampling = _mapping("resampling", resampling)
    default_url, default_collection, signer = PROVIDERS[provider]
    keys = {**ASSET_KEYS[provider], **_mapping("assets", assets)}
    variables = {}
    for band in bands:
        coarser = NATIVE_RESOLUTION[band] > resolution
        if band == "SCL":
            method = (resampling or {}).get(band, "nearest")
            variables[band] = Variable("uint8", nodata=0, resampling=method)
        else:
            method = (resampling or {}).get(band, "bilinear" if coarser else "nearest")
            variables[band] = Variable("uint16", nodata=0, units="1", resampling=method, scale_factor=S2_SCALE,
                                       add_offset=S2_OFFSET)
    return CubeSpec(
        name="sentinel-2-l2a",
        zones=utm_zones(bbox, resolution, reach=reach),
        chunks=chunks,
        variables=variables,
        time=pd.date_range(start.normalize(), end.normalize(), freq="D"),
        group_by="solar_day",
        source=StacSource(api_url=api_url or default_url, collection=collection or default_collection,
                          assets={band: keys[band] for band in bands},
                          filter=cloud_cover_below(max_cloud_cover) if max_cloud_cover is not None else None,
                          radiometry=radiometry_policy(provider, collection or default_collection),
                          duplicates="newest-processing", signer=signer),
    )
