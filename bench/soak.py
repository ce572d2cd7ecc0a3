"""Soak: thousands of patches through many runs at 10% source faults; memory stays flat, books balance.

One cube over the locally served sample, with patches small enough that the zone holds about
2,000 of them, is filled block by block in ``--runs`` download runs, all through the fault proxy
(500, 503, 429, resets, stalls, truncated and corrupt bodies, at ``--rate``), and the catalog is
synced through a flaky STAC API; then rolled back to empty and filled again, ``--cycles`` times
(so that caches which grow with commits meet their bounds). Prints, every few runs: patches,
seconds, faults injected, this process's resident memory; then the memory at the end of each cycle
and its trend over the last, and checks that, after the last cycle,

- every run completed and committed one snapshot (history = root + create + one per run);
- the filled-patch record holds every patch of the zone once, each attributed to a snapshot
  whose commit metadata lists it;
- the catalog holds every Item once;
- the cube equals, array for array, the same zone downloaded without faults.

    .venv/bin/python bench/soak.py [--chunks 40] [--runs 50] [--cycles 3] [--rate 0.1] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import logging
import math
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def rss_mb() -> float:
    """This process's resident memory now (not the peak): what a leak would make grow run after run."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def blocks(zone, runs: int):
    """``runs`` ROIs of about equal size that tile the zone (rows x columns, as square as ``runs`` allows)."""
    rows = max(r for r in range(1, math.isqrt(runs) + 1) if runs % r == 0)
    cols = runs // rows
    ys = [round(i * zone.shape.y / rows) for i in range(rows + 1)]
    xs = [round(i * zone.shape.x / cols) for i in range(cols + 1)]
    return [zone[ys[r]:ys[r + 1], xs[c]:xs[c + 1]] for r in range(rows) for c in range(cols)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--chunks", type=int, default=40, help="patch side in pixels (40: ~2,200 patches)")
    parser.add_argument("--runs", type=int, default=50, help="runs per cycle")
    parser.add_argument("--cycles", type=int, default=3,
                        help="fill the zone this many times, rolling back to the empty cube in between")
    parser.add_argument("--rate", type=float, default=0.1, help="share of source requests that fail")
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--stall-s", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--out", default=str(ROOT / "bench-output"))
    args = parser.parse_args()

    import numpy as np

    from stacube import Cube, CubeSpec, StacSource, Variable
    from stacube.testing.generate import SampleLayout, generate_sample
    from stacube.testing.servers import Faults, fault_counts, serve_sample

    logging.basicConfig(level=logging.ERROR)
    layout = SampleLayout()
    out = Path(args.out)
    sample = out / "sample-soak"
    if not (sample / "items.json").exists():
        generate_sample(sample, layout)
    work = out / "soak"
    shutil.rmtree(work, ignore_errors=True)
    zone = layout.extent_geobox()

    def spec(api_url: str) -> CubeSpec:
        return CubeSpec(name="soak", zones=[zone], chunks=(args.chunks, args.chunks),
                        variables={"dem": Variable("float32", units="m"), "datamask": Variable("uint8", nodata=0)},
                        source=StacSource(api_url=api_url, collection="sample-dem",
                                          assets={"dem": "dem", "datamask": "datamask"}))

    total = math.ceil(zone.shape.y / args.chunks) * math.ceil(zone.shape.x / args.chunks)
    rois = blocks(zone, args.runs)
    print(f"{total} patches of {args.chunks} px in {len(rois)} runs, {args.cycles} times over, {args.rate:.0%} faults "
          f"(stalls {args.stall_s:g} s), concurrency {args.concurrency}")

    with serve_sample(sample) as (_, api):
        clean = Cube.create(work / "clean", spec(api.url), catalog_dir=work / "clean-catalog")
        started = time.perf_counter()
        clean.download(zone, concurrency=args.concurrency, progress=False)
        print(f"reference without faults: {time.perf_counter() - started:.1f} s")

    faults = Faults(rate=args.rate, stall_s=args.stall_s, seed=args.seed)
    api_faults = Faults(rate=args.rate, kinds=("500", "503", "429", "reset", "truncated", "corrupt"),
                        seed=args.seed + 1)
    memory, failures, cycle_rss = [], [], []
    with serve_sample(sample, faults=faults, api_faults=api_faults) as (files, api):
        cube = Cube.create(work / "cube", spec(api.url), catalog_dir=work / "catalog")
        empty = cube.repo.lookup_branch("main")
        print(f"{'cycle':>5}{'run':>5}{'patches':>9}{'seconds':>9}{'faults':>8}{'RSS MB':>9}")
        soak_started = time.perf_counter()
        for cycle in range(1, args.cycles + 1):
            if cycle > 1:  # back to the empty cube: the next cycle downloads every patch again
                cube.rollback(empty)
            for number, roi in enumerate(rois, 1):
                started = time.perf_counter()
                try:
                    report = cube.download(roi, concurrency=args.concurrency, progress=False)
                except Exception as err:  # noqa: BLE001 - a soak counts failures instead of stopping at the first
                    failures.append(f"cycle {cycle} run {number}: {type(err).__name__}: {err}")
                    continue
                memory.append(rss_mb())
                injected = sum(fault_counts(files).values()) + sum(fault_counts(api).values())
                if number in (1, 2) or number % 10 == 0:
                    print(f"{cycle:5d}{number:5d}{len(report.patches_written) + len(report.patches_empty):9d}"
                          f"{time.perf_counter() - started:9.2f}{injected:8d}{memory[-1]:9.0f}")
            cycle_rss.append(memory[-1] if memory else float("nan"))
        soak_seconds = time.perf_counter() - soak_started
        kinds = {**fault_counts(files)}
        for kind, count in fault_counts(api).items():
            kinds[f"api {kind}"] = count

    runs = args.cycles * len(rois)
    print(f"\n{runs} runs ({args.cycles * total} patches) in {soak_seconds:.0f} s; faults injected: "
          f"{sum(kinds.values())} {kinds}")
    print("RSS at the end of each cycle: " + ", ".join(f"{m:.0f} MB" for m in cycle_rss))
    last = memory[-len(rois):]
    if len(last) >= 2:
        slope = np.polyfit(np.arange(len(last)), last, 1)[0]
        print(f"RSS over the last cycle: {min(last):.0f}-{max(last):.0f} MB, trend {slope:+.2f} MB per run")

    problems = list(failures)
    history = cube.history()
    if len(history) != 2 + len(rois):
        problems.append(f"history has {len(history)} snapshots, expected {2 + len(rois)}")
    state = cube.state()
    if len(state) != total or not state.id.is_unique:
        problems.append(f"the filled record holds {len(state)} patches ({state.id.nunique()} distinct), "
                        f"expected {total}")
    listed: dict[str, set[str]] = {}  # patch -> the snapshots whose metadata names it (with data or empty)
    for snapshot in cube.repo.ancestry(branch="main"):
        meta = snapshot.metadata.get("stacube") or {}
        for patch in [*meta.get("patches", []), *meta.get("patches_empty", [])]:
            listed.setdefault(patch, set()).add(snapshot.id)
    unlisted = [p for p, s in zip(state.id, state.snapshot, strict=True) if s not in listed.get(p, set())]
    if unlisted:
        problems.append(f"{len(unlisted)} patches attributed to a snapshot that does not list them")
    if len(cube.catalog) != len(cube.catalog.item_ids()) or cube.catalog.item_ids() != clean.catalog.item_ids():
        problems.append(f"catalog: {len(cube.catalog)} rows, {len(cube.catalog.item_ids())} distinct Items, "
                        f"reference {len(clean.catalog.item_ids())}")
    ours, theirs = cube.load(zone, offline=True), clean.load(zone, offline=True)
    for name in ("dem", "datamask"):
        if not np.array_equal(ours[name].values, theirs[name].values, equal_nan=True):
            problems.append(f"{name} differs from the fault-free reference")
    print("consistent: every run committed once, every patch filled once, catalog whole, cube equals the "
          "fault-free one" if not problems else "PROBLEMS:\n  " + "\n  ".join(problems))
    sys.exit(1 if problems else 0)


if __name__ == "__main__":
    main()
