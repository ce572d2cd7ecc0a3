"""``open_parcel_store(url)``: the parcel store a URL names (the one place that knows every store)."""

from __future__ import annotations

import os

from .store import ParcelStore


def open_parcel_store(url: str | os.PathLike) -> ParcelStore:
    """Open (creating its tables if need be) the parcel store at ``url``.

    ``duckdb:///path/fields.duckdb`` or a plain path: one embedded DuckDB file (created if missing).
    ``postgresql+asyncpg://user@host/db`` (also ``postgresql://``, ``postgres://``): a PostgreSQL/PostGIS
    server (needs ``pip install 'stacube[postgres]'``). Raises ValueError for any other URL scheme.
    Use it as a context manager (``with open_parcel_store(url) as store:``) or call ``close()``."""
    if os.fspath(url).startswith(("postgresql", "postgres:")):
        from .postgres import PostgresParcelStore  # SQLAlchemy and asyncpg only for a server

        return PostgresParcelStore(url)
    from .duckdb_store import DuckDBParcelStore

    return DuckDBParcelStore(url)
