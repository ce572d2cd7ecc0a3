"""Where a cube's data comes from: one folder per source kind, each behind the ``Source`` protocol.

A kind's folder holds everything that knows the kind: its value (``source.py``, stored in the cube's
spec), how it fills the local catalog (``stac/harvest.py`` harvests a STAC API,
``earthengine/catalog.py`` converts Earth Engine images to Items) and its backend (``backend.py``,
reading pystac Items onto a patch). The rest of stacube asks a source, never which kind it is; this
module only maps a stored spec's ``kind`` to its value class. Kinds import nothing from each other
(an import-linter contract).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import SpecError
from .base import Backend, PatchData, Source
from .earthengine.source import EARTH_ENGINE_URL, EarthEngineSource
from .stac.source import StacSource

SOURCE_KINDS: dict[str, type] = {"stac": StacSource, "earthengine": EarthEngineSource}


def source_from_json(data: Mapping[str, Any]) -> Source:
    """The source a stored spec holds; specs made before sources had kinds are STAC.

    Parameters
    ----------
    data : Mapping[str, Any]
        The source as ``Source.to_json`` wrote it (``kind`` first; none: ``"stac"``).

    Returns
    -------
    Source
        A ``StacSource`` or an ``EarthEngineSource``, checked as a new one is.

    Raises
    ------
    SpecError
        If ``kind`` is unknown (a cube made by a newer stacube), or the stored values make no valid
        source.
    KeyError
        If ``data`` lacks a key the kind needs (``CubeSpec.from_json`` turns it into a SpecError).
    """
    kind = data.get("kind", "stac")
    if kind not in SOURCE_KINDS:
        raise SpecError(f"unknown source kind {kind!r}: this stacube reads {sorted(SOURCE_KINDS)}")
    return SOURCE_KINDS[kind].from_json(data)


def is_source(value: Any) -> bool:
    """Whether ``value`` is a source of a kind this stacube knows.

    Parameters
    ----------
    value : Any
        Anything (what a CubeSpec was given as its ``source``).

    Returns
    -------
    bool
        True for an instance of a class in ``SOURCE_KINDS``.
    """
    return isinstance(value, tuple(SOURCE_KINDS.values()))


__all__ = ["EARTH_ENGINE_URL", "SOURCE_KINDS", "Backend", "EarthEngineSource", "PatchData", "Source", "StacSource",
           "is_source", "source_from_json"]
