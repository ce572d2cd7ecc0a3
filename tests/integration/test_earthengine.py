"""Earth Engine collections become STAC Items in the local catalog: the real client against a loopback emulator."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from affine import Affine

from stacube.catalog import LocalCatalog, Window
from stacube.sample.earthengine import EarthEngineEmulator, EmulatedImage, serve_earthengine

ee = pytest.importorskip("ee")
COLLECTION = "TEST/SENTINEL_LIKE"


def _image(day: str, column: int, *, x0: float = 500000.0) -> EmulatedImage:
    """A 64 x 48 px image in UTM 33N, one per day and column, with a uint16 band and a float32 band."""
    rng = np.random.default_rng(column)
    return EmulatedImage(
        asset_id=f"{COLLECTION}/{day.replace('-', '')}_c{column}",
        start=pd.Timestamp(f"{day}T10:00:00"), end=pd.Timestamp(f"{day}T10:00:01"),
        crs="EPSG:32633", transform=Affine(10.0, 0.0, x0 + column * 640.0, 0.0, -10.0, 5200000.0),
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
    from stacube.catalog.earthengine import sync_earthengine_window

    catalog = LocalCatalog(tmp_path, emulator.url, COLLECTION)
    window = Window((14.0, 46.0, 16.0, 48.0), pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-30"))
    assert sync_earthengine_window(catalog, COLLECTION, window) == 6
    assert sum(":listAssets" in r for r in emulator.requests) == 2  # 6 images in pages of 4
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
    assert b4.extra_fields["proj:transform"] == [10.0, 0.0, 500640.0, 0.0, -10.0, 5200000.0]
    assert b4.extra_fields["raster:bands"][0]["data_type"] == "uint16"
    assert ndvi.extra_fields["raster:bands"][0]["data_type"] == "float32"
    footprint = image.footprint.boundingbox
    np.testing.assert_allclose(item.bbox, list(footprint), rtol=1e-9)


def test_a_resync_converts_only_images_new_since_the_last_sync(emulator, tmp_path):
    from stacube.catalog.earthengine import sync_earthengine_window

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
    far = Window((100.0, 10.0, 101.0, 11.0), pd.Timestamp("2024-06-01"), pd.Timestamp("2024-06-30"))
    assert sync_earthengine_window(catalog, COLLECTION, far) == 0  # the region filter reached Earth Engine
