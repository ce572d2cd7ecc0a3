"""Cut many ROIs out of a cube as a Prefect flow (schedulable): a training-patch data set from a ROI file.

The flow runs ``stacube.many.export_many``: the patches the ROIs lack are downloaded in ONE run (one
commit, whose metadata names this flow run), each patch once however many ROIs meet it, and each ROI's
Tile is written to the output (a folder of COGs or one Zarr store) as soon as its patches are in. The
download runs on the flow's own threads (the local runner, which pastes each written patch into the
Tiles that wait for it), not as a task per patch: what Prefect adds here is the schedule, logs and an
artifact. A patch that fails for good (after ``retries``) fails the run and nothing is committed.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from ..many import export_many
from .cubes import flow_run_metadata, open_cube
from .parameters import TOIParameter, run_start, toi_from_parameter


@flow(name="stacube-load-many")
def load_many(cube_url: str, rois_path: str, out: str, toi: TOIParameter = None, catalog_dir: str | None = None,
              variables: list[str] | None = None, id_column: str | None = None, resolution: float | None = None,
              concurrency: int = 8, retries: int = 3, offline: bool = False,
              log_every: float = 10.0, spec: dict[str, Any] | str | None = None) -> dict[str, Any]:
    """Write the Tile of every ROI in ``rois_path`` (GeoJSON, GeoPackage or GeoParquet with a CRS) into
    ``out``: a folder of COGs named by ``id_column`` or the row index, or one ``.zarr`` store with a
    group per ROI. What the cube lacks is downloaded first as ONE commit for this flow run; ``toi`` as in
    the download flow (``{"last": "30D"}`` ends when the run was scheduled). Progress (patches written,
    Tiles written) goes to the flow run's log every ``log_every`` seconds. ``spec`` names the cube's
    spec, as for the download flow: the first run creates the cube.

    Args:
        cube_url: The cube: a local path or ``s3://bucket/prefix``.
        rois_path: The ROI file (GeoJSON, GeoPackage or GeoParquet, with a CRS), one ROI per row.
        out: A folder for COGs, or a Zarr store (a name ending in ``.zarr``); made if missing.
        toi: The time of interest, as for the download flow; None: every step. A COG holds one step.
        catalog_dir: The folder of the local catalogs; None: ``$STACUBE_CATALOG_DIR``, else the user's cache folder.
        variables: The variables to write; None: all of them.
        id_column: The column naming each ROI's output; None: the row number.
        resolution: A pixel size in the file's CRS units, to make each ROI a GeoBox of its bounds; None: each ROI's
            Tile is on the native grid of the first zone it meets.
        concurrency: Patches in flight at once (threads of this flow run).
        retries: How many times a failing patch is tried again (a permanent failure is not).
        offline: Never download: missing patches are written as nodata.
        log_every: Seconds between progress lines in the log.
        spec: The cube's spec, as for the download flow; None: the cube must exist.

    Returns:
        ``export_many``'s summary (ROIs, files written, snapshot, run id, patch counts, bytes, seconds) and the flow
            run's ``flow_run_id``, ``flow_run_name`` and ``flow``; also an artifact.

    Raises:
        SpecError, CubeNotFoundError, CubeExistsError, StorageError, S3AccessError: If the cube cannot be opened or
            created, as for the download flow.
        FileNotFoundError: If ``rois_path`` is not a file.
        ROIError: If the ROI file is unusable (no geometry column or CRS, a row without geometry, duplicate names, a
            missing ``id_column``), ``resolution`` is not positive, an ROI lies outside every zone, or the largest
            Tile would not fit in memory; before anything is downloaded.
        UnknownVariableError: If ``variables`` names a variable the cube does not hold.
        TOIError: If ``toi`` is not a time (or its ``last`` no duration), lies outside the time axis, or is given to
            a cube without time.
        ValueError: If ``out`` is a COG folder and the TOI selects several steps; before anything is downloaded.
        CatalogError, ItemError, RadiometryError, PatchReadError, CubeChangedError: The run's error, as ``Cube.run``
            raises it: nothing is committed (Tiles written before stay).
    """
    logger = get_run_logger()
    period = toi_from_parameter(toi, now=run_start())  # before the cube is opened, or created from ``spec``
    cube = open_cube(cube_url, spec, catalog_dir, logger, toi=period)  # a TOI outside the axis: nothing grown
    flow_run = flow_run_metadata()
    counts = {"patches": (0, 0), "tiles": (0, 0)}
    lock = threading.Lock()
    last = [time.monotonic()]

    def report(kind: str, done: int, total: int) -> None:  # from the run's thread too: the logger is the flow's
        with lock:
            counts[kind] = (done, total)
            now = time.monotonic()
            if now - last[0] < log_every and done < total:
                return
            last[0] = now
            (patches, of_patches), (tiles, of_tiles) = counts["patches"], counts["tiles"]
            logger.info("load-many: %d/%d patches written, %d/%d Tiles written", patches, of_patches, tiles,
                        of_tiles)  # under the lock: the lines come in the order of their counts

    summary = export_many(cube, rois_path, out, period, variables=variables, id_column=id_column,
                          resolution=resolution, concurrency=concurrency, progress=False, offline=offline,
                          retries=retries, extra_metadata=flow_run,
                          on_patch=lambda done, total: report("patches", done, total),
                          on_tile=lambda done, total, _name: report("tiles", done, total))
    logger.info("load-many into %s: %d ROIs, %d files, %d of %d missing patches downloaded (%d planned) -> "
                "snapshot %s", out, summary["rois"], summary["written"],
                summary["patches_written"] + summary["patches_empty"], summary["patches_missing"],
                summary["patches_planned"], summary["snapshot"])
    create_markdown_artifact(
        f"## stacube load-many from `{cube_url}`\n\n"
        f"{summary['rois']} ROIs from `{rois_path}` -> `{out}` ({summary['format']}, {summary['written']} files)\n\n"
        f"| patches under the ROIs | lacking | written | without data | MB uncompressed | snapshot |\n"
        f"| ---: | ---: | ---: | ---: | ---: | --- |\n"
        f"| {summary['patches_planned']} | {summary['patches_missing']} | {summary['patches_written']} | "
        f"{summary['patches_empty']} | {summary['bytes_written'] / 1e6:.1f} | {summary['snapshot']} |\n",
        key="stacube-load-many", description=f"stacube load-many from {cube_url}")
    return {**summary, **flow_run}
