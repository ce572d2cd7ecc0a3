"""Ready-made cube specs for public collections: a bbox in, a CubeSpec out."""

from .alphaearth import ALPHAEARTH_COLLECTION, alphaearth_spec
from .tctrend import TCTREND_COLLECTION, tctrend_grid, tctrend_slopes, tctrend_spec

__all__ = ["ALPHAEARTH_COLLECTION", "TCTREND_COLLECTION", "alphaearth_spec", "tctrend_grid", "tctrend_slopes",
           "tctrend_spec"]
