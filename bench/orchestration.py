"""Per-patch overhead of the Prefect runner against the local runner, on the same plan.

Each run downloads the same AOI into a fresh cube (the catalog is synced once beforehand), with
the local thread runner, the Prefect flow on its thread task runner, the same patches mapped on a
Dask LocalCluster of processes without Prefect, and the Prefect flow on that cluster. Prints wall
seconds, ms of overhead per patch and its share of the run time (target: under 5% at the default
patch size), and CPU seconds of all processes. A temporary Prefect API serves the runs.

The cluster's workers run without Dask's default MALLOC_TRIM_THRESHOLD_, as the README advises
for stacube (``--dask-malloc-trim`` keeps Dask's default, to compare).

    .venv/bin/python bench/orchestration.py [--chunks 2048] [--tile-size 1024] [--repeat 5]
"""

from __future__ import annotations

import argparse
import logging
import random
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def cpu_seconds() -> float:
    """CPU time of this process and every process below it (servers, Prefect API, Dask workers): a
    steadier figure than wall time on a small machine, where all of them share the cores."""
    import psutil

    total = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.Error:
            continue
        total += times.user + times.system
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tile-size", type=int, default=1024)
    parser.add_argument("--chunks", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--patches-per-task", type=int, default=0,
                        help="also time the Prefect flow with this many patches per task (0: skip)")
    parser.add_argument("--tiles", type=int, default=8, help="source tiles per side (8: 64 tiles, 16 patches)")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--latency-ms", type=float, default=0.0, help="delay per COG response (a remote server)")
    parser.add_argument("--dask-malloc-trim", action="store_true",
                        help="keep Dask's default MALLOC_TRIM_THRESHOLD_=65536 in the workers")
    parser.add_argument("--out", default=str(ROOT / "bench-output"))
    args = parser.parse_args()

    import os

    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # no telemetry lookups off this machine
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")  # in the Dask workers too: no INFO line per task run
    import dask
    from distributed import Client, LocalCluster
    from prefect.logging import disable_run_logger
    from prefect.testing.utilities import prefect_test_harness
    from prefect_dask import DaskTaskRunner

    from stacube import Cube, CubeSpec, StacSource, Variable
    from stacube.flows import download
    from stacube.flows.download import roi_to_parameter
    from stacube.testing.generate import SampleLayout, generate_sample
    from stacube.testing.servers import serve_sample

    logging.getLogger("prefect").setLevel(logging.WARNING)
    layout = SampleLayout(tile_size=args.tile_size, overlap=args.tile_size // 16, rows=args.tiles, cols=args.tiles)
    out = Path(args.out)
    sample = out / f"sample-{args.tile_size}{'' if args.tiles == 4 else f'-{args.tiles}x{args.tiles}'}"
    if not (sample / "items.json").exists():
        generate_sample(sample, layout)
    work = out / "orchestration"
    shutil.rmtree(work, ignore_errors=True)
    zone = layout.extent_geobox()
    aoi = zone

    with serve_sample(sample, latency_ms=args.latency_ms) as (_, api), prefect_test_harness(), disable_run_logger():
        spec = CubeSpec(
            name="bench", zones=[zone], chunks=(args.chunks, args.chunks),
            variables={"dem": Variable("float32", units="m"), "datamask": Variable("uint8", nodata=0)},
            source=StacSource(api_url=api.url, collection="sample-dem", assets={"dem": "dem", "datamask": "datamask"}),
        )
        catalog = work / "catalog"
        Cube.create(work / "warmup", spec, catalog_dir=catalog).download(aoi)  # sync the catalog, warm GDAL
        counter = iter(range(10_000))

        def fresh() -> Cube:
            return Cube.create(work / f"cube-{next(counter)}", spec, catalog_dir=catalog)

        def local() -> int:
            return fresh().download(aoi, concurrency=args.concurrency).patches

        def prefect_threads() -> int:
            return fresh().download(aoi, concurrency=args.concurrency, runner="prefect").patches

        def prefect_batched() -> int:
            cube = fresh()
            return len(download(str(cube.url), roi_to_parameter(aoi), None, str(catalog), concurrency=args.concurrency,
                                patches_per_task=args.patches_per_task)["patches_written"])

        if not args.dask_malloc_trim:
            dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None})
        cluster = LocalCluster(n_workers=2, threads_per_worker=max(1, args.concurrency // 2), processes=True,
                               dashboard_address=None)
        client = Client(cluster)
        on_dask = download.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))

        class DaskWithoutPrefect:
            """The same patch work mapped straight onto the cluster (its threads bound what runs at once):
            what processes cost, Prefect aside."""

            name = "dask"

            def imap(self, work, patches):
                from distributed import as_completed

                for future in as_completed(client.map(work, list(patches), pure=False)):
                    yield future.result()

        def dask_alone() -> int:
            return fresh().download(aoi, runner=DaskWithoutPrefect()).patches

        def prefect_dask() -> int:
            cube = fresh()
            return len(on_dask(str(cube.url), roi_to_parameter(aoi), None, str(catalog),
                               concurrency=args.concurrency)["patches_written"])

        prefect_threads()  # the first flow run registers the flow and warms the API: not a per-run cost
        filled = fresh()
        filled.download(aoi)

        def noop(runner: str | None) -> Callable[[], int]:
            """A run over an AOI the cube holds already: nothing to download, only the runner's fixed cost."""
            return lambda: filled.download(aoi, runner=runner).patches

        timings: dict[str, list[float]] = {}
        cpu_used: dict[str, list[float]] = {}
        patches = 0
        order = random.Random(0)
        for _ in range(args.repeat):
            runs = [("local threads", local), ("prefect, threads", prefect_threads),
                    ("dask processes, no prefect", dask_alone), ("prefect, dask processes", prefect_dask),
                    ("nothing to do, local", noop(None)), ("nothing to do, prefect", noop("prefect"))]
            if args.patches_per_task:
                runs.append((f"prefect, threads, {args.patches_per_task}/task", prefect_batched))
            order.shuffle(runs)  # no runner always runs right after the same other one
            for name, run in runs:
                started, cpu = time.perf_counter(), cpu_seconds()
                done = run()
                timings.setdefault(name, []).append(time.perf_counter() - started)
                cpu_used.setdefault(name, []).append(cpu_seconds() - cpu)
                patches = max(patches, done)
        client.close()
        cluster.close()

    local = timings["local threads"]
    print(f"{patches} patches of {args.chunks} px, concurrency {args.concurrency}, COG latency {args.latency_ms:g} ms, "
          f"{args.repeat} rounds; shares are medians of each round's runner against that round's local run (the "
          f"machine's drift cancels), with their range")
    fixed = statistics.median(timings["nothing to do, prefect"]) - statistics.median(timings["nothing to do, local"])
    print(f"{'runner':28}{'wall s':>8}{'overhead ms/patch':>19}{'share of run (range)':>26}{'beyond fixed cost':>19}"
          f"{'CPU s, all processes':>22}{'(range)':>16}")
    for name, values in timings.items():
        if name.startswith("nothing"):
            continue
        extra = [t - base for t, base in zip(values, local, strict=True)]
        shares = [100 * e / t for e, t in zip(extra, values, strict=True)]
        cpu_shares = [100 * (c - base) / base
                      for c, base in zip(cpu_used[name], cpu_used["local threads"], strict=True)]
        paid = fixed if name.startswith("prefect") else 0.0  # only flow runs pay a flow run's fixed cost
        beyond = 100 * (statistics.median(extra) - paid) / statistics.median(values)
        print(f"{name:28}{statistics.median(values):8.2f}{1000 * statistics.median(extra) / patches:19.0f}"
              f"{statistics.median(shares):10.1f}% ({min(shares):+.0f}..{max(shares):+.0f}%)"
              f"{beyond:18.1f}%{statistics.median(cpu_used[name]):10.1f} ({statistics.median(cpu_shares):+.0f}%)"
              f"{f'({min(cpu_shares):+.0f}..{max(cpu_shares):+.0f}%)':>16}")
    print(f"fixed cost of a flow run (an AOI already in the cube, nothing to download): {fixed:.3f} s "
          f"(local {statistics.median(timings['nothing to do, local']):.3f} s); paid once per flow run")


if __name__ == "__main__":
    main()
