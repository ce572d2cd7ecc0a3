"""Cold load, warm load and odc-stac's direct load of one ROI over ~16 locally served source tiles.

Each measurement runs in a fresh process (so warm means: a new process, the load call alone) and
reports wall seconds, peak RSS and decoded MB/s; ratios are computed within this one run. Then
the peak memory of `download` for growing AOIs, and the store size against the data it holds.

Then a lazy ROI of ``--lazy-size`` px a side (20,000: 1.6 GB of float32 as an eager Tile) written to
a COG, from the cube and by odc-stac straight from the source, with each one's peak RSS.

Last, the peak memory of an eager cold load of a ~9,700 px ROI over 25 source tiles of 2048 px (a
471 MB Tile) against ``odc.stac.load`` of the same ROI straight from the source (``--eager-only``).

    .venv/bin/python bench/load.py [--tile-size 1024] [--chunks 2048] [--concurrency 4] [--lazy-size 20000]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stacube.memory import peak_rss_mb  # noqa: E402 - after the path is set


def _layout(args):
    from stacube.testing.generate import SampleLayout

    return SampleLayout(tile_size=args.tile_size, overlap=args.tile_size // 16, rows=4, cols=4)


def _spec(args, api_url):
    from stacube import CubeSpec, StacSource, Variable

    return CubeSpec(
        name="bench",
        zones=[_layout(args).extent_geobox()],
        chunks=(args.chunks, args.chunks),
        variables={"dem": Variable("float32", units="m"), "datamask": Variable("uint8", nodata=0)},
        source=StacSource(api_url=api_url, collection="sample-dem", assets={"dem": "dem", "datamask": "datamask"}),
    )


def _roi(args, margin: int = 40):
    zone = _layout(args).extent_geobox()
    return zone[margin : zone.shape.y - margin, margin : zone.shape.x - margin]


def _decoded_mb(ds) -> float:
    return sum(v.nbytes for v in ds.data_vars.values()) / 1e6


def phase(args) -> dict:
    """One measurement, in this (fresh) process.

    Every phase imports what its load will import before the clock starts (odc-stac, and dask.array,
    which xarray imports on its first DataArray), so that each figure is the load call alone.
    """
    import dask.array  # noqa: F401
    import odc.stac

    import stacube.sources.stac.backend  # noqa: F401
    from stacube import Cube

    work = Path(args.work)
    roi = _roi(args)
    if args.phase in ("direct", "direct_pool"):
        import odc.stac
        import pystac

        items = [pystac.Item.from_dict(d) for d in json.loads((work / "items.json").read_text())["features"]]
        odc.stac.configure_rio(cloud_defaults=True)
        pool = args.concurrency if args.phase == "direct_pool" else None
        started = time.perf_counter()
        ds = odc.stac.load(items, bands=["dem", "datamask"], geobox=roi, groupby=lambda i, p, x: 0,
                           dtype={"dem": "float32", "datamask": "uint8"}, pool=pool)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "rss_mb": peak_rss_mb(), "decoded_mb": _decoded_mb(ds)}
    if args.phase == "cold":
        cube = Cube.create(work / "cube.icechunk", _spec(args, args.api), catalog_dir=work / "catalog")
        started = time.perf_counter()
        ds = cube.load(roi, concurrency=args.concurrency)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "rss_mb": peak_rss_mb(), "decoded_mb": _decoded_mb(ds)}
    if args.phase == "warm":
        cube = Cube.open(work / "cube.icechunk", catalog_dir=work / "catalog")
        started = time.perf_counter()
        ds = cube.load(roi)
        seconds = time.perf_counter() - started
        return {"seconds": seconds, "rss_mb": peak_rss_mb(), "decoded_mb": _decoded_mb(ds)}
    if args.phase == "download":
        zone = _layout(args).extent_geobox()
        folder = work / f"aoi-{args.aoi}"
        shutil.rmtree(folder, ignore_errors=True)
        cube = Cube.create(folder / "cube", _spec(args, args.api), catalog_dir=work / "catalog")
        side = min(args.aoi * args.chunks, zone.shape.y)
        started = time.perf_counter()
        report = cube.download(zone[0:side, 0:side], concurrency=args.concurrency)
        seconds = time.perf_counter() - started
        size = sum(f.stat().st_size for f in (folder / "cube").rglob("*") if f.is_file())
        return {"seconds": seconds, "rss_mb": peak_rss_mb(), "patches": report.patches,
                "data_mb": report.bytes_written / 1e6, "store_mb": size / 1e6}
    if args.phase in ("lazy_fill", "lazy_cube", "lazy_direct"):
        return lazy_phase(args, work)
    if args.phase in ("eager_imports", "eager_direct", "eager_cold"):
        return eager_phase(args, work)
    raise SystemExit(f"unknown phase {args.phase}")


def _lazy_layout(args):
    from stacube.testing.generate import SampleLayout

    tile = -(-args.lazy_size // 4) + 64
    return SampleLayout(tile_size=tile, overlap=64, rows=4, cols=4)


def lazy_phase(args, work: Path) -> dict:
    """A lazy ROI of ``--lazy-size`` px a side written to a COG, from the cube or straight from the source."""
    import dask.array  # noqa: F401
    import odc.stac
    import pystac

    from stacube import Cube
    from stacube.export import write_cog

    zone = _lazy_layout(args).extent_geobox()
    roi = zone[0 : args.lazy_size, 0 : args.lazy_size]
    spec = dataclasses.replace(_spec(args, args.api), zones=[zone])
    started = time.perf_counter()
    if args.phase == "lazy_fill":
        cube = Cube.create(work / "lazy.icechunk", spec, catalog_dir=work / "lazy-catalog")
        report = cube.download(roi, concurrency=args.concurrency, progress=False)
        return {"seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb(), "patches": report.patches}
    if args.phase == "lazy_cube":
        cube = Cube.open(work / "lazy.icechunk", catalog_dir=work / "lazy-catalog")
        tile = cube.load(roi, offline=True, variables="dem", chunks={"x": args.chunks, "y": args.chunks})
    else:
        items = [pystac.Item.from_dict(d) for d in json.loads((work / "lazy-items.json").read_text())["features"]]
        tile = odc.stac.load(items, bands=["dem"], geobox=roi, groupby=lambda i, p, x: 0, dtype="float32",
                             chunks={"x": args.chunks, "y": args.chunks}).isel(time=0)
        tile["dem"].attrs = {"nodata": tile.dem.attrs.get("nodata")}
    write_cog(tile.dem, work / f"{args.phase}.tif")
    return {"seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb()}


EAGER_TILE = 2048


def _eager_layout(tiles: int = 5):
    from stacube.testing.generate import SampleLayout

    return SampleLayout(tile_size=EAGER_TILE, overlap=EAGER_TILE // 16, rows=tiles, cols=tiles)


def eager_phase(args, work: Path) -> dict:
    """An eager cold load of the 25-tile ROI, or odc-stac's load of it, or (the floor both stand on) the
    imports alone, each in a fresh process."""
    import dask.array  # noqa: F401
    import odc.stac
    import pystac

    import stacube.sources.stac.backend  # noqa: F401
    from stacube import Cube

    zone = _eager_layout(args.eager_tiles).extent_geobox()
    roi = zone[10 : zone.shape.y - 10, 10 : zone.shape.x - 10]
    spec = dataclasses.replace(_spec(args, args.api), zones=[zone])
    started = time.perf_counter()
    if args.phase == "eager_imports":
        return {"seconds": 0.0, "rss_mb": peak_rss_mb(), "decoded_mb": 0.0}
    if args.phase == "eager_direct":
        items = [pystac.Item.from_dict(d) for d in json.loads((work / "eager-items.json").read_text())["features"]]
        odc.stac.configure_rio(cloud_defaults=True)
        ds = odc.stac.load(items, bands=["dem", "datamask"], geobox=roi, groupby=lambda i, p, x: 0,
                           dtype={"dem": "float32", "datamask": "uint8"})
    else:
        folder = work / "eager.icechunk"
        shutil.rmtree(folder, ignore_errors=True)
        cube = Cube.create(folder, spec, catalog_dir=work / "eager-catalog")
        ds = cube.load(roi, concurrency=args.concurrency, progress=False)
    return {"seconds": time.perf_counter() - started, "rss_mb": peak_rss_mb(), "decoded_mb": _decoded_mb(ds)}


def eager_figures(args, out: Path) -> None:
    import pystac_client

    from stacube.testing.generate import generate_sample
    from stacube.testing.servers import serve_sample

    tiles = args.eager_tiles
    sample = out / f"sample-eager-{EAGER_TILE}" if tiles == 5 else out / f"sample-eager-{EAGER_TILE}-{tiles}"
    if not (sample / "items.json").exists():
        generate_sample(sample, _eager_layout(tiles))
    args.work = out / "work-eager"
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    zone = _eager_layout(tiles).extent_geobox()
    side = zone.shape.y - 20
    print(f"\neager cold load of a {side} x {side} px ROI over {tiles * tiles} source tiles of {EAGER_TILE} px "
          f"({side * side * 5 / 1e6:.0f} MB as a Tile), chunks {args.chunks}, concurrency {args.concurrency}; "
          f"each phase in a fresh process, {args.repeat} runs:")
    names = ("eager_imports", "eager_direct", "eager_cold")
    rows: dict[str, list[dict]] = {name: [] for name in names}
    with serve_sample(sample, latency_ms=args.latency_ms) as (_, api):
        args.api = api.url
        items = pystac_client.Client.open(api.url).search(collections=["sample-dem"]).item_collection()
        (args.work / "eager-items.json").write_text(json.dumps(items.to_dict()))
        for _ in range(args.repeat):
            for name in names:  # side by side, alternating
                rows[name].append(run_phase(args, name, **{"eager-tiles": tiles}))
    print(f"{'':36}{'wall s':>9}{'peak RSS MB':>13}{'range MB':>13}{'above imports MB':>18}")
    floor = sorted(r["rss_mb"] for r in rows["eager_imports"])[len(rows["eager_imports"]) // 2]
    for name, label in (("eager_imports", "imports alone"), ("eager_direct", "odc.stac.load (direct)"),
                        ("eager_cold", "stacube cold load")):
        peaks = sorted(r["rss_mb"] for r in rows[name])
        seconds = sorted(r["seconds"] for r in rows[name])[len(rows[name]) // 2]
        peak = peaks[len(peaks) // 2]
        print(f"{label:36}{seconds:9.2f}{peak:13.0f}{f'{peaks[0]:.0f}-{peaks[-1]:.0f}':>13}{peak - floor:18.0f}")
    direct = sorted(r["rss_mb"] for r in rows["eager_direct"])[len(rows["eager_direct"]) // 2]
    cold = sorted(r["rss_mb"] for r in rows["eager_cold"])[len(rows["eager_cold"]) // 2]
    print(f"target: stacube's cold peak no more than odc-stac's: {cold / direct:.2f}x")


def lazy_figures(args, out: Path) -> None:
    import pystac_client

    from stacube.testing.generate import generate_sample
    from stacube.testing.servers import serve_sample

    sample = out / f"sample-lazy-{args.lazy_size}"
    if not (sample / "items.json").exists():
        generate_sample(sample, _lazy_layout(args))
    args.work = out / "work-lazy"
    shutil.rmtree(args.work, ignore_errors=True)
    args.work.mkdir(parents=True)
    side = args.lazy_size
    print(f"\nlazy ROI {side} x {side} px of float32 ({side * side * 4 / 1e9:.1f} GB as an eager Tile) written "
          f"to a COG in chunks of {args.chunks} px, a fresh process each:")
    with serve_sample(sample) as (_, api):
        args.api = api.url
        items = pystac_client.Client.open(api.url).search(collections=["sample-dem"]).item_collection()
        (args.work / "lazy-items.json").write_text(json.dumps(items.to_dict()))
        fill = run_phase(args, "lazy_fill", **{"lazy-size": side})
        print(f"  (the cube filled first: {fill['patches']} patches in {fill['seconds']:.0f} s)")
        rows = {name: run_phase(args, name, **{"lazy-size": side}) for name in ("lazy_direct", "lazy_cube")}
    print(f"{'':40}{'wall s':>9}{'peak RSS MB':>13}")
    for name, label in (("lazy_direct", "odc.stac.load(chunks=...) -> COG"),
                        ("lazy_cube", "stacube lazy load -> COG")):
        print(f"{label:40}{rows[name]['seconds']:9.1f}{rows[name]['rss_mb']:13.0f}")
    ratio = rows["lazy_cube"]["seconds"] / rows["lazy_direct"]["seconds"]
    print(f"target: stacube's peak RSS under 800 MB; its time {ratio:.2f}x odc-stac's")


def run_phase(args, name: str, **extra) -> dict:
    cmd = [sys.executable, __file__, "--phase", name, "--work", str(args.work), "--api", args.api,
           "--tile-size", str(args.tile_size), "--chunks", str(args.chunks), "--concurrency", str(args.concurrency)]
    for key, value in extra.items():
        cmd += [f"--{key}", str(value)]
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--chunks", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--download-chunks", type=int, default=512, help="patch size for the memory-vs-AOI runs")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each phase; the median is shown")
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay before every COG response, standing in for a remote server (0: plain loopback)")
    parser.add_argument("--out", default=str(ROOT / "bench-output"))
    parser.add_argument("--phase")
    parser.add_argument("--work")
    parser.add_argument("--api", default="")
    parser.add_argument("--aoi", type=int, default=1)
    parser.add_argument("--lazy-size", type=int, default=20000,
                        help="side of the lazy ROI written to a COG (0: skip that part)")
    parser.add_argument("--lazy-only", action="store_true", help="only the lazy ROI")
    parser.add_argument("--eager-only", action="store_true", help="only the eager cold load's peak memory")
    parser.add_argument("--eager-tiles", type=int, default=5, help="source tiles a side under the eager ROI")
    args = parser.parse_args()
    if args.phase:
        print(json.dumps(phase(args)))
        return
    if args.eager_only:
        args.chunks = 2048
        eager_figures(args, Path(args.out))
        return
    if args.lazy_only:
        args.chunks = 2048
        lazy_figures(args, Path(args.out))
        return

    import pystac_client

    from stacube.testing.generate import generate_sample
    from stacube.testing.servers import serve_sample

    out = Path(args.out)
    sample = out / f"sample-{args.tile_size}"
    if not (sample / "items.json").exists():
        generate_sample(sample, _layout(args))
    roi = _roi(args)
    print(f"ROI {roi.shape.y} x {roi.shape.x} px over 16 tiles of {args.tile_size} px; chunks {args.chunks}; "
          f"concurrency {args.concurrency}; COG latency {args.latency_ms:g} ms; median of {args.repeat} runs "
          f"(warm: {3 * args.repeat} loads), each phase in a fresh process")
    with serve_sample(sample, latency_ms=args.latency_ms) as (_, api):
        args.api = api.url
        results: dict[str, list[dict]] = {k: [] for k in ("direct", "direct_pool", "cold", "warm")}
        for run in range(args.repeat):
            args.work = out / f"work-{run}"
            shutil.rmtree(args.work, ignore_errors=True)
            args.work.mkdir(parents=True)
            items = pystac_client.Client.open(api.url).search(collections=["sample-dem"]).item_collection()
            (args.work / "items.json").write_text(json.dumps(items.to_dict()))
            for name in results:
                # a warm load takes a tenth of a second and now and then twice that (page faults of a
                # fresh 70 MB array, the machine's other work): three fresh processes per run steady it
                for _ in range(3 if name == "warm" else 1):
                    results[name].append(run_phase(args, name))

        def median(name: str, key: str) -> float:
            values = sorted(r[key] for r in results[name])
            return values[len(values) // 2]

        direct = median("direct", "seconds")
        print(f"{'':28}{'wall s':>9}{'range s':>15}{'peak RSS MB':>13}{'decoded MB/s':>14}{'vs direct':>11}")
        labels = {"direct": "odc.stac.load (direct)", "direct_pool": f"odc.stac.load pool={args.concurrency}",
                  "cold": "stacube cold load", "warm": "stacube warm load"}
        for name, label in labels.items():
            seconds = median(name, "seconds")
            spread = sorted(r["seconds"] for r in results[name])
            print(f"{label:28}{seconds:9.3f}{f'{spread[0]:.3f}-{spread[-1]:.3f}':>15}{median(name, 'rss_mb'):13.0f}"
                  f"{median(name, 'decoded_mb') / seconds:14.0f}{seconds / direct:10.2f}x")
        print(f"warm speed-up over direct: {direct / median('warm', 'seconds'):.1f}x (target >= 10x); "
              f"cold / direct: {median('cold', 'seconds') / direct:.2f} (target <= 1.3)")

        # Memory against AOI size: smaller patches, so that the largest AOI holds many times `concurrency`.
        args.chunks = args.download_chunks
        print(f"\ndownload peak memory against AOI size (patches of {args.chunks} px, concurrency "
              f"{args.concurrency}, a fresh process each):")
        print(f"{'AOI chunks':>11}{'patches':>9}{'wall s':>9}{'peak RSS MB':>13}{'data MB':>9}{'store MB':>10}"
              f"{'store/data':>11}")
        zone_chunks = -(-_layout(args).extent_geobox().shape.y // args.chunks)
        for aoi in sorted({1, 2, zone_chunks // 2, zone_chunks}):
            r = run_phase(args, "download", aoi=aoi)
            print(f"{aoi}x{aoi:<9}{r['patches']:9d}{r['seconds']:9.2f}{r['rss_mb']:13.0f}{r['data_mb']:9.1f}"
                  f"{r['store_mb']:10.1f}{r['store_mb'] / max(r['data_mb'], 1e-9):11.2f}")
    if args.lazy_size:
        args.chunks = 2048
        lazy_figures(args, out)
    args.chunks = 2048
    eager_figures(args, out)


if __name__ == "__main__":
    main()
