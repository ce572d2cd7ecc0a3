"""Which backend reads a cube's source: the one place that knows every source kind's module."""

from __future__ import annotations

from collections.abc import Mapping

from ..spec import CubeSpec
from .base import Backend


def backend_for(spec: CubeSpec, options: Mapping | None = None) -> Backend:
    """The backend that reads ``spec.source``; ``options`` go to the STAC backend (odc-stac's reader settings).

    Raises NotImplementedError for a source kind without a backend."""
    if spec.source.kind == "stac":
        from .stac import StacBackend  # each kind's module (and its client library) only when a cube needs it

        return StacBackend(spec, **dict(options or {}))
    if spec.source.kind == "earthengine":
        from .earthengine import EarthEngineBackend

        return EarthEngineBackend(spec)
    raise NotImplementedError(f"no backend for source kind {spec.source.kind!r}")
