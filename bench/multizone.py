"""Multi-zone figures: a Sentinel-2-like ROI across the 32N/33N border, and planning a year of days.

1. Two granules per zone border (UTM 32N and 33N at 12 E, ``--granule`` px at 10 m, seven bands)
   are served on 127.0.0.1; an ROI across the border, in EPSG:4326, is loaded by
   ``odc.stac.load`` directly (the same Items, the same GeoBox), then by a stacube cold load and a
   warm load. Each phase runs in a fresh process; medians of ``--repeat`` runs.
2. Planning: ``cube.plan`` for a year of daily steps over a ~100 km x 100 km ROI of the Sentinel-2
   spec (two UTM zones), for a day, a month and a year: CPU seconds (untraced), per patch, and peak traced
   memory (a second, traced run).

    .venv/bin/python bench/multizone.py [--granule 1024] [--repeat 3] [--latency-ms 0]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

BANDS = ("B02", "B03", "B04", "B08", "B11", "B12", "SCL")


def _roi():
    from odc.geo.geobox import GeoBox

    return GeoBox.from_bbox((11.96, 46.93, 12.04, 46.99), "EPSG:4326", resolution=0.0001)


def _granules(size: int):
    from stacube.testing.granules import border_granules

    """The two granules at the 32N/33N border on 2024-06-05, ``size`` px a side at 10 m."""
    return [g for g in border_granules(size=size) if g.id.split("_")[1:3] in (["32TQT", "20240605"],
                                                                              ["33TTN", "20240605"])]


def phase(args) -> dict:
    """One measurement in this fresh process; imports are done before the clock starts."""
    import odc.stac
    import pystac_client

    from stacube import Cube
    from stacube.datasets import sentinel2_l2a_spec
    from stacube.datasets.sentinel2 import BANDS as ASSETS

    roi = _roi()
    started = time.perf_counter()
    if args.phase == "direct":
        items = sorted(pystac_client.Client.open(args.api).search(collections=["sentinel-2-l2a"]).items(),
                       key=lambda i: (i.datetime, i.id))
        loaded = odc.stac.load(items, bands=[ASSETS[b][0] for b in BANDS], geobox=roi, groupby="solar_day",
                               resampling={ASSETS[b][0]: ("bilinear" if b in ("B11", "B12") else "nearest")
                                           for b in BANDS})
        pixels = sum(int((v.values != 0).sum()) for v in loaded.data_vars.values())
    else:
        if args.phase == "cold":
            spec = sentinel2_l2a_spec((11.9, 46.9, 12.1, 47.1), "2024-06-01", "2024-06-30", api_url=args.api,
                                      chunks=(1024, 1024))
            cube = Cube.create(args.cube, spec, catalog_dir=args.catalog)
        else:
            cube = Cube.open(args.cube, catalog_dir=args.catalog)
        tile = cube.load(roi, toi="2024-06-05")
        pixels = sum(int((v.values != 0).sum()) for v in tile.data_vars.values())
    return {"seconds": time.perf_counter() - started, "valid_pixels": pixels}


def _run_phase(name: str, api: str, cube: str, catalog: str) -> dict:
    done = subprocess.run([sys.executable, __file__, "--phase", name, "--api", api, "--cube", cube,
                           "--catalog", catalog], capture_output=True, text=True, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def load_figures(args) -> None:
    from stacube.testing.granules import generate_sentinel2
    from stacube.testing.servers import serve_sample

    with tempfile.TemporaryDirectory() as tmp:
        folder = generate_sentinel2(Path(tmp) / "s2", _granules(args.granule))
        with serve_sample(folder, latency_ms=args.latency_ms) as (_files, api):
            runs: dict[str, list[float]] = {"direct": [], "cold": [], "warm": []}
            pixels = {}
            for n in range(args.repeat):
                cube, catalog = str(Path(tmp) / f"cube{n}"), str(Path(tmp) / f"catalog{n}")
                for name in runs:
                    figures = _run_phase(name, api.url, cube, catalog)
                    runs[name].append(figures["seconds"])
                    pixels[name] = figures["valid_pixels"]
    roi = _roi()
    direct = statistics.median(runs["direct"])
    print(f"ROI {roi.shape.y} x {roi.shape.x} px (EPSG:4326) across the 32N/33N border; 2 granules of "
          f"{args.granule} px at 10 m, {len(BANDS)} bands; COG latency {args.latency_ms} ms; "
          f"median of {args.repeat}, each phase in a fresh process")
    print(f"{'':28}{'wall s':>8}{'vs direct':>11}{'valid px':>12}")
    for name, label in (("direct", "odc.stac.load (direct)"), ("cold", "stacube cold load"),
                        ("warm", "stacube warm load")):
        median = statistics.median(runs[name])
        print(f"{label:28}{median:8.3f}{median / direct:10.2f}x{pixels[name]:12d}")


def planning_figures() -> None:
    from odc.geo.geobox import GeoBox

    from stacube import Cube
    from stacube.datasets import sentinel2_l2a_spec

    spec = sentinel2_l2a_spec((11.4, 46.9, 12.8, 47.9), "2024-01-01", "2024-12-31", api_url="http://127.0.0.1:9")
    roi = GeoBox.from_bbox((11.35, 47.0, 12.65, 47.9), "EPSG:4326", resolution=0.0001)  # ~100 km x 100 km
    with tempfile.TemporaryDirectory() as tmp:
        cube = Cube.create(Path(tmp) / "s2", spec, catalog_dir=Path(tmp) / "catalog")
        print(f"\nplanning over {roi.extent.to_crs('EPSG:32632').boundingbox.span_x / 1000:.0f} km x "
              f"{roi.extent.to_crs('EPSG:32632').boundingbox.span_y / 1000:.0f} km, zones {list(spec.zones)}, "
              f"chunks {spec.chunks}")
        print(f"{'TOI':12}{'patches':>9}{'CPU s':>9}{'us/patch':>10}{'peak MB':>9}")
        for label, toi in (("one day", "2024-06-05"), ("one month", "2024-06"), ("one year", "2024")):
            cube.plan(roi, toi)  # warm the imports and caches
            started = time.process_time()  # CPU seconds, untraced: tracemalloc doubles the time it measures
            plan = cube.plan(roi, toi)
            seconds = time.process_time() - started
            tracemalloc.start()
            cube.plan(roi, toi)
            _, peak = tracemalloc.get_traced_memory()
            tracemalloc.stop()
            print(f"{label:12}{len(plan.patches):9d}{seconds:9.2f}{seconds / len(plan.patches) * 1e6:10.1f}"
                  f"{peak / 1e6:9.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--granule", type=int, default=1024)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--phase", choices=["direct", "cold", "warm"])
    parser.add_argument("--api")
    parser.add_argument("--cube")
    parser.add_argument("--catalog")
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args)))
        return
    load_figures(args)
    planning_figures()


if __name__ == "__main__":
    main()
