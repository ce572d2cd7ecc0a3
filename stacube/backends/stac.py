"""Read a patch from STAC Items with odc-stac: windowed reads of COGs, mosaicked by odc-stac's rule.

Mosaic rule (deterministic, whatever the order Items arrive in): within one patch, Items are
ordered by (datetime, id) and the first valid pixel wins; this is odc-stac's default fuser.
Source nodata comes from each asset's ``raster:bands`` (or the file) and becomes the cube
variable's nodata, so an Item's nodata border never counts as data.
"""

from __future__ import annotations

import logging
import re
import threading
from typing import Any

import numpy as np
import odc.stac
import pystac
import rasterio.cache
import rasterio.errors

from ..errors import AssetReadError, ItemError
from ..grid import PatchIndex
from ..spec import CubeSpec
from .base import PatchData

_PROJ_CRS_KEYS = ("proj:code", "proj:epsg", "proj:wkt2", "proj:projjson")
_PROJ_GRID_KEYS = ("proj:transform", "proj:bbox")
_configured = threading.Event()
log = logging.getLogger(__name__)


def _single_group(item: pystac.Item, parsed: object, index: int) -> int:
    """Every Item of a patch goes into one pixel plane (the patch is one time step already)."""
    return 0


def _has_any(item: pystac.Item, asset: pystac.Asset, keys: tuple[str, ...]) -> bool:
    return any(k in item.properties or k in asset.extra_fields for k in keys)


def _declared_nodata(items: tuple[pystac.Item, ...], asset: str) -> float | int | None:
    """The nodata the Items declare for ``asset`` (raster:bands, STAC 1.1 bands, or the asset), if any."""
    for item in items:
        fields = item.assets[asset].extra_fields
        for band in fields.get("raster:bands", []) + fields.get("bands", []):
            if band.get("nodata") is not None:
                return band["nodata"]
        if fields.get("nodata") is not None:
            return fields["nodata"]
    return None


def to_cube_nodata(values: np.ndarray, source_nodata: float | int | None, dtype: np.dtype, nodata) -> np.ndarray:
    """Cast to the cube dtype, turning the source's nodata (and NaN) into the cube's nodata.

    ``values`` is a freshly loaded array that the caller gives up: it is changed in place where the
    dtype already matches (a patch's worth of copying saved per variable)."""
    if dtype.kind == "b":
        invalid = values == source_nodata if source_nodata is not None else np.zeros(values.shape, bool)
        out = values.astype(bool)
        out[invalid] = bool(nodata)
        return out
    invalid = None
    if source_nodata is not None and not (isinstance(source_nodata, float) and np.isnan(source_nodata)):
        invalid = values == source_nodata
    nan_is_nodata = dtype.kind == "f" and isinstance(nodata, float) and np.isnan(nodata)
    if values.dtype.kind == "f" and not nan_is_nodata:  # a NaN that stays NaN is the cube's nodata already
        invalid = np.isnan(values) if invalid is None else invalid | np.isnan(values)
    out = values.astype(dtype, copy=False)
    if invalid is not None:
        out[invalid] = nodata
    return out


GDAL_HTTP_RETRIES = {"GDAL_HTTP_MAX_RETRY": "3", "GDAL_HTTP_RETRY_DELAY": "0.5"}
QUICK_RETRIES = 2  # immediate re-reads of a failed patch load before the runner's retry


def _chain_text(error: BaseException | None) -> str:
    """The messages of an error and of the errors it came from (GDAL's detail is often one level down)."""
    text, seen = "", set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        text += f" {error}"
        error = error.__cause__ or error.__context__
    return text


def _status_error(error: BaseException) -> bool:
    """Whether a read failed on an HTTP 429 or 5xx answer (which GDAL itself retries)."""
    return re.search(r"HTTP (?:response|error) code:? (?:429|5\d\d)", _chain_text(error)) is not None


def _named_in(error: BaseException, hrefs: list[str]) -> list[str]:
    """The hrefs an error (or the errors it came from) names by URL or file name."""
    text = _chain_text(error)
    return [href for href in dict.fromkeys(hrefs) if href in text or href.rsplit("/", 1)[-1] in text]


def _first_unreadable(hrefs: list[str]) -> str | None:
    """The first asset GDAL cannot open, so a failed patch names its file (odc-stac's error does not)."""
    for href in hrefs:
        try:
            with rasterio.Env(GDAL_HTTP_MAX_RETRY="0"), rasterio.open(href):
                pass
        except (rasterio.errors.RasterioError, OSError):
            return href
    return None


class StacBackend:
    """Patches from STAC Items whose assets are rasters GDAL can read (COGs over HTTP, files, S3)."""

    def __init__(self, spec: CubeSpec):
        self.spec = spec
        self.assets = dict(spec.source.assets)
        if not _configured.is_set():
            # GDAL asks again itself on 429 and 5xx (cheap: one request, not the patch); anything else
            # (a dropped connection, a cut-off or garbled body) fails the patch, which the runner retries.
            odc.stac.configure_rio(cloud_defaults=True, **GDAL_HTTP_RETRIES)
            _configured.set()

    def check_items(self, items: list[pystac.Item]) -> None:
        for item in items:
            for variable, key in self.assets.items():
                asset = item.assets.get(key)
                if asset is None:
                    raise ItemError(
                        f"Item {item.id!r} has no asset {key!r} (needed for variable {variable!r}); "
                        f"its assets are {sorted(item.assets)}"
                    )
                if not _has_any(item, asset, _PROJ_CRS_KEYS) or not _has_any(item, asset, _PROJ_GRID_KEYS):
                    raise ItemError(
                        f"Item {item.id!r} asset {key!r} lacks projection info "
                        f"(one of {_PROJ_CRS_KEYS} and one of {_PROJ_GRID_KEYS})"
                    )

    def read(self, patch: PatchIndex) -> PatchData:
        """The patch's variables, read with as few ``odc.stac.load`` calls as their nodata allows (one
        for a source that declares nodata for every asset): each call has a set-up cost."""
        out: PatchData = {}
        for group in self._load_groups(patch):
            loaded = self._load(patch, group)
            for name, asset in group.items():
                var = self.spec.variables[name]
                band = loaded[asset]
                values = band.values[0] if "time" in band.dims else band.values
                out[name] = to_cube_nodata(values, band.attrs.get("nodata"), var.numpy_dtype, var.nodata)
        return out

    def _fill(self, patch: PatchIndex, name: str) -> float | int | None:
        """The value odc-stac fills with: none where the Items declare nodata (odc-stac then uses the
        source's), else the cube's nodata, so pixels no Item reaches never read as 0."""
        var = self.spec.variables[name]
        if _declared_nodata(patch.items, self.assets[name]) is not None:
            return None
        return int(var.nodata) if var.numpy_dtype.kind == "b" else var.nodata

    def _load_groups(self, patch: PatchIndex) -> list[dict[str, str]]:
        """Variables (name -> asset) that one load can read: the same fill value, each asset once."""
        groups: list[tuple[Any, dict[str, str]]] = []
        for name, asset in self.assets.items():
            fill = self._fill(patch, name)
            key = "nan" if isinstance(fill, float) and np.isnan(fill) else fill
            group = next((g for k, g in groups if k == key and asset not in g.values()), None)
            if group is None:
                groups.append((key, group := {}))
            group[name] = asset
        return [group for _, group in groups]

    def _load(self, patch: PatchIndex, group: dict[str, str]):
        first = next(iter(group))
        variables = {asset: self.spec.variables[name] for name, asset in group.items()}
        # GDAL has no boolean type: masks are read as uint8 and cast back by to_cube_nodata.
        dtypes = {asset: "uint8" if var.numpy_dtype.kind == "b" else var.dtype for asset, var in variables.items()}

        def load() -> Any:
            return odc.stac.load(
                list(patch.items),
                bands=list(group.values()),
                geobox=patch.geobox,
                groupby=_single_group,
                resampling={asset: var.resampling for asset, var in variables.items()},
                dtype=dtypes,
                nodata=self._fill(patch, first),
                fail_on_error=True,
            )

        hrefs = [item.assets[asset].href for asset in group.values() for item in patch.items]
        for _ in range(QUICK_RETRIES):
            # Read again at once, forgetting only the cached bytes of the files the error names (or
            # that no longer open): GDAL keeps the good blocks of the others, so only what failed is
            # fetched again, far cheaper than the runner's retry of the whole patch. What keeps
            # failing goes to the runner, with every file's cache cleared below.
            try:
                return load()
            except Exception as error:  # noqa: BLE001 - any read failure is worth one quick second look
                if _status_error(error):
                    break  # GDAL has asked again already: a server still answering 429/5xx is the runner's
                named = _named_in(error, hrefs) or [h for h in [_first_unreadable(hrefs)] if h] or hrefs
                for href in named:
                    rasterio.cache.invalidate(href)
                log.debug("patch %s read failed (%s); reading %s again", patch.id, error, named)
        try:
            return load()
        except Exception as error:
            broken = _first_unreadable(hrefs)
            # GDAL caches HTTP responses per URL: forget this patch's, so a retry reads afresh
            # instead of the truncated or corrupt bytes that made this attempt fail.
            for href in hrefs:
                rasterio.cache.invalidate(href)
            if broken is None:
                raise
            raise AssetReadError(broken, error) from error
