"""Keep a cube's local catalog in step with its source, as a Prefect flow (schedulable)."""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger

from ..catalog import sync_window
from ..cube import Cube
from ..grid import roi_geometry
from ..plan import iter_patches, search_window
from ..timeaxis import select_steps
from .download import roi_from_parameter, toi_from_parameter


@flow(name="stacube-sync-catalog")
def sync_catalog(cube_url: str, roi: Any, toi: Any = None, catalog_dir: str | None = None) -> dict[str, Any]:
    """Harvest the source Items under ROI x TOI into the cube's local catalog (new Items only)."""
    logger = get_run_logger()
    cube = Cube.open(cube_url, catalog_dir=catalog_dir)
    geometry = roi_geometry(roi_from_parameter(roi))
    steps = select_steps(cube.spec.time, toi_from_parameter(toi))
    patches = list(iter_patches(cube.spec, geometry, steps))
    window = search_window(cube.spec, patches)
    added = sync_window(cube.catalog, window, cube.spec.source.allow_local_hrefs, cube.spec.source.lag)
    logger.info("synced %s for %d patches: %d new Items (catalog holds %d)", window, len(patches), added,
                len(cube.catalog))
    return {"new_items": added, "items": len(cube.catalog), "catalog": str(cube.catalog.folder)}
