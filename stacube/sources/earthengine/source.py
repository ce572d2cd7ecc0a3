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


def _check_concurrency(value: Any) -> int:
    """``max_concurrency`` as an int: a whole number (or its text) from 1 to 40."""
    try:
        number = int(value)
        whole = not isinstance(value, bool) and (isinstance(value, str) or number == value)
    except (TypeError, ValueError, OverflowError):
        whole = False
    if not whole or not 1 <= number <= 40:
        raise SpecError(f"max_concurrency {value!r} must be a whole number from 1 to 40 (Earth Engine's project cap)")
    return number


@dataclass(frozen=True)
class EarthEngineSource:
    """An Earth Engine ImageCollection; ``bands`` maps each cube variable to a band of its images.

    Its images are converted to STAC Items in the local catalog (one asset per band), so planning
    and the catalog work as for STAC; ``api_url`` is Earth Engine's (or a test emulator's).
    Credentials never live in the spec: see ``stacube.sources.earthengine.client.initialize``.

    Raises
    ------
    SpecError
        If ``publication_lag`` is not a pandas Timedelta of 0 or more, ``radiometry`` is unknown, or
        ``max_concurrency`` is not a whole number from 1 to 40.
    """

    collection: str
    """The Earth Engine asset id of the ImageCollection (or of a single Image) the cube holds, such as
    ``GOOGLE/SATELLITE_EMBEDDING/V1/ANNUAL``."""
    bands: Mapping[str, str]
    """Cube variable -> the band of the images that holds it; the spec's variables exactly."""
    project: str | None = None
    """The Google Cloud project Earth Engine's requests are made for (and billed to); None: Earth
    Engine's default for the credential."""
    api_url: str = EARTH_ENGINE_URL
    """Earth Engine's endpoint (``EARTH_ENGINE_URL``), or a test emulator's. With ``collection`` it names
    the source's local catalog."""
    max_concurrency: int = 16
    """Pixel requests in flight per process and endpoint, 1 to 40 (a project gets 40 in all); kept as an
    int (``"8"`` is read as 8)."""
    publication_lag: str = "3D"
    """How long after a date the collection may still gain images for it (a pandas Timedelta string):
    a window synced sooner is synced again, and a patch that recent and still empty is left unfilled."""
    radiometry: str = "raster:bands"
    """How each image's numbers become physical values, one of ``stacube.radiometry.POLICIES``. The
    converted Items declare no scale or offset, so ``"raster:bands"`` reads them as physical values
    (scale 1, offset 0); ``"as-cube"`` where the images hold the cube's convention already. Earth Engine
    mosaics and casts on its side, so an Item in another convention than its variable's is refused."""
    kind: str = field(default="earthengine", init=False)
    """``"earthengine"``: the kind's name in a stored spec (``Source.kind``); not an argument."""

    def __post_init__(self) -> None:
        check_lag(self.publication_lag)
        check_policy(self.radiometry)
        object.__setattr__(self, "max_concurrency", _check_concurrency(self.max_concurrency))

    @property
    def assets(self) -> Mapping[str, str]:
        """Variable -> Item asset key: the converted Items hold one asset per band, keyed by band name."""
        return self.bands

    @property
    def lag(self) -> pd.Timedelta:
        """``publication_lag`` as a Timedelta (as ``Source.lag``)."""
        return pd.Timedelta(self.publication_lag)

    filter = None
    """No CQL2 filter on converted Items yet: every image of a window is planned (``Source.filter``)."""
    allow_local_hrefs = False
    """Converted Items name Earth Engine assets only."""
    duplicates = "keep-all"
    """Every image is read (``Source.duplicates``)."""
    gdal_options = None
    """Earth Engine is not read through GDAL."""
    signer = None
    """Earth Engine's requests carry the process's credentials; nothing is signed."""

    @property
    def label(self) -> str:
        """The source as a run's commit metadata names it: kind, endpoint and collection."""
        return f"{self.kind}:{self.api_url}#{self.collection}"

    def host_of(self, href: str) -> str:
        """The host a read of a band goes to: every band is read from the Earth Engine endpoint.

        Parameters and returns as ``Source.host_of``, but ``href`` is not looked at: the host of
        ``api_url`` (``"local"`` if it has none)."""
        return urlparse(self.api_url).hostname or "local"

    def sync(self, catalog: LocalCatalog, window: Window) -> int:
        """Convert the collection's images in ``window`` to Items in ``catalog`` unless covered; returns how
        many Items were new.

        Parameters, returns and errors as ``Source.sync``; Earth Engine is started (with the
        process's credentials, ``client.initialize``) only when the window is not covered. The
        CatalogError names the collection when Earth Engine cannot be started or listed, or an image
        cannot be converted (no bands, no time, a CRS PROJ cannot read)."""
        from .catalog import sync_earthengine_window
        from .client import initialize

        return sync_earthengine_window(catalog, self.collection, window, self.lag,
                                       connect=lambda: initialize(self.api_url, self.project))

    def backend(self, variables: Mapping[str, Variable]) -> Backend:
        """What reads this source's bands into ``variables`` (Earth Engine's pixel requests): an
        ``EarthEngineBackend``.

        Parameters and returns as ``Source.backend``."""
        from .backend import EarthEngineBackend

        return EarthEngineBackend(self, variables)

    def to_json(self) -> dict[str, Any]:
        """The source as the cube's stored spec keeps it (as ``Source.to_json``)."""
        return {"kind": self.kind, "collection": self.collection, "bands": dict(self.bands), "project": self.project,
                "api_url": self.api_url, "max_concurrency": self.max_concurrency,
                "publication_lag": self.publication_lag, "radiometry": self.radiometry}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EarthEngineSource:
        """The source ``to_json`` wrote; fields left out take their defaults.

        Parameters
        ----------
        data : Mapping[str, Any]
            The stored source.

        Returns
        -------
        EarthEngineSource
            The source, checked as a new one is.

        Raises
        ------
        KeyError
            If ``data`` lacks ``collection`` or ``bands`` (``CubeSpec.from_json`` turns it into a SpecError).
        SpecError
            If the stored values make no valid source (see ``EarthEngineSource``).
        """
        return cls(collection=data["collection"], bands=dict(data["bands"]), project=data.get("project"),
                   api_url=data.get("api_url", EARTH_ENGINE_URL), max_concurrency=data.get("max_concurrency", 16),
                   publication_lag=data.get("publication_lag", "3D"),
                   radiometry=data.get("radiometry", "raster:bands"))
