"""Sentinel-2 L2A from Earth Search: a daily, multi-zone cube on each UTM zone's native 10 m grid.

Source: the public STAC API at Earth Search (Element 84), collection ``sentinel-2-l2a``, whose
granules are Cloud-Optimized GeoTIFFs in the UTM zone of their MGRS tile. Each UTM zone the bbox
touches is a zone of the cube, fed only by the granules stored in it, so 10 m bands are never
resampled on write. 20 m bands (B11, B12) are brought to 10 m bilinearly; the scene classification
(SCL) by nearest neighbour, since its values are classes. Pixel values stay the file's digital
numbers (uint16; reflectance = DN * 0.0001 - 0.1 from processing baseline 04.00, as each asset's
``raster:bands`` says), nodata 0.

Time: one step per day, with each granule on its local solar day (``group_by="solar_day"``), so
the granules of one pass fall on one day even where it crosses midnight UTC; granules of one day
in one zone are mosaicked first valid pixel wins, in (acquisition time, id) order. Days without
an acquisition are left out of a loaded Tile. Extend the axis with ``Cube.extend_time`` as new
days are published. ``eo:cloud_cover`` filters the granules (default: below 60 %).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from ..spec import CubeSpec, StacSource, Variable
from ..zones import utm_zones

EARTH_SEARCH = "https://earth-search.aws.element84.com/v1"
SENTINEL2_COLLECTION = "sentinel-2-l2a"
# cube variable -> (Earth Search asset key, native resolution in metres)
BANDS = {"B02": ("blue", 10), "B03": ("green", 10), "B04": ("red", 10), "B08": ("nir", 10),
         "B11": ("swir16", 20), "B12": ("swir22", 20), "SCL": ("scl", 20)}


def cloud_cover_below(percent: float) -> dict[str, Any]:
    """CQL2-JSON keeping granules whose ``eo:cloud_cover`` is below ``percent``."""
    return {"op": "<", "args": [{"property": "eo:cloud_cover"}, float(percent)]}


def sentinel2_l2a_spec(bbox: tuple[float, float, float, float], start: Any = "2017-01-01", end: Any = None, *,
                       max_cloud_cover: float | None = 60.0, chunks: tuple[int, int] = (1024, 1024),
                       api_url: str = EARTH_SEARCH, collection: str = SENTINEL2_COLLECTION,
                       bands: tuple[str, ...] = tuple(BANDS)) -> CubeSpec:
    """A cube of Sentinel-2 L2A over ``bbox`` (lon/lat; west > east crosses 180 degrees), daily from
    ``start`` to ``end`` (default: today, UTC), one zone per UTM zone at 10 m.

    ``bands`` picks a subset of B02, B03, B04, B08, B11, B12 and SCL; ``max_cloud_cover=None``
    keeps every granule.
    """
    unknown = sorted(set(bands) - set(BANDS))
    if unknown:
        raise ValueError(f"unknown Sentinel-2 bands {unknown}; choose from {list(BANDS)}")
    end = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize() if end is None else pd.Timestamp(end)
    variables = {}
    for band in bands:
        _, resolution = BANDS[band]
        if band == "SCL":
            variables[band] = Variable("uint8", nodata=0, resampling="nearest")
        else:
            variables[band] = Variable("uint16", nodata=0, resampling="bilinear" if resolution > 10 else "nearest")
    return CubeSpec(
        name="sentinel-2-l2a",
        zones=utm_zones(bbox, 10.0),
        chunks=chunks,
        variables=variables,
        time=pd.date_range(pd.Timestamp(start).normalize(), end.normalize(), freq="D"),
        group_by="solar_day",
        source=StacSource(api_url=api_url, collection=collection, assets={band: BANDS[band][0] for band in bands},
                          filter=cloud_cover_below(max_cloud_cover) if max_cloud_cover is not None else None),
    )
