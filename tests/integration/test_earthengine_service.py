"""Earth Engine as the real service behaves: unsigned ranges without ``min``, no NaN in request JSON,
``unmask``'s footprint, grids named by WKT, geodesic regions, images without an end time.

The emulator follows the documented API where stacube once relied on its leniency (see
tests/data/SOURCES.md, "Earth Engine"); each test here failed on the code before it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from affine import Affine
from odc.geo.geobox import GeoBox

from stacube.catalog import LocalCatalog, Window
from stacube.testing.earthengine import EarthEngineEmulator, EmulatedImage, serve_earthengine

ee = pytest.importorskip("ee")
COLLECTION = "TEST/SERVICE"
DATA = Path(__file__).parent.parent / "data" / "earthengine"


@pytest.fixture
def emulator(monkeypatch):
    import google.oauth2.credentials

    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("STACUBE_EE_TOKEN", "test")
    monkeypatch.setattr(ee.deprecation, "_FetchDataCatalogStac", lambda: {})
    with serve_earthengine(EarthEngineEmulator(page_size=50)) as running:
        ee.Initialize(credentials=google.oauth2.credentials.Credentials(token="test"), project="test-project",
                      url=running.url)
        yield running


def _grid(x0, y0, shape, resolution=10.0, crs="EPSG:32633"):
    return GeoBox(shape, Affine(resolution, 0.0, x0, 0.0, -resolution, y0), crs)


WORLD = Window((-180.0, -90.0, 180.0, 90.0))


def _items(emulator, tmp_path, window=WORLD):
    from stacube.sources.earthengine.catalog import sync_earthengine_window

    catalog = LocalCatalog(tmp_path / "catalog", emulator.url, COLLECTION)
    sync_earthengine_window(catalog, COLLECTION, window)
    return sorted(catalog.search(), key=lambda i: (i.datetime, i.id))


def _pixel_requests(emulator):
    return [r for r in emulator.requests if r.endswith(("computePixels", "getPixels"))]


def _constants(node):
    """Every constant in a serialised expression graph."""
    if isinstance(node, dict):
        if "constantValue" in node:
            yield node["constantValue"]
        for value in node.values():
            yield from _constants(value)
    elif isinstance(node, list):
        for value in node:
            yield from _constants(value)


def test_unsigned_bands_are_catalogued_unsigned_and_read_in_one_request(emulator, tmp_path, monkeypatch):
    import stacube.sources.earthengine.backend as backend

    rng = np.random.default_rng(1)
    state = rng.integers(0, 65536, (48, 64), dtype="uint16")
    state[0, :3] = (0, 65535, 40000)  # both ends of the range, and above int16's
    state[state == 7] = 8  # 7 is the second case's nodata: no real pixel holds it
    hidden = np.zeros((48, 64), bool)
    hidden[30:40, 10:20] = True
    emulator.add(EmulatedImage(f"{COLLECTION}/a", pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-02"),
                               "EPSG:32633", Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5200000.0),
                               {"state": state, "flags": rng.integers(0, 256, (48, 64), dtype="uint8"),
                                "obs": rng.integers(-128, 128, (48, 64), dtype="int8")}, masked={"state": hidden}))
    served = emulator.images[f"{COLLECTION}/a"].asset()["bands"]
    assert served[0]["dataType"] == {"precision": "INT", "range": {"max": 65535}}  # as the service writes it
    [item] = _items(emulator, tmp_path)
    assert {band: item.assets[band].extra_fields["raster:bands"][0]["data_type"]
            for band in ("state", "flags", "obs")} == {"state": "uint16", "flags": "uint8", "obs": "int8"}
    grid = _grid(500000.0, 5200000.0, (48, 64))
    # exactly one patch's worth of uint16 (+1 mask byte): as int32 it would take two requests
    monkeypatch.setattr(backend, "MAX_REQUEST_BYTES", 48 * 64 * 3)
    for nodata, fetch in ((0, "getPixels"), (7, "computePixels")):
        emulator.requests.clear()
        got = backend.read_band([item], "state", grid, "uint16", nodata)
        assert [r.rsplit(":", 1)[-1] for r in _pixel_requests(emulator)] == [fetch]
        np.testing.assert_array_equal(got, np.where(hidden, nodata, state))  # masked: the cube's nodata
        assert got[0, 1] == 65535 and got[0, 2] == 40000


def _edge_image(dtype, values, masked):
    """A 30 x 40 px image whose footprint ends inside the patch grids below."""
    return EmulatedImage(f"{COLLECTION}/edge", pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-02"), "EPSG:32633",
                         Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5200000.0), {"v": values.astype(dtype)},
                         masked={"v": masked})


def _edge_values(dtype):
    rng = np.random.default_rng(2)
    values = (rng.random((30, 40)) * 200 - 100).astype(dtype)
    values[5:10, 5:15] = 0  # real zeros: data
    masked = np.zeros((30, 40), bool)
    masked[20:25, 20:30] = True
    return values, masked


def test_a_float_cube_sends_no_nan_and_masked_or_missing_pixels_are_nan_while_zeros_stay(emulator, tmp_path,
                                                                                          monkeypatch):
    import stacube.sources.earthengine.backend as backend

    values, masked = _edge_values("float32")
    emulator.add(_edge_image("float32", values, masked))
    [item] = _items(emulator, tmp_path)
    grid = _grid(499900.0, 5200100.0, (50, 60))  # 10 px beyond the image to the west and north, 10 past it east
    monkeypatch.setattr(backend, "MAX_REQUEST_BYTES", 50 * 60 * 5)  # float32 + mask byte: as float64 it is refused
    got = backend.read_band([item], "v", grid, "float32", float("nan"))
    assert [r.rsplit(":", 1)[-1] for r in _pixel_requests(emulator)] == ["computePixels"]
    expected = np.full((50, 60), np.nan, "float32")
    expected[10:40, 10:50] = np.where(masked, np.nan, values)
    np.testing.assert_array_equal(got, expected)
    assert (got[15:20, 15:25] == 0).all()  # the zeros are data
    [body] = [b for b in emulator.bodies if "expression" in b]
    constants = [c for c in _constants(body) if isinstance(c, float)]
    assert constants and all(math.isfinite(c) for c in constants)  # a finite fill, never NaN
    assert any(c is False for c in _constants(body))  # sameFootprint false: outside the image takes the fill


@pytest.mark.parametrize("unmask_widens", [True, False])
def test_outside_the_footprint_is_nodata_and_real_zeros_stay_for_an_integer_band(emulator, tmp_path, unmask_widens):
    """Whichever type ``unmask`` gives (undocumented: the union with the fill's, or the input's)."""
    from stacube.sources.earthengine.backend import read_band

    emulator.unmask_widens = unmask_widens

    values, masked = _edge_values("int16")
    emulator.add(_edge_image("int16", values, masked))
    right = _edge_values("int16")[0][:, ::-1].copy()
    emulator.add(EmulatedImage(f"{COLLECTION}/right", pd.Timestamp("2024-06-01T00:01"), pd.Timestamp("2024-06-02"),
                               "EPSG:32633", Affine(10.0, 0.0, 500500.0, 0.0, -10.0, 5200000.0), {"v": right}))
    left_item, right_item = _items(emulator, tmp_path)
    grid = _grid(499900.0, 5200100.0, (50, 80))  # the edge image, a 10 px gap, then the right image
    one = read_band([left_item], "v", grid, "int16", -9999)  # one image: computePixels of the image
    expected = np.full((50, 80), -9999, "int16")
    expected[10:40, 10:50] = np.where(masked, -9999, values)
    np.testing.assert_array_equal(one, expected)
    assert (one[15:20, 15:25] == 0).all() and (one[:, 50:] == -9999).all()
    both = read_band([left_item, right_item], "v", grid, "int16", -9999)  # a mosaic
    expected[10:40, 60:80] = right[:, :20]
    np.testing.assert_array_equal(both, expected)
    assert (both[:, 50:60] == -9999).all()  # the gap between the images: nodata, not zeros


@pytest.mark.parametrize("unmask_widens", [True, False])
def test_a_fill_the_source_type_cannot_hold_still_marks_masked_pixels(emulator, tmp_path, unmask_widens):
    """A uint8 band into an int16 variable with nodata -9999: the fill must not be clamped to a 0 that reads as data."""
    from stacube.sources.earthengine.backend import read_band

    emulator.unmask_widens = unmask_widens
    values = np.arange(30 * 40, dtype="int64").reshape(30, 40) % 256
    masked = np.zeros((30, 40), bool)
    masked[:, :5] = True
    emulator.add(_edge_image("uint8", values, masked))
    [item] = _items(emulator, tmp_path)
    got = read_band([item], "v", _grid(500000.0, 5200000.0, (30, 50)), "int16", -9999)
    expected = np.full((30, 50), -9999, "int16")
    expected[:, :40] = np.where(masked, -9999, values)
    np.testing.assert_array_equal(got, expected)


def test_a_boolean_variable_reads_true_false_and_its_nodata(emulator, tmp_path):
    from stacube.sources.earthengine.backend import read_band

    values = np.indices((30, 40)).sum(axis=0) % 2
    masked = np.zeros((30, 40), bool)
    masked[10:20, 10:20] = True
    emulator.add(_edge_image("uint8", values, masked))
    [item] = _items(emulator, tmp_path)
    grid = _grid(500000.0, 5200000.0, (30, 50))
    for nodata in (False, True):
        got = read_band([item], "v", grid, "bool", nodata)
        expected = np.full((30, 50), nodata)
        expected[:, :40] = np.where(masked, nodata, values.astype(bool))
        np.testing.assert_array_equal(got, expected)


def test_a_grid_without_an_epsg_code_travels_as_wkt(emulator, tmp_path):
    """MODIS's sinusoidal grid as GDAL read it from the service: served and sent as ``crsWkt``."""
    from stacube import Cube, CubeSpec, EarthEngineSource, Variable

    recorded = json.loads((DATA / "modis_myd09ga_gdal_real_service.json").read_text())
    x0, a, _, y0, _, e = recorded["geoTransform"]
    row, col = 4000, 22000  # a window near 53 N, 19 E on the real grid
    transform = Affine(a, 0.0, x0 + col * a, 0.0, e, y0 + row * e)
    rng = np.random.default_rng(3)
    zenith = rng.integers(-9000, 9000, (40, 50), dtype="int16")
    for name, crs in (("wkt", {"crsWkt": recorded["wkt"]}), ("code", {"crsCode": "SR-ORG:6974"})):
        emulator.add(EmulatedImage(f"{COLLECTION}/{name}", pd.Timestamp("2017-05-24"), pd.Timestamp("2017-05-25"),
                                   recorded["wkt"], transform, {"SensorZenith": zenith}, grid_crs=crs))
    items = _items(emulator, tmp_path, Window((0.0, 40.0, 40.0, 70.0)))
    assert sorted(i.id for i in items) == ["code", "wkt"]
    for item in items:
        fields = item.assets["SensorZenith"].extra_fields
        assert "proj:code" not in fields and fields["proj:wkt2"].startswith("PROJCRS")
    zone = GeoBox((40, 50), transform, recorded["wkt"])
    spec = CubeSpec(name="modis", zones=[zone], chunks=(20, 25), variables={"zenith": Variable("int16", nodata=-32768)},
                    time=pd.date_range("2017-05-24", periods=1, freq="D"),
                    source=EarthEngineSource(COLLECTION, {"zenith": "SensorZenith"}, project="test-project",
                                             api_url=emulator.url))
    cube = Cube.create(tmp_path / "modis", spec, catalog_dir=tmp_path / "cubecatalog")
    emulator.bodies.clear()
    tile = cube.load(zone, toi="2017-05-24")
    np.testing.assert_array_equal(tile.zenith.values[0], zenith)
    grids = [b["grid"] for b in emulator.bodies if "grid" in b]
    assert len(grids) == 4 and all("crsCode" not in g and g["crsWkt"].startswith("PROJCS[") for g in grids)


def test_an_roi_band_around_the_globe_and_a_polar_cap_find_their_images(emulator, tmp_path):
    """Regions as Earth Engine reads them, with geodesic edges: a -180..180 ring would enclose nothing."""
    from stacube.sources.earthengine.catalog import list_images, region_pieces

    spots = {"pacific": ("EPSG:32601", 300000.0, 8000000.0), "atlantic": ("EPSG:32625", 500000.0, 7500000.0),
             "pole": ("EPSG:3413", 0.0, 20000.0)}
    for name, (crs, x0, y0) in spots.items():
        emulator.add(EmulatedImage(f"{COLLECTION}/{name}", pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-02"),
                                   crs, Affine(100.0, 0.0, x0, 0.0, -100.0, y0), {"v": np.ones((20, 20), "uint8")}))
    arctic = Window((-180.0, 60.0, 180.0, 90.0), pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-02"))
    assert sorted(i["id"].rsplit("/", 1)[-1] for i in list_images(COLLECTION, arctic)) == ["atlantic", "pacific",
                                                                                           "pole"]
    assert len(region_pieces(arctic.bbox)) == 4  # no piece wider than 90 degrees
    across = Window((170.0, 60.0, -170.0, 80.0), pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-02"))
    assert [i["id"].rsplit("/", 1)[-1] for i in list_images(COLLECTION, across)] == ["pacific"]


@pytest.mark.parametrize("missing_end_matches", [False, True])
def test_images_without_an_end_time_are_found_however_the_service_compares_them(emulator, tmp_path,
                                                                               missing_end_matches, monkeypatch):
    """Whether ``endTime > x`` matches an image without an end is undocumented: both readings give the same images."""
    import stacube.testing.earthengine as emulated
    from stacube.sources.earthengine.catalog import list_images

    real = emulated.matches

    def lenient(image, query):
        if missing_end_matches and image.end is None and query:
            query = " AND ".join(c for c in query.split(" AND ") if not c.strip().startswith("endTime"))
        return real(image, query)

    monkeypatch.setattr(emulated, "matches", lenient)
    box = Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5200000.0)
    for name, start, end in (("instant", "2024-06-05T10:00", None), ("before", "2024-05-20T10:00", None),
                             ("annual", "2024-01-01", "2025-01-01"), ("later", "2024-07-02", None),
                             ("zero", "2024-06-01", "2024-06-01")):  # an end equal to its start: an instant
        emulator.add(EmulatedImage(f"{COLLECTION}/{name}", pd.Timestamp(start), end and pd.Timestamp(end),
                                   "EPSG:32633", box, {"v": np.ones((4, 4), "uint8")}))
    june = Window((14.0, 46.0, 16.0, 48.0), pd.Timestamp("2024-06-01"), pd.Timestamp("2024-07-01"))
    assert sorted(i["id"].rsplit("/", 1)[-1] for i in list_images(COLLECTION, june)) == ["annual", "instant",
                                                                                        "zero"]


def test_a_request_over_the_services_limit_fails_with_its_own_words(emulator, tmp_path, monkeypatch):
    """Should stacube ever size a request past the limit, the error says what the service said, not a guess."""
    import stacube.testing.earthengine as emulated
    from stacube.sources.earthengine.backend import read_band

    emulator.add(EmulatedImage(f"{COLLECTION}/big", pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-02"),
                               "EPSG:32633", Affine(10.0, 0.0, 500000.0, 0.0, -10.0, 5200000.0),
                               {"v": np.ones((48, 64), "uint16")}))
    [item] = _items(emulator, tmp_path)
    monkeypatch.setattr(emulated, "MAX_REQUEST_BYTES", 1000)  # the service's limit, here lower than stacube's
    with pytest.raises(ee.EEException, match=r"Total request size \(9216 bytes\) must be less than or equal to "
                                             r"1000 bytes\."):
        read_band([item], "v", _grid(500000.0, 5200000.0, (48, 64)), "uint16", 0)  # 48 x 64 x (2 + 1)
