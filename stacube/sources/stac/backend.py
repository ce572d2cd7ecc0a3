"""Read a patch from STAC Items with odc-stac: windowed reads of COGs, mosaicked by odc-stac's rule.

Mosaic rule (deterministic, whatever the order Items arrive in): within one patch, Items are
ordered by (datetime, id) and the first valid pixel wins; this is odc-stac's default fuser.
Source nodata comes from each asset's ``raster:bands`` (or the file) and becomes the cube
variable's nodata, so an Item's nodata border never counts as data.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any
from urllib.parse import urlsplit

import numpy as np
import odc.stac
import pystac
import rasterio.cache
import rasterio.errors
from odc.loader import RioDriver, RioReader

from ...errors import AssetReadError, ItemError, NotAllowedFormat, SourceError, gdal_source_error
from ...grid import PatchIndex
from ...radiometry import IDENTITY, Convention, check_precision, convert, item_convention, judge_offset, same
from ...signing import redact, redact_log_records, redact_url, resolve_signer
from ...variables import Variable, is_nan, valid_mask, valid_values
from ..base import PatchData, Source

_PROJ_CRS_KEYS = ("proj:code", "proj:epsg", "proj:wkt2", "proj:projjson")
_PROJ_GRID_KEYS = ("proj:transform", "proj:bbox")
_configured = threading.Event()
log = logging.getLogger(__name__)


def _single_group(item: pystac.Item, parsed: object, index: int) -> int:
    """Every Item of a patch goes into one pixel plane (the patch is one time step already)."""
    return 0


def _each_item(item: pystac.Item, parsed: object, index: int) -> int:
    """A pixel plane per Item, in the order given (odc-stac sorts planes by this key)."""
    return index


def _has_any(item: pystac.Item, asset: pystac.Asset, keys: tuple[str, ...]) -> bool:
    return any(k in item.properties or k in asset.extra_fields for k in keys)


def _declared(items: tuple[pystac.Item, ...], asset: str, key: str) -> Any:
    """What the Items declare as ``key`` ("nodata", "data_type") for ``asset``: in its raster:bands or
    STAC 1.1 bands, else on the asset itself (PGC's mosaic Items), if anywhere."""
    for item in items:
        fields = item.assets[asset].extra_fields
        for band in fields.get("raster:bands", []) + fields.get("bands", []):
            if band.get(key) is not None:
                return band[key]
        if fields.get(key) is not None:
            return fields[key]
    return None


def _declared_nodata(items: tuple[pystac.Item, ...], asset: str) -> float | int | None:
    return _declared(items, asset, "nodata")


def _nodata_declarations(items: tuple[pystac.Item, ...], asset: str) -> dict[Any, list[str]]:
    """Each nodata the Items declare for ``asset`` (None: declares none; every NaN as one) -> the Items' ids."""
    found: dict[Any, list[str]] = {}
    for item in items:
        value = _declared((item,), asset, "nodata")
        if isinstance(value, str):  # the raster extension writes "nan", "inf" and "-inf" as text
            try:
                value = float(value)
            except ValueError:
                raise ItemError(f"Item {item.id!r} asset {asset!r} declares nodata {value!r}, which is no number") \
                    from None
        key = next((k for k in found if k is not None and value is not None and is_nan(k) and is_nan(value)), value)
        found.setdefault(key, []).append(item.id)
    return found


def _declared_dtype(items: tuple[pystac.Item, ...], asset: str) -> str | None:
    declared = _declared(items, asset, "data_type")
    try:
        return np.dtype(declared).name if declared else None
    except TypeError:
        return None


def _holds(dtype: np.dtype, value: float | int) -> bool:
    """Whether ``dtype`` can hold ``value`` exactly (NaN only in floats, integers within range)."""
    if dtype.kind == "f":
        return True
    if isinstance(value, float) and not value.is_integer():  # NaN and inf are not integers either
        return False
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        return info.min <= int(value) <= info.max
    return True


def to_cube_nodata(values: np.ndarray, source_nodata: float | int | None, dtype: np.dtype, nodata) -> np.ndarray:
    """Cast to the cube dtype, turning the source's nodata (and NaN) into the cube's nodata.

    ``values`` is a freshly loaded array that the caller gives up: it is changed in place where the
    dtype already matches (a patch's worth of copying saved per variable).

    Parameters
    ----------
    values : numpy.ndarray
        The pixels as read, in the source's numbers.
    source_nodata : float, int or None
        The source's nodata (None: none declared; NaN pixels of a float array are nodata either way).
    dtype : numpy.dtype
        The cube variable's dtype.
    nodata : float, int or bool
        The cube variable's nodata.

    Returns
    -------
    numpy.ndarray
        ``values`` in ``dtype`` (``values`` itself where the dtype matched), the source's nodata and
        NaN as ``nodata``.
    """
    if dtype.kind == "b":
        invalid = values == source_nodata if source_nodata is not None else np.zeros(values.shape, bool)
        out = values.astype(bool)
        out[invalid] = bool(nodata)
        return out
    invalid = None
    if source_nodata is not None and not is_nan(source_nodata):
        invalid = values == source_nodata
    nan_is_nodata = dtype.kind == "f" and is_nan(nodata)
    if values.dtype.kind == "f" and not nan_is_nodata:  # a NaN that stays NaN is the cube's nodata already
        invalid = np.isnan(values) if invalid is None else invalid | np.isnan(values)
    out = values.astype(dtype, copy=False)
    if invalid is not None:
        out[invalid] = nodata
    return out


def refused(url: str, drivers: tuple[str, ...]) -> NotAllowedFormat:
    """The error for ``url`` (as GDAL opened it: signed, where the source signs) that none of ``drivers``
    opens; ``opened`` keeps that URL for this process (its cache entry is forgotten), never shown or pickled.

    Parameters
    ----------
    url : str
        The URL as GDAL opened it.
    drivers : tuple[str, ...]
        The GDAL drivers the source allows.

    Returns
    -------
    NotAllowedFormat
        The error, to be raised.
    """
    error = NotAllowedFormat(f"{url} does not open with GDAL's {' or '.join(drivers)} driver", url, drivers)
    error.opened = url
    return error


def open_restricted(url: str, drivers: tuple[str, ...]) -> rasterio.DatasetReader:
    """``url`` opened with one of ``drivers`` only (GDAL probes no other format), or NotAllowedFormat.

    A file GDAL cannot read at all (gone, cut off) fails with GDAL's error as before, decided by the
    read that caught it (``StacBackend._load``).

    Parameters
    ----------
    url : str
        The file to open (signed, where the source signs).
    drivers : tuple[str, ...]
        The GDAL drivers the source allows, tried in order.

    Returns
    -------
    rasterio.DatasetReader
        The open file, to be closed by the caller.

    Raises
    ------
    NotAllowedFormat
        If none of ``drivers`` opens the file (``refused``).
    rasterio.errors.RasterioIOError
        If GDAL fails to read the file for another reason (missing, refused, cut off).
    """
    for driver in drivers:  # rasterio.open takes one driver name (GDAL then probes no other)
        try:
            return rasterio.open(url, driver=driver)
        except rasterio.errors.RasterioIOError as error:
            if not isinstance(gdal_source_error(error), NotAllowedFormat):  # GDAL's words: stacube.errors
                raise
    raise refused(url, drivers)


class _CheckedReader(RioReader):
    """odc-stac's rasterio reader, which first makes sure that the file is of an allowed format."""

    def __init__(self, src: Any, ctx: Any, drivers: tuple[str, ...]):
        super().__init__(src, ctx)
        self._drivers = drivers

    def read(self, cfg: Any, dst_geobox: Any, *, dst: Any = None, selection: Any = None) -> Any:
        # GDAL keeps the header it fetched here in its HTTP cache, so the open that odc-stac makes
        # next sees the bytes that were checked.
        with open_restricted(self._src.uri, self._drivers):
            pass
        return super().read(cfg, dst_geobox, dst=dst, selection=selection)


class FormatCheckedDriver(RioDriver):
    """odc-stac's reader driver, restricted to the GDAL drivers a source allows (odc.loader's
    ReaderDriver extension point): an asset whose body is a VRT, or any format that names other
    files, is never opened as one, so a remote catalog cannot make stacube read local files."""

    def __init__(self, drivers: tuple[str, ...]):
        super().__init__()
        self.drivers = drivers

    def open(self, src: Any, ctx: Any) -> _CheckedReader:
        """The reader odc-stac asks for each asset: rasterio's, with the format checked at each read."""
        return _CheckedReader(src, ctx, self.drivers)


def host_allowed(href: str, hosts: tuple[str, ...]) -> bool:
    """Whether ``href`` names one of ``hosts`` (exactly, with its port where one is given, or
    ``*.domain`` for any subdomain).

    Parameters
    ----------
    href : str
        An asset's URL.
    hosts : tuple[str, ...]
        The allowed hosts, lower-case (``StacSource.hosts``).

    Returns
    -------
    bool
        True if the URL's host (case-insensitive) is allowed; a URL without a host (a local file) never is.
    """
    parts = urlsplit(href)
    host = (parts.hostname or "").lower()
    with_port = f"{host}:{parts.port}" if parts.port else host
    for allowed in hosts:
        if allowed.startswith("*."):
            if host.endswith(allowed[1:]):
                return True
        elif allowed in (host, with_port):
            return True
    return False


def format_error(item_id: str, asset: str, href: str, drivers: tuple[str, ...]) -> NotAllowedFormat:
    """Why an asset was not read, naming its Item and URL: no driver the source allows opens it (the
    text of an AssetReadError).

    Parameters
    ----------
    item_id : str
        The Item's id.
    asset : str
        The asset's key.
    href : str
        The asset's URL (redacted in the message).
    drivers : tuple[str, ...]
        The GDAL drivers the source allows.

    Returns
    -------
    NotAllowedFormat
        The error, for an AssetReadError to wrap.
    """
    return NotAllowedFormat(
        f"Item {item_id!r} asset {asset!r} at {redact_url(href)!r} is not a file that GDAL's {' or '.join(drivers)} "
        f"driver opens (the formats the source allows, drivers=...): it is corrupt, or of another format; formats "
        "such as VRT name other files, local ones included, and are never followed from a catalog", href, drivers)


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


def _asked_again_by_gdal(failure: SourceError | None) -> bool:
    """Whether a read failed on an HTTP 429 or 5xx answer, which GDAL itself asked again (GDAL_HTTP_RETRIES)."""
    status = failure.status if failure is not None else None
    return status is not None and (status == 429 or status >= 500)


def _named_in(error: BaseException, hrefs: list[str]) -> list[str]:
    """The hrefs an error (or the errors it came from) names by URL or file name."""
    text = _chain_text(error)
    return [href for href in dict.fromkeys(hrefs) if href in text or href.rsplit("/", 1)[-1] in text]


def _first_unreadable(hrefs: list[str], opened: Callable[[str], str] = str,
                      options: dict[str, str] | None = None,
                      drivers: tuple[str, ...] = ("GTiff",)) -> str | None:
    """The first asset GDAL cannot open, so a failed patch names its file (odc-stac's error does not).
    ``opened`` gives the URL GDAL opens for an href (signed), ``options`` the source's GDAL settings."""
    for href in hrefs:
        try:
            with rasterio.Env(**{**(options or {}), "GDAL_HTTP_MAX_RETRY": "0"}), \
                    open_restricted(opened(href), drivers):
                pass
        except (rasterio.errors.RasterioError, OSError, NotAllowedFormat):
            return href
    return None


def _configure_gdal() -> None:
    """Once per process: GDAL's cloud defaults, and GDAL asks again itself on 429 and 5xx (cheap: one
    request, not the patch); anything else (a dropped connection, a cut-off or garbled body) fails the
    patch, which the runner retries."""
    if not _configured.is_set():
        odc.stac.configure_rio(cloud_defaults=True, **GDAL_HTTP_RETRIES)
        _configured.set()


class StacBackend:
    """Patches from STAC Items whose assets are rasters GDAL can read (COGs over HTTP, files, S3).

    As ``Backend``; made by ``StacSource.backend``."""

    def __init__(self, source: Source, variables: Mapping[str, Variable]):
        """``source`` is a StacSource (its value module imports this one, never the other way).

        Parameters
        ----------
        source : StacSource
            The source: asset keys, radiometry policy, GDAL options, signer, drivers and hosts.
        variables : Mapping[str, Variable]
            The cube's variables.

        Raises
        ------
        SpecError
            If the source's ``signer`` cannot be imported.
        """
        self.source = source
        self.variables = dict(variables)
        self.assets = dict(source.assets)
        self.policy = source.radiometry
        self.gdal_options = dict(source.gdal_options or {})
        self.signer = resolve_signer(source.signer)
        redact_log_records()  # hrefs may carry credentials, and GDAL and rasterio log the URLs they open
        self.drivers = tuple(source.drivers)
        self.hosts = tuple(source.hosts) if source.hosts is not None else None
        self._judged: dict[str, tuple[Convention | None, str]] = {}
        self._judging = threading.Lock()
        _configure_gdal()

    def __getstate__(self) -> dict[str, Any]:
        """Shipped to other processes (Dask workers) without its lock; there the signer is looked up again
        and GDAL configured as here."""
        return {**self.__dict__, "signer": None, "_judging": None}

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self.signer = resolve_signer(self.source.signer)
        self._judging = threading.Lock()
        _configure_gdal()

    def check_items(self, items: list[pystac.Item]) -> None:
        """Refuse an Item a read could not use, before anything is read.

        Parameters and errors as ``Backend.check_items``: the ItemError names an Item without one of
        the source's assets, with an asset on a host the source does not allow (``hosts``), or without
        projection info (a CRS and a transform or bbox); the RadiometryError an Item whose convention
        its radiometry policy cannot tell, or an integer variable that would round its values away."""
        for item in items:
            for variable, key in self.assets.items():
                asset = item.assets.get(key)
                if asset is None:
                    raise ItemError(
                        f"Item {item.id!r} has no asset {key!r} (needed for variable {variable!r}); "
                        f"its assets are {sorted(item.assets)}"
                    )
                if self.hosts is not None and not host_allowed(asset.href, self.hosts):
                    raise ItemError(
                        f"Item {item.id!r} asset {key!r} is at {redact_url(asset.href)!r}, on a host the source does "
                        f"not allow (hosts={list(self.hosts)})"
                    )
                if not _has_any(item, asset, _PROJ_CRS_KEYS) or not _has_any(item, asset, _PROJ_GRID_KEYS):
                    raise ItemError(
                        f"Item {item.id!r} asset {key!r} lacks projection info "
                        f"(one of {_PROJ_CRS_KEYS} and one of {_PROJ_GRID_KEYS})"
                    )
                variable_spec = self.variables[variable]
                target = variable_spec.convention
                if target is not None:
                    source = item_convention(item, key, self.policy, target)
                    check_precision(item, key, variable, source, target, variable_spec.numpy_dtype)

    def conventions(self, patch: PatchIndex, name: str) -> list[Convention]:
        """How each of the patch's Items turns its numbers for variable ``name`` into physical values
        (where its metadata leaves that open, as its pixels show: ``_judgement``).

        Parameters
        ----------
        patch : PatchIndex
            The patch, with its Items.
        name : str
            A cube variable.

        Returns
        -------
        list[Convention]
            One per Item of ``patch.items``, in order.

        Raises
        ------
        RadiometryError
            If the source's policy cannot tell an Item's convention.
        AssetReadError
            If the pixels that should decide an Item's convention cannot be read (once per Item).
        """
        target = self.variables[name].convention or IDENTITY
        found = [item_convention(item, self.assets[name], self.policy, target) for item in patch.items]
        return [self._judgement(item)[0] or replace(c, check_pixels=False) if c.check_pixels else c
                for item, c in zip(patch.items, found, strict=True)]

    def _judgement(self, item: pystac.Item) -> tuple[Convention | None, str]:
        """The convention an Item's own pixels show where its metadata is not to be trusted, judged once
        per Item from a decimated read of its whole rasters (GDAL takes a COG's overview), so every
        patch of the Item gets the same answer; and the evidence, for the commit."""
        found = self._judged.get(item.id)
        if found is None:  # judged outside the lock: a slow read must not stall other Items' patches
            keys = [key for name, key in self.assets.items() if self.variables[name].convention is not None
                    and item_convention(item, key, self.policy, self.variables[name].convention).check_pixels]
            judged = judge_offset([self._overview(item, key) for key in keys])
            with self._judging:
                found = self._judged.setdefault(item.id, judged)
        return found

    def _overview(self, item: pystac.Item, key: str, size: int = 1024) -> np.ndarray:
        """The valid pixels of a decimated read (about ``size`` px a side) of an Item's asset."""
        href = item.assets[key].href
        try:
            with rasterio.Env(**self.gdal_options), self._open_checked(item, key, href) as src:
                factor = max(1, max(src.width, src.height) // size)
                values = src.read(1, out_shape=(max(1, src.height // factor), max(1, src.width // factor)))
                nodata = src.nodata if src.nodata is not None else _declared_nodata((item,), key)
        except AssetReadError:
            raise
        except Exception as error:
            failure = gdal_source_error(error, href)  # None: not GDAL's (a bug, memory): raised as it is
            if failure is None:
                raise
            raise AssetReadError(href, failure) from (failure if self.signer is None else None)
        return values[valid_values(values, nodata)]

    def read(self, patch: PatchIndex) -> PatchData:
        """The patch's variables in the cube's dtype and convention, read with as few ``odc.stac.load``
        calls as their nodata allows (one for a source that declares nodata for every asset): each
        call has a set-up cost. Where the Items of a patch differ in convention, each Item is read
        into a plane of its own and converted before the planes are mosaicked (first valid wins).

        Parameters, returns and errors as ``Backend.read``. A failed read is read again at once
        (``QUICK_RETRIES``), afresh for the files it names, unless GDAL has asked again already (a 429
        or 5xx). What still fails is an AssetReadError naming the first asset that no longer opens;
        where none is found, the TransientSourceError or PermanentSourceError GDAL's failure is (where
        the source signs URLs, an AssetReadError naming the read's URLs, redacted). An asset no allowed
        driver opens is an AssetReadError around a NotAllowedFormat, which the runner retries.
        """
        out = PatchData()
        for group in self._load_groups(patch):
            conventions = {name: self.conventions(patch, name) for name in group}
            per_item = any(not all(same(c, found[0]) for c in found) for found in conventions.values())
            loaded = self._load(patch, group, per_item, conventions)
            for name, asset in group.items():
                band = loaded[asset]
                values = band.values if "time" in band.dims else band.values[np.newaxis]
                out[name], clipped = self._to_cube(values, band.attrs.get("nodata"), name,
                                                   conventions[name] if per_item else conventions[name][:1])
                if clipped:
                    out.clipped[name] = clipped
        out.judged = {item.id: self._judged[item.id][1] for item in patch.items if item.id in self._judged}
        return out

    def _to_cube(self, planes: np.ndarray, source_nodata: Any, name: str,
                 conventions: list[Convention]) -> tuple[np.ndarray, int]:
        """Planes (one, or one per Item in mosaic order) in the cube's convention, mosaicked first valid
        wins; and how many of the pixels kept had to be clipped into the dtype's range."""
        variable = self.variables[name]
        target = variable.convention
        result, clipped = None, 0
        for plane, convention in zip(planes, conventions, strict=True):
            clip_mask = None
            # as read only where nothing can change: a plane loaded in the source's own dtype (another
            # Item of the patch needed converting) goes through convert too, which clips and counts
            if target is None or variable.numpy_dtype.kind == "b" or (
                    same(convention, target) and plane.dtype == variable.numpy_dtype):
                converted = to_cube_nodata(plane, source_nodata, variable.numpy_dtype, variable.nodata)
            else:
                valid = valid_values(plane, source_nodata)
                converted, clip_mask = convert(plane, valid, convention, target, variable.numpy_dtype,
                                               variable.nodata)
            if result is None:
                result, taken = converted, None
            else:
                taken = ~valid_mask(result, variable) & valid_mask(converted, variable)
                result[taken] = converted[taken]
            if clip_mask is not None:
                clipped += int(np.count_nonzero(clip_mask if taken is None else clip_mask & taken))
        return result, clipped

    def _fill(self, patch: PatchIndex, name: str) -> float | int | None:
        """The value odc-stac fills with, and reads as nodata in every Item: none where every Item declares
        the same nodata (odc-stac then uses it per band); that value where only some Items declare it
        (odc-stac would take the first Item's, none, for all of them: pixels no Item reaches and the others'
        nodata would read as valid 0s and hide the next Item); else the cube's nodata, so pixels no Item
        reaches never read as 0. Items of one patch declaring different nodata are an ItemError."""
        var = self.variables[name]
        declared = _nodata_declarations(patch.items, self.assets[name])
        values = [value for value in declared if value is not None]
        if len(values) > 1:
            listed = "; ".join(f"{value!r}: {', '.join(ids)}" for value, ids in declared.items())
            raise ItemError(f"the Items of patch {patch.id} declare different nodata for asset "
                            f"{self.assets[name]!r} ({listed}): one value must mean no data for all of them")
        if values:
            return None if None not in declared else values[0]
        return int(var.nodata) if var.numpy_dtype.kind == "b" else var.nodata

    def _load_groups(self, patch: PatchIndex) -> list[dict[str, str]]:
        """Variables (name -> asset) that one load can read: the same fill value, each asset once."""
        groups: list[tuple[Any, dict[str, str]]] = []
        for name, asset in self.assets.items():
            fill = self._fill(patch, name)
            key = "nan" if is_nan(fill) else fill
            group = next((g for k, g in groups if k == key and asset not in g.values()), None)
            if group is None:
                groups.append((key, group := {}))
            group[name] = asset
        return [group for _, group in groups]

    def _load_dtype(self, patch: PatchIndex, name: str, conventions: list[Convention]) -> str:
        """What odc-stac reads a variable as: the cube's dtype where the Items already hold the cube's
        convention in a type it holds, else the source's own (``raster:bands`` data_type), so no value is
        cut before it is converted (or clipped and counted). GDAL has no boolean type: masks are read as
        uint8 and cast back."""
        variable = self.variables[name]
        if variable.numpy_dtype.kind == "b":
            return "uint8"
        target = variable.convention
        declared = _declared_dtype(patch.items, self.assets[name])
        if target is None or (all(same(c, target) for c in conventions) and (
                declared is None or np.can_cast(declared, variable.numpy_dtype, "safe"))):
            return variable.dtype
        # The source's own type where it converts, or holds values the cube's type cannot: GDAL would clamp
        # them uncounted (uint16 40000 into int16), a valid -5 into a uint16 onto its nodata 0
        fill = self._fill(patch, name)
        if declared is None or (fill is not None and not _holds(np.dtype(declared), fill)):
            return "float64"  # the source's own type cannot hold the fill for pixels no Item covers
        return declared

    def _load(self, patch: PatchIndex, group: dict[str, str], per_item: bool,
              conventions: dict[str, list[Convention]]):
        first = next(iter(group))
        variables = {asset: self.variables[name] for name, asset in group.items()}
        dtypes = {asset: self._load_dtype(patch, name, conventions[name]) for name, asset in group.items()}

        def load() -> Any:
            # A rasterio environment of the source's own only where it sets options; otherwise the reads
            # run in odc-stac's, as they did before sources could set any
            with rasterio.Env(**self.gdal_options) if self.gdal_options else contextlib.nullcontext():
                return odc.stac.load(
                    list(patch.items),
                    bands=list(group.values()),
                    geobox=patch.geobox,
                    groupby=_each_item if per_item else _single_group,
                    resampling={asset: var.resampling for asset, var in variables.items()},
                    dtype=dtypes,
                    nodata=self._fill(patch, first),
                    fail_on_error=True,
                    patch_url=self.signer,
                    driver=FormatCheckedDriver(self.drivers),
                )

        hrefs = [item.assets[asset].href for asset in group.values() for item in patch.items]
        for _ in range(QUICK_RETRIES):
            # Read again at once, forgetting only the cached bytes of the files the error names (or
            # that no longer open): GDAL keeps the good blocks of the others, so only what failed is
            # fetched again, far cheaper than the runner's retry of the whole patch. What keeps
            # failing goes to the runner, with every file's cache cleared below.
            try:
                return load()
            except NotAllowedFormat as refusal:  # a garbled answer looks the same: read it afresh once more
                opened = refusal.opened or refusal.url or ""
                rasterio.cache.invalidate(opened)
                for href in hrefs:
                    if href.split("?", 1)[0] == opened.split("?", 1)[0]:
                        self._forget(href)
                continue
            except Exception as error:  # noqa: BLE001 - any read failure is worth one quick second look
                if _asked_again_by_gdal(gdal_source_error(error)):
                    break  # GDAL has asked again already: a server still answering 429/5xx is the runner's
                named = _named_in(error, hrefs) or [h for h in [self._unreadable(hrefs)] if h] or hrefs
                for href in named:
                    self._forget(href)
                log.debug("patch %s read failed (%s); reading %s again", patch.id, redact(str(error)), named)
        try:
            return load()
        except NotAllowedFormat as refusal:
            # GDAL cannot tell a connection reset while it read the header from a file of another
            # format: the runner asks again (the file is never opened as another format either way)
            raise self._refusal(patch, group, refusal) from None
        except Exception as error:
            broken = self._unreadable(hrefs)
            # GDAL caches HTTP responses per URL: forget this patch's, so a retry reads afresh
            # instead of the truncated or corrupt bytes that made this attempt fail.
            for href in hrefs:
                self._forget(href)
            # What GDAL said, as a transient or permanent source error (how the runner decides whether to
            # ask again); an error that is not GDAL's (a bug, memory) is raised as it is.
            failure = gdal_source_error(error, broken)
            if broken is None:
                if self.signer is None:
                    if failure is None:
                        raise
                    raise failure from error
                raise AssetReadError(redact(", ".join(dict.fromkeys(hrefs))), failure or error) from None
            raise AssetReadError(broken, failure or error) from ((failure or error) if self.signer is None else None)

    def _refusal(self, patch: PatchIndex, group: dict[str, str], refusal: NotAllowedFormat) -> AssetReadError:
        """The error for an asset that no allowed driver opens, naming its Item and URL (retried: a
        dropped connection reads the same to GDAL as a file of another format)."""
        opened = refusal.opened or refusal.url or ""
        base = opened.split("?", 1)[0]
        for item in patch.items:
            for asset in group.values():
                href = item.assets[asset].href
                if href.split("?", 1)[0] == base or self._opened(href).split("?", 1)[0] == base:
                    return AssetReadError(href, format_error(item.id, asset, href, refusal.drivers))
        return AssetReadError(opened, format_error("?", "?", opened, refusal.drivers))

    def _open_checked(self, item: pystac.Item, key: str, href: str) -> rasterio.DatasetReader:
        try:
            return open_restricted(self._opened(href), self.drivers)
        except NotAllowedFormat:
            raise AssetReadError(href, format_error(item.id, key, href, self.drivers)) from None

    def _opened(self, href: str) -> str:
        """The URL GDAL opens for ``href``: signed at this moment where the source signs."""
        return self.signer(href) if self.signer is not None else href

    def _unreadable(self, hrefs: list[str]) -> str | None:
        return _first_unreadable(hrefs, self._opened, self.gdal_options, self.drivers)

    def _forget(self, href: str) -> None:
        rasterio.cache.invalidate(href)
        if self.signer is not None:
            rasterio.cache.invalidate(self._opened(href))
