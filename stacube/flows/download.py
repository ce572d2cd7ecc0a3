"""The download run as a Prefect flow: one task per patch (mapped, retried), one commit per flow run.

The flow drives the same core run code as the local runner (plan, read into forks, merge, one
commit); Prefect adds task mapping, retries with exponential backoff, logs, an artifact per run,
and deployments. Patch arrays never become Prefect results and are never hashed for cache keys.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import json
import os
import queue
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pandas as pd
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from prefect import flow, get_run_logger, runtime, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from ..catalog.earthengine import HREF_SCHEME
from ..errors import PatchReadError, ROIError, TOIError, storage_failure
from ..grid import PatchIndex, roi_geometry
from ..run import RunReport
from ..runners import RunCancelled, describe_failure, failure_of, is_permanent
from .cubes import open_cube


def _retry_unless_permanent(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a patch unless its failure is one a retry cannot fix (missing file, corrupt format, bad Item)."""
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
    retry_condition_fn=_retry_unless_permanent,
)
def patches_task(work: Callable[[PatchIndex], Any], patches: list[PatchIndex], label: str,
                 limits: list[str], skip_failed: bool = False) -> list[Any]:
    """Read and write a batch of patches, one after the other. ``work`` unpickles a fresh fork per call,
    so a retried attempt starts every patch of the batch afresh.

    ``limits`` name Prefect global concurrency limits (one per source host) that the batch holds a
    slot of while it reads. A failing patch's id travels with the error (also across processes).
    With ``skip_failed``, a patch failing for a reason a retry cannot fix (a corrupt file) becomes a
    PatchFailure and the batch goes on; other errors still fail the task, to be retried.
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
                raise
        return results


def existing_limits(names: set[str]) -> set[str]:
    """Those of ``names`` that are active Prefect global concurrency limits, asked once per run.

    Prefect 3.8 spends about two seconds per task in ``concurrency()`` on a limit that does not
    exist (and logs a warning each time), so only limits someone created are used.
    """
    if not names:
        return set()
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound

    found = set()
    with get_client(sync_client=True) as client:
        for name in sorted(names):
            try:
                if client.read_global_concurrency_limit_by_name(name).active:
                    found.add(name)
            except ObjectNotFound:
                continue
    return found


def source_limits(asset_keys: Sequence[str], patch: PatchIndex, earthengine_host: str | None = None) -> list[str]:
    """Concurrency-limit names for the hosts a patch reads from: ``stacube-source-<host>``.

    Earth Engine bands (``earthengine://`` hrefs) count against the Earth Engine endpoint's host.
    Cap a source across every flow run with ``prefect gcl create stacube-source-<host> --limit N``
    (for Earth Engine, stay under the 40 concurrent requests a project gets).
    """
    hosts = set()
    for item in patch.items:
        for key in asset_keys:
            if key in item.assets:
                href = item.assets[key].href
                hosts.add(earthengine_host if href.startswith(HREF_SCHEME) and earthengine_host
                          else urlparse(href).hostname or "local")
    return sorted(f"stacube-source-{host}" for host in hosts)


MAX_PATCHES_PER_TASK = 16  # what a retried task reads again, at most (unless MAX_TASKS needs more)
MAX_TASKS = 2_000  # task runs per flow run that the Prefect API and UI are asked to carry


def task_sizes(patches: int, concurrency: int, out_of_process: bool = False) -> list[int]:
    """How many patches each task of a run reads, largest first.

    On the thread task runner: a task per patch while a run has at most 4 per slot of concurrency
    (every patch visible in the UI), then ~4 tasks per slot of at most 16 patches. Each task run
    costs Prefect CPU (its engine, state events, and the API recording them), which on a busy
    machine comes out of the run itself: over 64 patches of 2048 px the Prefect API spent 2.6-3.2
    CPU s with a task per patch, 0.85-1.0 s with four.

    ``out_of_process`` (Dask, or any task runner whose tasks run in other processes): a task run
    costs ~0.25 CPU s there (Prefect rebuilds its settings and two TLS contexts in the worker, and
    serialises its context on the flow's thread), about what a 2048 px patch costs to read and
    write, so a run gets as few tasks as keep every slot busy: one per slot, of at most 16 patches.

    The task count is a whole number of rounds of ``concurrency`` tasks and the patches are dealt
    evenly (sizes differ by at most one), so the last round is not one lone task while the other
    slots idle. A run never exceeds 2,000 task runs (tasks then grow past 16 patches).
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
    Prefect's thread pool."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    return context is not None and not isinstance(context.task_runner, ThreadPoolTaskRunner)


@dataclass
class PrefectRunner:
    """Runs patches as Prefect tasks in the current flow run, at most ``concurrency`` tasks in flight.

    Tasks are submitted as earlier ones finish, so the bound holds on any task runner (threads or a
    Dask cluster), and after a patch fails for good no further task starts. ``patches_per_task``
    batches patches into tasks (None: ``task_sizes``, for the flow run's task runner).
    """

    concurrency: int = 8
    retries: int = 3
    limits: Callable[[PatchIndex], list[str]] | None = None  # concurrency-limit names per patch
    patches_per_task: int | None = None
    skip_failed: bool = False  # patches failing for good come back as PatchFailures; the run goes on
    name: str = "prefect"

    def host(self, execute: Callable[[Any, dict[str, Any]], RunReport], cube: Any,
             about: dict[str, Any]) -> RunReport:
        """Hold a whole run (``stacube.runners.HostingRunner``, called by ``Cube.run``): in the current flow
        run, or else in an ad hoc ``stacube-download`` flow run of its own, whose parameters say what was
        planned (``about``) and whose result, ``RunReport.to_json()``, is read back here. The run is not
        planned again: ``execute`` carries the caller's plan."""
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
        runner = self
        if self.limits is None:
            source = cube.spec.source
            runner = dataclasses.replace(self, limits=functools.partial(
                source_limits, list(source.assets.values()),
                earthengine_host=urlparse(getattr(source, "api_url", "") or "").hostname))
        report = execute(runner, {"flow_run_id": str(runtime.flow_run.id), "flow_run_name": runtime.flow_run.name,
                                  "flow": runtime.flow_run.flow_name})
        publish(report, str(cube.url))
        return report


    def map(self, work: Callable[[PatchIndex], Any], patches: Sequence[PatchIndex]) -> list[Any]:
        if not patches:
            return []
        if self.patches_per_task:
            sizes = [self.patches_per_task] * (-(-len(patches) // self.patches_per_task))
        else:
            sizes = task_sizes(len(patches), self.concurrency, tasks_leave_the_process())
        starts = list(itertools.accumulate(sizes, initial=0))
        batches = [list(patches[start : start + size]) for start, size in zip(starts, sizes, strict=False)]
        names = [sorted({n for p in batch for n in (self.limits(p) if self.limits else [])}) for batch in batches]
        present = existing_limits({n for batch_names in names for n in batch_names})
        task_ = patches_task.with_options(retries=self.retries)
        finished: queue.SimpleQueue = queue.SimpleQueue()
        waiting = iter(range(len(batches)))
        in_flight: dict[int, Any] = {}

        def submit(i: int) -> None:
            batch = batches[i]
            label = batch[0].id if len(batch) == 1 else f"{batch[0].id} (+{len(batch) - 1})"
            in_flight[i] = task_.submit(work, batch, label, [n for n in names[i] if n in present], self.skip_failed)
            in_flight[i].add_done_callback(lambda done, i=i: finished.put((i, done)))

        for i in itertools.islice(waiting, max(1, self.concurrency)):
            submit(i)
        results: dict[int, list[Any]] = {}
        progress = RunProgress(len(patches))
        while in_flight:
            i, future = finished.get()
            del in_flight[i]
            try:
                results[i] = future.result()
            except Exception as error:
                progress.done(batches[i], [])
                attempts = 1 if is_permanent(error) else self.retries + 1
                failed_id = getattr(error, "stacube_patch_id", None)
                failed = next((p for p in batches[i] if p.id == failed_id), None)
                if self.skip_failed and storage_failure(error) is None:  # the batch is lost: tried again next run
                    results[i] = [failure_of(p, error if p is failed or failed is None else RunCancelled(
                        f"not written: patch {failed.id} of the same task failed"), attempts) for p in batches[i]]
                    following = next(waiting, None)
                    if following is not None:
                        submit(following)
                    continue
                _cancel_unstarted(in_flight.values())
                if failed is None:  # not a patch's read (a lost worker, a concurrency slot): name the batch
                    ids = ", ".join(p.id for p in batches[i][:5]) + (" ..." if len(batches[i]) > 5 else "")
                    raise PatchReadError(f"a task of {len(batches[i])} patch(es) ({ids}) failed after {attempts} "
                                         f"attempt(s): {type(error).__name__}: {error}", batches[i][0].id,
                                         []) from error
                raise describe_failure(failed, error, attempts) from error
            following = next(waiting, None)
            if following is not None:
                submit(following)  # first: a slot never waits for the bookkeeping below
            progress.done(batches[i], results[i])
        return [r for i in range(len(batches)) for r in results[i]]


def prefect_runner(concurrency: int | None = None, progress: bool | None = None,
                   skip_failed: bool = False) -> PrefectRunner:
    """The runner ``runner="prefect"`` names (declared in the ``stacube.runners`` entry-point group):
    a run as a ``stacube-download`` flow run, ``concurrency`` tasks at once. ``progress`` is the flow
    run's log and progress artifact, always."""
    return PrefectRunner(concurrency=min(concurrency or 8, MAX_THREADS), skip_failed=skip_failed)


_HOSTED: dict[str, tuple[PrefectRunner, Callable[[Any, dict[str, Any]], RunReport], Any]] = {}


class RunProgress:
    """Progress of a run where a Prefect run shows it (it has no terminal): patches done of the total,
    MB written (uncompressed), rate and ETA in the flow run's log, and a progress artifact (the UI's progress bar),
    every ``every`` seconds and at the end."""

    def __init__(self, total: int, every: float = 10.0):
        from prefect.artifacts import create_progress_artifact

        self.total, self.every, self.count, self.nbytes = total, every, 0, 0
        self.started = self.logged = time.monotonic()
        self.artifact = create_progress_artifact(0.0, key="stacube-download-progress",
                                                 description=f"stacube download: {total} patches")

    def done(self, batch: Sequence[PatchIndex], results: Sequence[Any]) -> None:
        """A batch finished, with its results (none if it failed: it counts as done, its error is raised elsewhere)."""
        self.count += len(batch)
        self.nbytes += sum(getattr(r, "nbytes", 0) for r in results)
        now = time.monotonic()
        if now - self.logged < self.every and self.count < self.total:
            return
        self.logged = now
        rate = self.count / max(now - self.started, 1e-9)
        eta = (self.total - self.count) / rate if rate else float("inf")
        get_run_logger().info("download: %d/%d patches, %.1f MB uncompressed, %.1f patches/s, ETA %.0f s", self.count,
                              self.total, self.nbytes / 1e6, rate, eta)
        from prefect.artifacts import update_progress_artifact

        update_progress_artifact(self.artifact, 100.0 * self.count / self.total)


def _cancel_unstarted(futures: Any) -> None:
    """Cancel the task runs still in flight: queued ones never start (threads), and on Dask running ones
    are dropped too; a thread already reading its patch finishes, and its fork is discarded."""
    for future in futures:
        wrapped = getattr(future, "wrapped_future", None)
        if wrapped is not None and not wrapped.done():
            wrapped.cancel()


def roi_to_parameter(roi: GeoBox | Geometry) -> dict[str, Any]:
    """An ROI as a JSON flow parameter: its footprint as GeoJSON in its own CRS, plus that CRS."""
    geometry = roi_geometry(roi)
    return {**geometry.json, "crs": str(geometry.crs)}


def roi_from_parameter(roi: GeoBox | Geometry | dict[str, Any]) -> GeoBox | Geometry:
    """An ROI from a flow parameter: a GeoBox or Geometry, or GeoJSON (``crs`` key, default EPSG:4326)."""
    if isinstance(roi, (GeoBox, Geometry)):
        return roi
    if isinstance(roi, dict) and "type" in roi:
        geojson = {k: v for k, v in roi.items() if k != "crs"}
        return Geometry(geojson, roi.get("crs", "EPSG:4326"))
    raise ROIError(f"roi must be a GeoBox, a Geometry or a GeoJSON geometry dict, got {roi!r}")


def toi_to_parameter(toi: Any) -> Any:
    """A TOI as a JSON flow parameter: strings, lists of strings, or {"start", "end"} for a slice.

    Deployments can also use a rolling window, ``{"last": "30D"}``: the 30 days up to the run's start.
    """
    def text(value: Any) -> str | None:
        return None if value is None else (value if isinstance(value, str) else pd.Timestamp(value).isoformat())

    if toi is None or isinstance(toi, str):
        return toi
    if isinstance(toi, slice):
        return {"start": text(toi.start), "end": text(toi.stop)}
    if isinstance(toi, (list, tuple, pd.DatetimeIndex)):
        return [text(v) for v in toi]
    return text(toi)


def use_earthengine_secret(block_name: str) -> None:
    """Make the Prefect Secret block ``block_name`` this process's Earth Engine credential.

    The block holds an OAuth access token or a service-account key (JSON); a key is written to a
    file only this user can read. The value goes to the environment ``stacube.ee_client`` reads,
    never to a log line.
    """
    from prefect.blocks.system import Secret

    value = Secret.load(block_name).get()
    key = value if isinstance(value, dict) else None
    if key is None and isinstance(value, str) and value.lstrip().startswith("{"):
        key = json.loads(value)
    if key is not None:
        fd, path = tempfile.mkstemp(prefix="stacube-ee-key-", suffix=".json")
        with os.fdopen(fd, "w") as out:  # mkstemp creates it 0600
            json.dump(key, out)
        os.environ["STACUBE_EE_KEY_FILE"] = path
        os.environ.pop("STACUBE_EE_TOKEN", None)
    else:
        os.environ["STACUBE_EE_TOKEN"] = str(value)


def run_start() -> pd.Timestamp:
    """When this flow run was meant to start: a rolling TOI of a late or retried scheduled run keeps its window."""
    return pd.Timestamp(runtime.flow_run.scheduled_start_time)


def toi_from_parameter(toi: Any, now: pd.Timestamp | None = None) -> Any:
    """The TOI a flow parameter stands for; ``{"last": duration}`` ends at ``now`` (default: the run's start)."""
    if isinstance(toi, dict) and "last" in toi:
        try:
            span = pd.Timedelta(toi["last"])
        except ValueError as err:
            raise TOIError(f"toi {toi!r}: 'last' must be a duration such as '30D' or '12h'") from err
        end = pd.Timestamp(now) if now is not None else pd.Timestamp.now(tz="UTC")
        if end.tz is not None:  # the cube's time axis is naive UTC
            end = end.tz_convert("UTC").tz_localize(None)
        return slice(end - span, end)
    if isinstance(toi, dict):
        return slice(toi.get("start"), toi.get("end"))
    return toi


ARTIFACT_ROWS = 500  # a flow run over thousands of patches keeps a readable artifact; the commit lists them all


def _artifact(report: RunReport, cube_url: str) -> str:
    def row(pid: str, outcome: str) -> str:
        nbytes, seconds = report.patch_figures.get(pid, (0, 0.0))
        return f"| {pid} | {outcome} | {nbytes / 1e6:.2f} | {seconds:.2f} |"

    rows = [row(pid, "written") for pid in report.patches_written]
    rows += [row(pid, "no source data") for pid in report.patches_empty]
    rows += [f"| {pid} | pending (recent, no data yet) | 0.00 | 0.00 |" for pid in report.patches_pending]
    rows += [f"| {pid} | **FAILED**, left for the next run: {failure.message} | 0.00 | 0.00 |"
             for pid, failure in report.patches_failed.items()]
    shown = "\n".join(rows[:ARTIFACT_ROWS])
    more = f"\n\n{len(rows) - ARTIFACT_ROWS} more patches are listed in the snapshot's metadata." \
        if len(rows) > ARTIFACT_ROWS else ""
    return (
        f"## stacube download into `{cube_url}`\n\n"
        f"snapshot **{report.snapshot_id}**, {len(report.patches_written)} patches written, "
        f"{report.bytes_written / 1e6:.1f} MB (uncompressed) in {report.seconds:.1f} s, "
        f"{report.patches_already_filled} already filled\n\n"
        f"| patch | outcome | MB uncompressed | seconds |\n| --- | --- | ---: | ---: |\n{shown}{more}\n"
    )


MAX_THREADS = 64  # the thread task runner's ceiling; the ``concurrency`` parameter sets the bound below it


@flow(name="stacube-download", task_runner=ThreadPoolTaskRunner(max_workers=MAX_THREADS))
def download(cube_url: str, roi: Any, toi: Any = None, catalog_dir: str | None = None,
             message: str | None = None, concurrency: int = 8, retries: int = 3,
             patches_per_task: int | None = None, earthengine_secret: str | None = None,
             skip_failed: bool = False, cells: list[list[Any]] | None = None,
             spec: dict[str, Any] | str | None = None) -> dict[str, Any]:
    """Fill the patches of ``cube_url`` under ROI x TOI that it lacks, as ONE commit for this flow run.

    ``concurrency`` tasks run at once (on threads, or on the Dask cluster of the task runner), each
    reading ``patches_per_task`` patches (default: ``task_sizes``: one each for small runs on threads,
    batches for larger runs and for task runners in other processes, such as Dask); a failing task is
    retried ``retries`` times with exponential backoff. ``earthengine_secret`` names a Prefect Secret
    block with the Earth Engine credential (a token or a service-account key).
    ``skip_failed`` commits what could be read and lists the patches that failed for good (with their
    Items and URLs) in ``patches_failed``, instead of failing the run. ``cells`` (``[zone, row, column]``
    triples) names the chunks to fill instead of an ROI (``roi`` is then ignored and may be None).
    ``spec`` names the cube's spec (a ready-made dataset with its arguments, or a spec file; see
    ``stacube.flows.cubes``): the first run creates the cube, later ones check it is that cube.
    Returns the run's ``RunReport.to_json()`` (``RunReport.from_json`` reads it back); its ``metadata``
    holds the flow run's ``flow_run_id``, ``flow_run_name`` and ``flow``.
    """
    logger = get_run_logger()
    if earthengine_secret:
        use_earthengine_secret(earthengine_secret)
    cube = open_cube(cube_url, spec, catalog_dir, logger)
    period = toi_from_parameter(toi, now=run_start())
    plan = cube.plan_cells(cells, period) if cells is not None else cube.plan(roi_from_parameter(roi), period)
    logger.info("%d patches under the ROI, %d to download", len(plan.patches), len(plan.missing))
    runner = PrefectRunner(concurrency=concurrency, retries=retries, patches_per_task=patches_per_task,
                           skip_failed=skip_failed)
    report = cube.run(plan, runner, message=message,
                      roi=roi_geometry(roi_from_parameter(roi)) if cells is None else None)
    return report.to_json()


@flow(name="stacube-download", task_runner=ThreadPoolTaskRunner(max_workers=MAX_THREADS))
def run_planned(cube_url: str, patches: list[str], roi: dict[str, Any] | None = None, message: str | None = None,
                concurrency: int = 8, skip_failed: bool = False, run: str = "") -> dict[str, Any]:
    """A run planned in this process (``Cube.download``/``Cube.load``/``Cube.run`` with ``runner="prefect"``)
    as a ``stacube-download`` flow run: ``patches`` (their ids), under ``roi`` (lon/lat GeoJSON), are what
    the plan lacked. Not deployable (the plan stays in the calling process, named by ``run``); deploy
    ``download``. Returns ``RunReport.to_json()``."""
    runner, execute, cube = _HOSTED[run]
    get_run_logger().info("%d patches planned to download into %s", len(patches), cube_url)
    return runner._in_flow_run(execute, cube).to_json()


def publish(report: RunReport, cube_url: str) -> None:
    """A run's report in its flow run: a log line, an error line per failed patch, and the markdown artifact."""
    logger = get_run_logger()
    logger.info("%s", report)
    for failure in report.patches_failed.values():
        logger.error("%s", failure.message)
    if report.snapshot_id or report.patches_failed:
        create_markdown_artifact(_artifact(report, cube_url), key="stacube-download",
                                 description=f"stacube download into {cube_url}")


@contextlib.contextmanager
def without_idle_heartbeats() -> Iterator[None]:
    """Flow-run heartbeats off for an ad hoc run, unless the user set ``PREFECT_FLOWS_HEARTBEAT_FREQUENCY``.

    Prefect 3.8 (and 3.9.1) beats every 180 s from a thread that sleeps in 1 s steps and is joined
    when the flow ends: each ad hoc run waited up to 1 s for it (a run with nothing to download took
    1.11 s with heartbeats, 0.23 s without; bench/orchestration.py). Heartbeats let an automation
    mark a run whose process died as crashed; that matters for deployments, whose worker runs keep
    them, not for a run in the caller's own process, which sees the failure itself.

    The settings are copied, not rebuilt: ``temporary_settings`` re-reads every settings source
    (environment, profiles, toml files), ~40 ms per run, a fifth of a flow run's fixed cost.
    """
    from prefect.context import SettingsContext, get_settings_context

    context = get_settings_context()
    settings = context.settings
    if "heartbeat_frequency" in settings.flows.model_fields_set:
        yield
        return
    quiet = settings.model_copy(update={"flows": settings.flows.model_copy(update={"heartbeat_frequency": None})})
    with SettingsContext(profile=context.profile, settings=quiet):
        yield
