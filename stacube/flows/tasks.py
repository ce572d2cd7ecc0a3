"""The Prefect task of a download: read and write a batch of patches, retried unless a retry cannot help.

Patch arrays never become Prefect results and are never hashed for cache keys (``NO_CACHE``,
``persist_result=False``): a task returns what the run's ``work`` returns for each patch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.tasks import exponential_backoff

from ..errors import storage_failure
from ..grid import PatchIndex
from ..runners import PatchFailure, failure_of, is_permanent


def retry_unless_permanent(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a patch unless its failure is one a retry cannot fix (missing file, corrupt format, bad Item):
    the task's ``retry_condition_fn``.

    Parameters
    ----------
    task : Any
        The Prefect task (unused).
    task_run : Any
        The task run (unused).
    state : Any
        The task run's failed state; ``state.result()`` raises its error.

    Returns
    -------
    bool
        False for a permanent error (``is_permanent``), else True.
    """
    try:
        state.result()
    except Exception as error:  # noqa: BLE001 - the failure is what is being judged
        return not is_permanent(error)
    return True


@task(
    name="patches",
    task_run_name="patches {label}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=0.5),
    retry_jitter_factor=0.5,
    retry_condition_fn=retry_unless_permanent,
)
def patches_task(work: Callable[[PatchIndex], Any], patches: list[PatchIndex], label: str,
                 limits: list[str], skip_failed: bool = False) -> list[Any]:
    """Read and write a batch of patches, one after the other. ``work`` unpickles a fresh fork per call,
    so a retried attempt starts every patch of the batch afresh.

    ``limits`` name Prefect global concurrency limits (one per source host, ``stacube.flows.limits``)
    that the batch holds a slot of while it reads. A failing patch's id travels with the error (also
    across processes, as ``stacube_patch_id``). With ``skip_failed``, a patch failing for a reason a
    retry cannot fix (a corrupt file) becomes a PatchFailure and the batch goes on; other errors still
    fail the task, to be retried.

    Parameters
    ----------
    work : Callable[[PatchIndex], Any]
        Reads and writes one patch (``run.PatchTask``).
    patches : list[PatchIndex]
        The batch, with its Items.
    label : str
        The batch's name in the task run's name (``batches.batch_label``).
    limits : list[str]
        Prefect global concurrency limits to hold a slot of (existing ones only).
    skip_failed : bool, optional
        Whether a patch failing permanently becomes a PatchFailure instead of failing the task.

    Returns
    -------
    list[Any]
        ``work``'s result per patch (a PatchResult, or a PatchFailure), in batch order.

    Raises
    ------
    Exception
        The first failing patch's own error (a SourceError, an ItemError, ...), with its id as
        ``stacube_patch_id``; retried unless permanent, then the runner names it in a PatchReadError.
    """
    with concurrency(limits, occupy=1, strict=False) if limits else contextlib.nullcontext():
        results = []
        for patch in patches:
            try:
                results.append(work(patch))
            except Exception as error:
                if skip_failed and is_permanent(error) and storage_failure(error) is None:  # a full disk ends it
                    results.append(failure_of(patch, error, 1))
                    continue
                error.stacube_patch_id = patch.id  # type: ignore[attr-defined]
                # the batch's patches that failed for good before it, each with its own cause (not "cancelled")
                error.stacube_failures = [r for r in results if isinstance(r, PatchFailure)]  # type: ignore
                raise
        return results
