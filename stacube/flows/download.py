"""The download run as a Prefect flow: one task per patch (mapped, retried), one commit per flow run.

The flow drives the same core run code as the local runner (plan, read into forks, merge, one
commit); Prefect adds task mapping, retries with exponential backoff, logs, an artifact per run,
and deployments. Patch arrays never become Prefect results and are never hashed for cache keys.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlparse

import pandas as pd
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry
from prefect import flow, get_run_logger, runtime, task, unmapped
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.concurrency.sync import concurrency
from prefect.futures import as_completed
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from ..cube import Cube
from ..errors import ROIError
from ..grid import PatchIndex, roi_geometry
from ..run import RunReport
from ..runners import describe_failure, is_permanent


def _retry_unless_permanent(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a patch unless its failure is one a retry cannot fix (missing file, corrupt format, bad Item)."""
    try:
        state.result()
    except Exception as error:  # noqa: BLE001 - the failure is what is being judged
        return not is_permanent(error)
    return True


@task(
    name="patch",
    task_run_name="patch {patch_id}",
    cache_policy=NO_CACHE,
    persist_result=False,
    retries=3,
    retry_delay_seconds=exponential_backoff(backoff_factor=0.5),
    retry_jitter_factor=0.5,
    retry_condition_fn=_retry_unless_permanent,
)
def patch_task(work: Callable[[PatchIndex], Any], patch: PatchIndex, patch_id: str, limits: list[str]) -> Any:
    """Read and write one patch. ``work`` unpickles a fresh fork on every attempt.

    ``limits`` name Prefect global concurrency limits (one per source host) that the read holds a
    slot of; a limit nobody created does not hold anything back.
    """
    if not limits:
        return work(patch)
    with concurrency(limits, occupy=1, strict=False):
        return work(patch)


def source_limits(asset_keys: Sequence[str], patch: PatchIndex) -> list[str]:
    """Concurrency-limit names for the hosts a patch reads from: ``stacube-source-<host>``.

    Cap a source across every flow run with ``prefect gcl create stacube-source-<host> --limit N``.
    """
    hosts = {urlparse(item.assets[key].href).hostname or "local"
             for item in patch.items for key in asset_keys if key in item.assets}
    return sorted(f"stacube-source-{host}" for host in hosts)


@dataclass
class PrefectRunner:
    """Maps patches onto Prefect tasks inside the current flow run (its task runner bounds concurrency)."""

    retries: int = 3
    limits: Callable[[PatchIndex], list[str]] | None = None  # concurrency-limit names per patch
    name: str = "prefect"

    def map(self, work: Callable[[PatchIndex], Any], patches: Sequence[PatchIndex]) -> list[Any]:
        if not patches:
            return []
        mapped = patch_task.with_options(retries=self.retries)
        limits = [self.limits(p) if self.limits else [] for p in patches]
        futures = mapped.map(work=unmapped(work), patch=list(patches), patch_id=[p.id for p in patches],
                             limits=limits)
        index = {future.task_run_id: i for i, future in enumerate(futures)}
        results: dict[int, Any] = {}
        for future in as_completed(futures):
            i = index[future.task_run_id]
            try:
                results[i] = future.result()
            except Exception as error:
                _cancel_pending(futures)  # the run is lost: patches not started yet never start
                attempts = 1 if is_permanent(error) else self.retries + 1
                raise describe_failure(patches[i], error, attempts) from error
        return [results[i] for i in range(len(patches))]


def _cancel_pending(futures: Sequence[Any]) -> None:
    """Cancel the task runs that have not started (threads or Dask); running ones finish on their own."""
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
    """A TOI as a JSON flow parameter: strings, lists of strings, or {"start", "end"} for a slice."""
    def text(value: Any) -> str | None:
        return None if value is None else (value if isinstance(value, str) else pd.Timestamp(value).isoformat())

    if toi is None or isinstance(toi, str):
        return toi
    if isinstance(toi, slice):
        return {"start": text(toi.start), "end": text(toi.stop)}
    if isinstance(toi, (list, tuple, pd.DatetimeIndex)):
        return [text(v) for v in toi]
    return text(toi)


def toi_from_parameter(toi: Any) -> Any:
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
    shown = "\n".join(rows[:ARTIFACT_ROWS])
    more = f"\n\n{len(rows) - ARTIFACT_ROWS} more patches are listed in the snapshot's metadata." \
        if len(rows) > ARTIFACT_ROWS else ""
    return (
        f"## stacube download into `{cube_url}`\n\n"
        f"snapshot **{report.snapshot_id}**, {len(report.patches_written)} patches written, "
        f"{report.bytes_written / 1e6:.1f} MB in {report.seconds:.1f} s, "
        f"{report.patches_already_filled} already filled\n\n"
        f"| patch | outcome | MB | seconds |\n| --- | --- | ---: | ---: |\n{shown}{more}\n"
    )


@flow(name="stacube-download", task_runner=ThreadPoolTaskRunner(max_workers=8))
def download(cube_url: str, roi: Any, toi: Any = None, catalog_dir: str | None = None,
             message: str | None = None) -> dict[str, Any]:
    """Fill the patches of ``cube_url`` under ROI x TOI that it lacks, as ONE commit for this flow run."""
    logger = get_run_logger()
    cube = Cube.open(cube_url, catalog_dir=catalog_dir)
    plan = cube.plan(roi_from_parameter(roi), toi_from_parameter(toi))
    logger.info("%d patches under the ROI, %d to download", len(plan.patches), len(plan.missing))
    flow_run = {"flow_run_id": str(runtime.flow_run.id), "flow_run_name": runtime.flow_run.name,
                "flow": runtime.flow_run.flow_name}
    runner = PrefectRunner(limits=functools.partial(source_limits, list(cube.spec.source.assets.values())))
    report = cube._download(plan, runner, message, extra_metadata=flow_run)
    logger.info("%s", report)
    if report.snapshot_id:
        create_markdown_artifact(_artifact(report, cube_url), key="stacube-download",
                                 description=f"stacube download into {cube_url}")
    return {"snapshot_id": report.snapshot_id, "run_id": report.run_id, "patches_written": report.patches_written,
            "patches_empty": report.patches_empty, "patches_pending": report.patches_pending,
            "patches_already_filled": report.patches_already_filled, "bytes_written": report.bytes_written,
            "seconds": report.seconds, "patch_figures": report.patch_figures, **flow_run}


def run_download(cube: Cube, roi: GeoBox | Geometry, toi: Any, concurrency: int | None,
                 message: str | None) -> RunReport:
    """``Cube.download(..., runner="prefect")``: the flow, ad hoc, with the requested concurrency."""
    flow_ = download.with_options(task_runner=ThreadPoolTaskRunner(max_workers=concurrency or 8))
    state = flow_(str(cube.url), roi_to_parameter(roi), toi_to_parameter(toi), str(cube.catalog_dir), message,
                  return_state=True)
    outcome = state.result()
    fields = ("patches_written", "patches_empty", "patches_pending", "patches_already_filled", "bytes_written",
              "seconds")
    figures = {pid: (int(nbytes), float(seconds)) for pid, (nbytes, seconds) in outcome["patch_figures"].items()}
    return RunReport(outcome["snapshot_id"], outcome["run_id"], runner="prefect", patch_figures=figures,
                     **{k: outcome[k] for k in fields})
