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
from .parameters import ROIParameter, TOIParameter, roi_from_parameter, run_start, toi_from_parameter


@task(name="sync-window", task_run_name="sync {window.bbox} {window.start}", cache_policy=NO_CACHE,
      persist_result=False, retries=3, retry_delay_seconds=exponential_backoff(backoff_factor=1.0))
def sync_window_task(cube_url: str, catalog_dir: str | None, window: Window) -> int:
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
    it had not finished. A failing window is retried ``retries`` times with exponential backoff. ``spec``
    names the cube's spec, as for the download flow: the first run creates the cube.
    """
    logger = get_run_logger()
    cube = open_cube(cube_url, spec, catalog_dir, logger)
    window = window_for(cube.spec, Region.of(roi_from_parameter(roi)), toi_from_parameter(toi, now=run_start()))
    lag = cube.spec.source.lag
    windows = [w for w in split_window(window, split_degrees, split_period) if not cube.catalog.covers(w, lag)]
    futures = sync_window_task.with_options(retries=retries).map(cube_url, unmapped(catalog_dir), windows)
    added = sum(f.result() for f in futures)
    logger.info("synced %d windows of %s: %d new Items (catalog holds %d)", len(windows), window, added,
                len(cube.catalog))
    return {"windows_synced": len(windows), "new_items": added, "items": len(cube.catalog),
            "catalog": str(cube.catalog.folder)}
