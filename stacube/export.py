"""A Tile written to files: a COG per variable (carrying its convention), NetCDF4 or Zarr.

What ``stacube cube load --out`` and ``stacube.many.export_many`` write.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import SpecError, StorageError, TOIError

FORMATS = {"cog": "cog", "tif": "cog", "tiff": "cog", "geotiff": "cog", "netcdf": "netcdf", "nc": "netcdf",
           "zarr": "zarr"}


def check_writable(out: Path, what: str = "output") -> None:
    """Refuse, before anything is downloaded, an output whose folder cannot be made or written: a file where
    a folder should be, or a folder this user cannot write. Nothing is made on the way.

    Parameters
    ----------
    out : Path
        The file (or Zarr folder) to write.
    what : str, optional
        What it is, for the message.

    Raises
    ------
    StorageError
        Naming ``out`` and the cause.
    """
    out = Path(out)
    probe = out.parent if str(out.parent) else Path(".")
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise StorageError(f"Not a directory ({probe} is a file): cannot write the {what} {out}; give a folder, "
                           "not a file", str(out), errno.ENOTDIR)
    if not os.access(probe, os.W_OK | os.X_OK):
        raise StorageError(f"Permission denied: cannot write the {what} {out} (in {probe}); give a place this "
                           "user can write to", str(out), errno.EACCES)


def output_format(out: Path, fmt: str | None) -> str:
    """The kind of file ``write_tile`` writes to ``out`` ("cog", "netcdf" or "zarr"), known before a load,
    so a command refuses a wrong ``--out`` before it downloads anything.

    Parameters
    ----------
    out : Path
        The file (or Zarr folder) to write.
    fmt : str or None
        As ``write_tile``'s ``fmt``; None: from ``out``'s suffix.

    Returns
    -------
    str
        "cog", "netcdf" or "zarr".

    Raises
    ------
    SpecError
        If the format is none of those (or ``fmt`` is not a string).
    """
    given = fmt or out.suffix.lstrip(".")
    kind = FORMATS.get(given.lower()) if isinstance(given, str) else None
    if kind is None:
        raise SpecError(f"unknown output format {given!r} for {str(out)!r}: use .tif, .nc or .zarr (or --format "
                        "cog, netcdf or zarr)")
    return kind


def write_tile(tile: Any, out: Path, fmt: str | None) -> list[Path]:
    """Write a Tile as GeoTIFF (a COG per variable), NetCDF or Zarr, so other tools read it without stacube.

    Attributes that are not a string or a number are dropped from the Dataset (NetCDF cannot hold lists);
    each variable keeps its convention (CF attributes; GDAL's band scale, offset and unit in a COG).

    Parameters
    ----------
    tile : xarray.Dataset
        The Tile, eager or lazy (Dask).
    out : Path
        The file (or Zarr folder) to write; its parent folders are made. With several variables, a
        GeoTIFF is written per variable as ``<stem>_<variable><suffix>`` beside it.
    fmt : str or None
        ``"cog"`` (also ``tif``, ``tiff``, ``geotiff``), ``"netcdf"`` (``nc``) or ``"zarr"``; None: from
        ``out``'s suffix. An existing file or Zarr store is overwritten.

    Returns
    -------
    list[Path]
        The files written.

    Raises
    ------
    SpecError
        If the format is none of those (or ``fmt`` is not a string); nothing is written.
    TOIError
        If a GeoTIFF is asked for a Tile of more than one time step; nothing is written.
    """
    kind = output_format(out, fmt)
    if kind == "cog" and "time" in tile.dims and tile.sizes["time"] != 1:
        raise TOIError(f"the Tile has {tile.sizes['time']} time steps and a GeoTIFF holds one: "
                       "narrow --time to one step, or write .nc or .zarr")
    tile = tile.copy()
    tile.attrs = {k: v for k, v in tile.attrs.items() if isinstance(v, str | int | float)}  # lists do not fit NetCDF
    out.parent.mkdir(parents=True, exist_ok=True)
    if kind == "netcdf":
        for name in tile.data_vars:  # NetCDF has no boolean attribute: a mask's nodata False is written as 0
            tile[name].attrs = {k: int(v) if isinstance(v, bool | np.bool_) else v for k, v in tile[name].attrs.items()}
        tile.to_netcdf(out, engine="h5netcdf")
        return [out]
    if kind == "zarr":
        import warnings

        with warnings.catch_warnings():  # zarr-python's own note that v3 has no consolidated metadata yet;
            warnings.filterwarnings("ignore", message="Consolidated metadata")  # xarray opens it without a warning
            tile.to_zarr(out, mode="w", consolidated=True)
        return [out]
    when = None
    if "time" in tile.dims:
        when = pd.Timestamp(tile.time.values[0])
        tile = tile.isel(time=0)
    names = list(tile.data_vars)
    paths = [out] if len(names) == 1 else [out.with_name(f"{out.stem}_{n}{out.suffix}") for n in names]
    for name, path in zip(names, paths, strict=True):
        write_cog(tile[name], path, _cog_tags(name, when))
    return paths


def _cog_tags(name: str, when: pd.Timestamp | None) -> dict[str, str]:
    """What a COG says of its band beyond GDAL's fields: the variable, and the time step (as TIFF's own
    DateTime too, which GDAL and QGIS show), which a file of one variable and one step would otherwise lose."""
    tags = {"stacube_variable": name}
    if when is not None:
        tags.update(stacube_time=when.isoformat(), TIFFTAG_DATETIME=when.strftime("%Y:%m:%d %H:%M:%S"))
    return tags


LAZY_GDAL_CACHE = 32 * 2**20  # bytes: rasterio hands an integer GDAL_CACHEMAX to GDALSetCacheMax64 as bytes


def write_cog(variable: Any, path: Path, tags: dict[str, str] | None = None) -> Path:
    """One variable as a COG that carries its convention: GDAL's band scale, offset and unit, so GDAL,
    rasterio (``src.scales``) and QGIS turn its numbers into physical values. A lazy (Dask) variable is
    written chunk by chunk, so memory stays flat in its size. GeoTIFF has no boolean or half-float band
    that GDAL compresses: a mask is written as 0/1 bytes (no nodata), float16 as float32 (exactly).

    Parameters
    ----------
    variable : xarray.DataArray
        A 2-D Tile variable with odc-geo's geobox; its ``nodata``, ``scale_factor``, ``add_offset`` and
        ``units`` attributes are written as GDAL's, never as TIFF tags of their own.
    path : Path
        The COG to write (overwritten if it exists); its folder must exist.
    tags : dict[str, str] or None, optional
        GDAL metadata items of the file (``write_tile``'s variable and time step).

    Returns
    -------
    Path
        ``path``.
    """
    import rasterio
    import rasterio.shutil

    attrs = variable.attrs
    clean = variable.copy()
    clean.attrs = {}  # CF attributes would become TIFF tags of their own
    nodata = attrs.get("nodata")
    if clean.dtype == bool:
        clean, nodata = clean.astype("uint8"), None
    elif clean.dtype == np.float16:  # GDAL's floating-point predictor takes 32 and 64 bits only
        clean = clean.astype("float32")
    lazy = clean.chunks is not None
    plain = attrs.get("scale_factor") is None and attrs.get("add_offset") is None and not attrs.get("units")
    if plain and not lazy:
        clean.odc.write_cog(path, overwrite=True, nodata=nodata, tags=tags)
        return path
    staged = path.with_name(f".{path.name}.staged.tif")
    try:
        if lazy:  # GDAL's block cache (5% of RAM by default) would otherwise hold what was written
            with rasterio.Env(GDAL_CACHEMAX=LAZY_GDAL_CACHE):
                _stream_tiff(clean, staged, nodata, tags)
        else:
            clean.odc.write_cog(staged, overwrite=True, nodata=nodata, tags=tags)
        with rasterio.open(staged, "r+", IGNORE_COG_LAYOUT_BREAK="YES") as dst:  # re-laid out below
            if not plain:
                dst.scales = (float(attrs.get("scale_factor", 1.0)),)
                dst.offsets = (float(attrs.get("add_offset", 0.0)),)
                if attrs.get("units"):
                    dst.units = (str(attrs["units"]),)
        # re-laid out as a COG (GDAL reads the staged file block by block): editing a COG's metadata in
        # place would break its layout
        with rasterio.Env(**({"GDAL_CACHEMAX": LAZY_GDAL_CACHE} if lazy else {})):
            rasterio.shutil.copy(staged, path, driver="COG", COMPRESS="DEFLATE", BIGTIFF="IF_SAFER",
                                 OVERVIEW_RESAMPLING="NEAREST")  # as odc-geo's eager COGs: masks stay classes
    finally:
        staged.unlink(missing_ok=True)
        Path(f"{staged}.aux.xml").unlink(missing_ok=True)
    return path


def _stream_tiff(variable: Any, path: Path, nodata: Any, tags: dict[str, str] | None = None) -> None:
    """A tiled GeoTIFF of a lazy 2-D variable, each Dask chunk computed and written as it comes."""
    import dask.array as da
    import rasterio
    from rasterio.windows import Window

    geobox = variable.odc.geobox
    data = variable.data  # a mask arrives as uint8 already (``write_cog``)
    profile = {"driver": "GTiff", "width": geobox.shape.x, "height": geobox.shape.y, "count": 1,
               "dtype": str(data.dtype), "crs": geobox.crs.to_wkt(), "transform": geobox.transform,
               "nodata": None if nodata is None else np.asarray(nodata, dtype=data.dtype).item(), "tiled": True,
               "blockxsize": 512, "blockysize": 512, "compress": "LZW", "BIGTIFF": "IF_SAFER"}

    class Band:
        def __init__(self, dst: Any):
            self.dst = dst

        def __setitem__(self, key: tuple[slice, slice], values: Any) -> None:
            rows, columns = key
            self.dst.write(values, 1, window=Window.from_slices(rows, columns))

    with rasterio.open(path, "w", **profile) as dst:
        dst.update_tags(**(tags or {}))
        # one writer at a time, chunks computed in parallel by threads of this process: the open file
        # cannot travel to a distributed client's workers
        da.store(data, Band(dst), lock=True, scheduler="threads")
