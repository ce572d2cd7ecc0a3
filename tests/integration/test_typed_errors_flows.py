"""The Prefect flows refuse bad input with an error of the tree naming the value, before any work: the cube,
the parcel store and the published files stay exactly as they were (issue 22.4). Valid input runs as before."""

from __future__ import annotations

import os

import pandas as pd
import pytest
import shapely

from stacube import Cube
from stacube.errors import GroupError, ItemError, ParcelError, PermanentSourceError, ROIError, SpecError, TOIError
from stacube.fields import clean_parcels, open_parcel_store
from stacube.testing.season import season_parcels

from .conftest import dem_spec

pytest.importorskip("prefect")
from stacube.flows.parameters import roi_to_parameter

NOWHERE = "http://127.0.0.1:9/stac"  # no test here reaches a source: bad input fails before any read


@pytest.fixture(autouse=True)
def _prefect(prefect_api):
    """Every test here runs against the session's temporary Prefect API."""


def _s2_spec(end: str = "2024-05-10"):
    from stacube.datasets import sentinel2_l2a_spec

    return sentinel2_l2a_spec((11.97, 46.97, 12.03, 47.01), "2024-05-01", end, api_url=NOWHERE, chunks=(128, 128),
                              max_cloud_cover=None, bands=("B04", "B08", "B11", "SCL"))


def _store(tmp_path, parcels=None) -> str:
    url = f"duckdb:///{tmp_path}/fields.duckdb"
    with open_parcel_store(url) as store:
        if parcels is not None:
            store.add_parcels(parcels)
    return url


# --- the field flows ----------------------------------------------------------------------------------
def test_an_ingest_without_watched_parcels_is_a_parcel_error_and_creates_no_cube(tmp_path):
    from stacube.flows.fields import ingest

    url, store_url = tmp_path / "s2", _store(tmp_path)
    with pytest.raises(ParcelError, match="no watched parcels") as raised:
        ingest(str(url), store_url, {"start": "2024-05-01", "end": "2024-05-05"}, str(tmp_path / "cat"),
               spec=_s2_spec().to_json())
    assert store_url.removeprefix("duckdb:///") in str(raised.value) and isinstance(raised.value, ValueError)
    assert not url.exists()
    with open_parcel_store(store_url) as store:
        assert store.last_run("ingest", str(url)) is None


def test_an_ingest_whose_parcels_lie_outside_the_cube_is_refused_before_the_time_axis_grows(tmp_path):
    from stacube.flows.fields import ingest

    far = clean_parcels(season_parcels().iloc[:1].assign(geometry=[shapely.box(100, 10, 100.01, 10.01)]),
                        "parcel_id").parcels
    store_url = _store(tmp_path, far)
    cube = Cube.create(tmp_path / "s2", _s2_spec(), catalog_dir=tmp_path / "cat")
    before = cube.history().snapshot.tolist()
    with pytest.raises(ROIError, match=r"none of the 1 watched parcels in .* lies in a zone of cube"):
        ingest(str(cube.url), store_url, {"start": "2024-05-01", "end": "2024-06-30"}, str(tmp_path / "cat"))
    reopened = Cube.open(cube.url)
    assert reopened.history().snapshot.tolist() == before  # the axis was not grown first
    assert reopened.spec.time[-1] == pd.Timestamp("2024-05-10")


@pytest.mark.parametrize("toi", ["not-a-date", {"start": "2024-06-10", "end": "2024-06-01"}, {"last": 5},
                                 {"last": "-7D"}, {"begin": "2024-05-01"}, [], 5])
def test_a_bad_toi_fails_the_field_flows_with_a_toi_error_before_the_store_is_opened(tmp_path, toi):
    from stacube.flows.fields import indices, ingest

    store_url = f"duckdb:///{tmp_path}/fields.duckdb"
    for flow in (ingest, indices):
        with pytest.raises(TOIError) as raised:
            flow(str(tmp_path / "s2"), store_url, toi, str(tmp_path / "cat"))
        assert repr(toi) in str(raised.value) and isinstance(raised.value, ValueError)
    assert not (tmp_path / "fields.duckdb").exists() and not (tmp_path / "s2").exists()


def test_indices_without_watched_parcels_is_a_parcel_error_and_store_nothing(tmp_path):
    from stacube.flows.fields import indices

    store_url = _store(tmp_path)
    with pytest.raises(ParcelError, match="no watched parcels"):
        indices(str(tmp_path / "s2"), store_url, {"start": "2024-05-01", "end": "2024-05-05"}, str(tmp_path / "cat"))
    with open_parcel_store(store_url) as store:
        assert store.quality().empty  # no KPIs of an empty run were stored


@pytest.mark.parametrize(("setting", "named"), [({"min_parcels_covered": 1.5}, "min_parcels_covered 1.5"),
                                                ({"max_stale_parcels": -0.1}, "max_stale_parcels -0.1"),
                                                ({"min_cloud_free_fraction": float("nan")},
                                                 "min_cloud_free_fraction nan"),
                                                ({"stale_weeks": 0}, "stale_weeks 0")])
def test_indices_refuse_a_kpi_threshold_that_is_no_share_before_any_group_runs(tmp_path, setting, named):
    from stacube.flows.fields import indices

    store_url = _store(tmp_path, clean_parcels(season_parcels(), "parcel_id").parcels)
    with pytest.raises(SpecError, match=named):
        indices(str(tmp_path / "s2"), store_url, {"start": "2024-05-01", "end": "2024-05-05"}, str(tmp_path / "cat"),
                **setting)
    with open_parcel_store(store_url) as store:
        assert store.quality().empty and store.observations().empty


@pytest.mark.parametrize(("setting", "named"), [({"unwatched_for": "abc"}, "unwatched_for='abc'"),
                                                ({"keep_files": "30"}, "keep_files='30'"),
                                                ({"unwatched_for": "-1D"}, "unwatched_for='-1D'"),
                                                ({"keep_files": ""}, "keep_files=''")])
def test_purge_checks_every_duration_before_a_snapshot_expires(tmp_path, setting, named):
    from stacube.flows.fields import purge

    cube = Cube.create(tmp_path / "s2", _s2_spec(), catalog_dir=tmp_path / "cat")
    cube.extend_time("2024-05-20")  # a snapshot more: keep_snapshots="0D" expires the ones before it
    store_url = _store(tmp_path)
    before = cube.history().snapshot.tolist()
    (tmp_path / "out").mkdir()
    published = tmp_path / "out" / "parcel-series-20200101.csv"
    published.write_text("old")
    os.utime(published, (0, 0))  # published in 1970: any keep_files deletes it
    with pytest.raises(TOIError, match=named) as raised:
        purge(str(cube.url), store_url, str(tmp_path / "out"), str(tmp_path / "cat"), keep_snapshots="0D",
              **setting)
    assert isinstance(raised.value, ValueError)
    assert Cube.open(cube.url).history().snapshot.tolist() == before and published.exists()
    done = purge(str(cube.url), store_url, str(tmp_path / "out"), str(tmp_path / "cat"), keep_snapshots="0D",
                 unwatched_for="30D", keep_files="180D")  # the same run with good durations does its work
    assert done["files_deleted"] == [str(published)] and not published.exists()
    # the snapshots before the tip were all the tip minutes ago: a run may stand on them, so they stay
    assert done["snapshots_expired"] == 0 and done["snapshots_kept_as_recent_tips"] >= 1
    assert len(Cube.open(cube.url).history()) == len(before)


# --- the sync flow ------------------------------------------------------------------------------------
@pytest.mark.parametrize(("setting", "error", "named"), [
    ({"split_degrees": 0}, SpecError, "split_degrees 0.0 "), ({"split_degrees": -1.0}, SpecError, "split_degrees -1.0"),
    ({"split_degrees": float("nan")}, SpecError, "split_degrees nan"),
    ({"split_period": "0D"}, TOIError, "split_period='0D'"),
    ({"split_period": "-31D"}, TOIError, "split_period='-31D'"),
    ({"split_period": "31"}, TOIError, "split_period='31' has no unit"),
    ({"split_period": "a month"}, TOIError, "split_period='a month'"),
])
def test_a_sync_with_a_bad_split_is_refused_before_the_cube_is_created(tmp_path, sample_layout, setting, error,
                                                                       named):
    """split_degrees is a setting (SpecError); split_period a duration (TOIError, as every duration given)."""
    from stacube.flows import sync_catalog

    spec = dem_spec(NOWHERE, sample_layout)
    url = tmp_path / "dem"
    with pytest.raises(error, match=named) as raised:
        sync_catalog(str(url), roi_to_parameter(sample_layout.extent_geobox()), None, str(tmp_path / "cat"),
                     spec=spec.to_json(), **setting)
    assert isinstance(raised.value, ValueError) and not url.exists()


def test_a_load_many_flow_with_a_bad_toi_is_a_toi_error_before_the_cube_is_created(tmp_path, sample_layout):
    from stacube.flows.many import load_many

    url = tmp_path / "dem"
    with pytest.raises(TOIError, match="not-a-date"):
        load_many(str(url), str(tmp_path / "rois.parquet"), str(tmp_path / "chips"), toi="not-a-date",
                  catalog_dir=str(tmp_path / "cat"), spec=dem_spec(NOWHERE, sample_layout).to_json())
    assert not url.exists()


def test_a_sync_with_a_bad_roi_is_an_roi_error_before_the_cube_is_created(tmp_path, sample_layout):
    from stacube.flows import sync_catalog

    url = tmp_path / "dem"
    bad = {"type": "Polygon", "coordinates": "x"}
    with pytest.raises(ROIError, match="'coordinates': 'x'"):
        sync_catalog(str(url), bad, None, str(tmp_path / "cat"), spec=dem_spec(NOWHERE, sample_layout).to_json())
    assert not url.exists()


@pytest.mark.parametrize(("failure", "attempts"), [
    (ItemError("item x has no asset 'dem'"), 1),
    (PermanentSourceError("403 Forbidden", "https://stac.example/search", 403), 1),
    (ConnectionError("the STAC API went away"), 2),  # transient: still retried
])
def test_a_sync_window_failing_for_good_is_not_retried(tmp_path, sample_layout, monkeypatch, failure, attempts):
    from stacube import StacSource
    from stacube.flows import sync_catalog

    cube = Cube.create(tmp_path / "dem", dem_spec(NOWHERE, sample_layout), catalog_dir=tmp_path / "cat")
    tried = []

    def failing_sync(self, catalog, window):
        tried.append(window)
        raise failure

    monkeypatch.setattr(StacSource, "sync", failing_sync)
    with pytest.raises(type(failure)):
        sync_catalog(str(cube.url), roi_to_parameter(sample_layout.extent_geobox()), None, str(tmp_path / "cat"),
                     split_degrees=10.0, retries=1)
    assert len(tried) == attempts


@pytest.mark.parametrize(("failure", "attempts"), [
    (SpecError("the cube's spec cannot be read"), 1),  # permanent: another attempt reads the same spec
    (PermanentSourceError("404 Not Found", "https://cube.example/s2", 404), 1),
    (ConnectionError("the cube's bucket went away"), 3),  # transient: tried again, twice
])
def test_a_group_failing_for_good_is_not_retried(tmp_path, monkeypatch, failure, attempts):
    import stacube.flows.fields as fields_flows

    cube = Cube.create(tmp_path / "s2", _s2_spec(), catalog_dir=tmp_path / "cat")
    store_url = _store(tmp_path, clean_parcels(season_parcels(), "parcel_id").parcels)
    with open_parcel_store(store_url) as store:
        groups = list(store.groups().group_id)
    tried = []

    def failing_group(cube, store, group_id, *args, **kwargs):
        tried.append(group_id)
        raise GroupError(f"group {group_id}: {type(failure).__name__}: {failure}") from failure  # as compute_group

    monkeypatch.setattr(fields_flows, "compute_group", failing_group)
    monkeypatch.setattr(fields_flows, "group_indices_task",
                        fields_flows.group_indices_task.with_options(retry_delay_seconds=0))
    with pytest.raises(Exception, match="groups failed") as raised:
        fields_flows.indices(str(cube.url), store_url, {"start": "2024-05-01", "end": "2024-05-05"},
                             str(tmp_path / "cat"))
    assert type(failure).__name__ in str(raised.value)
    assert sorted(tried) == sorted(groups * attempts)


# --- credentials --------------------------------------------------------------------------------------
def test_a_missing_earth_engine_secret_block_is_a_spec_error_naming_it(tmp_path, sample_layout):
    from stacube.flows import download

    url = tmp_path / "dem"
    with pytest.raises(SpecError, match="'no-such-ee-block'") as raised:
        download(str(url), roi_to_parameter(sample_layout.extent_geobox()), None, str(tmp_path / "cat"),
                 earthengine_secret="no-such-ee-block", spec=dem_spec(NOWHERE, sample_layout).to_json())
    assert isinstance(raised.value, ValueError) and not url.exists()
