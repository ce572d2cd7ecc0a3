"""Ready-made cube specs for public collections: a bbox in, a CubeSpec out."""

from .alphaearth import ALPHAEARTH_COLLECTION, alphaearth_spec
from .arcticdem import PGC_STAC, arcticdem_collection, arcticdem_grid, arcticdem_spec
from .sentinel2 import EARTH_SEARCH, SENTINEL2_COLLECTION, cloud_cover_below, sentinel2_l2a_spec
from .tctrend import TCTREND_COLLECTION, tctrend_grid, tctrend_slopes, tctrend_spec

__all__ = [
    "ALPHAEARTH_COLLECTION", "EARTH_SEARCH", "PGC_STAC", "SENTINEL2_COLLECTION", "TCTREND_COLLECTION",
    "alphaearth_spec", "arcticdem_collection", "arcticdem_grid", "arcticdem_spec", "cloud_cover_below",
    "sentinel2_l2a_spec", "tctrend_grid", "tctrend_slopes", "tctrend_spec",
]
