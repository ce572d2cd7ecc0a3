"""A deterministic synthetic collection: overlapping COG tiles with nodata borders, as STAC Items.

The demo and the tests need a source that behaves like ArcticDEM (projected CRS, overlapping
tiles, nodata at tile borders, a float band and a uint8 mask) without any network. Values are a
smooth function of position plus a per-tile offset, so overlaps differ and the mosaic rule shows.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pystac
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.transform import Affine

from ..lonlat import lonlat_footprint

DEM_NODATA = -9999.0
MASK_NODATA = 0


@dataclass(frozen=True)
class SampleLayout:
    """Where the synthetic tiles sit: a grid of ``rows x cols`` tiles overlapping by ``overlap`` px."""

    crs: str = "EPSG:3413"
    """The tiles' CRS."""
    origin: tuple[float, float] = (-100_000.0, -2_000_000.0)
    """Upper-left x, y."""
    resolution: float = 10.0
    """Pixel size in CRS units."""
    tile_size: int = 512
    """Pixels a side of each tile."""
    overlap: int = 64
    """Pixels neighbouring tiles share."""
    border: int = 12
    """Nodata pixels along each tile edge."""
    rows: int = 4
    """Tile rows."""
    cols: int = 4
    """Tile columns."""
    times: tuple[str, ...] = ()
    """Empty: one acquisition per tile (spatial-only source)."""
    file_nodata: bool = True
    """False: the COG files carry no nodata tag."""
    item_nodata: bool = True
    """False: the Items' raster:bands declare no nodata."""

    @property
    def step(self) -> int:
        return self.tile_size - self.overlap

    def tile_geobox(self, row: int, col: int) -> GeoBox:
        x0 = self.origin[0] + col * self.step * self.resolution
        y0 = self.origin[1] - row * self.step * self.resolution
        transform = Affine(self.resolution, 0, x0, 0, -self.resolution, y0)
        return GeoBox((self.tile_size, self.tile_size), transform, self.crs)

    def extent_geobox(self) -> GeoBox:
        """The GeoBox covering every tile: a natural zone for a cube over this sample."""
        ny = self.step * (self.rows - 1) + self.tile_size
        nx = self.step * (self.cols - 1) + self.tile_size
        transform = Affine(self.resolution, 0, self.origin[0], 0, -self.resolution, self.origin[1])
        return GeoBox((ny, nx), transform, self.crs)


def surface(geobox: GeoBox) -> np.ndarray:
    """A smooth terrain-like field (metres) on a GeoBox, identical wherever tiles overlap."""
    xs = geobox.coords["x"].values
    ys = geobox.coords["y"].values
    xx, yy = np.meshgrid(xs, ys)
    return (500 + 200 * np.sin(xx / 7_000.0) * np.cos(yy / 5_000.0) + (xx - yy) / 1_000.0).astype("float32")


def _tile_arrays(layout: SampleLayout, row: int, col: int, time_index: int) -> tuple[np.ndarray, np.ndarray]:
    geobox = layout.tile_geobox(row, col)
    tile_number = row * layout.cols + col
    dem = surface(geobox) + np.float32(0.25 * tile_number + 10.0 * time_index)
    mask = np.full(dem.shape, 1 + (tile_number % 3), dtype="uint8")
    b = layout.border
    # Ragged nodata borders, as real strips have: width varies along the edge.
    ragged = (np.arange(layout.tile_size) * 7 + tile_number * 13) % 5
    invalid = np.zeros(dem.shape, dtype=bool)
    invalid[:b, :] = invalid[-b:, :] = invalid[:, :b] = invalid[:, -b:] = True
    for i, extra in enumerate(ragged):
        invalid[i, : b + extra] = True
        invalid[i, layout.tile_size - b - extra :] = True
    dem[invalid] = DEM_NODATA
    mask[invalid] = MASK_NODATA
    return dem, mask


def _write_cog(path: Path, data: np.ndarray, geobox: GeoBox, nodata: float | int | None) -> None:
    profile = {
        "driver": "COG",
        "width": data.shape[1],
        "height": data.shape[0],
        "count": 1,
        "dtype": data.dtype.name,
        "crs": str(geobox.crs),
        "transform": geobox.transform,
        "nodata": nodata,
        "blocksize": 256,
        "compress": "deflate",
        "overview_resampling": "nearest",
    }
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data, 1)


def _item(layout: SampleLayout, row: int, col: int, when: pd.Timestamp, stem: str, collection: str) -> pystac.Item:
    geobox = layout.tile_geobox(row, col)
    outline = lonlat_footprint(geobox.extent)
    footprint = outline.__geo_interface__
    west, south, east, north = outline.bounds
    epsg = geobox.crs.epsg
    properties = {
        "datetime": when.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "proj:code": f"EPSG:{epsg}",
        "proj:shape": [layout.tile_size, layout.tile_size],
        "proj:transform": list(geobox.transform)[:6],
        "proj:bbox": list(geobox.extent.boundingbox),
    }
    item = pystac.Item(
        id=stem,
        geometry=footprint,
        bbox=[west, south, east, north],
        datetime=when.to_pydatetime(),
        properties=properties,
        collection=collection,
        stac_extensions=[
            "https://stac-extensions.github.io/projection/v2.0.0/schema.json",
            "https://stac-extensions.github.io/raster/v1.1.0/schema.json",
        ],
    )
    for key, dtype, nodata, unit in (("dem", "float32", DEM_NODATA, "m"), ("datamask", "uint8", MASK_NODATA, None)):
        band: dict = {"data_type": dtype, "nodata": nodata} if layout.item_nodata else {"data_type": dtype}
        if unit:
            band["unit"] = unit
        item.add_asset(
            key,
            pystac.Asset(
                href=f"{stem}_{key}.tif",
                media_type="image/tiff; application=geotiff; profile=cloud-optimized",
                roles=["data"],
                extra_fields={"raster:bands": [band]},
            ),
        )
    return item


def generate_sample(folder: str | Path, layout: SampleLayout | None = None, collection: str = "sample-dem") -> Path:
    """Write COGs and ``items.json`` (relative hrefs) into ``folder``; return the folder.

    Deterministic: the same layout always gives the same bytes of pixel data.
    """
    layout = layout or SampleLayout()
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    times = [pd.Timestamp(t) for t in layout.times] or [pd.Timestamp("2020-07-01T12:00:00")]
    items = []
    for t_index, when in enumerate(times):
        for row in range(layout.rows):
            for col in range(layout.cols):
                stem = f"tile_r{row}_c{col}" + (f"_{when:%Y%m%d}" if layout.times else "")
                dem, mask = _tile_arrays(layout, row, col, t_index)
                geobox = layout.tile_geobox(row, col)
                file_nodata = layout.file_nodata
                _write_cog(folder / f"{stem}_dem.tif", dem, geobox, DEM_NODATA if file_nodata else None)
                _write_cog(folder / f"{stem}_datamask.tif", mask, geobox, MASK_NODATA if file_nodata else None)
                items.append(_item(layout, row, col, when, stem, collection).to_dict(include_self_link=False))
    (folder / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}))
    (folder / "layout.json").write_text(json.dumps({**layout.__dict__, "collection": collection}))
    return folder


def publish_items(folder: str | Path, base_url: str, out: str | Path | None = None) -> Path:
    """Write an ItemCollection whose asset hrefs point at ``base_url`` (where the COGs are served)."""
    folder = Path(folder)
    collection = json.loads((folder / "items.json").read_text())
    for feature in collection["features"]:
        for asset in feature["assets"].values():
            asset["href"] = f"{base_url.rstrip('/')}/{asset['href'].rsplit('/', 1)[-1]}"
    out = Path(out) if out else folder / "items-served.json"
    out.write_text(json.dumps(collection))
    return out
