"""Earth Engine collections become STAC Items in the local catalog: the real client against a loopback emulator."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
from affine import Affine

from stacube.catalog import LocalCatalog, Window
from stacube.testing.earthengine import EarthEngineEmulator, EmulatedImage, serve_earthengine

ee = pytest.importorskip("ee")
COLLECTION = "TEST/SENTINEL_LIKE"


def _image(day: str, column: int, *, x0: float = 500000.0) -> EmulatedImage:
    """A 64 x 48 px image in UTM 33N, one per day and column (columns overlap by 4 px), with a uint16 band
    and a float32 band."""
    rng = np.random.default_rng(column)
    return EmulatedImage(
        asset_id=f"{COLLECTION}/{day.replace('-', '')}_c{column}",
        start=pd.Timestamp(f"{day}T10:00:00"), end=pd.Timestamp(f"{day}T10:00:01"),
        crs="EPSG:32633", transform=Affine(10.0, 0.0, x0 + column * 600.0, 0.0, -10.0, 5200000.0),
        bands={"B4": rng.integers(0, 10000, (48, 64), dtype="uint16"),
               "NDVI": rng.random((48, 64), dtype="float32")},
        properties={"CLOUDY_PIXEL_PERCENTAGE": 12.5 * column, "SPACECRAFT": "emulated", "nested": {"a": 1}},
    )


@pytest.fixture
def emulator(monkeypatch):
    """The emulator with six images (three days x two columns), and the real client initialised against it."""
    import google.oauth2.credentials

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    # Initialize also fetches a deprecated-datasets list from a fixed public address: never from tests.
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", lambda: {})
    images = [_image(day, c) for day in ("2024-06-01", "2024-06-06", "2024-06-11") for c in (0, 1)]
    with serve_earthengine(EarthEngineEmulator(images, page_size=4)) as running:
        ee.Initialize(credentials=google.oauth2.credentials.Credentials(token="test"), project="test-project",
                      url=running.url)
        yield running


def test_a_collection_becomes_items_with_bands_projection_and_the_asset_id(emulator, tmp_path):
    from stacube.sources.earthengine.catalog import sync_earthengine_window

    catalog = LocalCatalog(tmp_path, emulator.url, COLLECTION)
    window = Window((14.0, 46.0, 16.0, 48.0), pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-30"))
    assert sync_earthengine_window(catalog, COLLECTION, window) == 6
    # 6 images in pages of 4 that start in the window, then one page of none that started before it
    assert sum(":listAssets" in r for r in emulator.requests) == 3
    items = {i.id: i for i in catalog.search(datetime="2024-06-05T00:00:00Z/2024-06-07T00:00:00Z")}
    assert sorted(items) == ["20240606_c0", "20240606_c1"]
    item = items["20240606_c1"]
    image = emulator.images[f"{COLLECTION}/20240606_c1"]
    assert item.properties["earthengine:id"] == image.asset_id
    assert item.properties["CLOUDY_PIXEL_PERCENTAGE"] == 12.5 and "nested" not in item.properties
    assert pd.Timestamp(item.properties["start_datetime"]) == pd.Timestamp("2024-06-06T10:00:00Z")
    b4, ndvi = item.assets["B4"], item.assets["NDVI"]
    assert b4.href == f"earthengine://{image.asset_id}" and b4.extra_fields["earthengine:band"] == "B4"
    assert b4.extra_fields["proj:code"] == "EPSG:32633" and b4.extra_fields["proj:shape"] == [48, 64]
    assert b4.extra_fields["proj:transform"] == [10.0, 0.0, 500600.0, 0.0, -10.0, 5200000.0]
    assert b4.extra_fields["raster:bands"][0]["data_type"] == "uint16"
    assert ndvi.extra_fields["raster:bands"][0]["data_type"] == "float32"
    footprint = image.footprint.boundingbox
    np.testing.assert_allclose(item.bbox, list(footprint), rtol=1e-9)


def test_a_resync_converts_only_images_new_since_the_last_sync(emulator, tmp_path):
    from stacube.sources.earthengine.catalog import sync_earthengine_window

    catalog = LocalCatalog(tmp_path, emulator.url, COLLECTION)
    june = Window((14.0, 46.0, 16.0, 48.0), pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-08"))
    assert sync_earthengine_window(catalog, COLLECTION, june) == 4  # two days x two columns
    emulator.requests.clear()
    assert sync_earthengine_window(catalog, COLLECTION, june) == 0  # covered: Earth Engine is not asked
    assert emulator.requests == []
    later = Window((14.0, 46.0, 16.0, 48.0), pd.Timestamp("2024-06-08"), pd.Timestamp("2024-06-30"))
    emulator.add(_image("2024-06-16", 0))  # published after the first sync
    assert sync_earthengine_window(catalog, COLLECTION, later) == 3  # 06-11 (two columns) and 06-16
    assert len(catalog) == 7
    from stacube.sources.earthengine.catalog import list_images

    assert len(list_images(COLLECTION, later)) == 3  # the time filter reached Earth Engine (not 7 images)
    far = Window((100.0, 10.0, 101.0, 11.0), pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-30"))
    assert list_images(COLLECTION, far) == []  # and so did the region filter


def _items(emulator, tmp_path, window):
    from stacube.sources.earthengine.catalog import sync_earthengine_window

    catalog = LocalCatalog(tmp_path, emulator.url, COLLECTION)
    sync_earthengine_window(catalog, COLLECTION, window)
    return sorted(catalog.search(), key=lambda i: (i.datetime, i.id))


def _reference(images, band, geobox, nodata):
    """The emulator's rasters resampled by odc-geo (nearest) onto ``geobox``, first image on top."""
    from odc.geo.geobox import GeoBox
    from odc.geo.warp import rio_reproject

    out = np.full(geobox.shape.yx, nodata, dtype=images[0].bands[band].dtype)
    for image in reversed(images):  # later images first, so the first one ends on top
        wide = np.full(geobox.shape.yx, np.nan)  # float64 and NaN: every integer value survives the warp
        rio_reproject(image.bands[band].astype("float64"), wide, GeoBox(image.shape, image.transform, image.crs),
                      geobox, "nearest", src_nodata=None, dst_nodata=np.nan)
        np.copyto(out, np.nan_to_num(wide).astype(out.dtype), where=~np.isnan(wide))
    return out


def _patch_grid(x0, y0, shape, resolution=10.0, crs="EPSG:32633"):
    from odc.geo.geobox import GeoBox

    return GeoBox(shape, Affine(resolution, 0.0, x0, 0.0, -resolution, y0), crs)


def test_pixels_of_one_image_and_of_a_mosaic_equal_odc_geo_resampling(emulator, tmp_path):
    from stacube.sources.earthengine.backend import read_band

    day = Window((14.0, 46.0, 16.0, 48.0), pd.Timestamp("2024-06-06"), pd.Timestamp("2024-06-07"))
    items = _items(emulator, tmp_path, day)
    images = [emulator.images[i.properties["earthengine:id"]] for i in items]
    # straddles the two columns (x 500000-501280) and the images' southern edge: nodata below 5199520
    grid = _patch_grid(500300.0, 5199700.0, (30, 70))
    for band, nodata in (("B4", 0), ("NDVI", float("nan"))):
        mosaic = read_band(items, band, grid, images[0].bands[band].dtype, nodata)
        np.testing.assert_array_equal(mosaic, _reference(images, band, grid, nodata))
        one = read_band(items[:1], band, grid, images[0].bands[band].dtype, nodata)
        np.testing.assert_array_equal(one, _reference(images[:1], band, grid, nodata))
    overlap = (slice(None), slice(30, 34))  # x 500600-500640: both images; the first one must win
    first_on_top, last_on_top = _reference(images, "B4", grid, 0), _reference(images[::-1], "B4", grid, 0)
    assert not np.array_equal(first_on_top[overlap], last_on_top[overlap])  # so the order above was checked
    assert any(r.endswith("image:computePixels") for r in emulator.requests)
    assert any(r.endswith(":getPixels") for r in emulator.requests)
    assert np.isnan(read_band(items, "NDVI", grid, "float32", float("nan"))[-5:]).all()  # south of the images


def test_a_patch_over_the_request_limit_is_split_into_several_requests(emulator, tmp_path, monkeypatch):
    import stacube.sources.earthengine.backend as backend

    items = _items(emulator, tmp_path, Window((14.0, 46.0, 16.0, 48.0), pd.Timestamp("2024-06-06"),
                                              pd.Timestamp("2024-06-07")))
    grid = _patch_grid(500000.0, 5200000.0, (48, 128))
    whole = backend.read_band(items, "B4", grid, "uint16", 0)
    monkeypatch.setattr(backend, "MAX_REQUEST_BYTES", 48 * 128 * 3 // 5)  # a fifth of the patch per request
    emulator.requests.clear()
    split = backend.read_band(items, "B4", grid, "uint16", 0)
    np.testing.assert_array_equal(split, whole)
    assert sum("computePixels" in r for r in emulator.requests) == 6  # 48 rows in windows of 9 rows


def test_a_429_storm_is_ridden_out_by_backing_off(emulator, tmp_path, monkeypatch):
    import stacube.sources.earthengine.backend as backend
    from stacube.sources.earthengine.backend import read_band

    items = _items(emulator, tmp_path, Window((14.0, 46.0, 16.0, 48.0), pd.Timestamp("2024-06-06"),
                                              pd.Timestamp("2024-06-07")))
    grid = _patch_grid(500000.0, 5200000.0, (48, 128))
    calm = read_band(items, "B4", grid, "uint16", 0)
    monkeypatch.setattr(backend, "MAX_REQUEST_BYTES", 48 * 128 * 3 // 3)  # three requests
    emulator.refuse_every_other, emulator.pixel_requests = True, 0
    stormy = read_band(items, "B4", grid, "uint16", 0)
    np.testing.assert_array_equal(stormy, calm)
    assert emulator.refused == 3 and emulator.pixel_requests == 6  # each request refused once, then served


def test_a_cube_over_an_earth_engine_collection_loads_cold_then_warm_without_requests(emulator, tmp_path,
                                                                                      monkeypatch):
    from stacube import Cube, CubeSpec, EarthEngineSource, Variable

    monkeypatch.setenv("STACUBE_EE_TOKEN", "secret-token-123")
    zone = _patch_grid(500000.0, 5200000.0, (64, 160))  # the images cover x 500000-501240, y 5199520-5200000
    spec = CubeSpec(name="ee", zones=[zone], chunks=(32, 64), time=pd.date_range("2024-06-01", periods=15, freq="D"),
                    variables={"red": Variable("uint16", nodata=0), "ndvi": Variable("float32")},
                    source=EarthEngineSource(COLLECTION, {"red": "B4", "ndvi": "NDVI"}, project="test-project",
                                             api_url=emulator.url))
    cube = Cube.create(tmp_path / "ee.icechunk", spec, catalog_dir=tmp_path / "catalog")
    roi = zone[5:60, 10:150]
    tile = cube.load(roi, toi="2024-06-06")
    images = [emulator.images[f"{COLLECTION}/20240606_c{c}"] for c in (0, 1)]
    np.testing.assert_array_equal(tile.red.values[0], _reference(images, "B4", roi, 0))
    np.testing.assert_array_equal(tile.ndvi.values[0], _reference(images, "NDVI", roi, float("nan")))
    assert np.isnan(tile.ndvi.values[0][-10:]).all()  # south of the images: nodata, not zeros
    emulator.requests.clear()
    again = Cube.open(tmp_path / "ee.icechunk", catalog_dir=tmp_path / "catalog").load(roi, toi="2024-06-06")
    np.testing.assert_array_equal(again.red.values, tile.red.values)
    assert emulator.requests == []  # warm: neither the catalog nor the pixels are asked for again
    meta = cube.repo.lookup_snapshot(tile.attrs["stacube_snapshot"]).metadata["stacube"]
    assert "Bearer secret-token-123" in emulator.authorizations  # the token was really used...
    assert meta["source"].startswith("earthengine:") and "secret-token-123" not in json.dumps(meta)  # ...not kept
    assert not any("secret-token-123" in p.read_bytes().decode("latin-1")
                   for p in (tmp_path / "catalog").rglob("*") if p.is_file())


def test_an_roi_across_the_antimeridian_loads_both_sides(emulator, tmp_path, monkeypatch):
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import unary_union

    from stacube import Cube, CubeSpec, EarthEngineSource, Variable

    monkeypatch.setenv("STACUBE_EE_TOKEN", "test")
    rng = np.random.default_rng(7)

    def image(name, crs, x0):  # 64 x 48 px of 50 m near 50 N, ending just short of 180 degrees
        return EmulatedImage(f"{COLLECTION}/{name}", pd.Timestamp("2024-07-01T10:00"), pd.Timestamp("2024-07-01T10:01"),
                             crs, Affine(50.0, 0.0, x0, 0.0, -50.0, 5540000.0),
                             {"B4": rng.integers(1, 10000, (48, 64), dtype="uint16"),
                              "NDVI": rng.random((48, 64), dtype="float32")})

    west = image("west_of_180", "EPSG:32660", 711000.0)  # UTM 60N: 180 degrees is near x 714700 here
    east = image("east_of_180", "EPSG:32601", 286000.0)  # UTM 1N: 180 degrees is near x 285300 here
    emulator.add(west)
    emulator.add(east)
    assert west.footprint.boundingbox.right < 180 and east.footprint.boundingbox.left > -180
    zones = [GeoBox(w.shape, w.transform, w.crs) for w in (west, east)]
    spec = CubeSpec(name="pacific", zones=zones, chunks=(16, 32), variables={"red": Variable("uint16", nodata=0)},
                    source=EarthEngineSource(COLLECTION, {"red": "B4"}, project="test-project", api_url=emulator.url))
    cube = Cube.create(tmp_path / "pacific", spec, catalog_dir=tmp_path / "catalog")
    both = unary_union([w.footprint.to_crs("EPSG:3832") for w in (west, east)])  # Pacific-centred Mercator
    roi = GeoBox.from_bbox(both.boundingbox, "EPSG:3832", resolution=60.0)
    assert roi.extent.to_crs("EPSG:4326", wrapdateline=True).geom.geom_type == "MultiPolygon"  # it crosses 180
    tile = cube.load(roi)
    expected = np.zeros(roi.shape.yx, "uint16")
    for img in (east, west):  # the first zone (west) wins where both have data
        part = _reference([img], "B4", roi, 0)
        np.copyto(expected, part, where=part != 0)
    got = tile.red.values
    # Nearest neighbour through each zone's window vs. through the whole image: GDAL's approximate
    # transformer (1/8 px) may pick the neighbouring source pixel at a few boundaries, never more.
    assert ((got != 0) != (expected != 0)).mean() < 0.001 and (got != expected).mean() < 0.005
    left, right = tile.red.values[:, : roi.shape.x // 3], tile.red.values[:, -roi.shape.x // 3 :]
    assert (left != 0).mean() > 0.5 and (right != 0).mean() > 0.5  # data on both sides of 180 degrees


def test_the_alphaearth_dataset_loads_across_a_utm_border(emulator, tmp_path, monkeypatch):
    from odc.geo.geobox import GeoBox

    from stacube import Cube
    from stacube.datasets import alphaearth_spec

    monkeypatch.setenv("STACUBE_EE_TOKEN", "test")
    spec = alphaearth_spec((11.995, 47.5, 12.005, 47.505), project="test-project", api_url=emulator.url,
                           collection="TEST/EMBEDDINGS", chunks=(32, 32), years=[2019, 2020])
    rng = np.random.default_rng(3)
    images = []
    for zone in spec.zones.values():  # one image per UTM zone and year, covering the zone's grid
        for year in (2019, 2020):
            bands = {f"A{i:02d}": rng.random(zone.shape.yx, dtype="float32") for i in range(64)}
            images.append(EmulatedImage(f"TEST/EMBEDDINGS/{zone.crs.epsg}_{year}", pd.Timestamp(f"{year}-01-01"),
                                        pd.Timestamp(f"{year + 1}-01-01"), str(zone.crs), zone.transform, bands))
            emulator.add(images[-1])
    roi = GeoBox.from_bbox((11.996, 47.501, 12.004, 47.504), "EPSG:4326", resolution=0.0001)  # across 12 E
    cube = Cube.create(tmp_path / "alphaearth", spec, catalog_dir=tmp_path / "catalog")
    emulator.requests.clear()
    import stacube.sources.earthengine.client

    monkeypatch.setenv("STACUBE_EE_TOKEN", "alphaearth-token")  # new to this process: credentials built once
    built = []
    monkeypatch.setattr(stacube.sources.earthengine.client, "_credentials",
                        lambda real=stacube.sources.earthengine.client._credentials: built.append(1) or real())
    tile = cube.load(roi, toi="2020", variables=["a00", "a63"])
    pixel_requests = [r for r in emulator.requests if r.endswith(("computePixels", "getPixels"))]
    assert len(pixel_requests) == cube.history().patches_written.iloc[0] > 1  # 64 bands: one request a patch
    assert len(built) == 1  # not once a patch
    assert list(tile.data_vars) == ["a00", "a63"] and tile.time.dt.year.values.tolist() == [2020]
    expected = np.full(roi.shape.yx, np.nan, dtype="float32")
    for image in reversed([i for i in images if i.start.year == 2020]):  # zones in spec order: the first wins
        part = _reference([image], "A63", roi, np.nan)
        np.copyto(expected, part, where=~np.isnan(part))
    got = tile.a63.values[0]
    assert not np.isnan(got).any() and not np.isnan(expected).any()  # both UTM zones filled their side
    assert (got != expected).mean() < 0.005  # nearest neighbour, up to GDAL's approximate transformer


def test_a_service_that_stops_answering_fails_the_read_at_the_deadline(emulator, tmp_path, monkeypatch):
    import time

    from stacube import Cube, CubeSpec, EarthEngineSource, PatchReadError, Variable
    from stacube.runners import LocalRunner

    monkeypatch.setenv("STACUBE_EE_TOKEN", "test")
    monkeypatch.setenv("STACUBE_EE_DEADLINE_S", "0.3")
    monkeypatch.setenv("STACUBE_EE_MAX_RETRIES", "1")  # the client's own retry, once
    zone = _patch_grid(500000.0, 5200000.0, (32, 64))
    spec = CubeSpec(name="ee", zones=[zone], chunks=(32, 64), variables={"red": Variable("uint16", nodata=0)},
                    time=pd.date_range("2024-06-06", periods=1, freq="D"),
                    source=EarthEngineSource(COLLECTION, {"red": "B4"}, project="test-project", api_url=emulator.url))
    cube = Cube.create(tmp_path / "ee", spec, catalog_dir=tmp_path / "catalog")
    before = cube.history().snapshot.iloc[0]
    emulator.latency_ms = 5000  # every pixel request now hangs far past the deadline
    started = time.perf_counter()
    with pytest.raises(PatchReadError, match=r"epsg32633/20240606T000000/y0x0 failed after 2 attempt"):
        cube.download(zone, runner=LocalRunner(retries=1, backoff=0.01, progress=False))
    assert time.perf_counter() - started < 15  # deadlines and retries included: never 5 s a request
    assert cube.history().snapshot.iloc[0] == before  # nothing committed


def test_a_single_image_without_time_is_a_source_and_its_masked_pixels_stay_nodata(emulator, tmp_path, monkeypatch):
    from stacube import Cube, CubeSpec, EarthEngineSource, Variable
    from stacube.sources.earthengine.catalog import list_images

    monkeypatch.setenv("STACUBE_EE_TOKEN", "test")
    rng = np.random.default_rng(11)
    elevation = rng.uniform(-5.0, 900.0, (40, 50)).astype("float32")
    lakes = np.zeros((40, 50), bool)
    lakes[10:20, 5:25] = True  # masked inside the image: must read as NaN, never as 0 m
    dem = EmulatedImage("TEST/DEM/v1_mosaic", None, None, "EPSG:32633", Affine(20.0, 0.0, 500000.0, 0.0, -20.0,
                        5200000.0), {"elevation": elevation}, masked={"elevation": lakes})
    emulator.add(dem)
    assert [i["id"] for i in list_images("TEST/DEM/v1_mosaic", Window((14.0, 46.0, 16.0, 48.0)))] == [dem.asset_id]
    assert list_images("TEST/DEM/v1_mosaic", Window((100.0, 10.0, 101.0, 11.0))) == []  # elsewhere: no image
    zone = _patch_grid(499800.0, 5200200.0, (60, 70), resolution=20.0)  # wider than the image on every side
    spec = CubeSpec(name="dem", zones=[zone], chunks=(32, 32), variables={"dem": Variable("float32", units="m")},
                    source=EarthEngineSource("TEST/DEM/v1_mosaic", {"dem": "elevation"}, project="test-project",
                                             api_url=emulator.url))
    cube = Cube.create(tmp_path / "dem", spec, catalog_dir=tmp_path / "catalog")
    tile = cube.load(zone)
    expected = np.full(zone.shape.yx, np.nan, dtype="float32")
    expected[10:50, 10:60] = np.where(lakes, np.nan, elevation)  # the image sits 10 px in from the zone's corner
    np.testing.assert_array_equal(tile.dem.values, expected)
    item = next(iter(cube.catalog.search()))
    assert item.id == "v1_mosaic" and pd.Timestamp(item.properties["start_datetime"]) == pd.Timestamp(
        "2024-01-01T00:00:00Z")  # no time of its own: dated by its last update
    assert any(r.endswith("image:computePixels") for r in emulator.requests)  # NaN nodata: unmasked by EE


def test_the_tctrend_dataset_loads_its_global_grid_from_tiles(emulator, tmp_path, monkeypatch):
    from odc.geo.geobox import GeoBox

    from stacube import Cube
    from stacube.alignment import on_grid
    from stacube.datasets import tctrend_grid, tctrend_slopes, tctrend_spec

    monkeypatch.setenv("STACUBE_EE_TOKEN", "test")
    grid = tctrend_grid()
    pixel = 30 / 111319.49079327357  # Earth Engine's degrees for a 30 m scale
    assert grid.crs.epsg == 4326 and grid.resolution.x == pytest.approx(pixel, rel=1e-15)
    bounds = grid.extent.boundingbox
    assert -180 <= bounds.left < -180 + pixel and 90 - pixel < bounds.top <= 90  # whole pixels inside the globe
    rng = np.random.default_rng(5)
    # Tiles as Export.image.toAsset(scale=30, region=...) writes them, built here without tctrend_grid: the
    # default projection scaled about (0, 0), so pixel edges are whole multiples of the pixel size from 0.
    col, row = round(10.8 / pixel), round(18.5 / pixel)  # near 18.5 N, 10.8 E
    tiles = []
    for k in (0, 1):  # two tiles side by side
        transform = Affine(pixel, 0.0, (col + k * 80) * pixel, 0.0, -pixel, row * pixel)
        bands = {band: rng.integers(1, 256, (60, 80), dtype="uint8") for band in ("TCB_slope", "TCG_slope",
                                                                                  "TCW_slope")}
        tiles.append(EmulatedImage(f"TEST/TCTREND/TCTrend_SR_tile{k}", None, None, "EPSG:4326", transform, bands))
        emulator.add(tiles[-1])
        assert on_grid(grid, transform)  # the cube's grid is the tiles' own: nothing is resampled by a fraction
    spec = tctrend_spec(project="test-project", api_url=emulator.url, chunks=(64, 64), collection="TEST/TCTREND")
    assert spec.time is None and list(spec.variables) == ["tcb", "tcg", "tcw"]
    cube = Cube.create(tmp_path / "tctrend", spec, catalog_dir=tmp_path / "catalog")
    roi = GeoBox((40, 90), Affine(pixel, 0.0, (col + 40) * pixel, 0.0, -pixel, (row - 10) * pixel), "EPSG:4326")
    tile = cube.load(roi)  # across both tiles, on the tiles' grid
    for name, band in (("tcb", "TCB_slope"), ("tcw", "TCW_slope")):
        expected = np.concatenate([t.bands[band] for t in tiles], axis=1)[10:50, 40:130]
        np.testing.assert_array_equal(tile[name].values, expected)
    np.testing.assert_allclose(tile.latitude.values[[0, -1]], [(row - 10.5) * pixel, (row - 49.5) * pixel],
                               rtol=0, atol=1e-12)  # pixel centres where the tiles have them
    coarse = GeoBox.from_bbox(roi.extent.boundingbox, "EPSG:4326", shape=(20, 45))  # a user's own grid
    assert (cube.load(coarse).tcg.values > 0).all()
    slopes = tctrend_slopes(tile)
    raw = tile.tcb.values.astype("float64")
    np.testing.assert_allclose(slopes.tcb.values, raw / 255 * 0.24 - 0.12, atol=1e-6)  # 255: +0.12 a decade
    holed = tile.copy(deep=True)
    holed.tcb.values[0, 0] = 0  # nodata
    decoded = tctrend_slopes(holed).tcb.values
    assert np.isnan(decoded[0, 0]) and not np.isnan(decoded[0, 1:]).any()


def test_a_service_account_key_file_is_exchanged_for_a_token_and_never_shown(emulator, tmp_path, monkeypatch,
                                                                              caplog):
    import base64

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from stacube import Cube, CubeSpec, EarthEngineSource, Variable

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    key_file = tmp_path / "sa.json"
    key_file.write_text(json.dumps({"type": "service_account", "project_id": "test-project",
                                    "private_key_id": "k1", "private_key": pem,
                                    "client_email": "cube-bot@test-project.iam.gserviceaccount.com",
                                    "client_id": "1", "token_uri": f"{emulator.url}/token"}))
    monkeypatch.delenv("STACUBE_EE_TOKEN", raising=False)
    monkeypatch.setenv("STACUBE_EE_KEY_FILE", str(key_file))
    zone = _patch_grid(500000.0, 5200000.0, (32, 64))
    spec = CubeSpec(name="ee", zones=[zone], chunks=(32, 64), variables={"red": Variable("uint16", nodata=0)},
                    time=pd.date_range("2024-06-06", periods=1, freq="D"),
                    source=EarthEngineSource(COLLECTION, {"red": "B4"}, project="test-project", api_url=emulator.url))
    cube = Cube.create(tmp_path / "ee", spec, catalog_dir=tmp_path / "catalog")
    tile = cube.load(zone, toi="2024-06-06")
    assert (tile.red.values != 0).any()
    assert len(emulator.token_grants) == 1  # the key was exchanged once, for the whole run
    claims = json.loads(base64.urlsafe_b64decode(emulator.token_grants[0].split(".")[1] + "=="))
    assert claims["iss"] == "cube-bot@test-project.iam.gserviceaccount.com"
    assert "Bearer access-1" in emulator.authorizations  # Earth Engine was asked with the exchanged token
    secret_line = pem.splitlines()[1]
    meta = cube.repo.lookup_snapshot(tile.attrs["stacube_snapshot"]).metadata
    assert secret_line not in json.dumps(meta) and secret_line not in caplog.text
    assert not any(secret_line in p.read_bytes().decode("latin-1")
                   for p in (tmp_path / "catalog").rglob("*") if p.is_file())
    key_file.write_text("{not json")  # a broken key names the variable and the file, not the content
    key_file.touch()
    from stacube.errors import CatalogError
    from stacube.sources.earthengine.client import initialize

    with pytest.raises(CatalogError, match=r"STACUBE_EE_KEY_FILE names .*sa\.json.*not a readable"):
        initialize(emulator.url, "test-project")


def test_the_credential_stored_by_earthengine_authenticate_is_used_when_nothing_else_is_named(emulator, tmp_path,
                                                                                              monkeypatch):
    from stacube.sources.earthengine.catalog import list_images
    from stacube.sources.earthengine.client import initialize

    stored = tmp_path / "home" / ".config" / "earthengine" / "credentials"
    stored.parent.mkdir(parents=True)
    stored.write_text(json.dumps({"refresh_token": "stored-refresh-token-42", "project": "test-project"}))
    for variable in ("STACUBE_EE_TOKEN", "STACUBE_EE_KEY_FILE", "GOOGLE_APPLICATION_CREDENTIALS"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setattr(ee.oauth, "TOKEN_URI", f"{emulator.url}/token")  # Google's token endpoint, on loopback
    initialize(emulator.url, "test-project")
    window = Window((14.0, 46.0, 16.0, 48.0), pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-30"))
    assert len(list_images(COLLECTION, window)) == 6
    assert emulator.token_grants == ["stored-refresh-token-42"]  # the stored refresh token was exchanged...
    assert any(a.startswith("Bearer access-") for a in emulator.authorizations)  # ...for the token EE saw
