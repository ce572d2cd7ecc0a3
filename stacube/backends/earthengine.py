"""Read a patch's pixels from Earth Engine for the Items converted from its images.

One stored image: ``getPixels`` on the patch grid for bands whose nodata is 0 (Earth Engine sends
masked pixels as 0; pixels outside the image's footprint become nodata), otherwise ``computePixels``
of the image unmasked to the band's nodata, so no masked pixel reads as a 0. Several images:
``computePixels`` of their mosaic, first Item on top in the catalog's (datetime, id) order like the
STAC backend, unmasked to the cube's nodata. A request asks for all of a patch's bands that share a
nodata value at once and is cut to stay within Earth Engine's limits (48 MB uncompressed counting
one mask byte per pixel, at most 32768 px per side); the ``ee`` client retries 429 and 5xx with
exponential backoff, and at most ``max_concurrency`` requests per process and endpoint are in
flight (a project gets 40).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pystac
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.warp import rio_reproject

from ..catalog.earthengine import HREF_SCHEME, grid_from_geobox
from ..errors import ItemError
from ..grid import PatchIndex
from ..radiometry import IDENTITY, RadiometryError, item_convention, same
from ..spec import CubeSpec
from .base import PatchData

MAX_REQUEST_BYTES = 48 * 1024 * 1024
MAX_GRID_SIDE = 32768
DEFAULT_MAX_CONCURRENCY = 16

_slots: dict[tuple[str, str | None, int], threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def request_slots(api_url: str, project: str | None,
                  limit: int = DEFAULT_MAX_CONCURRENCY) -> threading.BoundedSemaphore:
    """The process-wide cap on pixel requests in flight to one endpoint and project.

    Looked up at read time rather than set when a backend is built, so it also holds on Dask workers,
    which receive a pickled backend. Prefect flows add a cap across processes on top.
    """
    key = (api_url, project, max(1, int(limit)))
    with _slots_lock:
        if key not in _slots:
            _slots[key] = threading.BoundedSemaphore(key[2])
        return _slots[key]


def request_windows(shape: tuple[int, int], bytes_per_pixel: int, max_bytes: int = MAX_REQUEST_BYTES,
                    max_side: int = MAX_GRID_SIDE) -> list[tuple[slice, slice]]:
    """Windows covering ``shape`` such that each request stays within Earth Engine's limits.

    A request counts its band bytes (all bands asked for) plus one mask byte per pixel; rows are kept
    whole when they fit.
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


def _source_grid(item: pystac.Item, band: str) -> tuple:
    fields = item.assets[band].extra_fields
    return tuple(fields["proj:shape"]), tuple(fields["proj:transform"][:6]), fields["proj:code"]


def _footprint_mask(grid: tuple, dst: GeoBox) -> np.ndarray:
    """Where an image's own grid (shape, transform, CRS from the band's ``proj:*``) covers ``dst``."""
    shape, transform, crs = grid
    src = GeoBox(shape, Affine(*transform), crs)
    covered = np.zeros(dst.shape.yx, dtype="uint8")
    rio_reproject(np.ones(src.shape.yx, dtype="uint8"), covered, src, dst, "nearest", src_nodata=None, dst_nodata=0)
    return covered.astype(bool)


def _source_itemsize(items: Sequence[pystac.Item], band: str, dtype: np.dtype) -> int:
    """Bytes a pixel of ``band`` weighs in Earth Engine's answer: the source's type or the cube's, if wider."""
    sizes = [np.dtype(dtype).itemsize]
    for item in items:
        for declared in item.assets[band].extra_fields.get("raster:bands", []):
            if declared.get("data_type"):
                sizes.append(np.dtype(declared["data_type"]).itemsize)
    return max(sizes)


def _same_nodata_groups(wanted: Mapping[str, tuple[np.dtype, Any]]) -> list[list[str]]:
    """Bands that share a nodata value (NaN equals NaN): one mosaic request can unmask each group."""
    groups: dict[Any, list[str]] = {}
    for band, (_, nodata) in wanted.items():
        key = "nan" if isinstance(nodata, float) and np.isnan(nodata) else nodata
        groups.setdefault(key, []).append(band)
    return list(groups.values())


def read_bands(items: Sequence[pystac.Item], wanted: Mapping[str, tuple[Any, Any]], geobox: GeoBox,
               slots: threading.BoundedSemaphore | None = None) -> dict[str, np.ndarray]:
    """The bands of ``wanted`` (band -> (dtype, nodata)) of the mosaic of ``items`` (first on top) on
    ``geobox``; pixels no image covers get the band's nodata.

    One request per window asks for every band at once (a 64-band embedding is one request, not 64),
    windows sized by the sum of the bands' bytes. A mosaic is unmasked to the nodata of its bands,
    so bands with different nodata values go in separate requests.
    """
    import ee

    wanted = {band: (np.dtype(dtype), nodata) for band, (dtype, nodata) in wanted.items()}
    out = {band: np.full(geobox.shape.yx, nodata, dtype=dtype) for band, (dtype, nodata) in wanted.items()}
    if not items or not wanted:
        return out
    slots = slots or request_slots("", None)
    first = next(iter(wanted))
    ids = [asset_id(item, first) for item in items]
    requests = []  # (bands, request, fetch, whether pixels outside the image's footprint must be masked)
    if len(ids) == 1:
        image = ee.Image(ids[0])
        for group in _same_nodata_groups(wanted):
            if wanted[group[0]][1] == 0:  # getPixels sends masked pixels as 0: right where nodata is 0
                requests.append((group, {"assetId": ids[0], "fileFormat": "NPY", "bandIds": group},
                                 ee.data.getPixels, True))
            else:  # anything else must be unmasked by Earth Engine, or masked pixels would read as 0
                requests.append((group, {"expression": image.select(group).unmask(wanted[group[0]][1]),
                                         "fileFormat": "NPY"}, ee.data.computePixels, False))
    else:  # Earth Engine's mosaic puts the last image on top: hand them over last-first
        mosaic = ee.ImageCollection([ee.Image(i) for i in reversed(ids)]).mosaic()
        requests = [(group, {"expression": mosaic.select(group).unmask(wanted[group[0]][1]), "fileFormat": "NPY"},
                     ee.data.computePixels, False) for group in _same_nodata_groups(wanted)]
    for bands, request, fetch, outside_footprint in requests:
        weight = sum(_source_itemsize(items, band, wanted[band][0]) for band in bands)
        for window in request_windows(geobox.shape.yx, weight, max_bytes=MAX_REQUEST_BYTES):
            part = geobox[window]
            with slots:
                payload = fetch({**request, "grid": grid_from_geobox(part)})
            answer = np.load(io.BytesIO(payload), allow_pickle=False)
            footprints: dict[tuple, np.ndarray] = {}
            for band in bands:
                dtype, nodata = wanted[band]
                values = answer[band].astype(dtype, copy=False)
                if outside_footprint:
                    grid = _source_grid(items[0], band)
                    if grid not in footprints:
                        footprints[grid] = _footprint_mask(grid, part)
                    values = np.where(footprints[grid], values, np.asarray(nodata, dtype=dtype))
                out[band][window] = values
    return out


def read_band(items: Sequence[pystac.Item], band: str, geobox: GeoBox, dtype: Any, nodata: Any) -> np.ndarray:
    """One band of the mosaic of ``items`` on ``geobox`` (see ``read_bands``)."""
    return read_bands(items, {band: (dtype, nodata)}, geobox)[band]


class EarthEngineBackend:
    """Reads a cube's patches from Earth Engine, one band per variable, for the Items planning attached."""

    def __init__(self, spec: CubeSpec):
        self.spec = spec
        self.source = spec.source

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
                target = self.spec.variables[variable].convention
                convention = item_convention(item, band, self.source.radiometry, target or IDENTITY)
                if target is not None and not same(convention, target):
                    # Earth Engine mosaics and casts on its side: Items are read in the cube's convention only.
                    raise RadiometryError(
                        f"Item {item.id} band {band!r} holds values with {convention}, but variable {variable!r} "
                        f"declares {target}: an Earth Engine cube stores its images' numbers as they are; declare "
                        "the images' convention on the variable, or radiometry='as-cube' on the source")

    def read(self, patch: PatchIndex) -> PatchData:
        from ..ee_client import initialize

        source = self.source
        initialize(source.api_url, source.project)  # once per process (also on Dask workers)
        wanted = {band: (self.spec.variables[name].numpy_dtype, self.spec.variables[name].nodata)
                  for name, band in source.bands.items()}
        slots = request_slots(source.api_url, source.project, source.max_concurrency)
        bands = read_bands(patch.items, wanted, patch.geobox, slots)
        return PatchData({name: bands[band] for name, band in source.bands.items()})
