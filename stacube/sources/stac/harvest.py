"""Harvest Items from a remote STAC API into the local catalog (pystac-client follows paging)."""

from __future__ import annotations

import logging
import time
from typing import Any
from urllib.parse import urljoin, urlparse

import pandas as pd
import pystac_client

from ...catalog.local import DEFAULT_LAG, LocalCatalog, Window
from ...errors import CatalogError, is_permanent, source_error

log = logging.getLogger(__name__)
REMOTE_SCHEMES = {"http", "https", "s3", "gs", "az"}


def _absolute_hrefs(item: dict[str, Any], allow_local: bool) -> dict[str, Any]:
    """Make asset hrefs absolute and refuse local-file hrefs from a remote catalog unless allowed."""
    self_href = next((link["href"] for link in item.get("links", []) if link.get("rel") == "self"), None)
    for key, asset in item.get("assets", {}).items():
        href = asset["href"]
        if not urlparse(href).scheme and self_href:
            href = urljoin(self_href, href)
            asset["href"] = href
        if not allow_local and urlparse(href).scheme not in REMOTE_SCHEMES:
            raise CatalogError(
                f"Item {item.get('id')!r} asset {key!r} points at a local file ({href!r}); "
                "set allow_local_hrefs=True on the source if you trust it"
            )
    return item


def harvest(
    api_url: str,
    collection: str,
    window: Window,
    allow_local_hrefs: bool = False,
    page_size: int = 200,
    timeout: float = 60.0,
    attempts: int = 4,
    backoff: float = 0.25,
) -> list[dict[str, Any]]:
    """All Items of ``collection`` in ``window`` from the API, every page followed.

    A transient failure restarts the search after an exponential backoff, up to ``attempts`` times:
    Items are appended by id, so a search read twice adds nothing twice. The failure is decided where
    it is caught (``stacube.errors.source_error``): a dropped or stalled connection, a 429 or a 5xx is a
    TransientSourceError; a 4xx (a wrong collection, a bad query) a PermanentSourceError, not asked
    again. Either ends as the ``__cause__`` of a CatalogError naming the API and the collection.

    Parameters
    ----------
    api_url : str
        The STAC API's root URL.
    collection : str
        The collection's id.
    window : Window
        The lon/lat bbox and time range to search (no time range: every date).
    allow_local_hrefs : bool, optional
        Whether Items may point at local files (``StacSource.allow_local_hrefs``).
    page_size : int, optional
        Items asked for per page.
    timeout : float, optional
        Seconds each request may take.
    attempts : int, optional
        How many times the search is tried in all.
    backoff : float, optional
        Seconds before the second attempt; doubled before each next one.

    Returns
    -------
    list[dict[str, Any]]
        The Items as dicts, their asset hrefs made absolute against each Item's own URL.

    Raises
    ------
    CatalogError
        If the search fails for good or after ``attempts`` tries (its ``__cause__`` is the source
        error), or an Item points at a local file and ``allow_local_hrefs`` is False.
    """
    for attempt in range(attempts):
        try:
            client = pystac_client.Client.open(api_url, timeout=timeout)
            search = client.search(
                collections=[collection], bbox=list(window.bbox), datetime=window.datetime_query(), limit=page_size
            )
            items = [_absolute_hrefs(d, allow_local_hrefs) for d in search.items_as_dicts()]
            break
        except CatalogError:
            raise
        except Exception as err:  # noqa: BLE001 - requests', the client's and JSON errors alike, judged below
            # a cut-off or garbled page (a JSON error) is no source error by type: unclassified, asked again
            failure = source_error(err, api_url) or err
            if attempt + 1 == attempts or is_permanent(failure):
                raise CatalogError(f"could not search the STAC API {api_url} (collection {collection!r}) after "
                                   f"{attempt + 1} attempt(s): {err}") from failure
            delay = backoff * 2**attempt
            log.warning("STAC search of %s at %s failed (%s); retrying in %.2f s", collection, api_url, err, delay)
            time.sleep(delay)
    log.info("harvested %d items of %s from %s for %s", len(items), collection, api_url, window)
    return items


def sync_window(catalog: LocalCatalog, window: Window, allow_local_hrefs: bool = False,
                lag: pd.Timedelta = DEFAULT_LAG) -> int:
    """Bring ``window`` into the local catalog unless already covered; returns how many Items were new.

    ``StacSource.sync``'s work: ``harvest`` from the catalog's own ``source_url`` and ``collection``,
    through ``LocalCatalog.sync``.

    Parameters
    ----------
    catalog : LocalCatalog
        The source's local catalog.
    window : Window
        The lon/lat bbox and time range to bring in.
    allow_local_hrefs : bool, optional
        Whether Items may point at local files.
    lag : pandas.Timedelta, optional
        The source's publication lag (``Source.lag``).

    Returns
    -------
    int
        How many Items were new (0 when the window was covered).

    Raises
    ------
    CatalogError
        As ``harvest``, or if the catalog's windows file cannot be read.
    ItemError
        If the API returned something that is not a STAC Item the catalog can hold.
    StorageError
        If the catalog folder cannot be written.
    """
    return catalog.sync(window, lag, lambda: harvest(catalog.source_url, catalog.collection, window,
                                                     allow_local_hrefs))
