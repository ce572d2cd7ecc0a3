"""The Prefect runner: the same run code as a flow, one task per patch, one commit per flow run."""

from __future__ import annotations

import time

import numpy as np
import pytest
import rasterio.errors

from stacube import Cube
from stacube.lonlat import lonlat_footprint
from stacube.testing.servers import serve_sample

from .conftest import dem_spec

prefect = pytest.importorskip("prefect")


@pytest.fixture(autouse=True)
def _prefect(prefect_api):
    """Every test here runs against the session's temporary Prefect API."""


def test_flow_run_lands_as_one_commit_with_its_flow_run_id(servers, make_cube, sample_layout, tmp_path):
    import httpx
    from prefect.settings import PREFECT_API_URL

    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    report = cube.download(zone[0:512, 0:768], runner="prefect", concurrency=4)
    assert len(report.patches_written) == 6 and report.runner == "prefect"
    history = cube.history()
    assert len(history) == 3 and history.snapshot[0] == report.snapshot_id
    meta = cube.repo.lookup_snapshot(report.snapshot_id).metadata["stacube"]
    assert meta["runner"] == "prefect" and meta["flow"] == "stacube-download" and meta["flow_run_id"]
    assert sorted(meta["patches"]) == sorted(report.patches_written)
    assert history.flow_run_id[0] == meta["flow_run_id"] != history.run_id[0]  # Prefect's id, beside stacube's
    assert history.flow_run_id[1:].isna().all()  # the cube's creation: no flow run
    query = {"artifacts": {"key": {"any_": ["stacube-download"]}}, "limit": 5, "offset": 0, "sort": "CREATED_DESC"}
    artifacts = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=query).raise_for_status().json()
    table = next(a["data"] for a in artifacts if report.snapshot_id in a["data"])
    nbytes, seconds = report.patch_figures["epsg3413/y1x2"]
    assert nbytes == 256 * 256 * 5 and seconds > 0  # float32 DEM + uint8 mask, all valid there
    assert f"| epsg3413/y1x2 | written | {nbytes / 1e6:.2f} | {seconds:.2f} |" in table
    assert sum(b for b, _ in report.patch_figures.values()) == report.bytes_written
    # Progress goes to the flow run's logs: patches done of the total, MB (uncompressed), rate and ETA.
    progress: list[str] = []
    for _ in range(60):  # Prefect ships logs to its API in batches, in the background
        logs = httpx.post(f"{PREFECT_API_URL.value()}/logs/filter", json={
            "logs": {"flow_run_id": {"any_": [meta["flow_run_id"]]}}, "limit": 200}).raise_for_status().json()
        progress = [log["message"] for log in logs if log["message"].startswith("download: ")]
        if progress:
            break
        time.sleep(0.5)
    written = f"{report.bytes_written / 1e6:.1f} MB uncompressed"
    assert progress and progress[-1].startswith(f"download: 6/6 patches, {written}, ")
    assert "patches/s, ETA 0 s" in progress[-1]
    query = {"artifacts": {"key": {"any_": ["stacube-download-progress"]}, "flow_run_id": {
        "any_": [meta["flow_run_id"]]}}, "limit": 5}
    (bar,) = httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=query).raise_for_status().json()
    assert bar["type"] == "progress" and float(bar["data"]) == 100.0  # the UI's progress bar, full
    # The ROI is kept with the commit, for pictures of the cube's state.
    (roi,) = cube.rois()
    assert roi.bounds == pytest.approx(lonlat_footprint(zone[0:512, 0:768].extent).bounds, abs=1e-6)
    # The same values as the local runner's.
    local = Cube.create(tmp_path / "local", cube.spec, catalog_dir=tmp_path / "catalog").load(zone[0:512, 0:768])
    np.testing.assert_array_equal(cube.load(zone[0:512, 0:768], offline=True).dem.values, local.dem.values)


def test_transient_errors_are_retried_by_prefect(sample_dir, tmp_path, sample_layout, servers):
    from .test_load import items_of, odc_reference

    zone = sample_layout.extent_geobox()
    roi = zone[0:512, 0:512]
    with serve_sample(sample_dir, fail_first=5) as (_, flaky_api):  # 503 five times: more than GDAL asks again
        cube = Cube.create(tmp_path / "c", dem_spec(flaky_api.url, sample_layout), catalog_dir=tmp_path / "cat")
        tile = cube.load(roi, runner="prefect")
    dem, _ = odc_reference(items_of(servers[1].url), roi)
    np.testing.assert_array_equal(tile.dem.values, dem[0])
    assert len(cube.history()) == 3


def test_a_retried_task_starts_from_a_fresh_fork(servers, make_cube, sample_layout):
    from prefect import flow

    from stacube.flows.runner import PrefectRunner

    from .test_failures import run_with_partial_failures
    from .test_load import items_of, odc_reference

    _, api = servers
    cube = make_cube(api.url)
    roi = sample_layout.extent_geobox()[0:256, 0:512]

    @flow
    def partial_failures():
        return run_with_partial_failures(cube, roi, PrefectRunner(retries=2))

    report = partial_failures.with_options(retries=0)()
    assert len(report.patches_written) == 2
    reference, _ = odc_reference(items_of(api.url), roi)
    np.testing.assert_array_equal(cube.load(roi, offline=True).dem.values, reference[0])  # no 999 left


def test_a_patch_that_fails_for_good_stops_the_run_and_cancels_the_rest(servers, make_cube, sample_layout):
    import time

    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from stacube import PatchReadError
    from stacube.flows.runner import PrefectRunner
    from stacube.plan import attach_items

    _, api = servers
    cube = make_cube(api.url)
    patches = attach_items(cube.spec, cube.catalog, cube.plan(sample_layout.extent_geobox()).missing)
    started, failing = [], patches[0].id

    def work(patch):
        started.append(patch.id)
        if patch.id == failing:
            raise ItemLacksEverything("the asset is gone (http response code: 404)")
        time.sleep(0.5)
        return patch.id

    at_failure = []

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=2))
    def run_all(per_task):
        try:
            return PrefectRunner(retries=3, patches_per_task=per_task).map(work, patches)
        except PatchReadError:
            time.sleep(1.0)  # what would still start now, inside the flow, is what cancelling prevents
            at_failure.append(len(started))
            raise

    with pytest.raises(PatchReadError, match=f"{failing} failed after 1 attempt"):
        run_all(1)
    assert len(patches) == 64 and started.count(failing) == 1  # a permanent failure is not retried
    assert at_failure[-1] <= 4  # the patches queued behind the failure never started
    started.clear()
    patches.insert(2, patches.pop(0))  # the failing patch is now the third of the first batch
    with pytest.raises(PatchReadError, match=f"{failing} failed after 1 attempt"):
        run_all(4)
    assert started.count(failing) == 1 and at_failure[-1] <= 12  # at most 3 batches began


def test_the_runner_keeps_at_most_concurrency_patches_in_flight(servers, make_cube, sample_layout):
    import threading
    import time

    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from stacube.flows.runner import PrefectRunner
    from stacube.plan import attach_items

    _, api = servers
    cube = make_cube(api.url)
    patches = attach_items(cube.spec, cube.catalog, cube.plan(sample_layout.extent_geobox()[0:768, 0:768]).missing)
    lock, running, peak = threading.Lock(), [0], [0]

    def work(patch):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        time.sleep(0.2)
        with lock:
            running[0] -= 1
        return patch.id

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=16))
    def run_all(per_task):
        return PrefectRunner(concurrency=3, patches_per_task=per_task).map(work, patches)

    assert run_all(None) == [p.id for p in patches]  # one patch per task; results in patch order
    assert len(patches) == 9 and peak[0] == 3
    peak[0] = 0
    assert run_all(4) == [p.id for p in patches]  # tasks of 4, 4 and 1 patches, each read in turn
    assert peak[0] == 3


class ItemLacksEverything(rasterio.errors.RasterioIOError):
    """What GDAL raises for an asset that is gone: permanent by its type and status (stacube.errors.is_permanent)."""


def test_the_flow_runs_on_a_dask_cluster_of_processes(servers, make_cube, sample_layout, tmp_path):
    from distributed import LocalCluster
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter
    from prefect_dask import DaskTaskRunner

    from stacube.flows import download
    from stacube.flows.parameters import roi_to_parameter

    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=None) as cluster:
        on_dask = download.with_options(task_runner=DaskTaskRunner(address=cluster.scheduler_address))
        outcome = on_dask(str(cube.url), roi_to_parameter(zone[0:512, 0:768]), None, str(cube.catalog_dir),
                          concurrency=2)
    assert len(outcome["patches_written"]) == 6
    with get_client(sync_client=True) as client:  # tasks cost more in other processes: one per slot, not per patch
        flow_run_id = outcome["metadata"]["flow_run_id"]
        task_runs = client.read_task_runs(flow_run_filter=FlowRunFilter(id={"any_": [flow_run_id]}))
    names = [run.name for run in task_runs]
    assert len(names) == 2 and all(name.startswith("patches ") and name.endswith(" (+2)") for name in names), names
    assert cube.history().snapshot[0] == outcome["snapshot_id"]
    local = Cube.create(tmp_path / "local", cube.spec, catalog_dir=tmp_path / "catalog").load(zone[0:512, 0:768])
    np.testing.assert_array_equal(cube.load(zone[0:512, 0:768], offline=True).dem.values, local.dem.values)


def test_catalog_sync_runs_in_windows_and_resumes(private_servers, sample_layout, tmp_path):
    from stacube.flows import sync_catalog
    from stacube.flows.parameters import roi_to_parameter

    _, _, api = private_servers
    cube = Cube.create(tmp_path / "c", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "cat")
    roi = roi_to_parameter(sample_layout.extent_geobox())
    first = sync_catalog(str(cube.url), roi, None, str(tmp_path / "cat"), split_degrees=0.2)
    assert first["windows_synced"] > 1 and first["items"] == 16
    api.stop()  # everything is recorded: a second sync has nothing left to ask the API
    again = sync_catalog(str(cube.url), roi, None, str(tmp_path / "cat"), split_degrees=0.2)
    assert again == {**first, "windows_synced": 0, "new_items": 0}


def test_a_failed_catalog_sync_resumes_with_the_windows_it_had_not_finished(time_servers, tmp_path, monkeypatch):

    import pandas as pd

    from stacube import CubeSpec, StacSource, Variable
    from stacube.flows import sync_catalog
    from stacube.flows.parameters import roi_to_parameter
    from stacube.sources.stac import harvest as harvest_module

    from ..conftest import TIME_LAYOUT
    _, api = time_servers
    spec = CubeSpec(name="series", zones=[TIME_LAYOUT.extent_geobox()], chunks=(256, 256),
                    variables={"dem": Variable("float32")}, time=pd.date_range("2021-06-01", periods=7, freq="D"),
                    source=StacSource(api_url=api.url, collection="sample-series", assets={"dem": "dem"}))
    cube = Cube.create(tmp_path / "series", spec, catalog_dir=tmp_path / "cat")
    roi = roi_to_parameter(TIME_LAYOUT.extent_geobox())
    real_harvest, asked = harvest_module.harvest, []

    def harvest_failing_from_june_4(url, collection, window, allow_local_hrefs=False):
        asked.append(window.start)
        if window.start >= pd.Timestamp("2021-06-04") and failing:
            raise ConnectionError(f"the STAC API went away while searching {window}")
        return real_harvest(url, collection, window, allow_local_hrefs)

    monkeypatch.setattr(harvest_module, "harvest", harvest_failing_from_june_4)
    failing = True
    with pytest.raises(ConnectionError, match="went away"):
        sync_catalog(str(cube.url), roi, None, str(tmp_path / "cat"), split_period="2D", retries=0)
    first_windows = sorted(asked)
    assert len(first_windows) == 4  # 7 days in windows of 2 days: 06-01, 06-03, 06-05, 06-07
    assert len(cube.catalog) == 8  # the two windows that succeeded (2 dates x 4 tiles) are kept and recorded
    failing, asked[:] = False, []
    again = sync_catalog(str(cube.url), roi, None, str(tmp_path / "cat"), split_period="2D", retries=0)
    assert sorted(asked) == [w for w in first_windows if w >= pd.Timestamp("2021-06-04")]  # only what failed
    assert again["windows_synced"] == 2 and again["items"] == 12


def test_a_source_concurrency_limit_caps_patch_reads_across_tasks():
    import threading
    import time

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.task_runners import ThreadPoolTaskRunner

    from stacube.flows import PrefectRunner
    from stacube.grid import PatchIndex

    class Tracker:
        def __init__(self):
            self.lock, self.now, self.most = threading.Lock(), 0, 0

        def __call__(self, patch):
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            time.sleep(0.3)
            with self.lock:
                self.now -= 1
            return patch.id

    patches = [PatchIndex("z", 0, i, None) for i in range(4)]

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=4))
    def run(limit_names):
        tracker = Tracker()
        ids = PrefectRunner(limits=lambda p: limit_names).map(tracker, patches)
        return ids, tracker.most

    with get_client(sync_client=True) as client:
        client.create_global_concurrency_limit(GlobalConcurrencyLimitCreate(name="stacube-source-test", limit=1))
    ids, most = run(["stacube-source-test"])
    assert ids == [p.id for p in patches] and most == 1
    _, unlimited = run(["stacube-source-nobody-created"])  # a limit nobody created holds nothing back
    assert unlimited > 1


def test_an_earth_engine_credential_from_a_secret_block_is_used_and_never_shown(tmp_path, monkeypatch):
    import json
    import time

    import httpx
    from prefect.blocks.system import Secret
    from prefect.settings import PREFECT_API_URL

    from stacube import CubeSpec, EarthEngineSource, Variable
    from stacube.flows import download
    from stacube.flows.parameters import roi_to_parameter
    from stacube.testing.earthengine import EarthEngineEmulator, serve_earthengine

    from .test_earthengine import COLLECTION, _image, _patch_grid

    ee = pytest.importorskip("ee")
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", lambda: {})
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.delenv("STACUBE_EE_TOKEN", raising=False)
    planted = "planted-secret-7f3a9c"
    Secret(value=planted).save("stacube-test-ee", overwrite=True)
    with serve_earthengine(EarthEngineEmulator([_image("2024-06-06", c) for c in (0, 1)])) as emulator:
        zone = _patch_grid(500000.0, 5200000.0, (64, 160))
        spec = CubeSpec(name="ee", zones=[zone], chunks=(32, 64), variables={"red": Variable("uint16", nodata=0)},
                        source=EarthEngineSource(COLLECTION, {"red": "B4"}, project="test-project",
                                                 api_url=emulator.url))
        cube = Cube.create(tmp_path / "ee", spec, catalog_dir=tmp_path / "catalog")
        outcome = download(str(cube.url), roi_to_parameter(zone[0:48, 0:128]), None, str(tmp_path / "catalog"),
                           earthengine_secret="stacube-test-ee")
        assert f"Bearer {planted}" in emulator.authorizations  # the block's token reached Earth Engine
    assert len(outcome["patches_written"]) == 4
    meta = cube.repo.lookup_snapshot(outcome["snapshot_id"]).metadata
    api = PREFECT_API_URL.value()
    query = {"logs": {"flow_run_id": {"any_": [outcome["metadata"]["flow_run_id"]]}}, "limit": 200}
    for _ in range(100):  # run logs reach the API in batches, every few seconds
        logs = httpx.post(f"{api}/logs/filter", json=query).raise_for_status().text
        if "patches under the ROI" in logs:
            break
        time.sleep(0.2)
    artifacts = httpx.post(f"{api}/artifacts/filter", json={"limit": 50}).raise_for_status().text
    runs = httpx.post(f"{api}/flow_runs/filter", json={"limit": 50}).raise_for_status().text
    catalog = [p.read_bytes().decode("latin-1") for p in (tmp_path / "catalog").rglob("*") if p.is_file()]
    for text in [json.dumps(meta), logs, artifacts, runs, json.dumps(outcome), *catalog]:
        assert planted not in text
    assert "patches under the ROI" in logs  # the run's logs were really read


def test_a_batch_keeps_each_patchs_own_cause_when_a_later_patch_fails_the_task(servers, make_cube, sample_layout,
                                                                              monkeypatch, tmp_path):
    from stacube.errors import PermanentSourceError, TransientSourceError
    from stacube.flows.download import download
    from stacube.flows.parameters import roi_to_parameter
    from stacube.sources.stac.backend import StacBackend

    _, api = servers
    cube = make_cube(api.url)
    read = StacBackend.read

    def failing(self, patch):
        if patch.id == "epsg3413/y0x0":
            raise PermanentSourceError("HTTP 403 forbidden: tile_r0_c0_dem.tif", "http://files/tile_r0_c0_dem.tif")
        if patch.id == "epsg3413/y0x1":
            raise TransientSourceError("HTTP 503", "http://files/tile_r0_c1_dem.tif")
        return read(self, patch)

    monkeypatch.setattr(StacBackend, "read", failing)
    report = download(str(cube.url), roi_to_parameter(sample_layout.extent_geobox()[0:256, 0:512]),
                      catalog_dir=str(cube.catalog_dir), concurrency=1, retries=1, patches_per_task=2,
                      skip_failed=True)
    causes = {f["patch_id"]: f["message"] for f in report["patches_failed"]}
    assert "403" in causes["epsg3413/y0x0"] and "1 attempt" in causes["epsg3413/y0x0"]  # before: "RunCancelled"
    assert "503" in causes["epsg3413/y0x1"]
