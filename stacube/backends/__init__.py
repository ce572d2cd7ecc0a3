"""Backends read one patch from its pystac Items onto the patch GeoBox; one module per source kind.

``base`` holds the protocol (``Backend``, ``PatchData``), each kind's module implements it (``stac``,
``earthengine``), and ``factory.backend_for`` picks one for a spec: imports run one way, kinds to base.
"""

from .base import Backend, PatchData
from .factory import backend_for

__all__ = ["Backend", "PatchData", "backend_for"]
