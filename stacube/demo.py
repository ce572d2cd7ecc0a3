"""``make demo``: the main job on embedded defaults, with no internet.

Generates a small sample collection (16 overlapping COG tiles in EPSG:3413 with nodata borders),
serves it on 127.0.0.1 (COGs over HTTP with Range support, and a STAC API), builds a cube, loads
an ROI cold then warm, loads offline, and prints the figures and where the outputs are.
"""

from __future__ import annotations

import argparse
import shutil
import time
from pathlib import Path

import numpy as np

from . import Cube, CubeSpec, StacSource, Variable
from .sample.generate import SampleLayout, generate_sample
from .sample.servers import serve_sample


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

        started = time.perf_counter()
        cold = cube.load(roi)
        cold_s = time.perf_counter() - started
        started = time.perf_counter()
        warm = Cube.open(cube_path, catalog_dir=catalog_dir).load(roi)
        warm_s = time.perf_counter() - started

    # The servers are stopped now: an offline load still returns what the cube holds.
    offline = Cube.open(cube_path, catalog_dir=catalog_dir).load(roi, offline=True)
    assert np.array_equal(offline.dem.values, cold.dem.values, equal_nan=True)
    assert np.array_equal(warm.dem.values, cold.dem.values, equal_nan=True)
    tile_path = out / "tile_dem.tif"
    cold.dem.odc.write_cog(tile_path, overwrite=True)
    state = cube.state()
    state.to_file(out / "state.geojson", driver="GeoJSON")
    size_mb = sum(f.stat().st_size for f in cube_path.rglob("*") if f.is_file()) / 1e6

    print()
    print(f"ROI: {roi.shape.y} x {roi.shape.x} px in {roi.crs}; valid pixels {np.isfinite(cold.dem.values).mean():.0%}")
    print(f"cold load (sync catalog, download {len(state)} patches, one commit, read): {cold_s:.2f} s")
    print(f"warm load (new Cube.open, read from the cube only):                       {warm_s:.3f} s")
    print(f"speed-up warm vs cold: {cold_s / warm_s:.0f}x; offline load after the servers stopped: identical")
    print()
    print(cube.history().to_string(index=False))
    print()
    print("outputs:")
    print(f"  cube     {cube_path} ({size_mb:.1f} MB)")
    print(f"  catalog  {cube.catalog.folder}")
    print(f"  tile     {tile_path}")
    print(f"  state    {out / 'state.geojson'} ({len(state)} filled patches)")


if __name__ == "__main__":
    main()
