"""Backends read one patch from its pystac Items onto the patch GeoBox; one module per source kind."""

from .base import Backend, PatchData, backend_for

__all__ = ["Backend", "PatchData", "backend_for"]
