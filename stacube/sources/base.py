"""What every source kind provides: the ``Source`` protocol (a value stored in the cube's spec) and the
``Backend`` protocol (pystac Items and an odc-geo GeoBox in, arrays in the cube's dtypes and
conventions out).

Protocols and shared checks only: each kind's folder implements them, and its source value names
its own catalog sync and backend, so nothing outside a kind's folder asks which kind it is."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import numpy as np
import pandas as pd
import pystac

from ..errors import SpecError
from ..grid import PatchIndex

if TYPE_CHECKING:
    from ..catalog import LocalCatalog, Window
    from ..variables import Variable


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


class Source(Protocol):
    """A cube's source: stored in its spec as ``to_json()``, found again by ``kind`` (``stacube.sources``).

    Planning searches the local catalog the source's ``sync`` fills, with its ``filter``, ``lag`` and
    ``duplicates`` rule; its ``backend`` reads the Items found, bringing each Item's numbers into the
    cube's convention by its ``radiometry`` policy."""

    kind: ClassVar[str]
    """The source kind's name in a stored spec: "stac" or "earthengine"."""
    api_url: str
    """Where the source is served; with ``collection`` it names the source's local catalog."""
    collection: str
    """The collection whose Items (or images) the cube holds."""
    publication_lag: str
    """How long after a date the source may still publish Items for it (a pandas Timedelta string)."""
    radiometry: str
    """How each Item's numbers become physical values (a ``stacube.radiometry`` policy)."""
    duplicates: str
    """Which of several Items of one acquisition are read (a ``stacube.duplicates`` rule)."""
    filter: Mapping[str, Any] | None
    """CQL2-JSON applied when searching the local catalog (None: every Item)."""

    @property
    def assets(self) -> Mapping[str, str]:
        """Cube variable -> the Item asset key that holds it."""

    @property
    def lag(self) -> pd.Timedelta:
        """``publication_lag`` as a Timedelta."""

    @property
    def label(self) -> str:
        """The source as a run's commit metadata names it."""

    def host_of(self, href: str) -> str:
        """The host a read of asset ``href`` goes to (what per-host request limits count)."""

    def sync(self, catalog: LocalCatalog, window: Window) -> int:
        """Bring ``window`` of the source into ``catalog`` unless covered; returns how many Items were new."""

    def backend(self, variables: Mapping[str, Variable]) -> Backend:
        """What reads this source's Items into ``variables``."""

    def to_json(self) -> dict[str, Any]:
        """The source as the cube's stored spec keeps it (``kind`` included)."""


def check_lag(publication_lag: str) -> None:
    """Raise SpecError unless ``publication_lag`` is a pandas Timedelta string ("3D")."""
    try:
        pd.Timedelta(publication_lag)
    except ValueError as err:
        raise SpecError(f"publication_lag {publication_lag!r} is not a pandas Timedelta") from err
