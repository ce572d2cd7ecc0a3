"""Local stac-geoparquet catalogs and the harvesters that fill them."""

from .harvest import harvest, split_window, sync_window
from .local import LocalCatalog, Window, default_catalog_root, duckdb_client
from .sources import sync_source

__all__ = ["LocalCatalog", "Window", "default_catalog_root", "duckdb_client", "harvest", "split_window", "sync_source",
           "sync_window"]
