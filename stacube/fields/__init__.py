"""Field pipelines: farm parcels, their NDVI/NDMI per acquisition from the Sentinel-2 cube, stored per date."""

from .factory import open_parcel_store
from .groups import assign_groups
from .indices import DEFAULT_MASKED_CLASSES, IndexSettings, parcel_statistics, rasterize_parcels
from .parcels import ParcelImport, clean_parcels, read_parcels
from .run import compute_group, group_geobox
from .store import SCHEMA, ParcelStore

__all__ = ["DEFAULT_MASKED_CLASSES", "SCHEMA", "IndexSettings", "ParcelImport", "ParcelStore", "assign_groups",
           "clean_parcels", "compute_group", "group_geobox", "open_parcel_store", "parcel_statistics",
           "rasterize_parcels", "read_parcels"]
