"""``make demo``: the main job on embedded defaults, with no internet.

Generates a small sample collection (16 overlapping COG tiles in EPSG:3413 with nodata borders),
serves it on 127.0.0.1 (COGs over HTTP with Range support, and a STAC API), syncs the catalog,
builds a cube, loads an ROI cold then warm, loads offline, draws the cube's state (PNG and an HTML
map) and a quick-look of the Tile, tags, rolls back and restores, runs a download as a Prefect flow,
and finally computes NDVI per parcel on a synthetic Sentinel-2 season, with a table and a plot.
It prints the figures and where every output is.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from . import Cube, CubeSpec, StacSource, Variable
from .cli_tables import print_table
from .pictures import quicklook, save_figure, save_map
from .plan import window_for
from .region import Region
from .run import RunReport
from .testing.generate import SampleLayout, generate_sample
from .testing.servers import serve_sample


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo-output", help="folder for the sample, catalog, cube and tile")
    args = parser.parse_args(argv)
    out = Path(args.out).resolve()
    layout = SampleLayout()
    sample = out / "sample"
    if not (sample / "items.json").exists():
        print(f"generating the sample collection in {sample} ...")
        generate_sample(sample, layout)
    cube_path, catalog_dir = out / "dem.icechunk", out / "catalog"
    shutil.rmtree(cube_path, ignore_errors=True)
    shutil.rmtree(catalog_dir, ignore_errors=True)

    with serve_sample(sample) as (files, api):
        print(f"serving COGs at {files.url} and a STAC API at {api.url}")
        spec = CubeSpec(
            name="sample-dem",
            zones=[layout.extent_geobox()],
            chunks=(512, 512),
            variables={"dem": Variable("float32", units="m"), "datamask": Variable("uint8", nodata=0)},
            source=StacSource(api_url=api.url, collection="sample-dem", assets={"dem": "dem", "datamask": "datamask"}),
        )
        cube = Cube.create(cube_path, spec, catalog_dir=catalog_dir)
        print(cube)
        roi = layout.extent_geobox()[200:1400, 300:1500]  # 1200 x 1200 px over 9 source tiles

        added = spec.source.sync(cube.catalog, window_for(spec, Region.of(roi)))  # what the load will search
        print(f"catalog sync: {added} Items into {cube.catalog.folder}")
        started = time.perf_counter()
        cold = cube.load(roi)
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        warm = Cube.open(cube_path, catalog_dir=catalog_dir).load(roi)
        warm_s = time.perf_counter() - started

        patches_cold = len(cube.state())

        # Versions: a second area, a tag, a rollback to it, and the area downloaded again, identical.
        second = layout.extent_geobox()[1400:1912, 1500:2012]
        before = cube.tag("first-area")
        again = cube.load(second)
        cube.rollback("first-area")
        rolled_back = len(cube.state())
        restored = cube.load(second)
        assert np.array_equal(again.dem.values, restored.dem.values, equal_nan=True)
        print(f"tagged {before} 'first-area', loaded a second area, rolled back ({rolled_back} patches), "
              "downloaded it again: identical values")
        flow_result = _prefect_download(cube, layout.extent_geobox()[0:512, 1344:1856])  # not yet in the cube

    # The servers are stopped now: an offline load still returns what the cube holds.
    offline = Cube.open(cube_path, catalog_dir=catalog_dir).load(roi, offline=True)
    assert np.array_equal(offline.dem.values, cold.dem.values, equal_nan=True)
    assert np.array_equal(warm.dem.values, cold.dem.values, equal_nan=True)
    tile_path = out / "tile_dem.tif"
    cold.dem.odc.write_cog(tile_path, overwrite=True)
    state = cube.state()
    state.to_file(out / "state.geojson", driver="GeoJSON")
    save_figure(cube.plot_state(), out / "state.png")
    save_map(cube.explore(), out / "state.html")
    save_figure(quicklook(cold, "dem", title="sample DEM"), out / "tile_dem.png")
    size_mb = sum(f.stat().st_size for f in cube_path.rglob("*") if f.is_file()) / 1e6

    print()
    print(f"ROI: {roi.shape.y} x {roi.shape.x} px in {roi.crs}; valid pixels {np.isfinite(cold.dem.values).mean():.0%}")
    print(f"cold load (sync catalog, download {patches_cold} patches, one commit, read): {cold_s:.2f} s")
    print(f"warm load (new Cube.open, read from the cube only):                       {warm_s:.3f} s")
    print(f"speed-up warm vs cold: {cold_s / warm_s:.0f}x; offline load after the servers stopped: identical")
    if flow_result is not None:
        flow_run = flow_result.metadata.get("flow_run_id")
        named = (f"Prefect flow run {flow_run} ({flow_result.metadata.get('flow_run_name')})" if flow_run
                 else "Prefect flow run")
        print(f"{named}: stacube run {flow_result.run_id}, {len(flow_result.patches_written)} patches "
              f"written, snapshot {flow_result.snapshot_id}")
    print()
    print_table(cube.history().to_dict("records"), "history")
    fields = _parcels(out)
    print()
    print("outputs:")
    print(f"  cube     {cube_path} ({size_mb:.1f} MB)")
    print(f"  catalog  {cube.catalog.folder}")
    print(f"  tile     {tile_path} and its quick-look {out / 'tile_dem.png'}")
    print(f"  state    {out / 'state.geojson'} ({len(state)} filled patches), {out / 'state.png'}, "
          f"{out / 'state.html'}")
    for label, path in fields.items():
        print(f"  {label:8} {path}")


TELEMETRY = "PREFECT_SERVER_ANALYTICS_ENABLED"


def _prefect_download(cube: Cube, roi: Any) -> RunReport | None:
    """The same download as a Prefect flow run (``runner="prefect"``); its report's ``metadata`` names
    the flow run. With no Prefect API set, Prefect starts a temporary local one: its telemetry is
    switched off (the demo needs no internet, and offline each attempt logs an error)."""
    if importlib.util.find_spec("prefect") is None:
        print("Prefect is not installed: skipping the flow run (pip install 'stacube[prefect]')")
        return None
    print("running a download as the Prefect flow 'stacube-download' ...")
    # Read by the temporary server's process as it starts; a setting of the user's own wins.
    users = os.environ.get(TELEMETRY)
    os.environ[TELEMETRY] = users or "false"
    try:
        return cube.download(roi, runner="prefect", concurrency=4)
    finally:
        if users is None:
            os.environ.pop(TELEMETRY, None)


def _parcels(out: Path) -> dict[str, Path]:
    """NDVI per parcel and acquisition on a synthetic Sentinel-2 season (two UTM zones), published."""
    from .datasets import sentinel2_l2a_spec
    from .fields import clean_parcels, compute_group, open_parcel_store
    from .fields.publish import SERIES_COLUMNS, export_series, plot_sample, weekly_series
    from .testing.granules import generate_sentinel2
    from .testing.season import Season, season_bands, season_parcels

    season_dir = out / "season"
    if not (season_dir / "items.json").exists():
        print(f"generating a synthetic Sentinel-2 season in {season_dir} ...")
        generate_sentinel2(season_dir, Season().granules(), bands=season_bands)
    for stale in (out / "s2.icechunk", out / "fields.duckdb"):
        shutil.rmtree(stale, ignore_errors=True) if stale.is_dir() else stale.unlink(missing_ok=True)
    with serve_sample(season_dir) as (_files, api):
        spec = sentinel2_l2a_spec((11.97, 46.97, 12.03, 47.01), "2024-05-01", "2024-06-30", api_url=api.url,
                                  chunks=(256, 256), max_cloud_cover=None, bands=("B04", "B08", "B11", "SCL"))
        s2 = Cube.create(out / "s2.icechunk", spec, catalog_dir=out / "catalog")
        imported = clean_parcels(season_parcels(), "parcel_id")
        with open_parcel_store(f"duckdb:///{out}/fields.duckdb") as store:
            store.add_parcels(imported.parcels)
            started = time.perf_counter()
            for group_id in store.groups().group_id:
                compute_group(s2, store, group_id, slice("2024-05-01", "2024-06-30"))
            seconds = time.perf_counter() - started
            observations = store.observations()
            parcels = store.parcels()
    series = weekly_series(observations)
    files = export_series(series, parcels, out, "parcel-ndvi")
    png = plot_sample(series, out / "parcel-ndvi.png")
    print()
    print(f"parcels: {len(parcels)} imported ({int(parcels.repaired.sum())} repaired), "
          f"{len(observations)} parcel-dates in {seconds:.1f} s, {int(observations.usable.sum())} usable "
          f"(the rest cloudy, shadowed or without an acquisition)")
    table = series[series.parcel_id == series.parcel_id.iloc[0]][SERIES_COLUMNS]
    print(table.to_string(index=False))
    return {"parcels": out / "fields.duckdb", "NDVI": files["csv"], "plot": png}


if __name__ == "__main__":
    main()
