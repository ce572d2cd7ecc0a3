"""A STAC API collection as a cube's source: what is stored in the cube's spec, checked when made.

The value only; ``harvest`` brings its Items into the local catalog and ``backend`` reads their
assets, both imported when a cube first needs them (pystac-client, odc-stac and GDAL are heavy)."""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlparse

import pandas as pd

from ...duplicates import check_rule
from ...errors import SpecError
from ...radiometry import check_policy
from ...signing import check_signer, redact_url
from ..base import check_filter, check_lag

if TYPE_CHECKING:
    from ...catalog import LocalCatalog, Window
    from ...variables import Variable
    from ..base import Backend

_SECRET_OPTION = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|USERPWD|HEADERS|_SAS|ACCESS_KEY|_KEY$", re.I)


def _check_gdal_options(options: Mapping[str, Any] | None) -> dict[str, str] | None:
    """GDAL configuration for reading a source's assets: settings, never secrets (the spec is stored in the cube)."""
    if not options:
        return None
    if not isinstance(options, Mapping):
        raise SpecError(f"gdal_options must be a mapping of GDAL configuration options, got {type(options).__name__}")
    out = {}
    for key, value in options.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            raise SpecError(f"gdal_options key {key!r} is not a GDAL configuration option name")
        if _SECRET_OPTION.search(key):
            raise SpecError(f"gdal_options key {key!r} would store a credential in the cube's spec; set it in the "
                            "environment of the process that reads (AWS_SECRET_ACCESS_KEY and the like) instead")
        out[key] = str(value) if not isinstance(value, bool) else ("YES" if value else "NO")
    return out


def _without_credentials(api_url: Any) -> Any:
    """A stored api_url with its user info dropped: cubes made before specs refused credentials still
    open (their syncs then take credentials from ~/.netrc, as new cubes do)."""
    parts = urlparse(str(api_url))
    if parts.username is None and parts.password is None:
        return api_url
    logging.getLogger(__name__).warning(
        "the cube's stored api_url %s carried credentials; they are not used: put them in ~/.netrc",
        redact_url(str(api_url)))
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


DEFAULT_DRIVERS = ("GTiff",)  # COGs open with GDAL's GTiff driver
_DRIVER_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_HOST_PATTERN = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$")


def _check_drivers(drivers: Any) -> tuple[str, ...]:
    """GDAL driver short names ("GTiff", "JP2OpenJPEG"), at least one."""
    try:
        names = (drivers,) if isinstance(drivers, str) else tuple(drivers or ())
    except TypeError:  # a number, say: no sequence of names
        names = ()
    if not names or not all(isinstance(n, str) and _DRIVER_NAME.match(n) for n in names):
        raise SpecError(f"drivers {drivers!r} must name one or more GDAL drivers, such as ('GTiff',)")
    return names


def _check_hosts(hosts: Any) -> tuple[str, ...] | None:
    """Host names (with an optional port), exact or ``*.domain``; None allows any host."""
    if hosts is None:
        return None
    try:
        names = (hosts,) if isinstance(hosts, str) else tuple(hosts)
    except TypeError:  # a number, say: no sequence of names
        names = ()
    if not names or not all(isinstance(n, str) and _HOST_PATTERN.match(n) for n in names):
        raise SpecError(f"hosts {hosts!r} must be host names such as ('example.com', '*.amazonaws.com')")
    return tuple(n.lower() for n in names)


@dataclass(frozen=True)
class StacSource:
    """A STAC API collection; ``assets`` maps each cube variable to the Item asset that holds it.

    ``radiometry`` names how each Item's numbers become physical values (``stacube.radiometry``),
    ``duplicates`` which of several Items of one acquisition are read (``stacube.duplicates``).
    ``gdal_options`` are GDAL settings for reading the assets (``AWS_NO_SIGN_REQUEST``,
    ``AWS_REQUEST_PAYER``, an S3 endpoint), never credentials; ``signer`` signs each asset URL
    at read time ("planetary-computer", or "module:function" taking and returning a URL), so
    expiring tokens never reach the catalog, a commit or a log.

    What a source's Items may make stacube read: ``drivers`` are the GDAL drivers an asset may open
    with (GTiff, which reads COGs, by default): a file of any other format is refused before a pixel
    is read, since formats such as VRT name other files, local ones included, that GDAL would follow.
    ``hosts`` (None: any) are the hosts asset URLs may name, exactly or as ``*.example.com``.

    Raises
    ------
    SpecError
        If ``api_url`` is not an http(s) URL or carries credentials; ``publication_lag`` is not a pandas
        Timedelta of 0 or more; ``filter`` is not CQL2-JSON cql2 can read; ``radiometry``, ``duplicates``
        or ``signer`` is unknown; ``gdal_options`` is not a mapping of GDAL option names or names a
        credential; ``drivers`` names no GDAL driver; or ``hosts`` holds something that is not a host
        name (or is neither a string nor a sequence).
    """

    api_url: str
    """The STAC API's root URL, http or https, with no credentials in it (the spec is stored in the cube
    and shown by ``stacube cube info``): a server that needs them finds them in ``~/.netrc``. With
    ``collection`` it names the source's local catalog."""
    collection: str
    """The id of the STAC collection whose Items the cube holds."""
    assets: Mapping[str, str]
    """Cube variable -> the key of the Item asset that holds it; the spec's variables exactly."""
    filter: Mapping[str, Any] | None = None
    """CQL2-JSON applied when searching the local catalog (``datasets.cloud_cover_below``); None: every
    Item. Checked when the source is made (cql2 must read it). The harvest itself brings in every Item
    of a window."""
    allow_local_hrefs: bool = False
    """Whether harvested Items may point at local files (a relative href is made absolute against the
    Item's own URL first). False: an Item naming a local file fails the sync with a CatalogError, so a
    remote catalog cannot make stacube read this machine's files."""
    publication_lag: str = "3D"
    """How long after a date the source may still publish Items for it (a pandas Timedelta string): a
    window synced sooner is synced again, and a patch that recent and still empty is left unfilled."""
    radiometry: str = "raster:bands"
    """How each Item's numbers become physical values, one of ``stacube.radiometry.POLICIES``: by
    default the scale and offset its assets declare (``raster:bands``); ``"sentinel-2-baseline"`` and
    ``"earth-search-l2a"`` for Sentinel-2 catalogs whose metadata is missing or wrong; ``"as-cube"``
    where the Items hold the cube's convention already."""
    duplicates: str = "keep-all"
    """Which of several Items of one acquisition are read, one of ``stacube.duplicates.RULES``: every
    one (``"keep-all"``), or only the newest processing (``"newest-processing"``: Earth Search's
    reprocessed Sentinel-2 copies)."""
    gdal_options: Mapping[str, str] | None = None
    """GDAL configuration options set while the assets are read (``AWS_NO_SIGN_REQUEST``,
    ``AWS_REQUEST_PAYER``, ``AWS_S3_ENDPOINT``): upper-case names, values kept as text (True and False as
    ``"YES"`` and ``"NO"``). Never credentials: a name holding ``SECRET``, ``TOKEN`` or ``PASSWORD``, or
    ending in ``_KEY``, is refused; set those in the environment of the process that reads. None (or
    empty): none."""
    signer: str | None = None
    """What signs each asset URL at read time: ``"planetary-computer"``, or ``"module:function"``
    naming a function that takes a URL and returns it signed, imported when a backend is made.
    None: URLs are read as the Items hold them."""
    drivers: Sequence[str] = DEFAULT_DRIVERS
    """The GDAL drivers an asset may open with (short names; a string is one driver), kept as a tuple.
    ``("GTiff",)``, which reads COGs, by default; a file of another format is refused before a pixel
    is read (``NotAllowedFormat``)."""
    hosts: Sequence[str] | None = None
    """The hosts asset URLs may name, each exactly (``example.com``, ``example.com:8080``) or as any
    subdomain of a domain (``*.amazonaws.com``), kept as a lower-case tuple; an Item naming another host fails the
    run with an ItemError before any download. None: any host."""
    kind: str = field(default="stac", init=False)
    """``"stac"``: the kind's name in a stored spec (``Source.kind``); not an argument."""

    def __post_init__(self) -> None:
        check_lag(self.publication_lag)
        check_filter(self.filter)
        url = urlparse(str(self.api_url))
        if url.scheme not in ("http", "https") or not url.netloc:
            raise SpecError(f"api_url {redact_url(str(self.api_url))!r} is not a STAC API URL (http:// or https://)")
        if url.username is not None or url.password is not None:
            raise SpecError(
                f"api_url {redact_url(str(self.api_url))!r} carries credentials: a spec is stored in the cube and "
                f"shown by `stacube cube info`, so it never holds secrets. Put them in ~/.netrc (machine "
                f"{url.hostname} login ... password ...), which both the STAC client and GDAL read")
        object.__setattr__(self, "drivers", _check_drivers(self.drivers))
        object.__setattr__(self, "hosts", _check_hosts(self.hosts))
        check_policy(self.radiometry)
        check_rule(self.duplicates)
        object.__setattr__(self, "gdal_options", _check_gdal_options(self.gdal_options))
        if self.signer is not None:
            check_signer(self.signer)

    @property
    def lag(self) -> pd.Timedelta:
        """``publication_lag`` as a Timedelta (as ``Source.lag``)."""
        return pd.Timedelta(self.publication_lag)

    @property
    def label(self) -> str:
        """The source as a run's commit metadata names it: kind, API and collection."""
        return f"{self.kind}:{self.api_url}#{self.collection}"

    def host_of(self, href: str) -> str:
        """The host a read of asset ``href`` goes to (what per-host request limits count).

        Parameters and returns as ``Source.host_of``."""
        return urlparse(href).hostname or "local"

    def sync(self, catalog: LocalCatalog, window: Window) -> int:
        """Harvest ``window`` of the collection into ``catalog`` unless covered; returns how many Items were new.

        Parameters, returns and errors as ``Source.sync``; the CatalogError names the API and the
        collection when the search fails for good (after the harvest's own tries), or the Item and
        asset when an Item points at a local file and ``allow_local_hrefs`` is False."""
        from .harvest import sync_window

        return sync_window(catalog, window, self.allow_local_hrefs, self.lag)

    def backend(self, variables: Mapping[str, Variable]) -> Backend:
        """What reads this source's assets into ``variables`` (odc-stac and GDAL): a ``StacBackend``.

        Parameters and returns as ``Source.backend``.

        Raises
        ------
        SpecError
            If ``signer`` cannot be imported (for ``"planetary-computer"``: the package is missing).
        """
        from .backend import StacBackend

        return StacBackend(self, variables)

    def to_json(self) -> dict[str, Any]:
        """The source as the cube's stored spec keeps it (as ``Source.to_json``)."""
        return {
            "kind": self.kind,
            "api_url": self.api_url,
            "collection": self.collection,
            "assets": dict(self.assets),
            "filter": dict(self.filter) if self.filter else None,
            "allow_local_hrefs": self.allow_local_hrefs,
            "publication_lag": self.publication_lag,
            "radiometry": self.radiometry,
            "duplicates": self.duplicates,
            "gdal_options": dict(self.gdal_options) if self.gdal_options else None,
            "signer": self.signer,
            "drivers": list(self.drivers),
            "hosts": list(self.hosts) if self.hosts is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StacSource:
        """The source ``to_json`` wrote; fields an older stacube did not store take their defaults.

        An ``api_url`` stored with credentials (by a stacube that still took them) is read without them,
        with a warning, so that the cube still opens.

        Parameters
        ----------
        data : Mapping[str, Any]
            The stored source.

        Returns
        -------
        StacSource
            The source, checked as a new one is.

        Raises
        ------
        KeyError
            If ``data`` lacks ``api_url``, ``collection`` or ``assets`` (``CubeSpec.from_json`` turns it
            into a SpecError).
        SpecError
            If the stored values make no valid source (see ``StacSource``).
        """
        return cls(
            api_url=_without_credentials(data["api_url"]),
            collection=data["collection"],
            assets=dict(data["assets"]),
            filter=data.get("filter"),
            allow_local_hrefs=bool(data.get("allow_local_hrefs", False)),
            publication_lag=data.get("publication_lag", "3D"),
            radiometry=data.get("radiometry", "raster:bands"),
            duplicates=data.get("duplicates", "keep-all"),
            gdal_options=data.get("gdal_options"),
            signer=data.get("signer"),
            drivers=data.get("drivers") or DEFAULT_DRIVERS,
            hosts=data.get("hosts"),
        )
