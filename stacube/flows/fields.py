"""Field pipeline flows: weekly ingest of new Sentinel-2 data under the watched parcels, then indices.

``ingest`` grows the cube's time axis to the period (by default: since the last ingest), and
downloads the patches under the watched parcels (not whole granules) as ONE commit, through the
download flow; a corrupt granule is logged with its group, tile and date and tried again next week.
``indices`` computes NDVI and NDMI per parcel and acquisition, one task per group, reading only
what the cube holds; one failing group never stops the others, and the run fails at the end naming
every group that failed.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
from prefect import flow, get_run_logger, task
from prefect.artifacts import create_markdown_artifact
from prefect.cache_policies import NO_CACHE
from prefect.task_runners import ThreadPoolTaskRunner

from ..cube import Cube
from ..errors import GroupError, ParcelError, QualityBreachError, ROIError
from ..fields import IndexSettings, compute_group, open_parcel_store
from ..fields.quality import QualityThresholds, quality_report
from ..fields.run import group_tiles, indices_period, ingest_resume, parcel_cells, period_toi, since_last
from ..grid import parse_patch_id
from ..timeaxis import naive_utc, toi_span
from .cubes import flow_run_metadata, open_cube
from .download import download
from .parameters import TOIParameter, duration_from_parameter, run_start, toi_from_parameter, toi_to_parameter
from .tasks import retry_unless_permanent

INGEST = "ingest"  # a run's period up to where the next default ingest starts
INGEST_DATA = "ingest-data"  # a run's period up to its first pending or provisional step: what the indices cover
INDICES = "indices"  # a default indices run, recorded as of the latest ingest record it covered


@flow(name="stacube-fields-ingest")
def ingest(cube_url: str, store_url: str, toi: TOIParameter = None, catalog_dir: str | None = None,
           concurrency: int = 8, retries: int = 3, first_period: str = "7D",
           spec: dict[str, Any] | str | None = None) -> dict[str, Any]:
    """Download the new Sentinel-2 patches under the watched parcels into the cube, as one commit.

    The period (``toi``) defaults to everything since the last ingest into this cube recorded in the
    store (the first ingest: the last ``first_period``); the cube's time axis is grown to reach its
    end. A run over a period of its own (``toi``) that starts after where the last one stopped leaves
    that gap for the next default run. Only chunks under watched parcels are downloaded, never whole
    granules. A patch that cannot be read (a corrupt granule) is logged with its groups, tile and date,
    and left for the next ingest, which starts again from the earliest such date; the other patches are
    committed.
    ``spec`` names the cube's spec (``{"dataset": "sentinel2", "bbox": [...], "start": ...}`` or a
    spec file, see ``stacube.flows.cubes``): the first ingest creates the cube.

    Args:
        cube_url: The Sentinel-2 cube: a local path or ``s3://bucket/prefix``.
        store_url: The parcel store (``open_parcel_store``): its watched parcels, and where the ingest is recorded.
        toi: The period, as for the download flow; None: since the last ingest recorded for this cube.
        catalog_dir: The folder of the local catalogs; None: ``$STACUBE_CATALOG_DIR``, else the user's cache folder.
        concurrency: Task runs in flight at once, in the download flow.
        retries: Retries of a failing task, with exponential backoff.
        first_period: How far back the first ingest reaches (a pandas Timedelta string).
        spec: The cube's spec, as for the download flow; None: the cube must exist.

    Returns:
        The download flow's ``RunReport.to_json()``, with ``failures`` (per failed patch: its groups, tiles, date,
            id and error), ``groups``, ``chunks``, ``period`` and ``next_start`` (where the next ingest starts: the
            earliest failed, pending or provisional step, else the period's end; never past where the last ingest
            stopped, when this one started after it).

    Raises:
        SpecError: If ``store_url`` names no parcel store, or the cube cannot be opened or created (as for the
            download flow: also CubeNotFoundError, CubeExistsError, S3AccessError).
        TOIError: If ``toi`` is not a time pandas reads, ends before it starts or its ``last`` is no duration, or
            ``first_period`` is no duration (before the store is opened); or the period lies outside the cube's time
            axis.
        ParcelError: If the store watches no parcel; before the cube is opened or created.
        ROIError: If no watched parcel lies in a zone of the cube; before its time axis is grown. Nothing is
            downloaded or recorded.
        CatalogError, ItemError, RadiometryError, CubeChangedError, StorageError: The download's error, as
            ``Cube.run`` raises it: nothing is committed or recorded. A patch failing for good does not fail the
            run.
    """
    from prefect import runtime

    logger = get_run_logger()
    now = run_start()
    run_id = str(runtime.flow_run.id)
    duration_from_parameter(first_period, "first_period")
    # read before the store is opened (which creates its file where none is)
    period = toi_from_parameter(toi, now=now) if toi is not None else None
    with open_parcel_store(store_url) as store:
        last = store.last_run(INGEST, cube_url)
        parcels = store.parcels()
        bounds = {g.group_id: (g.minx, g.miny, g.maxx, g.maxy) for g in store.groups().itertuples()}
    if period is None:
        period = toi_from_parameter(since_last(last, now, first_period), now=now)
    start, end = toi_span(period)
    if parcels.empty:
        raise ParcelError(f"no watched parcels in the parcel store {store_url}: nothing to ingest "
                          "(add parcels, or watch them again)")
    cube = open_cube(cube_url, spec, catalog_dir, logger)
    cells = parcel_cells(cube, parcels)
    if not cells:  # before the time axis grows: a refused ingest leaves the cube as it was
        raise ROIError(f"none of the {len(parcels)} watched parcels in {store_url} lies in a zone of cube "
                       f"{cube_url}")
    if cube.spec.time is not None and cube.spec.time[-1] < end.floor("D"):
        cube.extend_time(end, metadata=flow_run_metadata())
        logger.info("time axis of %s grown to %s", cube_url, cube.spec.time[-1])
    groups = sorted({g for served in cells.values() for g in served})
    logger.info("run %s: ingest %s..%s for %d watched groups over %d chunks", run_id, f"{start:%Y-%m-%d}",
                f"{end:%Y-%m-%d}", len(groups), len(cells))
    result = download(cube_url, None, toi_to_parameter(period), catalog_dir,
                      message=f"stacube: ingest {len(groups)} parcel groups", concurrency=concurrency,
                      retries=retries, skip_failed=True, cells=[list(cell) for cell in sorted(cells)])
    for group_id in groups:
        logger.info("run %s group %s tiles %s", run_id, group_id,
                    ",".join(group_tiles(cube, bounds[group_id], period)) or "-")
    failures = []
    for failure in result["patches_failed"]:
        zone, when, iy, ix = parse_patch_id(failure["patch_id"])
        served = sorted(cells.get((zone, iy, ix), ()))
        failures.append({"groups": served, "tiles": failure["tiles"], "date": when, "patch": failure["patch_id"],
                         "error": failure["message"]})
        logger.error("run %s: groups %s, tile %s, date %s: patch %s not downloaded, left for the next ingest: %s",
                     run_id, ",".join(served), ",".join(failure["tiles"]) or "-",
                     f"{when:%Y-%m-%d}" if when is not None else "-", failure["patch_id"], failure["message"])
    # The next ingest starts where this one stopped being complete: the first failed, still-pending or
    # provisional step (recent: its Items may not all be published yet), and never past where the last
    # one stopped (a manual run over a later period). The indices cover what it wrote: up to its first
    # pending or provisional step, failed ones included (their parcels are marked "not downloaded").
    open_steps = [parse_patch_id(p)[1] for p in result["patches_pending"] + result.get("patches_provisional", [])]
    open_steps = [t for t in open_steps if t is not None]
    failed = [f["date"] for f in failures if f["date"] is not None]
    resume = ingest_resume(last, start, min([end, *failed, *open_steps]), cube.spec.time)
    written_until = min([end, *(t - pd.Timedelta(microseconds=1) for t in open_steps)])
    with open_parcel_store(store_url) as store:
        store.record_run(INGEST, cube_url, run_id, start, resume)
        if written_until >= start:
            store.record_run(INGEST_DATA, cube_url, run_id, start, written_until)
    return {**result, "failures": [{**f, "date": f"{f['date']:%Y-%m-%d}" if f["date"] is not None else None}
                                   for f in failures],
            "groups": groups, "chunks": len(cells), "period": [f"{start:%Y-%m-%d}", f"{end:%Y-%m-%d}"],
            "next_start": f"{resume:%Y-%m-%dT%H:%M:%S}"}


@task(name="group-indices", task_run_name="indices {group_id}", retries=2, retry_delay_seconds=[1, 5],
      retry_condition_fn=retry_unless_permanent, cache_policy=NO_CACHE)
def group_indices_task(cube_url: str, store_url: str, catalog_dir: str | None, group_id: str, toi: TOIParameter,
                       settings: IndexSettings, run_id: str) -> dict[str, Any]:
    """One group's indices (``compute_group``), offline: a task per group, so that one group failing
    never stops the others, and a failing group is retried twice, unless its failure is one a retry cannot fix
    (``retry_unless_permanent``: a damaged cube, a spec it cannot read, a source refusing for good).

    Parameters
    ----------
    cube_url : str
        The cube.
    store_url : str
        The parcel store.
    catalog_dir : str or None
        The folder of the local catalogs.
    group_id : str
        The group.
    toi : TOIParameter
        The period (already read by ``toi_from_parameter``).
    settings : IndexSettings
        Bands, masks and buffer.
    run_id : str
        The flow run's id, which the rows are stored under.

    Returns
    -------
    dict[str, Any]
        ``group_id``, ``rows`` stored, ``usable`` rows and ``no_acquisition`` rows.

    Raises
    ------
    GroupError
        If the group's Tile, indices or rows failed (``compute_group``).
    CubeNotFoundError, SpecError
        If the cube cannot be opened, or ``store_url`` names no parcel store.
    TOIError
        If ``toi`` is not a time pandas reads (``toi_span``, before the group is loaded).
    """
    cube = Cube.open(cube_url, catalog_dir=catalog_dir)
    with open_parcel_store(store_url) as store:
        rows = compute_group(cube, store, group_id, toi, settings, run_id, offline=True)
    return {"group_id": group_id, "rows": len(rows), "usable": int(rows["usable"].sum()) if len(rows) else 0,
            "no_acquisition": int((rows["reason"] == "no acquisition").sum()) if len(rows) else 0}


@flow(name="stacube-fields-indices", task_runner=ThreadPoolTaskRunner(max_workers=4))
def indices(cube_url: str, store_url: str, toi: TOIParameter = None, catalog_dir: str | None = None,
            min_valid_fraction: float = 0.3, masked_classes: list[int] | None = None,
            min_parcels_covered: float = 0.5, min_cloud_free_fraction: float = 0.2, max_stale_parcels: float = 0.5,
            stale_weeks: int = 4, inward_buffer_m: float = 0.0) -> dict[str, Any]:
    """NDVI/NDMI per watched parcel and acquisition of the period, per group; then the run's data-quality
    KPIs, stored, and the run fails if one breaches its threshold.

    The default period is what every ingest into the cube wrote since the last default indices run in
    which every group ran (``fields.run.indices_period``), so indices that run less often than ingests,
    or failed, leave no ingested day out; with no ingest since, the last ingest's again.

    Only what the cube holds is read (the ingest downloaded it); every group runs, and the run fails
    at the end naming each group that failed and each KPI that breached, after storing the KPIs and
    the ``stacube-fields-indices`` artifact.

    Args:
        cube_url: The cube the ingest fills.
        store_url: The parcel store: its watched parcels, and where the rows and KPIs go.
        toi: The period, as for the download flow; None: what the ingests since the last default run wrote (see
            above), else the last 7 days.
        catalog_dir: The folder of the local catalogs (to name a group's tiles).
        min_valid_fraction: The share (0 to 1) of a parcel's pixels that must be valid for a usable parcel-date.
        masked_classes: Sentinel-2 SCL classes left out; None: ``IndexSettings``'s default.
        min_parcels_covered: KPI: least share of watched parcels with a usable acquisition in the period.
        min_cloud_free_fraction: KPI: least share of the period's parcel-acquisitions that were usable.
        max_stale_parcels: KPI: greatest share of watched parcels without a usable acquisition in the last
            ``stale_weeks``.
        stale_weeks: Weeks within which a parcel needs a usable acquisition not to be stale.
        inward_buffer_m: Metres each parcel is shrunk by before its pixels are chosen (0 or more).

    Returns:
        ``groups``, ``rows`` stored, ``usable`` rows and ``quality`` (each KPI's value and verdict).

    Raises:
        GroupError: If a group failed (after its task's retries); the message names each group that failed, and each
            KPI that breached. The other groups' rows and the KPIs are stored.
        QualityBreachError: If no group failed but a KPI breached its threshold; the message names each. The rows
            and the KPIs are stored.
        SpecError: If ``min_valid_fraction`` is not from 0 to 1, ``inward_buffer_m`` is negative or not a number, a
            KPI threshold is no share from 0 to 1, ``stale_weeks`` no whole number above 0, or ``store_url`` names
            no parcel store; before the store is opened.
        TOIError: If ``toi`` is not a time pandas reads, ends before it starts or its ``last`` is no duration;
            before the store is opened.
        ParcelError: If the store watches no parcel; nothing is computed or stored.
        CubeNotFoundError: If there is no cube at ``cube_url``; before any group runs.
    """
    from prefect import runtime

    logger = get_run_logger()
    now = run_start()
    settings = IndexSettings(min_valid_fraction=min_valid_fraction, inward_buffer_m=inward_buffer_m,
                             **({"masked_classes": tuple(masked_classes)} if masked_classes else {}))
    thresholds = QualityThresholds(min_parcels_covered, min_cloud_free_fraction, max_stale_parcels, stale_weeks)
    # read before the store is opened (which creates its file where none is)
    period = toi_from_parameter(toi, now=now) if toi is not None else None
    seen = None  # the latest ingest record a default run covered: recorded when every group ran
    with open_parcel_store(store_url) as store:
        group_ids = list(store.groups().group_id)  # the groups of watched parcels
        if period is None:  # the new data: what every ingest since the last default indices run wrote
            found = indices_period(store.runs(INGEST_DATA, cube_url), store.runs(INDICES, cube_url))
            if found is None:  # no ingest recorded what it wrote (a store from before): the last ingest's period
                period = toi_from_parameter(period_toi(store.last_run(INGEST, cube_url)), now=now)
            else:
                period = toi_from_parameter(period_toi(found[:2]), now=now)
                seen = found[2]
    if not group_ids:
        raise ParcelError(f"no watched parcels in the parcel store {store_url}: no indices to compute "
                          "(add parcels, or watch them again)")
    Cube.open(cube_url, catalog_dir=catalog_dir)  # no cube: CubeNotFoundError now, not once per group
    run_id = str(runtime.flow_run.id)
    futures = [group_indices_task.submit(cube_url, store_url, catalog_dir, g, period, settings, run_id)
               for g in group_ids]
    done, failed = [], []
    for group_id, future in zip(group_ids, futures, strict=True):
        try:
            done.append(future.result())
        except Exception as error:  # noqa: BLE001 - one group's failure is reported, the others go on
            failed.append((group_id, f"{type(error).__name__}: {error}"))
            logger.error("group %s failed for %s: %s", group_id, period, error)
    table = pd.DataFrame(done, columns=["group_id", "rows", "usable", "no_acquisition"])
    start, end = toi_span(period)
    with open_parcel_store(store_url) as store:
        watched = list(store.parcels().parcel_id)
        report = quality_report(store.observations(watched), watched, start, end, thresholds)
        store.write_quality(run_id, start, end, report)
        if seen is not None and not failed:  # a failed group's days are covered again by the next default run
            store.record_run(INDICES, cube_url, run_id, start, end, as_of=seen)
    lines = ["| group | parcel-dates | usable | no acquisition |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.group_id} | {r.rows} | {r.usable} | {r.no_acquisition} |" for r in table.itertuples()]
    lines += [f"| {g} | failed: {why} | | |" for g, why in failed]
    lines += ["", "| KPI | value | threshold | |", "| --- | --- | --- | --- |"]
    lines += [f"| {r.kpi} | {r.value} | {r.threshold} | {'ok' if r.ok else '**BREACH**'} |"
              for r in report.itertuples()]
    create_markdown_artifact("\n".join(lines), key="stacube-fields-indices",
                             description=f"NDVI/NDMI for {period} into {store_url}")
    problems = [f"{len(failed)} of {len(group_ids)} groups failed for {period}: "
                + "; ".join(f"{g} ({why})" for g, why in failed)] if failed else []
    problems += [f"data quality: {r.message}" for r in report.itertuples() if not r.ok]
    for problem in problems:
        logger.error("%s", problem)
    if failed:
        raise GroupError(f"run {run_id}: " + " | ".join(problems))
    if problems:  # a breach of the data-quality KPIs: seen as the run's failure, not only logged
        raise QualityBreachError(f"run {run_id}: " + " | ".join(problems))
    return {"groups": len(group_ids), "rows": int(table.rows.sum()), "usable": int(table.usable.sum()),
            "quality": report[["kpi", "value", "ok"]].to_dict("records")}


@flow(name="stacube-fields-publish")
def publish(store_url: str, out_dir: str, name: str | None = None, sample: int = 6) -> dict[str, Any]:
    """Weekly NDVI/NDMI per watched parcel (gaps interpolated and flagged) as GeoParquet and CSV, with
    an artifact holding the counts and a plot of a sample of parcels.

    Args:
        store_url: The parcel store holding the observations.
        out_dir: The folder to write into; made if missing.
        name: The files' name (``<name>.parquet``, ``.csv``, ``.png``); None: ``parcel-series-<YYYYmmdd>`` of the
            run's scheduled start.
        sample: How many parcels the plot shows.

    Returns:
        ``parcel_weeks``, ``filled`` (weeks interpolated), the paths written (``geoparquet``, ``csv``) and ``png``
            (None without any series).

    Raises:
        SpecError: If ``name`` is not an allowed file name (letters, digits, ``_``, ``-``, ``.``), or ``store_url``
            names no parcel store.
        OSError: If ``out_dir`` cannot be made or written.
    """
    import base64

    from ..fields.publish import export_series, plot_sample, weekly_series

    logger = get_run_logger()
    name = name or f"parcel-series-{run_start():%Y%m%d}"
    with open_parcel_store(store_url) as store:
        parcels = store.parcels()
        observations = store.observations(list(parcels.parcel_id))
    series = weekly_series(observations)
    paths = export_series(series, parcels, out_dir, name)
    png = plot_sample(series, f"{out_dir}/{name}.png", parcels=sample) if len(series) else None
    filled = int(series["filled"].sum()) if len(series) else 0
    lines = [f"**{series['parcel_id'].nunique() if len(series) else 0}** of {len(parcels)} watched parcels, "
             f"{len(series)} parcel-weeks, {filled} filled by interpolation",
             f"files: `{paths['geoparquet']}`, `{paths['csv']}`"]
    if png is not None:
        lines.append(f"![sample](data:image/png;base64,{base64.b64encode(png.read_bytes()).decode()})")
    create_markdown_artifact("\n\n".join(lines), key="stacube-fields-publish", description=f"published {name}")
    logger.info("published %d parcel-weeks (%d filled) to %s", len(series), filled, out_dir)
    return {"parcel_weeks": len(series), "filled": filled, **{k: str(v) for k, v in paths.items()},
            "png": str(png) if png else None}


@flow(name="stacube-fields-purge")
def purge(cube_url: str, store_url: str, out_dir: str | None = None, catalog_dir: str | None = None,
          keep_snapshots: str = "90D", unwatched_for: str = "30D", keep_files: str = "180D") -> dict[str, Any]:
    """Retention: expire cube snapshots older than ``keep_snapshots`` (tags kept) and garbage-collect;
    delete the time series of parcels unwatched for ``unwatched_for``; delete published files older
    than ``keep_files`` from ``out_dir``.

    Args:
        cube_url: The cube whose snapshots expire.
        store_url: The parcel store whose unwatched parcels' series are deleted.
        out_dir: The folder ``publish`` writes into; None: no file is deleted.
        catalog_dir: The folder of the local catalogs (not touched).
        keep_snapshots: Snapshots older than this expire (a duration such as ``"90D"``); tagged ones stay.
        unwatched_for: Series of parcels unwatched for longer than this are deleted (a pandas Timedelta string).
        keep_files: Published files (``parcel-series-*``) not modified for longer than this are deleted.

    Returns:
        ``snapshots_expired``, ``bytes_freed``, ``snapshots_kept_as_recent_tips`` (older than ``keep_snapshots``
        but the branch tip within the last 24 h: a run may stand on them), ``observations_deleted`` and
        ``files_deleted``; also an artifact.

    Raises:
        CubeNotFoundError, SpecError, S3AccessError: If the cube cannot be opened (``Cube.open``), or ``store_url``
            names no parcel store.
        TOIError: If ``keep_snapshots``, ``unwatched_for`` or ``keep_files`` is no duration of 0 or more (a number
            without a unit is refused); all three are checked before anything is expired or deleted.
    """
    from ..fields.retention import purge_files
    from ..history import cutoff

    logger = get_run_logger()
    now = naive_utc(run_start())
    cutoff(keep_snapshots, "keep_snapshots")  # every argument checked before anything is expired or deleted
    unwatched = duration_from_parameter(unwatched_for, "unwatched_for")
    keep = duration_from_parameter(keep_files, "keep_files")
    cube = Cube.open(cube_url, catalog_dir=catalog_dir)
    expired = cube.expire(keep_snapshots, keep_tags=True)
    with open_parcel_store(store_url) as store:
        rows = store.purge_unwatched(now - unwatched)
    files = purge_files(out_dir, keep.total_seconds()) if out_dir else []
    summary = {"snapshots_expired": expired.snapshots_expired, "bytes_freed": expired.bytes_freed,
               "snapshots_kept_as_recent_tips": expired.kept_as_recent_tips,
               "observations_deleted": rows, "files_deleted": [str(p) for p in files]}
    create_markdown_artifact(
        f"expired {expired.snapshots_expired} snapshots ({expired.bytes_freed / 1e6:.1f} MB freed), deleted "
        f"{rows} observations of unwatched parcels and {len(files)} published files",
        key="stacube-fields-purge", description=f"retention for {cube_url} and {store_url}")
    logger.info("%s", summary)
    return summary
