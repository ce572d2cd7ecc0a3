"""Bring a window of a cube's source into its local catalog, whatever kind the source is."""

from __future__ import annotations

from typing import Any

from .harvest import sync_window
from .local import LocalCatalog, Window


def sync_source(source: Any, catalog: LocalCatalog, window: Window) -> int:
    """Sync ``window`` of ``source`` (a StacSource or EarthEngineSource) unless covered; returns new Items."""
    if source.kind == "earthengine":
        from ..ee_client import initialize
        from .earthengine import sync_earthengine_window

        return sync_earthengine_window(catalog, source.collection, window, source.lag,
                                       connect=lambda: initialize(source.api_url, source.project))
    return sync_window(catalog, window, source.allow_local_hrefs, source.lag)
