"""NDVI and NDMI per parcel per acquisition, cloud-masked with the scene classification (SCL).

A Tile of the Sentinel-2 cube over a group of parcels comes in; parcel ids are rasterized once onto
its grid (a pixel belongs to the parcel that contains its centre; where parcels overlap, the one
listed last) and reused for every date. Per date, pixels whose SCL class is masked (default: no
data, saturated, cloud shadow, cloud medium and high probability, thin cirrus, snow) or whose bands
are nodata are left out; statistics are grouped with ``np.bincount`` and one sort, never a loop
over parcels. A parcel-date whose valid fraction is below the threshold is kept as "no usable
data" with its reason: "clouds" (masked by cloud, shadow or snow classes), "nodata" (outside the
granule, defective pixels), "smaller than a pixel" (no pixel centre inside the parcel, after the
optional inward buffer that leaves mixed edge pixels out) or "not downloaded" (some of the parcel's
pixels are nodata under a patch the cube does not hold on that date: a download failed; its
statistics are left out until an ingest fetches the patch).

Reflectance comes from the Tile's own convention (CF ``scale_factor``/``add_offset``, which the cube
declares and every Tile carries), never from a constant: a cube that holds Sentinel-2 of several
processing baselines has them in one convention already. A cube made before conventions were
declared holds each Item's numbers as read; its indices need ``IndexSettings(scale=..., offset=...)``
that hold for all its Items, and are refused without them.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from dataclasses import dataclass

import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import xarray as xr
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from ..errors import SpecError
from ..radiometry import RadiometryError
from ..variables import valid_values

DEFAULT_MASKED_CLASSES = (0, 1, 3, 8, 9, 10, 11)
CLOUD_CLASSES = (3, 8, 9, 10, 11)  # shadow, cloud medium and high probability, cirrus, snow


def _is_number(value: object) -> bool:
    """A real number (a NumPy one too), not a bool or a string: comparing those would raise or mislead."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


@dataclass(frozen=True)
class IndexSettings:
    """Which bands to read, what to mask, and how far inside each parcel to look.

    Raises
    ------
    SpecError
        If ``inward_buffer_m`` is not a number of metres, 0 or more (negative, NaN, infinite, a string), or
        ``min_valid_fraction`` is not a share from 0 to 1.
    """

    red: str = "B04"
    """The cube variable holding red reflectance (Sentinel-2 B04)."""
    nir: str = "B08"
    """The cube variable holding near-infrared reflectance (Sentinel-2 B08)."""
    swir: str = "B11"
    """The cube variable holding shortwave-infrared reflectance, for NDMI (Sentinel-2 B11, 1610 nm)."""
    scl: str = "SCL"
    """The cube variable holding the Sentinel-2 scene classification (class codes 0-11)."""
    masked_classes: tuple[int, ...] = DEFAULT_MASKED_CLASSES
    """SCL class codes whose pixels are left out (default: no data, saturated, cloud shadow, cloud
    medium and high probability, thin cirrus, snow)."""
    min_valid_fraction: float = 0.3
    """The share (0 to 1) of a parcel's pixels that must be valid for its parcel-date to be usable."""
    inward_buffer_m: float = 0.0
    """Metres every parcel is shrunk by before its pixels are chosen, so pixels mixing the field with
    its border are left out; 0 or more, and more than 0 needs a Tile on a metric grid."""
    scale: float | None = None
    """Reflectance per stored step (reflectance = stored * scale + offset), only for cubes that declare
    no convention of their own (made before stacube declared them); a cube's declared convention always
    wins and may not be contradicted. None: the cube's."""
    offset: float | None = None
    """Reflectance of a stored 0, under the same terms as ``scale``. None: the cube's."""

    def __post_init__(self) -> None:
        if not (_is_number(self.inward_buffer_m) and 0 <= self.inward_buffer_m < np.inf):
            raise SpecError(f"inward_buffer_m {self.inward_buffer_m!r} must be a distance in metres, 0 or more")
        if not (_is_number(self.min_valid_fraction) and 0 <= self.min_valid_fraction <= 1):
            raise SpecError(f"min_valid_fraction {self.min_valid_fraction!r} must be a share of a parcel's pixels, "
                            "from 0 to 1")

    @property
    def variables(self) -> list[str]:
        """The cube variables a parcel pipeline loads: red, NIR, SWIR and SCL, in that order."""
        return [self.red, self.nir, self.swir, self.scl]


def rasterize_parcels(geometries: gpd.GeoSeries, geobox: GeoBox, inward_buffer_m: float = 0.0) -> np.ndarray:
    """Which parcel each pixel of ``geobox`` belongs to, rasterized once and reused for every date.

    A pixel belongs to the parcel that contains its centre; where parcels overlap, the one listed last.

    Parameters
    ----------
    geometries : geopandas.GeoSeries
        The parcels (any CRS); empty or missing geometries get no pixel.
    geobox : GeoBox
        The Tile's grid.
    inward_buffer_m : float, optional
        Metres each parcel is shrunk by first (0: none).

    Returns
    -------
    np.ndarray
        int32 of ``geobox``'s shape: the parcel's position in ``geometries`` + 1, 0 outside every parcel.

    Raises
    ------
    SpecError
        If ``inward_buffer_m`` is set and ``geobox`` is not on a projected grid in metres.
    ValueError
        If ``geometries`` has no CRS (geopandas' ``to_crs``).
    """
    local = geometries.to_crs(geobox.crs)
    if inward_buffer_m:
        if not geobox.crs.projected or geobox.crs.units[0] not in ("metre", "m"):
            raise SpecError(f"inward_buffer_m {inward_buffer_m!r} needs a Tile on a metric grid, not {geobox.crs}: "
                            "use a cube on a projected grid in metres, or inward_buffer_m=0")
        local = local.buffer(-inward_buffer_m)
    shapes = [(geometry, index + 1) for index, geometry in enumerate(local)
              if geometry is not None and not geometry.is_empty]
    if not shapes:
        return np.zeros(geobox.shape.yx, dtype="int32")
    return rasterio.features.rasterize(shapes, out_shape=geobox.shape.yx, transform=geobox.transform, fill=0,
                                       dtype="int32")


def reflectance_convention(tile: xr.Dataset, name: str, settings: IndexSettings) -> tuple[float, float]:
    """(scale, offset) that turn ``tile[name]``'s numbers into reflectance: the Tile's declared convention,
    or for a cube that declares none, the settings' (refused without them).

    Parameters
    ----------
    tile : xarray.Dataset
        A Tile of the Sentinel-2 cube.
    name : str
        The reflectance variable.
    settings : IndexSettings
        Its ``scale`` and ``offset``, if set.

    Returns
    -------
    tuple[float, float]
        (scale, offset): reflectance = stored * scale + offset.

    Raises
    ------
    RadiometryError
        If the cube declares no convention and ``settings`` lack ``scale`` or ``offset``; or if the cube
        declares one and ``settings`` contradict it.
    """
    attrs = tile[name].attrs
    if "stacube_convention" in attrs:  # a cube made before conventions: each Item's numbers as read
        if settings.scale is None or settings.offset is None:
            raise RadiometryError(
                f"variable {name!r} of this cube holds each Item's numbers as read, in no declared convention "
                "(the cube was made before stacube declared them), so reflectance cannot be known from it; pass "
                "IndexSettings(scale=..., offset=...) that hold for every Item in it, or rebuild the cube")
        return float(settings.scale), float(settings.offset)
    scale, offset = float(attrs.get("scale_factor", 1.0)), float(attrs.get("add_offset", 0.0))
    if (settings.scale is not None and not np.isclose(settings.scale, scale)) or \
            (settings.offset is not None and not np.isclose(settings.offset, offset)):
        raise RadiometryError(f"variable {name!r} declares reflectance = stored * {scale:g} + {offset:g}; "
                              f"IndexSettings(scale={settings.scale}, offset={settings.offset}) contradicts it")
    return scale, offset


def _grouped_median(groups: np.ndarray, values: np.ndarray, count: np.ndarray) -> np.ndarray:
    """The median of ``values`` within each group (``count`` values each; NaN where none), with one sort."""
    order = np.lexsort((values, groups))
    ordered = values[order]
    starts = np.concatenate(([0], np.cumsum(count)[:-1]))
    median = np.full(len(count), np.nan)
    has = count > 0
    low = ordered[starts[has] + (count[has] - 1) // 2]
    high = ordered[starts[has] + count[has] // 2]
    median[has] = (low + high) / 2
    return median


def _stats(groups: np.ndarray, values: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    count = np.bincount(groups, minlength=n)
    total = np.bincount(groups, weights=values, minlength=n)
    squares = np.bincount(groups, weights=values * values, minlength=n)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
    return mean, _grouped_median(groups, values, count), std, count


def parcel_statistics(tile: xr.Dataset, parcels: gpd.GeoDataFrame, settings: IndexSettings | None = None,
                      run_id: str | None = None) -> pd.DataFrame:
    """One row per parcel and time step of ``tile``: NDVI and NDMI mean, median, std, valid pixels,
    the parcel's pixels, the valid fraction, whether it is usable and why not.

    A pixel is valid where its SCL class is not masked, no band is nodata, and red, NIR and SWIR
    reflectance are all above 0 (0 or below is no measurement, and its ratio is unbounded); every
    index then lies in (-1, 1). A parcel-date is usable with at least one valid pixel and
    ``min_valid_fraction`` of its pixels valid.

    Parameters
    ----------
    tile : xarray.Dataset
        A Tile of the Sentinel-2 cube holding ``settings.variables``, with or without time.
    parcels : geopandas.GeoDataFrame
        The parcels, with a ``parcel_id`` column (any CRS).
    settings : IndexSettings or None, optional
        Bands, masking and buffer; None: ``IndexSettings()``.
    run_id : str or None, optional
        Written in every row's ``run_id``.

    Returns
    -------
    pandas.DataFrame
        The columns of ``store.OBSERVATION_COLUMNS``; ``date`` is NaT for a Tile without time. A
        parcel-date below ``min_valid_fraction`` has ``usable`` False and ``reason`` "clouds", "nodata" or
        "smaller than a pixel".

    Raises
    ------
    RadiometryError
        If a band's reflectance convention cannot be known, or ``settings`` contradict it
        (``reflectance_convention``).
    SpecError
        If ``settings.inward_buffer_m`` is set and the Tile is not on a metric grid.
    """
    settings = settings or IndexSettings()
    geobox = tile.odc.geobox
    conventions = {name: reflectance_convention(tile, name, settings) for name in (settings.red, settings.nir,
                                                                                  settings.swir)}
    nodata_of = {name: tile[name].attrs.get("nodata", 0) for name in (settings.red, settings.nir, settings.swir)}
    ids = rasterize_parcels(parcels.geometry, geobox, settings.inward_buffer_m).ravel()
    inside = ids > 0
    groups = ids[inside] - 1
    n = len(parcels)
    pixels = np.bincount(groups, minlength=n)
    parcel_ids = parcels["parcel_id"].astype(str).to_numpy()
    masked = np.asarray(settings.masked_classes)
    frames = []
    for step in range(tile.sizes.get("time", 1)):
        def band(name: str, step: int = step) -> np.ndarray:
            values = tile[name].values
            return (values[step] if "time" in tile[name].dims else values).ravel()[inside]

        scl = band(settings.scl)
        dn = {name: band(name) for name in (settings.red, settings.nir, settings.swir)}
        red, nir, swir = (dn[name].astype("float64") * conventions[name][0] + conventions[name][1]
                          for name in (settings.red, settings.nir, settings.swir))
        valid = ~np.isin(scl, masked)
        for name in (settings.red, settings.nir, settings.swir):
            valid &= valid_values(dn[name], nodata_of[name])
        # Reflectance of 0 or below is no measurement (the BOA offset's floor, noise over dark water and
        # shadow): a ratio of such values is meaningless and unbounded (-0.009 and +0.009 give a sum of
        # 1e-17 in floating point, an NDVI of -6e14). With all three above 0 each index lies in (-1, 1).
        valid &= (red > 0) & (nir > 0) & (swir > 0)
        with np.errstate(invalid="ignore", divide="ignore"):
            ndvi = (nir - red) / (nir + red)
            ndmi = (nir - swir) / (nir + swir)
        g = groups[valid]
        ndvi_mean, ndvi_median, ndvi_std, count = _stats(g, ndvi[valid], n)
        ndmi_mean, ndmi_median, ndmi_std, _ = _stats(g, ndmi[valid], n)
        with np.errstate(invalid="ignore", divide="ignore"):
            fraction = np.where(pixels > 0, count / np.maximum(pixels, 1), 0.0)
        clouds = np.bincount(groups, weights=np.isin(scl, CLOUD_CLASSES), minlength=n)
        unusable = ~valid & ~np.isin(scl, CLOUD_CLASSES)
        nodata = np.bincount(groups, weights=unusable, minlength=n)
        usable = (count > 0) & (fraction >= settings.min_valid_fraction)  # a share of 0 still needs a pixel
        reason = np.where(usable, None, np.where(pixels == 0, "smaller than a pixel",
                                                 np.where(clouds >= nodata, "clouds", "nodata")))
        when = pd.Timestamp(tile.time.values[step]) if "time" in tile.dims else pd.NaT
        frames.append(pd.DataFrame({
            "parcel_id": parcel_ids, "date": when, "ndvi_mean": ndvi_mean, "ndvi_median": ndvi_median,
            "ndvi_std": ndvi_std, "ndmi_mean": ndmi_mean, "ndmi_median": ndmi_median, "ndmi_std": ndmi_std,
            "valid_pixels": count, "total_pixels": pixels, "valid_fraction": fraction, "usable": usable,
            "reason": reason, "run_id": run_id,
        }))
    columns = ["parcel_id", "date", "ndvi_mean", "ndvi_median", "ndvi_std", "ndmi_mean", "ndmi_median", "ndmi_std",
               "valid_pixels", "total_pixels", "valid_fraction", "usable", "reason", "run_id"]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=columns)


def not_downloaded(rows: pd.DataFrame, tile: xr.Dataset, parcels: gpd.GeoDataFrame,
                   missing: Sequence[tuple[pd.Timestamp | None, Geometry]],
                   settings: IndexSettings | None = None) -> pd.DataFrame:
    """The rows whose parcel has nodata pixels under a patch the cube does not hold, marked "not downloaded".

    Such pixels are nodata because the patch's download failed or has not happened, not because the
    source had none: the parcel-date's statistics would come from part of the parcel, or its reason
    would say "nodata". Its statistics are left out (NaN, no valid pixel), it is not usable, and its
    reason says why; the ingest that fetches the patch covers the date again. A parcel whose pixels
    there another zone filled keeps its row.

    Parameters
    ----------
    rows : pandas.DataFrame
        ``parcel_statistics``'s rows for ``tile`` and ``parcels``.
    tile : xarray.Dataset
        The Tile they were computed from.
    parcels : geopandas.GeoDataFrame
        The parcels, with a ``parcel_id`` column and a CRS.
    missing : Sequence[tuple[pandas.Timestamp or None, Geometry]]
        Each missing patch's step and extent (``run.missing_patch_areas``).
    settings : IndexSettings or None, optional
        As given to ``parcel_statistics``; None: ``IndexSettings()``.

    Returns
    -------
    pandas.DataFrame
        ``rows``, with the parcel-dates that lack a missing patch's pixels marked.
    """
    if not missing or rows.empty:
        return rows
    settings = settings or IndexSettings()
    geobox = tile.odc.geobox
    ids = rasterize_parcels(parcels.geometry, geobox, settings.inward_buffer_m)
    parcel_ids = parcels["parcel_id"].astype(str).to_numpy()
    times = list(pd.to_datetime(tile.time.values)) if "time" in tile.dims else [None]
    hit = pd.Series(False, index=rows.index)
    for when, extent in missing:
        if when not in times:
            continue
        step = times.index(when)
        under = rasterio.features.geometry_mask([extent.to_crs(geobox.crs).geom], out_shape=geobox.shape.yx,
                                                transform=geobox.transform, invert=True, all_touched=True)
        empty = np.zeros(geobox.shape.yx, dtype=bool)
        for name in settings.variables:
            values = tile[name].values[step] if "time" in tile[name].dims else tile[name].values
            empty |= ~valid_values(values, tile[name].attrs.get("nodata", 0))
        lacking = np.unique(ids[under & empty & (ids > 0)]) - 1
        if len(lacking):
            same_date = rows["date"].isna() if when is None else rows["date"] == when
            hit |= same_date & rows["parcel_id"].isin(parcel_ids[lacking])
    if not hit.any():
        return rows
    rows = rows.copy()
    statistics = ["ndvi_mean", "ndvi_median", "ndvi_std", "ndmi_mean", "ndmi_median", "ndmi_std"]
    rows.loc[hit, statistics] = np.nan
    rows.loc[hit, ["valid_pixels", "valid_fraction"]] = 0
    rows.loc[hit, "usable"] = False
    rows.loc[hit, "reason"] = "not downloaded"
    return rows


def no_acquisition(parcels: gpd.GeoDataFrame, period_start: pd.Timestamp, run_id: str | None = None) -> pd.DataFrame:
    """Rows recording that a period had no acquisition at all over these parcels (not silently dropped).

    Parameters
    ----------
    parcels : geopandas.GeoDataFrame
        The parcels, with a ``parcel_id`` column.
    period_start : pd.Timestamp
        The period's start: every row's ``date``.
    run_id : str or None, optional
        Written in every row's ``run_id``.

    Returns
    -------
    pandas.DataFrame
        A row per parcel with the columns of ``store.OBSERVATION_COLUMNS``: no statistics, no pixels,
        ``usable`` False and ``reason`` "no acquisition".
    """
    n = len(parcels)
    return pd.DataFrame({
        "parcel_id": parcels["parcel_id"].astype(str).to_numpy(), "date": pd.Timestamp(period_start),
        "ndvi_mean": np.nan, "ndvi_median": np.nan, "ndvi_std": np.nan, "ndmi_mean": np.nan,
        "ndmi_median": np.nan, "ndmi_std": np.nan, "valid_pixels": np.zeros(n, int), "total_pixels": np.zeros(n, int),
        "valid_fraction": np.zeros(n), "usable": np.zeros(n, bool), "reason": "no acquisition", "run_id": run_id,
    })
