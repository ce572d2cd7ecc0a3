"""A snapshot's groups and arrays, opened once: a snapshot never changes, so neither does its metadata.

Every ``group[name]`` of a zarr Group reads the child's metadata through the store (a hop onto
zarr's event loop and Icechunk): a warm 1 px load did that five times. Loads in a loop on one
snapshot reuse the nodes opened the first time, and the shard indexes read (``small_read``), which
the whole tree shares. Read-only: writes go through sessions of their own.
"""

from __future__ import annotations

import threading
from typing import Any

import zarr

from .small_read import ShardIndexes


class OpenedGroup:
    """A read-only zarr Group whose children are opened once (then kept); anything else is the group's."""

    def __init__(self, group: zarr.Group, shard_indexes: ShardIndexes | None = None):
        self._group = group
        self._children: dict[str, Any] = {}
        self._lock = threading.Lock()
        self.shard_indexes = shard_indexes if shard_indexes is not None else ShardIndexes()

    def __getitem__(self, name: str) -> Any:
        child = self._children.get(name)
        if child is None:
            child = self._group[name]
            if isinstance(child, zarr.Group):
                child = OpenedGroup(child, self.shard_indexes)
            with self._lock:
                child = self._children.setdefault(name, child)
        return child

    def __contains__(self, name: str) -> bool:
        return name in self._children or name in self._group

    def __getattr__(self, attribute: str) -> Any:  # attrs, store, basename, ...: the group's own
        return getattr(self._group, attribute)
