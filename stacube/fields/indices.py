"""NDVI and NDMI per parcel per acquisition, cloud-masked with the scene classification (SCL).

A Tile of the Sentinel-2 cube over a group of parcels comes in; parcel ids are rasterized once onto
its grid (a pixel belongs to the parcel that contains its centre; where parcels overlap, the one
listed last) and reused for every date. Per date, pixels whose SCL class is masked (default: no
data, saturated, cloud shadow, cloud medium and high probability, thin cirrus, snow) or whose bands
are nodata are left out; statistics are grouped with ``np.bincount`` and one sort, never a loop
over parcels. A parcel-date whose valid fraction is below the threshold is kept as "no usable
data" with its reason: "clouds" (masked by cloud, shadow or snow classes), "nodata" (outside the
granule, defective pixels) or "smaller than a pixel".
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import xarray as xr
from odc.geo.geobox import GeoBox

DEFAULT_MASKED_CLASSES = (0, 1, 3, 8, 9, 10, 11)
CLOUD_CLASSES = (3, 8, 9, 10, 11)  # shadow, cloud medium and high probability, cirrus, snow


@dataclass(frozen=True)
class IndexSettings:
    """How to read the bands and what to mask. Reflectance = DN * scale + offset (Earth Search's
    Sentinel-2 L2A from processing baseline 04.00: 0.0001 and -0.1)."""

    red: str = "B04"
    nir: str = "B08"
    swir: str = "B11"
    scl: str = "SCL"
    masked_classes: tuple[int, ...] = DEFAULT_MASKED_CLASSES
    min_valid_fraction: float = 0.3
    scale: float = 0.0001
    offset: float = -0.1

    @property
    def variables(self) -> list[str]:
        return [self.red, self.nir, self.swir, self.scl]


def rasterize_parcels(geometries: gpd.GeoSeries, geobox: GeoBox) -> np.ndarray:
    """Parcel index + 1 for each pixel of ``geobox`` whose centre lies in a parcel, 0 elsewhere."""
    shapes = ((geometry, index + 1) for index, geometry in enumerate(geometries.to_crs(geobox.crs)))
    return rasterio.features.rasterize(shapes, out_shape=geobox.shape.yx, transform=geobox.transform, fill=0,
                                       dtype="int32")


def _grouped_median(groups: np.ndarray, values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The median of ``values`` within each group (``count`` values each; NaN where none), with one sort."""
    order = np.lexsort((values, groups))
    ordered = values[order]
    starts = np.concatenate(([0], np.cumsum(count)[:-1]))
    median = np.full(len(count), np.nan)
    has = count > 0
    low = ordered[starts[has] + (count[has] - 1) // 2]
    high = ordered[starts[has] + count[has] // 2]
    median[has] = (low + high) / 2
    return median


def _stats(groups: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    count = np.bincount(groups, minlength=n)
    total = np.bincount(groups, weights=values, minlength=n)
    squares = np.bincount(groups, weights=values * values, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    return mean, _grouped_median(groups, values, count), std, count


def parcel_statistics(tile: xr.Dataset, parcels: gpd.GeoDataFrame, settings: IndexSettings | None = None,
                      run_id: str | None = None) -> pd.DataFrame:
    """One row per parcel and time step of ``tile``: NDVI and NDMI mean, median, std, valid pixels,
    the parcel's pixels, the valid fraction, whether it is usable and why not."""
    settings = settings or IndexSettings()
    geobox = tile.odc.geobox
    ids = rasterize_parcels(parcels.geometry, geobox).ravel()
    inside = ids > 0
    groups = ids[inside] - 1
    n = len(parcels)
    pixels = np.bincount(groups, minlength=n)
    parcel_ids = parcels["parcel_id"].astype(str).to_numpy()
    masked = np.asarray(settings.masked_classes)
    frames = []
    for step in range(tile.sizes.get("time", 1)):
        def band(name: str, step: int = step) -> np.ndarray:
            values = tile[name].values
            return (values[step] if "time" in tile[name].dims else values).ravel()[inside]

        scl = band(settings.scl)
        dn = {name: band(name) for name in (settings.red, settings.nir, settings.swir)}
        red, nir, swir = (dn[name].astype("float64") * settings.scale + settings.offset
                          for name in (settings.red, settings.nir, settings.swir))
        valid = ~np.isin(scl, masked) & (dn[settings.red] != 0) & (dn[settings.nir] != 0) & (dn[settings.swir] != 0)
        valid &= (nir + red != 0) & (nir + swir != 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi = (nir - red) / (nir + red)
            ndmi = (nir - swir) / (nir + swir)
        valid &= np.isfinite(ndvi) & np.isfinite(ndmi)
        g = groups[valid]
        ndvi_mean, ndvi_median, ndvi_std, count = _stats(g, ndvi[valid], n)
        ndmi_mean, ndmi_median, ndmi_std, _ = _stats(g, ndmi[valid], n)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(pixels > 0, count / np.maximum(pixels, 1), 0.0)
        clouds = np.bincount(groups, weights=np.isin(scl, CLOUD_CLASSES), minlength=n)
        unusable = ~valid & ~np.isin(scl, CLOUD_CLASSES)
        nodata = np.bincount(groups, weights=unusable, minlength=n)
        usable = (pixels > 0) & (fraction >= settings.min_valid_fraction)
        reason = np.where(usable, None, np.where(pixels == 0, "smaller than a pixel",
                                                 np.where(clouds >= nodata, "clouds", "nodata")))
        when = pd.Timestamp(tile.time.values[step]) if "time" in tile.dims else pd.NaT
        frames.append(pd.DataFrame({
            "parcel_id": parcel_ids, "date": when, "ndvi_mean": ndvi_mean, "ndvi_median": ndvi_median,
            "ndvi_std": ndvi_std, "ndmi_mean": ndmi_mean, "ndmi_median": ndmi_median, "ndmi_std": ndmi_std,
            "valid_pixels": count, "total_pixels": pixels, "valid_fraction": fraction, "usable": usable,
            "reason": reason, "run_id": run_id,
        }))
    columns = ["parcel_id", "date", "ndvi_mean", "ndvi_median", "ndvi_std", "ndmi_mean", "ndmi_median", "ndmi_std",
               "valid_pixels", "total_pixels", "valid_fraction", "usable", "reason", "run_id"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def no_acquisition(parcels: gpd.GeoDataFrame, period_start: pd.Timestamp, run_id: str | None = None) -> pd.DataFrame:
    """Rows recording that a period had no acquisition at all over these parcels (not silently dropped)."""
    n = len(parcels)
    return pd.DataFrame({
        "parcel_id": parcels["parcel_id"].astype(str).to_numpy(), "date": pd.Timestamp(period_start),
        "ndvi_mean": np.nan, "ndvi_median": np.nan, "ndvi_std": np.nan, "ndmi_mean": np.nan,
        "ndmi_median": np.nan, "ndmi_std": np.nan, "valid_pixels": np.zeros(n, int), "total_pixels": np.zeros(n, int),
        "valid_fraction": np.zeros(n), "usable": np.zeros(n, bool), "reason": "no acquisition", "run_id": run_id,
    })
