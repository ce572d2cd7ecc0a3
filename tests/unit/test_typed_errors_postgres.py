"""A PostgreSQL parcel store whose first connection fails leaves no thread behind (issue 22.4), and
closing a store twice returns at once instead of waiting for a stopped loop."""

from __future__ import annotations

import asyncio
import socket
import threading

import pytest

pytest.importorskip("sqlalchemy")
pytest.importorskip("asyncpg")

from stacube.fields.postgres import PostgresParcelStore


def _store_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "stacube-postgres" and t.is_alive()]


def _refused_port() -> int:
    with socket.socket() as probe:  # a port nothing listens on: bound, then let go
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_failed_first_connection_raises_its_error_and_stops_the_loop_thread():
    before = len(_store_threads())
    with pytest.raises(OSError):  # asyncpg's connection refused, as before
        PostgresParcelStore(f"postgresql://nobody@127.0.0.1:{_refused_port()}/fields")
    assert len(_store_threads()) == before


def test_a_malformed_url_starts_no_thread():
    before = len(_store_threads())
    with pytest.raises(ValueError, match="notaport"):  # SQLAlchemy's own, for a port it cannot read
        PostgresParcelStore("postgresql://nobody@127.0.0.1:notaport/fields")
    assert len(_store_threads()) == before


class _Engine:
    disposed = 0

    async def dispose(self) -> None:
        _Engine.disposed += 1


def test_closing_twice_returns_at_once():
    store = PostgresParcelStore.__new__(PostgresParcelStore)  # a store as __init__ leaves it, without a server
    store._engine = _Engine()
    store._loop = asyncio.new_event_loop()
    store._thread = threading.Thread(target=store._loop.run_forever, name="stacube-postgres", daemon=True)
    store._thread.start()
    closing = threading.Thread(target=lambda: (store.close(), store.close()), daemon=True)
    closing.start()
    closing.join(timeout=10)
    assert not closing.is_alive() and not store._thread.is_alive() and _Engine.disposed == 1
    assert store._loop.is_closed()
