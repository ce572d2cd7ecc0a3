"""Many small ROIs (issue 20): N random 256 x 256 px ROIs from a cube against odc-stac straight from the source.

A sample of ``--tiles`` x ``--tiles`` overlapping COG tiles of ``--tile-size`` px (default 6 x 6 of
1024 px, overlap 64: a 5,824 px square zone) is served on 127.0.0.1 (``--latency-ms`` delays every
COG response). N ROIs of ``--roi`` px a side are drawn with a seeded RNG on the zone's pixel grid
(GeoBox slices of the zone GeoBox), and each of these phases runs in a fresh process, its imports
done before the clock starts:

* ``odc``: for each ROI, a STAC search with the ROI's lon/lat bbox (pystac_client) and
  ``odc.stac.load`` of the found Items on the ROI's GeoBox (one ROI after the other);
* ``cold``: one ``Cube.load_many`` run from an empty cube (a fallback loop of ``Cube.load`` while
  ``load_many`` raises NotImplementedError; the table says which path ran);
* ``warm``: the same ROIs again one by one with ``cube.load(roi, offline=True)``;
* ``warm_many``: the same ROIs in one ``cube.load_many(rois, offline=True)`` (what a loop of
  ``load`` pays per call; skipped while ``load_many`` is not implemented);
* ``warm_1px``: one pixel loaded ``--loads-1px`` times in one process (ms per load, median and p90,
  and CPU ms per load).

One table per N (and per chunk size and latency): wall seconds, CPU seconds of the phase's process
and of the two servers (COG files, STAC API), peak RSS, ms per ROI and the ratio to odc-stac; then
the targets: warm >= 10x faster than odc-stac, cold within 1.5x of it, the store's bytes per ROI
pixel (the cube folder over N * roi * roi), and a 1-pixel warm load under 5 ms.

    .venv/bin/python bench/small_rois.py [--n 40 1000] [--chunks 2048 512] [--latency-ms 0 20]
        [--concurrency 4] [--repeat 1] [--seed 20]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stacube.memory import peak_rss_mb  # noqa: E402 - after the path is set

BANDS = {"dem": "float32", "datamask": "uint8"}
BYTES_PER_PX = 5  # float32 dem + uint8 datamask, as a Tile holds them
PHASES = ("cold", "warm", "warm_many", "warm_1px")  # after "odc", per chunk size


def _layout(args):
    from stacube.testing.generate import SampleLayout

    return SampleLayout(tile_size=args.tile_size, overlap=args.overlap, rows=args.tiles, cols=args.tiles)


def _spec(args, chunks: int, api_url: str):
    from stacube import CubeSpec, StacSource, Variable

    return CubeSpec(
        name="bench",
        zones=[_layout(args).extent_geobox()],
        chunks=(chunks, chunks),
        variables={"dem": Variable("float32", units="m"), "datamask": Variable("uint8", nodata=0)},
        source=StacSource(api_url=api_url, collection="sample-dem", assets={"dem": "dem", "datamask": "datamask"}),
    )


def _corners(args, n: int) -> list[tuple[int, int]]:
    """The ROIs' upper-left pixels (row, column) in the zone, the same for a given seed."""
    import numpy as np

    zone = _layout(args).extent_geobox()
    rng = np.random.default_rng(args.seed)
    corners = rng.integers(0, [zone.shape.y - args.roi + 1, zone.shape.x - args.roi + 1], size=(n, 2))
    return [(int(y), int(x)) for y, x in corners]


def _rois(args, n: int) -> list:
    """N ROIs of ``--roi`` px a side on the zone's pixel grid: GeoBox slices of the zone GeoBox."""
    zone = _layout(args).extent_geobox()
    return [zone[y : y + args.roi, x : x + args.roi] for y, x in _corners(args, n)]


def _valid(ds) -> int:
    return int((ds["datamask"].values != 0).sum())


def _cpu() -> float:
    return time.process_time()


def phase(args) -> dict:
    """One measurement in this (fresh) process; what the load will import is imported first."""
    import dask.array  # noqa: F401 - xarray imports it on its first DataArray
    import odc.stac
    import pystac_client

    import stacube.sources.stac.backend  # noqa: F401
    from stacube import Cube

    work = Path(args.work)
    n, chunks = args.n[0], args.chunks[0]
    rois = _rois(args, n)
    cube_dir, catalog = work / f"cube-{chunks}.icechunk", work / f"catalog-{chunks}"
    if args.phase == "odc":
        odc.stac.configure_rio(cloud_defaults=True)
        client = pystac_client.Client.open(args.api)
        per_roi, valid, items_found = [], 0, 0
        started, cpu = time.perf_counter(), _cpu()
        for roi in rois:
            t0 = time.perf_counter()
            items = client.search(collections=["sample-dem"], bbox=roi.geographic_extent.boundingbox).item_collection()
            ds = odc.stac.load(items, bands=list(BANDS), geobox=roi, groupby=lambda i, p, x: 0, dtype=BANDS)
            valid += _valid(ds)
            items_found += len(items)
            per_roi.append(time.perf_counter() - t0)
        return {"seconds": time.perf_counter() - started, "cpu": _cpu() - cpu, "rss_mb": peak_rss_mb(),
                "valid": valid, "per_roi_ms": 1e3 * statistics.median(per_roi), "items": items_found}
    if args.phase == "cold":
        shutil.rmtree(cube_dir, ignore_errors=True)
        shutil.rmtree(catalog, ignore_errors=True)
        cube = Cube.create(cube_dir, _spec(args, chunks, args.api), catalog_dir=catalog)
        valid, path = 0, "load_many"
        started, cpu = time.perf_counter(), _cpu()
        try:
            tiles = iter(cube.load_many(rois, concurrency=args.concurrency, progress=False))
            first = next(tiles, None)  # an implementation that is a generator raises only here
        except NotImplementedError:
            path, first = "loop of load (load_many not implemented)", None
        if path == "load_many":
            loaded = 0
            for ds in _chain(first, tiles):
                valid += _valid(ds)
                loaded += 1
            if loaded != n:
                raise RuntimeError(f"load_many yielded {loaded} Tiles for {n} ROIs")
        else:
            for roi in rois:
                valid += _valid(cube.load(roi, concurrency=args.concurrency, progress=False))
        seconds, cpu = time.perf_counter() - started, _cpu() - cpu
        store = sum(f.stat().st_size for f in cube_dir.rglob("*") if f.is_file())
        return {"seconds": seconds, "cpu": cpu, "rss_mb": peak_rss_mb(), "valid": valid,
                "per_roi_ms": 1e3 * seconds / n, "store_bytes": store, "path": path}
    if args.phase == "warm":
        cube = Cube.open(cube_dir, catalog_dir=catalog)
        per_roi, valid = [], 0
        started, cpu = time.perf_counter(), _cpu()
        for roi in rois:
            t0 = time.perf_counter()
            ds = cube.load(roi, offline=True)
            valid += _valid(ds)
            per_roi.append(time.perf_counter() - t0)
        return {"seconds": time.perf_counter() - started, "cpu": _cpu() - cpu, "rss_mb": peak_rss_mb(),
                "valid": valid, "per_roi_ms": 1e3 * statistics.median(per_roi)}
    if args.phase == "warm_many":
        cube = Cube.open(cube_dir, catalog_dir=catalog)
        valid = 0
        started, cpu = time.perf_counter(), _cpu()
        try:
            for ds in cube.load_many(rois, offline=True, progress=False):
                valid += _valid(ds)
        except NotImplementedError:
            return {"skipped": True}
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "cpu": _cpu() - cpu, "rss_mb": peak_rss_mb(), "valid": valid,
                "per_roi_ms": 1e3 * seconds / n}
    if args.phase == "warm_1px":
        cube = Cube.open(cube_dir, catalog_dir=catalog)
        zone = _layout(args).extent_geobox()
        y, x = (v + args.roi // 2 for v in _corners(args, 1)[0])  # the middle of the first ROI
        pixel = zone[y : y + 1, x : x + 1]
        walls, cpus = [], []
        started = time.perf_counter()
        for _ in range(args.loads_1px + 1):
            t0, c0 = time.perf_counter(), _cpu()
            ds = cube.load(pixel, offline=True)
            cpus.append(_cpu() - c0)
            walls.append(time.perf_counter() - t0)
        seconds = time.perf_counter() - started
        first, walls, cpus = walls[0], sorted(walls[1:]), sorted(cpus[1:])
        return {"seconds": seconds, "rss_mb": peak_rss_mb(), "first_ms": 1e3 * first,
                "median_ms": 1e3 * statistics.median(walls), "p90_ms": 1e3 * walls[int(0.9 * (len(walls) - 1))],
                "cpu_ms": 1e3 * statistics.median(cpus), "valid": _valid(ds), "loads": len(walls)}
    raise SystemExit(f"unknown phase {args.phase}")


def _chain(first, rest):
    if first is not None:
        yield first
    yield from rest


def _server_cpu(servers) -> float:
    """CPU seconds the servers' processes have used so far (Linux /proc; 0 elsewhere)."""
    total = 0.0
    for server in servers:
        try:
            fields = Path(f"/proc/{server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
        except (OSError, IndexError, ValueError):
            return 0.0
    return total


def run_phase(args, servers, name: str, n: int, chunks: int) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--work", str(args.work), "--api", args.api,
           "--n", str(n), "--chunks", str(chunks), "--tile-size", str(args.tile_size), "--tiles", str(args.tiles),
           "--overlap", str(args.overlap), "--roi", str(args.roi), "--seed", str(args.seed),
           "--concurrency", str(args.concurrency), "--loads-1px", str(args.loads_1px)]
    before = _server_cpu(servers)
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"phase {name} (N={n}, chunks {chunks}) failed:\n{done.stderr.strip()[-3000:]}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["server_cpu"] = _server_cpu(servers) - before
    return result


def _median(runs: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def report(args, n: int, chunks: int, latency: float, odc: list[dict], cold: list[dict], warm: list[dict],
           many: list[dict], px: list[dict]) -> str:
    zone = _layout(args).extent_geobox()
    runs = f"median of {len(odc)} runs" if len(odc) > 1 else "one run"
    lines = [f"\nN = {n} ROIs of {args.roi} x {args.roi} px over {args.tiles} x {args.tiles} source tiles of "
             f"{args.tile_size} px ({zone.shape.x} x {zone.shape.y} px zone); chunks {chunks}; concurrency "
             f"{args.concurrency}; COG latency {latency:g} ms; {runs}, each phase in a fresh process",
             f"cold path: {cold[0]['path']}",
             f"{'':44}{'wall s':>9}{'CPU s':>8}{'servers CPU s':>15}{'peak RSS MB':>13}{'ms/ROI':>9}"
             f"{'valid Mpx':>11}{'vs odc-stac':>13}"]
    base = _median(odc, "seconds")
    for label, runs_ in ((f"odc-stac (search + load, {_median(odc, 'items') / n:.1f} Items/ROI)", odc),
                         ("stacube cold (" + ("load_many" if cold[0]["path"] == "load_many" else "loop of load") + ")",
                          cold),
                         ("stacube warm (load, offline)", warm),
                         *((("stacube warm (load_many, offline)", many),) if many else ())):
        seconds = _median(runs_, "seconds")
        lines.append(f"{label:44}{seconds:9.2f}{_median(runs_, 'cpu'):8.2f}{_median(runs_, 'server_cpu'):15.2f}"
                     f"{_median(runs_, 'rss_mb'):13.0f}{_median(runs_, 'per_roi_ms'):9.1f}"
                     f"{_median(runs_, 'valid') / 1e6:11.3f}{seconds / base:12.2f}x")
    lines.append("  (ms/ROI: median per ROI for odc-stac and warm; wall time over N for the load_many runs)")
    if len({r["valid"] for r in odc + cold + warm + many}) > 1:
        lines.append("  NOTE: the valid pixel counts differ between odc-stac and the cube")
    store = _median(cold, "store_bytes")
    lines.append(f"1-px warm load ({px[0]['loads']} loads in one process): median {_median(px, 'median_ms'):.2f} ms, "
                 f"p90 {_median(px, 'p90_ms'):.2f} ms, CPU {_median(px, 'cpu_ms'):.2f} ms per load "
                 f"(the first load {_median(px, 'first_ms'):.1f} ms); peak RSS {_median(px, 'rss_mb'):.0f} MB")
    warm_x = base / _median(warm, "seconds")
    cold_x = _median(cold, "seconds") / base
    per_px = store / (n * args.roi * args.roi)
    lines.append("targets:")
    lines.append(f"  warm speed-up over odc-stac   {warm_x:7.1f}x   (>= 10x)  {'met' if warm_x >= 10 else 'NOT met'}")
    lines.append(f"  cold / odc-stac               {cold_x:7.2f}    (<= 1.5)  {'met' if cold_x <= 1.5 else 'NOT met'}")
    lines.append(f"  store per ROI pixel           {per_px:7.2f} B  (store {store / 1e6:.1f} MB; the ROIs' pixels are "
                 f"{BYTES_PER_PX} B decoded)")
    one = _median(px, "median_ms")
    lines.append(f"  1-px warm load (median)       {one:7.2f} ms  (< 5 ms)  {'met' if one < 5 else 'NOT met'}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[40, 1000], help="ROI counts, a table each")
    parser.add_argument("--chunks", type=int, nargs="+", default=[2048],
                        help="cube chunk sizes (2048: the ArcticDEM preset; 512 too, say)")
    parser.add_argument("--latency-ms", type=float, nargs="+", default=[0.0],
                        help="delays before every COG response (0: plain loopback; 20 stands in for a remote server)")
    parser.add_argument("--concurrency", type=int, default=4, help="the cold run's concurrency")
    parser.add_argument("--repeat", type=int, default=1, help="runs of each phase; medians are shown")
    parser.add_argument("--roi", type=int, default=256, help="ROI side in px")
    parser.add_argument("--tiles", type=int, default=6, help="source tiles a side")
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--overlap", type=int, default=64)
    parser.add_argument("--seed", type=int, default=20)
    parser.add_argument("--loads-1px", type=int, default=200, help="1-pixel warm loads (after a first one)")
    parser.add_argument("--out", default=str(ROOT / "bench-output"))
    parser.add_argument("--phase")
    parser.add_argument("--work")
    parser.add_argument("--api", default="")
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args)))
        return

    import pystac_client  # noqa: F401 - fail early if the bench's dependencies are missing

    from stacube.testing.generate import generate_sample
    from stacube.testing.servers import serve_sample

    out = Path(args.out)
    sample = out / f"sample-small-rois-{args.tile_size}x{args.tiles}-{args.overlap}"
    if not (sample / "items.json").exists():
        print(f"generating the sample ({args.tiles} x {args.tiles} tiles of {args.tile_size} px) in {sample}")
        generate_sample(sample, _layout(args))
    for latency in args.latency_ms:
        with serve_sample(sample, latency_ms=latency) as (files, api):
            args.api = api.url
            servers = (files, api)
            for n in args.n:
                args.work = out / f"work-small-rois-{n}-{latency:g}ms"
                shutil.rmtree(args.work, ignore_errors=True)
                args.work.mkdir(parents=True)
                odc: list[dict] = []
                per_chunks: dict[int, dict[str, list[dict]]] = {c: {name: [] for name in PHASES}
                                                               for c in args.chunks}
                for _ in range(args.repeat):
                    odc.append(run_phase(args, servers, "odc", n, args.chunks[0]))
                    for chunks in args.chunks:
                        for name in PHASES:
                            result = run_phase(args, servers, name, n, chunks)
                            if not result.get("skipped"):
                                per_chunks[chunks][name].append(result)
                for chunks in args.chunks:
                    runs = per_chunks[chunks]
                    print(report(args, n, chunks, latency, odc, runs["cold"], runs["warm"], runs["warm_many"],
                                 runs["warm_1px"]),
                          flush=True)


if __name__ == "__main__":
    main()
