"""stacube: local, versioned geospatial raster cubes, built on demand from STAC and Earth Engine sources."""

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
