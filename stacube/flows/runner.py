"""The Prefect runner: a run's patches as Prefect tasks in a flow run, and the run itself hosted in one.

``runner="prefect"`` names it (``prefect_runner``, declared in the ``stacube.runners`` entry-point
group). It drives the same core run code as the local runner (plan, read into forks, merge, one
commit); Prefect adds task mapping, retries with exponential backoff, logs, an artifact per run,
and per-host concurrency limits. Its parts: ``batches`` (patches per task), ``tasks`` (the task and
its retry decision), ``scheduler`` (bounded tasks in flight), ``limits``, ``progress`` and ``report``.
"""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from ..errors import PatchReadError, storage_failure
from ..grid import PatchIndex
from ..run import RunReport
from ..runners import PatchFailure, RunCancelled, check_count, describe_failure, failure_of, is_permanent
from .batches import batch_label, batches_of
from .cubes import flow_run_metadata
from .heartbeats import without_idle_heartbeats
from .limits import existing_limits, limits_of_source
from .progress import RunProgress
from .report import publish as publish_report
from .scheduler import InFlight
from .tasks import patches_task

MAX_THREADS = 64  # the thread task runner's ceiling; the ``concurrency`` parameter sets the bound below it


@dataclass
class PrefectRunner:
    """Runs patches as Prefect tasks in the current flow run, at most ``concurrency`` tasks in flight.

    Tasks are submitted as earlier ones finish, so the bound holds on any task runner (threads or a
    Dask cluster), and after a patch fails for good no further task starts (``scheduler.InFlight``).
    """

    concurrency: int = 8
    """Task runs in flight at once, on any task runner."""
    retries: int = 3
    """Retries of a failing task (exponential backoff), unless its failure is permanent."""
    limits: Callable[[PatchIndex], list[str]] | None = None
    """Concurrency-limit names per patch (None: ``limits.source_limits`` for the cube's source)."""
    patches_per_task: int | None = None
    """Patches each task reads (None: ``batches.task_sizes``, for the flow run's task runner)."""
    skip_failed: bool = False
    """Patches failing for good come back as PatchFailures and the run goes on."""
    name: str = "prefect"
    """The runner's name in the commit metadata."""
    publish: bool = True
    """Whether a hosted run publishes its report (log lines, artifact); a flow that publishes it itself says False."""

    def __post_init__(self) -> None:
        """Refuse, naming it, a count a run could not keep (SpecError): a negative ``patches_per_task`` made no
        batch at all, and the run recorded every patch as filled and empty without reading one."""
        check_count("concurrency", self.concurrency, 1)
        check_count("retries", self.retries, 0)
        if self.patches_per_task is not None:
            check_count("patches_per_task", self.patches_per_task, 0)

    def host(self, execute: Callable[[Any, dict[str, Any]], RunReport], cube: Any,
             about: dict[str, Any]) -> RunReport:
        """Hold a whole run (``stacube.runners.HostingRunner``, called by ``Cube.run``): in the current flow
        run, or else in an ad hoc ``stacube-download`` flow run of its own, whose parameters say what was
        planned (``about``) and whose result, ``RunReport.to_json()``, is read back here. The run is not
        planned again: ``execute`` carries the caller's plan.

        Parameters
        ----------
        execute : Callable[[Any, dict[str, Any]], RunReport]
            Runs the run with the runner it is given and the flow run's metadata (from ``Cube.run``).
        cube : stacube.Cube
            The cube the run writes to.
        about : dict[str, Any]
            What was planned: ``patches`` (ids), ``roi`` (lon/lat GeoJSON or None), ``message``.

        Returns
        -------
        RunReport
            The run's report; its ``metadata`` names the flow run.

        Raises
        ------
        CatalogError, ItemError, RadiometryError, TOIError, PatchReadError, CubeChangedError, StorageError
            What ``execute`` raised (as ``Cube.run`` documents it); an ad hoc flow run fails with it.
        """
        from prefect.context import FlowRunContext

        if FlowRunContext.get() is not None:
            return self._in_flow_run(execute, cube)
        token = uuid.uuid4().hex
        _HOSTED[token] = (self, execute, cube)
        try:
            with without_idle_heartbeats():
                state = run_planned(str(cube.url), about["patches"], about.get("roi"), about.get("message"),
                                    concurrency=self.concurrency, skip_failed=self.skip_failed, run=token,
                                    return_state=True)
        finally:
            _HOSTED.pop(token, None)
        return RunReport.from_json(state.result())

    def _in_flow_run(self, execute: Callable[[Any, dict[str, Any]], RunReport], cube: Any) -> RunReport:
        """The run in this flow run: its commit names the flow run; its report goes to the log and an artifact."""
        runner = self if self.limits is not None else dataclasses.replace(
            self, limits=limits_of_source(cube.spec.source))
        report = execute(runner, flow_run_metadata())
        if self.publish:
            publish_report(report, str(cube.url))
        return report

    def imap(self, work: Callable[[PatchIndex], Any], patches: Sequence[PatchIndex]) -> Iterator[Any]:
        """``work`` for every patch, in batches of patches per task, each batch's results as its task ends;
        raises PatchReadError naming the patch that failed for good (unless ``skip_failed``).

        Parameters
        ----------
        work : Callable[[PatchIndex], Any]
            Reads and writes one patch (``run.PatchTask``).
        patches : Sequence[PatchIndex]
            The patches, with their Items.

        Yields
        ------
        Any
            ``work``'s result per patch, a task's batch at a time as tasks end (a PatchFailure for a patch skipped).

        Raises
        ------
        PatchReadError
            If a task failed for good (after its retries, or at once for a permanent error), naming the
            failing patch (or the batch, where no patch failed: a lost worker), its Items and URLs; the
            tasks still queued are cancelled, as they are when the caller leaves early. With
            ``skip_failed``, only when storage refuses the writes.
        """
        for _, results in self._completed(work, patches):
            yield from results

    def map(self, work: Callable[[PatchIndex], Any], patches: Sequence[PatchIndex]) -> list[Any]:
        """``work`` for every patch, as ``imap``, the results in the order of ``patches``.

        Parameters
        ----------
        work : Callable[[PatchIndex], Any]
            Reads and writes one patch (``run.PatchTask``).
        patches : Sequence[PatchIndex]
            The patches, with their Items.

        Returns
        -------
        list[Any]
            ``work``'s result per patch, in the order of ``patches`` (a PatchFailure for a patch skipped).

        Raises
        ------
        PatchReadError
            As ``imap``.
        """
        results = dict(self._completed(work, patches))
        return [r for i in sorted(results) for r in results[i]]

    def _completed(self, work: Callable[[PatchIndex], Any], patches: Sequence[PatchIndex]
                   ) -> Iterator[tuple[int, list[Any]]]:
        """(batch number, its results) as tasks end, the batches in the order of ``patches``."""
        if not patches:
            return
        batches = batches_of(patches, self.concurrency, self.patches_per_task)
        limits = self._limits_per_batch(batches)
        task = patches_task.with_options(retries=self.retries)
        tasks = InFlight(lambda i: task.submit(work, batches[i], batch_label(batches[i]), limits[i], self.skip_failed),
                         len(batches), self.concurrency)
        progress = RunProgress(len(patches))
        try:
            for i, future in tasks:
                try:
                    results = future.result()
                except Exception as error:
                    progress.done(batches[i], [])
                    if not self.skip_failed or storage_failure(error) is not None:
                        raise self._failure(batches[i], error) from error
                    tasks.more()
                    yield i, self._skipped(batches[i], error)  # the batch is lost: tried again next run
                    continue
                tasks.more()  # first: a slot never waits for the bookkeeping below
                progress.done(batches[i], results)
                yield i, results
        except BaseException:  # a failure, or the caller leaving early (GeneratorExit): nothing more starts
            tasks.cancel()
            raise

    def _limits_per_batch(self, batches: list[list[PatchIndex]]) -> list[list[str]]:
        """The concurrency limits each batch holds a slot of: those of its patches that someone created."""
        names = [sorted({n for p in batch for n in (self.limits(p) if self.limits else [])}) for batch in batches]
        present = existing_limits({n for batch_names in names for n in batch_names})
        return [[n for n in batch_names if n in present] for batch_names in names]

    def _attempts(self, error: BaseException) -> int:
        return 1 if is_permanent(error) else self.retries + 1

    def _failure(self, batch: list[PatchIndex], error: BaseException) -> PatchReadError:
        """The error a failed task ends the run with: the failing patch's, or the batch's if no patch failed
        (a lost worker, a concurrency slot)."""
        failed = _failed_patch(batch, error)
        attempts = self._attempts(error)
        if failed is None:
            ids = ", ".join(p.id for p in batch[:5]) + (" ..." if len(batch) > 5 else "")
            return PatchReadError(f"a task of {len(batch)} patch(es) ({ids}) failed after {attempts} "
                                  f"attempt(s): {type(error).__name__}: {error}", batch[0].id, [])
        return describe_failure(failed, error, attempts)

    def _skipped(self, batch: list[PatchIndex], error: BaseException) -> list[PatchFailure]:
        """A failed task's patches as PatchFailures: the failing one with its error, the rest as not written."""
        failed = _failed_patch(batch, error)
        attempts = self._attempts(error)
        earlier = {f.patch_id: f for f in getattr(error, "stacube_failures", None) or []}  # their own causes
        return [earlier.get(p.id) or failure_of(p, error if p is failed or failed is None else RunCancelled(
            f"not written: patch {failed.id} of the same task failed"), attempts) for p in batch]


def _failed_patch(batch: list[PatchIndex], error: BaseException) -> PatchIndex | None:
    """The patch of ``batch`` whose read raised ``error`` (``tasks.patches_task`` names it), if any."""
    failed_id = getattr(error, "stacube_patch_id", None)
    return next((p for p in batch if p.id == failed_id), None)


def prefect_runner(concurrency: int | None = None, progress: bool | None = None,
                   skip_failed: bool = False) -> PrefectRunner:
    """The runner ``runner="prefect"`` names (declared in the ``stacube.runners`` entry-point group):
    a run as a ``stacube-download`` flow run, ``concurrency`` tasks at once. ``progress`` is the flow
    run's log and progress artifact, always.

    Parameters
    ----------
    concurrency : int or None, optional
        Task runs in flight at once; None: 8 (at most ``MAX_THREADS``).
    progress : bool or None, optional
        Ignored: a flow run always logs its progress and shows it as an artifact.
    skip_failed : bool, optional
        Whether a patch failing for good comes back as a PatchFailure instead of failing the run.

    Returns
    -------
    PrefectRunner
        A new runner.
    """
    return PrefectRunner(concurrency=min(concurrency or 8, MAX_THREADS), skip_failed=skip_failed)


_HOSTED: dict[str, tuple[PrefectRunner, Callable[[Any, dict[str, Any]], RunReport], Any]] = {}


@flow(name="stacube-download", task_runner=ThreadPoolTaskRunner(max_workers=MAX_THREADS))
def run_planned(cube_url: str, patches: list[str], roi: dict[str, Any] | None = None, message: str | None = None,
                concurrency: int = 8, skip_failed: bool = False, run: str = "") -> dict[str, Any]:
    """A run planned in this process (``Cube.download``/``Cube.load``/``Cube.run`` with ``runner="prefect"``)
    as a ``stacube-download`` flow run: ``patches`` (their ids), under ``roi`` (lon/lat GeoJSON), are what
    the plan lacked. Not deployable (the plan stays in the calling process, named by ``run``); deploy
    ``stacube.flows.download:download``. Returns ``RunReport.to_json()``.

    Args:
        cube_url: The cube written to (for the UI and the log; the cube itself comes with the plan).
        patches: The ids of the patches the plan lacked.
        roi: The ROI planned, as lon/lat GeoJSON; None for a run planned by cells.
        message: The commit message.
        concurrency: Task runs in flight at once.
        skip_failed: Whether patches failing for good are listed in the report instead of failing the run.
        run: The token under which the calling process holds the plan.

    Returns:
        The run's ``RunReport.to_json()``.

    Raises:
        KeyError: If ``run`` names no plan held in this process (the flow was started elsewhere).
        CatalogError, ItemError, RadiometryError, TOIError, PatchReadError, CubeChangedError, StorageError: The
            run's error, as ``Cube.run`` raises it; nothing is committed.
    """
    runner, execute, cube = _HOSTED[run]
    get_run_logger().info("%d patches planned to download into %s", len(patches), cube_url)
    return runner._in_flow_run(execute, cube).to_json()
