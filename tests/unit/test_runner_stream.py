"""A runner hands each patch's result to the run as it lands (``Runner.imap``), bounded by the caller's pace."""

from __future__ import annotations

import threading
import time

import pytest

from stacube.errors import PatchReadError, PermanentSourceError
from stacube.grid import PatchIndex
from stacube.runners import LocalRunner


def patches(n: int) -> list[PatchIndex]:
    return [PatchIndex("epsg3413", 0, i, None) for i in range(n)]


def test_results_come_as_patches_finish_not_in_patch_order():
    def task(patch: PatchIndex) -> int:
        time.sleep(0.3 if patch.ix == 0 else 0.01)  # the first patch is the slowest
        return patch.ix

    landed = list(LocalRunner(concurrency=3, progress=False).imap(task, patches(3)))
    assert sorted(landed) == [0, 1, 2] and landed[-1] == 0


def test_a_slow_caller_holds_back_the_reads():
    lock = threading.Lock()
    started, taken, most_ahead = [0], [0], [0]

    def task(patch: PatchIndex) -> int:
        with lock:
            started[0] += 1
            most_ahead[0] = max(most_ahead[0], started[0] - taken[0])
        return patch.ix

    for _ in LocalRunner(concurrency=2, progress=False).imap(task, patches(12)):
        time.sleep(0.02)  # the caller pastes slowly: no more than 2 patches may be read ahead of it
        with lock:
            taken[0] += 1
    assert started[0] == 12 and most_ahead[0] <= 2


def test_leaving_early_starts_no_further_patch():
    calls: list[int] = []

    def task(patch: PatchIndex) -> int:
        calls.append(patch.ix)
        return patch.ix

    landed = LocalRunner(concurrency=2, progress=False).imap(task, patches(20))
    next(landed)
    landed.close()
    count = len(calls)
    time.sleep(0.1)
    assert count <= 3 and len(calls) == count  # at most the two in flight and the one that replaced the first


def test_a_failure_is_raised_where_the_results_are_read_after_those_that_landed():
    calls: list[int] = []

    def task(patch: PatchIndex) -> int:
        calls.append(patch.ix)
        if patch.ix == 1:
            time.sleep(0.2)
            raise PermanentSourceError("404 from https://example.com/b.tif", "https://example.com/b.tif", 404)
        return patch.ix

    landed = []
    with pytest.raises(PatchReadError) as raised:
        for result in LocalRunner(concurrency=2, progress=False).imap(task, patches(2)):
            landed.append(result)
    assert landed == [0] and raised.value.patch_id == patches(2)[1].id
    assert isinstance(raised.value.__cause__, PermanentSourceError) and calls.count(1) == 1  # permanent: once
