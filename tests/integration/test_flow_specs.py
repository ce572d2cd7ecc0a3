"""A flow's ``spec`` parameter: a deployment's first run creates its cube; later runs use it only if it is
the cube the spec describes; two first runs at once make one cube."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor

import pytest

from stacube import Cube, CubeNotFoundError, SpecError
from stacube.datasets import sentinel2_l2a_spec

from .conftest import dem_spec

pytest.importorskip("prefect")
from stacube.flows.cubes import open_cube
from stacube.flows.download import download
from stacube.flows.parameters import roi_to_parameter


def _download_artifacts(flow_run_id: str) -> int:
    """How many ``stacube-download`` report artifacts a flow run made."""
    import httpx
    from prefect.settings import PREFECT_API_URL

    query = {"artifacts": {"key": {"any_": ["stacube-download"]}, "flow_run_id": {"any_": [flow_run_id]}},
             "limit": 5}
    return len(httpx.post(f"{PREFECT_API_URL.value()}/artifacts/filter", json=query).raise_for_status().json())


@pytest.fixture
def _prefect(prefect_api):
    """The session's temporary Prefect API."""


@pytest.mark.usefixtures("_prefect")
def test_the_first_run_creates_the_cube_from_a_spec_file_and_later_runs_use_it(servers, sample_layout, tmp_path):
    spec_file = dem_spec(servers[1].url, sample_layout).save(tmp_path / "dem-spec.json")
    url, catalog = tmp_path / "cubes" / "dem.icechunk", str(tmp_path / "catalog")
    roi = roi_to_parameter(sample_layout.extent_geobox()[0:512, 0:512])
    first = download(str(url), roi, catalog_dir=catalog, spec=str(spec_file))
    cube = Cube.open(url)
    history = cube.history()
    assert history.message.tolist()[1:] == ["stacube: create cube 'dem'", "Repository initialized"]
    assert history.snapshot[0] == first["snapshot_id"] and len(first["patches_written"]) == 4
    meta = cube.repo.lookup_snapshot(first["snapshot_id"]).metadata["stacube"]
    assert meta["flow_run_id"] == first["metadata"]["flow_run_id"]
    assert _download_artifacts(meta["flow_run_id"]) == 1  # the flow publishes its report once
    again = download(str(url), roi_to_parameter(sample_layout.extent_geobox()[0:512, 0:1024]), catalog_dir=catalog,
                     spec=str(spec_file))  # the same spec: the cube is used, only what it lacks is read
    assert len(again["patches_written"]) == 4 and again["patches_already_filled"] == 4
    assert len(cube.history()) == len(history) + 1


@pytest.mark.usefixtures("_prefect")
def test_a_run_whose_spec_describes_another_cube_fails_naming_both(servers, sample_layout, tmp_path):
    url = tmp_path / "dem.icechunk"
    cube = Cube.create(url, dem_spec(servers[1].url, sample_layout), catalog_dir=tmp_path / "catalog")
    before = cube.history()
    other = dem_spec(servers[1].url, sample_layout, chunks=(512, 512), name="dem-512").to_json()
    state = download(str(url), roi_to_parameter(sample_layout.extent_geobox()[0:512, 0:512]),
                     catalog_dir=str(tmp_path / "catalog"), spec=other, return_state=True)
    assert state.is_failed()
    with pytest.raises(SpecError) as refused:
        state.result()
    message = str(refused.value)
    assert f"the cube at {str(url)!r} ('dem')" in message and "('dem-512')" in message
    assert "chunks: [256, 256] in the cube, [512, 512] in the spec" in message
    assert cube.history().snapshot.tolist() == before.snapshot.tolist()  # nothing written, nothing read
    assert not (tmp_path / "catalog").exists()


@pytest.mark.usefixtures("_prefect")
def test_a_run_without_a_spec_on_a_missing_cube_says_how_a_deployment_creates_it(sample_layout, tmp_path):
    state = download(str(tmp_path / "nowhere"), roi_to_parameter(sample_layout.extent_geobox()[0:512, 0:512]),
                     return_state=True)
    with pytest.raises(CubeNotFoundError, match=r"no cube at .*nowhere.*the flow's spec parameter.*"
                                                r'\{"dataset": "arcticdem", "resolution": 32\}'):
        state.result()


def test_a_later_spec_grows_the_time_axis_and_another_start_is_refused(tmp_path):
    bbox = (11.0, 47.0, 11.05, 47.03)
    url = tmp_path / "s2.icechunk"
    made = {"dataset": "sentinel2", "bbox": list(bbox), "start": "2024-04-01", "end": "2024-04-30",
            "bands": ["B04", "SCL"], "api_url": "http://127.0.0.1:9/stac"}
    cube = open_cube(url, made)
    assert not cube.spec.differences(sentinel2_l2a_spec(bbox, "2024-04-01", "2024-04-30", bands=("B04", "SCL"),
                                                        api_url="http://127.0.0.1:9/stac"))
    assert len(cube.spec.time) == 30
    assert open_cube(url, {**made, "end": "2024-04-10"}).spec.time[-1].strftime("%m-%d") == "04-30"  # shorter: fine
    grown = open_cube(url, {**made, "end": "2024-05-15"})  # a spec made later ("until today") reaches further
    assert grown.spec.time[-1].strftime("%m-%d") == "05-15" and Cube.open(url).spec.time[-1] == grown.spec.time[-1]
    with pytest.raises(SpecError, match=r"time.start: '2024-04-01T00:00:00' in the cube, '2024-04-02T00:00:00' in "
                                        r"the spec"):
        open_cube(url, {**made, "start": "2024-04-02"})


def _open_at_once(url: str, spec_file: str, barrier: object) -> tuple[str, list[str]]:
    barrier.wait()
    cube = open_cube(url, spec_file)
    return cube.spec.name, cube.history().message.tolist()


@pytest.mark.parametrize("existing_folder", [False, True], ids=["new-path", "empty-folder"])
def test_two_first_runs_at_once_make_one_cube(servers, sample_layout, tmp_path, existing_folder):
    spec_file = dem_spec(servers[1].url, sample_layout).save(tmp_path / "dem-spec.json")
    url = tmp_path / "dem.icechunk"
    if existing_folder:
        url.mkdir()  # a mount point, say: created in place, under the commit lock
    context = multiprocessing.get_context("spawn")
    with context.Manager() as manager, ProcessPoolExecutor(2, mp_context=context) as pool:
        barrier = manager.Barrier(2)
        done = [pool.submit(_open_at_once, str(url), str(spec_file), barrier) for _ in range(2)]
        results = [future.result(timeout=120) for future in done]
    assert [name for name, _ in results] == ["dem", "dem"]
    assert Cube.open(url).history().message.tolist() == ["stacube: create cube 'dem'", "Repository initialized"]


@pytest.mark.usefixtures("_prefect")
def test_the_first_ingest_creates_the_sentinel2_cube_its_spec_names(season_api, tmp_path):
    from stacube.fields import clean_parcels, open_parcel_store
    from stacube.flows.fields import ingest
    from stacube.testing.season import season_parcels

    store_url = f"duckdb:///{tmp_path}/fields.duckdb"
    with open_parcel_store(store_url) as store:
        store.add_parcels(clean_parcels(season_parcels(), "parcel_id").parcels)
    spec = {"dataset": "sentinel2", "bbox": [11.97, 46.97, 12.03, 47.01], "start": "2024-05-01", "end": "2024-05-10",
            "api_url": season_api.url, "chunks": [128, 128], "max_cloud_cover": None,
            "bands": ["B04", "B08", "B11", "SCL"]}
    url = tmp_path / "cubes" / "sentinel-2.icechunk"
    report = ingest(str(url), store_url, {"start": "2024-05-01", "end": "2024-05-10"}, str(tmp_path / "catalog"),
                    spec=spec)
    assert report["patches_written"] and not report["failures"]
    history = Cube.open(url).history()
    assert history.message.tolist()[-2:] == [f"stacube: create cube {Cube.open(url).spec.name!r}",
                                             "Repository initialized"]


def test_a_toi_outside_the_axis_the_run_will_have_fails_before_anything_is_created_or_grown(tmp_path):
    from stacube.errors import TOIError

    bbox = (11.0, 47.0, 11.05, 47.03)
    url = tmp_path / "s2.icechunk"
    made = {"dataset": "sentinel2", "bbox": list(bbox), "start": "2024-04-01", "end": "2024-04-30",
            "bands": ["B04", "SCL"], "api_url": "http://127.0.0.1:9/stac"}
    with pytest.raises(TOIError, match="2030"):
        open_cube(url, made, toi="2030-01-01")
    assert not url.exists()  # not created
    cube = open_cube(url, made)
    before = cube.history().snapshot.tolist()
    with pytest.raises(TOIError, match="2030"):  # before: the axis grew to 05-15, then the run failed
        open_cube(url, {**made, "end": "2024-05-15"}, toi="2030-01-01")
    assert Cube.open(url).history().snapshot.tolist() == before and len(Cube.open(url).spec.time) == 30
    assert len(open_cube(url, {**made, "end": "2024-05-15"}, toi="2024-05-10").spec.time) == 45  # inside: grows


def test_a_flow_run_that_grows_the_axis_names_itself_in_that_commit(prefect_api, tmp_path):
    from prefect import flow

    bbox = (11.0, 47.0, 11.05, 47.03)
    url = tmp_path / "s2.icechunk"
    made = {"dataset": "sentinel2", "bbox": list(bbox), "start": "2024-04-01", "end": "2024-04-30",
            "bands": ["B04", "SCL"], "api_url": "http://127.0.0.1:9/stac"}
    open_cube(url, made)

    @flow(name="grows-the-axis")
    def grows() -> str:
        from prefect import runtime

        open_cube(url, {**made, "end": "2024-05-15"})
        return str(runtime.flow_run.id)

    run_id = grows()
    growth = Cube.open(url).repo.lookup_snapshot(Cube.open(url).history().snapshot.iloc[0]).metadata["stacube"]
    assert growth["event"] == "extend_time" and growth["flow_run_id"] == run_id  # before: no flow run named
