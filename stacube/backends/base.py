"""The backend boundary: pystac Items and an odc-geo GeoBox in, arrays in the cube's dtypes out."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol

import numpy as np
import pystac

from ..grid import PatchIndex
from ..spec import CubeSpec

PatchData = dict[str, np.ndarray]  # variable name -> 2-D array on the patch GeoBox, cube dtype and nodata


class Backend(Protocol):
    """Reads patches for one source kind; nothing source-specific crosses this boundary."""

    def check_items(self, items: list[pystac.Item]) -> None:
        """Raise ItemError, naming the Item, if an Item lacks what a read needs."""

    def read(self, patch: PatchIndex) -> PatchData:
        """The patch's variables mosaicked from ``patch.items`` onto ``patch.geobox``."""


def backend_for(spec: CubeSpec, options: Mapping | None = None) -> Backend:
    """The backend that reads ``spec.source``."""
    if spec.source.kind == "stac":
        from .stac import StacBackend

        return StacBackend(spec, **dict(options or {}))
    if spec.source.kind == "earthengine":
        from .earthengine import EarthEngineBackend

        return EarthEngineBackend(spec)
    raise NotImplementedError(f"no backend for source kind {spec.source.kind!r}")
