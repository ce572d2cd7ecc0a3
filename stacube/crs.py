"""CRSs as people read them: ``EPSG:3413``, not forty lines of WKT."""

from __future__ import annotations

import warnings
from typing import Any

from odc.geo.crs import CRS


def crs_label(crs: Any) -> str:
    """``EPSG:<code>`` where the CRS has one (a CRS read back from WKT prints as WKT otherwise), else its
    name (``MODIS Sinusoidal``), else its PROJ string."""
    crs = crs if isinstance(crs, CRS) else CRS(crs)
    if crs.epsg is not None:
        return f"EPSG:{crs.epsg}"
    name = crs.proj.name
    if name and name != "unknown":
        return name
    with warnings.catch_warnings():  # "you will likely lose information": a label, not a definition
        warnings.simplefilter("ignore", UserWarning)
        return crs.proj.to_proj4()
