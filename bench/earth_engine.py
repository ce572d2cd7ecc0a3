"""Patches per second and requests per patch from the loopback Earth Engine emulator, at several concurrencies.

The emulator delays every pixel request (200 ms by default, like a remote service), and the real
``earthengine-api`` client talks to it. Each concurrency downloads the same AOI into a fresh cube.

    .venv/bin/python bench/earth_engine.py [--latency-ms 200] [--concurrency 1 8 32]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

COLLECTION = "BENCH/EMULATED"


def _images(tiles: int, size: int):
    import numpy as np
    import pandas as pd
    from affine import Affine

    from stacube.testing.earthengine import EmulatedImage

    rng = np.random.default_rng(0)
    step = size - size // 8  # neighbouring images overlap by an eighth
    start, end = pd.Timestamp("2024-06-06T10:00"), pd.Timestamp("2024-06-06T10:01")
    return [EmulatedImage(f"{COLLECTION}/img_{r}_{c}", start, end, "EPSG:32633",
                          Affine(10.0, 0.0, 500000.0 + c * step * 10, 0.0, -10.0, 5200000.0 - r * step * 10),
                          {"B4": rng.integers(0, 10000, (size, size), dtype="uint16"),
                           "B8": rng.integers(0, 10000, (size, size), dtype="uint16")})
            for r in range(tiles) for c in range(tiles)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--latency-ms", type=float, default=200.0)
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--tiles", type=int, default=3, help="images per side")
    parser.add_argument("--image-size", type=int, default=256)
    parser.add_argument("--chunks", type=int, default=128)
    parser.add_argument("--out", default=str(ROOT / "bench-output" / "earth-engine"))
    args = parser.parse_args()

    import ee
    from odc.geo.geobox import GeoBox

    from stacube import Cube, CubeSpec, EarthEngineSource, Variable
    from stacube.plan import attach_items
    from stacube.testing.earthengine import EarthEngineEmulator, serve_earthengine

    os.environ.setdefault("NO_PROXY", "127.0.0.1,localhost")
    os.environ["STACUBE_EE_TOKEN"] = "bench"
    ee.deprecation._FetchDataCatalogStac = lambda: {}  # Initialize would fetch a list from a public address
    images = _images(args.tiles, args.image_size)
    span = (args.tiles * (args.image_size - args.image_size // 8) + args.image_size // 8) * 10.0
    zone = GeoBox.from_bbox((500000.0, 5200000.0 - span, 500000.0 + span, 5200000.0), "EPSG:32633", resolution=10.0)
    out = Path(args.out)
    shutil.rmtree(out, ignore_errors=True)
    emulator = EarthEngineEmulator(images, latency_ms=args.latency_ms)
    print(f"{len(images)} images of {args.image_size} px, zone {zone.shape.y} x {zone.shape.x} px in chunks of "
          f"{args.chunks}; 2 uint16 bands; {args.latency_ms:g} ms per pixel request")
    print(f"{'concurrency':>11}{'patches':>9}{'wall s':>9}{'patches/s':>11}{'requests/patch':>16}")
    with serve_earthengine(emulator):
        for concurrency in args.concurrency:
            spec = CubeSpec(name="ee-bench", zones=[zone], chunks=(args.chunks, args.chunks),
                            variables={"red": Variable("uint16", nodata=0), "nir": Variable("uint16", nodata=0)},
                            source=EarthEngineSource(COLLECTION, {"red": "B4", "nir": "B8"}, project="bench",
                                                     api_url=emulator.url, max_concurrency=min(40, concurrency)))
            cube = Cube.create(out / f"cube-{concurrency}", spec, catalog_dir=out / "catalog")
            attach_items(spec, cube.catalog, cube.plan(zone).missing)  # the catalog conversion is not measured
            before = emulator.pixel_requests
            started = time.perf_counter()
            report = cube.download(zone, concurrency=concurrency, progress=False)
            seconds = time.perf_counter() - started
            requests = emulator.pixel_requests - before
            print(f"{concurrency:11d}{report.patches:9d}{seconds:9.2f}{report.patches / seconds:11.1f}"
                  f"{requests / max(report.patches, 1):16.2f}")


if __name__ == "__main__":
    main()
