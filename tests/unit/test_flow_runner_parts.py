"""The Prefect runner's parts, without a Prefect server: tasks in flight, batches, the report artifact."""

from __future__ import annotations

from concurrent.futures import Future

import pytest

pytest.importorskip("prefect")

from stacube.flows.batches import batch_label, batches_of
from stacube.flows.report import ARTIFACT_ROWS, report_markdown
from stacube.flows.scheduler import InFlight
from stacube.grid import PatchIndex
from stacube.run import RunReport


class Wrapped:
    """A stand-in for a Prefect future: ``add_done_callback`` and the ``wrapped_future`` it cancels."""

    def __init__(self):
        self.wrapped_future = Future()

    def add_done_callback(self, callback):
        self.wrapped_future.add_done_callback(lambda _: callback(self))


def test_at_most_bound_tasks_are_in_flight_and_each_finished_one_makes_room_for_one_more():
    submitted: list[Wrapped] = []

    def submit(i):
        submitted.append(Wrapped())
        return submitted[-1]

    tasks = InFlight(submit, count=5, bound=2)
    assert len(submitted) == 2
    submitted[1].wrapped_future.set_result("b")  # the second finishes first
    seen = []
    for i, _ in tasks:
        seen.append(i)
        tasks.more()
        running = [f for f in submitted if not f.wrapped_future.done()]
        assert len(running) <= 2
        if running:
            running[0].wrapped_future.set_result(i)
    assert seen[0] == 1 and sorted(seen) == [0, 1, 2, 3, 4] and len(submitted) == 5


def test_cancel_stops_the_queued_tasks_and_submits_no_more():
    submitted: list[Wrapped] = []

    def submit(i):
        submitted.append(Wrapped())
        return submitted[-1]

    tasks = InFlight(submit, count=10, bound=3)
    submitted[0].wrapped_future.set_exception(OSError("gone"))
    for i, future in tasks:
        assert i == 0 and future.wrapped_future.exception() is not None
        tasks.cancel()
        tasks.more()  # nothing left to submit after a cancel
        break
    assert len(submitted) == 3 and all(f.wrapped_future.cancelled() for f in submitted[1:])


def test_batches_keep_patch_order_and_name_their_first_patch():
    patches = [PatchIndex("z", 0, i, None) for i in range(10)]
    cut = batches_of(patches, concurrency=2, patches_per_task=4)
    assert [len(b) for b in cut] == [4, 4, 2] and [p for b in cut for p in b] == patches
    assert batch_label(cut[0]) == f"{patches[0].id} (+3)" and batch_label([patches[9]]) == patches[9].id
    assert [len(b) for b in batches_of(patches, concurrency=8)] == [1] * 10  # outside a flow run: threads


def test_the_report_artifact_lists_every_outcome_up_to_its_row_limit():
    report = RunReport(snapshot_id="SNAP", run_id="r", patches_written=[f"w{i}" for i in range(ARTIFACT_ROWS + 3)],
                       patches_empty=["e"], bytes_written=2_000_000, seconds=1.5)
    text = report_markdown(report, "cubes/x.icechunk")
    assert "`cubes/x.icechunk`" in text and "snapshot **SNAP**" in text and "2.0 MB" in text
    assert text.count("| written |") == ARTIFACT_ROWS and "4 more patches are listed" in text
