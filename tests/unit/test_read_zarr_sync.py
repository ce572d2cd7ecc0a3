"""stacube runs coroutines on zarr's event loop through zarr's private ``zarr.core.sync.sync``
(``stacube.zarr_sync``): if zarr moves or changes it, this fails loudly."""

from __future__ import annotations

import asyncio
import inspect
import threading

import zarr.core.sync

from stacube.zarr_sync import run_on_zarr_loop


def test_zarrs_sync_still_runs_a_coroutine_on_its_own_loop_thread():
    assert callable(zarr.core.sync.sync)
    assert next(iter(inspect.signature(zarr.core.sync.sync).parameters)) == "coro"

    async def where() -> tuple[str, bool]:
        await asyncio.sleep(0)
        return threading.current_thread().name, asyncio.get_running_loop() is zarr.core.sync._get_loop()

    thread, on_zarrs_loop = run_on_zarr_loop(where())
    assert thread != threading.current_thread().name and on_zarrs_loop
