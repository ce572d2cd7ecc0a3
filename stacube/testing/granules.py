"""Synthetic Sentinel-2 L2A-like granules (COGs and STAC Items) in several UTM zones, offline.

Multi-zone cubes must be tested where real collections are awkward: granules that reach past
their UTM zone's edge, two granules of one pass on one day, passes near the date line. These are
small (128 px at 10 m) but shaped like Earth Search's ``sentinel-2-l2a``: the same asset keys,
10 m and 20 m assets with their own ``proj:shape``/``proj:transform``, ``proj:code`` per Item,
``eo:cloud_cover``, nodata 0 with a nodata edge, and its radiometry: every reflectance asset
declares scale 0.0001 and offset -0.1, while the pixels of a granule of baseline 04.00 or later
flagged ``earthsearch:boa_offset_applied`` hold DN - 1000 (clamped at 1), as Element 84 wrote
them. Values are smooth functions of position that differ per band and per granule, so mosaic
order shows; ``bands`` functions give ESA's DN, before that shift.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pystac
from affine import Affine
from odc.geo.geobox import GeoBox
from pyproj import Transformer

from ..lonlat import lonlat_footprint
from .generate import _write_cog

# Earth Search asset key -> (band, resolution in metres, dtype)
S2_ASSETS: dict[str, tuple[str, int, str]] = {
    "blue": ("B02", 10, "uint16"), "green": ("B03", 10, "uint16"), "red": ("B04", 10, "uint16"),
    "nir": ("B08", 10, "uint16"), "swir16": ("B11", 20, "uint16"), "swir22": ("B12", 20, "uint16"),
    "scl": ("SCL", 20, "uint8"),
}
SCL_CLASSES = (4, 5, 6, 8, 9, 3, 10)  # vegetation, bare soil, water, cloud medium/high, shadow, snow
EXTENSIONS = ["https://stac-extensions.github.io/projection/v2.0.0/schema.json",
              "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
              "https://stac-extensions.github.io/eo/v1.1.0/schema.json"]


@dataclass(frozen=True)
class Granule:
    """One synthetic granule: an id, its UTM CRS, its upper-left corner, when and how cloudy."""

    id: str
    """The granule's Item id (Earth Search style, e.g. ``S2A_33TTN_20240605_0_L2A``)."""
    crs: str
    """Its UTM CRS."""
    origin: tuple[float, float]
    """Upper-left x, y in metres, multiples of 60 m (10/20/60 m grids align)."""
    when: pd.Timestamp
    """The acquisition time (UTC)."""
    cloud_cover: float
    """``eo:cloud_cover``, in percent."""
    size: int = 128
    """Pixels a side at 10 m."""
    baseline: str = "05.10"
    """``s2:processing_baseline``: from "04.00" on, reflectance = DN * 0.0001 - 0.1."""
    offset_applied: bool | None = True
    """``earthsearch:boa_offset_applied`` (None: the property is absent)."""

    @property
    def shifted(self) -> bool:
        """Whether Element 84 subtracted the offset from the pixels (what the flag claims here)."""
        return bool(self.offset_applied) and tuple(int(v) for v in self.baseline.split(".")) >= (4, 0)

    def geobox(self, resolution: float = 10.0) -> GeoBox:
        n = int(self.size * 10 / resolution)
        return GeoBox((n, n), Affine(resolution, 0.0, self.origin[0], 0.0, -resolution, self.origin[1]), self.crs)


def _seed(granule: Granule) -> int:
    return zlib.crc32(granule.id.encode()) % 20


def _nodata_edge(granule: Granule, xx: np.ndarray, yy: np.ndarray) -> np.ndarray:
    """Nodata along the top and a ragged wedge on the right, by pixel-centre position (same area at 10 and 20 m)."""
    x0, y0 = granule.origin
    width = granule.size * 10.0
    top = yy > y0 - granule.size * 10.0 / 16
    wedge = ((np.floor((y0 - yy) / 20.0) % 7) + 2) * 20.0
    return top | (xx > x0 + width - wedge)


def granule_bands(granule: Granule) -> dict[str, np.ndarray]:
    """Every asset's pixels at its native resolution (nodata 0 on the granule's edge)."""
    out = {}
    seed = _seed(granule)
    for index, (asset, (_, resolution, dtype)) in enumerate(S2_ASSETS.items()):
        box = granule.geobox(resolution)
        xx, yy = np.meshgrid(box.coords["x"].values, box.coords["y"].values)
        if asset == "scl":
            classes = np.asarray(SCL_CLASSES)
            values = classes[((xx // 400).astype(int) + (yy // 400).astype(int) + seed) % len(classes)]
        else:
            values = 1000 + 500 * index + 400 * np.sin(xx / 900.0) * np.cos(yy / 700.0) + 37 * seed
            values = np.clip(values, 1, 20000)
        values = values.astype(dtype)
        values[_nodata_edge(granule, xx, yy)] = 0
        out[asset] = values
    return out


def _item(granule: Granule, collection: str) -> pystac.Item:
    footprint = lonlat_footprint(granule.geobox().extent)
    epsg = int(granule.crs.split(":")[1])
    zone = epsg % 100
    item = pystac.Item(
        id=granule.id, geometry=footprint.__geo_interface__, bbox=list(footprint.bounds),
        datetime=granule.when.to_pydatetime(), collection=collection, stac_extensions=EXTENSIONS,
        properties={"proj:code": granule.crs, "eo:cloud_cover": granule.cloud_cover,
                    "platform": "sentinel-2b" if "S2B" in granule.id else "sentinel-2a",
                    "constellation": "sentinel-2", "mgrs:utm_zone": zone,
                    "s2:mgrs_tile": granule.id.split("_")[1], "grid:code": f"MGRS-{granule.id.split('_')[1]}",
                    "s2:processing_baseline": granule.baseline,
                    **({} if granule.offset_applied is None else
                       {"earthsearch:boa_offset_applied": granule.offset_applied})},
    )
    for asset, (band, resolution, dtype) in S2_ASSETS.items():
        box = granule.geobox(resolution)
        raster = {"data_type": dtype, "nodata": 0, "spatial_resolution": resolution}
        if asset != "scl":  # Earth Search declares scale and offset -0.1 on every reflectance asset, always
            raster.update(scale=0.0001, offset=-0.1)
        item.add_asset(asset, pystac.Asset(
            href=f"{granule.id}_{band}.tif", media_type="image/tiff; application=geotiff; profile=cloud-optimized",
            roles=["data"],
            extra_fields={"proj:shape": list(box.shape.yx), "proj:transform": list(box.transform)[:6],
                          "raster:bands": [raster], "eo:bands": [{"name": band}]}))
    return item


def as_published(dn: np.ndarray) -> np.ndarray:
    """ESA's DN as Element 84 published a flagged granule: the 1000 DN offset subtracted, clamped at 1
    (0 stays nodata)."""
    shifted = np.clip(dn.astype("int32") - 1000, 1, None)
    return np.where(dn == 0, 0, shifted).astype(dn.dtype)


def generate_sentinel2(folder: str | Path, granules: Sequence[Granule], collection: str = "sentinel-2-l2a",
                       bands: Callable[[Granule], dict[str, np.ndarray]] = granule_bands) -> Path:
    """Write each granule's COGs (pixels from ``bands``) and one ``items.json`` (relative hrefs, as
    ``serve_sample`` expects)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    features = []
    for granule in granules:
        for asset, values in bands(granule).items():
            band, resolution, _ = S2_ASSETS[asset]
            if granule.shifted and asset != "scl":
                values = as_published(values)
            _write_cog(folder / f"{granule.id}_{band}.tif", values, granule.geobox(resolution), 0)
        features.append(_item(granule, collection).to_dict(include_self_link=False))
    (folder / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return folder


def _origin(crs: str, lon: float, lat: float, dx: float = 0.0) -> tuple[float, float]:
    """The UTM position of (lon, lat), moved ``dx`` metres east, snapped to 60 m."""
    x, y = Transformer.from_crs("EPSG:4326", crs, always_xy=True).transform(lon, lat)
    return (round((x + dx) / 60) * 60.0, round(y / 60) * 60.0)


BORDERS = (12.0, 18.0)  # the 32N/33N and 33N/34N zone borders


def border_granules(lat: float = 47.0, size: int = 128) -> list[Granule]:
    """Granules in 32N, 33N and 34N near ``lat``: each zone border has a granule of the western zone
    reaching 380 m past it and one of the eastern zone reaching 380 m back; 33N also has two
    overlapping granules of one pass, three seconds apart. Three days; cloud cover 8-75 %.
    ``size`` (pixels at 10 m) makes larger granules for benchmarks; the overlaps stay as they are."""
    size_m = size * 10.0

    def pair(border: float, west_epsg: str, east_epsg: str, tiles: tuple[str, str], day: str, time: str,
             clouds: tuple[float, float]) -> list[Granule]:
        when = pd.Timestamp(f"{day}T{time}")
        stamp = when.strftime("%Y%m%d")
        return [Granule(f"S2A_{tiles[0]}_{stamp}_0_L2A", west_epsg, _origin(west_epsg, border, lat, 380 - size_m),
                        when, clouds[0], size),
                Granule(f"S2A_{tiles[1]}_{stamp}_0_L2A", east_epsg, _origin(east_epsg, border, lat, -380),
                        when + pd.Timedelta(seconds=3), clouds[1], size)]

    def same_pass(day: str, clouds: tuple[float, float]) -> list[Granule]:
        when = pd.Timestamp(f"{day}T10:30:21")
        stamp = when.strftime("%Y%m%d")
        return [Granule(f"S2B_33TVN_{stamp}_0_L2A", "EPSG:32633", _origin("EPSG:32633", 15.0, lat, -900), when,
                        clouds[0], size),
                Granule(f"S2B_33TWN_{stamp}_0_L2A", "EPSG:32633", _origin("EPSG:32633", 15.0, lat, -300),
                        when + pd.Timedelta(seconds=3), clouds[1], size)]

    return [
        *pair(12.0, "EPSG:32632", "EPSG:32633", ("32TQT", "33TTN"), "2024-06-05", "10:20:11", (12.0, 30.5)),
        *pair(18.0, "EPSG:32633", "EPSG:32634", ("33TYN", "34TCT"), "2024-06-05", "10:00:41", (8.0, 55.0)),
        *pair(12.0, "EPSG:32632", "EPSG:32633", ("32TQT", "33TTN"), "2024-06-10", "10:20:19", (41.0, 75.0)),
        *same_pass("2024-06-10", (20.0, 22.5)),
        *pair(18.0, "EPSG:32633", "EPSG:32634", ("33TYN", "34TCT"), "2024-06-15", "10:00:31", (75.0, 10.0)),
        *same_pass("2024-06-15", (64.0, 3.0)),
    ]


def antimeridian_granules(lat: float = 52.0) -> list[Granule]:
    """Granules either side of 180 degrees (60N ending 200 m west of it, 1N starting 200 m east), on two
    days at 12:00 UTC (local solar time 23:00 on the west side and 01:00 on the east: one date), and a
    60N pass at 23:00 UTC on 2024-06-20, which is 10:00 on 2024-06-21 there: its solar day."""
    west, east = _origin("EPSG:32660", 180.0, lat, -1480), _origin("EPSG:32601", -180.0, lat, 200)
    granules = []
    for day in ("2024-06-05", "2024-06-12"):
        when = pd.Timestamp(f"{day}T12:00:00")
        stamp = when.strftime("%Y%m%d")
        granules += [Granule(f"S2A_60UXC_{stamp}_0_L2A", "EPSG:32660", west, when, 15.0),
                     Granule(f"S2A_01UCT_{stamp}_0_L2A", "EPSG:32601", east, when, 25.0)]
    late = pd.Timestamp("2024-06-20T23:00:00")
    return [*granules, Granule("S2B_60UXC_20240620_0_L2A", "EPSG:32660", west, late, 5.0)]
