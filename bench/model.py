"""The model-checked cube (tests/integration/test_model.py) with many more examples than CI runs.

The same Hypothesis state machine, over the same samples served on 127.0.0.1: random downloads, loads
(online, offline, historical), tags, rollbacks, expiry, extend_time and two concurrent runs, every
snapshot compared with the plain model after every step. Prints, per cube, how many examples and steps
ran, the steps per rule and the seconds they took; on a failure, the failing sequence of steps (and a
blob to reproduce it), and exits with 1.

    .venv/bin/python bench/model.py [--examples 200] [--steps 30] [--cube series|dem|both] [--shrink] [--derandomize]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--examples", type=int, default=200, help="Hypothesis examples (cubes) per machine")
    parser.add_argument("--steps", type=int, default=30, help="at most this many steps per example")
    parser.add_argument("--cube", choices=["series", "dem", "both"], default="both")
    parser.add_argument("--shrink", action="store_true", help="shrink a failure to a short sequence (up to 5 min)")
    parser.add_argument("--derandomize", action="store_true", help="the same examples on every run")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the settled overlaps of concurrent runs are logged as warnings

    from hypothesis import Phase

    from stacube.testing.generate import SampleLayout, generate_sample
    from stacube.testing.servers import serve_sample
    from tests.conftest import TIME_LAYOUT
    from tests.integration.test_model import dem_world, run_machine, series_world

    phases = [Phase.explicit, Phase.reuse, Phase.generate] + ([Phase.shrink] if args.shrink else [])
    samples = {"series": (TIME_LAYOUT, "sample-series", series_world), "dem": (SampleLayout(), "sample-dem", dem_world)}
    failed = False
    with tempfile.TemporaryDirectory(prefix="stacube-model-") as tmp:
        for name in ["series", "dem"] if args.cube == "both" else [args.cube]:
            layout, collection, make_world = samples[name]
            folder = generate_sample(Path(tmp) / f"sample-{name}", layout, collection=collection)
            with serve_sample(folder) as (_files, api):
                world = make_world(folder, api.url, Path(tmp) / f"cubes-{name}")
                world.workdir.mkdir()
                started = time.perf_counter()
                try:
                    run_machine(world, max_examples=args.examples, stateful_step_count=args.steps, phases=phases,
                                derandomize=args.derandomize)
                    outcome = "passed"
                except BaseException as err:  # reported, then the exit status says it
                    if isinstance(err, KeyboardInterrupt):
                        raise
                    traceback.print_exc()
                    outcome, failed = f"FAILED: {type(err).__name__}", True
                seconds = time.perf_counter() - started
            stats = world.stats
            rules = {k: v for k, v in sorted(stats.items(), key=lambda kv: -kv[1]) if k not in ("examples", "steps")}
            print(f"{name}: {outcome}; {stats['examples']} examples, {stats['steps']} steps in {seconds:.1f} s "
                  f"({seconds / max(stats['steps'], 1):.2f} s a step, invariants included)")
            print("  steps per rule: " + ", ".join(f"{k} {v}" for k, v in rules.items()))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
