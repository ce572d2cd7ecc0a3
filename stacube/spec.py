"""What a cube is: variables, zones, chunking, time axis and source; stored as JSON inside the cube."""

from __future__ import annotations

import contextvars
import json
import math
import numbers
import os
import re
import reprlib
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from odc.geo.geobox import GeoBox
from rasterio.transform import Affine

from .errors import SpecError
from .sources import EARTH_ENGINE_URL as EARTH_ENGINE_URL
from .sources import EarthEngineSource as EarthEngineSource
from .sources import StacSource as StacSource
from .sources import is_source, source_from_json
from .timeaxis import naive_utc
from .variables import Variable as Variable
from .variables import is_nan as is_nan
from .variables import nodata_to_json as nodata_to_json

# 2: variables declare their convention (scale_factor, add_offset) and sources their radiometry policy and
# duplicate rule. An older stacube must not write into such a cube (it would store Items' numbers unconverted).
SPEC_VERSION = 2
_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def check_name(kind: str, name: str) -> str:
    """A name checked before it becomes a Zarr path or a file name: no separators, no '..', nothing exotic.

    Parameters
    ----------
    kind : str
        What is named (``"cube"``, ``"variable"``, ``"zone"``, ``"tag"``), for the error message.
    name : str
        The name: letters, digits, ``_``, ``-`` and ``.``, starting with a letter or digit, no ``..``.

    Returns
    -------
    str
        ``name``.

    Raises
    ------
    SpecError
        If ``name`` is not a string, or not such a name.
    """
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


def check_resolution(resolution: Any) -> float:
    """A zone's pixel size given to a ready-made spec (``stacube.datasets``): a finite number above 0.

    Parameters
    ----------
    resolution : Any
        Metres (or degrees) per pixel.

    Returns
    -------
    float
        ``resolution`` as a Python float (odc-geo refuses a numpy float32).

    Raises
    ------
    SpecError
        If ``resolution`` is not a number (a bool is none), or is not finite and above 0.
    """
    if isinstance(resolution, bool) or not isinstance(resolution, numbers.Real) \
            or not (math.isfinite(resolution) and resolution > 0):
        raise SpecError(f"resolution {resolution!r} must be a finite number of metres per pixel above 0")
    return float(resolution)


def check_choices(kind: str, given: Any, allowed: Sequence[str], described: str | None = None) -> tuple[str, ...]:
    """Names picked from ``allowed`` (bands of a ready-made spec), each once, in the order given.

    Parameters
    ----------
    kind : str
        What is picked (``"Sentinel-2 bands"``), for the error message.
    given : Any
        A sequence of names, or one name as a string.
    allowed : Sequence[str]
        The names that may be picked.
    described : str or None, optional
        ``allowed`` as the message names it (``"A00 .. A63"``); None: the list itself.

    Returns
    -------
    tuple[str, ...]
        The names picked.

    Raises
    ------
    SpecError
        If ``given`` is no sequence of names, is empty, or names one not in ``allowed``.
    """
    try:
        names = (given,) if isinstance(given, str) else tuple(dict.fromkeys(given))
    except TypeError:  # a number, say, or a name that is no string and cannot be hashed
        names = ()
    unknown = [n for n in names if not isinstance(n, str) or n not in allowed]
    if not names or unknown:
        raise SpecError(f"{kind} {given!r} must name one or more of {described or list(allowed)}"
                        + (f"; unknown: {unknown}" if unknown else ""))
    return names


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.1f} GiB" if nbytes >= 2**30 else f"{nbytes / 2**20:.0f} MiB"




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
    given = index
    index = naive_utc(index)
    if given.tz is not None and len(index) and not (index == given.tz_localize(None)).all():
        warnings.warn(f"the time axis given in {given.tz} is held in UTC: its first step is {index[0]} UTC, and a TOI "
                      "without a UTC offset is read as UTC (write '2024-01-02T00:00+01:00' for a local midnight)",
                      stacklevel=4)
    if len(index) == 0:
        raise SpecError("the time axis is empty")
    freq = index.freq or (pd.infer_freq(index) if len(index) > 2 else None)
    if freq is None and len(index) > 1:
        raise SpecError("the time axis must be a regular pandas range (pd.date_range(..., freq=...))")
    if freq is None:
        raise SpecError(
            "a one-step time axis needs an explicit freq, e.g. pd.date_range('2024-01-01', periods=1, freq='D')"
        )
    axis = pd.date_range(index[0], periods=len(index), freq=freq)
    _check_stored_axis(axis)
    return axis


# Offsets whose labels are their period's END: a step is read as [label, next label), so a month-end
# label would hold the next month's data. Their start-anchored twins.
_END_ANCHORED = {
    pd.offsets.MonthEnd: "MS", pd.offsets.BusinessMonthEnd: "BMS", pd.offsets.SemiMonthEnd: "SMS",
    pd.offsets.QuarterEnd: "QS", pd.offsets.BQuarterEnd: "BQS", pd.offsets.YearEnd: "YS", pd.offsets.BYearEnd: "BYS",
}
_OPENING = contextvars.ContextVar("stacube_opening_stored_spec", default=False)


def _check_stored_axis(axis: pd.DatetimeIndex) -> None:
    """Refuse an axis that the cube would not hold as given: one whose frequency is stored as a string that
    rebuilds other steps (``Week()`` without a weekday, custom holidays, business hours: reopened, every
    patch would be read as another period), or labels its steps with their period's end."""
    try:
        again = pd.date_range(axis[0], periods=len(axis), freq=axis.freqstr)
    except (TypeError, ValueError) as err:
        raise SpecError(f"the time axis's frequency {axis.freq!r} cannot be stored (as {axis.freqstr!r}): use one "
                        "pandas names by a string, such as 'MS' for months") from err
    if not again.equals(axis):
        raise SpecError(f"the time axis's frequency {axis.freq!r} is stored as {axis.freqstr!r}, which gives other "
                        f"steps ({list(map(str, again[:2]))} for {list(map(str, axis[:2]))}): name it fully, "
                        "e.g. 'W-WED' for weeks starting on Wednesdays")
    twin = next((start for end, start in _END_ANCHORED.items() if isinstance(axis.freq, end)), None)
    if twin is not None:
        message = (f"the time axis's frequency {axis.freqstr!r} labels each step with its period's end, but a "
                   f"step holds [its label, the next label): {axis[0]:%Y-%m-%d} would hold the next period's "
                   f"data; use {twin!r} (steps labelled with their period's start)")
        if not _OPENING.get():
            raise SpecError(message)
        warnings.warn(f"{message}. This cube was made so and keeps working as before.", stacklevel=4)


GROUP_BY = ("time", "solar_day")


@dataclass(frozen=True)
class CubeSpec:
    """Everything that defines a cube. Stored inside the cube, so ``Cube.open`` needs nothing else.

    Checked whole when made: everything ``Cube.create`` would trip over is refused here, before
    anything is written or downloaded.

    Raises
    ------
    SpecError
        If a field is not what it says below: a name that is not allowed (``check_name``) or reserved
        (``RESERVED_NAMES``), no variable or no zone, a value that is not a ``Variable`` or a GeoBox, a
        zone without a CRS, rotated, with a resolution of 0, a transform that is not finite or more than
        ``MAX_AXIS_LENGTH`` pixels a side, chunks that are not two whole numbers of at least 16 or make
        a chunk of more than 2 GiB, a source that is neither a StacSource nor an EarthEngineSource, a
        time axis that is not a regular pandas range, an unknown ``group_by`` (or ``"solar_day"``
        without a daily axis), or variables and ``source.assets`` that do not name the same variables.
    """

    name: str
    """The cube's name, as Tiles (``stacube_cube``), its first commit and messages give it: letters,
    digits, ``_``, ``-`` and ``.``."""
    variables: Mapping[str, Variable]
    """Variable name -> ``Variable`` (dtype, nodata, units, convention): at least one, each named as
    ``name`` is and none of ``RESERVED_NAMES``, and each one a key of ``source.assets``."""
    zones: Mapping[str, GeoBox] | Sequence[GeoBox]
    """One odc-geo GeoBox per zone (its CRS, resolution and extent), each stored as a Zarr group on its
    own grid: axis-aligned, at least one pixel and at most ``MAX_AXIS_LENGTH`` pixels a side. A mapping
    names them; a list is named by EPSG code (``epsg32633``, then ``epsg32633_1``; ``zone`` without
    one). Kept as a dict of names to GeoBoxes once made."""
    source: StacSource | EarthEngineSource
    """Where the data come from: the catalog collection, the backend that reads it, and which asset
    (or band) holds each variable."""
    chunks: tuple[int, int] = (2048, 2048)
    """Pixels (y, x) of one chunk, which is also one patch (the unit of download and write): each at
    least 16, and one chunk of the widest variable at most 2 GiB (Blosc's limit). Kept as a tuple."""
    time: pd.DatetimeIndex | None = None
    """The time axis: None for a spatial-only cube; else a regular pandas range
    (``pd.date_range(..., freq=...)``, a one-step axis with its ``freq`` given), of at most
    ``MAX_AXIS_LENGTH`` steps, kept in naive UTC. Each step spans from its date to the next; the axis
    may grow at its end (``Cube.extend_time``)."""
    group_by: str = "time"
    """Which step an Item belongs to: ``"time"`` (its UTC datetime falls in the step) or ``"solar_day"``
    (its local solar day, UTC time + centroid longitude / 15 h, as odc-stac groups: one satellite pass
    is one day even where it crosses midnight UTC). ``"solar_day"`` needs a daily time axis."""

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
        if not is_source(self.source):
            raise SpecError(f"source must be a StacSource or an EarthEngineSource, got {type(self.source).__name__}")
        if self.time is not None:
            object.__setattr__(self, "time", _regular_time_axis(self.time))
        if self.group_by not in GROUP_BY:
            raise SpecError(f"group_by {self.group_by!r} is not one of {GROUP_BY}")
        if self.group_by == "solar_day" and (self.time is None or self.time.freqstr != "D"):
            raise SpecError(f"group_by='solar_day' needs a daily time axis (freq 'D'), "
                            f"got {self.time.freqstr if self.time is not None else 'no time axis'}")
        if self.group_by == "solar_day" and self.time[0] != self.time[0].normalize():
            # a solar day is a date: steps at 22:00 UTC (a local midnight) would read one date as two steps
            raise SpecError(f"group_by='solar_day' needs a daily axis at 00:00 UTC, got steps at "
                            f"{self.time[0]:%H:%M} UTC ({self.time[0]}): start it at a date, not a local time")
        missing = set(self.variables) - set(self.source.assets)
        extra = set(self.source.assets) - set(self.variables)
        if missing or extra:
            raise SpecError(
                f"spec and source disagree: variables without a source asset {sorted(missing)}, "
                f"source assets for unknown variables {sorted(extra)}"
            )

    @property
    def has_time(self) -> bool:
        """Whether the cube has a time axis (False: spatial-only)."""
        return self.time is not None

    def time_json(self) -> dict[str, Any] | None:
        """The time axis as stored: start, number of steps and frequency.

        Returns
        -------
        dict[str, Any] or None
            ``start`` (ISO 8601, naive UTC), ``periods`` and ``freq`` (a pandas frequency string);
            None for a spatial-only cube.
        """
        if self.time is None:
            return None
        return {"start": self.time[0].isoformat(), "periods": len(self.time), "freq": self.time.freqstr}

    def to_json(self) -> dict[str, Any]:
        """The spec as a cube's attributes and a spec file keep it, so that it can be made again.

        Returns
        -------
        dict[str, Any]
            JSON-ready: ``spec_version``, ``name``, ``variables``, ``zones`` (each one's CRS as WKT and
            EPSG code, transform and shape), ``chunks``, ``time`` (``time_json``), ``group_by`` and
            ``source`` (its own ``to_json``, ``kind`` included); ``from_json`` reads it back.
        """
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

        Parameters
        ----------
        other : CubeSpec
            The spec to compare with (another cube's, or one about to be opened as this one).
        labels : tuple[str, str], optional
            How the lines name this spec and ``other``.

        Returns
        -------
        list[str]
            One line per differing part, by its JSON path; empty if both describe the same cube.
        """
        mine, theirs = (_comparable(spec) for spec in (self, other))
        found: list[str] = []
        _differ("", mine, theirs, labels, found)
        return found

    def save(self, path: str | os.PathLike) -> Path:
        """Write the spec as a JSON file (what ``stacube cube create --spec`` and ``CubeSpec.load`` read).

        Parameters
        ----------
        path : str or os.PathLike
            The file to write (replaced if it exists; its folder must exist).

        Returns
        -------
        pathlib.Path
            ``path``.

        Raises
        ------
        OSError
            If the file cannot be written (no such folder, no permission, no space).
        """
        path = Path(path)
        path.write_text(json.dumps(self.to_json(), indent=2) + "\n")
        return path

    @classmethod
    def load(cls, path: str | os.PathLike) -> CubeSpec:
        """The spec in a JSON file ``save`` (or ``stacube spec``) wrote; errors name the file.

        Parameters
        ----------
        path : str or os.PathLike
            The JSON file.

        Returns
        -------
        CubeSpec
            The spec, checked as any new one is.

        Raises
        ------
        SpecError
            If the file does not exist, cannot be read, is not JSON, or holds no valid spec (as
            ``from_json``); the message names the file.
        """
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
        """The spec ``to_json`` wrote (a file, a cube's attributes): any malformed part is a SpecError.

        Specs of older stacube versions read too (a source without ``kind`` is STAC; a variable without
        a convention keeps its Items' numbers as read).

        Parameters
        ----------
        data : Mapping[str, Any]
            The JSON object.

        Returns
        -------
        CubeSpec
            The spec, checked as any new one is.

        Raises
        ------
        SpecError
            If ``data`` is not a mapping, was written by a newer stacube (``spec_version`` above
            ``SPEC_VERSION``), names an unknown source kind, lacks a key, holds a zone that makes no
            GeoBox or a time axis that is not a pandas date range, or makes an invalid spec (see
            ``CubeSpec``).
        """
        if not isinstance(data, Mapping):
            raise SpecError(f"a spec is a JSON object as CubeSpec.to_json() writes, got {type(data).__name__}")
        try:
            version = data.get("spec_version", 1)
            if not _is_whole(version) or version > SPEC_VERSION:
                raise SpecError(f"this cube was written by a newer stacube (spec version {version!r})")
            source = source_from_json(data["source"])
            zones = {}
            for name, zone in data["zones"].items():
                try:
                    zones[name] = _geobox_from_json(zone)
                except SpecError as err:
                    raise SpecError(f"zone {name!r}: {err}") from err
            opening = _OPENING.set(True)  # a stored axis made before a rule: warned about, not refused
            try:
                return cls(
                    name=data["name"],
                    variables={k: Variable.from_json(v) for k, v in data["variables"].items()},
                    zones=zones,
                    chunks=data["chunks"],
                    time=_time_from_json(data.get("time")),
                    source=source,
                    group_by=data.get("group_by", "time"),
                )
            finally:
                _OPENING.reset(opening)
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
