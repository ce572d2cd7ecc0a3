"""End to end: a cube over a served STAC collection, loads compared with odc-stac on the same Items."""

from __future__ import annotations

import json
import warnings

import numpy as np
import odc.stac
import pandas as pd
import pystac_client
import pytest
import xarray as xr
from odc.geo.geobox import GeoBox

from stacube import Cube
from stacube.testing.generate import DEM_NODATA


def items_of(api_url: str, collection: str = "sample-dem"):
    return list(pystac_client.Client.open(api_url).search(collections=[collection]).items())


def odc_reference(items, geobox: GeoBox, groupby=lambda item, parsed, index: 0):
    ref = odc.stac.load(items, bands=["dem", "datamask"], geobox=geobox, groupby=groupby,
                        dtype={"dem": "float32", "datamask": "uint8"})
    dem = ref.dem.values
    return np.where(dem == DEM_NODATA, np.nan, dem).astype("float32"), ref.datamask.values


@pytest.mark.parametrize(
    "window",
    [
        (slice(100, 700), slice(300, 1100)),  # aligned with the zone grid: pasted
        (slice(0, 1856), slice(0, 1856)),  # the whole zone
        (slice(440, 460), slice(440, 470)),  # a few pixels inside one patch, over a tile overlap
    ],
)
def test_load_equals_odc_stac_on_the_same_items(servers, make_cube, sample_layout, window):
    _, api = servers
    cube = make_cube(api.url)
    roi = sample_layout.extent_geobox()[window]
    tile = cube.load(roi)
    dem, mask = odc_reference(items_of(api.url), roi)
    assert tile.dem.dtype == np.float32 and tile.datamask.dtype == np.uint8  # dtypes kept end to end
    assert tile.odc.geobox == roi
    np.testing.assert_array_equal(tile.dem.values, dem[0])
    np.testing.assert_array_equal(tile.datamask.values, mask[0])
    assert np.isfinite(tile.dem.values).mean() > 0.5
    assert tile.attrs["missing_patches"] == []
    # the cold load pasted what its run wrote; the committed cube, read back, holds exactly that
    xr.testing.assert_identical(cube.load(roi, offline=True).drop_attrs(), tile.drop_attrs())


def test_a_load_over_patches_partly_filled_before_equals_odc_stac(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    cube.load(zone[200:500, 600:900])  # fills some of the patches under the next ROI
    roi = zone[100:900, 300:1300]
    plan = cube.plan(roi)
    assert 0 < len(plan.missing) < len(plan.patches)
    tile = cube.load(roi)
    dem, mask = odc_reference(items_of(api.url), roi)
    np.testing.assert_array_equal(tile.dem.values, dem[0])
    np.testing.assert_array_equal(tile.datamask.values, mask[0])


def test_load_on_a_coarser_grid_in_another_crs_reprojects(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    roi = GeoBox.from_bbox(zone[200:800, 200:800].extent.to_crs("EPSG:3857").boundingbox, "EPSG:3857",
                           resolution=40)
    tile = cube.load(roi, variables="datamask")
    assert list(tile.data_vars) == ["datamask"]
    _, mask = odc_reference(items_of(api.url), roi)
    # Nearest resampling from the cube's 10 m grid or from the 10 m source grid picks the same pixels
    # except where a 40 m cell centre falls within floating-point distance of a pixel edge.
    assert (tile.datamask.values == mask[0]).mean() > 0.99


def test_second_load_needs_no_server_and_offline_load_reports_missing(private_servers, tmp_path, sample_layout):
    from .conftest import dem_spec

    _, files, api = private_servers
    cube = Cube.create(tmp_path / "c", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "cat")
    zone = sample_layout.extent_geobox()
    roi = zone[0:400, 0:400]
    cold = cube.load(roi)
    history_before = cube.history()
    files.stop()
    api.stop()
    warm = Cube.open(tmp_path / "c", catalog_dir=tmp_path / "cat").load(roi)  # would fail if it touched a server
    np.testing.assert_array_equal(warm.dem.values, cold.dem.values)
    assert cube.history().equals(history_before)  # a warm load writes nothing

    with pytest.warns(UserWarning, match=r"4 patch\(es\) under the ROI are not in the cube"):
        offline = cube.load(zone[0:400, 0:800], offline=True)
    np.testing.assert_array_equal(offline.dem.values[:, :400], cold.dem.values)
    assert np.isnan(offline.dem.values[:, 512:]).all()
    missing = ["epsg3413/y0x2", "epsg3413/y0x3", "epsg3413/y1x2", "epsg3413/y1x3"]
    assert sorted(offline.attrs["missing_patches"]) == missing


def test_only_missing_patches_are_downloaded_and_each_run_is_one_snapshot(servers, make_cube, sample_layout):
    _, api = servers
    cube = make_cube(api.url)
    zone = sample_layout.extent_geobox()
    first = cube.download(zone[0:512, 0:512])
    assert sorted(first.patches_written) == ["epsg3413/y0x0", "epsg3413/y0x1", "epsg3413/y1x0", "epsg3413/y1x1"]
    second = cube.download(zone[0:512, 0:1024])
    assert second.patches_already_filled == 4
    assert sorted(second.patches_written) == ["epsg3413/y0x2", "epsg3413/y0x3", "epsg3413/y1x2", "epsg3413/y1x3"]
    nothing = cube.download(zone[0:512, 0:1024])
    assert nothing.snapshot_id is None and nothing.patches == 0
    history = cube.history()
    assert list(history.snapshot[:2]) == [second.snapshot_id, first.snapshot_id]
    assert len(history) == 4  # root, create, two runs
    state = cube.state()
    assert len(state) == 8 and state.crs == "EPSG:4326"
    assert set(state[state.snapshot == first.snapshot_id].id) == set(first.patches_written)
    with pytest.warns(UserWarning, match="not in the cube"):
        old = cube.load(zone[0:512, 0:1024], at=first.snapshot_id)  # the cube as the first run left it
    assert old.attrs["stacube_snapshot"] == first.snapshot_id
    assert sorted(old.attrs["missing_patches"]) == sorted(second.patches_written)
    assert np.isnan(old.dem.values[:, 512:]).all() and np.isfinite(old.dem.values[:, :512]).mean() > 0.9
    assert len(cube.history()) == 4  # reading an old version wrote nothing
    meta = cube.repo.lookup_snapshot(second.snapshot_id).metadata["stacube"]
    assert meta["patches"] == second.patches_written and "tile_r0_c2" in meta["items"]
    assert meta["runner"] == "local" and meta["source"].endswith("#sample-dem")


def test_cube_open_needs_nothing_but_its_path(servers, make_cube, tmp_path):
    _, api = servers
    cube = make_cube(api.url)
    again = Cube.open(tmp_path / "cube.icechunk", catalog_dir=tmp_path / "catalog")
    assert again.spec.to_json() == cube.spec.to_json()
    assert Cube.open_or_create(tmp_path / "cube.icechunk", cube.spec).spec.name == "dem"


def test_mosaic_does_not_depend_on_item_order(servers, make_cube, sample_layout):
    from stacube.grid import PatchIndex
    from stacube.sources.stac.backend import StacBackend

    _, api = servers
    cube = make_cube(api.url)
    items = items_of(api.url)
    backend = StacBackend(cube.spec.source, cube.spec.variables)
    geobox = sample_layout.extent_geobox()[256:512, 256:512]
    forward = backend.read(PatchIndex("epsg3413", 1, 1, geobox, items=tuple(items)))
    backward = backend.read(PatchIndex("epsg3413", 1, 1, geobox, items=tuple(reversed(items))))
    for name in forward:
        np.testing.assert_array_equal(forward[name], backward[name])


def test_time_series_cube_matches_odc_stac_per_step(time_servers, tmp_path):
    import pandas as pd

    from stacube import CubeSpec, StacSource, Variable

    from ..conftest import TIME_LAYOUT

    _, api = time_servers
    spec = CubeSpec(
        name="series",
        zones=[TIME_LAYOUT.extent_geobox()],
        chunks=(256, 256),
        variables={"dem": Variable("float32"), "datamask": Variable("uint8", nodata=0)},
        time=pd.date_range("2021-06-01", periods=7, freq="D"),
        source=StacSource(api_url=api.url, collection="sample-series", assets={"dem": "dem", "datamask": "datamask"}),
    )
    cube = Cube.create(tmp_path / "series", spec, catalog_dir=tmp_path / "cat")
    roi = TIME_LAYOUT.extent_geobox()[100:600, 100:600]
    tile = cube.load(roi, toi=slice("2021-06-02", "2021-06-05"))
    # days without acquisitions (06-02, 06-04) are left out, as odc-stac leaves them out
    assert list(tile.time.dt.strftime("%Y-%m-%d").values) == ["2021-06-03", "2021-06-05"]
    dem, _ = odc_reference(items_of(api.url, "sample-series"), roi, groupby="time")
    np.testing.assert_array_equal(tile.dem.values[0], dem[1])  # 06-03
    np.testing.assert_array_equal(tile.dem.values[1], dem[2])  # 06-05
    xr.testing.assert_identical(cube.load(roi, toi=slice("2021-06-02", "2021-06-05"), offline=True).drop_attrs(),
                                tile.drop_attrs())
    every = cube.load(roi, toi=slice("2021-06-02", "2021-06-05"), empty_steps=True)
    assert list(every.time.dt.strftime("%d").values) == ["02", "03", "04", "05"]
    assert np.isnan(every.dem.values[[0, 2]]).all()  # kept on request: nodata
    np.testing.assert_array_equal(every.dem.values[[1, 3]], tile.dem.values)
    nothing = cube.load(roi, toi=["2021-06-02", "2021-06-04"])  # only days without acquisitions
    assert nothing.sizes["time"] == 0 and nothing.dem.shape == (0, *roi.shape.yx)
    state = cube.state()
    assert set(state[~state.has_data].time.dt.strftime("%m-%d")) == {"06-02", "06-04"}
    from stacube import TOIError

    before = cube.history()
    with pytest.raises(TOIError, match=r"'2030-01' is outside the time axis \[2021-06-01 00:00, 2021-06-07 00:00\]"):
        cube.load(roi, toi="2030-01")
    assert cube.history().equals(before)


def test_result_does_not_depend_on_concurrency(servers, tmp_path, sample_layout):
    from .conftest import dem_spec

    _, api = servers
    zone = sample_layout.extent_geobox()
    tiles = []
    for concurrency in (1, 8):
        cube = Cube.create(tmp_path / f"c{concurrency}", dem_spec(api.url, sample_layout), catalog_dir=tmp_path / "cat")
        tiles.append(cube.load(zone, concurrency=concurrency))
    np.testing.assert_array_equal(tiles[0].dem.values, tiles[1].dem.values)
    np.testing.assert_array_equal(tiles[0].datamask.values, tiles[1].datamask.values)


def test_nodata_declared_only_in_raster_bands_is_honoured(tmp_path):
    """Files without a nodata tag: the Items' raster:bands nodata still keeps borders out of the data."""
    from stacube import Variable
    from stacube.testing.generate import SampleLayout, generate_sample
    from stacube.testing.servers import serve_sample

    from .conftest import dem_spec

    layout = SampleLayout(rows=2, cols=2, file_nodata=False)
    folder = generate_sample(tmp_path / "sample", layout)
    with serve_sample(folder) as (_, api):
        variables = {"dem": Variable("float32"), "datamask": Variable("bool")}
        cube = Cube.create(tmp_path / "c", dem_spec(api.url, layout, variables=variables), catalog_dir=tmp_path / "cat")
        zone = layout.extent_geobox()
        tile = cube.load(zone)
        dem, mask = odc_reference(items_of(api.url), zone)
    assert tile.datamask.dtype == bool
    assert not (tile.dem.values == DEM_NODATA).any()  # -9999 never leaks in as data
    np.testing.assert_array_equal(tile.dem.values, dem[0])
    np.testing.assert_array_equal(tile.datamask.values, mask[0] > 0)
    # Tile overlaps: the nodata border of one tile did not punch holes into its neighbour's data.
    step = layout.step
    assert np.isfinite(tile.dem.values[100:400, step - 20 : step + 20]).all()


def test_uncovered_pixels_are_nodata_even_when_nobody_declares_nodata(tmp_path):
    """Neither files nor Items declare nodata: where no Item reaches, integer variables hold their nodata, not 0."""
    from odc.geo.geobox import GeoBox as Box

    from stacube import Variable
    from stacube.testing.generate import SampleLayout, generate_sample
    from stacube.testing.servers import serve_sample

    from .conftest import dem_spec

    layout = SampleLayout(rows=1, cols=2, file_nodata=False, item_nodata=False)
    folder = generate_sample(tmp_path / "sample", layout)
    extent = layout.extent_geobox()
    zone = Box((extent.shape.y + 256, extent.shape.x), extent.transform, extent.crs)  # 256 rows below the tiles
    variables = {"dem": Variable("float32"), "datamask": Variable("int16", nodata=-32768)}
    with serve_sample(folder) as (_, api):
        cube = Cube.create(tmp_path / "c", dem_spec(api.url, layout, zones=[zone], variables=variables),
                           catalog_dir=tmp_path / "cat")
        tile = cube.load(zone)
    assert tile.datamask.dtype == np.int16
    below = tile.datamask.values[extent.shape.y :]
    assert (below == -32768).all() and np.isnan(tile.dem.values[extent.shape.y :]).all()
    inside = tile.datamask.values[100 : extent.shape.y - 100, 100:400]
    assert set(np.unique(inside)) <= {1, 2, 3}


def test_recent_steps_without_items_stay_unfilled_until_the_source_settles(time_servers, tmp_path):
    import pandas as pd

    from stacube import CubeSpec, StacSource, Variable

    from ..conftest import TIME_LAYOUT

    _, api = time_servers
    today = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    spec = CubeSpec(
        name="recent",
        zones=[TIME_LAYOUT.extent_geobox()],
        chunks=(256, 256),
        variables={"dem": Variable("float32")},
        time=pd.date_range(today - pd.Timedelta(days=1), periods=2, freq="D"),
        source=StacSource(api_url=api.url, collection="sample-series", assets={"dem": "dem"}),
    )
    cube = Cube.create(tmp_path / "recent", spec, catalog_dir=tmp_path / "cat")
    roi = TIME_LAYOUT.extent_geobox()[0:256, 0:256]
    report = cube.download(roi)
    assert report.snapshot_id is None and len(report.patches_pending) == 2 and report.patches_empty == []
    assert len(cube.state()) == 0 and len(cube.history()) == 2
    window = cube.catalog.windows()[-1]
    assert not window.settled(spec.source.lag)  # so the next load asks the API again
    assert not cube.catalog.covers(window, spec.source.lag)


def _today_pair(tmp_path):
    """Two overlapping tiles of today, served as files; the Items of the first alone, and of both."""
    import pandas as pd

    from stacube.testing.generate import SampleLayout, generate_sample, publish_items
    from stacube.testing.servers import start_file_server

    today = pd.Timestamp.now(tz="UTC").tz_localize(None).normalize()
    layout = SampleLayout(rows=1, cols=2, times=((today + pd.Timedelta(hours=1)).isoformat(),))
    folder = generate_sample(tmp_path / "sample", layout, collection="s")
    files = start_file_server(folder)
    both = publish_items(folder, files.url, folder / "both.json")
    collection = json.loads(both.read_text())
    first = folder / "first.json"
    first.write_text(json.dumps(dict(collection, features=[f for f in collection["features"] if "_c0_" in f["id"]])))
    return today, layout, files, first, both


def test_a_recent_patch_with_some_data_is_read_again_when_a_neighbouring_tile_arrives_later(tmp_path, monkeypatch):
    import pandas as pd

    import stacube.run
    from stacube import CubeSpec, StacSource, Variable
    from stacube.testing.servers import free_port, start_stac_api

    today, layout, files, first, both = _today_pair(tmp_path)
    port = free_port()
    api = start_stac_api(first, port=port)
    spec = CubeSpec(name="late", zones=[layout.extent_geobox()], chunks=(256, 256),
                    variables={"dem": Variable("float32")}, time=pd.date_range(today, periods=1, freq="D"),
                    source=StacSource(api_url=api.url, collection="s", assets={"dem": "dem"}))
    cube = Cube.create(tmp_path / "cube", spec, catalog_dir=tmp_path / "cat")
    roi = layout.extent_geobox()
    try:
        # the run commits 4 days later, past the 3-day lag; it judges by when it asked the catalog (today)
        monkeypatch.setattr(stacube.run, "utc_now", lambda: pd.Timestamp.now(tz="UTC").tz_localize(None)
                            + pd.Timedelta(days=4))
        first_run = cube.download(roi)
        assert first_run.patches_provisional and set(first_run.patches_provisional) <= set(first_run.patches_written)
        assert not set(first_run.patches_written) & set(cube.state().id)  # nothing recorded as filled yet
        meta = cube.repo.lookup_snapshot(first_run.snapshot_id).metadata["stacube"]
        assert meta["patches_provisional"] == first_run.patches_provisional
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            shown = cube.load(roi, offline=True)  # what the cube holds, flagged as not final
        assert shown.attrs["provisional_patches"] == first_run.patches_provisional
        assert sorted(shown.attrs["missing_patches"]) == first_run.patches_pending
        api.stop()
        api = start_stac_api(both, port=port)  # the neighbouring tile is published (same day, within the lag)
        second = cube.download(roi)
        assert set(first_run.patches_provisional) <= set(second.patches_written)  # read again, with both tiles
        tile = cube.load(roi, offline=True)
        fresh = Cube.create(tmp_path / "fresh", spec, catalog_dir=tmp_path / "cat2").load(roi)
        np.testing.assert_array_equal(tile.dem.values, fresh.dem.values)  # as a cube made after both arrived
        assert np.isfinite(tile.dem.values[0, 100:400, 496:512]).all()  # only the second tile covers these
    finally:
        api.stop()
        files.stop()


def test_a_solar_day_is_settled_12_hours_after_its_utc_end_plus_the_lag():
    import dataclasses

    import pandas as pd

    from stacube import CubeSpec, StacSource, Variable
    from stacube.grid import PatchIndex
    from stacube.plan import settled

    from ..conftest import TIME_LAYOUT

    spec = CubeSpec(name="s", zones=[TIME_LAYOUT.extent_geobox()], chunks=(256, 256),
                    variables={"dem": Variable("float32")}, time=pd.date_range("2024-06-01", periods=2, freq="D"),
                    source=StacSource(api_url="http://127.0.0.1:9", collection="c", assets={"dem": "dem"},
                                      publication_lag="1h"))
    day = (pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-02"))
    patch = PatchIndex("epsg3413", 0, 0, TIME_LAYOUT.extent_geobox(), 0, day)
    at = pd.Timestamp("2024-06-02T02:00")  # the UTC day's end + the lag has passed; not + 12 h
    assert settled(spec, patch, at)
    solar = dataclasses.replace(spec, group_by="solar_day")
    assert not settled(solar, patch, at)  # an Item of that solar day may be stamped up to 12:00 UTC the next day
    assert settled(solar, patch, pd.Timestamp("2024-06-02T13:00"))
    assert settled(spec, dataclasses.replace(patch, time_index=None, time_range=None), pd.Timestamp("1970-01-01"))


def _three_day_cube(path, catalog_dir, api_url: str) -> Cube:
    """A cube over the time sample whose axis covers only 2021-06-01..03."""
    from stacube import CubeSpec, StacSource, Variable

    from ..conftest import TIME_LAYOUT

    spec = CubeSpec(name="days", zones=[TIME_LAYOUT.extent_geobox()], chunks=(256, 256),
                    variables={"dem": Variable("float32")}, time=pd.date_range("2021-06-01", periods=3, freq="D"),
                    source=StacSource(api_url=api_url, collection="sample-series", assets={"dem": "dem"}))
    return Cube.create(path, spec, catalog_dir=catalog_dir)


def test_a_time_axis_grows_at_its_end_without_rewriting_the_cube(time_servers, tmp_path):
    from stacube import TOIError

    from ..conftest import TIME_LAYOUT

    _, api = time_servers
    cube = _three_day_cube(tmp_path / "growing", tmp_path / "cat", api.url)
    stale = Cube.open(tmp_path / "growing", catalog_dir=tmp_path / "cat")  # opened before the axis grows
    roi = TIME_LAYOUT.extent_geobox()[100:600, 100:600]
    first = cube.load(roi, toi="2021-06-03")
    before = cube.history().snapshot.iloc[0]
    with pytest.raises(TOIError, match=r"'2021-06-05' is outside the time axis .*extend_time"):
        cube.load(roi, toi="2021-06-05")
    grown = cube.extend_time("2021-06-07")
    assert grown is not None and len(cube.spec.time) == 7 and cube.extend_time("2021-06-06") is None
    assert cube.history().snapshot.iloc[1] == before  # one snapshot on top, nothing else changed
    tile = stale.load(roi, toi="2021-06-05")  # the stale Cube object reads the grown axis from the cube
    assert list(tile.time.dt.strftime("%d").values) == ["05"]
    dem, _ = odc_reference(items_of(api.url, "sample-series"), roi, groupby="time")
    np.testing.assert_array_equal(tile.dem.values[0], dem[2])  # 06-05, as odc-stac reads it
    again = cube.load(roi, toi="2021-06-03", offline=True)
    np.testing.assert_array_equal(again.dem.values, first.dem.values)  # what was there is untouched
    assert len(Cube.open(tmp_path / "growing").spec.time) == 7
    old = cube.load(roi, toi="2021-06-03", at=before)  # an old version keeps its own, shorter axis
    np.testing.assert_array_equal(old.dem.values, first.dem.values)
    with pytest.raises(TOIError, match="outside the time axis"):
        cube.load(roi, toi="2021-06-05", at=before)
    assert cube.state().time.max() == pd.Timestamp("2021-06-05")


def test_a_run_in_flight_while_the_time_axis_grows_still_lands(time_servers, tmp_path):
    from stacube.runners import LocalRunner

    from ..conftest import TIME_LAYOUT

    _, api = time_servers
    cube = _three_day_cube(tmp_path / "racing", tmp_path / "cat", api.url)
    other = Cube.open(tmp_path / "racing", catalog_dir=tmp_path / "cat")

    class GrowsMidRun(LocalRunner):
        def imap(self, task, patches):  # the patches are written; before the commit, another process grows the axis
            yield from super().imap(task, patches)
            other.extend_time("2021-06-07")

    roi = TIME_LAYOUT.extent_geobox()[100:600, 100:600]
    report = cube.download(roi, toi="2021-06-03", runner=GrowsMidRun(progress=False))
    assert report.patches_written and len(cube.history()) == 4  # initial, create, grow, this run
    assert cube.history().message.iloc[1].startswith("stacube: extend the time axis")
    tile = cube.load(roi, toi="2021-06-03", offline=True)
    dem, _ = odc_reference(items_of(api.url, "sample-series"), roi, groupby="time")
    np.testing.assert_array_equal(tile.dem.values[0], dem[1])  # 06-03 landed on the grown cube
    assert len(Cube.open(tmp_path / "racing").spec.time) == 7


def test_an_interactive_download_shows_patches_megabytes_rate_and_eta_and_a_quiet_one_nothing(
        servers, make_cube, sample_layout, capsys, tmp_path):
    zone = sample_layout.extent_geobox()
    report = make_cube(servers[1].url).download(zone[0:512, 0:512], progress=True)
    shown = capsys.readouterr().err.replace("\r", "\n").splitlines()
    final = [line for line in shown if "4/4" in line]
    assert final and final[-1].startswith("download: 100%") and "patch/s" in final[-1]
    assert f"{report.bytes_written / 1e6:.1f} MB" in final[-1]
    from .conftest import dem_spec

    quiet = Cube.create(tmp_path / "quiet", dem_spec(servers[1].url, sample_layout), catalog_dir=tmp_path / "c2")
    quiet.download(zone[0:512, 0:512], progress=False)
    assert "download" not in capsys.readouterr().err


def test_the_arcticdem_spec_reads_a_mosaic_on_its_own_grid_as_odc_stac_does(servers, sample_layout, tmp_path):
    """The ready-made ArcticDEM cube, pointed at the sample (an EPSG:3413 mosaic at 10 m, like PGC's):
    the whole-Arctic zone plans only the ROI, and pixels land unresampled, equal to odc-stac's."""
    from stacube.datasets import arcticdem_spec

    spec = arcticdem_spec(10, api_url=servers[1].url, collection="sample-dem")
    assert spec.zones["epsg3413"].shape == (750020, 740020)  # PGC's published tiles at 10 m (100 m buffer)
    cube = Cube.create(tmp_path / "arcticdem", spec, catalog_dir=tmp_path / "catalog")
    roi = sample_layout.extent_geobox()[300:1100, 200:1000]
    tile = cube.load(roi)
    dem, mask = odc_reference(items_of(servers[1].url), roi)
    np.testing.assert_array_equal(tile.dem.values, dem[0])
    np.testing.assert_array_equal(tile.datamask.values, mask[0])
    assert len(cube.state()) == len(cube.plan(roi).patches) <= 4  # 2048-px patches under the ROI only
