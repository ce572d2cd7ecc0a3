"""The download flow: fill what a cube lacks under an ROI and a TOI, as one commit per flow run.

The flow reads as its pipeline: open the cube, plan, run the plan's patches as Prefect tasks, report.
The machinery lives beside it, one job a module: ``parameters`` (ROI/TOI from deployment parameters),
``credentials`` (Earth Engine from a Secret block), ``runner`` (the Prefect runner and the ad hoc
flow run that hosts ``runner="prefect"`` runs), ``batches``, ``tasks``, ``scheduler``, ``limits``,
``progress``, ``report`` and ``heartbeats``.

``prefect_runner`` (the ``stacube.runners`` entry point ``prefect``), ``PrefectRunner``, ``run_planned``
and the parameter helpers stay importable from here, where the entry point, deployments and callers name them.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.task_runners import ThreadPoolTaskRunner

from ..region import Region
from .credentials import use_earthengine_secret
from .cubes import open_cube
from .parameters import (
    ROIParameter,
    TOIParameter,
    roi_from_parameter,
    roi_to_parameter,
    run_start,
    toi_from_parameter,
    toi_to_parameter,
)
from .report import publish
from .runner import MAX_THREADS, PrefectRunner, prefect_runner, run_planned

__all__ = ["MAX_THREADS", "PrefectRunner", "download", "prefect_runner", "roi_from_parameter", "roi_to_parameter",
           "run_planned", "run_start", "toi_from_parameter", "toi_to_parameter"]


@flow(name="stacube-download", task_runner=ThreadPoolTaskRunner(max_workers=MAX_THREADS))
def download(cube_url: str, roi: ROIParameter, toi: TOIParameter = None, catalog_dir: str | None = None,
             message: str | None = None, concurrency: int = 8, retries: int = 3,
             patches_per_task: int | None = None, earthengine_secret: str | None = None,
             skip_failed: bool = False, cells: list[list[Any]] | None = None,
             spec: dict[str, Any] | str | None = None) -> dict[str, Any]:
    """Fill the patches of ``cube_url`` under ROI x TOI that it lacks, as ONE commit for this flow run.

    ``roi``: GeoJSON (``crs`` key, default EPSG:4326), a GeoBox or a Geometry. ``toi``: as
    ``stacube.flows.parameters.toi_from_parameter`` reads it (``{"last": "30D"}`` ends when the run was
    scheduled). ``catalog_dir``: the cube's local catalog (default: beside the cube). ``message``: the
    commit message. ``concurrency`` tasks run at once (on threads, or on the Dask cluster of the task
    runner), each reading ``patches_per_task`` patches (default: ``batches.task_sizes``: one each for
    small runs on threads, batches for larger runs and for task runners in other processes, such as
    Dask); a failing task is retried ``retries`` times with exponential backoff. ``earthengine_secret``
    names a Prefect Secret block with the Earth Engine credential (a token or a service-account key).
    ``skip_failed`` commits what could be read and lists the patches that failed for good (with their
    Items and URLs) in ``patches_failed``, instead of failing the run. ``cells`` (``[zone, row, column]``
    triples) names the chunks to fill instead of an ROI (``roi`` is then ignored and may be None).
    ``spec`` names the cube's spec (a ready-made dataset with its arguments, or a spec file; see
    ``stacube.flows.cubes``): the first run creates the cube, later ones check it is that cube.

    Returns the run's ``RunReport.to_json()`` (``RunReport.from_json`` reads it back); its ``metadata``
    holds the flow run's ``flow_run_id``, ``flow_run_name`` and ``flow``. Raises ROIError or TOIError
    for a bad parameter before anything is read, and PatchReadError for a patch that failed for good
    (unless ``skip_failed``); a failed run commits nothing.
    """
    logger = get_run_logger()
    if earthengine_secret:
        use_earthengine_secret(earthengine_secret)
    cube = open_cube(cube_url, spec, catalog_dir, logger)

    period = toi_from_parameter(toi, now=run_start())
    region = Region.of(roi_from_parameter(roi)) if cells is None else None  # checked once: plan and record
    plan = cube.plan(region, period) if region is not None else cube.plan_cells(cells, period)
    logger.info("%d patches under the ROI, %d to download", len(plan.patches), len(plan.missing))

    runner = PrefectRunner(concurrency=concurrency, retries=retries, patches_per_task=patches_per_task,
                           skip_failed=skip_failed, publish=False)
    report = cube.run(plan, runner, message=message, roi=region)

    publish(report, str(cube.url))
    return report.to_json()
