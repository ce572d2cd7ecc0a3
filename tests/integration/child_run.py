"""A download or load in its own process, for the killed-run and concurrent-writer tests.

    python child_run.py CUBE_URL CATALOG_DIR ROI_JSON [--load] [--kill-at PHASE] [--ready FILE]

ROI_JSON is ``[y0, y1, x0, x1]`` in pixels of the sample's single zone. ``--kill-at`` makes the
process SIGKILL itself at one point of the run, to stand for a pipeline killed there:

- ``read``:   inside a patch task, once a patch has been read and before it is written;
- ``write``:  once a patch's chunks are written into its fork (on storage, not yet merged);
- ``merge``:  after the forks are merged into the run's session, before the filled record;
- ``commit``: a few milliseconds into the commit itself (``--kill-delay`` ms, from a timer thread).

Prints the report (download) or the patch checksums (load) as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import threading
import time


def _die() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _install_kill(phase: str, delay_ms: float) -> None:
    import stacube.run as run

    if phase in ("read", "write"):
        original_write = run.write_patch
        calls = {"n": 0}
        lock = threading.Lock()

        def write_patch(store, spec, patch, data):
            with lock:
                calls["n"] += 1
                second = calls["n"] == 2
            if phase == "read" and second:
                _die()
            written = original_write(store, spec, patch, data)
            if phase == "write" and second:
                _die()
            return written

        run.write_patch = write_patch
    elif phase == "merge":
        original_mark = run.mark_filled

        def mark_filled(*args, **kwargs):
            _die()
            return original_mark(*args, **kwargs)

        run.mark_filled = mark_filled
    elif phase == "commit":
        original_commit = run.commit_settling_overlaps

        def commit(*args, **kwargs):
            threading.Timer(delay_ms / 1000, _die).start()
            result = original_commit(*args, **kwargs)
            time.sleep(1)  # the timer fires even if the commit was quicker than the delay
            return result

        run.commit_settling_overlaps = commit
    else:
        raise SystemExit(f"unknown phase {phase!r}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("catalog")
    parser.add_argument("roi")
    parser.add_argument("--load", action="store_true")
    parser.add_argument("--kill-at")
    parser.add_argument("--kill-delay", type=float, default=5.0)
    parser.add_argument("--ready", help="a file to wait for before starting (lines several processes up)")
    args = parser.parse_args()

    from stacube import Cube

    cube = Cube.open(args.url, catalog_dir=args.catalog)
    y0, y1, x0, x1 = json.loads(args.roi)
    zone = next(iter(cube.spec.zones.values()))
    roi = zone[y0:y1, x0:x1]
    if args.kill_at:
        _install_kill(args.kill_at, args.kill_delay)
    if args.ready:
        while not os.path.exists(args.ready):
            time.sleep(0.01)
    if args.load:
        tile = cube.load(roi, concurrency=2, progress=False)
        print(json.dumps({"dem_sum": float(tile.dem.sum()), "valid": int((tile.datamask > 0).sum())}))
    else:
        report = cube.download(roi, concurrency=2, progress=False)
        print(json.dumps({"snapshot": report.snapshot_id, "written": report.patches_written}))


if __name__ == "__main__":
    main()
