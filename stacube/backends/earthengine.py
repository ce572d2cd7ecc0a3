"""Read a patch's pixels from Earth Engine for the Items converted from its images.

One stored image: ``getPixels`` on the patch grid (pixels outside the image's footprint become the
cube's nodata). Several images: ``computePixels`` of their mosaic, first Item on top in the
catalog's (datetime, id) order like the STAC backend, unmasked to the cube's nodata. Requests are
cut to stay within Earth Engine's limits (48 MB uncompressed counting one mask byte per pixel, at
most 32768 px per side); the ``ee`` client retries 429 and 5xx with exponential backoff, and at most
``max_concurrency`` requests per process are in flight (a project gets 40).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pystac
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.warp import rio_reproject

from ..catalog.earthengine import HREF_SCHEME, grid_from_geobox
from ..errors import ItemError
from ..grid import PatchIndex
from ..spec import CubeSpec

MAX_REQUEST_BYTES = 48 * 1024 * 1024
MAX_GRID_SIDE = 32768
DEFAULT_MAX_CONCURRENCY = 16

_slots = threading.BoundedSemaphore(DEFAULT_MAX_CONCURRENCY)


def set_max_concurrency(requests: int) -> None:
    """Cap the pixel requests in flight from this process (Prefect flows add a global limit on top)."""
    global _slots
    _slots = threading.BoundedSemaphore(max(1, requests))


def request_windows(shape: tuple[int, int], bytes_per_pixel: int, max_bytes: int = MAX_REQUEST_BYTES,
                    max_side: int = MAX_GRID_SIDE) -> list[tuple[slice, slice]]:
    """Windows covering ``shape`` such that each request stays within Earth Engine's limits.

    A request counts its band bytes plus one mask byte per pixel; rows are kept whole when they fit.
    """
    ny, nx = shape
    max_pixels = max(1, max_bytes // (bytes_per_pixel + 1))
    width = min(nx, max_side, max_pixels)
    height = min(ny, max_side, max(1, max_pixels // width))
    return [(slice(y, min(y + height, ny)), slice(x, min(x + width, nx)))
            for y in range(0, ny, height) for x in range(0, nx, width)]


def asset_id(item: pystac.Item, band: str) -> str:
    href = item.assets[band].href
    if not href.startswith(HREF_SCHEME):
        raise ValueError(f"Item {item.id} asset {band!r} is not an Earth Engine asset: {href!r}")
    return href[len(HREF_SCHEME):]


def _footprint_mask(item: pystac.Item, band: str, dst: GeoBox) -> np.ndarray:
    """Where the image's own grid (``proj:*`` of the band's asset) covers ``dst``."""
    fields = item.assets[band].extra_fields
    src = GeoBox(tuple(fields["proj:shape"]), Affine(*fields["proj:transform"][:6]), fields["proj:code"])
    covered = np.zeros(dst.shape.yx, dtype="uint8")
    rio_reproject(np.ones(src.shape.yx, dtype="uint8"), covered, src, dst, "nearest", src_nodata=None, dst_nodata=0)
    return covered.astype(bool)


def _decode(payload: bytes, band: str) -> np.ndarray:
    return np.load(io.BytesIO(payload), allow_pickle=False)[band]


def read_band(items: Sequence[pystac.Item], band: str, geobox: GeoBox, dtype: Any, nodata: Any) -> np.ndarray:
    """``band`` of the mosaic of ``items`` (first on top) on ``geobox``, uncovered pixels set to ``nodata``."""
    import ee

    out = np.full(geobox.shape.yx, nodata, dtype=dtype)
    if not items:
        return out
    ids = [asset_id(item, band) for item in items]
    if len(ids) == 1:
        request, fetch = {"assetId": ids[0], "fileFormat": "NPY", "bandIds": [band]}, ee.data.getPixels
    else:  # Earth Engine's mosaic puts the last image on top: hand them over last-first
        images = ee.ImageCollection([ee.Image(i) for i in reversed(ids)])
        request = {"expression": images.mosaic().select([band]).unmask(nodata), "fileFormat": "NPY"}
        fetch = ee.data.computePixels
    for window in request_windows(geobox.shape.yx, np.dtype(dtype).itemsize, max_bytes=MAX_REQUEST_BYTES):
        part = geobox[window]
        with _slots:
            payload = fetch({**request, "grid": grid_from_geobox(part)})
        values = _decode(payload, band).astype(dtype, copy=False)
        if len(ids) == 1:
            values = np.where(_footprint_mask(items[0], band, part), values, np.asarray(nodata, dtype=dtype))
        out[window] = values
    return out


class EarthEngineBackend:
    """Reads a cube's patches from Earth Engine, one band per variable, for the Items planning attached."""

    def __init__(self, spec: CubeSpec):
        self.spec = spec
        self.source = spec.source
        set_max_concurrency(self.source.max_concurrency)

    def check_items(self, items: list[pystac.Item]) -> None:
        for item in items:
            for variable, band in self.source.bands.items():
                asset = item.assets.get(band)
                if asset is None:
                    raise ItemError(f"Item {item.id} has no band {band!r} for variable {variable!r} "
                                    f"(bands: {sorted(item.assets)})")
                missing = [k for k in ("proj:code", "proj:transform", "proj:shape") if k not in asset.extra_fields]
                if not asset.href.startswith(HREF_SCHEME) or missing:
                    raise ItemError(f"Item {item.id} band {band!r} is not a converted Earth Engine band "
                                    f"(href {asset.href!r}, missing {missing})")

    def read(self, patch: PatchIndex) -> dict[str, np.ndarray]:
        from ..ee_client import initialize

        initialize(self.source.api_url, self.source.project)  # once per process (also on Dask workers)
        out = {}
        for name, band in self.source.bands.items():
            variable = self.spec.variables[name]
            out[name] = read_band(patch.items, band, patch.geobox, variable.numpy_dtype, variable.nodata)
        return out
