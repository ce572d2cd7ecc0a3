"""stacube: local, versioned geospatial raster cubes, built on demand from STAC and Earth Engine sources."""

import warnings
from importlib import import_module
from typing import TYPE_CHECKING, Any

from .errors import (
    AssetReadError,
    CatalogError,
    CubeChangedError,
    CubeDamagedError,
    CubeExistsError,
    CubeNotFoundError,
    GroupError,
    ItemError,
    LoadCancelled,
    NotAllowedFormat,
    ParcelError,
    PatchReadError,
    PermanentError,
    PermanentSourceError,
    QualityBreachError,
    RadiometryError,
    ROIError,
    RunCancelled,
    S3AccessError,
    SourceError,
    SpecError,
    StacubeError,
    StorageError,
    TOIError,
    TransientSourceError,
    UnknownVariableError,
    VersionNotFoundError,
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
    from .history import ExpireReport
    from .run import RunReport
    from .sources import EarthEngineSource, StacSource
    from .spec import CubeSpec
    from .variables import Variable

# Imported on first use: zarr, Icechunk and xarray take over a second, which `stacube --help` and
# the light errors module should not pay.
_LAZY = {"Cube": ".cube", "ExpireReport": ".history", "RunReport": ".run", "CubeSpec": ".spec",
         "EarthEngineSource": ".sources", "StacSource": ".sources", "Variable": ".variables"}


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
    "GroupError",
    "ItemError",
    "LoadCancelled",
    "NotAllowedFormat",
    "ParcelError",
    "PatchReadError",
    "PermanentError",
    "PermanentSourceError",
    "QualityBreachError",
    "ROIError",
    "RadiometryError",
    "RunCancelled",
    "RunReport",
    "S3AccessError",
    "SourceError",
    "SpecError",
    "StacSource",
    "StacubeError",
    "StorageError",
    "TOIError",
    "TransientSourceError",
    "UnknownVariableError",
    "Variable",
    "VersionNotFoundError",
]
