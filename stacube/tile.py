"""The Tile as an xarray Dataset: the values on the ROI's GeoBox, with odc-geo's coordinates and CF attributes.

A Tile's dims, coordinates and CRS are exactly what ``odc.geo.xr.xr_coords`` gives its GeoBox
(invariant 9). Building them through ``xr_coords`` and DataArrays is a noticeable share of a warm
small load: the CRS's CF attributes are the same for every Tile in that CRS, so they are
taken from ``xr_coords`` once per CRS, and the Dataset is built from plain xarray Variables. Only
``GeoTransform`` (odc-geo's rendering of the affine) and the axes (``GeoBox.coordinates``) are made
per Tile. ``tests/unit/test_read_tile.py`` checks the result is identical to ``xr_coords``'s.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
from affine import Affine
from odc.geo.crs import CRS
from odc.geo.geobox import GeoBox
from odc.geo.xr import xr_coords

from .layout import convention_attrs
from .spec import CubeSpec
from .variables import Variable

CRS_COORD = "spatial_ref"  # odc-geo's default name for the CRS coordinate


def variable_attrs(variable: Variable) -> dict[str, Any]:
    """A Tile variable's attributes, eager or lazy: nodata, the CF ``grid_mapping`` (so GDAL finds the
    CRS in a .nc), ``_FillValue`` (what ``xr.decode_cf`` masks) and the variable's convention.

    Parameters
    ----------
    variable : Variable
        The cube variable (its ``nodata``, dtype, units and convention).

    Returns
    -------
    dict[str, Any]
        ``nodata``, ``grid_mapping``, ``_FillValue`` (not for a boolean variable) and what
        ``layout.convention_attrs`` gives.
    """
    attrs: dict[str, Any] = {"nodata": variable.nodata, "grid_mapping": CRS_COORD}
    if variable.numpy_dtype.kind != "b":
        attrs["_FillValue"] = variable.nodata
    attrs.update(convention_attrs(variable))
    return attrs


_CRS_COORDS: dict[str, tuple[np.ndarray, dict[str, Any]]] = {}


def _crs_coord(crs: CRS) -> tuple[np.ndarray, dict[str, Any]]:
    """The CRS coordinate's value and attributes but ``GeoTransform``, as ``xr_coords`` makes them.

    Kept by ``str(crs)``: the text the CRS was made from ("EPSG:3413", a WKT), so one text is one
    definition; hashing a CRS instead renders its WKT, a cost every load would pay."""
    key = str(crs)
    held = _CRS_COORDS.get(key)
    if held is None:
        made = xr_coords(GeoBox((1, 1), Affine.identity(), crs))[CRS_COORD]
        held = made.values, {k: v for k, v in made.attrs.items() if k != "GeoTransform"}
        if len(_CRS_COORDS) >= 256:
            _CRS_COORDS.clear()
        _CRS_COORDS[key] = held
    return held


def render_geo_transform(transform: Affine) -> str:
    """GDAL's GeoTransform as odc-geo writes it into ``spatial_ref`` (its ``_render_geo_transform``).

    Parameters
    ----------
    transform : Affine
        The grid's pixel-to-CRS transform.

    Returns
    -------
    str
        The six GDAL coefficients, space-separated, without trailing zeros.
    """
    return " ".join(f"{v:.24f}".rstrip("0").rstrip(".") for v in transform.to_gdal())


def tile_coords(dst: GeoBox) -> dict[str, Any]:
    """The Tile's spatial coordinates and CRS coordinate as xarray Variables: odc-geo's, made cheaply.

    Parameters
    ----------
    dst : GeoBox
        The ROI's GeoBox; a rotated one, or one without CRS, gets ``xr_coords``'s own coordinates.

    Returns
    -------
    dict[str, Any]
        The axes by name (``y``/``x``, or ``latitude``/``longitude`` on a geographic grid) and
        ``spatial_ref``, as ``xr_coords(dst)`` gives them.
    """
    crs = dst.crs
    if crs is None or not dst.axis_aligned:  # pixel coordinates (rotated grids): odc-geo's own, as they are
        return {name: coord.variable for name, coord in xr_coords(dst).items()}
    coords: dict[str, Any] = {}
    label = str(crs)
    for name, coord in zip(dst.dimensions, dst.coordinates.values(), strict=True):
        coords[name] = xr.IndexVariable((name,), coord.values,
                                        {"units": coord.units, "resolution": coord.resolution, "crs": label})
    value, attrs = _crs_coord(crs)
    coords[CRS_COORD] = xr.Variable((), value.copy(), {**attrs, "GeoTransform": render_geo_transform(dst.transform)})
    return coords


def tile_dataset(spec: CubeSpec, dst: GeoBox, steps: Sequence[int] | None, variables: Sequence[str],
                 values: dict[str, np.ndarray]) -> xr.Dataset:
    """The Tile as a Dataset: ``values`` per variable on ``dst`` (and the time ``steps``), with nodata and units.

    Parameters
    ----------
    spec : CubeSpec
        The cube's spec (its variables and time axis).
    dst : GeoBox
        The ROI's GeoBox.
    steps : Sequence[int] or None
        Positions on ``spec.time`` of the Tile's time steps; None for a cube without time.
    variables : Sequence[str]
        The variables to put in the Dataset, in that order.
    values : dict[str, np.ndarray]
        Each variable's values, shaped ``(len(steps), *dst.shape)`` or ``dst.shape``.

    Returns
    -------
    xarray.Dataset
        The Tile, its attributes from ``variable_attrs``.
    """
    coords = tile_coords(dst)  # odc-geo's: y/x for a projected CRS, latitude/longitude for a geographic one
    dims: tuple[str, ...] = tuple(dst.dimensions)
    if steps is not None:
        coords["time"] = pd.DatetimeIndex(spec.time[list(steps)])
        dims = ("time", *dims)
    data_vars = {name: xr.Variable(dims, values[name], variable_attrs(spec.variables[name])) for name in variables}
    return xr.Dataset(data_vars, coords=coords)
