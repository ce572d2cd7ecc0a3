"""A synthetic Sentinel-2 growing season over farm parcels on both sides of a UTM zone border.

Field pipelines need parcels whose NDVI follows a crop's phenology, clouds that move and are
classified in SCL, two UTM zones, a parcel across the border, an invalid geometry and a week with
no acquisition, all offline. Each parcel's NDVI rises to a peak on its own day of the season and
falls again; NDMI follows it; pixels vary a little around the parcel's value. Reflectances are
written as Earth Search's L2A digital numbers (reflectance = DN * 0.0001 - 0.1).
"""

from __future__ import annotations

from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
from pyproj import Transformer

from .granules import S2_ASSETS, Granule

BORDER_LON, LAT = 12.0, 47.0
SCALE, OFFSET = 0.0001, -0.1
SIZE = 256  # granule pixels a side at 10 m: 2.56 km


@dataclass(frozen=True)
class Season:
    """Acquisition days (a gap of two weeks in the middle: one week without any) and the granules."""

    days: tuple[str, ...] = ("2024-05-02", "2024-05-07", "2024-05-12", "2024-05-17", "2024-06-01", "2024-06-06",
                             "2024-06-11", "2024-06-16")
    """The acquisition days of the season, in order."""

    def granules(self) -> list[Granule]:
        out = []
        for n, day in enumerate(self.days):
            when = pd.Timestamp(f"{day}T10:20:11")
            stamp = when.strftime("%Y%m%d")
            for epsg, tile, dx in (("EPSG:32632", "32TQT", 800 - SIZE * 10), ("EPSG:32633", "33TTN", -800)):
                x, y = Transformer.from_crs("EPSG:4326", epsg, always_xy=True).transform(BORDER_LON, LAT)
                origin = (round((x + dx) / 60) * 60.0, round(y / 60) * 60.0 + 600.0)
                out.append(Granule(f"S2A_{tile}_{stamp}_{n}_L2A", epsg, origin, when, 20.0, SIZE))
        return out


def season_parcels() -> gpd.GeoDataFrame:
    """A 4 x 6 field grid of ~200 x 150 m parcels across 12 E, one parcel astride the border, and one
    self-intersecting (invalid, repairable) parcel; ids ``P00``..; EPSG:4326."""
    rows = []
    to_lonlat = Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True)
    x0, y0 = Transformer.from_crs("EPSG:4326", "EPSG:32633", always_xy=True).transform(BORDER_LON, LAT)
    for r in range(4):
        for c in range(6):
            left, top = x0 - 700 + c * 230, y0 - 100 - r * 180
            corners = [(left, top), (left + 200, top), (left + 200, top - 150), (left, top - 150)]
            rows.append({"parcel_id": f"P{r}{c}", "geometry": shapely.Polygon([to_lonlat.transform(*p)
                                                                               for p in corners])})
    bowtie = [(x0 + 700, y0 - 100), (x0 + 900, y0 - 250), (x0 + 900, y0 - 100), (x0 + 700, y0 - 250)]
    rows.append({"parcel_id": "BOWTIE", "geometry": shapely.Polygon([to_lonlat.transform(*p) for p in bowtie])})
    return gpd.GeoDataFrame(rows, geometry="geometry", crs="EPSG:4326")


def _peak_day(parcel_index: int) -> float:
    return 140.0 + 7.0 * (parcel_index % 6)  # day of year of the crop's peak: 20 May to 24 June


def ndvi_of(parcel_index: int, day_of_year: float) -> float:
    """The parcel's NDVI on a day: bare soil 0.15 rising to 0.85 at its peak (a Gaussian season)."""
    return 0.15 + 0.7 * float(np.exp(-(((day_of_year - _peak_day(parcel_index)) / 25.0) ** 2)))


def season_bands(granule: Granule) -> dict[str, np.ndarray]:
    """Pixels of one granule: parcels at their phenology, background at NDVI 0.2, a moving cloud."""
    parcels = season_parcels()
    day = granule.when.day_of_year
    out: dict[str, np.ndarray] = {}
    for asset, (_, resolution, dtype) in S2_ASSETS.items():
        box = granule.geobox(resolution)
        shapes = ((geometry, index + 1) for index, geometry in enumerate(parcels.to_crs(box.crs).geometry))
        ids = rasterio.features.rasterize(shapes, out_shape=box.shape.yx, transform=box.transform, fill=0,
                                          dtype="int32")
        ndvi = np.full(box.shape.yx, 0.2)
        for index in range(len(parcels)):
            ndvi[ids == index + 1] = ndvi_of(index, day)
        xx, yy = np.meshgrid(box.coords["x"].values, box.coords["y"].values)
        ndvi = np.clip(ndvi + 0.03 * np.sin(xx / 37.0) * np.cos(yy / 23.0), 0.05, 0.95)  # within-field texture
        ndmi = 0.6 * ndvi - 0.15
        red = 0.04 + 0.12 * (1 - ndvi)
        nir = red * (1 + ndvi) / (1 - ndvi)
        swir = nir * (1 - ndmi) / (1 + ndmi)
        reflectance = {"blue": red * 0.8, "green": red * 1.1, "red": red, "nir": nir, "swir16": swir,
                       "swir22": swir * 0.7}
        if asset == "scl":
            lon_shift = (day - 120) * 60.0  # the cloud drifts east 60 m a day
            x_centre = Transformer.from_crs("EPSG:4326", box.crs, always_xy=True).transform(BORDER_LON, LAT)[0]
            cloud = np.hypot(xx - (x_centre - 1500 + lon_shift), yy - (granule.origin[1] - 900)) < 450
            shadow = np.hypot(xx - (x_centre - 1500 + lon_shift + 200), yy - (granule.origin[1] - 1250)) < 300
            values = np.where(ids > 0, 4, 5)
            values = np.where(shadow & ~cloud, 3, values)
            values = np.where(cloud, 9, values).astype(dtype)
        else:
            values = np.clip(np.round((reflectance[asset] - OFFSET) / SCALE), 1, 65535).astype(dtype)
        out[asset] = values
    return out
