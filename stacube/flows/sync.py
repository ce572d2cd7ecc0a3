"""Keep a cube's local catalog in step with its source, as a Prefect flow (schedulable)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner
from prefect.tasks import exponential_backoff

from ..catalog import Window, split_window
from ..cube import Cube
from ..plan import window_for
from ..region import Region
from .cubes import open_cube
from .parameters import (
    ROIParameter,
    TOIParameter,
    duration_from_parameter,
    roi_from_parameter,
    run_start,
    split_degrees_from_parameter,
    toi_from_parameter,
)
from .tasks import retry_unless_permanent


@task(name="sync-window", task_run_name="sync {window.bbox} {window.start}", cache_policy=NO_CACHE,
      persist_result=False, retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=1.0),
      retry_condition_fn=retry_unless_permanent)
def sync_window_task(cube_url: str, catalog_dir: str | None, window: Window) -> int:
    """Bring one sub-window of the source into the cube's local catalog (``Source.sync``); a task of
    its own, so that each sub-window is retried, and recorded when done, on its own.

    Parameters
    ----------
    cube_url : str
        The cube (its source).
    catalog_dir : str or None
        The folder of the local catalogs; None: ``default_catalog_root()``.
    window : Window
        The lon/lat bbox and time range.

    Returns
    -------
    int
        How many Items were new to the catalog.

    Raises
    ------
    CatalogError, ItemError, StorageError
        As ``Source.sync`` raises them; the task is retried unless a retry cannot help (``is_permanent``:
        an ItemError, a StorageError, a CatalogError caused by a PermanentSourceError).
    CubeNotFoundError, SpecError, S3AccessError
        As ``Cube.open`` raises them.
    """
    cube = Cube.open(cube_url, catalog_dir=catalog_dir)
    return cube.spec.source.sync(cube.catalog, window)


@flow(name="stacube-sync-catalog", task_runner=ThreadPoolTaskRunner(max_workers=4))
def sync_catalog(cube_url: str, roi: ROIParameter, toi: TOIParameter = None, catalog_dir: str | None = None,
                 split_degrees: float = 1.0, split_period: str = "31D", retries: int = 3,
                 spec: dict[str, Any] | str | None = None) -> dict[str, Any]:
    """Harvest the source Items under ROI x TOI into the cube's local catalog (new Items only).

    What is harvested is the window a load of ROI x TOI searches (``plan.window_for``: its chunks' lon/lat
    bounds and its steps' span, with a solar-day cube's 12 h either side), so such a load then finds the
    catalog covering it and asks the source nothing. The search is cut into sub-windows that run
    concurrently; each is recorded when done, so a failed sync, run again, resumes with the sub-windows
    it had not finished. A failing window is retried ``retries`` times with exponential backoff, unless
    its failure is permanent (``errors.is_permanent``: a source refusing for good, an Item that is no
    STAC Item, a catalog folder that cannot be written), which fails the run at once. Every argument is
    checked before the cube is opened or created. ``spec`` names the cube's spec, as for the download
    flow: the first run creates the cube.

    Args:
        cube_url: The cube: a local path or ``s3://bucket/prefix``.
        roi: The region of interest: GeoJSON (``crs`` key, default EPSG:4326), a GeoBox or a Geometry.
        toi: The time of interest, as for the download flow (``{"last": "30D"}`` ends when the run was scheduled);
            None: every step.
        catalog_dir: The folder of the local catalogs; None: ``$STACUBE_CATALOG_DIR``, else the user's cache folder.
        split_degrees: The widest and tallest a sub-window may be, in degrees (a finite number above 0).
        split_period: The longest a sub-window's time range may be (a duration such as ``"31D"``, above 0).
        retries: Retries of a failing sub-window, with exponential backoff.
        spec: The cube's spec, as for the download flow; None: the cube must exist.

    Returns:
        ``windows_synced`` (sub-windows not yet covered, now synced), ``new_items``, ``items`` (the catalog's count
            now) and ``catalog`` (its folder).

    Raises:
        SpecError, CubeNotFoundError, CubeExistsError, StorageError, S3AccessError: If the cube cannot be opened or
            created, as for the download flow. SpecError also if ``split_degrees`` is no finite number above 0.
        ROIError: If ``roi`` is no GeoJSON geometry, GeoBox or Geometry, is invalid, or lies outside every zone.
        TOIError: If ``toi`` is not a time (or its ``last`` no duration), lies outside the time axis, or is given to
            a cube without time; if ``split_period`` is no duration above 0 (a number without a unit is refused:
            pandas would read it as nanoseconds).
        CatalogError: If the catalog's windows file cannot be read, or a sub-window fails after its retries (the
            source cannot be searched; at once when it refuses for good); sub-windows synced before stay recorded.
        ItemError, StorageError: If a sub-window fails (at once: not retried) because the source returned something
            that is no STAC Item, or the catalog folder cannot be written.
    """
    logger = get_run_logger()
    degrees = split_degrees_from_parameter(split_degrees)
    period = duration_from_parameter(split_period, "split_period", positive=True)
    region = Region.of(roi_from_parameter(roi))
    times = toi_from_parameter(toi, now=run_start())
    cube = open_cube(cube_url, spec, catalog_dir, logger, toi=times)  # a TOI outside the axis: nothing grown
    window = window_for(cube.spec, region, times)
    lag = cube.spec.source.lag
    windows = [w for w in split_window(window, degrees, period) if not cube.catalog.covers(w, lag)]
    futures = sync_window_task.with_options(retries=retries).map(cube_url, unmapped(catalog_dir), windows)
    added = sum(f.result() for f in futures)
    logger.info("synced %d windows of %s: %d new Items (catalog holds %d)", len(windows), window, added,
                len(cube.catalog))
    return {"windows_synced": len(windows), "new_items": added, "items": len(cube.catalog),
            "catalog": str(cube.catalog.folder)}
