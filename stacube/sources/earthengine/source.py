"""An Earth Engine ImageCollection as a cube's source: what is stored in the cube's spec, checked when made.

The value only; ``catalog`` converts the collection's images into STAC Items in the local catalog,
``backend`` reads their pixels and ``client`` starts the ``ee`` client, each imported when a cube
first needs it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pandas as pd

from ...errors import SpecError
from ...radiometry import check_policy
from ..base import check_lag

if TYPE_CHECKING:
    from ...catalog import LocalCatalog, Window
    from ...variables import Variable
    from ..base import Backend

EARTH_ENGINE_URL = "https://earthengine.googleapis.com"


@dataclass(frozen=True)
class EarthEngineSource:
    """An Earth Engine ImageCollection; ``bands`` maps each cube variable to a band of its images.

    Its images are converted to STAC Items in the local catalog (one asset per band), so planning
    and the catalog work as for STAC; ``api_url`` is Earth Engine's (or a test emulator's).
    Credentials never live in the spec: see ``stacube.earthengine.initialize``.
    """

    collection: str
    bands: Mapping[str, str]
    project: str | None = None
    api_url: str = EARTH_ENGINE_URL
    max_concurrency: int = 16  # pixel requests in flight per process (a project gets 40 in all)
    publication_lag: str = "3D"
    radiometry: str = "raster:bands"  # "as-cube" where the images hold the cube's convention already
    kind: str = field(default="earthengine", init=False)

    def __post_init__(self) -> None:
        check_lag(self.publication_lag)
        check_policy(self.radiometry)
        if not 1 <= int(self.max_concurrency) <= 40:
            raise SpecError(f"max_concurrency {self.max_concurrency!r} must be 1 to 40 (Earth Engine's project cap)")

    @property
    def assets(self) -> Mapping[str, str]:
        """Variable -> Item asset key: the converted Items hold one asset per band, keyed by band name."""
        return self.bands

    @property
    def lag(self) -> pd.Timedelta:
        return pd.Timedelta(self.publication_lag)

    filter = None  # no CQL2 filter on converted Items yet
    allow_local_hrefs = False
    duplicates = "keep-all"
    gdal_options = None
    signer = None

    @property
    def label(self) -> str:
        """The source as a run's commit metadata names it: kind, endpoint and collection."""
        return f"{self.kind}:{self.api_url}#{self.collection}"

    def host_of(self, href: str) -> str:
        """The host a read of a band goes to: every band is read from the Earth Engine endpoint."""
        return urlparse(self.api_url).hostname or "local"

    def sync(self, catalog: LocalCatalog, window: Window) -> int:
        """Convert the collection's images in ``window`` to Items in ``catalog`` unless covered; returns how
        many Items were new.

        Raises CatalogError naming the collection when Earth Engine cannot be started or listed."""
        from .catalog import sync_earthengine_window
        from .client import initialize

        return sync_earthengine_window(catalog, self.collection, window, self.lag,
                                       connect=lambda: initialize(self.api_url, self.project))

    def backend(self, variables: Mapping[str, Variable]) -> Backend:
        """What reads this source's bands into ``variables`` (Earth Engine's pixel requests)."""
        from .backend import EarthEngineBackend

        return EarthEngineBackend(self, variables)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "collection": self.collection, "bands": dict(self.bands), "project": self.project,
                "api_url": self.api_url, "max_concurrency": self.max_concurrency,
                "publication_lag": self.publication_lag, "radiometry": self.radiometry}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EarthEngineSource:
        return cls(collection=data["collection"], bands=dict(data["bands"]), project=data.get("project"),
                   api_url=data.get("api_url", EARTH_ENGINE_URL), max_concurrency=int(data.get("max_concurrency", 16)),
                   publication_lag=data.get("publication_lag", "3D"),
                   radiometry=data.get("radiometry", "raster:bands"))
