"""The one place stacube runs a coroutine on zarr's event loop (zarr's private ``zarr.core.sync.sync``).

Icechunk's store is async only; zarr's synchronous API runs each call on one background event loop
that zarr keeps. ``small_read`` fetches the bytes of many arrays in one such hop instead of one per
array, so it needs the same loop (Icechunk's futures and zarr's own calls then share it). zarr does
not export ``sync`` publicly: ``tests/unit/test_read_zarr_sync.py`` fails loudly if it moves or changes.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import Any

from zarr.core.sync import sync as _zarr_sync  # private: see the module docstring


def run_on_zarr_loop[T](coroutine: Coroutine[Any, Any, T]) -> T:
    """Run ``coroutine`` to its end on zarr's event loop and return its result (from any thread but that loop's)."""
    return _zarr_sync(coroutine)
