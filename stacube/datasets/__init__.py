"""Ready-made cube specs for public collections: a bbox in, a CubeSpec out."""

from .alphaearth import ALPHAEARTH_COLLECTION, alphaearth_spec

__all__ = ["ALPHAEARTH_COLLECTION", "alphaearth_spec"]
