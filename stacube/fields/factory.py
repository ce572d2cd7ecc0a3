"""``open_parcel_store(url)``: the parcel store a URL names (the one place that knows every store)."""

from __future__ import annotations

import os

from .store import ParcelStore


def open_parcel_store(url: str | os.PathLike) -> ParcelStore:
    """Open (creating its tables if need be) the parcel store at ``url``.

    Use it as a context manager (``with open_parcel_store(url) as store:``) or call ``close()``.

    Parameters
    ----------
    url : str or os.PathLike
        ``duckdb:///path/fields.duckdb`` or a plain path: one embedded DuckDB file (created if missing).
        ``postgresql+asyncpg://user@host/db`` (also ``postgresql://``, ``postgres://``): a
        PostgreSQL/PostGIS server (needs ``pip install 'stacube[postgres]'``).

    Returns
    -------
    ParcelStore
        A ``DuckDBParcelStore`` or a ``PostgresParcelStore``.

    Raises
    ------
    SpecError
        If ``url`` has any other scheme, or names no file.
    duckdb.IOException
        If the DuckDB file is held by another process, or is not a DuckDB database.
    ModuleNotFoundError
        If a PostgreSQL URL is given without SQLAlchemy and asyncpg installed.
    OSError
        If the PostgreSQL server cannot be reached.
    """
    if os.fspath(url).startswith(("postgresql", "postgres:")):
        from .postgres import PostgresParcelStore  # SQLAlchemy and asyncpg only for a server

        return PostgresParcelStore(url)
    from .duckdb_store import DuckDBParcelStore

    return DuckDBParcelStore(url)
