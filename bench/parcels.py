"""Parcel-date statistics per second: stacube.fields against exactextract on the same rasters and parcels.

A field of ``--parcels`` rectangular parcels (200 m x 150 m, 10 m pixels) is cut into groups of at
most ``--group`` parcels, as the pipeline does; each group's rasters (B04, B08, B11, SCL with a
drifting cloud) are made for ``--dates`` acquisitions. stacube computes NDVI and NDMI mean, median,
std and valid count per parcel and date (``parcel_statistics``); exactextract computes mean,
median, stdev and count of the same NDVI and NDMI rasters (cloud-masked to NaN) over the same
parcels. Only the statistics are timed (rasters are made before the clock starts). Each size runs
in a fresh process: its peak RSS (both tools), and stacube's own traced peak for one group.

    .venv/bin/python bench/parcels.py [--parcels 100000] [--dates 12] [--group 2000]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stacube.memory import peak_rss_mb  # noqa: E402 - after the path is set

PARCEL_W, PARCEL_H, GAP = 200.0, 150.0, 20.0  # metres
PER_ROW = 40  # parcels per row of a group's block


def _group_block(start: int, count: int):
    """One group's parcels (a block of rows) and its GeoBox, in UTM 33N."""
    import geopandas as gpd
    import shapely
    from affine import Affine
    from odc.geo.geobox import GeoBox

    rows = -(-count // PER_ROW)
    x0, y0 = 500_000.0, 5_200_000.0 - (start // count) * (rows * (PARCEL_H + GAP) + 100)
    geometries = []
    for k in range(count):
        r, c = divmod(k, PER_ROW)
        left, top = x0 + c * (PARCEL_W + GAP) + 10, y0 - r * (PARCEL_H + GAP) - 10
        geometries.append(shapely.box(left, top - PARCEL_H, left + PARCEL_W, top))
    parcels = gpd.GeoDataFrame({"parcel_id": [f"p{start + k}" for k in range(count)]}, geometry=geometries,
                               crs="EPSG:32633")
    width = int(PER_ROW * (PARCEL_W + GAP) / 10) + 2
    height = int(rows * (PARCEL_H + GAP) / 10) + 2
    return parcels, GeoBox((height, width), Affine(10.0, 0.0, x0, 0.0, -10.0, y0), "EPSG:32633")


def _tile(geobox, dates: int, seed: int):
    """A Sentinel-2-like Tile: smooth reflectances with noise, SCL with a cloud drifting across."""
    import pandas as pd
    import xarray as xr
    from odc.geo.xr import xr_coords

    rng = np.random.default_rng(seed)
    ny, nx = geobox.shape.yx
    yy, xx = np.mgrid[0:ny, 0:nx]
    data = {}
    base = 1800 + 300 * np.sin(xx / 50.0) * np.cos(yy / 40.0)
    data["B04"] = (base[None] + rng.integers(0, 100, (dates, ny, nx))).astype("uint16")
    data["B08"] = (base[None] * 1.8 + rng.integers(0, 300, (dates, ny, nx))).astype("uint16")
    data["B11"] = (base[None] * 1.3 + rng.integers(0, 200, (dates, ny, nx))).astype("uint16")
    scl = np.full((dates, ny, nx), 4, dtype="uint8")
    for t in range(dates):
        cloud = np.hypot(xx - (t + 1) * nx / (dates + 1), yy - ny / 2) < min(nx, ny) / 4
        scl[t][cloud] = 9
    data["SCL"] = scl
    coords = dict(xr_coords(geobox))
    coords["time"] = pd.date_range("2024-05-01", periods=dates, freq="5D")
    tile = xr.Dataset({k: (("time", "y", "x"), v) for k, v in data.items()}, coords=coords)
    for band in ("B04", "B08", "B11"):  # as a Sentinel-2 cube's Tile carries its convention
        tile[band].attrs.update(nodata=0, _FillValue=0, scale_factor=0.0001, add_offset=-0.1)
    tile["SCL"].attrs.update(nodata=0, _FillValue=0)
    return tile


def _exactextract(tile, parcels) -> int:
    from exactextract import exact_extract
    from exactextract.raster import NumPyRasterSource

    box = tile.odc.geobox
    left, bottom, right, top = box.extent.boundingbox
    rows = 0
    for t in range(tile.sizes["time"]):
        red, nir, swir = (tile[b].values[t] * 0.0001 - 0.1 for b in ("B04", "B08", "B11"))
        clear = ~np.isin(tile.SCL.values[t], (0, 1, 3, 8, 9, 10, 11))
        for index in ((nir - red) / (nir + red), (nir - swir) / (nir + swir)):
            raster = NumPyRasterSource(np.where(clear, index, np.nan), left, bottom, right, top, nodata=np.nan,
                                       srs_wkt=box.crs.wkt)
            frame = exact_extract(raster, parcels, ["mean", "median", "stdev", "count"], output="pandas")
            rows += len(frame)
    return rows // 2


def run(total: int, dates: int, group: int) -> dict:
    """One size, in this (fresh) process: times of both, peak RSS, and stacube's own traced peak per group."""
    import tracemalloc

    from stacube.fields import parcel_statistics

    ours = theirs = traced = 0.0
    done = 0
    for start in range(0, total, group):
        count = min(group, total - start)
        parcels, geobox = _group_block(start, count)
        tile = _tile(geobox, dates, start)
        started = time.perf_counter()
        rows = parcel_statistics(tile, parcels)
        ours += time.perf_counter() - started
        if start == 0:  # stacube's own allocations for one group, outside the timing
            tracemalloc.start()
            parcel_statistics(tile, parcels)
            traced = tracemalloc.get_traced_memory()[1] / 1e6
            tracemalloc.stop()
        started = time.perf_counter()
        _exactextract(tile, parcels)
        theirs += time.perf_counter() - started
        done += len(rows)
    return {"parcel_dates": done, "ours_s": ours, "exactextract_s": theirs, "peak_mb": peak_rss_mb(),
            "traced_mb": traced}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parcels", type=int, default=100_000)
    parser.add_argument("--dates", type=int, default=12)
    parser.add_argument("--group", type=int, default=2000)
    parser.add_argument("--only", type=int, help=argparse.SUPPRESS)  # one size, in a fresh process
    args = parser.parse_args()
    if args.only:
        print(json.dumps(run(args.only, args.dates, args.group)))
        return
    print(f"parcels of 200 m x 150 m at 10 m (~300 px), {args.dates} dates, groups of {args.group}; "
          "NDVI and NDMI mean, median, std and count per parcel and date")
    print(f"{'parcels':>9}{'parcel-dates':>14}{'stacube /s':>12}{'exactextract /s':>17}{'speed-up':>10}"
          f"{'peak RSS MB':>13}{'stacube MB/group':>18}")
    for total in sorted({max(args.group, args.parcels // 10), args.parcels // 2, args.parcels}):
        done = subprocess.run([sys.executable, __file__, "--only", str(total), "--dates", str(args.dates),
                               "--group", str(args.group)], capture_output=True, text=True, check=True)
        figures = json.loads(done.stdout.strip().splitlines()[-1])
        ours = figures["parcel_dates"] / figures["ours_s"]
        theirs = figures["parcel_dates"] / figures["exactextract_s"]
        print(f"{total:9d}{figures['parcel_dates']:14d}{ours:12.0f}{theirs:17.0f}{ours / theirs:9.1f}x"
              f"{figures['peak_mb']:13.0f}{figures['traced_mb']:18.1f}")


if __name__ == "__main__":
    main()
