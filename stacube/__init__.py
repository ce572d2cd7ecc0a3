"""stacube: local, versioned geospatial raster cubes, built on demand from STAC and Earth Engine sources."""

import warnings
from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    AssetReadError,
    CatalogError,
    CubeDamagedError,
    CubeExistsError,
    CubeNotFoundError,
    ItemError,
    ParcelError,
    PatchReadError,
    PermanentError,
    ROIError,
    SpecError,
    StacubeError,
    StorageError,
    TOIError,
    UnknownVariableError,
)

# rasterio's reproject wraps the arrays it is given in in-memory datasets and silences their "no
# geotransform" warning with warnings.catch_warnings, which is not thread-safe before Python 3.14: with
# patches read and Tiles reprojected in threads, another thread leaving its own catch_warnings restores
# the filters mid-way and the warning escapes, attributed to rasterio/warp.py. It is about rasterio's
# own buffer, never the data (its transform is given); keep it silenced as rasterio means it to be. A
# file without a geotransform still warns, attributed to the code that opens it.
warnings.filterwarnings("ignore", message="Dataset has no geotransform", module=r"rasterio\.warp\Z")

if TYPE_CHECKING:
    from .cube import Cube
    from .history import CubeChangedError, ExpireReport, VersionNotFoundError
    from .run import RunReport
    from .spec import CubeSpec, EarthEngineSource, StacSource, Variable
    from .store import S3AccessError

# Imported on first use: zarr, Icechunk and xarray take over a second, which `stacube --help` and
# the light errors module should not pay.
_LAZY = {"Cube": ".cube", "CubeChangedError": ".history", "ExpireReport": ".history",
         "VersionNotFoundError": ".history", "RunReport": ".run", "CubeSpec": ".spec", "S3AccessError": ".store",
         "EarthEngineSource": ".spec", "StacSource": ".spec", "Variable": ".spec"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stacube' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "AssetReadError",
    "CatalogError",
    "Cube",
    "CubeChangedError",
    "CubeDamagedError",
    "CubeExistsError",
    "CubeNotFoundError",
    "CubeSpec",
    "EarthEngineSource",
    "ExpireReport",
    "ItemError",
    "ParcelError",
    "PatchReadError",
    "PermanentError",
    "ROIError",
    "RunReport",
    "S3AccessError",
    "SpecError",
    "StacSource",
    "StacubeError",
    "StorageError",
    "TOIError",
    "UnknownVariableError",
    "Variable",
    "VersionNotFoundError",
]
