"""stacube: local, versioned geospatial raster cubes, built on demand from STAC and Earth Engine sources."""

from .cube import Cube
from .errors import (
    AssetReadError,
    CatalogError,
    CubeExistsError,
    CubeNotFoundError,
    ItemError,
    PatchReadError,
    ROIError,
    SpecError,
    StacubeError,
    TOIError,
    UnknownVariableError,
)
from .history import CubeChangedError, ExpireReport, VersionNotFoundError
from .run import RunReport
from .spec import CubeSpec, EarthEngineSource, StacSource, Variable

__version__ = "0.1.0"

__all__ = [
    "AssetReadError",
    "CatalogError",
    "Cube",
    "CubeChangedError",
    "CubeExistsError",
    "CubeNotFoundError",
    "CubeSpec",
    "EarthEngineSource",
    "ExpireReport",
    "ItemError",
    "PatchReadError",
    "ROIError",
    "RunReport",
    "SpecError",
    "StacSource",
    "StacubeError",
    "TOIError",
    "UnknownVariableError",
    "Variable",
    "VersionNotFoundError",
]
