"""A cube variable and its nodata: what every stage, from a source's backend to a Tile, agrees a value means.

Below the spec and the sources, so a backend can bring Items' numbers into a variable's dtype,
nodata and convention without knowing the rest of the cube's spec."""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from .errors import SpecError
from .radiometry import Convention

RESAMPLINGS = {"nearest", "bilinear", "cubic", "cubic_spline", "lanczos", "average", "mode", "min", "max", "med"}


def is_nan(value: Any) -> bool:
    """Whether ``value`` is a NaN nodata (or fill) value: a float that is NaN. The one test of "is nodata NaN".

    Only ``float`` and its subclasses count (Python floats and numpy float64), which is what a Variable
    keeps; None, integers, booleans, strings (``"nan"`` as JSON keeps it) and numpy float32 are not.

    Parameters
    ----------
    value : Any
        A nodata or fill value, of any type.

    Returns
    -------
    bool
        True for a ``float`` NaN only.
    """
    return isinstance(value, float) and math.isnan(value)


def nodata_to_json(value: Any) -> Any:
    """A nodata value as JSON keeps it: ``"nan"`` for NaN (JSON has none), anything else as it is.

    Parameters
    ----------
    value : Any
        A nodata value (``Variable.nodata``).

    Returns
    -------
    Any
        ``"nan"`` where ``is_nan(value)``, else ``value``.
    """
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

    Raises
    ------
    SpecError
        If ``dtype`` is not a numeric or boolean numpy dtype; ``nodata`` is missing for an integer
        dtype, not a number, not a whole number for an integer dtype, outside the dtype's (finite)
        range, infinite, or so small it would be stored as 0; ``units`` is not text; ``resampling`` is
        not one of ``RESAMPLINGS``; ``scale_factor`` or ``add_offset`` is not a finite number,
        ``scale_factor`` is 0, ``add_offset`` is given without a ``scale_factor``, or a boolean
        variable is given a convention other than 1 and 0.
    """

    dtype: str
    """The numpy dtype the cube stores, from source to Tile: a boolean, integer or float type,
    by any name numpy reads (``"f4"``, ``np.float32``); kept as numpy's name (``"float32"``)."""
    nodata: float | int | bool | None = None
    """The value that means "no data": each array's Zarr fill value and each exported COG's nodata. A
    value of ``dtype`` (whole and within range for integers, finite or NaN for floats; ``"nan"`` as JSON
    keeps it). None: NaN for floats, False for booleans; an integer dtype needs one given."""
    units: str | None = None
    """The physical values' units, as CF writes them (``"m"``, ``"K"``, ``"1"`` for reflectance);
    None: not declared. Goes into the variable's attributes."""
    resampling: str = "nearest"
    """How values are resampled where a grid changes: when a source's pixels are read onto a patch, and
    when a zone's pixels are reprojected onto an ROI. One of ``RESAMPLINGS``; ``"nearest"`` keeps
    values as they are (classes, masks)."""
    scale_factor: float | None = 1.0
    """CF ``scale_factor``: physical = stored * scale_factor + add_offset. Finite and not 0; 1.0 (the
    default) stores physical values. None: no convention (a cube made before stacube declared them):
    each Item's numbers are stored as read."""
    add_offset: float | None = 0.0
    """CF ``add_offset`` (see ``scale_factor``), finite; None with a ``scale_factor`` counts as 0.0. Kept
    as None when ``scale_factor`` is None."""

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
        """``dtype`` as a numpy dtype."""
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
        """The variable as a cube's stored spec keeps it (``from_json`` reads it back).

        Returns
        -------
        dict[str, Any]
            ``dtype``, ``nodata`` (``"nan"`` for NaN: ``nodata_to_json``), ``units``, ``resampling``,
            ``scale_factor`` and ``add_offset``.
        """
        return {"dtype": self.dtype, "nodata": nodata_to_json(self.nodata), "units": self.units,
                "resampling": self.resampling, "scale_factor": self.scale_factor, "add_offset": self.add_offset}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Variable:
        """The variable ``to_json`` wrote; a variable stored before conventions were declared (no
        ``scale_factor``) keeps its Items' numbers as read.

        Parameters
        ----------
        data : Mapping[str, Any]
            The stored variable.

        Returns
        -------
        Variable
            The variable, checked as a new one is.

        Raises
        ------
        KeyError
            If ``data`` has no ``dtype`` (``CubeSpec.from_json`` turns it into a SpecError).
        SpecError
            If the stored values make no valid Variable (see ``Variable``).
        """
        nodata = data.get("nodata")
        if nodata == "nan":
            nodata = float("nan")
        # A cube written before conventions were declared has neither key: its values are as read.
        return cls(data["dtype"], nodata=nodata, units=data.get("units"), resampling=data.get("resampling", "nearest"),
                   scale_factor=data.get("scale_factor"), add_offset=data.get("add_offset"))


def valid_values(values: np.ndarray, nodata: float | int | bool | None) -> np.ndarray:
    """Pixels that hold data where ``nodata`` (None: none declared) marks the rest; NaN never holds data.
    The one test of validity for sources, cube variables and Tiles alike.

    Parameters
    ----------
    values : numpy.ndarray
        The pixels, of any shape and dtype.
    nodata : float, int, bool or None
        The value that marks no data (NaN or None: only NaN does, in float arrays).

    Returns
    -------
    numpy.ndarray
        A boolean array of ``values``' shape, True where a pixel holds data.
    """
    declared = nodata is not None and not is_nan(nodata)
    if values.dtype.kind == "f":
        return ~np.isnan(values) & (values != nodata) if declared else ~np.isnan(values)
    return values != nodata if declared else np.ones(values.shape, bool)


def valid_mask(values: np.ndarray, variable: Variable) -> np.ndarray:
    """Pixels that hold data: not the variable's nodata (NaN-aware; for booleans, True is data).

    Parameters
    ----------
    values : numpy.ndarray
        The variable's pixels.
    variable : Variable
        The variable, whose ``nodata`` marks no data.

    Returns
    -------
    numpy.ndarray
        A boolean array of ``values``' shape, True where a pixel holds data (``valid_values``).
    """
    return valid_values(values, variable.nodata)
