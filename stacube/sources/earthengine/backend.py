"""Read a patch's pixels from Earth Engine for the Items converted from its images.

One stored image and nodata 0: ``getPixels`` on the patch grid (Earth Engine sends masked and
missing pixels as 0; pixels outside the image's own grid are masked here). Otherwise
``computePixels`` of the image, or of the mosaic of several (first Item on top in the catalog's
(datetime, id) order, like the STAC backend), unmasked with ``sameFootprint`` false to a finite fill
(the cube's nodata, or the lowest finite float where nodata is NaN: JSON has no NaN) and cast to the
type the band travels in. Fill values become the cube's nodata on arrival, so masked pixels and
pixels outside every image are nodata whichever request read them, and a real 0 stays 0.

A request asks for all of a patch's bands that travel alike at once and is cut to stay within Earth
Engine's limits (48 MB uncompressed counting one mask byte per pixel, at most 32768 px per side);
the ``ee`` client retries 429 and 5xx with exponential backoff, and at most ``max_concurrency``
requests per process and endpoint are in flight (a project gets 40).
"""

from __future__ import annotations

import io
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pystac
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.warp import rio_reproject

from ...alignment import declared_crs
from ...errors import ItemError, RadiometryError, SpecError, TransientSourceError, source_error
from ...grid import PatchIndex
from ...radiometry import IDENTITY, convert, item_convention, same
from ...variables import Variable, is_nan
from ..base import PatchData, Source
from .catalog import HREF_SCHEME, grid_from_geobox

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

    Parameters
    ----------
    api_url : str
        The Earth Engine endpoint.
    project : str or None
        The Google Cloud project.
    limit : int, optional
        Requests in flight at once (at least 1); each limit has a semaphore of its own.

    Returns
    -------
    threading.BoundedSemaphore
        The one semaphore of this process for these three, to hold while a request is in flight.
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

    Parameters
    ----------
    shape : tuple[int, int]
        The grid to cover, (rows, columns).
    bytes_per_pixel : int
        The bytes one pixel of all the bands asked for travels in.
    max_bytes : int, optional
        The most a request may hold, uncompressed (Earth Engine's 48 MB).
    max_side : int, optional
        The most pixels a request may have a side (Earth Engine's 32768).

    Returns
    -------
    list[tuple[slice, slice]]
        (rows, columns) windows, row by row, covering ``shape`` once.
    """
    ny, nx = shape
    max_pixels = max(1, max_bytes // (bytes_per_pixel + 1))
    width = min(nx, max_side, max_pixels)
    height = min(ny, max_side, max(1, max_pixels // width))
    return [(slice(y, min(y + height, ny)), slice(x, min(x + width, nx)))
            for y in range(0, ny, height) for x in range(0, nx, width)]


def asset_id(item: pystac.Item, band: str) -> str:
    """The Earth Engine asset a converted Item's band is read from (its href after ``earthengine://``).

    Parameters
    ----------
    item : pystac.Item
        An Item converted from an Earth Engine image (``catalog.image_to_item``).
    band : str
        The band's asset key.

    Returns
    -------
    str
        The image's asset id.

    Raises
    ------
    KeyError
        If ``item`` has no asset ``band``.
    ValueError
        If the asset's href is not an ``earthengine://`` one (``check_items`` refuses such Items first).
    """
    href = item.assets[band].href
    if not href.startswith(HREF_SCHEME):
        raise ValueError(f"Item {item.id} asset {band!r} is not an Earth Engine asset: {href!r}")
    return href[len(HREF_SCHEME):]


def _source_grid(item: pystac.Item, band: str) -> tuple:
    fields = item.assets[band].extra_fields
    return tuple(fields["proj:shape"]), tuple(fields["proj:transform"][:6]), declared_crs(fields)


def _footprint_mask(grid: tuple, dst: GeoBox) -> np.ndarray:
    """Where an image's own grid (shape, transform, CRS from the band's ``proj:*``) covers ``dst``."""
    shape, transform, crs = grid
    src = GeoBox(shape, Affine(*transform), crs)
    covered = np.zeros(dst.shape.yx, dtype="uint8")
    rio_reproject(np.ones(src.shape.yx, dtype="uint8"), covered, src, dst, "nearest", src_nodata=None, dst_nodata=0)
    return covered.astype(bool)


def source_dtype(items: Sequence[pystac.Item], band: str, default: np.dtype) -> np.dtype:
    """The type ``band``'s values have at the source: the widest any Item declares (``default`` if none).

    Parameters
    ----------
    items : Sequence[pystac.Item]
        The Items read together.
    band : str
        The band's asset key (its ``raster:bands`` ``data_type``).
    default : numpy.dtype
        What no declaration means (the variable's dtype).

    Returns
    -------
    numpy.dtype
        The type every declared one fits in.
    """
    declared = [np.dtype(entry["data_type"]) for item in items
                for entry in item.assets[band].extra_fields.get("raster:bands", []) if entry.get("data_type")]
    return np.result_type(*declared) if declared else np.dtype(default)


def wire_dtype(source: np.dtype, cube: np.dtype) -> np.dtype:
    """The type a band travels in: wide enough for every source value and the cube's nodata (a boolean
    variable travels as uint8).

    Parameters
    ----------
    source : numpy.dtype
        The band's type at the source (``source_dtype``).
    cube : numpy.dtype
        The variable's dtype.

    Returns
    -------
    numpy.dtype
        The smallest type both fit in.
    """
    return np.result_type(source, np.dtype("uint8") if cube.kind == "b" else cube)


def fill_value(wire: np.dtype, nodata: Any) -> float | int:
    """What masked pixels and pixels outside every image are unmasked to. JSON has no NaN (a request
    with ``{"constantValue": NaN}`` is refused), so a float cube whose nodata is NaN is filled with the
    wire type's lowest finite value, turned into NaN on arrival; real data at exactly that value
    (-3.4e38 for float32) would read as nodata too, a risk Xee takes the same way.

    Parameters
    ----------
    wire : numpy.dtype
        The type the band travels in (``wire_dtype``).
    nodata : Any
        The variable's nodata.

    Returns
    -------
    float or int
        The fill: ``nodata`` as a number of the wire type, or the lowest finite float for NaN.
    """
    if is_nan(nodata):
        return float(np.finfo(wire).min)
    return int(nodata) if isinstance(nodata, (bool, np.bool_)) or wire.kind in "iu" else float(nodata)


CASTS = {"uint8": "toUint8", "int8": "toInt8", "uint16": "toUint16", "int16": "toInt16", "uint32": "toUint32",
         "int32": "toInt32", "int64": "toInt64", "float32": "toFloat", "float64": "toDouble"}


@dataclass(frozen=True)
class Request:
    """One kind of pixel request for a group of bands: what to send, what comes back and what it means."""

    bands: list[str]
    """The bands asked for at once."""
    body: dict[str, Any]
    """The request without its ``grid``, which each window adds."""
    fetch: Any
    """``ee.data.getPixels`` or ``ee.data.computePixels``."""
    wire: np.dtype
    """The type of each band in the answer."""
    fill: float | int
    """The value of masked pixels and pixels outside every image in the answer."""
    footprint: bool
    """Whether pixels outside the image's own grid must be masked here (getPixels)."""


def _requests(items: Sequence[pystac.Item], wanted: Mapping[str, tuple[np.dtype, Any]]) -> list[Request]:
    """The requests that read ``wanted`` from ``items``: bands grouped by what they travel as and are filled with.

    One stored image and nodata 0: ``getPixels``, which sends masked pixels as 0 in the band's own
    type; pixels outside the image's grid are masked here. Otherwise ``computePixels`` of the image
    (or the mosaic, first Item on top) unmasked to the fill with ``sameFootprint`` false, so pixels
    outside the image(s) take it too rather than coming back as 0. The bands are cast to the wire type
    before ``unmask`` (so the fill fits, should ``unmask`` keep the input's type) and after it (a
    float32 band unmasked with a double would otherwise travel, and be sized, as float64).
    """
    import ee

    ids = [asset_id(item, next(iter(wanted))) for item in items]
    groups: dict[tuple, list[str]] = {}
    for band, (dtype, nodata) in wanted.items():
        source = source_dtype(items, band, dtype)
        direct = len(ids) == 1 and not is_nan(nodata) and nodata == 0
        wire = source if direct else wire_dtype(source, dtype)
        if not direct and wire.name not in CASTS:
            raise ItemError(f"band {band!r} ({source} at the source) would travel as {wire}, a type Earth Engine "
                            f"cannot cast to; declare its variable as one of {sorted(CASTS)}")
        fill = 0 if direct else fill_value(wire, nodata)
        groups.setdefault((direct, wire.name, fill), []).append(band)
    if len(ids) == 1:
        image = ee.Image(ids[0])
    else:  # Earth Engine's mosaic puts the last image on top: hand them over last-first
        image = ee.ImageCollection([ee.Image(i) for i in reversed(ids)]).mosaic()
    requests = []
    for (direct, wire, fill), bands in groups.items():
        if direct:
            body = {"assetId": ids[0], "fileFormat": "NPY", "bandIds": bands}
            requests.append(Request(bands, body, ee.data.getPixels, np.dtype(wire), 0, True))
            continue
        # cast before unmask too: whether unmask widens the input's type to hold the fill is not documented
        cast = CASTS[wire]
        expression = getattr(getattr(image.select(bands), cast)().unmask(fill, False), cast)()
        requests.append(Request(bands, {"expression": expression, "fileFormat": "NPY"}, ee.data.computePixels,
                                np.dtype(wire), fill, False))
    return requests


def _arrived(values: np.ndarray, valid: np.ndarray, dtype: np.dtype, nodata: Any) -> tuple[np.ndarray, int]:
    """A band as it arrived, valid where ``valid``, in the cube's dtype with its nodata elsewhere, and how
    many valid pixels had to be clipped into that dtype (a source wider than the variable)."""
    if dtype.kind == "b":
        return np.where(valid, values != 0, bool(nodata)), 0
    if values.dtype == dtype:
        out = values.copy()
        out[~valid] = nodata
        return out, 0
    out, clipped = convert(values, valid, IDENTITY, IDENTITY, dtype, nodata)
    return out, 0 if clipped is None else int(clipped.sum())


def read_bands(items: Sequence[pystac.Item], wanted: Mapping[str, tuple[Any, Any]], geobox: GeoBox,
               slots: threading.BoundedSemaphore | None = None) -> PatchData:
    """The bands of ``wanted`` (band -> (dtype, nodata)) of the mosaic of ``items`` (first on top) on
    ``geobox``; pixels no image covers, and masked pixels, get the band's nodata; a real 0 stays 0.

    One request per window asks for every band of a group at once (a 64-band embedding is one request,
    not 64), windows sized by the bytes the bands travel in. ``clipped`` counts, per band, valid pixels
    that a variable narrower than its source could only hold clipped.

    Earth Engine's own errors (``ee.EEException`` and its HTTP client's) are raised as they are;
    ``EarthEngineBackend.read`` turns them into source errors.

    Parameters
    ----------
    items : Sequence[pystac.Item]
        Items converted from Earth Engine images, first on top.
    wanted : Mapping[str, tuple[Any, Any]]
        Band -> (dtype, nodata) of the variable it fills.
    geobox : GeoBox
        The grid to read onto (a patch's).
    slots : threading.BoundedSemaphore or None, optional
        The cap on requests in flight (``request_slots``); None: one per process, of 16.

    Returns
    -------
    PatchData
        One array of ``geobox``'s shape per band of ``wanted`` (all nodata when there is no Item).

    Raises
    ------
    ItemError
        If a band would travel in a type Earth Engine cannot cast to.
    TransientSourceError
        If an answer is not a NPY array (cut off or garbled on the way).
    ValueError
        If an Item's band is not an Earth Engine asset (``asset_id``).
    """
    wanted = {band: (np.dtype(dtype), nodata) for band, (dtype, nodata) in wanted.items()}
    out = PatchData({band: np.full(geobox.shape.yx, nodata, dtype=dtype) for band, (dtype, nodata) in wanted.items()})
    if not items or not wanted:
        return out
    slots = slots or request_slots("", None)
    for request in _requests(items, wanted):
        weight = len(request.bands) * request.wire.itemsize
        for window in request_windows(geobox.shape.yx, weight, max_bytes=MAX_REQUEST_BYTES):
            part = geobox[window]
            with slots:
                payload = request.fetch({**request.body, "grid": grid_from_geobox(part)})
            try:
                answer = np.load(io.BytesIO(payload), allow_pickle=False)
            except (ValueError, EOFError, OSError) as err:  # cut off or garbled on the way: asked again
                raise TransientSourceError(f"Earth Engine answered {len(payload)} bytes that are not a NPY array "
                                           f"({type(err).__name__}: {err})") from err
            footprints: dict[tuple, np.ndarray] = {}
            for band in request.bands:
                dtype, nodata = wanted[band]
                values = answer[band]
                valid = values != request.fill
                if values.dtype.kind == "f":
                    valid &= ~np.isnan(values)
                if request.footprint:
                    grid = _source_grid(items[0], band)
                    if grid not in footprints:
                        footprints[grid] = _footprint_mask(grid, part)
                    valid &= footprints[grid]
                out[band][window], clipped = _arrived(values, valid, dtype, nodata)
                if clipped:
                    out.clipped[band] = out.clipped.get(band, 0) + clipped
    return out


def read_band(items: Sequence[pystac.Item], band: str, geobox: GeoBox, dtype: Any, nodata: Any) -> np.ndarray:
    """One band of the mosaic of ``items`` on ``geobox`` (see ``read_bands``).

    Parameters
    ----------
    items : Sequence[pystac.Item]
        Items converted from Earth Engine images, first on top.
    band : str
        The band to read.
    geobox : GeoBox
        The grid to read onto.
    dtype : Any
        The variable's dtype.
    nodata : Any
        The variable's nodata.

    Returns
    -------
    numpy.ndarray
        The band on ``geobox``, nodata where no image holds data.

    Raises
    ------
    ItemError, TransientSourceError, ValueError
        As ``read_bands``; Earth Engine's own errors are raised as they are.
    """
    return read_bands(items, {band: (dtype, nodata)}, geobox)[band]


def nearest_only(variable: str, resampling: str) -> None:
    """Refuse a resampling an Earth Engine read would not apply: its pixel requests pick source pixels by
    position (``"nearest"``), and a blend asked for was ignored without a word.

    Parameters
    ----------
    variable : str
        The variable's name (named in the error; ``"every variable"`` for a preset's setting).
    resampling : str
        Its ``Variable.resampling``.

    Raises
    ------
    SpecError
        If ``resampling`` is not ``"nearest"``.
    """
    if resampling != "nearest":
        raise SpecError(f"{variable} asks for {resampling!r} resampling, which an Earth Engine source does not "
                        "apply (its pixel requests pick source pixels by position, as 'nearest'): give "
                        "resampling='nearest'")


class EarthEngineBackend:
    """Reads a cube's patches from Earth Engine, one band per variable, for the Items planning attached.

    As ``Backend``; made by ``EarthEngineSource.backend``."""

    def __init__(self, source: Source, variables: Mapping[str, Variable]):
        """``source`` is an EarthEngineSource (its value module imports this one, never the other way).

        Parameters
        ----------
        source : EarthEngineSource
            The source: bands, endpoint, project, request cap and radiometry policy.
        variables : Mapping[str, Variable]
            The cube's variables.
        """
        self.source = source
        self.variables = dict(variables)

    def check_items(self, items: list[pystac.Item]) -> None:
        """Refuse an Item a read could not use, before anything is read.

        Parameters and errors as ``Backend.check_items``: the ItemError names an Item without one of
        the source's bands, or whose band is not a converted Earth Engine band (``earthengine://``
        href, ``proj:transform``, ``proj:shape`` and a CRS); the RadiometryError an Item whose numbers
        are in another convention than its variable's, since Earth Engine mosaics and casts them as
        they are (declare the images' convention on the variable, or ``radiometry="as-cube"``); the
        SpecError a variable whose ``resampling`` is not ``"nearest"``: Earth Engine's pixel requests pick
        pixels by position, and nothing here asks it to blend them (it was ignored, without a word)."""
        for variable in self.source.bands:
            nearest_only(f"variable {variable!r}", self.variables[variable].resampling)
        for item in items:
            for variable, band in self.source.bands.items():
                asset = item.assets.get(band)
                if asset is None:
                    raise ItemError(f"Item {item.id} has no band {band!r} for variable {variable!r} "
                                    f"(bands: {sorted(item.assets)})")
                missing = [k for k in ("proj:transform", "proj:shape") if k not in asset.extra_fields]
                if declared_crs(asset.extra_fields) is None:
                    missing.append("proj:code or proj:wkt2")
                if not asset.href.startswith(HREF_SCHEME) or missing:
                    raise ItemError(f"Item {item.id} band {band!r} is not a converted Earth Engine band "
                                    f"(href {asset.href!r}, missing {missing})")
                target = self.variables[variable].convention
                convention = item_convention(item, band, self.source.radiometry, target or IDENTITY)
                if target is not None and not same(convention, target):
                    # Earth Engine mosaics and casts on its side: Items are read in the cube's convention only.
                    raise RadiometryError(
                        f"Item {item.id} band {band!r} holds values with {convention}, but variable {variable!r} "
                        f"declares {target}: an Earth Engine cube stores its images' numbers as they are; declare "
                        "the images' convention on the variable, or radiometry='as-cube' on the source")

    def read(self, patch: PatchIndex) -> PatchData:
        """The patch's variables read from Earth Engine (``read_bands``), starting the client in this
        process first if it has not been (``client.initialize``).

        Parameters, returns and errors as ``Backend.read``; Earth Engine's errors become the
        TransientSourceError or PermanentSourceError they are (a 404 or 403 is final; a 429 or 5xx the
        client asked again already). So do failures to start it (``client.initialize``): a credential
        that cannot be read or is refused, or a project refused, is a PermanentSourceError (not asked
        again); no answer while starting, a TransientSourceError. Besides those:

        Raises
        ------
        SpecError
            If ``STACUBE_EE_DEADLINE_S`` or ``STACUBE_EE_MAX_RETRIES`` is unusable.
        ItemError
            If a band would travel in a type Earth Engine cannot cast to.
        """
        from .client import initialize

        source = self.source
        initialize(source.api_url, source.project, reading=True)  # once per process (also on Dask workers)
        wanted = {band: (self.variables[name].numpy_dtype, self.variables[name].nodata)
                  for name, band in source.bands.items()}
        slots = request_slots(source.api_url, source.project, source.max_concurrency)
        try:
            bands = read_bands(patch.items, wanted, patch.geobox, slots)
        except Exception as error:
            # Earth Engine's answer as a transient or permanent source error (a 404 or 403 is final; a
            # 429 or 5xx the client asked again already, a timeout, a dropped connection: the runner's)
            failure = source_error(error, source.api_url)
            if failure is None or failure is error:
                raise
            raise failure from error
        data = PatchData({name: bands[band] for name, band in source.bands.items()})
        data.clipped = {name: bands.clipped[band] for name, band in source.bands.items() if band in bands.clipped}
        return data
