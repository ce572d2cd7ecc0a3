"""The local stac-geoparquet catalog every source is searched through (filled by each source kind's sync)."""

from .local import LocalCatalog, Window, default_catalog_root, duckdb_client, split_window

__all__ = ["LocalCatalog", "Window", "default_catalog_root", "duckdb_client", "split_window"]
