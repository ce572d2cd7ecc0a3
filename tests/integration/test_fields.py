"""Field pipelines on a synthetic season: parcels in, NDVI/NDMI per parcel and date out, checked by numpy."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio.features
import shapely
from odc.geo.geom import Geometry, box

from stacube import Cube, ParcelError, QualityBreachError
from stacube.fields import IndexSettings, clean_parcels, compute_group, group_geobox, open_parcel_store, read_parcels
from stacube.testing.season import Season, ndvi_of, season_bands, season_parcels
from stacube.testing.servers import serve_sample

SEASON = slice("2024-05-01", "2024-06-30")


@pytest.fixture(params=["duckdb", "postgresql"])
def store_url(request, tmp_path):
    """The same suite on the embedded store and on PostgreSQL/PostGIS (a fresh database each)."""
    if request.param == "duckdb":
        return f"duckdb:///{tmp_path}/fields.duckdb"
    import subprocess
    import uuid

    server = request.getfixturevalue("postgres_url")
    name = f"fields_{uuid.uuid4().hex[:8]}"
    host, port = server.split("@")[1].split("/")[0].split(":")
    subprocess.run(["psql", "-h", host, "-p", port, "-U", "stacube", "-d", "fields", "-c", f"CREATE DATABASE {name}"],
                   check=True, capture_output=True)
    return server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture
def season(season_api, store_url, tmp_path):
    """A Sentinel-2 cube over the season, the parcels imported into a store, every group computed."""
    from stacube.datasets import sentinel2_l2a_spec

    spec = sentinel2_l2a_spec((11.97, 46.97, 12.03, 47.01), "2024-05-01", "2024-06-30", api_url=season_api.url,
                              chunks=(128, 128), max_cloud_cover=None, bands=("B04", "B08", "B11", "SCL"))
    cube = Cube.create(tmp_path / "s2", spec, catalog_dir=tmp_path / "catalog")
    store = open_parcel_store(store_url)
    store.add_parcels(clean_parcels(season_parcels(), "parcel_id").parcels)
    for group_id in store.groups().group_id:
        compute_group(cube, store, group_id, SEASON, run_id="first")
    yield cube, store
    store.close()


def test_parcels_are_repaired_or_rejected_never_failing_the_import(tmp_path):
    frame = season_parcels()
    broken = pd.concat([frame, frame.iloc[[0]], frame.iloc[[1]].assign(parcel_id=None),
                        frame.iloc[[2]].assign(parcel_id="EMPTY", geometry=None)], ignore_index=True)
    broken.to_file(tmp_path / "parcels.gpkg", driver="GPKG")
    broken.to_parquet(tmp_path / "parcels.parquet")
    broken.to_file(tmp_path / "parcels.shp")
    for path in (tmp_path / "parcels.gpkg", tmp_path / "parcels.parquet", tmp_path / "parcels.shp"):
        imported = read_parcels(path, "parcel_id", max_group_size=10)
        kept = imported.parcels.set_index("parcel_id")
        assert len(kept) == 24 and "P00" not in kept.index  # P00 appears twice: both rejected
        assert kept.loc["BOWTIE", "repaired"] and kept.loc["BOWTIE"].geometry.is_valid
        assert kept.loc["BOWTIE"].geometry.area > 0
        reasons = dict(zip(imported.rejected.parcel_id, imported.rejected.reason, strict=True))
        assert reasons["P00"].startswith("duplicate") and reasons["EMPTY"] == "no geometry"
        assert any(r.startswith("no value in 'parcel_id'") for r in reasons.values())
        assert kept.loc["P02", "utm_zone"] == 32632 and kept.loc["P05", "utm_zone"] == 32633
        assert kept.groupby("group_id").size().max() <= 10  # bounded groups
        assert kept.loc["P02", "group_id"].startswith("32N-") and kept.loc["P05", "group_id"].startswith("33N-")


def _independent(tile, geometry, settings: IndexSettings) -> list[dict]:
    """NDVI/NDMI of one parcel on every date of ``tile``, by masking with the parcel's own geometry."""
    geobox = tile.odc.geobox
    inside = rasterio.features.geometry_mask([geometry], out_shape=geobox.shape.yx, transform=geobox.transform,
                                             invert=True)
    out = []
    for step in range(tile.sizes["time"]):
        red, nir, swir, scl = (tile[v].values[step][inside] for v in ("B04", "B08", "B11", "SCL"))
        ok = ~np.isin(scl, settings.masked_classes) & (red > 0) & (nir > 0) & (swir > 0)
        r, n, s = (b[ok] * 0.0001 - 0.1 for b in (red, nir, swir))
        ndvi, ndmi = (n - r) / (n + r), (n - s) / (n + s)
        out.append({"date": pd.Timestamp(tile.time.values[step]), "total": int(inside.sum()), "valid": int(ok.sum()),
                    "ndvi_mean": ndvi.mean() if ok.any() else np.nan,
                    "ndvi_median": np.median(ndvi) if ok.any() else np.nan,
                    "ndvi_std": ndvi.std() if ok.any() else np.nan,
                    "ndmi_mean": ndmi.mean() if ok.any() else np.nan})
    return out


def test_indices_equal_an_independent_numpy_computation_on_the_same_pixels(season):
    cube, store = season
    settings = IndexSettings()
    observed = store.observations().set_index(["parcel_id", "date"])
    parcels = store.parcels()
    checked = usable = clouded = 0
    for group in store.groups().itertuples():
        members = parcels[parcels.group_id == group.group_id]
        roi = group_geobox(cube, tuple(members.total_bounds), group.utm_zone)
        assert roi.crs.epsg == group.utm_zone  # the group's own zone's grid
        # what compute_group fetched: the patches under its parcels
        area = Geometry(shapely.union_all(members.geometry.values), "EPSG:4326")
        tile = cube.load(roi, SEASON, variables=settings.variables, offline=True, area=area)
        assert tile.sizes["time"] == len(Season().days)  # every acquisition, no empty day
        for parcel in members.itertuples():
            geometry = members.loc[[parcel.Index]].to_crs(roi.crs).geometry.iloc[0]
            for want in _independent(tile, geometry, settings):
                got = observed.loc[(parcel.parcel_id, want["date"])]
                assert got.total_pixels == want["total"] > 100 and got.valid_pixels == want["valid"]
                for column in ("ndvi_mean", "ndvi_median", "ndvi_std", "ndmi_mean"):
                    np.testing.assert_allclose(got[column], want[column], rtol=1e-9, atol=1e-12, equal_nan=True)
                assert got.usable == (want["valid"] / want["total"] >= settings.min_valid_fraction)
                if got.usable:
                    usable += 1
                    index = list(season_parcels().parcel_id).index(parcel.parcel_id)
                    assert abs(got.ndvi_median - ndvi_of(index, want["date"].day_of_year)) < 0.05  # its phenology
                else:
                    clouded += got.reason == "clouds"
                checked += 1
    assert checked == 25 * len(Season().days) and usable > 150 and clouded > 5


def test_a_parcel_across_the_zone_border_gets_pixels_from_both_zones(season):
    _cube, store = season
    parcel = store.parcels().set_index("parcel_id").loc["P03"]
    west, _, east, _ = parcel.geometry.bounds
    assert west < 12.0 < east
    rows = store.observations(["P03"])
    assert (rows.total_pixels - 300).abs().max() <= 30  # 200 m x 150 m at 10 m
    assert rows.valid_fraction.max() > 0.95  # on a clear day both halves hold data, not just its own zone's


def test_a_week_without_acquisition_is_recorded_and_rerunning_changes_nothing(season):
    cube, store = season
    before = store.observations().drop(columns="run_id")
    for group_id in store.groups().group_id:
        compute_group(cube, store, group_id, SEASON, run_id="again")
    after = store.observations().drop(columns="run_id")
    pd.testing.assert_frame_equal(after, before)  # idempotent
    group_id = store.groups().group_id.iloc[0]
    rows = compute_group(cube, store, group_id, slice("2024-05-20", "2024-05-26"))
    assert (rows.reason == "no acquisition").all() and not rows.usable.any()
    stored = store.observations().query("date == @pd.Timestamp('2024-05-20')")
    assert len(stored) == len(rows) and (stored.reason == "no acquisition").all()


def test_the_ingest_and_indices_flows_run_a_season_one_commit_and_one_task_per_group(season_api, prefect_api,
                                                                                       store_url, tmp_path):
    import shapely

    from stacube.datasets import sentinel2_l2a_spec
    from stacube.flows.fields import indices, ingest, publish, purge

    spec = sentinel2_l2a_spec((11.97, 46.97, 12.03, 47.01), "2024-05-01", "2024-05-10", api_url=season_api.url,
                              chunks=(128, 128), max_cloud_cover=None, bands=("B04", "B08", "B11", "SCL"))
    cube = Cube.create(tmp_path / "s2", spec, catalog_dir=tmp_path / "catalog")
    parcels = clean_parcels(season_parcels(), "parcel_id").parcels
    far = clean_parcels(season_parcels().iloc[:1].assign(parcel_id="FAR", geometry=[shapely.box(100, 10, 100.01,
                                                                                                   10.01)]),
                        "parcel_id").parcels  # a watched parcel no cube zone covers: its group must fail alone
    with open_parcel_store(store_url) as store:
        store.add_parcels(pd.concat([parcels, far]))
        far_group = store.parcels().set_index("parcel_id").loc["FAR", "group_id"]
    before = len(cube.history())
    report = ingest(str(cube.url), store_url, {"start": "2024-05-01", "end": "2024-06-30"},
                    str(tmp_path / "catalog"))
    assert report["patches_written"] and not report["failures"]
    with open_parcel_store(store_url) as store:
        assert store.last_run("ingest", str(cube.url)) == (pd.Timestamp("2024-05-01"),
                                                            pd.Timestamp("2024-06-30T23:59:59.999999"))
    # No TOI: the indices cover the last ingest's period (its start up to the run's start).
    state = indices(str(cube.url), store_url, None, str(tmp_path / "catalog"), return_state=True)
    published = publish(store_url, str(tmp_path / "published"), name="season")
    with open_parcel_store(store_url) as store:
        store.watch(["FAR"], False)  # unwatched: the next runs cover every watched parcel
    season_toi = {"start": "2024-05-01", "end": "2024-06-30"}
    clean = indices(str(cube.url), store_url, season_toi, str(tmp_path / "catalog"), return_state=True)
    dated = publish(store_url, str(tmp_path / "published"))  # the default name: parcel-series-<date>
    purged = purge(str(cube.url), store_url, str(tmp_path / "published"), str(tmp_path / "catalog"),
                   keep_snapshots="3650D", unwatched_for="0D", keep_files="0D")
    assert purged["files_deleted"] == sorted([dated["geoparquet"], dated["csv"], dated["png"]])
    assert (tmp_path / "published" / "season.parquet").is_file()  # not a file purge manages: left alone
    assert purged["snapshots_expired"] == 0  # nothing older than ten years
    strict = indices(str(cube.url), store_url, season_toi, str(tmp_path / "catalog"),
                     min_cloud_free_fraction=0.99, return_state=True)
    assert clean.is_completed() and all(k["ok"] for k in clean.result()["quality"])
    assert strict.is_failed() and "data quality: cloud_free_fraction" in str(strict.result(raise_on_failure=False))
    assert isinstance(strict.result(raise_on_failure=False), QualityBreachError)
    with open_parcel_store(store_url) as store:
        kpis = store.quality()
    assert kpis.run_id.nunique() == 3 and list(kpis[~kpis.ok].kpi) == ["cloud_free_fraction"]  # the strict run's
    assert published["parcel_weeks"] > len(parcels) * 5 and published["filled"] >= len(parcels)  # the empty week
    assert all((tmp_path / "published" / f"season.{ext}").is_file() for ext in ("parquet", "csv", "png"))
    grown = Cube.open(tmp_path / "s2", catalog_dir=tmp_path / "catalog")
    assert grown.spec.time[-1] >= pd.Timestamp("2024-06-30") and len(grown.history()) == before + 2  # grow + ingest
    failure = str(state.result(raise_on_failure=False))
    assert state.is_failed() and far_group in failure and "lie outside the zones" in failure
    with open_parcel_store(store_url) as store:
        observed = store.observations()
    assert set(observed.parcel_id) == set(parcels.parcel_id)  # every other group was computed
    assert len(observed) == len(parcels) * len(Season().days) and observed.usable.sum() > 150


def test_published_weekly_series_fill_the_empty_week_and_are_written_as_files(season, tmp_path):
    import geopandas as gpd
    from PIL import Image

    from stacube.fields.publish import export_series, plot_sample, weekly_series

    _cube, store = season
    observations = store.observations()
    series = weekly_series(observations)
    gap = series[series.week == pd.Timestamp("2024-05-20")]
    assert len(gap) == series.parcel_id.nunique() and gap.filled.all() and (gap.acquisitions == 0).all()
    for row in gap.itertuples():  # linear in time between the neighbouring weeks
        around = series[(series.parcel_id == row.parcel_id)].set_index("week").ndvi
        before, after = around.get(pd.Timestamp("2024-05-13")), around.get(pd.Timestamp("2024-05-27"))
        if before is not None and after is not None:
            assert row.ndvi == pytest.approx((before + after) / 2)
    measured = series[~series.filled].iloc[0]
    usable = observations[(observations.parcel_id == measured.parcel_id) & observations.usable]
    same_week = usable[pd.to_datetime(usable.date).dt.to_period("W-SUN").dt.start_time == measured.week]
    assert measured.ndvi == pytest.approx(same_week.ndvi_mean.mean()) and measured.acquisitions == len(same_week)
    paths = export_series(series, store.parcels(), tmp_path / "out")
    table = gpd.read_parquet(paths["geoparquet"])
    assert len(table) == len(series) and table.crs.to_epsg() == 4326 and table.geometry.notna().all()
    assert len(pd.read_csv(paths["csv"])) == len(series)
    png = plot_sample(series, tmp_path / "out" / "sample.png")
    image = np.asarray(Image.open(png).convert("RGB"))
    assert image.shape == (400, 800, 3)
    assert (image.min(axis=2) < 200).mean() > 0.02  # axes, lines and labels: not blank
    assert (np.abs(image.astype(int) - (31, 119, 180)).sum(axis=2) < 30).sum() > 50  # the first series' blue


def test_quality_kpis_are_computed_from_the_stored_series_and_kept(season):
    from stacube.fields.quality import QualityThresholds, quality_report

    _cube, store = season
    observed = store.observations()
    watched = list(store.parcels().parcel_id)
    start, end = pd.Timestamp("2024-05-01"), pd.Timestamp("2024-06-30")
    report = quality_report(observed, watched, start, end).set_index("kpi")
    usable = observed.usable.astype(bool)
    assert report.loc["parcels_covered", "value"] == pytest.approx(observed[usable].parcel_id.nunique() / 25, abs=1e-4)
    assert report.loc["cloud_free_fraction", "value"] == pytest.approx(usable.mean(), abs=1e-4)
    recent = observed[usable & (pd.to_datetime(observed.date) > end - pd.Timedelta(weeks=4))].parcel_id.nunique()
    assert report.loc["stale_parcels", "value"] == pytest.approx((25 - recent) / 25, abs=1e-4)
    strict = quality_report(observed, watched, start, end, QualityThresholds(min_cloud_free_fraction=0.99))
    assert not strict.set_index("kpi").loc["cloud_free_fraction", "ok"]
    store.write_quality("run-a", start, end, strict)
    store.write_quality("run-a", start, end, strict)  # again: replaced, not doubled
    kept = store.quality()
    assert len(kept) == 3 and set(kept.kpi) == set(report.index) and not kept.set_index("kpi").loc[
        "cloud_free_fraction", "ok"]


def test_series_of_unwatched_parcels_are_purged_and_the_rest_kept(season):
    _cube, store = season
    total = len(store.observations())
    assert store.watch(["P00", "NOPE"], False) == 1  # only existing parcels count
    assert store.purge_unwatched(pd.Timestamp.now(tz="UTC").tz_localize(None) - pd.Timedelta("1D")) == 0  # too recent
    deleted = store.purge_unwatched(pd.Timestamp.now(tz="UTC").tz_localize(None) + pd.Timedelta("1min"))
    assert deleted == len(Season().days) and len(store.observations()) == total - deleted
    assert store.observations(["P00"]).empty and "P00" not in set(store.parcels().parcel_id)
    assert "P00" in set(store.parcels(watched_only=False).parcel_id)  # the parcel itself stays, unwatched


def _chunks_meeting(cube, parcels) -> set[tuple[str, int, int]]:
    """Independently: every chunk of every zone whose footprint overlaps a parcel's bounding box (shapely)."""
    import shapely

    from stacube.grid import zone_grids

    found = set()
    for grid in zone_grids(cube.spec):
        boxes = [shapely.box(*g.bounds) for g in parcels.to_crs(grid.geobox.crs).geometry]
        rows, columns = grid.chunk_counts
        for iy in range(rows):
            for ix in range(columns):
                footprint = grid.chunk_geobox(iy, ix).extent.geom
                if any(footprint.intersection(b).area > 0 for b in boxes):
                    found.add((grid.name, iy, ix))
    return found


def test_ingest_reads_only_chunks_under_parcels_and_leaves_a_corrupt_granule_for_the_next(prefect_api, tmp_path):
    import shapely

    from stacube.datasets import sentinel2_l2a_spec
    from stacube.flows.fields import ingest
    from stacube.grid import parse_patch_id
    from stacube.testing.granules import generate_sentinel2

    folder = generate_sentinel2(tmp_path / "granules", Season(days=("2024-05-02", "2024-05-07")).granules(),
                                bands=season_bands)
    broken = folder / "S2A_33TTN_20240507_1_L2A_B04.tif"
    good = broken.read_bytes()
    broken.write_bytes(b"this is not a TIFF " * 200)
    parcels = clean_parcels(season_parcels(), "parcel_id").parcels
    # A parcel 2 km east of the others, in the same group: the group's box spans chunks without parcels.
    east = parcels.iloc[:1].assign(parcel_id="EAST", geometry=[shapely.box(12.025, 46.975, 12.027, 46.976)])
    parcels = clean_parcels(pd.concat([parcels, east]), "parcel_id").parcels
    east_group = parcels.set_index("parcel_id").loc["EAST", "group_id"]
    assert (parcels.group_id == east_group).sum() > 1  # EAST shares its group with the grid's parcels
    store_url = f"duckdb:///{tmp_path}/fields.duckdb"
    with open_parcel_store(store_url) as store:
        store.add_parcels(parcels)
    with serve_sample(folder) as (_files, api):
        spec = sentinel2_l2a_spec((11.97, 46.97, 12.03, 47.01), "2024-05-01", "2024-05-10", api_url=api.url,
                                  chunks=(128, 128), max_cloud_cover=None, bands=("B04", "B08", "B11", "SCL"))
        cube = Cube.create(tmp_path / "s2", spec, catalog_dir=tmp_path / "catalog")
        before = len(cube.history())
        first = ingest(str(cube.url), store_url, {"start": "2024-05-01", "end": "2024-05-10"},
                       str(tmp_path / "catalog"))
        broken.write_bytes(good)  # the provider fixes the granule; the next ingest picks it up
        second = ingest(str(cube.url), store_url, None, str(tmp_path / "catalog"))

    expected = _chunks_meeting(cube, parcels)
    processed = first["patches_written"] + first["patches_empty"] + [f["patch"] for f in first["failures"]]
    cells = {(zone, iy, ix) for zone, _, iy, ix in map(parse_patch_id, processed)}
    assert cells == expected  # exactly the chunks under parcels: not the group's whole box, not whole granules
    groups_box = Cube.open(cube.url, catalog_dir=tmp_path / "catalog").plan(
        box(*parcels.total_bounds, "EPSG:4326"), slice("2024-05-02", "2024-05-02"))
    assert len(cells) < len({(p.zone, p.iy, p.ix) for p in groups_box.patches})
    assert first["chunks"] == len(expected)

    assert first["failures"], "the corrupt granule must be reported"
    for failure in first["failures"]:  # each names the groups, the MGRS tile, the date and the file
        assert failure["tiles"] == ["33TTN"] and failure["date"] == "2024-05-07" and failure["groups"]
        assert "S2A_33TTN_20240507_1_L2A_B04.tif" in failure["error"]
    failed = {f["patch"] for f in first["failures"]}
    assert len({parse_patch_id(p)[0] for p in failed}) == 1  # the zone of 33TTN only: Items feed their own zone
    assert any(parse_patch_id(p)[1] == pd.Timestamp("2024-05-07") for p in first["patches_written"])  # zone 32
    assert first["snapshot_id"] and first["next_start"] == "2024-05-07T00:00:00"
    # The next ingest starts at the failed date and fills exactly the patches that failed.
    assert second["period"][0] == "2024-05-07" and not second["failures"]
    again = set(second["patches_written"]) | set(second["patches_empty"])
    assert failed <= set(second["patches_written"])
    assert {p for p in again if parse_patch_id(p)[1] <= pd.Timestamp("2024-05-07")} == failed
    messages = list(cube.history().message)[: len(cube.history()) - before]
    assert sum("ingest 2 parcel groups" in m for m in messages) == 2 and len(messages) == 3  # + the axis growth


def test_ingests_are_recorded_per_cube_and_the_next_one_starts_where_the_last_ended(store_url):
    from stacube.fields.run import period_toi, since_last

    now = pd.Timestamp("2024-07-08T06:00:00", tz="Europe/Berlin")
    with open_parcel_store(store_url) as store:
        assert store.last_run("ingest", "cubes/a") is None
        assert since_last(store.last_run("ingest", "cubes/a"), now) == {"last": "7D"}
        store.record_run("ingest", "cubes/a", "r1", pd.Timestamp("2024-06-24"), pd.Timestamp("2024-07-01"))
        store.record_run("ingest", "cubes/a", "r2", pd.Timestamp("2024-07-01"),
                         pd.Timestamp("2024-07-08T02:00:00", tz="Europe/Berlin"))  # kept as naive UTC
        store.record_run("ingest", "cubes/b", "r3", pd.Timestamp("2024-01-01"), pd.Timestamp("2024-12-31"))
        last = store.last_run("ingest", "cubes/a")
    assert last == (pd.Timestamp("2024-07-01"), pd.Timestamp("2024-07-08T00:00:00"))
    assert since_last(last, now) == {"start": "2024-07-08T00:00:00", "end": "2024-07-08T04:00:00"}
    assert period_toi(last) == {"start": "2024-07-01T00:00:00", "end": "2024-07-08T00:00:00.000000"}
    with open_parcel_store(store_url) as store:
        runs = store.runs("ingest", "cubes/a")
        store.record_run("indices", "cubes/a", "i1", pd.Timestamp("2024-06-24"), pd.Timestamp("2024-07-08"),
                         as_of=runs.finished_at.iloc[0])
        indexed = store.runs("indices", "cubes/a")
        assert store.runs("indices", "cubes/b").empty
    assert list(runs.run_id) == ["r1", "r2"] and list(runs.columns) == ["run_id", "period_start", "period_end",
                                                                        "finished_at"]
    assert runs.period_end.iloc[1] == pd.Timestamp("2024-07-08T00:00:00") and runs.finished_at.is_monotonic_increasing
    assert indexed.finished_at.iloc[0] == runs.finished_at.iloc[0]  # as of what it saw, on the store's own clock


def test_default_field_runs_never_skip_an_ingested_day_nor_resume_past_a_failure(prefect_api, tmp_path):
    from stacube.datasets import sentinel2_l2a_spec
    from stacube.flows.fields import indices, ingest
    from stacube.testing.granules import generate_sentinel2

    folder = generate_sentinel2(tmp_path / "granules", Season(days=("2024-05-02", "2024-05-07", "2024-05-09"))
                                .granules(), bands=season_bands)
    broken = folder / "S2A_33TTN_20240507_1_L2A_B04.tif"
    good = broken.read_bytes()
    broken.write_bytes(b"this is not a TIFF " * 200)
    parcels = clean_parcels(season_parcels(), "parcel_id").parcels
    store_url, catalog = f"duckdb:///{tmp_path}/fields.duckdb", str(tmp_path / "catalog")
    with open_parcel_store(store_url) as store:
        store.add_parcels(parcels)
    with serve_sample(folder) as (_files, api):
        spec = sentinel2_l2a_spec((11.97, 46.97, 12.03, 47.01), "2024-05-01", "2024-05-10", api_url=api.url,
                                  chunks=(128, 128), max_cloud_cover=None, bands=("B04", "B08", "B11", "SCL"))
        cube = Cube.create(tmp_path / "s2", spec, catalog_dir=catalog)
        url = str(cube.url)
        ingest(url, store_url, {"start": "2024-05-01", "end": "2024-05-04"}, catalog)
        failing = ingest(url, store_url, {"start": "2024-05-05", "end": "2024-05-10"}, catalog)
        # Two ingests, then the indices: both ingests' days are covered, not only the last one's
        first = indices(url, store_url, None, catalog, min_parcels_covered=0, min_cloud_free_fraction=0,
                        max_stale_parcels=1)
        with open_parcel_store(store_url) as store:
            rows = store.observations()
        # A manual ingest of a later period: the next default ingest still starts at the failed date
        ingest(url, store_url, {"start": "2024-05-09", "end": "2024-05-10"}, catalog)
        with open_parcel_store(store_url) as store:
            resume = store.last_run("ingest", url)[1]
        broken.write_bytes(good)
        ingest(url, store_url, {"start": "2024-05-07", "end": "2024-05-10"}, catalog)  # the repair
        second = indices(url, store_url, None, catalog, min_parcels_covered=0, min_cloud_free_fraction=0,
                         max_stale_parcels=1)
        with open_parcel_store(store_url) as store:
            repaired = store.observations()
            indexed = store.runs("indices", url)

    assert failing["failures"] and failing["next_start"] == "2024-05-07T00:00:00"
    assert set(rows.date) == {pd.Timestamp(d) for d in ("2024-05-02", "2024-05-07", "2024-05-09")}
    assert first["rows"] == 3 * len(parcels)
    on_failed = rows[rows.date == pd.Timestamp("2024-05-07")]
    lacking = on_failed[on_failed.reason == "not downloaded"]
    assert len(lacking) and lacking.ndvi_mean.isna().all() and not lacking.usable.any()
    assert (parcels.set_index("parcel_id").loc[lacking.parcel_id, "utm_zone"] == 32633).all()  # 33TTN's parcels
    assert not (rows[rows.date != pd.Timestamp("2024-05-07")].reason == "not downloaded").any()
    assert resume == pd.Timestamp("2024-05-07")
    again = repaired[repaired.date == pd.Timestamp("2024-05-07")].set_index("parcel_id")
    assert not (again.reason == "not downloaded").any() and again.loc[lacking.parcel_id].usable.any()
    assert second["rows"] == 2 * len(parcels)  # 05-07 and 05-09: what the ingests since the first indices wrote
    assert len(indexed) == 2


def test_both_stores_answer_an_empty_id_list_and_keep_working_after_a_run_is_read(store_url):
    parcels = clean_parcels(season_parcels(), "parcel_id").parcels
    with open_parcel_store(store_url) as store:
        store.add_parcels(parcels)
        assert store.observations([]).empty and store.watch([], False) == 0  # DuckDB: a type error on []
        store.record_run("ingest", "cubes/a", "r1", pd.Timestamp("2024-06-24"), pd.Timestamp("2024-07-01"))
        assert store.last_run("ingest", "cubes/a") is not None
        assert store.watch([parcels.parcel_id.iloc[0]], False) == 1  # DuckDB: the read left a result open


def test_parcels_import_and_run_from_the_command_line(season_api, tmp_path):
    import json

    from typer.testing import CliRunner

    from stacube.cli import app
    from stacube.datasets import sentinel2_l2a_spec

    frame = season_parcels()
    frame = pd.concat([frame, frame.iloc[[3]]], ignore_index=True)  # P03 twice: both rejected
    frame.to_file(tmp_path / "parcels.gpkg", layer="fields")
    store_url = f"duckdb:///{tmp_path}/fields.duckdb"
    runner = CliRunner()
    imported = runner.invoke(app, ["parcels", "import", str(tmp_path / "parcels.gpkg"), "--id-column", "parcel_id",
                                   "--store", store_url, "--layer", "fields", "--json"])
    assert imported.exit_code == 0, imported.stderr
    summary = json.loads(imported.stdout)
    assert summary["imported"] == 24 and summary["groups"] == 2
    assert [r["parcel_id"] for r in summary["rejected"]] == ["P03", "P03"]
    spec = sentinel2_l2a_spec((11.97, 46.97, 12.03, 47.01), "2024-05-01", "2024-06-30", api_url=season_api.url,
                              chunks=(128, 128), max_cloud_cover=None, bands=("B04", "B08", "B11", "SCL"))
    Cube.create(tmp_path / "s2", spec, catalog_dir=tmp_path / "catalog")
    ran = runner.invoke(app, ["parcels", "run", str(tmp_path / "s2"), "--store", store_url, "--time",
                              "2024-05-01/2024-05-20", "--catalog-dir", str(tmp_path / "catalog"), "--json"])
    assert ran.exit_code == 0, ran.stderr
    groups = json.loads(ran.stdout)["groups"]
    assert sum(g["parcel_dates"] for g in groups) == 24 * 4  # four acquisitions in the period
    with open_parcel_store(store_url) as store:
        observed = store.observations()
    assert len(observed) == 24 * 4 and sum(g["usable"] for g in groups) == int(observed.usable.sum())


def test_a_group_reads_its_own_zone_on_its_own_grid_where_zones_overlap(season):
    """Zones overlap near 12 E (each reaches past its meridian as its granules do): a group's pixels come
    from its own zone as stored, never from the neighbour's warped onto it."""
    import zarr

    cube, store = season
    stored = zarr.open_group(cube.repo.readonly_session(branch="main").store, mode="r")
    parcels = store.parcels()
    for group in store.groups().itertuples():
        members = parcels[parcels.group_id == group.group_id]
        roi = group_geobox(cube, tuple(members.total_bounds), group.utm_zone)
        zone_name = f"epsg{group.utm_zone}"
        zone = cube.spec.zones[zone_name]
        assert zone.extent.contains(roi.extent)  # the zone reaches past 12 E over the whole group
        area = Geometry(shapely.union_all(members.geometry.values), "EPSG:4326")
        tile = cube.load(roi, "2024-06-06", variables=["B04"], offline=True, area=area)
        col0 = round((roi.transform.c - zone.transform.c) / 10.0)
        row0 = round((zone.transform.f - roi.transform.f) / 10.0)
        step = list(cube.spec.time).index(pd.Timestamp("2024-06-06"))
        own = stored[zone_name]["B04"][step, row0:row0 + roi.shape.y, col0:col0 + roi.shape.x]
        held = own != 0
        assert held.mean() > 0.9
        np.testing.assert_array_equal(tile.B04.values[0][held], own[held])


def test_reimporting_or_unwatching_again_never_restarts_the_retention_clock(store_url):
    import time

    from stacube.fields.store import OBSERVATION_COLUMNS

    parcels = clean_parcels(season_parcels(), "parcel_id").parcels
    row = {c: None for c in OBSERVATION_COLUMNS}
    row.update(parcel_id="P00", date=pd.Timestamp("2024-05-06"), ndvi_mean=0.5, ndvi_median=0.5, ndvi_std=0.0,
               ndmi_mean=0.1, ndmi_median=0.1, ndmi_std=0.0, valid_pixels=9, total_pixels=9, valid_fraction=1.0,
               usable=True, reason=None, run_id="r")
    with open_parcel_store(store_url) as store:
        store.add_parcels(parcels)
        store.write_observations(pd.DataFrame([row])[OBSERVATION_COLUMNS])
        store.watch(["P00"], False)
        time.sleep(1.2)
        cutoff = pd.Timestamp.now(tz="UTC").tz_localize(None)  # P00 has been unwatched since before this
        time.sleep(1.2)
        store.add_parcels(parcels)  # the routine re-import of the whole parcel file
        store.watch(["P00"], False)  # and unwatching it again
        assert store.purge_unwatched(cutoff) == 1  # before: 0, the clock restarted at the re-import
        with pytest.raises(ParcelError, match="more than once"):
            store.add_parcels(pd.concat([parcels.iloc[:1], parcels.iloc[:1]]))


def test_ids_are_judged_as_stored_and_coordinates_that_cannot_be_where_they_say_are_rejected():
    import geopandas as gpd

    square = shapely.box(12.0, 47.0, 12.002, 47.001)
    frame = gpd.GeoDataFrame({"id": [1, "1", " P7", "P7", 17.0, "ok"],
                              "geometry": [square] * 5 + [shapely.box(12.01, 47.0, 12.012, 47.001)]},
                             crs="EPSG:4326")
    cleaned = clean_parcels(frame, "id")
    assert list(cleaned.parcels.parcel_id) == ["17", "ok"]  # 17.0 (a float column) is stored as 17
    assert sorted(cleaned.rejected.parcel_id) == ["1", "1", "P7", "P7"]  # before: all kept, one lost in the store
    metres_as_degrees = gpd.GeoDataFrame({"id": ["m"], "geometry": [shapely.box(650_000, 5_200_000, 650_200,
                                                                                 5_200_150)]}, crs="EPSG:4326")
    degrees_as_metres = gpd.GeoDataFrame({"id": ["d"], "geometry": [square]}, crs="EPSG:32632")
    for wrong in (metres_as_degrees, degrees_as_metres):
        cleaned = clean_parcels(wrong, "id")
        assert cleaned.parcels.empty and len(cleaned.rejected) == 1  # before: kept, in a nonsense group
    named = frame.iloc[5:].rename_geometry("geom")
    assert list(clean_parcels(named, "id").parcels.parcel_id) == ["ok"]  # before: AttributeError
