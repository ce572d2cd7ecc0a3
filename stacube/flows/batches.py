"""How a run's patches are dealt into Prefect tasks: how many patches each task reads.

Each task run costs Prefect CPU (its engine, state events, and the API recording them), which on a
busy machine comes out of the run itself, and a task run in another process (Dask) costs about what
reading and writing a large patch does; a retried task reads all its patches again. The README's
Prefect section gives the figures (``bench/orchestration.py`` measures them).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from ..grid import PatchIndex

MAX_PATCHES_PER_TASK = 16  # what a retried task reads again, at most (unless MAX_TASKS needs more)
MAX_TASKS = 2_000  # task runs per flow run that the Prefect API and UI are asked to carry


def task_sizes(patches: int, concurrency: int, out_of_process: bool = False) -> list[int]:
    """How many patches each task of a run reads, largest first.

    On the thread task runner: a task per patch while a run has at most 4 per slot of concurrency
    (every patch visible in the UI), then ~4 tasks per slot of at most 16 patches.
    ``out_of_process`` (Dask, or any task runner whose tasks run in other processes): as few tasks as
    keep every slot busy: one per slot, of at most 16 patches.

    The task count is a whole number of rounds of ``concurrency`` tasks and the patches are dealt
    evenly (sizes differ by at most one), so the last round is not one lone task while the other
    slots idle. A run never exceeds 2,000 task runs (tasks then grow past 16 patches).

    Parameters
    ----------
    patches : int
        How many patches the run reads.
    concurrency : int
        Task runs in flight at once (at least 1 is assumed).
    out_of_process : bool, optional
        Whether tasks run in other processes (Dask).

    Returns
    -------
    list[int]
        Patches per task, largest first, summing to ``patches``.
    """
    slots = max(1, concurrency)
    per_slot = 1 if out_of_process else 4
    if patches <= per_slot * slots:
        return [1] * patches
    rounds = max(per_slot, -(-patches // (MAX_PATCHES_PER_TASK * slots)))
    tasks = min(rounds * slots, max(slots, MAX_TASKS // slots * slots), patches)
    size, larger = divmod(patches, tasks)
    return [size + 1] * larger + [size] * (tasks - larger)


def tasks_leave_the_process() -> bool:
    """Whether this flow run's task runner runs tasks outside this process (Dask, Ray): anything but
    Prefect's thread pool.

    Returns
    -------
    bool
        False outside a flow run, or on a ``ThreadPoolTaskRunner``.
    """
    from prefect.context import FlowRunContext
    from prefect.task_runners import ThreadPoolTaskRunner

    context = FlowRunContext.get()
    return context is not None and not isinstance(context.task_runner, ThreadPoolTaskRunner)


def batches_of(patches: Sequence[PatchIndex], concurrency: int,
               patches_per_task: int | None = None) -> list[list[PatchIndex]]:
    """``patches`` in order, cut into the batches the tasks of a run read: ``patches_per_task`` each
    (the last may hold fewer), or by default as ``task_sizes`` deals them for this flow run's task runner.

    Parameters
    ----------
    patches : Sequence[PatchIndex]
        The run's patches.
    concurrency : int
        Task runs in flight at once.
    patches_per_task : int or None, optional
        Patches per batch; None (or 0): ``task_sizes``.

    Returns
    -------
    list[list[PatchIndex]]
        The batches, in order.
    """
    if patches_per_task:
        sizes = [patches_per_task] * (-(-len(patches) // patches_per_task))
    else:
        sizes = task_sizes(len(patches), concurrency, tasks_leave_the_process())
    starts = itertools.accumulate(sizes, initial=0)
    return [list(patches[start : start + size]) for start, size in zip(starts, sizes, strict=False)]


def batch_label(batch: Sequence[PatchIndex]) -> str:
    """A batch's name in its task run's name: its first patch, and how many follow.

    Parameters
    ----------
    batch : Sequence[PatchIndex]
        A batch, not empty.

    Returns
    -------
    str
        The first patch's id, and ``(+n)`` for the ``n`` patches after it.
    """
    return batch[0].id if len(batch) == 1 else f"{batch[0].id} (+{len(batch) - 1})"
