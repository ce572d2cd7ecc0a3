"""How an Item's numbers become a cube variable's: per-Item scale and offset, into the cube's convention.

A cube variable declares its convention the CF way (``scale_factor``, ``add_offset``: physical =
stored * scale_factor + add_offset). Each Item says how its own numbers become physical values,
normally in its assets' ``raster:bands`` (``scale``, ``offset``). When a patch is written, every
Item's numbers are brought into the variable's convention from the Item's own metadata, before the
Items are mosaicked, so one cube can hold Items of several conventions (Sentinel-2 before and after
processing baseline 04.00) and mean the same thing everywhere.

Where a catalog's metadata is known to be unreliable, a source names a policy instead:

``raster:bands``
    the asset's declared ``scale``/``offset`` (STAC raster extension, or STAC 1.1 ``bands``);
    none declared means scale 1, offset 0, as the raster extension defines.
``sentinel-2-baseline``
    Sentinel-2 L2A surface reflectance bands as ESA makes them, from ``s2:processing_baseline``:
    scale 0.0001, and offset -0.1 from baseline 04.00 on (ESA's BOA_ADD_OFFSET, from 2022-01-25,
    and every reprocessed Collection-1 product, whatever its acquisition date), 0 before. For
    Planetary Computer (which declares no scale or offset) and Earth Search's reprocessed
    ``sentinel-2-c1-l2a``. Other assets (SCL, AOT, WVP) keep their declared convention.
``earth-search-l2a``
    Earth Search's ``sentinel-2-l2a`` (Collection 0), whose metadata is known to be wrong: every
    Item declares offset -0.1, but Element 84 subtracted the offset from the pixels of newer scenes
    while making the COGs and set ``earthsearch:boa_offset_applied`` (cirrus-geo/cirrus-earth-search#21;
    "I think the boa_offset_applied is the truth", Element84/earth-search#9). So: baseline before
    04.00, offset 0; flag true, offset 0 (the pixels were shifted already); flag false or missing
    from 04.00 on, the flag is not to be trusted either way (raw pixels in earth-search#66,
    shifted ones in cirrus-earth-search#33 and earth-search#71), and the pixels decide, once per
    Item from a decimated read of its whole granule (a COG's overview): raw pixels of baseline
    04.00 hold DN 1000 and more for any non-negative reflectance, while a granule's dark surfaces
    (water; vegetation in the visible bands) sit far below 1000 once shifted. If the 5th
    percentile of the Item's valid reflectance DN is below 900, it was shifted (offset 0), else it
    is raw (offset -0.1). Each decision, with its percentile, is listed in the commit metadata;
    with too few pixels to judge, the flag's reading (-0.1) is kept and the commit says so. Blind
    spot: a shifted granule without dark surfaces (bare soil, desert, snow, nearly all cloud) also
    sits above 900 and is read as raw, 0.1 too low. Element 84 recommend ``sentinel-2-c1-l2a`` instead.
``as-cube``
    the Items' numbers are in the cube's convention already (a preset that knows its source, such
    as an Earth Engine collection whose scaling is documented, not declared).

Values the conversion pushes outside what the variable's dtype can hold (other than its nodata)
are clipped to the nearest value it can hold, and counted: the commit metadata lists the count
per patch and variable, so nothing is changed without a word.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from .errors import RadiometryError  # RadiometryError lives in errors, importable from here

if TYPE_CHECKING:  # only named in annotations: importing pystac with the spec cost ~7 ms (importtime)
    import pystac

POLICIES = ("raster:bands", "sentinel-2-baseline", "earth-search-l2a", "as-cube")
# Sentinel-2 L2A surface reflectance bands: Earth Search keys, Planetary Computer / ESA band names.
S2_REFLECTANCE = frozenset({
    "coastal", "blue", "green", "red", "rededge1", "rededge2", "rededge3", "nir", "nir08", "nir09", "swir16",
    "swir22", "B01", "B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B09", "B11", "B12",
})
S2_SCALE, S2_OFFSET, S2_OFFSET_BASELINE = 0.0001, -0.1, (4, 0)
SHIFTED_BELOW_DN, SHIFTED_PERCENTILE, MIN_PIXELS_TO_JUDGE = 900, 5, 256


@dataclass(frozen=True)
class Convention:
    """How numbers become physical values: physical = stored * scale + offset (the CF way).

    Two conventions are equal when their scale and offset are (``check_pixels`` is not compared); use
    ``same`` to compare with a tolerance."""

    scale: float = 1.0
    """Physical units per stored step (CF ``scale_factor``); 0.0001 for Sentinel-2 reflectance."""
    offset: float = 0.0
    """Physical value of a stored 0 (CF ``add_offset``), in the variable's units; -0.1 for Sentinel-2
    reflectance from processing baseline 04.00 on."""
    check_pixels: bool = field(default=False, compare=False)
    """A guess that the Item's pixels must confirm (``earth-search-l2a``'s untrustworthy flag): the
    backend reads an overview and lets ``judge_offset`` decide."""

    def __str__(self) -> str:
        return f"scale={self.scale:g} offset={self.offset:g}"


IDENTITY = Convention()


def check_policy(policy: str) -> str:
    """A source's radiometry policy, checked when the spec is made (before any download).

    Parameters
    ----------
    policy : str
        One of ``POLICIES``.

    Returns
    -------
    str
        ``policy``.

    Raises
    ------
    SpecError
        If ``policy`` is not one of ``POLICIES``.
    """
    if policy not in POLICIES:
        from .errors import SpecError

        raise SpecError(f"unknown radiometry policy {policy!r}; use one of {list(POLICIES)}")
    return policy


def declared(asset: pystac.Asset) -> Convention:
    """The scale and offset an asset declares (raster extension, STAC 1.1 bands, or the asset itself).

    Parameters
    ----------
    asset : pystac.Asset
        The asset; its first ``raster:bands`` (or ``bands``) entry wins over fields on the asset itself.

    Returns
    -------
    Convention
        Scale 1 and offset 0 where none is declared, as the raster extension defines.
    """
    fields = asset.extra_fields
    for band in [*fields.get("raster:bands", []), *fields.get("bands", [])][:1]:
        scale = band.get("scale", band.get("raster:scale"))
        offset = band.get("offset", band.get("raster:offset"))
        return Convention(1.0 if scale is None else float(scale), 0.0 if offset is None else float(offset))
    scale, offset = fields.get("raster:scale", fields.get("scale")), fields.get("raster:offset", fields.get("offset"))
    return Convention(1.0 if scale is None else float(scale), 0.0 if offset is None else float(offset))


def processing_baseline(item: pystac.Item) -> tuple[int, int] | None:
    """The Sentinel-2 processing baseline an Item was made with, which decides its reflectance offset.

    Parameters
    ----------
    item : pystac.Item
        The Item; its ``s2:processing_baseline`` property ("04.00", "5.09") is read.

    Returns
    -------
    tuple[int, int] or None
        (major, minor); None where the property is missing or not two numbers.
    """
    text = item.properties.get("s2:processing_baseline")
    if text is None:
        return None
    try:
        major, _, minor = str(text).partition(".")
        return int(major), int(minor or 0)
    except ValueError:
        return None


def _is_s2_reflectance(key: str, asset: pystac.Asset) -> bool:
    names = {key} | {b.get("name") for b in asset.extra_fields.get("eo:bands", []) + asset.extra_fields.get("bands", [])
                     if isinstance(b, Mapping)}
    return bool(names & S2_REFLECTANCE)


def item_convention(item: pystac.Item, key: str, policy: str, cube: Convention) -> Convention:
    """How Item ``item``'s asset ``key`` turns its numbers into physical values, under ``policy``.

    Parameters
    ----------
    item : pystac.Item
        The Item.
    key : str
        The asset's key in ``item.assets``.
    policy : str
        The source's radiometry policy (one of ``POLICIES``; see the module's docstring).
    cube : Convention
        The variable's own convention: what ``"as-cube"`` returns.

    Returns
    -------
    Convention
        The Item's convention; under ``earth-search-l2a`` it may carry ``check_pixels``.

    Raises
    ------
    RadiometryError
        If a Sentinel-2 policy meets a reflectance asset whose Item has no usable
        ``s2:processing_baseline`` (and, for ``earth-search-l2a``, no ``boa_offset_applied`` true).
    KeyError
        If ``item`` has no asset ``key`` (any policy but ``as-cube``).
    """
    if policy == "as-cube":
        return cube
    asset = item.assets[key]
    if policy in ("sentinel-2-baseline", "earth-search-l2a") and _is_s2_reflectance(key, asset):
        baseline = processing_baseline(item)
        applied = item.properties.get("earthsearch:boa_offset_applied")
        if policy == "earth-search-l2a" and applied is True:
            return Convention(S2_SCALE, 0.0)  # Element 84 subtracted the offset from these pixels
        if baseline is None:
            raise RadiometryError(
                f"Item {item.id!r} has no usable s2:processing_baseline "
                f"({item.properties.get('s2:processing_baseline')!r}): the {policy!r} policy cannot "
                f"tell whether asset {key!r} carries the -0.1 reflectance offset")
        if baseline < S2_OFFSET_BASELINE:
            return Convention(S2_SCALE, 0.0)
        return Convention(S2_SCALE, S2_OFFSET, check_pixels=policy == "earth-search-l2a")
    return declared(asset)


def judge_offset(values: list[np.ndarray]) -> tuple[Convention | None, str]:
    """Whether an Earth Search Item's raw-looking pixels (baseline 04.00 on, flag not true) are in fact
    shifted, since its metadata cannot say (see ``earth-search-l2a`` in the module's docstring).

    Parameters
    ----------
    values : list[np.ndarray]
        The Item's valid DN, one array per reflectance asset (a decimated read of the whole granule).

    Returns
    -------
    tuple[Convention or None, str]
        The convention the pixels show (offset 0 if the 5th percentile is below ``SHIFTED_BELOW_DN``,
        else -0.1), None with fewer than ``MIN_PIXELS_TO_JUDGE`` pixels; and the evidence, for the commit.
    """
    pooled = np.concatenate([np.ravel(v) for v in values]) if values else np.array([])
    if pooled.size < MIN_PIXELS_TO_JUDGE:
        return None, f"{pooled.size} valid pixels, too few to judge: read as the flag says (offset -0.1)"
    low = float(np.percentile(pooled, SHIFTED_PERCENTILE))
    if low < SHIFTED_BELOW_DN:
        return Convention(S2_SCALE, 0.0), (f"pixels already shifted, read with offset 0: 5th percentile DN "
                                           f"{low:g} < {SHIFTED_BELOW_DN} over {pooled.size} pixels")
    return Convention(S2_SCALE, S2_OFFSET), (f"raw pixels, read with offset -0.1: 5th percentile DN {low:g} "
                                             f">= {SHIFTED_BELOW_DN} over {pooled.size} pixels")


def check_precision(item: pystac.Item, key: str, variable_name: str, source: Convention, target: Convention,
                    dtype: np.dtype) -> None:
    """Refuse a conversion that would round an integer variable more coarsely than the Item's own steps.

    Parameters
    ----------
    item : pystac.Item
        The Item (named in the error).
    key : str
        The asset's key (named in the error).
    variable_name : str
        The cube variable (named in the error).
    source : Convention
        The Item's convention.
    target : Convention
        The variable's convention.
    dtype : np.dtype
        The variable's dtype; only integer dtypes can lose steps.

    Raises
    ------
    RadiometryError
        If ``dtype`` is an integer and ``target``'s steps are coarser than ``source``'s.
    """
    if dtype.kind in "iu" and target.scale > abs(source.scale) * (1 + 1e-9):
        raise RadiometryError(
            f"Item {item.id!r} asset {key!r} holds steps of {source.scale:g} ({source}), but variable "
            f"{variable_name!r} ({dtype}) stores steps of {target.scale:g} ({target}): its values would be rounded "
            f"away. Declare scale_factor={source.scale:g} on the variable, or a float dtype")


def _valid_range(dtype: np.dtype, nodata: float | int) -> tuple[float, float]:
    """The smallest and largest values a variable holds as data (its nodata at an end is left out)."""
    if dtype.kind in "iu":
        info = np.iinfo(dtype)
        low, high = int(info.min), int(info.max)
        if nodata == low:
            low += 1
        elif nodata == high:
            high -= 1
        return low, high
    info = np.finfo(dtype)
    return float(info.min), float(info.max)


def _integer_shift(source: Convention, target: Convention) -> int | None:
    """Where the scales agree and the offsets differ by whole steps, the shift in steps (exact integer work)."""
    if not math.isclose(source.scale, target.scale, rel_tol=1e-12):
        return None
    steps = (source.offset - target.offset) / target.scale
    shift = round(steps)
    return shift if abs(steps - shift) < 1e-6 else None


def convert(values: np.ndarray, valid: np.ndarray, source: Convention, target: Convention, dtype: np.dtype,
            nodata: float | int) -> tuple[np.ndarray, np.ndarray | None]:
    """An Item's numbers in the variable's convention, so that Items of several conventions mosaic into one.

    Scales that agree with offsets whole steps apart are shifted in integers (exact); otherwise values are
    rescaled in float64 and rounded for an integer ``dtype``. In an integer ``dtype``, a valid value landing
    on ``nodata`` is moved one step, and counted as clipped.

    Parameters
    ----------
    values : np.ndarray
        The Item's numbers.
    valid : np.ndarray
        Boolean mask of ``values`` that hold data.
    source : Convention
        The Item's convention.
    target : Convention
        The variable's convention.
    dtype : np.dtype
        The variable's dtype.
    nodata : float or int
        The variable's nodata: what invalid pixels become.

    Returns
    -------
    tuple[np.ndarray, np.ndarray or None]
        The converted values as ``dtype``; and the valid pixels that had to be clipped into the dtype's
        range or moved off nodata (None: none).
    """
    low, high = _valid_range(dtype, nodata)
    shift = _integer_shift(source, target) if dtype.kind in "iu" and values.dtype.kind in "iu" else None
    if shift is not None:
        work = values.astype(np.int64) + shift
    else:
        ratio, steps = source.scale / target.scale, (source.offset - target.offset) / target.scale
        work = values.astype(np.float64) * ratio + steps
        if dtype.kind in "iu":
            work = np.rint(work)
    clipped = valid & ((work < low) | (work > high))
    if clipped.any():
        np.clip(work, low, high, out=work)
    else:
        clipped = None
    if dtype.kind in "iu" and low <= nodata <= high:
        # a value that lands on nodata in the middle of the range would vanish: one step up keeps it data
        lands = valid & (work == nodata)
        if lands.any():
            work[lands] = nodata + 1 if nodata + 1 <= high else nodata - 1
            clipped = lands if clipped is None else clipped | lands
    out = work.astype(dtype)
    out[~valid] = nodata
    return out, clipped


def same(a: Convention, b: Convention) -> bool:
    """Whether two conventions give the same physical values, up to float rounding (relative 1e-12).

    Parameters
    ----------
    a, b : Convention
        The conventions to compare.

    Returns
    -------
    bool
        True if their scales and offsets agree; ``check_pixels`` is ignored.
    """
    return math.isclose(a.scale, b.scale, rel_tol=1e-12) and math.isclose(a.offset, b.offset, rel_tol=1e-12,
                                                                          abs_tol=1e-15)


def summarize(conventions: Iterable[tuple[str, str, Convention]]) -> dict[str, dict[str, list[str]]]:
    """Per variable, the Items read in each convention: ``{"B04": {"scale=0.0001 offset=0": [ids]}}``.

    Parameters
    ----------
    conventions : Iterable[tuple[str, str, Convention]]
        (variable, Item id, convention) triples; repeats are listed once.

    Returns
    -------
    dict[str, dict[str, list[str]]]
        Item ids by convention (as ``str(Convention)``) by variable, in the order first met.
    """
    out: dict[str, dict[str, list[str]]] = {}
    for variable, item_id, convention in conventions:
        ids = out.setdefault(variable, {}).setdefault(str(convention), [])
        if item_id not in ids:
            ids.append(item_id)
    return out


def converted_items(variables: Mapping, assets: Mapping[str, str], policy: str,
                    items: Iterable[pystac.Item]) -> dict[str, dict[str, list[str]]]:
    """For the commit metadata: per variable with a declared convention, the Items whose numbers were
    converted into it, grouped by the convention they came in.

    Parameters
    ----------
    variables : Mapping
        The cube's variables by name (``CubeSpec.variables``); boolean ones and those without a
        convention are skipped.
    assets : Mapping[str, str]
        The asset key feeding each variable.
    policy : str
        The source's radiometry policy.
    items : Iterable[pystac.Item]
        The Items the run read; those without a variable's asset are skipped for it.

    Returns
    -------
    dict[str, dict[str, list[str]]]
        As ``summarize``: Item ids by the convention they came in, by variable.

    Raises
    ------
    RadiometryError
        If an Item's convention cannot be told (``item_convention``).
    KeyError
        If ``assets`` names no asset for one of ``variables``.
    """
    items = list(items)
    found = []
    for name, variable in variables.items():
        target = variable.convention
        if target is None or variable.numpy_dtype.kind == "b":
            continue
        for item in items:
            if assets[name] not in item.assets:
                continue
            source = item_convention(item, assets[name], policy, target)
            if not same(source, target):
                found.append((name, item.id, source))
    return summarize(found)
