"""The backend boundary: pystac Items and an odc-geo GeoBox in, arrays in the cube's dtypes and conventions out.

The protocol and its data type only; ``factory.backend_for`` picks the implementation (one module per
source kind), so an implementation imports this module and nothing imports back."""

from __future__ import annotations

from typing import Protocol

import numpy as np
import pystac

from ..grid import PatchIndex


class PatchData(dict[str, np.ndarray]):
    """Variable name -> 2-D array on the patch GeoBox, in the cube's dtype, nodata and convention.

    ``clipped`` counts, per variable, the pixels whose converted values lay outside what the dtype
    holds and were clipped into it; ``judged`` says, per Item, how its pixels decided a convention its
    metadata left open. Both go into the commit metadata."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.clipped: dict[str, int] = {}
        self.judged: dict[str, str] = {}


class Backend(Protocol):
    """Reads patches for one source kind; nothing source-specific crosses this boundary."""

    def check_items(self, items: list[pystac.Item]) -> None:
        """Raise ItemError, naming the Item, if an Item lacks what a read needs."""

    def read(self, patch: PatchIndex) -> PatchData:
        """The patch's variables mosaicked from ``patch.items`` onto ``patch.geobox``."""
