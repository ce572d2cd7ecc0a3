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

import contextlib
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

    A deployment's way to keep a cube filled on a schedule (``{"last": "30D"}``): the flow opens the cube
    (or creates it from ``spec`` on the first run), plans, runs the plan's patches as Prefect tasks
    (``concurrency`` at once, on threads or on the Dask cluster of the task runner; a failing task is
    retried with exponential backoff unless its failure is permanent) and reports. Only one commit or
    none: a failed run leaves the cube as it was.

    Args:
        cube_url: The cube: a local path or ``s3://bucket/prefix``.
        roi: The region of interest: GeoJSON (``crs`` key, default EPSG:4326), a GeoBox or a Geometry; ignored (and
            may be None) when ``cells`` is given.
        toi: The time of interest, as ``stacube.flows.parameters.toi_from_parameter`` reads it: a time, a list of
            them, ``{"start", "end"}``, or ``{"last": "30D"}`` (ending when the run was scheduled); None: every
            step.
        catalog_dir: The folder of the local catalogs; None: ``$STACUBE_CATALOG_DIR``, else the user's cache folder
            (``default_catalog_root``).
        message: The commit message; None: ``stacube: <n> patches from <collection>``.
        concurrency: Task runs in flight at once.
        retries: Retries of a failing task, with exponential backoff (none for a permanent failure).
        patches_per_task: Patches each task reads; None: ``batches.task_sizes`` (one each for small runs on threads,
            batches for larger runs and for task runners in other processes, such as Dask).
        earthengine_secret: A Prefect Secret block holding the Earth Engine credential (a token or a service-account
            key).
        skip_failed: Commit what could be read and list the patches that failed for good (with their Items and URLs)
            in ``patches_failed``, instead of failing the run.
        cells: ``[zone, row, column]`` triples naming the chunks to fill instead of an ROI.
        spec: The cube's spec (a ready-made dataset with its arguments, a spec file or a whole spec; see
            ``stacube.flows.cubes``): the first run creates the cube, later ones check it is that cube (and grow its
            time axis where the spec's reaches further). None: the cube must exist.

    Returns:
        The run's ``RunReport.to_json()`` (``RunReport.from_json`` reads it back); its ``metadata`` holds the flow
            run's ``flow_run_id``, ``flow_run_name`` and ``flow``. The report also goes to the log and, when the run
            committed or lost patches, to the ``stacube-download`` artifact.

    Raises:
        SpecError: If ``spec`` is malformed or describes another cube than the one at ``cube_url``, or ``cube_url``
            is no cube location; before anything is read.
        CubeNotFoundError: If there is no cube at ``cube_url`` and no ``spec`` to create it.
        CubeExistsError: If something that is no cube is in the way of creating it.
        ROIError: If ``roi`` is no GeoJSON geometry, GeoBox or Geometry, or is invalid or outside every zone, or a
            cell names no chunk of the cube; before anything is read.
        TOIError: If ``toi`` is not a time (or its ``last`` no duration), lies outside the time axis, or is given to
            a cube without time; before anything is read.
        CatalogError, ItemError, RadiometryError: If the source cannot be synced, or an Item is unusable; before
            anything is read.
        PatchReadError: If a patch failed for good (unless ``skip_failed``), naming it, its Items and URLs.
        CubeChangedError: If other processes kept committing under the run.
        StorageError: If the cube or the catalog folder cannot be written (also with ``skip_failed``).
        S3AccessError: If the cube's S3 endpoint does not answer after its tries.
        SpecError: Also if ``earthengine_secret`` names no Prefect Secret block that can be loaded, or its value
            starts with ``{`` but is no JSON key; before the cube is opened or created.
    """
    logger = get_run_logger()
    period = toi_from_parameter(toi, now=run_start())
    region = Region.of(roi_from_parameter(roi)) if cells is None else None  # checked once: plan and record
    runner = PrefectRunner(concurrency=concurrency, retries=retries, patches_per_task=patches_per_task,
                           skip_failed=skip_failed, publish=False)  # its counts checked before anything is opened
    # the credential holds for this run only: a key's file is deleted, the environment put back, when it ends
    with use_earthengine_secret(earthengine_secret) if earthengine_secret else contextlib.nullcontext():
        cube = open_cube(cube_url, spec, catalog_dir, logger, toi=period)  # may create it or grow it: checked first
        plan = cube.plan(region, period) if region is not None else cube.plan_cells(cells, period)
        logger.info("%d patches under the ROI, %d to download", len(plan.patches), len(plan.missing))
        report = cube.run(plan, runner, message=message, roi=region)

    publish(report, str(cube.url))
    return report.to_json()
