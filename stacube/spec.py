"""What a cube is: variables, zones, chunking, time axis and source; stored as JSON inside the cube."""

from __future__ import annotations

import json
import logging
import math
import numbers
import os
import re
import reprlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np
import pandas as pd
from odc.geo.geobox import GeoBox
from rasterio.transform import Affine

from .duplicates import check_rule
from .errors import SpecError
from .radiometry import Convention, check_policy
from .signing import check_signer, redact_url
from .timeaxis import naive_utc

# 2: variables declare their convention (scale_factor, add_offset) and sources their radiometry policy and
# duplicate rule. An older stacube must not write into such a cube (it would store Items' numbers unconverted).
SPEC_VERSION = 2
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
RESAMPLINGS = {"nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode", "min", "max", "med"}


def check_name(kind: str, name: str) -> str:
    """Names become Zarr paths and file names: no separators, no '..', nothing exotic."""
    if not isinstance(name, str) or not _SAFE_NAME.match(name) or ".." in name:
        raise SpecError(f"{kind} name {name!r} is not allowed: use letters, digits, '_', '-' and '.' (no '..' or '/')")
    return name


# Names a zone group holds besides its variables (stacube.layout), a Tile gives its axes and CRS
# (latitude/longitude on a geographic grid: any ROI may be one), or Zarr v3 keeps for a node's
# metadata. A variable by one of these names would overwrite them or be shadowed by them.
RESERVED_NAMES = {
    "x": "the zone's x coordinates",
    "y": "the zone's y coordinates",
    "time": "the time coordinate",
    "spatial_ref": "the CRS of every zone and Tile (CF grid mapping)",
    "filled": "stacube's record of filled patches",
    "latitude": "a Tile's y axis on a geographic grid",
    "longitude": "a Tile's x axis on a geographic grid",
    "zarr.json": "Zarr's metadata file",
}
# A zone's coordinates are written whole when the cube is created and read whole by lazy loads and
# to_xarray: one float64 array per axis, 8 bytes a pixel (the time axis: 8 bytes a step). 2**24 px a
# side (128 MiB per axis) is 16,777 km at 1 m, 2.4 m on a whole-globe grid, while the filled record
# costs nothing until patches are filled (one chunk per patch). 7 GiB of coordinates fail on write.
MAX_AXIS_LENGTH = 2**24
# Blosc, which compresses every variable's chunks, takes at most this many bytes at once.
MAX_CHUNK_BYTES = 2**31 - 1 - 16


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"


def is_nan(value: Any) -> bool:
    """Whether ``value`` is a NaN nodata (or fill) value: a float that is NaN. The one test of "is nodata NaN".

    Only ``float`` and its subclasses count (Python floats and numpy float64), which is what a Variable
    keeps; None, integers, booleans, strings (``"nan"`` as JSON keeps it) and numpy float32 are not."""
    return isinstance(value, float) and math.isnan(value)


def nodata_to_json(value: Any) -> Any:
    """A nodata value as JSON keeps it: ``"nan"`` for NaN (JSON has none), anything else as it is."""
    return "nan" if is_nan(value) else value


def _check_nodata(nodata: Any, dtype: np.dtype) -> float | int | bool:
    """``nodata`` as the variable keeps it, or a SpecError naming it. It becomes each array's Zarr fill
    value and each exported COG's nodata, so it must be a value of the dtype: exactly for integers and
    booleans, within the finite range for floats (a float32 nodata of 1e40 would be stored as inf,
    which GDAL then refuses as a float32 nodata)."""
    name = dtype.name
    if nodata is None:
        if dtype.kind == "f":
            return float("nan")
        if dtype.kind == "b":
            return False
        raise SpecError(f"an integer variable ({name}) needs an explicit nodata value")
    if dtype.kind == "b":
        if isinstance(nodata, bool | np.bool_) or (isinstance(nodata, numbers.Integral) and nodata in (0, 1)):
            return bool(nodata)
        raise SpecError(f"nodata {nodata!r} does not fit dtype bool: use False or True")
    if dtype.kind == "f" and isinstance(nodata, str) and nodata.strip().lower() == "nan":
        return float("nan")  # as to_json writes it
    if isinstance(nodata, bool | np.bool_) or not isinstance(nodata, numbers.Real):
        raise SpecError(f"nodata {nodata!r} is not a number: a {name} variable needs a number as nodata"
                        + (" (or nan)" if dtype.kind == "f" else ""))
    if dtype.kind in "iu":
        if not isinstance(nodata, numbers.Integral) and not float(nodata).is_integer():  # nan and inf too
            raise SpecError(f"nodata {nodata!r} does not fit dtype {name}: it needs a whole number")
        info = np.iinfo(dtype)
        if not info.min <= int(nodata) <= info.max:
            raise SpecError(f"nodata {nodata!r} is outside the range of dtype {name} ({info.min} to {info.max})")
        return int(nodata)
    try:
        value = float(nodata)
    except OverflowError:  # an int beyond float64
        value = math.inf
    if math.isnan(value):
        return value
    info = np.finfo(dtype)
    if math.isinf(value):  # a cube's metadata is JSON, which has no infinity
        raise SpecError(f"nodata {nodata!r} is not finite: use nan or a finite value of {name} "
                        f"(±{float(info.max):.8g})")
    if abs(value) > float(info.max):
        raise SpecError(f"nodata {nodata!r} is outside the finite range of dtype {name} (±{float(info.max):.8g}): "
                        "it would be stored as inf, which GeoTIFF exports refuse; use nan or a finite value")
    if value != 0 and dtype.type(value) == 0:
        raise SpecError(f"nodata {nodata!r} is too small for dtype {name}: it would be stored as 0")
    return value


@dataclass(frozen=True)
class Variable:
    """One cube variable: its dtype end to end, the value that means 'no data', how to resample it, and
    how its stored numbers become physical values (CF: physical = stored * scale_factor + add_offset).

    Each Item's numbers are brought into this convention when a patch is written (see
    ``stacube.radiometry``). ``scale_factor=None`` is the convention of cubes made before stacube
    declared one: values stored as each Item had them, never converted.
    """

    dtype: str
    nodata: float | int | bool | None = None
    units: str | None = None
    resampling: str = "nearest"
    scale_factor: float | None = 1.0
    add_offset: float | None = 0.0

    def __post_init__(self) -> None:
        try:
            dtype = np.dtype(self.dtype)
        except TypeError as err:
            raise SpecError(f"unknown dtype {self.dtype!r}") from err
        if dtype.kind not in "biuf":
            raise SpecError(f"dtype {self.dtype!r} is not a numeric or boolean raster type")
        object.__setattr__(self, "dtype", dtype.name)
        object.__setattr__(self, "nodata", _check_nodata(self.nodata, dtype))
        if self.units is not None and not isinstance(self.units, str):
            raise SpecError(f"units {self.units!r} must be text, such as 'm' or 'K'")
        if not isinstance(self.resampling, str) or self.resampling not in RESAMPLINGS:
            raise SpecError(f"unknown resampling {self.resampling!r}; use one of {sorted(RESAMPLINGS)}")
        self._check_convention(dtype)

    def _check_convention(self, dtype: np.dtype) -> None:
        if self.scale_factor is None:
            if self.add_offset not in (None, 0, 0.0):
                raise SpecError(f"add_offset {self.add_offset!r} needs a scale_factor")
            object.__setattr__(self, "add_offset", None)
            return
        try:
            scale, offset = float(self.scale_factor), float(0.0 if self.add_offset is None else self.add_offset)
        except (TypeError, ValueError) as err:
            raise SpecError(f"scale_factor {self.scale_factor!r} and add_offset {self.add_offset!r} must be "
                            "numbers") from err
        if not (math.isfinite(scale) and math.isfinite(offset)) or scale == 0:
            raise SpecError(f"scale_factor {self.scale_factor!r} must be finite and not 0, add_offset "
                            f"{self.add_offset!r} finite")
        if dtype.kind == "b" and (scale, offset) != (1.0, 0.0):
            raise SpecError("a boolean variable holds no scaled values: leave scale_factor and add_offset out")
        object.__setattr__(self, "scale_factor", scale)
        object.__setattr__(self, "add_offset", offset)

    @property
    def numpy_dtype(self) -> np.dtype:
        return np.dtype(self.dtype)

    @property
    def convention(self) -> Convention | None:
        """How stored numbers become physical values; None for a cube that stores them as read."""
        if self.scale_factor is None:
            return None
        return Convention(self.scale_factor, self.add_offset or 0.0)

    @property
    def scaled(self) -> bool:
        """Whether stored numbers differ from physical values (a convention other than 1 and 0)."""
        return self.scale_factor is not None and (self.scale_factor, self.add_offset) != (1.0, 0.0)

    def to_json(self) -> dict[str, Any]:
        return {"dtype": self.dtype, "nodata": nodata_to_json(self.nodata), "units": self.units,
                "resampling": self.resampling, "scale_factor": self.scale_factor, "add_offset": self.add_offset}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Variable:
        nodata = data.get("nodata")
        if nodata == "nan":
            nodata = float("nan")
        # A cube written before conventions were declared has neither key: its values are as read.
        return cls(data["dtype"], nodata=nodata, units=data.get("units"), resampling=data.get("resampling", "nearest"),
                   scale_factor=data.get("scale_factor"), add_offset=data.get("add_offset"))


def _check_lag(publication_lag: str) -> None:
    try:
        pd.Timedelta(publication_lag)
    except ValueError as err:
        raise SpecError(f"publication_lag {publication_lag!r} is not a pandas Timedelta") from err


_SECRET_OPTION = re.compile(r"SECRET|PASSWORD|PASSWD|TOKEN|CREDENTIAL|USERPWD|HEADERS|_SAS|ACCESS_KEY|_KEY$", re.I)


def _check_gdal_options(options: Mapping[str, Any] | None) -> dict[str, str] | None:
    """GDAL configuration for reading a source's assets: settings, never secrets (the spec is stored in the cube)."""
    if not options:
        return None
    if not isinstance(options, Mapping):
        raise SpecError(f"gdal_options must be a mapping of GDAL configuration options, got {type(options).__name__}")
    out = {}
    for key, value in options.items():
        if not isinstance(key, str) or not re.fullmatch(r"[A-Z][A-Z0-9_]*", key):
            raise SpecError(f"gdal_options key {key!r} is not a GDAL configuration option name")
        if _SECRET_OPTION.search(key):
            raise SpecError(f"gdal_options key {key!r} would store a credential in the cube's spec; set it in the "
                            "environment of the process that reads (AWS_SECRET_ACCESS_KEY and the like) instead")
        out[key] = str(value) if not isinstance(value, bool) else ("YES" if value else "NO")
    return out


def _without_credentials(api_url: Any) -> Any:
    """A stored api_url with its user info dropped: cubes made before specs refused credentials still
    open (their syncs then take credentials from ~/.netrc, as new cubes do)."""
    parts = urlparse(str(api_url))
    if parts.username is None and parts.password is None:
        return api_url
    logging.getLogger(__name__).warning(
        "the cube's stored api_url %s carried credentials; they are not used: put them in ~/.netrc",
        redact_url(str(api_url)))
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[1]).geturl()


DEFAULT_DRIVERS = ("GTiff",)  # COGs open with GDAL's GTiff driver
_DRIVER_NAME = re.compile(r"^[A-Za-z0-9_]+$")
_HOST_PATTERN = re.compile(r"^(\*\.)?[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?(:\d+)?$|^\[[0-9A-Fa-f:.]+\](:\d+)?$")


def _check_drivers(drivers: Any) -> tuple[str, ...]:
    """GDAL driver short names ("GTiff", "JP2OpenJPEG"), at least one."""
    names = (drivers,) if isinstance(drivers, str) else tuple(drivers or ())
    if not names or not all(isinstance(n, str) and _DRIVER_NAME.match(n) for n in names):
        raise SpecError(f"drivers {drivers!r} must name one or more GDAL drivers, such as ('GTiff',)")
    return names


def _check_hosts(hosts: Any) -> tuple[str, ...] | None:
    """Host names (with an optional port), exact or ``*.domain``; None allows any host."""
    if hosts is None:
        return None
    names = (hosts,) if isinstance(hosts, str) else tuple(hosts)
    if not names or not all(isinstance(n, str) and _HOST_PATTERN.match(n) for n in names):
        raise SpecError(f"hosts {hosts!r} must be host names such as ('example.com', '*.amazonaws.com')")
    return tuple(n.lower() for n in names)


@dataclass(frozen=True)
class StacSource:
    """A STAC API collection; ``assets`` maps each cube variable to the Item asset that holds it.

    ``radiometry`` names how each Item's numbers become physical values (``stacube.radiometry``),
    ``duplicates`` which of several Items of one acquisition are read (``stacube.duplicates``).
    ``gdal_options`` are GDAL settings for reading the assets (``AWS_NO_SIGN_REQUEST``,
    ``AWS_REQUEST_PAYER``, an S3 endpoint), never credentials; ``signer`` signs each asset URL
    at read time ("planetary-computer", or "module:function" taking and returning a URL), so
    expiring tokens never reach the catalog, a commit or a log.

    What a source's Items may make stacube read: ``drivers`` are the GDAL drivers an asset may open
    with (GTiff, which reads COGs, by default): a file of any other format is refused before a pixel
    is read, since formats such as VRT name other files, local ones included, that GDAL would follow.
    ``hosts`` (None: any) are the hosts asset URLs may name, exactly or as ``*.example.com``.
    """

    api_url: str
    collection: str
    assets: Mapping[str, str]
    filter: Mapping[str, Any] | None = None  # CQL2-JSON applied when searching the local catalog
    allow_local_hrefs: bool = False  # harvested Items may not point at local files unless allowed
    publication_lag: str = "3D"  # how long after a date the source may still publish Items for it
    radiometry: str = "raster:bands"
    duplicates: str = "keep-all"
    gdal_options: Mapping[str, str] | None = None
    signer: str | None = None
    drivers: Sequence[str] = DEFAULT_DRIVERS
    hosts: Sequence[str] | None = None
    kind: str = field(default="stac", init=False)

    def __post_init__(self) -> None:
        _check_lag(self.publication_lag)
        url = urlparse(str(self.api_url))
        if url.scheme not in ("http", "https") or not url.netloc:
            raise SpecError(f"api_url {redact_url(str(self.api_url))!r} is not a STAC API URL (http:// or https://)")
        if url.username is not None or url.password is not None:
            raise SpecError(
                f"api_url {redact_url(str(self.api_url))!r} carries credentials: a spec is stored in the cube and "
                f"shown by `stacube cube info`, so it never holds secrets. Put them in ~/.netrc (machine "
                f"{url.hostname} login ... password ...), which both the STAC client and GDAL read")
        object.__setattr__(self, "drivers", _check_drivers(self.drivers))
        object.__setattr__(self, "hosts", _check_hosts(self.hosts))
        check_policy(self.radiometry)
        check_rule(self.duplicates)
        object.__setattr__(self, "gdal_options", _check_gdal_options(self.gdal_options))
        if self.signer is not None:
            check_signer(self.signer)

    @property
    def lag(self) -> pd.Timedelta:
        return pd.Timedelta(self.publication_lag)

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "api_url": self.api_url,
            "collection": self.collection,
            "assets": dict(self.assets),
            "filter": dict(self.filter) if self.filter else None,
            "allow_local_hrefs": self.allow_local_hrefs,
            "publication_lag": self.publication_lag,
            "radiometry": self.radiometry,
            "duplicates": self.duplicates,
            "gdal_options": dict(self.gdal_options) if self.gdal_options else None,
            "signer": self.signer,
            "drivers": list(self.drivers),
            "hosts": list(self.hosts) if self.hosts is not None else None,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StacSource:
        return cls(
            api_url=_without_credentials(data["api_url"]),
            collection=data["collection"],
            assets=dict(data["assets"]),
            filter=data.get("filter"),
            allow_local_hrefs=bool(data.get("allow_local_hrefs", False)),
            publication_lag=data.get("publication_lag", "3D"),
            radiometry=data.get("radiometry", "raster:bands"),
            duplicates=data.get("duplicates", "keep-all"),
            gdal_options=data.get("gdal_options"),
            signer=data.get("signer"),
            drivers=data.get("drivers") or DEFAULT_DRIVERS,
            hosts=data.get("hosts"),
        )


EARTH_ENGINE_URL = "https://earthengine.googleapis.com"


@dataclass(frozen=True)
class EarthEngineSource:
    """An Earth Engine ImageCollection; ``bands`` maps each cube variable to a band of its images.

    Its images are converted to STAC Items in the local catalog (one asset per band), so planning
    and the catalog work as for STAC; ``api_url`` is Earth Engine's (or a test emulator's).
    Credentials never live in the spec: see ``stacube.earthengine.initialize``.
    """

    collection: str
    bands: Mapping[str, str]
    project: str | None = None
    api_url: str = EARTH_ENGINE_URL
    max_concurrency: int = 16  # pixel requests in flight per process (a project gets 40 in all)
    publication_lag: str = "3D"
    radiometry: str = "raster:bands"  # "as-cube" where the images hold the cube's convention already
    kind: str = field(default="earthengine", init=False)

    def __post_init__(self) -> None:
        _check_lag(self.publication_lag)
        check_policy(self.radiometry)
        if not 1 <= int(self.max_concurrency) <= 40:
            raise SpecError(f"max_concurrency {self.max_concurrency!r} must be 1 to 40 (Earth Engine's project cap)")

    @property
    def assets(self) -> Mapping[str, str]:
        """Variable -> Item asset key: the converted Items hold one asset per band, keyed by band name."""
        return self.bands

    @property
    def lag(self) -> pd.Timedelta:
        return pd.Timedelta(self.publication_lag)

    filter = None  # no CQL2 filter on converted Items yet
    allow_local_hrefs = False
    duplicates = "keep-all"
    gdal_options = None
    signer = None

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "collection": self.collection, "bands": dict(self.bands), "project": self.project,
                "api_url": self.api_url, "max_concurrency": self.max_concurrency,
                "publication_lag": self.publication_lag, "radiometry": self.radiometry}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> EarthEngineSource:
        return cls(collection=data["collection"], bands=dict(data["bands"]), project=data.get("project"),
                   api_url=data.get("api_url", EARTH_ENGINE_URL), max_concurrency=int(data.get("max_concurrency", 16)),
                   publication_lag=data.get("publication_lag", "3D"),
                   radiometry=data.get("radiometry", "raster:bands"))


SOURCE_KINDS: dict[str, Any] = {"stac": StacSource, "earthengine": EarthEngineSource}


def _geobox_to_json(geobox: GeoBox) -> dict[str, Any]:
    return {"crs": geobox.crs.to_wkt(), "epsg": geobox.crs.epsg, "transform": list(geobox.transform)[:6],
            "shape": list(geobox.shape)}


def _is_whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_)


def _geobox_from_json(data: Mapping[str, Any]) -> GeoBox:
    shape, transform = data["shape"], data["transform"]
    if isinstance(shape, str) or not isinstance(shape, Sequence) or len(shape) != 2 or not all(map(_is_whole, shape)):
        raise SpecError(f"shape {shape!r} must be two whole numbers of pixels (y, x)")
    if (isinstance(transform, str) or not isinstance(transform, Sequence) or len(transform) != 6
            or not all(isinstance(v, numbers.Real) and not isinstance(v, bool) for v in transform)):
        raise SpecError(f"transform {transform!r} must be six numbers (a, b, c, d, e, f)")
    crs = f"EPSG:{data['epsg']}" if data.get("epsg") else data["crs"]
    try:
        return GeoBox(tuple(shape), Affine(*transform), crs)
    except SpecError:
        raise
    except Exception as err:  # pyproj's many error types (a CRS it does not know), a negative shape
        raise SpecError(f"crs {crs!r} and shape {list(shape)} make no GeoBox: {err}") from err


def _check_zone(name: Any, geobox: Any) -> None:
    """A zone must be a grid stacube can write: named, georeferenced, axis-aligned, finite, not empty,
    and small enough that its coordinates can be written (see MAX_AXIS_LENGTH)."""
    check_name("zone", name)
    if name == "zarr.json":
        raise SpecError(f"zone name {name!r} is reserved: it is {RESERVED_NAMES[name]}")
    if not isinstance(geobox, GeoBox):
        raise SpecError(f"zone {name!r} must be an odc-geo GeoBox, got {type(geobox).__name__}")
    if geobox.crs is None:
        raise SpecError(f"zone {name!r} has no CRS")
    coefficients = tuple(float(c) for c in tuple(geobox.transform)[:6])
    if not all(math.isfinite(c) for c in coefficients):
        raise SpecError(f"zone {name!r} has a transform that is not finite: {coefficients}")
    if not geobox.axis_aligned:
        raise SpecError(f"zone {name!r} is rotated; zones must be axis-aligned grids")
    if coefficients[0] == 0 or coefficients[4] == 0:
        raise SpecError(f"zone {name!r} has a resolution of 0 (transform {coefficients})")
    ny, nx = (int(n) for n in geobox.shape)
    if ny < 1 or nx < 1:
        raise SpecError(f"zone {name!r} is {ny} x {nx} pixels: a zone needs at least one pixel each way")
    if max(ny, nx) > MAX_AXIS_LENGTH:
        raise SpecError(
            f"zone {name!r} is {ny:,} x {nx:,} pixels: its y and x coordinates alone would take "
            f"{_gib(8 * (ny + nx))}, written whole when the cube is created and read whole by lazy loads. "
            f"A zone may be at most {MAX_AXIS_LENGTH:,} pixels a side ({_gib(8 * MAX_AXIS_LENGTH)} of coordinates "
            "per axis): use a coarser resolution or split the extent into several zones")


def _check_chunks(chunks: Any) -> tuple[int, int]:
    if (not isinstance(chunks, str | bytes) and isinstance(chunks, Sequence | np.ndarray) and len(chunks) == 2
            and all(map(_is_whole, chunks)) and min(int(c) for c in chunks) >= 16):
        return int(chunks[0]), int(chunks[1])
    raise SpecError(f"chunks {chunks!r} must be two whole numbers of pixels (y, x), each at least 16")


def _time_from_json(time: Any) -> pd.DatetimeIndex | None:
    if not time:
        return None
    periods = time["periods"]
    if not _is_whole(periods) or not 1 <= periods <= MAX_AXIS_LENGTH:
        raise SpecError(f"time periods {periods!r} must be a whole number of steps, 1 to {MAX_AXIS_LENGTH:,}")
    try:
        return pd.date_range(time["start"], periods=periods, freq=time["freq"])
    except (TypeError, ValueError, OverflowError) as err:
        raise SpecError(f"time axis {dict(time)!r} is not a pandas date range: {err}") from err


def _default_zone_names(geoboxes: Sequence[GeoBox]) -> list[str]:
    names: list[str] = []
    for geobox in geoboxes:
        base = f"epsg{geobox.crs.epsg}" if getattr(geobox, "crs", None) and geobox.crs.epsg else "zone"
        name, n = base, 1
        while name in names:
            name, n = f"{base}_{n}", n + 1
        names.append(name)
    return names


def _regular_time_axis(time: Any) -> pd.DatetimeIndex:
    if isinstance(time, str | bytes) or not hasattr(time, "__len__"):
        raise SpecError(f"time {reprlib.repr(time)} is not a time axis: give a pd.date_range(..., freq=...)")
    if len(time) > MAX_AXIS_LENGTH:
        raise SpecError(f"the time axis has {len(time):,} steps: at most {MAX_AXIS_LENGTH:,} (its coordinate "
                        "is written whole when the cube is created)")
    try:
        index = pd.DatetimeIndex(time)
    except (TypeError, ValueError, OverflowError) as err:
        raise SpecError(f"time {reprlib.repr(time)} is not a time axis: {err}") from err
    index = naive_utc(index)
    if len(index) == 0:
        raise SpecError("the time axis is empty")
    freq = index.freq or (pd.infer_freq(index) if len(index) > 2 else None)
    if freq is None and len(index) > 1:
        raise SpecError("the time axis must be a regular pandas range (pd.date_range(..., freq=...))")
    if freq is None:
        raise SpecError(
            "a one-step time axis needs an explicit freq, e.g. pd.date_range('2024-01-01', periods=1, freq='D')"
        )
    return pd.date_range(index[0], periods=len(index), freq=freq)


GROUP_BY = ("time", "solar_day")


@dataclass(frozen=True)
class CubeSpec:
    """Everything that defines a cube. Stored inside the cube, so ``Cube.open`` needs nothing else."""

    name: str
    variables: Mapping[str, Variable]
    zones: Mapping[str, GeoBox] | Sequence[GeoBox]
    source: StacSource | EarthEngineSource
    chunks: tuple[int, int] = (2048, 2048)
    time: pd.DatetimeIndex | None = None
    # Which step an Item belongs to: "time" (its UTC datetime falls in the step) or "solar_day" (its
    # local solar day, UTC time + centroid longitude / 15 h, as odc-stac groups: one satellite pass
    # is one day even where it crosses midnight UTC). "solar_day" needs a daily time axis.
    group_by: str = "time"

    def __post_init__(self) -> None:
        # Everything Cube.create would trip over is refused here, before anything is written.
        check_name("cube", self.name)
        if not isinstance(self.variables, Mapping):
            raise SpecError(f"variables must map names to stacube.Variable, got {type(self.variables).__name__}")
        if not self.variables:
            raise SpecError("a cube needs at least one variable")
        for name, variable in self.variables.items():
            check_name("variable", name)
            if name in RESERVED_NAMES:
                raise SpecError(f"variable name {name!r} is reserved: it is {RESERVED_NAMES[name]}; "
                                "give the variable another name")
            if not isinstance(variable, Variable):
                raise SpecError(f"variable {name!r} must be a stacube.Variable, got {type(variable).__name__}")
        zones = self.zones
        if isinstance(zones, GeoBox) or isinstance(zones, str) or not isinstance(zones, Mapping | Sequence):
            raise SpecError(f"zones must be a list of odc-geo GeoBoxes or a mapping of names to GeoBoxes, "
                            f"got {type(zones).__name__}")
        if not isinstance(zones, Mapping):
            zones = dict(zip(_default_zone_names(list(zones)), zones, strict=True))
        if not zones:
            raise SpecError("a cube needs at least one zone (an odc-geo GeoBox)")
        for name, geobox in zones.items():
            _check_zone(name, geobox)
        object.__setattr__(self, "zones", dict(zones))
        chunks = _check_chunks(self.chunks)
        widest = max(self.variables.values(), key=lambda v: v.numpy_dtype.itemsize)
        if chunks[0] * chunks[1] * widest.numpy_dtype.itemsize > MAX_CHUNK_BYTES:
            raise SpecError(f"chunks {self.chunks!r} make a {widest.dtype} patch of "
                            f"{_gib(chunks[0] * chunks[1] * widest.numpy_dtype.itemsize)}: a chunk is compressed "
                            "whole, at most 2 GiB; use smaller chunks")
        object.__setattr__(self, "chunks", chunks)
        if not isinstance(self.source, tuple(SOURCE_KINDS.values())):
            raise SpecError(f"source must be a StacSource or an EarthEngineSource, got {type(self.source).__name__}")
        if self.time is not None:
            object.__setattr__(self, "time", _regular_time_axis(self.time))
        if self.group_by not in GROUP_BY:
            raise SpecError(f"group_by {self.group_by!r} is not one of {GROUP_BY}")
        if self.group_by == "solar_day" and (self.time is None or self.time.freqstr != "D"):
            raise SpecError(f"group_by='solar_day' needs a daily time axis (freq 'D'), "
                            f"got {self.time.freqstr if self.time is not None else 'no time axis'}")
        missing = set(self.variables) - set(self.source.assets)
        extra = set(self.source.assets) - set(self.variables)
        if missing or extra:
            raise SpecError(
                f"spec and source disagree: variables without a source asset {sorted(missing)}, "
                f"source assets for unknown variables {sorted(extra)}"
            )

    @property
    def has_time(self) -> bool:
        return self.time is not None

    def time_json(self) -> dict[str, Any] | None:
        """The time axis as stored: start, number of steps and frequency."""
        if self.time is None:
            return None
        return {"start": self.time[0].isoformat(), "periods": len(self.time), "freq": self.time.freqstr}

    def to_json(self) -> dict[str, Any]:
        time = self.time_json()
        return {
            "spec_version": SPEC_VERSION,
            "name": self.name,
            "variables": {k: v.to_json() for k, v in self.variables.items()},
            "zones": {k: _geobox_to_json(g) for k, g in self.zones.items()},
            "chunks": list(self.chunks),
            "time": time,
            "group_by": self.group_by,
            "source": self.source.to_json(),
        }

    def differences(self, other: CubeSpec, labels: tuple[str, str] = ("this spec", "the other")) -> list[str]:
        """How ``other`` describes another cube than this spec does: one line per differing part
        (``source.api_url: 'http://a' in this spec, 'http://b' in the other``), none if both describe
        the same cube.

        The length of the time axis is not a difference: a cube's axis grows at its end, and a spec
        made later (Sentinel-2 "until today") reaches further. Its start and frequency are. Zones
        with an EPSG code are compared by code, not by the text of their WKT.
        """
        mine, theirs = (_comparable(spec) for spec in (self, other))
        found: list[str] = []
        _differ("", mine, theirs, labels, found)
        return found

    def save(self, path: str | os.PathLike) -> Path:
        """Write the spec as a JSON file (what ``stacube cube create --spec`` and ``CubeSpec.load`` read)."""
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CubeSpec:
        """The spec in a JSON file ``save`` (or ``stacube spec``) wrote; errors name the file."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise SpecError(f"spec file {str(path)!r}: no such file") from None
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise SpecError(f"spec file {str(path)!r} is not JSON: {err}") from None
        except OSError as err:
            raise SpecError(f"spec file {str(path)!r} cannot be read: {err.strerror or err}") from None
        try:
            return cls.from_json(data)
        except SpecError as err:
            raise SpecError(f"spec file {str(path)!r}: {err}") from err

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CubeSpec:
        """The spec ``to_json`` wrote (a file, a cube's attributes): any malformed part is a SpecError."""
        if not isinstance(data, Mapping):
            raise SpecError(f"a spec is a JSON object as CubeSpec.to_json() writes, got {type(data).__name__}")
        try:
            version = data.get("spec_version", 1)
            if not _is_whole(version) or version > SPEC_VERSION:
                raise SpecError(f"this cube was written by a newer stacube (spec version {version!r})")
            source = data["source"]
            source_cls = SOURCE_KINDS.get(source.get("kind", "stac"))
            if source_cls is None:
                raise SpecError(f"unknown source kind {source.get('kind')!r}")
            zones = {}
            for name, zone in data["zones"].items():
                try:
                    zones[name] = _geobox_from_json(zone)
                except SpecError as err:
                    raise SpecError(f"zone {name!r}: {err}") from err
            return cls(
                name=data["name"],
                variables={k: Variable.from_json(v) for k, v in data["variables"].items()},
                zones=zones,
                chunks=data["chunks"],
                time=_time_from_json(data.get("time")),
                source=source_cls.from_json(source),
                group_by=data.get("group_by", "time"),
            )
        except SpecError:
            raise
        except KeyError as err:
            raise SpecError(f"the spec lacks {err.args[0]!r} (see CubeSpec.to_json())") from err
        except (TypeError, ValueError, AttributeError) as err:
            raise SpecError(f"the spec is malformed: {type(err).__name__}: {err}") from err


def _comparable(spec: CubeSpec) -> dict[str, Any]:
    """A spec's JSON as it reads back from a cube, without what may differ between two specs of one cube."""
    data = CubeSpec.from_json(spec.to_json()).to_json()
    if data["time"]:
        data["time"].pop("periods")
    for zone in data["zones"].values():
        if zone.get("epsg"):
            zone.pop("crs")
    return data


def _differ(path: str, mine: Any, theirs: Any, labels: tuple[str, str], found: list[str]) -> None:
    if isinstance(mine, Mapping) and isinstance(theirs, Mapping):
        for key in [*mine, *(k for k in theirs if k not in mine)]:
            where = f"{path}.{key}" if path else str(key)
            if key not in theirs:
                found.append(f"{where}: only in {labels[0]}")
            elif key not in mine:
                found.append(f"{where}: only in {labels[1]}")
            else:
                _differ(where, mine[key], theirs[key], labels, found)
    elif mine != theirs:
        short = reprlib.Repr(maxstring=80, maxother=80, maxlist=8, maxdict=8)
        found.append(f"{path}: {short.repr(mine)} in {labels[0]}, {short.repr(theirs)} in {labels[1]}")
